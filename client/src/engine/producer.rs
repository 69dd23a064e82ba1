//! The producer's engine: every decision of a producer, without IO. It holds the
//! [`Accumulator`] (partitioning, batching, draining, retries), the InitProducerId state
//! machine ([`ProducerIdState`]) and the metadata refresh policy ([`MetadataRefresh`]); the
//! driver (`io/sender.rs`) only carries what it asks for to the brokers and back, as
//! quinn's endpoint drives `quinn-proto`'s connection.
//!
//! # Call order
//!
//! Time is always an argument; `T` is what the caller attaches to each record to complete
//! it (the driver's delivery ticket). The engine sits behind one lock that `send` shares
//! with the driver; the metadata cache behind another, always taken second.
//!
//! 1. `send`, under the lock: [`ProducerEngine::append`] the record (it also makes the
//!    metadata refreshes cover its topic), then [`ProducerEngine::take_wake`]: wake the
//!    driver only when it says so. [`ProducerEngine::begin_flush`] and
//!    [`ProducerEngine::close`] likewise.
//! 2. The driver, on each wake-up, under the lock:
//!    [`ProducerEngine::recycle`] the batches it resolved last time,
//!    [`ProducerEngine::handle_timeout`], then [`ProducerEngine::poll_encode`].
//! 3. With the lock released: [`EncodeJob::encode`] each job (encoding and compression
//!    never hold up a `send`).
//! 4. Under the lock again: [`ProducerEngine::handle_encoded`] (and back to 3 while it
//!    says there is more to encode), then the outputs: [`ProducerEngine::poll_requests`]
//!    (Produce requests: build each with [`produce_request`] when the connection is about
//!    to write it), [`ProducerEngine::poll_metadata_refresh`] (send a Metadata request),
//!    [`ProducerEngine::poll_init_producer_id`] (send it to any broker),
//!    [`ProducerEngine::poll_completed_batch`] (resolve outside the lock),
//!    [`ProducerEngine::stop_if_idle`] once closing, and [`ProducerEngine::poll_timeout`].
//! 5. Sleep until that deadline, a wake-up, or an answer; feed answers in with
//!    [`ProducerEngine::handle_produce_outcome`] (read a Produce answer with
//!    [`partition_responses`]), [`ProducerEngine::handle_metadata_refresh`] and
//!    [`ProducerEngine::handle_init_producer_id`]; go to 2.
//!
//! A transactional producer (`transactional.id`) also has a [`TransactionManager`]: `send`
//! asks [`ProducerEngine::check_send`] before appending (records only inside a
//! transaction); the user's transactional calls ([`ProducerEngine::init_transactions`],
//! [`ProducerEngine::begin_transaction`], [`ProducerEngine::send_offsets_to_transaction`],
//! [`ProducerEngine::commit_transaction`], [`ProducerEngine::abort_transaction`]) return an
//! operation whose outcome [`ProducerEngine::poll_transaction_completion`] hands out; in
//! step 4 the driver also sends [`ProducerEngine::poll_transaction_request`] (to the broker
//! it names, at most at its version) and feeds the answer to
//! [`ProducerEngine::handle_transaction_response`]. Its producer id comes from the
//! transaction coordinator, never from [`ProducerEngine::poll_init_producer_id`]; its
//! Produce requests carry the transactional id and use at most
//! [`MAX_PRODUCE_VERSION`](super::transaction::MAX_PRODUCE_VERSION). The engine keeps the
//! accumulator and the transaction manager in step: partitions join the transaction before
//! their first batch goes, record failures make the transaction abortable, an abort fails
//! the unsent records, a commit flushes, and EndTxn waits for every record.
//!
//! [`produce_request`]: super::accumulator::produce_request
//! [`partition_responses`]: super::accumulator::partition_responses

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::InitProducerIdRequest;
use tracing::{debug, warn};

use super::accumulator::{
    Accumulator, AccumulatorConfig, BatchId, CompletedBatch, EncodeJob, NewRecord, Placement,
    ProduceOutcome, ProduceRequestPlan, RequestId,
};
use super::backoff::Rng;
use super::idempotence::ProducerId;
use super::metadata::Metadata;
use super::producer_id::{ProducerIdOutcome, ProducerIdState};
use super::refresh::MetadataRefresh;
use super::transaction::{
    OperationId, TransactionConfig, TransactionManager, TransactionRequest, TransactionState,
};
use crate::config::Config;
use crate::error::Error;
use crate::group_metadata::ConsumerGroupMetadata;
use crate::proto::ResponseKind;
use crate::topic_partition::TopicPartition;
use std::collections::BTreeMap;

/// The producer's engine; see the [module](self) documentation for the call order.
#[derive(Debug)]
pub struct ProducerEngine<T> {
    accumulator: Accumulator<T>,
    producer_id: ProducerIdState,
    /// The transaction manager of a transactional producer.
    transaction: Option<TransactionManager>,
    refresh: MetadataRefresh,
    /// Backoff jitter of the refresh and InitProducerId policies.
    rng: Rng,
    /// Topics already handed to [`Metadata::want`].
    wanted: HashSet<String>,
    /// The topic of the last append, checked before `wanted` (no hashing per record): by
    /// pointer first, as callers mostly clone one `Arc<str>` per topic.
    last_wanted: Option<Arc<str>>,
    closing: bool,
    stopped: bool,
}

