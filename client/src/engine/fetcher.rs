//! The consumer's fetch engine, without IO: per-partition positions, which Fetch and
//! ListOffsets requests to send to which broker, and a bounded buffer of fetched batches
//! from which records are handed out in offset order (protocol guide, "Fetch API" and
//! "ListOffsets"; KIP-74 byte limits, KIP-320 leader epochs, KIP-516 topic ids).
//!
//! Behaviour follows Apache Kafka's Java consumer (`AbstractFetch`, `FetchCollector`,
//! `SubscriptionState`) and librdkafka where the Java client has no equivalent
//! (`enable.partition.eof`, prefetching).
//!
//! # Call order
//!
//! 1. Change the assignment with [`Fetcher::assign`], [`Fetcher::seek`],
//!    [`Fetcher::pause`], [`Fetcher::resume`] at any time.
//! 2. The driver loops: [`Fetcher::poll_list_offsets`] and [`Fetcher::poll_fetches`] (given
//!    the metadata cache) say which requests to send; [`FetchPlan::request`] /
//!    [`ListOffsetsPlan::request`] build them for the negotiated version. Feed each answer
//!    to [`Fetcher::handle_fetch_response`] / [`Fetcher::handle_list_offsets_response`], or
//!    its failure to [`Fetcher::handle_fetch_failure`] / [`Fetcher::handle_list_offsets_failure`].
//!    When [`Fetcher::poll_metadata_refresh`] says so, refresh the metadata, and report
//!    the outcome with [`Fetcher::handle_metadata_response`] /
//!    [`Fetcher::handle_metadata_failure`]. Sleep until [`Fetcher::poll_timeout`] or the
//!    next answer.
//! 3. The user drains [`Fetcher::poll_event`]: outages first (once per failure episode),
//!    then records, end-of-partition events and per-partition errors, in offset order
//!    within each partition.
//!
//! # Peers that fail or lie
//!
//! Offsets, deltas and watermarks from a broker are checked before any arithmetic: offsets
//! no log can have are [`Error::CorruptRecord`] for the partition. An answer that moves no
//! partition on while one claims more backs the claimants off. A request that fails as a
//! whole backs its broker off (`reconnect.backoff.ms`), and a broker failing for
//! `reconnect.backoff.max.ms` is reported once ([`Error::BrokerUnreachable`],
//! [`Error::AllBrokersDown`]). DESIGN.md explains each choice.
//!
//! # Positions
//!
//! Each partition has two offsets: the *position*, the next offset to hand to the user, and
//! the *fetch offset*, the next offset to ask the broker for. Fetched batches wait in the
//! partition's buffer between the two, so the next fetch can be on its way while the user is
//! still reading the last one (librdkafka's prefetching). A partition is fetched while its
//! buffer holds less than `max.partition.fetch.bytes`, and a broker is sent a fetch (one at a
//! time) while the unpaused partitions it leads hold less than `fetch.max.bytes`.
//!
//! Every seek, reset or reassignment bumps the partition's *generation*; answers to
//! requests sent for an older generation are ignored, so nothing from before a seek can leak
//! into what follows it.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use indexmap::IndexMap;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tracing::{debug, warn};
use uuid::Uuid;

use super::backoff::{Backoff, Rng};
use super::metadata::Metadata;
use crate::config::{Config, IsolationLevel, OffsetReset};
use crate::error::Error;
use crate::proto::batch_header::{BatchHeader, Batches};
use crate::proto::record_batch::{DecodeLimits, Record, RecordBatch};
use crate::proto::ErrorCode;
use crate::record::{ConsumerEvent, ConsumerRecord, Offset};
use crate::topic_partition::TopicPartition;

/// ListOffsets timestamp for the log start offset.
const EARLIEST_TIMESTAMP: i64 = -2;
/// ListOffsets timestamp for the end of the log (high watermark, or LSO for read_committed).
const LATEST_TIMESTAMP: i64 = -1;

/// The settings the fetcher uses, taken from [`Config`].
#[derive(Debug, Clone)]
pub struct FetcherConfig {
    /// `fetch.min.bytes`.
    pub min_bytes: i32,
    /// `fetch.max.wait.ms`.
    pub max_wait: Duration,
    /// `fetch.max.bytes`: per request, and the prefetch bound per broker.
    pub max_bytes: i32,
    /// `max.partition.fetch.bytes`: per partition and request, and the prefetch bound per
    /// partition.
    pub partition_max_bytes: i32,
    /// `isolation.level`.
    pub isolation_level: IsolationLevel,
    /// `auto.offset.reset`.
    pub auto_offset_reset: OffsetReset,
    /// `enable.partition.eof`.
    pub partition_eof: bool,
    /// `retry.backoff.ms`: first wait after a failed fetch or lookup.
    pub retry_backoff: Duration,
    /// `retry.backoff.max.ms`: cap of that wait.
    pub retry_backoff_max: Duration,
    /// `reconnect.backoff.ms`: first wait before asking a broker again after a request to
    /// it failed as a whole (no answer, a broken connection, a protocol violation).
    pub reconnect_backoff: Duration,
    /// `reconnect.backoff.max.ms`: cap of that wait, and how long a broker's requests must
    /// have failed, with nothing answered in between, before the user is told
    /// ([`Error::BrokerUnreachable`], [`Error::AllBrokersDown`]).
    pub reconnect_backoff_max: Duration,
    /// `request.timeout.ms`, sent as ListOffsets' `timeout_ms`.
    pub request_timeout: Duration,
    /// Bounds on decompression.
    pub decode_limits: DecodeLimits,
}

impl FetcherConfig {
    /// The fetch settings of `config`. Decompressed batches may reach
    /// `max(64 MiB, 16 * max.partition.fetch.bytes)`.
    pub fn from_config(config: &Config) -> Self {
        let partition_bytes = usize::try_from(config.max_partition_fetch_bytes).unwrap_or(0);
        let decode_limits = DecodeLimits::new(
            DecodeLimits::default()
                .max_decompressed_bytes
                .max(partition_bytes.saturating_mul(16)),
        );
        Self {
            min_bytes: config.fetch_min_bytes,
            max_wait: config.fetch_max_wait,
            max_bytes: config.fetch_max_bytes,
            partition_max_bytes: config.max_partition_fetch_bytes,
            isolation_level: config.isolation_level,
            auto_offset_reset: config.auto_offset_reset,
            partition_eof: config.enable_partition_eof,
            retry_backoff: config.retry_backoff,
            retry_backoff_max: config.retry_backoff_max,
            reconnect_backoff: config.reconnect_backoff,
            reconnect_backoff_max: config.reconnect_backoff_max,
            request_timeout: config.request_timeout,
            decode_limits,
        }
    }
}

/// One Fetch request to send: build it with [`FetchPlan::request`] for the negotiated
/// version, and hand the answer back with [`FetchPlan::id`].
#[derive(Debug, Clone)]
pub struct FetchPlan {
    id: u64,
    broker: i32,
    max_wait_ms: i32,
    min_bytes: i32,
    max_bytes: i32,
    isolation_level: i8,
    partitions: Vec<PlannedFetch>,
}

#[derive(Debug, Clone)]
struct PlannedFetch {
    tp: TopicPartition,
    topic_id: Uuid,
    leader_epoch: i32,
    fetch_offset: i64,
    max_bytes: i32,
    generation: u64,
}

impl FetchPlan {
    /// The id to hand back with the answer.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The broker to send it to.
    pub fn broker(&self) -> i32 {
        self.broker
    }

    /// The partitions and fetch offsets, in request order.
    pub fn partitions(&self) -> impl Iterator<Item = (&TopicPartition, i64)> {
        self.partitions.iter().map(|p| (&p.tp, p.fetch_offset))
    }

    /// The request at `version`: topic names before v13, topic ids from v13 on (an error if
    /// the metadata had none), the current leader epoch from v9 on, and no fetch session
    /// (session id 0, epoch -1: a full fetch every time).
    pub fn request(&self, version: i16) -> Result<FetchRequest, Error> {
        let mut topics: Vec<FetchTopic> = Vec::new();
        for planned in &self.partitions {
            let partition = FetchPartition::default()
                .with_partition(planned.tp.partition)
                .with_current_leader_epoch(planned.leader_epoch)
                .with_fetch_offset(planned.fetch_offset)
                .with_partition_max_bytes(planned.max_bytes);
            let same_topic = topics.last().is_some_and(|t| {
                if version >= 13 {
                    t.topic_id == planned.topic_id
                } else {
                    t.topic.0.as_str() == planned.tp.topic
                }
            });
            if same_topic {
                if let Some(topic) = topics.last_mut() {
                    topic.partitions.push(partition);
                }
                continue;
            }
            let mut topic = FetchTopic::default().with_partitions(vec![partition]);
            if version >= 13 {
                if planned.topic_id.is_nil() {
                    return Err(Error::Protocol {
                        peer: format!("broker {}", self.broker),
                        reason: format!(
                            "Fetch v{version} needs a topic id, and metadata gave none for {}",
                            planned.tp.topic
                        ),
                    });
                }
                topic.topic_id = planned.topic_id;
            } else {
                topic.topic = TopicName(StrBytes::from_string(planned.tp.topic.clone()));
            }
            topics.push(topic);
        }
        Ok(FetchRequest::default()
            .with_replica_id((-1).into())
            .with_max_wait_ms(self.max_wait_ms)
            .with_min_bytes(self.min_bytes)
            .with_max_bytes(self.max_bytes)
            .with_isolation_level(self.isolation_level)
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(topics))
    }
}

/// One ListOffsets request to send; see [`FetchPlan`].
#[derive(Debug, Clone)]
pub struct ListOffsetsPlan {
    id: u64,
    broker: i32,
    isolation_level: i8,
    timeout_ms: i32,
    partitions: Vec<PlannedLookup>,
}

#[derive(Debug, Clone)]
struct PlannedLookup {
    tp: TopicPartition,
    leader_epoch: i32,
    target: LookupTarget,
    generation: u64,
}

impl ListOffsetsPlan {
    /// The id to hand back with the answer.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The broker to send it to.
    pub fn broker(&self) -> i32 {
        self.broker
    }

    /// The request at `version` (1 and later): as a consumer (replica id -1), with the
    /// isolation level (v2+; brokers older than that have no transactions) and current
    /// leader epochs (v4+).
    pub fn request(&self, version: i16) -> ListOffsetsRequest {
        let mut topics: Vec<ListOffsetsTopic> = Vec::new();
        for planned in &self.partitions {
            let partition = ListOffsetsPartition::default()
                .with_partition_index(planned.tp.partition)
                .with_current_leader_epoch(planned.leader_epoch)
                .with_timestamp(planned.target.timestamp());
            match topics
                .iter_mut()
                .find(|t| t.name.0.as_str() == planned.tp.topic)
            {
                Some(topic) => topic.partitions.push(partition),
                None => topics.push(
                    ListOffsetsTopic::default()
                        .with_name(TopicName(StrBytes::from_string(planned.tp.topic.clone())))
                        .with_partitions(vec![partition]),
                ),
            }
        }
        ListOffsetsRequest::default()
            .with_replica_id((-1).into())
            .with_isolation_level(if version >= 2 {
                self.isolation_level
            } else {
                0
            })
            .with_timeout_ms(self.timeout_ms)
            .with_topics(topics)
    }
}

/// The consumer's fetch state: see the module documentation.
#[derive(Debug)]
pub struct Fetcher {
    config: FetcherConfig,
    partitions: IndexMap<TopicPartition, PartitionState>,
    rng: Rng,
    next_request_id: u64,
    fetches: HashMap<u64, InFlightFetch>,
    lookups: HashMap<u64, InFlightLookup>,
    brokers_fetching: HashSet<i32>,
    brokers_looking_up: HashSet<i32>,
    broker_backoff: HashMap<i32, RetryState>,
    metadata_refresh: bool,
    /// Index of the partition records are being drained from.
    drain_cursor: usize,
    /// Where the next fetch starts its partition list, so that every partition gets to be
    /// first (KIP-74 returns the first partition's first batch whole).
    fetch_rotation: usize,
    space_freed: bool,
    /// Raw batches buffered since the last [`Fetcher::take_undecoded`].
    undecoded: Vec<(TopicPartition, Bytes)>,
    /// Whether requests to each broker (and metadata requests to any broker) answer.
    health: HashMap<Peer, Health>,
    /// Outage errors for the user, at most one per peer, returned before anything else.
    outage_errors: VecDeque<(Peer, Error)>,
}

#[derive(Debug)]
struct InFlightFetch {
    broker: i32,
    sent_at: Instant,
    partitions: Vec<PlannedFetch>,
}

