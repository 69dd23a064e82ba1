//! The consumer against brokers that fail or lie on the fetch path: no answer, an answer to
//! a request never sent, an oversized frame, dropped connections, unreachable bootstrap
//! servers, and offsets no log can have. In memory, under a paused clock: each test spans
//! tens of seconds of virtual time and counts the requests the cluster saw in them.
//!
//! What must hold: every failure is retried with backoff (a bounded number of requests, not
//! thousands), logged at warn level naming the broker, reported by `recv` once per episode
//! as a retriable error, and consumption resumes once the broker behaves.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use franzy::consumer::{Consumer, ConsumerEvent, ConsumerRecord, Offset};
use franzy::kafka_protocol::messages::FetchResponse;
use franzy::proto::message::{decode_response, encode_response};
use franzy::proto::record_batch::RecordBatchBuilder;
use franzy::proto::{ApiKey, ResponseKind};
use franzy::{Config, Error, OffsetReset, TopicPartition};
use franzy_harness::{Action, Cluster, Interceptor};
use franzy_tests::capture_events;

/// Longest a test waits (in virtual time) for one event before failing.
const EVENT_WAIT: Duration = Duration::from_secs(60);
/// The window over which requests are counted.
const WINDOW: Duration = Duration::from_secs(20);

async fn cluster() -> Cluster {
    Cluster::builder()
        .brokers(1)
        .topic("t", 1)
        .in_memory()
        .seed(5)
        .build()
        .await
        .expect("cluster starts")
}

fn consumer(cluster: &Cluster) -> Consumer {
    let config = Config::new(cluster.bootstrap())
        .auto_offset_reset(OffsetReset::Earliest)
        .request_timeout(Duration::from_secs(5));
    Consumer::builder(config)
        .connector(Arc::new(cluster.connector()))
        .seed(3)
        .build()
        .expect("consumer builds")
}

fn append(cluster: &Cluster, values: &[&str]) {
    let mut builder = RecordBatchBuilder::new();
    for v in values {
        builder
            .append(0, None, Some(Bytes::from(v.to_string())), Vec::new())
            .expect("record fits");
    }
    let bytes = builder.build().encode().expect("batch encodes");
    cluster
        .with_state(|s| s.append_records("t", 0, &bytes, 0))
        .expect("append");
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

fn value(record: &ConsumerRecord) -> String {
    String::from_utf8_lossy(record.value.as_deref().unwrap_or_default()).into_owned()
}

/// Nothing arrives within `wait` (virtual time).
async fn quiet(consumer: &Consumer, wait: Duration) {
    if let Ok(event) = tokio::time::timeout(wait, consumer.recv_event()).await {
        panic!("expected nothing, got {event:?}");
    }
}

/// Requests of `api` the cluster has seen so far.
fn count(cluster: &Cluster, api: ApiKey) -> usize {
    cluster
        .requests()
        .iter()
        .filter(|r| r.api_key == api)
        .count()
}

/// A consumer that has read "a" and "b" of t/0, with its next fetch parked at the end of
/// the log; also the Fetch version it uses.
async fn reading_consumer(cluster: &Cluster) -> (Consumer, i16) {
    append(cluster, &["a", "b"]);
    let consumer = consumer(cluster);
    consumer
        .assign(&[TopicPartition::new("t", 0)])
        .expect("assign");
    let got: Vec<String> = [next_record(&consumer).await, next_record(&consumer).await]
        .iter()
        .map(value)
        .collect();
    assert_eq!(got, ["a", "b"]);
    let version = cluster
        .requests()
        .iter()
        .rev()
        .find(|r| r.api_key == ApiKey::Fetch)
        .map(|r| r.api_version)
        .expect("a fetch was sent");
    (consumer, version)
}

/// Installs `fault` for every Fetch from now on, then writes "c" once the fetch parked
/// before the fault (answered when its wait ends, or when "c" arrives) is done.
async fn fault_then_c(cluster: &Cluster, fault: Action) {
    cluster.intercept(Interceptor::new(ApiKey::Fetch, fault).keep());
    tokio::time::sleep(Duration::from_millis(600)).await;
    append(cluster, &["c"]);
}

/// Warn-level events that name `needle` and contain `what`.
fn warnings<'a>(lines: &'a [String], what: &str, needle: &str) -> Vec<&'a String> {
    lines
        .iter()
        .filter(|l| l.starts_with("WARN") && l.contains(what) && l.contains(needle))
        .collect()
}

