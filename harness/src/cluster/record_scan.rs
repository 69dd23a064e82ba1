//! Reads the offset and timestamp of each record of an uncompressed batch, the only record
//! fields the broker needs (ListOffsets by timestamp, timestamp validation). Compressed
//! batches are not opened here: callers fall back to the batch header.
//!
//! Record layout (protocol guide, "Record"): `length: varint`, `attributes: int8`,
//! `timestampDelta: varlong`, `offsetDelta: varint`, then key, value and headers, all inside
//! `length`.

use franzy::proto::batch_header::{BatchHeader, BATCH_HEADER_LEN};

/// One record's position and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordStamp {
    /// Absolute offset.
    pub offset: i64,
    /// Timestamp as a consumer sees it (the batch's max timestamp for log-append time).
    pub timestamp: i64,
}

/// The records of `batch` (a whole batch, header included), or `None` when the batch is
/// compressed or its records section is malformed.
pub fn record_stamps(header: &BatchHeader, batch: &[u8]) -> Option<Vec<RecordStamp>> {
    if header.attributes.compression_id() != 0 {
        return None;
    }
    let mut rest = batch.get(BATCH_HEADER_LEN..header.total_len())?;
    let capacity = usize::try_from(header.record_count).ok()?.min(rest.len());
    let mut stamps = Vec::with_capacity(capacity);
    for _ in 0..header.record_count {
        let length = usize::try_from(read_varlong(&mut rest)?).ok()?;
        let mut record = rest.get(..length)?;
        rest = &rest[length..];
        let (_attributes, tail) = record.split_first()?;
        record = tail;
        let timestamp_delta = read_varlong(&mut record)?;
        let offset_delta = read_varlong(&mut record)?;
        let timestamp = if header.attributes.is_log_append_time() {
            header.max_timestamp
        } else {
            header.base_timestamp.checked_add(timestamp_delta)?
        };
        stamps.push(RecordStamp {
            offset: header.base_offset.checked_add(offset_delta)?,
            timestamp,
        });
    }
    Some(stamps)
}

/// A zigzag-encoded variable-length integer of up to 64 bits.
fn read_varlong(buf: &mut &[u8]) -> Option<i64> {
    let mut value: u64 = 0;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = buf.split_first()?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::test_batches::BatchBuilder;
    use franzy::proto::batch_header::validate_batch;

    #[test]
    fn reads_offsets_and_timestamps_of_each_record() {
        let batch = BatchBuilder::new(1000)
            .record_at(1000, b"a")
            .record_at(990, b"b")
            .record_at(1500, b"c")
            .build();
        let header = validate_batch(&batch).expect("valid");
        let stamps = record_stamps(&header, &batch).expect("uncompressed");
        let got: Vec<_> = stamps.iter().map(|s| (s.offset, s.timestamp)).collect();
        assert_eq!(got, vec![(0, 1000), (1, 990), (2, 1500)]);
    }

    #[test]
    fn compressed_or_malformed_batches_are_not_read() {
        let batch = BatchBuilder::new(0)
            .record_at(0, b"a")
            .compression_id(1)
            .build();
        let header = validate_batch(&batch).expect("valid");
        assert_eq!(record_stamps(&header, &batch), None);
        let mut batch = BatchBuilder::new(0).record_at(0, b"a").build();
        let header = validate_batch(&batch).expect("valid");
        batch.truncate(batch.len() - 2);
        assert_eq!(record_stamps(&header, &batch), None);
    }
}
