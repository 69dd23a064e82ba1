//! librdkafka's mock-cluster fault scenarios (its tests/0105-0146), re-expressed as harness
//! tests of franzy's client: the same faults, injected with interceptors and broker stops
//! under a paused clock, and franzy's own guarantees checked (no fatal error, nothing
//! written twice, every acknowledged record at its offset). DESIGN.md lists which scenarios
//! are covered and why the others are not yet. The C tests were read, not copied; where the
//! mock differs from Kafka, Kafka's behaviour is what is expected (CONVENTIONS rule 17).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use franzy::producer::{DeliveryFuture, Producer, ProducerRecord, RecordMetadata};
use franzy::proto::record_batch::{DecodeLimits, RecordBatch};
use franzy::proto::{ApiKey, ErrorCode};
use franzy::{Config, Consumer, Offset, Persisted, ProduceError, TopicPartition};
use franzy_harness::{Action, Cluster, Interceptor};
use franzy_tests::init_tracing;

/// Longest anything is waited for, in virtual time.
const BOUND: Duration = Duration::from_secs(600);

async fn cluster(brokers: i32, topic: &str) -> Cluster {
    init_tracing();
    Cluster::builder()
        .brokers(brokers)
        .topic(topic, 1)
        .in_memory()
        .seed(144)
        .build()
        .await
        .expect("cluster starts")
}

/// An idempotent producer sending each record in a batch of its own, as the C tests'
/// `batch.num.messages=1`, `linger.ms=0`.
fn producer(cluster: &Cluster, extra: &[(&str, &str)]) -> Producer {
    let mut config = Config::new(cluster.bootstrap())
        .set("enable.idempotence", "true")
        .and_then(|c| c.set("acks", "all"))
        .and_then(|c| c.set("linger.ms", "0"))
        .and_then(|c| c.set("batch.size", "1"))
        .expect("valid");
    for (key, value) in extra {
        config = config.set(key, value).expect("valid");
    }
    Producer::builder(config)
        .connector(Arc::new(cluster.connector()))
        .seed(7)
        .build()
        .expect("producer builds")
}

async fn send(producer: &Producer, topic: &str, value: String) -> DeliveryFuture {
    tokio::time::timeout(
        BOUND,
        producer.send(
            ProducerRecord::new(topic)
                .with_partition(0)
                .with_value(value),
        ),
    )
    .await
    .expect("send returns")
    .expect("send accepts")
}

async fn outcome(delivery: DeliveryFuture) -> Result<RecordMetadata, ProduceError> {
    tokio::time::timeout(BOUND, delivery)
        .await
        .expect("delivery completes in time")
}

/// The values in partition 0's log, by offset.
fn log(cluster: &Cluster, topic: &str) -> BTreeMap<i64, String> {
    cluster.with_state(|state| {
        let mut out = BTreeMap::new();
        for stored in state.partition_log(topic, 0).expect("partition").batches() {
            let batch =
                RecordBatch::decode(stored.bytes(), &DecodeLimits::default()).expect("decodes");
            if batch.is_control {
                continue;
            }
            for record in &batch.records {
                let value = String::from_utf8_lossy(record.value.as_deref().unwrap_or_default());
                out.insert(batch.record_offset(record), value.into_owned());
            }
        }
        out
    })
}

/// franzy's guarantees for what `sent` got back: nothing written twice, every record
/// acknowledged at an offset holds it there, nothing "certainly not written" is written,
/// and the producer is not fatally failed (a new record still goes through).
async fn check_guarantees(
    cluster: &Cluster,
    producer: &Producer,
    topic: &str,
    sent: Vec<(String, Result<RecordMetadata, ProduceError>)>,
) {
    check(cluster, producer, topic, sent, true).await;
}

/// As [`check_guarantees`]; `persisted_exact` false leaves out the "certainly not written"
/// check (see `idempotence_0144_possibly_persisted_batches_cause_no_fatal_error`).
async fn check(
    cluster: &Cluster,
    producer: &Producer,
    topic: &str,
    sent: Vec<(String, Result<RecordMetadata, ProduceError>)>,
    persisted_exact: bool,
) {
    let stored = log(cluster, topic);
    let mut seen: BTreeMap<&str, i64> = BTreeMap::new();
    for (offset, value) in &stored {
        if let Some(first) = seen.insert(value, *offset) {
            panic!("{value} written twice: at {first} and {offset}: {stored:?}");
        }
    }
    for (value, result) in &sent {
        match result {
            Ok(metadata) if metadata.offset >= 0 => assert_eq!(
                stored.get(&metadata.offset),
                Some(value),
                "{value} acknowledged at {}",
                metadata.offset
            ),
            Ok(_) => {}
            Err(error) if persisted_exact && error.persisted == Persisted::No => {
                assert!(!seen.contains_key(value.as_str()), "{value}: {error}");
            }
            Err(_) => {}
        }
    }
    // Injected faults left over are not the producer's: a new record must go through.
    cluster.clear_interceptors();
    let after = send(producer, topic, "after".into()).await;
    outcome(after)
        .await
        .expect("no fatal error: the producer goes on");
}

