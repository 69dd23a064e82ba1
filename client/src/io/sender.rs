//! The producer's sender task: a thin tokio driver around the
//! [`Accumulator`] engine.
//!
//! One task per producer drives the accumulator, which it shares with the producer handles
//! behind one mutex (`SenderShared::engine`): `send` appends records itself and wakes the
//! task only when a batch was created or closed. The task refreshes metadata when the
//! accumulator or the `metadata.max.age.ms` clock asks (one refresh at a time,
//! `retry.backoff.ms` apart, backing off exponentially while it fails), sends each drained
//! request on its own sub-task (so a slow broker never delays another), and feeds their
//! outcomes back. It sleeps until the next linger, backoff or delivery deadline, a command
//! (flush, close), an answer, or a wake-up from `send` (a new batch, or a `send` waiting for
//! buffer space). Lock order: the engine, then the metadata.
//!
//! With idempotence on, the task first asks any broker for a producer id (InitProducerId,
//! retried with backoff while it fails retriably); the accumulator drains nothing before.
//! A broker that does not know InitProducerId turns idempotence off when it was only on by
//! default, and is a fatal error when `enable.idempotence` was set.
//!
//! A request is built by the broker connection when it is about to write it (see
//! [`BrokerConnection::request`](super::broker::BrokerConnection::request)); at that moment each batch is marked written. A batch whose
//! delivery timeout passes before that is taken out of the request, so it is reported as
//! [`Persisted::No`](crate::Persisted::No) with certainty; after it, as `Possibly`.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::{Duration, Instant};

use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{InitProducerIdRequest, ProduceRequest, ProduceResponse, TopicName};
use tokio::sync::{mpsc, oneshot, Notify, Semaphore};
use tokio::task::JoinSet;
use tracing::{debug, warn, Instrument, Span};
use uuid::Uuid;

use super::broker::{BuildRequest, RequestError};
use super::cluster::ClusterClient;
use crate::config::Acks;
use crate::delivery::{resolve_all, DeliveryFuture, DeliveryTicket, Outcome, Tickets};
use crate::engine::accumulator::{
    Accumulator, BatchId, CompletedBatch, Completion, DrainedBatch, PartitionResponse,
    ProduceOutcome, ProduceRequestPlan, RequestId,
};
use crate::engine::backoff::{Backoff, Rng};
use crate::engine::metadata::Metadata;
use crate::error::Error;
use crate::error::ProduceError;
use crate::proto::{ApiKey, ErrorCode, RequestKind, ResponseKind, StrBytes};
use crate::record::RecordMetadata;

/// Messages from producer handles to the sender task (records do not travel this way:
/// `send` appends them to the shared accumulator).
pub(crate) enum Command {
    /// Answer once every record appended before flush `token` began has completed.
    Flush(u64, oneshot::Sender<()>),
    /// Finish everything, answer, and stop.
    Close(oneshot::Sender<()>),
}

/// The accumulator and what goes with it, behind [`SenderShared::engine`].
#[derive(Debug)]
pub(crate) struct ProducerEngine {
    /// Partitions, batches and retries.
    pub(crate) accumulator: Accumulator<DeliveryTicket>,
    /// The sender task has stopped: an append now would never be sent.
    pub(crate) stopped: bool,
    /// Topics already handed to `Metadata::want`.
    wanted: HashSet<String>,
    /// The topic of the last `want`, checked before `wanted` (no hashing per record).
    last_wanted: String,
    tickets: Tickets,
}

impl ProducerEngine {
    pub(crate) fn new(accumulator: Accumulator<DeliveryTicket>) -> Self {
        Self {
            accumulator,
            stopped: false,
            wanted: HashSet::new(),
            last_wanted: String::new(),
            tickets: Tickets::new(),
        }
    }

