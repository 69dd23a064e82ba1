//! Draining: which partitions' front batches are sendable, their encoding (numbered for
//! idempotence, compressed, split while too large), and the Produce requests they are
//! packed into, one per leader broker.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tracing::debug;
use uuid::Uuid;

use super::size::{as_i32, record_size, PARTITION_OVERHEAD, REQUEST_OVERHEAD, TOPIC_OVERHEAD};
use super::{Accumulator, Batch, DrainedBatch, Entry, InFlight, Membership, ProduceRequestPlan};
use crate::engine::idempotence::{self, Numbering, Reset};
use crate::engine::metadata::Metadata;
use crate::error::{Error, Persisted};
use crate::proto::batch_header::{BatchError, BATCH_HEADER_LEN};
use crate::proto::compression::Compression;
use crate::proto::record_batch::RecordBatchWriter;
use crate::topic_partition::TopicPartition;

/// A partition's front batch, taken out of the accumulator to be encoded (numbered for
/// idempotence, compressed) where no lock is held: see [`Accumulator::poll_encode`]. It
/// holds the batch itself, so encoding needs nothing else, and the partition sends nothing
/// until the job is handed back with [`Accumulator::handle_encoded`]. Every job taken must
/// be handed back (encoded or not): its records are still the accumulator's to complete.
#[derive(Debug)]
pub struct EncodeJob<T> {
    batch: Batch<T>,
    compression: Compression,
    /// The batch belongs to a transaction (its attributes' transactional bit).
    transactional: bool,
    /// [`Accumulator`]'s numbering generation when the batch was numbered: a restart of the
    /// sequences meanwhile makes the encoding worthless.
    generation: u64,
    encoded: Option<Result<Bytes, BatchError>>,
}

impl<T> EncodeJob<T> {
    /// Encodes and compresses the batch. Touches nothing but the job, so a driver runs it
    /// after releasing the lock that `send` takes.
    pub fn encode(&mut self) {
        if self.encoded.is_none() {
            self.encoded = Some(encode(&self.batch, self.compression, self.transactional));
        }
    }

    /// Records in the batch.
    pub fn record_count(&self) -> usize {
        self.batch.entries.len()
    }
}

/// Sendable partitions (topic, partition) by leader broker.
type ByBroker = BTreeMap<i32, Vec<(Arc<str>, i32)>>;

impl<T> Accumulator<T> {
    /// The requests to send now, encoding what they need on the spot: [`Accumulator::poll_encode`],
    /// [`EncodeJob::encode`], [`Accumulator::handle_encoded`] (again while batches are split
    /// or fail), then [`Accumulator::poll_requests`]. For a caller that holds the accumulator
    /// anyway; a driver that shares it with `send` runs the encoding between two holds of
    /// its lock instead.
    pub fn drain(
        &mut self,
        now: Instant,
        metadata: &Metadata,
        buffer_exhausted: bool,
    ) -> Vec<ProduceRequestPlan> {
        loop {
            let mut jobs = self.poll_encode(now, metadata, buffer_exhausted);
            if jobs.is_empty() {
                break;
            }
            for job in &mut jobs {
                job.encode();
            }
            if !self.handle_encoded(jobs) {
                break;
            }
        }
        self.poll_requests(now, metadata, buffer_exhausted)
    }

    /// The sendable front batches that are not encoded yet, taken out to be encoded:
    /// numbered first (in queue order, which is sequence order) when the producer is
    /// idempotent. A front batch is sendable when [`Accumulator::poll_requests`] would send
    /// it once encoded. Hand every job back to [`Accumulator::handle_encoded`]; until then its
    /// partition sends nothing, and appends to it start a new batch behind it.
    pub fn poll_encode(
        &mut self,
        now: Instant,
        metadata: &Metadata,
        buffer_exhausted: bool,
    ) -> Vec<EncodeJob<T>> {
        let Some(by_broker) = self.sendable(now, metadata, buffer_exhausted) else {
            return Vec::new();
        };
        let compression = self.config.compression;
        let producer = self.idempotence.producer();
        let generation = self.numbering_generation;
        let mut jobs = Vec::new();
        for partitions in by_broker.into_values() {
            for (topic, partition) in partitions {
                let Some(queue) = self
                    .queues
                    .get_mut(&topic)
                    .and_then(|p| p.get_mut(&partition))
                else {
                    continue;
                };
                if queue.batches.front().is_none_or(|b| b.encoded.is_some()) {
                    continue;
                }
                let Some(mut batch) = queue.batches.pop_front() else {
                    continue;
                };
                if let (Some(producer), None) = (producer, batch.numbering) {
                    // Batches are numbered in queue order: the front is the next to number.
                    batch.numbering = Some(Numbering {
                        producer,
                        base_sequence: queue.next_sequence,
                    });
                    queue.next_sequence =
                        idempotence::advance(queue.next_sequence, as_i32(batch.entries.len()));
                }
                // Taken out ready: nothing more is appended to it.
                batch.closed = true;
                queue.encoding = true;
                jobs.push(EncodeJob {
                    batch,
                    compression,
                    transactional: self.config.transactional,
                    generation,
                    encoded: None,
                });
            }
        }
        jobs
    }

