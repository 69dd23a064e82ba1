//! Configuration shared by the producer, the consumer and the admin client.
//!
//! Three ways in, one result:
//!
//! - typed setters, each stating its default: `Config::new("host:9092").linger(ms(5))`;
//! - Kafka's own property names: `.set("linger.ms", "5")` takes every key of the Java
//!   producer, consumer and admin configs (Kafka 4.x, TLS and SASL keys included) and
//!   librdkafka's names, so that existing configs carry over;
//! - whole files: [`Config::from_properties`] reads the `.properties` text Java clients are
//!   configured with, [`Config::from_map`] any key/value pairs.
//!
//! ```
//! # fn demo() -> Result<(), franzy::Error> {
//! let config = franzy::Config::from_properties(
//!     "bootstrap.servers=broker-1:9092,broker-2:9092\n\
//!      key.serializer=org.apache.kafka.common.serialization.StringSerializer\n\
//!      acks=all\n\
//!      linger.ms=10\n",
//! )?;
//! assert_eq!(config.get("linger.ms").as_deref(), Some("10"));
//! // Kept, and logged once at warn level: franzy sends bytes.
//! assert!(config.ignored().any(|(key, _)| key == "key.serializer"));
//! # Ok(())
//! # }
//! ```
//!
//! What [`Config::set`] does with a key, from one table (listed below):
//!
//! - **Supported** keys are parsed into the typed settings and honoured. A value that does
//!   not parse, or that franzy cannot honour safely (`sasl.mechanism=GSSAPI`,
//!   `ssl.truststore.type=JKS`, a Java partitioner class), is an [`Error::Config`] naming the
//!   key: going on unauthenticated or with records in other partitions would be wrong, not
//!   merely different.
//! - **Known keys franzy ignores** (not implemented yet, such as `max.poll.records`, or meaningless
//!   here, such as `key.serializer`) are kept as text ([`Config::ignored`], [`Config::get`])
//!   and logged once, at warn level, when set: `ignored: KEY (not supported)`, with the
//!   reason in the event's `reason` field. A value that asks for nothing franzy does not do
//!   (`enable.auto.commit=false`, an empty `interceptor.classes`) is kept without a warning.
//! - **Unknown keys** (in neither Kafka's nor librdkafka's lists, e.g. a serializer's
//!   `schema.registry.url`) are kept and logged once: `ignored: KEY (unknown)`, as the Java
//!   clients warn about a config that "was supplied but isn't a known config". A misspelt
//!   key is therefore a warning, not an error; the event's `suggestion` field names a known
//!   key one or two edits away.
//!
//! "Once" is per [`Config`]: the warning comes from the `set` that first gives the key a
//! value that needs one; clones, later `set`s of the same key and every client built from
//! the config stay quiet.
//!
//! Values are read as Kafka's `ConfigDef` reads them: trimmed; booleans and names in any
//! case (`TRUE`, `ALL`, `lz4`); lists comma-separated; durations in milliseconds up to
//! Java's `Long` (longer than [`FOREVER`] is read as [`FOREVER`]). Where librdkafka has
//! another name for a setting, both names work; where the two clients give one name
//! different meanings (`request.timeout.ms`, `metadata.max.age.ms`, `batch.size`), the Java
//! meaning holds. Defaults, shown in the listing, are the Java client's (Kafka 4.x), but for
//! `client.id` (`franzy`) and librdkafka's own keys.
//!
//! [`Config::validate`], which every client's `build()` runs, checks the settings together
//! and names the key at fault. Settings that Java derives from others are derived the same
//! way, whatever the order they were set in: `delivery.timeout.ms` left unset grows to
//! `linger.ms + request.timeout.ms`; `reconnect.backoff.ms` set alone is also the maximum;
//! an initial backoff above its maximum becomes a fixed backoff of the maximum.
//!
//! [`Error::Config`]: crate::Error::Config
#![doc = include_str!("config/keys.md")]

mod keys;
mod properties;

use std::time::Duration;

use crate::error::Error;
use crate::proto::compression::Compression;
use crate::security::{Sasl, SecurityProtocol, SecuritySettings, TlsConfig};

/// The longest duration franzy keeps: 2^42 ms, about 139 years. Longer settings, and
/// "no limit" values such as librdkafka's `message.timeout.ms=0`, become this, which no
/// timer reaches and which clock arithmetic cannot overflow.
pub const FOREVER: Duration = Duration::from_millis(1 << 42);

/// How many acknowledgements the leader waits for before answering a produce request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Acks {
    /// `acks=0`: no response at all; records are considered sent once written to the socket.
    None,
    /// `acks=1`: the leader has written the records.
    Leader,
    /// `acks=all` (or `-1`): every in-sync replica has them.
    All,
}

impl Acks {
    /// The value of the `acks` field of a Produce request.
    pub fn wire_value(self) -> i16 {
        match self {
            Self::None => 0,
            Self::Leader => 1,
            Self::All => -1,
        }
    }

    /// The value as the `acks` property spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "0",
            Self::Leader => "1",
            Self::All => "all",
        }
    }
}

/// How records are spread over partitions (librdkafka's `partitioner` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Partitioner {
    /// `murmur2_random`, the default: a key goes where the Java client's default partitioner
    /// puts it (murmur2 of the key bytes); records without a key use uniform sticky
    /// partitioning (KIP-480, KIP-794).
    Murmur2Random,
    /// `murmur2`: like the default, but records without a key hash the empty key, so they
    /// all go to one partition.
    Murmur2,
    /// `random`: every batch of records goes to a sticky partition, key or not (Java's
    /// `partitioner.ignore.keys=true`).
    Random,
}

impl Partitioner {
    /// The value as the `partitioner` property spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Murmur2Random => "murmur2_random",
            Self::Murmur2 => "murmur2",
            Self::Random => "random",
        }
    }
}

/// Where a consumer starts when it has no valid position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OffsetReset {
    /// `earliest`: the log start offset.
    Earliest,
    /// `latest`: the end of the log (the high watermark, or the last stable offset).
    Latest,
    /// `none`: fail with [`Error::OffsetOutOfRange`].
    None,
}

impl OffsetReset {
    /// The value as the `auto.offset.reset` property spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Earliest => "earliest",
            Self::Latest => "latest",
            Self::None => "none",
        }
    }
}

/// The consumer group protocol (`group.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupProtocol {
    /// `classic`: JoinGroup, SyncGroup and Heartbeat; the group's leader assigns with
    /// `partition.assignment.strategy`.
    Classic,
    /// `consumer`: KIP-848's ConsumerGroupHeartbeat; the broker assigns, incrementally
    /// (`group.remote.assignor` picks its assignor).
    Consumer,
}

impl GroupProtocol {
    /// The value as the `group.protocol` property spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Classic => "classic",
            Self::Consumer => "consumer",
        }
    }
}

/// Which records a consumer sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IsolationLevel {
    /// `read_uncommitted`: everything up to the high watermark.
    ReadUncommitted,
    /// `read_committed`: up to the last stable offset (the first offset of the oldest open
    /// transaction), without the records of aborted transactions.
    ReadCommitted,
}

impl IsolationLevel {
    /// The value of the `isolation_level` field of Fetch and ListOffsets requests.
    pub fn wire_value(self) -> i8 {
        match self {
            Self::ReadUncommitted => 0,
            Self::ReadCommitted => 1,
        }
    }

    /// The value as the `isolation.level` property spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::ReadUncommitted => "read_uncommitted",
            Self::ReadCommitted => "read_committed",
        }
    }
}