impl<T> ProducerEngine<T> {
    /// The engine of a producer configured by `config`; `seed` drives every random choice
    /// (sticky partitions, backoff jitter).
    pub fn from_config(config: &Config, seed: u64) -> Self {
        let mut engine = Self::new(
            AccumulatorConfig::from_config(config),
            config.idempotence_explicit(),
            seed,
        );
        if let Some(transactional_id) = config.transactional() {
            engine.transaction = Some(TransactionManager::new(TransactionConfig {
                transactional_id: transactional_id.to_string(),
                transaction_timeout: config.transaction_timeout,
                retry_backoff: config.retry_backoff,
                retry_backoff_max: config.retry_backoff_max,
            }));
        }
        engine
    }

    /// A transactional engine with these accumulator settings (`transactional` is forced on)
    /// and this transaction manager configuration.
    pub fn transactional(
        mut config: AccumulatorConfig,
        transaction: TransactionConfig,
        seed: u64,
    ) -> Self {
        config.transactional = true;
        config.idempotent = true;
        let mut engine = Self::new(config, true, seed);
        engine.transaction = Some(TransactionManager::new(transaction));
        engine
    }

    /// An engine with these accumulator settings; `idempotence_explicit` when
    /// `enable.idempotence=true` was given (a broker without InitProducerId is then fatal).
    pub fn new(config: AccumulatorConfig, idempotence_explicit: bool, seed: u64) -> Self {
        let producer_id = ProducerIdState::new(
            idempotence_explicit,
            config.retry_backoff,
            config.retry_backoff_max,
        );
        let refresh = MetadataRefresh::new(config.retry_backoff, config.retry_backoff_max);
        Self {
            accumulator: Accumulator::new(config, seed),
            producer_id,
            transaction: None,
            refresh,
            rng: Rng::new(seed.rotate_left(17) ^ 0x6d65_7461),
            wanted: HashSet::new(),
            last_wanted: None,
            closing: false,
            stopped: false,
        }
    }

    /// The accumulator, for inspection.
    pub fn accumulator(&self) -> &Accumulator<T> {
        &self.accumulator
    }

    /// Takes a record from `send`: partitions and batches it (or queues it until its topic's
    /// metadata is known) and makes the metadata refreshes cover its topic. A record whose
    /// explicit partition the topic's known metadata does not have is given back, for
    /// `send` to refuse at once.
    #[allow(clippy::result_large_err)] // the record goes back to the caller as it came
    #[inline]
    pub fn append(
        &mut self,
        new: NewRecord<T>,
        metadata: &mut Metadata,
        now: Instant,
    ) -> Result<Placement, NewRecord<T>> {
        self.want(metadata, &new.record.topic);
        self.accumulator.append_or_reject(new, metadata, now)
    }

    /// Makes sure the metadata refreshes cover `topic`.
    fn want(&mut self, metadata: &mut Metadata, topic: &Arc<str>) {
        if self
            .last_wanted
            .as_ref()
            .is_some_and(|last| Arc::ptr_eq(last, topic) || **last == **topic)
        {
            return;
        }
        if !self.wanted.contains(&**topic) {
            metadata.want(topic);
            self.wanted.insert(topic.to_string());
        }
        self.last_wanted = Some(topic.clone());
    }

    /// True once since the last call if an append changed what the driver must do or when
    /// (see [`Accumulator::take_wake`]).
    pub fn take_wake(&mut self) -> bool {
        self.accumulator.take_wake()
    }

    /// Starts a flush; see [`Accumulator::begin_flush`].
    pub fn begin_flush(&mut self) -> u64 {
        self.accumulator.begin_flush()
    }

    /// Every record appended before flush `token` began has completed.
    pub fn is_flushed(&self, token: u64) -> bool {
        self.accumulator.is_flushed(token)
    }

    /// Closing: every batch is sendable from now on, an open transaction is aborted, and
    /// once everything completed the engine stops ([`ProducerEngine::stop_if_idle`]).
    pub fn close(&mut self) {
        self.closing = true;
        self.accumulator.close();
        if let Some(transaction) = &mut self.transaction {
            transaction.close();
        }
        self.sync_transaction();
    }

    /// The engine stopped: nothing appended now would ever be sent.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// The producer id and epoch batches are numbered with, once there is one.
    pub fn producer_id(&self) -> Option<ProducerId> {
        self.accumulator.producer_id()
    }

    /// Takes back a batch whose completions were all resolved (its buffer is reused).
    pub fn recycle(&mut self, completed: CompletedBatch<T>) {
        self.accumulator.recycle(completed);
    }

    /// Fails what passed `delivery.timeout.ms`; see [`Accumulator::handle_timeout`].
    pub fn handle_timeout(&mut self, now: Instant, abandon: impl FnMut(BatchId) -> bool) {
        self.sync_transaction();
        self.accumulator.handle_timeout(now, abandon);
        self.sync_transaction();
    }

