//! `franzy serve`: a harness cluster for any Kafka client, until interrupted.
//!
//! Besides the cluster's shape (brokers, topics, address), the flags set the harness's
//! limits, each named after the Kafka setting it stands for where there is one: sizes take
//! bytes with an optional `KiB`/`MiB`/`GiB` suffix, durations a number with `ms`, `s` or `m`.

use std::time::Duration;

use franzy_harness::{Cluster, KafkaVersion, ListenerSecurity, MigrationPolicy, SecurityProtocol};

use super::Interrupt;

/// Options of `franzy serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Number of brokers.
    #[arg(long, default_value_t = 3)]
    pub brokers: i32,
    /// A topic to create, as NAME:PARTITIONS (repeatable).
    #[arg(long = "topic", value_parser = parse_topic)]
    pub topics: Vec<(String, i32)>,
    /// Address to bind and advertise.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port of the first broker; broker i listens on PORT+i. 0 picks free ports.
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Do not create unknown topics on Metadata requests.
    #[arg(long)]
    pub no_auto_create: bool,
    /// Partitions of auto-created topics.
    #[arg(long, default_value_t = 1)]
    pub default_partitions: i32,
    /// Seed for the cluster's fault-injection randomness.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Partitions of __consumer_offsets, over which group coordinators spread
    /// (offsets.topic.num.partitions) [default: 50].
    #[arg(long, value_name = "N")]
    pub offsets_topic_partitions: Option<i32>,
    /// How long a new group waits for more members before its first generation
    /// (group.initial.rebalance.delay.ms) [default: 0].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub group_initial_rebalance_delay: Option<Duration>,
    /// Shortest session timeout a member may ask for (group.min.session.timeout.ms)
    /// [default: 6s].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub group_min_session_timeout: Option<Duration>,
    /// Longest session timeout a member may ask for (group.max.session.timeout.ms)
    /// [default: 30m].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub group_max_session_timeout: Option<Duration>,
    /// Most members per group (group.max.size) [default: 10000].
    #[arg(long, value_name = "N")]
    pub group_max_size: Option<usize>,
    /// Which non-empty groups change between the classic and the KIP-848 consumer
    /// protocol with their members (group.consumer.migration.policy): bidirectional,
    /// upgrade, downgrade or disabled [default: bidirectional].
    #[arg(long, value_parser = parse_migration_policy, value_name = "POLICY")]
    pub group_consumer_migration_policy: Option<MigrationPolicy>,
    /// How often KIP-848 consumer group members heartbeat
    /// (group.consumer.heartbeat.interval.ms) [default: 5s].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub group_consumer_heartbeat_interval: Option<Duration>,
    /// A KIP-848 consumer group member's session (group.consumer.session.timeout.ms)
    /// [default: 45s].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub group_consumer_session_timeout: Option<Duration>,
    /// How long a broker that becomes a coordinator answers COORDINATOR_LOAD_IN_PROGRESS
    /// [default: 0].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub coordinator_load_delay: Option<Duration>,
    /// Largest request frame accepted (socket.request.max.bytes) [default: 100MiB].
    #[arg(long, value_parser = parse_bytes, value_name = "BYTES")]
    pub max_frame_size: Option<usize>,
    /// Most bytes of request frames being received at once, all connections together
    /// (queued.max.request.bytes); at least --max-frame-size [default: 128MiB].
    #[arg(long, value_parser = parse_bytes, value_name = "BYTES")]
    pub queued_max_request_bytes: Option<usize>,
    /// How long a connection in the middle of a frame may receive nothing before it is
    /// closed (connections.max.idle.ms); 0 turns it off [default: 30s].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub idle_timeout: Option<Duration>,
    /// Largest record batch Produce accepts (message.max.bytes) [default: 1048588].
    #[arg(long, value_parser = parse_bytes, value_name = "BYTES")]
    pub message_max_bytes: Option<usize>,
    /// Most partition entries one request may name; the rest are answered INVALID_REQUEST
    /// [default: 10000].
    #[arg(long, value_name = "N")]
    pub max_partitions_per_request: Option<usize>,
    /// Most topics one Metadata or CreateTopics request may create [default: 1000].
    #[arg(long, value_name = "N")]
    pub max_topics_created_per_request: Option<usize>,
    /// Most partitions one CreateTopics or CreatePartitions request may create
    /// [default: 10000].
    #[arg(long, value_name = "N")]
    pub max_partitions_created_per_request: Option<usize>,
    /// Most bytes the compressed batches of one Produce request may inflate to, together
    /// [default: 256MiB].
    #[arg(long, value_parser = parse_bytes, value_name = "BYTES")]
    pub max_decompressed_bytes_per_request: Option<usize>,
    /// Most requests waiting at once (fetches long-polling); past it a request that would
    /// wait is answered at once [default: 100000].
    #[arg(long, value_name = "N")]
    pub max_waiting_requests: Option<usize>,
    /// Most bytes of waiting requests at once [default: 128MiB].
    #[arg(long, value_parser = parse_bytes, value_name = "BYTES")]
    pub max_waiting_bytes: Option<usize>,
    /// How many requests the request record keeps [default: 100000].
    #[arg(long, value_name = "N")]
    pub record_limit: Option<usize>,
    /// How many bytes the request record may hold [default: 64MiB].
    #[arg(long, value_parser = parse_bytes, value_name = "BYTES")]
    pub record_max_bytes: Option<usize>,
    /// Serve the control plane (HTTP/JSON: stop brokers, move leaders, inject faults, read
    /// the request log) on ADDR, e.g. 127.0.0.1:0; its address is printed as
    /// `control http://HOST:PORT` on a line of its own after the bootstrap address (and
    /// after the `ca:` line with TLS).
    #[arg(long, value_name = "ADDR")]
    pub control: Option<String>,
    /// The listeners' protocol: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL. With TLS, a CA
    /// and broker certificates are generated (unless --cert and --key are given) and
    /// `ca: PATH` is printed on the second line of stdout.
    #[arg(long, value_parser = parse_protocol, default_value = "PLAINTEXT", value_name = "PROTOCOL")]
    pub security_protocol: SecurityProtocol,
    /// A user for SASL PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 (repeatable).
    #[arg(long = "user", value_parser = parse_user, value_name = "NAME:PASSWORD")]
    pub users: Vec<(String, String)>,
    /// Where the generated ca.pem, broker.pem and broker-key.pem are written [default: a
    /// new directory under the system's temporary directory].
    #[arg(long, value_name = "DIR")]
    pub tls_dir: Option<std::path::PathBuf>,
    /// The brokers' certificate chain (PEM file) instead of a generated one; needs --key.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<std::path::PathBuf>,
    /// The private key (PEM file) of --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<std::path::PathBuf>,
    /// connections.max.reauth.ms: sessions last at most this long and clients must
    /// re-authenticate [default: no limit].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub reauth: Option<Duration>,
    /// Plants two bugs for `franzy fuzz` to find (its test): a Heartbeat whose generation id
    /// is i32::MAX closes the connection; a ListOffsets whose isolation level is 127 is never
    /// answered.
    #[arg(long, hide = true)]
    pub plant_fuzz_bugs: bool,
    /// Pose as this Kafka release (2.8, 3.0 to 3.9, 4.0, 4.1): advertise and serve only the
    /// API versions its brokers had [default: every version the harness implements].
    #[arg(long, value_name = "VERSION")]
    pub kafka_version: Option<KafkaVersion>,
}

