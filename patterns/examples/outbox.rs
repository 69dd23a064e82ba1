//! The outbox lab: an order service writes each order and its `order-accepted` event in one
//! database transaction (one order's transaction is rolled back: no event for it), and
//! the outbox relay produces the events to `orders.events` in Kafka transactions, marking
//! the rows only after each commit. The first transaction is made to fail (the embedded
//! harness refuses its records): it is aborted and its rows stay pending until the next
//! try. A `read_committed` reader then sees every accepted order's event exactly once, in
//! order per order key, each with its `outbox-id`; no row is left unsent.
//!
//! The outbox is a SQLite database (a temporary file) when the `sqlite` feature is on, an
//! in-memory one otherwise:
//!
//! ```sh
//! cargo run -p franzy-patterns --example outbox
//! cargo run -p franzy-patterns --features sqlite --example outbox
//! cargo run -p franzy-patterns --example outbox -- -b HOST:PORT  # topic orders.events
//! ```
//!
//! Exits non-zero, naming the failed check.

#[path = "common/mod.rs"]
mod common;
use common::within;

use std::collections::{BTreeMap, HashSet};
use std::process::ExitCode;

use franzy::proto::{ApiKey, ErrorCode};
use franzy::{Config, Consumer, ConsumerEvent, Offset, Producer, TopicPartition};
use franzy_harness::{Action, Cluster, Interceptor};
use franzy_patterns::{OutboxRelay, WallClock};

const ORDERS: usize = 20;
const CUSTOMERS: usize = 5;
const BATCH: usize = 6;
const PARTITIONS: i32 = 3;
const TOPIC: &str = "orders.events";

#[tokio::main]
async fn main() -> ExitCode {
    common::finish("outbox", run().await)
}

fn text(bytes: Option<&[u8]>) -> String {
    String::from_utf8_lossy(bytes.unwrap_or_default()).into_owned()
}

/// The order service's database: orders and their outbox, in SQLite.
#[cfg(feature = "sqlite")]
mod store {
    use franzy_patterns::outbox::sqlite::enqueue;
    use franzy_patterns::rusqlite::Connection;
    use franzy_patterns::SqliteOutbox;

    pub struct Store {
        pub outbox: SqliteOutbox,
        app: Connection,
        path: std::path::PathBuf,
    }

    impl Store {
        pub fn open(run_id: &str) -> Result<Self, String> {
            let path = std::env::temp_dir().join(format!("franzy-outbox-lab-{run_id}.db"));
            let outbox = SqliteOutbox::open(&path)
                .map_err(|e| format!("{e}: {:?}", std::error::Error::source(&e)))?
                .relay_name(format!("outbox-lab-{run_id}"));
            let app = Connection::open(&path).map_err(|e| e.to_string())?;
            app.execute_batch(
                "CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, customer TEXT NOT NULL)",
            )
            .map_err(|e| e.to_string())?;
            println!("outbox: SQLite at {}", path.display());
            Ok(Self { outbox, app, path })
        }

        /// Stores the order and its event in one transaction, committed or rolled back.
        pub fn place_order(
            &mut self,
            order: &str,
            customer: &str,
            event: &str,
            commit: bool,
        ) -> Result<(), String> {
            let tx = self.app.transaction().map_err(|e| e.to_string())?;
            tx.execute(
                "INSERT INTO orders (id, customer) VALUES (?1, ?2)",
                [order, customer],
            )
            .map_err(|e| e.to_string())?;
            enqueue(
                &tx,
                self.outbox.table(),
                super::TOPIC,
                Some(customer.as_bytes()),
                Some(event.as_bytes()),
                &[],
            )
            .map_err(|e| e.to_string())?;
            if commit { tx.commit() } else { tx.rollback() }.map_err(|e| e.to_string())
        }

        pub fn unsent(&self) -> Result<u64, String> {
            self.outbox.unsent().map_err(|e| e.to_string())
        }

