//! The exactly-once lab: a consume-transform-produce pipeline. A consumer in a group reads
//! `payments` with `read_committed`; each batch of records is transformed and produced to
//! `payments.enriched` in a transaction that also carries the consumer's offsets
//! (`send_offsets_to_transaction`), so that the output and the progress commit together or
//! not at all. One batch is aborted on purpose (a transform that fails halfway): its
//! partitions are rewound to where the batch began and the batch is done again. A
//! `read_committed` reader of the output then sees every payment exactly once; a
//! `read_uncommitted` reader sees the aborted attempt too.
//!
//! ```sh
//! cargo run -p franzy-patterns --example exactly_once
//! cargo run -p franzy-patterns --example exactly_once -- -b HOST:PORT  # topics payments, payments.enriched
//! ```
//!
//! Exits non-zero, naming the failed check.

#[path = "common/mod.rs"]
mod common;
use common::within;

use std::collections::{BTreeMap, HashMap};
use std::process::ExitCode;

use franzy::{
    Config, Consumer, ConsumerEvent, Offset, OffsetReset, Producer, ProducerRecord, TopicPartition,
};
use franzy_harness::Cluster;
use franzy_patterns::{Counter, Stats, WallClock};

const RECORDS: usize = 40;
const BATCH: usize = 8;
const PARTITIONS: i32 = 3;

#[tokio::main]
async fn main() -> ExitCode {
    common::finish("exactly_once", run().await)
}

fn text(bytes: Option<&[u8]>) -> String {
    String::from_utf8_lossy(bytes.unwrap_or_default()).into_owned()
}

async fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cluster, bootstrap) = match args.as_slice() {
        [] => {
            let cluster = Cluster::builder()
                .brokers(3)
                .topic("payments", PARTITIONS)
                .topic("payments.enriched", PARTITIONS)
                .build()
                .await
                .map_err(|e| e.to_string())?;
            let bootstrap = cluster.bootstrap();
            println!("embedded cluster at {bootstrap}");
            (Some(cluster), bootstrap)
        }
        [flag, bootstrap] if flag == "-b" || flag == "--bootstrap" => (None, bootstrap.clone()),
        _ => return Err("usage: exactly_once [-b HOST:PORT]".into()),
    };
    let run_id = format!("{:x}", WallClock::new().now_ms());
    let stats = Stats::new("exactly-once-lab");
    let input = Producer::new(
        Config::new(&bootstrap)
            .set("linger.ms", "0")
            .map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    for i in 0..RECORDS {
        let record = ProducerRecord::new("payments")
            .with_key(format!("account-{}", i % 7))
            .with_value(format!("{run_id}:{i}"));
        within("produce", input.send_and_wait(record))
            .await?
            .map_err(|e| e.to_string())?;
    }
    input.close().await;
    println!("produced {RECORDS} payments");

    let consumer = Consumer::new(
        Config::new(&bootstrap)
            .group_id(format!("exactly-once-lab-{run_id}"))
            .auto_offset_reset(OffsetReset::Earliest)
            .enable_auto_commit(false)
            .set("isolation.level", "read_committed")
            .map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    consumer
        .subscribe(["payments"])
        .map_err(|e| e.to_string())?;
    let producer = Producer::new(
        Config::new(&bootstrap).transactional_id(format!("exactly-once-lab-{run_id}")),
    )
    .map_err(|e| e.to_string())?;
    within("init_transactions", producer.init_transactions())
        .await?
        .map_err(|e| format!("init_transactions: {e}"))?;

    let mut done = 0;
    let mut batches = 0;
    let mut aborted = 0;
    while done < RECORDS {
        // A batch: up to BATCH records (fewer at the end).
        let mut batch = Vec::new();
        while batch.len() < BATCH.min(RECORDS - done) {
            let record = within("waiting for payments", consumer.recv())
                .await?
                .map_err(|e| e.to_string())?
                .ok_or("consumer closed")?;
            batch.push(record);
        }
        let mut first: BTreeMap<TopicPartition, i64> = BTreeMap::new();
        let mut next: BTreeMap<TopicPartition, i64> = BTreeMap::new();
        for record in &batch {
            first
                .entry(record.topic_partition())
                .or_insert(record.offset);
            next.insert(record.topic_partition(), record.offset + 1);
        }
        batches += 1;
        let fail_halfway = batches == 2;
        within("begin", producer.begin_transaction())
            .await?
            .map_err(|e| e.to_string())?;
        let result: Result<(), String> = async {
            let mut deliveries: Vec<franzy::DeliveryFuture> = Vec::new();
            for (i, record) in batch.iter().enumerate() {
                if fail_halfway && i == batch.len() / 2 {
                    // What was sent of the batch is in the log, uncommitted, when it fails.
                    for delivery in deliveries {
                        delivery.await.map_err(|e| e.to_string())?;
                    }
                    return Err("transform failed halfway (on purpose)".into());
                }
                let enriched = ProducerRecord::new("payments.enriched")
                    .with_key(record.key.clone().unwrap_or_default())
                    .with_value(format!("{}:enriched", text(record.value.as_deref())));
                deliveries.push(producer.send(enriched).await.map_err(|e| e.to_string())?);
            }
            let group = consumer
                .consumer_group_metadata()
                .ok_or("no group metadata")?;
            producer
                .send_offsets_to_transaction(next.clone(), &group)
                .await
                .map_err(|e| e.to_string())?;
            producer
                .commit_transaction()
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        match result {
            Ok(()) => {
                done += batch.len();
                stats.add(Counter::Processed, batch.len() as u64);
                println!(
                    "batch {batches}: {} payments committed with their offsets",
                    batch.len()
                );
            }
            Err(reason) => {
                aborted += 1;
                within("abort", producer.abort_transaction())
                    .await?
                    .map_err(|e| e.to_string())?;
                for (tp, offset) in &first {
                    consumer
                        .seek(tp, Offset::At(*offset))
                        .map_err(|e| e.to_string())?;
                }
                stats.add(Counter::Retried, batch.len() as u64);
                println!("batch {batches}: {reason}; aborted, partitions rewound, the batch is done again");
            }
        }
    }
    consumer.close().await;
    producer.close().await;
    if aborted == 0 {
        return Err("no batch was aborted".into());
    }

    let committed = read(&bootstrap, "read_committed", &run_id).await?;
    let everything = read(&bootstrap, "read_uncommitted", &run_id).await?;
    let total: usize = committed.values().sum();
    if committed.len() != RECORDS || committed.values().any(|n| *n != 1) {
        return Err(format!(
            "read_committed saw {} distinct payments ({total} records), expected each of {RECORDS} once",
            committed.len()
        ));
    }
    let all: usize = everything.values().sum();
    if all <= total {
        return Err(format!(
            "read_uncommitted saw {all} records: the aborted attempt should show there"
        ));
    }
    println!("read_committed: each of {RECORDS} payments exactly once; read_uncommitted: {all} records (the aborted attempt included)");
    println!("stats: {:?}", stats.snapshot());
    if let Some(cluster) = cluster {
        cluster.shutdown().await;
    }
    Ok(())
}

/// Payments of this run in `payments.enriched`, counted, as a reader with `isolation` sees them.
async fn read(
    bootstrap: &str,
    isolation: &str,
    run_id: &str,
) -> Result<HashMap<String, usize>, String> {
    let config = Config::new(bootstrap)
        .set("isolation.level", isolation)
        .and_then(|c| c.set("enable.partition.eof", "true"))
        .map_err(|e| e.to_string())?;
    let consumer = Consumer::new(config).map_err(|e| e.to_string())?;
    let tps: Vec<TopicPartition> = (0..PARTITIONS)
        .map(|p| TopicPartition::new("payments.enriched", p))
        .collect();
    consumer.assign(&tps).map_err(|e| e.to_string())?;
    for tp in &tps {
        consumer
            .seek(tp, Offset::Beginning)
            .map_err(|e| e.to_string())?;
    }
    let mut counts = HashMap::new();
    let mut ended = std::collections::HashSet::new();
    while ended.len() < tps.len() {
        match within("reading the output", consumer.recv_event())
            .await?
            .map_err(|e| e.to_string())?
        {
            Some(ConsumerEvent::Record(r)) => {
                let value = text(r.value.as_deref());
                if value.starts_with(run_id) {
                    *counts.entry(value).or_insert(0) += 1;
                }
            }
            Some(ConsumerEvent::PartitionEof { partition, offset }) => {
                if consumer.watermarks(&partition).map(|(_, hw)| hw) == Some(offset) {
                    ended.insert(partition);
                }
            }
            Some(_) => {}
            None => return Err("consumer closed".into()),
        }
    }
    consumer.close().await;
    Ok(counts)
}