/// `fault` hits every Fetch for [`WINDOW`]: `recv` reports the broker once, the retries
/// stay few and are logged, and after the fault "c" arrives. Returns the fetches sent in
/// the window.
async fn fetch_outage(fault: Action) -> usize {
    let (events, _guard) = capture_events();
    let cluster = cluster().await;
    let (consumer, _) = reading_consumer(&cluster).await;
    let fetches_before = count(&cluster, ApiKey::Fetch);
    let start = tokio::time::Instant::now();
    fault_then_c(&cluster, fault).await;
    match next(&consumer).await {
        Err(error @ Error::BrokerUnreachable { broker: 0, .. }) => {
            assert!(error.is_retriable(), "{error}");
            assert!(!error.is_fatal(), "{error}");
            assert!(
                std::error::Error::source(&error).is_some(),
                "{error}: the cause"
            );
        }
        other => panic!("expected BrokerUnreachable, got {other:?}"),
    }
    let reported_after = start.elapsed();
    assert!(
        reported_after >= Duration::from_secs(1) && reported_after <= Duration::from_secs(10),
        "{reported_after:?}"
    );
    // Once per episode, however long it lasts.
    quiet(&consumer, WINDOW - reported_after).await;
    let fetches = count(&cluster, ApiKey::Fetch) - fetches_before;
    assert!(fetches >= 2, "retried: {fetches} fetches");
    assert!(
        fetches <= 40,
        "{fetches} fetches in {WINDOW:?}: not backed off"
    );
    assert!(
        count(&cluster, ApiKey::Metadata) <= 60,
        "{} metadata requests",
        count(&cluster, ApiKey::Metadata)
    );
    let lines = events.lines();
    let failures = warnings(&lines, "fetch failed", "broker=0");
    assert!(
        failures.len() >= 2 && failures.len() <= fetches,
        "{failures:#?}"
    );
    cluster.clear_interceptors();
    assert_eq!(value(&next_record(&consumer).await), "c");
    quiet(&consumer, Duration::from_secs(3)).await;
    fetches
}

#[tokio::test(start_paused = true)]
async fn a_fetch_never_answered_is_reported_once_and_consuming_resumes() {
    let fetches = fetch_outage(Action::NeverAnswer).await;
    // Each waits request.timeout.ms (5 s) for its answer.
    assert!(fetches <= 6, "{fetches}");
}

#[tokio::test(start_paused = true)]
async fn an_answer_to_a_request_never_sent_is_reported_once_and_consuming_resumes() {
    fetch_outage(Action::AlterResponse(Arc::new(|frame: &mut BytesMut| {
        // The correlation id follows the 4-byte length prefix.
        let id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
        frame[4..8].copy_from_slice(&id.wrapping_add(1000).to_be_bytes());
    })))
    .await;
}

#[tokio::test(start_paused = true)]
async fn an_oversized_frame_is_reported_once_and_consuming_resumes() {
    fetch_outage(Action::AlterResponse(Arc::new(|frame: &mut BytesMut| {
        // Past the client's 100 MiB limit.
        frame[0..4].copy_from_slice(&(200 * 1024 * 1024i32).to_be_bytes());
    })))
    .await;
}

#[tokio::test(start_paused = true)]
async fn dropped_connections_are_reported_once_and_consuming_resumes() {
    fetch_outage(Action::Disconnect).await;
}

#[tokio::test(start_paused = true)]
async fn unreachable_bootstrap_servers_are_reported_once_and_consuming_starts_later() {
    let (events, _guard) = capture_events();
    let cluster = cluster().await;
    append(&cluster, &["a"]);
    // Every connection is dropped before it is usable.
    cluster.intercept(Interceptor::new(ApiKey::ApiVersions, Action::Disconnect).keep());
    let consumer = consumer(&cluster);
    consumer
        .assign(&[TopicPartition::new("t", 0)])
        .expect("assign");
    let start = tokio::time::Instant::now();
    match next(&consumer).await {
        Err(error @ Error::AllBrokersDown { .. }) => {
            assert!(error.is_retriable() && !error.is_fatal(), "{error}");
        }
        other => panic!("expected AllBrokersDown, got {other:?}"),
    }
    let reported_after = start.elapsed();
    assert!(
        reported_after >= Duration::from_secs(1) && reported_after <= Duration::from_secs(10),
        "{reported_after:?}"
    );
    quiet(&consumer, WINDOW - reported_after).await;
    let attempts = count(&cluster, ApiKey::ApiVersions);
    assert!(
        (3..=60).contains(&attempts),
        "{attempts} connection attempts in {WINDOW:?}"
    );
    let lines = events.lines();
    let bootstrap = cluster.bootstrap();
    let failures = warnings(&lines, "metadata refresh failed", &bootstrap);
    assert!(failures.len() >= 2, "{lines:#?}");
    cluster.clear_interceptors();
    assert_eq!(value(&next_record(&consumer).await), "a");
    quiet(&consumer, Duration::from_secs(3)).await;
}

