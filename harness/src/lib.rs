//! franzy-harness: an in-process, multi-broker Kafka cluster that any Kafka client can use,
//! with deterministic fault injection.
//!
//! | module | what |
//! |---|---|
//! | [`cluster`] | pure broker state: brokers, topics, partitions, logs. No IO. |
//! | [`handlers`] | one file per API key: request + state -> response. No IO. |
//! | [`control`] | fault injection (interceptors) and the record of requests |
//! | [`control_plane`] | the same controls over HTTP/JSON (`franzy serve --control`) |
//! | `server` | the thin tokio loop: socket -> frame -> handler -> frame -> socket |
//! | `waiting` | the state under its lock with the answers owed to waiting connections; the clock and the timer task |
//! | `frame_budget` | bytes of request frames being received, across connections |
//! | `heavy` | the threads that work on large requests (decoding, validating, encoding) |
//! | [`stats`] | the harness's own statistics: requests per API, bytes in and out, the largest request |
//! | [`kafka_version`] | the Kafka releases a cluster can pose as: their API versions; per-API caps |
//! | [`lab`] | the fault lab: seeded fault schedules, franzy's clients, a history checker |
//! | `trace` | a digest of every frame the cluster saw (the lab's `trace=`) |
//!
//! ```text
//!  client ──TCP or in-memory──▶ server.rs ──RequestKind──▶ control.rs (faults?)
//!                                  ▲                            │
//!                                  │                            ▼
//!                              response ◀── handlers/<api>.rs ◀─ ClusterState (cluster/)
//!                                  ▲                            │ Reply::Park
//!                                  │ touched / resolved / due   ▼
//!                                  └──── complete ◀──── purgatory (cluster/purgatory.rs)
//!                                                         ▲ deadlines: timer task
//! ```
//!
//! ```no_run
//! # async fn demo() -> Result<(), franzy_harness::HarnessError> {
//! use franzy_harness::{Action, Cluster, Interceptor};
//! use franzy::proto::{ApiKey, ErrorCode};
//!
//! let cluster = Cluster::builder().brokers(3).topic("orders", 6).build().await?;
//! println!("bootstrap.servers={}", cluster.bootstrap());
//! // The next produce naming orders/0 gets NOT_LEADER_OR_FOLLOWER for that partition.
//! cluster.intercept(
//!     Interceptor::new(ApiKey::Produce, Action::Error(ErrorCode::NotLeaderOrFollower))
//!         .on_partition("orders", 0),
//! );
//! cluster.shutdown().await;
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use franzy::proto::frame::DEFAULT_MAX_FRAME_SIZE;
use franzy::proto::{ApiKey, ErrorCode};
use tokio::io::DuplexStream;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub mod cluster;
pub mod control;
pub mod control_plane;
mod frame_budget;
pub mod handlers;
mod heavy;
pub mod kafka_version;
pub mod lab;
pub mod security;
mod server;
pub mod stats;
mod trace;
mod waiting;

pub use cluster::groups::MigrationPolicy;
pub use cluster::{ClusterConfig, ClusterState, CoordinatorType, PlantedBug};
pub use control::{Action, Interceptor, RecordLimits, RecordedRequest};
pub use kafka_version::{ApiVersionCaps, KafkaVersion};
pub use security::{ListenerSecurity, Mechanism, SecurityProtocol};
pub use stats::HarnessStats;

use control::Control;
use frame_budget::FrameBudget;
use heavy::HeavyPool;
use waiting::{Clock, Core};

/// Default of [`ClusterBuilder::queued_max_request_bytes`]: 128 MiB.
pub const DEFAULT_QUEUED_MAX_REQUEST_BYTES: usize = 128 * 1024 * 1024;
/// Default of [`ClusterBuilder::connections_max_idle`]: 30 seconds.
pub const DEFAULT_CONNECTIONS_MAX_IDLE: Duration = Duration::from_secs(30);

/// Errors of the harness API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HarnessError {
    /// A listener could not be bound.
    #[error("cannot listen on {address}")]
    Bind {
        /// The address asked for.
        address: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// No broker has this id.
    #[error("no broker with id {0}")]
    UnknownBroker(i32),
    /// The broker is stopped.
    #[error("broker {0} is stopped")]
    BrokerStopped(i32),
    /// No broker advertises this address.
    #[error("no broker advertises {0}")]
    UnknownAddress(String),
    /// The cluster refused a topic operation.
    #[error("topic {topic}: {code:?}")]
    Topic {
        /// The topic.
        topic: String,
        /// Kafka's error for it.
        code: ErrorCode,
    },
    /// The builder was given settings that cannot work together.
    #[error("invalid cluster settings: {0}")]
    Config(String),
}

/// How clients reach the brokers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// Real TCP listeners on `host`, any Kafka client can connect. Broker `i` listens on
    /// `base_port + i`, or on an ephemeral port when `base_port` is 0.
    Tcp {
        /// The IP address to bind and advertise.
        host: String,
        /// First port, or 0 for ephemeral ports.
        base_port: u16,
    },
    /// No sockets: brokers advertise `broker-<id>.franzy.invalid:9092` and are reached
    /// through [`Cluster::connect`], so tests can run under a paused tokio clock.
    InMemory,
}

