//! Configuration shared by the producer, the consumer and the admin client.
//!
//! Two ways in, one result: typed setters (`Config::new("host:9092").linger(ms(5))`) and
//! Kafka's own property names (`.set("linger.ms", "5")`), so that configs carried over from
//! Java or librdkafka work unchanged. An unknown key or a bad value is an error naming the
//! key; [`Config::validate`] checks the combination, as `build()` of each client does.
//!
//! Defaults are the Java client's (Kafka 4.x), each stated on its setter.

use std::time::Duration;

use crate::error::Error;
use crate::proto::compression::Compression;

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
    /// `random`: every batch of records goes to a sticky partition, key or not.
    Random,
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

/// Which records a consumer sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IsolationLevel {
    /// `read_uncommitted`: everything up to the high watermark.
    ReadUncommitted,
    /// `read_committed`: up to the last stable offset, without aborted transactions.
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
}

/// Client configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) bootstrap_servers: Vec<String>,
    pub(crate) client_id: String,
    pub(crate) acks: Acks,
    pub(crate) linger: Duration,
    pub(crate) batch_size: usize,
    pub(crate) buffer_memory: usize,
    pub(crate) compression: Compression,
    pub(crate) delivery_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) retries: u32,
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
    pub(crate) reconnect_backoff: Duration,
    pub(crate) reconnect_backoff_max: Duration,
    pub(crate) max_response_size: usize,
    pub(crate) enable_partition_eof: bool,
    /// `enable.idempotence`: `None` until set, when it follows the other settings.
    pub(crate) enable_idempotence: Option<bool>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bootstrap_servers: Vec::new(),
            client_id: "franzy".into(),
            acks: Acks::All,
            linger: Duration::from_millis(5),
            batch_size: 16 * 1024,
            buffer_memory: 32 * 1024 * 1024,
            compression: Compression::None,
            delivery_timeout: Duration::from_secs(120),
            request_timeout: Duration::from_secs(30),
            retries: u32::MAX,
            retry_backoff: Duration::from_millis(100),
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
            reconnect_backoff: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_millis(1000),
            max_response_size: 100 * 1024 * 1024,
            enable_partition_eof: false,
            enable_idempotence: None,
        }
    }
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty),* $(,)?) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, value: $ty) -> Self {
                self.$name = value;
                self
            }
        )*
    };
}

impl Config {
    /// A configuration with Kafka's defaults and these bootstrap servers
    /// (comma-separated `host:port` list, as `bootstrap.servers`).
    pub fn new(bootstrap_servers: &str) -> Self {
        Self {
            bootstrap_servers: split_servers(bootstrap_servers),
            ..Self::default()
        }
    }

    setters! {
        /// `client.id`, sent with every request. Default `franzy`.
        client_id: String,
        /// `acks`. Default [`Acks::All`].
        acks: Acks,
        /// `linger.ms`: how long a batch waits for more records. Default 5 ms.
        linger: Duration,
        /// `batch.size`: bytes per partition batch before it is sent. Default 16 KiB.
        batch_size: usize,
        /// `buffer.memory`: bytes of records waiting to be sent before `send` waits.
        /// Default 32 MiB.
        buffer_memory: usize,
        /// `compression.type`. Default none.
        compression: Compression,
        /// `delivery.timeout.ms`: upper bound from `send` to success or failure, retries
        /// included. Default 120 s.
        delivery_timeout: Duration,
        /// `request.timeout.ms`: how long one request waits for its response. Default 30 s.
        request_timeout: Duration,
        /// `retries`: how often a failed batch is retried (within the delivery timeout).
        /// Default unlimited.
        retries: u32,
        /// `retry.backoff.ms`: first wait before a retry. Default 100 ms.
        retry_backoff: Duration,
        /// `retry.backoff.max.ms`: cap of the exponential retry backoff. Default 1 s.
        retry_backoff_max: Duration,
        /// `max.in.flight.requests.per.connection`: 1 to 5. Default 5. Without idempotence,
        /// more than 1 lets a retried batch land after a later one of its partition, as in
        /// Kafka's clients.
        max_in_flight: usize,
        /// `max.request.size`: largest record batch sent. Default 1 MiB.
        max_request_size: usize,
        /// `partitioner`. Default [`Partitioner::Murmur2Random`] (Java-compatible).
        partitioner: Partitioner,
        /// `fetch.min.bytes`. Default 1.
        fetch_min_bytes: i32,
        /// `fetch.max.wait.ms`. Default 500 ms.
        fetch_max_wait: Duration,
        /// `fetch.max.bytes`. Default 50 MiB.
        fetch_max_bytes: i32,
        /// `max.partition.fetch.bytes`. Default 1 MiB.
        max_partition_fetch_bytes: i32,
        /// `auto.offset.reset`. Default [`OffsetReset::Latest`].
        auto_offset_reset: OffsetReset,
        /// `isolation.level`. Default [`IsolationLevel::ReadUncommitted`].
        isolation_level: IsolationLevel,
        /// `metadata.max.age.ms`: periodic metadata refresh. Default 5 min.
        metadata_max_age: Duration,
        /// `reconnect.backoff.ms`: first wait before reconnecting, and before the consumer
        /// asks a broker again after a request to it failed. Default 50 ms.
        reconnect_backoff: Duration,
        /// `reconnect.backoff.max.ms`: cap of the reconnect backoff; also how long a broker
        /// must have failed every request before the consumer's `recv` reports it
        /// (`Error::BrokerUnreachable`, `Error::AllBrokersDown`). Default 1 s.
        reconnect_backoff_max: Duration,
        /// Largest response frame accepted (`receive.message.max.bytes` in librdkafka).
        /// Default 100 MiB.
        max_response_size: usize,
        /// `enable.partition.eof` (librdkafka): the consumer reports reaching the end of
        /// each assigned partition. Default false.
        enable_partition_eof: bool,
    }

