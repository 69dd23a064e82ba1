//! The one table of property names: every key of Apache Kafka's producer, consumer and admin
//! configs (Kafka 4.x `ProducerConfig`, `ConsumerConfig`, `AdminClientConfig`,
//! `CommonClientConfigs`, `SslConfigs`, `SaslConfigs`) and of librdkafka's
//! `CONFIGURATION.md`, each either supported (parsed into a typed field, shown back by
//! `Config::get`) or ignored (kept as text, warned about once).
//!
//! `Config::set`, `Config::get`, the defaults listing in the module doc (`keys.md`, checked
//! by a test) and the setters' stated defaults (also checked) all come from [`KEYS`].

use std::time::Duration;

use super::{Acks, Config, GroupProtocol, IsolationLevel, OffsetReset, Partitioner, FOREVER};
use crate::proto::compression::Compression;
use crate::security::SecuritySettings;

/// Which of Kafka's clients define a key (a key may be set on any `Config`; this is what the
/// docs listing shows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Clients(u8);

impl Clients {
    const P: Self = Self(1);
    const C: Self = Self(2);
    const A: Self = Self(4);
    const PC: Self = Self(3);
    const CA: Self = Self(6);
    const PA: Self = Self(5);
    const PCA: Self = Self(7);

    /// Whether every client of `other` is among these.
    #[cfg(test)]
    pub(super) fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    #[cfg(test)]
    fn letters(self) -> String {
        [(Self::P, 'P'), (Self::C, 'C'), (Self::A, 'A')]
            .iter()
            .filter(|(c, _)| self.contains(*c))
            .map(|(_, l)| *l)
            .collect()
    }
}

/// Whose name a table entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Origin {
    /// Apache Kafka's Java clients (librdkafka may share the name).
    Kafka,
    /// librdkafka only.
    Librdkafka,
}

/// Parses a value into the configuration, or says what is wrong with it.
pub(super) type Apply = fn(&mut Config, &str) -> Result<(), String>;
/// Renders the configuration's current value in property syntax.
pub(super) type Show = fn(&Config) -> String;

/// What franzy does with a key.
#[derive(Clone, Copy)]
pub(super) enum Kind {
    /// Parsed and honoured.
    Supported {
        /// Sets the value.
        apply: Apply,
        /// Shows the value (`Config::get`); `set(key, show())` changes nothing it shows.
        show: Show,
    },
    /// Kept as text and warned about once, except for the `inert` values (compared without
    /// case; `*` matches any value), with which the setting asks for nothing franzy does
    /// not do.
    Ignored {
        /// Values that need no warning.
        inert: &'static [&'static str],
    },
}

/// One row of the table.
#[derive(Clone, Copy)]
pub(super) struct Key {
    /// The canonical name (Kafka's, where Kafka has one).
    pub(super) name: &'static str,
    /// Other names with the same meaning and values (librdkafka's).
    pub(super) aliases: &'static [&'static str],
    /// The clients that define it (read by the docs listing and the tests only).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(super) clients: Clients,
    /// Whose name it is.
    pub(super) origin: Origin,
    /// Supported or ignored.
    pub(super) kind: Kind,
    /// The default in property syntax, supported keys only (read by the docs listing and
    /// the tests, which check it against the defaults in effect).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(super) default: &'static str,
    /// Supported keys: what it does. Ignored keys: why it is ignored.
    pub(super) doc: &'static str,
    /// Its value is a password or key: never shown by `Debug`.
    pub(super) secret: bool,
}

impl Key {
    const fn also(mut self, aliases: &'static [&'static str]) -> Self {
        self.aliases = aliases;
        self
    }

    const fn inert(mut self, values: &'static [&'static str]) -> Self {
        self.kind = Kind::Ignored { inert: values };
        self
    }

    const fn secret(mut self) -> Self {
        self.secret = true;
        self
    }

    const fn librdkafka(mut self) -> Self {
        self.origin = Origin::Librdkafka;
        self
    }

    /// Whether `value` is one of the values that need no warning.
    pub(super) fn is_inert(&self, value: &str) -> bool {
        match self.kind {
            Kind::Ignored { inert } => inert
                .iter()
                .any(|v| *v == "*" || v.eq_ignore_ascii_case(value)),
            Kind::Supported { .. } => true,
        }
    }
}

const fn supported(
    name: &'static str,
    clients: Clients,
    default: &'static str,
    doc: &'static str,
    apply: Apply,
    show: Show,
) -> Key {
    Key {
        name,
        aliases: &[],
        clients,
        origin: Origin::Kafka,
        kind: Kind::Supported { apply, show },
        default,
        doc,
        secret: false,
    }
}

const fn ignored(name: &'static str, clients: Clients, why: &'static str) -> Key {
    Key {
        name,
        aliases: &[],
        clients,
        origin: Origin::Kafka,
        kind: Kind::Ignored { inert: &[] },
        default: "",
        doc: why,
        secret: false,
    }
}

/// A librdkafka-only key franzy ignores.
const fn rdkafka(name: &'static str, clients: Clients, why: &'static str) -> Key {
    ignored(name, clients, why).librdkafka()
}

/// The table entry for `name` (canonical or alias), compared exactly, as Kafka does.
pub(super) fn lookup(name: &str) -> Option<&'static Key> {
    KEYS.iter()
        .find(|key| key.name == name || key.aliases.contains(&name))
}

/// The known name closest to an unknown `name` (at most two edits away), for the warning.
pub(super) fn suggestion(name: &str) -> Option<&'static str> {
    KEYS.iter()
        .flat_map(|key| std::iter::once(&key.name).chain(key.aliases))
        .map(|known| (edit_distance(name, known), *known))
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, known)| known)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

// Why keys are ignored; the docs listing groups ignored keys by these.
const GROUPS: &str = "librdkafka's local offset store and coordinator polling, which \
                      franzy does not have: offsets are committed to the group coordinator, \
                      and only positions already handed to the application";
const SERDE: &str = "franzy sends and returns bytes: (de)serialize in the application \
                     (the ByteArray classes are what franzy does anyway)";
const INTERCEPTORS: &str = "interceptors are Java classes, which franzy cannot load";
const TLS: &str = "TLS tuning franzy leaves to rustls's safe defaults (TLS 1.2 and 1.3, \
                   its cipher suites, its random source)";
const SASL: &str = "franzy speaks PLAIN, SCRAM-SHA-256/512 and OAUTHBEARER (unsecured JWTs \
                    from the JAAS options, other tokens from a TokenProvider): Kerberos, login \
                    classes and token endpoints are not implemented";
const PEM_ONLY: &str = "franzy reads PEM stores only, which have no store password";
const ENCRYPTED_KEYS: &str = "encrypted private keys are not supported: decrypt the key";
const METRICS: &str = "franzy has no Java metrics registry: its statistics come from `stats()`, \
                       `statistics.interval.ms` and the `metrics` feature";
const TRANSACTIONS: &str = "two-phase commit with an external transaction manager (KIP-939) \
                            is not implemented";
const LEVELS: &str = "franzy compresses at one fixed level per codec";
const PRODUCER: &str = "not implemented by franzy's producer yet";
const CONSUMER: &str = "not implemented by franzy's consumer yet (franzy always checks CRCs, \
                        and its metadata requests always allow auto-creation)";
const NETWORK: &str = "connection tuning franzy does not implement yet (it uses the OS's \
                       socket buffers, sets TCP_NODELAY, keeps idle connections)";
const ADMIN: &str = "the admin client is not implemented yet";
const SHARE: &str = "share groups (KIP-932) are not implemented";
const LIBRDKAFKA: &str = "librdkafka's own machinery: logging, statistics, plugins, \
                          legacy and deprecated settings";

const P: Clients = Clients::P;
const C: Clients = Clients::C;
const A: Clients = Clients::A;
const PC: Clients = Clients::PC;
const CA: Clients = Clients::CA;
const PA: Clients = Clients::PA;
const PCA: Clients = Clients::PCA;

