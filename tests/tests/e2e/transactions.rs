//! The transactional producer and the read_committed consumer against the harness's
//! transaction coordinator, in memory, under a paused clock (every timeout is virtual):
//! commits and aborts as readers see them, a zombie fenced by a new instance, a producer that
//! dies mid-transaction, EndTxn answers lost or never given and a coordinator moved
//! mid-commit (the torn-commit rule), CONCURRENT_TRANSACTIONS retried, offsets committed with
//! a transaction, and three producers interleaving on six partitions with random aborts
//! checked against a model.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use franzy::proto::{ApiKey, ErrorCode};
use franzy::{
    Config, Consumer, ConsumerEvent, ConsumerGroupMetadata, ConsumerRecord, Error, Offset,
    Producer, ProducerRecord, TopicPartition,
};
use franzy_harness::{Action, Cluster, ClusterBuilder, Interceptor};
use franzy_tests::{init_tracing, SplitMix64};

/// Longest a test waits for anything, in virtual time.
const BOUND: Duration = Duration::from_secs(900);
const TOPIC: &str = "t";
const PARTITIONS: i32 = 6;

fn builder() -> ClusterBuilder {
    init_tracing();
    Cluster::builder()
        .brokers(3)
        .topic(TOPIC, PARTITIONS)
        .in_memory()
        .seed(1)
}

async fn cluster() -> Cluster {
    builder().build().await.expect("cluster starts")
}

async fn within<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(BOUND, future)
        .await
        .expect("done within the bound")
}

fn config(cluster: &Cluster, transactional_id: &str) -> Config {
    Config::new(cluster.bootstrap()).transactional_id(transactional_id)
}

fn producer(cluster: &Cluster, config: Config) -> Producer {
    Producer::builder(config)
        .connector(Arc::new(cluster.connector()))
        .seed(7)
        .build()
        .expect("valid config")
}

/// A producer with `transactional_id`, initialised.
async fn initialised(cluster: &Cluster, transactional_id: &str) -> Producer {
    let producer = producer(cluster, config(cluster, transactional_id));
    within(producer.init_transactions())
        .await
        .expect("init_transactions");
    producer
}

fn record(partition: i32, value: &str) -> ProducerRecord {
    ProducerRecord::new(TOPIC)
        .with_partition(partition)
        .with_value(value.to_string())
}

/// Sends `values` to `partition` and waits until each is written.
async fn send_all(producer: &Producer, partition: i32, values: &[&str]) {
    let mut deliveries = Vec::new();
    for value in values {
        let delivery = within(producer.send(record(partition, value)))
            .await
            .expect("send accepted");
        deliveries.push(delivery);
    }
    for delivery in deliveries {
        within(delivery).await.expect("delivered");
    }
}

fn consumer(cluster: &Cluster, isolation: &str) -> (Consumer, Vec<TopicPartition>) {
    let config = Config::new(cluster.bootstrap())
        .set("isolation.level", isolation)
        .and_then(|c| c.set("enable.partition.eof", "true"))
        .expect("valid settings");
    let consumer = Consumer::builder(config)
        .connector(Arc::new(cluster.connector()))
        .seed(9)
        .build()
        .expect("valid config");
    let partitions: Vec<TopicPartition> = (0..PARTITIONS)
        .map(|p| TopicPartition::new(TOPIC, p))
        .collect();
    consumer.assign(&partitions).expect("assign");
    for tp in &partitions {
        consumer.seek(tp, Offset::Beginning).expect("seek");
    }
    (consumer, partitions)
}

/// Everything the consumer hands out until every partition reported its end at the high
/// watermark (so with read_committed: no transaction open anywhere).
async fn read_to_end(consumer: &Consumer, partitions: &[TopicPartition]) -> Vec<ConsumerRecord> {
    let mut records = Vec::new();
    let mut done = HashSet::new();
    while done.len() < partitions.len() {
        let event = within(consumer.recv_event())
            .await
            .expect("no consumer error")
            .expect("consumer open");
        match event {
            ConsumerEvent::Record(record) => records.push(record),
            ConsumerEvent::PartitionEof { partition, offset } => {
                let high_watermark = consumer.watermarks(&partition).map(|(_, hw)| hw);
                if high_watermark == Some(offset) {
                    done.insert(partition);
                }
            }
            other => panic!("unexpected event {other:?}"),
        }
    }
    records
}

