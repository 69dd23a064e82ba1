//! The producer against the harness, in memory, under a paused clock: every linger,
//! backoff and timeout here is virtual, so delays are asserted exactly and nothing sleeps.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use franzy::partitioner::partition_for_key;
use franzy::producer::{DeliveryFuture, Header, Producer, ProducerRecord, RecordMetadata};
use franzy::proto::compression::Compression;
use franzy::proto::record_batch::{DecodeLimits, RecordBatch};
use franzy::proto::{ApiKey, ErrorCode};
use franzy::{Acks, Config, Error, Persisted, ProduceError, TopicPartition};
use franzy_harness::{Action, Cluster, ClusterBuilder, Interceptor};
use franzy_tests::init_tracing;
use tokio::time::Instant;

/// Longest a test waits for anything, in virtual time.
const BOUND: Duration = Duration::from_secs(600);
const MS: Duration = Duration::from_millis(1);

fn builder(brokers: i32) -> ClusterBuilder {
    init_tracing();
    Cluster::builder()
        .brokers(brokers)
        .topic("orders", 6)
        .in_memory()
        .seed(1)
}

async fn cluster(brokers: i32) -> Cluster {
    builder(brokers).build().await.expect("cluster starts")
}

fn config(cluster: &Cluster) -> Config {
    Config::new(cluster.bootstrap())
}

fn producer(cluster: &Cluster, config: Config) -> Producer {
    Producer::builder(config)
        .connector(Arc::new(cluster.connector()))
        .seed(7)
        .build()
        .expect("valid config")
}

async fn send(producer: &Producer, record: ProducerRecord) -> DeliveryFuture {
    tokio::time::timeout(BOUND, producer.send(record))
        .await
        .expect("send returns in time")
        .expect("send accepts the record")
}

async fn outcome(delivery: DeliveryFuture) -> Result<RecordMetadata, ProduceError> {
    tokio::time::timeout(BOUND, delivery)
        .await
        .expect("delivery completes in time")
}

async fn delivered(delivery: DeliveryFuture) -> RecordMetadata {
    outcome(delivery).await.expect("delivered")
}

/// A record as stored: offset, key, value, headers.
type Stored = (i64, Option<Bytes>, Option<Bytes>, Vec<Header>);

/// Every record of a partition's log, decoded from the stored batches.
fn log(cluster: &Cluster, topic: &str, partition: i32) -> Vec<Stored> {
    batches(cluster, topic, partition)
        .into_iter()
        .flat_map(|batch| {
            let records: Vec<Stored> = batch
                .records
                .iter()
                .map(|r| {
                    (
                        batch.record_offset(r),
                        r.key.clone(),
                        r.value.clone(),
                        r.headers.clone(),
                    )
                })
                .collect();
            records
        })
        .collect()
}

fn batches(cluster: &Cluster, topic: &str, partition: i32) -> Vec<RecordBatch> {
    cluster.with_state(|state| {
        state
            .partition_log(topic, partition)
            .expect("partition exists")
            .batches()
            .iter()
            .map(|b| RecordBatch::decode(b.bytes(), &DecodeLimits::default()).expect("decodes"))
            .collect()
    })
}

fn values(cluster: &Cluster, topic: &str, partition: i32) -> Vec<String> {
    log(cluster, topic, partition)
        .into_iter()
        .map(|(_, _, value, _)| String::from_utf8_lossy(&value.unwrap_or_default()).into_owned())
        .collect()
}

/// When the recorded Produce requests arrived, relative to `since` (cluster uptime).
fn produce_times(cluster: &Cluster, since: Duration) -> Vec<Duration> {
    cluster
        .requests()
        .iter()
        .filter(|r| r.api_key == ApiKey::Produce)
        .map(|r| r.at.saturating_sub(since))
        .collect()
}

/// Batches sent in Produce requests (one per partition a request names), retries included.
fn batches_sent(cluster: &Cluster) -> usize {
    cluster
        .requests()
        .iter()
        .filter(|r| r.api_key == ApiKey::Produce)
        .map(|r| r.partition_count())
        .sum()
}

/// Sends one record to partition 1 of `orders` after `v0`, with the answer to its first
/// attempt lost (the broker appends, then drops the connection).
async fn send_with_a_lost_answer(
    cluster: &Cluster,
    producer: &Producer,
    value: &str,
) -> RecordMetadata {
    send_all(producer, numbered("orders", 1, 1)).await;
    cluster.intercept(Interceptor::new(
        ApiKey::Produce,
        Action::DisconnectAfterHandling,
    ));
    let record = ProducerRecord::new("orders")
        .with_partition(1)
        .with_value(value.to_string());
    delivered(send(producer, record).await).await
}

fn count(cluster: &Cluster, api: ApiKey) -> usize {
    cluster
        .requests()
        .iter()
        .filter(|r| r.api_key == api)
        .count()
}

fn numbered(topic: &str, partition: i32, n: usize) -> Vec<ProducerRecord> {
    (0..n)
        .map(|i| {
            ProducerRecord::new(topic)
                .with_partition(partition)
                .with_value(format!("v{i}"))
        })
        .collect()
}