/// Every key franzy knows, supported ones first (in the order of the docs listing).
pub(super) static KEYS: &[Key] = &[
    // Supported, every client.
    supported(
        "bootstrap.servers",
        PCA,
        "",
        "comma-separated `host:port` list to discover the cluster from; a `PLAINTEXT://` \
         prefix is accepted",
        |c, v| {
            c.bootstrap_servers = super::split_servers(v);
            Ok(())
        },
        |c| c.bootstrap_servers.join(","),
    )
    .also(&["metadata.broker.list"]),
    supported(
        "client.id",
        PCA,
        "franzy",
        "sent with every request, for the brokers' logs and quotas",
        |c, v| {
            c.client_id = v.to_string();
            Ok(())
        },
        |c| c.client_id.clone(),
    ),
    supported(
        "client.dns.lookup",
        PCA,
        "use_all_dns_ips",
        "every address a name resolves to is tried in turn; \
         `resolve_canonical_bootstrap_servers_only` changes only the names Kerberos sees, \
         so it connects the same way",
        |_, v| {
            choice(
                v,
                &[
                    ("use_all_dns_ips", ()),
                    ("resolve_canonical_bootstrap_servers_only", ()),
                ],
            )
        },
        |_| "use_all_dns_ips".into(),
    ),
    supported(
        "security.protocol",
        PCA,
        "PLAINTEXT",
        "`PLAINTEXT`, `SSL` (TLS), `SASL_PLAINTEXT` or `SASL_SSL`",
        |c, v| c.security.set_protocol(v),
        |c| c.security.protocol.name().into(),
    ),
    supported(
        "ssl.truststore.type",
        PCA,
        "PEM",
        "`PEM` only (Java's default, `JKS`, and `PKCS12` are refused: convert them to PEM)",
        |_, v| crate::security::check_store_type(v),
        |_| "PEM".into(),
    ),
    supported(
        "ssl.truststore.location",
        PCA,
        "",
        "PEM file of the CAs to trust instead of the system's roots",
        |c, v| SecuritySettings::set_optional(&mut c.security.truststore_location, v),
        |c| c.security.truststore_location.clone().unwrap_or_default(),
    ),
    supported(
        "ssl.truststore.certificates",
        PCA,
        "",
        "PEM text of the CAs to trust instead of the system's roots",
        |c, v| SecuritySettings::set_optional(&mut c.security.truststore_certificates, v),
        |c| {
            c.security
                .truststore_certificates
                .clone()
                .unwrap_or_default()
        },
    )
    .also(&["ssl.ca.pem"]),
    supported(
        "ssl.ca.location",
        PCA,
        "",
        "PEM file (or directory of `.pem`/`.crt` files) of the CAs to trust instead of \
         the system's roots",
        |c, v| SecuritySettings::set_optional(&mut c.security.ca_location, v),
        |c| c.security.ca_location.clone().unwrap_or_default(),
    )
    .librdkafka(),
    supported(
        "ssl.keystore.type",
        PCA,
        "PEM",
        "`PEM` only (`JKS` and `PKCS12` are refused: convert them to PEM)",
        |_, v| crate::security::check_store_type(v),
        |_| "PEM".into(),
    ),
    supported(
        "ssl.keystore.location",
        PCA,
        "",
        "PEM file with the client certificate chain and its unencrypted private key (mTLS)",
        |c, v| SecuritySettings::set_optional(&mut c.security.keystore_location, v),
        |c| c.security.keystore_location.clone().unwrap_or_default(),
    ),
    supported(
        "ssl.keystore.certificate.chain",
        PCA,
        "",
        "PEM text of the client certificate chain (mTLS)",
        |c, v| SecuritySettings::set_optional(&mut c.security.keystore_certificate_chain, v),
        |c| {
            c.security
                .keystore_certificate_chain
                .clone()
                .unwrap_or_default()
        },
    )
    .also(&["ssl.certificate.pem"]),
    supported(
        "ssl.keystore.key",
        PCA,
        "",
        "PEM text of the client certificate's unencrypted private key (mTLS)",
        |c, v| SecuritySettings::set_optional(&mut c.security.keystore_key, v),
        |c| hidden(&c.security.keystore_key),
    )
    .also(&["ssl.key.pem"])
    .secret(),
    supported(
        "ssl.certificate.location",
        PCA,
        "",
        "PEM file of the client certificate chain (mTLS)",
        |c, v| SecuritySettings::set_optional(&mut c.security.certificate_location, v),
        |c| c.security.certificate_location.clone().unwrap_or_default(),
    )
    .librdkafka(),
    supported(
        "ssl.key.location",
        PCA,
        "",
        "PEM file of the client certificate's unencrypted private key (mTLS)",
        |c, v| SecuritySettings::set_optional(&mut c.security.key_location, v),
        |c| c.security.key_location.clone().unwrap_or_default(),
    )
    .librdkafka(),
    supported(
        "ssl.endpoint.identification.algorithm",
        PCA,
        "https",
        "`https`: the broker's certificate must name the host connected to (DNS name or IP \
         address); empty (or librdkafka's `none`): any name",
        |c, v| c.security.set_endpoint_identification(v),
        |c| {
            if c.security.endpoint_identification {
                "https".into()
            } else {
                String::new()
            }
        },
    ),
    supported(
        "enable.ssl.certificate.verification",
        PCA,
        "true",
        "`false` trusts any broker certificate (tests only)",
        |c, v| {
            c.security.verify_certificates = boolean(v)?;
            Ok(())
        },
        |c| c.security.verify_certificates.to_string(),
    )
    .librdkafka(),
    supported(
        "sasl.mechanism",
        PCA,
        "GSSAPI",
        "`PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512` or `OAUTHBEARER`; Kafka's default, \
         `GSSAPI` (Kerberos), is refused when SASL is used",
        |c, v| c.security.set_mechanism(v),
        |c| c.security.mechanism.clone(),
    )
    .also(&["sasl.mechanisms"]),
    supported(
        "sasl.jaas.config",
        PCA,
        "",
        "`PlainLoginModule` or `ScramLoginModule` with `username` and `password`, or \
         `OAuthBearerLoginModule` with `unsecuredLoginStringClaim_sub` (unsecured JWTs)",
        |c, v| SecuritySettings::set_optional(&mut c.security.jaas, v),
        |c| hidden(&c.security.jaas),
    )
    .secret(),
    supported(
        "sasl.username",
        PCA,
        "",
        "user name for PLAIN and SCRAM when `sasl.jaas.config` is not set",
        |c, v| SecuritySettings::set_optional(&mut c.security.username, v),
        |c| c.security.username.clone().unwrap_or_default(),
    )
    .librdkafka(),
    supported(
        "sasl.password",
        PCA,
        "",
        "password for PLAIN and SCRAM when `sasl.jaas.config` is not set",
        |c, v| SecuritySettings::set_optional(&mut c.security.password, v),
        |c| hidden(&c.security.password),
    )
    .librdkafka()
    .secret(),
    supported(
        "request.timeout.ms",
        PCA,
        "30000",
        "how long a request waits for its response before the connection is given up",
        |c, v| {
            c.request_timeout = millis(v)?;
            Ok(())
        },
        |c| show_millis(c.request_timeout),
    )
    .also(&["socket.timeout.ms"]),
    supported(
        "metadata.max.age.ms",
        PCA,
        "300000",
        "metadata is refreshed at least this often; `-1` (librdkafka's \
         `topic.metadata.refresh.interval.ms=-1`): only when needed",
        |c, v| {
            c.metadata_max_age = millis_or_never(v)?;
            Ok(())
        },
        |c| show_millis(c.metadata_max_age),
    )
    .also(&["topic.metadata.refresh.interval.ms"]),
    supported(
        "reconnect.backoff.ms",
        PCA,
        "50",
        "first wait before reconnecting to a broker (and before the consumer asks a broker \
         again after a failed request), doubling up to `reconnect.backoff.max.ms` (set alone, \
         it is also the maximum, as in Java)",
        |c, v| {
            c.given.reconnect_backoff = Some(millis(v)?);
            Ok(())
        },
        |c| show_millis(c.reconnect_backoff),
    ),
    supported(
        "reconnect.backoff.max.ms",
        PCA,
        "1000",
        "longest wait before reconnecting; also how long a broker must have failed every \
         request before the consumer reports it (`BrokerUnreachable`, `AllBrokersDown`)",
        |c, v| {
            c.given.reconnect_backoff_max = Some(millis(v)?);
            Ok(())
        },
        |c| show_millis(c.reconnect_backoff_max),
    ),
    supported(
        "retry.backoff.ms",
        PCA,
        "100",
        "first wait before retrying a failed request, doubling up to `retry.backoff.max.ms` \
         (above it: a fixed wait of the maximum, as in Java)",
        |c, v| {
            c.given.retry_backoff = Some(millis(v)?);
            Ok(())
        },
        |c| show_millis(c.retry_backoff),
    ),
    supported(
        "retry.backoff.max.ms",
        PCA,
        "1000",
        "longest wait before a retry",
        |c, v| {
            c.retry_backoff_max = millis(v)?;
            Ok(())
        },
        |c| show_millis(c.retry_backoff_max),
    ),
    supported(
        "receive.message.max.bytes",
        PCA,
        "104857600",
        "largest response accepted; unless set, raised to `fetch.max.bytes` + 64 KiB when \
         that is larger, as librdkafka does",
        |c, v| {
            c.given.max_response_size = Some(number(v)?);
            Ok(())
        },
        |c| c.max_response_size.to_string(),
    )
    .librdkafka(),
    // Supported, producer.
    supported(
        "acks",
        P,
        "all",
        "acknowledgements a write waits for: `all` (or `-1`), `1` (the leader) or `0` (none)",
        |c, v| {
            c.acks = choice(
                v,
                &[
                    ("all", Acks::All),
                    ("-1", Acks::All),
                    ("1", Acks::Leader),
                    ("0", Acks::None),
                ],
            )?;
            Ok(())
        },
        |c| c.acks.name().into(),
    )
    .also(&["request.required.acks"]),
    supported(
        "enable.idempotence",
        P,
        "true",
        "numbered batches, so retries never duplicate or reorder (KIP-98); unless set, on \
         when `acks=all` and `retries` > 0, as in Java",
        |c, v| {
            c.enable_idempotence = Some(boolean(v)?);
            Ok(())
        },
        |c| c.idempotence().to_string(),
    ),
    supported(
        "linger.ms",
        P,
        "5",
        "how long a batch waits for more records (fractions of a millisecond, as librdkafka \
         takes them, are kept)",
        |c, v| {
            c.linger = fractional_millis(v)?;
            Ok(())
        },
        |c| show_millis(c.linger),
    )
    .also(&["queue.buffering.max.ms"]),
    supported(
        "batch.size",
        P,
        "16384",
        "bytes a partition's batch collects before it is sent; `0` (no batching in Java) \
         is read as 1: every record closes its batch",
        |c, v| {
            c.batch_size = number::<usize>(v)?.max(1);
            Ok(())
        },
        |c| c.batch_size.to_string(),
    ),
    supported(
        "buffer.memory",
        P,
        "33554432",
        "bytes of records waiting to be sent before `send` waits for room",
        |c, v| {
            c.buffer_memory = number(v)?;
            Ok(())
        },
        |c| c.buffer_memory.to_string(),
    ),
    supported(
        "queue.buffering.max.kbytes",
        P,
        "32768",
        "`buffer.memory` in KiB",
        |c, v| {
            c.buffer_memory = number::<usize>(v)?
                .checked_mul(1024)
                .ok_or_else(|| format!("{v:?} KiB is too large"))?;
            Ok(())
        },
        |c| (c.buffer_memory / 1024).to_string(),
    )
    .librdkafka(),
    supported(
        "compression.type",
        P,
        "none",
        "`none`, `gzip`, `snappy`, `lz4` or `zstd`",
        |c, v| {
            c.compression = choice(
                v,
                &[
                    ("none", Compression::None),
                    ("gzip", Compression::Gzip),
                    ("snappy", Compression::Snappy),
                    ("lz4", Compression::Lz4),
                    ("zstd", Compression::Zstd),
                ],
            )?;
            Ok(())
        },
        |c| c.compression.name().into(),
    )
    .also(&["compression.codec"]),
    supported(
        "delivery.timeout.ms",
        P,
        "120000",
        "longest time from `send` to success or failure, retries included; `0` \
         (librdkafka): no limit. Unless set, raised to `linger.ms` + `request.timeout.ms`, \
         as in Java",
        |c, v| {
            let timeout = millis(v)?;
            c.given.delivery_timeout = Some(if timeout.is_zero() { FOREVER } else { timeout });
            Ok(())
        },
        |c| show_millis(c.delivery_timeout),
    )
    .also(&["message.timeout.ms"]),
    supported(
        "retries",
        PA,
        "2147483647",
        "how often a failed batch is retried, within `delivery.timeout.ms`",
        |c, v| {
            c.retries = number(v)?;
            Ok(())
        },
        |c| c.retries.to_string(),
    )
    .also(&["message.send.max.retries"]),
    supported(
        "max.in.flight.requests.per.connection",
        P,
        "5",
        "1 to 5 batches of a partition in flight; without idempotence, more than 1 lets a \
         retried batch land after a later one, as in Kafka's clients",
        |c, v| {
            c.max_in_flight = number(v)?;
            Ok(())
        },
        |c| c.max_in_flight.to_string(),
    )
    .also(&["max.in.flight"]),
    supported(
        "max.request.size",
        P,
        "1048576",
        "largest Produce request, and so the largest record",
        |c, v| {
            c.max_request_size = number(v)?;
            Ok(())
        },
        |c| c.max_request_size.to_string(),
    )
    .also(&["message.max.bytes"]),
    supported(
        "partitioner",
        P,
        "murmur2_random",
        "`murmur2_random` (Java's default partitioning), `murmur2` (keyless records hash \
         the empty key) or `random` (sticky, keys ignored); librdkafka's CRC32 and FNV-1a \
         partitioners are refused: they place keys elsewhere",
        |c, v| {
            c.partitioner = partitioner(v)?;
            Ok(())
        },
        |c| c.partitioner.name().into(),
    )
    .librdkafka(),
    supported(
        "partitioner.class",
        P,
        "",
        "empty, or Java's `DefaultPartitioner` / `UniformStickyPartitioner` (read as \
         `partitioner=murmur2_random` / `random`); other classes cannot be loaded and are \
         refused, since records would land in other partitions",
        |c, v| {
            c.partitioner = match v {
                "" => return Ok(()),
                "org.apache.kafka.clients.producer.internals.DefaultPartitioner" => {
                    Partitioner::Murmur2Random
                }
                "org.apache.kafka.clients.producer.UniformStickyPartitioner" => Partitioner::Random,
                _ => {
                    return Err(format!(
                        "{v:?} is not supported: franzy cannot load Java classes (set \
                         `partitioner` to one of franzy's partitioners instead)"
                    ))
                }
            };
            Ok(())
        },
        |_| String::new(),
    ),
    supported(
        "partitioner.ignore.keys",
        P,
        "false",
        "`true`: keyed records are spread like keyless ones (`partitioner=random`)",
        |c, v| {
            if boolean(v)? {
                c.partitioner = Partitioner::Random;
            } else if c.partitioner == Partitioner::Random {
                c.partitioner = Partitioner::Murmur2Random;
            }
            Ok(())
        },
        |c| (c.partitioner == Partitioner::Random).to_string(),
    ),
    supported(
        "transactional.id",
        P,
        "",
        "makes the producer transactional: records are sent inside transactions \
         (`init_transactions`, `begin_transaction`, `commit_transaction`), and a new producer \
         with the same id fences this one; implies `enable.idempotence`. Empty: none",
        |c, v| {
            c.transactional_id = (!v.is_empty()).then(|| v.to_string());
            Ok(())
        },
        |c| c.transactional_id.clone().unwrap_or_default(),
    ),
    supported(
        "transaction.timeout.ms",
        P,
        "60000",
        "longest a transaction may stay open before the coordinator aborts it (at most the \
         brokers' `transaction.max.timeout.ms`); also how long a commit retries an \
         unanswered EndTxn before its outcome is reported unknown",
        |c, v| {
            let timeout = millis(v)?;
            if timeout.is_zero() || timeout.as_millis() > i32::MAX as u128 {
                return Err(format!("{v} is not between 1 and {}", i32::MAX));
            }
            c.transaction_timeout = timeout;
            Ok(())
        },
        |c| show_millis(c.transaction_timeout),
    ),
    // Supported, consumer.
    supported(
        "auto.offset.reset",
        C,
        "latest",
        "where a partition without a valid position starts: `earliest`, `latest` or `none` \
         (an error); librdkafka's `smallest`, `beginning`, `largest`, `end`, `error` too",
        |c, v| {
            if v.get(..12)
                .is_some_and(|prefix| prefix.eq_ignore_ascii_case("by_duration:"))
            {
                return Err("by_duration is not supported yet".into());
            }
            c.auto_offset_reset = choice(
                v,
                &[
                    ("earliest", OffsetReset::Earliest),
                    ("latest", OffsetReset::Latest),
                    ("none", OffsetReset::None),
                    ("smallest", OffsetReset::Earliest),
                    ("beginning", OffsetReset::Earliest),
                    ("largest", OffsetReset::Latest),
                    ("end", OffsetReset::Latest),
                    ("error", OffsetReset::None),
                ],
            )?;
            Ok(())
        },
        |c| c.auto_offset_reset.name().into(),
    ),
    supported(
        "isolation.level",
        C,
        "read_uncommitted",
        "`read_uncommitted` (everything, up to the high watermark) or `read_committed` \
         (committed transactions only, up to the last stable offset); the default is Java's \
         (librdkafka's default is `read_committed`)",
        |c, v| {
            let level = choice(
                v,
                &[
                    ("read_uncommitted", IsolationLevel::ReadUncommitted),
                    ("read_committed", IsolationLevel::ReadCommitted),
                ],
            )?;
            c.isolation_level = level;
            Ok(())
        },
        |c| c.isolation_level.name().into(),
    ),
    supported(
        "fetch.min.bytes",
        C,
        "1",
        "bytes a fetch waits for (up to `fetch.max.wait.ms`)",
        |c, v| {
            c.fetch_min_bytes = non_negative(v)?;
            Ok(())
        },
        |c| c.fetch_min_bytes.to_string(),
    ),
    supported(
        "fetch.max.wait.ms",
        C,
        "500",
        "longest a broker holds a fetch for `fetch.min.bytes`; must be below \
         `request.timeout.ms`",
        |c, v| {
            c.fetch_max_wait = millis(v)?;
            Ok(())
        },
        |c| show_millis(c.fetch_max_wait),
    )
    .also(&["fetch.wait.max.ms"]),
    supported(
        "fetch.max.bytes",
        C,
        "52428800",
        "bytes one fetch response may carry (at least one batch comes back anyway, KIP-74)",
        |c, v| {
            c.fetch_max_bytes = non_negative(v)?;
            Ok(())
        },
        |c| c.fetch_max_bytes.to_string(),
    ),
    supported(
        "max.partition.fetch.bytes",
        C,
        "1048576",
        "bytes per partition in a fetch response, and buffered per partition",
        |c, v| {
            c.max_partition_fetch_bytes = non_negative(v)?;
            Ok(())
        },
        |c| c.max_partition_fetch_bytes.to_string(),
    )
    .also(&["fetch.message.max.bytes"]),
    supported(
        "enable.partition.eof",
        C,
        "false",
        "an event each time the consumer reaches the end of a partition",
        |c, v| {
            c.enable_partition_eof = boolean(v)?;
            Ok(())
        },
        |c| c.enable_partition_eof.to_string(),
    )
    .librdkafka(),
    supported(
        "group.id",
        C,
        "",
        "the consumer group: set, `subscribe` joins it and offsets are committed to it; \
         empty: no group (manual assignment, nothing committed)",
        |c, v| {
            c.group_id = (!v.is_empty()).then(|| v.to_string());
            Ok(())
        },
        |c| c.group_id.clone().unwrap_or_default(),
    ),
    supported(
        "group.instance.id",
        C,
        "",
        "a static member's stable identity (KIP-345): restarting within \
         `session.timeout.ms` causes no rebalance, and closing sends no LeaveGroup",
        |c, v| {
            c.group_instance_id = (!v.is_empty()).then(|| v.to_string());
            Ok(())
        },
        |c| c.group_instance_id.clone().unwrap_or_default(),
    ),
    supported(
        "group.protocol",
        C,
        "classic",
        "the group protocol: `classic` (JoinGroup, SyncGroup, Heartbeat; client-side \
         assignors) or `consumer` (KIP-848: ConsumerGroupHeartbeat, assignment by the \
         broker); with `consumer`, setting `session.timeout.ms`, `heartbeat.interval.ms` or \
         `partition.assignment.strategy` is an error, as in Java",
        |c, v| {
            c.group_protocol = choice(
                v,
                &[
                    ("classic", GroupProtocol::Classic),
                    ("consumer", GroupProtocol::Consumer),
                ],
            )?;
            Ok(())
        },
        |c| c.group_protocol.name().into(),
    ),
    supported(
        "group.remote.assignor",
        C,
        "",
        "the server-side assignor a `group.protocol=consumer` member asks for (`uniform`, \
         `range` on Kafka); empty: the broker's default; an error with `group.protocol=classic`",
        |c, v| {
            c.group_remote_assignor = (!v.is_empty()).then(|| v.to_string());
            Ok(())
        },
        |c| c.group_remote_assignor.clone().unwrap_or_default(),
    ),
    supported(
        "session.timeout.ms",
        C,
        "45000",
        "how long the coordinator waits for a member's heartbeat before removing it",
        |c, v| {
            c.given.session_timeout = Some(millis(v)?);
            Ok(())
        },
        |c| show_millis(c.session_timeout),
    ),
    supported(
        "heartbeat.interval.ms",
        C,
        "3000",
        "time between heartbeats, sent by the consumer's background task whatever the \
         application does; below `session.timeout.ms`",
        |c, v| {
            c.given.heartbeat_interval = Some(millis(v)?);
            Ok(())
        },
        |c| show_millis(c.heartbeat_interval),
    ),
    supported(
        "max.poll.interval.ms",
        C,
        "300000",
        "longest time between two `recv` calls before the member leaves the group (the next \
         `recv` reports it and rejoins); also the rebalance timeout",
        |c, v| {
            c.max_poll_interval = millis(v)?;
            Ok(())
        },
        |c| show_millis(c.max_poll_interval),
    ),
    supported(
        "partition.assignment.strategy",
        C,
        "org.apache.kafka.clients.consumer.RangeAssignor,\
         org.apache.kafka.clients.consumer.CooperativeStickyAssignor",
        "assignors in order of preference, by Java class or librdkafka name: `range`, \
         `roundrobin`, `sticky`, `cooperative-sticky`; the group uses the first every \
         member supports",
        |c, v| {
            let names = list(v);
            if names.is_empty() {
                return Err("at least one assignor is needed".into());
            }
            for name in &names {
                if crate::engine::group::assignor::canonical_name(name).is_none() {
                    return Err(format!(
                        "{name:?} is not an assignor franzy has (range, roundrobin, sticky, \
                         cooperative-sticky; give your own to the consumer's builder)"
                    ));
                }
            }
            c.assignment_strategy = names;
            c.given.assignment_strategy = true;
            Ok(())
        },
        |c| c.assignment_strategy.join(","),
    ),
    supported(
        "enable.auto.commit",
        C,
        "true",
        "commit the positions of records already handed out every \
         `auto.commit.interval.ms`, before partitions are revoked, and on close",
        |c, v| {
            c.enable_auto_commit = boolean(v)?;
            Ok(())
        },
        |c| c.enable_auto_commit.to_string(),
    )
    .also(&["auto.commit.enable"]),
    supported(
        "auto.commit.interval.ms",
        C,
        "5000",
        "time between automatic commits",
        |c, v| {
            c.auto_commit_interval = millis(v)?;
            Ok(())
        },
        |c| show_millis(c.auto_commit_interval),
    ),
    supported(
        "client.rack",
        C,
        "",
        "the consumer's rack, sent in its group subscription (the assignors do not place \
         by rack yet)",
        |c, v| {
            c.client_rack = (!v.is_empty()).then(|| v.to_string());
            Ok(())
        },
        |c| c.client_rack.clone().unwrap_or_default(),
    ),
    supported(
        "statistics.interval.ms",
        PCA,
        "0",
        "how often a producer or consumer hands a statistics snapshot to its \
         `on_statistics` callback (and, with the `metrics` feature, to the `metrics` \
         facade); 0 turns it off",
        |c, v| {
            c.statistics_interval = millis(v)?;
            Ok(())
        },
        |c| show_millis(c.statistics_interval),
    )
    .librdkafka(),
    supported(
        "default.api.timeout.ms",
        CA,
        "60000",
        "how long `commit`, `committed` and a closing consumer's last commit wait",
        |c, v| {
            c.default_api_timeout = millis(v)?;
            Ok(())
        },
        |c| show_millis(c.default_api_timeout),
    ),
    // Kafka's keys franzy ignores: every client.
    ignored("send.buffer.bytes", PCA, NETWORK).inert(&["-1"]),
    ignored("receive.buffer.bytes", PCA, NETWORK).inert(&["-1"]),
    ignored("socket.connection.setup.timeout.ms", PCA, NETWORK),
    ignored("socket.connection.setup.timeout.max.ms", PCA, NETWORK),
    ignored("connections.max.idle.ms", PCA, NETWORK).inert(&["-1"]),
    ignored("metadata.recovery.strategy", PCA, NETWORK).inert(&["none"]),
    ignored("metadata.recovery.rebootstrap.trigger.ms", PCA, NETWORK),
    ignored("enable.metrics.push", PCA, METRICS).inert(&["false"]),
    ignored("metrics.sample.window.ms", PCA, METRICS),
    ignored("metrics.num.samples", PCA, METRICS),
    ignored("metrics.recording.level", PCA, METRICS),
    ignored("metric.reporters", PCA, METRICS).inert(&[""]),
    ignored("bootstrap.controllers", A, ADMIN),
    // Producer.
    ignored("max.block.ms", P, PRODUCER),
    ignored("metadata.max.idle.ms", P, PRODUCER),
    ignored("partitioner.adaptive.partitioning.enable", P, PRODUCER).inert(&["false"]),
    ignored("partitioner.availability.timeout.ms", P, PRODUCER).inert(&["0"]),
    ignored("compression.gzip.level", P, LEVELS),
    ignored("compression.lz4.level", P, LEVELS),
    ignored("compression.zstd.level", P, LEVELS),
    ignored("key.serializer", P, SERDE)
        .inert(&["org.apache.kafka.common.serialization.ByteArraySerializer"]),
    ignored("value.serializer", P, SERDE)
        .inert(&["org.apache.kafka.common.serialization.ByteArraySerializer"]),
    ignored("interceptor.classes", PC, INTERCEPTORS).inert(&[""]),
    ignored("transaction.two.phase.commit.enable", P, TRANSACTIONS).inert(&["false"]),
    // Consumer.
    ignored("key.deserializer", C, SERDE)
        .inert(&["org.apache.kafka.common.serialization.ByteArrayDeserializer"]),
    ignored("value.deserializer", C, SERDE)
        .inert(&["org.apache.kafka.common.serialization.ByteArrayDeserializer"]),
    ignored("max.poll.records", C, CONSUMER),
    ignored("check.crcs", C, CONSUMER).inert(&["true"]),
    ignored("exclude.internal.topics", C, CONSUMER).inert(&["true"]),
    ignored("allow.auto.create.topics", C, CONSUMER).inert(&["true"]),
    // TLS.
    ignored("security.providers", PCA, TLS).inert(&[""]),
    ignored("ssl.protocol", PCA, TLS),
    ignored("ssl.provider", PCA, TLS),
    ignored("ssl.cipher.suites", PCA, TLS),
    ignored("ssl.enabled.protocols", PCA, TLS),
    ignored("ssl.keystore.password", PCA, PEM_ONLY).secret(),
    ignored("ssl.key.password", PCA, ENCRYPTED_KEYS).secret(),
    ignored("ssl.truststore.password", PCA, PEM_ONLY).secret(),
    ignored("ssl.keymanager.algorithm", PCA, TLS),
    ignored("ssl.trustmanager.algorithm", PCA, TLS),
    ignored("ssl.secure.random.implementation", PCA, TLS),
    ignored("ssl.engine.factory.class", PCA, TLS),
    ignored("sasl.client.callback.handler.class", PCA, SASL),
    ignored("sasl.login.callback.handler.class", PCA, SASL),
    ignored("sasl.login.class", PCA, SASL),
    ignored("sasl.kerberos.service.name", PCA, SASL),
    ignored("sasl.kerberos.kinit.cmd", PCA, SASL),
    ignored("sasl.kerberos.ticket.renew.window.factor", PCA, SASL),
    ignored("sasl.kerberos.ticket.renew.jitter", PCA, SASL),
    ignored("sasl.kerberos.min.time.before.relogin", PCA, SASL),
    ignored("sasl.login.refresh.window.factor", PCA, SASL),
    ignored("sasl.login.refresh.window.jitter", PCA, SASL),
    ignored("sasl.login.refresh.min.period.seconds", PCA, SASL),
    ignored("sasl.login.refresh.buffer.seconds", PCA, SASL),
    ignored("sasl.login.connect.timeout.ms", PCA, SASL),
    ignored("sasl.login.read.timeout.ms", PCA, SASL),
    ignored("sasl.login.retry.backoff.max.ms", PCA, SASL),
    ignored("sasl.login.retry.backoff.ms", PCA, SASL),
    ignored("sasl.oauthbearer.scope.claim.name", PCA, SASL),
    ignored("sasl.oauthbearer.sub.claim.name", PCA, SASL),
    ignored("sasl.oauthbearer.token.endpoint.url", PCA, SASL),
    ignored("sasl.oauthbearer.jwks.endpoint.url", PCA, SASL),
    ignored("sasl.oauthbearer.jwks.endpoint.refresh.ms", PCA, SASL),
    ignored(
        "sasl.oauthbearer.jwks.endpoint.retry.backoff.max.ms",
        PCA,
        SASL,
    ),
    ignored("sasl.oauthbearer.jwks.endpoint.retry.backoff.ms", PCA, SASL),
    ignored("sasl.oauthbearer.clock.skew.seconds", PCA, SASL),
    ignored("sasl.oauthbearer.expected.audience", PCA, SASL),
    ignored("sasl.oauthbearer.expected.issuer", PCA, SASL),
    ignored("sasl.oauthbearer.header.urlencode", PCA, SASL),
    ignored("sasl.oauthbearer.jwt.retriever.class", PCA, SASL),
    ignored("sasl.oauthbearer.jwt.validator.class", PCA, SASL),
    ignored("sasl.oauthbearer.scope", PCA, SASL),
    ignored("sasl.oauthbearer.client.credentials.client.id", PCA, SASL)
        .also(&["sasl.oauthbearer.client.id"]),
    ignored(
        "sasl.oauthbearer.client.credentials.client.secret",
        PCA,
        SASL,
    )
    .also(&["sasl.oauthbearer.client.secret"])
    .secret(),
    ignored("sasl.oauthbearer.assertion.algorithm", PCA, SASL),
    ignored("sasl.oauthbearer.assertion.claim.aud", PCA, SASL),
    ignored("sasl.oauthbearer.assertion.claim.exp.seconds", PCA, SASL),
    ignored("sasl.oauthbearer.assertion.claim.iss", PCA, SASL),
    ignored("sasl.oauthbearer.assertion.claim.jti.include", PCA, SASL),
    ignored("sasl.oauthbearer.assertion.claim.nbf.seconds", PCA, SASL),
    ignored("sasl.oauthbearer.assertion.claim.sub", PCA, SASL),
    ignored("sasl.oauthbearer.assertion.file", PCA, SASL),
    ignored("sasl.oauthbearer.assertion.private.key.file", PCA, SASL),
    ignored(
        "sasl.oauthbearer.assertion.private.key.passphrase",
        PCA,
        SASL,
    )
    .secret(),
    ignored("sasl.oauthbearer.assertion.template.file", PCA, SASL),
    // librdkafka's own keys franzy ignores.
    rdkafka("batch.num.messages", P, PRODUCER),
    rdkafka("queue.buffering.max.messages", P, PRODUCER),
    rdkafka("queue.buffering.backpressure.threshold", P, PRODUCER),
    rdkafka("sticky.partitioning.linger.ms", P, PRODUCER),
    rdkafka("delivery.report.only.error", P, PRODUCER).inert(&["false"]),
    rdkafka("enable.gapless.guarantee", P, PRODUCER).inert(&["false"]),
    rdkafka("queuing.strategy", P, PRODUCER).inert(&["fifo"]),
    rdkafka("compression.level", P, LEVELS),
    rdkafka("coordinator.query.interval.ms", C, GROUPS),
    rdkafka("enable.auto.offset.store", C, GROUPS),
    rdkafka("group.protocol.type", C, GROUPS),
    rdkafka("offset.store.method", C, GROUPS),
    rdkafka("offset.store.path", C, GROUPS),
    rdkafka("offset.store.sync.interval.ms", C, GROUPS),
    rdkafka("queued.min.messages", C, CONSUMER),
    rdkafka("queued.max.messages.kbytes", C, CONSUMER),
    rdkafka("fetch.queue.backoff.ms", C, CONSUMER),
    rdkafka("fetch.error.backoff.ms", C, CONSUMER),
    rdkafka("share.acknowledgement.mode", C, SHARE),
    rdkafka("api.version.request.timeout.ms", PCA, NETWORK),
    rdkafka("broker.address.family", PCA, NETWORK).inert(&["any"]),
    rdkafka("broker.address.ttl", PCA, NETWORK),
    rdkafka("socket.keepalive.enable", PCA, NETWORK).inert(&["false"]),
    rdkafka("socket.max.fails", PCA, NETWORK),
    rdkafka("socket.nagle.disable", PCA, NETWORK).inert(&["true"]),
    rdkafka("socket.send.buffer.bytes", PCA, NETWORK).inert(&["0"]),
    rdkafka("socket.receive.buffer.bytes", PCA, NETWORK).inert(&["0"]),
    rdkafka("topic.metadata.refresh.fast.interval.ms", PCA, NETWORK),
    rdkafka("ssl.ca.certificate.stores", PCA, TLS),
    rdkafka("ssl.crl.location", PCA, TLS),
    rdkafka("ssl.curves.list", PCA, TLS),
    rdkafka("ssl.sigalgs.list", PCA, TLS),
    rdkafka("ssl.engine.id", PCA, TLS),
    rdkafka("ssl.engine.location", PCA, TLS),
    rdkafka("ssl.providers", PCA, TLS),
    rdkafka("sasl.kerberos.principal", PCA, SASL),
    rdkafka("sasl.kerberos.keytab", PCA, SASL),
    rdkafka("sasl.oauthbearer.config", PCA, SASL).secret(),
    rdkafka("sasl.oauthbearer.method", PCA, SASL),
    rdkafka("sasl.oauthbearer.extensions", PCA, SASL),
    rdkafka("sasl.oauthbearer.grant.type", PCA, SASL),
    rdkafka("sasl.oauthbearer.metadata.authentication.type", PCA, SASL),
    rdkafka("sasl.oauthbearer.assertion.jwt.template.file", PCA, SASL),
    rdkafka("sasl.oauthbearer.assertion.private.key.pem", PCA, SASL).secret(),
    rdkafka("enable.sasl.oauthbearer.unsecure.jwt", PCA, SASL).inert(&["false"]),
    rdkafka("https.ca.location", PCA, SASL),
    rdkafka("https.ca.pem", PCA, SASL),
    rdkafka("api.version.request", PCA, LIBRDKAFKA).inert(&["true"]),
    rdkafka("api.version.fallback.ms", PCA, LIBRDKAFKA),
    rdkafka("broker.version.fallback", PCA, LIBRDKAFKA),
    rdkafka("builtin.features", PCA, LIBRDKAFKA),
    rdkafka("debug", PCA, LIBRDKAFKA),
    rdkafka("log_level", PCA, LIBRDKAFKA),
    rdkafka("log.queue", PCA, LIBRDKAFKA),
    rdkafka("log.thread.name", PCA, LIBRDKAFKA),
    rdkafka("log.connection.close", PCA, LIBRDKAFKA),
    rdkafka("enable.random.seed", PCA, LIBRDKAFKA),
    rdkafka("enabled_events", PCA, LIBRDKAFKA),
    rdkafka("internal.termination.signal", PCA, LIBRDKAFKA),
    rdkafka("message.copy.max.bytes", PCA, LIBRDKAFKA),
    rdkafka("plugin.library.paths", PCA, LIBRDKAFKA),
    rdkafka("topic.blacklist", PCA, LIBRDKAFKA),
    rdkafka("topic.metadata.propagation.max.ms", PCA, LIBRDKAFKA),
    rdkafka("topic.metadata.refresh.sparse", PCA, LIBRDKAFKA),
    rdkafka("consume.callback.max.messages", C, LIBRDKAFKA),
    // Deprecated in librdkafka and no longer used by it: any value asks for nothing.
    rdkafka("produce.offset.report", P, LIBRDKAFKA).inert(&["*"]),
    rdkafka("reconnect.backoff.jitter.ms", PCA, LIBRDKAFKA).inert(&["*"]),
    rdkafka("socket.blocking.max.ms", PCA, LIBRDKAFKA).inert(&["*"]),
    rdkafka("topic.metadata.refresh.fast.cnt", PCA, LIBRDKAFKA).inert(&["*"]),
];

