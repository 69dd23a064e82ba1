//! The main job, end to end, with no external broker: start an embedded 3-broker harness on
//! loopback TCP, produce 100,000 keyed records with headers to a 6-partition topic with the
//! franzy producer, consume them back with the franzy consumer, and check every one.
//!
//! ```sh
//! cargo run --release --example quickstart
//! ```
//!
//! With `--bootstrap HOST:PORT[,...]` it runs the same job against an existing cluster
//! instead (whose topic `orders` must have 6 partitions and start empty), which is how CI
//! runs franzy against librdkafka's mock cluster (tests/interop/client_vs_mock.sh).
//!
//! Exits non-zero if any record is missing, duplicated, altered or on the wrong partition.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use franzy::partitioner::partition_for_key;
use franzy::{Config, Consumer, ConsumerRecord, Offset, Producer, ProducerRecord, TopicPartition};
use franzy_harness::Cluster;

const TOPIC: &str = "orders";
const PARTITIONS: i32 = 6;
const RECORDS: usize = 100_000;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("quickstart failed: {message}");
            ExitCode::FAILURE
        }
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
            println!("harness: 3 brokers at {}", cluster.bootstrap());
            let bootstrap = cluster.bootstrap();
            (Some(cluster), bootstrap)
        }
        [flag, bootstrap] if flag == "--bootstrap" => {
            println!("external cluster at {bootstrap}");
            (None, bootstrap.clone())
        }
        _ => return Err("usage: quickstart [--bootstrap HOST:PORT[,...]]".into()),
    };

    let config = Config::new(&bootstrap).client_id("quickstart".to_string());
    let producer = Producer::new(config.clone()).map_err(|e| e.to_string())?;
    let partitions = producer
        .partitions_for(TOPIC)
        .await
        .map_err(|e| e.to_string())?;
    if partitions != PARTITIONS as usize {
        return Err(format!(
            "topic {TOPIC} has {partitions} partitions, not {PARTITIONS}"
        ));
    }
    let start = Instant::now();
    let mut deliveries = Vec::with_capacity(RECORDS);
    for i in 0..RECORDS {
        let record = ProducerRecord::new(TOPIC)
            .with_key(format!("customer-{}", i % 1000))
            .with_value(format!("order {i}"))
            .with_header("seq", i.to_string())
            .with_header("source", "quickstart");
        deliveries.push(producer.send(record).await.map_err(|e| e.to_string())?);
    }
    let mut offsets = HashMap::new();
    for (i, delivery) in deliveries.into_iter().enumerate() {
        let metadata = delivery.await.map_err(|e| format!("record {i}: {e}"))?;
        offsets.insert(i, (metadata.partition, metadata.offset));
    }
    let idempotence = match producer.producer_id() {
        Some((id, epoch)) => format!("idempotent: producer id {id}, epoch {epoch}"),
        None => "not idempotent".to_string(),
    };
    producer.close().await;
    let produce_time = start.elapsed();
    println!(
        "produced {RECORDS} records in {:.2} s ({:.0} records/s), acks=all, {idempotence}",
        produce_time.as_secs_f64(),
        RECORDS as f64 / produce_time.as_secs_f64()
    );

    let consumer = Consumer::new(config).map_err(|e| e.to_string())?;
    let assignment: Vec<TopicPartition> = (0..PARTITIONS)
        .map(|p| TopicPartition::new(TOPIC, p))
        .collect();
    consumer.assign(&assignment).map_err(|e| e.to_string())?;
    for tp in &assignment {
        consumer
            .seek(tp, Offset::Beginning)
            .map_err(|e| e.to_string())?;
    }
    let start = Instant::now();
    let mut seen = vec![false; RECORDS];
    let mut per_partition = [0usize; PARTITIONS as usize];
    let mut received = 0;
    while received < RECORDS {
        let record = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .map_err(|_| format!("no record for 30 s after {received} records"))?
            .map_err(|e| e.to_string())?
            .ok_or("the consumer closed")?;
        let seq: usize = header(&record, "seq")
            .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
            .ok_or_else(|| {
                format!(
                    "record at {}/{} has no seq header",
                    record.partition, record.offset
                )
            })?;
        let expected_key = format!("customer-{}", seq % 1000);
        let expected_value = format!("order {seq}");
        if seq >= RECORDS || std::mem::replace(&mut seen[seq], true) {
            return Err(format!("record {seq} is unexpected or a duplicate"));
        }
        if record.key.as_deref() != Some(expected_key.as_bytes())
            || record.value.as_deref() != Some(expected_value.as_bytes())
            || header(&record, "source") != Some(&b"quickstart"[..])
        {
            return Err(format!("record {seq} came back altered"));
        }
        if offsets.get(&seq) != Some(&(record.partition, record.offset)) {
            return Err(format!(
                "record {seq} is not where its acknowledgement said"
            ));
        }
        if record.partition != partition_for_key(expected_key.as_bytes(), PARTITIONS as u32) {
            return Err(format!(
                "key {expected_key} is not on its murmur2 partition"
            ));
        }
        per_partition[record.partition as usize] += 1;
        received += 1;
    }
    let consume_time = start.elapsed();
    consumer.close().await;
    println!(
        "consumed {received} records in {:.2} s ({:.0} records/s)",
        consume_time.as_secs_f64(),
        received as f64 / consume_time.as_secs_f64()
    );
    println!("records per partition: {per_partition:?}");
    println!("every record came back once, unaltered, on its key's partition, at its acknowledged offset");
    if let Some(cluster) = cluster {
        cluster.shutdown().await;
    }
    Ok(())
}

/// The value of the record's last header named `key`.
fn header<'a>(record: &'a ConsumerRecord, key: &str) -> Option<&'a [u8]> {
    record.header(key).and_then(|h| h.value.as_deref())
}