fn values(records: &[ConsumerRecord]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        .collect()
}

/// Values per partition, in offset order.
fn by_partition(records: &[ConsumerRecord]) -> BTreeMap<i32, Vec<String>> {
    let mut out: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
    for r in records {
        let value = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned();
        out.entry(r.partition).or_default().push((r.offset, value));
    }
    out.into_iter()
        .map(|(p, mut v)| {
            v.sort();
            (p, v.into_iter().map(|(_, value)| value).collect())
        })
        .collect()
}

fn committed(
    cluster: &Cluster,
    group: &str,
    topic: &str,
    partition: i32,
) -> Result<Option<i64>, ErrorCode> {
    cluster.with_state(|s| {
        s.offsets()
            .fetch(group, topic, partition, false)
            .map(|o| o.map(|o| o.offset))
    })
}

#[tokio::test(start_paused = true)]
async fn a_committed_transaction_is_read_and_an_aborted_one_never_is() {
    let cluster = cluster().await;
    let producer = initialised(&cluster, "tx").await;
    let outside = within(producer.send(record(0, "outside")))
        .await
        .expect_err("not in a transaction");
    assert!(
        matches!(outside.error, Error::InvalidTransactionState(_)),
        "{outside}"
    );
    within(producer.begin_transaction()).await.expect("begin");
    send_all(&producer, 0, &["c1", "c2"]).await;
    send_all(&producer, 3, &["c3"]).await;
    within(producer.commit_transaction()).await.expect("commit");
    within(producer.begin_transaction()).await.expect("begin");
    send_all(&producer, 0, &["a1"]).await;
    send_all(&producer, 4, &["a2"]).await;
    within(producer.abort_transaction()).await.expect("abort");
    within(producer.begin_transaction()).await.expect("begin");
    send_all(&producer, 0, &["c4"]).await;
    within(producer.commit_transaction()).await.expect("commit");
    within(producer.close()).await;

    let (committed_reader, partitions) = consumer(&cluster, "read_committed");
    let records = read_to_end(&committed_reader, &partitions).await;
    assert_eq!(
        by_partition(&records),
        BTreeMap::from([
            (0, vec!["c1".into(), "c2".into(), "c4".into()]),
            (3, vec!["c3".into()]),
        ])
    );
    let (uncommitted_reader, partitions) = consumer(&cluster, "read_uncommitted");
    let records = read_to_end(&uncommitted_reader, &partitions).await;
    assert_eq!(
        by_partition(&records),
        BTreeMap::from([
            (0, vec!["c1".into(), "c2".into(), "a1".into(), "c4".into()]),
            (3, vec!["c3".into()]),
            (4, vec!["a2".into()]),
        ]),
        "every record but the markers"
    );
    // The markers' offsets are stepped over: the position is the end.
    for tp in &partitions {
        let end = uncommitted_reader.watermarks(tp).map(|(_, hw)| hw);
        assert_eq!(committed_reader.position(tp), end, "{tp}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_zombie_is_fenced_by_a_new_instance_and_its_commit_fails_as_fenced() {
    let cluster = cluster().await;
    let zombie = initialised(&cluster, "tx").await;
    within(zombie.begin_transaction()).await.expect("begin");
    send_all(&zombie, 1, &["zombie"]).await;
    // A new instance with the same id: the zombie's transaction is aborted, the zombie fenced.
    let successor = initialised(&cluster, "tx").await;
    let error = within(zombie.commit_transaction())
        .await
        .expect_err("fenced");
    assert!(error.is_fatal(), "{error}");
    assert_eq!(error.code(), Some(ErrorCode::ProducerFenced), "{error}");
    let again = within(zombie.begin_transaction()).await.expect_err("fatal");
    assert!(again.is_fatal(), "{again}");
    within(successor.begin_transaction()).await.expect("begin");
    send_all(&successor, 1, &["successor"]).await;
    within(successor.commit_transaction())
        .await
        .expect("commit");
    within(successor.close()).await;
    within(zombie.close()).await;
    let (reader, partitions) = consumer(&cluster, "read_committed");
    assert_eq!(
        values(&read_to_end(&reader, &partitions).await),
        vec!["successor"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_producer_that_dies_mid_transaction_is_aborted_after_its_timeout() {
    let cluster = builder()
        .transaction_abort_interval(Duration::from_millis(200))
        .build()
        .await
        .expect("cluster starts");
    let config = config(&cluster, "dies")
        .transaction_timeout(Duration::from_secs(2))
        .set("request.timeout.ms", "1000")
        .expect("valid");
    let doomed = producer(&cluster, config);
    let started = tokio::time::Instant::now();
    within(doomed.init_transactions()).await.expect("init");
    within(doomed.begin_transaction()).await.expect("begin");
    send_all(&doomed, 2, &["never"]).await;
    // It dies: no commit, no abort, no close.
    std::mem::forget(doomed);
    let plain = producer(&cluster, Config::new(cluster.bootstrap()));
    within(plain.send_and_wait(record(2, "after")))
        .await
        .expect("written");
    let (reader, _) = consumer(&cluster, "read_committed");
    let tp = TopicPartition::new(TOPIC, 2);
    reader.assign(std::slice::from_ref(&tp)).expect("assign");
    // The open transaction holds the LSO at its first offset: nothing is visible yet.
    let first = within(reader.recv_event())
        .await
        .expect("ok")
        .expect("open");
    assert!(
        matches!(&first, ConsumerEvent::PartitionEof { offset: 0, .. }),
        "{first:?}"
    );
    // Past the transaction timeout the coordinator aborts it, and the LSO moves on.
    let next = within(reader.recv()).await.expect("ok").expect("open");
    assert_eq!(next.value.as_deref(), Some(&b"after"[..]));
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "visible only once the transaction timed out ({:?})",
        started.elapsed()
    );
    within(plain.close()).await;
}

/// A transaction of `values` on partition 0, then its commit's outcome.
async fn commit_one(producer: &Producer, values: &[&str]) -> Result<(), Error> {
    within(producer.begin_transaction()).await.expect("begin");
    send_all(producer, 0, values).await;
    within(producer.commit_transaction()).await
}

#[tokio::test(start_paused = true)]
async fn a_lost_end_txn_answer_is_retried_and_the_commit_reported_truthfully() {
    let cluster = cluster().await;
    let producer = initialised(&cluster, "tx").await;
    cluster.intercept(
        Interceptor::new(ApiKey::EndTxn, Action::DisconnectAfterHandling)
            .on_transactional_id("tx")
            .times(1),
    );
    commit_one(&producer, &["once"])
        .await
        .expect("the retry finds it committed");
    let ends = cluster
        .requests()
        .iter()
        .filter(|r| r.api_key == ApiKey::EndTxn)
        .count();
    assert!(ends >= 2, "the commit was sent again ({ends})");
    within(producer.close()).await;
    let (reader, partitions) = consumer(&cluster, "read_committed");
    assert_eq!(
        values(&read_to_end(&reader, &partitions).await),
        vec!["once"]
    );
}

/// A producer whose EndTxn is never answered: the commit is reported unknown. The
/// coordinator checks for timed-out transactions every `abort_interval`.
async fn never_answered(abort_interval: Duration) -> (Cluster, Producer, i16) {
    let cluster = builder()
        .transaction_abort_interval(abort_interval)
        .build()
        .await
        .expect("cluster starts");
    let config = config(&cluster, "tx")
        .transaction_timeout(Duration::from_secs(10))
        .set("request.timeout.ms", "2000")
        .expect("valid");
    let producer = producer(&cluster, config);
    within(producer.init_transactions()).await.expect("init");
    let (_, epoch) = producer.producer_id().expect("an id");
    cluster.intercept(
        Interceptor::new(ApiKey::EndTxn, Action::NeverAnswer)
            .on_transactional_id("tx")
            .keep(),
    );
    let error = commit_one(&producer, &["maybe"])
        .await
        .expect_err("no answer");
    assert!(
        matches!(error, Error::TransactionOutcomeUnknown { .. }),
        "{error}"
    );
    assert!(!error.is_fatal() && !error.is_retriable() && !error.requires_abort());
    assert_eq!(error.code(), None);
    cluster.clear_interceptors();
    (cluster, producer, epoch)
}

#[tokio::test(start_paused = true)]
async fn a_commit_never_answered_is_reported_unknown_and_the_next_transaction_uses_a_new_epoch() {
    // The coordinator looks for timed-out transactions rarely: the producer settles its
    // transaction (EndTxn(abort)) and bumps its epoch before the coordinator would.
    let (cluster, producer, epoch) = never_answered(Duration::from_secs(3600)).await;
    commit_one(&producer, &["next"]).await.expect("commits");
    let (_, bumped) = producer.producer_id().expect("an id");
    assert!(bumped > epoch, "epoch {epoch} used again ({bumped})");
    within(producer.close()).await;
    let (reader, partitions) = consumer(&cluster, "read_committed");
    // The EndTxn(commit) was never handled: the transaction was aborted.
    assert_eq!(
        values(&read_to_end(&reader, &partitions).await),
        vec!["next"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_commit_never_answered_then_aborted_by_the_coordinator_leaves_the_producer_fenced() {
    // The coordinator aborted the transaction on its timeout first, which fences its epoch
    // (Kafka with transaction.version 1): no re-initialisation of this producer can be
    // told apart from a zombie's, so the next transaction fails for good, truthfully.
    let (cluster, producer, _) = never_answered(Duration::from_millis(500)).await;
    within(producer.begin_transaction())
        .await
        .map(|()| panic!("a fenced producer began a transaction"))
        .unwrap_or_else(|error| assert!(error.is_fatal(), "{error}"));
    within(producer.close()).await;
    let (reader, partitions) = consumer(&cluster, "read_committed");
    assert!(read_to_end(&reader, &partitions).await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_commit_whose_coordinator_moves_mid_commit_is_reported_as_it_ended() {
    let cluster = builder()
        .transaction_marker_delay(Duration::from_millis(200))
        .build()
        .await
        .expect("cluster starts");
    let producer = initialised(&cluster, "tx").await;
    let old = cluster
        .transaction_coordinator("tx")
        .expect("a coordinator");
    cluster.intercept(
        Interceptor::new(ApiKey::EndTxn, Action::DisconnectAfterHandling)
            .on_transactional_id("tx")
            .times(1),
    );
    within(producer.begin_transaction()).await.expect("begin");
    send_all(&producer, 0, &["moved"]).await;
    let commit = tokio::spawn({
        let producer = producer.clone();
        async move { producer.commit_transaction().await }
    });
    // As soon as the first EndTxn was handled (its answer lost), the coordinator moves.
    within(async {
        while !cluster
            .requests()
            .iter()
            .any(|r| r.api_key == ApiKey::EndTxn)
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    let new = cluster
        .broker_ids()
        .into_iter()
        .find(|&b| b != old)
        .expect("another broker");
    cluster
        .move_transaction_coordinator("tx", new)
        .expect("moved");
    within(commit)
        .await
        .expect("task ran")
        .expect("the new coordinator completed the commit");
    within(producer.close()).await;
    let (reader, partitions) = consumer(&cluster, "read_committed");
    assert_eq!(
        values(&read_to_end(&reader, &partitions).await),
        vec!["moved"]
    );
}

#[tokio::test(start_paused = true)]
async fn concurrent_transactions_is_retried() {
    let cluster = cluster().await;
    let producer = initialised(&cluster, "tx").await;
    for api in [ApiKey::AddPartitionsToTxn, ApiKey::EndTxn] {
        cluster.intercept(
            Interceptor::new(api, Action::Error(ErrorCode::ConcurrentTransactions))
                .on_transactional_id("tx")
                .times(3),
        );
    }
    commit_one(&producer, &["retried"])
        .await
        .expect("commits after the retries");
    let count = |api| {
        cluster
            .requests()
            .iter()
            .filter(|r| r.api_key == api)
            .count()
    };
    assert_eq!(count(ApiKey::AddPartitionsToTxn), 4);
    assert_eq!(count(ApiKey::EndTxn), 4);
    within(producer.close()).await;
    let (reader, partitions) = consumer(&cluster, "read_committed");
    assert_eq!(
        values(&read_to_end(&reader, &partitions).await),
        vec!["retried"]
    );
}

#[tokio::test(start_paused = true)]
async fn offsets_sent_to_a_transaction_are_committed_only_with_it() {
    let cluster = cluster().await;
    let producer = initialised(&cluster, "tx").await;
    let group = ConsumerGroupMetadata::new("g");
    // Offsets of an input partition (a topic that exists: the coordinator answers
    // UNKNOWN_TOPIC_OR_PARTITION, retriable, for one that does not, as Kafka does).
    let input = TopicPartition::new(TOPIC, 5);

    within(producer.begin_transaction()).await.expect("begin");
    send_all(&producer, 0, &["out-1"]).await;
    within(producer.send_offsets_to_transaction([(input.clone(), 17)], &group))
        .await
        .expect("offsets added");
    assert_eq!(
        committed(&cluster, "g", TOPIC, 5),
        Ok(None),
        "not before the commit"
    );
    within(producer.abort_transaction()).await.expect("abort");
    assert_eq!(
        committed(&cluster, "g", TOPIC, 5),
        Ok(None),
        "aborted with it"
    );

    within(producer.begin_transaction()).await.expect("begin");
    send_all(&producer, 0, &["out-2"]).await;
    within(producer.send_offsets_to_transaction([(input.clone(), 42)], &group))
        .await
        .expect("offsets added");
    assert_eq!(committed(&cluster, "g", TOPIC, 5), Ok(None));
    within(producer.commit_transaction()).await.expect("commit");
    assert_eq!(committed(&cluster, "g", TOPIC, 5), Ok(Some(42)));
    within(producer.close()).await;
}

#[tokio::test(start_paused = true)]
async fn three_producers_interleaving_with_random_aborts_match_the_model() {
    let seed = std::env::var("FRANZY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x7a5e_u64);
    eprintln!("FRANZY_SEED={seed}");
    let cluster = cluster().await;
    let mut tasks = Vec::new();
    for p in 0..3u64 {
        let producer = initialised(&cluster, &format!("tx-{p}")).await;
        let mut rng = SplitMix64::new(seed ^ (p + 1).wrapping_mul(0x9e37_79b9));
        tasks.push(tokio::spawn(async move {
            // The records this producer committed, per partition, in send order.
            let mut committed: BTreeMap<i32, Vec<String>> = BTreeMap::new();
            let mut sent: BTreeMap<i32, Vec<String>> = BTreeMap::new();
            for t in 0..12 {
                producer.begin_transaction().await.expect("begin");
                let mut this: BTreeMap<i32, Vec<String>> = BTreeMap::new();
                let mut deliveries = Vec::new();
                for r in 0..1 + rng.below(6) {
                    let partition = rng.below(PARTITIONS as u64) as i32;
                    let value = format!("p{p}-t{t}-r{r}");
                    this.entry(partition).or_default().push(value.clone());
                    let delivery = producer
                        .send(record(partition, &value))
                        .await
                        .expect("send accepted");
                    deliveries.push(delivery);
                    if rng.below(3) == 0 {
                        // Let the others interleave.
                        tokio::time::sleep(Duration::from_millis(rng.below(20))).await;
                    }
                }
                for delivery in deliveries {
                    delivery.await.expect("delivered");
                }
                for (partition, values) in &this {
                    sent.entry(*partition).or_default().extend(values.clone());
                }
                if rng.below(3) == 0 {
                    producer.abort_transaction().await.expect("abort");
                } else {
                    producer.commit_transaction().await.expect("commit");
                    for (partition, values) in this {
                        committed.entry(partition).or_default().extend(values);
                    }
                }
            }
            producer.close().await;
            (committed, sent)
        }));
    }
    let mut committed: Vec<BTreeMap<i32, Vec<String>>> = Vec::new();
    let mut sent: Vec<BTreeMap<i32, Vec<String>>> = Vec::new();
    for task in tasks {
        let (c, s) = within(task).await.expect("producer task");
        committed.push(c);
        sent.push(s);
    }
    // Each reader sees, per partition, each producer's records in its send order, and
    // exactly the committed ones (read_committed) or all of them (read_uncommitted).
    for (isolation, model) in [("read_committed", &committed), ("read_uncommitted", &sent)] {
        let (reader, partitions) = consumer(&cluster, isolation);
        let seen = by_partition(&read_to_end(&reader, &partitions).await);
        for partition in 0..PARTITIONS {
            let values = seen.get(&partition).cloned().unwrap_or_default();
            for (p, producer_model) in model.iter().enumerate() {
                let prefix = format!("p{p}-");
                let mine: Vec<String> = values
                    .iter()
                    .filter(|v| v.starts_with(&prefix))
                    .cloned()
                    .collect();
                let expected = producer_model.get(&partition).cloned().unwrap_or_default();
                assert_eq!(
                    mine, expected,
                    "{isolation}: producer {p} on partition {partition} (FRANZY_SEED={seed})"
                );
            }
            let total: usize = model
                .iter()
                .map(|m| m.get(&partition).map_or(0, Vec::len))
                .sum();
            assert_eq!(values.len(), total, "{isolation} partition {partition}");
        }
    }
}