async fn send_all(producer: &Producer, records: Vec<ProducerRecord>) -> Vec<RecordMetadata> {
    let mut deliveries = Vec::new();
    for record in records {
        deliveries.push(send(producer, record).await);
    }
    let mut metadata = Vec::new();
    for delivery in deliveries {
        metadata.push(delivered(delivery).await);
    }
    metadata
}

#[tokio::test(start_paused = true)]
async fn keyed_records_with_headers_land_where_murmur2_says_in_send_order() {
    let cluster = cluster(3).await;
    let producer = producer(&cluster, config(&cluster));
    let mut sent: Vec<ProducerRecord> = Vec::new();
    let mut deliveries = Vec::new();
    for i in 0..60 {
        let record = ProducerRecord::new("orders")
            .with_key(format!("customer-{}", i % 13))
            .with_value(format!("order-{i}"))
            .with_header("seq", i.to_string())
            .with_header("seq", "repeated keys are kept")
            .with_timestamp(1_700_000_000_000 + i);
        sent.push(record.clone());
        deliveries.push(send(&producer, record).await);
    }
    let mut per_partition: Vec<Vec<(i64, ProducerRecord)>> = vec![Vec::new(); 6];
    for (record, delivery) in sent.into_iter().zip(deliveries) {
        let metadata = delivered(delivery).await;
        let key = record.key.clone().expect("keyed");
        assert_eq!(&*metadata.topic, "orders");
        assert_eq!(metadata.partition, partition_for_key(&key, 6));
        assert_eq!(metadata.timestamp, record.timestamp.expect("set"));
        per_partition[metadata.partition as usize].push((metadata.offset, record));
    }
    for (partition, expected) in per_partition.iter().enumerate() {
        let stored = log(&cluster, "orders", partition as i32);
        let expected: Vec<Stored> = expected
            .iter()
            .map(|(offset, r)| (*offset, r.key.clone(), r.value.clone(), r.headers.clone()))
            .collect();
        assert_eq!(stored, expected, "partition {partition}");
        // Offsets are 0, 1, 2, ... in send order.
        assert!(stored
            .iter()
            .enumerate()
            .all(|(i, (offset, ..))| *offset == i as i64));
    }
    producer.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_record_waits_exactly_linger_ms_before_its_produce_request() {
    let cluster = cluster(3).await;
    let producer = producer(&cluster, config(&cluster).linger(50 * MS));
    let sent_at = cluster.uptime();
    let delivery = send(&producer, ProducerRecord::new("orders").with_value("x")).await;
    delivered(delivery).await;
    assert_eq!(produce_times(&cluster, sent_at), vec![50 * MS]);
    producer.close().await;
}

#[tokio::test(start_paused = true)]
async fn full_batches_go_at_once_and_only_the_last_one_lingers() {
    let cluster = cluster(3).await;
    // About 170 bytes per record: each 400-byte batch closes after two.
    let producer = producer(
        &cluster,
        config(&cluster)
            .linger(Duration::from_secs(1))
            .batch_size(400),
    );
    let sent_at = cluster.uptime();
    let records = (0..5)
        .map(|i| {
            ProducerRecord::new("orders")
                .with_partition(2)
                .with_value(format!("{i:0>150}"))
        })
        .collect();
    let metadata = send_all(&producer, records).await;
    assert_eq!(
        metadata.iter().map(|m| m.offset).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4]
    );
    let sizes: Vec<usize> = batches(&cluster, "orders", 2)
        .iter()
        .map(|b| b.records.len())
        .collect();
    assert_eq!(sizes, vec![2, 2, 1]);
    // The two full batches go one after the other without lingering (one batch per
    // partition in flight); the last, open one waits the full linger.ms.
    assert_eq!(
        produce_times(&cluster, sent_at),
        vec![Duration::ZERO, Duration::ZERO, Duration::from_secs(1)]
    );
    producer.close().await;
}

