//! The SQLite outbox (feature `sqlite`) relayed to the embedded harness: rows written in the
//! application's transactions, relayed in order per aggregate key, marked, read once under
//! read_committed; two relays sharing the database; and the relay killed at each step of a
//! batch, the database reopened and the relay restarted.
//!
//! `cargo test -p franzy-patterns --features sqlite`

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::{
    check_relayed, cluster, header, read_committed, relay_crash_restart, temp_path, text, within,
    Process, RelayCrash,
};
use franzy::{Config, Header};
use franzy_patterns::outbox::sqlite::enqueue;
use franzy_patterns::rusqlite::Connection;
use franzy_patterns::{IdSource, IdempotentConsumer, OutboxRelay, SqliteDedup, SqliteOutbox};

const ROWS: u64 = 12;
const BATCH: usize = 4;
const RELAY: &str = "outbox-relay";

/// A fresh database holding an `orders` table and the outbox, and `rows` rows added by
/// the application in its own transactions (ids 1..=rows, keys `k0`..`k{keys-1}` in turn);
/// a transaction rolled back between them leaves no row.
fn database(name: &str, rows: u64, keys: u64) -> PathBuf {
    let path = temp_path(name);
    for suffix in ["-wal", "-shm"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        let _ = std::fs::remove_file(side);
    }
    drop(SqliteOutbox::open(&path).expect("outbox created"));
    let mut app = Connection::open(&path).expect("the application's connection");
    app.execute_batch("CREATE TABLE orders (id INTEGER PRIMARY KEY, status TEXT NOT NULL)")
        .expect("orders table");
    for i in 0..rows {
        for commit in [i != 3, true] {
            let tx = app.transaction().expect("begin");
            tx.execute("INSERT INTO orders (status) VALUES ('accepted')", [])
                .expect("the business change");
            enqueue(
                &tx,
                "outbox",
                "events",
                Some(format!("k{}", i % keys).as_bytes()),
                Some(format!("event-{i}").as_bytes()),
                &[Header::new("event-type", "order-accepted")],
            )
            .expect("its event");
            if commit {
                tx.commit().expect("commit");
                break;
            }
            tx.rollback().expect("rollback");
        }
    }
    path
}

fn outbox(path: &PathBuf) -> SqliteOutbox {
    SqliteOutbox::open(path).expect("open").relay_name(RELAY)
}

#[tokio::test(start_paused = true)]
async fn rows_are_relayed_in_order_per_key_marked_and_read_once_under_read_committed() {
    let cluster = cluster(&[("events", 3)]).await;
    let path = database("relay.db", ROWS, 4);
    let outbox = outbox(&path);
    assert_eq!(outbox.unsent().expect("count"), ROWS);
    let producer =
        Process::new(&cluster).producer(Config::new(cluster.bootstrap()).transactional_id(RELAY));
    within(producer.init_transactions()).await.expect("init");
    let relay = OutboxRelay::new().batch(BATCH);
    assert_eq!(
        within(relay.relay_all(&producer, &outbox))
            .await
            .expect("relayed"),
        ROWS as usize
    );
    assert_eq!(relay.stats().snapshot().outbox_relayed, ROWS);
    assert_eq!(outbox.unsent().expect("count"), 0);
    for id in 1..=ROWS {
        assert_eq!(outbox.is_relayed(id).expect("row"), Some(true), "row {id}");
    }
    // Nothing more to send.
    assert_eq!(
        within(relay.relay_all(&producer, &outbox))
            .await
            .expect("idle"),
        0
    );
    producer.close().await;

    let records = read_committed(&cluster, "events", 3).await;
    let mut by_key: BTreeMap<String, Vec<(u64, String)>> = BTreeMap::new();
    for record in &records {
        assert_eq!(
            header(record, "event-type"),
            "order-accepted",
            "headers kept"
        );
        let id: u64 = header(record, "outbox-id").parse().expect("outbox id");
        by_key
            .entry(text(record.key.as_ref()))
            .or_default()
            .push((id, text(record.value.as_ref())));
    }
    assert_eq!(records.len() as u64, ROWS, "each row once: {by_key:?}");
    for k in 0..4u64 {
        let expected: Vec<(u64, String)> = (0..ROWS)
            .filter(|i| i % 4 == k)
            .map(|i| (i + 1, format!("event-{i}")))
            .collect();
        assert_eq!(by_key[&format!("k{k}")], expected, "key k{k} in order");
    }
    let check = common::Relayed {
        counts: (1..=ROWS).map(|id| (id, 1)).collect(),
        records,
    };
    check_relayed(&check, ROWS, BATCH as u64, RelayCrash::AfterMark);
}

