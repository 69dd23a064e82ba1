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
//! [`produce_request`]: super::accumulator::produce_request
//! [`partition_responses`]: super::accumulator::partition_responses

use std::collections::HashSet;
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
use crate::config::Config;
use crate::error::Error;

/// The producer's engine; see the [module](self) documentation for the call order.
#[derive(Debug)]
pub struct ProducerEngine<T> {
    accumulator: Accumulator<T>,
    producer_id: ProducerIdState,
    refresh: MetadataRefresh,
    /// Backoff jitter of the refresh and InitProducerId policies.
    rng: Rng,
    /// Topics already handed to [`Metadata::want`].
    wanted: HashSet<String>,
    /// The topic of the last append, checked before `wanted` (no hashing per record).
    last_wanted: String,
    closing: bool,
    stopped: bool,
}

impl<T> ProducerEngine<T> {
    /// The engine of a producer configured by `config`; `seed` drives every random choice
    /// (sticky partitions, backoff jitter).
    pub fn from_config(config: &Config, seed: u64) -> Self {
        Self::new(
            AccumulatorConfig::from_config(config),
            config.idempotence_explicit(),
            seed,
        )
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
            refresh,
            rng: Rng::new(seed.rotate_left(17) ^ 0x6d65_7461),
            wanted: HashSet::new(),
            last_wanted: String::new(),
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
    fn want(&mut self, metadata: &mut Metadata, topic: &str) {
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

    /// Closing: every batch is sendable from now on, and once everything completed the
    /// engine stops ([`ProducerEngine::stop_if_idle`]).
    pub fn close(&mut self) {
        self.closing = true;
        self.accumulator.close();
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
        self.accumulator.handle_timeout(now, abandon);
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
        let needed = self.accumulator.needs_producer_id();
        self.producer_id.poll_request(needed, now)
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
    }

    /// The records that completed together next, to resolve outside the lock.
    pub fn poll_completed_batch(&mut self) -> Option<CompletedBatch<T>> {
        self.accumulator.poll_completed_batch()
    }

    /// Once closing and with nothing left (no record waiting, batched or in flight), stops
    /// the engine and returns true: an append after this is refused. The driver asks only
    /// when none of its requests is pending.
    pub fn stop_if_idle(&mut self) -> bool {
        if self.closing && self.accumulator.is_idle() {
            self.stopped = true;
        }
        self.stopped
    }

    /// When something changes by itself: a linger, retry backoff or delivery timeout ends,
    /// the metadata is due for a refresh, or an InitProducerId backoff ends.
    pub fn poll_timeout(&self, now: Instant, metadata: &Metadata) -> Option<Instant> {
        let active = !self.wanted.is_empty();
        let needed = self.accumulator.needs_producer_id();
        [
            self.accumulator.poll_timeout(now),
            self.refresh.poll_timeout(now, metadata, active),
            self.producer_id.poll_timeout(needed, now),
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
}