/// A comma-separated list, blanks dropped.
fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(String::from)
        .collect()
}

/// `value` as one of `choices` (names compared without case), or an error listing them.
fn choice<T: Copy>(value: &str, choices: &[(&str, T)]) -> Result<T, String> {
    choices
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(value))
        .map(|(_, choice)| *choice)
        .ok_or_else(|| {
            let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
            format!("{value:?} is not one of {}", names.join(", "))
        })
}

/// A boolean as Kafka's `ConfigDef` reads one: `true` or `false` in any case.
/// A secret's value as `Config::get` shows it: hidden when set.
fn hidden(value: &Option<String>) -> String {
    value
        .as_ref()
        .map(|_| "[hidden]".to_string())
        .unwrap_or_default()
}

fn boolean(value: &str) -> Result<bool, String> {
    if value.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if value.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(format!("{value:?} is not true or false"))
    }
}

fn number<T: std::str::FromStr>(value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{value:?} is not a whole number in range"))
}

/// A Kafka INT setting that Kafka requires to be at least 0.
fn non_negative(value: &str) -> Result<i32, String> {
    match number::<i32>(value)? {
        n if n < 0 => Err(format!("{n} is below 0")),
        n => Ok(n),
    }
}

/// Milliseconds as a whole number (Kafka's INT and LONG settings), capped at [`FOREVER`].
fn millis(value: &str) -> Result<Duration, String> {
    value
        .parse::<u64>()
        .map(|ms| Duration::from_millis(ms).min(FOREVER))
        .map_err(|_| format!("{value:?} is not a whole number of milliseconds"))
}