    /// Batches to encode outside the lock; see [`Accumulator::poll_encode`].
    pub fn poll_encode(
        &mut self,
        now: Instant,
        metadata: &Metadata,
        buffer_exhausted: bool,
    ) -> Vec<EncodeJob<T>> {
        self.accumulator
            .poll_encode(now, metadata, buffer_exhausted)
    }

    /// Takes encoded batches back; true when there is more to encode at once. See
    /// [`Accumulator::handle_encoded`].
    pub fn handle_encoded(&mut self, jobs: Vec<EncodeJob<T>>) -> bool {
        self.accumulator.handle_encoded(jobs)
    }

    /// The Produce requests to send now; see [`Accumulator::poll_requests`].
    pub fn poll_requests(
        &mut self,
        now: Instant,
        metadata: &Metadata,
        buffer_exhausted: bool,
    ) -> Vec<ProduceRequestPlan> {
        self.accumulator
            .poll_requests(now, metadata, buffer_exhausted)
    }

    /// Whether to send a Metadata request ([`Metadata::request`]) now: the accumulator
    /// needs one (an unknown topic, a leader missing or moved, a failed request), or the
    /// cache is stale or `metadata.max.age.ms` old; never before a topic was given, and
    /// spaced and backed off by [`MetadataRefresh`].
    pub fn poll_metadata_refresh(&mut self, now: Instant, metadata: &mut Metadata) -> bool {
        if self.accumulator.take_metadata_refresh() {
            self.refresh.request();
        }
        let active = !self.wanted.is_empty();
        self.refresh.poll_refresh(now, metadata, active)
    }

    /// The refresh asked for by [`ProducerEngine::poll_metadata_refresh`] ended with
    /// `result` (its answer already applied to `metadata`). Returns the wait before the
    /// next refresh.
    pub fn handle_metadata_refresh(
        &mut self,
        result: &Result<(), Error>,
        now: Instant,
        metadata: &Metadata,
    ) -> Duration {
        match result {
            Ok(()) => self.accumulator.handle_metadata(metadata, now),
            // An authentication failure does not pass with retries: the records fail now.
            Err(error) if error.is_fatal() => self.accumulator.set_fatal(error.clone()),
            Err(_) => {}
        }
        self.refresh
            .handle_refresh(result.is_ok(), now, metadata, &mut self.rng)
    }

    /// The InitProducerId request to send to any broker now, if the producer needs an id
    /// (idempotence on, none yet or the epochs used up, records waiting, nothing in flight)
    /// and no backoff runs.
    pub fn poll_init_producer_id(&mut self, now: Instant) -> Option<InitProducerIdRequest> {
        let needed = self.needs_idempotent_producer_id();
        self.producer_id.poll_request(needed, now)
    }

    /// An idempotent producer needs an id (a transactional one gets it from its
    /// transaction coordinator instead).
    fn needs_idempotent_producer_id(&self) -> bool {
        self.transaction.is_none() && self.accumulator.needs_producer_id()
    }

    /// The InitProducerId request ended with `result` (see
    /// [`parse_response`](super::producer_id::parse_response)): numbering starts with the
    /// new id; a broker without the API turns idempotence off unless it was asked for;
    /// retriable errors are retried with backoff; anything else is fatal.
    pub fn handle_init_producer_id(&mut self, result: Result<ProducerId, Error>, now: Instant) {
        match self.producer_id.handle_response(result, now, &mut self.rng) {
            ProducerIdOutcome::Assigned(producer) => {
                debug!(
                    producer_id = producer.id,
                    epoch = producer.epoch,
                    "got a producer id"
                );
                self.accumulator.set_producer_id(producer);
            }
            ProducerIdOutcome::Disable(error) => {
                warn!(%error, "the brokers cannot give a producer id: producing without idempotence");
                self.accumulator.disable_idempotence();
            }
            ProducerIdOutcome::Retry { error, wait } => {
                debug!(%error, ?wait, "InitProducerId failed, retrying");
            }
            ProducerIdOutcome::Fatal(error) => self.accumulator.set_fatal(error),
        }
    }

    /// What came of Produce request `request_id`; see [`Accumulator::handle_response`].
    pub fn handle_produce_outcome(
        &mut self,
        request_id: RequestId,
        outcome: ProduceOutcome,
        now: Instant,
    ) {
        self.accumulator.handle_response(request_id, outcome, now);
        self.sync_transaction();
    }

    /// The records that completed together next, to resolve outside the lock.
    pub fn poll_completed_batch(&mut self) -> Option<CompletedBatch<T>> {
        self.accumulator.poll_completed_batch()
    }

    /// Once closing and with nothing left (no record waiting, batched or in flight), stops
    /// the engine and returns true: an append after this is refused. The driver asks only
    /// when none of its requests is pending.
    pub fn stop_if_idle(&mut self) -> bool {
        let transaction_idle = self
            .transaction
            .as_ref()
            .is_none_or(TransactionManager::is_idle);
        if self.closing && self.accumulator.is_idle() && transaction_idle {
            self.stopped = true;
        }
        self.stopped
    }

    // ----- transactions -----