/// 0117-mock_errors `do_test_producer_storage_error`: three KAFKA_STORAGE_ERRORs are
/// retried through with the default `retries`, and fail the record with `retries=2`.
#[tokio::test(start_paused = true)]
async fn mock_errors_0117_storage_errors_are_retried_until_retries_run_out() {
    for (retries, succeeds) in [(None, true), (Some("2"), false)] {
        let cluster = cluster(1, "t").await;
        cluster.intercept(
            Interceptor::new(ApiKey::Produce, Action::Error(ErrorCode::KafkaStorageError)).times(3),
        );
        let extra: Vec<(&str, &str)> = retries.iter().map(|r| ("retries", *r)).collect();
        let producer = producer(&cluster, &extra);
        let result = outcome(send(&producer, "t", "v".into()).await).await;
        match result {
            Ok(metadata) => {
                assert!(succeeds, "retries=2 must give up: {metadata:?}");
                assert_eq!(
                    log(&cluster, "t").get(&metadata.offset).map(String::as_str),
                    Some("v")
                );
            }
            Err(error) => {
                assert!(!succeeds, "default retries ride out three errors: {error}");
                assert_eq!(error.error.code(), Some(ErrorCode::KafkaStorageError));
                assert_eq!(error.persisted, Persisted::No);
                assert!(log(&cluster, "t").is_empty());
            }
        }
    }
}

/// 0144-idempotence_mock `do_test_idempo_possibly_persisted_not_causing_fatal_error(n)`:
/// `n` batches are written but answered late, the broker goes down, its first answers after
/// that are NOT_ENOUGH_REPLICAS then OUT_OF_ORDER_SEQUENCE_NUMBER, and more records are
/// sent meanwhile. No fatal error, nothing written twice.
#[tokio::test(start_paused = true)]
async fn idempotence_0144_possibly_persisted_batches_cause_no_fatal_error() {
    possibly_persisted_then_out_of_order(false).await;
}

/// The same, also holding franzy to its promise that a batch one of whose attempts went
/// unanswered fails as `Persisted::Possibly`, never `No`. It does not yet: the retried batch
/// that OUT_OF_ORDER_SEQUENCE_NUMBER fails (every batch before it acknowledged) is reported
/// `Persisted::No` although its first attempt is in the log (DESIGN.md, fault lab).
#[tokio::test(start_paused = true)]
#[ignore = "known bug: Persisted::No for a batch whose earlier attempt was written (DESIGN.md)"]
async fn idempotence_0144_a_possibly_persisted_batch_never_fails_as_not_persisted() {
    possibly_persisted_then_out_of_order(true).await;
}

