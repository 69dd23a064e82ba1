//! franzy-patterns against the harness, with injected faults: dead letters through a DLT
//! leader move, a DLT that refuses writes (the fallback file, then its replay), retry
//! topics delaying by pausing partitions, the circuit breaker under a seeded failure
//! pattern, the outbox relay, and the promise: no record is committed before it is safely
//! somewhere.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use franzy::proto::{ApiKey, ErrorCode};
use franzy::{
    Config, Consumer, ConsumerEvent, ConsumerRecord, Offset, OffsetReset, Producer, ProducerRecord,
    TopicPartition,
};
use franzy_harness::{Action, Cluster, Interceptor};
use franzy_patterns::{
    BreakerState, CircuitBreaker, DeadLetterRouter, ErrorClass, FallbackFile, InMemoryOutbox,
    OutboxRelay, Outcome, PatternError, Processor, RetryPolicy, RetryTopics, Routed, SeededRng,
    WhenOpen,
};
use franzy_tests::init_tracing;

/// Longest a test waits for anything, in virtual time.
const BOUND: Duration = Duration::from_secs(900);
const GROUP: &str = "patterns";

async fn within<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(BOUND, future)
        .await
        .expect("done within the bound")
}

async fn cluster(topics: &[(&str, i32)]) -> Cluster {
    init_tracing();
    let mut builder = Cluster::builder()
        .brokers(3)
        .in_memory()
        .seed(1)
        .auto_create_topics(false);
    for (topic, partitions) in topics {
        builder = builder.topic(*topic, *partitions);
    }
    builder.build().await.expect("cluster starts")
}

fn producer(cluster: &Cluster, config: Config) -> Producer {
    Producer::builder(config)
        .connector(Arc::new(cluster.connector()))
        .seed(7)
        .build()
        .expect("valid config")
}

fn plain_producer(cluster: &Cluster) -> Producer {
    let config = Config::new(cluster.bootstrap())
        .set("delivery.timeout.ms", "10000")
        .and_then(|c| c.set("request.timeout.ms", "5000"))
        .and_then(|c| c.set("linger.ms", "0"))
        .expect("valid settings");
    producer(cluster, config)
}

fn group_consumer(cluster: &Cluster, topics: &[String]) -> Consumer {
    let config = Config::new(cluster.bootstrap())
        .group_id(GROUP)
        .auto_offset_reset(OffsetReset::Earliest)
        .enable_auto_commit(false);
    let consumer = Consumer::builder(config)
        .connector(Arc::new(cluster.connector()))
        .seed(9)
        .build()
        .expect("valid config");
    consumer.subscribe(topics).expect("subscribe");
    consumer
}

/// Every record of `topic` (all `partitions`), read from the beginning to the end.
async fn read_all(cluster: &Cluster, topic: &str, partitions: i32) -> Vec<ConsumerRecord> {
    let config = Config::new(cluster.bootstrap())
        .set("enable.partition.eof", "true")
        .expect("valid settings");
    let consumer = Consumer::builder(config)
        .connector(Arc::new(cluster.connector()))
        .seed(11)
        .build()
        .expect("valid config");
    let tps: Vec<TopicPartition> = (0..partitions)
        .map(|p| TopicPartition::new(topic, p))
        .collect();
    consumer.assign(&tps).expect("assign");
    for tp in &tps {
        consumer.seek(tp, Offset::Beginning).expect("seek");
    }
    let mut records = Vec::new();
    let mut done = HashSet::new();
    while done.len() < tps.len() {
        match within(consumer.recv_event())
            .await
            .expect("no error")
            .expect("open")
        {
            ConsumerEvent::Record(record) => records.push(record),
            ConsumerEvent::PartitionEof { partition, offset } => {
                if consumer.watermarks(&partition).map(|(_, hw)| hw) == Some(offset) {
                    done.insert(partition);
                }
            }
            other => panic!("unexpected event {other:?}"),
        }
    }
    consumer.close().await;
    records
}

fn committed(cluster: &Cluster, topic: &str, partition: i32) -> Option<i64> {
    cluster
        .with_state(|s| {
            s.offsets()
                .fetch(GROUP, topic, partition, false)
                .map(|o| o.map(|o| o.offset))
        })
        .ok()
        .flatten()
}

async fn produce(producer: &Producer, topic: &str, values: &[String]) {
    for value in values {
        within(
            producer.send_and_wait(
                ProducerRecord::new(topic.to_string())
                    .with_partition(0)
                    .with_key(value.clone())
                    .with_value(value.clone()),
            ),
        )
        .await
        .expect("produced");
    }
}

fn text(bytes: Option<&bytes::Bytes>) -> String {
    String::from_utf8_lossy(bytes.map(|b| &b[..]).unwrap_or_default()).into_owned()
}

fn header(record: &ConsumerRecord, name: &str) -> String {
    text(record.header(name).and_then(|h| h.value.as_ref()))
}

