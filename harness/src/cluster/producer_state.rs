//! What a partition remembers about its idempotent and transactional producers (KIP-98,
//! KIP-360, KIP-890), and the checks Kafka makes with it before appending a client's batch
//! or a transaction marker.
//!
//! Per producer id: the epoch of its last append, the metadata of its last five batches
//! (Kafka's `ProducerStateEntry`, `NUM_BATCHES_TO_RETAIN = 5`), the first offset of its
//! ongoing transaction on this partition (`currentTxnFirstOffset`) and the epoch of the
//! last coordinator that wrote a marker for it. A client batch with a producer id is
//! checked in Kafka's order (`UnifiedLog.analyzeAndValidateProducerState`,
//! `ProducerAppendInfo.checkProducerEpoch` / `checkSequence` / `appendDataBatch`):
//!
//! 1. a batch equal to one of the five (same epoch, same first and last sequence) is a
//!    duplicate: it is not appended, and the original batch's offsets answer it;
//! 2. a transactional batch of a producer with no transaction open here must have been
//!    verified with the transaction coordinator (KIP-890 part 1, done by the produce
//!    handler before the append), else INVALID_TXN_STATE;
//! 3. an epoch below the current one is fenced (INVALID_PRODUCER_EPOCH);
//! 4. a new epoch must start at sequence 0; the same epoch must continue at last + 1 (after
//!    `i32::MAX` comes 0); otherwise OUT_OF_ORDER_SEQUENCE_NUMBER. A producer without state
//!    (or with the "no epoch" epoch -1) may start at any sequence, as Kafka allows since
//!    KIP-360;
//! 5. a non-transactional batch while the producer's transaction is open here is
//!    INVALID_TXN_STATE.
//!
//! A marker ([`ProducerStates::check_marker`]) is checked for a stale producer epoch
//! (INVALID_PRODUCER_EPOCH) and a stale coordinator epoch (TRANSACTION_COORDINATOR_FENCED),
//! then ends the producer's transaction ([`ProducerStates::complete_transaction`]), taking
//! the marker's epoch (a bumped epoch fences the old one).
//!
//! Pure state: no clock, no IO. Producers are never expired (Kafka drops a producer idle for
//! `producer.id.expiration.ms`, a day by default), and DeleteRecords keeps them, as Kafka does.

use std::collections::{BTreeMap, VecDeque};

use franzy::proto::batch_header::BatchHeader;
use franzy::proto::ErrorCode;

/// How many batches per producer are remembered for duplicate detection (Kafka's
/// `ProducerStateEntry.NUM_BATCHES_TO_RETAIN`; also the most requests a producer may have in
/// flight per connection with idempotence on).
pub const BATCHES_RETAINED: usize = 5;

/// Kafka's `RecordBatch.NO_PRODUCER_EPOCH`: the epoch of a producer without state.
const NO_EPOCH: i16 = -1;

/// What the log remembers of one appended batch (Kafka's `BatchMetadata`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMetadata {
    /// Sequence number of the first record.
    pub first_sequence: i32,
    /// Sequence number of the last record (wrapped past `i32::MAX` to 0).
    pub last_sequence: i32,
    /// Offset of the first record.
    pub first_offset: i64,
    /// Offset of the last record.
    pub last_offset: i64,
    /// The stored batch's max timestamp (the log-append time on such topics).
    pub timestamp: i64,
}

/// One producer id's state on one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchMetadata>,
    /// Offset of the first batch of the producer's open transaction here.
    current_txn_first_offset: Option<i64>,
    /// Epoch of the coordinator that wrote the producer's last marker here, or -1.
    coordinator_epoch: i32,
}

impl ProducerEntry {
    fn new(epoch: i16) -> Self {
        Self {
            epoch,
            batches: VecDeque::with_capacity(BATCHES_RETAINED),
            current_txn_first_offset: None,
            coordinator_epoch: -1,
        }
    }

    /// The epoch of the producer's last append (or marker).
    pub fn epoch(&self) -> i16 {
        self.epoch
    }

    /// The first offset of the producer's transaction open on this partition, if one is.
    pub fn current_txn_first_offset(&self) -> Option<i64> {
        self.current_txn_first_offset
    }

