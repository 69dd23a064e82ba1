//! The producer's driver: a thin tokio task around the sans-IO
//! [`ProducerEngine`], which makes every decision
//! (batching, draining, retries, metadata refreshes and their backoff, the InitProducerId
//! state machine). This task only does what the engine asks, in the call order its module
//! documents: it carries Produce, Metadata and InitProducerId requests to the brokers and
//! their answers back, encodes the batches the engine hands out with no lock held, resolves
//! delivery futures, and sleeps until the engine's next deadline, a command (flush, close),
//! an answer, or a wake-up from `send`.
//!
//! The engine sits behind one mutex (`SenderShared::engine`) with the delivery tickets:
//! `send` appends records itself and wakes the task only when the engine says so. Lock
//! order: the engine, then the metadata. Encoding and compression run between two holds of
//! that lock, so a `send` never waits for them.
//!
//! Each Produce request is polled by this task itself (a spawned task per request cost two
//! task switches per round trip), and requests reach each broker's connection in the order
//! they were drained (`QueueOrder`). A request is built by the broker connection when it
//! is about to write it (see
//! [`BrokerConnection::request`](super::broker::BrokerConnection::request)); at that moment
//! each batch is marked written. A batch whose delivery timeout passes before that is taken
//! out of the request, so it is reported as [`Persisted::No`](crate::Persisted::No) with
//! certainty; after it, as `Possibly`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, Notify, Semaphore};
use tokio::task::JoinSet;
use tracing::{debug, warn, Instrument, Span};

use super::broker::{BuildRequest, RequestError};
use super::cluster::ClusterClient;
use crate::config::Acks;
use crate::delivery::{resolve_all, DeliveryFuture, DeliveryTicket, Outcome, Tickets};
use crate::engine::accumulator::{
    partition_responses, produce_request, BatchId, CompletedBatch, Completion, DrainedBatch,
    EncodeJob, ProduceOutcome, ProduceRequestPlan, RequestId,
};
use crate::engine::idempotence::ProducerId;
use crate::engine::producer::ProducerEngine;
use crate::engine::producer_id;
use crate::engine::transaction::{
    Destination, OperationId, TransactionRequest, MAX_PRODUCE_VERSION,
};
use crate::error::{Error, ProduceError};
use crate::proto::{ApiKey, RequestKind, ResponseKind};
use crate::record::RecordMetadata;

/// Messages from producer handles to the sender task (records do not travel this way:
/// `send` appends them to the shared engine).
pub(crate) enum Command {
    /// Answer once every record appended before flush `token` began has completed.
    Flush(u64, oneshot::Sender<()>),
    /// Finish everything, answer, and stop.
    Close(oneshot::Sender<()>),
}

/// What sits behind [`SenderShared::engine`]: the engine, the delivery tickets `send`
/// hands out with each record, and who waits for which transactional operation.
#[derive(Debug)]
pub(crate) struct ProducerState {
    /// Every decision of the producer.
    pub(crate) engine: ProducerEngine<DeliveryTicket>,
    tickets: Tickets,
    /// The callers waiting for each transactional operation (several when a call was
    /// repeated while the operation ran, as Java's cached results allow).
    transaction_waiters: HashMap<OperationId, Vec<oneshot::Sender<Result<(), Error>>>>,
}

impl ProducerState {
    pub(crate) fn new(engine: ProducerEngine<DeliveryTicket>) -> Self {
        Self {
            engine,
            tickets: Tickets::new(),
            transaction_waiters: HashMap::new(),
        }
    }

    /// The next record's ticket and future.
    pub(crate) fn ticket(&mut self) -> (DeliveryTicket, DeliveryFuture) {
        self.tickets.ticket()
    }

    /// The outcome of transactional operation `op`, once the sender task hands it out
    /// (an error means the task ended first).
    pub(crate) fn wait_for(&mut self, op: OperationId) -> oneshot::Receiver<Result<(), Error>> {
        let (reply, outcome) = oneshot::channel();
        self.transaction_waiters.entry(op).or_default().push(reply);
        outcome
    }

