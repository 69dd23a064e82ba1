//! The producer's record accumulator, without IO: records are partitioned, gathered into
//! per-partition batches, drained into one Produce request per leader, and retried, split or
//! failed according to the answers (the Java client's `RecordAccumulator` and the batch
//! handling of its `Sender`; KIP-91 delivery timeout; KIP-480/794 sticky partitioning).
//!
//! Call order, as the producer engine uses it (time is always an argument; see
//! [`ProducerEngine`](super::producer::ProducerEngine) for the whole producer):
//! 1. [`Accumulator::append`] each record; it is partitioned at once if the topic's metadata
//!    is known, else it waits in a per-topic queue (and [`Accumulator::wanted_topics`] names
//!    the topic). After each metadata refresh call [`Accumulator::handle_metadata`].
//! 2. [`Accumulator::handle_timeout`] fails whatever passed `delivery.timeout.ms`.
//! 3. [`Accumulator::poll_encode`] takes the sendable front batches that are not encoded yet
//!    out as [`EncodeJob`]s; [`EncodeJob::encode`] them where no lock is held (they own their
//!    batches); [`Accumulator::handle_encoded`] takes them back (again from 3 while it says
//!    batches were split or failed). [`Accumulator::drain`] does all of 3 and 4 in place.
//! 4. [`Accumulator::poll_requests`] returns the requests to send now, at most one per
//!    leader broker and `max.in.flight.requests.per.connection` per broker in flight.
//! 5. Feed each request's outcome to [`Accumulator::handle_response`].
//! 6. Take [`Accumulator::poll_completed_batch`]es; refresh metadata when
//!    [`Accumulator::take_metadata_refresh`] says so; sleep until [`Accumulator::poll_timeout`].
//!
//! **Batches in flight per partition.** Up to `max.in.flight.requests.per.connection`
//! batches of a partition are in flight, as in Kafka's clients. With idempotence (see
//! [`super::idempotence`]) they are numbered; a batch to retry goes back in sequence order,
//! and a batch that was sent before goes out again only when nothing else of its partition
//! is in flight, so the broker sees the partition's batches in sequence order again.
//! Without idempotence a batch to retry goes back to the *front* of its partition's queue,
//! but a later batch already in flight may have landed first (Kafka documents this
//! reordering); with `max.in.flight.requests.per.connection=1` a partition with a batch in a
//! request is muted until its outcome is handled, so a retry can never overtake a later
//! batch and the records of one partition are written in `send` order (a lost response may
//! still write a batch twice).
//!
//! **Sizes.** A batch's size is computed exactly as it will be encoded uncompressed (the
//! encoder's own [`record_body_len`](crate::proto::record_batch::record_body_len));
//! `batch.size` is compared with that uncompressed size. A batch never grows beyond
//! [`max_batch_bytes`], what fits `max.request.size` next to an upper bound of the request's
//! own fields; after compression (which may grow incompressible data slightly) a batch that
//! no longer fits is split in halves before it is sent. Requests are packed up to
//! `max.request.size` with the same bounds.
//!
//! **Idempotence.** Each partition keeps the sequence of its next record and the one the
//! broker expects next (after the last acknowledged batch); each batch carries a producer
//! id, epoch and base sequence ([`Numbering`]), assigned when the batch is first taken out
//! to be encoded and kept across retries (the encoded bytes are reused). Nothing is drained
//! until [`Accumulator::set_producer_id`] gave an id ([`Accumulator::needs_producer_id`]
//! says when to ask). A numbered batch that fails leaves a hole in its partition's sequences: the
//! epoch is bumped once nothing is in flight, and every queued batch is numbered afresh.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::warn;
use uuid::Uuid;

use super::backoff::{Backoff, Rng};
use super::idempotence::{Idempotence, Numbering, ProducerId};
use super::partitioner::StickyPartitioner;
use crate::config::{Acks, Config, Partitioner};
use crate::error::{Error, Persisted};
use crate::proto::compression::Compression;
use crate::proto::ErrorCode;
use crate::record::ProducerRecord;
use crate::topic_partition::TopicPartition;

