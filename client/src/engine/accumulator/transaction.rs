//! A transactional producer's batches (KIP-98; the Java client's `RecordAccumulator` and
//! `Sender` with a `TransactionManager`): a partition's batches go only once it joined the
//! transaction, records of a transaction being aborted fail unsent, and every record failure
//! is handed to the transaction manager, which makes the transaction abortable. A numbered
//! batch that fails leaves a hole in its partition's sequences that only a new epoch closes;
//! a transactional producer never bumps its epoch locally (the coordinator must, KIP-360),
//! so the hole is reported instead ([`Accumulator::take_sequence_hole`]).

use super::{Accumulator, Membership};
use crate::error::{Error, Persisted};
use crate::topic_partition::TopicPartition;

impl<T> Accumulator<T> {
    /// Partitions whose first batch of the transaction waits for them to join it, since
    /// the last call: the transaction manager adds them (AddPartitionsToTxn).
    pub fn take_partitions_to_add(&mut self) -> Vec<TopicPartition> {
        std::mem::take(&mut self.partitions_to_add)
    }

    /// `partitions` joined the transaction: their batches may go.
    pub fn mark_partitions_added(&mut self, partitions: &[TopicPartition]) {
        for tp in partitions {
            if let Some(queue) = self
                .queues
                .get_mut(tp.topic.as_str())
                .and_then(|p| p.get_mut(&tp.partition))
            {
                queue.transaction = Membership::In;
                self.wake = true;
            }
        }
    }

    /// The transaction ended (committed or aborted): no partition is in a transaction any
    /// more, and records are no longer failed as aborted.
    pub fn end_transaction(&mut self) {
        for partitions in self.queues.values_mut() {
            for queue in partitions.values_mut() {
                queue.transaction = Membership::Out;
            }
        }
        self.partitions_to_add.clear();
        self.aborting = None;
    }

    /// The first record failure since the last call (transactional producers only): the
    /// transaction cannot commit.
    pub fn take_transaction_failure(&mut self) -> Option<Error> {
        self.transaction_failure.take()
    }

    /// True once after a numbered batch of the transaction failed: its partition's
    /// sequences have a hole, which only an epoch bump through the coordinator closes.
    pub fn take_sequence_hole(&mut self) -> bool {
        std::mem::take(&mut self.sequence_hole)
    }

    /// Records not yet completed, or requests not yet answered: EndTxn must wait.
    pub fn has_incomplete(&self) -> bool {
        !self.outstanding.is_empty() || !self.in_flight.is_empty()
    }

    /// The transaction is being aborted: every record not in flight fails with `error` now
    /// (waiting for metadata, batched, or when it comes back from encoding); those in flight
    /// complete as their answers say. A batch that was numbered but never sent gives its
    /// sequences back; one sent before may be in the log, and leaves a hole.
    pub fn abort_undrained(&mut self, error: &Error) {
        if self.aborting.is_none() {
            self.aborting = Some(error.clone());
        }
        let waiting = std::mem::take(&mut self.waiting);
        for entry in waiting.into_values().flatten() {
            self.complete_failed(entry, error.clone(), Persisted::No);
        }
        let mut failed = Vec::new();
        for partitions in self.queues.values_mut() {
            for queue in partitions.values_mut() {
                if queue.batches.is_empty() {
                    continue;
                }
                let mut rewind_to = None;
                for mut batch in queue.batches.drain(..) {
                    if let (Some(numbering), false) = (batch.numbering, batch.sent) {
                        // The first never-sent numbered batch starts the unsent tail.
                        rewind_to.get_or_insert(numbering.base_sequence);
                        batch.numbering = None;
                    }
                    failed.push(batch);
                }
                if let Some(sequence) = rewind_to {
                    queue.next_sequence = sequence;
                }
            }
        }
        if !failed.is_empty() {
            self.wake = true;
        }
        for batch in failed {
            let persisted = batch.persisted();
            self.fail_batch(batch, error, persisted);
        }
    }

    /// A numbered batch failed: a transactional producer reports the hole (the coordinator
    /// bumps the epoch when the transaction ends); an idempotent one bumps it itself.
    pub(super) fn note_sequence_hole(&mut self) {
        if self.config.transactional {
            if self.idempotence.fatal().is_none() {
                self.sequence_hole = true;
            }
        } else {
            self.idempotence.request_bump();
        }
    }

    /// A record failed with `error`: in a transaction, the transaction cannot commit
    /// (Java's `maybeTransitionToErrorState`), unless the failure is the abort's own doing
    /// or the producer already failed for good.
    pub(super) fn note_failure(&mut self, error: &Error) {
        let caused_by_abort = matches!(error, Error::TransactionAborted | Error::Abortable(_));
        if self.config.transactional
            && !caused_by_abort
            && self.idempotence.fatal().is_none()
            && self.transaction_failure.is_none()
        {
            self.transaction_failure = Some(error.clone());
        }
    }
}