fn parse_protocol(text: &str) -> Result<SecurityProtocol, String> {
    SecurityProtocol::from_name(text)
        .ok_or_else(|| format!("{text:?} is not PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"))
}

fn parse_user(text: &str) -> Result<(String, String), String> {
    match text.split_once(':') {
        Some((name, password)) if !name.is_empty() && !password.is_empty() => {
            Ok((name.to_string(), password.to_string()))
        }
        _ => Err(format!("user {text:?} is not NAME:PASSWORD")),
    }
}

fn parse_topic(spec: &str) -> Result<(String, i32), String> {
    let (name, partitions) = spec
        .rsplit_once(':')
        .ok_or_else(|| format!("topic {spec:?} is not NAME:PARTITIONS"))?;
    let partitions: i32 = partitions
        .parse()
        .map_err(|_| format!("partition count {partitions:?} of topic {name:?} is not a number"))?;
    if name.is_empty() || partitions < 1 {
        return Err(format!(
            "topic {spec:?} needs a name and at least one partition"
        ));
    }
    Ok((name.to_string(), partitions))
}

/// Bytes: a whole number, optionally followed by `B`, `KiB`, `MiB` or `GiB` (also `K`, `M`,
/// `G`, all binary).
fn parse_bytes(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: usize = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size in bytes (e.g. 1048576, 64KiB, 100MiB)"))?;
    let factor: usize = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" | "k" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        other => return Err(format!("unknown size unit {other:?} in {text:?}")),
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// Parses a `group.consumer.migration.policy` value, case-insensitively.
pub fn parse_migration_policy(text: &str) -> Result<MigrationPolicy, String> {
    MigrationPolicy::parse(text).ok_or_else(|| {
        format!("unknown migration policy `{text}` (bidirectional, upgrade, downgrade, disabled)")
    })
}

/// A duration: a whole number followed by `ms`, `s` or `m`; `0` alone is zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 500ms, 30s, 10m)"))?;
    match unit.trim() {
        "ms" => Ok(Duration::from_millis(number)),
        "s" => Ok(Duration::from_secs(number)),
        "m" => number
            .checked_mul(60)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("{text:?} is too long")),
        "" if number == 0 => Ok(Duration::ZERO),
        "" => Err(format!("{text:?} needs a unit: ms, s or m")),
        other => Err(format!("unknown duration unit {other:?} in {text:?}")),
    }
}

