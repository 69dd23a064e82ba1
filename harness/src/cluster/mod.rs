//! Pure broker state: brokers, topics, partitions and their logs, the requests waiting on
//! them, and the controller's operations. No IO, no clock, no RNG: every mutation takes what
//! it needs (time, ids) as arguments or derives it from [`ClusterConfig::seed`], so the same
//! calls give the same state every run.
//!
//! | module | what |
//! |---|---|
//! | [`controller`] | topics created and deleted, partitions added, leaders moved, brokers stopped and started |
//! | [`coordinator`] | where coordinators live: internal topics, partition of a key, moves, loading |
//! | [`purgatory`] | requests that wait: by key, by deadline, bounded |
//! | [`clock`] | cluster time ([`Time`]): the state's only notion of time, handed in |
//! | [`topic`] | a topic and Kafka's topic-name rules |
//! | [`partition`] | replicas, ISR, leader, leader epoch, and leader election |
//! | [`partition_log`] | the stored batches, offsets, reads, timestamp lookups; LSO, markers, aborted index |
//! | [`leader_epochs`] | which epoch began at which offset (KIP-101) |
//! | [`log_validator`] | what a broker checks before it appends |
//! | [`offsets`] | committed offsets per group and partition; transactional offsets pending |
//! | [`producer_state`] | producers per partition: epochs, last five batches, open transactions |
//! | [`record_scan`] | record offsets and timestamps of uncompressed batches |
//! | [`topic_config`] | topic configs: defaults, types, validation |
//! | [`transactions`] | the transaction coordinator: ids, producer epochs, transaction states |
//! | [`error`] | an error code with Kafka's message |
//! | [`groups`] | the group coordinator: groups, members, rebalances, sessions |
//!
//! The coordinators live on the leaders of internal partitions ([`coordinator`]), each with
//! a state of its own inside [`ClusterState`]: [`groups`] (consumer groups: membership,
//! rebalances, sessions; their offsets in [`offsets`]) and [`transactions`] (transactional
//! ids, producer epochs, transaction states; its work on the logs, markers and timeouts, in
//! `transactions_markers.rs`). They are driven by requests and by
//! [`ClusterState::handle_timeout`] (session, rebalance and transaction timeouts, markers),
//! and their waiting requests wait in the one purgatory, handed their outcome
//! ([`Resolution::Group`]) or woken by `WaitKey::TransactionalId`.

use std::collections::{BTreeMap, HashMap};

use franzy::proto::ErrorCode;
use uuid::Uuid;

use crate::kafka_version::ApiVersionCaps;

pub mod broker_config;
pub mod clock;
pub mod controller;
pub mod coordinator;
pub mod error;
pub mod groups;
pub mod leader_epochs;
pub mod log_validator;
pub mod offsets;
pub mod partition;
pub mod partition_log;
pub mod plant;
pub mod producer_state;
pub mod purgatory;
pub mod record_scan;
pub mod request;
#[cfg(test)]
pub(crate) mod test_batches;
pub mod topic;
pub mod topic_config;
pub mod transactions;
mod transactions_markers;

pub use clock::Time;
pub use controller::{CreatedTopic, NewTopic};
pub use coordinator::{CoordinatorConfig, CoordinatorType};
pub use error::ClusterError;
pub use groups::{GroupConfig, GroupCoordinator};
pub use log_validator::{AppendLimits, InflateBudget, PrevalidatedBatch};
pub use offsets::{OffsetAndMetadata, OffsetLimits, OffsetStore, PartitionOffset};
pub use partition::Partition;
pub use partition_log::{
    AbortedTransaction, AppendInfo, LogRead, PartitionLog, StoredBatch, TimestampOffset,
    TransactionMarker,
};
pub use plant::PlantedBug;
pub use producer_state::{ProducerEntry, ProducerStates};
pub use purgatory::{
    Purgatory, Ready, Resolution, Wait, WaitKey, WaitLimits, WaitStats, WaiterId, Wake,
};
pub use request::{Parked, RequestContext};
pub use topic::Topic;
pub use transactions::{TransactionConfig, TransactionState, Transactions};

/// The first producer id InitProducerId hands out; the next ones count up from it, cluster
/// wide, in the order requests arrive. (Kafka hands out blocks of 1000 per broker starting at
/// 0; one deterministic counter keeps ids unique across brokers and restarts, and starting
/// above 0 keeps a real id apart from zeroed fields.)
pub const FIRST_PRODUCER_ID: i64 = 1000;

