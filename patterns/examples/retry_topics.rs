//! The consumer lab of the training documents (Module 04: DLT and retries): a consumer in a
//! group reads `orders`; each order is handled with two quick in-process attempts; one that
//! keeps failing transiently goes to `orders.retry`, where it waits 2 s (its partition
//! paused, the poll loop running) before it is tried again; one that fails permanently, or
//! still fails on the retry topic, goes to `orders.DLT` with every error header. Offsets
//! are committed only once a record is handled or safely on another topic.
//!
//! Of 20 orders: `ok` ones succeed at once, `flaky` ones fail twice and succeed on the
//! retry topic, `poison` ones fail permanently (dead-lettered at once, never retried),
//! `down` ones always fail transiently (dead-lettered after the retry topic). The lab then
//! reads `orders.DLT` back and checks every header of every dead letter.
//!
//! ```sh
//! cargo run -p franzy-patterns --example retry_topics
//! cargo run -p franzy-patterns --example retry_topics -- -b HOST:PORT
//! ```
//!
//! Against another cluster (`-b`, librdkafka's mock cluster in CI), topics `orders`,
//! `orders.retry` and `orders.DLT` must exist. Exits non-zero, naming the failed check.

#[path = "common/mod.rs"]
mod common;
use common::within;

use std::collections::{BTreeMap, HashSet};
use std::process::ExitCode;
use std::time::Duration;

use franzy::{
    Config, Consumer, ConsumerEvent, ConsumerRecord, Offset, OffsetReset, Producer, ProducerRecord,
    TopicPartition,
};
use franzy_harness::Cluster;
use franzy_patterns::{
    DeadLetterRouter, ErrorClass, Outcome, Processor, RetryPolicy, RetryTopics, WallClock,
};

const ORDERS: usize = 20;

#[tokio::main]
async fn main() -> ExitCode {
    common::finish("retry_topics", run().await)
}

