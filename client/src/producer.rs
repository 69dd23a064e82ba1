//! The producer: [`Producer::send`] a [`ProducerRecord`], await its [`DeliveryFuture`].
//!
//! ```text
//! send() ──(buffer.memory permits)──▶ ProducerEngine ◀──────── sender task (io/sender.rs)
//!   │          appends under the       (accumulator:             │ encodes outside the lock,
//!   │          engine's mutex           partition, batch,        │ carries Produce, Metadata,
//!   │                                   linger, retries)         │ InitProducerId requests
//!   ▼                                                            │
//! DeliveryFuture ◀── slot in a DeliveryChunk ◀── RecordMetadata / ProduceError
//! ```
//!
//! `send` appends to the producer's engine itself, under the mutex it shares with the
//! sender task, and wakes that task only when the append created or closed a batch: no
//! channel message and no task switch per record. The task encodes and compresses batches
//! with that mutex released, so a `send` never waits for a compression. Outcomes come back
//! through `DeliveryChunk`s, each shared by the futures of 64 consecutive sends, so that
//! there is no allocation per record for them either.
//!
//! `send(record).await` waits only for buffer space: records that are waiting to be sent may
//! take at most `buffer.memory` bytes, and a `send` beyond that waits (asynchronously) until
//! deliveries free space. It never fails with "queue full". The [`DeliveryFuture`] it returns
//! resolves once the broker has acknowledged the record (per `acks`), or once the record has
//! failed for good: a non-retriable error, `retries` exhausted, or `delivery.timeout.ms` since
//! `send` returned. A failure gives the record back ([`ProduceError::record`]) together with
//! whether it may nonetheless be in the log ([`Persisted`]).
//!
//! Ordering and duplicates: records of one partition are written in the order `send`
//! returned, also across retries. The producer is idempotent by default
//! (`enable.idempotence`): it gets a producer id and numbers each partition's batches, so up
//! to `max.in.flight.requests.per.connection` batches of a partition can be in flight, the
//! broker refuses one that overtakes another, and a batch retried after a lost response is
//! not written twice (KIP-98; DESIGN.md explains the epoch bumps). Without idempotence, as
//! in Kafka's clients, a retried batch may land after a later one unless
//! `max.in.flight.requests.per.connection` is 1, and a retry after a lost response may
//! write a batch twice; such failures report [`Persisted::Possibly`].
//!
//! **Transactions** (KIP-98), with `transactional.id` set: records are written in
//! transactions that commit or abort as a whole (readers with
//! `isolation.level=read_committed` see only committed ones), together with a consumer
//! group's offsets if asked ([`Producer::send_offsets_to_transaction`]).
//! [`Producer::init_transactions`] once, then per transaction
//! [`Producer::begin_transaction`], `send`s, and [`Producer::commit_transaction`] or
//! [`Producer::abort_transaction`]. `send` outside a transaction fails with
//! [`Error::InvalidTransactionState`]. Each error says what comes next:
//! [`Error::requires_abort`] (abort, then go on), [`Error::is_fatal`] (fenced by a newer
//! producer with the same id, not authorized: drop the producer), or, for a commit whose
//! answer never came, [`Error::TransactionOutcomeUnknown`] (it may have committed; the
//! producer re-initialises before the next transaction). DESIGN.md has the state machine.
//!
//! ```no_run
//! # async fn demo() -> Result<(), franzy::Error> {
//! use franzy::{Config, Producer, ProducerRecord};
//!
//! let producer = Producer::new(Config::new("localhost:9092").transactional_id("orders-tx"))?;
//! producer.init_transactions().await?;
//! producer.begin_transaction().await?;
//! producer.send(ProducerRecord::new("orders").with_value("{}")).await.map_err(|e| e.error)?;
//! match producer.commit_transaction().await {
//!     Ok(()) => {}
//!     Err(error) if error.requires_abort() => producer.abort_transaction().await?,
//!     Err(error) => return Err(error),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use franzy::producer::{Producer, ProducerRecord};
//! use franzy::Config;
//!
//! let producer = Producer::new(Config::new("localhost:9092").set("linger.ms", "10")?)?;
//! let delivery = producer
//!     .send(ProducerRecord::new("orders").with_key("order-1").with_value("{}"))
//!     .await?;
//! let metadata = delivery.await?;
//! println!("written at {}/{} offset {}", metadata.topic, metadata.partition, metadata.offset);
//! producer.close().await;
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot, Notify, Semaphore};