    /// The epoch of the coordinator that wrote the producer's last marker here, or -1.
    pub fn coordinator_epoch(&self) -> i32 {
        self.coordinator_epoch
    }

    /// Takes `epoch`; a new epoch forgets the batches of the old one (Kafka's
    /// `maybeUpdateProducerEpoch`).
    fn update_epoch(&mut self, epoch: i16) {
        if self.epoch != epoch {
            self.epoch = epoch;
            self.batches.clear();
        }
    }

    /// The last batches appended in this epoch, oldest first, at most [`BATCHES_RETAINED`].
    pub fn batches(&self) -> impl ExactSizeIterator<Item = &BatchMetadata> {
        self.batches.iter()
    }

    /// The sequence number of the last record appended, or -1 when none is remembered.
    pub fn last_sequence(&self) -> i32 {
        self.batches.back().map_or(-1, |b| b.last_sequence)
    }

    fn duplicate_of(&self, epoch: i16, first: i32, last: i32) -> Option<&BatchMetadata> {
        if epoch != self.epoch {
            return None;
        }
        self.batches
            .iter()
            .find(|b| b.first_sequence == first && b.last_sequence == last)
    }
}

/// What the check decided for a batch that may be appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Append it (and then [`ProducerStates::record`] it).
    Append,
    /// It is already in the log: do not append it; answer with this batch's offsets.
    Duplicate(BatchMetadata),
}

/// Why a batch was refused. Kafka sends no error message with these (its `ReplicaManager`
/// only forwards the messages of record-validation errors); [`ProducerError::describe`]
/// gives the text Kafka logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProducerError {
    /// The batch's epoch is below the producer's current one: a zombie was fenced.
    StaleEpoch {
        /// The producer id.
        producer_id: i64,
        /// The batch's epoch.
        epoch: i16,
        /// The epoch the partition knows.
        current_epoch: i16,
    },
    /// The first batch of a new epoch does not start at sequence 0.
    NewEpochNotAtZero {
        /// The producer id.
        producer_id: i64,
        /// The batch's (new) epoch.
        epoch: i16,
        /// The batch's first sequence.
        sequence: i32,
        /// The epoch the partition knows.
        current_epoch: i16,
    },
    /// The batch does not continue where the producer's last batch ended.
    OutOfOrder {
        /// The producer id.
        producer_id: i64,
        /// The batch's first sequence.
        sequence: i32,
        /// The last sequence appended.
        last_sequence: i32,
    },
    /// A transactional batch of a producer without a transaction open here, which the
    /// transaction coordinator did not verify (KIP-890).
    NotInTransaction {
        /// The producer id.
        producer_id: i64,
    },
    /// A non-transactional batch while the producer's transaction is open here.
    ExpectedTransactional {
        /// The producer id.
        producer_id: i64,
    },
    /// A marker from a coordinator older than one that already wrote a marker here.
    CoordinatorFenced {
        /// The producer id.
        producer_id: i64,
        /// The marker's coordinator epoch.
        coordinator_epoch: i32,
        /// The coordinator epoch the partition knows.
        current_coordinator_epoch: i32,
    },
}