    /// Makes sure the metadata refreshes cover `topic`.
    pub(crate) fn want(&mut self, metadata: &mut Metadata, topic: &str) {
        if self.last_wanted == topic {
            return;
        }
        if !self.wanted.contains(topic) {
            metadata.want(topic);
            self.wanted.insert(topic.to_string());
        }
        self.last_wanted.clear();
        self.last_wanted.push_str(topic);
    }

    /// The next record's ticket and future, in the current chunk or a new one.
    pub(crate) fn ticket(&mut self) -> (DeliveryTicket, DeliveryFuture) {
        self.tickets.ticket()
    }
}

/// State shared by the producer handles and the sender task.
#[derive(Debug)]
pub(crate) struct SenderShared {
    /// `buffer.memory`, in bytes: a `send` takes a record's size, its completion gives it
    /// back.
    pub(crate) buffer: Semaphore,
    /// Sends waiting for buffer space.
    pub(crate) waiters: AtomicUsize,
    /// Wakes the sender task when a send starts waiting.
    pub(crate) wake: Notify,
    /// `close` was called.
    pub(crate) closed: AtomicBool,
    /// The accumulator, shared by `send` (appends) and the sender task (everything else).
    pub(crate) engine: Mutex<ProducerEngine>,
}

impl SenderShared {
    /// Locks the engine. Never hold the guard across an await; take the metadata lock only
    /// after this one.
    pub(crate) fn lock_engine(&self) -> MutexGuard<'_, ProducerEngine> {
        self.engine.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Not yet handed to the connection.
const PENDING: u8 = 0;
/// Built into a request that went to the connection: the broker may see it.
const WRITTEN: u8 = 1;
/// Expired before being written: must never be.
const ABANDONED: u8 = 2;

/// Starts the sender task on `runtime`.
pub(crate) fn spawn(
    runtime: &tokio::runtime::Handle,
    cluster: Arc<ClusterClient>,
    shared: Arc<SenderShared>,
    commands: mpsc::UnboundedReceiver<Command>,
    seed: u64,
    span: Span,
) -> tokio::task::JoinHandle<()> {
    let config = cluster.config();
    let metadata_backoff = Backoff::new(config.retry_backoff, config.retry_backoff_max);
    let sender = Sender {
        shared,
        commands,
        requests: Vec::new(),
        dispatch: HashMap::new(),
        request_batches: HashMap::new(),
        queued: HashMap::new(),
        refresh: JoinSet::new(),
        init: JoinSet::new(),
        init_backoff: metadata_backoff.clone(),
        init_not_before: None,
        metadata_backoff,
        metadata_not_before: None,
        refresh_again: false,
        rng: Rng::new(seed.rotate_left(17) ^ 0x6d65_7461),
        flushes: Vec::new(),
        closes: Vec::new(),
        closing: false,
        commands_done: false,
        wants_topics: false,
        spent: Vec::new(),
        cluster,
    };
    runtime.spawn(sender.run().instrument(span))
}

struct Sender {
    cluster: Arc<ClusterClient>,
    shared: Arc<SenderShared>,
    commands: mpsc::UnboundedReceiver<Command>,
    /// Requests in flight, polled by this task itself: a spawned task per request cost two
    /// task switches per round trip, and a partition's next batch waits for that round trip.
    requests: Vec<RequestFuture>,
    /// Written/abandoned state of each batch in a request not yet answered.
    dispatch: HashMap<BatchId, Arc<AtomicU8>>,
    request_batches: HashMap<RequestId, Vec<BatchId>>,
    /// Per broker address, resolves once the last request dispatched to it was queued on
    /// its connection (or gave up): the next one waits for it, so requests reach each
    /// connection in drain order and numbered batches reach the broker in sequence order.
    queued: HashMap<String, oneshot::Receiver<()>>,
    refresh: JoinSet<Result<(), Error>>,
    /// The InitProducerId request in flight, if any.
    init: JoinSet<Result<(i64, i16), Error>>,
    init_backoff: Backoff,
    /// No InitProducerId before this (backing off after a failure).
    init_not_before: Option<Instant>,
    metadata_backoff: Backoff,
    metadata_not_before: Option<Instant>,
    /// Fresh metadata was asked for while a refresh was in flight, whose answer may
    /// predate the reason: refresh again after it.
    refresh_again: bool,
    rng: Rng,
    flushes: Vec<(u64, oneshot::Sender<()>)>,
    closes: Vec<oneshot::Sender<()>>,
    closing: bool,
    /// The command channel is closed and empty.
    commands_done: bool,
    /// Some topic is wanted from the metadata (never unset again).
    wants_topics: bool,
    /// Completed batches whose futures were resolved: their buffers go back to the
    /// accumulator.
    spent: Vec<CompletedBatch<DeliveryTicket>>,
}

/// What [`Sender::step`] decided under the locks.
struct Step {
    plans: Vec<(ProduceRequestPlan, Option<String>)>,
    completions: Vec<CompletedBatch<DeliveryTicket>>,
    flushed: Vec<bool>,
    /// Start a metadata refresh.
    refresh: bool,
    /// Ask for a producer id.
    init_producer_id: bool,
    /// The accumulator is idle and closing: the task ends.
    stopped: bool,
    deadline: Option<Instant>,
}

impl Sender {
    async fn run(mut self) {
        loop {
            let now = now();
            let step = self.step(now);
            if step.refresh {
                let cluster = self.cluster.clone();
                self.refresh.spawn(
                    async move { cluster.refresh_metadata().await }
                        .instrument(tracing::debug_span!("metadata_refresh")),
                );
            }
            if step.init_producer_id {
                let cluster = self.cluster.clone();
                self.init.spawn(
                    async move { init_producer_id(&cluster).await }
                        .instrument(tracing::debug_span!("init_producer_id")),
                );
            }
            for (plan, address) in step.plans {
                self.dispatch_request(plan, address);
            }
            self.deliver(step.completions, step.flushed);
            if step.stopped {
                break;
            }
            let deadline = step.deadline;
            tokio::select! {
                command = self.commands.recv(), if !self.commands_done => match command {
                    Some(command) => {
                        self.handle_command(command);
                        while let Ok(command) = self.commands.try_recv() {
                            self.handle_command(command);
                        }
                    }
                    // Every producer handle is gone, or close was called: finish what we
                    // hold, then stop.
                    None => {
                        self.commands_done = true;
                        self.begin_close();
                    }
                },
                (request_id, outcome) = next_outcome(&mut self.requests), if !self.requests.is_empty() => {
                    self.handle_outcome(request_id, outcome);
                }
                Some(joined) = self.refresh.join_next() => {
                    let result = joined.unwrap_or_else(|error| Err(Error::Protocol {
                        peer: "metadata".into(),
                        reason: format!("refresh task failed: {error}"),
                    }));
                    self.handle_refresh(result);
                }
                Some(joined) = self.init.join_next() => {
                    let result = joined.unwrap_or_else(|error| Err(Error::Protocol {
                        peer: "init_producer_id".into(),
                        reason: format!("task failed: {error}"),
                    }));
                    self.handle_producer_id(result);
                }
                () = self.shared.wake.notified() => {}
                () = sleep_until(deadline) => {}
            }
        }
        self.finish();
    }