/// State shared by the cluster handle and every connection task.
pub(crate) struct Shared {
    core: Mutex<Core>,
    control: Mutex<Control>,
    /// A copy of the state's configuration, for the work done before the state lock.
    pub(crate) config: ClusterConfig,
    /// Cluster time.
    pub(crate) clock: Clock,
    /// Wakes the timer task when a deadline earlier than the one it sleeps until appears.
    pub(crate) timer: Notify,
    /// The next connection's waiter id.
    pub(crate) next_waiter: AtomicU64,
    pub(crate) max_frame_size: usize,
    /// Bytes of request frames being received, all connections together.
    pub(crate) frame_budget: Arc<FrameBudget>,
    /// How long a connection may hold part of a frame without receiving anything.
    pub(crate) idle_timeout: Option<Duration>,
    /// The threads that work on large requests (one core fewer than there are, so that the
    /// connections always have a core).
    pub(crate) heavy: Arc<HeavyPool>,
    /// Capacity of the response buffers connections keep for their next response.
    pub(crate) spare_response_bytes: AtomicUsize,
    /// The digest of every frame, when asked for ([`ClusterBuilder::trace`]).
    pub(crate) trace: Option<trace::Trace>,
    /// TLS and SASL of the listeners, if any.
    pub(crate) security: Option<Arc<security::ServerSecurity>>,
    /// Requests per API, bytes in and out, the largest request ([`Cluster::stats`]).
    pub(crate) stats: stats::Counters,
    /// Runs on the blocking thread before a produce request is validated (tests only).
    #[cfg(test)]
    pub(crate) prepare_hook: Mutex<Option<Box<dyn Fn() + Send + Sync>>>,
}

impl Shared {
    /// The cluster state (`.state`) and what is kept beside it. Whoever changes the state
    /// settles before letting go ([`Shared::settle`]).
    pub(crate) fn lock_core(&self) -> MutexGuard<'_, Core> {
        // A panic while holding the lock cannot leave the state half-written in a way that
        // matters more than stopping every later test, so keep serving.
        self.core
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Delivers what the last change answered, and wakes the timer if the change brought a
    /// deadline forward.
    pub(crate) fn settle(&self, core: &mut Core) {
        if core.settle() {
            self.timer.notify_one();
        }
    }

    pub(crate) fn lock_control(&self) -> MutexGuard<'_, Control> {
        self.control
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Wall-clock milliseconds, advanced by tokio time: under a paused clock, timestamps
    /// move only when the test advances time.
    #[cfg(test)]
    pub(crate) fn now_ms(&self) -> i64 {
        self.clock.wall_ms(self.clock.now())
    }
}

struct BrokerSlot {
    id: i32,
    /// Where the broker listens (TCP) or what it advertises (in-memory).
    host: String,
    port: u16,
    cancel: Option<CancellationToken>,
}

/// Builds a [`Cluster`].
#[derive(Debug, Clone)]
pub struct ClusterBuilder {
    config: ClusterConfig,
    brokers: i32,
    topics: Vec<(String, i32, BTreeMap<String, String>)>,
    transport: Transport,
    max_frame_size: usize,
    queued_max_request_bytes: usize,
    connections_max_idle: Duration,
    record_limits: RecordLimits,
    seed: u64,
    heavy_work_inline: bool,
    wall_clock_start_ms: Option<i64>,
    trace: bool,
    security: Option<ListenerSecurity>,
}

impl Default for ClusterBuilder {
    fn default() -> Self {
        Self {
            config: ClusterConfig::default(),
            brokers: 3,
            topics: Vec::new(),
            transport: Transport::Tcp {
                host: "127.0.0.1".into(),
                base_port: 0,
            },
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            queued_max_request_bytes: DEFAULT_QUEUED_MAX_REQUEST_BYTES,
            connections_max_idle: DEFAULT_CONNECTIONS_MAX_IDLE,
            record_limits: RecordLimits::default(),
            seed: 0,
            heavy_work_inline: false,
            wall_clock_start_ms: None,
            trace: false,
            security: None,
        }
    }
}

impl ClusterBuilder {
    /// Number of brokers, with ids 0..n. Default 3.
    pub fn brokers(mut self, n: i32) -> Self {
        self.brokers = n;
        self
    }

    /// Creates `name` with `partitions` partitions at start.
    pub fn topic(self, name: impl Into<String>, partitions: i32) -> Self {
        self.topic_with_configs(name, partitions, BTreeMap::new())
    }