#[tokio::test(start_paused = true)]
async fn two_relays_sharing_the_database_split_the_rows_and_keep_each_keys_order() {
    let cluster = cluster(&[("events", 3)]).await;
    let rows = 32;
    let path = database("two-relays.db", rows, 8);
    let relays: Vec<_> = ["relay-a", "relay-b"]
        .into_iter()
        .map(|name| {
            let producer = Process::new(&cluster)
                .producer(Config::new(cluster.bootstrap()).transactional_id(name));
            (
                SqliteOutbox::open(&path).expect("open").relay_name(name),
                producer,
            )
        })
        .collect();
    for (_, producer) in &relays {
        within(producer.init_transactions()).await.expect("init");
    }
    let relay = OutboxRelay::new().batch(BATCH);
    let mut rounds = 0;
    let mut sent = [0usize; 2];
    while relays[0].0.unsent().expect("count") > 0 {
        rounds += 1;
        assert!(rounds <= 50, "the relays stopped making progress");
        let (a, b) = tokio::join!(
            relay.relay_once(&relays[0].1, &relays[0].0),
            relay.relay_once(&relays[1].1, &relays[1].0),
        );
        sent[0] += a.expect("relay a");
        sent[1] += b.expect("relay b");
    }
    assert!(sent[0] > 0 && sent[1] > 0, "both relays worked: {sent:?}");
    assert_eq!(sent[0] + sent[1], rows as usize, "no row claimed twice");
    for (_, producer) in &relays {
        producer.close().await;
    }
    let records = read_committed(&cluster, "events", 3).await;
    let mut counts = BTreeMap::new();
    for record in &records {
        *counts
            .entry(header(record, "outbox-id").parse::<u64>().expect("id"))
            .or_insert(0) += 1;
    }
    // Every row once; per key, one partition and id order (check_relayed's second half).
    check_relayed(
        &common::Relayed { counts, records },
        rows,
        BATCH as u64,
        RelayCrash::AfterMark,
    );
}

async fn relay_crash(point: RelayCrash) {
    let cluster = cluster(&[("events", 3)]).await;
    let name = format!("{point:?}.db");
    let path = database(&name, ROWS, 4);
    let (relayed, outbox) =
        relay_crash_restart(&cluster, "events", 3, BATCH, outbox(&path), point, |dead| {
            // The dead process's connection goes; the restarted one opens the file anew.
            drop(dead);
            outbox(&path)
        })
        .await;
    check_relayed(&relayed, ROWS, BATCH as u64, point);
    assert_eq!(outbox.unsent().expect("count"), 0, "every row marked");
    for id in 1..=ROWS {
        assert_eq!(outbox.is_relayed(id).expect("row"), Some(true), "row {id}");
    }
    // A consumer remembering processed ids in SQLite (a database of its own) processes each
    // row once, also across its own restart halfway through.
    let dedup_path = temp_path(&format!("{point:?}-dedup.db"));
    let half = relayed.records.len() / 2;
    let mut processed = Vec::new();
    for part in [&relayed.records[..half], &relayed.records[half..]] {
        let store = SqliteDedup::open(&dedup_path).expect("dedup store");
        let mut consumer = IdempotentConsumer::new(store, IdSource::Header("outbox-id".into()));
        for record in part {
            consumer
                .process(record, |r| {
                    processed.push(header(r, "outbox-id").parse::<u64>().expect("id"));
                    async { Ok::<(), String>(()) }
                })
                .await
                .expect("processed");
        }
    }
    processed.sort_unstable();
    assert_eq!(
        processed,
        (1..=ROWS).collect::<Vec<_>>(),
        "each row processed once"
    );
}

#[tokio::test(start_paused = true)]
async fn killed_while_claiming_rows() {
    relay_crash(RelayCrash::InPending).await;
}

#[tokio::test(start_paused = true)]
async fn killed_while_adding_partitions() {
    relay_crash(RelayCrash::AddingPartitions).await;
}

#[tokio::test(start_paused = true)]
async fn killed_with_records_in_the_transaction() {
    relay_crash(RelayCrash::Produced).await;
}

#[tokio::test(start_paused = true)]
async fn killed_with_the_commit_unhandled() {
    relay_crash(RelayCrash::CommitLost).await;
}

#[tokio::test(start_paused = true)]
async fn killed_with_the_commit_unanswered() {
    relay_crash(RelayCrash::CommitUnanswered).await;
}

#[tokio::test(start_paused = true)]
async fn killed_between_the_commit_and_the_mark() {
    relay_crash(RelayCrash::BeforeMark).await;
}

#[tokio::test(start_paused = true)]
async fn killed_after_the_mark() {
    relay_crash(RelayCrash::AfterMark).await;
}