    fn handle_command(&mut self, command: Command) {
        match command {
            Command::Flush(token, reply) => self.flushes.push((token, reply)),
            Command::Close(reply) => {
                self.closes.push(reply);
                self.begin_close();
            }
        }
    }

    fn begin_close(&mut self) {
        if !self.closing {
            debug!("closing: sending everything");
            self.closing = true;
            self.shared.lock_engine().accumulator.close();
        }
        // No new commands; those already queued are still handled (a send that raced
        // with close is delivered). A send after this gets its record back as Closed.
        self.commands.close();
    }

    /// Everything one wake-up needs from the accumulator and the metadata, under one hold
    /// of each lock (`send` appends under the same engine lock): expire, decide on a metadata
    /// refresh, drain requests, take completions, decide whether to stop, and the next
    /// deadline.
    fn step(&mut self, now: Instant) -> Step {
        let exhausted = self.shared.waiters.load(Ordering::Acquire) > 0;
        let dispatch = &self.dispatch;
        let mut engine = self.shared.lock_engine();
        for spent in self.spent.drain(..) {
            engine.accumulator.recycle(spent);
        }
        engine.accumulator.handle_timeout(now, |batch| {
            dispatch.get(&batch).is_none_or(|state| {
                match state.compare_exchange(
                    PENDING,
                    ABANDONED,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => false,
                    Err(previous) => previous == WRITTEN,
                }
            })
        });
        let refresh_wanted = engine.accumulator.take_metadata_refresh();
        let mut metadata = self.cluster.metadata();
        if refresh_wanted {
            if self.refresh.is_empty() {
                metadata.invalidate();
            } else {
                self.refresh_again = true;
            }
        }
        // Topics are only ever added to the wanted set: once some are, always.
        self.wants_topics = self.wants_topics || !metadata.request_topics().is_empty();
        let refresh = self.refresh.is_empty()
            && self.metadata_not_before.is_none_or(|at| at <= now)
            && self.wants_topics
            && metadata.refresh_due(now) <= now;
        let wants_producer_id = engine.accumulator.needs_producer_id() && self.init.is_empty();
        let init_producer_id = wants_producer_id && self.init_not_before.is_none_or(|at| at <= now);
        let plans = engine
            .accumulator
            .drain(now, &metadata, exhausted)
            .into_iter()
            .map(|plan| {
                let address = metadata.broker(plan.broker).map(|b| b.address());
                (plan, address)
            })
            .collect();
        let completions: Vec<_> =
            std::iter::from_fn(|| engine.accumulator.poll_completed_batch()).collect();
        let flushed = self
            .flushes
            .iter()
            .map(|(token, _)| engine.accumulator.is_flushed(*token))
            .collect();
        // Decided under the lock `send` appends under: a record is either appended before
        // this (and the accumulator is not idle) or refused after it. The completions just
        // taken are delivered before the task ends.
        let stopped = self.closing && self.requests.is_empty() && engine.accumulator.is_idle();
        if stopped {
            engine.stopped = true;
        }
        let mut deadline = engine.accumulator.poll_timeout(now);
        if self.refresh.is_empty() && !refresh && self.wants_topics {
            let mut due = metadata.refresh_due(now);
            if let Some(at) = self.metadata_not_before {
                due = due.max(at);
            }
            if due > now {
                deadline = Some(deadline.map_or(due, |d| d.min(due)));
            }
        }
        if let Some(at) = self
            .init_not_before
            .filter(|&at| wants_producer_id && at > now)
        {
            deadline = Some(deadline.map_or(at, |d| d.min(at)));
        }
        Step {
            plans,
            completions,
            flushed,
            refresh,
            init_producer_id,
            stopped,
            deadline,
        }
    }