#[derive(Debug)]
struct InFlightLookup {
    broker: i32,
    sent_at: Instant,
    partitions: Vec<PlannedLookup>,
}

/// Who a request went to, for failure episodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Peer {
    /// A broker, by node id (Fetch and ListOffsets).
    Broker(i32),
    /// Whichever broker answers metadata requests, bootstrap servers included.
    AnyBroker,
}

/// Answers and failures of one [`Peer`].
#[derive(Debug, Default)]
struct Health {
    last_success: Option<Instant>,
    episode: Option<FailureEpisode>,
}

/// Requests to a peer failing one after the other, with nothing answered in between.
#[derive(Debug)]
struct FailureEpisode {
    /// When the first failed request was sent (or the last answer came, if later).
    since: Instant,
    last_failure: Instant,
    /// The user was told (once per episode).
    reported: bool,
}

/// What one partition of a fetch answer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Applied {
    /// The fetch offset moved on.
    Progress,
    /// Nothing new, and the broker said there is nothing: the end of the log.
    Idle,
    /// Nothing new although the broker said there is more (a high watermark above the fetch
    /// offset, or bytes without a batch past the fetch offset).
    Stalled,
    /// Stale, an error, or the partition stopped: nothing to say about progress.
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LookupTarget {
    Earliest,
    Latest,
    Timestamp(i64),
}

