//! Configuration carried over from other clients: a producer and a consumer configured from
//! the `.properties` files a Java application ships with, and from librdkafka-style
//! settings, work against the harness; the keys franzy ignores are warned about once each.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use franzy::consumer::{Consumer, ConsumerEvent};
use franzy::producer::{Producer, ProducerRecord};
use franzy::proto::compression::Compression;
use franzy::proto::record_batch::{DecodeLimits, RecordBatch};
use franzy::{Config, Error, TopicPartition};
use franzy_harness::Cluster;
use franzy_tests::{capture_events, init_tracing, CapturedEvents};

/// Longest a test waits for anything, in virtual time.
const BOUND: Duration = Duration::from_secs(120);

/// A Java producer's properties, as an application would carry them.
const JAVA_PRODUCER: &str = r"# orders-service producer
bootstrap.servers=BOOTSTRAP
client.id=orders-service
key.serializer=org.apache.kafka.common.serialization.StringSerializer
value.serializer=org.apache.kafka.common.serialization.ByteArraySerializer
security.protocol=PLAINTEXT
ssl.endpoint.identification.algorithm=https
client.dns.lookup=use_all_dns_ips
acks=all
enable.idempotence=true
max.in.flight.requests.per.connection=5
retries=2147483647
delivery.timeout.ms=120000
request.timeout.ms=30000
linger.ms=5
batch.size=16384
buffer.memory=33554432
compression.type=lz4
max.block.ms=60000
max.request.size=1048576
partitioner.ignore.keys=false
interceptor.classes=
metrics.recording.level=INFO
metrics.num.samples=2
metric.reporters=
retry.backoff.ms=100
reconnect.backoff.ms=50
reconnect.backoff.max.ms=1000
connections.max.idle.ms=540000
send.buffer.bytes=131072
# read by the application's serializer, not by Kafka
schema.registry.url=http://localhost:8081
";

/// The keys of [`JAVA_PRODUCER`] franzy warns about.
const PRODUCER_WARNINGS: &[&str] = &[
    "key.serializer (not supported)",
    "max.block.ms (not supported)",
    "metrics.recording.level (not supported)",
    "metrics.num.samples (not supported)",
    "connections.max.idle.ms (not supported)",
    "send.buffer.bytes (not supported)",
    "schema.registry.url (unknown)",
];

/// A Java consumer's properties.
const JAVA_CONSUMER: &str = r"# orders-audit consumer
bootstrap.servers: BOOTSTRAP
client.id: orders-audit
key.deserializer: org.apache.kafka.common.serialization.StringDeserializer
value.deserializer: org.apache.kafka.common.serialization.ByteArrayDeserializer
auto.offset.reset: earliest
enable.auto.commit: false
isolation.level: read_uncommitted
max.poll.records: 500
fetch.min.bytes: 1
fetch.max.wait.ms: 500
fetch.max.bytes: 52428800
max.partition.fetch.bytes: 1048576
session.timeout.ms: 45000
heartbeat.interval.ms: 3000
partition.assignment.strategy: org.apache.kafka.clients.consumer.RangeAssignor,\
    org.apache.kafka.clients.consumer.CooperativeStickyAssignor
check.crcs: true
allow.auto.create.topics: true
security.protocol: PLAINTEXT
client.dns.lookup: use_all_dns_ips
";

/// The keys of [`JAVA_CONSUMER`] franzy warns about.
const CONSUMER_WARNINGS: &[&str] = &[
    "key.deserializer (not supported)",
    "max.poll.records (not supported)",
];

async fn cluster(partitions: i32) -> Cluster {
    init_tracing();
    Cluster::builder()
        .brokers(3)
        .topic("orders", partitions)
        .in_memory()
        .seed(1)
        .build()
        .await
        .expect("cluster starts")
}

fn load(properties: &str, cluster: &Cluster) -> Config {
    Config::from_properties(&properties.replace("BOOTSTRAP", &cluster.bootstrap()))
        .expect("the properties load")
}

fn producer(cluster: &Cluster, config: Config) -> Producer {
    Producer::builder(config)
        .connector(Arc::new(cluster.connector()))
        .seed(7)
        .build()
        .expect("producer builds")
}