    fn handle_refresh(&mut self, result: Result<(), Error>) {
        let now = now();
        let mut engine = self.shared.lock_engine();
        let mut metadata = self.cluster.metadata();
        if std::mem::take(&mut self.refresh_again) {
            metadata.invalidate();
        }
        let settled = match &result {
            Ok(()) => {
                engine.accumulator.handle_metadata(&metadata, now);
                metadata.refresh_due(now) > now
            }
            Err(error) => {
                warn!(%error, "metadata refresh failed");
                false
            }
        };
        drop(metadata);
        drop(engine);
        // Kafka's clients space refreshes `retry.backoff.ms` apart, and back off further
        // while refreshes fail or leave leaders unknown.
        let wait = if settled {
            self.metadata_backoff.reset();
            self.cluster.config().retry_backoff
        } else {
            self.metadata_backoff.next_delay(&mut self.rng)
        };
        self.metadata_not_before = Some(now + wait);
    }

    fn handle_producer_id(&mut self, result: Result<(i64, i16), Error>) {
        let now = now();
        let mut engine = self.shared.lock_engine();
        match result {
            Ok((producer_id, epoch)) => {
                debug!(producer_id, epoch, "got a producer id");
                self.init_backoff.reset();
                self.init_not_before = None;
                engine
                    .accumulator
                    .set_producer_id(crate::engine::idempotence::ProducerId::new(
                        producer_id,
                        epoch,
                    ));
            }
            Err(
                error @ (Error::UnsupportedVersion { .. }
                | Error::Broker {
                    code: ErrorCode::UnsupportedVersion,
                    ..
                }),
            ) if !self.cluster.config().idempotence_explicit() => {
                warn!(%error, "the brokers cannot give a producer id: producing without idempotence");
                engine.accumulator.disable_idempotence();
            }
            Err(error) if error.is_retriable() => {
                let wait = self.init_backoff.next_delay(&mut self.rng);
                debug!(%error, ?wait, "InitProducerId failed, retrying");
                self.init_not_before = Some(now + wait);
            }
            Err(error) => engine.accumulator.set_fatal(error),
        }
    }