async fn possibly_persisted_then_out_of_order(persisted_exact: bool) {
    for n in 1..=5 {
        let cluster = cluster(1, "mytopic").await;
        let producer = producer(&cluster, &[]);
        let mut sent = Vec::new();
        for i in 0..5 {
            let value = format!("first-{i}");
            let result = outcome(send(&producer, "mytopic", value.clone()).await).await;
            sent.push((value, result));
        }
        for _ in 0..n {
            cluster.intercept(Interceptor::new(
                ApiKey::Produce,
                Action::Delay(Duration::from_millis(750)),
            ));
        }
        cluster.intercept(Interceptor::new(
            ApiKey::Produce,
            Action::Error(ErrorCode::NotEnoughReplicas),
        ));
        cluster.intercept(
            Interceptor::new(
                ApiKey::Produce,
                Action::Error(ErrorCode::OutOfOrderSequenceNumber),
            )
            .times(4),
        );
        let mut pending = Vec::new();
        for i in 0..n {
            let value = format!("retried-{i}");
            pending.push((value.clone(), send(&producer, "mytopic", value).await));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        cluster.stop_broker(0).expect("stops");
        tokio::time::sleep(Duration::from_millis(250)).await;
        for i in 0..5 - n {
            let value = format!("queued-{i}");
            pending.push((value.clone(), send(&producer, "mytopic", value).await));
        }
        cluster.start_broker(0).await.expect("starts");
        for (value, delivery) in pending {
            sent.push((value, outcome(delivery).await));
        }
        check(&cluster, &producer, "mytopic", sent, persisted_exact).await;
        producer.close().await;
    }
}

/// 0144-idempotence_mock `do_test_idempo_duplicate_sequence_number_after_possibly_persisted`:
/// the first answer is DUPLICATE_SEQUENCE_NUMBER (which old brokers send for a batch they
/// already have: delivered, offset unknown), then the broker goes down and comes back. The
/// injected answer is a lie (the batch was not written), so the next batch is refused as
/// out of order, as by librdkafka's mock: what matters, as in the C test, is that nothing
/// is fatal, and that nothing is written twice or reported at an offset that holds another
/// record.
#[tokio::test(start_paused = true)]
async fn idempotence_0144_duplicate_sequence_after_possibly_persisted_is_delivered() {
    let cluster = cluster(1, "mytopic").await;
    let producer = producer(&cluster, &[]);
    let mut sent = Vec::new();
    for i in 0..5 {
        let value = format!("first-{i}");
        let result = outcome(send(&producer, "mytopic", value.clone()).await).await;
        sent.push((value, result));
    }
    cluster.intercept(Interceptor::new(
        ApiKey::Produce,
        Action::Error(ErrorCode::DuplicateSequenceNumber),
    ));
    let mut pending = Vec::new();
    for i in 0..5 {
        let value = format!("second-{i}");
        pending.push((value.clone(), send(&producer, "mytopic", value).await));
    }
    cluster.stop_broker(0).expect("stops");
    tokio::time::sleep(Duration::from_millis(250)).await;
    cluster.start_broker(0).await.expect("starts");
    for (value, delivery) in pending {
        sent.push((value, outcome(delivery).await));
    }
    assert!(
        sent[5].1.is_ok(),
        "DUPLICATE_SEQUENCE_NUMBER counts as delivered"
    );
    check_guarantees(&cluster, &producer, "mytopic", sent).await;
}

/// 0144-idempotence_mock `do_test_idempo_success_after_possibly_persisted`: a first answer
/// of NOT_ENOUGH_REPLICAS_AFTER_APPEND, then success: all five records, once each, in order.
#[tokio::test(start_paused = true)]
async fn idempotence_0144_success_after_not_enough_replicas_after_append() {
    let cluster = cluster(1, "mytopic").await;
    cluster.intercept(Interceptor::new(
        ApiKey::Produce,
        Action::Error(ErrorCode::NotEnoughReplicasAfterAppend),
    ));
    let producer = producer(&cluster, &[]);
    let mut pending = Vec::new();
    for i in 0..5 {
        let value = format!("v{i}");
        pending.push((value.clone(), send(&producer, "mytopic", value).await));
    }
    let mut sent = Vec::new();
    for (value, delivery) in pending {
        let result = outcome(delivery).await;
        assert!(result.is_ok(), "{value}: {result:?}");
        sent.push((value, result));
    }
    let values: Vec<String> = log(&cluster, "mytopic").into_values().collect();
    assert_eq!(values, ["v0", "v1", "v2", "v3", "v4"]);
    check_guarantees(&cluster, &producer, "mytopic", sent).await;
}

/// 0143-exponential_backoff_mock, the produce part: a partition's retries back off
/// exponentially from `retry.backoff.ms` (jittered by ±20%, KIP-580) up to
/// `retry.backoff.max.ms`.
#[tokio::test(start_paused = true)]
async fn exponential_backoff_0143_produce_retries_double_up_to_the_maximum() {
    let cluster = cluster(1, "t").await;
    cluster.intercept(
        Interceptor::new(ApiKey::Produce, Action::Error(ErrorCode::NotEnoughReplicas)).times(5),
    );
    let producer = producer(
        &cluster,
        &[
            ("retry.backoff.ms", "100"),
            ("retry.backoff.max.ms", "1000"),
        ],
    );
    let metadata = outcome(send(&producer, "t", "v".into()).await)
        .await
        .expect("delivered after five errors");
    assert_eq!(metadata.offset, 0);
    let times: Vec<Duration> = cluster
        .requests()
        .iter()
        .filter(|r| r.api_key == ApiKey::Produce)
        .map(|r| r.at)
        .collect();
    assert_eq!(times.len(), 6, "five refused, one written");
    let waits: Vec<u128> = times
        .windows(2)
        .map(|w| (w[1] - w[0]).as_millis())
        .collect();
    for (wait, base) in waits.iter().zip([100u128, 200, 400, 800, 1000]) {
        assert!(
            *wait * 10 >= base * 8 && *wait * 10 <= base * 12 + 10,
            "waits {waits:?}: {wait} ms is not {base} ms ± 20%"
        );
    }
}

/// 0145-pause_resume_mock: resuming a partition that is not paused (an "unnecessary
/// resume") while fetches are under way makes the consumer deliver nothing twice and skip
/// nothing; neither does a pause and resume in the middle.
#[tokio::test(start_paused = true)]
async fn pause_resume_0145_an_unnecessary_resume_duplicates_nothing() {
    let cluster = cluster(1, "t").await;
    let producer = producer(&cluster, &[("batch.size", "16384"), ("linger.ms", "5")]);
    let mut pending = Vec::new();
    for i in 0..300 {
        pending.push(send(&producer, "t", format!("v{i}")).await);
    }
    for delivery in pending {
        outcome(delivery).await.expect("delivered");
    }
    let consumer = Consumer::builder(
        Config::new(cluster.bootstrap())
            .set("max.partition.fetch.bytes", "2000")
            .expect("valid"),
    )
    .connector(Arc::new(cluster.connector()))
    .seed(5)
    .build()
    .expect("consumer builds");
    let tp = TopicPartition::new("t", 0);
    consumer.assign(std::slice::from_ref(&tp)).expect("assign");
    consumer.seek(&tp, Offset::Beginning).expect("seek");
    let mut offsets = Vec::new();
    while offsets.len() < 300 {
        let record = tokio::time::timeout(BOUND, consumer.recv())
            .await
            .expect("in time")
            .expect("no error")
            .expect("open");
        offsets.push(record.offset);
        match offsets.len() {
            100 => consumer.resume(std::slice::from_ref(&tp)).expect("resume"),
            200 => {
                consumer.pause(std::slice::from_ref(&tp)).expect("pause");
                tokio::time::sleep(Duration::from_secs(1)).await;
                consumer.resume(std::slice::from_ref(&tp)).expect("resume");
            }
            _ => {}
        }
    }
    assert_eq!(offsets, (0..300).collect::<Vec<i64>>());
}

/// 0146-metadata_mock `do_test_fast_metadata_refresh` (variation 0): an error that asks for
/// a metadata refresh without any leader change gets one refresh, not a loop of them.
#[tokio::test(start_paused = true)]
async fn metadata_0146_an_error_without_a_leader_change_refreshes_once() {
    let cluster = cluster(3, "t").await;
    let producer = producer(&cluster, &[]);
    outcome(send(&producer, "t", "warm".into()).await)
        .await
        .expect("delivered");
    let metadata_requests = |cluster: &Cluster| {
        cluster
            .requests()
            .iter()
            .filter(|r| r.api_key == ApiKey::Metadata)
            .count()
    };
    let before = metadata_requests(&cluster);
    cluster.intercept(Interceptor::new(
        ApiKey::Produce,
        Action::Error(ErrorCode::NotLeaderOrFollower),
    ));
    let mut pending = Vec::new();
    for i in 0..3 {
        pending.push(send(&producer, "t", format!("v{i}")).await);
    }
    for delivery in pending {
        outcome(delivery).await.expect("delivered");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let refreshes = metadata_requests(&cluster) - before;
    assert!(
        (1..=2).contains(&refreshes),
        "one refresh (two at most), not a loop: {refreshes}"
    );
}

/// 0146-metadata_mock, the leader-change side: when the leader moves, the producer follows
/// it and delivers everything once.
#[tokio::test(start_paused = true)]
async fn metadata_0146_a_leader_change_is_followed() {
    let cluster = cluster(3, "t").await;
    let producer = producer(&cluster, &[]);
    let mut sent = Vec::new();
    for round in 0..3 {
        let leader = cluster.with_state(|s| s.partition("t", 0).map(|p| p.leader()));
        let next = (leader.unwrap_or(0) + 1) % 3;
        cluster
            .with_state(|s| s.set_leader("t", 0, next))
            .expect("every broker is a replica");
        let mut pending = Vec::new();
        for i in 0..10 {
            let value = format!("r{round}-{i}");
            pending.push((value.clone(), send(&producer, "t", value).await));
        }
        for (value, delivery) in pending {
            let result = outcome(delivery).await;
            assert!(result.is_ok(), "{value}: {result:?}");
            sent.push((value, result));
        }
    }
    assert_eq!(log(&cluster, "t").len(), 30);
    check_guarantees(&cluster, &producer, "t", sent).await;
}
