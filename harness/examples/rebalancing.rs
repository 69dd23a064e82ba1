//! The rebalancing lab (the training material's "observe rebalancing" exercise), as a
//! program that checks itself: a 6-partition topic with records flowing in, consumers of
//! one group going from 2 to 3 and back to 2, each committing what it processed when
//! partitions are revoked. Every record must be processed; duplicates are allowed only
//! within the at-least-once window the run reports (records processed after the last
//! commit that succeeded before their partition moved). Runs once with eager (range) and
//! once with cooperative-sticky assignment, printing every revocation.
//!
//! ```sh
//! cargo run --release --example rebalancing
//! ```
//!
//! Without arguments it starts an embedded 3-broker harness; `--bootstrap HOST:PORT[,...]`
//! runs against an existing cluster (topic `orders` with 6 partitions; CI runs it against
//! librdkafka's mock cluster, tests/interop/group_vs_mock.sh). Exits non-zero on loss.
//!
//! `--group-protocol consumer` (or `GROUP_PROTOCOL=consumer`) runs the same lab with the
//! KIP-848 protocol: the one config change `group.protocol=consumer`, the broker assigning
//! with each of its assignors in turn (`group.remote.assignor`: `uniform`, then `range`;
//! `STRATEGIES` overrides), incrementally.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use franzy::consumer::{CallbackFuture, ConsumerHandle, RebalanceListener};
use franzy::{
    Config, Consumer, GroupProtocol, OffsetReset, Producer, ProducerRecord, TopicPartition,
};
use franzy_harness::Cluster;

const TOPIC: &str = "orders";
const PARTITIONS: i32 = 6;
/// Records produced per second while the run lasts.
const RATE: u64 = 200;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("rebalancing failed: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut protocol = std::env::var("GROUP_PROTOCOL").unwrap_or_else(|_| "classic".into());
    if let Some(at) = args.iter().position(|a| a == "--group-protocol") {
        if at + 1 >= args.len() {
            return Err("--group-protocol takes classic or consumer".into());
        }
        protocol = args.remove(at + 1);
        args.remove(at);
    }
    let kip848 = match protocol.to_ascii_lowercase().as_str() {
        "classic" => false,
        "consumer" => true,
        other => return Err(format!("unknown group protocol {other:?}")),
    };
    let (cluster, bootstrap) = match args.as_slice() {
        [] => {
            let cluster = Cluster::builder()
                .brokers(3)
                .topic(TOPIC, PARTITIONS)
                // KIP-848 members heartbeat at the broker's interval (Kafka's default 5 s).
                .consumer_group_heartbeat_interval(Duration::from_secs(1))
                .consumer_group_session_timeout(Duration::from_secs(6))
                .build()
                .await
                .map_err(|e| e.to_string())?;
            println!("harness: 3 brokers at {}", cluster.bootstrap());
            let bootstrap = cluster.bootstrap();
            (Some(cluster), bootstrap)
        }
        [flag, bootstrap] if flag == "--bootstrap" => {
            println!("external cluster at {bootstrap}");
            (None, bootstrap.clone())
        }
        _ => return Err(
            "usage: rebalancing [--bootstrap HOST:PORT[,...]] [--group-protocol classic|consumer]"
                .into(),
        ),
    };
    let mut failed = Vec::new();
    let default = if kip848 {
        "uniform,range"
    } else {
        "range,cooperative-sticky"
    };
    let strategies = std::env::var("STRATEGIES").unwrap_or_else(|_| default.into());
    for (round, strategy) in strategies.split(',').enumerate() {
        let report = lab(&bootstrap, strategy, round, kip848).await?;
        println!("{report}");
        if !report.passed() {
            failed.push(strategy);
        }
    }
    if let Some(cluster) = cluster {
        cluster.shutdown().await;
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("records were lost with {failed:?}"))
    }
}

/// What the consumers of one run did, shared by their tasks and listeners.
#[derive(Default)]
struct Stats {
    /// How many times each record (by its value, a sequence number) was processed.
    processed: HashMap<u64, u32>,
    /// Records processed since the last successful commit, per partition.
    uncommitted: HashMap<TopicPartition, u64>,
    /// Records that may be processed again: processed after the last commit that
    /// succeeded before their partition was revoked or lost.
    window: u64,
    revocations: Vec<String>,
}

fn lock(stats: &Mutex<Stats>) -> MutexGuard<'_, Stats> {
    stats.lock().unwrap_or_else(|p| p.into_inner())
}

struct Listener {
    name: String,
    stats: Arc<Mutex<Stats>>,
}

