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
use super::{Accumulator, Batch, DrainedBatch, Entry, InFlight, ProduceRequestPlan};
use crate::engine::idempotence::{self, Numbering, Reset};
use crate::engine::metadata::Metadata;
use crate::error::{Error, Persisted};
use crate::proto::batch_header::{BatchError, BATCH_HEADER_LEN};
use crate::proto::compression::Compression;
use crate::proto::record_batch::RecordBatchWriter;

impl<T> Accumulator<T> {
    /// The requests to send now. A partition's first batch is sendable when the partition
    /// has fewer batches in flight than it may (`PartitionQueue::in_flight_limit`; a
    /// numbered batch sent before waits until none is), it is not backing off, and it is
    /// full, followed by another batch, a retry, `linger.ms` old, or when a flush or close
    /// is on or `buffer_exhausted` (a `send` waits for buffer space). Its partition must have a known leader; brokers with
    /// `max.in.flight.requests.per.connection` requests out get nothing. Each request holds
    /// at most one batch per partition and stays within `max.request.size`.
    pub fn drain(
        &mut self,
        now: Instant,
        metadata: &Metadata,
        buffer_exhausted: bool,
    ) -> Vec<ProduceRequestPlan> {
        if self.idempotence.reset() == Reset::Bump
            && self.in_flight.is_empty()
            && self.idempotence.apply_bump()
        {
            let producer = self.idempotence.producer();
            debug!(
                ?producer,
                "bumped the producer epoch; sequences start again at 0"
            );
            self.restart_sequences();
        }
        if !self.idempotence.can_send() {
            return Vec::new();
        }
        let force = buffer_exhausted || self.closing || self.flushing();
        let linger = self.config.linger;
        let max_in_flight = self.config.max_in_flight;
        let idempotent = self.idempotence.is_enabled();
        let mut by_broker: BTreeMap<i32, Vec<(Arc<str>, i32)>> = BTreeMap::new();
        let mut leaderless = false;
        for (topic, partitions) in &self.queues {
            for (&partition, queue) in partitions {
                if queue.in_flight >= queue.in_flight_limit(idempotent, max_in_flight) {
                    continue;
                }
                let Some(front) = queue.batches.front() else {
                    continue;
                };
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
        let mut plans = Vec::new();
        for (broker, partitions) in by_broker {
            let in_flight = self.in_flight_per_broker.get(&broker).copied().unwrap_or(0);
            if in_flight >= self.config.max_in_flight {
                continue;
            }
            let start = self.drain_rotation % partitions.len();
            let mut size = REQUEST_OVERHEAD + self.config.client_id_len;
            let mut topics: BTreeSet<&str> = BTreeSet::new();
            let mut batches = Vec::new();
            for i in 0..partitions.len() {
                let (topic, partition) = &partitions[(start + i) % partitions.len()];
                let Some(encoded_len) = self.prepare_front(topic, *partition) else {
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
                let Some(queue) = self
                    .queues
                    .get_mut(topic)
                    .and_then(|p| p.get_mut(partition))
                else {
                    continue;
                };
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
                batches: drained,
            });
        }
        self.drain_rotation = self.drain_rotation.wrapping_add(1);
        plans
    }

    /// Encodes the first batch of a partition if it is not yet (numbering it), splitting
    /// it while its encoded form is too large; returns its encoded length, or `None` if it
    /// failed.
    fn prepare_front(&mut self, topic: &str, partition: i32) -> Option<usize> {
        let max_batch = self.max_batch(topic);
        let compression = self.config.compression;
        let producer = self.idempotence.producer();
        loop {
            let queue = self.queues.get_mut(topic)?.get_mut(&partition)?;
            let batch = queue.batches.front_mut()?;
            if let Some(encoded) = &batch.encoded {
                return Some(encoded.len());
            }
            if let (Some(producer), None) = (producer, batch.numbering) {
                // Batches are numbered in queue order: the front is the next to number.
                batch.numbering = Some(Numbering {
                    producer,
                    base_sequence: queue.next_sequence,
                });
                queue.next_sequence =
                    idempotence::advance(queue.next_sequence, as_i32(batch.entries.len()));
            }
            match encode(batch, compression) {
                Ok(encoded) if encoded.len() <= max_batch => {
                    let len = encoded.len();
                    batch.encoded = Some(encoded);
                    return Some(len);
                }
                Ok(encoded) if batch.entries.len() > 1 => {
                    debug!(%topic, partition, size = encoded.len(), max = max_batch,
                        "compressed batch too large, splitting");
                    if let Some(numbering) = batch.numbering {
                        // Never sent: give its sequences to the halves.
                        queue.next_sequence = numbering.base_sequence;
                    }
                    let batch = queue.batches.pop_front()?;
                    let (first, second) = self.split(batch);
                    let queue = self.queues.get_mut(topic)?.get_mut(&partition)?;
                    queue.batches.push_front(second);
                    queue.batches.push_front(first);
                }
                result => {
                    let error = match result {
                        Ok(encoded) => Error::TooLarge {
                            size: encoded.len(),
                            max: max_batch,
                        },
                        Err(error) => Error::CorruptRecord {
                            topic: topic.to_string(),
                            partition,
                            offset: None,
                            broker: None,
                            reason: format!("cannot encode batch: {error}"),
                        },
                    };
                    let mut batch = queue.batches.pop_front()?;
                    if let Some(numbering) = batch.numbering.take() {
                        // Never sent: its sequences go to the next batch.
                        queue.next_sequence = numbering.base_sequence;
                    }
                    self.fail_batch(batch, &error, Persisted::No);
                    return None;
                }
            }
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

/// Encodes a batch's records (compressed as configured) with its producer id, epoch and
/// first sequence: into a buffer of the batch's exact uncompressed size (`batch.size` is
/// computed as encoded), record by record, without copying the records first.
fn encode<T>(batch: &Batch<T>, compression: Compression) -> Result<Bytes, BatchError> {
    let mut writer = RecordBatchWriter::with_capacity(batch.size).compression(compression);
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
