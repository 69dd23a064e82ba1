//! What a Kafka broker checks before it appends a producer's records, in Kafka's order:
//! first the request-level shape (`ProduceRequest.validateRecords`: exactly one magic-v2
//! batch), then the log-level checks (`UnifiedLog.analyzeAndValidateRecords` and
//! `LogValidator`: base offset 0, size, CRC, record count, producer fields, timestamps).

use franzy::proto::batch_header::{validate_batch, BatchError, BatchHeader, MAGIC_V2};
use franzy::proto::compression::Compression;
use franzy::proto::record_batch::DecodeLimits;
use franzy::proto::ErrorCode;

use super::error::ClusterError;
use super::record_scan::{record_stamps_within, ScanError};

/// How much the compressed records of the batches being validated may still inflate to: a
/// budget shared by the batches of one Produce request, on top of a limit per batch (the
/// default decode limit, 64 MiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InflateBudget {
    total: usize,
    remaining: usize,
    per_batch: usize,
}

impl InflateBudget {
    /// A budget of `total` bytes for all batches together.
    pub fn new(total: usize) -> Self {
        Self {
            total,
            remaining: total,
            per_batch: DecodeLimits::default().max_decompressed_bytes,
        }
    }

    /// Only the limit per batch: for appends that are not part of a request.
    pub fn per_batch_only() -> Self {
        Self::new(usize::MAX)
    }

    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.remaining
    }

    /// How far the next batch may inflate, and whether it is the budget (not the limit per
    /// batch) that stops it there.
    fn next_limit(&self) -> (usize, bool) {
        (
            self.remaining.min(self.per_batch),
            self.remaining < self.per_batch,
        )
    }

    fn charge(&mut self, bytes: usize) {
        self.remaining = self.remaining.saturating_sub(bytes);
    }
}