/// Settings fixed when the cluster is built.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Broker ids, in order (0, 1, 2, ... by default).
    pub broker_ids: Vec<i32>,
    /// The cluster id reported by Metadata and DescribeCluster.
    pub cluster_id: String,
    /// Create unknown topics when a Metadata request asks for them and allows it (Kafka's
    /// `auto.create.topics.enable`). Produce never creates topics, as in Kafka.
    pub auto_create_topics: bool,
    /// Partitions of an auto-created topic, and of CreateTopics with -1 (`num.partitions`).
    pub default_partitions: i32,
    /// Largest record batch accepted by Produce (`message.max.bytes`, Kafka's default
    /// 1048588), unless the topic sets `max.message.bytes`.
    pub message_max_bytes: usize,
    /// Replicas per partition when none is asked for (`default.replication.factor`),
    /// capped at the number of live brokers. Default 3.
    pub default_replication_factor: i16,
    /// Seed of everything Kafka would draw at random: topic ids and where replica placement
    /// starts. Default 0.
    pub seed: u64,
    /// Most entries one request may name (Produce, Fetch, ListOffsets and
    /// OffsetForLeaderEpoch partitions, DescribeConfigs resources, Metadata topics once
    /// each), counted in request order across its topics; the entries past it are answered
    /// INVALID_REQUEST without being served, so that one request holds the cluster lock for
    /// a bounded time. Kafka has no such cap; no client names this many. Default
    /// [`DEFAULT_MAX_PARTITIONS_PER_REQUEST`].
    pub max_partitions_per_request: usize,
    /// Most topics one Metadata (auto-creation) or CreateTopics request may create; see
    /// [`crate::handlers::metadata`] and [`crate::handlers::create_topics`] for what the
    /// others are answered. Default [`DEFAULT_MAX_TOPICS_CREATED_PER_REQUEST`].
    pub max_topics_created_per_request: usize,
    /// Most partitions one CreateTopics or CreatePartitions request may create; a request
    /// asking for more fails as a whole with POLICY_VIOLATION, as Kafka's controller refuses
    /// an operation of more than 10,000 metadata records. Default
    /// [`DEFAULT_MAX_PARTITIONS_CREATED_PER_REQUEST`].
    pub max_partitions_created_per_request: usize,
    /// Most bytes the compressed batches of one Produce request may inflate to, all
    /// partitions together, while they are validated; the partitions past it are answered
    /// POLICY_VIOLATION (see [`crate::handlers::produce`]). Each batch is also limited to
    /// 64 MiB on its own. Default [`DEFAULT_MAX_DECOMPRESSED_BYTES_PER_REQUEST`].
    pub max_decompressed_bytes_per_request: usize,
    /// Most requests waiting at once and the bytes they may hold (fetches long-polling,
    /// later joins and transaction ends): a request that would go past either answers at
    /// once as at its deadline. Default [`WaitLimits::default`]: 100,000 requests, 128 MiB.
    pub wait_limits: WaitLimits,
    /// Most entries of a partition's aborted-transaction index (each 32 bytes); past it the
    /// oldest are dropped, and a read_committed consumer reading from before the oldest
    /// kept would see those aborted records. Kafka keeps the index as long as its log
    /// segments. Default [`partition_log::DEFAULT_MAX_ABORTED_TRANSACTIONS`] (100,000).
    pub max_aborted_transactions_per_partition: usize,
    /// The internal topics coordinators live on, and coordinator moves (see
    /// [`coordinator`]).
    pub coordinators: CoordinatorConfig,
    /// Bounds of the committed offsets (see [`offsets`]).
    pub offsets: OffsetLimits,
    /// The transaction coordinator's settings: timeouts, expiry, marker delay, bounds (see
    /// [`transactions`]).
    pub transactions: TransactionConfig,
    /// The group coordinator's settings and bounds (see [`groups`]).
    pub groups: GroupConfig,
    /// The Kafka release the cluster poses as and per-API caps: what ApiVersions advertises
    /// and the server serves, within what the handlers implement (see
    /// [`crate::kafka_version`]). Default: no limit.
    pub api_versions: ApiVersionCaps,
    /// A deliberate bug, for testing checkers only ([`plant`]). Default none.
    pub planted: Option<PlantedBug>,
}

