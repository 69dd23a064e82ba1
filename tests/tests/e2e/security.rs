//! TLS and SASL: the client against the harness's secured listeners, in memory (TLS runs
//! over the in-memory pipe) and under a paused clock, so token lifetimes of minutes pass
//! in no time.

use std::sync::Arc;
use std::time::Duration;

use franzy::proto::ApiKey;
use franzy::security::{Sasl, SaslMechanism, SecurityProtocol, TlsConfig, UnsecuredJwt};
use franzy::transport::{ConnectFuture, Connector};
use franzy::{Config, Consumer, Error, Offset, Producer, ProducerRecord, TopicPartition};
use franzy_harness::{Cluster, ListenerSecurity};
use franzy_tests::init_tracing;

const BOUND: Duration = Duration::from_secs(600);

async fn cluster(security: ListenerSecurity) -> Cluster {
    init_tracing();
    Cluster::builder()
        .brokers(2)
        .topic("secure", 2)
        .in_memory()
        .seed(3)
        .security(
            security
                .user("alice", "alice-secret")
                .user("bob", "bob-secret"),
        )
        .build()
        .await
        .expect("cluster starts")
}

fn sasl_for(mechanism: SaslMechanism, password: &str) -> Sasl {
    match mechanism {
        SaslMechanism::Plain => Sasl::plain("alice", password),
        SaslMechanism::ScramSha256 => Sasl::scram_sha256("alice", password),
        SaslMechanism::ScramSha512 => Sasl::scram_sha512("alice", password),
        _ => Sasl::oauthbearer(Arc::new(UnsecuredJwt::new("alice"))),
    }
}

fn config(cluster: &Cluster, protocol: SecurityProtocol) -> Config {
    let mut config = Config::new(cluster.bootstrap())
        .security_protocol(protocol)
        .set("linger.ms", "1")
        .expect("valid")
        .set("delivery.timeout.ms", "60000")
        .expect("valid");
    if let Some(ca) = cluster.ca_pem() {
        config = config.tls(TlsConfig::new().ca_pem(ca).expect("CA parses"));
    }
    config
}

fn producer(cluster: &Cluster, config: Config) -> Result<Producer, Error> {
    Producer::builder(config)
        .connector(Arc::new(cluster.connector()))
        .seed(11)
        .build()
}

async fn produce(producer: &Producer, n: usize, tag: &str) -> Result<Vec<i64>, Error> {
    let mut offsets = Vec::new();
    for i in 0..n {
        let record = ProducerRecord::new("secure")
            .with_partition(0)
            .with_value(format!("{tag}-{i}"));
        let written = tokio::time::timeout(BOUND, producer.send_and_wait(record))
            .await
            .expect("answered in time")
            .map_err(|e| e.error)?;
        offsets.push(written.offset);
    }
    Ok(offsets)
}

async fn consume(cluster: &Cluster, config: Config, n: usize) -> Vec<String> {
    let consumer = Consumer::builder(config)
        .connector(Arc::new(cluster.connector()))
        .seed(12)
        .build()
        .expect("consumer");
    let tp = TopicPartition::new("secure", 0);
    consumer.assign(std::slice::from_ref(&tp)).expect("assign");
    consumer.seek(&tp, Offset::Beginning).expect("seek");
    let mut values = Vec::new();
    while values.len() < n {
        let record = tokio::time::timeout(BOUND, consumer.recv())
            .await
            .expect("records in time")
            .expect("no error")
            .expect("not closed");
        values.push(
            String::from_utf8_lossy(record.value.as_deref().unwrap_or_default()).into_owned(),
        );
    }
    consumer.close().await;
    values
}

