//! Reads the offset and timestamp of each record of a batch, the only record fields the
//! broker needs (ListOffsets by timestamp, timestamp validation). Compressed batches are
//! inflated, within the default decode limits, as Kafka's log validator does. Every record
//! is parsed and checked as a consumer's decoder would, but keys, values and headers are
//! skipped rather than kept, and the batch is not copied: this runs for every produced batch.

use franzy::proto::batch_header::BatchHeader;
use franzy::proto::record_batch::{record_deltas, DecodeLimits};

/// One record's position and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordStamp {
    /// Absolute offset.
    pub offset: i64,
    /// Timestamp as a consumer sees it (the batch's max timestamp for log-append time).
    pub timestamp: i64,
}

/// The records of `batch` (a whole batch, header included, whose CRC was checked), or
/// `None` when its records section is malformed or inflates past the limit.
pub fn record_stamps(header: &BatchHeader, batch: &[u8]) -> Option<Vec<RecordStamp>> {
    let batch = batch.get(..header.total_len())?;
    let deltas = record_deltas(header, batch, &DecodeLimits::default()).ok()?;
    let log_append_time = header.attributes.is_log_append_time();
    Some(
        deltas
            .iter()
            .map(|delta| RecordStamp {
                offset: header
                    .base_offset
                    .saturating_add(i64::from(delta.offset_delta)),
                timestamp: if log_append_time {
                    header.max_timestamp
                } else {
                    header.base_timestamp.saturating_add(delta.timestamp_delta)
                },
            })
            .collect(),
    )
}
