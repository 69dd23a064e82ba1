//! Client statistics against the harness, under a paused clock: producer retries after an
//! injected retriable error, the consumer's committed offsets, and the
//! `statistics.interval.ms` callback.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use franzy::consumer::{Consumer, Offset};
use franzy::producer::{Producer, ProducerRecord};
use franzy::proto::{ApiKey, ErrorCode};
use franzy::{Config, Stats, TopicPartition};
use franzy_harness::{Action, Cluster, Interceptor};
use franzy_tests::init_tracing;

/// Longest a test waits for anything, in virtual time.
const BOUND: Duration = Duration::from_secs(600);

async fn cluster() -> Cluster {
    init_tracing();
    Cluster::builder()
        .brokers(1)
        .topic("orders", 2)
        .in_memory()
        .seed(11)
        .build()
        .await
        .expect("cluster starts")
}

async fn within<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(BOUND, future)
        .await
        .expect("done within the bound")
}

fn producer(cluster: &Cluster, config: Config) -> franzy::ProducerBuilder {
    Producer::builder(config.bootstrap_servers(cluster.bootstrap()))
        .connector(Arc::new(cluster.connector()))
        .seed(3)
}

async fn produce(producer: &Producer, partition: i32, count: usize) {
    let mut deliveries = Vec::new();
    for i in 0..count {
        let record = ProducerRecord::new("orders")
            .with_partition(partition)
            .with_value(format!("value-{i}"));
        deliveries.push(within(producer.send(record)).await.expect("accepted"));
    }
    for delivery in deliveries {
        within(delivery).await.expect("written");
    }
}

#[tokio::test(start_paused = true)]
async fn a_batch_retried_after_a_retriable_error_counts_as_a_retry() {
    let cluster = cluster().await;
    let producer = producer(&cluster, Config::default())
        .build()
        .expect("producer builds");
    // Warm up (metadata, producer id), then fail the next two Produce requests.
    produce(&producer, 0, 1).await;
    assert_eq!(producer.stats().retries, 0);
    cluster.intercept(
        Interceptor::new(
            ApiKey::Produce,
            Action::Error(ErrorCode::NotLeaderOrFollower),
        )
        .times(2),
    );
    produce(&producer, 0, 1).await;
    let stats = producer.stats();
    assert_eq!(stats.retries, 2, "{stats:?}");
    assert_eq!(stats.records, 2);
    assert_eq!(
        stats.errors.values().sum::<u64>(),
        0,
        "retried, then delivered: no record failed"
    );
    assert!(stats.to_json().contains("\"retries\":2"));
    assert_eq!(
        (stats.kind, stats.client_id.as_str()),
        ("producer", "franzy")
    );
    within(producer.close()).await;
}

#[tokio::test(start_paused = true)]
async fn the_committed_offset_appears_once_committed() {
    let cluster = cluster().await;
    let producer = producer(&cluster, Config::default())
        .build()
        .expect("producer builds");
    produce(&producer, 1, 5).await;
    within(producer.close()).await;

    let config = Config::new(cluster.bootstrap())
        .group_id("readers")
        .enable_auto_commit(false);
    let consumer = Consumer::builder(config)
        .connector(Arc::new(cluster.connector()))
        .seed(4)
        .build()
        .expect("consumer builds");
    let tp = TopicPartition::new("orders", 1);
    consumer
        .assign(std::slice::from_ref(&tp))
        .expect("assigned");
    consumer.seek(&tp, Offset::Beginning).expect("seek");
    for _ in 0..3 {
        within(consumer.recv())
            .await
            .expect("no error")
            .expect("a record");
    }
    let before = consumer.stats();
    assert_eq!(before.partitions[&tp].committed, None, "{before:?}");
    assert_eq!(before.partitions[&tp].position, Some(3));
    within(consumer.commit()).await.expect("committed");
    let after = consumer.stats();
    let partition = &after.partitions[&tp];
    assert_eq!(
        (partition.committed, partition.position, partition.lag),
        (Some(3), Some(3), Some(2))
    );
    assert!(after
        .to_json()
        .contains("\"orders/1\":{\"batch_bytes\":{\"count\":0,\"p50\":0,\"p90\":0,\"p99\":0,\"max\":0},\"position\":3,\"committed\":3,\"lag\":2}"));
    within(consumer.close()).await;
}

