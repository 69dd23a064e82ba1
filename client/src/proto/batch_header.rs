//! The fixed 61-byte header of a record batch, magic v2 (protocol guide, "Record Batch";
//! KIP-98 for producer id, epoch, sequence and the transactional and control flags).
//!
//! ```text
//! offset  size  field
//!      0     8  baseOffset
//!      8     4  batchLength            (bytes after this field)
//!     12     4  partitionLeaderEpoch
//!     16     1  magic                  (2)
//!     17     4  crc                    (CRC-32C of bytes 21..end)
//!     21     2  attributes
//!     23     4  lastOffsetDelta
//!     27     8  baseTimestamp
//!     35     8  maxTimestamp
//!     43     8  producerId
//!     51     2  producerEpoch
//!     53     4  baseSequence
//!     57     4  recordCount
//!     61        records ...
//! ```
//!
//! The broker reads and rewrites only this header: it assigns `baseOffset`, stamps
//! `partitionLeaderEpoch` (both outside the CRC) and, for log-append-time topics, the
//! timestamp type and `maxTimestamp` (inside it, so the CRC is recomputed). Records stay as the
//! producer wrote them.

use super::compression::Compression;
pub use super::error::BatchError;

/// Bytes before `batchLength` counts: `baseOffset` and `batchLength` themselves.
pub const LOG_OVERHEAD: usize = 12;
/// Size of the fixed header, up to the first record.
pub const BATCH_HEADER_LEN: usize = 61;
/// The only message format this codec reads or writes.
pub const MAGIC_V2: i8 = 2;
/// Where the CRC-covered bytes begin.
const CRC_START: usize = 21;

/// The attributes field of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BatchAttributes(pub i16);

impl BatchAttributes {
    const TIMESTAMP_TYPE: i16 = 1 << 3;
    const TRANSACTIONAL: i16 = 1 << 4;
    const CONTROL: i16 = 1 << 5;
    const DELETE_HORIZON: i16 = 1 << 6;

    /// The compression codec id (bits 0-2).
    pub fn compression_id(self) -> u8 {
        (self.0 & 0x7) as u8
    }
    /// The compression codec, or an error for ids 5-7.
    pub fn compression(self) -> Result<Compression, BatchError> {
        Compression::from_id(self.compression_id())
            .ok_or(BatchError::UnknownCompression(self.compression_id()))
    }
    /// Timestamps are log-append time (set by the broker) rather than create time.
    pub fn is_log_append_time(self) -> bool {
        self.0 & Self::TIMESTAMP_TYPE != 0
    }
    /// The batch belongs to a transaction.
    pub fn is_transactional(self) -> bool {
        self.0 & Self::TRANSACTIONAL != 0
    }
    /// The batch holds one control record (a transaction marker).
    pub fn is_control(self) -> bool {
        self.0 & Self::CONTROL != 0
    }
    /// The base timestamp is a delete horizon (KIP-534).
    pub fn has_delete_horizon(self) -> bool {
        self.0 & Self::DELETE_HORIZON != 0
    }
    /// These attributes with the delete-horizon flag (KIP-534) set or cleared.
    pub fn with_delete_horizon(self, delete_horizon: bool) -> Self {
        if delete_horizon {
            Self(self.0 | Self::DELETE_HORIZON)
        } else {
            Self(self.0 & !Self::DELETE_HORIZON)
        }
    }
    /// Builds attributes from their parts.
    pub fn new(
        compression: Compression,
        log_append_time: bool,
        transactional: bool,
        control: bool,
    ) -> Self {
        let mut bits = i16::from(compression.id());
        if log_append_time {
            bits |= Self::TIMESTAMP_TYPE;
        }
        if transactional {
            bits |= Self::TRANSACTIONAL;
        }
        if control {
            bits |= Self::CONTROL;
        }
        Self(bits)
    }
}

/// The header fields of one record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Bytes after the `batchLength` field.
    pub batch_length: i32,
    /// Leader epoch stamped by the broker.
    pub partition_leader_epoch: i32,
    /// Always 2 once parsed.
    pub magic: i8,
    /// CRC-32C of everything from `attributes` on.
    pub crc: u32,
    /// Compression, timestamp type, transactional and control flags.
    pub attributes: BatchAttributes,
    /// Offset of the last record relative to `base_offset`; kept even when compaction or
    /// a transaction left fewer records, so that consumers can step past the batch.
    pub last_offset_delta: i32,
    /// Timestamp of the first record (or the delete horizon).
    pub base_timestamp: i64,
    /// Largest timestamp in the batch (the log-append time for such topics).
    pub max_timestamp: i64,
    /// Idempotent / transactional producer id, or -1.
    pub producer_id: i64,
    /// Producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence number of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records.
    pub record_count: i32,
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(x)
}

