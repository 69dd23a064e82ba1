//! `read_committed`: which fetched batches belong to aborted transactions (KIP-98; the Java
//! consumer's `CompletedFetch.nextFetchedRecord`, librdkafka's `rd_kafka_msgset_reader`
//! aborted-transaction handling).
//!
//! A Fetch answer at isolation level 1 carries, per partition, the transactions that were
//! aborted in or around the fetched range, each as the producer id and the offset of its
//! first record. Reading the batches in offset order, a producer id becomes "aborted" when
//! a batch reaches (by its last offset) the first offset of one of its aborted transactions,
//! and stops being so at that producer's ABORT marker, the control batch that closed the
//! transaction. Transactional data batches of an aborted producer are dropped; everything
//! else is delivered (control batches never are, at any isolation level, but the fetcher
//! does that).
//!
//! The list comes from the broker and is checked as such (DESIGN.md, "Numbers from a peer
//! are checked"): entries with a negative producer id can match no batch and are dropped;
//! first offsets outside the fetched range (before it: a transaction that began in an earlier
//! fetch; after it: never reached) are harmless; the list is sorted once (`n log n` in the
//! entries, which the response's size bounds) and each entry is visited once; the set of
//! aborted producers holds at most one id per entry. Nothing here panics or loops on any
//! input.

use std::collections::HashSet;

use kafka_protocol::messages::fetch_response::AbortedTransaction;

use crate::proto::batch_header::BatchHeader;
use crate::proto::record_batch::{ControlRecordKind, RecordBatch};

/// The aborted transactions of one partition of one Fetch answer, consumed as its batches
/// are read in offset order.
#[derive(Debug, Default)]
pub(super) struct AbortedTransactions {
    /// `(first_offset, producer_id)`, sorted by first offset (then producer id); entries
    /// before `next` have been reached.
    pending: Vec<(i64, i64)>,
    next: usize,
    /// Producers whose aborted transaction has been reached and whose ABORT marker has not.
    aborted_producers: HashSet<i64>,
}

/// What to do with one fetched batch under `read_committed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Hand its records out.
    Deliver,
    /// A transactional batch of an aborted transaction: drop it (its offsets are skipped).
    Aborted,
}

impl AbortedTransactions {
    /// The filter for a partition's `aborted_transactions` (absent: no transaction aborted).
    pub(super) fn new(list: Option<&[AbortedTransaction]>) -> Self {
        let mut pending: Vec<(i64, i64)> = list
            .unwrap_or_default()
            .iter()
            .filter(|t| t.producer_id.0 >= 0)
            .map(|t| (t.first_offset, t.producer_id.0))
            .collect();
        pending.sort_unstable();
        Self {
            pending,
            next: 0,
            aborted_producers: HashSet::new(),
        }
    }

    /// Whether there is nothing to filter: no aborted transaction in the answer.
    pub(super) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Reads the next data batch (not a control batch), in offset order.
    pub(super) fn data_batch(&mut self, header: &BatchHeader) -> Verdict {
        if header.producer_id < 0 {
            return Verdict::Deliver;
        }
        self.reach(header.last_offset());
        if header.attributes.is_transactional()
            && self.aborted_producers.contains(&header.producer_id)
        {
            Verdict::Aborted
        } else {
            Verdict::Deliver
        }
    }

    /// Reads the next control batch (decoded: `batch`), in offset order: an ABORT marker
    /// ends its producer's aborted transaction.
    pub(super) fn control_batch(&mut self, batch: &RecordBatch) {
        if batch.producer_id < 0 {
            return;
        }
        let last = batch
            .base_offset
            .saturating_add(i64::from(batch.last_offset_delta));
        self.reach(last);
        if is_abort_marker(batch) {
            self.aborted_producers.remove(&batch.producer_id);
        }
    }

    /// Every aborted transaction that begins at or before `offset` has been reached.
    fn reach(&mut self, offset: i64) {
        while let Some(&(first_offset, producer_id)) = self.pending.get(self.next) {
            if first_offset > offset {
                break;
            }
            self.aborted_producers.insert(producer_id);
            self.next += 1;
        }
    }
}