    fn dispatch_request(&mut self, plan: ProduceRequestPlan, address: Option<String>) {
        let request_id = plan.request_id;
        let states: Vec<Arc<AtomicU8>> = plan
            .batches
            .iter()
            .map(|_| Arc::new(AtomicU8::new(PENDING)))
            .collect();
        for (batch, state) in plan.batches.iter().zip(&states) {
            self.dispatch.insert(batch.batch_id, state.clone());
        }
        self.request_batches.insert(
            request_id,
            plan.batches.iter().map(|b| b.batch_id).collect(),
        );
        let cluster = self.cluster.clone();
        let config = cluster.config();
        let timeout_ms = i32::try_from(config.request_timeout.as_millis()).unwrap_or(i32::MAX);
        let span = tracing::debug_span!(
            "produce",
            broker = plan.broker,
            request = request_id,
            batches = plan.batches.len()
        );
        let order = address.as_ref().map(|address| {
            let (done, next) = oneshot::channel();
            let previous = self.queued.insert(address.clone(), next);
            QueueOrder { previous, done }
        });
        self.requests.push(Box::pin(
            async move {
                let outcome = match (address, order) {
                    (Some(address), Some(order)) => {
                        send_request(&cluster, &address, plan, states, timeout_ms, order).await
                    }
                    _ => ProduceOutcome::Failed {
                        error: Error::Protocol {
                            peer: format!("broker {}", plan.broker),
                            reason: "broker not in metadata".into(),
                        },
                        sent: false,
                    },
                };
                (request_id, outcome)
            }
            .instrument(span),
        ));
    }

    fn handle_outcome(&mut self, request_id: RequestId, outcome: ProduceOutcome) {
        for batch in self.request_batches.remove(&request_id).unwrap_or_default() {
            self.dispatch.remove(&batch);
        }
        self.shared
            .lock_engine()
            .accumulator
            .handle_response(request_id, outcome, now());
    }