/// Runs the cluster; prints the bootstrap address alone on stdout's first line.
pub async fn run(args: ServeArgs) -> Result<(), String> {
    let mut builder = Cluster::builder()
        .brokers(args.brokers)
        .tcp(args.host, args.port)
        .auto_create_topics(!args.no_auto_create)
        .default_partitions(args.default_partitions)
        .seed(args.seed);
    for (name, partitions) in args.topics {
        builder = builder.topic(name, partitions);
    }
    if let Some(n) = args.offsets_topic_partitions {
        builder = builder.offsets_topic_partitions(n);
    }
    if let Some(delay) = args.group_initial_rebalance_delay {
        builder = builder.group_initial_rebalance_delay(delay);
    }
    if let Some(timeout) = args.group_min_session_timeout {
        builder = builder.group_min_session_timeout(timeout);
    }
    if let Some(timeout) = args.group_max_session_timeout {
        builder = builder.group_max_session_timeout(timeout);
    }
    if let Some(policy) = args.group_consumer_migration_policy {
        builder = builder.consumer_group_migration_policy(policy);
    }
    if let Some(interval) = args.group_consumer_heartbeat_interval {
        builder = builder.consumer_group_heartbeat_interval(interval);
    }
    if let Some(timeout) = args.group_consumer_session_timeout {
        builder = builder.consumer_group_session_timeout(timeout);
    }
    if let Some(n) = args.group_max_size {
        builder = builder.group_max_size(n);
    }
    if let Some(delay) = args.coordinator_load_delay {
        builder = builder.coordinator_load_delay(delay);
    }
    if let Some(n) = args.max_frame_size {
        builder = builder.max_frame_size(n);
    }
    if let Some(n) = args.queued_max_request_bytes {
        builder = builder.queued_max_request_bytes(n);
    }
    if let Some(idle) = args.idle_timeout {
        builder = builder.connections_max_idle(idle);
    }
    if let Some(n) = args.message_max_bytes {
        builder = builder.message_max_bytes(n);
    }
    if let Some(n) = args.max_partitions_per_request {
        builder = builder.max_partitions_per_request(n);
    }
    if let Some(n) = args.max_topics_created_per_request {
        builder = builder.max_topics_created_per_request(n);
    }
    if let Some(n) = args.max_partitions_created_per_request {
        builder = builder.max_partitions_created_per_request(n);
    }
    if let Some(n) = args.max_decompressed_bytes_per_request {
        builder = builder.max_decompressed_bytes_per_request(n);
    }
    if let Some(n) = args.max_waiting_requests {
        builder = builder.max_waiting_requests(n);
    }
    if let Some(n) = args.max_waiting_bytes {
        builder = builder.max_waiting_bytes(n);
    }
    if let Some(n) = args.record_limit {
        builder = builder.record_limit(n);
    }
    if let Some(n) = args.record_max_bytes {
        builder = builder.record_max_bytes(n);
    }
    if let Some(release) = args.kafka_version {
        builder = builder.kafka_version(release);
    }
    if args.security_protocol != SecurityProtocol::Plaintext {
        let mut security = ListenerSecurity::new(args.security_protocol);
        for (name, password) in args.users {
            security = security.user(name, password);
        }
        if let Some(dir) = args.tls_dir {
            security = security.tls_dir(dir);
        }
        if let (Some(cert), Some(key)) = (args.cert, args.key) {
            let read = |path: &std::path::Path| {
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
            };
            security = security.certificate(read(&cert)?, read(&key)?);
        }
        if let Some(lifetime) = args.reauth {
            security = security.connections_max_reauth(lifetime);
        }
        builder = builder.security(security);
    }
    let mut interrupt = Interrupt::watch()?;
    let cluster = builder.build().await.map_err(|e| e.to_string())?;
    if args.plant_fuzz_bugs {
        plant_fuzz_bugs(&cluster);
    }
    println!("{}", cluster.bootstrap());
    if let Some(ca) = cluster.ca_pem_path() {
        println!("ca: {}", ca.display());
    }
    let _control = match &args.control {
        Some(address) => {
            let control = cluster
                .serve_control(address)
                .await
                .map_err(|e| format!("control plane: {e}"))?;
            println!("control http://{}", control.local_addr());
            Some(control)
        }
        None => None,
    };
    tracing::info!(bootstrap = %cluster.bootstrap(), "cluster up; interrupt to stop");
    interrupt.recv().await;
    cluster.shutdown().await;
    Ok(())
}