mod completion;
mod drain;
mod expiry;
mod placement;
mod request;
mod response;
pub mod size;
#[cfg(test)]
mod tests;
mod transaction;

pub use completion::CompletedBatch;
pub use drain::EncodeJob;
pub use request::{partition_responses, produce_request};
pub use size::{max_batch_bytes, record_size_upper_bound, single_record_batch_bytes};

/// Identifies a batch for the life of the accumulator.
pub type BatchId = u64;
/// Identifies a drained request.
pub type RequestId = u64;
/// Most emptied batch buffers kept for reuse.
const MAX_SPARE_BUFFERS: usize = 64;

/// The producer settings the accumulator uses.
#[derive(Debug, Clone)]
pub struct AccumulatorConfig {
    /// `batch.size` (uncompressed bytes).
    pub batch_size: usize,
    /// `linger.ms`.
    pub linger: Duration,
    /// `max.request.size`.
    pub max_request_size: usize,
    /// Length of `client.id`, part of every request.
    pub client_id_len: usize,
    /// `compression.type`.
    pub compression: Compression,
    /// `delivery.timeout.ms`.
    pub delivery_timeout: Duration,
    /// `retries`.
    pub retries: u32,
    /// `retry.backoff.ms`.
    pub retry_backoff: Duration,
    /// `retry.backoff.max.ms`.
    pub retry_backoff_max: Duration,
    /// `max.in.flight.requests.per.connection`.
    pub max_in_flight: usize,
    /// `partitioner`.
    pub partitioner: Partitioner,
    /// `acks`.
    pub acks: Acks,
    /// `request.timeout.ms`, in milliseconds: each Produce request's `timeout_ms`.
    pub request_timeout_ms: i32,
    /// `enable.idempotence`, as it resolves with the other settings.
    pub idempotent: bool,
    /// A `transactional.id` is set: batches are transactional, a partition's batches wait
    /// until it joined the transaction ([`Accumulator::mark_partitions_added`]), and a
    /// failed record makes the transaction abortable instead of bumping the epoch locally.
    pub transactional: bool,
}

impl AccumulatorConfig {
    /// The producer settings of `config`.
    pub fn from_config(config: &Config) -> Self {
        Self {
            batch_size: config.batch_size,
            linger: config.linger,
            max_request_size: config.max_request_size,
            client_id_len: config.client_id.len(),
            compression: config.compression,
            delivery_timeout: config.delivery_timeout,
            retries: config.retries,
            retry_backoff: config.retry_backoff,
            retry_backoff_max: config.retry_backoff_max,
            max_in_flight: config.max_in_flight.max(1),
            partitioner: config.partitioner,
            acks: config.acks,
            request_timeout_ms: i32::try_from(config.request_timeout.as_millis())
                .unwrap_or(i32::MAX),
            idempotent: config.idempotence(),
            transactional: config.transactional().is_some(),
        }
    }
}

/// A record handed to [`Accumulator::append`], with what the caller needs back when it
/// completes (`completion`, e.g. a channel to the waiting future).
#[derive(Debug)]
pub struct NewRecord<T> {
    /// The record.
    pub record: ProducerRecord,
    /// Returned with the outcome in a [`Completion`].
    pub completion: T,
    /// When `send` returned: `delivery.timeout.ms` counts from here.
    pub sent_at: Instant,
    /// The create time written to the batch (the record's own, or the time of `send`).
    pub timestamp: i64,
    /// Bytes of `buffer.memory` the record holds, given back in its [`Completion`].
    pub reserved: usize,
}

/// Where [`Accumulator::append`] put a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// In a batch of this partition.
    Partition(i32),
    /// Waiting for the topic's metadata.
    WaitingForMetadata,
    /// Failed at once (its completion is queued).
    Failed,
}