#[tokio::test(start_paused = true)]
async fn every_protocol_and_mechanism_produces_and_consumes() {
    for protocol in [SecurityProtocol::Plaintext, SecurityProtocol::Ssl] {
        let cluster = cluster(ListenerSecurity::new(protocol)).await;
        let config = config(&cluster, protocol);
        let producer = producer(&cluster, config.clone()).expect("producer");
        produce(&producer, 3, protocol.name())
            .await
            .expect("delivered");
        producer.close().await;
        assert_eq!(consume(&cluster, config, 3).await.len(), 3, "{protocol}");
    }
    for protocol in [SecurityProtocol::SaslPlaintext, SecurityProtocol::SaslSsl] {
        for mechanism in SaslMechanism::ALL {
            let cluster = cluster(ListenerSecurity::new(protocol)).await;
            let config = config(&cluster, protocol).sasl(sasl_for(mechanism, "alice-secret"));
            let producer = producer(&cluster, config.clone()).expect("producer");
            let offsets = produce(&producer, 3, mechanism.name())
                .await
                .expect("delivered");
            assert_eq!(offsets, vec![0, 1, 2], "{protocol} {mechanism}");
            producer.close().await;
            let values = consume(&cluster, config, 3).await;
            assert_eq!(values[2], format!("{}-2", mechanism.name()));
            // Before authentication only ApiVersions and the SASL requests were sent.
            let apis: Vec<ApiKey> = cluster.requests().iter().map(|r| r.api_key).collect();
            let first_other = apis
                .iter()
                .position(|a| {
                    !matches!(
                        a,
                        ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
                    )
                })
                .expect("requests after authentication");
            assert!(
                apis[..first_other].contains(&ApiKey::SaslAuthenticate),
                "{apis:?}"
            );
        }
    }
}

fn assert_authentication_error(error: &Error, needle: &str) {
    assert!(
        matches!(error, Error::Authentication { .. } | Error::Fatal(_)),
        "{error:?}"
    );
    assert!(error.is_fatal(), "{error}");
    assert!(!error.is_retriable(), "{error}");
    let text = error.to_string();
    assert!(text.contains(needle), "{text} lacks {needle}");
}

#[tokio::test(start_paused = true)]
async fn a_wrong_password_fails_fatally_naming_the_broker() {
    for mechanism in [
        SaslMechanism::Plain,
        SaslMechanism::ScramSha256,
        SaslMechanism::ScramSha512,
    ] {
        let cluster = cluster(ListenerSecurity::new(SecurityProtocol::SaslPlaintext)).await;
        let config =
            config(&cluster, SecurityProtocol::SaslPlaintext).sasl(sasl_for(mechanism, "wrong"));
        let producer = producer(&cluster, config).expect("producer");
        let error = produce(&producer, 1, "x").await.expect_err("refused");
        assert_authentication_error(&error, "franzy.invalid:9092");
        assert_authentication_error(&error, "invalid credentials");
    }
}

#[tokio::test(start_paused = true)]
async fn a_refused_mechanism_is_named() {
    let cluster = cluster(ListenerSecurity::new(SecurityProtocol::SaslPlaintext)).await;
    cluster.refuse_mechanism(SaslMechanism::ScramSha512);
    let config = config(&cluster, SecurityProtocol::SaslPlaintext)
        .sasl(sasl_for(SaslMechanism::ScramSha512, "alice-secret"));
    let producer = producer(&cluster, config.clone()).expect("producer");
    let error = produce(&producer, 1, "x").await.expect_err("refused");
    assert_authentication_error(&error, "does not enable SASL mechanism SCRAM-SHA-512");
    cluster.allow_mechanism(SaslMechanism::ScramSha512);
    let producer = self::producer(&cluster, config).expect("producer");
    produce(&producer, 1, "x").await.expect("accepted again");
}

#[tokio::test(start_paused = true)]
async fn an_injected_failure_fails_then_clears() {
    let cluster = cluster(ListenerSecurity::new(SecurityProtocol::SaslSsl)).await;
    let config = config(&cluster, SecurityProtocol::SaslSsl)
        .sasl(sasl_for(SaslMechanism::ScramSha256, "alice-secret"));
    // Every broker refuses (the metadata request tries each).
    cluster.fail_authentications(10);
    let producer = producer(&cluster, config.clone()).expect("producer");
    let error = produce(&producer, 1, "x").await.expect_err("injected");
    assert_authentication_error(&error, "injected");
    cluster.fail_authentications(0);
    let producer = self::producer(&cluster, config).expect("producer");
    produce(&producer, 2, "y").await.expect("cleared");
}

#[tokio::test(start_paused = true)]
async fn an_unknown_ca_is_a_tls_failure() {
    let cluster = cluster(ListenerSecurity::new(SecurityProtocol::Ssl)).await;
    // Mozilla's roots: the harness's CA is not among them.
    let config = Config::new(cluster.bootstrap()).security_protocol(SecurityProtocol::Ssl);
    let producer = producer(&cluster, config).expect("producer");
    let error = produce(&producer, 1, "x").await.expect_err("untrusted");
    assert_authentication_error(&error, "TLS handshake failed");
    assert_authentication_error(&error, "UnknownIssuer");
}