/// The planted bugs of `--plant-fuzz-bugs`, as interceptors on one field value each.
fn plant_fuzz_bugs(cluster: &Cluster) {
    use franzy::proto::{ApiKey, RequestKind};
    use franzy_harness::{Action, Interceptor};
    cluster.intercept(
        Interceptor::new(ApiKey::Heartbeat, Action::Disconnect)
            .when(|body| matches!(body, RequestKind::Heartbeat(h) if h.generation_id == i32::MAX))
            .keep(),
    );
    cluster.intercept(
        Interceptor::new(ApiKey::ListOffsets, Action::NeverAnswer)
            .when(|body| matches!(body, RequestKind::ListOffsets(l) if l.isolation_level == 127))
            .keep(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_bytes("1048576"), Ok(1 << 20));
        assert_eq!(parse_bytes("64KiB"), Ok(64 << 10));
        assert_eq!(parse_bytes("100MiB"), Ok(100 << 20));
        assert_eq!(parse_bytes("2G"), Ok(2 << 30));
        assert_eq!(parse_bytes("7B"), Ok(7));
        assert!(parse_bytes("MiB").is_err());
        assert!(parse_bytes("10 parsecs").is_err());
        assert!(parse_bytes("99999999999999999999GiB").is_err());
    }

    #[test]
    fn durations_need_a_unit_unless_zero() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("1h").is_err());
        assert!(parse_duration("").is_err());
    }
}
