//! The log of one partition: whole record batches, byte-exact as the producer sent them
//! except for the fields a broker rewrites (base offset, partition leader epoch, and the
//! timestamp for log-append-time topics).
//!
//! Replication is instant (every replica shares this one log), so the high watermark is the
//! log end offset, and without transactions the last stable offset is the high watermark.
//! The log also holds its producers' state ([`ProducerStates`]): like the log, it survives
//! leader changes and broker restarts.

use bytes::{Bytes, BytesMut};
use franzy::proto::batch_header::{
    set_base_offset, set_log_append_time, set_partition_leader_epoch, BatchHeader,
};
use franzy::proto::ErrorCode;

use super::error::ClusterError;
use super::leader_epochs::LeaderEpochs;
use super::producer_state::{ProducerStates, SequenceCheck};
use super::record_scan::record_stamps;

/// One stored batch and its parsed header (kept in step with the bytes).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredBatch {
    header: BatchHeader,
    bytes: Bytes,
}

impl StoredBatch {
    /// The header as stored (offsets and epoch assigned).
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }
    /// The whole batch as a fetch returns it.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }
    /// Offset of the first record.
    pub fn base_offset(&self) -> i64 {
        self.header.base_offset
    }
    /// Offset of the last record.
    pub fn last_offset(&self) -> i64 {
        self.header.last_offset()
    }
}

/// What an append did, for the produce response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset assigned to the first record.
    pub base_offset: i64,
    /// Offset assigned to the last record.
    pub last_offset: i64,
    /// The broker's timestamp for log-append-time topics, else -1.
    pub log_append_time_ms: i64,
    /// The log start offset after the append.
    pub log_start_offset: i64,
    /// The batch was a retry of one already in the log (same producer, epoch and
    /// sequences): nothing was appended, and the offsets and time are the original's.
    pub duplicate: bool,
}

/// A timestamp lookup's answer (ListOffsets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampOffset {
    /// The record's timestamp.
    pub timestamp: i64,
    /// The record's offset.
    pub offset: i64,
    /// The leader epoch of the batch holding it, or -1.
    pub leader_epoch: i32,
}

/// The log of one partition.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PartitionLog {
    batches: Vec<StoredBatch>,
    log_start_offset: i64,
    log_end_offset: i64,
    epochs: LeaderEpochs,
    producers: ProducerStates,
    /// Room for the next batches: they are copied in one after the other and split off,
    /// sharing one allocation (see [`PartitionLog::append`]). Always empty, only capacity.
    segment: BytesMut,
    /// Bytes appended so far, which size the next segment.
    appended: usize,
}

/// The smallest and largest segment a log allocates at once.
const MIN_SEGMENT: usize = 16 * 1024;
const MAX_SEGMENT: usize = 1024 * 1024;

impl PartitionLog {
    /// An empty log whose first leader epoch is `epoch`.
    pub fn new(epoch: i32) -> Self {
        let mut log = Self::default();
        log.epochs.assign(epoch, 0);
        log
    }

    /// The first offset still readable.
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    /// The offset the next record will get.
    pub fn log_end_offset(&self) -> i64 {
        self.log_end_offset
    }

    /// The last offset consumers may read, plus one: the log end offset, since replication is
    /// instant.
    pub fn high_watermark(&self) -> i64 {
        self.log_end_offset
    }

    /// The read_committed bound: the high watermark until transactions exist.
    pub fn last_stable_offset(&self) -> i64 {
        self.high_watermark()
    }

    /// The stored batches, oldest first. The first may start before the log start offset
    /// (DeleteRecords moves the start inside a batch).
    pub fn batches(&self) -> &[StoredBatch] {
        &self.batches
    }

    /// The leader epoch history.
    pub fn leader_epochs(&self) -> &LeaderEpochs {
        &self.epochs
    }

    /// The idempotent producers that appended here: epochs and last batches.
    pub fn producer_states(&self) -> &ProducerStates {
        &self.producers
    }

    /// Records that a new leader epoch begins at the log end offset.
    pub(crate) fn begin_epoch(&mut self, epoch: i32) {
        self.epochs.assign(epoch, self.log_end_offset);
    }