    /// Resolves the futures of `completions` (taken out under the lock, resolved outside
    /// it: waking futures never holds up a `send`) and answers the flushes that `flushed`
    /// (in the order of `self.flushes`) says are done.
    fn deliver(
        &mut self,
        mut completions: Vec<CompletedBatch<DeliveryTicket>>,
        flushed: Vec<bool>,
    ) {
        let mut released = 0usize;
        resolve_all(
            completions
                .iter_mut()
                .flat_map(|batch| batch.by_ref())
                .map(|completion| {
                    released = released.saturating_add(completion.reserved);
                    outcome(completion)
                }),
        );
        // Their buffers go back to the accumulator at the next step.
        self.spent.append(&mut completions);
        if released > 0 {
            // Once per wake-up rather than per record: the semaphore takes a lock.
            self.shared.buffer.add_permits(released);
        }
        let flushes = std::mem::take(&mut self.flushes);
        for ((token, reply), flushed) in flushes.into_iter().zip(flushed) {
            if flushed {
                let _ = reply.send(());
            } else {
                self.flushes.push((token, reply));
            }
        }
    }

    /// Answers what is left after the loop: records that raced with close, flushes and
    /// closes.
    fn finish(mut self) {
        while let Ok(command) = self.commands.try_recv() {
            match command {
                Command::Flush(_, reply) => {
                    let _ = reply.send(());
                }
                Command::Close(reply) => self.closes.push(reply),
            }
        }
        for (_, reply) in self.flushes.drain(..) {
            let _ = reply.send(());
        }
        for reply in self.closes.drain(..) {
            let _ = reply.send(());
        }
        debug!("sender stopped");
    }
}

/// A completed record's future and what it resolves to. (The future may have been dropped:
/// nobody reads the answer then.)
fn outcome(completion: Completion<DeliveryTicket>) -> (DeliveryTicket, Outcome) {
    let record = completion.record;
    let result = match completion.result {
        Ok(delivered) => Ok(RecordMetadata {
            topic: record.topic,
            partition: delivered.partition,
            offset: delivered.offset,
            timestamp: delivered.timestamp,
        }),
        Err(failure) => Err(Box::new(ProduceError {
            error: failure.error,
            persisted: failure.persisted,
            record: Box::new(record),
        })),
    };
    (completion.completion, result)
}

/// A request in flight, resolving to its outcome.
type RequestFuture = Pin<Box<dyn Future<Output = (RequestId, ProduceOutcome)> + Send>>;

/// The first request of `requests` to finish, taken out.
fn next_outcome(
    requests: &mut Vec<RequestFuture>,
) -> impl Future<Output = (RequestId, ProduceOutcome)> + '_ {
    std::future::poll_fn(move |cx| {
        for index in 0..requests.len() {
            if let Poll::Ready(outcome) = requests[index].as_mut().poll(cx) {
                drop(requests.swap_remove(index));
                return Poll::Ready(outcome);
            }
        }
        Poll::Pending
    })
}

/// Asks any broker for a producer id and epoch (idempotence without a transactional id).
async fn init_producer_id(cluster: &ClusterClient) -> Result<(i64, i16), Error> {
    let build = |_version: i16| {
        Ok(RequestKind::InitProducerId(
            InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(TRANSACTION_TIMEOUT_MS)
                .with_producer_id((-1).into())
                .with_producer_epoch(-1),
        ))
    };
    let response = cluster.request_any(ApiKey::InitProducerId, build).await?;
    match *response.body {
        ResponseKind::InitProducerId(body) => match ErrorCode::try_from_code(body.error_code) {
            None if body.producer_id.0 >= 0 && body.producer_epoch >= 0 => {
                Ok((body.producer_id.0, body.producer_epoch))
            }
            None => Err(Error::Protocol {
                peer: "broker".into(),
                reason: format!(
                    "InitProducerId gave producer id {} epoch {}",
                    body.producer_id.0, body.producer_epoch
                ),
            }),
            Some(code) => Err(Error::Broker {
                code,
                context: Some("InitProducerId".into()),
            }),
        },
        _ => Err(Error::Protocol {
            peer: "broker".into(),
            reason: "InitProducerId answered with another API".into(),
        }),
    }
}

/// `transaction.timeout.ms` sent with InitProducerId, the Java client's default; brokers
/// ignore it without a transactional id.
const TRANSACTION_TIMEOUT_MS: i32 = 60_000;