/// Reaches broker 0 under a name its certificate does not have.
struct Renamed(franzy_harness::InMemoryConnector);

impl Connector for Renamed {
    fn connect<'a>(&'a self, address: &'a str) -> ConnectFuture<'a> {
        let address = if address == "kafka.example.com:9092" {
            "broker-0.franzy.invalid:9092"
        } else {
            address
        };
        self.0.connect(address)
    }
}

#[tokio::test(start_paused = true)]
async fn a_certificate_for_another_host_is_refused_unless_verification_is_off() {
    let cluster = cluster(ListenerSecurity::new(SecurityProtocol::Ssl)).await;
    let ca = cluster.ca_pem().expect("generated CA");
    let build = |tls: TlsConfig| {
        let config = Config::new("kafka.example.com:9092")
            .security_protocol(SecurityProtocol::Ssl)
            .tls(tls);
        Producer::builder(config)
            .connector(Arc::new(Renamed(cluster.connector())))
            .seed(1)
            .build()
            .expect("producer")
    };
    let strict = build(TlsConfig::new().ca_pem(&ca).expect("CA"));
    let error = produce(&strict, 1, "x").await.expect_err("wrong name");
    assert_authentication_error(&error, "not valid for name \"kafka.example.com\"");
    let lenient = build(
        TlsConfig::new()
            .ca_pem(&ca)
            .expect("CA")
            .verify_hostname(false),
    );
    produce(&lenient, 1, "x")
        .await
        .expect("hostname not checked");
}

#[tokio::test(start_paused = true)]
async fn mutual_tls_needs_a_client_certificate_from_the_ca() {
    let cluster =
        cluster(ListenerSecurity::new(SecurityProtocol::Ssl).require_client_certificates(true))
            .await;
    let ca = cluster.ca_pem().expect("CA");
    let anonymous = producer(&cluster, config(&cluster, SecurityProtocol::Ssl)).expect("producer");
    assert!(produce(&anonymous, 1, "x").await.is_err());
    let (chain, key) = cluster.issue_client_certificate("app").expect("issued");
    let config = Config::new(cluster.bootstrap())
        .security_protocol(SecurityProtocol::Ssl)
        .tls(
            TlsConfig::new()
                .ca_pem(&ca)
                .expect("CA")
                .client_auth_pem(chain, key)
                .expect("key"),
        );
    let producer = producer(&cluster, config).expect("producer");
    produce(&producer, 2, "mtls").await.expect("delivered");
}

