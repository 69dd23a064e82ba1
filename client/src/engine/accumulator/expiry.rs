//! Expiry: records past `delivery.timeout.ms`, wherever they wait (KIP-91).

use std::collections::VecDeque;
use std::time::Instant;

use tracing::debug;

use super::completion::Outcome;
use super::{Accumulator, BatchId, Failure};
use crate::error::{Error, Persisted};

impl<T> Accumulator<T> {
    /// Fails every record whose `delivery.timeout.ms` has passed with
    /// [`Error::DeliveryTimeout`]: waiting for metadata, batched, or in flight. For a batch
    /// in flight `abandon` is asked whether its request was already written (and, if not,
    /// must make sure it never will be); if it was, the records are reported as
    /// [`Persisted::Possibly`]. The partition stays muted until that request's outcome.
    pub fn handle_timeout(&mut self, now: Instant, mut abandon: impl FnMut(BatchId) -> bool) {
        let timeout = Error::DeliveryTimeout(self.config.delivery_timeout);
        let mut expired = Vec::new();
        for entries in self.waiting.values_mut() {
            if entries.iter().any(|e| e.deadline <= now) {
                let (gone, kept): (VecDeque<_>, VecDeque<_>) =
                    entries.drain(..).partition(|e| e.deadline <= now);
                expired.extend(gone);
                *entries = kept;
            }
        }
        self.waiting.retain(|_, entries| !entries.is_empty());
        for entry in expired {
            debug!(topic = %entry.record.topic, "record expired waiting for metadata");
            self.complete_failed(entry, timeout.clone(), Persisted::No);
        }

        let mut expired_batches = Vec::new();
        for partitions in self.queues.values_mut() {
            for queue in partitions.values_mut() {
                if queue.batches.iter().any(|b| b.deadline <= now) {
                    let (gone, kept): (VecDeque<_>, VecDeque<_>) =
                        queue.batches.drain(..).partition(|b| b.deadline <= now);
                    queue.batches = kept;
                    expired_batches.extend(gone);
                }
            }
        }
        for batch in expired_batches {
            let persisted = batch.persisted();
            debug!(topic = %batch.topic, partition = batch.partition, records = batch.entries.len(),
                ?persisted, "batch expired before it could be sent");
            self.fail_batch(batch, &timeout, persisted);
        }

        let mut expired_in_flight = Vec::new();
        let mut hole = false;
        for request in self.in_flight.values_mut() {
            for batch in &mut request.batches {
                if !batch.entries.is_empty() && batch.deadline <= now {
                    let written = abandon(batch.id);
                    let persisted = if written || batch.possibly_persisted {
                        Persisted::Possibly
                    } else {
                        Persisted::No
                    };
                    debug!(topic = %batch.topic, partition = batch.partition,
                        records = batch.entries.len(), ?persisted, "batch expired in flight");
                    expired_in_flight.push((std::mem::take(&mut batch.entries), persisted));
                    if batch.numbering.is_some() {
                        // Its answer no longer matters: whatever it is, the sequence is lost.
                        hole = true;
                    }
                }
            }
        }
        if hole {
            self.note_sequence_hole();
        }
        for (entries, persisted) in expired_in_flight {
            let failure = Failure {
                error: timeout.clone(),
                persisted,
            };
            self.finish(entries, Outcome::Failed(failure));
        }
    }
}