    /// Takes back the jobs of [`Accumulator::poll_encode`] (encoding those that were not):
    /// each batch goes back to the front of its partition, encoded; one whose encoding no
    /// longer fits a request is split in halves (which are encoded next time), and one that
    /// cannot be encoded, or that is too large as a single record, fails. Returns whether
    /// a batch was split or failed: [`Accumulator::poll_encode`] may then have more to encode
    /// at once.
    pub fn handle_encoded(&mut self, jobs: Vec<EncodeJob<T>>) -> bool {
        let mut again = false;
        for job in jobs {
            let EncodeJob {
                mut batch,
                compression,
                transactional,
                generation,
                encoded,
            } = job;
            let (topic, partition) = (batch.topic.clone(), batch.partition);
            if let Some(queue) = self
                .queues
                .get_mut(&topic)
                .and_then(|p| p.get_mut(&partition))
            {
                queue.encoding = false;
            }
            if let Some(error) = self.idempotence.fatal() {
                let (error, persisted) = (error.clone(), batch.persisted());
                self.fail_batch(batch, &error, persisted);
                continue;
            }
            if let Some(error) = self.aborting.clone() {
                // Its transaction is being aborted. Never sent: its sequences go back.
                if let (Some(numbering), false) = (batch.numbering, batch.sent) {
                    batch.numbering = None;
                    self.rewind_sequence(&topic, partition, numbering);
                }
                let persisted = batch.persisted();
                self.fail_batch(batch, &error, persisted);
                continue;
            }
            if generation != self.numbering_generation {
                // The sequences started again meanwhile: numbered and encoded anew.
                batch.numbering = None;
                batch.encoded = None;
                self.requeue(batch);
                again = true;
                continue;
            }
            let max_batch = self.max_batch(&topic);
            match encoded.unwrap_or_else(|| encode(&batch, compression, transactional)) {
                Ok(encoded) if encoded.len() <= max_batch => {
                    batch.encoded = Some(encoded);
                    self.requeue(batch);
                }
                Ok(encoded) if batch.entries.len() > 1 => {
                    debug!(%topic, partition, size = encoded.len(), max = max_batch,
                        "compressed batch too large, splitting");
                    if let Some(numbering) = batch.numbering.take() {
                        // Never sent: give its sequences to the halves.
                        self.rewind_sequence(&topic, partition, numbering);
                    }
                    let (first, second) = self.split(batch);
                    if let Some(queue) = self
                        .queues
                        .get_mut(&topic)
                        .and_then(|p| p.get_mut(&partition))
                    {
                        queue.batches.push_front(second);
                        queue.batches.push_front(first);
                    }
                    again = true;
                }
                result => {
                    let error = match result {
                        Ok(encoded) => Error::TooLarge {
                            size: encoded.len(),
                            max: max_batch,
                        },
                        Err(error) => Error::CorruptRecord {
                            partition: TopicPartition::new(&*topic, partition),
                            offset: None,
                            broker: None,
                            reason: format!("cannot encode batch: {error}"),
                        },
                    };
                    if let Some(numbering) = batch.numbering.take() {
                        // Never sent: its sequences go to the next batch.
                        self.rewind_sequence(&topic, partition, numbering);
                    }
                    self.fail_batch(batch, &error, Persisted::No);
                    again = true;
                }
            }
        }
        again
    }