/// Milliseconds, or `-1` for "never" ([`FOREVER`]).
fn millis_or_never(value: &str) -> Result<Duration, String> {
    if value == "-1" {
        Ok(FOREVER)
    } else {
        millis(value)
    }
}

/// Milliseconds with an optional fraction (librdkafka's `linger.ms` is a float).
fn fractional_millis(value: &str) -> Result<Duration, String> {
    if !value.contains('.') {
        return millis(value);
    }
    let ms: f64 = value
        .parse()
        .ok()
        .filter(|ms: &f64| ms.is_finite() && *ms >= 0.0)
        .ok_or_else(|| format!("{value:?} is not a number of milliseconds"))?;
    Ok(Duration::from_secs_f64(
        ms.min(FOREVER.as_millis() as f64) / 1000.0,
    ))
}

/// A duration in property syntax: whole milliseconds, with a fraction when there is one.
fn show_millis(duration: Duration) -> String {
    let nanos = duration.subsec_nanos() % 1_000_000;
    if nanos == 0 {
        duration.as_millis().to_string()
    } else {
        let fraction = format!("{nanos:06}");
        format!(
            "{}.{}",
            duration.as_millis(),
            fraction.trim_end_matches('0')
        )
    }
}

fn partitioner(value: &str) -> Result<Partitioner, String> {
    let known = [
        ("murmur2_random", Partitioner::Murmur2Random),
        ("murmur2", Partitioner::Murmur2),
        ("random", Partitioner::Random),
    ];
    if let Ok(partitioner) = choice(value, &known) {
        return Ok(partitioner);
    }
    let elsewhere = ["consistent", "consistent_random", "fnv1a", "fnv1a_random"];
    if elsewhere.iter().any(|p| p.eq_ignore_ascii_case(value)) {
        Err(format!(
            "{value:?} is not supported: it places keys in other partitions than Java's \
             murmur2 (use murmur2_random, murmur2 or random)"
        ))
    } else {
        Err(format!(
            "{value:?} is not one of murmur2_random, murmur2, random"
        ))
    }
}