    /// `bootstrap.servers`: comma-separated `host:port` list.
    pub fn bootstrap_servers(mut self, servers: &str) -> Self {
        self.bootstrap_servers = split_servers(servers);
        self
    }

    /// `enable.idempotence`: the producer gets a producer id and numbers its batches, so that
    /// retries never write a batch twice and up to 5 batches per partition can be in flight
    /// without reordering (KIP-98). Set to true, it requires `acks=all`, `retries` > 0 and
    /// `max.in.flight.requests.per.connection` <= 5, and `build()` fails otherwise. Left
    /// unset (the default), it is on unless `acks` or `retries` conflict with it, as in the
    /// Java client since 3.2.
    pub fn enable_idempotence(mut self, enabled: bool) -> Self {
        self.enable_idempotence = Some(enabled);
        self
    }

    /// Whether the producer is idempotent with these settings (see
    /// [`Config::enable_idempotence`]).
    pub fn idempotence(&self) -> bool {
        self.enable_idempotence
            .unwrap_or(self.acks == Acks::All && self.retries > 0 && self.max_in_flight <= 5)
    }

    /// Whether idempotence was asked for explicitly (then a broker without InitProducerId is
    /// an error rather than a reason to go without).
    pub(crate) fn idempotence_explicit(&self) -> bool {
        self.enable_idempotence == Some(true)
    }

    /// The configured `batch.size` in bytes.
    pub fn batch_size_bytes(&self) -> usize {
        self.batch_size
    }

    /// Sets a property by its Kafka name, e.g. `.set("linger.ms", "5")`.
    pub fn set(mut self, key: &str, value: &str) -> Result<Self, Error> {
        let v = value.trim();
        match key {
            "bootstrap.servers" => self.bootstrap_servers = split_servers(v),
            "client.id" => self.client_id = v.to_string(),
            "acks" => {
                self.acks = match v {
                    "all" | "-1" => Acks::All,
                    "1" => Acks::Leader,
                    "0" => Acks::None,
                    _ => return Err(Error::config(key, format!("{v:?} is not all, -1, 0 or 1"))),
                }
            }
            "linger.ms" => self.linger = millis(key, v)?,
            "batch.size" => self.batch_size = number(key, v)?,
            "buffer.memory" => self.buffer_memory = number(key, v)?,
            "compression.type" | "compression.codec" => {
                self.compression = match v {
                    "none" => Compression::None,
                    "gzip" => Compression::Gzip,
                    "snappy" => Compression::Snappy,
                    "lz4" => Compression::Lz4,
                    "zstd" => Compression::Zstd,
                    _ => {
                        return Err(Error::config(
                            key,
                            format!("{v:?} is not none, gzip, snappy, lz4 or zstd"),
                        ))
                    }
                }
            }
            "delivery.timeout.ms" => self.delivery_timeout = millis(key, v)?,
            "request.timeout.ms" => self.request_timeout = millis(key, v)?,
            "retries" => self.retries = number(key, v)?,
            "retry.backoff.ms" => self.retry_backoff = millis(key, v)?,
            "retry.backoff.max.ms" => self.retry_backoff_max = millis(key, v)?,
            "max.in.flight.requests.per.connection" => self.max_in_flight = number(key, v)?,
            "max.request.size" => self.max_request_size = number(key, v)?,
            "partitioner" => {
                self.partitioner = match v {
                    "murmur2_random" => Partitioner::Murmur2Random,
                    "murmur2" => Partitioner::Murmur2,
                    "random" => Partitioner::Random,
                    _ => {
                        return Err(Error::config(
                            key,
                            format!("{v:?} is not murmur2_random, murmur2 or random"),
                        ))
                    }
                }
            }
            "fetch.min.bytes" => self.fetch_min_bytes = number(key, v)?,
            "fetch.max.wait.ms" => self.fetch_max_wait = millis(key, v)?,
            "fetch.max.bytes" => self.fetch_max_bytes = number(key, v)?,
            "max.partition.fetch.bytes" => self.max_partition_fetch_bytes = number(key, v)?,
            "auto.offset.reset" => {
                self.auto_offset_reset = match v {
                    "earliest" | "smallest" | "beginning" => OffsetReset::Earliest,
                    "latest" | "largest" | "end" => OffsetReset::Latest,
                    "none" | "error" => OffsetReset::None,
                    _ => {
                        return Err(Error::config(
                            key,
                            format!("{v:?} is not earliest, latest or none"),
                        ))
                    }
                }
            }
            "isolation.level" => {
                self.isolation_level = match v {
                    "read_uncommitted" => IsolationLevel::ReadUncommitted,
                    "read_committed" => IsolationLevel::ReadCommitted,
                    _ => {
                        return Err(Error::config(
                            key,
                            format!("{v:?} is not read_uncommitted or read_committed"),
                        ))
                    }
                }
            }
            "metadata.max.age.ms" => self.metadata_max_age = millis(key, v)?,
            "reconnect.backoff.ms" => self.reconnect_backoff = millis(key, v)?,
            "reconnect.backoff.max.ms" => self.reconnect_backoff_max = millis(key, v)?,
            "receive.message.max.bytes" => self.max_response_size = number(key, v)?,
            "enable.partition.eof" => self.enable_partition_eof = boolean(key, v)?,
            "enable.idempotence" => self.enable_idempotence = Some(boolean(key, v)?),
            _ => return Err(Error::config(key, "unknown configuration key")),
        }
        Ok(self)
    }

