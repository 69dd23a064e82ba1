//! Crashes in the middle of the outbox relay and of the fallback file's replay, each
//! followed by a restart (see `common` for what a crash is here): nothing is lost, and
//! nothing is duplicated beyond what each pattern's guarantee allows.
//!
//! - The outbox relay (at least once, a Kafka transaction per batch, rows marked after the
//!   commit): killed at each step of a batch, the restarted relay sends every row; under
//!   read_committed a row appears twice only when the dead relay's commit went through and
//!   its mark did not, and then its copies carry the same `outbox-id`.
//! - The relay as a service (`OutboxRelay::run`): a database failing for a while is
//!   retried, rows written meanwhile are picked up at the next poll, dropping the future
//!   stops it, and a relay fenced by a newer one stops with the error.
//! - The replay of the fallback file (at least once, the file rewritten only after the
//!   acknowledgements): killed while its records are on the wire, or while rewriting the
//!   file, the file still holds every entry not known to be acknowledged, and the next
//!   replay sends them.

mod common;

use std::time::Duration;

use common::{
    check_relayed, cluster, header, read_committed, relay_crash_restart, temp_path, text, within,
    Process, RelayCrash,
};
use franzy::proto::ApiKey;
use franzy::{Config, ProducerRecord};
use franzy_harness::{Action, Interceptor};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use franzy_patterns::{
    Dedup, FallbackFile, GiveUp, IdSource, IdempotentConsumer, InMemoryDedup, InMemoryOutbox,
    OutboxRelay, OutboxRow, OutboxSource, PatternError, RetryPolicy,
};

const ROWS: u64 = 12;
const BATCH: usize = 4;

fn filled_outbox() -> InMemoryOutbox {
    let outbox = InMemoryOutbox::new();
    for i in 0..ROWS {
        outbox.insert(
            "events",
            Some(format!("k{}", i % 4).into()),
            Some(format!("event-{i}").into()),
        );
    }
    outbox
}

async fn relay_crash(point: RelayCrash) {
    let cluster = cluster(&[("events", 3)]).await;
    let (relayed, outbox) = relay_crash_restart(
        &cluster,
        "events",
        3,
        BATCH,
        filled_outbox(),
        point,
        |outbox| outbox,
    )
    .await;
    check_relayed(&relayed, ROWS, BATCH as u64, point);
    assert_eq!(outbox.unsent(), 0, "every row marked after the restart");
    // Whatever was sent twice, a consumer deduplicating on `outbox-id` processes each row
    // once, in order per key.
    let mut consumer = IdempotentConsumer::new(
        InMemoryDedup::new(1000, 1 << 20),
        IdSource::Header("outbox-id".into()),
    );
    let mut processed = Vec::new();
    for record in &relayed.records {
        let outcome = consumer
            .process(record, |r| {
                processed.push(header(r, "outbox-id"));
                async { Ok::<(), String>(()) }
            })
            .await
            .expect("processed");
        assert_ne!(outcome, Dedup::ProcessedWithoutId);
    }
    processed.sort_by_key(|id| id.parse::<u64>().unwrap_or(0));
    let expected: Vec<String> = (1..=ROWS).map(|id| id.to_string()).collect();
    assert_eq!(processed, expected, "each row processed once");
}

#[tokio::test(start_paused = true)]
async fn the_relay_killed_while_claiming_rows_loses_and_repeats_nothing() {
    relay_crash(RelayCrash::InPending).await;
}

#[tokio::test(start_paused = true)]
async fn the_relay_killed_while_adding_partitions_loses_and_repeats_nothing() {
    relay_crash(RelayCrash::AddingPartitions).await;
}

#[tokio::test(start_paused = true)]
async fn the_relay_killed_with_records_in_its_transaction_loses_and_repeats_nothing() {
    relay_crash(RelayCrash::Produced).await;
}

#[tokio::test(start_paused = true)]
async fn the_relay_killed_with_its_commit_unhandled_loses_and_repeats_nothing() {
    relay_crash(RelayCrash::CommitLost).await;
}

#[tokio::test(start_paused = true)]
async fn the_relay_killed_with_its_commit_unanswered_sends_the_batch_again() {
    relay_crash(RelayCrash::CommitUnanswered).await;
}

#[tokio::test(start_paused = true)]
async fn the_relay_killed_between_the_commit_and_the_mark_sends_the_batch_again() {
    relay_crash(RelayCrash::BeforeMark).await;
}

#[tokio::test(start_paused = true)]
async fn the_relay_killed_after_the_mark_loses_and_repeats_nothing() {
    relay_crash(RelayCrash::AfterMark).await;
}