/// A record's outcome.
#[derive(Debug)]
pub struct Completion<T> {
    /// What the caller gave with the record.
    pub completion: T,
    /// The record.
    pub record: ProducerRecord,
    /// Bytes of `buffer.memory` to give back.
    pub reserved: usize,
    /// Where it was written, or why it failed.
    pub result: Result<Delivered, Failure>,
}

/// Where a record was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// Partition.
    pub partition: i32,
    /// Offset, or -1 with `acks=0`.
    pub offset: i64,
    /// Log append time, or the record's create time.
    pub timestamp: i64,
}

/// Why a record failed.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The error.
    pub error: Error,
    /// Whether the record may be in the log anyway.
    pub persisted: Persisted,
}

/// A Produce request to send: every batch for one broker.
#[derive(Debug, Clone)]
pub struct ProduceRequestPlan {
    /// Pass back to [`Accumulator::handle_response`].
    pub request_id: RequestId,
    /// The leader the batches go to.
    pub broker: i32,
    /// `acks` of the request.
    pub acks: Acks,
    /// The request's `timeout_ms`: `request.timeout.ms`.
    pub timeout_ms: i32,
    /// The batches, at most one per partition.
    pub batches: Vec<DrainedBatch>,
}

/// One partition's batch in a request.
#[derive(Debug, Clone)]
pub struct DrainedBatch {
    /// The batch.
    pub batch_id: BatchId,
    /// Topic name.
    pub topic: Arc<str>,
    /// Topic id from metadata (nil if unknown), for Produce v13+.
    pub topic_id: Uuid,
    /// Partition.
    pub partition: i32,
    /// The encoded record batch.
    pub records: Bytes,
    /// Records in the batch.
    pub record_count: usize,
}

/// What came of a request.
#[derive(Debug, Clone)]
pub enum ProduceOutcome {
    /// `acks=0`: the request was written; there is no answer.
    Written,
    /// The broker answered, per partition.
    Answered(Vec<PartitionResponse>),
    /// No answer: `sent` tells whether the request may have reached the broker.
    Failed {
        /// Why.
        error: Error,
        /// The request's bytes were handed to the connection.
        sent: bool,
    },
}

/// The broker's answer for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionResponse {
    /// Topic name.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The error, if any.
    pub error: Option<ErrorCode>,
    /// The broker's error message, if any.
    pub error_message: Option<String>,
    /// Offset of the batch's first record.
    pub base_offset: i64,
    /// Append time for log-append-time topics, else -1.
    pub log_append_time: i64,
}

#[derive(Debug)]
struct Entry<T> {
    record: ProducerRecord,
    completion: T,
    timestamp: i64,
    reserved: usize,
    deadline: Instant,
    /// Flush epoch the record was appended in.
    epoch: u64,
}

#[derive(Debug)]
struct Batch<T> {
    id: BatchId,
    topic: Arc<str>,
    partition: i32,
    entries: Vec<Entry<T>>,
    /// Exact uncompressed encoded size.
    size: usize,
    /// Size at which the batch closes.
    limit: usize,
    closed: bool,
    created: Instant,
    /// Earliest deadline of its records.
    deadline: Instant,
    base_timestamp: i64,
    attempts: u32,
    retry_at: Option<Instant>,
    backoff: Backoff,
    /// An attempt was sent and got no definitive answer: the records may be in the log.
    possibly_persisted: bool,
    /// The bytes of the first drain, resent unchanged by retries.
    encoded: Option<Bytes>,
    /// Drained into a request at least once.
    sent: bool,
    /// Producer id, epoch and first sequence, from the batch's first drain on (idempotence).
    numbering: Option<Numbering>,
}

impl<T> Batch<T> {
    fn persisted(&self) -> Persisted {
        if self.possibly_persisted {
            Persisted::Possibly
        } else {
            Persisted::No
        }
    }
}