/// Default of [`ClusterConfig::max_partitions_per_request`]: 10,000.
pub const DEFAULT_MAX_PARTITIONS_PER_REQUEST: usize = 10_000;
/// Default of [`ClusterConfig::max_topics_created_per_request`]: 1,000.
pub const DEFAULT_MAX_TOPICS_CREATED_PER_REQUEST: usize = 1_000;
/// Default of [`ClusterConfig::max_partitions_created_per_request`]: 10,000, Kafka's
/// `QuorumController.MAX_RECORDS_PER_USER_OP` (a record per partition).
pub const DEFAULT_MAX_PARTITIONS_CREATED_PER_REQUEST: usize = 10_000;
/// Default of [`ClusterConfig::max_decompressed_bytes_per_request`]: 256 MiB.
pub const DEFAULT_MAX_DECOMPRESSED_BYTES_PER_REQUEST: usize = 256 * 1024 * 1024;

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            broker_ids: vec![0, 1, 2],
            cluster_id: "franzy-harness".to_string(),
            auto_create_topics: true,
            default_partitions: 1,
            message_max_bytes: 1_048_588,
            default_replication_factor: 3,
            seed: 0,
            max_partitions_per_request: DEFAULT_MAX_PARTITIONS_PER_REQUEST,
            max_topics_created_per_request: DEFAULT_MAX_TOPICS_CREATED_PER_REQUEST,
            max_partitions_created_per_request: DEFAULT_MAX_PARTITIONS_CREATED_PER_REQUEST,
            max_decompressed_bytes_per_request: DEFAULT_MAX_DECOMPRESSED_BYTES_PER_REQUEST,
            wait_limits: WaitLimits::default(),
            max_aborted_transactions_per_partition: partition_log::DEFAULT_MAX_ABORTED_TRANSACTIONS,
            coordinators: CoordinatorConfig::default(),
            offsets: OffsetLimits::default(),
            transactions: TransactionConfig::default(),
            groups: GroupConfig::default(),
            api_versions: ApiVersionCaps::default(),
            planted: None,
        }
    }
}

/// A broker as clients see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// Node id.
    pub id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port (0 until the listener is bound).
    pub port: i32,
    /// Whether the broker is up; a down broker is left out of Metadata.
    pub up: bool,
}

/// The whole cluster's state.
#[derive(Debug)]
pub struct ClusterState {
    config: ClusterConfig,
    brokers: Vec<BrokerInfo>,
    /// Where each broker id sits in `brokers`: lookups run per partition and replica.
    broker_positions: HashMap<i32, usize>,
    topics: BTreeMap<String, Topic>,
    topic_names_by_id: HashMap<Uuid, String>,
    /// Every topic by the name it has with `.` written `_` (Kafka's collision rule), so that
    /// a new name is checked against all of them at once, not one by one.
    topic_names_by_collision_key: HashMap<String, String>,
    topics_created: u64,
    /// Bumped whenever a topic is created, deleted or grown: what KIP-848 groups compare
    /// to know whether their subscriptions may have changed.
    topology_version: u64,
    next_producer_id: i64,
    /// Requests that wait for a change or a deadline (fetches short of `min_bytes`).
    waiting: Purgatory<Parked>,
    /// Where coordinators are loading, and the latest time the state was shown.
    placement: coordinator::Placement,
    /// Committed offsets and transactional offsets pending, of every group.
    offsets: OffsetStore,
    /// The transaction coordinator's state (see [`transactions`]).
    transactions: Transactions,
    /// Wall-clock milliseconds at the cluster's start, for timestamps the state makes
    /// without a request (see `transactions_markers.rs`).
    wall_clock_start_ms: i64,
    /// Consumer groups: members, rebalances, sessions.
    groups: GroupCoordinator,
    /// The deliberate bug, when one was asked for (testing checkers only).
    plant: Option<plant::Plant>,
    /// Dynamic broker configs (IncrementalAlterConfigs and AlterConfigs on brokers).
    broker_configs: broker_config::BrokerConfigs,
    /// The SASL/SCRAM users of the listeners: name, then (mechanism code, iterations) of
    /// each credential (DescribeUserScramCredentials).
    scram_users: BTreeMap<String, Vec<(i8, i32)>>,
}