fn consumer(cluster: &Cluster, config: Config) -> Consumer {
    Consumer::builder(config)
        .connector(Arc::new(cluster.connector()))
        .seed(7)
        .build()
        .expect("consumer builds")
}

/// Sends `count` keyed records and waits for each delivery; returns `(key, value)` by
/// partition in offset order.
async fn produce(producer: &Producer, count: usize) -> BTreeMap<i32, Vec<(Bytes, Bytes)>> {
    let mut deliveries = Vec::new();
    for i in 0..count {
        let key = Bytes::from(format!("customer-{}", i % 7));
        let value = Bytes::from(format!("order-{i}"));
        let record = ProducerRecord::new("orders")
            .with_key(key.clone())
            .with_value(value.clone());
        let delivery = tokio::time::timeout(BOUND, producer.send(record))
            .await
            .expect("send returns in time")
            .expect("send accepts the record");
        deliveries.push((key, value, delivery));
    }
    let mut sent: BTreeMap<i32, Vec<(i64, Bytes, Bytes)>> = BTreeMap::new();
    for (key, value, delivery) in deliveries {
        let metadata = tokio::time::timeout(BOUND, delivery)
            .await
            .expect("delivery completes in time")
            .expect("delivered");
        sent.entry(metadata.partition)
            .or_default()
            .push((metadata.offset, key, value));
    }
    sent.into_iter()
        .map(|(partition, mut records)| {
            records.sort_by_key(|(offset, ..)| *offset);
            let records = records.into_iter().map(|(_, k, v)| (k, v)).collect();
            (partition, records)
        })
        .collect()
}

/// Reads `count` records from every partition of `orders` (and nothing but records).
async fn consume(
    consumer: &Consumer,
    partitions: i32,
    count: usize,
) -> BTreeMap<i32, Vec<(Bytes, Bytes)>> {
    let assignment: Vec<TopicPartition> = (0..partitions)
        .map(|p| TopicPartition::new("orders", p))
        .collect();
    consumer.assign(&assignment).expect("assigned");
    let mut read: BTreeMap<i32, Vec<(Bytes, Bytes)>> = BTreeMap::new();
    for _ in 0..count {
        let record = tokio::time::timeout(BOUND, consumer.recv())
            .await
            .expect("a record within the bound")
            .expect("no error")
            .expect("the consumer is open");
        read.entry(record.partition).or_default().push((
            record.key.expect("keyed"),
            record.value.expect("has a value"),
        ));
    }
    read
}

