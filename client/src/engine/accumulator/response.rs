//! Answers: each batch of a request is completed, retried (after a backoff, back in
//! sequence order), split (MESSAGE_TOO_LARGE) or failed, as the Java client's `Sender` and
//! `TransactionManager` decide for an idempotent producer.

use std::time::Instant;

use tracing::{debug, warn};

use super::{Accumulator, Batch, ProduceOutcome, RequestId};
use crate::engine::idempotence::{self, Numbering, Reset, SequenceVerdict};
use crate::error::Error;
use crate::proto::ErrorCode;
use crate::topic_partition::TopicPartition;

impl<T> Accumulator<T> {
    /// Handles the outcome of request `request_id`: completes, retries (back at the front
    /// of the partition's queue after a backoff), splits (MESSAGE_TOO_LARGE) or fails each
    /// batch, and unmutes the partitions.
    pub fn handle_response(
        &mut self,
        request_id: RequestId,
        outcome: ProduceOutcome,
        now: Instant,
    ) {
        let Some(request) = self.in_flight.remove(&request_id) else {
            return;
        };
        if let Some(count) = self.in_flight_per_broker.get_mut(&request.broker) {
            *count = count.saturating_sub(1);
        }
        if let ProduceOutcome::Failed { error, sent } = &outcome {
            debug!(broker = request.broker, %error, sent, "produce request failed");
            if error.is_retriable() {
                self.metadata_refresh = true;
            }
        }
        for mut batch in request.batches {
            if let Some(queue) = self
                .queues
                .get_mut(&batch.topic)
                .and_then(|p| p.get_mut(&batch.partition))
            {
                queue.in_flight = queue.in_flight.saturating_sub(1);
            }
            if batch.entries.is_empty() {
                // Expired while in flight: already failed.
                continue;
            }
            match &outcome {
                ProduceOutcome::Written => self.complete_batch(batch, -1, -1),
                ProduceOutcome::Failed { error, sent } => {
                    batch.possibly_persisted |= *sent;
                    if error.is_retriable() {
                        self.retry_or_fail(batch, error.clone(), now);
                    } else {
                        let persisted = batch.persisted();
                        self.fail_batch(batch, error, persisted);
                    }
                }
                ProduceOutcome::Answered(partitions) => {
                    let answer = partitions
                        .iter()
                        .find(|p| *p.topic == *batch.topic && p.partition == batch.partition);
                    match answer {
                        None => {
                            // A broker that skips a partition breaks the protocol; it may
                            // have written the batch.
                            batch.possibly_persisted = true;
                            let error = Error::Protocol {
                                peer: format!("broker {}", request.broker),
                                reason: format!(
                                    "produce response lacks {}/{}",
                                    batch.topic, batch.partition
                                ),
                            };
                            self.retry_or_fail(batch, error, now);
                        }
                        Some(answer) => match answer.error {
                            None => self.complete_batch(
                                batch,
                                answer.base_offset,
                                answer.log_append_time,
                            ),
                            Some(code) => {
                                let message = answer.error_message.clone();
                                self.handle_partition_error(batch, code, message, now);
                            }
                        },
                    }
                }
            }
        }
    }