impl ClusterState {
    /// An empty cluster with the configured brokers, none of them bound yet.
    pub fn new(config: ClusterConfig) -> Self {
        let mut brokers: Vec<BrokerInfo> = Vec::with_capacity(config.broker_ids.len());
        let mut broker_positions = HashMap::with_capacity(config.broker_ids.len());
        for &id in &config.broker_ids {
            // A repeated id would be a second broker nobody can address: keep the first.
            if let std::collections::hash_map::Entry::Vacant(slot) = broker_positions.entry(id) {
                slot.insert(brokers.len());
                brokers.push(BrokerInfo {
                    id,
                    host: "127.0.0.1".into(),
                    port: 0,
                    up: true,
                });
            }
        }
        let waiting = Purgatory::new(config.wait_limits);
        let offsets = OffsetStore::new(config.offsets);
        let transactions = Transactions::new(config.transactions);
        let groups = GroupCoordinator::new(config.groups.clone(), config.seed);
        let plant = config.planted.map(plant::Plant::new);
        Self {
            config,
            brokers,
            broker_positions,
            topics: BTreeMap::new(),
            topic_names_by_id: HashMap::new(),
            topic_names_by_collision_key: HashMap::new(),
            topics_created: 0,
            topology_version: 0,
            next_producer_id: FIRST_PRODUCER_ID,
            waiting,
            placement: coordinator::Placement::default(),
            offsets,
            transactions,
            wall_clock_start_ms: 0,
            groups,
            plant,
            broker_configs: broker_config::BrokerConfigs::default(),
            scram_users: BTreeMap::new(),
        }
    }

    /// The dynamic broker configs set.
    pub fn broker_configs(&self) -> &broker_config::BrokerConfigs {
        &self.broker_configs
    }

    /// The dynamic broker configs, to set them (each already validated).
    pub fn broker_configs_mut(&mut self) -> &mut broker_config::BrokerConfigs {
        &mut self.broker_configs
    }

    /// The listeners' SCRAM users: per name, (mechanism code, iterations) of each
    /// credential (`ScramMechanism`: 1 SCRAM-SHA-256, 2 SCRAM-SHA-512).
    pub fn scram_users(&self) -> &BTreeMap<String, Vec<(i8, i32)>> {
        &self.scram_users
    }

    /// Sets the listeners' SCRAM users (at start, from the listener security).
    pub fn set_scram_users(&mut self, users: BTreeMap<String, Vec<(i8, i32)>>) {
        self.scram_users = users;
    }

    /// Every group's committed offsets, and the transactional offsets pending.
    pub fn offsets(&self) -> &OffsetStore {
        &self.offsets
    }

    /// The offset store, to commit, stage transactional offsets and end transactions (see
    /// [`offsets`]).
    pub fn offsets_mut(&mut self) -> &mut OffsetStore {
        &mut self.offsets
    }

    /// The configuration.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// All brokers, up or down.
    pub fn brokers(&self) -> &[BrokerInfo] {
        &self.brokers
    }

    /// Broker `id`, up or down.
    pub fn broker(&self, id: i32) -> Option<&BrokerInfo> {
        self.brokers.get(*self.broker_positions.get(&id)?)
    }

    fn broker_mut(&mut self, id: i32) -> Option<&mut BrokerInfo> {
        self.brokers.get_mut(*self.broker_positions.get(&id)?)
    }

    /// Whether broker `id` exists and is up.
    pub fn is_broker_up(&self, id: i32) -> bool {
        self.broker(id).is_some_and(|b| b.up)
    }