    /// The requests to send now, of the front batches that are encoded (see
    /// [`Accumulator::poll_encode`]). A partition's first batch is sendable when the partition
    /// has fewer batches in flight than it may (`PartitionQueue::in_flight_limit`; a
    /// numbered batch sent before waits until none is), it is not backing off, and it is
    /// full, followed by another batch, a retry, `linger.ms` old, or when a flush or close
    /// is on or `buffer_exhausted` (a `send` waits for buffer space). Its partition must
    /// have a known leader; brokers with `max.in.flight.requests.per.connection` requests
    /// out get nothing. Each request holds at most one batch per partition and stays within
    /// `max.request.size`.
    pub fn poll_requests(
        &mut self,
        now: Instant,
        metadata: &Metadata,
        buffer_exhausted: bool,
    ) -> Vec<ProduceRequestPlan> {
        let Some(by_broker) = self.sendable(now, metadata, buffer_exhausted) else {
            return Vec::new();
        };
        let mut plans = Vec::new();
        for (broker, partitions) in by_broker {
            let start = self.drain_rotation % partitions.len();
            let mut size = REQUEST_OVERHEAD + self.config.client_id_len;
            let mut topics: BTreeSet<&str> = BTreeSet::new();
            let mut batches = Vec::new();
            for i in 0..partitions.len() {
                let (topic, partition) = &partitions[(start + i) % partitions.len()];
                let Some(queue) = self
                    .queues
                    .get_mut(topic)
                    .and_then(|p| p.get_mut(partition))
                else {
                    continue;
                };
                let Some(encoded_len) = queue
                    .batches
                    .front()
                    .and_then(|b| b.encoded.as_ref())
                    .map(Bytes::len)
                else {
                    continue;
                };
                let topic_cost = if topics.contains(&**topic) {
                    0
                } else {
                    TOPIC_OVERHEAD + topic.len()
                };
                let cost = topic_cost + PARTITION_OVERHEAD + encoded_len;
                if size + cost > self.config.max_request_size && !batches.is_empty() {
                    continue;
                }
                let Some(mut batch) = queue.batches.pop_front() else {
                    continue;
                };
                queue.in_flight += 1;
                batch.sent = true;
                size += cost;
                topics.insert(topic);
                batches.push(batch);
            }
            if batches.is_empty() {
                continue;
            }
            let request_id = self.next_request_id;
            self.next_request_id += 1;
            *self.in_flight_per_broker.entry(broker).or_default() += 1;
            let drained = batches
                .iter()
                .map(|batch| DrainedBatch {
                    batch_id: batch.id,
                    topic: batch.topic.clone(),
                    topic_id: metadata
                        .topic(&batch.topic)
                        .map_or(Uuid::nil(), |info| info.id),
                    partition: batch.partition,
                    records: batch.encoded.clone().unwrap_or_default(),
                    record_count: batch.entries.len(),
                })
                .collect();
            self.in_flight
                .insert(request_id, InFlight { broker, batches });
            plans.push(ProduceRequestPlan {
                request_id,
                broker,
                acks: self.config.acks,
                timeout_ms: self.config.request_timeout_ms,
                batches: drained,
            });
        }
        self.drain_rotation = self.drain_rotation.wrapping_add(1);
        plans
    }

    /// The partitions whose front batch may be sent now, by leader, leaving out brokers
    /// with `max.in.flight.requests.per.connection` requests out; `None` while nothing may
    /// be sent (no producer id yet, or a fatal error). Carries out a pending epoch bump
    /// once nothing is in flight and no batch of unknown outcome is left to resolve; until
    /// then only those batches are sendable (see [`Accumulator::unresolved_front`]).
    fn sendable(
        &mut self,
        now: Instant,
        metadata: &Metadata,
        buffer_exhausted: bool,
    ) -> Option<ByBroker> {
        if self.idempotence.reset() == Reset::Bump
            && self.in_flight.is_empty()
            && !self.has_unresolved_front()
            && self.idempotence.apply_bump()
        {
            let producer = self.idempotence.producer();
            debug!(
                ?producer,
                "bumped the producer epoch; sequences start again at 0"
            );
            self.restart_sequences();
        }
        // A bump waits for batches that may be in the log: they are retried under the
        // epoch and sequences they were written with, which the broker recognises.
        let resolving = self.idempotence.reset() == Reset::Bump
            && self.idempotence.fatal().is_none()
            && self.idempotence.producer().is_some();
        if !self.idempotence.can_send() && !resolving {
            return None;
        }
        let force = buffer_exhausted || self.closing || self.flushing();
        let linger = self.config.linger;
        let max_in_flight = self.config.max_in_flight;
        let idempotent = self.idempotence.is_enabled();
        let mut by_broker: ByBroker = BTreeMap::new();
        let mut leaderless = false;
        let transactional = self.config.transactional;
        let mut to_add = Vec::new();
        for (topic, partitions) in &self.queues {
            for (&partition, queue) in partitions {
                if transactional && queue.transaction != Membership::In {
                    // Its batches wait until the partition joined the transaction.
                    if queue.transaction == Membership::Out && !queue.batches.is_empty() {
                        to_add.push((topic.clone(), partition));
                    }
                    continue;
                }
                if queue.encoding
                    || queue.in_flight >= queue.in_flight_limit(idempotent, max_in_flight)
                {
                    continue;
                }
                let Some(front) = queue.batches.front() else {
                    continue;
                };
                if resolving && !(unresolved_front(front) && queue.in_flight == 0) {
                    continue;
                }
                if front.retry_at.is_some_and(|at| at > now) || front.deadline <= now {
                    continue;
                }
                // A batch sent before goes again only once nothing of its partition is in
                // flight: the broker must see the partition's batches in sequence order.
                if idempotent && front.sent && queue.in_flight > 0 {
                    continue;
                }
                let ready = force
                    || front.closed
                    || queue.batches.len() > 1
                    || front.attempts > 0
                    || now >= front.created + linger;
                if !ready {
                    continue;
                }
                match metadata.leader(topic, partition) {
                    Some(info) => by_broker
                        .entry(info.leader)
                        .or_default()
                        .push((topic.clone(), partition)),
                    None => leaderless = true,
                }
            }
        }
        if leaderless {
            self.metadata_refresh = true;
        }
        for (topic, partition) in to_add {
            if let Some(queue) = self
                .queues
                .get_mut(&topic)
                .and_then(|p| p.get_mut(&partition))
            {
                queue.transaction = Membership::Requested;
                self.partitions_to_add
                    .push(TopicPartition::new(&*topic, partition));
            }
        }
        by_broker.retain(|broker, _| {
            self.in_flight_per_broker.get(broker).copied().unwrap_or(0) < max_in_flight
        });
        Some(by_broker)
    }