impl BatchHeader {
    /// Parses the header at the start of `buf`. Checks magic and the length field, but not
    /// the CRC and not that the whole batch is present (see [`BatchHeader::total_len`]).
    pub fn parse(buf: &[u8]) -> Result<Self, BatchError> {
        if buf.len() < BATCH_HEADER_LEN {
            // A batch shorter than its header: report what the length field asks for, when
            // it is readable, so that callers can tell a cut-off batch from a short one.
            let needed = if buf.len() >= LOG_OVERHEAD {
                LOG_OVERHEAD.saturating_add(be_i32(buf, 8).max(0) as usize)
            } else {
                BATCH_HEADER_LEN
            };
            return Err(BatchError::Truncated {
                needed: needed.max(BATCH_HEADER_LEN),
                available: buf.len(),
            });
        }
        let batch_length = be_i32(buf, 8);
        if batch_length < (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32 {
            return Err(BatchError::InvalidLength(batch_length));
        }
        let magic = buf[16] as i8;
        if magic != MAGIC_V2 {
            return Err(BatchError::UnsupportedMagic(magic));
        }
        let header = Self {
            base_offset: be_i64(buf, 0),
            batch_length,
            partition_leader_epoch: be_i32(buf, 12),
            magic,
            crc: be_i32(buf, 17) as u32,
            attributes: BatchAttributes(be_i16(buf, 21)),
            last_offset_delta: be_i32(buf, 23),
            base_timestamp: be_i64(buf, 27),
            max_timestamp: be_i64(buf, 35),
            producer_id: be_i64(buf, 43),
            producer_epoch: be_i16(buf, 51),
            base_sequence: be_i32(buf, 53),
            record_count: be_i32(buf, 57),
        };
        if header.record_count < 0 || header.last_offset_delta < 0 {
            return Err(BatchError::InvalidRecordCount {
                count: header.record_count,
                last_offset_delta: header.last_offset_delta,
            });
        }
        Ok(header)
    }

    /// Size of the whole batch on the wire, offset and length fields included.
    pub fn total_len(&self) -> usize {
        LOG_OVERHEAD + self.batch_length as usize
    }

    /// Offset of the last record: `base_offset + last_offset_delta`.
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    /// Offset just past this batch: where the next batch starts (saturating; see
    /// [`BatchHeader::checked_next_offset`] for offsets read off the wire).
    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }

    /// Offset just past this batch, or `None` when `baseOffset + lastOffsetDelta + 1` does not
    /// fit an `int64` (a broker's invention: no log reaches that far).
    pub fn checked_next_offset(&self) -> Option<i64> {
        self.base_offset
            .checked_add(i64::from(self.last_offset_delta))?
            .checked_add(1)
    }
}

/// Computes the CRC-32C that a batch's `crc` field must hold.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(batch.get(CRC_START..).unwrap_or_default())
}