#[tokio::test(start_paused = true)]
async fn tokens_expire_and_the_client_reauthenticates_while_producing() {
    let cluster = cluster(ListenerSecurity::new(SecurityProtocol::SaslSsl)).await;
    let jwt = UnsecuredJwt::new("alice").lifetime(Duration::from_secs(60));
    let config = config(&cluster, SecurityProtocol::SaslSsl).sasl(Sasl::oauthbearer(Arc::new(jwt)));
    let producer = producer(&cluster, config.clone()).expect("producer");
    // Ten minutes of one record every 5 s: ten token lifetimes.
    let mut offsets = Vec::new();
    for round in 0..120 {
        offsets.extend(
            produce(&producer, 1, &format!("r{round}"))
                .await
                .expect("delivered"),
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    assert_eq!(
        offsets,
        (0..120).collect::<Vec<i64>>(),
        "no record lost or repeated"
    );
    let handshakes = cluster
        .requests()
        .iter()
        .filter(|r| r.api_key == ApiKey::SaslHandshake)
        .count();
    assert!(handshakes >= 10, "re-authenticated {handshakes} times");
    producer.close().await;
    assert_eq!(consume(&cluster, config, 120).await.len(), 120);
}

#[tokio::test(start_paused = true)]
async fn every_mechanism_reauthenticates_when_the_broker_sets_a_session_lifetime() {
    let security = ListenerSecurity::new(SecurityProtocol::SaslPlaintext)
        .connections_max_reauth(Duration::from_secs(30));
    let cluster = cluster(security).await;
    let config = config(&cluster, SecurityProtocol::SaslPlaintext)
        .sasl(sasl_for(SaslMechanism::ScramSha512, "alice-secret"));
    let producer = producer(&cluster, config).expect("producer");
    for round in 0..20 {
        produce(&producer, 1, &format!("r{round}"))
            .await
            .expect("delivered");
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    let authentications = cluster
        .requests()
        .iter()
        .filter(|r| r.api_key == ApiKey::SaslAuthenticate)
        .count();
    // Two per SCRAM exchange; about one exchange per 30 s per connection.
    assert!(
        authentications >= 10,
        "{authentications} SaslAuthenticate requests"
    );
}

#[tokio::test(start_paused = true)]
async fn an_expired_session_closes_the_connection_and_the_client_reconnects() {
    let cluster = cluster(ListenerSecurity::new(SecurityProtocol::SaslPlaintext)).await;
    let config = config(&cluster, SecurityProtocol::SaslPlaintext)
        .sasl(sasl_for(SaslMechanism::Plain, "alice-secret"));
    let producer = producer(&cluster, config).expect("producer");
    produce(&producer, 2, "before").await.expect("delivered");
    cluster.expire_sessions();
    let offsets = produce(&producer, 2, "after")
        .await
        .expect("delivered after reconnecting");
    assert_eq!(offsets, vec![2, 3]);
}

#[tokio::test]
async fn properties_configure_sasl_ssl_as_a_java_client_would() {
    let cluster = cluster(ListenerSecurity::new(SecurityProtocol::SaslSsl)).await;
    let ca = cluster.ca_pem_path().expect("CA file");
    let properties = format!(
        "bootstrap.servers={}\n\
         security.protocol=SASL_SSL\n\
         sasl.mechanism=SCRAM-SHA-512\n\
         sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required \\\n  username=\"bob\" password=\"bob-secret\";\n\
         ssl.truststore.type=PEM\n\
         ssl.truststore.location={}\n",
        cluster.bootstrap(),
        ca.display()
    );
    let config = Config::from_properties(&properties).expect("properties");
    let producer = producer(&cluster, config).expect("producer");
    produce(&producer, 2, "props").await.expect("delivered");
}

#[tokio::test(start_paused = true)]
async fn a_consumer_with_a_wrong_password_is_told_at_recv() {
    for mechanism in [SaslMechanism::Plain, SaslMechanism::ScramSha512] {
        let cluster = cluster(ListenerSecurity::new(SecurityProtocol::SaslSsl)).await;
        let config = config(&cluster, SecurityProtocol::SaslSsl).sasl(sasl_for(mechanism, "wrong"));
        let consumer = Consumer::builder(config)
            .connector(Arc::new(cluster.connector()))
            .seed(12)
            .build()
            .expect("consumer");
        let tp = TopicPartition::new("secure", 0);
        consumer.assign(std::slice::from_ref(&tp)).expect("assign");
        consumer.seek(&tp, Offset::Beginning).expect("seek");
        // Told, fatally, rather than retried in silence: recv answers with the error (an
        // outage whose cause is the refusal).
        let error = tokio::time::timeout(BOUND, consumer.recv())
            .await
            .expect("recv answers instead of retrying in silence")
            .expect_err("refused");
        assert!(error.is_fatal() && !error.is_retriable(), "{error:?}");
        let text = error.to_string();
        assert!(text.contains("invalid credentials"), "{text}");
        assert!(text.contains("franzy.invalid:9092"), "{text}");
        consumer.close().await;
    }
}

#[tokio::test(start_paused = true)]
async fn the_listeners_scram_users_are_what_describe_user_scram_credentials_lists() {
    let cluster = cluster(ListenerSecurity::new(SecurityProtocol::SaslPlaintext)).await;
    let users = cluster.with_state(|s| s.scram_users().clone());
    let names: Vec<&str> = users.keys().map(String::as_str).collect();
    assert_eq!(names, vec!["alice", "bob"]);
    // SCRAM-SHA-256 (1) and SCRAM-SHA-512 (2), at the listener's iterations.
    assert_eq!(users["alice"], vec![(1, 4096), (2, 4096)]);

    let plain_only = Cluster::builder()
        .brokers(1)
        .in_memory()
        .security(
            ListenerSecurity::new(SecurityProtocol::SaslPlaintext)
                .mechanisms(&[SaslMechanism::Plain])
                .user("carol", "carol-secret"),
        )
        .build()
        .await
        .expect("cluster starts");
    assert!(plain_only.with_state(|s| s.scram_users().is_empty()));
}