impl RebalanceListener for Listener {
    fn on_partitions_revoked(
        &self,
        consumer: ConsumerHandle,
        partitions: Vec<TopicPartition>,
    ) -> CallbackFuture {
        let (name, stats) = (self.name.clone(), self.stats.clone());
        Box::pin(async move {
            // Commit what was processed before the partitions go.
            let committed = consumer.commit().await;
            let assigned = consumer.assignment();
            let mut stats = lock(&stats);
            let list: Vec<i32> = partitions.iter().map(|tp| tp.partition).collect();
            stats.revocations.push(format!(
                "{name} revoked {list:?} (commit {})",
                match &committed {
                    Ok(()) => "ok".to_string(),
                    Err(error) => format!("failed: {error}"),
                }
            ));
            for tp in &partitions {
                let pending = stats.uncommitted.remove(tp).unwrap_or(0);
                if committed.is_err() {
                    stats.window += pending;
                }
            }
            if committed.is_ok() {
                for tp in &assigned {
                    stats.uncommitted.remove(tp);
                }
            }
        })
    }

    fn on_partitions_assigned(
        &self,
        consumer: ConsumerHandle,
        partitions: Vec<TopicPartition>,
    ) -> CallbackFuture {
        let (name, stats) = (self.name.clone(), self.stats.clone());
        Box::pin(async move {
            let list: Vec<i32> = partitions.iter().map(|tp| tp.partition).collect();
            let all: Vec<i32> = consumer
                .assignment()
                .iter()
                .map(|tp| tp.partition)
                .collect();
            let generation = consumer
                .consumer_group_metadata()
                .map_or(-1, |m| m.generation_id);
            lock(&stats).revocations.push(format!(
                "{name} assigned {list:?}, owns {all:?} (generation {generation})"
            ));
        })
    }

    fn on_partitions_lost(
        &self,
        _consumer: ConsumerHandle,
        partitions: Vec<TopicPartition>,
    ) -> CallbackFuture {
        let (name, stats) = (self.name.clone(), self.stats.clone());
        Box::pin(async move {
            let mut stats = lock(&stats);
            stats
                .revocations
                .push(format!("{name} lost {partitions:?}"));
            for tp in &partitions {
                let pending = stats.uncommitted.remove(tp).unwrap_or(0);
                stats.window += pending;
            }
        })
    }
}

struct Report {
    strategy: String,
    produced: u64,
    distinct: u64,
    duplicates: u64,
    window: u64,
    revocations: Vec<String>,
}

impl Report {
    fn passed(&self) -> bool {
        self.distinct == self.produced && self.duplicates <= self.window
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "== {} ==", self.strategy)?;
        for revocation in &self.revocations {
            writeln!(f, "  {revocation}")?;
        }
        write!(
            f,
            "  produced {}, processed {} distinct, {} duplicates (at-least-once window {}), \
             {} lost: {}",
            self.produced,
            self.distinct,
            self.duplicates,
            self.window,
            self.produced - self.distinct.min(self.produced),
            if self.passed() { "ok" } else { "FAILED" }
        )
    }
}