/// The compression and producer id of every stored batch of `orders`.
fn stored_batches(cluster: &Cluster, partitions: i32) -> Vec<(Compression, i64)> {
    (0..partitions)
        .flat_map(|partition| {
            cluster.with_state(|state| {
                state
                    .partition_log("orders", partition)
                    .expect("partition exists")
                    .batches()
                    .iter()
                    .map(|b| {
                        let batch = RecordBatch::decode(b.bytes(), &DecodeLimits::default())
                            .expect("stored batches decode");
                        (batch.compression, batch.producer_id)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect()
}

/// The `KEY (why)` part of every `ignored: KEY (why)` warning captured so far.
fn ignored_warnings(events: &CapturedEvents) -> Vec<String> {
    events
        .lines()
        .iter()
        .filter(|line| line.starts_with("WARN"))
        .filter_map(|line| {
            let rest = line.split_once("message=ignored: ")?.1;
            let end = rest.find(')')?;
            Some(rest[..=end].to_string())
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn java_properties_files_configure_a_producer_and_a_consumer() {
    let cluster = cluster(3).await;
    let (events, _guard) = capture_events();
    let producer_config = load(JAVA_PRODUCER, &cluster);
    assert_eq!(ignored_warnings(&events), PRODUCER_WARNINGS);
    for (key, value) in [
        ("client.id", "orders-service"),
        ("acks", "all"),
        ("enable.idempotence", "true"),
        ("compression.type", "lz4"),
        ("linger.ms", "5"),
        (
            "key.serializer",
            "org.apache.kafka.common.serialization.StringSerializer",
        ),
        ("max.block.ms", "60000"),
        ("interceptor.classes", ""),
        ("schema.registry.url", "http://localhost:8081"),
    ] {
        assert_eq!(producer_config.get(key).as_deref(), Some(value), "{key}");
    }
    let first = producer(&cluster, producer_config.clone());
    let sent = produce(&first, 60).await;
    assert!(
        first.producer_id().is_some(),
        "enable.idempotence=true took effect"
    );
    first.close().await;
    // A second client from the same configuration warns about nothing again.
    producer(&cluster, producer_config).close().await;
    let batches = stored_batches(&cluster, 3);
    assert!(!batches.is_empty());
    assert!(
        batches
            .iter()
            .all(|(compression, id)| *compression == Compression::Lz4 && *id >= 0),
        "every batch lz4-compressed and numbered: {batches:?}"
    );

    let consumer_config = load(JAVA_CONSUMER, &cluster);
    let consumer = consumer(&cluster, consumer_config.clone());
    let read = consume(&consumer, 3, 60).await;
    assert_eq!(read, sent, "every record back, in order per partition");
    assert_eq!(
        consumer_config
            .get("partition.assignment.strategy")
            .as_deref(),
        Some(
            "org.apache.kafka.clients.consumer.RangeAssignor,\
             org.apache.kafka.clients.consumer.CooperativeStickyAssignor"
        ),
        "the continuation line joined"
    );

    let expected: Vec<&str> = PRODUCER_WARNINGS
        .iter()
        .chain(CONSUMER_WARNINGS)
        .copied()
        .collect();
    assert_eq!(
        ignored_warnings(&events),
        expected,
        "each ignored key warned about once, the quiet ones never"
    );
    // The same file asking for SASL without a mechanism means Kafka's default, GSSAPI,
    // which franzy refuses when the client starts, rather than run unauthenticated.
    let sasl = JAVA_PRODUCER.replace("security.protocol=PLAINTEXT", "security.protocol=SASL_SSL");
    let sasl = Config::from_properties(&sasl)
        .and_then(|config| config.set("bootstrap.servers", cluster.bootstrap()))
        .expect("the properties parse");
    match franzy::Producer::builder(sasl).build() {
        Err(Error::Config { key, reason }) => {
            assert_eq!(key, "sasl.mechanism");
            assert!(reason.contains("GSSAPI"), "{reason}");
        }
        other => panic!("SASL_SSL with GSSAPI must be refused, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn librdkafka_names_configure_a_producer_and_a_consumer() {
    let cluster = cluster(1).await;
    let (events, _guard) = capture_events();
    let producer_config = load(
        "metadata.broker.list=BOOTSTRAP\n\
         queue.buffering.max.ms=0.5\n\
         compression.codec=zstd\n\
         message.timeout.ms=0\n\
         request.required.acks=-1\n\
         message.send.max.retries=10\n\
         socket.timeout.ms=20000\n\
         queue.buffering.max.kbytes=65536\n\
         statistics.interval.ms=0\n\
         debug=broker,topic,msg\n",
        &cluster,
    );
    assert_eq!(producer_config.get("linger.ms").as_deref(), Some("0.5"));
    assert_eq!(
        producer_config.get("buffer.memory").as_deref(),
        Some("67108864")
    );
    let first = producer(&cluster, producer_config);
    let sent = produce(&first, 20).await;
    first.close().await;
    assert!(stored_batches(&cluster, 1)
        .iter()
        .all(|(compression, _)| *compression == Compression::Zstd));

    let consumer = consumer(
        &cluster,
        load(
            "bootstrap.servers=BOOTSTRAP\n\
             auto.offset.reset=smallest\n\
             enable.partition.eof=true\n\
             fetch.wait.max.ms=100\n\
             fetch.message.max.bytes=65536\n\
             api.version.request=true\n",
            &cluster,
        ),
    );
    let read = consume(&consumer, 1, 20).await;
    assert_eq!(read, sent);
    let eof = tokio::time::timeout(BOUND, consumer.recv_event())
        .await
        .expect("an event within the bound");
    assert!(
        matches!(
            eof,
            Ok(Some(ConsumerEvent::PartitionEof {
                ref partition,
                offset: 20,
            })) if partition.partition == 0
        ),
        "{eof:?}"
    );
    assert_eq!(ignored_warnings(&events), ["debug (not supported)"]);
}