    /// Hands out the transactional operations that completed.
    fn resolve_transaction_operations(&mut self) {
        while let Some((op, result)) = self.engine.poll_transaction_completion() {
            for reply in self.transaction_waiters.remove(&op).unwrap_or_default() {
                let _ = reply.send(result.clone());
            }
        }
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
    /// The engine, shared by `send` (appends) and the sender task (everything else).
    pub(crate) engine: Mutex<ProducerState>,
}

impl SenderShared {
    /// Locks the engine. Never hold the guard across an await; take the metadata lock only
    /// after this one.
    pub(crate) fn lock_engine(&self) -> MutexGuard<'_, ProducerState> {
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
    span: Span,
) -> tokio::task::JoinHandle<()> {
    runtime.spawn(
        Sender::new(cluster, shared, commands)
            .run()
            .instrument(span),
    )
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
    /// The metadata refresh in flight (one at most, as the engine allows).
    refresh: JoinSet<Result<(), Error>>,
    /// The InitProducerId request in flight (one at most, as the engine allows).
    init: JoinSet<Result<ProducerId, Error>>,
    /// The transactional request in flight (one at most, as the engine allows).
    transaction: JoinSet<TransactionAnswer>,
    /// A transactional producer's id, sent with every Produce request.
    transactional_id: Option<Arc<str>>,
    /// The highest Produce version to use (a transactional producer's is capped).
    produce_max_version: Option<i16>,
    flushes: Vec<(u64, oneshot::Sender<()>)>,
    closes: Vec<oneshot::Sender<()>>,
    closing: bool,
    /// The command channel is closed and empty.
    commands_done: bool,
    /// Completed batches whose futures were resolved: their buffers go back to the engine.
    spent: Vec<CompletedBatch<DeliveryTicket>>,
    /// Called before each batch is encoded, to check where encoding runs.
    #[cfg(test)]
    encode_probe: Option<EncodeProbe>,
}

/// See `Sender::encode_probe`.
#[cfg(test)]
type EncodeProbe = Box<dyn FnMut(&SenderShared) + Send>;

/// What [`Sender::step`] got from the engine.
struct Step {
    plans: Vec<(ProduceRequestPlan, Option<String>)>,
    completions: Vec<CompletedBatch<DeliveryTicket>>,
    flushed: Vec<bool>,
    /// Send a Metadata request.
    refresh: bool,
    /// Send this InitProducerId request.
    init_producer_id: Option<kafka_protocol::messages::InitProducerIdRequest>,
    /// Send this transactional request.
    transaction_request: Option<TransactionRequest>,
    /// The engine is idle and closing: the task ends.
    stopped: bool,
    deadline: Option<Instant>,
}

impl Sender {
    fn new(
        cluster: Arc<ClusterClient>,
        shared: Arc<SenderShared>,
        commands: mpsc::UnboundedReceiver<Command>,
    ) -> Self {
        let transactional_id: Option<Arc<str>> = cluster.config().transactional().map(Arc::from);
        let produce_max_version = transactional_id.as_ref().map(|_| MAX_PRODUCE_VERSION);
        Self {
            transactional_id,
            produce_max_version,
            transaction: JoinSet::new(),
            cluster,
            shared,
            commands,
            requests: Vec::new(),
            dispatch: HashMap::new(),
            request_batches: HashMap::new(),
            queued: HashMap::new(),
            refresh: JoinSet::new(),
            init: JoinSet::new(),
            flushes: Vec::new(),
            closes: Vec::new(),
            closing: false,
            commands_done: false,
            spent: Vec::new(),
            #[cfg(test)]
            encode_probe: None,
        }
    }