fn temp_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("franzy-patterns-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

/// A handler that fails permanently on values starting with "bad".
// `&String`: a classifier of the handler's error type `String` receives `&String`.
#[allow(clippy::ptr_arg)]
fn bad_is_permanent(error: &String) -> ErrorClass {
    if error.starts_with("bad") {
        ErrorClass::Permanent
    } else {
        ErrorClass::Transient
    }
}

#[tokio::test(start_paused = true)]
async fn dead_letters_carry_the_error_headers_through_a_dlt_leader_move() {
    let cluster = cluster(&[("orders", 1), ("orders.DLT", 1)]).await;
    let producer = plain_producer(&cluster);
    let values: Vec<String> = (0..12)
        .map(|i| {
            if i % 3 == 1 {
                format!("bad-{i}")
            } else {
                format!("ok-{i}")
            }
        })
        .collect();
    produce(&producer, "orders", &values).await;
    // The DLT's leader refuses the first writes as if it had moved, and then really moves.
    cluster.intercept(
        Interceptor::new(
            ApiKey::Produce,
            Action::Error(ErrorCode::NotLeaderOrFollower),
        )
        .on_partition("orders.DLT", 0)
        .times(2),
    );
    let consumer = group_consumer(&cluster, &["orders".to_string()]);
    let mut processor = Processor::new(
        RetryPolicy::immediate().max_attempts(3),
        bad_is_permanent,
        DeadLetterRouter::new(),
    );
    let mut attempts: HashMap<String, u32> = HashMap::new();
    let mut handler = |record: &ConsumerRecord| {
        let value = text(record.value.as_ref());
        *attempts.entry(value.clone()).or_default() += 1;
        async move {
            if value.starts_with("bad") {
                Err(format!("bad payload {value}"))
            } else {
                Ok(())
            }
        }
    };
    let mut moved = false;
    for _ in 0..values.len() {
        let record = within(processor.next(&consumer))
            .await
            .expect("next")
            .expect("open");
        let outcome = within(processor.handle(&consumer, &producer, record, &mut handler))
            .await
            .expect("handled");
        if matches!(outcome, Outcome::DeadLettered(_)) && !moved {
            let next = cluster.with_state(|s| {
                let p = s.partition("orders.DLT", 0).expect("exists");
                let leader = p.leader();
                p.replicas().iter().copied().find(|b| *b != leader)
            });
            let next = next.expect("the DLT has another replica");
            cluster
                .with_state(|s| s.set_leader("orders.DLT", 0, next))
                .expect("leader moved");
            moved = true;
        }
    }
    assert!(moved);
    // Permanent errors are never retried; successes run once.
    assert!(attempts.values().all(|n| *n == 1), "{attempts:?}");
    assert_eq!(committed(&cluster, "orders", 0), Some(12));
    let dead = read_all(&cluster, "orders.DLT", 1).await;
    let expected: Vec<String> = values
        .iter()
        .filter(|v| v.starts_with("bad"))
        .cloned()
        .collect();
    assert_eq!(
        dead.iter()
            .map(|r| text(r.value.as_ref()))
            .collect::<Vec<_>>(),
        expected
    );
    for record in &dead {
        let value = text(record.value.as_ref());
        let offset: i64 = value.trim_start_matches("bad-").parse().expect("index");
        assert_eq!(text(record.key.as_ref()), value);
        assert_eq!(header(record, "original-topic"), "orders");
        assert_eq!(header(record, "original-partition"), "0");
        assert_eq!(header(record, "original-offset"), offset.to_string());
        assert!(header(record, "original-timestamp").parse::<i64>().is_ok());
        assert_eq!(header(record, "error-type"), "permanent");
        assert_eq!(
            header(record, "error-message"),
            format!("bad payload {value}")
        );
        assert_eq!(header(record, "retry-count"), "1");
        let failed_at = header(record, "failed-at");
        assert!(
            failed_at.len() == 24 && failed_at.ends_with('Z') && &failed_at[10..11] == "T",
            "{failed_at}"
        );
    }
    let stats = processor.stats().snapshot();
    assert_eq!(
        (
            stats.processed,
            stats.dead_lettered,
            stats.written_to_fallback
        ),
        (8, 4, 0)
    );
    consumer.close().await;
    producer.close().await;
}

#[tokio::test(start_paused = true)]
async fn an_unwritable_dlt_sends_to_the_fallback_file_and_the_replay_loses_nothing() {
    let cluster = cluster(&[("orders", 1), ("orders.DLT", 1)]).await;
    let producer = plain_producer(&cluster);
    let values: Vec<String> = (0..6).map(|i| format!("bad-{i}")).collect();
    produce(&producer, "orders", &values).await;
    cluster.intercept(
        Interceptor::new(
            ApiKey::Produce,
            Action::Error(ErrorCode::TopicAuthorizationFailed),
        )
        .on_partition("orders.DLT", 0)
        .keep(),
    );
    let path = temp_path("unwritable.fallback");
    let fallback = FallbackFile::new(&path);
    let consumer = group_consumer(&cluster, &["orders".to_string()]);
    let mut processor = Processor::new(
        RetryPolicy::immediate(),
        bad_is_permanent,
        DeadLetterRouter::new().fallback(fallback.clone()),
    );
    let mut handler = |record: &ConsumerRecord| {
        let value = text(record.value.as_ref());
        async move { Err::<(), _>(value) }
    };
    for i in 0..values.len() {
        let record = within(processor.next(&consumer))
            .await
            .expect("next")
            .expect("open");
        let outcome = within(processor.handle(&consumer, &producer, record, &mut handler))
            .await
            .expect("handled");
        assert!(
            matches!(outcome, Outcome::DeadLettered(Routed::Fallback(_))),
            "{outcome:?}"
        );
        // Committed only once the fallback file holds the record, fsynced.
        assert_eq!(fallback.entries().await.expect("readable").0.len(), i + 1);
        assert_eq!(committed(&cluster, "orders", 0), Some(i as i64 + 1));
    }
    assert_eq!(processor.stats().snapshot().written_to_fallback, 6);
    // The DLT still refuses: the replay keeps everything.
    let report = within(fallback.replay(&producer)).await.expect("replay");
    assert_eq!((report.replayed, report.remaining), (0, 6));
    // The DLT comes back: everything goes, the file empties.
    cluster.clear_interceptors();
    let report = within(fallback.replay(&producer)).await.expect("replay");
    assert_eq!(
        (report.replayed, report.remaining, report.unreadable_bytes),
        (6, 0, 0)
    );
    assert_eq!(fallback.entries().await.expect("readable").0.len(), 0);
    let dead = read_all(&cluster, "orders.DLT", 1).await;
    let mut got: Vec<String> = dead.iter().map(|r| text(r.value.as_ref())).collect();
    got.sort();
    assert_eq!(got, values);
    assert!(dead.iter().all(|r| header(r, "original-topic") == "orders"));
    consumer.close().await;
    producer.close().await;
}

#[tokio::test(start_paused = true)]
async fn nothing_is_committed_while_the_record_is_nowhere_safe() {
    let cluster = cluster(&[("orders", 1), ("orders.DLT", 1)]).await;
    let producer = plain_producer(&cluster);
    produce(
        &producer,
        "orders",
        &["ok-0".into(), "bad-1".into(), "ok-2".into()],
    )
    .await;
    cluster.intercept(
        Interceptor::new(
            ApiKey::Produce,
            Action::Error(ErrorCode::TopicAuthorizationFailed),
        )
        .on_partition("orders.DLT", 0)
        .keep(),
    );
    let consumer = group_consumer(&cluster, &["orders".to_string()]);
    // No fallback file: a refused dead letter is an error.
    let mut processor = Processor::new(
        RetryPolicy::immediate(),
        bad_is_permanent,
        DeadLetterRouter::new(),
    );
    let mut handler = |record: &ConsumerRecord| {
        let value = text(record.value.as_ref());
        async move {
            if value.starts_with("bad") {
                Err(value)
            } else {
                Ok(())
            }
        }
    };
    let record = within(processor.next(&consumer))
        .await
        .expect("next")
        .expect("open");
    within(processor.handle(&consumer, &producer, record, &mut handler))
        .await
        .expect("ok-0");
    assert_eq!(committed(&cluster, "orders", 0), Some(1));
    let record = within(processor.next(&consumer))
        .await
        .expect("next")
        .expect("open");
    assert_eq!(record.offset, 1);
    let error = within(processor.handle(&consumer, &producer, record, &mut handler))
        .await
        .expect_err("the dead letter was refused");
    assert!(matches!(error, PatternError::Kafka(_)), "{error}");
    assert_eq!(
        committed(&cluster, "orders", 0),
        Some(1),
        "not committed past bad-1"
    );
    // The partition was rewound: bad-1 comes again; once the DLT is back it is secured.
    cluster.clear_interceptors();
    let record = within(processor.next(&consumer))
        .await
        .expect("next")
        .expect("open");
    assert_eq!(record.offset, 1, "read again");
    let outcome = within(processor.handle(&consumer, &producer, record, &mut handler))
        .await
        .expect("dead-lettered");
    assert!(matches!(
        outcome,
        Outcome::DeadLettered(Routed::DeadLetterTopic(_))
    ));
    assert_eq!(committed(&cluster, "orders", 0), Some(2));
    consumer.close().await;
    producer.close().await;
}

#[tokio::test(start_paused = true)]
async fn retry_topics_delay_by_pausing_and_send_what_keeps_failing_to_the_dlt() {
    let cluster = cluster(&[("orders", 1), ("orders.retry", 1), ("orders.DLT", 1)]).await;
    let producer = plain_producer(&cluster);
    // flaky-*: fails twice, then succeeds; down-*: always fails transiently; poison-*: permanent.
    let values: Vec<String> = ["flaky-0", "down-1", "poison-2", "ok-3"]
        .map(String::from)
        .to_vec();
    produce(&producer, "orders", &values).await;
    let topics = RetryTopics::new("orders").delays(&[Duration::from_secs(30)]);
    let consumer = group_consumer(&cluster, &topics.topics());
    let classify = |error: &String| {
        if error.starts_with("poison") {
            ErrorClass::Permanent
        } else {
            ErrorClass::Transient
        }
    };
    let mut processor = Processor::new(
        RetryPolicy::immediate().max_attempts(2),
        classify,
        DeadLetterRouter::new(),
    )
    .retry_topics(topics);
    let mut calls: BTreeMap<String, Vec<(String, tokio::time::Instant)>> = BTreeMap::new();
    let mut handler = |record: &ConsumerRecord| {
        let value = text(record.value.as_ref());
        let seen = calls.entry(value.clone()).or_default();
        seen.push((record.topic.to_string(), tokio::time::Instant::now()));
        let n = seen.len();
        async move {
            if value.starts_with("ok") || (value.starts_with("flaky") && n > 2) {
                Ok(())
            } else {
                Err(value)
            }
        }
    };
    let mut finished = HashSet::new();
    let mut outcomes = Vec::new();
    while finished.len() < values.len() {
        let record = within(processor.next(&consumer))
            .await
            .expect("next")
            .expect("open");
        let value = text(record.value.as_ref());
        let outcome = within(processor.handle(&consumer, &producer, record, &mut handler))
            .await
            .expect("handled");
        if matches!(
            outcome,
            Outcome::Processed { .. } | Outcome::DeadLettered(_)
        ) {
            finished.insert(value.clone());
        }
        outcomes.push((value, outcome));
    }
    // flaky-0 failed twice on orders, went to orders.retry, and succeeded there 30 s later.
    let flaky = &calls["flaky-0"];
    assert_eq!(
        flaky.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(),
        ["orders", "orders", "orders.retry"]
    );
    assert!(
        flaky[2].1 - flaky[1].1 >= Duration::from_secs(30),
        "retried before it was due"
    );
    // poison-2 was tried once and dead-lettered; down-1 twice per topic, then dead-lettered.
    assert_eq!(calls["poison-2"].len(), 1);
    assert_eq!(calls["down-1"].len(), 4);
    assert!(
        processor.stats().snapshot().deferred >= 1,
        "the retry partition was paused"
    );
    let dead = read_all(&cluster, "orders.DLT", 1).await;
    let by_value: HashMap<String, &ConsumerRecord> =
        dead.iter().map(|r| (text(r.value.as_ref()), r)).collect();
    assert_eq!(by_value.len(), 2, "{:?}", by_value.keys());
    let down = by_value["down-1"];
    assert_eq!(header(down, "original-topic"), "orders");
    assert_eq!(header(down, "original-offset"), "1");
    assert_eq!(header(down, "retry-count"), "4");
    assert_eq!(header(down, "error-type"), "transient");
    assert_eq!(header(by_value["poison-2"], "error-type"), "permanent");
    assert_eq!(header(by_value["poison-2"], "retry-count"), "1");
    assert_eq!(committed(&cluster, "orders", 0), Some(4));
    assert_eq!(committed(&cluster, "orders.retry", 0), Some(2));
    consumer.close().await;
    producer.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_record_walks_several_retry_stages_with_increasing_delays() {
    let cluster = cluster(&[
        ("orders", 1),
        ("orders.retry-1", 1),
        ("orders.retry-2", 1),
        ("orders.DLT", 1),
    ])
    .await;
    let producer = plain_producer(&cluster);
    produce(
        &producer,
        "orders",
        &["down-0".to_string(), "ok-1".to_string()],
    )
    .await;
    let topics =
        RetryTopics::new("orders").delays(&[Duration::from_secs(10), Duration::from_secs(60)]);
    let consumer = group_consumer(&cluster, &topics.topics());
    let mut processor = Processor::new(
        RetryPolicy::immediate().max_attempts(1),
        |_: &String| ErrorClass::Transient,
        DeadLetterRouter::new(),
    )
    .retry_topics(topics);
    let mut calls: Vec<(String, String, tokio::time::Instant)> = Vec::new();
    let mut handler = |record: &ConsumerRecord| {
        let value = text(record.value.as_ref());
        calls.push((
            value.clone(),
            record.topic.to_string(),
            tokio::time::Instant::now(),
        ));
        async move {
            if value.starts_with("down") {
                Err(value)
            } else {
                Ok(())
            }
        }
    };
    let mut finished = 0;
    while finished < 2 {
        let record = within(processor.next(&consumer))
            .await
            .expect("next")
            .expect("open");
        let outcome = within(processor.handle(&consumer, &producer, record, &mut handler))
            .await
            .expect("handled");
        if matches!(
            outcome,
            Outcome::Processed { .. } | Outcome::DeadLettered(_)
        ) {
            finished += 1;
        }
    }
    let down: Vec<&(String, String, tokio::time::Instant)> =
        calls.iter().filter(|(v, _, _)| v == "down-0").collect();
    let topics_seen: Vec<&str> = down.iter().map(|(_, t, _)| t.as_str()).collect();
    assert_eq!(topics_seen, ["orders", "orders.retry-1", "orders.retry-2"]);
    assert!(
        down[1].2 - down[0].2 >= Duration::from_secs(10),
        "stage 1 waited its 10 s"
    );
    assert!(
        down[2].2 - down[1].2 >= Duration::from_secs(60),
        "stage 2 waited its 60 s"
    );
    let dead = read_all(&cluster, "orders.DLT", 1).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(header(&dead[0], "retry-count"), "3");
    assert_eq!(header(&dead[0], "original-topic"), "orders");
    assert_eq!(header(&dead[0], "original-offset"), "0");
    assert_eq!(committed(&cluster, "orders.retry-1", 0), Some(1));
    assert_eq!(committed(&cluster, "orders.retry-2", 0), Some(1));
    consumer.close().await;
    producer.close().await;
}

#[tokio::test(start_paused = true)]
async fn the_breaker_pauses_the_consumer_and_its_trial_closes_it_under_a_seeded_failure_pattern() {
    let seed: u64 = std::env::var("FRANZY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    println!("FRANZY_SEED={seed}");
    let cluster = cluster(&[("orders", 2), ("orders.DLT", 1)]).await;
    let producer = plain_producer(&cluster);
    let count = 40;
    for i in 0..count {
        within(
            producer.send_and_wait(
                ProducerRecord::new("orders")
                    .with_partition(i % 2)
                    .with_value(format!("v-{i}")),
            ),
        )
        .await
        .expect("produced");
    }
    let consumer = group_consumer(&cluster, &["orders".to_string()]);
    let breaker = CircuitBreaker::config()
        .consecutive_failures(3)
        .open_for(Duration::from_secs(10))
        .build()
        .expect("valid");
    let mut processor = Processor::new(
        RetryPolicy::immediate().max_attempts(1),
        |_: &String| ErrorClass::Transient,
        DeadLetterRouter::new(),
    )
    .circuit_breaker(breaker, WhenOpen::Pause);
    // The downstream is degraded (fails 70% of calls, seeded) for its first 60 s, then healthy.
    let started = tokio::time::Instant::now();
    let mut rng = SeededRng::new(seed);
    let mut processed: HashMap<String, u32> = HashMap::new();
    let mut handler = |record: &ConsumerRecord| {
        let degraded = started.elapsed() < Duration::from_secs(60);
        let fails = degraded && rng.up_to(99) < 70;
        let value = text(record.value.as_ref());
        if !fails {
            *processed.entry(value.clone()).or_default() += 1;
        }
        async move {
            if fails {
                Err(format!("downstream failed {value}"))
            } else {
                Ok(())
            }
        }
    };
    let mut dead_lettered = 0;
    let mut handled = 0;
    while handled < count {
        let record = within(processor.next(&consumer))
            .await
            .expect("next")
            .expect("open");
        let outcome = within(processor.handle(&consumer, &producer, record, &mut handler))
            .await
            .expect("handled");
        match outcome {
            Outcome::Processed { .. } => handled += 1,
            Outcome::DeadLettered(_) => {
                handled += 1;
                dead_lettered += 1
            }
            Outcome::Deferred | Outcome::RetryTopic(_) => {}
        }
    }
    let timeline: Vec<(BreakerState, BreakerState)> = processor
        .breaker_timeline()
        .iter()
        .map(|e| (e.from, e.to))
        .collect();
    assert!(
        timeline.contains(&(BreakerState::Closed, BreakerState::Open)),
        "{timeline:?}"
    );
    assert_eq!(
        timeline.last(),
        Some(&(BreakerState::HalfOpen, BreakerState::Closed)),
        "{timeline:?}"
    );
    for pair in processor.breaker_timeline().windows(2) {
        if pair[0].to == BreakerState::Open {
            assert_eq!(pair[1].to, BreakerState::HalfOpen);
            assert!(
                pair[1].at - pair[0].at >= Duration::from_secs(10),
                "open for its whole duration"
            );
        }
    }
    let stats = processor.stats().snapshot();
    assert!(stats.deferred >= 1, "the consumer paused while open");
    assert_eq!(stats.breaker_state, Some(BreakerState::Closed));
    assert_eq!(
        stats.breaker_opened,
        timeline
            .iter()
            .filter(|(_, to)| *to == BreakerState::Open)
            .count() as u64
    );
    // Every record ends processed (exactly once) or dead-lettered; all offsets committed.
    assert_eq!(processed.len() + dead_lettered, count as usize);
    assert!(processed.values().all(|n| *n == 1));
    assert_eq!(
        committed(&cluster, "orders", 0).unwrap_or(0)
            + committed(&cluster, "orders", 1).unwrap_or(0),
        i64::from(count)
    );
    consumer.close().await;
    producer.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_batch_reports_each_record_and_routes_its_failures_to_the_dlt() {
    let cluster = cluster(&[("orders", 2), ("orders.DLT", 1)]).await;
    let producer = plain_producer(&cluster);
    // Partition 1 refuses every write with a non-retriable error.
    cluster.intercept(
        Interceptor::new(ApiKey::Produce, Action::Error(ErrorCode::InvalidRecord))
            .on_partition("orders", 1)
            .keep(),
    );
    let records: Vec<ProducerRecord> = (0..10)
        .map(|i| {
            ProducerRecord::new("orders")
                .with_partition(i % 2)
                .with_key(format!("k-{i}"))
                .with_value(format!("v-{i}"))
        })
        .collect();
    let report = within(franzy_patterns::send_batch(&producer, records)).await;
    assert_eq!(report.results.len(), 10);
    assert_eq!(report.succeeded(), 5);
    let failed: Vec<usize> = report.failures().map(|(i, _)| i).collect();
    assert_eq!(failed, [1, 3, 5, 7, 9]);
    for (i, result) in report.results.iter().enumerate() {
        match result {
            Ok(metadata) => assert_eq!(metadata.partition, 0, "record {i}"),
            Err(failed) => assert_eq!(
                failed.record.value.as_deref(),
                Some(format!("v-{i}").as_bytes())
            ),
        }
    }
    let router = DeadLetterRouter::new();
    let routed =
        within(report.route_failures(&producer, &router, &franzy_patterns::WallClock::new()))
            .await
            .expect("routed");
    assert_eq!(routed.len(), 5);
    assert!(routed
        .iter()
        .all(|r| matches!(r, Routed::DeadLetterTopic(_))));
    let dead = read_all(&cluster, "orders.DLT", 1).await;
    let values: Vec<String> = dead.iter().map(|r| text(r.value.as_ref())).collect();
    assert_eq!(values, ["v-1", "v-3", "v-5", "v-7", "v-9"]);
    for record in &dead {
        assert_eq!(header(record, "original-topic"), "orders");
        assert_eq!(header(record, "original-partition"), "1");
        assert_eq!(header(record, "original-offset"), "-1", "never written");
        assert_eq!(header(record, "error-type"), "InvalidRecord");
    }
    producer.close().await;
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_can_route_to_the_dlt_instead_of_pausing() {
    let cluster = cluster(&[("orders", 1), ("orders.DLT", 1)]).await;
    let producer = plain_producer(&cluster);
    let values: Vec<String> = (0..6).map(|i| format!("v-{i}")).collect();
    produce(&producer, "orders", &values).await;
    let consumer = group_consumer(&cluster, &["orders".to_string()]);
    let breaker = CircuitBreaker::config()
        .consecutive_failures(2)
        .open_for(Duration::from_secs(600))
        .build()
        .expect("valid");
    let mut processor = Processor::new(
        RetryPolicy::immediate().max_attempts(1),
        |_: &String| ErrorClass::Transient,
        DeadLetterRouter::new(),
    )
    .circuit_breaker(breaker, WhenOpen::DeadLetter);
    let mut calls = 0;
    let mut handler = |record: &ConsumerRecord| {
        calls += 1;
        let value = text(record.value.as_ref());
        async move { Err::<(), _>(format!("downstream down for {value}")) }
    };
    for _ in 0..values.len() {
        let record = within(processor.next(&consumer))
            .await
            .expect("next")
            .expect("open");
        let outcome = within(processor.handle(&consumer, &producer, record, &mut handler))
            .await
            .expect("handled");
        assert!(matches!(outcome, Outcome::DeadLettered(_)), "{outcome:?}");
    }
    assert_eq!(
        calls, 2,
        "the downstream is not called while the breaker is open"
    );
    let dead = read_all(&cluster, "orders.DLT", 1).await;
    let types: Vec<String> = dead.iter().map(|r| header(r, "error-type")).collect();
    assert_eq!(
        types,
        [
            "transient",
            "transient",
            "CircuitBreakerOpen",
            "CircuitBreakerOpen",
            "CircuitBreakerOpen",
            "CircuitBreakerOpen"
        ]
    );
    assert_eq!(committed(&cluster, "orders", 0), Some(6));
    assert_eq!(
        processor.stats().snapshot().breaker_state,
        Some(BreakerState::Open)
    );
    consumer.close().await;
    producer.close().await;
}

#[tokio::test(start_paused = true)]
async fn the_outbox_relay_marks_rows_sent_only_after_the_commit() {
    let cluster = cluster(&[("events", 1)]).await;
    let config = Config::new(cluster.bootstrap()).transactional_id("outbox-relay");
    let producer = producer(&cluster, config);
    within(producer.init_transactions()).await.expect("init");
    let outbox = InMemoryOutbox::new();
    for i in 0..5 {
        outbox.insert("events", None, Some(format!("event-{i}").into()));
    }
    // The first transaction's records are refused: it aborts and the rows stay pending.
    cluster.intercept(
        Interceptor::new(ApiKey::Produce, Action::Error(ErrorCode::InvalidRecord))
            .on_partition("events", 0)
            .times(1),
    );
    let relay = OutboxRelay::new().batch(3);
    let error = within(relay.relay_once(&producer, &outbox))
        .await
        .expect_err("aborted");
    assert!(matches!(error, PatternError::Kafka(_)), "{error}");
    assert_eq!(outbox.unsent(), 5);
    let relayed = within(relay.relay_all(&producer, &outbox))
        .await
        .expect("relayed");
    assert_eq!(relayed, 5);
    assert_eq!(outbox.unsent(), 0);
    assert_eq!(relay.stats().snapshot().outbox_relayed, 5);
    // read_committed sees each row once, with its outbox id.
    let config = Config::new(cluster.bootstrap())
        .set("isolation.level", "read_committed")
        .and_then(|c| c.set("enable.partition.eof", "true"))
        .expect("valid");
    let reader = Consumer::builder(config)
        .connector(Arc::new(cluster.connector()))
        .build()
        .expect("valid");
    let tp = TopicPartition::new("events", 0);
    reader.assign(std::slice::from_ref(&tp)).expect("assign");
    reader.seek(&tp, Offset::Beginning).expect("seek");
    let mut seen = Vec::new();
    loop {
        match within(reader.recv_event())
            .await
            .expect("no error")
            .expect("open")
        {
            ConsumerEvent::Record(r) => {
                seen.push((header(&r, "outbox-id"), text(r.value.as_ref())))
            }
            ConsumerEvent::PartitionEof { offset, .. } => {
                if reader.watermarks(&tp).map(|(_, hw)| hw) == Some(offset) {
                    break;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let expected: Vec<(String, String)> = (0..5)
        .map(|i| ((i + 1).to_string(), format!("event-{i}")))
        .collect();
    assert_eq!(seen, expected);
    reader.close().await;
    producer.close().await;
}

// ---------------------------------------------------------------------------------------
// A process killed at each step of dead-lettering: the child (this test binary, run with
// `crash_child` as its only test) processes `orders` with a Processor that does not commit
// by itself, so that the test can stop it in the window between "the record is safely
// somewhere" and "its offset is committed". It prints CRASH-POINT when it reaches the step
// it was told to die at and waits; the parent kills it (SIGKILL), checks what was committed,
// then recovers with a processor of its own and checks that no record was lost.
// ---------------------------------------------------------------------------------------

/// Where the child stops, at the record of offset [`CRASH_OFFSET`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CrashStep {
    /// Inside the handler: the record is nowhere yet.
    InHandler,
    /// The dead letter is acknowledged (or fsynced to the fallback file), not committed.
    AfterSecure,
    /// Inside the processor's own commit, after its dead letter was secured: the child
    /// commits through the processor, and the harness never answers that commit.
    InCommit,
    /// The offset is committed.
    AfterCommit,
}

impl CrashStep {
    fn name(self) -> &'static str {
        match self {
            Self::InHandler => "in-handler",
            Self::AfterSecure => "after-secure",
            Self::InCommit => "in-commit",
            Self::AfterCommit => "after-commit",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            Self::InHandler,
            Self::AfterSecure,
            Self::InCommit,
            Self::AfterCommit,
        ]
        .into_iter()
        .find(|step| step.name() == s)
    }
}

const CRASH_OFFSET: i64 = 2;
const CRASH_VALUES: [&str; 6] = ["bad-0", "ok-1", "bad-2", "bad-3", "ok-4", "bad-5"];

/// A consumer of orders/0 with the group's committed offsets, without joining the group
/// (a dead member would hold a rebalance for its whole session).
fn assigned_consumer(bootstrap: &str) -> Consumer {
    let config = Config::new(bootstrap)
        .group_id(GROUP)
        .auto_offset_reset(OffsetReset::Earliest)
        .enable_auto_commit(false);
    let consumer = Consumer::new(config).expect("valid config");
    consumer
        .assign(&[TopicPartition::new("orders", 0)])
        .expect("assign");
    consumer
}

fn crash_processor(fallback: &std::path::Path) -> Processor<fn(&String) -> ErrorClass> {
    Processor::new(
        RetryPolicy::immediate().max_attempts(1),
        bad_is_permanent as fn(&String) -> ErrorClass,
        DeadLetterRouter::new().fallback(FallbackFile::new(fallback)),
    )
}

/// The child process's entry point (see above); does nothing unless the parent set
/// `FRANZY_CRASH_STEP`.
#[test]
#[ignore = "the child process of the crash tests, run by them"]
fn crash_child() {
    let (Ok(step), Ok(bootstrap), Ok(fallback)) = (
        std::env::var("FRANZY_CRASH_STEP"),
        std::env::var("FRANZY_CRASH_BOOTSTRAP"),
        std::env::var("FRANZY_CRASH_FALLBACK"),
    ) else {
        return;
    };
    let step = CrashStep::parse(&step).expect("a known step");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let consumer = assigned_consumer(&bootstrap);
        let producer = Producer::new(Config::new(&bootstrap)).expect("valid config");
        let mut processor =
            crash_processor(std::path::Path::new(&fallback)).commit(step == CrashStep::InCommit);
        let go = format!("{fallback}.go");
        let crash_point = || async {
            println!("CRASH-POINT");
            tokio::time::sleep(BOUND).await;
            panic!("not killed");
        };
        loop {
            let record = within(processor.next(&consumer))
                .await
                .expect("next")
                .expect("open");
            let offset = record.offset;
            let tp = record.topic_partition();
            let at_crash = offset == CRASH_OFFSET;
            let go = go.as_str();
            let mut handler = |record: &ConsumerRecord| {
                let value = text(record.value.as_ref());
                async move {
                    if at_crash && step == CrashStep::InHandler {
                        crash_point().await;
                    }
                    if at_crash && step == CrashStep::InCommit {
                        // The parent makes the harness swallow commits, then says go.
                        println!("AT-CRASH-RECORD");
                        for _ in 0..6000 {
                            if std::path::Path::new(go).exists() {
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                    if value.starts_with("bad") {
                        Err(value)
                    } else {
                        Ok(())
                    }
                }
            };
            within(processor.handle(&consumer, &producer, record, &mut handler))
                .await
                .expect("handled");
            if at_crash && step == CrashStep::AfterSecure {
                crash_point().await;
            }
            if step != CrashStep::InCommit {
                within(consumer.commit_offsets([(tp, franzy::OffsetAndMetadata::new(offset + 1))]))
                    .await
                    .expect("committed");
            }
            if at_crash && step == CrashStep::AfterCommit {
                crash_point().await;
            }
        }
    });
}

async fn crash_at(step: CrashStep, dlt_down: bool) {
    init_tracing();
    // Over TCP, in real time: the child is another process.
    let cluster = Cluster::builder()
        .brokers(1)
        .seed(1)
        .auto_create_topics(false)
        .topic("orders", 1)
        .topic("orders.DLT", 1)
        .build()
        .await
        .expect("cluster starts");
    let bootstrap = cluster.bootstrap();
    let producer = Producer::new(Config::new(&bootstrap)).expect("valid config");
    let values: Vec<String> = CRASH_VALUES.iter().map(|v| v.to_string()).collect();
    produce(&producer, "orders", &values).await;
    if dlt_down {
        cluster.intercept(
            Interceptor::new(
                ApiKey::Produce,
                Action::Error(ErrorCode::TopicAuthorizationFailed),
            )
            .on_partition("orders.DLT", 0)
            .keep(),
        );
    }
    let fallback = temp_path(&format!("crash-{}-{dlt_down}.fallback", step.name()));

    let exe = std::env::current_exe().expect("test binary");
    let mut child = std::process::Command::new(exe)
        .args([
            "patterns::crash_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("FRANZY_CRASH_STEP", step.name())
        .env("FRANZY_CRASH_BOOTSTRAP", &bootstrap)
        .env("FRANZY_CRASH_FALLBACK", &fallback)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("child starts");
    let stdout = child.stdout.take().expect("piped");
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let reached = if step == CrashStep::InCommit {
        let at_record = wait_for(&mut lines, "AT-CRASH-RECORD").await;
        cluster.clear_requests();
        cluster.intercept(Interceptor::new(ApiKey::OffsetCommit, Action::NeverAnswer).keep());
        std::fs::write(format!("{}.go", fallback.display()), b"go").expect("go file");
        // Until the child's commit of the crash record reaches the harness (and is swallowed).
        let mut sent = false;
        for _ in 0..12_000 {
            if cluster
                .requests()
                .iter()
                .any(|r| r.api_key == ApiKey::OffsetCommit)
            {
                sent = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        at_record && sent
    } else {
        wait_for(&mut lines, "CRASH-POINT").await
    };
    child.kill().expect("killed");
    let status = child.wait().expect("reaped");
    assert!(
        reached,
        "the child did not reach {} ({status})",
        step.name()
    );
    if step == CrashStep::InCommit {
        // The commit went out only after the dead letter was safe.
        let secured = if dlt_down {
            FallbackFile::new(&fallback)
                .entries()
                .await
                .expect("readable")
                .0
                .len()
                == 2
        } else {
            read_all_tcp(&bootstrap, "orders.DLT")
                .await
                .iter()
                .any(|r| text(r.value.as_ref()) == CRASH_VALUES[CRASH_OFFSET as usize])
        };
        assert!(
            secured,
            "the processor committed before its dead letter was safe"
        );
        cluster.clear_interceptors();
        if dlt_down {
            cluster.intercept(
                Interceptor::new(
                    ApiKey::Produce,
                    Action::Error(ErrorCode::TopicAuthorizationFailed),
                )
                .on_partition("orders.DLT", 0)
                .keep(),
            );
        }
    }

    // What the dead child left committed: never past a record not yet secured.
    let expected_commit = match step {
        CrashStep::InHandler | CrashStep::AfterSecure | CrashStep::InCommit => CRASH_OFFSET,
        CrashStep::AfterCommit => CRASH_OFFSET + 1,
    };
    assert_eq!(committed(&cluster, "orders", 0), Some(expected_commit));
    let file = FallbackFile::new(&fallback);
    let (before, _) = file.entries().await.expect("readable");
    if dlt_down {
        // Records up to the crash point that were dead-lettered are in the file, fsynced.
        let secured = if step == CrashStep::InHandler { 1 } else { 2 };
        assert_eq!(before.len(), secured, "fallback file after the crash");
    }

    // Recovery: another processor, committing, reads on from the committed offset.
    let consumer = assigned_consumer(&bootstrap);
    let mut processor = crash_processor(&fallback);
    let mut handler = |record: &ConsumerRecord| {
        let value = text(record.value.as_ref());
        async move {
            if value.starts_with("bad") {
                Err(value)
            } else {
                Ok(())
            }
        }
    };
    while committed(&cluster, "orders", 0) != Some(CRASH_VALUES.len() as i64) {
        let record = within(processor.next(&consumer))
            .await
            .expect("next")
            .expect("open");
        within(processor.handle(&consumer, &producer, record, &mut handler))
            .await
            .expect("handled");
    }
    consumer.close().await;
    if dlt_down {
        cluster.clear_interceptors();
        let report = within(file.replay(&producer)).await.expect("replayed");
        assert_eq!(report.remaining, 0);
    }
    // Every bad record is in the DLT, at least once (twice only for the one secured just
    // before the crash and not committed).
    let dead = read_all_tcp(&bootstrap, "orders.DLT").await;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for record in &dead {
        *counts.entry(text(record.value.as_ref())).or_default() += 1;
    }
    for value in CRASH_VALUES.iter().filter(|v| v.starts_with("bad")) {
        let n = counts.get(*value).copied().unwrap_or(0);
        let secured_twice = matches!(step, CrashStep::AfterSecure | CrashStep::InCommit);
        let most = if *value == CRASH_VALUES[CRASH_OFFSET as usize] && secured_twice {
            2
        } else {
            1
        };
        assert!(
            (1..=most).contains(&n),
            "{value} is in the DLT {n} times ({counts:?})"
        );
    }
    assert!(counts.keys().all(|v| v.starts_with("bad")), "{counts:?}");
    producer.close().await;
    cluster.shutdown().await;
    let _ = std::fs::remove_file(&fallback);
    let _ = std::fs::remove_file(format!("{}.go", fallback.display()));
}

/// Whether a line of the child's output contains `marker` (within a bound).
async fn wait_for(lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>, marker: &str) -> bool {
    tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = lines.recv().await {
            if line.contains(marker) {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false)
}

async fn read_all_tcp(bootstrap: &str, topic: &str) -> Vec<ConsumerRecord> {
    let config = Config::new(bootstrap)
        .set("enable.partition.eof", "true")
        .expect("valid settings");
    let consumer = Consumer::new(config).expect("valid config");
    let tp = TopicPartition::new(topic, 0);
    consumer.assign(std::slice::from_ref(&tp)).expect("assign");
    consumer.seek(&tp, Offset::Beginning).expect("seek");
    let mut records = Vec::new();
    loop {
        match within(consumer.recv_event())
            .await
            .expect("no error")
            .expect("open")
        {
            ConsumerEvent::Record(record) => records.push(record),
            ConsumerEvent::PartitionEof { offset, .. } => {
                if consumer.watermarks(&tp).map(|(_, hw)| hw) == Some(offset) {
                    break;
                }
            }
            other => panic!("unexpected event {other:?}"),
        }
    }
    consumer.close().await;
    records
}

#[tokio::test]
async fn a_process_killed_in_the_handler_loses_nothing() {
    crash_at(CrashStep::InHandler, false).await;
}

#[tokio::test]
async fn a_process_killed_between_the_dlt_write_and_the_commit_loses_nothing() {
    crash_at(CrashStep::AfterSecure, false).await;
}

#[tokio::test]
async fn a_process_killed_between_the_fallback_fsync_and_the_commit_loses_nothing() {
    crash_at(CrashStep::AfterSecure, true).await;
}

#[tokio::test]
async fn a_process_killed_in_the_handler_while_the_dlt_is_down_loses_nothing() {
    crash_at(CrashStep::InHandler, true).await;
}

#[tokio::test]
async fn a_process_killed_in_the_processors_commit_after_the_dlt_write_loses_nothing() {
    crash_at(CrashStep::InCommit, false).await;
}

#[tokio::test]
async fn a_process_killed_in_the_processors_commit_after_the_fallback_fsync_loses_nothing() {
    crash_at(CrashStep::InCommit, true).await;
}

#[tokio::test]
async fn a_process_killed_after_the_commit_loses_nothing() {
    crash_at(CrashStep::AfterCommit, false).await;
}

/// An outbox whose first `mark_sent` fails after the commit: the process "dies" between
/// Kafka's commit and the database's mark.
struct MarkFailsOnce {
    inner: InMemoryOutbox,
    failed: std::sync::atomic::AtomicBool,
}

impl franzy_patterns::OutboxSource for MarkFailsOnce {
    fn pending(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<franzy_patterns::OutboxRow>, PatternError>> + Send {
        self.inner.pending(limit)
    }

    fn mark_sent(&self, ids: &[u64]) -> impl Future<Output = Result<(), PatternError>> + Send {
        let fail = !self.failed.swap(true, std::sync::atomic::Ordering::Relaxed);
        let marked = (!fail).then(|| self.inner.mark_sent(ids));
        async move {
            match marked {
                Some(marked) => marked.await,
                None => Err(PatternError::Config("database unavailable".into())),
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn outbox_rows_sent_twice_after_a_lost_mark_are_processed_once_by_an_idempotent_consumer() {
    use franzy_patterns::{Dedup, IdSource, IdempotentConsumer, InMemoryDedup};
    let cluster = cluster(&[("events", 1)]).await;
    let producer = producer(
        &cluster,
        Config::new(cluster.bootstrap()).transactional_id("outbox-dup"),
    );
    within(producer.init_transactions()).await.expect("init");
    let outbox = MarkFailsOnce {
        inner: InMemoryOutbox::new(),
        failed: std::sync::atomic::AtomicBool::new(false),
    };
    for i in 0..4 {
        outbox
            .inner
            .insert("events", None, Some(format!("event-{i}").into()));
    }
    let relay = OutboxRelay::new();
    within(relay.relay_once(&producer, &outbox))
        .await
        .expect_err("the mark failed after the commit");
    assert_eq!(outbox.inner.unsent(), 4, "not marked: will be sent again");
    assert_eq!(
        within(relay.relay_all(&producer, &outbox))
            .await
            .expect("relayed"),
        4
    );
    assert_eq!(outbox.inner.unsent(), 0);
    let records = read_all(&cluster, "events", 1).await;
    assert_eq!(
        records.len(),
        8,
        "every row twice in the topic (at least once)"
    );
    let mut consumer = IdempotentConsumer::new(
        InMemoryDedup::new(1000, 1 << 20),
        IdSource::Header("outbox-id".into()),
    );
    let mut processed = Vec::new();
    for record in &records {
        let outcome = consumer
            .process(record, |r| {
                processed.push(text(r.value.as_ref()));
                async { Ok::<(), String>(()) }
            })
            .await
            .expect("processed");
        assert_ne!(outcome, Dedup::ProcessedWithoutId);
    }
    assert_eq!(processed, ["event-0", "event-1", "event-2", "event-3"]);
    assert_eq!(consumer.stats().snapshot().duplicates_skipped, 4);
    producer.close().await;
}
