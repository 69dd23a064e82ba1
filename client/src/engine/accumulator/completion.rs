//! Completion: the outcome of each record, handed out batch by batch, and what it gives
//! back (its `buffer.memory` bytes, its flush epoch, its batch's buffer for reuse).

use std::collections::VecDeque;

use tracing::warn;

use super::size::as_i32;
use super::{Accumulator, Batch, Completion, Delivered, Entry, Failure, MAX_SPARE_BUFFERS};
use crate::engine::idempotence;
use crate::error::{Error, Persisted};

/// Records that completed together, in order: a batch, or a single record. An iterator
/// of their [`Completion`]s.
#[derive(Debug)]
pub struct CompletedBatch<T> {
    /// A deque so that taking from the front keeps the buffer, which
    /// [`Accumulator::recycle`] gives back to new batches.
    entries: VecDeque<Entry<T>>,
    outcome: Outcome,
    /// Index in the batch of the next entry.
    index: i64,
}

#[derive(Debug)]
pub(super) enum Outcome {
    Delivered {
        partition: i32,
        /// -1 when unknown (`acks=0`).
        base_offset: i64,
        /// -1 unless the topic uses log append time.
        log_append_time: i64,
    },
    Failed(Failure),
}

impl<T> Iterator for CompletedBatch<T> {
    type Item = Completion<T>;

    fn next(&mut self) -> Option<Completion<T>> {
        let entry = self.entries.pop_front()?;
        let index = self.index;
        self.index += 1;
        let result = match &self.outcome {
            Outcome::Delivered {
                partition,
                base_offset,
                log_append_time,
            } => Ok(Delivered {
                partition: *partition,
                offset: if *base_offset >= 0 {
                    base_offset.saturating_add(index)
                } else {
                    -1
                },
                timestamp: if *log_append_time != -1 {
                    *log_append_time
                } else {
                    entry.timestamp
                },
            }),
            Outcome::Failed(failure) => Err(failure.clone()),
        };
        Some(Completion {
            completion: entry.completion,
            record: entry.record,
            reserved: entry.reserved,
            result,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.entries.len(), Some(self.entries.len()))
    }
}

impl<T> ExactSizeIterator for CompletedBatch<T> {}

impl<T> Accumulator<T> {
    pub(super) fn complete_batch(
        &mut self,
        batch: Batch<T>,
        base_offset: i64,
        log_append_time: i64,
    ) {
        if let Some(numbering) = batch.numbering {
            if let Some(queue) = self
                .queues
                .get_mut(&batch.topic)
                .and_then(|p| p.get_mut(&batch.partition))
            {
                queue.expected_sequence =
                    idempotence::advance(numbering.base_sequence, as_i32(batch.entries.len()));
                queue.acknowledged = true;
            }
        }
        let outcome = Outcome::Delivered {
            partition: batch.partition,
            base_offset,
            log_append_time,
        };
        self.finish(batch.entries, outcome);
    }

    pub(super) fn fail_batch(&mut self, batch: Batch<T>, error: &Error, persisted: Persisted) {
        warn!(topic = %batch.topic, partition = batch.partition, records = batch.entries.len(),
            %error, ?persisted, "batch failed");
        if batch.numbering.is_some() {
            // Its sequences are a hole the partition's later batches cannot get past.
            self.note_sequence_hole();
        }
        let failure = Failure {
            error: error.clone(),
            persisted,
        };
        self.finish(batch.entries, Outcome::Failed(failure));
    }

    pub(super) fn complete_failed(&mut self, entry: Entry<T>, error: Error, persisted: Persisted) {
        self.finish(vec![entry], Outcome::Failed(Failure { error, persisted }));
    }

    /// Queues the outcome of `entries` (in order) and stops counting them as outstanding.
    pub(super) fn finish(&mut self, entries: Vec<Entry<T>>, outcome: Outcome) {
        if entries.is_empty() {
            return;
        }
        if let Outcome::Failed(failure) = &outcome {
            self.note_failure(&failure.error);
        }
        // Entries of a batch mostly share an epoch: count runs, not records.
        let mut run: Option<(u64, usize)> = None;
        let mut reserved = 0usize;
        for entry in &entries {
            reserved = reserved.saturating_add(entry.reserved);
            run = match run {
                Some((epoch, count)) if epoch == entry.epoch => Some((epoch, count + 1)),
                Some((epoch, count)) => {
                    self.uncount(epoch, count);
                    Some((entry.epoch, 1))
                }
                None => Some((entry.epoch, 1)),
            };
        }
        if let Some((epoch, count)) = run {
            self.uncount(epoch, count);
        }
        self.buffered = self.buffered.saturating_sub(reserved);
        self.completions.push_back(CompletedBatch {
            entries: VecDeque::from(entries),
            outcome,
            index: 0,
        });
    }

    fn uncount(&mut self, epoch: u64, records: usize) {
        if let Some(count) = self.outstanding.get_mut(&epoch) {
            *count = count.saturating_sub(records);
            if *count == 0 {
                self.outstanding.remove(&epoch);
            }
        }
    }

    /// The next completed record.
    pub fn poll_completion(&mut self) -> Option<Completion<T>> {
        loop {
            let front = self.completions.front_mut()?;
            if let Some(completion) = front.next() {
                if front.entries.is_empty() {
                    self.completions.pop_front();
                }
                return Some(completion);
            }
            self.completions.pop_front();
        }
    }

    /// Takes back the buffer of a [`CompletedBatch`] whose completions were all taken, for a
    /// later batch: batches come and go thousands of times a second, and a fresh buffer each
    /// time costs an allocation and page faults on the appending thread.
    pub fn recycle(&mut self, completed: CompletedBatch<T>) {
        let mut entries = Vec::from(completed.entries);
        entries.clear();
        if entries.capacity() > 0 && self.spare_entries.len() < MAX_SPARE_BUFFERS {
            self.spare_entries.push(entries);
        }
    }

    /// The records that completed together next (a batch, or a single record), to take
    /// out at once and go through later: cheaper than [`Accumulator::poll_completion`] per
    /// record when the accumulator sits behind a lock.
    pub fn poll_completed_batch(&mut self) -> Option<CompletedBatch<T>> {
        self.completions.pop_front()
    }
}
