//! The log of one partition: whole record batches, byte-exact as the producer sent them
//! except for the fields a broker rewrites (base offset, partition leader epoch, and the
//! timestamp for log-append-time topics).
//!
//! Replication is instant (every replica shares this one log), so the high watermark is the
//! log end offset. The log also holds its producers' state ([`ProducerStates`]): like the
//! log, it survives leader changes and broker restarts.
//!
//! Transactions (KIP-98), as Kafka's `UnifiedLog` and `ProducerStateManager` keep them:
//!
//! - every producer's open transaction is known by its first offset ([`PartitionLog::append`]
//!   records it), and the **last stable offset** is the smallest such first offset, or the
//!   high watermark when none is open (never below the log start offset);
//! - a **transaction marker** ([`PartitionLog::append_marker`]) is a control batch of one
//!   record, as Kafka's `MemoryRecords.withEndTransactionMarker` writes it: key version 0
//!   and type (0 abort, 1 commit), value version 0 and the coordinator epoch; it ends its
//!   producer's transaction here;
//! - an aborted transaction that wrote here goes into the **aborted index** (Kafka's
//!   `TransactionIndex`, `AbortedTxn`: producer id, first offset, marker offset, and the
//!   last stable offset after it), which read_committed fetches read
//!   ([`PartitionLog::aborted_transactions`]). The index is bounded: past its cap the
//!   oldest entries go first, and DeleteRecords drops the entries wholly before the new
//!   log start, as Kafka drops them with their segments.

use std::collections::{BTreeMap, VecDeque};

use bytes::{Bytes, BytesMut};
use franzy::proto::batch_header::{
    set_base_offset, set_log_append_time, set_partition_leader_epoch, BatchHeader,
};
use franzy::proto::record_batch::{ControlRecord, ControlRecordKind, RecordBatch};
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

/// An aborted transaction in a partition's aborted index (Kafka's `AbortedTxn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTransaction {
    /// The producer whose records from `first_offset` on, until the marker, were aborted.
    pub producer_id: i64,
    /// Offset of the transaction's first batch here.
    pub first_offset: i64,
    /// Offset of the abort marker.
    pub last_offset: i64,
    /// The last stable offset once the marker was written: no transaction aborted after
    /// this one began before it, which lets a search stop early.
    pub last_stable_offset: i64,
}

/// A transaction marker to write: which producer's transaction ends, how, and who says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransactionMarker {
    /// The producer whose transaction ends.
    pub producer_id: i64,
    /// The producer epoch the marker carries (a bumped epoch fences older ones).
    pub producer_epoch: i16,
    /// Commit (true) or abort.
    pub commit: bool,
    /// The epoch of the coordinator writing it (the leader epoch of its
    /// `__transaction_state` partition).
    pub coordinator_epoch: i32,
}

impl TransactionMarker {
    /// The control batch Kafka writes for this marker at `timestamp` (base offset 0 and
    /// leader epoch -1, which the append stamps): one record, key `version 0, type`,
    /// value `version 0, coordinator epoch`; transactional, control, no sequence.
    pub fn batch(&self, timestamp: i64) -> Result<Bytes, ClusterError> {
        let kind = if self.commit {
            ControlRecordKind::Commit
        } else {
            ControlRecordKind::Abort
        };
        RecordBatch::transaction_marker(
            ControlRecord::new(kind, self.coordinator_epoch),
            self.producer_id,
            self.producer_epoch,
            timestamp,
        )
        .encode()
        .map_err(|e| ClusterError::new(ErrorCode::UnknownServerError, e.to_string()))
    }
}

/// What a bounded read returned: the bytes, and the offset just past the last batch that
/// (partly) made it in, which bounds the aborted transactions a read_committed fetch
/// returns with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRead {
    /// Whole batches, the last possibly cut.
    pub records: Bytes,
    /// The next offset after the last batch whose bytes were returned, or the fetch offset
    /// when none were.
    pub upper_bound_offset: i64,
}

/// Default cap of a partition's aborted index (see [`PartitionLog::append_marker`]):
/// 100,000 entries, 3.2 MiB.
pub const DEFAULT_MAX_ABORTED_TRANSACTIONS: usize = 100_000;