        pub fn remove(self) {
            drop(self.outbox);
            drop(self.app);
            for suffix in ["", "-wal", "-shm"] {
                let mut path = self.path.as_os_str().to_owned();
                path.push(suffix);
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// The order service's database: orders and their outbox, in memory (build with
/// `--features sqlite` for SQLite).
#[cfg(not(feature = "sqlite"))]
mod store {
    use franzy_patterns::InMemoryOutbox;

    pub struct Store {
        pub outbox: InMemoryOutbox,
    }

    impl Store {
        pub fn open(_run_id: &str) -> Result<Self, String> {
            println!("outbox: in memory (build with --features sqlite for SQLite)");
            Ok(Self {
                outbox: InMemoryOutbox::new(),
            })
        }

        /// "Stores" the order and its event: a rolled-back transaction writes neither.
        pub fn place_order(
            &mut self,
            _order: &str,
            customer: &str,
            event: &str,
            commit: bool,
        ) -> Result<(), String> {
            if commit {
                self.outbox.insert(
                    super::TOPIC,
                    Some(customer.to_string().into()),
                    Some(event.to_string().into()),
                );
            }
            Ok(())
        }

        pub fn unsent(&self) -> Result<u64, String> {
            Ok(self.outbox.unsent() as u64)
        }

        pub fn remove(self) {}
    }
}

async fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cluster, bootstrap) = match args.as_slice() {
        [] => {
            let cluster = Cluster::builder()
                .brokers(3)
                .topic(TOPIC, PARTITIONS)
                .build()
                .await
                .map_err(|e| e.to_string())?;
            let bootstrap = cluster.bootstrap();
            println!("embedded cluster at {bootstrap}");
            (Some(cluster), bootstrap)
        }
        [flag, bootstrap] if flag == "-b" || flag == "--bootstrap" => (None, bootstrap.clone()),
        _ => return Err("usage: outbox [-b HOST:PORT]".into()),
    };
    let run_id = format!("{:x}", WallClock::new().now_ms());
    let mut store = store::Store::open(&run_id)?;

    // The order service: one transaction per order, order 7's rolled back.
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for i in 0..ORDERS {
        let customer = format!("customer-{}", i % CUSTOMERS);
        let event = format!("{run_id}:order-{i}:accepted");
        let commit = i != 7;
        store.place_order(&format!("{run_id}-{i}"), &customer, &event, commit)?;
        if commit {
            expected.entry(customer).or_default().push(event);
        }
    }
    let accepted = ORDERS - 1;
    println!("{accepted} orders accepted, 1 rolled back");
    if store.unsent()? != accepted as u64 {
        return Err(format!(
            "{} rows in the outbox, not {accepted}",
            store.unsent()?
        ));
    }

    let producer =
        Producer::new(Config::new(&bootstrap).transactional_id(format!("outbox-lab-{run_id}")))
            .map_err(|e| e.to_string())?;
    within("init_transactions", producer.init_transactions())
        .await?
        .map_err(|e| format!("init_transactions: {e}"))?;
    let relay = OutboxRelay::new().batch(BATCH);

    // The first transaction fails (embedded only): aborted, its rows stay pending.
    if let Some(cluster) = &cluster {
        cluster.intercept(
            Interceptor::new(ApiKey::Produce, Action::Error(ErrorCode::InvalidRecord)).times(1),
        );
        match within(
            "the failing relay",
            relay.relay_once(&producer, &store.outbox),
        )
        .await?
        {
            Ok(n) => return Err(format!("the refused transaction relayed {n} rows")),
            Err(e) => match std::error::Error::source(&e) {
                Some(cause) => println!("first transaction aborted ({e}: {cause}); rows pending"),
                None => println!("first transaction aborted ({e}); rows pending"),
            },
        }
        if store.unsent()? != accepted as u64 {
            return Err("an aborted transaction marked rows".into());
        }
    }
    let relayed = within("relay", relay.relay_all(&producer, &store.outbox))
        .await?
        .map_err(|e| format!("relay: {e}"))?;
    producer.close().await;
    println!("relayed {relayed} rows in batches of {BATCH}");
    if relayed != accepted || store.unsent()? != 0 {
        return Err(format!(
            "relayed {relayed} of {accepted}, {} left unsent",
            store.unsent()?
        ));
    }

    // A read_committed reader: every accepted order's event once, in order per customer.
    let reader = Consumer::new(
        Config::new(&bootstrap)
            .set("isolation.level", "read_committed")
            .and_then(|c| c.set("enable.partition.eof", "true"))
            .map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let tps: Vec<TopicPartition> = (0..PARTITIONS)
        .map(|p| TopicPartition::new(TOPIC, p))
        .collect();
    reader.assign(&tps).map_err(|e| e.to_string())?;
    for tp in &tps {
        reader
            .seek(tp, Offset::Beginning)
            .map_err(|e| e.to_string())?;
    }
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut ids = HashSet::new();
    let mut done = HashSet::new();
    while done.len() < tps.len() {
        match within("reading the events", reader.recv_event())
            .await?
            .map_err(|e| e.to_string())?
            .ok_or("reader closed")?
        {
            ConsumerEvent::Record(record) => {
                let value = text(record.value.as_deref());
                // Events of earlier runs against the same cluster are not this run's.
                if !value.starts_with(&format!("{run_id}:")) {
                    continue;
                }
                let id = record
                    .header("outbox-id")
                    .and_then(|h| h.value.clone())
                    .ok_or(format!("{value} has no outbox-id header"))?;
                if !ids.insert(id) {
                    return Err(format!("{value} read twice"));
                }
                seen.entry(text(record.key.as_deref()))
                    .or_default()
                    .push(value);
            }
            ConsumerEvent::PartitionEof { partition, offset }
                if reader.watermarks(&partition).map(|(_, hw)| hw) == Some(offset) =>
            {
                done.insert(partition);
            }
            _ => {}
        }
    }
    reader.close().await;
    if seen != expected {
        return Err(format!(
            "read_committed saw {seen:?}, expected {expected:?} (every event once, in order per customer)"
        ));
    }
    println!(
        "read_committed: {} events, each once, in order for each of {CUSTOMERS} customers",
        ids.len()
    );
    println!("stats: {:?}", relay.stats().snapshot());
    store.remove();
    Ok(())
}