impl LookupTarget {
    fn timestamp(self) -> i64 {
        match self {
            Self::Earliest => EARLIEST_TIMESTAMP,
            Self::Latest => LATEST_TIMESTAMP,
            Self::Timestamp(t) => t,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FetchState {
    /// The position must be looked up with ListOffsets first.
    Lookup {
        target: LookupTarget,
        in_flight: bool,
    },
    /// Has a position and is fetched (unless paused or backing off).
    Fetching,
    /// Stopped by an error the user is (or was) told about; a seek restarts it.
    Halted,
}

#[derive(Debug)]
struct RetryState {
    backoff: Backoff,
    retry_at: Option<Instant>,
}

impl RetryState {
    fn new(config: &FetcherConfig) -> Self {
        Self {
            backoff: Backoff::new(config.retry_backoff, config.retry_backoff_max),
            retry_at: None,
        }
    }

    /// A broker's: `reconnect.backoff.ms` up to `reconnect.backoff.max.ms`.
    fn reconnect(config: &FetcherConfig) -> Self {
        Self {
            backoff: Backoff::new(config.reconnect_backoff, config.reconnect_backoff_max),
            retry_at: None,
        }
    }

    /// Waits before the next try; returns how long.
    fn fail(&mut self, rng: &mut Rng, now: Instant) -> Duration {
        let delay = self.backoff.next_delay(rng);
        self.retry_at = Some(now + delay);
        delay
    }

    fn succeed(&mut self) {
        self.backoff.reset();
        self.retry_at = None;
    }

    /// Ready to try; clears a wait that has passed.
    fn ready(&mut self, now: Instant) -> bool {
        match self.retry_at {
            Some(at) if at > now => false,
            _ => {
                self.retry_at = None;
                true
            }
        }
    }

    fn pending(&self, now: Instant) -> Option<Instant> {
        self.retry_at.filter(|at| *at > now)
    }
}

#[derive(Debug)]
struct PartitionState {
    topic: Arc<str>,
    /// Next offset to hand to the user; `None` until looked up.
    position: Option<i64>,
    /// Next offset to fetch; `position` plus what is buffered.
    fetch_offset: i64,
    state: FetchState,
    generation: u64,
    paused: bool,
    buffer: VecDeque<Buffered>,
    buffered_bytes: usize,
    /// The fetch request this partition is part of.
    fetch_in_flight: Option<u64>,
    retry: RetryState,
    /// End offset at which the last end-of-partition event was queued.
    eof_offset: Option<i64>,
    high_watermark: i64,
    last_stable_offset: i64,
    log_start_offset: i64,
}

#[derive(Debug)]
enum Buffered {
    /// A batch as fetched, not decoded yet: the driver applies a response under the lock
    /// `recv` needs, so decoding there would make the user wait for a whole response's
    /// records. The driver decodes it after releasing the lock ([`decode_ahead`],
    /// [`Fetcher::handle_decoded`]); if `poll_event` reaches it first, it decodes it.
    Raw(RawBatch),
    Batch(BufferedBatch),
    Eof(i64),
    Error(Error),
}

impl Buffered {
    /// A decoded batch, ready for `poll_event`.
    fn decoded(mut batch: RecordBatch, response_bytes: usize) -> Self {
        let records = if batch.is_control {
            // Transaction markers are not for the user; read_committed's filtering of
            // aborted transactions builds on them later.
            Vec::new()
        } else {
            std::mem::take(&mut batch.records)
        };
        Self::Batch(BufferedBatch {
            batch,
            records: records.into_iter(),
            bytes: response_bytes,
        })
    }
}

#[derive(Debug)]
struct RawBatch {
    /// The batch's bytes, a slice of the fetch response.
    bytes: Bytes,
    /// The broker that sent it.
    broker: i32,
    /// Fetch response bytes released when this batch is done.
    response_bytes: usize,
}

#[derive(Debug)]
struct BufferedBatch {
    /// The batch without its records (they are in `records`), for offsets and timestamps.
    batch: RecordBatch,
    records: std::vec::IntoIter<Record>,
    /// Fetch response bytes released when this batch is done.
    bytes: usize,
}

impl PartitionState {
    fn new(topic: &str, config: &FetcherConfig) -> Self {
        Self {
            topic: topic.into(),
            position: None,
            fetch_offset: 0,
            state: FetchState::Halted,
            generation: 0,
            paused: false,
            buffer: VecDeque::new(),
            buffered_bytes: 0,
            fetch_in_flight: None,
            retry: RetryState::new(config),
            eof_offset: None,
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
        }
    }

    /// Forgets everything fetched and everything in flight: a new generation.
    fn restart(&mut self) {
        self.generation += 1;
        self.buffer.clear();
        self.buffered_bytes = 0;
        self.fetch_in_flight = None;
        self.retry.succeed();
        self.eof_offset = None;
    }

    fn set_position(&mut self, offset: i64) {
        self.position = Some(offset);
        self.fetch_offset = offset;
        self.state = FetchState::Fetching;
    }

    fn look_up(&mut self, target: LookupTarget) {
        self.position = None;
        self.state = FetchState::Lookup {
            target,
            in_flight: false,
        };
    }
}

impl Fetcher {
    /// A fetcher with nothing assigned; `seed` drives backoff jitter.
    pub fn new(config: FetcherConfig, seed: u64) -> Self {
        Self {
            config,
            partitions: IndexMap::new(),
            rng: Rng::new(seed),
            next_request_id: 0,
            fetches: HashMap::new(),
            lookups: HashMap::new(),
            brokers_fetching: HashSet::new(),
            brokers_looking_up: HashSet::new(),
            broker_backoff: HashMap::new(),
            metadata_refresh: false,
            drain_cursor: 0,
            fetch_rotation: 0,
            space_freed: false,
            undecoded: Vec::new(),
            health: HashMap::new(),
            outage_errors: VecDeque::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &FetcherConfig {
        &self.config
    }

    /// Replaces the assignment. Partitions that stay keep their position, buffer and pause
    /// state (as the Java consumer's `assign` does); new ones start from
    /// `auto.offset.reset`; dropped ones are forgotten with whatever was buffered.
    pub fn assign(&mut self, partitions: &[TopicPartition]) {
        let mut next = IndexMap::with_capacity(partitions.len());
        for tp in partitions {
            if next.contains_key(tp) {
                continue;
            }
            let state = match self.partitions.swap_remove(tp) {
                Some(state) => state,
                None => {
                    let mut state = PartitionState::new(&tp.topic, &self.config);
                    self.reset_by_policy(&mut state, tp, None);
                    state
                }
            };
            next.insert(tp.clone(), state);
        }
        self.partitions = next;
        self.drain_cursor = 0;
    }

    /// The assigned partitions, in assignment order.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.partitions.keys().cloned().collect()
    }

    /// True when at least one partition is assigned.
    pub fn has_assignment(&self) -> bool {
        !self.partitions.is_empty()
    }

    /// The topics of the assignment.
    pub fn topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = self.partitions.keys().map(|tp| tp.topic.clone()).collect();
        topics.sort();
        topics.dedup();
        topics
    }

    /// Moves the position of an assigned partition, dropping what was buffered for it and
    /// ignoring answers to requests already sent. Restarts a partition halted by an error.
    pub fn seek(&mut self, tp: &TopicPartition, offset: Offset) -> Result<(), Error> {
        if let Offset::At(at) = offset {
            if at < 0 {
                return Err(Error::InvalidArgument(format!(
                    "cannot seek {tp} to negative offset {at}"
                )));
            }
        }
        let state = self
            .partitions
            .get_mut(tp)
            .ok_or_else(|| unknown_partition(tp))?;
        state.restart();
        match offset {
            Offset::At(at) => state.set_position(at),
            Offset::Beginning => state.look_up(LookupTarget::Earliest),
            Offset::End => state.look_up(LookupTarget::Latest),
            Offset::Timestamp(t) => state.look_up(LookupTarget::Timestamp(t)),
        }
        Ok(())
    }

    /// The next offset the user will get from `tp`; `None` when not assigned or while the
    /// position is being looked up (after a seek to the beginning, end or a timestamp, or a
    /// reset).
    pub fn position(&self, tp: &TopicPartition) -> Option<i64> {
        let state = self.partitions.get(tp)?;
        match state.state {
            FetchState::Lookup { .. } => None,
            _ => state.position,
        }
    }

    /// Log start offset and high watermark of `tp` as of the last fetch, if any.
    pub fn watermarks(&self, tp: &TopicPartition) -> Option<(i64, i64)> {
        let state = self.partitions.get(tp)?;
        (state.high_watermark >= 0).then_some((state.log_start_offset, state.high_watermark))
    }

    /// Stops fetching `partitions` and holds back what is buffered for them.
    pub fn pause(&mut self, partitions: &[TopicPartition]) -> Result<(), Error> {
        self.set_paused(partitions, true)
    }

    /// Undoes [`Fetcher::pause`]: buffered records flow again and fetching resumes.
    pub fn resume(&mut self, partitions: &[TopicPartition]) -> Result<(), Error> {
        self.set_paused(partitions, false)
    }

    fn set_paused(&mut self, partitions: &[TopicPartition], paused: bool) -> Result<(), Error> {
        if let Some(tp) = partitions
            .iter()
            .find(|tp| !self.partitions.contains_key(*tp))
        {
            return Err(unknown_partition(tp));
        }
        for tp in partitions {
            if let Some(state) = self.partitions.get_mut(tp) {
                state.paused = paused;
            }
        }
        Ok(())
    }

    /// The paused partitions.
    pub fn paused(&self) -> Vec<TopicPartition> {
        self.partitions
            .iter()
            .filter(|(_, s)| s.paused)
            .map(|(tp, _)| tp.clone())
            .collect()
    }

    /// True once since buffered data was consumed: the driver may be able to fetch again.
    pub fn poll_space_freed(&mut self) -> bool {
        std::mem::take(&mut self.space_freed)
    }

    /// True once each time a leader was missing or a broker said the metadata is stale.
    pub fn poll_metadata_refresh(&mut self) -> bool {
        std::mem::take(&mut self.metadata_refresh)
    }

    /// The earliest future time at which a backoff ends; `None` when nothing waits.
    pub fn poll_timeout(&self, now: Instant) -> Option<Instant> {
        let partitions = self
            .partitions
            .values()
            .filter_map(|s| s.retry.pending(now));
        let brokers = self.broker_backoff.values().filter_map(|r| r.pending(now));
        partitions.chain(brokers).min()
    }

    /// The ListOffsets requests to send now: one per broker leading partitions whose
    /// position must be looked up, unless one is in flight to that broker already.
    pub fn poll_list_offsets(&mut self, now: Instant, metadata: &Metadata) -> Vec<ListOffsetsPlan> {
        let mut groups: BTreeMap<i32, Vec<PlannedLookup>> = BTreeMap::new();
        let mut missing_leader = false;
        for (tp, state) in &mut self.partitions {
            let FetchState::Lookup {
                target,
                in_flight: false,
            } = state.state
            else {
                continue;
            };
            if !state.retry.ready(now) {
                continue;
            }
            let Some(info) = metadata.leader(&tp.topic, tp.partition) else {
                missing_leader = true;
                continue;
            };
            if self.brokers_looking_up.contains(&info.leader)
                || !self
                    .broker_backoff
                    .get_mut(&info.leader)
                    .is_none_or(|r| r.ready(now))
            {
                continue;
            }
            groups.entry(info.leader).or_default().push(PlannedLookup {
                tp: tp.clone(),
                leader_epoch: info.leader_epoch,
                target,
                generation: state.generation,
            });
        }
        self.metadata_refresh |= missing_leader;
        let mut plans = Vec::with_capacity(groups.len());
        for (broker, partitions) in groups {
            for planned in &partitions {
                if let Some(state) = self.partitions.get_mut(&planned.tp) {
                    state.state = FetchState::Lookup {
                        target: planned.target,
                        in_flight: true,
                    };
                }
            }
            let id = self.next_id();
            self.brokers_looking_up.insert(broker);
            self.lookups.insert(
                id,
                InFlightLookup {
                    broker,
                    sent_at: now,
                    partitions: partitions.clone(),
                },
            );
            plans.push(ListOffsetsPlan {
                id,
                broker,
                isolation_level: self.config.isolation_level.wire_value(),
                timeout_ms: millis_i32(self.config.request_timeout),
                partitions,
            });
        }
        plans
    }

    /// Applies the answer to the ListOffsets request `id`.
    pub fn handle_list_offsets_response(
        &mut self,
        id: u64,
        response: &ListOffsetsResponse,
        now: Instant,
    ) {
        let Some(flight) = self.lookups.remove(&id) else {
            return;
        };
        self.brokers_looking_up.remove(&flight.broker);
        self.handle_answer(flight.broker, now);
        let mut answered = HashSet::new();
        for topic in &response.topics {
            for data in &topic.partitions {
                let tp = TopicPartition::new(topic.name.0.as_str(), data.partition_index);
                let Some(planned) = flight.partitions.iter().find(|p| p.tp == tp) else {
                    continue;
                };
                answered.insert(tp.clone());
                let Some(state) = current_lookup(&mut self.partitions, planned) else {
                    continue;
                };
                match ErrorCode::try_from_code(data.error_code) {
                    None if data.offset >= 0 => {
                        debug!(%tp, offset = data.offset, target = ?planned.target, "position looked up");
                        state.retry.succeed();
                        state.set_position(data.offset);
                    }
                    None if data.offset < -1 => {
                        // -1 is "no such offset"; nothing else below 0 is an offset.
                        Self::corrupt(
                            state,
                            &tp,
                            flight.broker,
                            data.offset,
                            format!("ListOffsets answered offset {}", data.offset),
                        );
                    }
                    None => {
                        // No record at or after the timestamp: the end of the log, as the
                        // Java consumer's offsetsForTimes + seekToEnd would give.
                        state.look_up(LookupTarget::Latest);
                        if planned.target == LookupTarget::Latest {
                            state.retry.fail(&mut self.rng, now);
                        }
                    }
                    Some(code) => {
                        let refresh = Self::partition_error(
                            &mut self.rng,
                            state,
                            &tp,
                            flight.broker,
                            code,
                            now,
                        );
                        if matches!(state.state, FetchState::Lookup { .. }) {
                            state.look_up(planned.target);
                        }
                        self.metadata_refresh |= refresh;
                    }
                }
            }
        }
        // Partitions the broker left out are asked again.
        for planned in &flight.partitions {
            if answered.contains(&planned.tp) {
                continue;
            }
            if let Some(state) = current_lookup(&mut self.partitions, planned) {
                state.look_up(planned.target);
            }
        }
    }

    /// The ListOffsets request `id` failed as a whole (disconnect, timeout, ...): back off
    /// that broker (`reconnect.backoff.ms`), refresh the metadata, and count the failure
    /// towards [`Error::BrokerUnreachable`].
    pub fn handle_list_offsets_failure(&mut self, id: u64, error: &Error, now: Instant) {
        let Some(flight) = self.lookups.remove(&id) else {
            return;
        };
        self.brokers_looking_up.remove(&flight.broker);
        let delay = self.fail_broker(flight.broker, now);
        warn!(broker = flight.broker, %error, retry_in = ?delay, "ListOffsets failed");
        self.handle_request_failure(flight.broker, error, flight.sent_at, now);
        for planned in &flight.partitions {
            if let Some(state) = self.partitions.get_mut(&planned.tp) {
                if state.generation == planned.generation {
                    state.look_up(planned.target);
                    state.retry.fail(&mut self.rng, now);
                }
            }
        }
    }

    /// The Fetch requests to send now: one per broker without a fetch in flight, for the
    /// partitions it leads that have a position, are not paused or backing off, and whose
    /// buffers are below the bounds (see the module documentation).
    pub fn poll_fetches(&mut self, now: Instant, metadata: &Metadata) -> Vec<FetchPlan> {
        let partition_limit = usize::try_from(self.config.partition_max_bytes).unwrap_or(0);
        let broker_limit = usize::try_from(self.config.max_bytes).unwrap_or(0);
        let mut buffered_by_broker: HashMap<i32, usize> = HashMap::new();
        for (tp, state) in &self.partitions {
            if state.paused || state.buffered_bytes == 0 {
                continue;
            }
            if let Some(info) = metadata.leader(&tp.topic, tp.partition) {
                *buffered_by_broker.entry(info.leader).or_default() += state.buffered_bytes;
            }
        }
        let mut groups: BTreeMap<i32, Vec<PlannedFetch>> = BTreeMap::new();
        let mut missing_leader = false;
        let count = self.partitions.len();
        for i in 0..count {
            let index = (self.fetch_rotation + i) % count;
            let Some((tp, state)) = self.partitions.get_index_mut(index) else {
                continue;
            };
            if state.state != FetchState::Fetching
                || state.paused
                || state.fetch_in_flight.is_some()
                || state.buffered_bytes >= partition_limit
                || !state.retry.ready(now)
            {
                continue;
            }
            let Some(info) = metadata.leader(&tp.topic, tp.partition) else {
                missing_leader = true;
                continue;
            };
            let broker = info.leader;
            if self.brokers_fetching.contains(&broker)
                || buffered_by_broker.get(&broker).copied().unwrap_or(0) >= broker_limit
                || !self
                    .broker_backoff
                    .get_mut(&broker)
                    .is_none_or(|r| r.ready(now))
            {
                continue;
            }
            let topic_id = metadata.topic(&tp.topic).map_or(Uuid::nil(), |t| t.id);
            groups.entry(broker).or_default().push(PlannedFetch {
                tp: tp.clone(),
                topic_id,
                leader_epoch: info.leader_epoch,
                fetch_offset: state.fetch_offset,
                max_bytes: self.config.partition_max_bytes,
                generation: state.generation,
            });
        }
        self.metadata_refresh |= missing_leader;
        if !groups.is_empty() {
            self.fetch_rotation = self.fetch_rotation.wrapping_add(1);
        }
        let mut plans = Vec::with_capacity(groups.len());
        for (broker, partitions) in groups {
            let id = self.next_id();
            for planned in &partitions {
                if let Some(state) = self.partitions.get_mut(&planned.tp) {
                    state.fetch_in_flight = Some(id);
                }
            }
            self.brokers_fetching.insert(broker);
            self.fetches.insert(
                id,
                InFlightFetch {
                    broker,
                    sent_at: now,
                    partitions: partitions.clone(),
                },
            );
            plans.push(FetchPlan {
                id,
                broker,
                max_wait_ms: millis_i32(self.config.max_wait),
                min_bytes: self.config.min_bytes,
                max_bytes: self.config.max_bytes,
                isolation_level: self.config.isolation_level.wire_value(),
                partitions,
            });
        }
        plans
    }

    /// Applies the answer to the Fetch request `id`, sent at `version`.
    pub fn handle_fetch_response(
        &mut self,
        id: u64,
        version: i16,
        response: FetchResponse,
        now: Instant,
    ) {
        let Some(flight) = self.fetches.remove(&id) else {
            return;
        };
        self.brokers_fetching.remove(&flight.broker);
        for planned in &flight.partitions {
            if let Some(state) = self.partitions.get_mut(&planned.tp) {
                if state.fetch_in_flight == Some(id) {
                    state.fetch_in_flight = None;
                }
            }
        }
        self.handle_answer(flight.broker, now);
        if let Some(code) = ErrorCode::try_from_code(response.error_code) {
            let delay = self.fail_broker(flight.broker, now);
            warn!(broker = flight.broker, %code, retry_in = ?delay, "fetch failed");
            return;
        }
        if let Some(retry) = self.broker_backoff.get_mut(&flight.broker) {
            retry.succeed();
        }
        let planned_by_tp: HashMap<&TopicPartition, &PlannedFetch> =
            flight.partitions.iter().map(|p| (&p.tp, p)).collect();
        let mut progress = false;
        let mut stalled: Vec<&PlannedFetch> = Vec::new();
        for topic in response.responses {
            let name = if version >= 13 {
                flight
                    .partitions
                    .iter()
                    .find(|p| p.topic_id == topic.topic_id)
                    .map(|p| p.tp.topic.clone())
            } else {
                Some(topic.topic.0.as_str().to_string())
            };
            let Some(name) = name else {
                continue;
            };
            for data in topic.partitions {
                let tp = TopicPartition::new(name.clone(), data.partition_index);
                let Some(planned) = planned_by_tp.get(&tp) else {
                    continue;
                };
                match self.apply_partition(flight.broker, planned, data, now) {
                    Applied::Progress => progress = true,
                    Applied::Stalled => stalled.push(planned),
                    Applied::Idle | Applied::Other => {}
                }
            }
        }
        // A partition the broker says has more, but which got nothing, is fetched again at
        // once only if the answer brought something for another partition (it may have been
        // left out by `fetch.max.bytes`); an answer that moved nothing on backs those
        // partitions off, or a broker answering at once without data would be asked again
        // and again in a tight loop (librdkafka backs a partition off the same way).
        for planned in stalled {
            let Some(state) = self.partitions.get_mut(&planned.tp) else {
                continue;
            };
            if progress {
                state.retry.succeed();
            } else {
                let delay = state.retry.fail(&mut self.rng, now);
                debug!(
                    broker = flight.broker,
                    tp = %planned.tp,
                    offset = planned.fetch_offset,
                    high_watermark = state.high_watermark,
                    retry_in = ?delay,
                    "fetch brought nothing past the fetch offset although the broker has more; backing off"
                );
            }
        }
    }

    /// The Fetch request `id` failed as a whole (no answer, a broken connection, a protocol
    /// violation): back off from that broker (`reconnect.backoff.ms`, doubling up to
    /// `reconnect.backoff.max.ms`) and refresh the metadata; nothing was consumed, so the
    /// same offsets are fetched again. Counts towards [`Error::BrokerUnreachable`].
    pub fn handle_fetch_failure(&mut self, id: u64, error: &Error, now: Instant) {
        let Some(flight) = self.fetches.remove(&id) else {
            return;
        };
        self.brokers_fetching.remove(&flight.broker);
        for planned in &flight.partitions {
            if let Some(state) = self.partitions.get_mut(&planned.tp) {
                if state.fetch_in_flight == Some(id) {
                    state.fetch_in_flight = None;
                }
            }
        }
        let delay = self.fail_broker(flight.broker, now);
        warn!(broker = flight.broker, %error, retry_in = ?delay, "fetch failed");
        self.handle_request_failure(flight.broker, error, flight.sent_at, now);
    }

    /// A metadata refresh was answered.
    pub fn handle_metadata_response(&mut self, now: Instant) {
        self.record_success(Peer::AnyBroker, now);
    }

    /// A metadata refresh sent at `sent_at` failed: no broker, bootstrap servers included,
    /// answered it. Counts towards [`Error::AllBrokersDown`] while some assigned partition
    /// has no known leader (the consumer cannot fetch it before a refresh succeeds); with
    /// every leader known, fetch failures say more, and tell the user which broker fails.
    pub fn handle_metadata_failure(
        &mut self,
        error: &Error,
        sent_at: Instant,
        now: Instant,
        metadata: &Metadata,
    ) {
        let leaderless = self.partitions.iter().any(|(tp, state)| {
            state.state != FetchState::Halted && metadata.leader(&tp.topic, tp.partition).is_none()
        });
        if leaderless {
            self.record_failure(Peer::AnyBroker, error, sent_at, now);
        }
    }

    /// The next thing for the user, if any: a record, an end-of-partition event, or a
    /// partition's error; before those, an outage ([`Error::BrokerUnreachable`],
    /// [`Error::AllBrokersDown`]) once per failure episode. Partitions take turns batch by
    /// batch; paused ones are skipped.
    pub fn poll_event(&mut self) -> Option<Result<ConsumerEvent, Error>> {
        if let Some((_, error)) = self.outage_errors.pop_front() {
            return Some(Err(error));
        }
        self.poll_event_inner()
    }

    /// The raw batches buffered by fetch responses since the last call, for the driver to
    /// decode ahead with [`decode_ahead`] outside the lock `recv` needs, and hand back with
    /// [`Fetcher::handle_decoded`]. Decoding them is optional: `poll_event` decodes any
    /// batch still raw when it reaches it.
    pub fn take_undecoded(&mut self) -> Vec<(TopicPartition, Bytes)> {
        std::mem::take(&mut self.undecoded)
    }

    /// Puts batches decoded ahead in place of their raw form, where they are still raw and
    /// buffered (a seek or `recv` may have got there first). A batch that failed to decode
    /// stays raw: `poll_event` reports the error in its place.
    pub fn handle_decoded(&mut self, decoded: Vec<(TopicPartition, Bytes, RecordBatch)>) {
        for (tp, bytes, batch) in decoded {
            let Some(state) = self.partitions.get_mut(&tp) else {
                continue;
            };
            let slot = state.buffer.iter_mut().find(|b| {
                matches!(b, Buffered::Raw(raw)
                    if raw.bytes.as_ptr() == bytes.as_ptr() && raw.bytes.len() == bytes.len())
            });
            if let Some(slot) = slot {
                let response_bytes = match slot {
                    Buffered::Raw(raw) => raw.response_bytes,
                    _ => continue,
                };
                *slot = Buffered::decoded(batch, response_bytes);
            }
        }
    }

    /// The decode limits, for [`decode_ahead`].
    pub fn decode_limits(&self) -> DecodeLimits {
        self.config.decode_limits
    }

    fn poll_event_inner(&mut self) -> Option<Result<ConsumerEvent, Error>> {
        let count = self.partitions.len();
        // One full turn over the partitions, plus the one we started at.
        for _ in 0..=count {
            if count == 0 {
                return None;
            }
            let index = self.drain_cursor % count;
            let (tp, state) = self.partitions.get_index_mut(index)?;
            if !state.paused {
                let (event, finished_batch) =
                    Self::next_from(tp, state, &self.config.decode_limits);
                if finished_batch {
                    self.space_freed = true;
                }
                if let Some(event) = event {
                    if finished_batch {
                        self.drain_cursor = index + 1;
                    }
                    return Some(event);
                }
            }
            self.drain_cursor = index + 1;
        }
        None
    }

    /// The next event of one partition; also whether a buffered batch was finished.
    fn next_from(
        tp: &TopicPartition,
        state: &mut PartitionState,
        limits: &DecodeLimits,
    ) -> (Option<Result<ConsumerEvent, Error>>, bool) {
        let mut finished = false;
        loop {
            let Some(front) = state.buffer.front_mut() else {
                return (None, finished);
            };
            match front {
                Buffered::Raw(raw) => match RecordBatch::decode(&raw.bytes, limits) {
                    Ok(batch) => *front = Buffered::decoded(batch, raw.response_bytes),
                    Err(error) => {
                        // Never skipped: the partition stops here, at this batch, until a
                        // seek; what was fetched after it is dropped.
                        let broker = raw.broker;
                        let offset = BatchHeader::parse(&raw.bytes)
                            .map(|h| h.base_offset)
                            .ok()
                            .or(state.position);
                        warn!(%tp, broker, ?offset, %error, "corrupt record batch; partition stopped until the next seek");
                        state.state = FetchState::Halted;
                        state.buffer.clear();
                        state.buffered_bytes = 0;
                        let error = Error::CorruptRecord {
                            topic: tp.topic.clone(),
                            partition: tp.partition,
                            offset,
                            broker: Some(broker),
                            reason: error.to_string(),
                        };
                        return (Some(Err(error)), true);
                    }
                },
                Buffered::Eof(offset) => {
                    let offset = *offset;
                    state.buffer.pop_front();
                    let event = ConsumerEvent::PartitionEof {
                        partition: tp.clone(),
                        offset,
                    };
                    return (Some(Ok(event)), finished);
                }
                Buffered::Error(_) => {
                    let Some(Buffered::Error(error)) = state.buffer.pop_front() else {
                        return (None, finished);
                    };
                    return (Some(Err(error)), finished);
                }
                Buffered::Batch(buffered) => {
                    let position = state.position.unwrap_or(0);
                    let mut record = None;
                    for candidate in buffered.records.by_ref() {
                        let offset = buffered.batch.record_offset(&candidate);
                        if offset >= position {
                            record = Some((offset, candidate));
                            break;
                        }
                    }
                    let batch_done = buffered.records.len() == 0;
                    let event = record.map(|(offset, r)| {
                        let timestamp = buffered.batch.record_timestamp(&r);
                        let epoch = buffered.batch.partition_leader_epoch;
                        ConsumerEvent::Record(ConsumerRecord {
                            topic: state.topic.clone(),
                            partition: tp.partition,
                            offset,
                            timestamp,
                            timestamp_type: buffered.batch.timestamp_type,
                            key: r.key,
                            value: r.value,
                            headers: r.headers,
                            leader_epoch: (epoch >= 0).then_some(epoch),
                        })
                    });
                    // Decoding refused batches whose next offset overflows, and every record
                    // lies inside its batch: these cannot fail. Saturating rather than
                    // trusting that: a position is never allowed to wrap.
                    if let Some(ConsumerEvent::Record(r)) = &event {
                        state.position = Some(r.offset.saturating_add(1));
                    }
                    if batch_done {
                        let next = buffered.batch.next_offset();
                        let bytes = buffered.bytes;
                        state.buffer.pop_front();
                        state.buffered_bytes = state.buffered_bytes.saturating_sub(bytes);
                        state.position = Some(state.position.map_or(next, |p| p.max(next)));
                        finished = true;
                    }
                    if let Some(event) = event {
                        return (Some(Ok(event)), finished);
                    }
                }
            }
        }
    }

    fn next_id(&mut self) -> u64 {
        self.next_request_id += 1;
        self.next_request_id
    }

    /// Backs off from `broker` and asks for fresh metadata; returns the wait.
    fn fail_broker(&mut self, broker: i32, now: Instant) -> Duration {
        self.metadata_refresh = true;
        let retry = self
            .broker_backoff
            .entry(broker)
            .or_insert_with(|| RetryState::reconnect(&self.config));
        retry.fail(&mut self.rng, now)
    }

    /// `broker` answered a request: it is reachable, and so is some broker.
    fn handle_answer(&mut self, broker: i32, now: Instant) {
        self.record_success(Peer::Broker(broker), now);
        self.record_success(Peer::AnyBroker, now);
    }

    fn handle_request_failure(
        &mut self,
        broker: i32,
        error: &Error,
        sent_at: Instant,
        now: Instant,
    ) {
        self.record_failure(Peer::Broker(broker), error, sent_at, now);
    }

    fn record_success(&mut self, peer: Peer, now: Instant) {
        let health = self.health.entry(peer).or_default();
        health.last_success = Some(now);
        health.episode = None;
    }

    /// A request to `peer` sent at `sent_at` failed at `now`. Once the peer's requests have
    /// failed for `reconnect.backoff.max.ms` with nothing answered in between, the user is
    /// told, once per episode. A failure after a pause longer than two backoffs (nothing
    /// was asked of the peer meanwhile) starts a new episode.
    fn record_failure(&mut self, peer: Peer, error: &Error, sent_at: Instant, now: Instant) {
        let threshold = self.config.reconnect_backoff_max;
        let pause = threshold
            .max(self.config.retry_backoff_max)
            .saturating_mul(2);
        let health = self.health.entry(peer).or_default();
        let since = health.last_success.map_or(sent_at, |at| at.max(sent_at));
        let episode = match &mut health.episode {
            Some(episode) if sent_at.saturating_duration_since(episode.last_failure) <= pause => {
                episode
            }
            slot => slot.insert(FailureEpisode {
                since,
                last_failure: now,
                reported: false,
            }),
        };
        episode.last_failure = now;
        let failing_for = now.saturating_duration_since(episode.since);
        if episode.reported || failing_for < threshold {
            return;
        }
        episode.reported = true;
        let cause = Box::new(error.clone());
        let outage = match peer {
            Peer::Broker(broker) => Error::BrokerUnreachable {
                broker,
                failing_for,
                cause,
            },
            Peer::AnyBroker => Error::AllBrokersDown { failing_for, cause },
        };
        warn!(%outage, %error, "reporting to the consumer; still retrying");
        // One per peer: a newer episode replaces one the user has not seen yet.
        self.outage_errors.retain(|(p, _)| *p != peer);
        self.outage_errors.push_back((peer, outage));
    }

    /// Starts a reset by `auto.offset.reset`: a lookup, or with `none` an error for the
    /// user. `offset` is the out-of-range offset (`None` when there was no position).
    fn reset_by_policy(
        &self,
        state: &mut PartitionState,
        tp: &TopicPartition,
        offset: Option<i64>,
    ) {
        match self.config.auto_offset_reset {
            OffsetReset::Earliest => state.look_up(LookupTarget::Earliest),
            OffsetReset::Latest => state.look_up(LookupTarget::Latest),
            OffsetReset::None => {
                state.position = offset;
                state.state = FetchState::Halted;
                state
                    .buffer
                    .push_back(Buffered::Error(Error::OffsetOutOfRange {
                        topic: tp.topic.clone(),
                        partition: tp.partition,
                        offset: offset.unwrap_or(-1),
                    }));
            }
        }
    }

    /// Handles a partition-level error code of a Fetch or ListOffsets answer. Returns
    /// whether the metadata should be refreshed.
    fn partition_error(
        rng: &mut Rng,
        state: &mut PartitionState,
        tp: &TopicPartition,
        broker: i32,
        code: ErrorCode,
        now: Instant,
    ) -> bool {
        match code {
            ErrorCode::NotLeaderOrFollower
            | ErrorCode::FencedLeaderEpoch
            | ErrorCode::UnknownTopicOrPartition
            | ErrorCode::UnknownTopicId
            | ErrorCode::InconsistentTopicId
            | ErrorCode::LeaderNotAvailable
            | ErrorCode::ReplicaNotAvailable
            | ErrorCode::KafkaStorageError
            | ErrorCode::OffsetNotAvailable => {
                debug!(%tp, %code, "partition error; refreshing metadata");
                state.retry.fail(rng, now);
                true
            }
            // Our metadata is newer than the broker's; it will catch up.
            ErrorCode::UnknownLeaderEpoch => {
                state.retry.fail(rng, now);
                false
            }
            ErrorCode::CorruptMessage => {
                state.state = FetchState::Halted;
                state
                    .buffer
                    .push_back(Buffered::Error(Error::CorruptRecord {
                        topic: tp.topic.clone(),
                        partition: tp.partition,
                        offset: state.position,
                        broker: Some(broker),
                        reason: "broker reported a corrupt message".into(),
                    }));
                false
            }
            code if code.is_retriable() => {
                debug!(%tp, %code, "retriable partition error");
                state.retry.fail(rng, now);
                false
            }
            code => {
                warn!(%tp, %code, "partition error; partition stopped until the next seek");
                state.state = FetchState::Halted;
                state.buffer.push_back(Buffered::Error(Error::Broker {
                    code,
                    context: Some(tp.to_string()),
                }));
                false
            }
        }
    }

    fn apply_partition(
        &mut self,
        broker: i32,
        planned: &PlannedFetch,
        data: PartitionData,
        now: Instant,
    ) -> Applied {
        let tp = &planned.tp;
        let reset = self.config.auto_offset_reset;
        let Some(state) = self.partitions.get_mut(tp) else {
            return Applied::Other;
        };
        if state.generation != planned.generation
            || state.state != FetchState::Fetching
            || state.fetch_offset != planned.fetch_offset
        {
            // Answer to a request sent before a seek or reset.
            return Applied::Other;
        }
        match ErrorCode::try_from_code(data.error_code) {
            None => {}
            Some(ErrorCode::OffsetOutOfRange) => {
                warn!(%tp, broker, offset = planned.fetch_offset, policy = ?reset, "fetch offset out of range");
                state.restart();
                let offset = planned.fetch_offset;
                match reset {
                    OffsetReset::Earliest => state.look_up(LookupTarget::Earliest),
                    OffsetReset::Latest => state.look_up(LookupTarget::Latest),
                    OffsetReset::None => {
                        state.position = Some(offset);
                        state.state = FetchState::Halted;
                        state
                            .buffer
                            .push_back(Buffered::Error(Error::OffsetOutOfRange {
                                topic: tp.topic.clone(),
                                partition: tp.partition,
                                offset,
                            }));
                    }
                }
                return Applied::Other;
            }
            Some(code) => {
                self.metadata_refresh |=
                    Self::partition_error(&mut self.rng, state, tp, broker, code, now);
                return Applied::Other;
            }
        }
        // Watermarks are only stored and compared, never computed with; -1 is "unknown",
        // and anything else below 0 is ignored like it.
        if data.high_watermark >= 0 {
            state.high_watermark = data.high_watermark;
        }
        if data.last_stable_offset >= 0 {
            state.last_stable_offset = data.last_stable_offset;
        }
        if data.log_start_offset >= 0 {
            state.log_start_offset = data.log_start_offset;
        }
        let end = match self.config.isolation_level {
            IsolationLevel::ReadCommitted if data.last_stable_offset >= 0 => {
                data.last_stable_offset
            }
            _ => data.high_watermark,
        };
        if self.config.partition_eof && planned.fetch_offset == end && state.eof_offset != Some(end)
        {
            state.eof_offset = Some(end);
            state.buffer.push_back(Buffered::Eof(end));
        }
        let records = data.records.unwrap_or_default();
        let mut next = planned.fetch_offset;
        let mut start = 0usize;
        let mut last_pushed: Option<usize> = None;
        let mut counted = 0usize;
        let mut batches = Batches::new(&records);
        for item in batches.by_ref() {
            let (header, bytes) = match item {
                Ok(found) => found,
                Err(error) => {
                    Self::corrupt(state, tp, broker, next, error.to_string());
                    break;
                }
            };
            // Offsets a broker invents: a log has no negative offsets, and a batch must
            // leave an offset after it to continue from.
            let next_offset = match header.checked_next_offset() {
                Some(next_offset) if header.base_offset >= 0 => next_offset,
                _ => {
                    let reason = format!(
                        "batch at base offset {} with last offset delta {} is outside the offsets a log can have",
                        header.base_offset, header.last_offset_delta
                    );
                    Self::corrupt(state, tp, broker, header.base_offset, reason);
                    break;
                }
            };
            let range = start..start + bytes.len();
            start = range.end;
            if next_offset <= next {
                // Wholly before the fetch offset: nothing in it for us.
                continue;
            }
            // Decoded (and its CRC checked) when the user reaches it; see `Buffered::Raw`.
            next = next_offset;
            let len = range.len();
            let bytes = records.slice(range);
            self.undecoded.push((tp.clone(), bytes.clone()));
            state.buffer.push_back(Buffered::Raw(RawBatch {
                bytes,
                broker,
                response_bytes: len,
            }));
            counted += len;
            last_pushed = Some(state.buffer.len() - 1);
        }
        // Each batch counts its own bytes, released as it is consumed, so the partition is
        // fetched again while the user is still reading what came (prefetching). Bytes
        // before the fetch offset or in a cut-off tail count with the last batch.
        if let Some(Buffered::Raw(last)) = last_pushed.and_then(|i| state.buffer.get_mut(i)) {
            last.response_bytes += records.len().saturating_sub(counted);
            state.buffered_bytes += records.len();
        }
        state.fetch_offset = next;
        if state.state == FetchState::Halted {
            return Applied::Other;
        }
        if next > planned.fetch_offset {
            state.retry.succeed();
            return Applied::Progress;
        }
        if records.is_empty() && end <= planned.fetch_offset {
            state.retry.succeed();
            return Applied::Idle;
        }
        if !records.is_empty() {
            // With KIP-74 (Fetch v3+) a broker returns the first batch whole, so bytes
            // without one batch past the fetch offset are a broken broker (Java's consumer
            // throws "failed to make progress" here).
            warn!(
                %tp,
                broker,
                offset = planned.fetch_offset,
                bytes = records.len(),
                partial = batches.truncated_tail(),
                "fetch returned bytes but no batch past the fetch offset"
            );
        }
        Applied::Stalled
    }

    fn corrupt(
        state: &mut PartitionState,
        tp: &TopicPartition,
        broker: i32,
        offset: i64,
        reason: String,
    ) {
        warn!(%tp, broker, offset, %reason, "corrupt record data; partition stopped until the next seek");
        state.state = FetchState::Halted;
        state
            .buffer
            .push_back(Buffered::Error(Error::CorruptRecord {
                topic: tp.topic.clone(),
                partition: tp.partition,
                offset: Some(offset),
                broker: Some(broker),
                reason,
            }));
    }
}

/// The partition a lookup was planned for, if it still waits for that lookup.
fn current_lookup<'a>(
    partitions: &'a mut IndexMap<TopicPartition, PartitionState>,
    planned: &PlannedLookup,
) -> Option<&'a mut PartitionState> {
    let state = partitions.get_mut(&planned.tp)?;
    let waiting = state.generation == planned.generation
        && matches!(
            state.state,
            FetchState::Lookup {
                in_flight: true,
                ..
            }
        );
    waiting.then_some(state)
}

fn unknown_partition(tp: &TopicPartition) -> Error {
    Error::UnknownPartition {
        topic: tp.topic.clone(),
        partition: tp.partition,
    }
}

fn millis_i32(duration: Duration) -> i32 {
    i32::try_from(duration.as_millis()).unwrap_or(i32::MAX)
}

/// Decodes raw batches from [`Fetcher::take_undecoded`]; those that do not decode are left
/// out (`poll_event` decodes them again and reports the error at their place).
pub fn decode_ahead(
    raw: Vec<(TopicPartition, Bytes)>,
    limits: &DecodeLimits,
) -> Vec<(TopicPartition, Bytes, RecordBatch)> {
    raw.into_iter()
        .filter_map(|(tp, bytes)| {
            let batch = RecordBatch::decode(&bytes, limits).ok()?;
            Some((tp, bytes, batch))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::record_batch::{ControlRecord, ControlRecordKind, RecordBatchBuilder};
    use crate::record::Header;
    use kafka_protocol::messages::fetch_response::FetchableTopicResponse;
    use kafka_protocol::messages::list_offsets_response::{
        ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
    };
    use kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::{BrokerId, MetadataResponse};

    const T0: u128 = 0x70;

    fn tp(topic: &str, partition: i32) -> TopicPartition {
        TopicPartition::new(topic, partition)
    }

    fn topic_id(topic: &str) -> Uuid {
        Uuid::from_u128(T0 + topic.len() as u128)
    }

    /// Metadata where `topic` has partitions led by `leaders[i]` in epoch 5.
    fn metadata(topics: &[(&str, &[i32])]) -> Metadata {
        let brokers = (0..3)
            .map(|id| {
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(id))
                    .with_host(StrBytes::from_static_str("localhost"))
                    .with_port(9092 + id)
            })
            .collect();
        let topics = topics
            .iter()
            .map(|(name, leaders)| {
                let partitions = leaders
                    .iter()
                    .enumerate()
                    .map(|(i, leader)| {
                        MetadataResponsePartition::default()
                            .with_partition_index(i as i32)
                            .with_leader_id(BrokerId(*leader))
                            .with_leader_epoch(5)
                    })
                    .collect();
                MetadataResponseTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_string(name.to_string()))))
                    .with_topic_id(topic_id(name))
                    .with_partitions(partitions)
            })
            .collect();
        let response = MetadataResponse::default()
            .with_brokers(brokers)
            .with_topics(topics);
        let mut md = Metadata::new(Duration::from_secs(300));
        md.handle_response(&response, Instant::now());
        md
    }

    fn config() -> FetcherConfig {
        FetcherConfig::from_config(&Config::new("localhost:9092"))
    }

    fn fetcher(config: FetcherConfig, partitions: &[TopicPartition]) -> Fetcher {
        let mut f = Fetcher::new(config, 1);
        f.assign(partitions);
        for p in partitions {
            f.seek(p, Offset::At(0)).expect("assigned");
        }
        f
    }

    fn batch(base_offset: i64, values: &[&str]) -> Vec<u8> {
        let mut builder = RecordBatchBuilder::new().base_offset(base_offset);
        for (i, v) in values.iter().enumerate() {
            builder
                .append(
                    1_000 + i as i64,
                    Some(Bytes::from(format!("k{i}"))),
                    Some(Bytes::from(v.to_string())),
                    vec![Header::new("h", v.to_string())],
                )
                .expect("appends");
        }
        let mut batch = builder.build();
        batch.partition_leader_epoch = 5;
        batch.encode().expect("encodes").to_vec()
    }

    fn control_batch(base_offset: i64) -> Vec<u8> {
        let mut batch = RecordBatch::transaction_marker(
            ControlRecord::new(ControlRecordKind::Commit, 0),
            9,
            0,
            1_000,
        );
        batch.base_offset = base_offset;
        batch.encode().expect("encodes").to_vec()
    }

    /// A batch whose records were all compacted away: offsets `base..=base + delta`.
    fn empty_batch(base_offset: i64, last_offset_delta: i32) -> Vec<u8> {
        let mut batch = RecordBatchBuilder::new().base_offset(base_offset).build();
        batch.last_offset_delta = last_offset_delta;
        batch.encode().expect("encodes").to_vec()
    }

    fn partition(
        index: i32,
        error: Option<ErrorCode>,
        high_watermark: i64,
        records: Vec<u8>,
    ) -> PartitionData {
        PartitionData::default()
            .with_partition_index(index)
            .with_error_code(error.map_or(0, |e| e.code()))
            .with_high_watermark(high_watermark)
            .with_last_stable_offset(high_watermark)
            .with_log_start_offset(0)
            .with_records(Some(Bytes::from(records)))
    }

    fn ok(index: i32, high_watermark: i64, records: Vec<u8>) -> PartitionData {
        partition(index, None, high_watermark, records)
    }

    /// A v13+ response for `topic`.
    fn response(topic: &str, partitions: Vec<PartitionData>) -> FetchResponse {
        FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
            .with_topic_id(topic_id(topic))
            .with_partitions(partitions)])
    }

    fn drain(f: &mut Fetcher) -> Vec<Result<ConsumerEvent, Error>> {
        let mut out = Vec::new();
        while let Some(event) = f.poll_event() {
            out.push(event);
            assert!(out.len() < 10_000, "poll_event does not end");
        }
        out
    }

    fn record_offsets(events: &[Result<ConsumerEvent, Error>]) -> Vec<(i32, i64)> {
        events
            .iter()
            .filter_map(|e| match e {
                Ok(ConsumerEvent::Record(r)) => Some((r.partition, r.offset)),
                _ => None,
            })
            .collect()
    }

    fn only_plan(f: &mut Fetcher, now: Instant, md: &Metadata) -> FetchPlan {
        let mut plans = f.poll_fetches(now, md);
        assert_eq!(plans.len(), 1, "{plans:?}");
        plans.remove(0)
    }

    #[test]
    fn one_fetch_per_broker_built_for_the_negotiated_version() {
        let now = Instant::now();
        let md = metadata(&[("orders", &[0, 1, 0]), ("audit", &[1])]);
        let parts = [
            tp("orders", 0),
            tp("orders", 1),
            tp("orders", 2),
            tp("audit", 0),
        ];
        let mut f = fetcher(config(), &parts);
        let plans = f.poll_fetches(now, &md);
        assert_eq!(
            plans.iter().map(FetchPlan::broker).collect::<Vec<_>>(),
            vec![0, 1]
        );
        assert!(
            f.poll_fetches(now, &md).is_empty(),
            "one fetch in flight per broker"
        );

        let broker0 = &plans[0];
        let v13 = broker0.request(13).expect("builds");
        assert_eq!(v13.topics.len(), 1);
        assert_eq!(v13.topics[0].topic_id, topic_id("orders"));
        assert_eq!(v13.topics[0].topic.0.as_str(), "");
        let indexes: Vec<i32> = v13.topics[0]
            .partitions
            .iter()
            .map(|p| p.partition)
            .collect();
        assert_eq!(indexes.len(), 2);
        assert!(indexes.contains(&0) && indexes.contains(&2));
        let p = &v13.topics[0].partitions[0];
        assert_eq!(
            (
                p.current_leader_epoch,
                p.fetch_offset,
                p.partition_max_bytes
            ),
            (5, 0, 1 << 20)
        );
        assert_eq!(p.last_fetched_epoch, -1);
        assert_eq!((v13.session_id, v13.session_epoch), (0, -1));
        assert_eq!(
            (v13.min_bytes, v13.max_wait_ms, v13.max_bytes),
            (1, 500, 50 << 20)
        );
        assert_eq!((v13.replica_id.0, v13.isolation_level), (-1, 0));

        let v12 = plans[1].request(12).expect("builds");
        let names: Vec<&str> = v12.topics.iter().map(|t| t.topic.0.as_str()).collect();
        assert_eq!(names.len(), 2);
        assert!(names.contains(&"orders") && names.contains(&"audit"));
        assert!(v12.topics.iter().all(|t| t.topic_id.is_nil()));

        let mut no_ids = metadata(&[]);
        let mut response =
            MetadataResponse::default().with_brokers(vec![MetadataResponseBroker::default()
                .with_node_id(BrokerId(0))
                .with_host(StrBytes::from_static_str("localhost"))
                .with_port(9092)]);
        response.topics.push(
            MetadataResponseTopic::default()
                .with_name(Some(TopicName(StrBytes::from_static_str("old"))))
                .with_partitions(vec![
                    MetadataResponsePartition::default().with_leader_id(BrokerId(0))
                ]),
        );
        no_ids.handle_response(&response, now);
        let mut f = fetcher(config(), &[tp("old", 0)]);
        let plan = only_plan(&mut f, now, &no_ids);
        assert!(plan.request(12).is_ok());
        assert!(matches!(plan.request(13), Err(Error::Protocol { .. })));
    }

    #[test]
    fn skips_records_before_the_position_control_and_compacted_batches_and_a_partial_tail() {
        let now = Instant::now();
        let md = metadata(&[("t", &[0])]);
        let p = tp("t", 0);
        let mut f = fetcher(config(), std::slice::from_ref(&p));
        f.seek(&p, Offset::At(3)).expect("seek");
        let plan = only_plan(&mut f, now, &md);
        let mut records = batch(0, &["a", "b", "c", "d", "e"]);
        records.extend(control_batch(5));
        records.extend(empty_batch(6, 2));
        records.extend(batch(9, &["j", "k"]));
        let tail = batch(11, &["l"]);
        records.extend(&tail[..tail.len() - 3]);
        f.handle_fetch_response(plan.id(), 18, response("t", vec![ok(0, 12, records)]), now);

        let plan = only_plan(&mut f, now, &md);
        assert_eq!(
            plan.partitions().collect::<Vec<_>>(),
            vec![(&p, 11)],
            "pipelined at the partial batch"
        );
        assert_eq!(f.position(&p), Some(3), "nothing consumed yet");
        let events = drain(&mut f);
        assert_eq!(
            record_offsets(&events),
            vec![(0, 3), (0, 4), (0, 9), (0, 10)]
        );
        let Some(Ok(ConsumerEvent::Record(r))) = events.first() else {
            panic!("{events:?}");
        };
        assert_eq!(r.value.as_deref(), Some(&b"d"[..]));
        assert_eq!(r.key.as_deref(), Some(&b"k3"[..]));
        assert_eq!(r.headers, vec![Header::new("h", "d")]);
        assert_eq!(
            (r.timestamp, r.leader_epoch, &*r.topic),
            (1_003, Some(5), "t")
        );
        assert_eq!(f.position(&p), Some(11));

        // Only control and compacted batches: the position still moves past them.
        f.handle_fetch_response(
            plan.id(),
            18,
            response(
                "t",
                vec![ok(
                    0,
                    15,
                    [batch(11, &["l"]), control_batch(12), empty_batch(13, 1)].concat(),
                )],
            ),
            now,
        );
        assert_eq!(record_offsets(&drain(&mut f)), vec![(0, 11)]);
        assert_eq!(f.position(&p), Some(15));
    }

    #[test]
    fn prefetching_is_bounded_per_partition_and_resumes_once_drained() {
        let now = Instant::now();
        let md = metadata(&[("t", &[0, 0])]);
        let mut small = config();
        small.partition_max_bytes = 150;
        let (p0, p1) = (tp("t", 0), tp("t", 1));
        let mut f = fetcher(small, &[p0.clone(), p1.clone()]);
        let plan = only_plan(&mut f, now, &md);
        let big = batch(0, &["x".repeat(200).as_str()]);
        let little = batch(0, &["y"]);
        assert!(big.len() > 150 && little.len() < 150);
        f.handle_fetch_response(
            plan.id(),
            18,
            response("t", vec![ok(0, 10, big), ok(1, 10, little)]),
            now,
        );
        let plan = only_plan(&mut f, now, &md);
        assert_eq!(
            plan.partitions().collect::<Vec<_>>(),
            vec![(&p1, 1)],
            "p0's buffer is full"
        );
        assert!(!f.poll_space_freed());
        let first = f.poll_event();
        assert!(matches!(&first, Some(Ok(ConsumerEvent::Record(r))) if r.partition == 0));
        assert!(f.poll_space_freed(), "p0's only batch is done");
        f.handle_fetch_response(
            plan.id(),
            18,
            response("t", vec![ok(1, 1, Vec::new())]),
            now,
        );
        let plan = only_plan(&mut f, now, &md);
        let mut fetched: Vec<_> = plan.partitions().collect();
        fetched.sort();
        assert_eq!(fetched, vec![(&p0, 1), (&p1, 1)]);
    }

    #[test]
    fn a_partition_is_fetched_again_while_its_last_batches_wait() {
        let now = Instant::now();
        let md = metadata(&[("t", &[0])]);
        let mut small = config();
        let first = batch(0, &["x".repeat(60).as_str()]);
        let second = batch(1, &["y".repeat(60).as_str()]);
        small.partition_max_bytes = (first.len() + second.len() - 1) as i32;
        let p = tp("t", 0);
        let mut f = fetcher(small, std::slice::from_ref(&p));
        let plan = only_plan(&mut f, now, &md);
        let records = [first, second].concat();
        f.handle_fetch_response(plan.id(), 18, response("t", vec![ok(0, 2, records)]), now);
        assert!(
            f.poll_fetches(now, &md).is_empty(),
            "both batches fill the buffer"
        );
        assert!(matches!(f.poll_event(), Some(Ok(ConsumerEvent::Record(r))) if r.offset == 0));
        assert!(f.poll_space_freed(), "the first batch's bytes are released");
        assert_eq!(
            only_plan(&mut f, now, &md).partitions().collect::<Vec<_>>(),
            vec![(&p, 2)],
            "fetched again before the second batch is read"
        );
        assert!(matches!(f.poll_event(), Some(Ok(ConsumerEvent::Record(r))) if r.offset == 1));
    }

    #[test]
    fn the_broker_bound_counts_only_unpaused_partitions() {
        let now = Instant::now();
        let md = metadata(&[("t", &[0, 0])]);
        let mut small = config();
        small.max_bytes = 100;
        let (p0, p1) = (tp("t", 0), tp("t", 1));
        let mut f = fetcher(small, &[p0.clone(), p1.clone()]);
        let plan = only_plan(&mut f, now, &md);
        f.handle_fetch_response(
            plan.id(),
            18,
            response("t", vec![ok(0, 10, batch(0, &["x".repeat(120).as_str()]))]),
            now,
        );
        assert!(
            f.poll_fetches(now, &md).is_empty(),
            "broker 0's buffers are full"
        );
        f.pause(std::slice::from_ref(&p0)).expect("pause");
        let plan = only_plan(&mut f, now, &md);
        assert_eq!(plan.partitions().collect::<Vec<_>>(), vec![(&p1, 0)]);
    }

    #[test]
    fn answers_from_before_a_seek_are_ignored() {
        let now = Instant::now();
        let md = metadata(&[("t", &[0])]);
        let p = tp("t", 0);
        let mut f = fetcher(config(), std::slice::from_ref(&p));
        let old = only_plan(&mut f, now, &md);
        f.seek(&p, Offset::At(7)).expect("seek");
        assert!(
            f.poll_fetches(now, &md).is_empty(),
            "broker 0 still has the old fetch"
        );
        f.handle_fetch_response(
            old.id(),
            18,
            response("t", vec![ok(0, 10, batch(0, &["a", "b"]))]),
            now,
        );
        assert!(drain(&mut f).is_empty());
        let plan = only_plan(&mut f, now, &md);
        assert_eq!(plan.partitions().collect::<Vec<_>>(), vec![(&p, 7)]);
        // And an out-of-range answer to the old position does not reset the new one.
        f.seek(&p, Offset::At(8)).expect("seek");
        f.handle_fetch_response(
            plan.id(),
            18,
            response(
                "t",
                vec![partition(
                    0,
                    Some(ErrorCode::OffsetOutOfRange),
                    -1,
                    Vec::new(),
                )],
            ),
            now,
        );
        assert_eq!(f.position(&p), Some(8));
        assert!(drain(&mut f).is_empty());
    }

    #[test]
    fn paused_partitions_are_not_fetched_and_keep_their_records() {
        let now = Instant::now();
        let md = metadata(&[("t", &[0, 0])]);
        let (p0, p1) = (tp("t", 0), tp("t", 1));
        let mut f = fetcher(config(), &[p0.clone(), p1.clone()]);
        let plan = only_plan(&mut f, now, &md);
        f.handle_fetch_response(
            plan.id(),
            18,
            response(
                "t",
                vec![
                    ok(0, 2, batch(0, &["a", "b"])),
                    ok(1, 2, batch(0, &["c", "d"])),
                ],
            ),
            now,
        );
        f.pause(std::slice::from_ref(&p1)).expect("pause");
        assert_eq!(f.paused(), vec![p1.clone()]);
        assert_eq!(record_offsets(&drain(&mut f)), vec![(0, 0), (0, 1)]);
        let plan = only_plan(&mut f, now, &md);
        assert_eq!(plan.partitions().collect::<Vec<_>>(), vec![(&p0, 2)]);
        f.resume(std::slice::from_ref(&p1)).expect("resume");
        assert_eq!(record_offsets(&drain(&mut f)), vec![(1, 0), (1, 1)]);
        assert!(f.pause(&[tp("t", 5)]).is_err());
        assert_eq!(f.paused(), Vec::<TopicPartition>::new());
    }

    #[test]
    fn out_of_range_resets_by_policy() {
        let now = Instant::now();
        let md = metadata(&[("t", &[0])]);
        let p = tp("t", 0);
        for (policy, lookup) in [
            (OffsetReset::Earliest, Some(EARLIEST_TIMESTAMP)),
            (OffsetReset::Latest, Some(LATEST_TIMESTAMP)),
            (OffsetReset::None, None),
        ] {
            let mut c = config();
            c.auto_offset_reset = policy;
            let mut f = fetcher(c, std::slice::from_ref(&p));
            f.seek(&p, Offset::At(3)).expect("seek");
            let plan = only_plan(&mut f, now, &md);
            f.handle_fetch_response(
                plan.id(),
                18,
                response(
                    "t",
                    vec![partition(
                        0,
                        Some(ErrorCode::OffsetOutOfRange),
                        -1,
                        Vec::new(),
                    )],
                ),
                now,
            );
            assert!(f.poll_fetches(now, &md).is_empty());
            let lookups = f.poll_list_offsets(now, &md);
            match lookup {
                Some(timestamp) => {
                    assert_eq!(lookups.len(), 1);
                    let request = lookups[0].request(9);
                    assert_eq!(request.replica_id.0, -1);
                    assert_eq!(request.topics[0].partitions[0].timestamp, timestamp);
                    assert_eq!(request.topics[0].partitions[0].current_leader_epoch, 5);
                    assert_eq!(f.position(&p), None);
                    let answer = ListOffsetsResponse::default().with_topics(vec![
                        ListOffsetsTopicResponse::default()
                            .with_name(TopicName(StrBytes::from_static_str("t")))
                            .with_partitions(vec![
                                ListOffsetsPartitionResponse::default().with_offset(9)
                            ]),
                    ]);
                    f.handle_list_offsets_response(lookups[0].id(), &answer, now);
                    assert_eq!(f.position(&p), Some(9));
                    assert_eq!(
                        only_plan(&mut f, now, &md).partitions().collect::<Vec<_>>(),
                        vec![(&p, 9)]
                    );
                }
                None => {
                    assert!(lookups.is_empty());
                    let events = drain(&mut f);
                    assert!(
                        matches!(
                            events.as_slice(),
                            [Err(Error::OffsetOutOfRange { offset: 3, .. })]
                        ),
                        "{events:?}"
                    );
                    assert!(f.poll_fetches(now, &md).is_empty(), "stopped until a seek");
                    f.seek(&p, Offset::At(0)).expect("seek");
                    assert_eq!(only_plan(&mut f, now, &md).partitions().count(), 1);
                }
            }
        }
    }

    #[test]
    fn without_a_position_none_is_an_error_until_a_seek() {
        let now = Instant::now();
        let md = metadata(&[("t", &[0])]);
        let mut c = config();
        c.auto_offset_reset = OffsetReset::None;
        let p = tp("t", 0);
        let mut f = Fetcher::new(c.clone(), 1);
        f.assign(std::slice::from_ref(&p));
        assert!(f.poll_list_offsets(now, &md).is_empty());
        assert!(matches!(
            drain(&mut f).as_slice(),
            [Err(Error::OffsetOutOfRange { offset: -1, .. })]
        ));
        // A seek right after assign pre-empts the error.
        let mut f = Fetcher::new(c, 1);
        f.assign(std::slice::from_ref(&p));
        f.seek(&p, Offset::Beginning).expect("seek");
        assert!(drain(&mut f).is_empty());
        assert_eq!(f.poll_list_offsets(now, &md).len(), 1);
    }

    #[test]
    fn leadership_errors_refresh_metadata_and_back_off() {
        let now = Instant::now();
        let md = metadata(&[("t", &[0])]);
        let p = tp("t", 0);
        let mut f = fetcher(config(), std::slice::from_ref(&p));
        for code in [
            ErrorCode::NotLeaderOrFollower,
            ErrorCode::FencedLeaderEpoch,
            ErrorCode::UnknownLeaderEpoch,
        ] {
            let plan = only_plan(&mut f, now, &md);
            f.handle_fetch_response(
                plan.id(),
                18,
                response("t", vec![partition(0, Some(code), -1, Vec::new())]),
                now,
            );
            assert_eq!(
                f.poll_metadata_refresh(),
                code != ErrorCode::UnknownLeaderEpoch,
                "{code:?}"
            );
            assert!(f.poll_fetches(now, &md).is_empty(), "backing off");
            let at = f.poll_timeout(now).expect("a backoff deadline");
            assert!(at > now && at <= now + Duration::from_millis(1200));
            let plan = only_plan(&mut f, at, &md);
            assert_eq!(
                plan.partitions().collect::<Vec<_>>(),
                vec![(&p, 0)],
                "the same offset again"
            );
            f.handle_fetch_response(plan.id(), 18, response("t", vec![ok(0, 0, Vec::new())]), at);
        }
        // A failed request backs off the broker.
        let plan = only_plan(&mut f, now, &md);
        f.handle_fetch_failure(
            plan.id(),
            &Error::Disconnected {
                address: "b0".into(),
            },
            now,
        );
        assert!(f.poll_metadata_refresh());
        assert!(f.poll_fetches(now, &md).is_empty());
        let at = f.poll_timeout(now).expect("broker backoff");
        assert_eq!(
            only_plan(&mut f, at, &md).partitions().collect::<Vec<_>>(),
            vec![(&p, 0)]
        );
    }

    #[test]
    fn unknown_leaders_ask_for_metadata() {
        let now = Instant::now();
        let md = metadata(&[("t", &[0])]);
        let mut f = fetcher(config(), &[tp("missing", 0), tp("t", 3)]);
        assert!(f.poll_fetches(now, &md).is_empty());
        assert!(f.poll_metadata_refresh());
        assert!(!f.poll_metadata_refresh(), "once per request");
        assert_eq!(f.topics(), vec!["missing".to_string(), "t".to_string()]);
    }

    #[test]
    fn partition_eof_is_queued_once_per_end_offset_after_the_records() {
        let now = Instant::now();
        let md = metadata(&[("t", &[0])]);
        let mut c = config();
        c.partition_eof = true;
        let p = tp("t", 0);
        let mut f = fetcher(c, std::slice::from_ref(&p));
        let plan = only_plan(&mut f, now, &md);
        f.handle_fetch_response(
            plan.id(),
            18,
            response("t", vec![ok(0, 2, batch(0, &["a", "b"]))]),
            now,
        );
        for _ in 0..2 {
            let plan = only_plan(&mut f, now, &md);
            f.handle_fetch_response(
                plan.id(),
                18,
                response("t", vec![ok(0, 2, Vec::new())]),
                now,
            );
        }
        let events = drain(&mut f);
        assert_eq!(events.len(), 3, "{events:?}");
        assert!(matches!(
            &events[2],
            Ok(ConsumerEvent::PartitionEof {
                partition,
                offset: 2,
            }) if *partition == tp("t", 0)
        ));
        let plan = only_plan(&mut f, now, &md);
        f.handle_fetch_response(
            plan.id(),
            18,
            response("t", vec![ok(0, 3, batch(2, &["c"]))]),
            now,
        );
        let plan = only_plan(&mut f, now, &md);
        f.handle_fetch_response(
            plan.id(),
            18,
            response("t", vec![ok(0, 3, Vec::new())]),
            now,
        );
        let events = drain(&mut f);
        assert_eq!(record_offsets(&events), vec![(0, 2)]);
        assert!(matches!(
            &events[1],
            Ok(ConsumerEvent::PartitionEof { offset: 3, .. })
        ));
    }

    #[test]
    fn read_committed_is_sent_where_the_version_has_it() {
        let now = Instant::now();
        let md = metadata(&[("t", &[0])]);
        let p = tp("t", 0);
        let mut c = config();
        c.isolation_level = IsolationLevel::ReadCommitted;
        let mut f = Fetcher::new(c, 1);
        f.assign(std::slice::from_ref(&p));
        let lookups = f.poll_list_offsets(now, &md);
        assert_eq!(lookups[0].request(1).isolation_level, 0);
        assert_eq!(lookups[0].request(2).isolation_level, 1);
        assert_eq!(lookups[0].request(10).timeout_ms, 30_000);
        f.seek(&p, Offset::At(0)).expect("seek");
        let plan = only_plan(&mut f, now, &md);
        assert_eq!(plan.request(4).expect("builds").isolation_level, 1);
    }

    #[test]
    fn a_timestamp_without_a_record_looks_up_the_end() {
        let now = Instant::now();
        let md = metadata(&[("t", &[0])]);
        let p = tp("t", 0);
        let mut f = fetcher(config(), std::slice::from_ref(&p));
        f.seek(&p, Offset::Timestamp(5_000)).expect("seek");
        let lookups = f.poll_list_offsets(now, &md);
        assert_eq!(
            lookups[0].request(9).topics[0].partitions[0].timestamp,
            5_000
        );
        let none =
            ListOffsetsResponse::default().with_topics(vec![ListOffsetsTopicResponse::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![ListOffsetsPartitionResponse::default()
                    .with_offset(-1)
                    .with_timestamp(-1)])]);
        f.handle_list_offsets_response(lookups[0].id(), &none, now);
        let lookups = f.poll_list_offsets(now, &md);
        assert_eq!(
            lookups[0].request(9).topics[0].partitions[0].timestamp,
            LATEST_TIMESTAMP
        );
    }

    #[test]
    fn a_corrupt_batch_is_an_error_after_the_good_records_and_stops_the_partition() {
        let now = Instant::now();
        let md = metadata(&[("t", &[0])]);
        let p = tp("t", 0);
        let mut f = fetcher(config(), std::slice::from_ref(&p));
        let plan = only_plan(&mut f, now, &md);
        let mut bad = batch(2, &["c"]);
        let last = bad.len() - 1;
        bad[last] ^= 0x55;
        let records = [batch(0, &["a", "b"]), bad, batch(3, &["d"])].concat();
        f.handle_fetch_response(plan.id(), 18, response("t", vec![ok(0, 4, records)]), now);
        let events = drain(&mut f);
        assert_eq!(record_offsets(&events), vec![(0, 0), (0, 1)]);
        assert!(
            matches!(
                events.last(),
                Some(Err(Error::CorruptRecord { partition: 0, .. }))
            ),
            "{events:?}"
        );
        assert_eq!(events.len(), 3);
        assert_eq!(f.position(&p), Some(2));
        assert!(f.poll_fetches(now, &md).is_empty());
        f.seek(&p, Offset::At(3)).expect("seek");
        assert_eq!(
            only_plan(&mut f, now, &md).partitions().collect::<Vec<_>>(),
            vec![(&p, 3)]
        );
    }

    #[test]
    fn batches_decoded_ahead_replace_their_raw_form_and_a_corrupt_one_stays_in_place() {
        let now = Instant::now();
        let md = metadata(&[("t", &[0])]);
        let p = tp("t", 0);
        let mut f = fetcher(config(), std::slice::from_ref(&p));
        let plan = only_plan(&mut f, now, &md);
        let mut bad = batch(2, &["c"]);
        let last = bad.len() - 1;
        bad[last] ^= 0x55;
        let records = [batch(0, &["a", "b"]), bad, batch(3, &["d"])].concat();
        f.handle_fetch_response(plan.id(), 18, response("t", vec![ok(0, 4, records)]), now);
        let undecoded = f.take_undecoded();
        assert_eq!(undecoded.len(), 3);
        assert!(f.take_undecoded().is_empty(), "taken once");
        let decoded = decode_ahead(undecoded, &f.decode_limits());
        assert_eq!(decoded.len(), 2, "the corrupt batch is left out");
        // The user already took the first record (decoding batch 0 itself): handing the
        // decoded batches back must not repeat it.
        let first = f.poll_event();
        assert!(matches!(&first, Some(Ok(ConsumerEvent::Record(r))) if r.offset == 0));
        f.handle_decoded(decoded);
        let events = drain(&mut f);
        assert_eq!(record_offsets(&events), vec![(0, 1)]);
        assert!(matches!(
            events.last(),
            Some(Err(Error::CorruptRecord { partition: 0, .. }))
        ));
        // Batches decoded for a buffer a seek emptied are dropped.
        f.seek(&p, Offset::At(3)).expect("seek");
        let plan = only_plan(&mut f, now, &md);
        f.handle_fetch_response(
            plan.id(),
            18,
            response("t", vec![ok(0, 4, batch(3, &["d"]))]),
            now,
        );
        let decoded = decode_ahead(f.take_undecoded(), &f.decode_limits());
        f.seek(&p, Offset::At(3)).expect("seek again");
        f.handle_decoded(decoded);
        assert!(drain(&mut f).is_empty());
    }

    /// `batch` with its base offset rewritten (outside the CRC, as a broker may).
    fn at_base_offset(mut batch: Vec<u8>, base_offset: i64) -> Vec<u8> {
        batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
        batch
    }

    /// The one corrupt-data error among `events`: (offset, broker).
    fn corrupt_at(events: &[Result<ConsumerEvent, Error>]) -> (Option<i64>, Option<i32>) {
        let found: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                Err(Error::CorruptRecord { offset, broker, .. }) => Some((*offset, *broker)),
                _ => None,
            })
            .collect();
        assert_eq!(found.len(), 1, "{events:?}");
        found[0]
    }

    #[test]
    fn a_batch_at_the_end_of_int64_is_corrupt_data_not_a_panic_or_a_loop() {
        let now = Instant::now();
        let md = metadata(&[("t", &[0])]);
        let p = tp("t", 0);
        let mut f = fetcher(config(), std::slice::from_ref(&p));
        let plan = only_plan(&mut f, now, &md);
        let records = [batch(0, &["a"]), at_base_offset(batch(0, &["b"]), i64::MAX)].concat();
        f.handle_fetch_response(plan.id(), 18, response("t", vec![ok(0, 5, records)]), now);
        let events = drain(&mut f);
        assert_eq!(record_offsets(&events), vec![(0, 0)]);
        assert_eq!(corrupt_at(&events), (Some(i64::MAX), Some(0)));
        assert_eq!(f.position(&p), Some(1), "stays before the bad batch");
        assert!(f.poll_fetches(now, &md).is_empty(), "stopped until a seek");
        // The last offset a log can hold is fine: the position ends at i64::MAX.
        f.seek(&p, Offset::At(i64::MAX - 1)).expect("seek");
        let plan = only_plan(&mut f, now, &md);
        let last = at_base_offset(batch(0, &["z"]), i64::MAX - 1);
        f.handle_fetch_response(
            plan.id(),
            18,
            response("t", vec![ok(0, i64::MAX, last)]),
            now,
        );
        let events = drain(&mut f);
        assert_eq!(record_offsets(&events), vec![(0, i64::MAX - 1)]);
        assert_eq!(f.position(&p), Some(i64::MAX));
        assert_eq!(
            only_plan(&mut f, now, &md).partitions().collect::<Vec<_>>(),
            vec![(&p, i64::MAX)]
        );
    }

    #[test]
    fn a_batch_at_a_negative_offset_is_corrupt_data() {
        let now = Instant::now();
        let md = metadata(&[("t", &[0])]);
        let p = tp("t", 0);
        let mut f = fetcher(config(), std::slice::from_ref(&p));
        f.seek(&p, Offset::At(7)).expect("seek");
        let plan = only_plan(&mut f, now, &md);
        let records = at_base_offset(batch(0, &["a", "b"]), i64::MIN);
        f.handle_fetch_response(plan.id(), 18, response("t", vec![ok(0, 9, records)]), now);
        let events = drain(&mut f);
        assert_eq!(corrupt_at(&events), (Some(i64::MIN), Some(0)));
        assert!(events[0]
            .as_ref()
            .err()
            .is_some_and(|e| e.to_string().contains("from broker 0")));
        assert_eq!(f.position(&p), Some(7));
        assert!(f.poll_fetches(now, &md).is_empty());
        assert_eq!(f.poll_timeout(now), None, "nothing to retry");
    }

    /// Fetches `p` (led by broker 0) over and over, answering each with `answer`, for
    /// `span` of virtual time; returns how many fetches went out.
    fn fetches_within(
        f: &mut Fetcher,
        md: &Metadata,
        start: Instant,
        span: Duration,
        answer: impl Fn() -> FetchResponse,
    ) -> usize {
        let mut now = start;
        let mut sent = 0;
        while now < start + span {
            for plan in f.poll_fetches(now, md) {
                sent += 1;
                assert!(sent < 10_000, "a tight loop");
                f.handle_fetch_response(plan.id(), 18, answer(), now);
            }
            let _ = drain(f);
            match f.poll_timeout(now) {
                Some(at) => now = at,
                None => now += Duration::from_millis(1),
            }
        }
        sent
    }

    #[test]
    fn answers_that_claim_data_but_bring_none_back_the_partition_off() {
        let start = Instant::now();
        let md = metadata(&[("t", &[0])]);
        let p = tp("t", 0);
        // A high watermark far ahead, and nothing.
        let mut f = fetcher(config(), std::slice::from_ref(&p));
        let claims = || response("t", vec![ok(0, i64::MAX, Vec::new())]);
        let sent = fetches_within(&mut f, &md, start, Duration::from_secs(10), claims);
        assert!((5..=25).contains(&sent), "{sent} fetches in 10 s");
        // Batches wholly below the fetch offset, again and again.
        let mut f = fetcher(config(), std::slice::from_ref(&p));
        f.seek(&p, Offset::At(50)).expect("seek");
        let stale = || response("t", vec![ok(0, 60, batch(3, &["old", "older"]))]);
        let sent = fetches_within(&mut f, &md, start, Duration::from_secs(10), stale);
        assert!((5..=25).contains(&sent), "{sent} fetches in 10 s");
        assert_eq!(f.position(&p), Some(50));
        // An answer at the end of the log is the long poll's business: no backoff.
        let mut f = fetcher(config(), std::slice::from_ref(&p));
        let plan = only_plan(&mut f, start, &md);
        f.handle_fetch_response(
            plan.id(),
            18,
            response("t", vec![ok(0, 0, Vec::new())]),
            start,
        );
        assert_eq!(only_plan(&mut f, start, &md).partitions().count(), 1);
    }

    #[test]
    fn a_partition_left_out_of_an_answer_that_brought_data_is_fetched_again_at_once() {
        let now = Instant::now();
        let md = metadata(&[("t", &[0, 0])]);
        let (p0, p1) = (tp("t", 0), tp("t", 1));
        let mut f = fetcher(config(), &[p0.clone(), p1.clone()]);
        let plan = only_plan(&mut f, now, &md);
        // p1 has data but `fetch.max.bytes` was used up by p0.
        f.handle_fetch_response(
            plan.id(),
            18,
            response("t", vec![ok(0, 1, batch(0, &["a"])), ok(1, 9, Vec::new())]),
            now,
        );
        let plan = only_plan(&mut f, now, &md);
        let mut fetched: Vec<_> = plan.partitions().collect();
        fetched.sort();
        assert_eq!(fetched, vec![(&p0, 1), (&p1, 0)]);
    }

    #[test]
    fn a_looked_up_offset_below_minus_one_is_corrupt_data() {
        let now = Instant::now();
        let md = metadata(&[("t", &[0])]);
        let p = tp("t", 0);
        let mut f = Fetcher::new(config(), 1);
        f.assign(std::slice::from_ref(&p));
        f.seek(&p, Offset::Beginning).expect("seek");
        let lookups = f.poll_list_offsets(now, &md);
        let answer =
            ListOffsetsResponse::default().with_topics(vec![ListOffsetsTopicResponse::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![
                    ListOffsetsPartitionResponse::default().with_offset(i64::MIN)
                ])]);
        f.handle_list_offsets_response(lookups[0].id(), &answer, now);
        assert_eq!(corrupt_at(&drain(&mut f)), (Some(i64::MIN), Some(0)));
        assert!(
            f.poll_list_offsets(now, &md).is_empty(),
            "stopped until a seek"
        );
        assert!(f.poll_fetches(now, &md).is_empty());
        f.seek(&p, Offset::Beginning).expect("seek");
        assert_eq!(f.poll_list_offsets(now, &md).len(), 1);
    }

    /// The outage errors among `events`.
    fn outages(events: &[Result<ConsumerEvent, Error>]) -> Vec<&Error> {
        events
            .iter()
            .filter_map(|e| match e {
                Err(e @ (Error::BrokerUnreachable { .. } | Error::AllBrokersDown { .. })) => {
                    Some(e)
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn failed_fetches_back_off_and_are_reported_once_per_episode() {
        let start = Instant::now();
        let md = metadata(&[("t", &[0])]);
        let p = tp("t", 0);
        let mut f = fetcher(config(), std::slice::from_ref(&p));
        let lost = Error::Disconnected {
            address: "localhost:9092".into(),
        };
        let mut now = start;
        let mut sent = Vec::new();
        let mut reported = Vec::new();
        while now < start + Duration::from_secs(10) {
            for plan in f.poll_fetches(now, &md) {
                sent.push(now);
                f.handle_fetch_failure(plan.id(), &lost, now);
            }
            for event in drain(&mut f) {
                reported.push((now, event));
            }
            now = f.poll_timeout(now).expect("a backoff deadline");
        }
        // reconnect.backoff.ms (50 ms) doubling to reconnect.backoff.max.ms (1 s), jittered.
        let first_wait = sent[1] - sent[0];
        assert!(
            first_wait >= Duration::from_millis(40) && first_wait <= Duration::from_millis(60),
            "{first_wait:?}"
        );
        assert!((10..=20).contains(&sent.len()), "{} fetches", sent.len());
        assert_eq!(reported.len(), 1, "{reported:?}");
        let (at, event) = &reported[0];
        assert!(*at >= start + Duration::from_secs(1) && *at <= start + Duration::from_secs(3));
        match event {
            Err(
                error @ Error::BrokerUnreachable {
                    broker: 0,
                    failing_for,
                    cause,
                },
            ) => {
                assert!(*failing_for >= Duration::from_secs(1));
                assert!(matches!(**cause, Error::Disconnected { .. }));
                assert!(error.is_retriable() && !error.is_fatal());
            }
            other => panic!("{other:?}"),
        }
        // An answer ends the episode; one more failure is not news, a long run again is.
        let plan = only_plan(&mut f, now, &md);
        f.handle_fetch_response(
            plan.id(),
            18,
            response("t", vec![ok(0, 0, Vec::new())]),
            now,
        );
        let plan = only_plan(&mut f, now, &md);
        f.handle_fetch_failure(plan.id(), &lost, now);
        assert!(drain(&mut f).is_empty());
        let again = now + Duration::from_secs(5);
        while now < again {
            now = f.poll_timeout(now).expect("a backoff deadline");
            for plan in f.poll_fetches(now, &md) {
                f.handle_fetch_failure(plan.id(), &lost, now);
            }
        }
        assert_eq!(outages(&drain(&mut f)).len(), 1, "a second episode");
    }

    #[test]
    fn a_request_that_timed_out_is_an_outage_at_once_and_a_pause_starts_afresh() {
        let start = Instant::now();
        let md = metadata(&[("t", &[0])]);
        let p = tp("t", 0);
        let mut f = fetcher(config(), std::slice::from_ref(&p));
        // Never answered: it fails at request.timeout.ms, 30 s after it was sent.
        let plan = only_plan(&mut f, start, &md);
        let timeout = Error::RequestTimeout(Duration::from_secs(30));
        let failed_at = start + Duration::from_secs(30);
        f.handle_fetch_failure(plan.id(), &timeout, failed_at);
        let events = drain(&mut f);
        assert!(
            matches!(outages(&events)[..], [Error::BrokerUnreachable { broker: 0, failing_for, .. }] if *failing_for == Duration::from_secs(30)),
            "{events:?}"
        );
        // Nothing asked of the broker for an hour: its next failure starts a new episode.
        f.pause(std::slice::from_ref(&p)).expect("pause");
        let later = failed_at + Duration::from_secs(3600);
        f.resume(std::slice::from_ref(&p)).expect("resume");
        let plan = only_plan(&mut f, later, &md);
        f.handle_fetch_failure(
            plan.id(),
            &Error::Disconnected {
                address: "b0".into(),
            },
            later,
        );
        assert!(drain(&mut f).is_empty());
    }

    #[test]
    fn failed_lookups_back_off_the_broker_and_count_towards_an_outage() {
        let start = Instant::now();
        let md = metadata(&[("t", &[0])]);
        let p = tp("t", 0);
        let mut f = Fetcher::new(config(), 1);
        f.assign(std::slice::from_ref(&p));
        let lost = Error::Disconnected {
            address: "b0".into(),
        };
        let mut now = start;
        let mut sent = 0;
        while now < start + Duration::from_secs(5) {
            for plan in f.poll_list_offsets(now, &md) {
                sent += 1;
                f.handle_list_offsets_failure(plan.id(), &lost, now);
            }
            now = f.poll_timeout(now).expect("a backoff deadline");
        }
        assert!((4..=15).contains(&sent), "{sent} lookups");
        let events = drain(&mut f);
        assert!(
            matches!(
                outages(&events)[..],
                [Error::BrokerUnreachable { broker: 0, .. }]
            ),
            "{events:?}"
        );
    }

    #[test]
    fn metadata_failures_are_an_outage_only_while_a_leader_is_missing() {
        let start = Instant::now();
        let md = metadata(&[("t", &[0])]);
        let lost = Error::Disconnected {
            address: "bootstrap:9092".into(),
        };
        let later = start + Duration::from_secs(2);
        // Every leader known: fetch failures tell which broker fails.
        let mut f = fetcher(config(), &[tp("t", 0)]);
        f.handle_metadata_failure(&lost, start, later, &md);
        assert!(drain(&mut f).is_empty());
        // A partition without a leader cannot be fetched until a refresh succeeds.
        let mut f = fetcher(config(), &[tp("t", 0), tp("unknown", 0)]);
        f.handle_metadata_failure(&lost, start, start, &md);
        assert!(drain(&mut f).is_empty(), "not for long yet");
        f.handle_metadata_failure(&lost, later, later, &md);
        let events = drain(&mut f);
        match outages(&events)[..] {
            [Error::AllBrokersDown { failing_for, cause }] => {
                assert_eq!(*failing_for, Duration::from_secs(2));
                assert_eq!(cause.to_string(), "connection to bootstrap:9092 lost");
            }
            _ => panic!("{events:?}"),
        }
        f.handle_metadata_failure(&lost, later, later + Duration::from_secs(1), &md);
        assert!(drain(&mut f).is_empty(), "once per episode");
        // An answer from any broker ends it.
        f.handle_metadata_response(later + Duration::from_secs(2));
        let again = later + Duration::from_secs(3);
        f.handle_metadata_failure(&lost, again, again, &md);
        assert!(drain(&mut f).is_empty());
    }

    #[test]
    fn reassigning_keeps_the_state_of_partitions_that_stay() {
        let p0 = tp("t", 0);
        let mut f = fetcher(config(), std::slice::from_ref(&p0));
        f.seek(&p0, Offset::At(42)).expect("seek");
        f.assign(&[tp("t", 1), p0.clone(), p0.clone()]);
        assert_eq!(f.assignment(), vec![tp("t", 1), p0.clone()]);
        assert_eq!(f.position(&p0), Some(42));
        assert_eq!(f.position(&tp("t", 1)), None);
        f.assign(&[]);
        assert!(f.assignment().is_empty());
        assert!(matches!(
            f.seek(&p0, Offset::At(1)),
            Err(Error::UnknownPartition { .. })
        ));
        assert!(matches!(
            f.seek(&p0, Offset::At(-5)),
            Err(Error::InvalidArgument(_))
        ));
    }
}