/// Client configuration: build it with [`Config::new`] and the typed setters, or from
/// properties ([`Config::set`], [`Config::from_properties`], [`Config::from_map`]); read it
/// back with [`Config::get`] and [`Config::ignored`]. See the [module doc](self) for what
/// each key does.
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) bootstrap_servers: Vec<String>,
    pub(crate) client_id: String,
    pub(crate) acks: Acks,
    pub(crate) linger: Duration,
    pub(crate) batch_size: usize,
    pub(crate) buffer_memory: usize,
    pub(crate) compression: Compression,
    /// Derived from `given.delivery_timeout` by [`Config::settle`].
    pub(crate) delivery_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) retries: u32,
    /// Derived from `given.retry_backoff` by [`Config::settle`].
    pub(crate) retry_backoff: Duration,
    pub(crate) retry_backoff_max: Duration,
    pub(crate) max_in_flight: usize,
    pub(crate) max_request_size: usize,
    pub(crate) partitioner: Partitioner,
    pub(crate) fetch_min_bytes: i32,
    pub(crate) fetch_max_wait: Duration,
    pub(crate) fetch_max_bytes: i32,
    pub(crate) max_partition_fetch_bytes: i32,
    pub(crate) auto_offset_reset: OffsetReset,
    pub(crate) isolation_level: IsolationLevel,
    pub(crate) metadata_max_age: Duration,
    /// Derived from `given.reconnect_backoff*` by [`Config::settle`].
    pub(crate) reconnect_backoff: Duration,
    /// Derived from `given.reconnect_backoff*` by [`Config::settle`].
    pub(crate) reconnect_backoff_max: Duration,
    /// Derived from `given.max_response_size` by [`Config::settle`].
    pub(crate) max_response_size: usize,
    pub(crate) enable_partition_eof: bool,
    /// `enable.idempotence`: `None` until set, when it follows the other settings.
    pub(crate) enable_idempotence: Option<bool>,
    /// `security.protocol` and the `ssl.*` and `sasl.*` keys (its `Debug` hides secrets).
    pub(crate) security: SecuritySettings,
    /// `transactional.id`: `None` (or empty) for a producer without transactions.
    pub(crate) transactional_id: Option<String>,
    /// `transaction.timeout.ms`.
    pub(crate) transaction_timeout: Duration,
    pub(crate) group_id: Option<String>,
    pub(crate) group_instance_id: Option<String>,
    /// `group.protocol`.
    pub(crate) group_protocol: GroupProtocol,
    /// `group.remote.assignor` (KIP-848's `ServerAssignor`).
    pub(crate) group_remote_assignor: Option<String>,
    /// Derived from `given.session_timeout` by [`Config::settle`].
    pub(crate) session_timeout: Duration,
    /// Derived from `given.heartbeat_interval` by [`Config::settle`].
    pub(crate) heartbeat_interval: Duration,
    pub(crate) max_poll_interval: Duration,
    /// `partition.assignment.strategy`, as given (Java class or protocol names).
    pub(crate) assignment_strategy: Vec<String>,
    pub(crate) enable_auto_commit: bool,
    pub(crate) auto_commit_interval: Duration,
    pub(crate) client_rack: Option<String>,
    pub(crate) default_api_timeout: Duration,
    /// `statistics.interval.ms`: zero for none.
    pub(crate) statistics_interval: Duration,
    /// What was set of the settings derived from others.
    given: Given,
    /// The keys franzy keeps without acting on them.
    kept: Kept,
}

/// The settings the Java client derives from others unless they are set, as they were set.
#[derive(Debug, Clone, Default)]
struct Given {
    delivery_timeout: Option<Duration>,
    retry_backoff: Option<Duration>,
    reconnect_backoff: Option<Duration>,
    reconnect_backoff_max: Option<Duration>,
    max_response_size: Option<usize>,
    /// Set explicitly: `group.protocol=consumer` refuses these (Java's
    /// `CONSUMER_PROTOCOL_UNSUPPORTED_CONFIGS`).
    session_timeout: Option<Duration>,
    heartbeat_interval: Option<Duration>,
    assignment_strategy: bool,
}

const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(45);
const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(3);

const DEFAULT_DELIVERY_TIMEOUT: Duration = Duration::from_secs(120);
const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_millis(100);
const DEFAULT_RECONNECT_BACKOFF: Duration = Duration::from_millis(50);
const DEFAULT_RECONNECT_BACKOFF_MAX: Duration = Duration::from_millis(1000);
const DEFAULT_MAX_RESPONSE_SIZE: usize = 100 * 1024 * 1024;
/// What a fetch response carries besides records: headers, topic and partition fields.
const RESPONSE_OVERHEAD: usize = 64 * 1024;

impl Default for Config {
    fn default() -> Self {
        let mut config = Self {
            bootstrap_servers: Vec::new(),
            client_id: "franzy".into(),
            acks: Acks::All,
            linger: Duration::from_millis(5),
            batch_size: 16 * 1024,
            buffer_memory: 32 * 1024 * 1024,
            compression: Compression::None,
            delivery_timeout: DEFAULT_DELIVERY_TIMEOUT,
            request_timeout: Duration::from_secs(30),
            retries: i32::MAX as u32,
            retry_backoff: DEFAULT_RETRY_BACKOFF,
            retry_backoff_max: Duration::from_millis(1000),
            max_in_flight: 5,
            max_request_size: 1024 * 1024,
            partitioner: Partitioner::Murmur2Random,
            fetch_min_bytes: 1,
            fetch_max_wait: Duration::from_millis(500),
            fetch_max_bytes: 50 * 1024 * 1024,
            max_partition_fetch_bytes: 1024 * 1024,
            auto_offset_reset: OffsetReset::Latest,
            isolation_level: IsolationLevel::ReadUncommitted,
            metadata_max_age: Duration::from_secs(300),
            reconnect_backoff: DEFAULT_RECONNECT_BACKOFF,
            reconnect_backoff_max: DEFAULT_RECONNECT_BACKOFF_MAX,
            max_response_size: DEFAULT_MAX_RESPONSE_SIZE,
            enable_partition_eof: false,
            enable_idempotence: None,
            security: SecuritySettings::default(),
            transactional_id: None,
            transaction_timeout: Duration::from_secs(60),
            group_id: None,
            group_instance_id: None,
            group_protocol: GroupProtocol::Classic,
            group_remote_assignor: None,
            session_timeout: DEFAULT_SESSION_TIMEOUT,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            max_poll_interval: Duration::from_secs(300),
            assignment_strategy: vec![
                "org.apache.kafka.clients.consumer.RangeAssignor".into(),
                "org.apache.kafka.clients.consumer.CooperativeStickyAssignor".into(),
            ],
            enable_auto_commit: true,
            auto_commit_interval: Duration::from_secs(5),
            client_rack: None,
            default_api_timeout: Duration::from_secs(60),
            statistics_interval: Duration::ZERO,
            given: Given::default(),
            kept: Kept::default(),
        };
        config.settle();
        config
    }
}