/// Parses the batch at the start of `buf` and checks that it is whole and its CRC matches.
/// Returns the header; the batch is `&buf[..header.total_len()]`.
pub fn validate_batch(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(buf)?;
    let total = header.total_len();
    if buf.len() < total {
        return Err(BatchError::Truncated {
            needed: total,
            available: buf.len(),
        });
    }
    let computed = compute_crc(&buf[..total]);
    if computed != header.crc {
        return Err(BatchError::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    Ok(header)
}

/// Iterates over the batches of a `records` field, as found in produce requests and fetch
/// responses. A fetch response may end with a partial batch (the broker cuts at the byte
/// limit); the iterator stops there without an error, and [`Batches::truncated_tail`] tells
/// whether that happened. CRCs are not checked here; use [`validate_batch`] on each.
#[derive(Debug, Clone)]
pub struct Batches<'a> {
    rest: &'a [u8],
    truncated_tail: bool,
}

impl<'a> Batches<'a> {
    /// Batches of `records`.
    pub fn new(records: &'a [u8]) -> Self {
        Self {
            rest: records,
            truncated_tail: false,
        }
    }

    /// True once iteration stopped at a batch cut short by the end of the buffer.
    pub fn truncated_tail(&self) -> bool {
        self.truncated_tail
    }
}

impl<'a> Iterator for Batches<'a> {
    type Item = Result<(BatchHeader, &'a [u8]), BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        match BatchHeader::parse(self.rest) {
            Ok(header) if header.total_len() <= self.rest.len() => {
                let (batch, rest) = self.rest.split_at(header.total_len());
                self.rest = rest;
                Some(Ok((header, batch)))
            }
            Ok(_) | Err(BatchError::Truncated { .. }) => {
                self.truncated_tail = true;
                self.rest = &[];
                None
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

/// Sets `baseOffset` of the batch at the start of `batch` (outside the CRC).
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    if let Some(field) = batch.get_mut(0..8) {
        field.copy_from_slice(&base_offset.to_be_bytes());
    }
}

/// Sets `partitionLeaderEpoch` (outside the CRC).
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    if let Some(field) = batch.get_mut(12..16) {
        field.copy_from_slice(&epoch.to_be_bytes());
    }
}

/// Marks the batch as log-append-time with `timestamp` as its max timestamp, as a broker
/// does for topics with `message.timestamp.type=LogAppendTime`, and recomputes the CRC.
pub fn set_log_append_time(batch: &mut [u8], timestamp: i64) {
    if batch.len() < BATCH_HEADER_LEN {
        return;
    }
    let attributes = be_i16(batch, 21) | BatchAttributes::TIMESTAMP_TYPE;
    batch[21..23].copy_from_slice(&attributes.to_be_bytes());
    batch[35..43].copy_from_slice(&timestamp.to_be_bytes());
    let crc = compute_crc(batch);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal valid batch: header only, zero records, CRC filled in.
    fn empty_batch(base_offset: i64, last_offset_delta: i32) -> Vec<u8> {
        let mut b = vec![0u8; BATCH_HEADER_LEN];
        b[0..8].copy_from_slice(&base_offset.to_be_bytes());
        b[8..12].copy_from_slice(&((BATCH_HEADER_LEN - LOG_OVERHEAD) as i32).to_be_bytes());
        b[16] = 2;
        b[23..27].copy_from_slice(&last_offset_delta.to_be_bytes());
        b[43..51].copy_from_slice(&(-1i64).to_be_bytes());
        b[51..53].copy_from_slice(&(-1i16).to_be_bytes());
        b[53..57].copy_from_slice(&(-1i32).to_be_bytes());
        let crc = compute_crc(&b);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    #[test]
    fn parses_and_validates_a_header_only_batch() {
        let b = empty_batch(42, 3);
        let h = validate_batch(&b).expect("valid batch");
        assert_eq!(h.base_offset, 42);
        assert_eq!(h.last_offset(), 45);
        assert_eq!(h.next_offset(), 46);
        assert_eq!(h.checked_next_offset(), Some(46));
        assert_eq!(h.producer_id, -1);
        assert_eq!(h.total_len(), BATCH_HEADER_LEN);
    }

    #[test]
    fn the_offset_after_a_batch_at_the_end_of_int64_does_not_exist() {
        let at_end = BatchHeader::parse(&empty_batch(i64::MAX, 0)).expect("parses");
        assert_eq!(at_end.checked_next_offset(), None);
        assert_eq!(at_end.next_offset(), i64::MAX, "saturates");
        let beyond = BatchHeader::parse(&empty_batch(i64::MAX - 3, 5)).expect("parses");
        assert_eq!(beyond.checked_next_offset(), None);
        let last = BatchHeader::parse(&empty_batch(i64::MAX - 6, 5)).expect("parses");
        assert_eq!(last.checked_next_offset(), Some(i64::MAX));
    }

    #[test]
    fn a_flipped_bit_in_the_covered_bytes_fails_the_crc() {
        let mut b = empty_batch(0, 0);
        b[40] ^= 1;
        assert!(matches!(
            validate_batch(&b),
            Err(BatchError::CrcMismatch { .. })
        ));
        // The base offset is outside the CRC: a broker may rewrite it.
        let mut b = empty_batch(0, 0);
        set_base_offset(&mut b, 1000);
        set_partition_leader_epoch(&mut b, 7);
        assert_eq!(
            validate_batch(&b).map(|h| (h.base_offset, h.partition_leader_epoch)),
            Ok((1000, 7))
        );
    }

    #[test]
    fn log_append_time_rewrite_keeps_the_crc_valid() {
        let mut b = empty_batch(0, 0);
        set_log_append_time(&mut b, 1_700_000_000_000);
        let h = validate_batch(&b).expect("crc recomputed");
        assert!(h.attributes.is_log_append_time());
        assert_eq!(h.max_timestamp, 1_700_000_000_000);
    }

    #[test]
    fn bad_magic_length_and_truncation_are_distinct_errors() {
        let mut b = empty_batch(0, 0);
        b[16] = 1;
        assert_eq!(BatchHeader::parse(&b), Err(BatchError::UnsupportedMagic(1)));
        let mut b = empty_batch(0, 0);
        b[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert_eq!(BatchHeader::parse(&b), Err(BatchError::InvalidLength(-5)));
        let b = empty_batch(0, 0);
        assert!(matches!(
            BatchHeader::parse(&b[..30]),
            Err(BatchError::Truncated { .. })
        ));
    }

    #[test]
    fn batches_iterator_stops_quietly_at_a_partial_tail() {
        let mut records = empty_batch(0, 0);
        records.extend(empty_batch(1, 0));
        let second_half = empty_batch(2, 0);
        records.extend(&second_half[..20]);
        let mut it = Batches::new(&records);
        let offsets: Vec<i64> = it
            .by_ref()
            .map(|r| r.expect("whole batch").0.base_offset)
            .collect();
        assert_eq!(offsets, vec![0, 1]);
        assert!(it.truncated_tail());
    }
}
