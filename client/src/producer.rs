//! The producer: [`Producer::send`] a [`ProducerRecord`], await its [`DeliveryFuture`].
//!
//! ```text
//! send() ──(buffer.memory permits)──▶ engine::accumulator ◀── sender task (io::sender)
//!   │          appends under the        (partition, batch,       │ drains per leader,
//!   │          accumulator's mutex       linger)                  │ Produce requests, retries
//!   ▼                                                             │
//! DeliveryFuture ◀── slot in a DeliveryChunk ◀── RecordMetadata / ProduceError
//! ```
//!
//! `send` appends to the accumulator itself, under the mutex it shares with the sender task,
//! and wakes that task only when the append created or closed a batch (see
//! [`Accumulator::take_wake`](crate::engine::accumulator::Accumulator::take_wake)): no
//! channel message and no task switch per record. Outcomes come back through
//! `DeliveryChunk`s, each shared by the futures of 64 consecutive sends, so that there is
//! no allocation per record for them either.
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
//! not written twice (see [`engine::idempotence`](crate::engine::idempotence)). Without
//! idempotence, as in Kafka's clients, a retried batch may land after a later one unless
//! `max.in.flight.requests.per.connection` is 1 (see
//! [`engine::accumulator`](crate::engine::accumulator)), and a retry after a lost response
//! may write a batch twice; such failures report [`Persisted::Possibly`].
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

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot, Notify, Semaphore};

use crate::builder::ClientBuilder;
use crate::config::Config;
use crate::engine::accumulator::{self, Accumulator, AccumulatorConfig, NewRecord};
use crate::error::{Error, Persisted};
use crate::io::cluster::{ClientStart, ClusterClient};
use crate::io::sender::{self, Command, ProducerEngine, SenderShared};

pub use crate::record::{Header, ProducerRecord, RecordMetadata};

/// A record that could not be sent, with the reason and the record itself (for a retry by
/// the application or a dead-letter topic).
#[derive(Debug, Clone)]
pub struct ProduceError {
    /// Why.
    pub error: Error,
    /// Whether the record may be in the log despite the failure.
    pub persisted: Persisted,
    /// The record, as given to `send` (boxed: it is large and errors travel in `Result`s).
    pub record: Box<ProducerRecord>,
}

impl ProduceError {
    fn new(error: Error, persisted: Persisted, record: ProducerRecord) -> Self {
        Self {
            error,
            persisted,
            record: Box::new(record),
        }
    }
}

impl std::fmt::Display for ProduceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot produce to {}: {}", self.record.topic, self.error)
    }
}

impl std::error::Error for ProduceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// How a delivery is reported back from the sender task.
pub(crate) type DeliveryResult = Result<RecordMetadata, ProduceError>;

/// A [`DeliveryResult`] as the sender hands it over and a chunk keeps it: the (large, rare)
/// error boxed, so that the common outcome moves as a small value.
pub(crate) type Outcome = Result<RecordMetadata, Box<ProduceError>>;

/// Resolves when the record has been acknowledged or has failed for good.
#[must_use = "a DeliveryFuture tells whether the record was written"]
pub struct DeliveryFuture {
    chunk: Arc<DeliveryChunk>,
    index: usize,
}

impl std::fmt::Debug for DeliveryFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryFuture")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl Future for DeliveryFuture {
    type Output = DeliveryResult;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.chunk.poll_slot(self.index, cx.waker())
    }
}

/// Records whose outcomes share one [`DeliveryChunk`].
pub(crate) const CHUNK_SLOTS: usize = 64;

/// The outcomes of up to [`CHUNK_SLOTS`] consecutive sends, each waiting for its
/// [`DeliveryFuture`]: one allocation and one reference count for many records, where a
/// channel per record would cost an allocation each. The sender task writes a slot through
/// the record's [`DeliveryTicket`]; the future takes it out.
pub(crate) struct DeliveryChunk {
    slots: Mutex<Vec<Slot>>,
}