/// Typed setters: each assigns its field (through a conversion, where given), derives what
/// depends on it, and states its property and default in its doc. The defaults are also
/// listed in `SETTER_DEFAULTS`, which a test checks against the table.
macro_rules! setters {
    ($(
        $(#[$doc:meta])*
        $name:ident($ty:ty) => $($field:ident).+ $(via $convert:expr)?,
            key $key:literal, default $default:literal;
    )*) => {
        $(
            $(#[$doc])*
            ///
            #[doc = concat!("Default: `", $key, "=", $default, "`.")]
            pub fn $name(mut self, value: $ty) -> Self {
                self.$($field).+ = setters!(@convert value $(, $convert)?);
                self.settle();
                self
            }
        )*

        /// Each typed setter's property and the default its doc states.
        #[cfg(test)]
        const SETTER_DEFAULTS: &'static [(&'static str, &'static str)] =
            &[$(($key, $default)),*];
    };
    (@convert $value:ident) => { $value };
    (@convert $value:ident, $convert:expr) => { ($convert)($value) };
}

impl Config {
    /// A configuration with Kafka's defaults and these bootstrap servers
    /// (comma-separated `host:port` list, as `bootstrap.servers`).
    pub fn new(bootstrap_servers: impl AsRef<str>) -> Self {
        Self::default().bootstrap_servers(bootstrap_servers)
    }

    /// A configuration from Java `.properties` text (`key=value` or `key: value` lines,
    /// `#` and `!` comments, trailing-backslash continuations, `\uXXXX` escapes), every pair
    /// applied with [`Config::set`] in order, so a later line wins. Errors: a value
    /// [`Config::set`] refuses, or a malformed escape, naming the key.
    pub fn from_properties(text: &str) -> Result<Self, Error> {
        Self::from_map(properties::parse(text)?)
    }

    /// A configuration from key/value pairs (a `HashMap`, a `Vec` of tuples, ...), each
    /// applied with [`Config::set`] in order.
    pub fn from_map<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Result<Self, Error>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        pairs
            .into_iter()
            .try_fold(Self::default(), |config, (key, value)| {
                config.set(key, value)
            })
    }

    setters! {
        /// Where the client discovers the cluster: comma-separated `host:port` list; a
        /// `PLAINTEXT://` prefix is dropped.
        bootstrap_servers(impl AsRef<str>) => bootstrap_servers via servers,
            key "bootstrap.servers", default "";
        /// Sent with every request, for the brokers' logs and quotas.
        client_id(impl Into<String>) => client_id via Into::into,
            key "client.id", default "franzy";
        /// How many replicas acknowledge a write before it succeeds.
        acks(Acks) => acks, key "acks", default "all";
        /// How long a batch waits for more records.
        linger(Duration) => linger via capped, key "linger.ms", default "5";
        /// Bytes a partition's batch collects before it is sent; 0 (Java's "no batching")
        /// is read as 1, so that every record closes its batch.
        batch_size(usize) => batch_size via |bytes: usize| bytes.max(1),
            key "batch.size", default "16384";
        /// Bytes of records waiting to be sent before `send` waits for room.
        buffer_memory(usize) => buffer_memory, key "buffer.memory", default "33554432";
        /// The codec of record batches.
        compression(Compression) => compression, key "compression.type", default "none";
        /// Upper bound from `send` to success or failure, retries included. Left unset, it
        /// is raised to `linger.ms + request.timeout.ms` when that is longer (Java's rule);
        /// set shorter than that, [`Config::validate`] refuses it.
        delivery_timeout(Duration) => given.delivery_timeout
            via |timeout| Some(capped(timeout)),
            key "delivery.timeout.ms", default "120000";
        /// How long one request waits for its response.
        request_timeout(Duration) => request_timeout via capped,
            key "request.timeout.ms", default "30000";
        /// How often a failed batch is retried (within the delivery timeout).
        retries(u32) => retries, key "retries", default "2147483647";
        /// First wait before a retry; above `retry.backoff.max.ms` the wait is fixed at the
        /// maximum (Java's rule).
        retry_backoff(Duration) => given.retry_backoff via |wait| Some(capped(wait)),
            key "retry.backoff.ms", default "100";
        /// Cap of the exponential retry backoff.
        retry_backoff_max(Duration) => retry_backoff_max via capped,
            key "retry.backoff.max.ms", default "1000";
        /// Batches of one partition in flight, 1 to 5. Without idempotence, more than 1
        /// lets a retried batch land after a later one, as in Kafka's clients.
        max_in_flight(usize) => max_in_flight,
            key "max.in.flight.requests.per.connection", default "5";
        /// Largest Produce request, and so the largest record.
        max_request_size(usize) => max_request_size, key "max.request.size", default "1048576";
        /// How records without an explicit partition are placed.
        partitioner(Partitioner) => partitioner, key "partitioner", default "murmur2_random";
        /// Bytes a fetch waits for (up to `fetch.max.wait.ms`).
        fetch_min_bytes(i32) => fetch_min_bytes, key "fetch.min.bytes", default "1";
        /// Longest a broker holds a fetch waiting for `fetch.min.bytes`.
        fetch_max_wait(Duration) => fetch_max_wait via capped,
            key "fetch.max.wait.ms", default "500";
        /// Bytes one fetch response may carry.
        fetch_max_bytes(i32) => fetch_max_bytes, key "fetch.max.bytes", default "52428800";
        /// Bytes per partition in a fetch response, and buffered per partition.
        max_partition_fetch_bytes(i32) => max_partition_fetch_bytes,
            key "max.partition.fetch.bytes", default "1048576";
        /// Where a partition without a valid position starts.
        auto_offset_reset(OffsetReset) => auto_offset_reset,
            key "auto.offset.reset", default "latest";
        /// Which records the consumer sees: everything written
        /// ([`IsolationLevel::ReadUncommitted`], the Java client's default; librdkafka's is
        /// `read_committed`), or only what transactions committed.
        isolation_level(IsolationLevel) => isolation_level,
            key "isolation.level", default "read_uncommitted";
        /// Periodic metadata refresh.
        metadata_max_age(Duration) => metadata_max_age via capped,
            key "metadata.max.age.ms", default "300000";
        /// First wait before reconnecting, and before the consumer asks a broker again after
        /// a request to it failed; set without `reconnect.backoff.max.ms`, it is also the
        /// maximum (Java's rule).
        reconnect_backoff(Duration) => given.reconnect_backoff via |wait| Some(capped(wait)),
            key "reconnect.backoff.ms", default "50";
        /// Cap of the reconnect backoff; also how long a broker must have failed every
        /// request before the consumer's `recv` reports it (`Error::BrokerUnreachable`,
        /// `Error::AllBrokersDown`).
        reconnect_backoff_max(Duration) => given.reconnect_backoff_max
            via |wait| Some(capped(wait)),
            key "reconnect.backoff.max.ms", default "1000";
        /// Largest response frame accepted (librdkafka's name). Left unset, it grows to
        /// `fetch.max.bytes` + 64 KiB when that is larger.
        max_response_size(usize) => given.max_response_size via Some,
            key "receive.message.max.bytes", default "104857600";
        /// The consumer reports reaching the end of each assigned partition (librdkafka).
        enable_partition_eof(bool) => enable_partition_eof,
            key "enable.partition.eof", default "false";
        /// The producer gets a producer id and numbers its batches, so that retries never
        /// write a batch twice and up to 5 batches per partition can be in flight without
        /// reordering (KIP-98). Set to true, it requires `acks=all`, `retries` > 0 and
        /// `max.in.flight.requests.per.connection` <= 5, and `build()` fails otherwise.
        /// Left unset, it is on unless `acks` or `retries` conflict with it, as in the Java
        /// client since 3.2.
        enable_idempotence(bool) => enable_idempotence via Some,
            key "enable.idempotence", default "true";
        /// Makes the producer transactional (`Producer::init_transactions` and the other
        /// transactional methods; records only inside a transaction). A new producer with the
        /// same id fences this one (its open transaction is aborted). Implies
        /// `enable.idempotence` (with it explicitly false, [`Config::validate`] fails). An
        /// empty id is none.
        transactional_id(impl Into<String>) => transactional_id via optional_id,
            key "transactional.id", default "";
        /// Longest a transaction may stay open before the transaction coordinator aborts it
        /// (sent with InitProducerId; brokers refuse more than their
        /// `transaction.max.timeout.ms`, 15 minutes by default). Also how long a commit
        /// retries an EndTxn that got no answer before it reports
        /// [`Error::TransactionOutcomeUnknown`].
        transaction_timeout(Duration) => transaction_timeout via capped,
            key "transaction.timeout.ms", default "60000";
        /// The consumer group. Set, [`Consumer::subscribe`](crate::Consumer::subscribe)
        /// joins it and the consumer commits offsets to it (also with `assign`).
        group_id(impl Into<String>) => group_id via non_empty,
            key "group.id", default "";
        /// A static member's identity (KIP-345): a restart within `session.timeout.ms`
        /// causes no rebalance, and closing sends no LeaveGroup.
        group_instance_id(impl Into<String>)
            => group_instance_id via non_empty,
            key "group.instance.id", default "";
        /// The group protocol: [`GroupProtocol::Consumer`] (KIP-848) takes the session
        /// timeout, the heartbeat interval and the assignor from the broker, and refuses
        /// `session.timeout.ms`, `heartbeat.interval.ms` and
        /// `partition.assignment.strategy` set explicitly (as Java does).
        group_protocol(GroupProtocol) => group_protocol,
            key "group.protocol", default "classic";
        /// The server-side assignor a `group.protocol=consumer` member asks for (Kafka
        /// has `uniform` and `range`); empty: the broker's default. An error with the
        /// classic protocol.
        group_remote_assignor(impl Into<String>) => group_remote_assignor via non_empty,
            key "group.remote.assignor", default "";
        /// How long the coordinator waits for a heartbeat before removing the member.
        session_timeout(Duration) => given.session_timeout via |t| Some(capped(t)),
            key "session.timeout.ms", default "45000";
        /// Time between heartbeats (sent by a background task); below the session timeout.
        heartbeat_interval(Duration) => given.heartbeat_interval via |t| Some(capped(t)),
            key "heartbeat.interval.ms", default "3000";
        /// Longest time between two `recv` calls before the member leaves the group; also
        /// the rebalance timeout.
        max_poll_interval(Duration) => max_poll_interval via capped,
            key "max.poll.interval.ms", default "300000";
        /// Commit the positions handed out every `auto.commit.interval.ms`, before
        /// partitions are revoked, and on close.
        enable_auto_commit(bool) => enable_auto_commit,
            key "enable.auto.commit", default "true";
        /// Time between automatic commits.
        auto_commit_interval(Duration) => auto_commit_interval via capped,
            key "auto.commit.interval.ms", default "5000";
        /// How long `commit`, `committed` and the last commit of `close` wait.
        default_api_timeout(Duration) => default_api_timeout via capped,
            key "default.api.timeout.ms", default "60000";
        /// How often a producer or consumer hands a statistics snapshot to the callback
        /// set with [`ClientBuilder::on_statistics`](crate::ClientBuilder::on_statistics)
        /// (and, with the `metrics` feature, to the `metrics` facade); zero turns it off
        /// (librdkafka's key and meaning).
        statistics_interval(Duration) => statistics_interval via capped,
            key "statistics.interval.ms", default "0";
    }

    /// How connections are secured (`security.protocol`). Default `PLAINTEXT`. TLS uses
    /// [`Config::tls`] (the system's roots when not set), SASL uses [`Config::sasl`] (or the
    /// `sasl.*` keys).
    pub fn security_protocol(mut self, protocol: SecurityProtocol) -> Self {
        self.security.protocol = protocol;
        self
    }

    /// TLS settings for `SSL` and `SASL_SSL`; they replace every `ssl.*` key. Default:
    /// from the `ssl.*` keys (the system's roots, hostname verification).
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.security.tls = Some(tls);
        self
    }

    /// SASL mechanism and credentials for `SASL_PLAINTEXT` and `SASL_SSL`; they replace the
    /// `sasl.*` keys. Default: from the `sasl.*` keys.
    pub fn sasl(mut self, sasl: Sasl) -> Self {
        self.security.sasl = Some(sasl);
        self
    }

    /// Sets `partition.assignment.strategy`: built-in assignors by protocol name (`range`,
    /// `roundrobin`, `sticky`, `cooperative-sticky`) or Java class name, in order of
    /// preference. Errors name the key for an assignor franzy does not have.
    ///
    /// Default: `partition.assignment.strategy=org.apache.kafka.clients.consumer.RangeAssignor,org.apache.kafka.clients.consumer.CooperativeStickyAssignor`.
    pub fn partition_assignment_strategy<S: AsRef<str>>(
        self,
        names: impl IntoIterator<Item = S>,
    ) -> Result<Self, Error> {
        let joined: Vec<String> = names.into_iter().map(|n| n.as_ref().to_string()).collect();
        self.set("partition.assignment.strategy", joined.join(","))
    }

    /// Whether the producer is idempotent with these settings (see
    /// [`Config::enable_idempotence`]; a `transactional.id` implies it).
    pub fn idempotence(&self) -> bool {
        self.transactional_id.is_some()
            || self
                .enable_idempotence
                .unwrap_or(self.acks == Acks::All && self.retries > 0 && self.max_in_flight <= 5)
    }

    /// Whether idempotence was asked for explicitly, or implied by a `transactional.id`
    /// (then a broker without InitProducerId is an error rather than a reason to go
    /// without, and settings that conflict with it fail [`Config::validate`]).
    pub(crate) fn idempotence_explicit(&self) -> bool {
        self.enable_idempotence == Some(true) || self.transactional_id.is_some()
    }

    /// The `transactional.id`, if the producer is transactional.
    pub fn transactional(&self) -> Option<&str> {
        self.transactional_id.as_deref()
    }

    /// The configured `batch.size` in bytes.
    pub fn batch_size_bytes(&self) -> usize {
        self.batch_size
    }

    /// Sets a property by its Kafka or librdkafka name, e.g. `.set("linger.ms", "5")`; the
    /// module doc says what happens with supported, ignored and unknown keys. Key and value
    /// are trimmed. Errors ([`Error::Config`], naming the key as given): a value of a
    /// supported key that does not parse, or that franzy cannot honour.
    pub fn set(mut self, key: impl AsRef<str>, value: impl AsRef<str>) -> Result<Self, Error> {
        let (key, value) = (key.as_ref().trim(), value.as_ref().trim());
        match keys::lookup(key) {
            Some(entry) => match entry.kind {
                keys::Kind::Supported { apply, .. } => {
                    apply(&mut self, value).map_err(|reason| Error::config(key, reason))?;
                    self.settle();
                }
                keys::Kind::Ignored { .. } => {
                    let quiet = entry.is_inert(value);
                    if self.kept.keep(entry.name, value, entry.secret, quiet) {
                        tracing::warn!(reason = entry.doc, "ignored: {key} (not supported)");
                    }
                }
            },
            None => {
                if self.kept.keep(key, value, looks_secret(key), false) {
                    match keys::suggestion(key) {
                        Some(known) => {
                            tracing::warn!(suggestion = known, "ignored: {key} (unknown)")
                        }
                        None => tracing::warn!("ignored: {key} (unknown)"),
                    }
                }
            }
        }
        Ok(self)
    }

    /// The value of a property, by its Kafka or librdkafka name: for a supported key, the
    /// value in effect (set, derived or default) as [`Config::set`] would take it; for
    /// another key, the text it was set to; `None` for a key that is not supported and was
    /// not set.
    pub fn get(&self, key: impl AsRef<str>) -> Option<String> {
        let key = key.as_ref().trim();
        match keys::lookup(key) {
            Some(entry) => match entry.kind {
                keys::Kind::Supported { show, .. } => Some(show(self)),
                keys::Kind::Ignored { .. } => self.kept.value(entry.name).map(str::to_owned),
            },
            None => self.kept.value(key).map(str::to_owned),
        }
    }

    /// The properties franzy keeps without acting on them, as `(key, value)` in the order
    /// they were first set: known keys it does not implement (under Kafka's name when set by
    /// a librdkafka alias) and unknown keys.
    pub fn ignored(&self) -> impl Iterator<Item = (&str, &str)> {
        self.kept
            .0
            .iter()
            .map(|kept| (kept.name.as_str(), kept.value.as_str()))
    }

    /// Checks the settings together; every client's `build()` calls this. The error names
    /// the key at fault.
    pub fn validate(&self) -> Result<(), Error> {
        if self.bootstrap_servers.is_empty() {
            return Err(Error::config("bootstrap.servers", "no servers given"));
        }
        for server in &self.bootstrap_servers {
            if let Some((scheme, _)) = server.split_once("://") {
                return Err(Error::config(
                    "bootstrap.servers",
                    format!("{scheme}:// is not a security protocol (set security.protocol)"),
                ));
            }
            let valid = server
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !valid {
                return Err(Error::config(
                    "bootstrap.servers",
                    format!("{server:?} is not host:port"),
                ));
            }
        }
        if !(1..=5).contains(&self.max_in_flight) {
            return Err(Error::config(
                "max.in.flight.requests.per.connection",
                format!("{} is not between 1 and 5", self.max_in_flight),
            ));
        }
        if self.transactional_id.is_some() && self.enable_idempotence == Some(false) {
            // Java: "Cannot set a transactional.id without also enabling idempotence."
            return Err(Error::config(
                "transactional.id",
                "requires enable.idempotence, which is set to false",
            ));
        }
        if self.idempotence_explicit() {
            let key = if self.enable_idempotence == Some(true) {
                "enable.idempotence"
            } else {
                "transactional.id"
            };
            if self.acks != Acks::All {
                return Err(Error::config(key, "requires acks=all"));
            }
            if self.retries == 0 {
                return Err(Error::config(key, "requires retries > 0"));
            }
        }
        if self.transaction_timeout.is_zero()
            || self.transaction_timeout.as_millis() > i32::MAX as u128
        {
            return Err(Error::config(
                "transaction.timeout.ms",
                format!("must be between 1 and {} ms", i32::MAX),
            ));
        }
        if self.batch_size == 0 {
            return Err(Error::config("batch.size", "must be positive"));
        }
        if self.max_request_size < 1024 {
            return Err(Error::config(
                "max.request.size",
                "must be at least 1024 bytes",
            ));
        }
        if self.buffer_memory < self.max_request_size {
            return Err(Error::config(
                "buffer.memory",
                "must be at least max.request.size",
            ));
        }
        if self.request_timeout.is_zero() {
            return Err(Error::config("request.timeout.ms", "must be positive"));
        }
        // Java's rule: a record must get the chance to linger and be sent once.
        if self.delivery_timeout < self.linger.saturating_add(self.request_timeout) {
            return Err(Error::config(
                "delivery.timeout.ms",
                "must be at least linger.ms + request.timeout.ms",
            ));
        }
        if self.fetch_min_bytes < 0 {
            return Err(Error::config("fetch.min.bytes", "must not be negative"));
        }
        if self.fetch_max_bytes < 1 || self.max_partition_fetch_bytes < 1 {
            return Err(Error::config(
                "fetch.max.bytes",
                "fetch limits must be positive",
            ));
        }
        let fetch_max = usize::try_from(self.fetch_max_bytes).unwrap_or(usize::MAX);
        if self.max_response_size < fetch_max.saturating_add(RESPONSE_OVERHEAD) {
            return Err(Error::config(
                "receive.message.max.bytes",
                "must exceed fetch.max.bytes by at least 64 KiB of response overhead",
            ));
        }
        self.validate_group_protocol()?;
        if self.group_id.is_some() && self.group_protocol == GroupProtocol::Classic {
            if self.heartbeat_interval >= self.session_timeout {
                return Err(Error::config(
                    "heartbeat.interval.ms",
                    "must be less than session.timeout.ms",
                ));
            }
            if self.session_timeout.is_zero() || self.max_poll_interval.is_zero() {
                return Err(Error::config(
                    "session.timeout.ms",
                    "session.timeout.ms and max.poll.interval.ms must be positive",
                ));
            }
        }
        Ok(())
    }

    /// Java's `ConsumerConfig.checkUnsupportedConfigsPostProcess` (Kafka 4.x): a key the
    /// chosen group protocol does not use, set explicitly, is an error naming every such
    /// key (`group.remote.assignor` with `classic`; `partition.assignment.strategy`,
    /// `heartbeat.interval.ms`, `session.timeout.ms` with `consumer`, which the broker's
    /// group config decides).
    fn validate_group_protocol(&self) -> Result<(), Error> {
        let set: Vec<&str> = match self.group_protocol {
            GroupProtocol::Classic => self
                .group_remote_assignor
                .as_ref()
                .map(|_| "group.remote.assignor")
                .into_iter()
                .collect(),
            GroupProtocol::Consumer => [
                (
                    "partition.assignment.strategy",
                    self.given.assignment_strategy,
                ),
                (
                    "heartbeat.interval.ms",
                    self.given.heartbeat_interval.is_some(),
                ),
                ("session.timeout.ms", self.given.session_timeout.is_some()),
            ]
            .into_iter()
            .filter(|(_, set)| *set)
            .map(|(key, _)| key)
            .collect(),
        };
        match set.first() {
            None => Ok(()),
            Some(first) => Err(Error::config(
                *first,
                format!(
                    "{} cannot be set when group.protocol={}",
                    set.join(", "),
                    self.group_protocol.name().to_uppercase()
                ),
            )),
        }
    }

    /// Derives the settings Java derives from others, from what was set (`given`) and the
    /// rest; runs after every change, so the order of setting does not matter.
    fn settle(&mut self) {
        self.session_timeout = self
            .given
            .session_timeout
            .unwrap_or(DEFAULT_SESSION_TIMEOUT);
        self.heartbeat_interval = self
            .given
            .heartbeat_interval
            .unwrap_or(DEFAULT_HEARTBEAT_INTERVAL);
        let floor = self.linger.saturating_add(self.request_timeout);
        self.delivery_timeout = self
            .given
            .delivery_timeout
            .unwrap_or(DEFAULT_DELIVERY_TIMEOUT.max(floor));
        // `ExponentialBackoff`: an initial wait above the maximum is the maximum.
        self.retry_backoff = self
            .given
            .retry_backoff
            .unwrap_or(DEFAULT_RETRY_BACKOFF)
            .min(self.retry_backoff_max);
        // `postProcessReconnectBackoffConfigs`: set alone, the initial wait is the maximum.
        self.reconnect_backoff_max = self
            .given
            .reconnect_backoff_max
            .or(self.given.reconnect_backoff)
            .unwrap_or(DEFAULT_RECONNECT_BACKOFF_MAX);
        self.reconnect_backoff = self
            .given
            .reconnect_backoff
            .unwrap_or(DEFAULT_RECONNECT_BACKOFF)
            .min(self.reconnect_backoff_max);
        let fetch_max = usize::try_from(self.fetch_max_bytes).unwrap_or(0);
        self.max_response_size = self
            .given
            .max_response_size
            .unwrap_or(DEFAULT_MAX_RESPONSE_SIZE.max(fetch_max.saturating_add(RESPONSE_OVERHEAD)));
    }
}