    /// Creates `name` with topic configs such as `message.timestamp.type`.
    pub fn topic_with_configs(
        mut self,
        name: impl Into<String>,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> Self {
        self.topics.push((name.into(), partitions, configs));
        self
    }

    /// Whether Metadata requests create unknown topics (`auto.create.topics.enable`).
    /// Default true, as in Kafka.
    pub fn auto_create_topics(mut self, enabled: bool) -> Self {
        self.config.auto_create_topics = enabled;
        self
    }

    /// Partitions of auto-created topics (`num.partitions`). Default 1.
    pub fn default_partitions(mut self, n: i32) -> Self {
        self.config.default_partitions = n;
        self
    }

    /// Largest record batch Produce accepts (`message.max.bytes`). Default 1 MiB.
    pub fn message_max_bytes(mut self, n: usize) -> Self {
        self.config.message_max_bytes = n;
        self
    }

    /// Largest request frame accepted (`socket.request.max.bytes`). Default 100 MiB.
    pub fn max_frame_size(mut self, n: usize) -> Self {
        self.max_frame_size = n;
        self
    }

    /// Most bytes of request frames being received at once, all connections together
    /// (`queued.max.request.bytes`): a connection that would go over it stops reading until
    /// others are done. Bytes count as they arrive (a frame's announced length reserves
    /// nothing) until their request has been handled; each connection's first 64 KiB are
    /// not counted, so small requests never wait behind large ones. When every connection
    /// holding part of the budget waits for more, one of them finishes its frame past the
    /// budget, so memory for frames stays below the budget plus one frame. Must be at least
    /// [`ClusterBuilder::max_frame_size`], as Kafka requires. Default 128 MiB
    /// ([`DEFAULT_QUEUED_MAX_REQUEST_BYTES`]): a frame of the largest size fits, and frames
    /// that stall hold at most 228 MiB with the default frame size. (Kafka's default is
    /// unbounded.)
    pub fn queued_max_request_bytes(mut self, n: usize) -> Self {
        self.queued_max_request_bytes = n;
        self
    }

    /// How long a connection in the middle of a frame may go without receiving a byte
    /// before it is closed (with a warning), freeing what the frame held
    /// (`connections.max.idle.ms`). Connections idle between requests are never closed,
    /// so paused-clock tests that leave a connection alone are not affected. Zero turns it
    /// off. Default 30 s ([`DEFAULT_CONNECTIONS_MAX_IDLE`]), short enough for tests; Kafka
    /// closes any connection idle for 10 minutes.
    pub fn connections_max_idle(mut self, idle: Duration) -> Self {
        self.connections_max_idle = idle;
        self
    }

    /// Most partition entries one request may name; the ones past it are answered
    /// INVALID_REQUEST (see [`ClusterConfig::max_partitions_per_request`]). Default 10,000.
    pub fn max_partitions_per_request(mut self, n: usize) -> Self {
        self.config.max_partitions_per_request = n;
        self
    }

    /// Most topics one Metadata or CreateTopics request may create (see
    /// [`ClusterConfig::max_topics_created_per_request`]). Default 1,000.
    pub fn max_topics_created_per_request(mut self, n: usize) -> Self {
        self.config.max_topics_created_per_request = n;
        self
    }

    /// Most partitions one CreateTopics or CreatePartitions request may create (see
    /// [`ClusterConfig::max_partitions_created_per_request`]). Default 10,000.
    pub fn max_partitions_created_per_request(mut self, n: usize) -> Self {
        self.config.max_partitions_created_per_request = n;
        self
    }

    /// Most bytes the compressed batches of one Produce request may inflate to, together
    /// (see [`ClusterConfig::max_decompressed_bytes_per_request`]). Default 256 MiB.
    pub fn max_decompressed_bytes_per_request(mut self, n: usize) -> Self {
        self.config.max_decompressed_bytes_per_request = n;
        self
    }

    /// Most requests waiting at once in the purgatory (fetches long-polling; see
    /// [`cluster::purgatory`]): a request that would go past it is answered at once, as at
    /// its deadline. Each connection has at most one request waiting. Default 100,000.
    pub fn max_waiting_requests(mut self, n: usize) -> Self {
        self.config.wait_limits.waiters = n;
        self
    }

    /// Most bytes of waiting requests (counted by their frames) at once; past it, a request
    /// that would wait is answered at once. Default 128 MiB.
    pub fn max_waiting_bytes(mut self, n: usize) -> Self {
        self.config.wait_limits.bytes = n;
        self
    }

    /// Partitions of `__consumer_offsets`, over which groups' coordinators spread
    /// (`offsets.topic.num.partitions`). Default 50.
    pub fn offsets_topic_partitions(mut self, n: i32) -> Self {
        self.config.coordinators.offsets_topic_partitions = n;
        self
    }

    /// Replicas of `__consumer_offsets` (`offsets.topic.replication.factor`): while fewer
    /// brokers are up when the first FindCoordinator creates it, it is not created and group
    /// coordinators are unavailable, as in Kafka. Default min(3, brokers).
    pub fn offsets_topic_replication_factor(mut self, n: i16) -> Self {
        self.config.coordinators.offsets_topic_replication_factor = Some(n);
        self
    }

    /// Partitions of `__transaction_state` (`transaction.state.log.num.partitions`).
    /// Default 50.
    pub fn transaction_topic_partitions(mut self, n: i32) -> Self {
        self.config.coordinators.transaction_topic_partitions = n;
        self
    }

    /// Replicas of `__transaction_state` (`transaction.state.log.replication.factor`).
    /// Default min(3, brokers).
    pub fn transaction_topic_replication_factor(mut self, n: i16) -> Self {
        self.config
            .coordinators
            .transaction_topic_replication_factor = Some(n);
        self
    }

    /// How long a broker that became a coordinator (the leader of an internal partition)
    /// answers COORDINATOR_LOAD_IN_PROGRESS, as while Kafka loads the partition. Default
    /// zero.
    pub fn coordinator_load_delay(mut self, delay: Duration) -> Self {
        self.config.coordinators.load_delay = delay;
        self
    }

    /// Longest transaction timeout producers may ask for (`transaction.max.timeout.ms`);
    /// InitProducerId with a longer one is INVALID_TRANSACTION_TIMEOUT. Default 15 minutes.
    pub fn transaction_max_timeout(mut self, timeout: Duration) -> Self {
        self.config.transactions.max_timeout = timeout;
        self
    }

    /// How often the transaction coordinator looks for transactions open longer than their
    /// timeout, to abort them with a bumped epoch
    /// (`transaction.abort.timed.out.transaction.cleanup.interval.ms`). Default 1 second
    /// (Kafka's is 10 seconds).
    pub fn transaction_abort_interval(mut self, interval: Duration) -> Self {
        self.config.transactions.abort_interval = interval;
        self
    }

    /// How long a transactional id without a transaction in flight is kept after its last
    /// change (`transactional.id.expiration.ms`); then it is forgotten and its next
    /// InitProducerId gets a new producer id. Default 7 days, as Kafka.
    pub fn transactional_id_expiration(mut self, expiration: Duration) -> Self {
        self.config.transactions.id_expiration = expiration;
        self
    }

    /// How often transactional ids are checked for expiration
    /// (`transaction.remove.expired.transaction.cleanup.interval.ms`). Default 1 hour, as
    /// Kafka.
    pub fn transactional_id_expiration_interval(mut self, interval: Duration) -> Self {
        self.config.transactions.id_expiration_interval = interval;
        self
    }

    /// How long after a transaction's end is decided its markers are written; meanwhile it
    /// is PrepareCommit or PrepareAbort, and the coordinator answers
    /// CONCURRENT_TRANSACTIONS to the next InitProducerId, AddPartitionsToTxn or
    /// EndTxn, as Kafka does while its markers are in flight. Default zero: written while
    /// the EndTxn is handled.
    pub fn transaction_marker_delay(mut self, delay: Duration) -> Self {
        self.config.transactions.marker_delay = delay;
        self
    }

    /// Most transactional ids the coordinator knows at once; past it, the id idle longest
    /// is forgotten early, or InitProducerId for a new id is CONCURRENT_TRANSACTIONS while
    /// every id has a transaction in flight. Default 100,000.
    pub fn max_transactional_ids(mut self, n: usize) -> Self {
        self.config.transactions.max_transactional_ids = n;
        self
    }

    /// Most partitions (group offsets included) in one transaction; adding more is
    /// POLICY_VIOLATION. Default 10,000.
    pub fn max_partitions_per_transaction(mut self, n: usize) -> Self {
        self.config.transactions.max_partitions_per_transaction = n;
        self
    }

    /// Most entries of a partition's aborted-transaction index (32 bytes each); past it the
    /// oldest go, and a read_committed consumer reading from before them would see those
    /// aborted records. Default 100,000.
    pub fn max_aborted_transactions_per_partition(mut self, n: usize) -> Self {
        self.config.max_aborted_transactions_per_partition = n;
        self
    }

    /// Longest metadata string of a committed offset, in UTF-16 units
    /// (`offset.metadata.max.bytes`); longer ones are refused with
    /// OFFSET_METADATA_TOO_LARGE. Default 4096.
    pub fn offset_metadata_max_bytes(mut self, n: usize) -> Self {
        self.config.offsets.metadata_max_bytes = n;
        self
    }

    /// Most partitions one group may hold offsets for (committed or pending in a
    /// transaction); commits of further partitions are refused with
    /// INVALID_COMMIT_OFFSET_SIZE. Default 100,000.
    pub fn max_offsets_per_group(mut self, n: usize) -> Self {
        self.config.offsets.per_group = n;
        self
    }

    /// Most bytes all committed and pending offsets may take together (each charged 96
    /// bytes, its topic name and its metadata); commits past it are refused with
    /// INVALID_COMMIT_OFFSET_SIZE. Default 256 MiB.
    pub fn max_offset_bytes(mut self, n: usize) -> Self {
        self.config.offsets.bytes = n;
        self
    }

    /// Shortest session timeout a JoinGroup may ask for (`group.min.session.timeout.ms`);
    /// shorter ones are INVALID_SESSION_TIMEOUT. Default 6 s, as Kafka.
    pub fn group_min_session_timeout(mut self, timeout: Duration) -> Self {
        self.config.groups.min_session_timeout = timeout;
        self
    }

    /// Longest session timeout a JoinGroup may ask for (`group.max.session.timeout.ms`).
    /// Default 30 minutes, as Kafka.
    pub fn group_max_session_timeout(mut self, timeout: Duration) -> Self {
        self.config.groups.max_session_timeout = timeout;
        self
    }

    /// How long a new group waits for more members before its first generation
    /// (`group.initial.rebalance.delay.ms`), extended by as much for each member that joins
    /// meanwhile, up to the rebalance timeout. Default zero, so that tests do not wait
    /// (Kafka's is 3 s).
    pub fn group_initial_rebalance_delay(mut self, delay: Duration) -> Self {
        self.config.groups.initial_rebalance_delay = delay;
        self
    }

    /// How long a new member's JoinGroup may wait for its rebalance before the member is
    /// dropped (Kafka's fixed 5 minutes). Default 5 minutes.
    pub fn group_new_member_join_timeout(mut self, timeout: Duration) -> Self {
        self.config.groups.new_member_join_timeout = timeout;
        self
    }

    /// Most members per group (`group.max.size`), and separately most members waiting to
    /// join with the id they were given (KIP-394); past it GROUP_MAX_SIZE_REACHED. Default
    /// 10,000 (Kafka's default is unbounded).
    pub fn group_max_size(mut self, n: usize) -> Self {
        self.config.groups.max_size = n;
        self
    }

    /// A KIP-848 consumer group member's session (`group.consumer.session.timeout.ms`):
    /// fenced when no ConsumerGroupHeartbeat comes for this long. Default 45 s.
    pub fn consumer_group_session_timeout(mut self, timeout: Duration) -> Self {
        self.config.groups.consumer_session_timeout = timeout;
        self
    }

    /// How often KIP-848 members are told to heartbeat
    /// (`group.consumer.heartbeat.interval.ms`). Default 5 s.
    pub fn consumer_group_heartbeat_interval(mut self, interval: Duration) -> Self {
        self.config.groups.consumer_heartbeat_interval = interval;
        self
    }

    /// The server-side assignors of consumer groups, the first the default
    /// (`group.consumer.assignors`). Default `uniform`, `range`; only those two exist.
    pub fn consumer_group_assignors(mut self, names: &[&str]) -> Self {
        self.config.groups.consumer_assignors = names.iter().map(|n| n.to_string()).collect();
        self
    }

    /// Which non-empty groups change between the classic and the consumer protocol with
    /// their members (`group.consumer.migration.policy`). Default
    /// [`MigrationPolicy::Bidirectional`], Kafka 4.x's.
    pub fn consumer_group_migration_policy(mut self, policy: MigrationPolicy) -> Self {
        self.config.groups.migration_policy = policy;
        self
    }

    /// Most members per consumer group (`group.consumer.max.size`); past it
    /// GROUP_MAX_SIZE_REACHED. Default 10,000 (Kafka's is unbounded).
    pub fn consumer_group_max_size(mut self, n: usize) -> Self {
        self.config.groups.consumer_max_size = n;
        self
    }

    /// Most groups, with members or only offsets; a request that would create another is
    /// answered UNKNOWN_SERVER_ERROR. Default 100,000.
    pub fn max_groups(mut self, n: usize) -> Self {
        self.config.groups.max_groups = n;
        self
    }

    /// Most bytes of one member's protocol metadata, or of one member's assignment; past it
    /// the JoinGroup or SyncGroup is answered UNKNOWN_SERVER_ERROR (Kafka's answer for a
    /// group record too large for its log). Default 1 MiB.
    pub fn max_member_metadata_bytes(mut self, n: usize) -> Self {
        self.config.groups.max_member_bytes = n;
        self
    }

    /// Most bytes of all groups' member metadata and assignments together; past it as
    /// [`ClusterBuilder::max_member_metadata_bytes`]. Default 256 MiB.
    pub fn max_group_bytes(mut self, n: usize) -> Self {
        self.config.groups.max_bytes = n;
        self
    }

    /// Listen on real TCP sockets on `host` (default 127.0.0.1), ephemeral ports.
    pub fn tcp(mut self, host: impl Into<String>, base_port: u16) -> Self {
        self.transport = Transport::Tcp {
            host: host.into(),
            base_port,
        };
        self
    }

    /// No sockets at all: clients connect through [`Cluster::connect`].
    pub fn in_memory(mut self) -> Self {
        self.transport = Transport::InMemory;
        self
    }

    /// Seed for everything random in the cluster (fault probabilities). Default 0.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// How every broker's listener is secured: TLS (certificates generated for the
    /// advertised host names unless given; [`Cluster::ca_pem_path`]) and SASL users and
    /// mechanisms. Default: PLAINTEXT.
    pub fn security(mut self, security: ListenerSecurity) -> Self {
        self.security = Some(security);
        self
    }

    /// How many requests are kept for [`Cluster::requests`]. Default 100,000.
    pub fn record_limit(mut self, n: usize) -> Self {
        self.record_limits.requests = n;
        self
    }

    /// How many bytes the record of [`Cluster::requests`] may hold (requests, partition
    /// lists, interned names); the oldest requests are dropped past it. Default 64 MiB.
    pub fn record_max_bytes(mut self, n: usize) -> Self {
        self.record_limits.bytes = n;
        self
    }

    /// How many topic-partitions are kept per recorded request; the rest are counted
    /// ([`RecordedRequest::partitions_omitted`]). Default 1,000.
    pub fn record_partitions_limit(mut self, n: usize) -> Self {
        self.record_limits.partitions_per_request = n;
        self
    }

    /// Poses as Kafka `release`: ApiVersions advertises, and the brokers serve, only the
    /// API versions that release's brokers had, and none of the APIs it did not have (see
    /// [`kafka_version`]). Default: every version the harness implements.
    pub fn kafka_version(mut self, release: KafkaVersion) -> Self {
        self.config.api_versions.kafka_version = Some(release);
        self
    }

    /// Serves `api` up to version `max` at most (on top of [`ClusterBuilder::kafka_version`]);
    /// below the lowest version it would serve, the API is not served. Default: no cap.
    pub fn cap_api(mut self, api: ApiKey, max: i16) -> Self {
        self.config
            .api_versions
            .max_versions
            .insert(api as i16, max);
        self
    }

    /// Does not serve `api` at all: ApiVersions leaves it out and a request closes the
    /// connection, as a broker that does not know the key does.
    pub fn remove_api(self, api: ApiKey) -> Self {
        self.cap_api(api, -1)
    }

    /// Runs the work of large requests (decoding, validation, encoding) on the connection's
    /// own task instead of the pool of heavy-work threads. A run is then the same every time
    /// on a current-thread runtime: work on other threads finishes whenever the machine lets
    /// it. For the fault lab and deterministic tests; large requests then hold up the other
    /// connections while they are worked on. Default false (the pool).
    pub fn heavy_work_inline(mut self, inline: bool) -> Self {
        self.heavy_work_inline = inline;
        self
    }

    /// The wall-clock time, in milliseconds since the epoch, at which the cluster's clock
    /// starts (it then advances with tokio time): broker timestamps (LogAppendTime, the
    /// timestamp checks of Produce) no longer depend on when the run happened. Default: the
    /// system clock at build.
    pub fn wall_clock_start_ms(mut self, ms: i64) -> Self {
        self.wall_clock_start_ms = Some(ms);
        self
    }

    /// Keeps a digest of every request and response frame, in the order the cluster handled
    /// them ([`ClusterHandle::trace_digest`]): two runs with the same digest exchanged the
    /// same bytes. Default off.
    pub fn trace(mut self, enabled: bool) -> Self {
        self.trace = enabled;
        self
    }

    /// Gives the cluster a deliberate bug ([`PlantedBug`]). **For testing checkers only**:
    /// the fault lab uses it to prove its checker catches each class of anomaly.
    pub fn plant(mut self, bug: PlantedBug) -> Self {
        self.config.planted = Some(bug);
        self
    }

    /// Starts the brokers.
    pub async fn build(self) -> Result<Cluster, HarnessError> {
        if self.brokers < 1 || self.brokers > 1024 {
            return Err(HarnessError::Config(format!(
                "brokers must be 1 to 1024, got {}",
                self.brokers
            )));
        }
        if self.max_frame_size < 1024 {
            return Err(HarnessError::Config(
                "max frame size below 1024 bytes".into(),
            ));
        }
        if self.queued_max_request_bytes < self.max_frame_size {
            return Err(HarnessError::Config(format!(
                "queued.max.request.bytes ({}) must be at least the max frame size ({})",
                self.queued_max_request_bytes, self.max_frame_size
            )));
        }
        let coordinators = &self.config.coordinators;
        if coordinators.offsets_topic_partitions < 1
            || coordinators.transaction_topic_partitions < 1
        {
            return Err(HarnessError::Config(
                "internal topics need at least one partition".into(),
            ));
        }
        let factors = [
            coordinators.offsets_topic_replication_factor,
            coordinators.transaction_topic_replication_factor,
        ];
        if factors.iter().flatten().any(|&f| f < 1) {
            return Err(HarnessError::Config(
                "internal topics need a replication factor of at least one".into(),
            ));
        }
        let transactions = &self.config.transactions;
        if transactions.abort_interval.is_zero() || transactions.id_expiration_interval.is_zero() {
            return Err(HarnessError::Config(
                "transaction check intervals must be above zero".into(),
            ));
        }
        let groups = &self.config.groups;
        if groups.min_session_timeout > groups.max_session_timeout {
            return Err(HarnessError::Config(format!(
                "group.min.session.timeout.ms ({:?}) above group.max.session.timeout.ms ({:?})",
                groups.min_session_timeout, groups.max_session_timeout
            )));
        }
        let mut config = self.config;
        config.broker_ids = (0..self.brokers).collect();
        let shared_config = config.clone();
        let mut state = ClusterState::new(config);
        let clock = Clock::start(self.wall_clock_start_ms);
        state.set_wall_clock_start(clock.wall_ms(cluster::Time::ZERO));
        for (name, partitions, configs) in &self.topics {
            state
                .create_topic(name, *partitions, configs.clone())
                .map_err(|code| HarnessError::Topic {
                    topic: name.clone(),
                    code,
                })?;
        }
        let hosts: Vec<String> = match &self.transport {
            Transport::Tcp { host, .. } => vec![host.clone()],
            Transport::InMemory => (0..self.brokers)
                .map(|id| format!("broker-{id}.franzy.invalid"))
                .collect(),
        };
        let security = match self.security {
            Some(security) => {
                state.set_scram_users(security.scram_users());
                Some(Arc::new(security.start(&hosts, self.seed)?))
            }
            None => None,
        };
        let shared = Arc::new(Shared {
            security,
            core: Mutex::new(Core::new(state)),
            control: Mutex::new(Control::with_record_limits(self.seed, self.record_limits)),
            config: shared_config,
            clock,
            timer: Notify::new(),
            next_waiter: AtomicU64::new(0),
            max_frame_size: self.max_frame_size,
            frame_budget: Arc::new(FrameBudget::new(self.queued_max_request_bytes)),
            idle_timeout: (!self.connections_max_idle.is_zero())
                .then_some(self.connections_max_idle),
            heavy: Arc::new(if self.heavy_work_inline {
                HeavyPool::inline()
            } else {
                HeavyPool::for_this_machine()
            }),
            spare_response_bytes: AtomicUsize::new(0),
            stats: stats::Counters::default(),
            trace: self.trace.then(trace::Trace::new),
            #[cfg(test)]
            prepare_hook: Mutex::new(None),
        });
        let root = CancellationToken::new();
        tokio::spawn(waiting::run_timer(shared.clone(), root.clone()));
        let cluster = Cluster {
            inner: Arc::new(ClusterHandle {
                shared,
                root,
                brokers: Mutex::new(Vec::new()),
                transport: self.transport.clone(),
            }),
        };
        for id in 0..self.brokers {
            let (host, port) = match &self.transport {
                Transport::Tcp { host, base_port } => {
                    let port = if *base_port == 0 {
                        0
                    } else {
                        u16::try_from(i32::from(*base_port) + id).map_err(|_| {
                            HarnessError::Config(format!("port {base_port}+{id} out of range"))
                        })?
                    };
                    (host.clone(), port)
                }
                Transport::InMemory => (format!("broker-{id}.franzy.invalid"), 9092),
            };
            cluster.lock_brokers().push(BrokerSlot {
                id,
                host,
                port,
                cancel: None,
            });
            cluster.start_broker(id).await?;
        }
        Ok(cluster)
    }
}

/// A running cluster. Dropping it (or [`Cluster::shutdown`]) stops every listener and
/// closes every connection.
pub struct Cluster {
    inner: Arc<ClusterHandle>,
}

/// The running cluster's brokers, state and controls, shared by [`Cluster`] (which derefs
/// to it and owns the cluster's lifetime) and by [`InMemoryConnector`]s. Its methods are the
/// cluster's API: addresses, in-memory connections, interceptors, the request record, the
/// state, and stopping or starting brokers.
pub struct ClusterHandle {
    shared: Arc<Shared>,
    root: CancellationToken,
    brokers: Mutex<Vec<BrokerSlot>>,
    transport: Transport,
}

impl std::ops::Deref for Cluster {
    type Target = ClusterHandle;
    fn deref(&self) -> &ClusterHandle {
        &self.inner
    }
}

/// A [`franzy::transport::Connector`] that opens in-memory connections to the cluster's brokers by
/// their advertised address, so that a franzy client reaches the harness without sockets.
#[derive(Clone)]
pub struct InMemoryConnector {
    inner: Arc<ClusterHandle>,
}

impl std::fmt::Debug for InMemoryConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InMemoryConnector")
    }
}