impl ProducerError {
    /// The code the produce response carries.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::StaleEpoch { .. } => ErrorCode::InvalidProducerEpoch,
            Self::NewEpochNotAtZero { .. } | Self::OutOfOrder { .. } => {
                ErrorCode::OutOfOrderSequenceNumber
            }
            Self::NotInTransaction { .. } | Self::ExpectedTransactional { .. } => {
                ErrorCode::InvalidTxnState
            }
            Self::CoordinatorFenced { .. } => ErrorCode::TransactionCoordinatorFenced,
        }
    }

    /// The text Kafka logs for this error, for a batch that would have started at `offset`.
    pub fn describe(&self, offset: i64) -> String {
        match *self {
            Self::StaleEpoch {
                producer_id,
                epoch,
                current_epoch,
            } => format!(
                "Epoch of producer {producer_id} at offset {offset} is {epoch}, which is smaller than the last seen epoch {current_epoch}"
            ),
            Self::NewEpochNotAtZero {
                producer_id,
                epoch,
                sequence,
                current_epoch,
            } => format!(
                "Invalid sequence number for new epoch of producer {producer_id} at offset {offset}: {epoch} (request epoch), {sequence} (seq. number), {current_epoch} (current producer epoch)"
            ),
            Self::OutOfOrder {
                producer_id,
                sequence,
                last_sequence,
            } => format!(
                "Out of order sequence number for producer {producer_id} at offset {offset}: {sequence} (incoming seq. number), {last_sequence} (current end sequence number)"
            ),
            Self::NotInTransaction { producer_id } => format!(
                "Record of producer {producer_id} at offset {offset} was not part of an ongoing transaction"
            ),
            Self::ExpectedTransactional { producer_id } => format!(
                "Expected transactional write from producer {producer_id} at offset {offset}"
            ),
            Self::CoordinatorFenced {
                producer_id,
                coordinator_epoch,
                current_coordinator_epoch,
            } => format!(
                "Invalid coordinator epoch for producerId {producer_id} at offset {offset}: {coordinator_epoch} (zombie), {current_coordinator_epoch} (current)"
            ),
        }
    }
}

/// The producers of one partition, by producer id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerStates {
    producers: BTreeMap<i64, ProducerEntry>,
}