/// The settings of one topic that govern appends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendLimits {
    /// `max.message.bytes`: the largest batch accepted.
    pub max_message_bytes: usize,
    /// `message.timestamp.type=LogAppendTime`.
    pub log_append_time: bool,
    /// `message.timestamp.before.max.ms`.
    pub timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`.
    pub timestamp_after_max_ms: i64,
}

/// A batch validated before the cluster lock was taken (see
/// `handlers::produce::prepare`): the outcome of [`validate_for_append_within`] at `now_ms`
/// against `limits`, its topic's limits at the time. It stands for as long as the topic's
/// limits are still these; otherwise the batch is validated again.
#[derive(Debug, Clone, PartialEq)]
pub struct PrevalidatedBatch {
    /// The limits it was validated against.
    pub limits: AppendLimits,
    /// The time it was validated at.
    pub now_ms: i64,
    /// What validation found.
    pub outcome: Result<(), ClusterError>,
}

/// Finds the single batch of a produce request's `records` field, as
/// `ProduceRequest.validateRecords` does for v3+: INVALID_RECORD when there is no whole
/// batch, more than one, or one that is not magic v2; CORRUPT_MESSAGE when the framing is
/// broken (a length or magic Kafka cannot read at all).
pub fn single_batch(records: &[u8]) -> Result<&[u8], ClusterError> {
    // Kafka's batch iterator stops quietly when fewer bytes remain than the batch announces
    // (a cut-off tail is trimmed later), but rejects lengths and magics it cannot read.
    const HEADER_UP_TO_MAGIC: usize = 17;
    const MIN_BATCH_OVERHEAD: i32 = 14;
    let mut batches = Vec::new();
    let mut rest = records;
    while rest.len() >= HEADER_UP_TO_MAGIC {
        let size = i32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]);
        if size < MIN_BATCH_OVERHEAD {
            return Err(ClusterError::new(
                ErrorCode::CorruptMessage,
                format!("Record size {size} is less than the minimum record overhead ({MIN_BATCH_OVERHEAD})"),
            ));
        }
        let total = 12usize.saturating_add(size as usize);
        if rest.len() < total {
            break;
        }
        let magic = rest[16] as i8;
        if !(0..=MAGIC_V2).contains(&magic) {
            return Err(ClusterError::new(
                ErrorCode::CorruptMessage,
                format!("Invalid magic found in record: {magic}"),
            ));
        }
        batches.push((magic, &rest[..total]));
        rest = &rest[total..];
        if batches.len() > 1 {
            break;
        }
    }
    match batches.as_slice() {
        [] => Err(ClusterError::new(
            ErrorCode::InvalidRecord,
            "Produce requests with version 3 and above must have at least one record batch per partition",
        )),
        [(magic, _), ..] if *magic != MAGIC_V2 => Err(ClusterError::new(
            ErrorCode::InvalidRecord,
            "Produce requests with version 3 and above are only allowed to contain record batches with magic version 2",
        )),
        [_, _, ..] => Err(ClusterError::new(
            ErrorCode::InvalidRecord,
            "Produce requests with version 3 and above are only allowed to contain exactly one record batch per partition",
        )),
        [(_, batch)] => Ok(batch),
    }
}

/// The log-level checks of one batch (as found by [`single_batch`]) against `limits` at
/// time `now_ms`. Returns the parsed header.
pub fn validate_for_append(
    batch: &[u8],
    limits: &AppendLimits,
    now_ms: i64,
) -> Result<BatchHeader, ClusterError> {
    validate_for_append_within(batch, limits, now_ms, &mut InflateBudget::per_batch_only())
}

/// [`validate_for_append`], inflating compressed records within what is left of `budget`
/// and charging it what they take. A batch whose records do not inflate or parse is
/// charged all it was allowed (only a hostile producer sends one). A batch stopped by the
/// budget rather than by the limit per batch is POLICY_VIOLATION, at the point where Kafka
/// would read its records (after every header check).
pub fn validate_for_append_within(
    batch: &[u8],
    limits: &AppendLimits,
    now_ms: i64,
    budget: &mut InflateBudget,
) -> Result<BatchHeader, ClusterError> {
    let header = match validate_batch(batch) {
        Ok(header) => header,
        Err(BatchError::CrcMismatch { stored, computed }) => {
            // Kafka checks the base offset and the size before the CRC.
            let header = BatchHeader::parse(batch).map_err(corrupt)?;
            check_offset_and_size(&header, limits)?;
            return Err(ClusterError::new(
                ErrorCode::CorruptMessage,
                format!("Record is corrupt (stored crc = {stored}, computed crc = {computed})"),
            ));
        }
        Err(e) => return Err(corrupt(e)),
    };
    check_offset_and_size(&header, limits)?;
    if header.attributes.compression().is_err() {
        return Err(corrupt(BatchError::UnknownCompression(
            header.attributes.compression_id(),
        )));
    }
    if header.attributes.is_control() {
        return Err(ClusterError::new(
            ErrorCode::InvalidRecord,
            "Clients are not allowed to write control records",
        ));
    }
    let count_from_offsets = i64::from(header.last_offset_delta) + 1;
    if header.record_count <= 0 {
        return Err(ClusterError::new(
            ErrorCode::InvalidRecord,
            format!(
                "Invalid reported count for record batch: {}",
                header.record_count
            ),
        ));
    }
    if count_from_offsets != i64::from(header.record_count) {
        return Err(ClusterError::new(
            ErrorCode::InvalidRecord,
            format!(
                "Inconsistent batch offset range [0, {}] and count of records {}",
                header.last_offset_delta, header.record_count
            ),
        ));
    }
    if header.producer_id >= 0 && header.base_sequence < 0 {
        return Err(ClusterError::new(
            ErrorCode::InvalidRecord,
            format!(
                "Invalid sequence number {} in record batch with producerId {}",
                header.base_sequence, header.producer_id
            ),
        ));
    }
    if header.attributes.is_transactional() && header.producer_id < 0 {
        return Err(ClusterError::new(
            ErrorCode::InvalidRecord,
            "Invalid transactional record batch without a producer id",
        ));
    }
    let invalid_structure = || {
        ClusterError::new(
            ErrorCode::CorruptMessage,
            "Found invalid record structure in the record batch",
        )
    };
    let compressed = header.attributes.compression().ok() != Some(Compression::None);
    let (limit, stopped_by_budget) = budget.next_limit();
    let stamps = match record_stamps_within(&header, batch, limit) {
        Ok((stamps, inflated)) => {
            if compressed {
                budget.charge(inflated);
            }
            if stamps.len() != header.record_count as usize {
                return Err(invalid_structure());
            }
            stamps
        }
        Err(error) => {
            if compressed {
                budget.charge(limit);
            }
            if error == ScanError::Limit && stopped_by_budget {
                return Err(ClusterError::new(
                    ErrorCode::PolicyViolation,
                    format!(
                        "The compressed records of this request inflate to more than the broker allows for one request ({} bytes)",
                        budget.total
                    ),
                ));
            }
            return Err(invalid_structure());
        }
    };
    if !limits.log_append_time {
        check_timestamps(&header, Some(&stamps), limits, now_ms)?;
    }
    Ok(header)
}

fn check_offset_and_size(header: &BatchHeader, limits: &AppendLimits) -> Result<(), ClusterError> {
    if header.base_offset != 0 {
        return Err(ClusterError::new(
            ErrorCode::InvalidRecord,
            format!(
                "The baseOffset of the record batch in the append should be 0, but it is {}",
                header.base_offset
            ),
        ));
    }
    if header.total_len() > limits.max_message_bytes {
        return Err(ClusterError::new(
            ErrorCode::MessageTooLarge,
            format!(
                "The record batch size in the append is {} bytes which exceeds the maximum configured value of {}.",
                header.total_len(),
                limits.max_message_bytes
            ),
        ));
    }
    Ok(())
}

/// CreateTime bounds (KIP-937): every record's timestamp within
/// `[now - before.max.ms, now + after.max.ms]`. Without the records (compressed batches) the
/// header's base and max timestamps stand for them.
fn check_timestamps(
    header: &BatchHeader,
    stamps: Option<&[super::record_scan::RecordStamp]>,
    limits: &AppendLimits,
    now_ms: i64,
) -> Result<(), ClusterError> {
    let earliest = now_ms.saturating_sub(limits.timestamp_before_max_ms);
    let latest = now_ms.saturating_add(limits.timestamp_after_max_ms);
    let bad = |index: i32, timestamp: i64| {
        let mut e = ClusterError::new(
            ErrorCode::InvalidTimestamp,
            format!(
                "Timestamp {timestamp} of message with offset {index} is out of range. The timestamp should be within [{earliest}, {latest}]"
            ),
        );
        e.record_index = Some(index);
        e
    };
    match stamps {
        Some(stamps) => {
            for (index, s) in stamps.iter().enumerate() {
                if s.timestamp < earliest || s.timestamp > latest {
                    return Err(bad(index as i32, s.timestamp));
                }
            }
        }
        None => {
            if header.base_timestamp < earliest || header.base_timestamp > latest {
                return Err(bad(0, header.base_timestamp));
            }
            if header.max_timestamp > latest {
                return Err(bad(0, header.max_timestamp));
            }
        }
    }
    Ok(())
}

fn corrupt(e: BatchError) -> ClusterError {
    ClusterError::new(ErrorCode::CorruptMessage, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::test_batches::{fix_crc, BatchBuilder};

    const NOW: i64 = 1_700_000_000_000;

    fn limits() -> AppendLimits {
        AppendLimits {
            max_message_bytes: 1000,
            log_append_time: false,
            timestamp_before_max_ms: i64::MAX,
            timestamp_after_max_ms: 3_600_000,
        }
    }

    fn code(r: Result<impl std::fmt::Debug, ClusterError>) -> ErrorCode {
        match r {
            Ok(v) => panic!("expected an error, got {v:?}"),
            Err(e) => e.code,
        }
    }

    #[test]
    fn exactly_one_v2_batch_is_required() {
        let one = BatchBuilder::new(NOW).record(b"x").build();
        assert_eq!(single_batch(&one).map(<[u8]>::len), Ok(one.len()));
        assert_eq!(code(single_batch(&[])), ErrorCode::InvalidRecord);
        assert_eq!(code(single_batch(&one[..40])), ErrorCode::InvalidRecord);
        let mut two = one.clone();
        two.extend_from_slice(&one);
        assert_eq!(code(single_batch(&two)), ErrorCode::InvalidRecord);
        let mut v1 = one.clone();
        v1[16] = 1;
        assert_eq!(code(single_batch(&v1)), ErrorCode::InvalidRecord);
        let mut v9 = one.clone();
        v9[16] = 9;
        assert_eq!(code(single_batch(&v9)), ErrorCode::CorruptMessage);
        let mut tiny = one.clone();
        tiny[8..12].copy_from_slice(&3i32.to_be_bytes());
        assert_eq!(code(single_batch(&tiny)), ErrorCode::CorruptMessage);
        // A cut-off tail after a whole batch is ignored, as Kafka trims it.
        let mut tail = one.clone();
        tail.extend_from_slice(&one[..30]);
        assert_eq!(single_batch(&tail).map(<[u8]>::len), Ok(one.len()));
    }

    #[test]
    fn log_checks_follow_kafkas_order() {
        let ok = BatchBuilder::new(NOW).record(b"x").build();
        assert!(validate_for_append(&ok, &limits(), NOW).is_ok());

        let mut bad_crc = ok.clone();
        bad_crc[65] ^= 0xff;
        assert_eq!(
            code(validate_for_append(&bad_crc, &limits(), NOW)),
            ErrorCode::CorruptMessage
        );

        let big = BatchBuilder::new(NOW).records(10, 200).build();
        assert_eq!(
            code(validate_for_append(&big, &limits(), NOW)),
            ErrorCode::MessageTooLarge
        );
        // Too large wins over a bad CRC, as in Kafka.
        let mut big_bad = big.clone();
        big_bad[100] ^= 1;
        assert_eq!(
            code(validate_for_append(&big_bad, &limits(), NOW)),
            ErrorCode::MessageTooLarge
        );

        let mut offset = ok.clone();
        offset[0..8].copy_from_slice(&5i64.to_be_bytes());
        assert_eq!(
            code(validate_for_append(&offset, &limits(), NOW)),
            ErrorCode::InvalidRecord
        );

        let mut empty = BatchBuilder::new(NOW).build();
        empty[57..61].copy_from_slice(&0i32.to_be_bytes());
        fix_crc(&mut empty);
        assert_eq!(
            code(validate_for_append(&empty, &limits(), NOW)),
            ErrorCode::InvalidRecord
        );

        let mut control = ok.clone();
        control[22] |= 1 << 5;
        fix_crc(&mut control);
        assert_eq!(
            code(validate_for_append(&control, &limits(), NOW)),
            ErrorCode::InvalidRecord
        );

        let orphan = BatchBuilder::new(NOW).record(b"x").transactional().build();
        assert_eq!(
            code(validate_for_append(&orphan, &limits(), NOW)),
            ErrorCode::InvalidRecord
        );
        let transactional = BatchBuilder::new(NOW)
            .record(b"x")
            .producer(7, 0, 0)
            .transactional()
            .build();
        assert!(validate_for_append(&transactional, &limits(), NOW).is_ok());

        let no_sequence = BatchBuilder::new(NOW)
            .record(b"x")
            .producer(7, 0, -1)
            .build();
        assert_eq!(
            code(validate_for_append(&no_sequence, &limits(), NOW)),
            ErrorCode::InvalidRecord
        );
    }

    #[test]
    fn create_time_must_be_within_bounds() {
        let future = BatchBuilder::new(NOW)
            .record(b"a")
            .record_at(NOW + 3_600_001, b"b")
            .build();
        let err = validate_for_append(&future, &limits(), NOW).expect_err("too far ahead");
        assert_eq!(
            (err.code, err.record_index),
            (ErrorCode::InvalidTimestamp, Some(1))
        );
        let mut lat = limits();
        lat.log_append_time = true;
        assert!(validate_for_append(&future, &lat, NOW).is_ok());
    }
}