#[tokio::test(start_paused = true)]
async fn the_statistics_callback_gets_a_growing_snapshot_every_interval_until_close() {
    let cluster = cluster().await;
    let seen: Arc<Mutex<Vec<Stats>>> = Arc::default();
    let sink = seen.clone();
    let config = Config::default()
        .set("statistics.interval.ms", "1000")
        .expect("a known key");
    let producer = producer(&cluster, config)
        .on_statistics(move |stats| sink.lock().expect("not poisoned").push(stats.clone()))
        .build()
        .expect("producer builds");
    let started = tokio::time::Instant::now();
    for round in 0..3 {
        produce(&producer, round % 2, 4).await;
        tokio::time::sleep_until(started + Duration::from_millis(1000 * (round as u64 + 1) + 500))
            .await;
    }
    let snapshots = seen.lock().expect("not poisoned").clone();
    assert_eq!(snapshots.len(), 3, "one a second: {snapshots:?}");
    let records: Vec<u64> = snapshots.iter().map(|s| s.records).collect();
    assert_eq!(records, vec![4, 8, 12]);
    let ages: Vec<u128> = snapshots.iter().map(|s| s.age.as_millis()).collect();
    assert!(
        ages.windows(2).all(|w| w[1] == w[0] + 1000),
        "a second apart: {ages:?}"
    );
    assert!(snapshots.iter().all(|s| s
        .to_json()
        .starts_with("{\"client_id\":\"franzy\",\"type\":\"producer\"")));
    within(producer.close()).await;
    let closed_with = seen.lock().expect("not poisoned").len();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        seen.lock().expect("not poisoned").len() <= closed_with + 1,
        "the task stops once the producer is closed"
    );
}

#[tokio::test(start_paused = true)]
async fn a_consumer_reports_its_position_and_lag_every_interval_and_nothing_when_off() {
    let cluster = cluster().await;
    let producer = producer(&cluster, Config::default())
        .build()
        .expect("producer builds");
    produce(&producer, 0, 6).await;

    let seen: Arc<Mutex<Vec<Stats>>> = Arc::default();
    let sink = seen.clone();
    let consumer = Consumer::builder(
        Config::new(cluster.bootstrap()).statistics_interval(Duration::from_millis(250)),
    )
    .connector(Arc::new(cluster.connector()))
    .seed(5)
    .on_statistics(move |stats| sink.lock().expect("not poisoned").push(stats.clone()))
    .build()
    .expect("consumer builds");
    let tp = TopicPartition::new("orders", 0);
    consumer
        .assign(std::slice::from_ref(&tp))
        .expect("assigned");
    consumer.seek(&tp, Offset::Beginning).expect("seek");
    for _ in 0..6 {
        within(consumer.recv())
            .await
            .expect("no error")
            .expect("a record");
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    let last = seen
        .lock()
        .expect("not poisoned")
        .last()
        .cloned()
        .expect("snapshots came");
    assert_eq!(last.kind, "consumer");
    assert_eq!(last.records, 6);
    assert_eq!(
        (last.partitions[&tp].position, last.partitions[&tp].lag),
        (Some(6), Some(0))
    );

    // Off by default: a callback alone gets nothing.
    let quiet: Arc<Mutex<u64>> = Arc::default();
    let count = quiet.clone();
    let silent = producer_with_callback_only(&cluster, move || {
        *count.lock().expect("not poisoned") += 1;
    });
    produce(&silent, 1, 2).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(*quiet.lock().expect("not poisoned"), 0);
    within(silent.close()).await;
    within(consumer.close()).await;
    within(producer.close()).await;
}

fn producer_with_callback_only(
    cluster: &Cluster,
    called: impl Fn() + Send + Sync + 'static,
) -> Producer {
    producer(cluster, Config::default())
        .on_statistics(move |_| called())
        .build()
        .expect("producer builds")
}