// ---------------------------------------------------------------------------------------
// The relay as a background service (`OutboxRelay::run`), stopped by dropping it.

/// An outbox whose database refuses the first `failures` claims.
struct Flaky {
    inner: InMemoryOutbox,
    failures: std::sync::atomic::AtomicUsize,
}

impl OutboxSource for Flaky {
    fn pending(
        &self,
        limit: usize,
    ) -> impl std::future::Future<Output = Result<Vec<OutboxRow>, PatternError>> + Send {
        let fail = self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        let rows = (!fail).then(|| self.inner.pending(limit));
        async move {
            match rows {
                Some(rows) => rows.await,
                None => Err(PatternError::Outbox(Arc::new(std::io::Error::other(
                    "database is locked",
                )))),
            }
        }
    }

    fn mark_sent(
        &self,
        ids: &[u64],
    ) -> impl std::future::Future<Output = Result<(), PatternError>> + Send {
        self.inner.mark_sent(ids)
    }
}

/// Waits (polling, bounded) until the outbox has nothing unsent.
async fn drained(outbox: &InMemoryOutbox) {
    within(async {
        while outbox.unsent() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn the_running_relay_retries_a_failing_database_polls_for_new_rows_and_stops_when_fenced() {
    let cluster = cluster(&[("events", 3)]).await;
    let config = Config::new(cluster.bootstrap()).transactional_id("outbox-service");
    let producer = Process::new(&cluster).producer(config.clone());
    within(producer.init_transactions()).await.expect("init");
    let outbox = Flaky {
        inner: filled_outbox(),
        failures: 2.into(),
    };
    let relay = OutboxRelay::new().batch(BATCH);
    let retry = RetryPolicy::exponential(Duration::from_millis(100)).max_attempts(5);
    let poll = Duration::from_secs(1);
    let service = async {
        drained(&outbox.inner).await;
        // Rows written while the relay idles are picked up at its next poll.
        for i in ROWS..ROWS + 3 {
            outbox.inner.insert(
                "events",
                Some(format!("k{}", i % 4).into()),
                Some(format!("event-{i}").into()),
            );
        }
        drained(&outbox.inner).await;
    };
    tokio::select! {
        () = service => {}
        result = relay.run(&producer, &outbox, poll, &retry) => panic!("the relay stopped: {result:?}"),
    }
    let rows = ROWS + 3;
    assert_eq!(
        outbox.failures.load(Ordering::SeqCst),
        0,
        "both failures retried"
    );
    assert_eq!(relay.stats().snapshot().outbox_relayed, rows);
    let records = read_committed(&cluster, "events", 3).await;
    let mut ids: Vec<u64> = records
        .iter()
        .map(|r| header(r, "outbox-id").parse().expect("id"))
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (1..=rows).collect::<Vec<_>>(), "each row once");

    // A newer relay with the same transactional id fences this one: its run ends at once
    // with the error, not retried.
    let newer = Process::new(&cluster).producer(config);
    within(newer.init_transactions()).await.expect("init");
    outbox.inner.insert("events", None, Some("late".into()));
    let error = within(relay.run(&producer, &outbox, poll, &retry))
        .await
        .expect_err("fenced");
    assert_eq!(error.attempts, 1, "{error:?}");
    assert!(matches!(error.reason, GiveUp::NotRetriable(_)), "{error:?}");
    assert_eq!(outbox.inner.unsent(), 1, "the fenced relay marked nothing");
    newer.close().await;
}

// ---------------------------------------------------------------------------------------
// The fallback file's replay.

const ENTRIES: usize = 6;

fn dead_letter(i: usize) -> ProducerRecord {
    ProducerRecord::new("orders.DLT")
        .with_key(format!("order-{i}"))
        .with_value(format!("dead-{i}"))
        .with_header("error-type", "permanent")
}

fn replay_config(bootstrap: String) -> Config {
    Config::new(bootstrap)
        .set("linger.ms", "0")
        .and_then(|c| c.set("delivery.timeout.ms", "10000"))
        .and_then(|c| c.set("request.timeout.ms", "5000"))
        .expect("valid settings")
}

async fn filled_fallback(name: &str) -> FallbackFile {
    let file = FallbackFile::new(temp_path(name));
    for i in 0..ENTRIES {
        file.append(&dead_letter(i)).await.expect("appended");
    }
    file
}

/// The values in the DLT, and how often each.
async fn dlt_values(
    cluster: &franzy_harness::Cluster,
) -> std::collections::BTreeMap<String, usize> {
    let mut values = std::collections::BTreeMap::new();
    for record in read_committed(cluster, "orders.DLT", 1).await {
        assert_eq!(header(&record, "error-type"), "permanent", "headers kept");
        *values.entry(text(record.value.as_ref())).or_insert(0) += 1;
    }
    values
}

/// Kills a replay once `action` hit its first Produce, appends one more entry, then replays
/// again with a new process: the DLT holds every entry, and the file none.
async fn replay_crash(action: Action) -> std::collections::BTreeMap<String, usize> {
    let cluster = cluster(&[("orders.DLT", 1)]).await;
    let file = filled_fallback(&format!("{action:?}.fallback")).await;
    let dead = Process::new(&cluster);
    let producer = dead.producer(replay_config(cluster.bootstrap()));
    cluster.intercept(Interceptor::new(ApiKey::Produce, action));
    let crashed = async {
        while cluster.pending_interceptors() > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    tokio::select! {
        () = crashed => {}
        report = file.replay(&producer) => panic!("the replay finished: {report:?}"),
    }
    dead.kill();
    drop(producer);
    cluster.clear_interceptors();
    let (entries, tail) = file.entries().await.expect("readable");
    assert_eq!(
        (entries.len(), tail),
        (ENTRIES, 0),
        "a replay killed before its acknowledgements removes nothing"
    );
    // The file is free again (the dead replay's lock went with it): appends go on.
    file.append(&dead_letter(ENTRIES)).await.expect("appended");

    let alive = Process::new(&cluster);
    let producer = alive.producer(replay_config(cluster.bootstrap()));
    let report = within(file.replay(&producer)).await.expect("replayed");
    assert_eq!(
        (report.replayed, report.remaining, report.unreadable_bytes),
        (ENTRIES + 1, 0, 0)
    );
    producer.close().await;
    assert_eq!(file.entries().await.expect("readable").0.len(), 0);
    let values = dlt_values(&cluster).await;
    for i in 0..=ENTRIES {
        assert!(
            values.get(&format!("dead-{i}")).copied().unwrap_or(0) >= 1,
            "dead-{i} lost: {values:?}"
        );
    }
    assert_eq!(values.len(), ENTRIES + 1, "nothing else: {values:?}");
    values
}

#[tokio::test(start_paused = true)]
async fn a_replay_killed_before_its_records_reach_the_dlt_sends_each_once_after_the_restart() {
    let values = replay_crash(Action::NeverAnswer).await;
    assert!(values.values().all(|&n| n == 1), "{values:?}");
}

#[tokio::test(start_paused = true)]
async fn a_replay_killed_with_its_records_written_but_unacknowledged_sends_them_again() {
    let values = replay_crash(Action::Delay(Duration::from_secs(3600))).await;
    // The records of the answered-too-late Produce are there twice (at least once), the
    // entry appended after the crash once.
    let twice = values.values().filter(|&&n| n == 2).count();
    assert!(twice >= 1, "the written records are sent again: {values:?}");
    assert!(values.values().all(|&n| n <= 2), "{values:?}");
    assert_eq!(values.get(&format!("dead-{ENTRIES}")), Some(&1));
}

#[tokio::test(start_paused = true)]
async fn a_replay_killed_while_rewriting_the_file_leaves_the_old_file_whole() {
    let cluster = cluster(&[("orders.DLT", 1)]).await;
    let file = filled_fallback("torn-rewrite.fallback").await;
    // What a replay killed in the middle of its rewrite leaves: the original file whole,
    // and a torn temporary file beside it (never renamed over the original).
    let mut temp = file.path().as_os_str().to_owned();
    temp.push(".replay-tmp");
    let torn = franzy_patterns::fallback::encode_entry(&dead_letter(99));
    std::fs::write(&temp, &torn[..torn.len() / 2]).expect("torn temp file");
    let (entries, tail) = file.entries().await.expect("readable");
    assert_eq!((entries.len(), tail), (ENTRIES, 0));
    // The next replay sends each entry once, and its rewrite replaces the torn file.
    let producer = Process::new(&cluster).producer(replay_config(cluster.bootstrap()));
    let report = within(file.replay(&producer)).await.expect("replayed");
    assert_eq!((report.replayed, report.remaining), (ENTRIES, 0));
    producer.close().await;
    assert!(
        !std::path::Path::new(&temp).exists(),
        "renamed over the file"
    );
    assert_eq!(file.entries().await.expect("readable"), (Vec::new(), 0));
    let values = dlt_values(&cluster).await;
    assert_eq!(values.len(), ENTRIES);
    assert!(values.values().all(|&n| n == 1), "{values:?}");
}