/// Whether a control batch is an ABORT marker: its first record's key has control type 0,
/// read as the Java consumer reads it (the key's type only).
fn is_abort_marker(batch: &RecordBatch) -> bool {
    let Some(key) = batch.records.first().and_then(|r| r.key.as_deref()) else {
        return false;
    };
    match key.get(2..4) {
        Some(&[t0, t1]) => {
            ControlRecordKind::from_type_id(i16::from_be_bytes([t0, t1]))
                == Some(ControlRecordKind::Abort)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::batch_header::BatchAttributes;
    use crate::proto::compression::Compression;
    use crate::proto::record_batch::{ControlRecord, RecordBatchBuilder};
    use kafka_protocol::messages::ProducerId;

    fn aborted(producer_id: i64, first_offset: i64) -> AbortedTransaction {
        AbortedTransaction::default()
            .with_producer_id(ProducerId(producer_id))
            .with_first_offset(first_offset)
    }

    fn header(
        base_offset: i64,
        records: i32,
        producer_id: i64,
        transactional: bool,
    ) -> BatchHeader {
        BatchHeader {
            base_offset,
            batch_length: 49,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: BatchAttributes::new(Compression::None, false, transactional, false),
            last_offset_delta: records - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id,
            producer_epoch: 0,
            base_sequence: 0,
            record_count: records,
        }
    }

    fn marker(kind: ControlRecordKind, producer_id: i64, offset: i64) -> RecordBatch {
        let mut batch =
            RecordBatch::transaction_marker(ControlRecord::new(kind, 0), producer_id, 0, 0);
        batch.base_offset = offset;
        batch
    }

    #[test]
    fn aborted_batches_are_dropped_from_their_first_offset_to_their_marker() {
        let list = [aborted(7, 10), aborted(8, 12)];
        let mut filter = AbortedTransactions::new(Some(&list));
        // Producer 7's batch before its aborted transaction began: an earlier, committed one.
        assert_eq!(filter.data_batch(&header(0, 5, 7, true)), Verdict::Deliver);
        assert_eq!(filter.data_batch(&header(10, 2, 7, true)), Verdict::Aborted);
        // Producer 8's transaction begins inside this batch's range.
        assert_eq!(filter.data_batch(&header(12, 1, 8, true)), Verdict::Aborted);
        // Non-transactional and idempotent-only batches of an aborted producer id stay.
        assert_eq!(
            filter.data_batch(&header(13, 1, 8, false)),
            Verdict::Deliver
        );
        assert_eq!(
            filter.data_batch(&header(14, 1, -1, false)),
            Verdict::Deliver
        );
        filter.control_batch(&marker(ControlRecordKind::Abort, 7, 15));
        // After its ABORT marker, producer 7's next transaction is delivered.
        assert_eq!(filter.data_batch(&header(16, 1, 7, true)), Verdict::Deliver);
        // A COMMIT marker ends nothing: producer 8 is still aborted until its ABORT.
        filter.control_batch(&marker(ControlRecordKind::Commit, 8, 17));
        assert_eq!(filter.data_batch(&header(18, 1, 8, true)), Verdict::Aborted);
        filter.control_batch(&marker(ControlRecordKind::Abort, 8, 19));
        assert_eq!(filter.data_batch(&header(20, 1, 8, true)), Verdict::Deliver);
    }

    #[test]
    fn entries_from_a_broker_are_checked_not_trusted() {
        // Negative producer ids match nothing; offsets far outside the range are harmless;
        // an entry before the fetched range still covers the open transaction.
        let list = [
            aborted(-1, 0),
            aborted(i64::MIN, i64::MIN),
            aborted(3, i64::MIN),
            aborted(4, i64::MAX),
            aborted(3, -5),
        ];
        let mut filter = AbortedTransactions::new(Some(&list));
        assert!(!filter.is_empty());
        assert_eq!(
            filter.data_batch(&header(100, 1, -1, true)),
            Verdict::Deliver
        );
        assert_eq!(
            filter.data_batch(&header(101, 1, 3, true)),
            Verdict::Aborted
        );
        assert_eq!(
            filter.data_batch(&header(102, 1, 4, true)),
            Verdict::Deliver
        );
        // A batch ending at the top of int64 reaches every entry without overflowing.
        assert_eq!(
            filter.data_batch(&header(i64::MAX - 1, 2, 4, true)),
            Verdict::Aborted
        );
        assert!(AbortedTransactions::new(None).is_empty());
        assert!(AbortedTransactions::new(Some(&[aborted(-3, 0)])).is_empty());
        // Control batches with odd keys are not abort markers.
        let mut odd = marker(ControlRecordKind::Abort, 3, 200);
        odd.records[0].key = Some(bytes::Bytes::from_static(&[0, 0]));
        let mut filter = AbortedTransactions::new(Some(&[aborted(3, 0)]));
        filter.control_batch(&odd);
        assert_eq!(
            filter.data_batch(&header(201, 1, 3, true)),
            Verdict::Aborted
        );
    }

    #[test]
    fn a_huge_list_is_sorted_once_and_walked_once() {
        let list: Vec<AbortedTransaction> = (0..100_000).rev().map(|i| aborted(i, i)).collect();
        let mut filter = AbortedTransactions::new(Some(&list));
        assert_eq!(
            filter.data_batch(&header(0, i32::MAX, 99_999, true)),
            Verdict::Aborted
        );
        assert_eq!(filter.aborted_producers.len(), 100_000);
        let empty = RecordBatchBuilder::new().build();
        assert!(!is_abort_marker(&empty));
    }
}
