//! The producer's record accumulator, without IO: records are partitioned, gathered into
//! per-partition batches, drained into one Produce request per leader, and retried, split or
//! failed according to the answers (the Java client's `RecordAccumulator` and the batch
//! handling of its `Sender`; KIP-91 delivery timeout; KIP-480/794 sticky partitioning).
//!
//! Call order, as the sender task uses it (time is always an argument):
//! 1. [`Accumulator::append`] each record; it is partitioned at once if the topic's metadata
//!    is known, else it waits in a per-topic queue (and [`Accumulator::wanted_topics`] names
//!    the topic). After each metadata refresh call [`Accumulator::handle_metadata`].
//! 2. [`Accumulator::handle_timeout`] fails whatever passed `delivery.timeout.ms`.
//! 3. [`Accumulator::drain`] returns the requests to send now, at most one per leader broker
//!    and `max.in.flight.requests.per.connection` per broker in flight.
//! 4. Feed each request's outcome to [`Accumulator::handle_response`].
//! 5. Deliver [`Accumulator::poll_completion`]; refresh metadata when
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
//! varint helpers of [`proto::varint`](crate::proto::varint)); `batch.size` is compared with
//! that uncompressed size. A batch never grows beyond [`max_batch_bytes`], what fits
//! `max.request.size` next to an upper bound of the request's own fields; after compression
//! (which may grow incompressible data slightly) a batch that no longer fits is split in
//! halves before it is sent. Requests are packed up to `max.request.size` with the same
//! bounds.
//!
//! **Idempotence.** Each partition keeps the sequence of its next record and the one the
//! broker expects next (after the last acknowledged batch); each batch carries a producer
//! id, epoch and base sequence, assigned when the batch is first drained and kept across
//! retries (the encoded bytes are reused). Nothing is drained until
//! [`Accumulator::set_producer_id`] gave an id ([`Accumulator::needs_producer_id`] says when
//! to ask). A numbered batch that fails leaves a hole in its partition's sequences: the
//! epoch is bumped once nothing is in flight, and every queued batch is numbered afresh.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::{debug, warn};
use uuid::Uuid;

use super::backoff::{Backoff, Rng};
use super::idempotence::{self, Idempotence, Reset, SequenceVerdict};
use super::metadata::{Metadata, TopicInfo};
use super::partitioner::{partition_for_key, StickyPartitioner};
use crate::config::{Acks, Config, Partitioner};
use crate::error::{Error, Persisted};
use crate::proto::batch_header::BatchError;
use crate::proto::batch_header::BATCH_HEADER_LEN;
use crate::proto::compression::Compression;
use crate::proto::record_batch::{record_body_len, record_len, RecordBatchWriter};
use crate::proto::varint;
use crate::proto::ErrorCode;
use crate::record::ProducerRecord;

/// Identifies a batch for the life of the accumulator.
pub type BatchId = u64;
/// Identifies a drained request.
pub type RequestId = u64;

/// Upper bound of a Produce request's bytes besides its topics and batches: frame length,
/// request header without the client id, transactional id (null), acks, timeout, the topic
/// array's length and tagged fields.
pub const REQUEST_OVERHEAD: usize = 48;
/// Upper bound per topic besides its name: name length or topic id, partition array length,
/// tagged fields.
pub const TOPIC_OVERHEAD: usize = 24;
/// Most emptied batch buffers kept for reuse.
const MAX_SPARE_BUFFERS: usize = 64;

/// Upper bound per partition besides its batch: index, records length, tagged fields.
pub const PARTITION_OVERHEAD: usize = 16;

/// The largest batch (encoded) that fits one Produce request of `max_request_size` bytes
/// for `topic`, sent with a client id of `client_id_len` bytes.
pub fn max_batch_bytes(max_request_size: usize, client_id_len: usize, topic: &str) -> usize {
    max_request_size.saturating_sub(
        REQUEST_OVERHEAD + client_id_len + TOPIC_OVERHEAD + topic.len() + PARTITION_OVERHEAD,
    )
}

/// Bytes of a batch holding one record of `record_size` bytes.
pub fn single_record_batch_bytes(record_size: usize) -> usize {
    BATCH_HEADER_LEN.saturating_add(record_size)
}

/// Bytes `record` takes in an uncompressed batch (length prefix included) at these deltas
/// (saturating: a record whose lengths overflow the wire's `int32`s takes `usize::MAX`).
pub fn record_size(record: &ProducerRecord, offset_delta: i32, timestamp_delta: i64) -> usize {
    record_len(
        timestamp_delta,
        offset_delta,
        record.key.as_deref(),
        record.value.as_deref(),
        &record.headers,
    )
    .unwrap_or(usize::MAX)
}

/// Bytes `record` takes in any batch, at the largest possible deltas: what `send` reserves
/// of `buffer.memory` and checks against `max.request.size`.
pub fn record_size_upper_bound(record: &ProducerRecord) -> usize {
    record_body_len(
        varint::MAX_VARLONG_LEN,
        varint::MAX_VARINT_LEN,
        record.key.as_deref(),
        record.value.as_deref(),
        &record.headers,
    )
    .map_or(usize::MAX, |body| {
        varint::MAX_VARINT_LEN.saturating_add(body)
    })
}