/// A `transactional.id` setting: an empty id is none.
fn optional_id(id: impl Into<String>) -> Option<String> {
    Some(id.into()).filter(|id| !id.is_empty())
}

fn non_empty(text: impl Into<String>) -> Option<String> {
    Some(text.into()).filter(|text| !text.is_empty())
}

fn capped(duration: Duration) -> Duration {
    duration.min(FOREVER)
}

fn servers(list: impl AsRef<str>) -> Vec<String> {
    split_servers(list.as_ref())
}

/// A comma-separated server list, blanks and a security protocol prefix (`PLAINTEXT://`,
/// `SASL_SSL://`, ...) dropped, as listener URLs carry them (other schemes stay, for
/// [`Config::validate`] to refuse). `security.protocol` says how to connect.
fn split_servers(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| match s.split_once("://") {
            Some((scheme, rest)) if SecurityProtocol::from_name(scheme).is_some() => rest,
            _ => s,
        })
        .map(String::from)
        .collect()
}

/// Whether an unknown key probably holds a credential, so `Debug` must not show it.
fn looks_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "passphrase",
        "jaas",
        "credentials",
        "user.info",
    ]
    .iter()
    .any(|word| key.contains(word))
}

/// Properties kept as text, in the order they were first set.
#[derive(Clone, Default)]
struct Kept(Vec<KeptKey>);