#[derive(Debug)]
struct PartitionQueue<T> {
    batches: VecDeque<Batch<T>>,
    /// Batches of this partition in requests whose outcome is not handled yet.
    in_flight: usize,
    /// Sequence of the next record to number (idempotence).
    next_sequence: i32,
    /// Sequence the broker expects next: the one after the last acknowledged batch.
    expected_sequence: i32,
    /// A numbered batch was acknowledged in the current epoch: the broker has state for
    /// the producer here and refuses batches that arrive out of order.
    acknowledged: bool,
    /// The front batch is out being encoded ([`EncodeJob`]): nothing of the partition is
    /// sent until it is back.
    encoding: bool,
    /// Whether the partition is in the current transaction (transactional producers only).
    transaction: Membership,
}

/// A partition's place in the current transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Membership {
    /// Not in it, and not asked for.
    Out,
    /// Asked for ([`Accumulator::take_partitions_to_add`]): its batches wait.
    Requested,
    /// In it: its batches may go.
    In,
}

impl<T> PartitionQueue<T> {
    /// Batches of this partition that may be in flight at once:
    /// `max.in.flight.requests.per.connection`, as in Kafka's clients. Without idempotence a
    /// retry may then land after a later batch (Kafka documents the same; set it to 1 for
    /// strict order without idempotence). With idempotence, until the broker has
    /// acknowledged a numbered batch of the current epoch it has no state for the producer
    /// here and accepts any sequence (KIP-360), so a later batch that overtook a lost first
    /// one would be written before it: one at a time until then.
    fn in_flight_limit(&self, idempotent: bool, max_in_flight: usize) -> usize {
        if !idempotent || self.acknowledged {
            max_in_flight
        } else {
            1
        }
    }
}

impl<T> Default for PartitionQueue<T> {
    fn default() -> Self {
        Self {
            batches: VecDeque::new(),
            in_flight: 0,
            next_sequence: 0,
            expected_sequence: 0,
            acknowledged: false,
            encoding: false,
            transaction: Membership::Out,
        }
    }
}

#[derive(Debug)]
struct InFlight<T> {
    broker: i32,
    batches: Vec<Batch<T>>,
}

/// The accumulator; `T` is what the caller attaches to each record to complete it.
#[derive(Debug)]
pub struct Accumulator<T> {
    config: AccumulatorConfig,
    queues: BTreeMap<Arc<str>, BTreeMap<i32, PartitionQueue<T>>>,
    waiting: BTreeMap<String, VecDeque<Entry<T>>>,
    in_flight: BTreeMap<RequestId, InFlight<T>>,
    in_flight_per_broker: HashMap<i32, usize>,
    completions: VecDeque<CompletedBatch<T>>,
    sticky: StickyPartitioner,
    rng: Rng,
    next_batch_id: BatchId,
    next_request_id: RequestId,
    drain_rotation: usize,
    /// Current flush epoch; records remember the one they were appended in.
    epoch: u64,
    /// Records not yet completed, per epoch.
    outstanding: BTreeMap<u64, usize>,
    /// Highest epoch a flush waits for.
    flush_target: Option<u64>,
    closing: bool,
    buffered: usize,
    metadata_refresh: bool,
    /// An append created or closed a batch, queued a record for metadata or completed one.
    wake: bool,
    /// Emptied entry buffers of completed batches, for new batches.
    spare_entries: Vec<Vec<Entry<T>>>,
    /// Counts restarts of the sequences: an [`EncodeJob`] numbered before one is stale.
    numbering_generation: u64,
    idempotence: Idempotence,
    /// Partitions whose first batch of the transaction waits for them to join it.
    partitions_to_add: Vec<TopicPartition>,
    /// The first record failure of the transaction, for the transaction manager.
    transaction_failure: Option<Error>,
    /// A numbered batch failed in a transaction: the epoch must be bumped through the
    /// coordinator (a transactional producer never bumps it locally).
    sequence_hole: bool,
    /// The transaction is being aborted: records that come back from encoding fail too.
    aborting: Option<Error>,
    /// Batches put back to be sent again after a retriable failure, ever (statistics).
    retried: u64,
}