    fn handle_partition_error(
        &mut self,
        mut batch: Batch<T>,
        code: ErrorCode,
        message: Option<String>,
        now: Instant,
    ) {
        let error = Error::Partition {
            partition: TopicPartition::new(&*batch.topic, batch.partition),
            code,
            message,
        };
        if let Some(numbering) = batch.numbering {
            let is_next = self
                .queues
                .get(&batch.topic)
                .and_then(|p| p.get(&batch.partition))
                .is_some_and(|queue| queue.expected_sequence == numbering.base_sequence);
            match idempotence::verdict(code, is_next) {
                SequenceVerdict::NotASequenceError => {}
                SequenceVerdict::AlreadyWritten => {
                    debug!(topic = %batch.topic, partition = batch.partition,
                        sequence = numbering.base_sequence, "broker already has the batch");
                    self.complete_batch(batch, -1, -1);
                    return;
                }
                SequenceVerdict::RetryInOrder
                    if self.idempotence.reset() == Reset::Bump
                        && batch.possibly_persisted
                        && !self.has_earlier(&batch, numbering) =>
                {
                    // Resolving a batch of unknown outcome before an epoch bump: nothing
                    // of its partition before it is left to write, so the broker wants a
                    // sequence that will never come. Whether an earlier attempt is in the
                    // log cannot be known; renumbered, it could be written twice.
                    let persisted = batch.persisted();
                    self.fail_batch(batch, &error, persisted);
                    return;
                }
                SequenceVerdict::RetryInOrder => {
                    // Refused because an earlier batch is missing: no attempt of its own,
                    // but sent again all the same.
                    self.retried = self.retried.saturating_add(1);
                    self.requeue(batch);
                    return;
                }
                SequenceVerdict::RetryAfterBump if self.config.transactional => {
                    // Only the coordinator may bump a transactional producer's epoch: the
                    // batch fails and the transaction must be aborted (Java).
                    let persisted = batch.persisted();
                    self.fail_batch(batch, &error, persisted);
                    return;
                }
                SequenceVerdict::RetryAfterBump if batch.possibly_persisted => {
                    // An attempt may be in the log: renumbered in the new epoch it could be
                    // written twice.
                    self.idempotence.request_bump();
                    let persisted = batch.persisted();
                    self.fail_batch(batch, &error, persisted);
                    return;
                }
                SequenceVerdict::RetryAfterBump => {
                    self.idempotence.request_bump();
                    self.retry_or_fail(batch, error, now);
                    return;
                }
                SequenceVerdict::Fail => {
                    warn!(topic = %batch.topic, partition = batch.partition,
                        sequence = numbering.base_sequence,
                        "broker expected another sequence after every earlier batch was acknowledged");
                    // An earlier attempt may still be in the log: `Possibly` sticks.
                    let persisted = batch.persisted();
                    self.fail_batch(batch, &error, persisted);
                    return;
                }
                SequenceVerdict::Fatal
                    if self.config.transactional && code == ErrorCode::InvalidProducerEpoch =>
                {
                    // KIP-588: the coordinator bumped the epoch when it aborted the
                    // transaction on its timeout; abort, and the producer goes on.
                    let persisted = batch.persisted();
                    self.fail_batch(batch, &error, persisted);
                    return;
                }
                SequenceVerdict::Fatal => {
                    let persisted = batch.persisted();
                    self.fail_batch(batch, &error, persisted);
                    self.set_fatal(error);
                    return;
                }
            }
        }
        if matches!(
            code,
            ErrorCode::MessageTooLarge | ErrorCode::RecordListTooLarge
        ) && batch.entries.len() > 1
        {
            debug!(topic = %batch.topic, partition = batch.partition,
                records = batch.entries.len(), "broker says batch too large, splitting");
            let numbering = batch.numbering;
            if numbering.is_some() && !self.config.transactional {
                // The halves need sequences of their own: a new epoch numbers them.
                self.idempotence.request_bump();
            }
            let (mut first, mut second) = self.split(batch);
            if let (Some(numbering), true) = (numbering, self.config.transactional) {
                // Nothing of the batch was written: the halves share its sequences, in
                // order (Java's `splitAndReenqueue`), without an epoch bump.
                let first_len = i32::try_from(first.entries.len()).unwrap_or(i32::MAX);
                first.numbering = Some(numbering);
                second.numbering = Some(Numbering {
                    producer: numbering.producer,
                    base_sequence: idempotence::advance(numbering.base_sequence, first_len),
                });
            }
            if let Some(queue) = self
                .queues
                .get_mut(&first.topic)
                .and_then(|p| p.get_mut(&first.partition))
            {
                queue.batches.push_front(second);
                queue.batches.push_front(first);
            }
            return;
        }
        if invalidates_metadata(code) {
            self.metadata_refresh = true;
        }
        if matches!(
            code,
            ErrorCode::NotEnoughReplicasAfterAppend | ErrorCode::RequestTimedOut
        ) {
            // The leader appended the batch before it gave up waiting for replicas.
            batch.possibly_persisted = true;
        }
        if code.is_retriable() {
            self.retry_or_fail(batch, error, now);
        } else {
            let persisted = batch.persisted();
            self.fail_batch(batch, &error, persisted);
        }
    }

    /// Whether a batch of `batch`'s partition numbered before it is queued or in flight.
    fn has_earlier(&self, batch: &Batch<T>, numbering: Numbering) -> bool {
        let Some(queue) = self
            .queues
            .get(&batch.topic)
            .and_then(|p| p.get(&batch.partition))
        else {
            return false;
        };
        queue.in_flight > 0
            || queue.batches.iter().any(|b| {
                b.numbering.is_some_and(|earlier| {
                    idempotence::precedes(earlier.base_sequence, numbering.base_sequence)
                })
            })
    }

    fn retry_or_fail(&mut self, mut batch: Batch<T>, error: Error, now: Instant) {
        if now >= batch.deadline {
            let persisted = batch.persisted();
            let timeout = Error::DeliveryTimeout(self.config.delivery_timeout);
            self.fail_batch(batch, &timeout, persisted);
            return;
        }
        if batch.attempts >= self.config.retries {
            let persisted = batch.persisted();
            self.fail_batch(batch, &error, persisted);
            return;
        }
        batch.attempts += 1;
        self.retried = self.retried.saturating_add(1);
        let delay = batch.backoff.next_delay(&mut self.rng);
        batch.retry_at = Some(now + delay);
        debug!(topic = %batch.topic, partition = batch.partition, attempt = batch.attempts,
            ?delay, %error, "retrying batch");
        self.requeue(batch);
    }

    /// Puts a batch back to be sent again: at the front of its partition's queue, or, when
    /// numbered, before the first batch numbered after it (answers of several batches in
    /// flight may come back in any order).
    pub(super) fn requeue(&mut self, batch: Batch<T>) {
        let queue = self
            .queues
            .entry(batch.topic.clone())
            .or_default()
            .entry(batch.partition)
            .or_default();
        let position = match batch.numbering {
            Some(numbering) => queue
                .batches
                .iter()
                .position(|b| {
                    b.numbering.is_none_or(|later| {
                        idempotence::precedes(numbering.base_sequence, later.base_sequence)
                    })
                })
                .unwrap_or(queue.batches.len()),
            None => 0,
        };
        queue.batches.insert(position, batch);
    }
}

/// Errors after which the client's view of leaders is stale (Java's
/// `InvalidMetadataException` family).
fn invalidates_metadata(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::NotLeaderOrFollower
            | ErrorCode::UnknownTopicOrPartition
            | ErrorCode::LeaderNotAvailable
            | ErrorCode::KafkaStorageError
            | ErrorCode::FencedLeaderEpoch
            | ErrorCode::UnknownLeaderEpoch
            | ErrorCode::UnknownTopicId
            | ErrorCode::InconsistentTopicId
    )
}
