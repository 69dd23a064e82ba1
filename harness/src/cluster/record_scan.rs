//! Reads the offset and timestamp of each record of a batch, the only record fields the
//! broker needs (ListOffsets by timestamp, timestamp validation). Compressed batches are
//! inflated, within the default decode limits, as Kafka's log validator does.

use bytes::Bytes;
use franzy::proto::batch_header::BatchHeader;
use franzy::proto::record_batch::{DecodeLimits, RecordBatch};

/// One record's position and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordStamp {
    /// Absolute offset.
    pub offset: i64,
    /// Timestamp as a consumer sees it (the batch's max timestamp for log-append time).
    pub timestamp: i64,
}

/// The records of `batch` (a whole batch, header included), or `None` when its records
/// section is malformed or inflates past the limit.
pub fn record_stamps(header: &BatchHeader, batch: &[u8]) -> Option<Vec<RecordStamp>> {
    let bytes = Bytes::copy_from_slice(batch.get(..header.total_len())?);
    let decoded = RecordBatch::decode(&bytes, &DecodeLimits::default()).ok()?;
    Some(
        decoded
            .records
            .iter()
            .map(|record| RecordStamp {
                offset: decoded.record_offset(record),
                timestamp: decoded.record_timestamp(record),
            })
            .collect(),
    )
}