/// A request's place in its broker's queue: it may go on the connection once `previous`
/// resolves (the request dispatched before it to the same broker was queued, or gave up),
/// and resolves `done` (by dropping it) once it was queued itself.
struct QueueOrder {
    previous: Option<oneshot::Receiver<()>>,
    done: oneshot::Sender<()>,
}

/// Sends one Produce request and turns whatever happens into a [`ProduceOutcome`].
async fn send_request(
    cluster: &ClusterClient,
    address: &str,
    plan: ProduceRequestPlan,
    states: Vec<Arc<AtomicU8>>,
    timeout_ms: i32,
    order: QueueOrder,
) -> ProduceOutcome {
    let QueueOrder { previous, done } = order;
    if let Some(previous) = previous {
        // Err only means the previous request gave up: the turn is ours either way.
        let _ = previous.await;
    }
    let connection = match cluster.connection(address).await {
        Ok(connection) => connection,
        Err(error) => return ProduceOutcome::Failed { error, sent: false },
    };
    let acks = plan.acks;
    let names: HashMap<Uuid, String> = plan
        .batches
        .iter()
        .map(|b| (b.topic_id, b.topic.to_string()))
        .collect();
    let batches = plan.batches;
    let build: BuildRequest = Box::new(move |version| {
        // Called by the connection right before it writes the request: from here on the
        // broker may see each batch kept.
        let kept: Vec<&DrainedBatch> = batches
            .iter()
            .zip(&states)
            .filter(|(_, state)| {
                state
                    .compare_exchange(PENDING, WRITTEN, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            })
            .map(|(batch, _)| batch)
            .collect();
        if kept.is_empty() {
            return Err(Error::DeliveryTimeout(Duration::ZERO));
        }
        build_request(version, acks, timeout_ms, &kept).map(RequestKind::Produce)
    });
    let expect_response = acks != Acks::None;
    let queued = connection
        .submit(ApiKey::Produce, build, expect_response)
        .await;
    drop(done);
    let answer = match queued {
        Ok(answer) => answer.await,
        Err(error) => Err(error),
    };
    match answer {
        Ok(None) => ProduceOutcome::Written,
        Ok(Some(response)) => match *response.body {
            ResponseKind::Produce(body) => {
                ProduceOutcome::Answered(partition_responses(body, response.version, &names))
            }
            _ => ProduceOutcome::Failed {
                error: Error::Protocol {
                    peer: address.to_string(),
                    reason: "Produce answered with another API".into(),
                },
                sent: true,
            },
        },
        Err(RequestError { error, sent }) => ProduceOutcome::Failed { error, sent },
    }
}

/// The Produce request for `version`: topics by name, or by id from v13 (KIP-516).
fn build_request(
    version: i16,
    acks: Acks,
    timeout_ms: i32,
    batches: &[&DrainedBatch],
) -> Result<ProduceRequest, Error> {
    let mut topics: Vec<TopicProduceData> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for batch in batches {
        let position = match index.get(&*batch.topic) {
            Some(&position) => position,
            None => {
                let mut topic = TopicProduceData::default();
                if version >= 13 {
                    if batch.topic_id.is_nil() {
                        return Err(Error::Protocol {
                            peer: "franzy".into(),
                            reason: format!(
                                "Produce v{version} needs the id of topic {}, which metadata did not give",
                                batch.topic
                            ),
                        });
                    }
                    topic.topic_id = batch.topic_id;
                } else {
                    topic.name = TopicName(StrBytes::from_string(batch.topic.to_string()));
                }
                topics.push(topic);
                index.insert(&batch.topic, topics.len() - 1);
                topics.len() - 1
            }
        };
        topics[position].partition_data.push(
            PartitionProduceData::default()
                .with_index(batch.partition)
                .with_records(Some(batch.records.clone())),
        );
    }
    Ok(ProduceRequest::default()
        .with_acks(acks.wire_value())
        .with_timeout_ms(timeout_ms)
        .with_topic_data(topics))
}

fn partition_responses(
    body: ProduceResponse,
    version: i16,
    names: &HashMap<Uuid, String>,
) -> Vec<PartitionResponse> {
    let mut out = Vec::new();
    for topic in body.responses {
        let name = if version >= 13 {
            match names.get(&topic.topic_id) {
                Some(name) => name.clone(),
                None => continue,
            }
        } else {
            topic.name.0.to_string()
        };
        for partition in topic.partition_responses {
            out.push(PartitionResponse {
                topic: name.clone(),
                partition: partition.index,
                error: ErrorCode::try_from_code(partition.error_code),
                error_message: partition.error_message.map(|m| m.to_string()),
                base_offset: partition.base_offset,
                log_append_time: partition.log_append_time_ms,
            });
        }
    }
    out
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn batch(topic: &str, id: u128, partition: i32) -> DrainedBatch {
        DrainedBatch {
            batch_id: partition as u64,
            topic: topic.into(),
            topic_id: Uuid::from_u128(id),
            partition,
            records: Bytes::from_static(b"batch"),
            record_count: 1,
        }
    }

    #[test]
    fn requests_name_topics_before_v13_and_use_ids_from_v13() -> Result<(), Error> {
        let batches = [batch("a", 1, 0), batch("b", 2, 0), batch("a", 1, 3)];
        let refs: Vec<&DrainedBatch> = batches.iter().collect();
        let v12 = build_request(12, Acks::All, 30_000, &refs)?;
        assert_eq!((v12.acks, v12.timeout_ms), (-1, 30_000));
        let names: Vec<(&str, Vec<i32>)> = v12
            .topic_data
            .iter()
            .map(|t| {
                (
                    t.name.0.as_str(),
                    t.partition_data.iter().map(|p| p.index).collect(),
                )
            })
            .collect();
        assert_eq!(names, vec![("a", vec![0, 3]), ("b", vec![0])]);
        let v13 = build_request(13, Acks::Leader, 5, &refs)?;
        let ids: Vec<Uuid> = v13.topic_data.iter().map(|t| t.topic_id).collect();
        assert_eq!(ids, vec![Uuid::from_u128(1), Uuid::from_u128(2)]);
        assert!(v13.topic_data.iter().all(|t| t.name.0.is_empty()));
        let unknown = [batch("c", 0, 0)];
        let refs: Vec<&DrainedBatch> = unknown.iter().collect();
        assert!(build_request(13, Acks::All, 5, &refs).is_err());
        assert!(build_request(9, Acks::All, 5, &refs).is_ok());
        Ok(())
    }

    #[test]
    fn responses_map_topic_ids_back_to_names() {
        use kafka_protocol::messages::produce_response::{
            PartitionProduceResponse, TopicProduceResponse,
        };
        let body = ProduceResponse::default().with_responses(vec![
            TopicProduceResponse::default()
                .with_topic_id(Uuid::from_u128(1))
                .with_partition_responses(vec![PartitionProduceResponse::default()
                    .with_index(2)
                    .with_error_code(ErrorCode::NotLeaderOrFollower.code())
                    .with_base_offset(-1)
                    .with_log_append_time_ms(-1)]),
            TopicProduceResponse::default()
                .with_topic_id(Uuid::from_u128(99))
                .with_partition_responses(vec![PartitionProduceResponse::default()]),
        ]);
        let names = HashMap::from([(Uuid::from_u128(1), "a".to_string())]);
        let parsed = partition_responses(body, 13, &names);
        assert_eq!(
            parsed,
            vec![PartitionResponse {
                topic: "a".into(),
                partition: 2,
                error: Some(ErrorCode::NotLeaderOrFollower),
                error_message: None,
                base_offset: -1,
                log_append_time: -1,
            }]
        );
    }
}