    /// Appends a validated batch from a client: checks its producer's epoch and sequence
    /// (a duplicate is answered with the original's offsets and not appended), assigns
    /// offsets from the log end, stamps `leader_epoch` and, when `log_append_time` is given,
    /// the broker's timestamp. Producer errors carry the log start offset and Kafka's
    /// logged text, not a response message, as Kafka answers them.
    pub(crate) fn append(
        &mut self,
        batch: &[u8],
        leader_epoch: i32,
        log_append_time: Option<i64>,
    ) -> Result<AppendInfo, ClusterError> {
        let sent = BatchHeader::parse(batch)
            .map_err(|e| ClusterError::new(ErrorCode::CorruptMessage, e.to_string()))?;
        match self.producers.check(&sent) {
            Ok(SequenceCheck::Append) => {}
            Ok(SequenceCheck::Duplicate(original)) => {
                // Kafka answers with the original's max timestamp as the log-append time,
                // whatever the topic's timestamp type.
                return Ok(AppendInfo {
                    base_offset: original.first_offset,
                    last_offset: original.last_offset,
                    log_append_time_ms: original.timestamp,
                    log_start_offset: self.log_start_offset,
                    duplicate: true,
                });
            }
            Err(e) => {
                return Err(
                    ClusterError::logged(e.code(), e.describe(self.log_end_offset))
                        .with_log_start_offset(self.log_start_offset),
                )
            }
        }
        let mut bytes = self.store(batch);
        let base_offset = self.log_end_offset;
        set_base_offset(&mut bytes, base_offset);
        set_partition_leader_epoch(&mut bytes, leader_epoch);
        if let Some(now) = log_append_time {
            set_log_append_time(&mut bytes, now);
        }
        let header = BatchHeader::parse(&bytes)
            .map_err(|e| ClusterError::new(ErrorCode::CorruptMessage, e.to_string()))?;
        let info = AppendInfo {
            base_offset,
            last_offset: header.last_offset(),
            log_append_time_ms: log_append_time.unwrap_or(-1),
            log_start_offset: self.log_start_offset,
            duplicate: false,
        };
        self.producers.record(&header);
        self.log_end_offset = header.next_offset();
        self.batches.push(StoredBatch {
            header,
            bytes: bytes.freeze(),
        });
        Ok(info)
    }

    /// A copy of `batch` in the log's current segment, a new one when it has no room: as
    /// large as what the log holds, between 16 KiB and 1 MiB (at least the batch). One
    /// allocation per segment instead of one per batch cost the allocator's growth (a
    /// `mprotect` per 128 KiB of heap) a tenth of the broker's time under a steady produce
    /// load; a segment is freed once its last batch is.
    fn store(&mut self, batch: &[u8]) -> BytesMut {
        if self.segment.capacity() < batch.len() {
            let size = self
                .appended
                .clamp(MIN_SEGMENT, MAX_SEGMENT)
                .max(batch.len());
            self.segment = BytesMut::with_capacity(size);
        }
        self.appended = self.appended.saturating_add(batch.len());
        self.segment.extend_from_slice(batch);
        self.segment.split()
    }