impl<T> Accumulator<T> {
    /// An empty accumulator; `seed` drives backoff jitter and sticky partition choices.
    pub fn new(config: AccumulatorConfig, seed: u64) -> Self {
        let idempotence = if config.idempotent {
            Idempotence::enabled()
        } else {
            Idempotence::disabled()
        };
        Self {
            config,
            queues: BTreeMap::new(),
            waiting: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            in_flight_per_broker: HashMap::new(),
            completions: VecDeque::new(),
            sticky: StickyPartitioner::new(),
            rng: Rng::new(seed),
            next_batch_id: 0,
            next_request_id: 0,
            drain_rotation: 0,
            epoch: 0,
            outstanding: BTreeMap::new(),
            flush_target: None,
            closing: false,
            buffered: 0,
            metadata_refresh: false,
            wake: false,
            spare_entries: Vec::new(),
            numbering_generation: 0,
            idempotence,
            partitions_to_add: Vec::new(),
            transaction_failure: None,
            sequence_hole: false,
            aborting: None,
            retried: 0,
        }
    }

    /// Sets the idempotent producer id and epoch (from InitProducerId) for batches drained
    /// from now on; every partition's sequences start again at 0.
    pub fn set_producer_id(&mut self, producer: ProducerId) {
        self.idempotence.set_producer_id(producer);
        self.restart_sequences();
    }

    /// An InitProducerId request is due: idempotence is on, there is no producer id (yet, or
    /// any more after the epochs ran out), nothing is in flight and records wait.
    pub fn needs_producer_id(&self) -> bool {
        self.idempotence.needs_producer_id()
            && self.in_flight.is_empty()
            && !self.outstanding.is_empty()
    }

    /// The producer id and epoch batches are numbered with (-1, -1 without idempotence or
    /// before InitProducerId).
    pub fn producer_id(&self) -> Option<ProducerId> {
        self.idempotence.producer()
    }

    /// Goes on without idempotence: the brokers cannot give a producer id and idempotence
    /// was not asked for explicitly.
    pub fn disable_idempotence(&mut self) {
        self.idempotence.disable();
        self.restart_sequences();
    }

    /// The error that ended the producer, if any.
    pub fn fatal(&self) -> Option<&Error> {
        self.idempotence.fatal()
    }

    /// The producer cannot write any more (fenced, not authorized, idempotence asked for
    /// but impossible): every record not in flight fails with `error` now, every record
    /// appended later at once, and records in flight when their answer comes.
    pub fn set_fatal(&mut self, error: Error) {
        let error = if error.is_fatal() {
            error
        } else {
            Error::Fatal(Box::new(error))
        };
        warn!(%error, "producer failed fatally");
        self.idempotence.set_fatal(error.clone());
        for (_, entries) in std::mem::take(&mut self.waiting) {
            for entry in entries {
                self.complete_failed(entry, error.clone(), Persisted::No);
            }
        }
        let mut batches = Vec::new();
        for partitions in self.queues.values_mut() {
            for queue in partitions.values_mut() {
                batches.extend(queue.batches.drain(..));
            }
        }
        for batch in batches {
            let persisted = batch.persisted();
            self.fail_batch(batch, &error, persisted);
        }
        self.wake = true;
    }

    /// Forgets every sequence: queued batches are numbered (and encoded) again when they are
    /// next drained, from 0 in each partition, in queue order (which is sequence order).
    pub(super) fn restart_sequences(&mut self) {
        self.numbering_generation += 1;
        for partitions in self.queues.values_mut() {
            for queue in partitions.values_mut() {
                queue.next_sequence = 0;
                queue.expected_sequence = 0;
                queue.acknowledged = false;
                for batch in &mut queue.batches {
                    if batch.numbering.take().is_some() {
                        batch.encoded = None;
                    }
                }
            }
        }
    }

