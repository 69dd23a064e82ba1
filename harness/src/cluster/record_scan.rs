//! Reads the offset and timestamp of each record of a batch, the only record fields the
//! broker needs (ListOffsets by timestamp, timestamp validation). Compressed batches are
//! inflated, within a limit, as Kafka's log validator does. Every record is parsed and
//! checked as a consumer's decoder would, but keys, values and headers are skipped rather
//! than kept, and the batch is not copied: this runs for every produced batch.

use franzy::proto::batch_header::{BatchError, BatchHeader};
use franzy::proto::record_batch::{record_deltas_sized, DecodeLimits};

/// One record's position and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordStamp {
    /// Absolute offset.
    pub offset: i64,
    /// Timestamp as a consumer sees it (the batch's max timestamp for log-append time).
    pub timestamp: i64,
}

/// Why [`record_stamps_within`] found no records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanError {
    /// The records section is malformed (or its compressed stream is).
    Malformed,
    /// The records inflate past the limit given.
    Limit,
}

/// The records of `batch` (a whole batch, header included, whose CRC was checked), or
/// `None` when its records section is malformed or inflates past the default decode limit
/// (64 MiB).
pub fn record_stamps(header: &BatchHeader, batch: &[u8]) -> Option<Vec<RecordStamp>> {
    record_stamps_within(
        header,
        batch,
        DecodeLimits::default().max_decompressed_bytes,
    )
    .ok()
    .map(|(stamps, _)| stamps)
}

/// The records of `batch` and the size of its records section once inflated, inflating at
/// most `limit` bytes.
pub fn record_stamps_within(
    header: &BatchHeader,
    batch: &[u8],
    limit: usize,
) -> Result<(Vec<RecordStamp>, usize), ScanError> {
    let batch = batch
        .get(..header.total_len())
        .ok_or(ScanError::Malformed)?;
    let (deltas, size) = match record_deltas_sized(header, batch, &DecodeLimits::new(limit)) {
        Ok(found) => found,
        Err(BatchError::DecompressionLimit { .. }) => return Err(ScanError::Limit),
        Err(_) => return Err(ScanError::Malformed),
    };
    let log_append_time = header.attributes.is_log_append_time();
    let stamps = deltas
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
        .collect();
    Ok((stamps, size))
}
