//! The consumer (manual assignment) against the harness, in memory, under a paused clock.
//! Data goes into the logs with `with_state(append_records)`, so these tests do not depend
//! on the producer.

use std::collections::BTreeMap;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use franzy::consumer::{Consumer, ConsumerEvent, ConsumerRecord, Header, Offset};
use franzy::proto::compression::Compression;
use franzy::proto::record_batch::RecordBatchBuilder;
use franzy::proto::{ApiKey, ErrorCode};
use franzy::{Config, Error, OffsetReset, TopicPartition};
use franzy_harness::{Action, Cluster, Interceptor};
use franzy_tests::init_tracing;
use tokio::time::Instant;

/// Longest a test waits (in virtual time) for one event before failing.
const EVENT_WAIT: Duration = Duration::from_secs(60);
/// Most events a collecting loop takes before failing.
const MAX_EVENTS: usize = 10_000;

async fn cluster(brokers: i32, topic: &str, partitions: i32) -> Cluster {
    init_tracing();
    Cluster::builder()
        .brokers(brokers)
        .topic(topic, partitions)
        .in_memory()
        .build()
        .await
        .expect("cluster starts")
}

fn config(cluster: &Cluster) -> Config {
    Config::new(cluster.bootstrap()).auto_offset_reset(OffsetReset::Earliest)
}

fn consumer(cluster: &Cluster, config: Config) -> Consumer {
    Consumer::builder(config)
        .connector(Arc::new(cluster.connector()))
        .seed(7)
        .build()
        .expect("consumer builds")
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A record as the tests write it: key, value, headers, timestamp.
#[derive(Debug, Clone, PartialEq)]
struct Sent {
    key: Option<Bytes>,
    value: Option<Bytes>,
    headers: Vec<Header>,
    timestamp: i64,
}

fn sent(i: usize, partition: i32) -> Sent {
    Sent {
        key: (!i.is_multiple_of(5)).then(|| Bytes::from(format!("key-{partition}-{i}"))),
        value: (i % 7 != 3)
            .then(|| Bytes::from(format!("value-{partition}-{i}-{}", "x".repeat(i % 13)))),
        headers: (0..i % 3)
            .map(|h| Header::new(format!("h{h}"), format!("v{i}")))
            .collect(),
        timestamp: now_ms() - 60_000 + i as i64,
    }
}

/// Appends `records` as one batch; returns the base offset.
fn append(
    cluster: &Cluster,
    topic: &str,
    partition: i32,
    records: &[Sent],
    compression: Compression,
) -> i64 {
    let mut builder = RecordBatchBuilder::new().compression(compression);
    for r in records {
        builder
            .append(
                r.timestamp,
                r.key.clone(),
                r.value.clone(),
                r.headers.clone(),
            )
            .expect("record fits");
    }
    let bytes = builder.build().encode().expect("batch encodes");
    cluster
        .with_state(|s| s.append_records(topic, partition, &bytes, now_ms()))
        .expect("append")
        .base_offset
}

fn append_values(cluster: &Cluster, topic: &str, partition: i32, values: &[&str]) -> i64 {
    let records: Vec<Sent> = values
        .iter()
        .map(|v| Sent {
            key: None,
            value: Some(Bytes::from(v.to_string())),
            headers: Vec::new(),
            timestamp: now_ms(),
        })
        .collect();
    append(cluster, topic, partition, &records, Compression::None)
}

/// The next event (`recv_event`): a record, an end of partition, or an error.
async fn next(consumer: &Consumer) -> Result<ConsumerEvent, Error> {
    tokio::time::timeout(EVENT_WAIT, consumer.recv_event())
        .await
        .expect("an event within the wait")
        .map(|event| event.expect("the consumer is open"))
}

/// The next record (`recv`).
async fn next_record(consumer: &Consumer) -> ConsumerRecord {
    match tokio::time::timeout(EVENT_WAIT, consumer.recv())
        .await
        .expect("a record within the wait")
    {
        Ok(Some(record)) => record,
        other => panic!("expected a record, got {other:?}"),
    }
}

async fn records(consumer: &Consumer, n: usize) -> Vec<ConsumerRecord> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        out.push(next_record(consumer).await);
    }
    out
}

/// Nothing arrives within `wait` (virtual time).
async fn quiet(consumer: &Consumer, wait: Duration) {
    if let Ok(event) = tokio::time::timeout(wait, consumer.recv_event()).await {
        panic!("expected nothing, got {event:?}");
    }
}

fn offsets(records: &[ConsumerRecord]) -> Vec<i64> {
    records.iter().map(|r| r.offset).collect()
}

fn value(record: &ConsumerRecord) -> String {
    String::from_utf8_lossy(record.value.as_deref().unwrap_or_default()).into_owned()
}

fn leader(cluster: &Cluster, topic: &str, partition: i32) -> i32 {
    cluster.with_state(|s| {
        s.partition(topic, partition)
            .map(|p| p.leader())
            .expect("partition exists")
    })
}