/// One run: records flowing, consumers 2 -> 3 -> 2.
/// `kip848`: `group.protocol=consumer`, `strategy` naming the broker's assignor.
async fn lab(
    bootstrap: &str,
    strategy: &str,
    round: usize,
    kip848: bool,
) -> Result<Report, String> {
    let group = format!("rebalancing-{strategy}-{}-{round}", std::process::id());
    let stats: Arc<Mutex<Stats>> = Arc::default();
    let producer = Producer::new(Config::new(bootstrap).linger(Duration::from_millis(5)))
        .map_err(|e| e.to_string())?;
    // Sequence numbers continue across rounds so that each round's are its own.
    let first = round as u64 * 1_000_000;
    let produced = Arc::new(Mutex::new(Vec::new()));
    let flowing = {
        let produced = produced.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_millis(1000 / RATE));
            let mut next = first;
            let stop = tokio::time::Instant::now() + Duration::from_secs(24);
            while tokio::time::Instant::now() < stop {
                interval.tick().await;
                let record = ProducerRecord::new(TOPIC)
                    .with_key(format!("key-{}", next % 97))
                    .with_value(next.to_string());
                match producer.send(record).await {
                    Ok(delivery) => {
                        if let Ok(mut produced) = produced.lock() {
                            produced.push((next, delivery));
                        }
                    }
                    Err(error) => eprintln!("produce failed: {error}"),
                }
                next += 1;
            }
            producer.flush().await;
            producer
        })
    };
    let start = |name: &str| -> Result<(Arc<Consumer>, tokio::task::JoinHandle<()>), String> {
        let config = Config::new(bootstrap)
            .client_id(name.to_string())
            .group_id(group.clone())
            .enable_auto_commit(false)
            .auto_offset_reset(OffsetReset::Earliest);
        let config = if kip848 {
            // The one change: the broker decides sessions, heartbeats and the assignment.
            config
                .group_protocol(GroupProtocol::Consumer)
                .group_remote_assignor(strategy)
        } else {
            config
                .session_timeout(Duration::from_secs(6))
                .heartbeat_interval(Duration::from_millis(500))
                .partition_assignment_strategy([strategy])
                .map_err(|e| e.to_string())?
        };
        let listener = Listener {
            name: name.to_string(),
            stats: stats.clone(),
        };
        let consumer = Arc::new(
            Consumer::builder(config)
                .rebalance_listener(listener)
                .build()
                .map_err(|e| e.to_string())?,
        );
        consumer.subscribe([TOPIC]).map_err(|e| e.to_string())?;
        let task = tokio::spawn(process(consumer.clone(), stats.clone()));
        Ok((consumer, task))
    };
    println!("{strategy}: consumers 1 and 2 join");
    let mut consumers = vec![start("consumer-1")?, start("consumer-2")?];
    tokio::time::sleep(Duration::from_secs(8)).await;
    println!("{strategy}: consumer 3 joins");
    consumers.push(start("consumer-3")?);
    tokio::time::sleep(Duration::from_secs(8)).await;
    println!("{strategy}: consumer 2 leaves");
    let (leaving, task) = consumers.remove(1);
    leaving.close().await;
    task.abort();
    let producer = flowing.await.map_err(|e| e.to_string())?;
    producer.close().await;
    let mut sent = BTreeSet::new();
    let deliveries = std::mem::take(&mut *produced.lock().map_err(|e| e.to_string())?);
    for (value, delivery) in deliveries {
        if delivery.await.is_ok() {
            sent.insert(value);
        }
    }
    // Until every record was processed, or two minutes (a broker may hold a rebalance for
    // up to a session timeout per membership change).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while tokio::time::Instant::now() < deadline {
        let missing = {
            let stats = lock(&stats);
            sent.iter()
                .filter(|v| !stats.processed.contains_key(v))
                .count()
        };
        if missing == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (consumer, task) in consumers {
        consumer.close().await;
        task.abort();
    }
    let stats = lock(&stats);
    let missing: Vec<&u64> = sent
        .iter()
        .filter(|v| !stats.processed.contains_key(v))
        .take(10)
        .collect();
    if !missing.is_empty() {
        eprintln!("{strategy}: never processed, among others: {missing:?}");
    }
    let counts: BTreeMap<u64, u32> = sent
        .iter()
        .map(|v| (*v, stats.processed.get(v).copied().unwrap_or(0)))
        .collect();
    Ok(Report {
        strategy: if kip848 {
            format!("group.protocol=consumer, group.remote.assignor={strategy}")
        } else {
            strategy.to_string()
        },
        produced: sent.len() as u64,
        distinct: counts.values().filter(|c| **c > 0).count() as u64,
        duplicates: counts
            .values()
            .map(|c| u64::from(c.saturating_sub(1)))
            .sum(),
        window: stats.window,
        revocations: stats.revocations.clone(),
    })
}

/// A consumer's loop: process (count) each record; commit every 100 records.
async fn process(consumer: Arc<Consumer>, stats: Arc<Mutex<Stats>>) {
    let mut since_commit = 0;
    loop {
        match consumer.recv().await {
            Ok(Some(record)) => {
                let Some(value) = record
                    .value
                    .as_deref()
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .and_then(|v| v.parse::<u64>().ok())
                else {
                    continue;
                };
                {
                    let mut stats = lock(&stats);
                    *stats.processed.entry(value).or_default() += 1;
                    let tp = TopicPartition::new(record.topic.to_string(), record.partition);
                    *stats.uncommitted.entry(tp).or_default() += 1;
                }
                since_commit += 1;
                if since_commit >= 100 {
                    since_commit = 0;
                    let assigned = consumer.assignment();
                    if consumer.commit().await.is_ok() {
                        let mut stats = lock(&stats);
                        for tp in &assigned {
                            stats.uncommitted.remove(tp);
                        }
                    }
                }
            }
            Ok(None) => return,
            Err(error) => eprintln!("consumer: {error}"),
        }
    }
}