impl franzy::transport::Connector for InMemoryConnector {
    fn connect<'a>(&'a self, address: &'a str) -> franzy::transport::ConnectFuture<'a> {
        Box::pin(async move {
            self.inner
                .connect_to(address)
                .map(|stream| Box::new(stream) as franzy::transport::BoxedStream)
                .map_err(|e| {
                    std::io::Error::new(std::io::ErrorKind::ConnectionRefused, e.to_string())
                })
        })
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("bootstrap", &self.bootstrap())
            .finish()
    }
}

impl Cluster {
    /// A builder with Kafka's defaults: 3 brokers on 127.0.0.1, ephemeral ports.
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    /// A connector for franzy clients that reaches the brokers in memory, by the addresses
    /// they advertise (works for TCP clusters too).
    pub fn connector(&self) -> InMemoryConnector {
        InMemoryConnector {
            inner: self.inner.clone(),
        }
    }

    /// Stops every broker and closes every connection.
    pub async fn shutdown(self) {
        self.inner.root.cancel();
        // Let the connection tasks observe the cancellation and close their sockets.
        tokio::task::yield_now().await;
    }
}

impl ClusterHandle {
    fn lock_brokers(&self) -> MutexGuard<'_, Vec<BrokerSlot>> {
        self.brokers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The `bootstrap.servers` string: every broker's `host:port`, comma-separated.
    pub fn bootstrap(&self) -> String {
        self.lock_brokers()
            .iter()
            .map(|b| format!("{}:{}", b.host, b.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The broker ids.
    pub fn broker_ids(&self) -> Vec<i32> {
        self.lock_brokers().iter().map(|b| b.id).collect()
    }

    /// Where broker `id` listens, for TCP clusters.
    pub fn broker_address(&self, id: i32) -> Option<SocketAddr> {
        let brokers = self.lock_brokers();
        let broker = brokers.iter().find(|b| b.id == id)?;
        format!("{}:{}", broker.host, broker.port).parse().ok()
    }

    /// Opens an in-memory connection to broker `id` (works for TCP clusters too). The
    /// stream speaks the Kafka protocol exactly as a socket would.
    pub fn connect(&self, id: i32) -> Result<DuplexStream, HarnessError> {
        let cancel = {
            let brokers = self.lock_brokers();
            let broker = brokers
                .iter()
                .find(|b| b.id == id)
                .ok_or(HarnessError::UnknownBroker(id))?;
            broker
                .cancel
                .clone()
                .ok_or(HarnessError::BrokerStopped(id))?
        };
        let (client, server) = tokio::io::duplex(256 * 1024);
        tokio::spawn(server::serve_connection(
            self.shared.clone(),
            id,
            server,
            "in-memory".to_string(),
            cancel,
        ));
        Ok(client)
    }

    /// Opens an in-memory connection to the broker that advertises `address`
    /// (`host:port`), as a client transport resolving Metadata addresses would.
    pub fn connect_to(&self, address: &str) -> Result<DuplexStream, HarnessError> {
        let id = self
            .lock_brokers()
            .iter()
            .find(|b| format!("{}:{}", b.host, b.port) == address)
            .map(|b| b.id)
            .ok_or_else(|| HarnessError::UnknownAddress(address.to_string()))?;
        self.connect(id)
    }

    /// Adds a fault-injection rule after those already registered.
    pub fn intercept(&self, interceptor: Interceptor) {
        self.shared.lock_control().add(interceptor);
    }

    /// Removes every interceptor.
    pub fn clear_interceptors(&self) {
        self.shared.lock_control().clear();
    }

    /// Interceptors that have not yet fired as often as they were told to.
    pub fn pending_interceptors(&self) -> usize {
        self.shared.lock_control().pending()
    }

    /// The cluster's own statistics: requests per API, bytes in and out, the largest
    /// request seen, since it started (unbounded by the request record's limits).
    pub fn stats(&self) -> HarnessStats {
        self.shared.stats.snapshot()
    }

    /// Every request received so far (within the record's bounds, [`RecordLimits`]),
    /// oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock_control().recorded()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.shared.lock_control().clear_recorded();
    }

    /// Runs `f` on the cluster state (to inspect logs or change leaders); the requests
    /// waiting on what it changed look again (a parked fetch sees the new records).
    pub fn with_state<R>(&self, f: impl FnOnce(&mut ClusterState) -> R) -> R {
        let mut core = self.shared.lock_core();
        // Changes made here (leader moves, stopped brokers) happen now.
        core.state.observe_time(self.shared.clock.now());
        let result = f(&mut core.state);
        self.shared.settle(&mut core);
        result
    }

    /// Creates a topic, as CreateTopics would.
    pub fn create_topic(&self, name: &str, partitions: i32) -> Result<(), HarnessError> {
        self.with_state(|state| state.create_topic(name, partitions, BTreeMap::new()))
            .map(|_| ())
            .map_err(|code| HarnessError::Topic {
                topic: name.to_string(),
                code,
            })
    }

    /// Stops broker `id`: its listener closes, its connections drop, and leadership of its
    /// partitions moves to live replicas. [`Cluster::start_broker`] brings it back on the
    /// same address.
    pub fn stop_broker(&self, id: i32) -> Result<(), HarnessError> {
        {
            let mut brokers = self.lock_brokers();
            let broker = brokers
                .iter_mut()
                .find(|b| b.id == id)
                .ok_or(HarnessError::UnknownBroker(id))?;
            if let Some(cancel) = broker.cancel.take() {
                cancel.cancel();
            }
        }
        self.with_state(|state| state.set_broker_up(id, false));
        Ok(())
    }

    /// Starts broker `id` (again), on the address it had.
    pub async fn start_broker(&self, id: i32) -> Result<(), HarnessError> {
        let (host, port) = {
            let brokers = self.lock_brokers();
            let broker = brokers
                .iter()
                .find(|b| b.id == id)
                .ok_or(HarnessError::UnknownBroker(id))?;
            if broker.cancel.is_some() {
                return Ok(());
            }
            (broker.host.clone(), broker.port)
        };
        let cancel = self.root.child_token();
        let port = match &self.transport {
            Transport::Tcp { .. } => {
                let address = format!("{host}:{port}");
                let listener =
                    TcpListener::bind(&address)
                        .await
                        .map_err(|source| HarnessError::Bind {
                            address: address.clone(),
                            source,
                        })?;
                let port = listener
                    .local_addr()
                    .map_err(|source| HarnessError::Bind { address, source })?
                    .port();
                tokio::spawn(server::run_listener(
                    self.shared.clone(),
                    id,
                    listener,
                    cancel.clone(),
                ));
                port
            }
            Transport::InMemory => port,
        };
        {
            let mut brokers = self.lock_brokers();
            if let Some(broker) = brokers.iter_mut().find(|b| b.id == id) {
                broker.port = port;
                broker.cancel = Some(cancel);
            }
        }
        self.with_state(|state| {
            state.set_broker_address(id, &host, port);
            state.set_broker_up(id, true);
        });
        Ok(())
    }

    /// The broker coordinating group `group` now (the leader of its partition of
    /// `__consumer_offsets`), or `None` while there is none (the topic does not exist yet,
    /// or the partition has no leader).
    pub fn group_coordinator(&self, group: &str) -> Option<i32> {
        self.coordinator(CoordinatorType::Group, group)
    }

    /// The broker coordinating transactional id `id` now (the leader of its partition of
    /// `__transaction_state`), or `None` while there is none.
    pub fn transaction_coordinator(&self, id: &str) -> Option<i32> {
        self.coordinator(CoordinatorType::Transaction, id)
    }

    fn coordinator(&self, kind: CoordinatorType, key: &str) -> Option<i32> {
        self.with_state(|state| {
            let partition = state.coordinator_partition(kind, key);
            let leader = state.partition(kind.topic(), partition)?.leader();
            state.is_broker_up(leader).then_some(leader)
        })
    }

    /// Moves group `group`'s coordinator to broker `broker`: leadership of its partition of
    /// `__consumer_offsets` moves there (in a new leader epoch), as a reassignment or a
    /// preferred-leader election would move it in Kafka. Waiting requests of the old
    /// coordinator answer NOT_COORDINATOR; the group's state and offsets move with it.
    /// Creates the internal topic first if no FindCoordinator has yet. Errors: `broker` is
    /// not a replica of the partition, or is down.
    pub fn move_group_coordinator(&self, group: &str, broker: i32) -> Result<(), HarnessError> {
        self.move_coordinator(CoordinatorType::Group, group, broker)
    }

    /// Moves transactional id `id`'s coordinator to broker `broker`, as
    /// [`ClusterHandle::move_group_coordinator`] does for groups.
    pub fn move_transaction_coordinator(&self, id: &str, broker: i32) -> Result<(), HarnessError> {
        self.move_coordinator(CoordinatorType::Transaction, id, broker)
    }

    fn move_coordinator(
        &self,
        kind: CoordinatorType,
        key: &str,
        broker: i32,
    ) -> Result<(), HarnessError> {
        self.with_state(|state| state.move_coordinator(kind, key, broker))
            .map_err(|code| HarnessError::Topic {
                topic: kind.topic().to_string(),
                code,
            })
    }

    /// How long the cluster has been running, in tokio time.
    pub fn uptime(&self) -> Duration {
        self.shared.clock.uptime()
    }

    /// The digest of every request and response frame so far, and how many events it
    /// covers (see [`ClusterBuilder::trace`]); `None` when tracing is off.
    pub fn trace_digest(&self) -> Option<(u64, u64)> {
        self.shared.trace.as_ref().map(trace::Trace::digest)
    }

    /// The listeners' security protocol.
    pub fn security_protocol(&self) -> SecurityProtocol {
        self.shared
            .security
            .as_ref()
            .map_or(SecurityProtocol::Plaintext, |s| s.protocol())
    }

    /// The generated CA certificate's PEM file, for clients to trust (TLS clusters whose
    /// certificates were generated).
    pub fn ca_pem_path(&self) -> Option<std::path::PathBuf> {
        self.tls().and_then(|tls| tls.ca_path.clone())
    }

    /// The generated CA certificate, PEM.
    pub fn ca_pem(&self) -> Option<String> {
        self.tls().and_then(|tls| tls.ca_pem.clone())
    }

    /// A client certificate for `name` signed by the generated CA, `(chain, key)` PEM, for
    /// mTLS.
    pub fn issue_client_certificate(&self, name: &str) -> Result<(String, String), HarnessError> {
        #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
        if let Some(authority) = self.tls().and_then(|tls| tls.authority.as_ref()) {
            let issued = authority.issue_client(name).map_err(HarnessError::Config)?;
            return Ok((issued.certificate_pem, issued.key_pem));
        }
        let _ = name;
        Err(HarnessError::Config(
            "no generated CA to issue certificates".into(),
        ))
    }

    /// Fails the next `n` authentications that would succeed, with
    /// SASL_AUTHENTICATION_FAILED (fault injection).
    pub fn fail_authentications(&self, n: usize) {
        if let Some(security) = &self.shared.security {
            security
                .fail_next
                .store(n, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// Expires every session authenticated so far, as if its token had: each connection's
    /// next request must be a re-authentication, or the connection is closed.
    pub fn expire_sessions(&self) {
        if let Some(security) = &self.shared.security {
            security.expire_sessions();
        }
    }

    /// Refuses `mechanism` at the handshake (UNSUPPORTED_SASL_MECHANISM) until
    /// [`Cluster::allow_mechanism`].
    pub fn refuse_mechanism(&self, mechanism: Mechanism) {
        if let Some(security) = &self.shared.security {
            security.refuse_mechanism(mechanism, true);
        }
    }

    /// Accepts `mechanism` again (if it was enabled).
    pub fn allow_mechanism(&self, mechanism: Mechanism) {
        if let Some(security) = &self.shared.security {
            security.refuse_mechanism(mechanism, false);
        }
    }

    fn tls(&self) -> Option<&security::tls::ServerTls> {
        self.shared.security.as_ref().and_then(|s| s.tls.as_ref())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.inner.root.cancel();
    }
}