    /// Batches sent again after a retriable failure (or behind a batch that was), ever.
    pub fn retries(&self) -> u64 {
        self.retried
    }

    /// Bytes of `buffer.memory` held by records not yet completed.
    pub fn buffered_bytes(&self) -> usize {
        self.buffered
    }

    /// Records not yet completed.
    pub fn outstanding_records(&self) -> usize {
        self.outstanding.values().sum()
    }

    /// Nothing left: no record waiting, batched or in flight.
    pub fn is_idle(&self) -> bool {
        self.outstanding.is_empty() && self.in_flight.is_empty() && self.completions.is_empty()
    }

    /// Topics with records waiting for metadata.
    pub fn wanted_topics(&self) -> impl Iterator<Item = &str> {
        self.waiting.keys().map(String::as_str)
    }

    /// True once since the last call if something needs fresh metadata (an unknown topic,
    /// a partition without a leader, an error that means the leader moved, a lost
    /// connection).
    pub fn take_metadata_refresh(&mut self) -> bool {
        std::mem::take(&mut self.metadata_refresh)
    }

    /// True once since the last call if an [`Accumulator::append`] changed what the sender
    /// must do or when it must wake up: it created the first batch of a partition with
    /// nothing in flight or made such a partition's front batch ready, queued a record for
    /// metadata, or completed one at once. Other appends leave it false, so a producer that
    /// appends from other threads wakes the sender at most once per batch, and not at all
    /// while the partitions wait for answers (which wake the sender themselves).
    pub fn take_wake(&mut self) -> bool {
        std::mem::take(&mut self.wake)
    }

    /// Every batch is sendable from now on, and stays so; what follows drains the
    /// accumulator as fast as the brokers allow.
    pub fn close(&mut self) {
        self.closing = true;
    }

    /// Starts a flush: every batch is sendable until all records appended so far have
    /// completed. Returns the token for [`Accumulator::is_flushed`].
    pub fn begin_flush(&mut self) -> u64 {
        let token = self.epoch;
        self.epoch += 1;
        self.flush_target = Some(self.flush_target.map_or(token, |t| t.max(token)));
        token
    }

    /// Every record appended before the flush `token` began has completed.
    pub fn is_flushed(&self, token: u64) -> bool {
        self.outstanding.range(..=token).next().is_none()
    }

    pub(super) fn flushing(&self) -> bool {
        self.flush_target.is_some_and(|t| !self.is_flushed(t))
    }

    /// When something changes by itself: a linger or retry backoff ends, or a record's
    /// delivery timeout passes. Times already reached are left out (they are handled by
    /// [`Accumulator::drain`] and [`Accumulator::handle_timeout`], or wait for a response or
    /// metadata).
    pub fn poll_timeout(&self, now: Instant) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |at: Instant| {
            if at > now {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        };
        for entries in self.waiting.values() {
            for entry in entries {
                consider(entry.deadline);
            }
        }
        let force = self.closing || self.flushing();
        let max_in_flight = self.config.max_in_flight;
        let idempotent = self.idempotence.is_enabled();
        for partitions in self.queues.values() {
            for queue in partitions.values() {
                for batch in &queue.batches {
                    consider(batch.deadline);
                }
                if queue.encoding
                    || queue.in_flight >= queue.in_flight_limit(idempotent, max_in_flight)
                {
                    continue;
                }
                if let Some(front) = queue.batches.front() {
                    if idempotent && front.sent && queue.in_flight > 0 {
                        continue;
                    }
                    match front.retry_at {
                        Some(at) if at > now => consider(at),
                        _ => {
                            if !force && !front.closed && queue.batches.len() == 1 {
                                consider(front.created + self.config.linger);
                            }
                        }
                    }
                }
            }
        }
        for request in self.in_flight.values() {
            for batch in &request.batches {
                if !batch.entries.is_empty() {
                    consider(batch.deadline);
                }
            }
        }
        next
    }
}
