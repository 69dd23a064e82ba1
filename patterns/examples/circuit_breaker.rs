//! The circuit-breaker lab (Module 04's Polly breaker, on the consumer): records of
//! `payments` are handed to a downstream service that is down for the first 3 seconds.
//! Three failures in a row open the breaker; while it is open the consumer pauses its
//! partitions (it keeps polling, so its group membership lives, but fetches nothing) rather
//! than spinning on a dead service; after 1 s the breaker is half-open and lets one trial
//! call through: while the downstream is still down the trial fails and the breaker opens
//! again; once it is back the trial succeeds and the breaker closes. Every record is then
//! processed, exactly once, none dead-lettered; the lab prints the breaker's timeline.
//!
//! ```sh
//! cargo run -p franzy-patterns --example circuit_breaker
//! cargo run -p franzy-patterns --example circuit_breaker -- -b HOST:PORT   # topic payments
//! ```
//!
//! Exits non-zero, naming the failed check.

#[path = "common/mod.rs"]
mod common;
use common::within;

use std::cell::RefCell;
use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;

use franzy::{Config, Consumer, ConsumerRecord, OffsetReset, Producer, ProducerRecord};
use franzy_harness::Cluster;
use franzy_patterns::{
    BreakerState, CircuitBreaker, DeadLetterRouter, ErrorClass, Outcome, Processor, RetryPolicy,
    WallClock, WhenOpen,
};
use tokio::time::Instant;

const RECORDS: usize = 30;
const DOWN_FOR: Duration = Duration::from_secs(3);

#[tokio::main]
async fn main() -> ExitCode {
    common::finish("circuit_breaker", run().await)
}

async fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cluster, bootstrap) = match args.as_slice() {
        [] => {
            let cluster = Cluster::builder()
                .brokers(3)
                .topic("payments", 2)
                .topic("payments.DLT", 1)
                .build()
                .await
                .map_err(|e| e.to_string())?;
            let bootstrap = cluster.bootstrap();
            println!("embedded cluster at {bootstrap}");
            (Some(cluster), bootstrap)
        }
        [flag, bootstrap] if flag == "-b" || flag == "--bootstrap" => (None, bootstrap.clone()),
        _ => return Err("usage: circuit_breaker [-b HOST:PORT]".into()),
    };
    let run_id = format!("{:x}", WallClock::new().now_ms());
    let producer = Producer::new(
        Config::new(&bootstrap)
            .set("linger.ms", "0")
            .map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    for i in 0..RECORDS {
        let record = ProducerRecord::new("payments")
            .with_key(format!("payment-{i}"))
            .with_value(format!("{run_id}-{i}"));
        within("produce", producer.send_and_wait(record))
            .await?
            .map_err(|e| e.to_string())?;
    }
    println!(
        "produced {RECORDS} payments; the downstream is down for {DOWN_FOR:?} from the first call"
    );

    let consumer = Consumer::new(
        Config::new(&bootstrap)
            .group_id(format!("circuit-breaker-lab-{run_id}"))
            .auto_offset_reset(OffsetReset::Earliest)
            .enable_auto_commit(false),
    )
    .map_err(|e| e.to_string())?;
    consumer
        .subscribe(["payments"])
        .map_err(|e| e.to_string())?;
    let breaker = CircuitBreaker::config()
        .consecutive_failures(3)
        .open_for(Duration::from_secs(1))
        .half_open_trials(1)
        .build()
        .map_err(|e| e.to_string())?;
    let mut processor = Processor::new(
        RetryPolicy::fixed(Duration::from_millis(100)).max_attempts(10),
        |_: &String| ErrorClass::Transient,
        DeadLetterRouter::new(),
    )
    .circuit_breaker(breaker, WhenOpen::Pause);
    let start = Instant::now();
    let mut first_call: Option<Instant> = None;
    let processed: RefCell<HashMap<String, u32>> = RefCell::new(HashMap::new());
    let mut calls = 0u32;
    let mut handler = |record: &ConsumerRecord| {
        let first = *first_call.get_or_insert_with(Instant::now);
        let value =
            String::from_utf8_lossy(record.value.as_deref().unwrap_or_default()).into_owned();
        let down = first.elapsed() < DOWN_FOR;
        calls += 1;
        if !down && value.starts_with(&run_id) {
            *processed.borrow_mut().entry(value.clone()).or_default() += 1;
        }
        async move {
            if down {
                Err(format!("downstream unavailable for {value}"))
            } else {
                Ok(())
            }
        }
    };
    let mut deferred = 0;
    while processed.borrow().len() < RECORDS {
        let record = within("waiting for records", processor.next(&consumer))
            .await?
            .map_err(|e| e.to_string())?
            .ok_or("consumer closed")?;
        match within(
            "handling",
            processor.handle(&consumer, &producer, record, &mut handler),
        )
        .await?
        .map_err(|e| e.to_string())?
        {
            Outcome::Deferred => deferred += 1,
            Outcome::DeadLettered(routed) => {
                return Err(format!("a record was dead-lettered: {routed:?}"))
            }
            Outcome::Processed { .. } | Outcome::RetryTopic(_) => {}
        }
    }
    consumer.close().await;

    println!("breaker timeline (ms since start):");
    let timeline = processor.breaker_timeline();
    for event in timeline {
        let at = event
            .at
            .saturating_duration_since(start.into_std())
            .as_millis();
        println!(
            "  {at:>6}  {:>9} -> {}",
            event.from.as_str(),
            event.to.as_str()
        );
    }
    let opened = timeline
        .iter()
        .filter(|e| e.to == BreakerState::Open)
        .count();
    if opened == 0 {
        return Err("the breaker never opened".into());
    }
    if timeline.last().map(|e| (e.from, e.to))
        != Some((BreakerState::HalfOpen, BreakerState::Closed))
    {
        return Err("the breaker did not end closed by a half-open trial".into());
    }
    for pair in timeline.windows(2) {
        if pair[0].to == BreakerState::Open && pair[1].to != BreakerState::HalfOpen {
            return Err("an open breaker left open other than to half-open".into());
        }
    }
    if deferred == 0 || processor.stats().snapshot().deferred == 0 {
        return Err("the consumer never paused while the breaker was open".into());
    }
    if processed.borrow().values().any(|n| *n != 1) {
        return Err("a record was processed twice".into());
    }
    println!(
        "{RECORDS} payments processed once each, {calls} downstream calls, partitions paused {deferred} times, breaker opened {opened} times"
    );
    println!("stats: {:?}", processor.stats().snapshot());
    producer.close().await;
    if let Some(cluster) = cluster {
        cluster.shutdown().await;
    }
    Ok(())
}