    async fn run(mut self) {
        loop {
            let step = self.step(now());
            if step.refresh {
                let cluster = self.cluster.clone();
                self.refresh.spawn(
                    async move { cluster.refresh_metadata().await }
                        .instrument(tracing::debug_span!("metadata_refresh")),
                );
            }
            if let Some(request) = step.init_producer_id {
                let cluster = self.cluster.clone();
                self.init.spawn(
                    async move { init_producer_id(&cluster, request).await }
                        .instrument(tracing::debug_span!("init_producer_id")),
                );
            }
            if let Some(request) = step.transaction_request {
                let cluster = self.cluster.clone();
                let span = tracing::debug_span!("transaction", api = ?request.api);
                self.transaction.spawn(
                    async move { transaction_request(&cluster, request).await }.instrument(span),
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
                // Biased: a random branch order would make runs with the same seed differ.
                biased;
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
                    let result = joined.unwrap_or_else(|error| Err(task_failed("metadata", error)));
                    self.handle_refresh(result);
                }
                Some(joined) = self.init.join_next() => {
                    let result =
                        joined.unwrap_or_else(|error| Err(task_failed("init_producer_id", error)));
                    self.handle_producer_id(result);
                }
                Some(joined) = self.transaction.join_next() => {
                    if let Ok(answer) = joined {
                        self.handle_transaction_answer(answer);
                    }
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
            self.shared.lock_engine().engine.close();
        }
        // No new commands; those already queued are still handled (a send that raced
        // with close is delivered). A send after this gets its record back as Closed.
        self.commands.close();
    }

    /// One wake-up, in the engine's call order: under the lock, expire and take the batches
    /// to encode; encode them with the lock released; under the lock again take them back
    /// and poll every output (requests, refresh, InitProducerId, completions, whether to
    /// stop, the next deadline). `send` appends under the same lock.
    fn step(&mut self, now: Instant) -> Step {
        let exhausted = self.shared.waiters.load(Ordering::Acquire) > 0;
        let shared = self.shared.clone();
        let mut state = shared.lock_engine();
        for spent in self.spent.drain(..) {
            state.engine.recycle(spent);
        }
        let dispatch = &self.dispatch;
        state.engine.handle_timeout(now, |batch| {
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
        let mut metadata = self.cluster.metadata();
        let mut jobs = state.engine.poll_encode(now, &metadata, exhausted);
        while !jobs.is_empty() {
            drop(metadata);
            drop(state);
            self.encode_outside_lock(&mut jobs);
            state = shared.lock_engine();
            metadata = self.cluster.metadata();
            jobs = if state.engine.handle_encoded(jobs) {
                state.engine.poll_encode(now, &metadata, exhausted)
            } else {
                Vec::new()
            };
        }
        let plans = state
            .engine
            .poll_requests(now, &metadata, exhausted)
            .into_iter()
            .map(|plan| {
                let address = metadata.broker(plan.broker).map(|b| b.address());
                (plan, address)
            })
            .collect();
        let refresh = state.engine.poll_metadata_refresh(now, &mut metadata);
        let init_producer_id = state.engine.poll_init_producer_id(now);
        let transaction_request = state.engine.poll_transaction_request(now);
        state.resolve_transaction_operations();
        let completions: Vec<_> =
            std::iter::from_fn(|| state.engine.poll_completed_batch()).collect();
        let flushed = self
            .flushes
            .iter()
            .map(|(token, _)| state.engine.is_flushed(*token))
            .collect();
        // Decided under the lock `send` appends under: a record is either appended before
        // this (and the engine is not idle) or refused after it. The completions just taken
        // are delivered before the task ends.
        let stopped = self.requests.is_empty() && state.engine.stop_if_idle();
        let deadline = state.engine.poll_timeout(now, &metadata);
        Step {
            plans,
            completions,
            flushed,
            refresh,
            init_producer_id,
            transaction_request,
            stopped,
            deadline,
        }
    }

    /// Encodes and compresses the batches the engine handed out. Runs with no lock held:
    /// the jobs own their batches, so a `send` appends meanwhile.
    fn encode_outside_lock(&mut self, jobs: &mut [EncodeJob<DeliveryTicket>]) {
        for job in jobs {
            #[cfg(test)]
            if let Some(probe) = self.encode_probe.as_mut() {
                probe(&self.shared);
            }
            job.encode();
        }
    }

    fn handle_refresh(&mut self, result: Result<(), Error>) {
        let now = now();
        let mut state = self.shared.lock_engine();
        let metadata = self.cluster.metadata();
        let wait = state
            .engine
            .handle_metadata_refresh(&result, now, &metadata);
        if let Err(error) = result {
            warn!(%error, retry_in = ?wait, "metadata refresh failed");
        }
    }

    fn handle_producer_id(&mut self, result: Result<ProducerId, Error>) {
        self.shared
            .lock_engine()
            .engine
            .handle_init_producer_id(result, now());
    }

    fn handle_transaction_answer(&mut self, answer: TransactionAnswer) {
        let TransactionAnswer {
            id,
            version,
            result,
        } = answer;
        let mut state = self.shared.lock_engine();
        state
            .engine
            .handle_transaction_response(id, version, result, now());
        state.resolve_transaction_operations();
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
        let transactional_id = self.transactional_id.clone();
        let max_version = self.produce_max_version;
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
                        let produce = Produce {
                            plan,
                            states,
                            transactional_id,
                            max_version,
                        };
                        send_request(&cluster, &address, produce, order).await
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
            .engine
            .handle_produce_outcome(request_id, outcome, now());
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
        let stats = self.cluster.stats();
        // Sized up front: grown from empty, its reallocations copied every outcome again.
        let mut outcomes = Vec::with_capacity(completions.iter().map(ExactSizeIterator::len).sum());
        for batch in completions.iter_mut() {
            // The records of a batch share a partition; their bytes are the batch's size.
            let (mut delivered, mut bytes, mut partition) = (0u64, 0u64, None);
            for completion in batch.by_ref() {
                released = released.saturating_add(completion.reserved);
                match &completion.result {
                    Ok(done) => {
                        delivered += 1;
                        bytes = bytes.saturating_add(record_bytes(&completion.record));
                        if partition.is_none() {
                            partition = Some(crate::TopicPartition::new(
                                completion.record.topic.to_string(),
                                done.partition,
                            ));
                        }
                    }
                    Err(failure) => stats.error(crate::stats::error_class(&failure.error)),
                }
                outcomes.push(outcome(completion));
            }
            if let Some(partition) = partition {
                stats.records(delivered, bytes);
                stats.batch(&partition, bytes);
            }
        }
        resolve_all(outcomes.into_iter());
        // Their buffers go back to the engine at the next step.
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
        // Nothing will complete a transactional operation any more: its callers hear
        // `Closed` (their channels close).
        self.shared.lock_engine().transaction_waiters.clear();
        debug!("sender stopped");
    }
}

/// A record's key, value and header bytes.
fn record_bytes(record: &crate::record::ProducerRecord) -> u64 {
    let len = |b: Option<&bytes::Bytes>| b.map_or(0, |b| b.len() as u64);
    let headers: u64 = record
        .headers
        .iter()
        .map(|h| h.key.len() as u64 + len(h.value.as_ref()))
        .sum();
    len(record.key.as_ref()) + len(record.value.as_ref()) + headers
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

/// Sends the engine's InitProducerId request to any broker and reads the answer.
async fn init_producer_id(
    cluster: &ClusterClient,
    request: kafka_protocol::messages::InitProducerIdRequest,
) -> Result<ProducerId, Error> {
    let build = move |_version: i16| Ok(RequestKind::InitProducerId(request.clone()));
    let response = cluster.request_any(ApiKey::InitProducerId, build).await?;
    match *response.body {
        ResponseKind::InitProducerId(body) => producer_id::parse_response(&body),
        _ => Err(Error::Protocol {
            peer: "broker".into(),
            reason: "InitProducerId answered with another API".into(),
        }),
    }
}

/// A request's place in its broker's queue: it may go on the connection once `previous`
/// resolves (the request dispatched before it to the same broker was queued, or gave up),
/// and resolves `done` (by dropping it) once it was queued itself.
struct QueueOrder {
    previous: Option<oneshot::Receiver<()>>,
    done: oneshot::Sender<()>,
}

/// One Produce request to send: the engine's plan, each batch's written/abandoned state,
/// and what a transactional producer adds.
struct Produce {
    plan: ProduceRequestPlan,
    states: Vec<Arc<AtomicU8>>,
    transactional_id: Option<Arc<str>>,
    max_version: Option<i16>,
}

/// What came of a transactional request.
struct TransactionAnswer {
    id: u64,
    version: i16,
    result: Result<ResponseKind, (Error, bool)>,
}

/// Sends a transactional request where the engine says (any broker, or a coordinator), at
/// most at the version it allows, and reads the answer.
async fn transaction_request(
    cluster: &ClusterClient,
    request: TransactionRequest,
) -> TransactionAnswer {
    let id = request.id;
    let api = request.api;
    let max_version = request.max_version;
    let destination = request.destination.clone();
    let answer = match destination {
        Destination::AnyBroker => {
            let build = move |version: i16| request.build(version);
            cluster
                .request_any(api, build)
                .await
                .map_err(|error| (error, true))
        }
        Destination::Broker { address, .. } => match cluster.connection(&address).await {
            Err(error) => Err((error, false)),
            Ok(connection) => {
                let build: BuildRequest = Box::new(move |version| request.build(version));
                match connection
                    .request_at_most(api, max_version, build, true)
                    .await
                {
                    Ok(Some(response)) => Ok(response),
                    Ok(None) => Err((
                        Error::Protocol {
                            peer: address.clone(),
                            reason: "no response to a request that expects one".into(),
                        },
                        true,
                    )),
                    Err(RequestError { error, sent }) => Err((error, sent)),
                }
            }
        },
    };
    match answer {
        Ok(response) => TransactionAnswer {
            id,
            version: response.version,
            result: Ok(*response.body),
        },
        Err(failure) => TransactionAnswer {
            id,
            version: 0,
            result: Err(failure),
        },
    }
}

/// Sends one Produce request and turns whatever happens into a [`ProduceOutcome`].
async fn send_request(
    cluster: &ClusterClient,
    address: &str,
    produce: Produce,
    order: QueueOrder,
) -> ProduceOutcome {
    let Produce {
        plan,
        states,
        transactional_id,
        max_version,
    } = produce;
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
    let timeout_ms = plan.timeout_ms;
    let names = plan.topic_names();
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
        produce_request(
            version,
            acks,
            timeout_ms,
            transactional_id.as_deref(),
            &kept,
        )
        .map(RequestKind::Produce)
    });
    let expect_response = acks != Acks::None;
    let queued = connection
        .submit_at_most(ApiKey::Produce, max_version, build, expect_response)
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

/// A task of ours that panicked or was cancelled, as the error its request ends with.
fn task_failed(peer: &str, error: tokio::task::JoinError) -> Error {
    Error::Protocol {
        peer: peer.into(),
        reason: format!("task failed: {error}"),
    }
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
    use std::sync::atomic::AtomicUsize;

    use kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::{BrokerId, MetadataResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;

    use super::*;
    use crate::config::Config;
    use crate::engine::accumulator::NewRecord;
    use crate::io::transport::{ConnectFuture, Connector};
    use crate::proto::compression::Compression;
    use crate::proto::record_batch::{DecodeLimits, RecordBatch};
    use crate::record::ProducerRecord;

    /// A transport that reaches nothing: these tests never send.
    struct Nowhere;

    impl Connector for Nowhere {
        fn connect<'a>(&'a self, _address: &'a str) -> ConnectFuture<'a> {
            Box::pin(async { Err(std::io::Error::other("no brokers in unit tests")) })
        }
    }

    /// Topic `t` with one partition led by broker 0.
    fn metadata_response() -> MetadataResponse {
        let broker = MetadataResponseBroker::default()
            .with_node_id(BrokerId(0))
            .with_host(StrBytes::from_static_str("b0"))
            .with_port(9092);
        let partition = MetadataResponsePartition::default()
            .with_partition_index(0)
            .with_leader_id(BrokerId(0));
        let topic = MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str("t"))))
            .with_partitions(vec![partition]);
        MetadataResponse::default()
            .with_brokers(vec![broker])
            .with_topics(vec![topic])
    }

    /// What `Producer::send` does under the engine lock, given that lock.
    fn append(state: &mut ProducerState, cluster: &ClusterClient, now: Instant) -> DeliveryFuture {
        let (completion, future) = state.ticket();
        let record = ProducerRecord::new("t")
            .with_partition(0)
            .with_value(vec![b'x'; 4096]);
        let new = NewRecord {
            reserved: 5000,
            record,
            completion,
            sent_at: now,
            timestamp: 1_700_000_000_000,
        };
        let mut metadata = cluster.metadata();
        assert!(state.engine.append(new, &mut metadata, now).is_ok());
        future
    }

    #[test]
    fn batches_are_compressed_with_the_send_lock_released_and_sends_go_on_meanwhile() {
        let config = Config::new("b0:9092")
            .set("compression.type", "gzip")
            .and_then(|c| c.set("linger.ms", "0"))
            .and_then(|c| c.set("enable.idempotence", "false"))
            .expect("valid settings");
        let now = Instant::now();
        let cluster =
            Arc::new(ClusterClient::new(config.clone(), Arc::new(Nowhere), 1).expect("valid"));
        cluster.metadata().want("t");
        cluster
            .metadata()
            .handle_response(&metadata_response(), now);
        let shared = Arc::new(SenderShared {
            buffer: Semaphore::new(1 << 20),
            waiters: AtomicUsize::new(0),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
            engine: Mutex::new(ProducerState::new(ProducerEngine::from_config(&config, 1))),
        });
        let (_commands, receiver) = mpsc::unbounded_channel();
        let mut sender = Sender::new(cluster.clone(), shared.clone(), receiver);
        let first = append(&mut shared.lock_engine(), &cluster, now);

        let probes = Arc::new(AtomicUsize::new(0));
        let during = Arc::new(Mutex::new(Vec::new()));
        let (probes_seen, during_sends, probe_cluster) =
            (probes.clone(), during.clone(), cluster.clone());
        sender.encode_probe = Some(Box::new(move |shared: &SenderShared| {
            // Right before a batch is compressed: the lock every `send` takes is free, and a
            // send goes through without waiting for the compression.
            let mut state = shared
                .engine
                .try_lock()
                .expect("the engine lock is released while batches are encoded");
            let future = append(&mut state, &probe_cluster, now);
            during_sends
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(future);
            probes_seen.fetch_add(1, Ordering::SeqCst);
        }));

        let step = sender.step(now);
        assert_eq!(probes.load(Ordering::SeqCst), 1, "one batch was encoded");
        assert_eq!(step.plans.len(), 1);
        let batches = &step.plans[0].0.batches;
        assert_eq!(batches.len(), 1);
        let batch =
            RecordBatch::decode(&batches[0].records, &DecodeLimits::default()).expect("valid");
        assert_eq!(batch.compression, Compression::Gzip);
        assert_eq!(
            batch.records.len(),
            1,
            "the record sent meanwhile is not in it"
        );
        // The record appended during the compression waits in the engine for its turn.
        let state = shared.lock_engine();
        assert_eq!(state.engine.accumulator().outstanding_records(), 2);
        drop(state);
        assert_eq!(during.lock().unwrap_or_else(|p| p.into_inner()).len(), 1);
        drop(first);
    }
}