    /// Checks the settings together; every client's `build()` calls this.
    pub fn validate(&self) -> Result<(), Error> {
        if self.bootstrap_servers.is_empty() {
            return Err(Error::config("bootstrap.servers", "no servers given"));
        }
        for server in &self.bootstrap_servers {
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
        if self.enable_idempotence == Some(true) {
            if self.acks != Acks::All {
                return Err(Error::config("enable.idempotence", "requires acks=all"));
            }
            if self.retries == 0 {
                return Err(Error::config("enable.idempotence", "requires retries > 0"));
            }
        }
        if self.batch_size == 0 || self.batch_size > self.max_request_size.max(1) * 16 {
            return Err(Error::config(
                "batch.size",
                format!("{} is out of range", self.batch_size),
            ));
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
        if self.delivery_timeout < self.linger + self.request_timeout {
            return Err(Error::config(
                "delivery.timeout.ms",
                "must be at least linger.ms + request.timeout.ms",
            ));
        }
        if self.retry_backoff_max < self.retry_backoff {
            return Err(Error::config(
                "retry.backoff.max.ms",
                "must be at least retry.backoff.ms",
            ));
        }
        if self.reconnect_backoff_max < self.reconnect_backoff {
            return Err(Error::config(
                "reconnect.backoff.max.ms",
                "must be at least reconnect.backoff.ms",
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
        if self.max_response_size < fetch_max.saturating_add(64 * 1024) {
            return Err(Error::config(
                "receive.message.max.bytes",
                "must exceed fetch.max.bytes by at least 64 KiB of response overhead",
            ));
        }
        Ok(())
    }
}

fn split_servers(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

fn millis(key: &str, value: &str) -> Result<Duration, Error> {
    value
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| {
            Error::config(
                key,
                format!("{value:?} is not a whole number of milliseconds"),
            )
        })
}

fn boolean(key: &str, value: &str) -> Result<bool, Error> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(Error::config(
            key,
            format!("{value:?} is not true or false"),
        )),
    }
}

fn number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, Error> {
    value
        .parse::<T>()
        .map_err(|_| Error::config(key, format!("{value:?} is not a valid number")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_property_names_set_the_typed_fields() -> Result<(), Error> {
        let config = Config::new("a:9092")
            .set("linger.ms", "7")?
            .set("acks", "1")?
            .set("compression.type", "zstd")?
            .set("auto.offset.reset", "earliest")?
            .set("isolation.level", "read_committed")?
            .set("bootstrap.servers", "x:1, y:2")?;
        assert_eq!(config.linger, Duration::from_millis(7));
        assert_eq!(config.acks, Acks::Leader);
        assert_eq!(config.compression, Compression::Zstd);
        assert_eq!(config.auto_offset_reset, OffsetReset::Earliest);
        assert_eq!(config.isolation_level, IsolationLevel::ReadCommitted);
        assert_eq!(
            config.bootstrap_servers,
            vec!["x:1".to_string(), "y:2".to_string()]
        );
        config.validate()
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let err = Config::new("a:1")
            .set("lingerms", "5")
            .expect_err("unknown key");
        assert!(matches!(&err, Error::Config { key, .. } if key == "lingerms"));
        let err = Config::new("a:1")
            .set("batch.size", "big")
            .expect_err("bad number");
        assert!(matches!(&err, Error::Config { key, .. } if key == "batch.size"));
        let err = Config::new("a:1").set("acks", "2").expect_err("bad acks");
        assert!(err.to_string().contains("acks"));
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