use crate::builder::ClientBuilder;
use crate::config::Config;
use crate::engine::accumulator::{self, NewRecord};
use crate::engine::producer::ProducerEngine;
use crate::engine::transaction::OperationId;
use crate::error::{Error, Persisted};
use crate::group_metadata::ConsumerGroupMetadata;
use crate::io::cluster::{ClientStart, ClusterClient};
use crate::io::sender::{self, Command, ProducerState, SenderShared};
use crate::io::stats_loop;
use crate::topic_partition::TopicPartition;

pub use crate::delivery::DeliveryFuture;
pub use crate::error::ProduceError;
pub use crate::record::{Header, ProducerRecord, RecordMetadata};

/// Builds a [`Producer`] with a custom transport or seed.
pub type ProducerBuilder = ClientBuilder<Producer>;

impl ClientBuilder<Producer> {
    /// Validates the configuration and starts the sender task. Must be called inside a
    /// tokio runtime ([`Error::InvalidArgument`] otherwise).
    pub fn build(self) -> Result<Producer, Error> {
        let ClientStart {
            runtime,
            seed,
            cluster,
        } = ClusterClient::start("producer", self.config.clone(), self.connector, self.seed)?;
        let engine = ProducerEngine::from_config(&self.config, seed);
        let shared = Arc::new(SenderShared {
            buffer: Semaphore::new(self.config.buffer_memory.min(Semaphore::MAX_PERMITS)),
            waiters: AtomicUsize::new(0),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
            engine: Mutex::new(ProducerState::new(engine)),
        });
        let clock = WallClock::new();
        let (commands, receiver) = mpsc::unbounded_channel();
        let span = tracing::debug_span!("producer", client_id = %self.config.client_id);
        let task = sender::spawn(&runtime, cluster.clone(), shared.clone(), receiver, span);
        let interval = self.config.statistics_interval;
        let inner = Arc::new(Inner {
            config: self.config,
            cluster,
            shared,
            commands,
            clock,
            task: Mutex::new(Some(task)),
        });
        // The statistics task holds the producer weakly: it ends with it, or at `close`.
        let weak = Arc::downgrade(&inner);
        let span = tracing::debug_span!("producer_stats", client_id = %inner.config.client_id);
        let _detached = stats_loop::spawn(
            &runtime,
            interval,
            self.on_statistics,
            move || {
                let inner = weak.upgrade()?;
                let open = !inner.shared.closed.load(Ordering::Acquire);
                open.then(|| inner.stats())
            },
            span,
        );
        Ok(Producer { inner })
    }
}

/// An asynchronous Kafka producer. Cheap to clone: clones share one sender task, one buffer
/// and one set of connections. Dropping the last clone lets the sender finish what it holds
/// (as [`Producer::close`] does) in the background.
#[derive(Clone)]
pub struct Producer {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    cluster: Arc<ClusterClient>,
    shared: Arc<SenderShared>,
    commands: mpsc::UnboundedSender<Command>,
    clock: WallClock,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Inner {
    /// The snapshot of [`Producer::stats`]: the shared counters, with the batches the
    /// engine retried and the buffer in use.
    fn stats(&self) -> crate::stats::Stats {
        let mut stats = self.cluster.stats().snapshot();
        stats.kind = "producer";
        stats.client_id.clone_from(&self.config.client_id);
        let capacity = self
            .config
            .buffer_memory
            .min(tokio::sync::Semaphore::MAX_PERMITS);
        let free = self.shared.buffer.available_permits();
        stats.buffer_used_bytes = capacity.saturating_sub(free) as u64;
        let retried = self.shared.lock_engine().engine.accumulator().retries();
        stats.retries = stats.retries.saturating_add(retried);
        stats
    }
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("cluster", &self.inner.cluster)
            .finish()
    }
}