fn as_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

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
    /// `enable.idempotence`, as it resolves with the other settings.
    pub idempotent: bool,
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
            idempotent: config.idempotence(),
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
enum Outcome {
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
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
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
    idempotence: Idempotence,
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
            idempotence,
        }
    }

    /// Sets the idempotent producer id and epoch (from InitProducerId) for batches drained
    /// from now on; every partition's sequences start again at 0.
    pub fn set_producer_id(&mut self, producer_id: i64, producer_epoch: i16) {
        self.idempotence
            .set_producer_id(producer_id, producer_epoch);
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
    pub fn producer_id(&self) -> (i64, i16) {
        self.idempotence.producer()
    }

    /// Goes on without idempotence: the brokers cannot give a producer id and idempotence
    /// was not asked for explicitly.
    pub fn disable_idempotence(&mut self) {
        self.idempotence.disable();
        self.restart_sequences();
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
    fn restart_sequences(&mut self) {
        for partitions in self.queues.values_mut() {
            for queue in partitions.values_mut() {
                queue.next_sequence = 0;
                queue.expected_sequence = 0;
                queue.acknowledged = false;
                for batch in &mut queue.batches {
                    if batch.base_sequence >= 0 || batch.producer_id >= 0 {
                        batch.producer_id = -1;
                        batch.producer_epoch = -1;
                        batch.base_sequence = -1;
                        batch.encoded = None;
                    }
                }
            }
        }
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

    fn flushing(&self) -> bool {
        self.flush_target.is_some_and(|t| !self.is_flushed(t))
    }

    /// Takes a record: partitions it and appends it to its partition's last batch (or a
    /// new one) if the topic's metadata is known, else queues it until
    /// [`Accumulator::handle_metadata`]. Records of a topic keep their order either way.
    pub fn append(&mut self, new: NewRecord<T>, metadata: &Metadata, now: Instant) -> Placement {
        let info = metadata.topic(&new.record.topic);
        self.append_known(new, info, metadata, now)
    }

    /// As [`Accumulator::append`], except that a record whose explicit partition the topic's
    /// known metadata does not have is given back rather than failed through its
    /// completion: for a `send` that reports that at once. Looks the topic up once.
    #[allow(clippy::result_large_err)] // the record goes back to the caller as it came
    pub fn append_or_reject(
        &mut self,
        new: NewRecord<T>,
        metadata: &Metadata,
        now: Instant,
    ) -> Result<Placement, NewRecord<T>> {
        let info = metadata.topic(&new.record.topic);
        if let (Some(partition), Some(info)) = (new.record.partition, info) {
            if usize::try_from(partition).map_or(true, |p| p >= info.partitions.len()) {
                return Err(new);
            }
        }
        Ok(self.append_known(new, info, metadata, now))
    }

    fn append_known(
        &mut self,
        new: NewRecord<T>,
        info: Option<&TopicInfo>,
        metadata: &Metadata,
        now: Instant,
    ) -> Placement {
        let entry = Entry {
            deadline: new.sent_at + self.config.delivery_timeout,
            record: new.record,
            completion: new.completion,
            timestamp: new.timestamp,
            reserved: new.reserved,
            epoch: self.epoch,
        };
        *self.outstanding.entry(entry.epoch).or_default() += 1;
        self.buffered = self.buffered.saturating_add(entry.reserved);
        if let Some(error) = self.idempotence.fatal() {
            let error = error.clone();
            self.complete_failed(entry, error, Persisted::No);
            self.wake = true;
            return Placement::Failed;
        }
        let topic = &*entry.record.topic;
        if let Some(waiting) = self.waiting.get_mut(topic) {
            // Behind records of the same topic that wait: keep the order.
            self.metadata_refresh = true;
            self.wake = true;
            waiting.push_back(entry);
            return Placement::WaitingForMetadata;
        }
        // `place_in` queues the record for metadata if the topic is unknown.
        self.place_in(entry, info, metadata, now)
    }

    /// Partitions the records whose topic `metadata` now knows.
    pub fn handle_metadata(&mut self, metadata: &Metadata, now: Instant) {
        let known: Vec<String> = self
            .waiting
            .keys()
            .filter(|topic| metadata.topic(topic).is_some())
            .cloned()
            .collect();
        for topic in known {
            let Some(entries) = self.waiting.remove(&topic) else {
                continue;
            };
            debug!(%topic, records = entries.len(), "metadata known, partitioning");
            for entry in entries {
                self.place(entry, metadata, now);
            }
        }
    }

    fn place(&mut self, entry: Entry<T>, metadata: &Metadata, now: Instant) -> Placement {
        let info = metadata.topic(&entry.record.topic);
        self.place_in(entry, info, metadata, now)
    }

    /// Places `entry` in its topic described by `info` (`None`: unknown yet).
    fn place_in(
        &mut self,
        entry: Entry<T>,
        info: Option<&TopicInfo>,
        metadata: &Metadata,
        now: Instant,
    ) -> Placement {
        let topic = &*entry.record.topic;
        let Some(info) = info else {
            self.metadata_refresh = true;
            self.wake = true;
            self.waiting
                .entry(topic.to_string())
                .or_default()
                .push_back(entry);
            return Placement::WaitingForMetadata;
        };
        let count = info.partitions.len();
        let count_u32 = u32::try_from(count).unwrap_or(u32::MAX);
        let partition = match entry.record.partition {
            Some(p) => p,
            None => {
                let keyed = match self.config.partitioner {
                    Partitioner::Random => None,
                    Partitioner::Murmur2Random => entry.record.key.as_deref(),
                    Partitioner::Murmur2 => Some(entry.record.key.as_deref().unwrap_or_default()),
                };
                match keyed {
                    Some(key) => partition_for_key(key, count_u32),
                    None => {
                        let available = info
                            .partitions
                            .iter()
                            .filter(|p| p.leader >= 0 && metadata.broker(p.leader).is_some())
                            .map(|p| p.partition);
                        self.sticky.partition(
                            topic,
                            available,
                            count_u32,
                            entry.reserved,
                            self.config.batch_size,
                            &mut self.rng,
                        )
                    }
                }
            }
        };
        if usize::try_from(partition).map_or(true, |p| p >= count) {
            let error = Error::UnknownPartition {
                topic: topic.to_string(),
                partition,
            };
            self.complete_failed(entry, error, Persisted::No);
            self.wake = true;
            return Placement::Failed;
        }
        self.append_to_partition(entry, partition, now);
        Placement::Partition(partition)
    }

    fn append_to_partition(&mut self, entry: Entry<T>, partition: i32, now: Instant) {
        let limit = self.batch_limit(&entry.record.topic);
        let (idempotent, max_in_flight) =
            (self.idempotence.is_enabled(), self.config.max_in_flight);
        // Look the topic up before cloning its name: a clone per record is measurable.
        let partitions = match self.queues.get_mut(&*entry.record.topic) {
            Some(partitions) => partitions,
            None => self.queues.entry(entry.record.topic.clone()).or_default(),
        };
        let queue = partitions.entry(partition).or_default();
        // The sender needs waking only when the front batch of a partition that may send
        // changes: a first batch (its linger starts) or a front that became ready. With
        // the partition's in-flight limit reached an answer wakes the sender, which drains
        // then; and a batch behind the front changes no deadline.
        let front_changes = queue.in_flight < queue.in_flight_limit(idempotent, max_in_flight)
            && queue.batches.len() <= 1;
        let entry = match queue.batches.back_mut() {
            Some(batch) => match try_append(batch, entry) {
                None => {
                    if batch.closed && front_changes {
                        self.wake = true;
                    }
                    return;
                }
                Some(entry) => {
                    batch.closed = true;
                    entry
                }
            },
            None => entry,
        };
        if front_changes {
            self.wake = true;
        }
        let id = self.next_batch_id;
        self.next_batch_id += 1;
        let record_size = record_size(&entry.record, 0, 0);
        let size = BATCH_HEADER_LEN + record_size;
        // Room for as many records of this size as the batch takes, so that appends do not
        // move the entries again and again (bounded: a batch of tiny records grows).
        let capacity = (limit.saturating_sub(BATCH_HEADER_LEN) / record_size.max(1)).clamp(1, 1024);
        let topic = entry.record.topic.clone();
        let (deadline, base_timestamp) = (entry.deadline, entry.timestamp);
        let mut entries = self.spare_entries.pop().unwrap_or_default();
        entries.reserve(capacity);
        entries.push(entry);
        let batch = Batch {
            id,
            topic,
            partition,
            size,
            limit,
            closed: size >= limit,
            created: now,
            deadline,
            base_timestamp,
            attempts: 0,
            retry_at: None,
            backoff: Backoff::new(self.config.retry_backoff, self.config.retry_backoff_max),
            possibly_persisted: false,
            encoded: None,
            sent: false,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            entries,
        };
        queue.batches.push_back(batch);
    }

    /// Size at which a batch of `topic` closes: `batch.size`, but never more than fits a
    /// request.
    fn batch_limit(&self, topic: &str) -> usize {
        self.config.batch_size.min(self.max_batch(topic))
    }

    fn max_batch(&self, topic: &str) -> usize {
        max_batch_bytes(
            self.config.max_request_size,
            self.config.client_id_len,
            topic,
        )
    }

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
                    if batch.base_sequence >= 0 {
                        // Its answer no longer matters: whatever it is, the sequence is lost.
                        self.idempotence.request_bump();
                    }
                }
            }
        }
        for (entries, persisted) in expired_in_flight {
            let failure = Failure {
                error: timeout.clone(),
                persisted,
            };
            self.finish(entries, Outcome::Failed(failure));
        }
    }

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
            let (producer_id, epoch) = self.idempotence.producer();
            debug!(
                producer_id,
                epoch, "bumped the producer epoch; sequences start again at 0"
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
        let (producer_id, producer_epoch) = self.idempotence.producer();
        loop {
            let queue = self.queues.get_mut(topic)?.get_mut(&partition)?;
            let batch = queue.batches.front_mut()?;
            if let Some(encoded) = &batch.encoded {
                return Some(encoded.len());
            }
            if producer_id >= 0 && batch.base_sequence < 0 {
                // Batches are numbered in queue order: the front is the next to number.
                batch.producer_id = producer_id;
                batch.producer_epoch = producer_epoch;
                batch.base_sequence = queue.next_sequence;
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
                    if batch.base_sequence >= 0 {
                        // Never sent: give its sequences to the halves.
                        queue.next_sequence = batch.base_sequence;
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
                    if batch.base_sequence >= 0 {
                        // Never sent: its sequences go to the next batch.
                        queue.next_sequence = batch.base_sequence;
                        batch.base_sequence = -1;
                    }
                    self.fail_batch(batch, &error, Persisted::No);
                    return None;
                }
            }
        }
    }

    /// Splits a batch of two or more records into halves, in order; both keep the
    /// original's deadline, attempts and persisted state, and are closed.
    fn split(&mut self, batch: Batch<T>) -> (Batch<T>, Batch<T>) {
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
                producer_id: -1,
                producer_epoch: -1,
                base_sequence: -1,
                entries,
            }
        };
        let first = make(entries);
        let second = make(second_entries);
        (first, second)
    }

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
        let context = Some(match message {
            Some(message) => format!("{}/{}: {message}", batch.topic, batch.partition),
            None => format!("{}/{}", batch.topic, batch.partition),
        });
        let error = Error::Broker { code, context };
        if batch.base_sequence >= 0 {
            let is_next = self
                .queues
                .get(&batch.topic)
                .and_then(|p| p.get(&batch.partition))
                .is_some_and(|queue| queue.expected_sequence == batch.base_sequence);
            match idempotence::verdict(code, is_next) {
                SequenceVerdict::NotASequenceError => {}
                SequenceVerdict::AlreadyWritten => {
                    debug!(topic = %batch.topic, partition = batch.partition,
                        sequence = batch.base_sequence, "broker already has the batch");
                    self.complete_batch(batch, -1, -1);
                    return;
                }
                SequenceVerdict::RetryInOrder => {
                    // Refused because an earlier batch is missing: no attempt of its own.
                    self.requeue(batch);
                    return;
                }
                SequenceVerdict::RetryAfterBump => {
                    self.idempotence.request_bump();
                    self.retry_or_fail(batch, error, now);
                    return;
                }
                SequenceVerdict::Fail => {
                    warn!(topic = %batch.topic, partition = batch.partition,
                        sequence = batch.base_sequence,
                        "broker expected another sequence after every earlier batch was acknowledged");
                    self.fail_batch(batch, &error, Persisted::No);
                    return;
                }
                SequenceVerdict::Fatal => {
                    self.fail_batch(batch, &error, Persisted::No);
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
            if batch.base_sequence >= 0 {
                // The halves need sequences of their own: a new epoch numbers them.
                self.idempotence.request_bump();
            }
            let (first, second) = self.split(batch);
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
        let delay = batch.backoff.next_delay(&mut self.rng);
        batch.retry_at = Some(now + delay);
        debug!(topic = %batch.topic, partition = batch.partition, attempt = batch.attempts,
            ?delay, %error, "retrying batch");
        self.requeue(batch);
    }

    /// Puts a batch back to be sent again: at the front of its partition's queue, or, when
    /// numbered, before the first batch numbered after it (answers of several batches in
    /// flight may come back in any order).
    fn requeue(&mut self, batch: Batch<T>) {
        let queue = self
            .queues
            .entry(batch.topic.clone())
            .or_default()
            .entry(batch.partition)
            .or_default();
        let position = if batch.base_sequence >= 0 {
            queue
                .batches
                .iter()
                .position(|b| {
                    b.base_sequence < 0
                        || idempotence::precedes(batch.base_sequence, b.base_sequence)
                })
                .unwrap_or(queue.batches.len())
        } else {
            0
        };
        queue.batches.insert(position, batch);
    }

    fn complete_batch(&mut self, batch: Batch<T>, base_offset: i64, log_append_time: i64) {
        if batch.base_sequence >= 0 {
            if let Some(queue) = self
                .queues
                .get_mut(&batch.topic)
                .and_then(|p| p.get_mut(&batch.partition))
            {
                queue.expected_sequence =
                    idempotence::advance(batch.base_sequence, as_i32(batch.entries.len()));
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

    fn fail_batch(&mut self, batch: Batch<T>, error: &Error, persisted: Persisted) {
        warn!(topic = %batch.topic, partition = batch.partition, records = batch.entries.len(),
            %error, ?persisted, "batch failed");
        if batch.base_sequence >= 0 {
            // Its sequences are a hole the partition's later batches cannot get past.
            self.idempotence.request_bump();
        }
        let failure = Failure {
            error: error.clone(),
            persisted,
        };
        self.finish(batch.entries, Outcome::Failed(failure));
    }

    fn complete_failed(&mut self, entry: Entry<T>, error: Error, persisted: Persisted) {
        self.finish(vec![entry], Outcome::Failed(Failure { error, persisted }));
    }

    /// Queues the outcome of `entries` (in order) and stops counting them as outstanding.
    fn finish(&mut self, entries: Vec<Entry<T>>, outcome: Outcome) {
        if entries.is_empty() {
            return;
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
                if queue.in_flight >= queue.in_flight_limit(idempotent, max_in_flight) {
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

/// Appends to an open batch if the record fits (`None`), else gives it back.
fn try_append<T>(batch: &mut Batch<T>, entry: Entry<T>) -> Option<Entry<T>> {
    if batch.closed || batch.encoded.is_some() {
        return Some(entry);
    }
    let Ok(offset_delta) = i32::try_from(batch.entries.len()) else {
        return Some(entry);
    };
    let Some(timestamp_delta) = entry.timestamp.checked_sub(batch.base_timestamp) else {
        return Some(entry);
    };
    let size = record_size(&entry.record, offset_delta, timestamp_delta);
    if batch.size.saturating_add(size) > batch.limit {
        return Some(entry);
    }
    batch.size += size;
    batch.deadline = batch.deadline.min(entry.deadline);
    batch.entries.push(entry);
    if batch.size >= batch.limit {
        batch.closed = true;
    }
    None
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
    writer.finish(batch.producer_id, batch.producer_epoch, batch.base_sequence)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::record_batch::{DecodeLimits, Header, RecordBatch, RecordBatchBuilder};
    use kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::{BrokerId, MetadataResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;

    const MS: Duration = Duration::from_millis(1);

    /// Topic `t` with these partition leaders (-1: none), brokers 0..3.
    fn metadata(leaders: &[i32]) -> Metadata {
        let brokers = (0..3)
            .map(|id| {
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(id))
                    .with_host(StrBytes::from_static_str("h"))
                    .with_port(9092 + id)
            })
            .collect();
        let partitions = leaders
            .iter()
            .enumerate()
            .map(|(i, leader)| {
                MetadataResponsePartition::default()
                    .with_partition_index(i as i32)
                    .with_leader_id(BrokerId(*leader))
                    .with_leader_epoch(1)
            })
            .collect();
        let topic = MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str("t"))))
            .with_topic_id(Uuid::from_u128(9))
            .with_partitions(partitions);
        let mut md = Metadata::new(Duration::from_secs(300));
        md.handle_response(
            &MetadataResponse::default()
                .with_brokers(brokers)
                .with_topics(vec![topic]),
            Instant::now(),
        );
        md
    }

    fn config() -> AccumulatorConfig {
        AccumulatorConfig {
            batch_size: 16 * 1024,
            linger: 50 * MS,
            max_request_size: 1024 * 1024,
            client_id_len: 6,
            compression: Compression::None,
            delivery_timeout: Duration::from_secs(120),
            retries: u32::MAX,
            retry_backoff: 100 * MS,
            retry_backoff_max: Duration::from_secs(1),
            max_in_flight: 5,
            partitioner: Partitioner::Murmur2Random,
            acks: Acks::All,
            idempotent: false,
        }
    }

    /// A record whose completion is its number.
    fn record(n: u32, partition: Option<i32>, value_len: usize, at: Instant) -> NewRecord<u32> {
        let mut record = ProducerRecord::new("t")
            .with_key(format!("key-{n}"))
            .with_value(vec![b'v'; value_len]);
        record.partition = partition;
        NewRecord {
            reserved: record_size_upper_bound(&record),
            record,
            completion: n,
            sent_at: at,
            timestamp: 1_700_000_000_000 + i64::from(n),
        }
    }

    fn completions(acc: &mut Accumulator<u32>) -> Vec<(u32, Result<Delivered, Failure>)> {
        std::iter::from_fn(|| acc.poll_completion())
            .map(|c| (c.completion, c.result))
            .collect()
    }

    fn answer(plan: &ProduceRequestPlan, base_offset: i64) -> ProduceOutcome {
        ProduceOutcome::Answered(
            plan.batches
                .iter()
                .map(|b| PartitionResponse {
                    topic: b.topic.to_string(),
                    partition: b.partition,
                    error: None,
                    error_message: None,
                    base_offset,
                    log_append_time: -1,
                })
                .collect(),
        )
    }

    fn error_answer(plan: &ProduceRequestPlan, code: ErrorCode) -> ProduceOutcome {
        ProduceOutcome::Answered(
            plan.batches
                .iter()
                .map(|b| PartitionResponse {
                    topic: b.topic.to_string(),
                    partition: b.partition,
                    error: Some(code),
                    error_message: None,
                    base_offset: -1,
                    log_append_time: -1,
                })
                .collect(),
        )
    }

    fn decode(batch: &DrainedBatch) -> RecordBatch {
        RecordBatch::decode(&batch.records, &DecodeLimits::default()).expect("valid batch")
    }

    #[test]
    fn sizes_match_the_encoder_exactly() {
        let records = [
            ProducerRecord::new("t"),
            ProducerRecord::new("t")
                .with_key("k")
                .with_value(vec![0u8; 300]),
            ProducerRecord::new("t")
                .with_value(vec![1u8; 70_000])
                .with_header("a", "b")
                .with_headers(vec![Header::null("x"), Header::new("y", vec![2u8; 200])]),
        ];
        let timestamps = [1_000i64, 900, 1_000_000_000];
        let mut builder = RecordBatchBuilder::new();
        let mut expected = BATCH_HEADER_LEN;
        for (i, (record, ts)) in records.iter().zip(timestamps).enumerate() {
            builder
                .append(
                    ts,
                    record.key.clone(),
                    record.value.clone(),
                    record.headers.clone(),
                )
                .expect("append");
            let size = record_size(record, i as i32, ts - timestamps[0]);
            assert!(size <= record_size_upper_bound(record));
            expected += size;
        }
        let encoded = builder.build().encode().expect("encode");
        assert_eq!(encoded.len(), expected);
    }

    #[test]
    fn appends_ask_for_a_wake_up_only_when_a_batch_opens_or_closes() {
        let t0 = Instant::now();
        let md = metadata(&[0, 1]);
        let mut config = config();
        config.batch_size = 400;
        config.max_in_flight = 1;
        let mut acc = Accumulator::new(config, 1);
        acc.append(record(1, Some(0), 100, t0), &md, t0);
        assert!(
            acc.take_wake(),
            "a new batch: the sender must arm its linger timer"
        );
        assert!(!acc.take_wake(), "once per cause");
        acc.append(record(2, Some(0), 100, t0), &md, t0);
        assert!(
            !acc.take_wake(),
            "an append to an open batch changes no deadline"
        );
        acc.append(record(3, Some(0), 100, t0), &md, t0);
        acc.append(record(4, Some(0), 100, t0), &md, t0);
        assert!(
            acc.take_wake(),
            "the batch filled up (closed, or a second one opened)"
        );
        acc.append(record(5, Some(1), 100, t0), &md, t0);
        assert!(acc.take_wake(), "another partition's first batch");
        acc.append(record(6, Some(7), 100, t0), &md, t0);
        assert!(
            acc.take_wake(),
            "a record failed at once: its completion is to deliver"
        );
        // Partition 0's ready batch goes out: while it is in flight, appends there are
        // the answer's business.
        let plans = acc.drain(t0, &md, false);
        let to_p0 = plans
            .iter()
            .find(|p| p.batches.iter().any(|b| b.partition == 0))
            .expect("partition 0 drained");
        for n in 10..20 {
            acc.append(record(n, Some(0), 100, t0), &md, t0);
            assert!(!acc.take_wake(), "record {n} behind a batch in flight");
        }
        acc.handle_response(to_p0.request_id, answer(to_p0, 0), t0);
        assert!(
            acc.drain(t0, &md, false)
                .iter()
                .any(|p| p.batches.iter().any(|b| b.partition == 0)),
            "the answer lets the next one go"
        );
        let mut acc = Accumulator::new(self::config(), 1);
        let unknown = Metadata::new(Duration::from_secs(300));
        acc.append(record(7, None, 10, t0), &unknown, t0);
        assert!(
            acc.take_wake(),
            "a record waits for metadata: the sender must refresh"
        );
        acc.append(record(8, None, 10, t0), &unknown, t0);
        assert!(acc.take_wake(), "behind it, too");
    }

    #[test]
    fn linger_holds_a_batch_until_it_is_due() {
        let t0 = Instant::now();
        let md = metadata(&[0, 1]);
        let mut acc = Accumulator::new(config(), 1);
        assert_eq!(
            acc.append(record(1, Some(1), 10, t0), &md, t0),
            Placement::Partition(1)
        );
        assert!(acc.drain(t0, &md, false).is_empty());
        assert!(acc.drain(t0 + 49 * MS, &md, false).is_empty());
        assert_eq!(acc.poll_timeout(t0), Some(t0 + 50 * MS));
        let plans = acc.drain(t0 + 50 * MS, &md, false);
        assert_eq!(plans.len(), 1);
        assert_eq!(plans[0].broker, 1);
        assert_eq!(plans[0].batches[0].topic_id, Uuid::from_u128(9));
        // A waiting send, a flush or close make it sendable at once.
        let mut acc = Accumulator::new(config(), 1);
        acc.append(record(1, Some(0), 10, t0), &md, t0);
        assert_eq!(acc.drain(t0, &md, true).len(), 1);
        let mut acc = Accumulator::new(config(), 1);
        acc.append(record(1, Some(0), 10, t0), &md, t0);
        let token = acc.begin_flush();
        assert!(!acc.is_flushed(token));
        let plans = acc.drain(t0, &md, false);
        assert_eq!(plans.len(), 1);
        acc.handle_response(plans[0].request_id, answer(&plans[0], 0), t0);
        assert!(acc.is_flushed(token));
        assert!(!acc.is_idle(), "a completion is still to be delivered");
        assert_eq!(completions(&mut acc).len(), 1);
        assert!(acc.is_idle());
    }

    #[test]
    fn batch_size_closes_a_batch_and_the_closed_one_goes_first() {
        let t0 = Instant::now();
        let md = metadata(&[0]);
        let mut acc = Accumulator::new(
            AccumulatorConfig {
                batch_size: 1000,
                ..config()
            },
            1,
        );
        for n in 0..5 {
            acc.append(record(n, Some(0), 300, t0), &md, t0);
        }
        // Three records of about 320 bytes fill a 1000-byte batch (with its 61-byte header)
        // only to 3 * 320 + 61 > 1000: two fit, the third opens a new batch.
        let plans = acc.drain(t0, &md, false);
        assert_eq!(plans.len(), 1);
        let first = decode(&plans[0].batches[0]);
        assert_eq!(first.records.len(), 2);
        assert!(plans[0].batches[0].records.len() <= 1000);
        acc.handle_response(plans[0].request_id, answer(&plans[0], 0), t0);
        let done = completions(&mut acc);
        assert_eq!(
            done.iter()
                .map(|(n, r)| (*n, r.as_ref().map(|d| d.offset).ok()))
                .collect::<Vec<_>>(),
            vec![(0, Some(0)), (1, Some(1))]
        );
        // The second batch (two records) is closed too; the third is open and lingers.
        let plans = acc.drain(t0, &md, false);
        assert_eq!(decode(&plans[0].batches[0]).records.len(), 2);
        acc.handle_response(plans[0].request_id, answer(&plans[0], 2), t0);
        assert!(acc.drain(t0, &md, false).is_empty());
        assert_eq!(acc.drain(t0 + 50 * MS, &md, false).len(), 1);
    }

    #[test]
    fn with_one_in_flight_a_partition_is_muted_and_a_retry_goes_first() {
        let t0 = Instant::now();
        let md = metadata(&[0, 0]);
        let mut acc = Accumulator::new(
            AccumulatorConfig {
                batch_size: 200,
                max_in_flight: 1,
                ..config()
            },
            1,
        );
        for n in 0..3 {
            acc.append(record(n, Some(0), 100, t0), &md, t0);
        }
        acc.append(record(9, Some(1), 100, t0), &md, t0);
        let first = acc.drain(t0, &md, false);
        // Partition 0's first batch only; partition 1 lingers.
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].batches.len(), 1);
        let sent_bytes = first[0].batches[0].records.clone();
        assert!(
            acc.drain(t0, &md, false).is_empty(),
            "partition 0 is muted while its batch is in flight"
        );
        acc.handle_response(
            first[0].request_id,
            ProduceOutcome::Failed {
                error: Error::Disconnected {
                    address: "h:9092".into(),
                },
                sent: true,
            },
            t0,
        );
        assert!(
            acc.take_metadata_refresh(),
            "a lost connection refreshes metadata"
        );
        assert!(completions(&mut acc).is_empty());
        // Partition 1 lingers 50 ms and goes alone: partition 0 backs off.
        assert_eq!(acc.poll_timeout(t0), Some(t0 + 50 * MS));
        let other = acc.drain(t0 + 50 * MS, &md, false);
        assert_eq!(other.len(), 1);
        assert_eq!(other[0].batches[0].partition, 1);
        acc.handle_response(other[0].request_id, answer(&other[0], 0), t0 + 50 * MS);
        let retry_at = acc.poll_timeout(t0 + 50 * MS).expect("backoff");
        let wait = retry_at - t0;
        assert!(wait >= 80 * MS && wait <= 120 * MS, "{wait:?}");
        assert!(acc.drain(retry_at - MS, &md, false).is_empty());
        let again = acc.drain(retry_at, &md, false);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].batches.len(), 1);
        assert_eq!(
            again[0].batches[0].records, sent_bytes,
            "a retry resends the same bytes"
        );
        acc.handle_response(again[0].request_id, answer(&again[0], 10), retry_at);
        let done = completions(&mut acc);
        let offsets: Vec<(u32, i64)> = done
            .iter()
            .map(|(n, r)| (*n, r.as_ref().map(|d| d.offset).unwrap_or(-2)))
            .collect();
        assert_eq!(offsets, vec![(9, 0), (0, 10)]);
        // The remaining batches of partition 0 follow, one at a time, in order.
        for (n, offset) in [(1, 11), (2, 12)] {
            let next = acc.drain(retry_at, &md, false);
            assert_eq!(next.len(), 1);
            assert!(acc.drain(retry_at, &md, false).is_empty());
            acc.handle_response(next[0].request_id, answer(&next[0], offset), retry_at);
            let done = completions(&mut acc);
            assert!(matches!(&done[..], [(m, Ok(d))] if *m == n && d.offset == offset));
        }
    }

    #[test]
    fn keys_follow_murmur2_and_keyless_records_stick() {
        let t0 = Instant::now();
        let md = metadata(&[0, 1, 2, 0, 1, 2]);
        let mut acc = Accumulator::new(config(), 3);
        for n in 0..20 {
            let placement = acc.append(record(n, None, 10, t0), &md, t0);
            let key = format!("key-{n}");
            assert_eq!(
                placement,
                Placement::Partition(partition_for_key(key.as_bytes(), 6))
            );
        }
        let mut keyless = Vec::new();
        for n in 0..10 {
            let mut new = record(100 + n, None, 10, t0);
            new.record.key = None;
            keyless.push(acc.append(new, &md, t0));
        }
        assert!(keyless.windows(2).all(|w| w[0] == w[1]), "{keyless:?}");
    }

    #[test]
    fn the_partitioner_setting_decides_for_keyless_and_keyed_records() {
        let t0 = Instant::now();
        let md = metadata(&[0, 1, 2, 0, 1, 2]);
        let keyless = |n| {
            let mut new = record(n, None, 10, t0);
            new.record.key = None;
            new
        };
        let mut acc = Accumulator::new(
            AccumulatorConfig {
                partitioner: Partitioner::Murmur2,
                ..config()
            },
            1,
        );
        let empty_key = Placement::Partition(partition_for_key(b"", 6));
        for n in 0..5 {
            assert_eq!(acc.append(keyless(n), &md, t0), empty_key);
        }
        // `random` ignores keys: every record sticks to one partition until the batch fills.
        let mut acc = Accumulator::new(
            AccumulatorConfig {
                partitioner: Partitioner::Random,
                ..config()
            },
            1,
        );
        let placements: Vec<Placement> = (0..10)
            .map(|n| acc.append(record(n, None, 10, t0), &md, t0))
            .collect();
        assert!(
            placements.windows(2).all(|w| w[0] == w[1]),
            "{placements:?}"
        );
        // Sticky choices only go to partitions with a leader.
        let md = metadata(&[-1, -1, 2, -1, -1, -1]);
        let mut acc = Accumulator::new(config(), 5);
        for n in 0..10 {
            assert_eq!(acc.append(keyless(n), &md, t0), Placement::Partition(2));
        }
    }

    #[test]
    fn an_unknown_topic_waits_for_metadata_and_a_missing_partition_fails() {
        let t0 = Instant::now();
        let empty = Metadata::new(Duration::from_secs(300));
        let mut acc = Accumulator::new(config(), 1);
        assert_eq!(
            acc.append(record(1, None, 10, t0), &empty, t0),
            Placement::WaitingForMetadata
        );
        assert!(acc.take_metadata_refresh());
        assert_eq!(acc.wanted_topics().collect::<Vec<_>>(), vec!["t"]);
        // Order is kept: a later record joins the queue even once metadata is known.
        let md = metadata(&[0, 1]);
        assert_eq!(
            acc.append(record(2, Some(7), 10, t0), &md, t0),
            Placement::WaitingForMetadata
        );
        acc.handle_metadata(&md, t0);
        assert_eq!(acc.wanted_topics().count(), 0);
        let done = completions(&mut acc);
        assert_eq!(done.len(), 1);
        assert!(matches!(
            &done[0],
            (
                2,
                Err(Failure {
                    error: Error::UnknownPartition { partition: 7, .. },
                    persisted: Persisted::No
                })
            )
        ));
        assert_eq!(acc.drain(t0 + 50 * MS, &md, false).len(), 1);
        // Never known: the delivery timeout fails it, never sent.
        let mut acc = Accumulator::new(config(), 1);
        acc.append(record(3, None, 10, t0), &empty, t0);
        assert_eq!(acc.poll_timeout(t0), Some(t0 + Duration::from_secs(120)));
        acc.handle_timeout(t0 + Duration::from_secs(120), |_| true);
        assert!(matches!(
            &completions(&mut acc)[..],
            [(
                3,
                Err(Failure {
                    error: Error::DeliveryTimeout(_),
                    persisted: Persisted::No
                })
            )]
        ));
        assert_eq!(acc.buffered_bytes(), 0);
    }

    #[test]
    fn delivery_timeout_says_whether_an_attempt_may_have_landed() {
        let t0 = Instant::now();
        let timeout = Duration::from_secs(120);
        let mut acc = Accumulator::new(config(), 1);
        let md = metadata(&[0, 0, 0, 0]);
        for n in 0..4 {
            acc.append(record(n, Some(n as i32), 10, t0), &md, t0);
        }
        // Partition 0 never has a leader. Partition 1 is sent first; its answer is lost
        // after the request was written.
        let plans = acc.drain(t0 + 50 * MS, &metadata(&[-1, 0, -1, -1]), false);
        assert_eq!(plans[0].batches.len(), 1);
        acc.handle_response(
            plans[0].request_id,
            ProduceOutcome::Failed {
                error: Error::RequestTimeout(Duration::from_secs(30)),
                sent: true,
            },
            t0 + 50 * MS,
        );
        // Then partitions 2 and 3 go out; at the deadline 2 is still queued in the
        // connection (never written), 3 was written.
        let plans = acc.drain(t0 + 5000 * MS, &metadata(&[-1, -1, 0, 0]), false);
        let id = |p: i32| {
            plans[0]
                .batches
                .iter()
                .find(|b| b.partition == p)
                .map(|b| b.batch_id)
                .expect("drained")
        };
        let written = id(3);
        let _ = id(2);
        acc.handle_timeout(t0 + timeout, |batch| batch == written);
        let mut done = completions(&mut acc);
        done.sort_by_key(|(n, _)| *n);
        let persisted: Vec<(u32, Persisted)> = done
            .iter()
            .map(|(n, r)| match r {
                Err(Failure {
                    error: Error::DeliveryTimeout(t),
                    persisted,
                }) if *t == timeout => (*n, *persisted),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            persisted,
            vec![
                (0, Persisted::No),
                (1, Persisted::Possibly),
                (2, Persisted::No),
                (3, Persisted::Possibly)
            ]
        );
        // The late answer unmutes the partitions and completes nothing twice.
        acc.handle_response(plans[0].request_id, answer(&plans[0], 0), t0 + timeout);
        assert!(completions(&mut acc).is_empty());
        assert!(acc.is_idle());
        assert_eq!(acc.buffered_bytes(), 0);
    }

    #[test]
    fn an_in_flight_batch_never_written_expires_as_not_persisted() {
        let t0 = Instant::now();
        let md = metadata(&[0]);
        let mut acc = Accumulator::new(config(), 1);
        acc.append(record(0, Some(0), 10, t0), &md, t0);
        let plans = acc.drain(t0 + 50 * MS, &md, false);
        let expired_at = t0 + Duration::from_secs(120);
        assert_eq!(acc.poll_timeout(t0 + 50 * MS), Some(expired_at));
        acc.handle_timeout(expired_at, |_| false);
        assert!(matches!(
            &completions(&mut acc)[..],
            [(
                0,
                Err(Failure {
                    error: Error::DeliveryTimeout(_),
                    persisted: Persisted::No
                })
            )]
        ));
        acc.handle_response(
            plans[0].request_id,
            ProduceOutcome::Failed {
                error: Error::DeliveryTimeout(Duration::ZERO),
                sent: false,
            },
            expired_at,
        );
        assert!(acc.is_idle());
    }

    #[test]
    fn message_too_large_splits_the_batch_in_order() {
        let t0 = Instant::now();
        let md = metadata(&[0]);
        let mut acc = Accumulator::new(config(), 1);
        for n in 0..5 {
            acc.append(record(n, Some(0), 100, t0), &md, t0);
        }
        let plans = acc.drain(t0 + 50 * MS, &md, false);
        acc.handle_response(
            plans[0].request_id,
            error_answer(&plans[0], ErrorCode::MessageTooLarge),
            t0 + 50 * MS,
        );
        assert!(completions(&mut acc).is_empty());
        let mut order = Vec::new();
        let mut offset = 0;
        for _ in 0..4 {
            let plans = acc.drain(t0 + 50 * MS, &md, false);
            let Some(plan) = plans.first() else { break };
            let records = decode(&plan.batches[0]).records.len();
            order.push(records);
            acc.handle_response(plan.request_id, answer(plan, offset), t0 + 50 * MS);
            offset += records as i64;
        }
        assert_eq!(order, vec![2, 3]);
        let done: Vec<(u32, i64)> = completions(&mut acc)
            .into_iter()
            .map(|(n, r)| (n, r.map(|d| d.offset).unwrap_or(-2)))
            .collect();
        assert_eq!(done, (0..5).map(|n| (n, i64::from(n))).collect::<Vec<_>>());
        // A single record that is too large fails.
        acc.append(record(9, Some(0), 100, t0), &md, t0);
        let plans = acc.drain(t0 + 50 * MS, &md, false);
        acc.handle_response(
            plans[0].request_id,
            error_answer(&plans[0], ErrorCode::MessageTooLarge),
            t0 + 50 * MS,
        );
        assert!(matches!(
            &completions(&mut acc)[..],
            [(
                9,
                Err(Failure {
                    error: Error::Broker {
                        code: ErrorCode::MessageTooLarge,
                        ..
                    },
                    persisted: Persisted::No
                })
            )]
        ));
    }

    #[test]
    fn requests_stay_within_max_request_size() {
        let t0 = Instant::now();
        let md = metadata(&[0, 0, 0, 0, 0, 0]);
        let max_request_size = 4096;
        let mut acc = Accumulator::new(
            AccumulatorConfig {
                max_request_size,
                batch_size: 4096,
                ..config()
            },
            1,
        );
        for n in 0..60 {
            acc.append(record(n, Some((n % 6) as i32), 150, t0), &md, t0);
        }
        let mut sent = 0;
        for _ in 0..20 {
            let plans = acc.drain(t0 + 50 * MS, &md, false);
            if plans.is_empty() {
                break;
            }
            for plan in plans {
                let size = REQUEST_OVERHEAD
                    + 6
                    + TOPIC_OVERHEAD
                    + 1
                    + plan
                        .batches
                        .iter()
                        .map(|b| PARTITION_OVERHEAD + b.records.len())
                        .sum::<usize>();
                assert!(size <= max_request_size, "{size}");
                sent += plan.batches.iter().map(|b| b.record_count).sum::<usize>();
                acc.handle_response(plan.request_id, answer(&plan, 0), t0);
            }
        }
        assert_eq!(sent, 60);
        // A record that cannot fit a request is refused by size.
        let limit = max_batch_bytes(max_request_size, 6, "t");
        let big = record(99, Some(0), limit, t0);
        assert!(single_record_batch_bytes(record_size_upper_bound(&big.record)) > limit);
    }

    #[test]
    fn compressed_batches_that_grow_past_the_limit_are_split() {
        let t0 = Instant::now();
        let md = metadata(&[0]);
        let max_request_size = 2048;
        let mut acc = Accumulator::new(
            AccumulatorConfig {
                max_request_size,
                batch_size: 4096,
                compression: Compression::Gzip,
                ..config()
            },
            1,
        );
        // Incompressible values fill the batch to its limit; gzip's framing pushes the
        // encoded batch past it.
        let mut state = 0x1234_5678u32;
        for n in 0..6 {
            let mut new = record(n, Some(0), 0, t0);
            let value: Vec<u8> = (0..300)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    state as u8
                })
                .collect();
            new.record.value = Some(value.into());
            acc.append(new, &md, t0);
        }
        let limit = max_batch_bytes(max_request_size, 6, "t");
        let mut records = 0;
        for _ in 0..10 {
            let plans = acc.drain(t0 + 50 * MS, &md, false);
            let Some(plan) = plans.first() else { break };
            for batch in &plan.batches {
                assert!(batch.records.len() <= limit);
                assert_eq!(decode(batch).compression, Compression::Gzip);
                records += batch.record_count;
            }
            acc.handle_response(plan.request_id, answer(plan, 0), t0);
        }
        assert_eq!(records, 6);
    }

    #[test]
    fn retries_stop_at_the_limit_and_fatal_errors_at_once() {
        let t0 = Instant::now();
        let md = metadata(&[0]);
        let mut acc = Accumulator::new(
            AccumulatorConfig {
                retries: 1,
                ..config()
            },
            1,
        );
        acc.append(record(0, Some(0), 10, t0), &md, t0);
        let mut now = t0 + 50 * MS;
        for attempt in 0..2 {
            let plans = acc.drain(now, &md, false);
            assert_eq!(plans.len(), 1, "attempt {attempt}");
            acc.handle_response(
                plans[0].request_id,
                error_answer(&plans[0], ErrorCode::NotLeaderOrFollower),
                now,
            );
            assert!(acc.take_metadata_refresh());
            now += Duration::from_secs(2);
        }
        assert!(matches!(
            &completions(&mut acc)[..],
            [(
                0,
                Err(Failure {
                    error: Error::Broker {
                        code: ErrorCode::NotLeaderOrFollower,
                        ..
                    },
                    persisted: Persisted::No
                })
            )]
        ));
        acc.append(record(1, Some(0), 10, t0), &md, now);
        let plans = acc.drain(now + 50 * MS, &md, false);
        acc.handle_response(
            plans[0].request_id,
            error_answer(&plans[0], ErrorCode::TopicAuthorizationFailed),
            now,
        );
        assert!(matches!(
            &completions(&mut acc)[..],
            [(
                1,
                Err(Failure {
                    error: Error::Broker {
                        code: ErrorCode::TopicAuthorizationFailed,
                        ..
                    },
                    persisted: Persisted::No
                })
            )]
        ));
    }

    #[test]
    fn acks_zero_completes_with_offset_minus_one_and_gives_the_buffer_back() {
        let t0 = Instant::now();
        let md = metadata(&[0]);
        let mut acc = Accumulator::new(
            AccumulatorConfig {
                acks: Acks::None,
                ..config()
            },
            1,
        );
        let new = record(0, Some(0), 10, t0);
        let reserved = new.reserved;
        acc.append(new, &md, t0);
        assert_eq!(acc.buffered_bytes(), reserved);
        assert_eq!(acc.outstanding_records(), 1);
        let plans = acc.drain(t0 + 50 * MS, &md, false);
        assert_eq!(plans[0].acks, Acks::None);
        acc.handle_response(plans[0].request_id, ProduceOutcome::Written, t0);
        let done: Vec<_> = std::iter::from_fn(|| acc.poll_completion()).collect();
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].reserved, reserved);
        assert_eq!(
            done[0]
                .result
                .as_ref()
                .map(|d| (d.offset, d.timestamp))
                .ok(),
            Some((-1, 1_700_000_000_000))
        );
        assert_eq!(acc.buffered_bytes(), 0);
    }

    #[test]
    fn sequences_are_assigned_at_the_first_drain_when_idempotent() {
        let t0 = Instant::now();
        let md = metadata(&[0]);
        let mut acc = Accumulator::new(
            AccumulatorConfig {
                batch_size: 200,
                ..config()
            },
            1,
        );
        acc.set_producer_id(42, 3);
        for n in 0..4 {
            acc.append(record(n, Some(0), 100, t0), &md, t0);
        }
        let mut sequences = Vec::new();
        for _ in 0..4 {
            let plans = acc.drain(t0 + 50 * MS, &md, false);
            let Some(plan) = plans.first() else { break };
            let batch = decode(&plan.batches[0]);
            assert_eq!((batch.producer_id, batch.producer_epoch), (42, 3));
            sequences.push((batch.base_sequence, batch.records.len()));
            acc.handle_response(plan.request_id, answer(plan, 0), t0);
        }
        assert_eq!(sequences, vec![(0, 1), (1, 1), (2, 1), (3, 1)]);
    }

    /// An idempotent accumulator with producer id 42 at epoch 0, one record per batch.
    fn numbering_accumulator() -> Accumulator<u32> {
        let mut acc = Accumulator::new(
            AccumulatorConfig {
                batch_size: 200,
                idempotent: true,
                ..config()
            },
            1,
        );
        acc.set_producer_id(42, 0);
        acc
    }

    /// An idempotent accumulator with its producer id, one record per batch, whose first
    /// batch to partition 0 (record 99, sequence 0) was acknowledged.
    fn idempotent_accumulator() -> Accumulator<u32> {
        let t0 = Instant::now();
        let md = metadata(&[0]);
        let mut acc = numbering_accumulator();
        acc.append(record(99, Some(0), 100, t0), &md, t0);
        let first = acc.drain(t0, &md, true);
        assert_eq!(numbering(&first), vec![(0, 0)]);
        acc.handle_response(first[0].request_id, answer(&first[0], 99), t0);
        assert!(matches!(&completions(&mut acc)[..], [(99, Ok(_))]));
        acc
    }

    #[test]
    fn the_first_batch_of_a_partition_goes_alone() {
        let t0 = Instant::now();
        let md = metadata(&[0]);
        let mut acc = numbering_accumulator();
        for n in 0..3 {
            acc.append(record(n, Some(0), 100, t0), &md, t0);
        }
        let first = acc.drain(t0, &md, false);
        assert_eq!(numbering(&first), vec![(0, 0)]);
        assert!(
            acc.drain(t0, &md, false).is_empty(),
            "a broker without state for the producer accepts any sequence: nothing may \
             overtake the first batch"
        );
        acc.handle_response(first[0].request_id, answer(&first[0], 0), t0);
        let rest: Vec<_> = (0..3).flat_map(|_| acc.drain(t0, &md, true)).collect();
        assert_eq!(
            numbering(&rest),
            vec![(1, 0), (2, 0)],
            "then several at once"
        );
    }

    /// (sequence, epoch) of each batch of `plans`.
    fn numbering(plans: &[ProduceRequestPlan]) -> Vec<(i32, i16)> {
        plans
            .iter()
            .flat_map(|p| &p.batches)
            .map(|b| {
                let batch = decode(b);
                (batch.base_sequence, batch.producer_epoch)
            })
            .collect()
    }

    #[test]
    fn nothing_is_drained_before_the_producer_id() {
        let t0 = Instant::now();
        let md = metadata(&[0]);
        let mut acc = Accumulator::new(
            AccumulatorConfig {
                idempotent: true,
                ..config()
            },
            1,
        );
        assert!(!acc.needs_producer_id(), "nothing to send yet");
        acc.append(record(0, Some(0), 10, t0), &md, t0);
        assert!(acc.needs_producer_id());
        assert!(acc.drain(t0 + 50 * MS, &md, true).is_empty());
        acc.set_producer_id(7, 2);
        assert!(!acc.needs_producer_id());
        let plans = acc.drain(t0 + 50 * MS, &md, false);
        assert_eq!(numbering(&plans), vec![(0, 2)]);
        assert_eq!(acc.producer_id(), (7, 2));
    }

    #[test]
    fn five_batches_of_a_partition_fly_and_retries_go_back_in_sequence_order() {
        let t0 = Instant::now();
        let md = metadata(&[0]);
        let mut acc = idempotent_accumulator();
        for n in 0..7 {
            acc.append(record(n, Some(0), 100, t0), &md, t0);
        }
        let mut plans = Vec::new();
        for _ in 0..6 {
            plans.extend(acc.drain(t0, &md, false));
        }
        assert_eq!(
            numbering(&plans),
            (1..6).map(|s| (s, 0)).collect::<Vec<_>>(),
            "max.in.flight batches of one partition, numbered in order"
        );
        // The first is refused (leader moved); the broker then refuses the next ones as out
        // of order. Their answers come back last first.
        for plan in plans[1..].iter().rev() {
            let refused = error_answer(plan, ErrorCode::OutOfOrderSequenceNumber);
            acc.handle_response(plan.request_id, refused, t0);
        }
        acc.handle_response(
            plans[0].request_id,
            error_answer(&plans[0], ErrorCode::NotLeaderOrFollower),
            t0,
        );
        assert!(completions(&mut acc).is_empty(), "nothing failed");
        let retry_at = acc.poll_timeout(t0).expect("backoff of the first batch");
        assert!(acc.drain(retry_at - MS, &md, false).is_empty());
        // Resent one at a time, in sequence order, with the bytes of the first attempt; the
        // fresh batches follow with the next sequences.
        let first = acc.drain(retry_at, &md, false);
        assert_eq!(numbering(&first), vec![(1, 0)]);
        assert!(
            acc.drain(retry_at, &md, false).is_empty(),
            "a resent batch goes alone"
        );
        let mut sent = vec![(1, 0)];
        acc.handle_response(first[0].request_id, answer(&first[0], 100), retry_at);
        let mut offset = 101;
        for _ in 0..10 {
            for plan in acc.drain(retry_at, &md, false) {
                sent.extend(numbering(std::slice::from_ref(&plan)));
                acc.handle_response(plan.request_id, answer(&plan, offset), retry_at);
                offset += 1;
            }
        }
        assert_eq!(sent, (1..8).map(|s| (s, 0)).collect::<Vec<_>>());
        let done: Vec<(u32, i64)> = completions(&mut acc)
            .into_iter()
            .map(|(n, r)| (n, r.map(|d| d.offset).unwrap_or(-2)))
            .collect();
        assert_eq!(
            done,
            (0..7).map(|n| (n, 100 + i64::from(n))).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_failed_numbered_batch_bumps_the_epoch_and_the_queue_is_renumbered() {
        let t0 = Instant::now();
        let md = metadata(&[0]);
        let mut acc = idempotent_accumulator();
        for n in 0..4 {
            acc.append(record(n, Some(0), 100, t0), &md, t0);
        }
        let plans: Vec<_> = (0..3).flat_map(|_| acc.drain(t0, &md, false)).collect();
        assert_eq!(numbering(&plans), vec![(1, 0), (2, 0), (3, 0)]);
        acc.handle_response(
            plans[0].request_id,
            error_answer(&plans[0], ErrorCode::InvalidRecord),
            t0,
        );
        let failed = completions(&mut acc);
        assert!(matches!(&failed[..], [(0, Err(f))] if f.persisted == Persisted::No));
        assert!(
            acc.drain(t0, &md, true).is_empty(),
            "no new batch while the epoch waits to be bumped"
        );
        for plan in &plans[1..] {
            let refused = error_answer(plan, ErrorCode::OutOfOrderSequenceNumber);
            acc.handle_response(plan.request_id, refused, t0);
        }
        let mut sent = Vec::new();
        for offset in 0..3 {
            let plans = acc.drain(t0, &md, true);
            assert_eq!(plans.len(), 1, "one at a time while resending");
            sent.extend(numbering(&plans));
            acc.handle_response(plans[0].request_id, answer(&plans[0], offset), t0);
        }
        assert_eq!(sent, vec![(0, 1), (1, 1), (2, 1)], "epoch 1 numbers from 0");
        assert_eq!(acc.producer_id(), (42, 1));
        let done: Vec<u32> = completions(&mut acc)
            .into_iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(n, _)| n)
            .collect();
        assert_eq!(done, vec![1, 2, 3]);
    }

    #[test]
    fn an_expired_numbered_batch_bumps_the_epoch() {
        let t0 = Instant::now();
        let md = metadata(&[0]);
        let mut acc = idempotent_accumulator();
        acc.append(record(0, Some(0), 100, t0), &md, t0);
        let plans = acc.drain(t0, &md, true);
        let expiry = t0 + Duration::from_secs(120);
        acc.handle_timeout(expiry, |_| true);
        let expired = completions(&mut acc);
        assert!(matches!(&expired[..], [(0, Err(f))] if f.persisted == Persisted::Possibly));
        acc.append(record(1, Some(0), 100, expiry), &md, expiry);
        assert!(
            acc.drain(expiry, &md, true).is_empty(),
            "waits for the answer"
        );
        acc.handle_response(
            plans[0].request_id,
            ProduceOutcome::Failed {
                error: Error::RequestTimeout(Duration::from_secs(30)),
                sent: true,
            },
            expiry,
        );
        let plans = acc.drain(expiry, &md, true);
        assert_eq!(numbering(&plans), vec![(0, 1)]);
    }

    #[test]
    fn duplicates_complete_and_fencing_is_fatal() {
        let t0 = Instant::now();
        let md = metadata(&[0]);
        let mut acc = idempotent_accumulator();
        for n in 0..3 {
            acc.append(record(n, Some(0), 100, t0), &md, t0);
        }
        let plans: Vec<_> = (0..2).flat_map(|_| acc.drain(t0, &md, false)).collect();
        acc.handle_response(
            plans[0].request_id,
            error_answer(&plans[0], ErrorCode::DuplicateSequenceNumber),
            t0,
        );
        let done = completions(&mut acc);
        assert!(matches!(&done[..], [(0, Ok(d))] if d.offset == -1));
        acc.handle_response(
            plans[1].request_id,
            error_answer(&plans[1], ErrorCode::ProducerFenced),
            t0,
        );
        let failed = completions(&mut acc);
        assert_eq!(
            failed.len(),
            2,
            "the fenced batch and the one queued behind it"
        );
        assert!(failed
            .iter()
            .all(|(_, r)| matches!(r, Err(f) if f.error.is_fatal())));
        assert_eq!(
            acc.append(record(3, Some(0), 100, t0), &md, t0),
            Placement::Failed
        );
        assert!(matches!(&completions(&mut acc)[..], [(3, Err(f))] if f.error.is_fatal()));
        assert!(acc.drain(t0, &md, true).is_empty());
        assert!(acc.is_idle());
    }
}