    /// Whether some partition's front batch may be in the log under its numbering: an
    /// epoch bump must wait for it (see [`unresolved_front`]).
    pub(super) fn has_unresolved_front(&self) -> bool {
        self.queues
            .values()
            .flat_map(|partitions| partitions.values())
            .any(|queue| queue.batches.front().is_some_and(unresolved_front))
    }

    /// Gives the sequences of a batch that was numbered but never sent back to its
    /// partition: it was the last numbered, so the next batch starts where it did.
    fn rewind_sequence(&mut self, topic: &str, partition: i32, numbering: Numbering) {
        if let Some(queue) = self
            .queues
            .get_mut(topic)
            .and_then(|p| p.get_mut(&partition))
        {
            queue.next_sequence = numbering.base_sequence;
        }
    }

    /// Splits a batch of two or more records into halves, in order; both keep the
    /// original's deadline, attempts and persisted state, and are closed.
    pub(super) fn split(&mut self, batch: Batch<T>) -> (Batch<T>, Batch<T>) {
        let Batch {
            topic,
            partition,
            mut entries,
            limit,
            created,
            attempts,
            possibly_persisted,
            backoff,
            ..
        } = batch;
        let second_entries = entries.split_off(entries.len() / 2);
        let mut make = |entries: Vec<Entry<T>>| {
            let id = self.next_batch_id;
            self.next_batch_id += 1;
            let base_timestamp = entries.first().map_or(-1, |e| e.timestamp);
            let mut size = BATCH_HEADER_LEN;
            let mut deadline = None::<Instant>;
            for (index, entry) in entries.iter().enumerate() {
                let delta = entry.timestamp.saturating_sub(base_timestamp);
                size += record_size(&entry.record, as_i32(index), delta);
                deadline = Some(deadline.map_or(entry.deadline, |d| d.min(entry.deadline)));
            }
            Batch {
                id,
                topic: topic.clone(),
                partition,
                size,
                limit,
                closed: true,
                created,
                deadline: deadline.unwrap_or(created),
                base_timestamp,
                attempts,
                retry_at: None,
                backoff: backoff.clone(),
                possibly_persisted,
                encoded: None,
                sent: false,
                numbering: None,
                entries,
            }
        };
        let first = make(entries);
        let second = make(second_entries);
        (first, second)
    }
}

/// A partition's front batch whose outcome is unknown: an attempt may have been written
/// (no definitive answer came), under the numbering it still has. Renumbered by an epoch
/// bump it would be written a second time (the broker takes sequence 0 of a new epoch as
/// new), so a bump first retries it with its old numbering, which the broker answers as a
/// duplicate or writes as the next batch. Only the front batch matters: a partition's
/// batches are written in sequence order, so none after a batch that is certainly not in
/// the log can be, and those after an unresolved one are resolved in turn.
fn unresolved_front<T>(batch: &Batch<T>) -> bool {
    batch.possibly_persisted && batch.numbering.is_some() && batch.encoded.is_some()
}

/// Encodes a batch's records (compressed as configured) with its producer id, epoch and
/// first sequence, transactional or not: into a buffer of the batch's exact uncompressed
/// size (`batch.size` is computed as encoded), record by record, without copying the
/// records first.
fn encode<T>(
    batch: &Batch<T>,
    compression: Compression,
    transactional: bool,
) -> Result<Bytes, BatchError> {
    let mut writer = RecordBatchWriter::with_capacity(batch.size)
        .compression(compression)
        .transactional(transactional);
    for entry in &batch.entries {
        let record = &entry.record;
        writer.append(
            entry.timestamp,
            record.key.as_deref(),
            record.value.as_deref(),
            &record.headers,
        )?;
    }
    let (producer_id, producer_epoch, base_sequence) = Numbering::wire(batch.numbering);
    writer.finish(producer_id, producer_epoch, base_sequence)
}