impl Producer {
    /// A producer over TCP; see [`Producer::builder`] for other transports.
    pub fn new(config: Config) -> Result<Self, Error> {
        Self::builder(config).build()
    }

    /// A builder, to set the transport or the seed.
    pub fn builder(config: Config) -> ProducerBuilder {
        ClientBuilder::new(config)
    }

    /// Hands `record` to the producer. Waits only while `buffer.memory` is used up by records
    /// not yet delivered. Fails at once, giving the record back, when the producer is closed
    /// ([`Error::Closed`]), when the record cannot fit a request of `max.request.size`
    /// ([`Error::TooLarge`]), or when its explicit partition does not exist in a topic whose
    /// metadata is known ([`Error::UnknownPartition`]). Everything else is reported by the
    /// returned [`DeliveryFuture`].
    pub async fn send(&self, record: ProducerRecord) -> Result<DeliveryFuture, ProduceError> {
        let inner = &self.inner;
        if inner.shared.closed.load(Ordering::Acquire) {
            return Err(ProduceError::new(Error::Closed, Persisted::No, record));
        }
        let size = accumulator::record_size_upper_bound(&record);
        let limit = accumulator::max_batch_bytes(
            inner.config.max_request_size,
            inner.config.client_id.len(),
            &record.topic,
        );
        let batch_size = accumulator::single_record_batch_bytes(size);
        let permits = u32::try_from(size).ok().filter(|_| batch_size <= limit);
        let Some(permits) = permits else {
            let error = Error::TooLarge {
                size: batch_size,
                max: limit,
            };
            return Err(ProduceError::new(error, Persisted::No, record));
        };
        if record.partition.is_some_and(|p| p < 0) {
            return Err(unknown_partition(record));
        }
        // With buffer space at hand (the usual case) the explicit partition is checked below,
        // with the append, under one metadata lookup; before waiting for space it is checked
        // here, so that a bad partition never waits.
        match self.try_reserve(permits) {
            Some(true) => {}
            Some(false) => {
                if let Some(partition) = record.partition {
                    let count = inner.cluster.metadata().partition_count(&record.topic);
                    if count.is_some_and(|count| {
                        usize::try_from(partition).map_or(true, |p| p >= count)
                    }) {
                        return Err(unknown_partition(record));
                    }
                }
                if !self.reserve(permits).await {
                    return Err(ProduceError::new(Error::Closed, Persisted::No, record));
                }
            }
            None => return Err(ProduceError::new(Error::Closed, Persisted::No, record)),
        }
        let now = tokio::time::Instant::now();
        let timestamp = record.timestamp.unwrap_or_else(|| inner.clock.ms_at(now));
        let mut guard = inner.shared.lock_engine();
        let state = &mut *guard;
        if state.engine.is_stopped() {
            // The sender task is gone: nothing appended now would ever be sent.
            drop(guard);
            inner.shared.buffer.add_permits(size);
            return Err(ProduceError::new(Error::Closed, Persisted::No, record));
        }
        if let Err(error) = state.engine.check_send() {
            // A transactional producer sends only inside a transaction.
            drop(guard);
            inner.shared.buffer.add_permits(size);
            return Err(ProduceError::new(error, Persisted::No, record));
        }
        let (completion, future) = state.ticket();
        // Lock order: the engine, then the metadata (as the sender task takes them).
        let mut metadata = inner.cluster.metadata();
        let new = NewRecord {
            record,
            completion,
            sent_at: now.into_std(),
            timestamp,
            reserved: size,
        };
        if let Err(rejected) = state.engine.append(new, &mut metadata, now.into_std()) {
            drop(metadata);
            drop(guard);
            inner.shared.buffer.add_permits(size);
            // The ticket goes with the record unanswered; its future is dropped unpolled.
            return Err(unknown_partition(rejected.record));
        }
        drop(metadata);
        let wake = state.engine.take_wake();
        drop(guard);
        if wake {
            inner.shared.wake.notify_one();
        }
        Ok(future)
    }