    /// The bytes a fetch at `offset` returns: from the start of the batch holding `offset`,
    /// at most `max_bytes`, cut wherever that limit falls (possibly inside a batch, as Kafka
    /// cuts a segment slice). With `min_one_batch` (KIP-74) the first batch is returned
    /// whole even when larger than the limit. OFFSET_OUT_OF_RANGE outside
    /// `[log start, high watermark]`.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<Bytes, ErrorCode> {
        if offset < self.log_start_offset || offset > self.high_watermark() {
            return Err(ErrorCode::OffsetOutOfRange);
        }
        let first = self.batches.partition_point(|b| b.last_offset() < offset);
        let batches = &self.batches[first..];
        let Some(head) = batches.first() else {
            return Ok(Bytes::new());
        };
        let limit = if min_one_batch {
            max_bytes.max(head.bytes.len())
        } else {
            max_bytes
        };
        if head.bytes.len() >= limit {
            return Ok(head.bytes.slice(..limit));
        }
        // Only as far as the limit: summing the whole rest of the log made every fetch from
        // the start of a long log cost as much as the log.
        let mut available = 0usize;
        for batch in batches {
            available += batch.bytes.len();
            if available >= limit {
                break;
            }
        }
        let mut out = BytesMut::with_capacity(available.min(limit));
        for batch in batches {
            let room = limit - out.len();
            if room == 0 {
                break;
            }
            let take = batch.bytes.len().min(room);
            out.extend_from_slice(&batch.bytes[..take]);
        }
        Ok(out.freeze())
    }

    /// The first record with a timestamp at or after `target` (ListOffsets by timestamp).
    /// Records of compressed create-time batches are not opened: such a batch answers with
    /// its first offset and its max timestamp.
    pub fn offset_for_timestamp(&self, target: i64) -> Option<TimestampOffset> {
        let batch = self
            .readable_batches()
            .find(|b| b.header.max_timestamp >= target)?;
        self.find_in_batch(batch, |timestamp| timestamp >= target)
    }

    /// The record with the largest timestamp, the earliest on ties (ListOffsets -3, KIP-734).
    pub fn max_timestamp_offset(&self) -> Option<TimestampOffset> {
        let mut best: Option<&StoredBatch> = None;
        for batch in self.readable_batches() {
            if best.is_none_or(|b| batch.header.max_timestamp > b.header.max_timestamp) {
                best = Some(batch);
            }
        }
        let batch = best?;
        let max = batch.header.max_timestamp;
        self.find_in_batch(batch, |timestamp| timestamp == max)
    }

    /// Moves the log start offset to `offset` (DeleteRecords); -1 means the high watermark.
    /// Returns the new log start offset.
    pub(crate) fn delete_records_before(&mut self, offset: i64) -> Result<i64, ErrorCode> {
        let offset = if offset == -1 {
            self.high_watermark()
        } else {
            offset
        };
        if offset < 0 || offset > self.high_watermark() {
            return Err(ErrorCode::OffsetOutOfRange);
        }
        if offset > self.log_start_offset {
            self.log_start_offset = offset;
            self.batches.retain(|b| b.last_offset() >= offset);
            self.epochs.truncate_from_start(offset);
        }
        Ok(self.log_start_offset)
    }

    fn readable_batches(&self) -> impl Iterator<Item = &StoredBatch> {
        let start = self.log_start_offset;
        self.batches
            .iter()
            .filter(move |b| b.last_offset() >= start)
    }

    fn find_in_batch(
        &self,
        batch: &StoredBatch,
        wanted: impl Fn(i64) -> bool,
    ) -> Option<TimestampOffset> {
        let epoch = batch.header.partition_leader_epoch;
        let at = |timestamp, offset| TimestampOffset {
            timestamp,
            offset,
            leader_epoch: epoch,
        };
        match record_stamps(&batch.header, &batch.bytes) {
            Some(stamps) => stamps
                .iter()
                .find(|s| s.offset >= self.log_start_offset && wanted(s.timestamp))
                .map(|s| at(s.timestamp, s.offset)),
            None => Some(at(
                batch.header.max_timestamp,
                batch.base_offset().max(self.log_start_offset),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::test_batches::BatchBuilder;
    use franzy::proto::batch_header::{validate_batch, Batches};

    fn log_with(batches: &[Vec<u8>]) -> PartitionLog {
        let mut log = PartitionLog::new(0);
        for b in batches {
            log.append(b, 0, None).expect("append");
        }
        log
    }

    #[test]
    fn offsets_run_on_across_batches_and_bytes_stay_exact() {
        let a = BatchBuilder::new(10).records(3, 5).build();
        let b = BatchBuilder::new(20).records(2, 5).build();
        let mut log = PartitionLog::new(4);
        let first = log.append(&a, 4, None).expect("append a");
        let second = log.append(&b, 4, None).expect("append b");
        assert_eq!((first.base_offset, first.last_offset), (0, 2));
        assert_eq!((second.base_offset, second.last_offset), (3, 4));
        assert_eq!((log.log_end_offset(), log.high_watermark()), (5, 5));
        let stored = log.batches()[1].bytes();
        // Only base offset and leader epoch differ; the CRC still holds.
        assert_eq!(stored[16..], b[16..]);
        assert_eq!(&stored[0..8], &3i64.to_be_bytes());
        assert_eq!(&stored[12..16], &4i32.to_be_bytes());
        assert!(validate_batch(stored).is_ok());
    }

    #[test]
    fn log_append_time_rewrites_the_timestamp() {
        let a = BatchBuilder::new(10).records(2, 1).build();
        let mut log = PartitionLog::new(0);
        let info = log.append(&a, 0, Some(777)).expect("append");
        assert_eq!(info.log_append_time_ms, 777);
        let header = validate_batch(log.batches()[0].bytes()).expect("crc recomputed");
        assert!(header.attributes.is_log_append_time());
        assert_eq!(header.max_timestamp, 777);
        let found = log.offset_for_timestamp(700).expect("found");
        assert_eq!((found.offset, found.timestamp), (0, 777));
    }

    #[test]
    fn reads_cut_at_the_limit_but_return_one_batch_whole() {
        let a = BatchBuilder::new(0).records(1, 100).build();
        let b = BatchBuilder::new(0).records(1, 100).build();
        let log = log_with(&[a.clone(), b.clone()]);
        let whole = log.read(0, usize::MAX, false).expect("read");
        assert_eq!(whole.len(), a.len() + b.len());
        let one = log.read(0, 10, true).expect("read");
        assert_eq!(one.len(), a.len());
        let cut = log.read(0, a.len() + 20, false).expect("read");
        assert_eq!(cut.len(), a.len() + 20);
        let mut it = Batches::new(&cut);
        assert_eq!(it.by_ref().count(), 1);
        assert!(it.truncated_tail());
        assert_eq!(
            log.read(1, 1000, true).as_ref(),
            Ok(log.batches()[1].bytes())
        );
        assert_eq!(log.read(2, 1000, true), Ok(Bytes::new()));
        assert_eq!(log.read(3, 1000, true), Err(ErrorCode::OffsetOutOfRange));
        assert_eq!(log.read(-1, 1000, true), Err(ErrorCode::OffsetOutOfRange));
    }

    #[test]
    fn timestamp_lookup_finds_the_first_record_at_or_after() {
        // Every codec: compressed batches are opened, so the answer is record-exact.
        for codec in 0..=4 {
            let a = BatchBuilder::new(0)
                .compression_id(codec)
                .record_at(100, b"a")
                .record_at(300, b"b")
                .record_at(200, b"c")
                .build();
            let b = BatchBuilder::new(0)
                .compression_id(codec)
                .record_at(250, b"d")
                .record_at(400, b"e")
                .build();
            let log = log_with(&[a, b]);
            let at = |t| log.offset_for_timestamp(t).map(|f| (f.offset, f.timestamp));
            assert_eq!(at(0), Some((0, 100)), "codec {codec}");
            assert_eq!(at(150), Some((1, 300)), "codec {codec}");
            assert_eq!(at(260), Some((1, 300)), "codec {codec}");
            assert_eq!(at(301), Some((4, 400)), "codec {codec}");
            assert_eq!(at(401), None, "codec {codec}");
            let max = log.max_timestamp_offset().expect("max");
            assert_eq!((max.offset, max.timestamp), (4, 400), "codec {codec}");
        }
    }

    #[test]
    fn idempotent_appends_are_checked_before_offsets_are_assigned() {
        let batch = |sequence| {
            BatchBuilder::new(10)
                .records(2, 1)
                .producer(1000, 0, sequence)
                .build()
        };
        let mut log = PartitionLog::new(0);
        let first = log.append(&batch(0), 0, Some(50)).expect("append");
        log.append(&batch(2), 0, Some(60)).expect("append");
        assert_eq!(log.delete_records_before(1), Ok(1));
        let again = log.append(&batch(0), 0, Some(70)).expect("duplicate");
        assert!(again.duplicate && !first.duplicate);
        assert_eq!(
            (
                again.base_offset,
                again.last_offset,
                again.log_append_time_ms
            ),
            (0, 1, 50)
        );
        assert_eq!(again.log_start_offset, 1);
        let gap = log.append(&batch(5), 0, None).expect_err("out of order");
        assert_eq!(gap.code, ErrorCode::OutOfOrderSequenceNumber);
        assert_eq!((gap.message, gap.log_start_offset), (None, Some(1)));
        assert!(gap.detail.is_some_and(|d| d.contains("at offset 4")));
        assert_eq!(log.log_end_offset(), 4);
        let state = log.producer_states().entry(1000).expect("state");
        assert_eq!((state.epoch(), state.last_sequence()), (0, 3));
    }

    #[test]
    fn delete_records_moves_the_start_and_drops_whole_batches() {
        let log_batches: Vec<_> = (0..3)
            .map(|_| BatchBuilder::new(0).records(2, 1).build())
            .collect();
        let mut log = log_with(&log_batches);
        assert_eq!(log.delete_records_before(3), Ok(3));
        assert_eq!(log.batches().len(), 2);
        assert_eq!(log.read(2, 100, true), Err(ErrorCode::OffsetOutOfRange));
        assert_eq!(
            log.read(3, 10, true).map(|b| b.len()),
            Ok(log.batches()[0].bytes().len())
        );
        assert_eq!(log.delete_records_before(1), Ok(3));
        assert_eq!(
            log.delete_records_before(7),
            Err(ErrorCode::OffsetOutOfRange)
        );
        assert_eq!(log.delete_records_before(-1), Ok(6));
        assert!(log.batches().is_empty());
    }
}