#[derive(Clone)]
struct KeptKey {
    name: String,
    value: String,
    secret: bool,
    warned: bool,
}

impl Kept {
    /// Stores `value` under `name`; true if the caller must warn: the value is not `quiet`
    /// and no earlier value of the key was warned about.
    fn keep(&mut self, name: &str, value: &str, secret: bool, quiet: bool) -> bool {
        let index = match self.0.iter().position(|kept| kept.name == name) {
            Some(index) => index,
            None => {
                self.0.push(KeptKey {
                    name: name.to_string(),
                    value: String::new(),
                    secret,
                    warned: false,
                });
                self.0.len() - 1
            }
        };
        let kept = &mut self.0[index];
        kept.value = value.to_string();
        let warn = !quiet && !kept.warned;
        kept.warned |= warn;
        warn
    }

    fn value(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|kept| kept.name == name)
            .map(|kept| kept.value.as_str())
    }
}

impl std::fmt::Debug for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|kept| {
                let value = if kept.secret {
                    "[hidden]"
                } else {
                    kept.value.as_str()
                };
                (&kept.name, value)
            }))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::keys::{Kind, KEYS};
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// A valid value other than the default for every supported key.
    fn sample(key: &str) -> &'static str {
        match key {
            "bootstrap.servers" => "a:1,b:2",
            "client.id" => "app",
            "client.dns.lookup" => "resolve_canonical_bootstrap_servers_only",
            "security.protocol" => "sasl_ssl",
            "ssl.truststore.type" | "ssl.keystore.type" => "pem",
            "ssl.truststore.location" => "/etc/kafka/ca.pem",
            "ssl.truststore.certificates" => "-----BEGIN CERTIFICATE-----",
            "ssl.ca.location" => "/etc/ssl/ca.pem",
            "ssl.keystore.location" => "/etc/kafka/client.pem",
            "ssl.keystore.certificate.chain" => "-----BEGIN CERTIFICATE-----",
            "ssl.keystore.key" => "[hidden]",
            "ssl.certificate.location" => "/etc/kafka/client.crt",
            "ssl.key.location" => "/etc/kafka/client.key",
            "ssl.endpoint.identification.algorithm" => "",
            "enable.ssl.certificate.verification" => "false",
            "sasl.mechanism" => "SCRAM-SHA-512",
            "sasl.jaas.config" => "[hidden]",
            "sasl.username" => "alice",
            "sasl.password" => "[hidden]",
            "request.timeout.ms" => "40000",
            "metadata.max.age.ms" => "-1",
            "reconnect.backoff.ms" => "20",
            "reconnect.backoff.max.ms" => "2000",
            "retry.backoff.ms" => "70",
            "retry.backoff.max.ms" => "3000",
            "receive.message.max.bytes" => "200000000",
            "acks" => "1",
            "enable.idempotence" => "false",
            "linger.ms" => "0.25",
            "batch.size" => "1000",
            "buffer.memory" => "1048576",
            "queue.buffering.max.kbytes" => "2048",
            "compression.type" => "zstd",
            "delivery.timeout.ms" => "0",
            "retries" => "3",
            "max.in.flight.requests.per.connection" => "1",
            "max.request.size" => "2048",
            "partitioner" => "murmur2",
            "partitioner.class" => "org.apache.kafka.clients.producer.UniformStickyPartitioner",
            "partitioner.ignore.keys" => "true",
            "transactional.id" => "orders-tx",
            "transaction.timeout.ms" => "90000",
            "auto.offset.reset" => "smallest",
            "isolation.level" => "READ_UNCOMMITTED",
            "fetch.min.bytes" => "1000",
            "fetch.max.wait.ms" => "100",
            "fetch.max.bytes" => "1000000",
            "max.partition.fetch.bytes" => "65536",
            "enable.partition.eof" => "TRUE",
            "group.id" => "audit",
            "group.instance.id" => "audit-1",
            "group.protocol" => "CLASSIC",
            "group.remote.assignor" => "uniform",
            "session.timeout.ms" => "10000",
            "heartbeat.interval.ms" => "1000",
            "max.poll.interval.ms" => "60000",
            "partition.assignment.strategy" => "range, cooperative-sticky",
            "enable.auto.commit" => "false",
            "auto.commit.interval.ms" => "1000",
            "client.rack" => "eu-1a",
            "default.api.timeout.ms" => "5000",
            "statistics.interval.ms" => "1000",
            other => panic!("no sample value for {other}"),
        }
    }

    fn shows(config: &Config) -> Vec<(&'static str, String)> {
        KEYS.iter()
            .filter_map(|key| match key.kind {
                Kind::Supported { show, .. } => Some((key.name, show(config))),
                Kind::Ignored { .. } => None,
            })
            .collect()
    }

    fn config_error_key(result: Result<Config, Error>) -> String {
        match result {
            Err(Error::Config { key, .. }) => key,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    /// Records the message of every tracing event on this thread while `f` runs.
    fn warnings(f: impl FnOnce()) -> Vec<String> {
        struct Recorder(Arc<Mutex<Vec<String>>>);
        struct Message<'a>(&'a mut String);
        impl tracing::field::Visit for Message<'_> {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                use std::fmt::Write;
                if field.name() == "message" {
                    let _ = write!(self.0, "{value:?}");
                } else {
                    let _ = write!(self.0, " {}={value:?}", field.name());
                }
            }
        }
        impl tracing::Subscriber for Recorder {
            fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
                true
            }
            fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
                tracing::span::Id::from_u64(1)
            }
            fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
            fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
            fn event(&self, event: &tracing::Event<'_>) {
                let mut line = format!("{} ", event.metadata().level());
                event.record(&mut Message(&mut line));
                if let Ok(mut lines) = self.0.lock() {
                    lines.push(line);
                }
            }
            fn enter(&self, _: &tracing::span::Id) {}
            fn exit(&self, _: &tracing::span::Id) {}
        }
        // Tests run on several threads, and tracing caches per callsite whether anyone
        // listens: a callsite first hit on another thread, or a scoped subscriber of another
        // test coming and going, could leave this one's events unrecorded. One recording at
        // a time, with the cache rebuilt once the recorder is in place.
        static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
        let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        let lines = Arc::new(Mutex::new(Vec::new()));
        tracing::subscriber::with_default(Recorder(lines.clone()), || {
            tracing::callsite::rebuild_interest_cache();
            f()
        });
        let lines = lines.lock().map(|l| l.clone()).unwrap_or_default();
        lines
    }

    #[test]
    fn kafka_property_names_set_the_typed_fields() -> Result<(), Error> {
        let config = Config::new("a:9092")
            .set("linger.ms", "7")?
            .set("acks", "1")?
            .set("compression.type", "zstd")?
            .set("auto.offset.reset", "earliest")?
            .set("isolation.level", "read_uncommitted")?
            .set("bootstrap.servers", "x:1, y:2")?;
        assert_eq!(config.linger, 7 * MS);
        assert_eq!(config.acks, Acks::Leader);
        assert_eq!(config.compression, Compression::Zstd);
        assert_eq!(config.auto_offset_reset, OffsetReset::Earliest);
        assert_eq!(config.isolation_level, IsolationLevel::ReadUncommitted);
        assert_eq!(
            config.bootstrap_servers,
            vec!["x:1".to_string(), "y:2".to_string()]
        );
        config.validate()
    }

    #[test]
    fn every_supported_key_takes_a_value_and_shows_it_back() -> Result<(), Error> {
        for key in KEYS {
            let Kind::Supported { show, .. } = key.kind else {
                continue;
            };
            let value = sample(key.name);
            let config = Config::default().set(key.name, value)?;
            let shown = show(&config);
            let again = Config::default().set(key.name, &shown)?;
            assert_eq!(
                show(&again),
                shown,
                "{}: set(get()) changes nothing",
                key.name
            );
            assert_eq!(config.get(key.name), Some(shown), "{}", key.name);
        }
        Ok(())
    }

    #[test]
    fn aliases_set_the_same_setting_as_the_kafka_name() -> Result<(), Error> {
        for key in KEYS {
            for alias in key.aliases {
                let value = match key.kind {
                    Kind::Supported { .. } => sample(key.name),
                    Kind::Ignored { .. } => "some-value",
                };
                let by_name = Config::default().set(key.name, value)?;
                let by_alias = Config::default().set(alias, value)?;
                assert_eq!(shows(&by_name), shows(&by_alias), "{alias}");
                assert_eq!(by_name.get(key.name), by_alias.get(key.name), "{alias}");
                assert_eq!(by_alias.get(alias), by_alias.get(key.name), "{alias}");
            }
        }
        Ok(())
    }

    #[test]
    fn each_setter_states_the_default_of_its_key() {
        for (property, default) in Config::SETTER_DEFAULTS {
            let key = keys::lookup(property).unwrap_or_else(|| panic!("{property}"));
            assert!(matches!(key.kind, Kind::Supported { .. }), "{property}");
            assert_eq!(key.default, *default, "{property}");
        }
    }

    #[test]
    fn bad_values_of_supported_keys_are_errors_naming_the_key() {
        let bad = [
            ("linger.ms", "soon"),
            ("linger.ms", "-1"),
            ("queue.buffering.max.ms", "-0.5"),
            ("batch.size", "big"),
            ("buffer.memory", "-1"),
            ("queue.buffering.max.kbytes", "18446744073709551615"),
            ("acks", "2"),
            ("request.required.acks", "leader"),
            ("compression.type", "brotli"),
            ("compression.codec", "inherit"),
            ("delivery.timeout.ms", "9223372036854775808000"),
            ("retries", "-1"),
            ("max.in.flight.requests.per.connection", "x"),
            ("partitioner", "consistent_random"),
            ("partitioner.class", "com.example.MyPartitioner"),
            (
                "partitioner.class",
                "org.apache.kafka.clients.producer.RoundRobinPartitioner",
            ),
            ("partitioner.ignore.keys", "yes"),
            ("enable.idempotence", "1"),
            ("fetch.min.bytes", "-1"),
            ("fetch.max.bytes", "2147483648"),
            ("fetch.wait.max.ms", "1.5"),
            ("auto.offset.reset", "middle"),
            ("auto.offset.reset", "by_duration:P1D"),
            ("isolation.level", "serializable"),
            ("enable.partition.eof", "maybe"),
            ("security.protocol", "TLS"),
            ("ssl.truststore.type", "JKS"),
            ("ssl.keystore.type", "PKCS12"),
            ("ssl.endpoint.identification.algorithm", "ldaps"),
            ("transaction.timeout.ms", "0"),
            ("transaction.timeout.ms", "2147483648"),
            ("client.dns.lookup", "default"),
            ("metadata.max.age.ms", "-2"),
            ("topic.metadata.refresh.interval.ms", "never"),
            ("receive.message.max.bytes", "1e9"),
            ("socket.timeout.ms", "1s"),
            ("group.protocol", "cooperative"),
            ("partition.assignment.strategy", "com.example.MyAssignor"),
            ("partition.assignment.strategy", ""),
            ("session.timeout.ms", "soon"),
        ];
        for (key, value) in bad {
            let result = Config::new("a:1").set(key, value);
            assert_eq!(config_error_key(result), key, "{key}={value}");
        }
        let jks = Config::new("a:1")
            .set("ssl.truststore.type", "JKS")
            .expect_err("refused");
        assert!(jks.to_string().contains("only PEM"), "{jks}");
    }

    #[test]
    fn values_are_read_as_java_reads_them() -> Result<(), Error> {
        let config = Config::new("a:1")
            .set("enable.idempotence", " TRUE ")?
            .set("acks", "ALL")?
            .set("compression.type", "LZ4")?
            .set("linger.ms", "9223372036854775807")?
            .set("batch.size", "0")?
            .set("client.dns.lookup", "use_all_dns_ips")?
            .set("security.protocol", "PLAINTEXT")?
            .set("transactional.id", "")?
            .set("partitioner.class", "")?;
        assert!(config.idempotence_explicit());
        assert_eq!(config.acks, Acks::All);
        assert_eq!(config.compression, Compression::Lz4);
        assert_eq!(config.linger, FOREVER);
        assert_eq!(config.batch_size, 1);
        assert_eq!(Config::new("a:1").set("acks", "-1")?.acks, Acks::All);
        assert_eq!(Config::new("a:1").set("acks", "0")?.acks, Acks::None);
        // librdkafka's "no limit" and "never".
        let config = Config::new("a:1")
            .set("message.timeout.ms", "0")?
            .set("topic.metadata.refresh.interval.ms", "-1")?;
        assert_eq!(config.delivery_timeout, FOREVER);
        assert_eq!(config.metadata_max_age, FOREVER);
        config.validate()?;
        // Java's partitioner classes with a franzy equivalent.
        let sticky = "org.apache.kafka.clients.producer.UniformStickyPartitioner";
        let default = "org.apache.kafka.clients.producer.internals.DefaultPartitioner";
        let config = Config::new("a:1").set("partitioner.class", sticky)?;
        assert_eq!(config.partitioner, Partitioner::Random);
        let config = config.set("partitioner.class", default)?;
        assert_eq!(config.partitioner, Partitioner::Murmur2Random);
        let config = config.set("partitioner.ignore.keys", "true")?;
        assert_eq!(config.partitioner, Partitioner::Random);
        let config = config.set("partitioner.ignore.keys", "false")?;
        assert_eq!(config.partitioner, Partitioner::Murmur2Random);
        Ok(())
    }

    #[test]
    fn derived_settings_follow_java_in_any_order() -> Result<(), Error> {
        // delivery.timeout.ms left unset grows to linger + request timeout...
        let grown = Config::new("a:1")
            .set("request.timeout.ms", "200000")?
            .set("linger.ms", "100")?;
        assert_eq!(grown.delivery_timeout, 200_100 * MS);
        grown.validate()?;
        // ... but set too short, it is an error.
        for config in [
            Config::new("a:1")
                .set("delivery.timeout.ms", "1000")?
                .set("request.timeout.ms", "200000")?,
            Config::new("a:1")
                .request_timeout(Duration::from_secs(200))
                .delivery_timeout(Duration::from_secs(1)),
        ] {
            let err = config.validate().expect_err("too short");
            assert!(matches!(&err, Error::Config { key, .. } if key == "delivery.timeout.ms"));
        }
        // An initial retry backoff above the maximum is a fixed backoff of the maximum.
        let fixed = Config::new("a:1").set("retry.backoff.ms", "2000")?;
        assert_eq!(
            (fixed.retry_backoff, fixed.retry_backoff_max),
            (1000 * MS, 1000 * MS)
        );
        let raised = fixed.set("retry.backoff.max.ms", "5000")?;
        assert_eq!(
            (raised.retry_backoff, raised.retry_backoff_max),
            (2000 * MS, 5000 * MS)
        );
        raised.validate()?;
        // reconnect.backoff.ms set alone is also the maximum.
        let alone = Config::new("a:1").set("reconnect.backoff.ms", "200")?;
        assert_eq!(
            (alone.reconnect_backoff, alone.reconnect_backoff_max),
            (200 * MS, 200 * MS)
        );
        let both = alone.set("reconnect.backoff.max.ms", "10000")?;
        assert_eq!(
            (both.reconnect_backoff, both.reconnect_backoff_max),
            (200 * MS, 10_000 * MS)
        );
        let above = Config::new("a:1")
            .reconnect_backoff_max(Duration::from_millis(100))
            .reconnect_backoff(Duration::from_millis(300));
        assert_eq!(above.reconnect_backoff, 100 * MS);
        // The response limit follows fetch.max.bytes unless set.
        let big = Config::new("a:1").set("fetch.max.bytes", "209715200")?;
        assert_eq!(big.max_response_size, 209_715_200 + RESPONSE_OVERHEAD);
        big.validate()?;
        let err = big
            .set("receive.message.max.bytes", "104857600")?
            .validate()
            .expect_err("limit below a fetch");
        assert!(matches!(&err, Error::Config { key, .. } if key == "receive.message.max.bytes"));
        Ok(())
    }

    #[test]
    fn read_committed_is_an_isolation_level_like_any_other() -> Result<(), Error> {
        let config = Config::new("a:1").set("isolation.level", "READ_COMMITTED")?;
        assert_eq!(config.isolation_level, IsolationLevel::ReadCommitted);
        assert!(config.validate().is_ok());
        assert_eq!(
            config.get("isolation.level").as_deref(),
            Some("read_committed")
        );
        Ok(())
    }

    #[test]
    fn refused_until_supported() {
        let err = Config::new("http://a:9093").validate().expect_err("scheme");
        assert!(matches!(&err, Error::Config { key, .. } if key == "bootstrap.servers"));
        let plain = Config::new("PLAINTEXT://a:9092, plaintext://b:9092, SASL_SSL://c:9093");
        assert_eq!(plain.bootstrap_servers, vec!["a:9092", "b:9092", "c:9093"]);
        assert!(plain.validate().is_ok());
    }

    #[test]
    fn group_protocol_refuses_the_keys_it_does_not_use_as_java_does() -> Result<(), Error> {
        // Any case, as Java's `GroupProtocol.valueOf(toUpperCase)`.
        let consumer = Config::new("a:1")
            .group_id("g")
            .set("group.protocol", "CONSUMER")?;
        assert_eq!(consumer.group_protocol, GroupProtocol::Consumer);
        assert_eq!(consumer.get("group.protocol").as_deref(), Some("consumer"));
        consumer.validate()?;
        // The defaults do not count: only keys set explicitly (Java's `originals()`).
        let assigned = consumer.clone().set("group.remote.assignor", "uniform")?;
        assigned.validate()?;
        assert_eq!(assigned.group_remote_assignor.as_deref(), Some("uniform"));
        for (key, value) in [
            ("session.timeout.ms", "10000"),
            ("heartbeat.interval.ms", "1000"),
            ("partition.assignment.strategy", "range"),
        ] {
            let err = consumer
                .clone()
                .set(key, value)?
                .validate()
                .expect_err("refused");
            assert!(
                matches!(&err, Error::Config { key: k, .. } if k == key),
                "{err}"
            );
            assert!(
                err.to_string()
                    .contains(&format!("{key} cannot be set when group.protocol=CONSUMER")),
                "{err}"
            );
        }
        // Every key at fault is named, the first in Java's order is the error's key.
        let err = consumer
            .clone()
            .session_timeout(Duration::from_secs(10))
            .heartbeat_interval(Duration::from_secs(1))
            .validate()
            .expect_err("refused");
        assert!(
            err.to_string().contains(
                "heartbeat.interval.ms, session.timeout.ms cannot be set when \
                 group.protocol=CONSUMER"
            ),
            "{err}"
        );
        // The classic protocol refuses the remote assignor.
        let err = Config::new("a:1")
            .set("group.remote.assignor", "uniform")?
            .validate()
            .expect_err("refused");
        assert!(
            matches!(&err, Error::Config { key, .. } if key == "group.remote.assignor"),
            "{err}"
        );
        assert!(err
            .to_string()
            .contains("group.remote.assignor cannot be set when group.protocol=CLASSIC"));
        // ... and takes the classic keys as before.
        Config::new("a:1")
            .group_id("g")
            .session_timeout(Duration::from_secs(10))
            .partition_assignment_strategy(["range"])?
            .validate()?;
        Ok(())
    }

    #[test]
    fn ignored_keys_are_kept_and_warned_about_once() -> Result<(), Error> {
        // Registers the warning callsites first: a callsite registered by another test's
        // thread while the recorder below is installed could cache "not interested".
        let _ = Config::new("a:1")
            .set("max.poll.records", "warm")
            .and_then(|c| c.set("warm.unknown.key", "x"))
            .and_then(|c| c.set("lingerms", "5"));
        let mut config = Config::new("a:1");
        let lines = warnings(|| {
            config = Config::new("a:1")
                .set("max.poll.records", "uniform")
                .and_then(|c| c.set("max.poll.records", "range"))
                .and_then(|c| c.set("sasl.oauthbearer.client.id", "app"))
                .and_then(|c| c.set("check.crcs", "true"))
                .and_then(|c| c.set("interceptor.classes", ""))
                .and_then(|c| c.set("interceptor.classes", "com.example.Tracing"))
                .and_then(|c| c.set("interceptor.classes", "com.example.Other"))
                .and_then(|c| c.set("schema.registry.url", "http://r:8081"))
                .and_then(|c| c.set("lingerms", "5"))
                .expect("all accepted");
            // Clones and clients built later do not warn again.
            let clone = config
                .clone()
                .set("max.poll.records", "again")
                .expect("accepted");
            clone.validate().expect("valid");
        });
        let warned: Vec<&str> = lines.iter().map(String::as_str).collect();
        assert_eq!(warned.len(), 5, "{warned:#?}");
        assert!(warned[0].starts_with("WARN ignored: max.poll.records (not supported) reason="));
        assert!(warned[1].starts_with("WARN ignored: sasl.oauthbearer.client.id (not supported)"));
        assert!(warned[2].starts_with("WARN ignored: interceptor.classes (not supported)"));
        assert_eq!(warned[3], "WARN ignored: schema.registry.url (unknown)");
        assert_eq!(
            warned[4],
            "WARN ignored: lingerms (unknown) suggestion=\"linger.ms\""
        );
        // Values stay retrievable; librdkafka aliases under Kafka's name.
        let kept: Vec<(&str, &str)> = config.ignored().collect();
        assert_eq!(
            kept,
            vec![
                ("max.poll.records", "range"),
                ("sasl.oauthbearer.client.credentials.client.id", "app"),
                ("check.crcs", "true"),
                ("interceptor.classes", "com.example.Other"),
                ("schema.registry.url", "http://r:8081"),
                ("lingerms", "5"),
            ]
        );
        assert_eq!(config.get("max.poll.records").as_deref(), Some("range"));
        assert_eq!(config.get("check.crcs").as_deref(), Some("true"));
        assert_eq!(
            config.get("sasl.oauthbearer.client.id").as_deref(),
            Some("app")
        );
        assert_eq!(config.get("max.block.ms"), None);
        assert_eq!(
            config.get("linger.ms").as_deref(),
            Some("5"),
            "the typo changed nothing"
        );
        Ok(())
    }

    #[test]
    fn debug_hides_credentials() -> Result<(), Error> {
        let config = Config::new("a:1")
            .set(
                "sasl.jaas.config",
                "PlainLoginModule required password=\"hunter2\";",
            )?
            .set("ssl.keystore.password", "hunter2")?
            .set("basic.auth.user.info", "user:hunter2")?
            .set("sasl.username", "alice")?;
        let debug = format!("{config:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("alice"), "{debug}");
        assert!(config.ignored().any(|(_, value)| value.contains("hunter2")));
        Ok(())
    }

    #[test]
    fn properties_files_and_maps() -> Result<(), Error> {
        let config = Config::from_properties(
            "# producer.properties\n\
             bootstrap.servers = a:9092,\\\n    b:9092\n\
             linger.ms: 20\n\
             linger.ms=10\n\
             key.serializer=org.apache.kafka.common.serialization.StringSerializer\n",
        )?;
        assert_eq!(config.bootstrap_servers, vec!["a:9092", "b:9092"]);
        assert_eq!(config.linger, 10 * MS, "a later line wins");
        config.validate()?;
        let err = Config::from_properties("acks=all\nbatch.size=lots\n").expect_err("bad");
        assert!(matches!(&err, Error::Config { key, .. } if key == "batch.size"));
        let map =
            std::collections::BTreeMap::from([("bootstrap.servers", "a:1"), ("retries", "3")]);
        let config = Config::from_map(map)?;
        assert_eq!(config.retries, 3);
        let config = Config::from_map(vec![("client.id".to_string(), "x".to_string())])?;
        assert_eq!(config.client_id, "x");
        Ok(())
    }

    #[test]
    fn typed_setters_take_strings_and_cap_durations() {
        let (id, servers) = (String::from("owned"), String::from("b:2"));
        let config = Config::new(String::from("a:1"))
            .client_id("borrowed")
            .client_id(id)
            .bootstrap_servers(&servers)
            .linger(Duration::MAX)
            .delivery_timeout(Duration::MAX);
        assert_eq!(config.client_id, "owned");
        assert_eq!(config.bootstrap_servers, vec![servers]);
        assert_eq!((config.linger, config.delivery_timeout), (FOREVER, FOREVER));
    }

    #[test]
    fn idempotence_is_on_by_default_and_yields_to_conflicting_settings() -> Result<(), Error> {
        assert!(Config::new("a:1").idempotence());
        // Not asked for explicitly: acks=1 or no retries turn it off quietly (Java 3.2+).
        assert!(!Config::new("a:1").acks(Acks::Leader).idempotence());
        assert!(!Config::new("a:1").retries(0).idempotence());
        assert!(!Config::new("a:1")
            .set("enable.idempotence", "false")?
            .idempotence());
        // Asked for explicitly: a conflict is an error naming the key.
        let explicit = Config::new("a:1").set("enable.idempotence", "true")?;
        assert!(explicit.idempotence() && explicit.idempotence_explicit());
        for conflicting in [
            explicit.clone().acks(Acks::Leader),
            explicit.clone().retries(0),
        ] {
            let err = conflicting.validate().expect_err("conflict");
            assert!(matches!(&err, Error::Config { key, .. } if key == "enable.idempotence"));
        }
        explicit.validate()
    }

    #[test]
    fn a_transactional_id_implies_idempotence_as_in_java() -> Result<(), Error> {
        let config = Config::new("a:1").set("transactional.id", "orders-tx")?;
        assert_eq!(config.transactional(), Some("orders-tx"));
        assert!(config.idempotence() && config.idempotence_explicit());
        assert_eq!(config.transaction_timeout, Duration::from_secs(60));
        config.validate()?;
        assert_eq!(
            Config::new("a:1").transactional_id("").transactional(),
            None
        );
        let err = config
            .clone()
            .set("enable.idempotence", "false")?
            .validate()
            .expect_err("Java: cannot set a transactional.id without idempotence");
        assert!(matches!(&err, Error::Config { key, .. } if key == "transactional.id"));
        for conflicting in [config.clone().acks(Acks::Leader), config.clone().retries(0)] {
            let err = conflicting.validate().expect_err("conflict");
            assert!(matches!(&err, Error::Config { key, .. } if key == "transactional.id"));
        }
        let err = config
            .transaction_timeout(Duration::ZERO)
            .validate()
            .expect_err("zero");
        assert!(matches!(&err, Error::Config { key, .. } if key == "transaction.timeout.ms"));
        Ok(())
    }

    #[test]
    fn validate_checks_combinations() {
        assert!(Config::new("").validate().is_err());
        assert!(Config::new("nohost").validate().is_err());
        let err = Config::new("a:1")
            .max_in_flight(6)
            .validate()
            .expect_err("too many");
        assert!(
            matches!(&err, Error::Config { key, .. } if key == "max.in.flight.requests.per.connection")
        );
        let err = Config::new("a:1")
            .delivery_timeout(Duration::from_secs(1))
            .validate()
            .expect_err("delivery < request timeout");
        assert!(matches!(&err, Error::Config { key, .. } if key == "delivery.timeout.ms"));
        assert!(Config::new("a:1").validate().is_ok());
    }
}