impl std::fmt::Debug for DeliveryChunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryChunk").finish_non_exhaustive()
    }
}

enum Slot {
    /// No outcome yet; the waker of a future that asked.
    Pending(Option<Waker>),
    /// The outcome, not yet taken by the future.
    Done(Outcome),
    /// The future has returned the outcome.
    Taken,
}

impl DeliveryChunk {
    pub(crate) fn new() -> Arc<Self> {
        let slots = std::iter::repeat_with(|| Slot::Pending(None))
            .take(CHUNK_SLOTS)
            .collect();
        Arc::new(Self {
            slots: Mutex::new(slots),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the outcome of slot `index` (once: later writes are ignored) and wakes its
    /// future.
    fn complete(&self, index: usize, result: Outcome) {
        let waker = fill(&mut self.lock(), index, result);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn poll_slot(&self, index: usize, waker: &Waker) -> Poll<DeliveryResult> {
        let mut slots = self.lock();
        let Some(slot) = slots.get_mut(index) else {
            return Poll::Ready(Err(polled_again()));
        };
        match slot {
            Slot::Pending(Some(known)) if known.will_wake(waker) => Poll::Pending,
            Slot::Pending(stored) => {
                *stored = Some(waker.clone());
                Poll::Pending
            }
            Slot::Done(_) => match std::mem::replace(slot, Slot::Taken) {
                Slot::Done(result) => Poll::Ready(result.map_err(|error| *error)),
                _ => Poll::Ready(Err(polled_again())),
            },
            Slot::Taken => Poll::Ready(Err(polled_again())),
        }
    }
}

/// Writes slot `index` if it has no outcome yet; returns the waker to wake.
fn fill(slots: &mut [Slot], index: usize, result: Outcome) -> Option<Waker> {
    let slot = slots.get_mut(index)?;
    match slot {
        Slot::Pending(waker) => {
            let waker = waker.take();
            *slot = Slot::Done(result);
            waker
        }
        Slot::Done(_) | Slot::Taken => None,
    }
}

/// Resolves each ticket's future with its result. The outcomes of consecutive tickets of
/// one chunk (a batch's records mostly are) are written under one lock, and their futures
/// woken once it is released.
pub(crate) fn resolve_all(items: impl Iterator<Item = (DeliveryTicket, Outcome)>) {
    let mut items = items.peekable();
    let mut wakers = Vec::new();
    while let Some((mut ticket, result)) = items.next() {
        let Some(chunk) = ticket.chunk.take() else {
            continue;
        };
        {
            let mut slots = chunk.lock();
            wakers.extend(fill(&mut slots, ticket.index, result));
            while items.peek().is_some_and(|(next, _)| {
                next.chunk.as_ref().is_some_and(|c| Arc::ptr_eq(c, &chunk))
            }) {
                let Some((mut next, result)) = items.next() else {
                    break;
                };
                next.chunk = None;
                wakers.extend(fill(&mut slots, next.index, result));
            }
        }
        for waker in wakers.drain(..) {
            waker.wake();
        }
    }
}

/// What a future polled after it completed returns (futures need not support that; this
/// one answers rather than panics).
fn polled_again() -> ProduceError {
    ProduceError::new(
        Error::Closed,
        Persisted::Possibly,
        ProducerRecord::default(),
    )
}

/// The sender task's end of one record's [`DeliveryFuture`]: the accumulator carries it
/// with the record and hands it back with the outcome.
pub(crate) struct DeliveryTicket {
    chunk: Option<Arc<DeliveryChunk>>,
    index: usize,
}

impl std::fmt::Debug for DeliveryTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryTicket")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl DeliveryTicket {
    /// A ticket for slot `index` of `chunk` and the future that waits on it.
    pub(crate) fn new(chunk: &Arc<DeliveryChunk>, index: usize) -> (Self, DeliveryFuture) {
        let ticket = Self {
            chunk: Some(chunk.clone()),
            index,
        };
        let future = DeliveryFuture {
            chunk: chunk.clone(),
            index,
        };
        (ticket, future)
    }

    /// Resolves the record's future (the sender resolves through a [`DeliveryBatcher`]).
    #[cfg(test)]
    pub(crate) fn complete(mut self, result: Outcome) {
        if let Some(chunk) = self.chunk.take() {
            chunk.complete(self.index, result);
        }
    }
}

impl Drop for DeliveryTicket {
    fn drop(&mut self) {
        // The sender answers every record it accepted, also on close; only a panic in it
        // drops a ticket unanswered, and then the record is gone with it.
        if let Some(chunk) = self.chunk.take() {
            chunk.complete(
                self.index,
                Err(Box::new(ProduceError::new(
                    Error::Closed,
                    Persisted::Possibly,
                    ProducerRecord::default(),
                ))),
            );
        }
    }
}

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
        let accumulator = Accumulator::new(AccumulatorConfig::from_config(&self.config), seed);
        let shared = Arc::new(SenderShared {
            buffer: Semaphore::new(self.config.buffer_memory.min(Semaphore::MAX_PERMITS)),
            waiters: AtomicUsize::new(0),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
            engine: Mutex::new(ProducerEngine::new(accumulator)),
        });
        let clock = WallClock::new();
        let (commands, receiver) = mpsc::unbounded_channel();
        let span = tracing::debug_span!("producer", client_id = %self.config.client_id);
        let task = sender::spawn(
            &runtime,
            cluster.clone(),
            shared.clone(),
            receiver,
            seed,
            span,
        );
        Ok(Producer {
            inner: Arc::new(Inner {
                config: self.config,
                cluster,
                shared,
                commands,
                clock,
                task: Mutex::new(Some(task)),
            }),
        })
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
        let engine = &mut *guard;
        if engine.stopped {
            // The sender task is gone: nothing appended now would ever be sent.
            drop(guard);
            inner.shared.buffer.add_permits(size);
            return Err(ProduceError::new(Error::Closed, Persisted::No, record));
        }
        let (completion, future) = engine.ticket();
        // Lock order: the engine, then the metadata (as the sender task takes them).
        let mut metadata = inner.cluster.metadata();
        engine.want(&mut metadata, &record.topic);
        let new = NewRecord {
            record,
            completion,
            sent_at: now.into_std(),
            timestamp,
            reserved: size,
        };
        if let Err(rejected) = engine
            .accumulator
            .append_or_reject(new, &metadata, now.into_std())
        {
            drop(metadata);
            drop(guard);
            inner.shared.buffer.add_permits(size);
            // The ticket goes with the record unanswered; its future is dropped unpolled.
            return Err(unknown_partition(rejected.record));
        }
        drop(metadata);
        let wake = engine.accumulator.take_wake();
        drop(guard);
        if wake {
            inner.shared.wake.notify_one();
        }
        Ok(future)
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
        let (id, epoch) = self.inner.shared.lock_engine().accumulator.producer_id();
        (id >= 0).then_some((id, epoch))
    }

    /// Sends every record handed over so far without waiting for `linger.ms`, and waits
    /// until each has been delivered or has failed.
    pub async fn flush(&self) {
        let token = {
            let mut engine = self.inner.shared.lock_engine();
            if engine.stopped {
                return;
            }
            engine.accumulator.begin_flush()
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
        topic: record.topic.to_string(),
        partition: record.partition.unwrap_or(-1),
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
        let elapsed = at.saturating_duration_since(self.started).as_millis();
        self.started_ms
            .saturating_add(i64::try_from(elapsed).unwrap_or(i64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn produce_error_is_an_error_with_the_record() {
        fn assert_bounds<T: Send + Sync + 'static + std::error::Error>() {}
        assert_bounds::<ProduceError>();
        let error = ProduceError::new(
            Error::Closed,
            Persisted::No,
            ProducerRecord::new("t").with_value("v"),
        );
        assert_eq!(error.to_string(), "cannot produce to t: client is closed");
        assert_eq!(error.record.value.as_deref(), Some(&b"v"[..]));
        assert!(std::error::Error::source(&error).is_some());
    }

    fn noop_waker() -> Waker {
        struct Noop;
        impl std::task::Wake for Noop {
            fn wake(self: Arc<Self>) {}
        }
        Waker::from(Arc::new(Noop))
    }

    /// Counts its wake-ups.
    struct CountingWaker(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn metadata(partition: i32, offset: i64) -> Outcome {
        Ok(RecordMetadata {
            topic: "t".into(),
            partition,
            offset,
            timestamp: 5,
        })
    }

    #[test]
    fn chunk_slots_resolve_their_own_futures_in_any_order() {
        let chunk = DeliveryChunk::new();
        let (first_ticket, mut first) = DeliveryTicket::new(&chunk, 0);
        let (second_ticket, mut second) = DeliveryTicket::new(&chunk, 1);
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut first).poll(&mut cx).is_pending());
        second_ticket.complete(metadata(1, 7));
        assert_eq!(
            counter.0.load(Ordering::SeqCst),
            0,
            "only a slot's own waker wakes"
        );
        first_ticket.complete(metadata(0, 3));
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        match Pin::new(&mut first).poll(&mut cx) {
            Poll::Ready(Ok(m)) => assert_eq!((m.partition, m.offset), (0, 3)),
            other => panic!("expected the first record's metadata, got {other:?}"),
        }
        let noop = noop_waker();
        let mut cx = Context::from_waker(&noop);
        match Pin::new(&mut second).poll(&mut cx) {
            Poll::Ready(Ok(m)) => assert_eq!((m.partition, m.offset), (1, 7)),
            other => panic!("expected the second record's metadata, got {other:?}"),
        }
        // Polled again after it completed: an error, not a panic or a hang.
        assert!(matches!(
            Pin::new(&mut second).poll(&mut cx),
            Poll::Ready(Err(_))
        ));
    }

    #[test]
    fn runs_of_a_chunk_resolve_together_and_every_chunk_is_resolved() {
        let chunks = [DeliveryChunk::new(), DeliveryChunk::new()];
        let mut tickets = Vec::new();
        let mut futures = Vec::new();
        for (c, i) in [(0, 0), (0, 1), (1, 0), (0, 2)] {
            let (ticket, future) = DeliveryTicket::new(&chunks[c], i);
            tickets.push(ticket);
            futures.push(future);
        }
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        for future in &mut futures {
            assert!(Pin::new(future).poll(&mut cx).is_pending());
        }
        resolve_all(
            tickets
                .into_iter()
                .enumerate()
                .map(|(n, ticket)| (ticket, metadata(0, n as i64))),
        );
        assert_eq!(counter.0.load(Ordering::SeqCst), 4);
        for (n, future) in futures.iter_mut().enumerate() {
            match Pin::new(future).poll(&mut cx) {
                Poll::Ready(Ok(m)) => assert_eq!(m.offset, n as i64),
                other => panic!("record {n}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_ticket_dropped_unanswered_fails_its_future_as_possibly_persisted() {
        let chunk = DeliveryChunk::new();
        let (ticket, mut future) = DeliveryTicket::new(&chunk, CHUNK_SLOTS - 1);
        drop(ticket);
        let noop = noop_waker();
        let mut cx = Context::from_waker(&noop);
        match Pin::new(&mut future).poll(&mut cx) {
            Poll::Ready(Err(error)) => {
                assert!(matches!(error.error, Error::Closed));
                assert_eq!(error.persisted, Persisted::Possibly);
            }
            other => panic!("expected Closed, got {other:?}"),
        }
        // A ticket answered normally is not answered again when dropped.
        let (ticket, mut future) = DeliveryTicket::new(&chunk, 0);
        ticket.complete(metadata(2, 9));
        assert!(matches!(
            Pin::new(&mut future).poll(&mut cx),
            Poll::Ready(Ok(_))
        ));
    }
}