/// The brokers that answered fetches.
fn fetched_from(cluster: &Cluster) -> std::collections::BTreeSet<i32> {
    cluster
        .requests()
        .iter()
        .filter(|r| r.api_key == ApiKey::Fetch)
        .map(|r| r.broker_id)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn consumes_everything_from_six_partitions() {
    let cluster = cluster(3, "orders", 6).await;
    let mut expected: BTreeMap<i32, Vec<Sent>> = BTreeMap::new();
    for partition in 0..6 {
        let mut i = 0;
        for batch in 0..3 {
            let size = 1 + (partition as usize + batch) % 4;
            let records: Vec<Sent> = (0..size).map(|k| sent(i + k, partition)).collect();
            i += size;
            append(&cluster, "orders", partition, &records, Compression::None);
            expected.entry(partition).or_default().extend(records);
        }
    }
    let consumer = consumer(&cluster, config(&cluster).enable_partition_eof(true));
    let assignment: Vec<TopicPartition> =
        (0..6).map(|p| TopicPartition::new("orders", p)).collect();
    consumer.assign(&assignment).expect("assign");
    assert_eq!(consumer.assignment(), assignment);

    let mut got: BTreeMap<i32, Vec<ConsumerRecord>> = BTreeMap::new();
    let mut eofs = BTreeMap::new();
    for _ in 0..MAX_EVENTS {
        if eofs.len() == 6 {
            break;
        }
        match next(&consumer).await.expect("no error") {
            ConsumerEvent::Record(r) => got.entry(r.partition).or_default().push(r),
            ConsumerEvent::PartitionEof { partition, offset } => {
                assert_eq!(partition.topic, "orders");
                let partition = partition.partition;
                assert_eq!(
                    got.get(&partition).map_or(0, Vec::len) as i64,
                    offset,
                    "eof after every record of partition {partition}"
                );
                assert!(eofs.insert(partition, offset).is_none(), "one eof each");
            }
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert_eq!(eofs.len(), 6);
    for (partition, want) in &expected {
        let have = &got[partition];
        assert_eq!(
            offsets(have),
            (0..want.len() as i64).collect::<Vec<_>>(),
            "partition {partition}"
        );
        for (r, w) in have.iter().zip(want) {
            assert_eq!(&*r.topic, "orders");
            assert_eq!(r.key, w.key);
            assert_eq!(r.value, w.value);
            assert_eq!(r.headers, w.headers);
            assert_eq!(r.timestamp, w.timestamp);
            assert!(r.leader_epoch.is_some());
        }
        assert_eq!(
            consumer.position(&TopicPartition::new("orders", *partition)),
            Some(want.len() as i64)
        );
    }
    // Version-correct requests: the highest Fetch version both sides know, with topic ids.
    let fetches: Vec<_> = cluster
        .requests()
        .into_iter()
        .filter(|r| r.api_key == ApiKey::Fetch)
        .collect();
    assert!(!fetches.is_empty());
    assert!(fetches.iter().all(|r| r.api_version == 18));
    consumer.close().await;
}

#[tokio::test(start_paused = true)]
async fn seeks_to_beginning_end_offset_and_timestamp() {
    let cluster = cluster(1, "t", 1).await;
    let base = now_ms() - 100_000;
    let written: Vec<Sent> = (0..10)
        .map(|i| Sent {
            timestamp: base + i as i64 * 1000,
            ..sent(i, 0)
        })
        .collect();
    append(&cluster, "t", 0, &written[..5], Compression::None);
    append(&cluster, "t", 0, &written[5..], Compression::None);
    let tp = TopicPartition::new("t", 0);
    let consumer = consumer(&cluster, config(&cluster));
    consumer.assign(std::slice::from_ref(&tp)).expect("assign");

    consumer.seek(&tp, Offset::At(5)).expect("seek");
    assert_eq!(consumer.position(&tp), Some(5));
    assert_eq!(next_record(&consumer).await.offset, 5);
    assert_eq!(consumer.position(&tp), Some(6));

    // Mid-batch: the records before the position in the returned batch are skipped.
    consumer.seek(&tp, Offset::At(2)).expect("seek");
    assert_eq!(offsets(&records(&consumer, 3).await), vec![2, 3, 4]);

    consumer.seek(&tp, Offset::Beginning).expect("seek");
    assert_eq!(consumer.position(&tp), None, "looked up in the background");
    assert_eq!(next_record(&consumer).await.offset, 0);

    consumer
        .seek(&tp, Offset::Timestamp(base + 3500))
        .expect("seek");
    let r = next_record(&consumer).await;
    assert_eq!((r.offset, r.timestamp), (4, base + 4000));

    consumer.seek(&tp, Offset::End).expect("seek");
    quiet(&consumer, Duration::from_secs(2)).await;
    assert_eq!(consumer.position(&tp), Some(10));
    append_values(&cluster, "t", 0, &["after-end"]);
    let r = next_record(&consumer).await;
    assert_eq!((r.offset, value(&r).as_str()), (10, "after-end"));

    // A timestamp after every record: the end of the log.
    consumer
        .seek(&tp, Offset::Timestamp(now_ms() + 600_000))
        .expect("seek");
    quiet(&consumer, Duration::from_secs(2)).await;
    assert_eq!(consumer.position(&tp), Some(11));
    append_values(&cluster, "t", 0, &["later"]);
    assert_eq!(next_record(&consumer).await.offset, 11);

    assert!(matches!(
        consumer.seek(&TopicPartition::new("t", 9), Offset::At(0)),
        Err(Error::UnknownPartition { .. })
    ));
    assert!(matches!(
        consumer.seek(&tp, Offset::At(-1)),
        Err(Error::InvalidArgument(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn paused_partitions_hold_their_records_until_resumed() {
    let cluster = cluster(1, "t", 2).await;
    let p0 = TopicPartition::new("t", 0);
    let p1 = TopicPartition::new("t", 1);
    for p in 0..2 {
        let records: Vec<Sent> = (0..4).map(|i| sent(i, p)).collect();
        append(&cluster, "t", p, &records, Compression::None);
    }
    let consumer = consumer(&cluster, config(&cluster));
    consumer.assign(&[p0.clone(), p1.clone()]).expect("assign");
    // One broker leads both, so the first fetch buffers both partitions.
    let first = next_record(&consumer).await;
    consumer.pause(std::slice::from_ref(&p1)).expect("pause");
    assert_eq!(consumer.paused(), vec![p1.clone()]);
    let mut from_p0 = vec![first];
    if from_p0[0].partition == 1 {
        // Partition 1 came first: its first record is out; the rest is held.
        from_p0.clear();
    }
    while from_p0.len() < 4 {
        let r = next_record(&consumer).await;
        assert_eq!(r.partition, 0, "nothing from a paused partition");
        from_p0.push(r);
    }
    append_values(&cluster, "t", 1, &["while-paused"]);
    quiet(&consumer, Duration::from_secs(3)).await;
    let before = consumer.position(&p1).expect("has a position");

    consumer.resume(std::slice::from_ref(&p1)).expect("resume");
    assert!(consumer.paused().is_empty());
    let rest = records(&consumer, (5 - before) as usize).await;
    assert!(rest.iter().all(|r| r.partition == 1));
    assert_eq!(offsets(&rest), (before..5).collect::<Vec<_>>());
    assert_eq!(value(&rest[rest.len() - 1]), "while-paused");
    assert!(matches!(
        consumer.pause(&[TopicPartition::new("other", 0)]),
        Err(Error::UnknownPartition { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn partition_eof_is_reported_once_each_time_the_end_is_reached() {
    let cluster = cluster(1, "t", 2).await;
    append_values(&cluster, "t", 0, &["a", "b", "c"]);
    let consumer = consumer(&cluster, config(&cluster).enable_partition_eof(true));
    consumer
        .assign(&[TopicPartition::new("t", 0), TopicPartition::new("t", 1)])
        .expect("assign");
    let mut events = Vec::new();
    for _ in 0..5 {
        events.push(next(&consumer).await.expect("no error"));
    }
    let eof = |partition, offset| ConsumerEvent::PartitionEof {
        partition: TopicPartition::new("t", partition),
        offset,
    };
    assert!(
        events.contains(&eof(1, 0)),
        "an empty partition is at its end"
    );
    let p0: Vec<_> = events
        .iter()
        .filter(|e| match e {
            ConsumerEvent::Record(r) => r.partition == 0,
            ConsumerEvent::PartitionEof { partition, .. } => partition.partition == 0,
            _ => false,
        })
        .collect();
    assert!(matches!(p0[0], ConsumerEvent::Record(r) if r.offset == 0));
    assert!(matches!(p0[2], ConsumerEvent::Record(r) if r.offset == 2));
    assert_eq!(p0[3], &eof(0, 3));
    cluster.clear_requests();
    quiet(&consumer, Duration::from_secs(5)).await;
    // At the end of the log the consumer long-polls: one fetch per fetch.max.wait.ms.
    let requests = cluster.requests();
    let fetches = requests
        .iter()
        .filter(|r| r.api_key == ApiKey::Fetch)
        .count();
    assert!((9..=11).contains(&fetches), "{fetches} fetches in 5 s");
    assert_eq!(fetches, requests.len(), "and nothing else: {requests:?}");

    append_values(&cluster, "t", 0, &["d"]);
    assert_eq!(next_record(&consumer).await.offset, 3);
    assert_eq!(next(&consumer).await.expect("eof"), eof(0, 4));
    quiet(&consumer, Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn auto_offset_reset_earliest_latest_and_none() {
    let cluster = cluster(1, "t", 1).await;
    append_values(&cluster, "t", 0, &["a", "b"]);
    let tp = TopicPartition::new("t", 0);

    let earliest = consumer(&cluster, config(&cluster));
    earliest.assign(std::slice::from_ref(&tp)).expect("assign");
    assert_eq!(next_record(&earliest).await.offset, 0);

    let latest = consumer(
        &cluster,
        config(&cluster).auto_offset_reset(OffsetReset::Latest),
    );
    latest.assign(std::slice::from_ref(&tp)).expect("assign");
    quiet(&latest, Duration::from_secs(2)).await;
    assert_eq!(latest.position(&tp), Some(2));
    append_values(&cluster, "t", 0, &["c"]);
    let r = next_record(&latest).await;
    assert_eq!((r.offset, value(&r).as_str()), (2, "c"));

    let none = consumer(
        &cluster,
        config(&cluster).auto_offset_reset(OffsetReset::None),
    );
    none.assign(std::slice::from_ref(&tp)).expect("assign");
    match next(&none).await {
        Err(error @ Error::OffsetOutOfRange { .. }) => assert_eq!(error.partition(), Some(&tp)),
        other => panic!("expected OffsetOutOfRange, got {other:?}"),
    }
    assert_eq!(none.position(&tp), None);
    quiet(&none, Duration::from_secs(2)).await;
    none.seek(&tp, Offset::At(1)).expect("seek");
    assert_eq!(next_record(&none).await.offset, 1);
}

#[tokio::test(start_paused = true)]
async fn offset_out_of_range_after_delete_records_resets_by_policy() {
    let cluster = cluster(1, "t", 1).await;
    for i in 0..5 {
        append_values(&cluster, "t", 0, &[&format!("a{i}"), &format!("b{i}")]);
    }
    assert_eq!(cluster.with_state(|s| s.delete_records("t", 0, 6)), Ok(6));
    let tp = TopicPartition::new("t", 0);

    let earliest = consumer(&cluster, config(&cluster));
    earliest.assign(std::slice::from_ref(&tp)).expect("assign");
    earliest.seek(&tp, Offset::At(2)).expect("seek");
    assert_eq!(offsets(&records(&earliest, 4).await), vec![6, 7, 8, 9]);

    let latest = consumer(
        &cluster,
        config(&cluster).auto_offset_reset(OffsetReset::Latest),
    );
    latest.assign(std::slice::from_ref(&tp)).expect("assign");
    latest.seek(&tp, Offset::At(1)).expect("seek");
    quiet(&latest, Duration::from_secs(2)).await;
    assert_eq!(latest.position(&tp), Some(10));

    let none = consumer(
        &cluster,
        config(&cluster).auto_offset_reset(OffsetReset::None),
    );
    none.assign(std::slice::from_ref(&tp)).expect("assign");
    none.seek(&tp, Offset::At(3)).expect("seek");
    assert!(matches!(
        next(&none).await,
        Err(Error::OffsetOutOfRange { offset: 3, .. })
    ));
    quiet(&none, Duration::from_secs(2)).await;

    // Deleted while consuming: the next fetch is out of range and resets to the new start.
    let moving = consumer(&cluster, config(&cluster).max_partition_fetch_bytes(1));
    moving.assign(std::slice::from_ref(&tp)).expect("assign");
    assert_eq!(next_record(&moving).await.offset, 6);
    append_values(&cluster, "t", 0, &["c0", "c1"]);
    assert_eq!(cluster.with_state(|s| s.delete_records("t", 0, 11)), Ok(11));
    // The batch holding 7 was buffered before the deletion; what follows starts at 11.
    assert_eq!(offsets(&records(&moving, 2).await), vec![7, 11]);
}

#[tokio::test(start_paused = true)]
async fn leader_changes_lose_and_duplicate_nothing() {
    let cluster = cluster(3, "t", 1).await;
    let tp = TopicPartition::new("t", 0);
    let consumer = consumer(&cluster, config(&cluster));
    consumer.assign(std::slice::from_ref(&tp)).expect("assign");
    let mut got = Vec::new();
    let mut written = 0;
    for round in 0..4 {
        for _ in 0..3 {
            append_values(&cluster, "t", 0, &[&format!("r{written}")]);
            written += 1;
        }
        got.extend(records(&consumer, 3).await);
        // Move leadership (a new epoch) to the next replica.
        let current = leader(&cluster, "t", 0);
        let next_leader = cluster.with_state(|s| {
            let p = s.partition("t", 0).expect("exists");
            let replicas = p.replicas().to_vec();
            let i = replicas.iter().position(|b| *b == current).unwrap_or(0);
            replicas[(i + 1) % replicas.len()]
        });
        cluster
            .with_state(|s| s.set_leader("t", 0, next_leader))
            .expect("leader moves");
        if round == 1 {
            cluster.intercept(
                Interceptor::new(ApiKey::Fetch, Action::Error(ErrorCode::NotLeaderOrFollower))
                    .on_partition("t", 0)
                    .times(3),
            );
        }
    }
    for _ in 0..3 {
        append_values(&cluster, "t", 0, &[&format!("r{written}")]);
        written += 1;
    }
    got.extend(records(&consumer, 3).await);
    assert_eq!(offsets(&got), (0..written as i64).collect::<Vec<_>>());
    for (i, r) in got.iter().enumerate() {
        assert_eq!(value(r), format!("r{i}"));
    }
    assert_eq!(
        cluster.pending_interceptors(),
        0,
        "NOT_LEADER_OR_FOLLOWER was served"
    );
    assert_eq!(
        fetched_from(&cluster).len(),
        3,
        "every replica led at some point"
    );
    quiet(&consumer, Duration::from_secs(2)).await;
}

#[tokio::test(start_paused = true)]
async fn a_stopped_and_restarted_broker_loses_and_duplicates_nothing() {
    let cluster = cluster(3, "t", 1).await;
    let tp = TopicPartition::new("t", 0);
    let consumer = consumer(&cluster, config(&cluster));
    consumer.assign(std::slice::from_ref(&tp)).expect("assign");
    append_values(&cluster, "t", 0, &["0", "1", "2"]);
    let mut got = records(&consumer, 3).await;

    let old = leader(&cluster, "t", 0);
    cluster.stop_broker(old).expect("stop");
    assert_ne!(leader(&cluster, "t", 0), old, "leadership moved");
    append_values(&cluster, "t", 0, &["3", "4"]);
    got.extend(records(&consumer, 2).await);

    cluster.start_broker(old).await.expect("restart");
    cluster
        .with_state(|s| s.set_leader("t", 0, old))
        .expect("back to the restarted broker");
    append_values(&cluster, "t", 0, &["5", "6", "7"]);
    got.extend(records(&consumer, 3).await);
    assert!(
        fetched_from(&cluster).len() >= 2,
        "fetched from the new leader"
    );
    assert_eq!(offsets(&got), (0..8).collect::<Vec<_>>());
    assert_eq!(
        got.iter().map(value).collect::<Vec<_>>(),
        (0..8).map(|i| i.to_string()).collect::<Vec<_>>()
    );
    quiet(&consumer, Duration::from_secs(2)).await;
}

#[tokio::test(start_paused = true)]
async fn compressed_batches_of_every_codec_are_decoded() {
    let cluster = cluster(1, "t", 1).await;
    let codecs = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];
    let mut expected = Vec::new();
    for (c, codec) in codecs.iter().enumerate() {
        let records: Vec<Sent> = (0..20).map(|i| sent(i + c * 20, 0)).collect();
        append(&cluster, "t", 0, &records, *codec);
        expected.extend(records);
    }
    let consumer = consumer(&cluster, config(&cluster));
    consumer
        .assign(&[TopicPartition::new("t", 0)])
        .expect("assign");
    let got = records(&consumer, expected.len()).await;
    assert_eq!(offsets(&got), (0..100).collect::<Vec<_>>());
    for (r, w) in got.iter().zip(&expected) {
        assert_eq!(
            (&r.key, &r.value, &r.headers),
            (&w.key, &w.value, &w.headers)
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_batch_cut_at_max_partition_fetch_bytes_is_completed_by_the_next_fetch() {
    let cluster = cluster(1, "t", 1).await;
    let big = "v".repeat(1000);
    for i in 0..4 {
        append_values(
            &cluster,
            "t",
            0,
            &[&format!("{i}{big}"), &format!("{i}{big}")],
        );
    }
    let consumer = consumer(&cluster, config(&cluster).max_partition_fetch_bytes(3000));
    consumer
        .assign(&[TopicPartition::new("t", 0)])
        .expect("assign");
    let got = records(&consumer, 8).await;
    assert_eq!(offsets(&got), (0..8).collect::<Vec<_>>());
    assert!(got
        .iter()
        .all(|r| r.value.as_ref().map(Bytes::len) == Some(1001)));
    let fetches = cluster
        .requests()
        .iter()
        .filter(|r| r.api_key == ApiKey::Fetch)
        .count();
    assert!(
        fetches >= 3,
        "each fetch returns one whole batch and part of the next: {fetches}"
    );

    // A batch larger than the limit still comes whole (KIP-74).
    let huge = "h".repeat(10_000);
    append_values(&cluster, "t", 0, &[&huge]);
    assert_eq!(
        next_record(&consumer).await.value.map(|v| v.len()),
        Some(10_000)
    );
}

#[tokio::test(start_paused = true)]
async fn values_are_slices_of_one_fetch_buffer() {
    let cluster = cluster(1, "t", 1).await;
    append_values(&cluster, "t", 0, &["first-value", "second-value"]);
    let consumer = consumer(&cluster, config(&cluster));
    consumer
        .assign(&[TopicPartition::new("t", 0)])
        .expect("assign");
    let got = records(&consumer, 2).await;
    let (a, b) = (
        got[0].value.clone().expect("value"),
        got[1].value.clone().expect("value"),
    );
    let a_end = a.as_ptr() as usize + a.len();
    let b_start = b.as_ptr() as usize;
    // Only the second record's header fields lie between the two values.
    assert!(
        b_start > a_end && b_start - a_end < 16,
        "values are not adjacent in one buffer: {a_end:#x} .. {b_start:#x}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_long_poll_returns_as_soon_as_a_record_arrives() {
    let cluster = cluster(1, "t", 1).await;
    let tp = TopicPartition::new("t", 0);
    let consumer = consumer(
        &cluster,
        config(&cluster).fetch_max_wait(Duration::from_millis(500)),
    );
    consumer.assign(std::slice::from_ref(&tp)).expect("assign");
    for _ in 0..100 {
        if consumer.position(&tp).is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(consumer.position(&tp), Some(0));
    // Let the first long poll park at the broker.
    tokio::time::sleep(Duration::from_millis(130)).await;
    let start = Instant::now();
    let cluster = Arc::new(cluster);
    let writer = cluster.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        append_values(&writer, "t", 0, &["late"]);
    });
    let r = next_record(&consumer).await;
    assert_eq!(value(&r), "late");
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(200) && waited <= Duration::from_millis(210),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn corrupt_batches_are_reported_not_skipped() {
    let cluster = cluster(1, "t", 1).await;
    append_values(&cluster, "t", 0, &["good-0", "good-1"]);
    append_values(&cluster, "t", 0, &["corrupt-me"]);
    append_values(&cluster, "t", 0, &["after"]);
    cluster.intercept(Interceptor::new(
        ApiKey::Fetch,
        Action::AlterResponse(Arc::new(|frame: &mut BytesMut| {
            let needle = b"corrupt-me";
            if let Some(at) = frame.windows(needle.len()).position(|w| w == needle) {
                frame[at] ^= 0xff;
            }
        })),
    ));
    let tp = TopicPartition::new("t", 0);
    let consumer = consumer(&cluster, config(&cluster));
    consumer.assign(std::slice::from_ref(&tp)).expect("assign");
    assert_eq!(offsets(&records(&consumer, 2).await), vec![0, 1]);
    match next(&consumer).await {
        Err(error @ Error::CorruptRecord { .. }) => assert_eq!(error.partition(), Some(&tp)),
        other => panic!("expected CorruptRecord, got {other:?}"),
    }
    assert_eq!(
        consumer.position(&tp),
        Some(2),
        "stays at the corrupt batch"
    );
    quiet(&consumer, Duration::from_secs(2)).await;
    // Fetched again (the interceptor is spent), the batch is intact.
    consumer.seek(&tp, Offset::At(2)).expect("seek");
    let rest = records(&consumer, 2).await;
    assert_eq!(
        rest.iter().map(value).collect::<Vec<_>>(),
        vec!["corrupt-me", "after"]
    );
}

#[tokio::test(start_paused = true)]
async fn the_consumer_is_a_stream_and_close_ends_it() {
    let cluster = cluster(1, "t", 1).await;
    append_values(&cluster, "t", 0, &["s0", "s1"]);
    let mut consumer = consumer(&cluster, config(&cluster));
    consumer
        .assign(&[TopicPartition::new("t", 0)])
        .expect("assign");
    let mut got = Vec::new();
    for _ in 0..2 {
        let item = tokio::time::timeout(
            EVENT_WAIT,
            poll_fn(|cx| futures_core::Stream::poll_next(Pin::new(&mut consumer), cx)),
        )
        .await
        .expect("an item");
        match item {
            Some(Ok(r)) => got.push(value(&r)),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(got, vec!["s0", "s1"]);
    consumer.unassign();
    assert!(consumer.assignment().is_empty());
    consumer.close().await;
}

#[tokio::test(start_paused = true)]
async fn an_unknown_topic_is_waited_for() {
    init_tracing();
    let cluster = Cluster::builder()
        .brokers(1)
        .auto_create_topics(false)
        .in_memory()
        .build()
        .await
        .expect("cluster starts");
    let tp = TopicPartition::new("later", 0);
    let consumer = consumer(&cluster, config(&cluster));
    consumer.assign(std::slice::from_ref(&tp)).expect("assign");
    quiet(&consumer, Duration::from_secs(3)).await;
    cluster.create_topic("later", 1).expect("create");
    append_values(&cluster, "later", 0, &["x"]);
    assert_eq!(value(&next_record(&consumer).await), "x");
}

/// Leader moves, dropped connections, slow answers and NOT_LEADER_OR_FOLLOWER at random,
/// with batches cut by small fetch limits: every record still arrives once, in order.
/// Set `FRANZY_SEED` to replay a run.
#[tokio::test(start_paused = true)]
async fn under_random_faults_every_record_arrives_once_in_order() {
    let seed: u64 = std::env::var("FRANZY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed);
    eprintln!("FRANZY_SEED={seed}");
    init_tracing();
    let cluster = Cluster::builder()
        .brokers(3)
        .topic("c", 4)
        .seed(seed)
        .in_memory()
        .build()
        .await
        .expect("cluster starts");
    cluster.intercept(
        Interceptor::new(ApiKey::Fetch, Action::Disconnect)
            .with_probability(0.05)
            .keep(),
    );
    cluster.intercept(
        Interceptor::new(ApiKey::Fetch, Action::Delay(Duration::from_millis(300)))
            .with_probability(0.05)
            .keep(),
    );
    for p in 0..4 {
        cluster.intercept(
            Interceptor::new(ApiKey::Fetch, Action::Error(ErrorCode::NotLeaderOrFollower))
                .on_partition("c", p)
                .with_probability(0.05)
                .keep(),
        );
    }
    let consumer = Consumer::builder(
        config(&cluster)
            .max_partition_fetch_bytes(700)
            .fetch_max_bytes(1500),
    )
    .connector(Arc::new(cluster.connector()))
    .seed(seed)
    .build()
    .expect("consumer builds");
    consumer
        .assign(
            &(0..4)
                .map(|p| TopicPartition::new("c", p))
                .collect::<Vec<_>>(),
        )
        .expect("assign");
    let mut rng = franzy_tests::SplitMix64::new(seed);
    let mut written: Vec<Vec<String>> = vec![Vec::new(); 4];
    let mut got: Vec<Vec<ConsumerRecord>> = vec![Vec::new(); 4];
    let mut received = 0usize;
    for _round in 0..25 {
        for p in 0..4 {
            for _ in 0..rng.below(3) {
                let values: Vec<String> = (0..1 + rng.below(5))
                    .map(|_| {
                        let n = written[p as usize].len();
                        let padding = "z".repeat(rng.below(300) as usize);
                        let value = format!("{p}-{n}-{padding}");
                        written[p as usize].push(value.clone());
                        value
                    })
                    .collect();
                let refs: Vec<&str> = values.iter().map(String::as_str).collect();
                append_values(&cluster, "c", p, &refs);
            }
        }
        if rng.below(3) == 0 {
            let p = rng.below(4) as i32;
            let to = rng.below(3) as i32;
            cluster
                .with_state(|s| s.set_leader("c", p, to))
                .expect("every broker is a replica");
        }
        let total: usize = written.iter().map(Vec::len).sum();
        let take = rng.below((total - received) as u64 + 1) as usize;
        for r in records(&consumer, take).await {
            got[r.partition as usize].push(r);
        }
        received += take;
    }
    let total: usize = written.iter().map(Vec::len).sum();
    for r in records(&consumer, total - received).await {
        got[r.partition as usize].push(r);
    }
    for p in 0..4 {
        assert_eq!(
            offsets(&got[p]),
            (0..written[p].len() as i64).collect::<Vec<_>>(),
            "partition {p}, seed {seed}"
        );
        assert_eq!(
            got[p].iter().map(value).collect::<Vec<_>>(),
            written[p],
            "partition {p}, seed {seed}"
        );
    }
    let reconnects = cluster
        .requests()
        .iter()
        .filter(|r| r.api_key == ApiKey::ApiVersions)
        .count();
    assert!(
        reconnects > 3,
        "dropped connections were reopened: {reconnects}"
    );
    cluster.clear_interceptors();
    quiet(&consumer, Duration::from_secs(3)).await;
}

#[tokio::test(start_paused = true)]
async fn pause_resume_and_close_come_from_another_task_while_recv_waits() {
    let cluster = cluster(1, "t", 2).await;
    let (p0, p1) = (TopicPartition::new("t", 0), TopicPartition::new("t", 1));
    let consumer = Arc::new(consumer(&cluster, config(&cluster)));
    consumer.assign(&[p0.clone(), p1.clone()]).expect("assign");
    // Nothing to read yet: the receiving task waits in recv.
    let receiver = {
        let consumer = consumer.clone();
        tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(record) = consumer.recv().await.expect("no error") {
                got.push((record.partition, value(&record)));
            }
            got
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!receiver.is_finished(), "recv waits for records");
    // Paused from this task while the other waits in recv.
    consumer.pause(std::slice::from_ref(&p0)).expect("pause");
    assert_eq!(consumer.paused(), vec![p0.clone()]);
    append_values(&cluster, "t", 0, &["held back"]);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        !receiver.is_finished(),
        "nothing of a paused partition is handed out"
    );
    append_values(&cluster, "t", 1, &["flows"]);
    tokio::time::sleep(Duration::from_secs(5)).await;
    consumer.resume(std::slice::from_ref(&p0)).expect("resume");
    tokio::time::sleep(Duration::from_secs(5)).await;
    consumer
        .seek(&p1, Offset::At(0))
        .expect("seek from this task too");
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Closed from this task: the waiting recv returns None.
    consumer.close().await;
    let got = tokio::time::timeout(EVENT_WAIT, receiver)
        .await
        .expect("recv ends once closed")
        .expect("the task ran");
    assert_eq!(
        got,
        vec![
            (1, "flows".to_string()),
            (0, "held back".to_string()),
            (1, "flows".to_string()),
        ],
        "p1 while p0 was paused, p0 once resumed, p1 again after the seek"
    );
    assert!(
        matches!(consumer.recv().await, Ok(None)),
        "closed stays closed"
    );
}

#[tokio::test(start_paused = true)]
async fn recv_hands_out_records_only_and_recv_event_the_ends_asked_for() {
    let cluster = cluster(1, "t", 1).await;
    let tp = TopicPartition::new("t", 0);
    append_values(&cluster, "t", 0, &["a", "b"]);
    // Without enable.partition.eof there are no end events, even through recv_event.
    let plain = consumer(&cluster, config(&cluster));
    plain.assign(std::slice::from_ref(&tp)).expect("assign");
    for expected in ["a", "b"] {
        match next(&plain).await {
            Ok(ConsumerEvent::Record(r)) => assert_eq!(value(&r), expected),
            other => panic!("expected a record, got {other:?}"),
        }
    }
    quiet(&plain, Duration::from_secs(5)).await;
    // With it, recv still hands out records only...
    let eof = consumer(&cluster, config(&cluster).enable_partition_eof(true));
    eof.assign(std::slice::from_ref(&tp)).expect("assign");
    assert_eq!(offsets(&records(&eof, 2).await), vec![0, 1]);
    assert!(
        tokio::time::timeout(Duration::from_secs(5), eof.recv())
            .await
            .is_err(),
        "recv never returns an end of partition"
    );
    // ... while recv_event has the end (once per end offset reached).
    eof.seek(&tp, Offset::At(0)).expect("seek");
    let events: Vec<_> = [next(&eof).await, next(&eof).await, next(&eof).await]
        .into_iter()
        .map(|e| e.expect("no error"))
        .collect();
    assert!(matches!(
        &events[..2],
        [ConsumerEvent::Record(_), ConsumerEvent::Record(_)]
    ));
    assert_eq!(
        events[2],
        ConsumerEvent::PartitionEof {
            partition: tp.clone(),
            offset: 2
        }
    );
}

#[tokio::test(start_paused = true)]
async fn a_partition_error_names_its_partition_and_the_others_go_on() {
    let cluster = cluster(1, "t", 2).await;
    let (p0, p1) = (TopicPartition::new("t", 0), TopicPartition::new("t", 1));
    append_values(&cluster, "t", 1, &["fine"]);
    cluster.intercept(
        Interceptor::new(
            ApiKey::Fetch,
            Action::Error(ErrorCode::TopicAuthorizationFailed),
        )
        .on_partition("t", 0),
    );
    let consumer = consumer(&cluster, config(&cluster));
    consumer.assign(&[p0.clone(), p1.clone()]).expect("assign");
    let mut error = None;
    let mut got = Vec::new();
    while error.is_none() || got.is_empty() {
        match tokio::time::timeout(EVENT_WAIT, consumer.recv())
            .await
            .expect("something within the wait")
        {
            Ok(Some(record)) => got.push(record.topic_partition()),
            Ok(None) => panic!("closed"),
            Err(e) => error = Some(e),
        }
    }
    let error = error.expect("an error");
    // The partition is data: no text to parse to know what to seek.
    assert_eq!(error.partition(), Some(&p0), "{error}");
    assert!(
        matches!(
            &error,
            Error::Partition { partition, code: ErrorCode::TopicAuthorizationFailed, .. }
                if *partition == p0
        ),
        "{error:?}"
    );
    assert!(!error.is_fatal() && !error.is_retriable());
    assert_eq!(got, vec![p1.clone()], "the other partition goes on");
    // Stopped until a seek, which restarts it (the interceptor is spent).
    quiet(&consumer, Duration::from_secs(2)).await;
}

#[tokio::test(start_paused = true)]
async fn a_records_last_header_of_a_name_and_all_its_headers() {
    let cluster = cluster(1, "t", 1).await;
    let record = Sent {
        key: None,
        value: Some(Bytes::from("v")),
        headers: vec![
            Header::new("trace", "first"),
            Header::null("gone"),
            Header::new("trace", "second"),
        ],
        timestamp: now_ms(),
    };
    append(&cluster, "t", 0, &[record], Compression::Lz4);
    let consumer = consumer(&cluster, config(&cluster));
    consumer
        .assign(&[TopicPartition::new("t", 0)])
        .expect("assign");
    let got = next_record(&consumer).await;
    assert_eq!(
        got.header("trace").and_then(|h| h.value.as_deref()),
        Some(&b"second"[..]),
        "the last of its name, as Kafka's lastHeader"
    );
    assert_eq!(got.header("gone"), Some(&Header::null("gone")));
    assert_eq!(got.header("missing"), None);
    let traces: Vec<_> = got
        .headers_named("trace")
        .filter_map(|h| h.value.clone())
        .collect();
    assert_eq!(traces, vec![Bytes::from("first"), Bytes::from("second")]);
    assert_eq!(got.headers.len(), 3);
}
