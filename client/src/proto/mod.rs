//! The wire: frames, headers, messages, record batches and compression.
//!
//! Nothing here does IO, reads a clock or draws random numbers: every function maps bytes
//! to values or values to bytes, so the same code serves the client, the harness and the
//! fuzz targets.
//!
//! | module | what | spec |
//! |---|---|---|
//! | [`frame`] | `int32` size-prefixed frames | protocol guide, "Common Request and Response Structure" |
//! | [`message`] | request/response headers and bodies | protocol guide, "Headers"; KIP-482 |
//! | `versions` (crate-internal) | version negotiation | KIP-35, KIP-511 |
//! | `varint` (crate-internal) | zig-zag varints and varlongs, unsigned varints | protocol guide, "Record"; KIP-482 |
//! | [`batch_header`] | the 61-byte record batch header | protocol guide, "Record Batch"; KIP-98 |
//! | [`record_batch`] | whole record batches: records, headers, control records | protocol guide, "Record Batch", "Record", "Control Batches"; KIP-98, KIP-82 |
//! | [`error`] | [`BatchError`](error::BatchError): why bytes are not a valid record batch | |
//! | [`compression`] | batch compression codecs: gzip, xerial snappy, lz4 frames, zstd | protocol guide, "Compression"; KIP-57 (lz4); KIP-110 (zstd) |

pub mod batch_header;
pub mod compression;
pub mod error;
pub mod frame;
pub mod message;
pub mod record_batch;
// Internal: the record codec uses it. A whole codec (unsigned forms included, round-trip
// tested) of which the crate needs only part.
#[allow(dead_code)]
pub(crate) mod varint;
// Public with `internals` only: the connection engine's interface names it.
#[cfg(feature = "internals")]
pub mod versions;
#[cfg(not(feature = "internals"))]
pub(crate) mod versions;

pub use kafka_protocol::error::ResponseError as ErrorCode;
pub use kafka_protocol::messages::{
    ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind,
};
pub use kafka_protocol::protocol::StrBytes;