    /// A snapshot of the producer's statistics: records and bytes delivered, requests and
    /// their latency, errors by class, buffer usage, per broker and per partition (see
    /// [`crate::stats`] for the fields and the JSON schema).
    pub fn stats(&self) -> crate::stats::Stats {
        self.inner.stats()
    }

    /// Sends `record` and waits until it is written or has failed for good: [`Producer::send`]
    /// and its [`DeliveryFuture`] in one call, as franz-go's `ProduceSync` and rdkafka's
    /// `FutureProducer::send` offer. Each call waits for its own acknowledgement (and for
    /// `linger.ms`, unless a batch fills first), so a loop of them sends one record per round
    /// trip; send many records with [`Producer::send`] and await their futures afterwards.
    pub async fn send_and_wait(
        &self,
        record: ProducerRecord,
    ) -> Result<RecordMetadata, ProduceError> {
        self.send(record).await?.await
    }

    /// Takes `permits` bytes of buffer if they are free now: `Some(true)` when taken,
    /// `Some(false)` when they are not free, `None` once the producer closed.
    fn try_reserve(&self, permits: u32) -> Option<bool> {
        let shared = &self.inner.shared;
        match shared.buffer.try_acquire_many(permits) {
            Ok(permit) => {
                // Returned by the sender when the record is delivered or fails.
                permit.forget();
                if shared.closed.load(Ordering::Acquire) {
                    shared.buffer.add_permits(permits as usize);
                    return None;
                }
                Some(true)
            }
            Err(tokio::sync::TryAcquireError::NoPermits) => Some(false),
            Err(tokio::sync::TryAcquireError::Closed) => None,
        }
    }