    /// The brokers that are up, in configured order.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerInfo> {
        self.brokers.iter().filter(|b| b.up)
    }

    /// The controller id clients are told: the first live broker (a KRaft cluster reports a
    /// live broker, since clients cannot reach the controller quorum), or -1.
    pub fn controller_id(&self) -> i32 {
        self.live_brokers().next().map_or(-1, |b| b.id)
    }

    /// All topics, by name.
    pub fn topics(&self) -> impl Iterator<Item = &Topic> {
        self.topics.values()
    }

    /// Topic `name`.
    pub fn topic(&self, name: &str) -> Option<&Topic> {
        self.topics.get(name)
    }

    /// The topic with id `id`.
    pub fn topic_by_id(&self, id: Uuid) -> Option<&Topic> {
        self.topic_names_by_id
            .get(&id)
            .and_then(|name| self.topics.get(name))
    }

    /// Partition `partition` of `topic`.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<&Partition> {
        self.topics.get(topic)?.partition(partition)
    }

    /// The log of `topic`/`partition`: high watermark, log start and end offsets, batches.
    pub fn partition_log(&self, topic: &str, partition: i32) -> Option<&PartitionLog> {
        self.partition(topic, partition).map(Partition::log)
    }

    /// The idempotent producers' state on `topic`/`partition`: per producer id, its epoch
    /// and its last five batches' sequences and offsets.
    pub fn producer_state(&self, topic: &str, partition: i32) -> Option<&ProducerStates> {
        self.partition_log(topic, partition)
            .map(PartitionLog::producer_states)
    }

    /// A new producer id for an idempotent producer (InitProducerId without a transactional
    /// id), from a cluster-wide counter starting at [`FIRST_PRODUCER_ID`]. Never the same
    /// twice; UNKNOWN_SERVER_ERROR once every id is used up, as Kafka's `ProducerIdManager`
    /// fails then.
    pub fn allocate_producer_id(&mut self) -> Result<i64, ErrorCode> {
        let id = self.next_producer_id;
        self.next_producer_id = id.checked_add(1).ok_or(ErrorCode::UnknownServerError)?;
        Ok(id)
    }

    /// Parks a request for `waiter` until one of `wait`'s keys is touched, its outcome is
    /// resolved, or its deadline passes (see [`purgatory`]). Refused, and handed back, when
    /// the purgatory is full (or the waiter already has a request waiting): answer it at
    /// once, as at its deadline.
    // The request comes back whole, moved once: boxing it would buy nothing.
    #[allow(clippy::result_large_err)]
    pub fn park(&mut self, waiter: WaiterId, wait: Wait<Parked>) -> Result<(), Wait<Parked>> {
        self.waiting.park(waiter, wait)
    }

    /// The next waiting request that is ready to be looked at again (a key it waits on was
    /// touched, its outcome was resolved, or its deadline passed), oldest first.
    pub fn take_ready(&mut self) -> Option<Ready<Parked>> {
        self.waiting.take_ready()
    }

    /// Takes `waiter`'s waiting request out unanswered (its connection went away).
    pub fn unpark(&mut self, waiter: WaiterId) -> Option<Parked> {
        self.waiting.remove(waiter)
    }

    /// Hands `waiter`'s waiting request the outcome the state decided for it. False if it
    /// has none waiting.
    pub fn resolve(&mut self, waiter: WaiterId, resolution: Resolution) -> bool {
        self.waiting.resolve(waiter, resolution)
    }

    /// Makes every request waiting on `key` ready to look again. The state touches the keys
    /// of its own changes (appends, leader moves, deletions); this is for changes made from
    /// outside.
    pub fn touch(&mut self, key: &WaitKey) {
        self.waiting.touch(key);
    }

    /// How often the planted bug ([`ClusterConfig::planted`]) acted; 0 without one.
    pub fn planted_fired(&self) -> u64 {
        self.plant.as_ref().map_or(0, plant::Plant::fired)
    }

    /// The waiting requests: how many, their bytes, what happened to them so far.
    pub fn waiting(&self) -> &Purgatory<Parked> {
        &self.waiting
    }

    /// When [`ClusterState::handle_timeout`] next has something to do: the earliest
    /// deadline of anything time-driven (waiting requests now; session, rebalance and
    /// transaction timeouts with the coordinators), or [`Time::ZERO`] when a waiting request
    /// is ready already. `None` when nothing is.
    pub fn poll_timeout(&self) -> Option<Time> {
        if self.waiting.has_ready() {
            return Some(Time::ZERO);
        }
        [
            self.waiting.next_deadline(),
            self.transactions.next_deadline(),
            self.groups.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Drives what is due at `now`: waiting requests whose deadline passed become ready
    /// ([`ClusterState::take_ready`] hands them out); the transaction coordinator writes
    /// the markers due, aborts the transactions past their timeout and forgets expired
    /// transactional ids.
    pub fn handle_timeout(&mut self, now: Time) {
        self.observe_time(now);
        self.expire_groups(now);
        self.waiting.expire(now);
        self.drive_transactions(now);
    }

    /// Touches partition `partition` of the topic `id`.
    fn touch_partition(&mut self, id: Uuid, partition: i32) {
        if !self.waiting.is_empty() {
            self.waiting.touch(&WaitKey::Partition(id, partition));
        }
    }

    /// The limits that govern appends to `topic`: its configs over the cluster's.
    pub fn append_limits(&self, topic: &str) -> Option<AppendLimits> {
        let t = self.topics.get(topic)?;
        let long = |key: &str, default: i64| {
            t.config(key)
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(default)
        };
        let max_message_bytes = t
            .config("max.message.bytes")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(self.config.message_max_bytes);
        Some(AppendLimits {
            max_message_bytes,
            log_append_time: t.config("message.timestamp.type") == Some("LogAppendTime"),
            timestamp_before_max_ms: long("message.timestamp.before.max.ms", i64::MAX),
            timestamp_after_max_ms: long("message.timestamp.after.max.ms", 3_600_000),
        })
    }

    /// Validates a produce request's `records` for `topic`/`partition` as a leader would and
    /// appends the batch, at time `now_ms` (see [`log_validator`]), then checks its
    /// producer's epoch and sequence (see [`producer_state`]): a retried batch is answered
    /// with the original's offsets ([`AppendInfo::duplicate`]) and not appended again. Does
    /// not check leadership: that depends on the broker asked.
    pub fn append_records(
        &mut self,
        topic: &str,
        partition: i32,
        records: &[u8],
        now_ms: i64,
    ) -> Result<AppendInfo, ClusterError> {
        if !self.topics.contains_key(topic) {
            return Err(ClusterError::code(ErrorCode::UnknownTopicOrPartition));
        }
        let batch = log_validator::single_batch(records)?;
        self.append_batch(
            topic,
            partition,
            batch,
            now_ms,
            None,
            &mut InflateBudget::per_batch_only(),
            false,
        )
    }

    /// Appends one batch of a produce request (as [`log_validator::single_batch`] found it)
    /// as [`ClusterState::append_records`] does, with the log-level validation taken from
    /// `prevalidated` when it was done at `now_ms` against the topic's current limits, and
    /// otherwise done here, inflating compressed records within `budget`. `verified`: the
    /// transaction coordinator confirmed the partition is in the batch's transaction
    /// (KIP-890), which a transactional batch that opens its transaction here needs.
    // One batch's append: its arguments are the batch, where, and what was checked before.
    #[allow(clippy::too_many_arguments)]
    pub fn append_batch(
        &mut self,
        topic: &str,
        partition: i32,
        batch: &[u8],
        now_ms: i64,
        prevalidated: Option<PrevalidatedBatch>,
        budget: &mut InflateBudget,
        verified: bool,
    ) -> Result<AppendInfo, ClusterError> {
        let limits = self
            .append_limits(topic)
            .ok_or(ClusterError::code(ErrorCode::UnknownTopicOrPartition))?;
        match prevalidated {
            Some(done) if done.limits == limits && done.now_ms == now_ms => done.outcome?,
            _ => {
                log_validator::validate_for_append_within(batch, &limits, now_ms, budget)?;
            }
        }
        let t = self
            .topics
            .get_mut(topic)
            .ok_or(ClusterError::code(ErrorCode::UnknownTopicOrPartition))?;
        let id = t.id;
        let p = t
            .partition_mut(partition)
            .ok_or(ClusterError::code(ErrorCode::UnknownTopicOrPartition))?;
        let epoch = p.leader_epoch();
        let info = p.log_mut().append(
            batch,
            epoch,
            limits.log_append_time.then_some(now_ms),
            verified,
        )?;
        if let Some(plant) = self.plant.as_mut().filter(|_| !info.duplicate) {
            let idempotent = franzy::proto::batch_header::BatchHeader::parse(batch)
                .is_ok_and(|header| header.producer_id >= 0);
            if let Some(bug) = idempotent.then(|| plant.on_append()).flatten() {
                p.log_mut().apply_planted(bug);
            }
        }
        if !info.duplicate {
            self.touch_partition(id, partition);
        }
        Ok(info)
    }

    /// Writes a transaction marker to `topic`/`partition` at `now_ms`, as a partition leader
    /// appends the coordinator's `WriteTxnMarkers` (see [`PartitionLog::append_marker`]):
    /// the producer's transaction there ends, the last stable offset moves on, and the
    /// fetches waiting on the partition look again. Does not check leadership: markers are
    /// written to the shared log whoever leads.
    pub fn append_marker(
        &mut self,
        topic: &str,
        partition: i32,
        marker: &TransactionMarker,
        now_ms: i64,
    ) -> Result<AppendInfo, ClusterError> {
        let log_append_time = self
            .append_limits(topic)
            .ok_or(ClusterError::code(ErrorCode::UnknownTopicOrPartition))?
            .log_append_time;
        let mut max_aborted = self.config.max_aborted_transactions_per_partition;
        if !marker.commit && self.plant.as_mut().is_some_and(|p| p.on_abort_marker()) {
            // Planted (for testing checkers): the abort goes unlisted.
            max_aborted = 0;
        }
        let t = self
            .topics
            .get_mut(topic)
            .ok_or(ClusterError::code(ErrorCode::UnknownTopicOrPartition))?;
        let id = t.id;
        let p = t
            .partition_mut(partition)
            .ok_or(ClusterError::code(ErrorCode::UnknownTopicOrPartition))?;
        let epoch = p.leader_epoch();
        let info = p.log_mut().append_marker(
            marker,
            epoch,
            now_ms,
            log_append_time.then_some(now_ms),
            max_aborted,
        )?;
        self.touch_partition(id, partition);
        Ok(info)
    }

    /// Moves the log start offset of `topic`/`partition` to `before_offset` (-1: the high
    /// watermark), as DeleteRecords does. Returns the new log start offset. Errors:
    /// UNKNOWN_TOPIC_OR_PARTITION, OFFSET_OUT_OF_RANGE, POLICY_VIOLATION (compact-only topic).
    pub fn delete_records(
        &mut self,
        topic: &str,
        partition: i32,
        before_offset: i64,
    ) -> Result<i64, ErrorCode> {
        let t = self
            .topics
            .get_mut(topic)
            .ok_or(ErrorCode::UnknownTopicOrPartition)?;
        let compact_only = t.config("cleanup.policy").is_some_and(|v| {
            let policies: Vec<&str> = v.split(',').map(str::trim).collect();
            policies.contains(&"compact") && !policies.contains(&"delete")
        });
        let id = t.id;
        let p = t
            .partition_mut(partition)
            .ok_or(ErrorCode::UnknownTopicOrPartition)?;
        if compact_only {
            return Err(ErrorCode::PolicyViolation);
        }
        let start = p.log_mut().delete_records_before(before_offset)?;
        self.touch_partition(id, partition);
        Ok(start)
    }

    /// The partition a client may use on `broker`, as Kafka's `ReplicaManager` decides:
    /// UNKNOWN_TOPIC_OR_PARTITION if it does not exist; NOT_LEADER_OR_FOLLOWER if `broker`
    /// holds no replica; FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH if
    /// `current_leader_epoch` (unless -1) is older / newer than the partition's (KIP-320);
    /// NOT_LEADER_OR_FOLLOWER if `require_leader` and `broker` does not lead.
    pub fn client_partition(
        &self,
        topic: &str,
        partition: i32,
        broker: i32,
        current_leader_epoch: i32,
        require_leader: bool,
    ) -> Result<&Partition, ErrorCode> {
        let p = self
            .partition(topic, partition)
            .ok_or(ErrorCode::UnknownTopicOrPartition)?;
        if !p.replicas().contains(&broker) {
            return Err(ErrorCode::NotLeaderOrFollower);
        }
        if current_leader_epoch != -1 {
            if current_leader_epoch < p.leader_epoch() {
                return Err(ErrorCode::FencedLeaderEpoch);
            }
            if current_leader_epoch > p.leader_epoch() {
                return Err(ErrorCode::UnknownLeaderEpoch);
            }
        }
        if require_leader && p.leader() != broker {
            return Err(ErrorCode::NotLeaderOrFollower);
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::test_batches::BatchBuilder;
    use super::*;

    fn cluster() -> ClusterState {
        ClusterState::new(ClusterConfig::default())
    }

    #[test]
    fn delete_records_respects_the_cleanup_policy() {
        let mut c = cluster();
        c.create_topic("t", 1, BTreeMap::new()).expect("create");
        let compact = BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]);
        c.create_topic("c", 1, compact).expect("create");
        c.append_records("t", 0, &BatchBuilder::new(0).records(4, 1).build(), 0)
            .expect("append");
        assert_eq!(c.delete_records("t", 0, 2), Ok(2));
        assert_eq!(
            c.partition_log("t", 0).map(PartitionLog::log_start_offset),
            Some(2)
        );
        assert_eq!(c.delete_records("c", 0, 0), Err(ErrorCode::PolicyViolation));
        assert_eq!(
            c.delete_records("t", 1, 0),
            Err(ErrorCode::UnknownTopicOrPartition)
        );
    }
}