    /// Whether a record may be appended now: always without a `transactional.id`; with
    /// one, only inside a transaction (Java's "cannot send before begin_transaction").
    pub fn check_send(&self) -> Result<(), Error> {
        match &self.transaction {
            None => Ok(()),
            Some(transaction) => transaction.check_send(),
        }
    }

    /// The transaction manager's state, for a transactional producer.
    pub fn transaction_state(&self) -> Option<TransactionState> {
        self.transaction.as_ref().map(TransactionManager::state)
    }

    fn transaction_mut(&mut self) -> Result<&mut TransactionManager, Error> {
        self.transaction.as_mut().ok_or_else(|| {
            Error::InvalidTransactionState(
                "the producer is not transactional: set transactional.id".into(),
            )
        })
    }

    /// `init_transactions`; see [`TransactionManager::init_transactions`].
    pub fn init_transactions(&mut self) -> Result<OperationId, Error> {
        let op = self.transaction_mut()?.init_transactions();
        self.sync_transaction();
        op
    }

    /// `begin_transaction`; see [`TransactionManager::begin_transaction`].
    pub fn begin_transaction(&mut self) -> Result<Option<OperationId>, Error> {
        let op = self.transaction_mut()?.begin_transaction();
        self.sync_transaction();
        op
    }

    /// `send_offsets_to_transaction`; see [`TransactionManager::send_offsets`].
    pub fn send_offsets_to_transaction(
        &mut self,
        offsets: BTreeMap<TopicPartition, i64>,
        group: &ConsumerGroupMetadata,
    ) -> Result<Option<OperationId>, Error> {
        let op = self.transaction_mut()?.send_offsets(offsets, group);
        self.sync_transaction();
        op
    }

    /// `commit_transaction`; see [`TransactionManager::commit`].
    pub fn commit_transaction(&mut self) -> Result<OperationId, Error> {
        let op = self.transaction_mut()?.commit();
        self.sync_transaction();
        op
    }

    /// `abort_transaction`; see [`TransactionManager::abort`].
    pub fn abort_transaction(&mut self) -> Result<OperationId, Error> {
        let op = self.transaction_mut()?.abort();
        self.sync_transaction();
        op
    }

    /// The next transactional operation that completed, with its outcome.
    pub fn poll_transaction_completion(&mut self) -> Option<(OperationId, Result<(), Error>)> {
        self.transaction.as_mut()?.poll_completion()
    }

    /// The transactional request to send now, if any (see
    /// [`TransactionManager::poll_request`]): EndTxn only once every record completed.
    pub fn poll_transaction_request(&mut self, now: Instant) -> Option<TransactionRequest> {
        self.sync_transaction();
        let incomplete = self.accumulator.has_incomplete();
        let request = self.transaction.as_mut()?.poll_request(now, incomplete);
        self.sync_transaction();
        request
    }

    /// The answer to transactional request `id` (its body, at `version`), or why none came
    /// and whether the request may have reached the broker.
    pub fn handle_transaction_response(
        &mut self,
        id: u64,
        version: i16,
        result: Result<ResponseKind, (Error, bool)>,
        now: Instant,
    ) {
        if let Some(transaction) = &mut self.transaction {
            transaction.handle_response(id, version, result, now, &mut self.rng);
        }
        self.sync_transaction();
    }

    /// Keeps the accumulator and the transaction manager in step (see the module doc).
    fn sync_transaction(&mut self) {
        let Some(transaction) = &mut self.transaction else {
            return;
        };
        let accumulator = &mut self.accumulator;
        if let Some(producer) = transaction.take_producer_id() {
            debug!(
                producer_id = producer.id,
                epoch = producer.epoch,
                "numbering with the transaction's producer id"
            );
            accumulator.set_producer_id(producer);
        }
        if transaction.take_transaction_ended() {
            accumulator.end_transaction();
        }
        let added = transaction.take_added_partitions();
        if !added.is_empty() {
            accumulator.mark_partitions_added(&added);
        }
        if transaction.take_flush() {
            accumulator.begin_flush();
        }
        let to_add = accumulator.take_partitions_to_add();
        if !to_add.is_empty() {
            transaction.add_partitions(to_add);
        }
        if let Some(error) = accumulator.take_transaction_failure() {
            transaction.handle_record_failure(&error);
        }
        if accumulator.take_sequence_hole() {
            transaction.handle_sequence_hole();
        }
        if let Some(error) = transaction.abort_error() {
            accumulator.abort_undrained(&error);
            // Records failed by the abort make no further failure.
            let _ = accumulator.take_transaction_failure();
            if accumulator.take_sequence_hole() {
                transaction.handle_sequence_hole();
            }
        }
        if let Some(error) = transaction.fatal_error() {
            if accumulator.fatal().is_none() {
                accumulator.set_fatal(error.clone());
            }
        }
    }