fn kind(i: usize) -> &'static str {
    match i % 5 {
        1 => "flaky",
        3 => "poison",
        4 if i % 10 == 4 => "down",
        _ => "ok",
    }
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
                .topic("orders", 3)
                .topic("orders.retry", 1)
                .topic("orders.DLT", 1)
                .build()
                .await
                .map_err(|e| e.to_string())?;
            let bootstrap = cluster.bootstrap();
            println!("embedded cluster at {bootstrap}");
            (Some(cluster), bootstrap)
        }
        [flag, bootstrap] if flag == "-b" || flag == "--bootstrap" => (None, bootstrap.clone()),
        _ => return Err("usage: retry_topics [-b HOST:PORT]".into()),
    };
    let run_id = format!("{:x}", WallClock::new().now_ms());
    let producer = Producer::new(
        Config::new(&bootstrap)
            .set("linger.ms", "0")
            .map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let mut expected_dead = BTreeMap::new();
    let mut expected_ok = HashSet::new();
    for i in 0..ORDERS {
        let value = format!("{}-{i}", kind(i));
        match kind(i) {
            "poison" => {
                expected_dead.insert(value.clone(), "permanent");
            }
            "down" => {
                expected_dead.insert(value.clone(), "transient");
            }
            _ => {
                expected_ok.insert(value.clone());
            }
        }
        let record = ProducerRecord::new("orders")
            .with_key(format!("order-{i}"))
            .with_value(value)
            .with_header("run", run_id.clone());
        within("produce", producer.send_and_wait(record))
            .await?
            .map_err(|e| e.to_string())?;
    }
    println!(
        "produced {ORDERS} orders: {} to succeed (some after the retry topic), {} to be dead-lettered",
        expected_ok.len(),
        expected_dead.len()
    );

    let topics = RetryTopics::new("orders").delays(&[Duration::from_secs(2)]);
    let consumer = Consumer::new(
        Config::new(&bootstrap)
            .group_id(format!("retry-topics-lab-{run_id}"))
            .auto_offset_reset(OffsetReset::Earliest)
            .enable_auto_commit(false),
    )
    .map_err(|e| e.to_string())?;
    consumer
        .subscribe(topics.topics())
        .map_err(|e| e.to_string())?;
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
    let mut calls: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut handler = |record: &ConsumerRecord| {
        let value = text(record.value.as_deref());
        let this_run =
            record.header("run").and_then(|h| h.value.as_deref()) == Some(run_id.as_bytes());
        let seen = calls.entry(value.clone()).or_default();
        if this_run {
            seen.push(record.topic.to_string());
        }
        let n = seen.len();
        async move {
            let fails = this_run
                && (value.starts_with("poison")
                    || value.starts_with("down")
                    || (value.starts_with("flaky") && n <= 2));
            if fails {
                Err(value)
            } else {
                Ok(())
            }
        }
    };
    let mut processed = HashSet::new();
    let mut dead = HashSet::new();
    while processed.len() + dead.len() < ORDERS {
        let record = within("waiting for records", processor.next(&consumer))
            .await?
            .map_err(|e| e.to_string())?
            .ok_or("consumer closed")?;
        let this_run =
            record.header("run").and_then(|h| h.value.as_deref()) == Some(run_id.as_bytes());
        let value = text(record.value.as_deref());
        let topic = record.topic.to_string();
        let outcome = within(
            "handling",
            processor.handle(&consumer, &producer, record, &mut handler),
        )
        .await?
        .map_err(|e| e.to_string())?;
        if !this_run {
            continue;
        }
        match &outcome {
            Outcome::Processed { .. } => {
                processed.insert(value.clone());
            }
            Outcome::DeadLettered(_) => {
                dead.insert(value.clone());
            }
            Outcome::RetryTopic(_) | Outcome::Deferred => {}
        }
        if !matches!(outcome, Outcome::Deferred) {
            println!("  {value:>10} from {topic:<13} -> {outcome:?}");
        }
    }
    consumer.close().await;
    if processed != expected_ok {
        return Err(format!("processed {processed:?}, expected {expected_ok:?}"));
    }
    for (value, topics) in &calls {
        if value.starts_with("flaky") && topics.last().map(String::as_str) != Some("orders.retry") {
            return Err(format!(
                "{value} did not succeed on the retry topic: {topics:?}"
            ));
        }
        if value.starts_with("poison") && topics.len() != 1 {
            return Err(format!(
                "{value} failed permanently yet was tried {} times",
                topics.len()
            ));
        }
    }

    // Read orders.DLT back: every dead letter of this run, with every header.
    let letters = read_back(&bootstrap, &run_id).await?;
    let mut found = BTreeMap::new();
    for letter in &letters {
        let header = |name: &str| {
            letter
                .header(name)
                .and_then(|h| h.value.as_deref())
                .map(|v| text(Some(v)))
                .ok_or(format!("a dead letter has no {name} header"))
        };
        let value = text(letter.value.as_deref());
        let original_offset: i64 = header("original-offset")?
            .parse()
            .map_err(|_| "original-offset is not a number")?;
        let original_partition: i32 = header("original-partition")?
            .parse()
            .map_err(|_| "original-partition is not a number")?;
        let retry_count: u32 = header("retry-count")?
            .parse()
            .map_err(|_| "retry-count is not a number")?;
        header("original-timestamp")?
            .parse::<i64>()
            .map_err(|_| "original-timestamp is not a number")?;
        let failed_at = header("failed-at")?;
        if header("original-topic")? != "orders" || original_offset < 0 || original_partition < 0 {
            return Err(format!("{value}: wrong origin headers"));
        }
        if failed_at.len() != 24 || !failed_at.ends_with('Z') {
            return Err(format!("{value}: failed-at {failed_at} is not RFC 3339"));
        }
        if header("error-message")? != value {
            return Err(format!(
                "{value}: error-message {}",
                header("error-message")?
            ));
        }
        let class = header("error-type")?;
        let expected_count = if class == "permanent" { 1 } else { 4 };
        if retry_count != expected_count {
            return Err(format!(
                "{value}: retry-count {retry_count}, expected {expected_count}"
            ));
        }
        println!("  dead letter {value}: error-type {class}, retry-count {retry_count}, from orders/{original_partition} at {original_offset}, failed at {failed_at}");
        found.insert(value, class);
    }
    let expected: BTreeMap<String, String> = expected_dead
        .into_iter()
        .map(|(v, c)| (v, c.to_string()))
        .collect();
    if found != expected {
        return Err(format!("orders.DLT holds {found:?}, expected {expected:?}"));
    }
    println!("stats: {:?}", processor.stats().snapshot());
    producer.close().await;
    if let Some(cluster) = cluster {
        cluster.shutdown().await;
    }
    Ok(())
}

async fn read_back(bootstrap: &str, run_id: &str) -> Result<Vec<ConsumerRecord>, String> {
    let config = Config::new(bootstrap)
        .set("enable.partition.eof", "true")
        .map_err(|e| e.to_string())?;
    let consumer = Consumer::new(config).map_err(|e| e.to_string())?;
    let tp = TopicPartition::new("orders.DLT", 0);
    consumer
        .assign(std::slice::from_ref(&tp))
        .map_err(|e| e.to_string())?;
    consumer
        .seek(&tp, Offset::Beginning)
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    loop {
        match within("reading orders.DLT", consumer.recv_event())
            .await?
            .map_err(|e| e.to_string())?
        {
            Some(ConsumerEvent::Record(r)) => {
                if r.header("run").and_then(|h| h.value.as_deref()) == Some(run_id.as_bytes()) {
                    out.push(r)
                }
            }
            Some(ConsumerEvent::PartitionEof { partition, offset }) => {
                if consumer.watermarks(&partition).map(|(_, hw)| hw) == Some(offset) {
                    break;
                }
            }
            Some(_) => {}
            None => return Err("consumer closed".into()),
        }
    }
    consumer.close().await;
    Ok(out)
}