/// Decodes each Fetch response at `version`, lets `change` edit it, and sends that instead.
fn rewrite_fetch(
    version: i16,
    change: impl Fn(&mut FetchResponse) + Send + Sync + 'static,
) -> Action {
    Action::AlterResponse(Arc::new(move |frame: &mut BytesMut| {
        let body = Bytes::copy_from_slice(&frame[4..]);
        let (header, response) =
            decode_response(body, ApiKey::Fetch, version).expect("the harness's answer decodes");
        let ResponseKind::Fetch(mut response) = response else {
            panic!("a Fetch answer");
        };
        change(&mut response);
        let mut out = BytesMut::new();
        encode_response(
            &mut out,
            ApiKey::Fetch,
            version,
            header.correlation_id,
            &ResponseKind::Fetch(response),
        )
        .expect("encodes");
        *frame = out;
    }))
}

/// Every batch of `records` at `base_offset` (the field is outside the CRC).
fn rebase(records: &Bytes, base_offset: i64) -> Bytes {
    let mut out = records.to_vec();
    let mut at = 0;
    while at + 12 <= out.len() {
        out[at..at + 8].copy_from_slice(&base_offset.to_be_bytes());
        let length = i32::from_be_bytes([out[at + 8], out[at + 9], out[at + 10], out[at + 11]]);
        at += 12 + usize::try_from(length).expect("a batch length");
    }
    Bytes::from(out)
}

#[tokio::test(start_paused = true)]
async fn batches_at_offsets_no_log_can_have_are_corrupt_data_not_a_loop() {
    for bad in [i64::MAX, i64::MIN] {
        let (events, _guard) = capture_events();
        let cluster = cluster().await;
        let (consumer, version) = reading_consumer(&cluster).await;
        let rebased = rewrite_fetch(version, move |response| {
            for topic in &mut response.responses {
                for partition in &mut topic.partitions {
                    if let Some(records) = &partition.records {
                        partition.records = Some(rebase(records, bad));
                    }
                }
            }
        });
        fault_then_c(&cluster, rebased).await;
        match next(&consumer).await {
            Err(Error::CorruptRecord {
                partition,
                offset,
                broker,
                ..
            }) => {
                assert_eq!(partition, TopicPartition::new("t", 0));
                assert_eq!((offset, broker), (Some(bad), Some(0)));
            }
            other => panic!("expected CorruptRecord at {bad}, got {other:?}"),
        }
        let tp = TopicPartition::new("t", 0);
        assert_eq!(consumer.position(&tp), Some(2), "stays at the bad batch");
        let fetches = count(&cluster, ApiKey::Fetch);
        quiet(&consumer, Duration::from_secs(10)).await;
        assert_eq!(
            count(&cluster, ApiKey::Fetch),
            fetches,
            "stopped until a seek"
        );
        let lines = events.lines();
        assert!(
            !warnings(&lines, "corrupt record data", "broker=0").is_empty(),
            "{lines:#?}"
        );
        cluster.clear_interceptors();
        consumer.seek(&tp, Offset::At(2)).expect("seek");
        assert_eq!(value(&next_record(&consumer).await), "c");
    }
}

#[tokio::test(start_paused = true)]
async fn a_high_watermark_far_ahead_without_data_does_not_make_the_consumer_spin() {
    let cluster = cluster().await;
    let (consumer, version) = reading_consumer(&cluster).await;
    // Once "c" is there, the broker answers at once; the answer claims data and has none.
    let empty = rewrite_fetch(version, |response| {
        for topic in &mut response.responses {
            for partition in &mut topic.partitions {
                partition.high_watermark = i64::MAX;
                partition.last_stable_offset = i64::MAX;
                partition.records = Some(Bytes::new());
            }
        }
    });
    fault_then_c(&cluster, empty).await;
    let fetches = count(&cluster, ApiKey::Fetch);
    quiet(&consumer, Duration::from_secs(10)).await;
    let sent = count(&cluster, ApiKey::Fetch) - fetches;
    assert!((3..=25).contains(&sent), "{sent} fetches in 10 s");
    cluster.clear_interceptors();
    assert_eq!(value(&next_record(&consumer).await), "c");
}
