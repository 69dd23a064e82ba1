//! The error of the record batch codec, shared by [`batch_header`](super::batch_header),
//! [`record_batch`](super::record_batch) and [`compression`](super::compression): each of
//! them reads or writes part of a batch, and a failure anywhere is one kind of "these bytes
//! are not a valid record batch". It lives apart so that those modules need not import each
//! other for it.

/// Why bytes are not a valid record batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The buffer ends before the batch does.
    #[error("record batch truncated: needs {needed} bytes, {available} available")]
    Truncated {
        /// Bytes the batch announces.
        needed: usize,
        /// Bytes present.
        available: usize,
    },
    /// `batchLength` is too small to hold a header, or negative.
    #[error("invalid record batch length {0}")]
    InvalidLength(i32),
    /// A magic byte other than 2 (message sets v0/v1 are not supported).
    #[error("unsupported record batch magic {0}")]
    UnsupportedMagic(i8),
    /// The stored CRC does not match the bytes.
    #[error("record batch crc mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// CRC in the header.
        stored: u32,
        /// CRC of the bytes.
        computed: u32,
    },
    /// Compression id 5, 6 or 7.
    #[error("unknown compression codec id {0}")]
    UnknownCompression(u8),
    /// A negative record count, or a last offset delta that disagrees with it.
    #[error("invalid record count {count} with last offset delta {last_offset_delta}")]
    InvalidRecordCount {
        /// `recordCount`.
        count: i32,
        /// `lastOffsetDelta`.
        last_offset_delta: i32,
    },
    /// Something inside the records section is malformed.
    #[error("malformed record: {0}")]
    Record(String),
    /// Decompression failed or exceeded its limit.
    #[error("decompression failed: {0}")]
    Decompression(String),
    /// Compression failed.
    #[error("compression failed: {0}")]
    Compression(String),
    /// Decompressed records would exceed the caller's limit.
    #[error("decompressed records exceed the limit of {limit} bytes")]
    DecompressionLimit {
        /// The limit, in bytes.
        limit: usize,
    },
    /// `recordCount` disagrees with the records in the batch.
    #[error("record count {declared} but {found} records present")]
    RecordCountMismatch {
        /// `recordCount`.
        declared: i32,
        /// Records parsed before the bytes ran out.
        found: usize,
    },
    /// `baseOffset + lastOffsetDelta + 1`, the offset after the batch, overflows `int64`:
    /// no log can hold such a batch (a log's end offset is an `int64` too).
    #[error(
        "base offset {base_offset} plus last offset delta {last_offset_delta} overflows int64"
    )]
    OffsetOverflow {
        /// `baseOffset`.
        base_offset: i64,
        /// `lastOffsetDelta`.
        last_offset_delta: i32,
    },
    /// Bytes follow the batch where exactly one batch was expected.
    #[error("{0} bytes after the end of the record batch")]
    TrailingBytes(usize),
    /// A batch being encoded does not fit the `int32` length and count fields.
    #[error("record batch too large to encode: {0}")]
    TooLarge(String),
}