#[tokio::test(start_paused = true)]
async fn not_leader_refreshes_metadata_and_retries_in_order() {
    let cluster = cluster(3).await;
    let producer = producer(&cluster, config(&cluster));
    // Learn the metadata first.
    send_all(&producer, numbered("orders", 0, 1)).await;
    let metadata_before = count(&cluster, ApiKey::Metadata);
    cluster.intercept(
        Interceptor::new(
            ApiKey::Produce,
            Action::Error(ErrorCode::NotLeaderOrFollower),
        )
        .on_partition("orders", 0)
        .times(2),
    );
    let start = Instant::now();
    let records = (1..6)
        .map(|i| {
            ProducerRecord::new("orders")
                .with_partition(0)
                .with_value(format!("v{i}"))
        })
        .collect();
    let metadata = send_all(&producer, records).await;
    assert_eq!(
        metadata.iter().map(|m| m.offset).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    assert_eq!(cluster.pending_interceptors(), 0);
    assert!(count(&cluster, ApiKey::Metadata) > metadata_before);
    // Two backoffs of about 100 ms and 200 ms (+-20%) after the 5 ms linger.
    let elapsed = start.elapsed();
    assert!(
        elapsed >= 5 * MS + 240 * MS && elapsed <= 5 * MS + 360 * MS,
        "{elapsed:?}"
    );
    assert_eq!(
        values(&cluster, "orders", 0),
        vec!["v0", "v1", "v2", "v3", "v4", "v5"]
    );
    producer.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_moved_leader_is_found_through_metadata() {
    let cluster = cluster(3).await;
    let producer = producer(&cluster, config(&cluster));
    let first = send_all(&producer, numbered("orders", 3, 1)).await;
    assert_eq!(first[0].offset, 0);
    let (old, new) = cluster.with_state(|state| {
        let partition = state.partition("orders", 3).expect("exists");
        let old = partition.leader();
        let new = partition
            .replicas()
            .iter()
            .copied()
            .find(|&b| b != old)
            .expect("three replicas");
        state.set_leader("orders", 3, new).expect("moved");
        (old, new)
    });
    cluster.clear_requests();
    let records = (1..4)
        .map(|i| {
            ProducerRecord::new("orders")
                .with_partition(3)
                .with_value(format!("v{i}"))
        })
        .collect();
    send_all(&producer, records).await;
    let produce_brokers: Vec<i32> = cluster
        .requests()
        .iter()
        .filter(|r| r.api_key == ApiKey::Produce)
        .map(|r| r.broker_id)
        .collect();
    assert_eq!(
        produce_brokers.first(),
        Some(&old),
        "first to the old leader"
    );
    assert!(produce_brokers[1..].iter().all(|&b| b == new));
    assert!(count(&cluster, ApiKey::Metadata) >= 1);
    assert_eq!(values(&cluster, "orders", 3), vec!["v0", "v1", "v2", "v3"]);
    producer.close().await;
}

/// Without idempotence, a produce whose response is lost is retried and written again:
/// the log then holds the record twice.
#[tokio::test(start_paused = true)]
async fn a_dropped_connection_after_the_append_is_retried_and_duplicates_without_idempotence() {
    let cluster = cluster(3).await;
    let producer = producer(&cluster, config(&cluster).enable_idempotence(false));
    let metadata = send_with_a_lost_answer(&cluster, &producer, "twice").await;
    assert_eq!(metadata.offset, 2, "the first copy took offset 1");
    assert_eq!(values(&cluster, "orders", 1), vec!["v0", "twice", "twice"]);
    assert_eq!(producer.producer_id(), None);
    producer.close().await;
}

/// With idempotence (the default) the same lost response costs nothing: the broker knows
/// the retried batch by its producer id and sequence, does not write it again, and answers
/// with the offset of the first copy.
#[tokio::test(start_paused = true)]
async fn a_dropped_connection_after_the_append_is_retried_once_with_idempotence() {
    let cluster = cluster(3).await;
    let producer = producer(&cluster, config(&cluster));
    let metadata = send_with_a_lost_answer(&cluster, &producer, "once").await;
    assert_eq!(metadata.offset, 1, "the offset of the only copy");
    assert_eq!(values(&cluster, "orders", 1), vec!["v0", "once"]);
    let produces = count(&cluster, ApiKey::Produce);
    assert_eq!(produces, 3, "v0, the lost answer, and the retry");
    let (producer_id, epoch) = producer.producer_id().expect("idempotent");
    assert_eq!(epoch, 0);
    let stored = batches(&cluster, "orders", 1);
    assert!(stored.iter().all(|b| b.producer_id == producer_id));
    let sequences: Vec<i32> = stored.iter().map(|b| b.base_sequence).collect();
    assert_eq!(sequences, vec![0, 1]);
    producer.close().await;
}

/// Many numbered batches of each partition in flight over one connection per broker: they
/// must reach the broker in sequence order, or it refuses them as out of order. With no
/// fault injected, every batch is sent exactly once and the logs are the send order.
#[tokio::test(start_paused = true)]
async fn numbered_batches_reach_the_broker_in_sequence_order() {
    let cluster = cluster(3).await;
    let producer = producer(&cluster, config(&cluster).batch_size(400).linger(MS));
    let records: Vec<ProducerRecord> = (0..3000)
        .map(|i| {
            ProducerRecord::new("orders")
                .with_partition(i % 6)
                .with_value(format!("v{i}"))
        })
        .collect();
    send_all(&producer, records).await;
    let mut written = 0;
    for partition in 0..6 {
        let expected: Vec<String> = (0..3000)
            .filter(|i| i % 6 == partition)
            .map(|i| format!("v{i}"))
            .collect();
        assert_eq!(values(&cluster, "orders", partition), expected);
        written += batches(&cluster, "orders", partition).len();
    }
    let sent = batches_sent(&cluster);
    assert!(written > 6 * 10, "many batches per partition: {written}");
    assert_eq!(sent, written, "no batch was refused and sent again");
    producer.close().await;
}

/// A broker that lost the producer's state answers UNKNOWN_PRODUCER_ID: the producer bumps
/// its epoch, numbers the batch again from 0, and delivers it.
#[tokio::test(start_paused = true)]
async fn unknown_producer_id_bumps_the_epoch_and_the_batch_is_delivered() {
    let cluster = cluster(3).await;
    let producer = producer(&cluster, config(&cluster));
    send_all(&producer, numbered("orders", 2, 1)).await;
    cluster.intercept(Interceptor::new(
        ApiKey::Produce,
        Action::Error(ErrorCode::UnknownProducerId),
    ));
    let metadata = send_all(
        &producer,
        vec![ProducerRecord::new("orders")
            .with_partition(2)
            .with_value("after")],
    )
    .await;
    assert_eq!(metadata[0].offset, 1);
    let (producer_id, epoch) = producer.producer_id().expect("idempotent");
    assert_eq!(epoch, 1, "bumped once");
    let stored: Vec<(i64, i16, i32)> = batches(&cluster, "orders", 2)
        .iter()
        .map(|b| (b.producer_id, b.producer_epoch, b.base_sequence))
        .collect();
    assert_eq!(stored, vec![(producer_id, 0, 0), (producer_id, 1, 0)]);
    producer.close().await;
}

/// Brokers that cannot give a producer id: with idempotence only on by default the producer
/// goes on without it; asked for explicitly, every record fails with a fatal error.
#[tokio::test(start_paused = true)]
async fn without_init_producer_id_idempotence_is_dropped_unless_it_was_asked_for() {
    let cluster = cluster(3).await;
    cluster.intercept(
        Interceptor::new(
            ApiKey::InitProducerId,
            Action::Error(ErrorCode::UnsupportedVersion),
        )
        .keep(),
    );
    let by_default = producer(&cluster, config(&cluster));
    send_all(&by_default, numbered("orders", 0, 2)).await;
    assert_eq!(by_default.producer_id(), None);
    assert!(batches(&cluster, "orders", 0)
        .iter()
        .all(|b| b.producer_id == -1 && b.base_sequence == -1));
    by_default.close().await;

    let explicit = producer(&cluster, config(&cluster).enable_idempotence(true));
    let delivery = send(&explicit, ProducerRecord::new("orders").with_value("x")).await;
    let error = outcome(delivery).await.expect_err("no producer id");
    assert!(error.error.is_fatal(), "{error}");
    assert_eq!(error.persisted, Persisted::No);
    let later = send(&explicit, ProducerRecord::new("orders").with_value("y")).await;
    assert!(outcome(later)
        .await
        .expect_err("still fatal")
        .error
        .is_fatal());
    explicit.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_request_that_times_out_is_retried_on_a_new_connection() {
    let cluster = cluster(3).await;
    let producer = producer(
        &cluster,
        config(&cluster)
            .request_timeout(Duration::from_secs(5))
            .delivery_timeout(Duration::from_secs(30)),
    );
    send_all(&producer, numbered("orders", 4, 1)).await;
    cluster.intercept(Interceptor::new(ApiKey::Produce, Action::NeverAnswer));
    let start = Instant::now();
    let delivery = send(
        &producer,
        ProducerRecord::new("orders")
            .with_partition(4)
            .with_value("late"),
    )
    .await;
    let metadata = delivered(delivery).await;
    let elapsed = start.elapsed();
    // 5 ms linger, 5 s request timeout, then a backoff of 100 ms +-20%.
    assert!(
        elapsed >= Duration::from_millis(5085) && elapsed <= Duration::from_millis(5125),
        "{elapsed:?}"
    );
    // NeverAnswer did not append: the record is there once.
    assert_eq!(metadata.offset, 1);
    assert_eq!(values(&cluster, "orders", 4), vec!["v0", "late"]);
    producer.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_delayed_answer_past_the_request_timeout_is_retried_and_duplicates() {
    let (offset, values) = delayed_answer_past_the_request_timeout(false).await;
    assert_eq!(offset, 2);
    assert_eq!(values, vec!["v0", "slow", "slow"]);
}

#[tokio::test(start_paused = true)]
async fn a_delayed_answer_past_the_request_timeout_is_written_once_with_idempotence() {
    let (offset, values) = delayed_answer_past_the_request_timeout(true).await;
    assert_eq!(offset, 1);
    assert_eq!(values, vec!["v0", "slow"]);
}

/// A produce answered 10 s late with a 5 s request timeout: the client retries on a new
/// connection while the first attempt is still on its way. Returns the delivered offset and
/// the partition's values.
async fn delayed_answer_past_the_request_timeout(idempotent: bool) -> (i64, Vec<String>) {
    let cluster = cluster(3).await;
    let producer = producer(
        &cluster,
        config(&cluster)
            .request_timeout(Duration::from_secs(5))
            .delivery_timeout(Duration::from_secs(30))
            .enable_idempotence(idempotent),
    );
    send_all(&producer, numbered("orders", 5, 1)).await;
    cluster.intercept(Interceptor::new(
        ApiKey::Produce,
        Action::Delay(Duration::from_secs(10)),
    ));
    let delivery = send(
        &producer,
        ProducerRecord::new("orders")
            .with_partition(5)
            .with_value("slow"),
    )
    .await;
    let metadata = delivered(delivery).await;
    producer.close().await;
    (metadata.offset, values(&cluster, "orders", 5))
}

#[tokio::test(start_paused = true)]
async fn records_sent_while_the_only_broker_is_down_are_delivered_when_it_returns() {
    let cluster = cluster(1).await;
    cluster.stop_broker(0).expect("stopped");
    let producer = producer(&cluster, config(&cluster));
    let start = Instant::now();
    let deliveries = vec![
        send(
            &producer,
            ProducerRecord::new("orders").with_key("a").with_value("1"),
        )
        .await,
        send(
            &producer,
            ProducerRecord::new("orders").with_key("a").with_value("2"),
        )
        .await,
    ];
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.start_broker(0).await.expect("started");
    let mut offsets = Vec::new();
    for delivery in deliveries {
        offsets.push(delivered(delivery).await.offset);
    }
    assert_eq!(offsets, vec![0, 1]);
    assert!(start.elapsed() >= Duration::from_secs(2));
    let partition = partition_for_key(b"a", 6);
    assert_eq!(values(&cluster, "orders", partition), vec!["1", "2"]);
    producer.close().await;
}

#[tokio::test(start_paused = true)]
async fn delivery_timeout_of_a_record_never_sent_is_not_persisted() {
    let cluster = cluster(1).await;
    let producer = producer(
        &cluster,
        config(&cluster)
            .request_timeout(Duration::from_secs(5))
            .delivery_timeout(Duration::from_secs(10)),
    );
    send_all(&producer, numbered("orders", 0, 1)).await;
    cluster.stop_broker(0).expect("stopped");
    let start = Instant::now();
    let delivery = send(
        &producer,
        ProducerRecord::new("orders")
            .with_partition(0)
            .with_value("lost"),
    )
    .await;
    let error = outcome(delivery).await.expect_err("times out");
    assert!(
        matches!(error.error, Error::DeliveryTimeout(t) if t == Duration::from_secs(10)),
        "{error:?}"
    );
    assert_eq!(error.persisted, Persisted::No);
    assert_eq!(error.record.value.as_deref(), Some(&b"lost"[..]));
    assert_eq!(start.elapsed(), Duration::from_secs(10));
    producer.close().await;
}

#[tokio::test(start_paused = true)]
async fn delivery_timeout_of_a_record_sent_but_unanswered_is_possibly_persisted() {
    let cluster = cluster(3).await;
    let producer = producer(
        &cluster,
        config(&cluster)
            .request_timeout(Duration::from_secs(10))
            .delivery_timeout(Duration::from_secs(15)),
    );
    send_all(&producer, numbered("orders", 0, 1)).await;
    cluster.intercept(Interceptor::new(ApiKey::Produce, Action::NeverAnswer).keep());
    let start = Instant::now();
    let delivery = send(
        &producer,
        ProducerRecord::new("orders")
            .with_partition(0)
            .with_value("maybe"),
    )
    .await;
    let error = outcome(delivery).await.expect_err("times out");
    assert!(
        matches!(error.error, Error::DeliveryTimeout(_)),
        "{error:?}"
    );
    assert_eq!(error.persisted, Persisted::Possibly);
    assert_eq!(start.elapsed(), Duration::from_secs(15));
    cluster.clear_interceptors();
    producer.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_batch_the_broker_finds_too_large_is_split_until_it_fits() {
    let cluster = builder(3)
        .message_max_bytes(1000)
        .build()
        .await
        .expect("cluster starts");
    let producer = producer(&cluster, config(&cluster).linger(10 * MS));
    // Ten records of about 215 bytes: one batch of about 2.2 kB, each record fits alone.
    let records = (0..10)
        .map(|i| {
            ProducerRecord::new("orders")
                .with_partition(1)
                .with_value(format!("{i:0>200}"))
        })
        .collect();
    let metadata = send_all(&producer, records).await;
    assert_eq!(
        metadata.iter().map(|m| m.offset).collect::<Vec<_>>(),
        (0..10).collect::<Vec<i64>>()
    );
    let stored = batches(&cluster, "orders", 1);
    assert!(stored.len() > 1);
    assert!(stored
        .iter()
        .all(|b| b.encode().expect("encodes").len() <= 1000));
    let expected: Vec<String> = (0..10).map(|i| format!("{i:0>200}")).collect();
    assert_eq!(values(&cluster, "orders", 1), expected);
    producer.close().await;
}

#[tokio::test(start_paused = true)]
async fn send_waits_for_buffer_space_instead_of_failing() {
    let cluster = cluster(3).await;
    let producer = producer(
        &cluster,
        config(&cluster).buffer_memory(2048).max_request_size(1024),
    );
    send_all(&producer, numbered("orders", 0, 1)).await;
    cluster
        .intercept(Interceptor::new(ApiKey::Produce, Action::Delay(Duration::from_secs(1))).keep());
    let value = vec![b'x'; 600];
    let record = || {
        ProducerRecord::new("orders")
            .with_partition(0)
            .with_value(value.clone())
    };
    let start = Instant::now();
    // Each record reserves about 620 bytes: three fit in 2048.
    let mut deliveries = Vec::new();
    for _ in 0..3 {
        deliveries.push(send(&producer, record()).await);
    }
    assert_eq!(start.elapsed(), Duration::ZERO);
    let fourth = producer.send(record());
    tokio::pin!(fourth);
    assert!(
        tokio::time::timeout(Duration::from_millis(900), &mut fourth)
            .await
            .is_err(),
        "the fourth send waits while the buffer is full"
    );
    let fourth = tokio::time::timeout(BOUND, fourth)
        .await
        .expect("space frees up")
        .expect("no queue-full error");
    // The first record's delayed answer, a second after it was sent, freed the space.
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    deliveries.push(fourth);
    for (i, delivery) in deliveries.into_iter().enumerate() {
        assert_eq!(delivered(delivery).await.offset, i as i64 + 1);
    }
    cluster.clear_interceptors();
    producer.close().await;
}

#[tokio::test(start_paused = true)]
async fn acks_zero_reports_no_offset_and_acks_one_does() {
    let cluster = cluster(3).await;
    let none = producer(&cluster, config(&cluster).acks(Acks::None));
    let metadata = send_all(&none, numbered("orders", 2, 3)).await;
    assert!(metadata.iter().all(|m| m.offset == -1 && m.partition == 2));
    none.close().await;
    assert_eq!(values(&cluster, "orders", 2), vec!["v0", "v1", "v2"]);

    let leader = producer(&cluster, config(&cluster).acks(Acks::Leader));
    let metadata = send_all(&leader, numbered("orders", 2, 2)).await;
    assert_eq!(
        metadata.iter().map(|m| m.offset).collect::<Vec<_>>(),
        vec![3, 4]
    );
    leader.close().await;
}

#[tokio::test(start_paused = true)]
async fn every_codec_round_trips_through_the_broker() {
    let cluster = cluster(3).await;
    let codecs = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];
    for (partition, codec) in codecs.into_iter().enumerate() {
        let partition = partition as i32;
        let producer = producer(&cluster, config(&cluster).compression(codec));
        let records: Vec<ProducerRecord> = (0..20)
            .map(|i| {
                ProducerRecord::new("orders")
                    .with_partition(partition)
                    .with_key(format!("k{i}"))
                    .with_value(format!("{} {i}", codec.name()).repeat(20))
                    .with_header("codec", codec.name())
            })
            .collect();
        send_all(&producer, records.clone()).await;
        producer.close().await;
        let stored = batches(&cluster, "orders", partition);
        assert!(stored.iter().all(|b| b.compression == codec), "{codec:?}");
        let expected: Vec<(Option<Bytes>, Option<Bytes>, Vec<Header>)> = records
            .into_iter()
            .map(|r| (r.key, r.value, r.headers))
            .collect();
        let got: Vec<(Option<Bytes>, Option<Bytes>, Vec<Header>)> =
            log(&cluster, "orders", partition)
                .into_iter()
                .map(|(_, k, v, h)| (k, v, h))
                .collect();
        assert_eq!(got, expected, "{codec:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn an_unknown_topic_is_waited_for_and_auto_created() {
    let cluster = cluster(3).await;
    let producer = producer(&cluster, config(&cluster));
    let metadata = send_all(
        &producer,
        vec![
            ProducerRecord::new("fresh").with_value("a"),
            ProducerRecord::new("fresh").with_value("b"),
        ],
    )
    .await;
    assert_eq!(
        metadata.iter().map(|m| m.offset).collect::<Vec<_>>(),
        vec![0, 1]
    );
    assert_eq!(values(&cluster, "fresh", 0), vec!["a", "b"]);
    producer.close().await;
}

#[tokio::test(start_paused = true)]
async fn records_that_cannot_be_sent_fail_at_once_with_the_record() {
    let cluster = cluster(3).await;
    let producer = producer(&cluster, config(&cluster).max_request_size(2048));
    let big = ProducerRecord::new("orders").with_value(vec![0u8; 2048]);
    let error = producer.send(big).await.expect_err("too large");
    assert!(matches!(error.error, Error::TooLarge { .. }), "{error:?}");
    assert_eq!(error.persisted, Persisted::No);
    assert_eq!(error.record.value.as_ref().map(Bytes::len), Some(2048));

    // Metadata not yet known: the delivery reports the missing partition.
    let delivery = send(
        &producer,
        ProducerRecord::new("orders")
            .with_partition(6)
            .with_value("x"),
    )
    .await;
    let error = outcome(delivery).await.expect_err("no such partition");
    assert!(
        matches!(&error.error, Error::UnknownPartition { partition } if *partition == TopicPartition::new("orders", 6)),
        "{error:?}"
    );
    // Known now: send itself refuses.
    let error = producer
        .send(ProducerRecord::new("orders").with_partition(9))
        .await
        .expect_err("no such partition");
    assert!(matches!(
        error.error,
        Error::UnknownPartition { ref partition } if partition.partition == 9
    ));

    producer.close().await;
    let error = producer
        .send(ProducerRecord::new("orders").with_value("late"))
        .await
        .expect_err("closed");
    assert!(matches!(error.error, Error::Closed));
    assert_eq!(error.record.value.as_deref(), Some(&b"late"[..]));
}

#[tokio::test(start_paused = true)]
async fn flush_sends_without_lingering_and_close_finishes_everything() {
    let cluster = cluster(3).await;
    let producer = producer(&cluster, config(&cluster).linger(Duration::from_secs(60)));
    let start = Instant::now();
    let first = send(&producer, ProducerRecord::new("orders").with_value("a")).await;
    tokio::time::timeout(BOUND, producer.flush())
        .await
        .expect("flush ends");
    assert!(start.elapsed() < Duration::from_secs(1));
    assert_eq!(delivered(first).await.offset, 0);
    let second = send(&producer, ProducerRecord::new("orders").with_value("b")).await;
    tokio::time::timeout(BOUND, producer.close())
        .await
        .expect("close ends");
    assert!(start.elapsed() < Duration::from_secs(1));
    delivered(second).await;
}

/// The ordering guarantee under random faults without idempotence, with
/// `max.in.flight.requests.per.connection=1` (Kafka's recipe for strict order without
/// idempotence): with one batch per partition in flight, a retried batch can only be
/// repeated right after itself (a lost answer), never reordered. So each partition's log,
/// with immediately repeated batches collapsed, is exactly the send order. `FRANZY_SEED`
/// picks the fault pattern and the producer's jitter.
#[tokio::test(start_paused = true)]
async fn per_partition_order_survives_random_faults() {
    let (duplicates, _) = random_faults(false).await;
    assert!(
        duplicates > 0,
        "the faults caused some retries of written batches"
    );
}

/// The same faults with idempotence: up to 5 batches of a partition in flight, and yet each
/// partition's log is exactly the send order, with no batch written twice.
#[tokio::test(start_paused = true)]
async fn idempotence_keeps_order_without_duplicates_under_random_faults() {
    let (duplicates, retried) = random_faults(true).await;
    assert_eq!(duplicates, 0, "no batch written twice");
    assert!(retried > 0, "the faults caused retries");
}

/// Sends 300 keyed records to 6 partitions while a tenth of the produce requests get a
/// fault, and checks that every record is at its reported offset and that each
/// partition's log, with immediately repeated batches collapsed, is the send order.
/// Returns the number of collapsed repeats and of batches sent beyond those written.
async fn random_faults(idempotent: bool) -> (usize, usize) {
    let seed: u64 = std::env::var("FRANZY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_240_601);
    init_tracing();
    let cluster = Cluster::builder()
        .brokers(3)
        .topic("orders", 6)
        .in_memory()
        .seed(seed)
        .build()
        .await
        .expect("cluster starts");
    let producer = Producer::builder(
        config(&cluster)
            .batch_size(300)
            .request_timeout(Duration::from_secs(2))
            .enable_idempotence(idempotent)
            .max_in_flight(if idempotent { 5 } else { 1 }),
    )
    .connector(Arc::new(cluster.connector()))
    .seed(seed)
    .build()
    .expect("valid config");
    for action in [
        Action::DisconnectAfterHandling,
        Action::Error(ErrorCode::NotLeaderOrFollower),
        Action::Disconnect,
        Action::Delay(Duration::from_secs(3)),
    ] {
        cluster.intercept(
            Interceptor::new(ApiKey::Produce, action)
                .keep()
                .with_probability(0.1),
        );
    }
    let mut deliveries = Vec::new();
    for i in 0..300 {
        let record = ProducerRecord::new("orders")
            .with_key(format!("k{}", i % 17))
            .with_value(format!("v{i}"));
        deliveries.push((record.clone(), send(&producer, record).await));
        if i % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }
    let mut expected: Vec<Vec<String>> = vec![Vec::new(); 6];
    for (record, delivery) in deliveries {
        let metadata = outcome(delivery)
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let value =
            String::from_utf8_lossy(record.value.as_deref().unwrap_or_default()).into_owned();
        let stored = log(&cluster, "orders", metadata.partition);
        let at = stored
            .iter()
            .find(|(offset, ..)| *offset == metadata.offset)
            .and_then(|(_, _, v, _)| v.clone());
        assert_eq!(
            at.as_deref(),
            Some(value.as_bytes()),
            "seed {seed}: reported offset holds the record"
        );
        expected[metadata.partition as usize].push(value);
    }
    cluster.clear_interceptors();
    let mut duplicates = 0;
    let mut written = 0;
    for (partition, expected) in expected.iter().enumerate() {
        let mut collapsed: Vec<Vec<String>> = Vec::new();
        for batch in batches(&cluster, "orders", partition as i32) {
            written += 1;
            if idempotent {
                assert!(batch.producer_id >= 0, "seed {seed}: numbered batches");
            }
            let values: Vec<String> = batch
                .records
                .iter()
                .map(|r| {
                    String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned()
                })
                .collect();
            if collapsed.last() == Some(&values) {
                duplicates += 1;
            } else {
                collapsed.push(values);
            }
        }
        let flat: Vec<String> = collapsed.into_iter().flatten().collect();
        assert_eq!(&flat, expected, "seed {seed}: partition {partition}");
    }
    producer.close().await;
    let sent = batches_sent(&cluster);
    (duplicates, sent.saturating_sub(written))
}

#[tokio::test(start_paused = true)]
async fn metadata_is_refreshed_every_max_age_and_produce_uses_v13_topic_ids() {
    let cluster = cluster(3).await;
    let producer = producer(
        &cluster,
        config(&cluster).metadata_max_age(Duration::from_secs(10)),
    );
    send_all(&producer, numbered("orders", 0, 1)).await;
    tokio::time::sleep(Duration::from_secs(35)).await;
    let fetches: Vec<Duration> = cluster
        .requests()
        .iter()
        .filter(|r| r.api_key == ApiKey::Metadata)
        .map(|r| r.at)
        .collect();
    let refreshes: Vec<Duration> = fetches.iter().map(|at| *at - fetches[0]).collect();
    assert_eq!(
        refreshes,
        vec![
            Duration::ZERO,
            Duration::from_secs(10),
            Duration::from_secs(20),
            Duration::from_secs(30)
        ]
    );
    let produce = cluster
        .requests()
        .into_iter()
        .find(|r| r.api_key == ApiKey::Produce)
        .expect("one produce");
    assert_eq!(produce.api_version, 13);
    assert_eq!(produce.partitions, vec![("orders".into(), 0)]);
    producer.close().await;
}

#[tokio::test(start_paused = true)]
async fn dropping_the_producer_still_delivers_what_it_accepted() {
    let cluster = cluster(3).await;
    let producer = producer(&cluster, config(&cluster).linger(Duration::from_secs(5)));
    let clone = producer.clone();
    let first = send(&producer, ProducerRecord::new("orders").with_value("a")).await;
    drop(producer);
    let second = send(&clone, ProducerRecord::new("orders").with_value("b")).await;
    drop(clone);
    let start = Instant::now();
    delivered(first).await;
    delivered(second).await;
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "sent without lingering"
    );
}

#[test]
fn config_errors_name_the_key() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = runtime.enter();
    let error = Producer::new(Config::new("a:1").max_in_flight(9)).expect_err("invalid");
    assert!(
        matches!(&error, Error::Config { key, .. } if key == "max.in.flight.requests.per.connection")
    );
    let error = Producer::new(Config::new("a:1").buffer_memory(10)).expect_err("invalid");
    assert!(matches!(&error, Error::Config { key, .. } if key == "buffer.memory"));
    let error = Config::new("a:1")
        .set("linger.ms", "soon")
        .expect_err("invalid");
    assert!(error.to_string().contains("linger.ms"));
    fn assert_bounds<T: Send + Sync + 'static + std::error::Error>() {}
    assert_bounds::<Error>();
    assert_bounds::<ProduceError>();
}

#[tokio::test(start_paused = true)]
async fn send_and_wait_returns_where_the_record_was_written_or_why_not() {
    let cluster = cluster(1).await;
    let producer = producer(
        &cluster,
        config(&cluster).set("linger.ms", "5").expect("valid"),
    );
    let start = Instant::now();
    let first = tokio::time::timeout(
        BOUND,
        producer.send_and_wait(
            ProducerRecord::new("orders")
                .with_partition(2)
                .with_value("one"),
        ),
    )
    .await
    .expect("in time")
    .expect("written");
    assert_eq!(
        (&*first.topic, first.partition, first.offset),
        ("orders", 2, 0)
    );
    assert!(
        start.elapsed() >= 5 * MS,
        "it waited for the acknowledgement"
    );
    let second = producer
        .send_and_wait(
            ProducerRecord::new("orders")
                .with_partition(2)
                .with_value("two"),
        )
        .await
        .expect("written");
    assert_eq!(second.offset, 1);
    let values: Vec<_> = log(&cluster, "orders", 2)
        .into_iter()
        .map(|(offset, _, value, _)| (offset, value))
        .collect();
    assert_eq!(
        values,
        vec![(0, Some(Bytes::from("one"))), (1, Some(Bytes::from("two")))]
    );
    // A failure gives the record back, as a DeliveryFuture would.
    cluster.intercept(
        Interceptor::new(ApiKey::Produce, Action::Error(ErrorCode::InvalidRecord))
            .on_partition("orders", 2),
    );
    let error = producer
        .send_and_wait(
            ProducerRecord::new("orders")
                .with_partition(2)
                .with_value("refused"),
        )
        .await
        .expect_err("refused");
    assert_eq!(error.error.code(), Some(ErrorCode::InvalidRecord));
    assert_eq!(
        error.error.partition(),
        Some(&TopicPartition::new("orders", 2))
    );
    assert_eq!(error.record.value.as_deref(), Some(&b"refused"[..]));
    assert_eq!(error.persisted, Persisted::No);
    // Refused at once, as send is, once closed.
    producer.close().await;
    let closed = producer
        .send_and_wait(ProducerRecord::new("orders").with_value("late"))
        .await
        .expect_err("closed");
    assert!(matches!(closed.error, Error::Closed));
}
