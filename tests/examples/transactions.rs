//! The transactions lab, end to end, with no external broker: start an embedded 3-broker
//! harness on loopback TCP, write three transactions with franzy's transactional producer
//! (the first committed, the second aborted, the third committed), then read the topic back
//! twice: a `read_committed` consumer must see exactly the committed records, in the order
//! they were written; a `read_uncommitted` consumer every record of all three, and neither
//! a control record (the transaction markers stay invisible; their offsets are stepped over).
//!
//! ```sh
//! cargo run --release --example transactions
//! ```
//!
//! With `--bootstrap HOST:PORT[,...]` it runs against an existing cluster instead (topic
//! `ledger` with 2 partitions, empty). librdkafka's mock cluster hands aborted records to
//! read_committed readers, so the check fails there by design: the mock is not Kafka.
//!
//! Exits non-zero if any check fails, naming it.

use std::collections::BTreeMap;
use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use franzy::{Config, Consumer, ConsumerEvent, Offset, Producer, ProducerRecord, TopicPartition};
use franzy_harness::Cluster;

const TOPIC: &str = "ledger";
const PARTITIONS: i32 = 2;
/// Longest any single step may take.
const STEP: Duration = Duration::from_secs(60);

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("transactions lab failed: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn within<F: Future>(what: &str, future: F) -> Result<F::Output, String> {
    tokio::time::timeout(STEP, future)
        .await
        .map_err(|_| format!("{what} took longer than {STEP:?}"))
}

/// The three transactions: (commit?, records as (partition, value)).
fn transactions() -> Vec<(bool, Vec<(i32, String)>)> {
    [(true, "first"), (false, "second"), (true, "third")]
        .into_iter()
        .map(|(commit, name)| {
            let records = (0..6)
                .map(|i| (i % PARTITIONS, format!("{name}-{i}")))
                .collect();
            (commit, records)
        })
        .collect()
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
            println!("harness: 3 brokers at {}", cluster.bootstrap());
            let bootstrap = cluster.bootstrap();
            (Some(cluster), bootstrap)
        }
        [flag, bootstrap] if flag == "--bootstrap" => {
            println!("external cluster at {bootstrap}");
            (None, bootstrap.clone())
        }
        _ => return Err("usage: transactions [--bootstrap HOST:PORT[,...]]".into()),
    };

    let config = Config::new(&bootstrap)
        .client_id("transactions-lab".to_string())
        .transactional_id("transactions-lab");
    let producer = Producer::new(config).map_err(|e| e.to_string())?;
    within("init_transactions", producer.init_transactions())
        .await?
        .map_err(|e| format!("init_transactions: {e}"))?;
    let (id, epoch) = producer.producer_id().ok_or("no producer id after init")?;
    println!("producer id {id}, epoch {epoch}");
    let mut committed: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    let mut everything: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for (commit, records) in transactions() {
        within("begin_transaction", producer.begin_transaction())
            .await?
            .map_err(|e| format!("begin_transaction: {e}"))?;
        let mut deliveries = Vec::new();
        for (partition, value) in &records {
            let record = ProducerRecord::new(TOPIC)
                .with_partition(*partition)
                .with_value(value.clone());
            let delivery = within("send", producer.send(record))
                .await?
                .map_err(|e| format!("send: {e}"))?;
            deliveries.push(delivery);
        }
        for delivery in deliveries {
            within("delivery", delivery)
                .await?
                .map_err(|e| format!("delivery: {e}"))?;
        }
        for (partition, value) in &records {
            everything
                .entry(*partition)
                .or_default()
                .push(value.clone());
        }
        if commit {
            within("commit_transaction", producer.commit_transaction())
                .await?
                .map_err(|e| format!("commit_transaction: {e}"))?;
            for (partition, value) in records {
                committed.entry(partition).or_default().push(value);
            }
            println!("committed a transaction of 6 records");
        } else {
            within("abort_transaction", producer.abort_transaction())
                .await?
                .map_err(|e| format!("abort_transaction: {e}"))?;
            println!("aborted a transaction of 6 records");
        }
    }
    within("close", producer.close()).await?;

    for (isolation, expected) in [
        ("read_committed", &committed),
        ("read_uncommitted", &everything),
    ] {
        let seen = read(&bootstrap, isolation).await?;
        if &seen != expected {
            return Err(format!("{isolation} saw {seen:?}, expected {expected:?}"));
        }
        let count: usize = seen.values().map(Vec::len).sum();
        println!("{isolation}: {count} records, in order, no control record");
    }
    if let Some(cluster) = cluster {
        cluster.shutdown().await;
    }
    println!("ok");
    Ok(())
}

/// Every record of the topic with `isolation`, per partition in offset order, reading until
/// every partition's end; also checks that the position ends at the end offset.
async fn read(bootstrap: &str, isolation: &str) -> Result<BTreeMap<i32, Vec<String>>, String> {
    let config = Config::new(bootstrap)
        .client_id("transactions-lab".to_string())
        .set("isolation.level", isolation)
        .and_then(|c| c.set("enable.partition.eof", "true"))
        .map_err(|e| e.to_string())?;
    let consumer = Consumer::new(config).map_err(|e| e.to_string())?;
    let partitions: Vec<TopicPartition> = (0..PARTITIONS)
        .map(|p| TopicPartition::new(TOPIC, p))
        .collect();
    consumer.assign(&partitions).map_err(|e| e.to_string())?;
    for tp in &partitions {
        consumer
            .seek(tp, Offset::Beginning)
            .map_err(|e| e.to_string())?;
    }
    let mut seen: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
    while ends.len() < partitions.len() {
        let event = within("recv", consumer.recv_event())
            .await?
            .map_err(|e| format!("{isolation} consumer: {e}"))?
            .ok_or("consumer closed")?;
        match event {
            ConsumerEvent::Record(record) => {
                let value = record
                    .value
                    .as_deref()
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .ok_or_else(|| format!("a record without a value at {}", record.offset))?;
                if !value.contains('-') {
                    return Err(format!("{isolation}: not one of ours: {value:?}"));
                }
                seen.entry(record.partition).or_default().push(value);
            }
            ConsumerEvent::PartitionEof { partition, offset } => {
                let high_watermark = consumer.watermarks(&partition).map(|(_, hw)| hw);
                if high_watermark == Some(offset) {
                    ends.insert(partition.partition, offset);
                }
            }
            _ => {}
        }
    }
    for tp in &partitions {
        let end = ends.get(&tp.partition).copied();
        if consumer.position(tp) != end {
            return Err(format!(
                "{isolation}: position of {tp} is {:?}, not the end {end:?}",
                consumer.position(tp)
            ));
        }
    }
    consumer.close().await;
    Ok(seen)
}