    /// Takes `permits` bytes of buffer, waiting if needed; false once the producer closed.
    async fn reserve(&self, permits: u32) -> bool {
        let shared = &self.inner.shared;
        let acquired = match shared.buffer.try_acquire_many(permits) {
            Ok(permit) => Some(permit),
            Err(tokio::sync::TryAcquireError::Closed) => None,
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                // Tell the sender that someone waits: it then sends batches without
                // waiting for linger.ms, as the Java client does when its pool is exhausted.
                let _waiting = WaiterGuard::new(shared);
                shared.wake.notify_one();
                shared.buffer.acquire_many(permits).await.ok()
            }
        };
        match acquired {
            Some(permit) => {
                // Returned by the sender when the record is delivered or fails.
                permit.forget();
                if shared.closed.load(Ordering::Acquire) {
                    shared.buffer.add_permits(permits as usize);
                    return false;
                }
                true
            }
            None => false,
        }
    }

    /// The number of partitions of `topic`, from the cluster's metadata (waiting up to
    /// `request.timeout.ms` for a topic that does not exist yet to appear).
    pub async fn partitions_for(&self, topic: &str) -> Result<usize, Error> {
        let timeout = self.inner.config.request_timeout;
        self.inner.cluster.partitions_for(topic, timeout).await
    }

    /// The producer id and epoch batches are numbered with (idempotence, KIP-98); `None`
    /// while the producer is not idempotent, or before its first batch got an id.
    pub fn producer_id(&self) -> Option<(i64, i16)> {
        let producer = self.inner.shared.lock_engine().engine.producer_id();
        producer.map(|p| (p.id, p.epoch))
    }

    /// Sends every record handed over so far without waiting for `linger.ms`, and waits
    /// until each has been delivered or has failed.
    pub async fn flush(&self) {
        let token = {
            let mut state = self.inner.shared.lock_engine();
            if state.engine.is_stopped() {
                return;
            }
            state.engine.begin_flush()
        };
        let (reply, done) = oneshot::channel();
        if self
            .inner
            .commands
            .send(Command::Flush(token, reply))
            .is_ok()
        {
            // An error means the sender task ended, and with it every record it held.
            let _ = done.await;
        }
    }

    /// Transactions (`transactional.id`): gets a producer id from the transaction
    /// coordinator, which fences every older producer with the same transactional id (their
    /// writes and commits fail from now on) and completes or aborts the transaction they
    /// left open. Call once, before the first [`Producer::begin_transaction`]. Retriable
    /// failures are retried inside; it fails on a fatal error (fenced, not authorized, a
    /// cluster without transactions), or [`Error::InvalidTransactionState`] without a
    /// `transactional.id` or when called twice. Dropping the future does not stop the
    /// initialisation; calling again waits for the same one.
    pub async fn init_transactions(&self) -> Result<(), Error> {
        self.transactional(|engine| engine.init_transactions().map(Some))
            .await
            .map(|_| ())
    }

    /// Begins a transaction: from now on, until [`Producer::commit_transaction`] or
    /// [`Producer::abort_transaction`], records sent belong to it. Local, unless the producer
    /// re-initialises after its last transaction (an abort that left a gap in its sequences,
    /// or a commit of unknown outcome, [`Error::TransactionOutcomeUnknown`]): it then waits
    /// for that. [`Producer::send`] outside a transaction fails with
    /// [`Error::InvalidTransactionState`].
    pub async fn begin_transaction(&self) -> Result<(), Error> {
        // Each round waits for a real operation (the re-initialisation), so this ends.
        loop {
            let begun = self
                .transactional(|engine| engine.begin_transaction())
                .await?;
            if begun {
                return Ok(());
            }
        }
    }

    /// Adds a consumer group's offsets to the transaction (KIP-98, KIP-447): they are
    /// committed with it, or not at all. `offsets` are the next offsets to consume, per
    /// partition (committed without metadata or leader epoch); `group` is the consumer's
    /// current [`ConsumerGroupMetadata`], so that the group coordinator refuses the offsets
    /// (the transaction must then be aborted) when the member was replaced meanwhile.
    /// Sends AddOffsetsToTxn to the transaction coordinator, then TxnOffsetCommit to the
    /// group's coordinator.
    pub async fn send_offsets_to_transaction(
        &self,
        offsets: impl IntoIterator<Item = (TopicPartition, i64)>,
        group: &ConsumerGroupMetadata,
    ) -> Result<(), Error> {
        let offsets: BTreeMap<TopicPartition, i64> = offsets.into_iter().collect();
        self.transactional(|engine| engine.send_offsets_to_transaction(offsets, group))
            .await
            .map(|_| ())
    }

    /// Commits the transaction: sends every record of it at once (as [`Producer::flush`]),
    /// waits until each is acknowledged, then asks the transaction coordinator to commit
    /// (EndTxn), retrying until it answers. `Ok` only once the coordinator said the
    /// transaction committed.
    ///
    /// A record of the transaction that failed makes the commit fail with an error whose
    /// [`Error::requires_abort`] is true: call [`Producer::abort_transaction`]. Fatal errors
    /// ([`Error::is_fatal`], e.g. fenced by a newer producer) end the producer. When the
    /// coordinator's answer never comes (`transaction.timeout.ms` after the commit could
    /// first go) although the commit may have reached it, the commit fails with
    /// [`Error::TransactionOutcomeUnknown`]: it may or may not have committed, and the
    /// producer re-initialises before the next transaction.
    pub async fn commit_transaction(&self) -> Result<(), Error> {
        self.transactional(|engine| engine.commit_transaction().map(Some))
            .await
            .map(|_| ())
    }

    /// Aborts the transaction: its records not sent yet fail ([`Error::TransactionAborted`],
    /// or the error that made the transaction abortable), those in flight are waited for,
    /// then the transaction coordinator is asked to abort (EndTxn); readers with
    /// `read_committed` never see the transaction's records. After an error that required
    /// the abort, the producer also re-initialises its epoch first (KIP-360). `Ok` once the
    /// transaction can no longer commit and the producer may begin the next.
    pub async fn abort_transaction(&self) -> Result<(), Error> {
        self.transactional(|engine| engine.abort_transaction().map(Some))
            .await
            .map(|_| ())
    }

    /// Runs a transactional call on the engine and waits for the operation it returns.
    /// `Ok(true)` when there was none to wait for, `Ok(false)` after waiting for one.
    async fn transactional(
        &self,
        call: impl FnOnce(
            &mut ProducerEngine<crate::delivery::DeliveryTicket>,
        ) -> Result<Option<OperationId>, Error>,
    ) -> Result<bool, Error> {
        let outcome = {
            let mut state = self.inner.shared.lock_engine();
            if state.engine.is_stopped() {
                return Err(Error::Closed);
            }
            match call(&mut state.engine)? {
                None => return Ok(true),
                Some(op) => state.wait_for(op),
            }
        };
        self.inner.shared.wake.notify_one();
        match outcome.await {
            Ok(result) => result.map(|()| false),
            // The sender task ended before the operation did.
            Err(_) => Err(Error::Closed),
        }
    }

    /// Flushes, then stops the sender task. Later sends fail with [`Error::Closed`];
    /// sends waiting for buffer space fail at once. Records still waiting for metadata or
    /// for a retry are given until `delivery.timeout.ms`.
    pub async fn close(&self) {
        let inner = &self.inner;
        inner.shared.closed.store(true, Ordering::Release);
        inner.shared.buffer.close();
        let (reply, done) = oneshot::channel();
        if inner.commands.send(Command::Close(reply)).is_ok() {
            let _ = done.await;
        }
        let task = inner
            .task
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

fn unknown_partition(record: ProducerRecord) -> ProduceError {
    let error = Error::UnknownPartition {
        partition: TopicPartition::new(&*record.topic, record.partition.unwrap_or(-1)),
    };
    ProduceError::new(error, Persisted::No, record)
}

/// Counts a `send` waiting for buffer space for as long as it waits, also when the
/// waiting future is dropped.
struct WaiterGuard<'a> {
    shared: &'a SenderShared,
}

impl<'a> WaiterGuard<'a> {
    fn new(shared: &'a SenderShared) -> Self {
        shared.waiters.fetch_add(1, Ordering::AcqRel);
        Self { shared }
    }
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        self.shared.waiters.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Wall-clock milliseconds that advance with tokio time, so that record timestamps follow
/// a paused test clock (as the harness's broker clock does).
#[derive(Debug, Clone, Copy)]
struct WallClock {
    started: tokio::time::Instant,
    started_ms: i64,
}

impl WallClock {
    fn new() -> Self {
        let started_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Self {
            started: tokio::time::Instant::now(),
            started_ms,
        }
    }

    /// Milliseconds since the epoch at `at` (one clock read serves both the record's
    /// timestamp and its delivery deadline).
    fn ms_at(&self, at: tokio::time::Instant) -> i64 {
        // Seconds and milliseconds apart rather than `as_millis`, whose u128 arithmetic was
        // a measurable part of every `send`.
        let elapsed = at.saturating_duration_since(self.started);
        let ms = elapsed
            .as_secs()
            .saturating_mul(1000)
            .saturating_add(u64::from(elapsed.subsec_millis()));
        self.started_ms
            .saturating_add(i64::try_from(ms).unwrap_or(i64::MAX))
    }
}
