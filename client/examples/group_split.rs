//! Two consumers of one group split a topic's partitions and together read every record:
//! run against any cluster (the interop suite runs it against librdkafka's mock cluster,
//! `tests/interop/group_vs_mock.sh`).
//!
//! usage: group_split BOOTSTRAP TOPIC RECORDS [STRATEGY]
//!
//! Produces RECORDS keyed records to TOPIC, then starts two members of a fresh group
//! (subscribed with STRATEGY, default `range`), reads until every record was seen, and
//! checks that the members' final assignments are disjoint, non-empty and cover the
//! topic, and that the group's committed offsets are past every record read. Exits
//! non-zero on any failure.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use franzy::{Config, Consumer, OffsetReset, Producer, ProducerRecord, TopicPartition};

type Seen = Arc<Mutex<BTreeMap<String, BTreeSet<(i32, i64)>>>>;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, bootstrap, topic, records, rest @ ..] = args.as_slice() else {
        eprintln!("usage: group_split BOOTSTRAP TOPIC RECORDS [STRATEGY]");
        std::process::exit(2);
    };
    let records: usize = records.parse()?;
    let strategy = rest.first().map_or("range", String::as_str);
    let producer = Producer::new(Config::new(bootstrap))?;
    let mut deliveries = Vec::with_capacity(records);
    for i in 0..records {
        let record = ProducerRecord::new(topic.as_str())
            .with_key(format!("key-{i}"))
            .with_value(format!("value-{i}"));
        deliveries.push(producer.send(record).await?);
    }
    // What this run wrote (the topic may hold records of earlier runs).
    let mut expected: BTreeSet<(i32, i64)> = BTreeSet::new();
    for delivery in deliveries {
        let written = delivery.await?;
        expected.insert((written.partition, written.offset));
    }
    producer.close().await;
    let partitions = Consumer::new(Config::new(bootstrap))?
        .partitions_for(topic)
        .await?;
    println!("group-split: produced {records} records to {topic} ({partitions} partitions)");

    let group = format!("group-split-{}", std::process::id());
    let seen: Seen = Arc::default();
    let mut members = Vec::new();
    for name in ["member-a", "member-b"] {
        let config = Config::new(bootstrap)
            .group_id(group.clone())
            .auto_offset_reset(OffsetReset::Earliest)
            .session_timeout(Duration::from_secs(10))
            .heartbeat_interval(Duration::from_millis(500))
            .auto_commit_interval(Duration::from_millis(500))
            .client_id(name)
            .partition_assignment_strategy([strategy])?;
        let consumer = Arc::new(Consumer::new(config)?);
        consumer.subscribe([topic.as_str()])?;
        let task = tokio::spawn(read(consumer.clone(), name.to_string(), seen.clone()));
        members.push((name, consumer, task));
    }
    let total = |seen: &Seen| {
        seen.lock()
            .map(|s| s.values().map(BTreeSet::len).sum::<usize>())
            .unwrap_or(0)
    };
    let missing = |seen: &Seen| {
        let seen: BTreeSet<(i32, i64)> = seen
            .lock()
            .map(|s| s.values().flatten().copied().collect())
            .unwrap_or_default();
        expected.difference(&seen).count()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut balanced = false;
    while tokio::time::Instant::now() < deadline {
        let assignments: Vec<Vec<TopicPartition>> = members
            .iter()
            .map(|(_, c, _)| c.handle().assignment())
            .collect();
        balanced = assignments.iter().all(|a| !a.is_empty())
            && assignments.iter().map(Vec::len).sum::<usize>() == partitions;
        if missing(&seen) == 0 && balanced {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut failures = Vec::new();
    let mut union: BTreeSet<TopicPartition> = BTreeSet::new();
    for (name, consumer, _) in &members {
        let assignment = consumer.handle().assignment();
        println!("group-split: {name} owns {assignment:?}");
        for tp in &assignment {
            if !union.insert(tp.clone()) {
                failures.push(format!("{tp} assigned to both members"));
            }
        }
    }
    if !balanced || union.len() != partitions {
        failures.push(format!(
            "the members own {} of {partitions} partitions",
            union.len()
        ));
    }
    let missed = missing(&seen);
    println!(
        "group-split: read {} records; {missed} of the {records} produced missing",
        total(&seen)
    );
    if missed != 0 {
        failures.push(format!("{missed} of {records} records never read"));
    }
    // Commit what was read, then check the group's offsets reach the end.
    for (_, consumer, _) in &members {
        if let Err(error) = consumer.commit().await {
            failures.push(format!("commit failed: {error}"));
        }
    }
    let all: Vec<TopicPartition> = (0..partitions as i32)
        .map(|p| TopicPartition::new(topic.as_str(), p))
        .collect();
    let committed = members[0].1.committed(&all).await?;
    for (partition, offset) in expected.iter().rev() {
        let tp = TopicPartition::new(topic.as_str(), *partition);
        let at = committed
            .get(&tp)
            .cloned()
            .flatten()
            .map_or(-1, |o| o.offset);
        if at <= *offset {
            failures.push(format!(
                "{tp}: committed {at}, not past the last record read ({offset})"
            ));
        }
    }
    println!("group-split: committed {committed:?}");
    for (_, consumer, task) in members {
        consumer.close().await;
        task.abort();
    }
    if failures.is_empty() {
        println!("group-split: ok");
        Ok(())
    } else {
        for failure in &failures {
            eprintln!("group-split: FAIL: {failure}");
        }
        std::process::exit(1);
    }
}

async fn read(consumer: Arc<Consumer>, name: String, seen: Seen) {
    loop {
        match consumer.recv().await {
            Ok(Some(record)) => {
                if let Ok(mut seen) = seen.lock() {
                    seen.entry(name.clone())
                        .or_default()
                        .insert((record.partition, record.offset));
                }
            }
            Ok(None) => return,
            Err(error) => eprintln!("group-split: {name}: {error}"),
        }
    }
}