/// The log of one partition.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PartitionLog {
    batches: Vec<StoredBatch>,
    log_start_offset: i64,
    log_end_offset: i64,
    epochs: LeaderEpochs,
    producers: ProducerStates,
    /// Open transactions by their first offset here: producer id (Kafka's `ongoingTxns`).
    ongoing: BTreeMap<i64, i64>,
    /// Aborted transactions in the order their markers were written (so by last offset).
    aborted: VecDeque<AbortedTransaction>,
    /// Room for the next batches: they are copied in one after the other and split off,
    /// sharing one allocation (see [`PartitionLog::append`]). Always empty, only capacity.
    segment: BytesMut,
    /// Bytes appended so far, which size the next segment.
    appended: usize,
    /// Bytes of the batches stored now, kept in step with `batches` (DescribeLogDirs asks
    /// for it per partition; adding up every batch there grew with the log).
    stored_bytes: usize,
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

    /// The read_committed bound: the first offset of the earliest open transaction, or the
    /// high watermark when none is open; never below the log start offset (Kafka's
    /// `UnifiedLog.lastStableOffset`, with the first unstable offset kept at or above the
    /// log start).
    pub fn last_stable_offset(&self) -> i64 {
        let first_unstable = self
            .ongoing
            .first_key_value()
            .map_or(i64::MAX, |(offset, _)| *offset);
        first_unstable
            .min(self.high_watermark())
            .max(self.log_start_offset)
    }

    /// The open transactions here: (first offset, producer id), earliest first.
    pub fn ongoing_transactions(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.ongoing
            .iter()
            .map(|(offset, producer)| (*offset, *producer))
    }

    /// The aborted index, oldest first.
    pub fn aborted_index(&self) -> impl ExactSizeIterator<Item = &AbortedTransaction> {
        self.aborted.iter()
    }

    /// The aborted transactions a read_committed fetch at `fetch_offset` that returned
    /// records up to `upper_bound_offset` must report, as Kafka's
    /// `TransactionIndex.collectAbortedTxns` finds them: those whose marker is at or after
    /// the fetch offset and that began before the upper bound. Linear in what it looks at:
    /// it starts at the first marker at or after the fetch offset and stops at the first
    /// entry whose last stable offset reaches the upper bound (no later entry can begin
    /// before it).
    pub fn aborted_transactions(
        &self,
        fetch_offset: i64,
        upper_bound_offset: i64,
    ) -> Vec<AbortedTransaction> {
        let start = self
            .aborted
            .partition_point(|a| a.last_offset < fetch_offset);
        let mut out = Vec::new();
        for aborted in self.aborted.range(start..) {
            if aborted.first_offset < upper_bound_offset {
                out.push(*aborted);
            }
            if aborted.last_stable_offset >= upper_bound_offset {
                break;
            }
        }
        out
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
    /// (a duplicate is answered with the original's offsets and not appended) and, for a
    /// transactional batch, that its transaction is open here or was `verified` with the
    /// coordinator; assigns offsets from the log end, stamps `leader_epoch` and, when
    /// `log_append_time` is given, the broker's timestamp. A transactional batch that opens
    /// its producer's transaction holds the last stable offset at its base offset until the
    /// marker. Producer errors carry the log start offset and Kafka's logged text, not a
    /// response message, as Kafka answers them.
    pub(crate) fn append(
        &mut self,
        batch: &[u8],
        leader_epoch: i32,
        log_append_time: Option<i64>,
        verified: bool,
    ) -> Result<AppendInfo, ClusterError> {
        let sent = BatchHeader::parse(batch)
            .map_err(|e| ClusterError::new(ErrorCode::CorruptMessage, e.to_string()))?;
        match self.producers.check(&sent, verified) {
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
        let (header, bytes) = self.stamp(batch, leader_epoch, log_append_time)?;
        let info = AppendInfo {
            base_offset: header.base_offset,
            last_offset: header.last_offset(),
            log_append_time_ms: log_append_time.unwrap_or(-1),
            log_start_offset: self.log_start_offset,
            duplicate: false,
        };
        if let Some(first_offset) = self.producers.record(&header) {
            self.ongoing.insert(first_offset, header.producer_id);
        }
        self.push(header, bytes);
        Ok(info)
    }

    /// Appends a transaction marker at `timestamp` (the log-append time instead when
    /// given), as a partition leader does for the coordinator's `WriteTxnMarkers`: the
    /// producer's epoch and the coordinator's epoch are checked
    /// (INVALID_PRODUCER_EPOCH, TRANSACTION_COORDINATOR_FENCED), the control batch is
    /// appended, the producer's transaction here ends (the last stable offset moves on),
    /// and an aborted transaction that wrote here enters the aborted index, which keeps at
    /// most `max_aborted` entries (the oldest go first).
    pub(crate) fn append_marker(
        &mut self,
        marker: &TransactionMarker,
        leader_epoch: i32,
        timestamp: i64,
        log_append_time: Option<i64>,
        max_aborted: usize,
    ) -> Result<AppendInfo, ClusterError> {
        self.producers
            .check_marker(
                marker.producer_id,
                marker.producer_epoch,
                marker.coordinator_epoch,
            )
            .map_err(|e| {
                ClusterError::logged(e.code(), e.describe(self.log_end_offset))
                    .with_log_start_offset(self.log_start_offset)
            })?;
        let batch = marker.batch(timestamp)?;
        let (header, bytes) = self.stamp(&batch, leader_epoch, log_append_time)?;
        let info = AppendInfo {
            base_offset: header.base_offset,
            last_offset: header.last_offset(),
            log_append_time_ms: log_append_time.unwrap_or(-1),
            log_start_offset: self.log_start_offset,
            duplicate: false,
        };
        let ended = self.producers.complete_transaction(
            marker.producer_id,
            marker.producer_epoch,
            marker.coordinator_epoch,
        );
        if let Some(first_offset) = ended {
            self.ongoing.remove(&first_offset);
            if !marker.commit && max_aborted > 0 {
                // Kafka's `ProducerStateManager.lastStableOffset(completedTxn)`: the next
                // open transaction's first offset, or just past the marker.
                let last_stable_offset = self
                    .ongoing
                    .first_key_value()
                    .map_or(header.base_offset + 1, |(offset, _)| *offset);
                while self.aborted.len() >= max_aborted {
                    self.aborted.pop_front();
                }
                self.aborted.push_back(AbortedTransaction {
                    producer_id: marker.producer_id,
                    first_offset,
                    last_offset: header.base_offset,
                    last_stable_offset,
                });
            }
        }
        self.push(header, bytes);
        Ok(info)
    }

    /// Copies `batch` into the log's segment with its offsets from the log end, `leader_epoch`
    /// and, when given, the log-append time stamped in.
    fn stamp(
        &mut self,
        batch: &[u8],
        leader_epoch: i32,
        log_append_time: Option<i64>,
    ) -> Result<(BatchHeader, BytesMut), ClusterError> {
        let mut bytes = self.store(batch);
        set_base_offset(&mut bytes, self.log_end_offset);
        set_partition_leader_epoch(&mut bytes, leader_epoch);
        if let Some(now) = log_append_time {
            set_log_append_time(&mut bytes, now);
        }
        let header = BatchHeader::parse(&bytes)
            .map_err(|e| ClusterError::new(ErrorCode::CorruptMessage, e.to_string()))?;
        Ok((header, bytes))
    }

    /// Adds a stamped batch at the log end.
    fn push(&mut self, header: BatchHeader, bytes: BytesMut) {
        self.log_end_offset = header.next_offset();
        self.stored_bytes += bytes.len();
        self.batches.push(StoredBatch {
            header,
            bytes: bytes.freeze(),
        });
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
        self.read_to(offset, max_bytes, min_one_batch, self.high_watermark())
            .map(|read| read.records)
    }

    /// [`PartitionLog::read`], returning only batches that begin before `max_offset` (the
    /// high watermark, or the last stable offset for read_committed, which is always a
    /// batch boundary): a fetch at or past it returns nothing, as Kafka's
    /// `LocalLog.read` with its `maxOffsetMetadata`. Also says how far the returned
    /// batches reach, for [`PartitionLog::aborted_transactions`].
    pub fn read_to(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
        max_offset: i64,
    ) -> Result<LogRead, ErrorCode> {
        if offset < self.log_start_offset || offset > self.high_watermark() {
            return Err(ErrorCode::OffsetOutOfRange);
        }
        let empty = LogRead {
            records: Bytes::new(),
            upper_bound_offset: offset,
        };
        if offset >= max_offset {
            return Ok(empty);
        }
        let first = self.batches.partition_point(|b| b.last_offset() < offset);
        let end = self
            .batches
            .partition_point(|b| b.base_offset() < max_offset);
        let batches = self.batches.get(first..end).unwrap_or_default();
        let Some(head) = batches.first() else {
            return Ok(empty);
        };
        let limit = if min_one_batch {
            max_bytes.max(head.bytes.len())
        } else {
            max_bytes
        };
        if limit == 0 {
            return Ok(empty);
        }
        if head.bytes.len() >= limit {
            return Ok(LogRead {
                records: head.bytes.slice(..limit),
                upper_bound_offset: head.header.next_offset(),
            });
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
        let mut upper_bound_offset = offset;
        for batch in batches {
            let room = limit - out.len();
            if room == 0 {
                break;
            }
            let take = batch.bytes.len().min(room);
            out.extend_from_slice(&batch.bytes[..take]);
            upper_bound_offset = batch.header.next_offset();
        }
        Ok(LogRead {
            records: out.freeze(),
            upper_bound_offset,
        })
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
            self.stored_bytes = self.batches.iter().map(|b| b.bytes.len()).sum();
            self.epochs.truncate_from_start(offset);
            while self.aborted.front().is_some_and(|a| a.last_offset < offset) {
                self.aborted.pop_front();
            }
        }
        Ok(self.log_start_offset)
    }

    /// Bytes of the batches stored (DescribeLogDirs' partition size).
    pub fn size_bytes(&self) -> i64 {
        i64::try_from(self.stored_bytes).unwrap_or(i64::MAX)
    }

    /// Breaks the log on purpose, right after an append (see [`super::plant`]; for testing
    /// checkers only): copies the last batch after itself, drops it, or swaps it with the
    /// one before, rewriting base offsets so that offsets still run on.
    pub(crate) fn apply_planted(&mut self, bug: super::plant::PlantedBug) {
        use super::plant::PlantedBug;
        let restamp = |batch: &StoredBatch, base: i64| -> Option<StoredBatch> {
            let mut bytes = BytesMut::from(&batch.bytes[..]);
            set_base_offset(&mut bytes, base);
            let header = BatchHeader::parse(&bytes).ok()?;
            Some(StoredBatch {
                header,
                bytes: bytes.freeze(),
            })
        };
        match bug {
            PlantedBug::DuplicateAppend => {
                let copy = self
                    .batches
                    .last()
                    .and_then(|last| restamp(last, self.log_end_offset));
                if let Some(copy) = copy {
                    self.log_end_offset = copy.header.next_offset();
                    self.stored_bytes += copy.bytes.len();
                    self.batches.push(copy);
                }
            }
            PlantedBug::DropAcked => {
                if let Some(last) = self.batches.pop() {
                    self.log_end_offset = last.base_offset();
                    self.stored_bytes -= last.bytes.len();
                }
            }
            PlantedBug::Reorder => {
                let n = self.batches.len();
                if n < 2 {
                    return;
                }
                let (before, last) = (&self.batches[n - 2], &self.batches[n - 1]);
                let base = before.base_offset();
                let Some(first) = restamp(last, base) else {
                    return;
                };
                let Some(second) = restamp(before, first.header.next_offset()) else {
                    return;
                };
                self.batches[n - 2] = first;
                self.batches[n - 1] = second;
            }
            // Acts on markers, in `Cluster::append_marker`.
            PlantedBug::LeakAborted => {}
        }
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
            log.append(b, 0, None, false).expect("append");
        }
        log
    }

    #[test]
    fn offsets_run_on_across_batches_and_bytes_stay_exact() {
        let a = BatchBuilder::new(10).records(3, 5).build();
        let b = BatchBuilder::new(20).records(2, 5).build();
        let mut log = PartitionLog::new(4);
        let first = log.append(&a, 4, None, false).expect("append a");
        let second = log.append(&b, 4, None, false).expect("append b");
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
        let info = log.append(&a, 0, Some(777), false).expect("append");
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
        let first = log.append(&batch(0), 0, Some(50), false).expect("append");
        log.append(&batch(2), 0, Some(60), false).expect("append");
        assert_eq!(log.delete_records_before(1), Ok(1));
        let again = log
            .append(&batch(0), 0, Some(70), false)
            .expect("duplicate");
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
        let gap = log
            .append(&batch(5), 0, None, false)
            .expect_err("out of order");
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

    #[test]
    fn the_stored_size_follows_appends_and_deletions() {
        let sizes = [1usize, 7, 3];
        let log_batches: Vec<_> = sizes
            .iter()
            .map(|&n| BatchBuilder::new(0).records(2, n).build())
            .collect();
        let mut log = log_with(&log_batches);
        let sum = |log: &PartitionLog| -> i64 {
            log.batches().iter().map(|b| b.bytes().len() as i64).sum()
        };
        assert_eq!(
            log.size_bytes(),
            log_batches.iter().map(|b| b.len() as i64).sum::<i64>()
        );
        assert_eq!(log.delete_records_before(2), Ok(2));
        assert_eq!(log.size_bytes(), sum(&log));
        assert_eq!(log.delete_records_before(-1), Ok(6));
        assert_eq!(log.size_bytes(), 0);
    }

    fn txn_batch(producer: i64, sequence: i32, records: usize) -> Vec<u8> {
        BatchBuilder::new(10)
            .records(records, 1)
            .producer(producer, 0, sequence)
            .transactional()
            .build()
    }

    fn marker(producer: i64, commit: bool) -> TransactionMarker {
        TransactionMarker {
            producer_id: producer,
            producer_epoch: 0,
            commit,
            coordinator_epoch: 3,
        }
    }

    #[test]
    fn a_marker_is_the_control_batch_kafka_writes() {
        // MemoryRecords.withEndTransactionMarker: magic 2, CreateTime, transactional and
        // control, no sequence, one record with key (version 0, type) and value
        // (version 0, coordinator epoch) - 4 and 6 bytes.
        let commit = TransactionMarker {
            producer_id: 1000,
            producer_epoch: 5,
            commit: true,
            coordinator_epoch: 7,
        };
        let bytes = commit.batch(1_700_000_000_000).expect("encodes");
        let t = 1_700_000_000_000i64.to_be_bytes();
        let mut expected: Vec<u8> = Vec::new();
        expected.extend_from_slice(&0i64.to_be_bytes()); // base offset
        expected.extend_from_slice(&66i32.to_be_bytes()); // batch length: 78 - 12
        expected.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
        expected.push(2); // magic
        expected.extend_from_slice(&[0, 0, 0, 0]); // crc, checked below
        expected.extend_from_slice(&0x0030i16.to_be_bytes()); // transactional | control
        expected.extend_from_slice(&0i32.to_be_bytes()); // last offset delta
        expected.extend_from_slice(&t); // base timestamp
        expected.extend_from_slice(&t); // max timestamp
        expected.extend_from_slice(&1000i64.to_be_bytes()); // producer id
        expected.extend_from_slice(&5i16.to_be_bytes()); // producer epoch
        expected.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
        expected.extend_from_slice(&1i32.to_be_bytes()); // one record
        expected.extend_from_slice(&[
            0x20, // record length 16 (zigzag)
            0x00, // attributes
            0x00, // timestamp delta
            0x00, // offset delta
            0x08, // key length 4
            0x00, 0x00, 0x00, 0x01, // key: version 0, type 1 (commit)
            0x0c, // value length 6
            0x00, 0x00, 0x00, 0x00, 0x00, 0x07, // value: version 0, coordinator epoch 7
            0x00, // no headers
        ]);
        assert_eq!(bytes.len(), 78);
        assert_eq!(bytes[..17], expected[..17]);
        assert_eq!(bytes[21..], expected[21..]);
        let header = validate_batch(&bytes).expect("the CRC holds");
        assert!(header.attributes.is_control() && header.attributes.is_transactional());
        // An abort marker differs in the key's type only (and so the CRC).
        let abort = TransactionMarker {
            commit: false,
            ..commit
        }
        .batch(1_700_000_000_000)
        .expect("encodes");
        let differing: Vec<usize> = (21..78).filter(|&i| abort[i] != bytes[i]).collect();
        assert_eq!(differing, vec![69]);
        assert_eq!(abort[66..70], [0, 0, 0, 0]);
    }

    #[test]
    fn the_last_stable_offset_waits_for_the_earliest_open_transaction() {
        let mut log = PartitionLog::new(0);
        log.append(&BatchBuilder::new(10).records(2, 1).build(), 0, None, false)
            .expect("plain");
        assert_eq!(log.last_stable_offset(), 2);
        // An unverified transactional batch opening a transaction is refused.
        let refused = log
            .append(&txn_batch(1, 0, 2), 0, None, false)
            .expect_err("not verified");
        assert_eq!(refused.code, ErrorCode::InvalidTxnState);
        log.append(&txn_batch(1, 0, 2), 0, None, true)
            .expect("p1 at 2");
        log.append(&txn_batch(2, 0, 1), 0, None, true)
            .expect("p2 at 4");
        log.append(&BatchBuilder::new(10).records(1, 1).build(), 0, None, false)
            .expect("plain at 5");
        // The open transaction's next batch needs no verification.
        log.append(&txn_batch(1, 2, 1), 0, None, false)
            .expect("p1 again at 6");
        assert_eq!((log.high_watermark(), log.last_stable_offset()), (7, 2));
        assert_eq!(
            log.ongoing_transactions().collect::<Vec<_>>(),
            vec![(2, 1), (4, 2)]
        );
        let abort = log
            .append_marker(&marker(1, false), 0, 20, None, 10)
            .expect("abort p1");
        assert_eq!(abort.base_offset, 7);
        assert_eq!(log.last_stable_offset(), 4);
        log.append_marker(&marker(2, true), 0, 20, None, 10)
            .expect("commit p2");
        assert_eq!((log.high_watermark(), log.last_stable_offset()), (9, 9));
        assert_eq!(
            log.aborted_index().copied().collect::<Vec<_>>(),
            vec![AbortedTransaction {
                producer_id: 1,
                first_offset: 2,
                last_offset: 7,
                last_stable_offset: 4,
            }]
        );
        // The markers are stored as control batches carrying the producer's epoch.
        let stored = &log.batches()[log.batches().len() - 1];
        assert!(stored.header().attributes.is_control());
        assert_eq!(stored.header().producer_id, 2);
        // A marker of a producer without an open transaction changes no offsets.
        log.append_marker(&marker(9, false), 0, 20, None, 10)
            .expect("empty abort");
        assert_eq!(log.aborted_index().len(), 1);
        assert_eq!(log.last_stable_offset(), log.high_watermark());
    }

    #[test]
    fn reads_stop_at_the_bound_and_say_how_far_they_reached() {
        let mut log = PartitionLog::new(0);
        log.append(&BatchBuilder::new(10).records(2, 1).build(), 0, None, false)
            .expect("plain 0-1");
        log.append(&txn_batch(1, 0, 2), 0, None, true)
            .expect("p1 at 2-3");
        log.append(&BatchBuilder::new(10).records(1, 1).build(), 0, None, false)
            .expect("plain 4");
        let lso = log.last_stable_offset();
        assert_eq!(lso, 2);
        let committed = log.read_to(0, usize::MAX, true, lso).expect("read");
        assert_eq!(committed.records, log.batches()[0].bytes().clone());
        assert_eq!(committed.upper_bound_offset, 2);
        // At or past the bound: nothing, and no error below the high watermark.
        for offset in [2, 3, 5] {
            let read = log.read_to(offset, usize::MAX, true, lso).expect("read");
            assert!(read.records.is_empty(), "offset {offset}");
            assert_eq!(read.upper_bound_offset, offset);
        }
        assert_eq!(
            log.read_to(6, usize::MAX, true, lso),
            Err(ErrorCode::OffsetOutOfRange)
        );
        // Up to the high watermark: everything; a cut batch still counts as reached.
        let first_len = log.batches()[0].bytes().len();
        let cut = log
            .read_to(0, first_len + 5, false, log.high_watermark())
            .expect("read");
        assert_eq!(cut.records.len(), first_len + 5);
        assert_eq!(cut.upper_bound_offset, 4);
    }

    #[test]
    fn aborted_transactions_are_those_overlapping_the_read() {
        let mut log = PartitionLog::new(0);
        // p1 aborted at 0-1 (marker 2), p2 committed 3 (marker 4), p3 aborted 5 (marker 6),
        // p4 and p5 interleaved and aborted: 7, 8, markers 9 and 10.
        log.append(&txn_batch(1, 0, 2), 0, None, true).expect("p1");
        log.append_marker(&marker(1, false), 0, 20, None, 100)
            .expect("abort p1");
        log.append(&txn_batch(2, 0, 1), 0, None, true).expect("p2");
        log.append_marker(&marker(2, true), 0, 20, None, 100)
            .expect("commit p2");
        log.append(&txn_batch(3, 0, 1), 0, None, true).expect("p3");
        log.append_marker(&marker(3, false), 0, 20, None, 100)
            .expect("abort p3");
        log.append(&txn_batch(4, 0, 1), 0, None, true).expect("p4");
        log.append(&txn_batch(5, 0, 1), 0, None, true).expect("p5");
        log.append_marker(&marker(5, false), 0, 20, None, 100)
            .expect("abort p5");
        assert_eq!(log.last_stable_offset(), 7);
        log.append_marker(&marker(4, false), 0, 20, None, 100)
            .expect("abort p4");
        let producers = |fetch: i64, upper: i64| -> Vec<(i64, i64)> {
            log.aborted_transactions(fetch, upper)
                .iter()
                .map(|a| (a.producer_id, a.first_offset))
                .collect()
        };
        assert_eq!(producers(0, 11), vec![(1, 0), (3, 5), (5, 8), (4, 7)]);
        // Marker before the fetch offset: not reported.
        assert_eq!(producers(3, 11), vec![(3, 5), (5, 8), (4, 7)]);
        // Began at or after the upper bound: not reported.
        assert_eq!(producers(0, 5), vec![(1, 0)]);
        assert_eq!(producers(0, 8), vec![(1, 0), (3, 5), (4, 7)]);
        assert_eq!(producers(11, 11), vec![]);
        // DeleteRecords drops the entries wholly before the new start.
        log.delete_records_before(3).expect("delete");
        assert_eq!(log.aborted_index().len(), 3);
    }

    #[test]
    fn the_aborted_index_is_bounded() {
        let mut log = PartitionLog::new(0);
        for producer in 1..=3 {
            log.append(&txn_batch(producer, 0, 1), 0, None, true)
                .expect("txn");
            log.append_marker(&marker(producer, false), 0, 20, None, 2)
                .expect("abort");
        }
        let kept: Vec<i64> = log.aborted_index().map(|a| a.producer_id).collect();
        assert_eq!(kept, vec![2, 3]);
        // A cap of zero keeps nothing.
        log.append(&txn_batch(4, 0, 1), 0, None, true).expect("txn");
        log.append_marker(&marker(4, false), 0, 20, None, 0)
            .expect("abort");
        assert_eq!(log.aborted_index().len(), 2);
    }

    #[test]
    fn markers_are_checked_against_the_producer_and_coordinator_epochs() {
        let mut log = PartitionLog::new(0);
        log.append(
            &BatchBuilder::new(10)
                .records(1, 1)
                .producer(1, 4, 0)
                .transactional()
                .build(),
            0,
            None,
            true,
        )
        .expect("txn at epoch 4");
        let stale = TransactionMarker {
            producer_epoch: 3,
            ..marker(1, true)
        };
        let refused = log
            .append_marker(&stale, 0, 20, None, 10)
            .expect_err("stale epoch");
        assert_eq!(refused.code, ErrorCode::InvalidProducerEpoch);
        let fence = TransactionMarker {
            producer_epoch: 5,
            coordinator_epoch: 8,
            ..marker(1, false)
        };
        log.append_marker(&fence, 0, 20, None, 10)
            .expect("fence at epoch 5");
        let old_coordinator = TransactionMarker {
            producer_epoch: 5,
            coordinator_epoch: 7,
            ..marker(1, false)
        };
        let refused = log
            .append_marker(&old_coordinator, 0, 20, None, 10)
            .expect_err("older coordinator");
        assert_eq!(refused.code, ErrorCode::TransactionCoordinatorFenced);
        // The zombie's epoch is fenced by the marker's.
        let zombie = BatchBuilder::new(10)
            .records(1, 1)
            .producer(1, 4, 1)
            .transactional()
            .build();
        let refused = log.append(&zombie, 0, None, true).expect_err("fenced");
        assert_eq!(refused.code, ErrorCode::InvalidProducerEpoch);
        assert_eq!(log.log_end_offset(), 2);
    }
}