/// The listing of keys in the `config` module doc (`keys.md`), rendered from the table.
#[cfg(test)]
pub(super) fn listing() -> String {
    let mut out = String::from(
        "### Supported keys\n\n\
         Clients: P producer, C consumer, A admin (the Kafka clients that define the key). \
         Names under \"also\" are librdkafka's for the same setting.\n\n\
         | key | also | clients | default | |\n|---|---|---|---|---|\n",
    );
    let code = |s: &str| {
        if s.is_empty() {
            String::from("*(empty)*")
        } else {
            format!("`{s}`")
        }
    };
    for key in KEYS
        .iter()
        .filter(|k| matches!(k.kind, Kind::Supported { .. }))
    {
        let aliases: Vec<String> = key.aliases.iter().map(|a| format!("`{a}`")).collect();
        let librdkafka = if key.origin == Origin::Librdkafka {
            " (librdkafka)"
        } else {
            ""
        };
        out.push_str(&format!(
            "| `{}`{librdkafka} | {} | {} | {} | {} |\n",
            key.name,
            aliases.join(", "),
            key.clients.letters(),
            code(key.default),
            key.doc,
        ));
    }
    out.push_str(
        "\n### Known keys franzy ignores\n\n\
         Kept (see [`Config::ignored`]) and logged once at warn level when set, except with \
         the values marked quiet, with which the setting asks for nothing franzy does not \
         do. Names marked † are librdkafka's.\n\n\
         | why | keys |\n|---|---|\n",
    );
    let mut reasons: Vec<&str> = Vec::new();
    for key in KEYS
        .iter()
        .filter(|k| matches!(k.kind, Kind::Ignored { .. }))
    {
        if !reasons.contains(&key.doc) {
            reasons.push(key.doc);
        }
    }
    for reason in reasons {
        let names: Vec<String> = KEYS
            .iter()
            .filter(|k| matches!(k.kind, Kind::Ignored { .. }) && k.doc == reason)
            .map(|k| {
                let mut name = format!("`{}`", k.name);
                if k.origin == Origin::Librdkafka {
                    name.push('†');
                }
                let mut notes: Vec<String> = k
                    .aliases
                    .iter()
                    .map(|alias| format!("`{alias}`†"))
                    .collect();
                if let Kind::Ignored { inert } = k.kind {
                    if !inert.is_empty() {
                        let values: Vec<String> = inert
                            .iter()
                            .map(|v| match *v {
                                "" => "empty".to_string(),
                                "*" => "any value".to_string(),
                                v => format!("`{v}`"),
                            })
                            .collect();
                        notes.push(format!("quiet: {}", values.join(", ")));
                    }
                }
                if !notes.is_empty() {
                    name.push_str(&format!(" ({})", notes.join("; ")));
                }
                name
            })
            .collect();
        out.push_str(&format!("| {reason} | {} |\n", names.join(", ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Copied from the Java sources' `ConfigDef`s (Kafka 4.x) and librdkafka's
    // CONFIGURATION.md: the references the table is checked against.

    /// `ProducerConfig` (Kafka 4.x), without the TLS and SASL keys every client has.
    const PRODUCER_KEYS: &[&str] = &[
        "acks",
        "batch.size",
        "bootstrap.servers",
        "buffer.memory",
        "client.dns.lookup",
        "client.id",
        "compression.gzip.level",
        "compression.lz4.level",
        "compression.type",
        "compression.zstd.level",
        "connections.max.idle.ms",
        "delivery.timeout.ms",
        "enable.idempotence",
        "enable.metrics.push",
        "interceptor.classes",
        "key.serializer",
        "linger.ms",
        "max.block.ms",
        "max.in.flight.requests.per.connection",
        "max.request.size",
        "metadata.max.age.ms",
        "metadata.max.idle.ms",
        "metadata.recovery.rebootstrap.trigger.ms",
        "metadata.recovery.strategy",
        "metric.reporters",
        "metrics.num.samples",
        "metrics.recording.level",
        "metrics.sample.window.ms",
        "partitioner.adaptive.partitioning.enable",
        "partitioner.availability.timeout.ms",
        "partitioner.class",
        "partitioner.ignore.keys",
        "receive.buffer.bytes",
        "reconnect.backoff.max.ms",
        "reconnect.backoff.ms",
        "request.timeout.ms",
        "retries",
        "retry.backoff.max.ms",
        "retry.backoff.ms",
        "security.protocol",
        "security.providers",
        "send.buffer.bytes",
        "socket.connection.setup.timeout.max.ms",
        "socket.connection.setup.timeout.ms",
        "transaction.timeout.ms",
        "transaction.two.phase.commit.enable",
        "transactional.id",
        "value.serializer",
    ];

    /// `ConsumerConfig`.
    const CONSUMER_KEYS: &[&str] = &[
        "allow.auto.create.topics",
        "auto.commit.interval.ms",
        "auto.offset.reset",
        "bootstrap.servers",
        "check.crcs",
        "client.dns.lookup",
        "client.id",
        "client.rack",
        "connections.max.idle.ms",
        "default.api.timeout.ms",
        "enable.auto.commit",
        "enable.metrics.push",
        "exclude.internal.topics",
        "fetch.max.bytes",
        "fetch.max.wait.ms",
        "fetch.min.bytes",
        "group.id",
        "group.instance.id",
        "group.protocol",
        "group.remote.assignor",
        "heartbeat.interval.ms",
        "interceptor.classes",
        "isolation.level",
        "key.deserializer",
        "max.partition.fetch.bytes",
        "max.poll.interval.ms",
        "max.poll.records",
        "metadata.max.age.ms",
        "metadata.recovery.rebootstrap.trigger.ms",
        "metadata.recovery.strategy",
        "metric.reporters",
        "metrics.num.samples",
        "metrics.recording.level",
        "metrics.sample.window.ms",
        "partition.assignment.strategy",
        "receive.buffer.bytes",
        "reconnect.backoff.max.ms",
        "reconnect.backoff.ms",
        "request.timeout.ms",
        "retry.backoff.max.ms",
        "retry.backoff.ms",
        "security.protocol",
        "security.providers",
        "send.buffer.bytes",
        "session.timeout.ms",
        "socket.connection.setup.timeout.max.ms",
        "socket.connection.setup.timeout.ms",
        "value.deserializer",
    ];

    /// `AdminClientConfig`.
    const ADMIN_KEYS: &[&str] = &[
        "bootstrap.controllers",
        "bootstrap.servers",
        "client.dns.lookup",
        "client.id",
        "connections.max.idle.ms",
        "default.api.timeout.ms",
        "enable.metrics.push",
        "metadata.max.age.ms",
        "metadata.recovery.rebootstrap.trigger.ms",
        "metadata.recovery.strategy",
        "metric.reporters",
        "metrics.num.samples",
        "metrics.recording.level",
        "metrics.sample.window.ms",
        "receive.buffer.bytes",
        "reconnect.backoff.max.ms",
        "reconnect.backoff.ms",
        "request.timeout.ms",
        "retries",
        "retry.backoff.max.ms",
        "retry.backoff.ms",
        "security.protocol",
        "security.providers",
        "send.buffer.bytes",
        "socket.connection.setup.timeout.max.ms",
        "socket.connection.setup.timeout.ms",
    ];

    /// `SslConfigs` and `SaslConfigs` (4.1 added the OAuth client assertion keys), in every client.
    const SECURITY_KEYS: &[&str] = &[
        "sasl.client.callback.handler.class",
        "sasl.jaas.config",
        "sasl.kerberos.kinit.cmd",
        "sasl.kerberos.min.time.before.relogin",
        "sasl.kerberos.service.name",
        "sasl.kerberos.ticket.renew.jitter",
        "sasl.kerberos.ticket.renew.window.factor",
        "sasl.login.callback.handler.class",
        "sasl.login.class",
        "sasl.login.connect.timeout.ms",
        "sasl.login.read.timeout.ms",
        "sasl.login.refresh.buffer.seconds",
        "sasl.login.refresh.min.period.seconds",
        "sasl.login.refresh.window.factor",
        "sasl.login.refresh.window.jitter",
        "sasl.login.retry.backoff.max.ms",
        "sasl.login.retry.backoff.ms",
        "sasl.mechanism",
        "sasl.oauthbearer.assertion.algorithm",
        "sasl.oauthbearer.assertion.claim.aud",
        "sasl.oauthbearer.assertion.claim.exp.seconds",
        "sasl.oauthbearer.assertion.claim.iss",
        "sasl.oauthbearer.assertion.claim.jti.include",
        "sasl.oauthbearer.assertion.claim.nbf.seconds",
        "sasl.oauthbearer.assertion.claim.sub",
        "sasl.oauthbearer.assertion.file",
        "sasl.oauthbearer.assertion.private.key.file",
        "sasl.oauthbearer.assertion.private.key.passphrase",
        "sasl.oauthbearer.assertion.template.file",
        "sasl.oauthbearer.client.credentials.client.id",
        "sasl.oauthbearer.client.credentials.client.secret",
        "sasl.oauthbearer.clock.skew.seconds",
        "sasl.oauthbearer.expected.audience",
        "sasl.oauthbearer.expected.issuer",
        "sasl.oauthbearer.header.urlencode",
        "sasl.oauthbearer.jwks.endpoint.refresh.ms",
        "sasl.oauthbearer.jwks.endpoint.retry.backoff.max.ms",
        "sasl.oauthbearer.jwks.endpoint.retry.backoff.ms",
        "sasl.oauthbearer.jwks.endpoint.url",
        "sasl.oauthbearer.jwt.retriever.class",
        "sasl.oauthbearer.jwt.validator.class",
        "sasl.oauthbearer.scope",
        "sasl.oauthbearer.scope.claim.name",
        "sasl.oauthbearer.sub.claim.name",
        "sasl.oauthbearer.token.endpoint.url",
        "ssl.cipher.suites",
        "ssl.enabled.protocols",
        "ssl.endpoint.identification.algorithm",
        "ssl.engine.factory.class",
        "ssl.key.password",
        "ssl.keymanager.algorithm",
        "ssl.keystore.certificate.chain",
        "ssl.keystore.key",
        "ssl.keystore.location",
        "ssl.keystore.password",
        "ssl.keystore.type",
        "ssl.protocol",
        "ssl.provider",
        "ssl.secure.random.implementation",
        "ssl.trustmanager.algorithm",
        "ssl.truststore.certificates",
        "ssl.truststore.location",
        "ssl.truststore.password",
        "ssl.truststore.type",
    ];

    /// Every key of librdkafka's CONFIGURATION.md but those set through its API only
    /// (callbacks, opaques).
    const LIBRDKAFKA_KEYS: &[&str] = &[
        "acks",
        "allow.auto.create.topics",
        "api.version.fallback.ms",
        "api.version.request",
        "api.version.request.timeout.ms",
        "auto.commit.enable",
        "auto.commit.interval.ms",
        "auto.offset.reset",
        "batch.num.messages",
        "batch.size",
        "bootstrap.servers",
        "broker.address.family",
        "broker.address.ttl",
        "broker.version.fallback",
        "builtin.features",
        "check.crcs",
        "client.dns.lookup",
        "client.id",
        "client.rack",
        "compression.codec",
        "compression.level",
        "compression.type",
        "connections.max.idle.ms",
        "consume.callback.max.messages",
        "coordinator.query.interval.ms",
        "debug",
        "delivery.report.only.error",
        "delivery.timeout.ms",
        "enable.auto.commit",
        "enable.auto.offset.store",
        "enable.gapless.guarantee",
        "enable.idempotence",
        "enable.metrics.push",
        "enable.partition.eof",
        "enable.random.seed",
        "enable.sasl.oauthbearer.unsecure.jwt",
        "enable.ssl.certificate.verification",
        "enabled_events",
        "fetch.error.backoff.ms",
        "fetch.max.bytes",
        "fetch.message.max.bytes",
        "fetch.min.bytes",
        "fetch.queue.backoff.ms",
        "fetch.wait.max.ms",
        "group.id",
        "group.instance.id",
        "group.protocol",
        "group.protocol.type",
        "group.remote.assignor",
        "heartbeat.interval.ms",
        "https.ca.location",
        "https.ca.pem",
        "internal.termination.signal",
        "isolation.level",
        "linger.ms",
        "log.connection.close",
        "log.queue",
        "log.thread.name",
        "log_level",
        "max.in.flight",
        "max.in.flight.requests.per.connection",
        "max.partition.fetch.bytes",
        "max.poll.interval.ms",
        "max.poll.records",
        "message.copy.max.bytes",
        "message.max.bytes",
        "message.send.max.retries",
        "message.timeout.ms",
        "metadata.broker.list",
        "metadata.max.age.ms",
        "metadata.recovery.rebootstrap.trigger.ms",
        "metadata.recovery.strategy",
        "offset.store.method",
        "offset.store.path",
        "offset.store.sync.interval.ms",
        "partition.assignment.strategy",
        "partitioner",
        "plugin.library.paths",
        "produce.offset.report",
        "queue.buffering.backpressure.threshold",
        "queue.buffering.max.kbytes",
        "queue.buffering.max.messages",
        "queue.buffering.max.ms",
        "queued.max.messages.kbytes",
        "queued.min.messages",
        "queuing.strategy",
        "receive.message.max.bytes",
        "reconnect.backoff.jitter.ms",
        "reconnect.backoff.max.ms",
        "reconnect.backoff.ms",
        "request.required.acks",
        "request.timeout.ms",
        "retries",
        "retry.backoff.max.ms",
        "retry.backoff.ms",
        "sasl.kerberos.keytab",
        "sasl.kerberos.kinit.cmd",
        "sasl.kerberos.min.time.before.relogin",
        "sasl.kerberos.principal",
        "sasl.kerberos.service.name",
        "sasl.mechanism",
        "sasl.mechanisms",
        "sasl.oauthbearer.assertion.algorithm",
        "sasl.oauthbearer.assertion.claim.aud",
        "sasl.oauthbearer.assertion.claim.exp.seconds",
        "sasl.oauthbearer.assertion.claim.iss",
        "sasl.oauthbearer.assertion.claim.jti.include",
        "sasl.oauthbearer.assertion.claim.nbf.seconds",
        "sasl.oauthbearer.assertion.claim.sub",
        "sasl.oauthbearer.assertion.file",
        "sasl.oauthbearer.assertion.jwt.template.file",
        "sasl.oauthbearer.assertion.private.key.file",
        "sasl.oauthbearer.assertion.private.key.passphrase",
        "sasl.oauthbearer.assertion.private.key.pem",
        "sasl.oauthbearer.client.credentials.client.id",
        "sasl.oauthbearer.client.credentials.client.secret",
        "sasl.oauthbearer.client.id",
        "sasl.oauthbearer.client.secret",
        "sasl.oauthbearer.config",
        "sasl.oauthbearer.extensions",
        "sasl.oauthbearer.grant.type",
        "sasl.oauthbearer.metadata.authentication.type",
        "sasl.oauthbearer.method",
        "sasl.oauthbearer.scope",
        "sasl.oauthbearer.sub.claim.name",
        "sasl.oauthbearer.token.endpoint.url",
        "sasl.password",
        "sasl.username",
        "security.protocol",
        "session.timeout.ms",
        "share.acknowledgement.mode",
        "socket.blocking.max.ms",
        "socket.connection.setup.timeout.ms",
        "socket.keepalive.enable",
        "socket.max.fails",
        "socket.nagle.disable",
        "socket.receive.buffer.bytes",
        "socket.send.buffer.bytes",
        "socket.timeout.ms",
        "ssl.ca.certificate.stores",
        "ssl.ca.location",
        "ssl.ca.pem",
        "ssl.certificate.location",
        "ssl.certificate.pem",
        "ssl.cipher.suites",
        "ssl.crl.location",
        "ssl.curves.list",
        "ssl.endpoint.identification.algorithm",
        "ssl.engine.id",
        "ssl.engine.location",
        "ssl.key.location",
        "ssl.key.password",
        "ssl.key.pem",
        "ssl.keystore.location",
        "ssl.keystore.password",
        "ssl.providers",
        "ssl.sigalgs.list",
        "statistics.interval.ms",
        "sticky.partitioning.linger.ms",
        "topic.blacklist",
        "topic.metadata.propagation.max.ms",
        "topic.metadata.refresh.fast.cnt",
        "topic.metadata.refresh.fast.interval.ms",
        "topic.metadata.refresh.interval.ms",
        "topic.metadata.refresh.sparse",
        "transaction.timeout.ms",
        "transactional.id",
    ];

    fn all_names() -> impl Iterator<Item = &'static str> {
        KEYS.iter()
            .flat_map(|key| std::iter::once(key.name).chain(key.aliases.iter().copied()))
    }

    #[test]
    fn every_kafka_key_is_in_the_table_for_its_clients() {
        let lists = [
            (PRODUCER_KEYS, Clients::P),
            (CONSUMER_KEYS, Clients::C),
            (ADMIN_KEYS, Clients::A),
            (SECURITY_KEYS, Clients::PCA),
        ];
        for (names, clients) in lists {
            for name in names {
                let key = lookup(name).unwrap_or_else(|| panic!("{name} is not in the table"));
                assert_eq!(key.name, *name, "a Kafka key is its own canonical name");
                assert_eq!(key.origin, Origin::Kafka, "{name}");
                assert!(
                    key.clients.contains(clients),
                    "{name}: clients {} lack {}",
                    key.clients.letters(),
                    clients.letters()
                );
            }
        }
        // And the table claims no Kafka key Kafka does not have, nor clients it lacks.
        for key in KEYS.iter().filter(|key| key.origin == Origin::Kafka) {
            let in_list = |names: &[&str]| names.contains(&key.name);
            let mut clients = 0;
            if in_list(PRODUCER_KEYS) || in_list(SECURITY_KEYS) {
                clients |= Clients::P.0;
            }
            if in_list(CONSUMER_KEYS) || in_list(SECURITY_KEYS) {
                clients |= Clients::C.0;
            }
            if in_list(ADMIN_KEYS) || in_list(SECURITY_KEYS) {
                clients |= Clients::A.0;
            }
            assert_eq!(Clients(clients), key.clients, "{} is not Kafka's", key.name);
        }
    }

    #[test]
    fn every_librdkafka_key_is_in_the_table() {
        for name in LIBRDKAFKA_KEYS {
            assert!(lookup(name).is_some(), "{name} is not in the table");
        }
        // librdkafka-only names (entries and aliases) are librdkafka's.
        for key in KEYS {
            let kafka = [PRODUCER_KEYS, CONSUMER_KEYS, ADMIN_KEYS, SECURITY_KEYS];
            if key.origin == Origin::Librdkafka {
                assert!(LIBRDKAFKA_KEYS.contains(&key.name), "{}", key.name);
            }
            for alias in key.aliases {
                assert!(LIBRDKAFKA_KEYS.contains(alias), "{alias}");
                assert!(!kafka.iter().any(|names| names.contains(alias)), "{alias}");
            }
        }
    }

    #[test]
    fn names_are_unique_and_supported_keys_have_docs_and_defaults_apply() {
        let mut names: Vec<&str> = all_names().collect();
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "a name appears twice");
        for key in KEYS {
            assert!(!key.doc.is_empty(), "{}", key.name);
            if let Kind::Supported { apply, show } = key.kind {
                let mut config = Config::default();
                assert_eq!(show(&config), key.default, "{}: stated default", key.name);
                apply(&mut config, key.default)
                    .unwrap_or_else(|e| panic!("{}: default refused: {e}", key.name));
                config.settle();
                assert_eq!(
                    show(&config),
                    key.default,
                    "{}: default round trip",
                    key.name
                );
            }
        }
    }

    /// The listing in the module doc is rendered from the table; `FRANZY_BLESS=1 cargo
    /// test -p franzy config::keys` rewrites it after a change.
    #[test]
    fn the_doc_listing_is_in_sync_with_the_table() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/config/keys.md");
        let listing = listing();
        if std::env::var_os("FRANZY_BLESS").is_some() {
            std::fs::write(path, &listing).expect("keys.md is writable");
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == listing,
            "src/config/keys.md is out of date: run FRANZY_BLESS=1 cargo test -p franzy \
             config::keys"
        );
    }

    #[test]
    fn unknown_names_get_the_closest_known_one() {
        assert_eq!(suggestion("lingerms"), Some("linger.ms"));
        assert_eq!(suggestion("boostrap.servers"), Some("bootstrap.servers"));
        assert_eq!(suggestion("schema.registry.url"), None);
    }

    #[test]
    fn durations_and_choices_parse_as_kafka_and_librdkafka_write_them() {
        assert_eq!(millis("9223372036854775807"), Ok(FOREVER));
        assert!(millis("-1").is_err() && millis("5.5").is_err() && millis("").is_err());
        assert_eq!(
            millis(" 7").map_err(|_| ()),
            Err(()),
            "values are trimmed before"
        );
        assert_eq!(millis_or_never("-1"), Ok(FOREVER));
        assert_eq!(fractional_millis("0.5"), Ok(Duration::from_micros(500)));
        assert!(fractional_millis("-0.5").is_err() && fractional_millis("NaN").is_err());
        assert_eq!(show_millis(Duration::from_micros(500)), "0.5");
        assert_eq!(show_millis(Duration::from_micros(12_250)), "12.25");
        assert_eq!(boolean("TRUE"), Ok(true));
        assert_eq!(boolean("False"), Ok(false));
        assert!(boolean("1").is_err() && boolean("yes").is_err());
        assert_eq!(choice("LZ4", &[("lz4", 4)]), Ok(4));
        assert_eq!(
            non_negative("-1").map_err(|e| e.contains("below 0")),
            Err(true)
        );
    }
}