impl ProducerStates {
    /// The state of `producer_id`, if it has appended here.
    pub fn entry(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Every producer with state here, by producer id.
    pub fn producers(&self) -> impl Iterator<Item = (i64, &ProducerEntry)> {
        self.producers.iter().map(|(id, entry)| (*id, entry))
    }

    /// Whether no producer has state here.
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Whether `producer_id` has a transaction open on this partition (Kafka's
    /// `UnifiedLog.hasOngoingTransaction`).
    pub fn has_ongoing_transaction(&self, producer_id: i64) -> bool {
        self.producers
            .get(&producer_id)
            .is_some_and(|e| e.current_txn_first_offset.is_some())
    }

    /// Checks a client's batch (its header as sent) against the state, as Kafka's leader
    /// does for appends from clients. Batches without a producer id always pass.
    /// `verified`: the transaction coordinator confirmed that the batch's partition is in
    /// its producer's transaction (KIP-890), which a transactional batch needs when its
    /// producer has no transaction open here yet.
    pub fn check(
        &self,
        batch: &BatchHeader,
        verified: bool,
    ) -> Result<SequenceCheck, ProducerError> {
        let producer_id = batch.producer_id;
        if producer_id < 0 {
            return Ok(SequenceCheck::Append);
        }
        let epoch = batch.producer_epoch;
        let sequence = batch.base_sequence;
        let entry = self.producers.get(&producer_id);
        if let Some(original) =
            entry.and_then(|e| e.duplicate_of(epoch, sequence, last_sequence(batch)))
        {
            return Ok(SequenceCheck::Duplicate(*original));
        }
        let ongoing = entry.is_some_and(|e| e.current_txn_first_offset.is_some());
        let transactional = batch.attributes.is_transactional();
        if transactional && !ongoing && !verified {
            return Err(ProducerError::NotInTransaction { producer_id });
        }
        let current_epoch = entry.map_or(NO_EPOCH, |e| e.epoch);
        if epoch < current_epoch {
            return Err(ProducerError::StaleEpoch {
                producer_id,
                epoch,
                current_epoch,
            });
        }
        if epoch != current_epoch {
            // A new epoch (KIP-360 bumps it to reset sequences) starts over at 0.
            if sequence != 0 && current_epoch != NO_EPOCH {
                return Err(ProducerError::NewEpochNotAtZero {
                    producer_id,
                    epoch,
                    sequence,
                    current_epoch,
                });
            }
        } else {
            let last_sequence = entry.map_or(-1, ProducerEntry::last_sequence);
            // Without an epoch (-1) nothing is known to continue from: any sequence is
            // accepted.
            if current_epoch != NO_EPOCH && !continues(last_sequence, sequence) {
                return Err(ProducerError::OutOfOrder {
                    producer_id,
                    sequence,
                    last_sequence,
                });
            }
        }
        if ongoing && !transactional {
            return Err(ProducerError::ExpectedTransactional { producer_id });
        }
        Ok(SequenceCheck::Append)
    }

    /// Records a batch that was appended (its header as stored, offsets assigned). A new
    /// epoch forgets the batches of the old one; the sixth batch pushes out the oldest.
    /// Returns the batch's base offset when it began a transaction of its producer here.
    pub fn record(&mut self, stored: &BatchHeader) -> Option<i64> {
        if stored.producer_id < 0 {
            return None;
        }
        let entry = self
            .producers
            .entry(stored.producer_id)
            .or_insert_with(|| ProducerEntry::new(NO_EPOCH));
        entry.update_epoch(stored.producer_epoch);
        if entry.batches.len() == BATCHES_RETAINED {
            entry.batches.pop_front();
        }
        entry.batches.push_back(BatchMetadata {
            first_sequence: stored.base_sequence,
            last_sequence: last_sequence(stored),
            first_offset: stored.base_offset,
            last_offset: stored.last_offset(),
            timestamp: stored.max_timestamp,
        });
        if stored.attributes.is_transactional() && entry.current_txn_first_offset.is_none() {
            entry.current_txn_first_offset = Some(stored.base_offset);
            return Some(stored.base_offset);
        }
        None
    }

    /// Checks a transaction marker for `producer_id` at `epoch` from a coordinator of
    /// `coordinator_epoch`, as Kafka's `ProducerAppendInfo.appendEndTxnMarker` does: a
    /// producer epoch below the partition's is INVALID_PRODUCER_EPOCH, a coordinator epoch
    /// below the last marker's is TRANSACTION_COORDINATOR_FENCED.
    pub fn check_marker(
        &self,
        producer_id: i64,
        epoch: i16,
        coordinator_epoch: i32,
    ) -> Result<(), ProducerError> {
        let Some(entry) = self.producers.get(&producer_id) else {
            return Ok(());
        };
        if epoch < entry.epoch {
            return Err(ProducerError::StaleEpoch {
                producer_id,
                epoch,
                current_epoch: entry.epoch,
            });
        }
        if coordinator_epoch < entry.coordinator_epoch {
            return Err(ProducerError::CoordinatorFenced {
                producer_id,
                coordinator_epoch,
                current_coordinator_epoch: entry.coordinator_epoch,
            });
        }
        Ok(())
    }

    /// Records a marker that was appended (after [`ProducerStates::check_marker`]): the
    /// producer takes the marker's epoch and coordinator epoch, and its transaction here
    /// ends. Returns the first offset of the transaction it ended, if the producer wrote
    /// anything in it here (a marker for an empty transaction changes no offsets).
    pub fn complete_transaction(
        &mut self,
        producer_id: i64,
        epoch: i16,
        coordinator_epoch: i32,
    ) -> Option<i64> {
        let entry = self
            .producers
            .entry(producer_id)
            .or_insert_with(|| ProducerEntry::new(NO_EPOCH));
        entry.update_epoch(epoch);
        entry.coordinator_epoch = coordinator_epoch;
        entry.current_txn_first_offset.take()
    }
}

/// The sequence number of a batch's last record: sequences wrap from `i32::MAX` to 0
/// (Kafka's `DefaultRecordBatch.incrementSequence`).
pub fn last_sequence(batch: &BatchHeader) -> i32 {
    increment_sequence(batch.base_sequence, batch.last_offset_delta)
}

/// `sequence + increment`, wrapping past `i32::MAX` to 0.
pub fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    let sum = i64::from(sequence) + i64::from(increment);
    let wrapped = if sum > i64::from(i32::MAX) {
        sum - i64::from(i32::MAX) - 1
    } else {
        sum
    };
    // Only negative inputs (never a checked batch's) could leave the i32 range.
    i32::try_from(wrapped).unwrap_or(i32::MIN)
}

/// Whether `next` is the sequence right after `last` (0 after `i32::MAX`).
fn continues(last: i32, next: i32) -> bool {
    i64::from(next) == i64::from(last) + 1 || (next == 0 && last == i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use franzy::proto::batch_header::BatchAttributes;

    const PID: i64 = 1000;

    /// A batch header of `records` records at `base_offset` (0 for a client's batch).
    fn batch(epoch: i16, sequence: i32, records: i32) -> BatchHeader {
        BatchHeader {
            base_offset: 0,
            batch_length: 49,
            partition_leader_epoch: -1,
            magic: 2,
            crc: 0,
            attributes: BatchAttributes(0),
            last_offset_delta: records - 1,
            base_timestamp: 10,
            max_timestamp: 20,
            producer_id: PID,
            producer_epoch: epoch,
            base_sequence: sequence,
            record_count: records,
        }
    }

    /// Checks `b` and, when it is to be appended, records it at `*next_offset`.
    fn append(
        states: &mut ProducerStates,
        next_offset: &mut i64,
        b: BatchHeader,
    ) -> Result<SequenceCheck, ProducerError> {
        let check = states.check(&b, false)?;
        if check == SequenceCheck::Append {
            let stored = BatchHeader {
                base_offset: *next_offset,
                ..b
            };
            states.record(&stored);
            *next_offset = stored.next_offset();
        }
        Ok(check)
    }

    fn code(r: Result<SequenceCheck, ProducerError>) -> ErrorCode {
        match r {
            Ok(c) => panic!("expected an error, got {c:?}"),
            Err(e) => e.code(),
        }
    }

    #[test]
    fn sequences_must_continue_within_an_epoch() {
        let mut s = ProducerStates::default();
        let mut next = 0;
        // A producer without state may start anywhere (KIP-360).
        assert_eq!(
            append(&mut s, &mut next, batch(0, 7, 3)),
            Ok(SequenceCheck::Append)
        );
        assert_eq!(s.entry(PID).map(ProducerEntry::last_sequence), Some(9));
        assert_eq!(
            code(append(&mut s, &mut next, batch(0, 11, 1))),
            ErrorCode::OutOfOrderSequenceNumber
        );
        assert_eq!(
            code(append(&mut s, &mut next, batch(0, 9, 2))),
            ErrorCode::OutOfOrderSequenceNumber
        );
        assert_eq!(
            append(&mut s, &mut next, batch(0, 10, 1)),
            Ok(SequenceCheck::Append)
        );
        assert_eq!(next, 4);
        let entry = s.entry(PID).expect("entry");
        assert_eq!((entry.epoch(), entry.batches().len()), (0, 2));
    }

    #[test]
    fn sequences_wrap_from_max_to_zero() {
        assert_eq!(increment_sequence(i32::MAX, 0), i32::MAX);
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
        assert_eq!(increment_sequence(5, 3), 8);
        let mut s = ProducerStates::default();
        let mut next = 0;
        append(&mut s, &mut next, batch(0, i32::MAX - 1, 2)).expect("ends at MAX");
        assert_eq!(
            s.entry(PID).map(ProducerEntry::last_sequence),
            Some(i32::MAX)
        );
        // A batch across the wrap: MAX-1.. would repeat; 0 continues.
        assert_eq!(
            code(append(&mut s, &mut next, batch(0, 1, 1))),
            ErrorCode::OutOfOrderSequenceNumber
        );
        append(&mut s, &mut next, batch(0, 0, 2)).expect("0 follows MAX");
        let wrapped = batch(0, i32::MAX, 3);
        assert_eq!(last_sequence(&wrapped), 1);
    }

    #[test]
    fn duplicates_answer_with_the_original_batch() {
        let mut s = ProducerStates::default();
        let mut next = 0;
        append(&mut s, &mut next, batch(0, 0, 3)).expect("first");
        append(&mut s, &mut next, batch(0, 3, 2)).expect("second");
        let original = BatchMetadata {
            first_sequence: 0,
            last_sequence: 2,
            first_offset: 0,
            last_offset: 2,
            timestamp: 20,
        };
        assert_eq!(
            append(&mut s, &mut next, batch(0, 0, 3)),
            Ok(SequenceCheck::Duplicate(original))
        );
        assert_eq!(next, 5, "a duplicate is not appended");
        // Same first sequence but another length is not a duplicate: it is out of order.
        assert_eq!(
            code(append(&mut s, &mut next, batch(0, 0, 2))),
            ErrorCode::OutOfOrderSequenceNumber
        );
        // Another epoch's batch with the same sequences is no duplicate either.
        assert_eq!(
            append(&mut s, &mut next, batch(1, 0, 3)),
            Ok(SequenceCheck::Append)
        );
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut s = ProducerStates::default();
        let mut next = 0;
        for i in 0..6 {
            append(&mut s, &mut next, batch(0, i, 1)).expect("in order");
        }
        let remembered: Vec<i32> = s
            .entry(PID)
            .map(|e| e.batches().map(|b| b.first_sequence).collect())
            .unwrap_or_default();
        assert_eq!(remembered, vec![1, 2, 3, 4, 5]);
        // The 5th-latest is still a duplicate; the 6th-latest is out of order.
        assert!(matches!(
            append(&mut s, &mut next, batch(0, 1, 1)),
            Ok(SequenceCheck::Duplicate(b)) if b.first_offset == 1
        ));
        assert_eq!(
            code(append(&mut s, &mut next, batch(0, 0, 1))),
            ErrorCode::OutOfOrderSequenceNumber
        );
    }

    #[test]
    fn epochs_fence_and_restart_sequences() {
        let mut s = ProducerStates::default();
        let mut next = 0;
        append(&mut s, &mut next, batch(3, 0, 2)).expect("first");
        // Lower epoch: fenced, even at the right sequence.
        assert_eq!(
            code(append(&mut s, &mut next, batch(2, 2, 1))),
            ErrorCode::InvalidProducerEpoch
        );
        // Higher epoch: must start at 0.
        assert_eq!(
            code(append(&mut s, &mut next, batch(4, 2, 1))),
            ErrorCode::OutOfOrderSequenceNumber
        );
        append(&mut s, &mut next, batch(4, 0, 1)).expect("new epoch at 0");
        let entry = s.entry(PID).expect("entry");
        assert_eq!((entry.epoch(), entry.batches().len()), (4, 1));
        // The old epoch's batches are forgotten: a retry of them is fenced, not a duplicate.
        assert_eq!(
            code(append(&mut s, &mut next, batch(3, 0, 2))),
            ErrorCode::InvalidProducerEpoch
        );
    }

    #[test]
    fn negative_epochs_follow_kafka() {
        // Epoch -1 is "no epoch": nothing is checked but duplicates.
        let mut s = ProducerStates::default();
        let mut next = 0;
        append(&mut s, &mut next, batch(-1, 5, 1)).expect("any start");
        append(&mut s, &mut next, batch(-1, 42, 1)).expect("any sequence");
        assert!(matches!(
            append(&mut s, &mut next, batch(-1, 42, 1)),
            Ok(SequenceCheck::Duplicate(_))
        ));
        // Below -1 is below every epoch, the empty state's included.
        let fresh = ProducerStates::default();
        assert_eq!(
            code(fresh.check(&batch(-2, 0, 1), false)),
            ErrorCode::InvalidProducerEpoch
        );
    }

    fn transactional(epoch: i16, sequence: i32, records: i32) -> BatchHeader {
        let mut b = batch(epoch, sequence, records);
        b.attributes = BatchAttributes(0x10);
        b
    }

    /// Checks `b` as verified by the coordinator and records it at `*next_offset`.
    fn append_verified(
        states: &mut ProducerStates,
        next_offset: &mut i64,
        b: BatchHeader,
    ) -> Result<Option<i64>, ProducerError> {
        states.check(&b, true)?;
        let stored = BatchHeader {
            base_offset: *next_offset,
            ..b
        };
        *next_offset = stored.next_offset();
        Ok(states.record(&stored))
    }

    #[test]
    fn an_unverified_transactional_batch_is_refused_before_the_epoch_check() {
        let mut s = ProducerStates::default();
        let mut next = 0;
        append(&mut s, &mut next, batch(2, 0, 1)).expect("idempotent");
        // Kafka's verification check comes before the producer checks: even a stale epoch
        // is INVALID_TXN_STATE when no transaction is open and nothing verified it.
        assert_eq!(
            code(s.check(&transactional(2, 1, 1), false)),
            ErrorCode::InvalidTxnState
        );
        assert_eq!(
            code(s.check(&transactional(1, 1, 1), false)),
            ErrorCode::InvalidTxnState
        );
        // Verified, the usual epoch check applies.
        assert_eq!(
            code(s.check(&transactional(1, 1, 1), true)),
            ErrorCode::InvalidProducerEpoch
        );
        assert_eq!(
            s.check(&transactional(2, 1, 1), true),
            Ok(SequenceCheck::Append)
        );
    }

    #[test]
    fn a_transaction_opens_with_its_first_batch_and_needs_no_verification_after() {
        let mut s = ProducerStates::default();
        let mut next = 10;
        assert_eq!(
            append_verified(&mut s, &mut next, transactional(0, 0, 2)),
            Ok(Some(10))
        );
        assert!(s.has_ongoing_transaction(PID));
        // Further batches of the open transaction need no verification and open nothing.
        s.check(&transactional(0, 2, 1), false)
            .expect("the transaction is open");
        assert_eq!(
            append_verified(&mut s, &mut next, transactional(0, 2, 1)),
            Ok(None)
        );
        // A non-transactional batch in the middle of the transaction is refused, after the
        // sequence check.
        assert_eq!(
            code(s.check(&batch(0, 3, 1), false)),
            ErrorCode::InvalidTxnState
        );
        assert_eq!(
            code(s.check(&batch(0, 9, 1), false)),
            ErrorCode::OutOfOrderSequenceNumber
        );
        let entry = s.entry(PID).expect("entry");
        assert_eq!(entry.current_txn_first_offset(), Some(10));
    }

    #[test]
    fn markers_end_the_transaction_and_fence_stale_epochs_and_coordinators() {
        let mut s = ProducerStates::default();
        let mut next = 0;
        append_verified(&mut s, &mut next, transactional(3, 0, 2)).expect("open");
        assert_eq!(
            s.check_marker(PID, 2, 0).map_err(|e| e.code()),
            Err(ErrorCode::InvalidProducerEpoch)
        );
        s.check_marker(PID, 3, 5).expect("current epoch");
        assert_eq!(s.complete_transaction(PID, 3, 5), Some(0));
        assert!(!s.has_ongoing_transaction(PID));
        let entry = s.entry(PID).expect("entry");
        assert_eq!((entry.epoch(), entry.coordinator_epoch()), (3, 5));
        // The same epoch keeps the sequences: the next batch continues.
        assert_eq!(entry.last_sequence(), 1);
        // An older coordinator is fenced.
        assert_eq!(
            s.check_marker(PID, 3, 4).map_err(|e| e.code()),
            Err(ErrorCode::TransactionCoordinatorFenced)
        );
        // A marker at a bumped epoch (a fence, or KIP-890's bump per transaction) fences
        // the old epoch and restarts the sequences; an empty transaction ends nothing.
        s.check_marker(PID, 4, 5).expect("bumped");
        assert_eq!(s.complete_transaction(PID, 4, 5), None);
        assert_eq!(
            code(s.check(&transactional(3, 2, 1), true)),
            ErrorCode::InvalidProducerEpoch
        );
        assert_eq!(
            code(s.check(&transactional(4, 2, 1), true)),
            ErrorCode::OutOfOrderSequenceNumber
        );
        assert_eq!(
            s.check(&transactional(4, 0, 1), true),
            Ok(SequenceCheck::Append)
        );
        // A marker for a producer the partition never saw is accepted and creates it.
        assert_eq!(s.check_marker(7, 0, 0), Ok(()));
        assert_eq!(s.complete_transaction(7, 0, 0), None);
        assert_eq!(s.entry(7).map(ProducerEntry::epoch), Some(0));
    }

    #[test]
    fn batches_without_a_producer_pass_and_leave_no_state() {
        let mut s = ProducerStates::default();
        let mut plain = batch(-1, -1, 2);
        plain.producer_id = -1;
        assert_eq!(s.check(&plain, false), Ok(SequenceCheck::Append));
        s.record(&plain);
        assert!(s.is_empty());
        assert!(ProducerError::OutOfOrder {
            producer_id: 1,
            sequence: 5,
            last_sequence: 2
        }
        .describe(9)
        .contains("5 (incoming seq. number), 2 (current end sequence number)"));
    }
}