    /// When something changes by itself: a linger, retry backoff or delivery timeout ends,
    /// the metadata is due for a refresh, or an InitProducerId backoff ends.
    pub fn poll_timeout(&self, now: Instant, metadata: &Metadata) -> Option<Instant> {
        let active = !self.wanted.is_empty();
        let needed = self.needs_idempotent_producer_id();
        [
            self.accumulator.poll_timeout(now),
            self.refresh.poll_timeout(now, metadata, active),
            self.producer_id.poll_timeout(needed, now),
            self.transaction.as_ref().and_then(|t| t.poll_timeout(now)),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Acks, Partitioner};
    use crate::engine::accumulator::{PartitionResponse, ProduceOutcome};
    use crate::proto::compression::Compression;
    use crate::proto::record_batch::{DecodeLimits, RecordBatch};
    use crate::proto::ErrorCode;
    use crate::record::ProducerRecord;
    use kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::{BrokerId, MetadataResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;

    const MS: Duration = Duration::from_millis(1);

    fn config(idempotent: bool) -> AccumulatorConfig {
        AccumulatorConfig {
            batch_size: 16 * 1024,
            linger: 5 * MS,
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
            request_timeout_ms: 30_000,
            idempotent,
            transactional: false,
        }
    }

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

    fn record(n: u32, at: Instant) -> NewRecord<u32> {
        let record = ProducerRecord::new("t").with_partition(0).with_value("v");
        NewRecord {
            reserved: 10,
            record,
            completion: n,
            sent_at: at,
            timestamp: 1_700_000_000_000,
        }
    }

    /// Runs the driver's steps once with no IO: encodes in place, returns the requests.
    fn step(
        engine: &mut ProducerEngine<u32>,
        md: &mut Metadata,
        now: Instant,
    ) -> (Vec<ProduceRequestPlan>, bool, Option<InitProducerIdRequest>) {
        engine.handle_timeout(now, |_| false);
        loop {
            let mut jobs = engine.poll_encode(now, md, false);
            if jobs.is_empty() {
                break;
            }
            jobs.iter_mut().for_each(EncodeJob::encode);
            if !engine.handle_encoded(jobs) {
                break;
            }
        }
        let plans = engine.poll_requests(now, md, false);
        let refresh = engine.poll_metadata_refresh(now, md);
        let init = engine.poll_init_producer_id(now);
        (plans, refresh, init)
    }

    fn answer(plan: &ProduceRequestPlan, error: Option<ErrorCode>) -> ProduceOutcome {
        ProduceOutcome::Answered(
            plan.batches
                .iter()
                .map(|b| PartitionResponse {
                    topic: b.topic.to_string(),
                    partition: b.partition,
                    error,
                    error_message: None,
                    base_offset: if error.is_some() { -1 } else { 0 },
                    log_append_time: -1,
                })
                .collect(),
        )
    }

    #[test]
    fn the_first_record_asks_for_metadata_then_a_producer_id_then_sends() {
        let t0 = Instant::now();
        let mut md = Metadata::new(Duration::from_secs(300));
        let mut engine = ProducerEngine::new(config(true), false, 1);
        let (plans, refresh, init) = step(&mut engine, &mut md, t0);
        assert!(
            plans.is_empty() && !refresh && init.is_none(),
            "idle: nothing"
        );
        assert!(engine.append(record(1, t0), &mut md, t0).is_ok());
        assert!(engine.take_wake());
        let (plans, refresh, init) = step(&mut engine, &mut md, t0);
        assert!(plans.is_empty());
        assert!(refresh, "the topic is unknown");
        assert!(init.is_some(), "records wait: a producer id is needed");
        md.handle_response(&metadata_response(), t0 + MS);
        engine.handle_metadata_refresh(&Ok(()), t0 + MS, &md);
        let (plans, _, init) = step(&mut engine, &mut md, t0 + MS);
        assert!(plans.is_empty(), "nothing is sent before the producer id");
        assert!(init.is_none(), "one InitProducerId at a time");
        engine.handle_init_producer_id(Ok(ProducerId::new(1000, 0)), t0 + 2 * MS);
        let (plans, _, _) = step(&mut engine, &mut md, t0 + 10 * MS);
        assert_eq!(plans.len(), 1);
        let batch = RecordBatch::decode(&plans[0].batches[0].records, &DecodeLimits::default())
            .expect("valid");
        assert_eq!((batch.producer_id, batch.producer_epoch), (1000, 0));
        assert_eq!(engine.producer_id(), Some(ProducerId::new(1000, 0)));
    }

    #[test]
    fn no_init_producer_id_goes_on_without_idempotence_unless_asked_for() {
        let t0 = Instant::now();
        let unsupported = || Error::broker(ErrorCode::UnsupportedVersion);
        for explicit in [false, true] {
            let mut md = Metadata::new(Duration::from_secs(300));
            md.want("t");
            md.handle_response(&metadata_response(), t0);
            let mut engine = ProducerEngine::new(config(true), explicit, 1);
            assert!(engine.append(record(1, t0), &mut md, t0).is_ok());
            let (_, _, init) = step(&mut engine, &mut md, t0);
            assert!(init.is_some());
            engine.handle_init_producer_id(Err(unsupported()), t0);
            let (plans, _, init) = step(&mut engine, &mut md, t0 + 10 * MS);
            assert!(init.is_none());
            if explicit {
                assert!(plans.is_empty());
                let failed = engine.poll_completed_batch().expect("the record failed");
                let failures: Vec<_> = failed.map(|c| c.result).collect();
                assert!(
                    matches!(&failures[..], [Err(f)] if f.error.is_fatal()),
                    "{failures:?}"
                );
            } else {
                let batch =
                    RecordBatch::decode(&plans[0].batches[0].records, &DecodeLimits::default())
                        .expect("valid");
                assert_eq!(batch.producer_id, -1, "not idempotent");
                assert_eq!(engine.producer_id(), None);
            }
        }
    }

    #[test]
    fn a_failed_init_producer_id_is_retried_after_a_backoff_the_deadline_names() {
        let t0 = Instant::now();
        let mut md = Metadata::new(Duration::from_secs(300));
        md.want("t");
        md.handle_response(&metadata_response(), t0);
        let mut engine = ProducerEngine::new(config(true), true, 1);
        assert!(engine.append(record(1, t0), &mut md, t0).is_ok());
        let (_, _, init) = step(&mut engine, &mut md, t0);
        assert!(init.is_some());
        engine.handle_init_producer_id(Err(Error::RequestTimeout(MS)), t0);
        let (_, _, init) = step(&mut engine, &mut md, t0 + 10 * MS);
        assert!(init.is_none(), "backing off");
        // Past the batch's linger, the next deadline is the end of the backoff.
        let at = engine.poll_timeout(t0 + 10 * MS, &md).expect("a deadline");
        assert!(at >= t0 + 80 * MS && at <= t0 + 120 * MS, "{:?}", at - t0);
        let (_, _, init) = step(&mut engine, &mut md, at);
        assert!(init.is_some(), "retried once the backoff ends");
    }

    #[test]
    fn exhausted_epochs_ask_for_a_new_producer_id() {
        let t0 = Instant::now();
        let mut md = Metadata::new(Duration::from_secs(300));
        md.want("t");
        md.handle_response(&metadata_response(), t0);
        let mut engine = ProducerEngine::new(config(true), false, 1);
        assert!(engine.append(record(1, t0), &mut md, t0).is_ok());
        step(&mut engine, &mut md, t0);
        engine.handle_init_producer_id(Ok(ProducerId::new(7, i16::MAX - 1)), t0);
        let (plans, _, _) = step(&mut engine, &mut md, t0 + 10 * MS);
        assert_eq!(plans.len(), 1);
        // Refused for good: a hole in the sequences, so the epoch must be bumped, and there
        // is no epoch left.
        engine.handle_produce_outcome(
            plans[0].request_id,
            answer(&plans[0], Some(ErrorCode::InvalidRecord)),
            t0 + 11 * MS,
        );
        assert!(engine.poll_completed_batch().is_some());
        assert!(engine.append(record(2, t0), &mut md, t0 + 12 * MS).is_ok());
        let (plans, _, init) = step(&mut engine, &mut md, t0 + 20 * MS);
        assert!(plans.is_empty());
        assert_eq!(engine.producer_id(), None, "the epochs are used up");
        assert!(init.is_some(), "a new producer id is asked for");
        engine.handle_init_producer_id(Ok(ProducerId::new(8, 0)), t0 + 21 * MS);
        let (plans, _, _) = step(&mut engine, &mut md, t0 + 30 * MS);
        let batch = RecordBatch::decode(&plans[0].batches[0].records, &DecodeLimits::default())
            .expect("valid");
        assert_eq!(
            (batch.producer_id, batch.producer_epoch, batch.base_sequence),
            (8, 0, 0)
        );
    }

    #[test]
    fn closing_stops_once_everything_completed() {
        let t0 = Instant::now();
        let mut md = Metadata::new(Duration::from_secs(300));
        md.want("t");
        md.handle_response(&metadata_response(), t0);
        let mut engine = ProducerEngine::new(config(false), false, 1);
        assert!(engine.append(record(1, t0), &mut md, t0).is_ok());
        engine.close();
        assert!(!engine.stop_if_idle(), "a record waits");
        let (plans, _, _) = step(&mut engine, &mut md, t0);
        assert_eq!(
            plans.len(),
            1,
            "closing: sent without waiting for linger.ms"
        );
        engine.handle_produce_outcome(plans[0].request_id, answer(&plans[0], None), t0);
        assert!(engine.poll_completed_batch().is_some());
        assert!(engine.stop_if_idle());
        assert!(engine.is_stopped());
    }

    mod transactional {
        //! The producer's engine with a transaction manager: records, partitions and the
        //! transaction kept in step.

        use super::*;
        use crate::engine::transaction::{TransactionConfig, TransactionRequest};
        use crate::proto::{ApiKey, RequestKind};
        use kafka_protocol::messages::add_partitions_to_txn_response::{
            AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
        };
        use kafka_protocol::messages::{
            AddPartitionsToTxnResponse, EndTxnResponse, FindCoordinatorResponse,
            InitProducerIdResponse,
        };

        fn engine() -> ProducerEngine<u32> {
            ProducerEngine::transactional(
                config(true),
                TransactionConfig {
                    transactional_id: "tx".into(),
                    transaction_timeout: Duration::from_secs(60),
                    retry_backoff: 100 * MS,
                    retry_backoff_max: Duration::from_secs(1),
                },
                1,
            )
        }

        /// The answer a healthy coordinator gives to `request` (InitProducerId: id 1000 at
        /// `epoch`).
        fn coordinator_answer(request: &TransactionRequest, epoch: i16) -> ResponseKind {
            match request.build(3).expect("builds") {
                RequestKind::FindCoordinator(_) => ResponseKind::FindCoordinator(
                    FindCoordinatorResponse::default()
                        .with_node_id(BrokerId(0))
                        .with_host(StrBytes::from_static_str("b0"))
                        .with_port(9092),
                ),
                RequestKind::InitProducerId(_) => ResponseKind::InitProducerId(
                    InitProducerIdResponse::default()
                        .with_producer_id(1000.into())
                        .with_producer_epoch(epoch),
                ),
                RequestKind::AddPartitionsToTxn(req) => ResponseKind::AddPartitionsToTxn(
                    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(
                        req.v3_and_below_topics
                            .iter()
                            .map(|t| {
                                AddPartitionsToTxnTopicResult::default()
                                    .with_name(t.name.clone())
                                    .with_results_by_partition(
                                        t.partitions
                                            .iter()
                                            .map(|p| {
                                                AddPartitionsToTxnPartitionResult::default()
                                                    .with_partition_index(*p)
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    ),
                ),
                RequestKind::EndTxn(_) => ResponseKind::EndTxn(EndTxnResponse::default()),
                other => panic!("{other:?}"),
            }
        }

        /// Answers transactional requests until none is left; returns their APIs.
        fn settle(engine: &mut ProducerEngine<u32>, now: Instant, epoch: i16) -> Vec<ApiKey> {
            let mut apis = Vec::new();
            while let Some(request) = engine.poll_transaction_request(now) {
                assert!(apis.len() < 20, "{apis:?}");
                apis.push(request.api);
                let body = coordinator_answer(&request, epoch);
                engine.handle_transaction_response(request.id, 3, Ok(body), now);
            }
            apis
        }

        fn completions(engine: &mut ProducerEngine<u32>) -> Vec<(u64, Result<(), Error>)> {
            std::iter::from_fn(|| engine.poll_transaction_completion()).collect()
        }

        fn initialised(md: &mut Metadata, t0: Instant) -> ProducerEngine<u32> {
            md.want("t");
            md.handle_response(&metadata_response(), t0);
            let mut engine = engine();
            assert!(
                engine.check_send().is_err(),
                "nothing before init_transactions"
            );
            assert!(
                engine.poll_init_producer_id(t0).is_none(),
                "no idempotent InitProducerId"
            );
            let op = engine.init_transactions().expect("first");
            assert_eq!(
                settle(&mut engine, t0, 0),
                vec![ApiKey::FindCoordinator, ApiKey::InitProducerId]
            );
            assert!(matches!(&completions(&mut engine)[..], [(o, Ok(()))] if *o == op));
            assert_eq!(engine.producer_id(), Some(ProducerId::new(1000, 0)));
            engine
        }

        #[test]
        fn batches_wait_for_their_partition_to_join_then_go_transactional() {
            let t0 = Instant::now();
            let mut md = Metadata::new(Duration::from_secs(300));
            let mut engine = initialised(&mut md, t0);
            assert!(matches!(
                engine.check_send(),
                Err(Error::InvalidTransactionState(_))
            ));
            assert_eq!(engine.begin_transaction().ok(), Some(None));
            assert!(engine.check_send().is_ok());
            assert!(engine.append(record(1, t0), &mut md, t0).is_ok());
            let (plans, _, _) = step(&mut engine, &mut md, t0 + 10 * MS);
            assert!(plans.is_empty(), "not before AddPartitionsToTxn");
            assert_eq!(settle(&mut engine, t0, 0), vec![ApiKey::AddPartitionsToTxn]);
            let (plans, _, _) = step(&mut engine, &mut md, t0 + 10 * MS);
            assert_eq!(plans.len(), 1);
            let batch = RecordBatch::decode(&plans[0].batches[0].records, &DecodeLimits::default())
                .expect("valid");
            assert!(batch.is_transactional);
            assert_eq!((batch.producer_id, batch.producer_epoch), (1000, 0));
            let op = engine.commit_transaction().expect("in a transaction");
            assert!(
                engine.check_send().is_err(),
                "nothing joins a committing transaction"
            );
            assert!(
                settle(&mut engine, t0, 0).is_empty(),
                "EndTxn waits for the record"
            );
            engine.handle_produce_outcome(plans[0].request_id, answer_ok(&plans[0]), t0);
            assert!(engine.poll_completed_batch().is_some());
            assert_eq!(settle(&mut engine, t0, 0), vec![ApiKey::EndTxn]);
            assert!(matches!(&completions(&mut engine)[..], [(o, Ok(()))] if *o == op));
            // The next transaction adds the partition again.
            assert_eq!(engine.begin_transaction().ok(), Some(None));
            assert!(engine.append(record(2, t0), &mut md, t0).is_ok());
            let (plans, _, _) = step(&mut engine, &mut md, t0 + 20 * MS);
            assert!(plans.is_empty());
            assert_eq!(settle(&mut engine, t0, 0), vec![ApiKey::AddPartitionsToTxn]);
        }

        fn answer_ok(plan: &ProduceRequestPlan) -> ProduceOutcome {
            super::answer(plan, None)
        }

        #[test]
        fn a_failed_record_makes_the_transaction_abortable_and_the_abort_bumps_the_epoch() {
            let t0 = Instant::now();
            let mut md = Metadata::new(Duration::from_secs(300));
            let mut engine = initialised(&mut md, t0);
            assert_eq!(engine.begin_transaction().ok(), Some(None));
            assert!(engine.append(record(1, t0), &mut md, t0).is_ok());
            step(&mut engine, &mut md, t0);
            settle(&mut engine, t0, 0);
            let (plans, _, _) = step(&mut engine, &mut md, t0 + 10 * MS);
            // A second record waits behind the first, unsent.
            assert!(engine.append(record(2, t0), &mut md, t0 + 10 * MS).is_ok());
            engine.handle_produce_outcome(
                plans[0].request_id,
                super::answer(&plans[0], Some(ErrorCode::InvalidRecord)),
                t0 + 11 * MS,
            );
            let (_, _, _) = step(&mut engine, &mut md, t0 + 12 * MS);
            let failed: Vec<_> = std::iter::from_fn(|| engine.poll_completed_batch())
                .flatten()
                .map(|c| c.result)
                .collect();
            assert!(
                matches!(&failed[..], [Err(first), Err(second)]
                    if first.error.code() == Some(ErrorCode::InvalidRecord)
                        && matches!(&second.error, Error::Abortable(cause)
                            if cause.code() == Some(ErrorCode::InvalidRecord))),
                "{failed:?}"
            );
            let error = engine.check_send().expect_err("abortable");
            assert!(error.requires_abort(), "{error}");
            assert!(matches!(
                engine.commit_transaction(),
                Err(Error::Abortable(_))
            ));
            let op = engine.abort_transaction().expect("abortable");
            // EndTxn(abort), then the epoch bump the failed numbered batch needs.
            assert_eq!(
                settle(&mut engine, t0, 1),
                vec![ApiKey::EndTxn, ApiKey::InitProducerId]
            );
            assert!(matches!(&completions(&mut engine)[..], [(o, Ok(()))] if *o == op));
            assert_eq!(engine.producer_id(), Some(ProducerId::new(1000, 1)));
            // The next transaction numbers from 0 in the new epoch.
            assert_eq!(engine.begin_transaction().ok(), Some(None));
            assert!(engine.append(record(3, t0), &mut md, t0).is_ok());
            step(&mut engine, &mut md, t0 + 20 * MS);
            settle(&mut engine, t0, 1);
            let (plans, _, _) = step(&mut engine, &mut md, t0 + 30 * MS);
            let batch = RecordBatch::decode(&plans[0].batches[0].records, &DecodeLimits::default())
                .expect("valid");
            assert_eq!(
                (batch.producer_epoch, batch.base_sequence),
                (1, 0),
                "the epoch was bumped through the coordinator"
            );
        }

        #[test]
        fn an_abort_fails_unsent_records_as_aborted_and_fencing_is_fatal() {
            let t0 = Instant::now();
            let mut md = Metadata::new(Duration::from_secs(300));
            let mut engine = initialised(&mut md, t0);
            assert_eq!(engine.begin_transaction().ok(), Some(None));
            assert!(engine.append(record(1, t0), &mut md, t0).is_ok());
            let op = engine.abort_transaction().expect("in a transaction");
            let (plans, _, _) = step(&mut engine, &mut md, t0 + 10 * MS);
            assert!(plans.is_empty());
            let failed: Vec<_> = std::iter::from_fn(|| engine.poll_completed_batch())
                .flatten()
                .map(|c| c.result)
                .collect();
            assert!(
                matches!(&failed[..], [Err(f)] if matches!(f.error, Error::TransactionAborted)),
                "{failed:?}"
            );
            // Nothing was added: no EndTxn needed.
            assert!(settle(&mut engine, t0, 0).is_empty());
            assert!(matches!(&completions(&mut engine)[..], [(o, Ok(()))] if *o == op));

            assert_eq!(engine.begin_transaction().ok(), Some(None));
            assert!(engine.append(record(2, t0), &mut md, t0).is_ok());
            step(&mut engine, &mut md, t0 + 20 * MS);
            settle(&mut engine, t0, 0);
            let (plans, _, _) = step(&mut engine, &mut md, t0 + 30 * MS);
            engine.handle_produce_outcome(
                plans[0].request_id,
                super::answer(&plans[0], Some(ErrorCode::ProducerFenced)),
                t0 + 31 * MS,
            );
            assert_eq!(
                engine.transaction_state(),
                Some(crate::engine::transaction::TransactionState::FatalError)
            );
            assert!(engine.check_send().is_err_and(|e| e.is_fatal()));
            assert!(engine.commit_transaction().is_err_and(|e| e.is_fatal()));
        }
    }
}
