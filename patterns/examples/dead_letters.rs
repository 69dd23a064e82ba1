//! The producer lab (LAB 1.2C of the training documents): errors classified, retries with
//! exponential backoff, a dead-letter topic whose records carry the error in headers, and a
//! local file when the dead-letter topic itself cannot be written.
//!
//! 1. The brokers go down for 4 s; the send fails (delivery timeout 3 s), is retried under
//!    the retry policy, and succeeds once they are back.
//! 2. A record for a topic that does not exist and a record too large for `orders.created`
//!    (`max.message.bytes` 10000) fail permanently: not retried, sent to `orders.dlq` with
//!    `original-topic`, `error-type`, `error-message`, `retry-count`, `failed-at`.
//!    Then the batch producer sends 10 records, two of them too large, reports each
//!    outcome, and routes the two failures to `orders.dlq`.
//! 3. The dead-letter topic becomes unwritable (the harness refuses its produce requests;
//!    with `--dlt-down`, here or against another cluster, the dead-letter producer's
//!    `max.request.size` is too small for the dead letters, so it refuses them): three
//!    more failures go to the local fallback file, fsynced. The dead-letter topic comes back
//!    and the file is replayed: every record is in `orders.dlq`, the file is empty.
//!
//! ```sh
//! cargo run -p franzy-patterns --example dead_letters
//! cargo run -p franzy-patterns --example dead_letters -- -b HOST:PORT --dlt-down
//! ```
//!
//! Against another cluster (`-b`), topics `orders.created` (with `max.message.bytes`
//! 10000) and `orders.dlq` must exist and `orders.unknown` must not; step 1 needs the
//! embedded cluster and is skipped. Exits non-zero, naming the failed check.

#[path = "common/mod.rs"]
mod common;
use common::within;

use std::collections::{BTreeSet, HashSet};
use std::process::ExitCode;
use std::time::Duration;

use franzy::proto::{ApiKey, ErrorCode};
use franzy::{
    Config, Consumer, ConsumerEvent, ConsumerRecord, Offset, Producer, ProducerRecord,
    TopicPartition,
};
use franzy_harness::{Action, Cluster, Interceptor};
use franzy_patterns::{
    send_batch, send_or_dead_letter, DeadLetterRouter, DeadLetterTopic, Delivered, FallbackFile,
    RetryPolicy, Routed, Stats, WallClock,
};

const TOPIC: &str = "orders.created";
const DLT: &str = "orders.dlq";

#[tokio::main]
async fn main() -> ExitCode {
    common::finish("dead_letters", run().await)
}

async fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut bootstrap = None;
    let mut dlt_down = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-b" | "--bootstrap" => {
                bootstrap = Some(it.next().ok_or("-b needs an address")?.clone())
            }
            "--dlt-down" => dlt_down = true,
            other => {
                return Err(format!(
                    "unknown argument {other}; usage: dead_letters [-b HOST:PORT] [--dlt-down]"
                ))
            }
        }
    }
    let cluster = match &bootstrap {
        Some(_) => None,
        None => Some(
            Cluster::builder()
                .brokers(3)
                .auto_create_topics(false)
                .topic_with_configs(
                    TOPIC,
                    1,
                    [("max.message.bytes".to_string(), "10000".to_string())].into(),
                )
                .topic(DLT, 1)
                .build()
                .await
                .map_err(|e| e.to_string())?,
        ),
    };
    let bootstrap =
        bootstrap.unwrap_or_else(|| cluster.as_ref().map(|c| c.bootstrap()).unwrap_or_default());
    println!(
        "cluster at {bootstrap}{}",
        if cluster.is_some() {
            " (embedded, 3 brokers)"
        } else {
            ""
        }
    );
    let run_id = format!("{:x}", WallClock::new().now_ms());

    let config = Config::new(&bootstrap)
        .client_id("dead-letters-lab".to_string())
        .set("delivery.timeout.ms", "3000")
        .and_then(|c| c.set("request.timeout.ms", "1000"))
        .and_then(|c| c.set("linger.ms", "0"))
        .map_err(|e| e.to_string())?;
    let producer = Producer::new(config.clone()).map_err(|e| e.to_string())?;
    let stats = Stats::new("dead-letters-lab");
    let fallback_path = std::env::temp_dir().join(format!("franzy-dead-letters-{run_id}.fallback"));
    let fallback = FallbackFile::new(&fallback_path).stats(stats.clone());
    let router = DeadLetterRouter::new()
        .topic(DeadLetterTopic::Fixed(DLT.into()))
        .fallback(fallback.clone())
        .stats(stats.clone());
    let retry = RetryPolicy::exponential(Duration::from_millis(500))
        .equal_jitter()
        .max_attempts(4)
        .seed(7);
    let clock = WallClock::new();
    let record = |value: String| {
        ProducerRecord::new(TOPIC)
            .with_key(run_id.clone())
            .with_value(value)
    };

    // 1. A broker down, then retries succeed.
    if let Some(cluster) = &cluster {
        let brokers = cluster.broker_ids();
        for id in &brokers {
            cluster.stop_broker(*id).map_err(|e| e.to_string())?;
        }
        println!("1. every broker stopped; sending with retries (they come back in 4 s)");
        let before = stats.snapshot().retried;
        let send = send_or_dead_letter(
            &producer,
            record(format!("{run_id}-during-outage")),
            &retry,
            &router,
            &clock,
        );
        let restart = async {
            tokio::time::sleep(Duration::from_secs(4)).await;
            for id in &brokers {
                cluster.start_broker(*id).await?;
            }
            Ok::<(), franzy_harness::HarnessError>(())
        };
        let (delivered, restarted) = within("send during the outage", async {
            tokio::join!(send, restart)
        })
        .await?;
        restarted.map_err(|e| e.to_string())?;
        let delivered = delivered.map_err(|e| format!("send during the outage: {e}"))?;
        match delivered {
            Delivered::Written(m) => println!(
                "   written at offset {} after {} retries",
                m.offset,
                stats.snapshot().retried - before
            ),
            other => {
                return Err(format!(
                    "the record sent during the outage was not written: {other:?}"
                ))
            }
        }
    } else {
        println!("1. (skipped: stopping a broker needs the embedded cluster)");
    }

    // 2. Permanent errors: straight to the dead-letter topic with the error headers.
    let unknown = ProducerRecord::new("orders.unknown")
        .with_key(run_id.clone())
        .with_value(format!("{run_id}-unknown-topic"));
    let too_large = record(format!("{run_id}-too-large-{}", "x".repeat(20_000)));
    for (what, rec) in [("unknown topic", unknown), ("record too large", too_large)] {
        let delivered = within(
            what,
            send_or_dead_letter(&producer, rec, &retry, &router, &clock),
        )
        .await?
        .map_err(|e| format!("{what}: {e}"))?;
        match delivered {
            Delivered::DeadLettered(Routed::DeadLetterTopic(m)) => {
                println!("2. {what}: dead-lettered to {DLT} at offset {}", m.offset)
            }
            other => {
                return Err(format!(
                    "{what}: expected the dead-letter topic, got {other:?}"
                ))
            }
        }
    }

    // 2b. The batch producer: a batch of 10, two of them too large; per-record outcomes,
    // the failures routed to the dead-letter topic.
    let batch: Vec<ProducerRecord> = (0..10)
        .map(|i| {
            let padding = if i % 5 == 2 {
                "z".repeat(20_000)
            } else {
                String::new()
            };
            record(format!("{run_id}-batch-{i}{padding}"))
        })
        .collect();
    let report = within("batch", send_batch(&producer, batch)).await?;
    let routed = within(
        "routing the batch's failures",
        report.route_failures(&producer, &router, &clock),
    )
    .await?
    .map_err(|e| format!("batch failures: {e}"))?;
    let failed: Vec<usize> = report.failures().map(|(i, _)| i).collect();
    println!(
        "2b. batch of 10: {} written, failed {failed:?}, dead-lettered {}",
        report.succeeded(),
        routed.len()
    );
    if report.succeeded() != 8 || failed != [2, 7] || routed.len() != 2 {
        return Err(format!(
            "batch: {} written, failed {failed:?}; expected 8 written and [2, 7] failed",
            report.succeeded()
        ));
    }

    // 3. The dead-letter topic unwritable: the fallback file, then the replay.
    let dlt_producer = if dlt_down {
        // Records above 1 KB are refused before they leave: the dead-letter producer cannot write.
        let crippled = config
            .clone()
            .set("max.request.size", "1024")
            .map_err(|e| e.to_string())?;
        Some(Producer::new(crippled).map_err(|e| e.to_string())?)
    } else if let Some(cluster) = &cluster {
        cluster.intercept(
            Interceptor::new(
                ApiKey::Produce,
                Action::Error(ErrorCode::TopicAuthorizationFailed),
            )
            .on_partition(DLT, 0)
            .keep(),
        );
        None
    } else {
        println!("3. (skipped: pass --dlt-down to make the dead-letter topic unwritable)");
        return finish(&bootstrap, &run_id, 4, &stats, cluster).await;
    };
    println!("3. {DLT} made unwritable");
    for i in 0..3 {
        let value = format!("{run_id}-while-dlt-down-{i}-{}", "y".repeat(12_000));
        let delivered = match &dlt_producer {
            None => send_or_dead_letter(&producer, record(value), &retry, &router, &clock).await,
            Some(dlt_producer) => {
                // The record fails on the main producer, its dead letter on the crippled one.
                let failed = producer
                    .send_and_wait(record(value))
                    .await
                    .err()
                    .ok_or("a too-large record was written")?;
                let failure = franzy_patterns::Failure::new(
                    franzy_patterns::classify_kafka(&failed.error),
                    failed.error.to_string(),
                    1,
                    clock.now(),
                )
                .with_error_type(franzy_patterns::batch::error_type(&failed.error));
                router
                    .send(
                        dlt_producer,
                        router.dead_letter_of_unsent(&failed.record, &failure),
                    )
                    .await
                    .map(Delivered::DeadLettered)
            }
        }
        .map_err(|e| format!("while the DLT is down: {e}"))?;
        if !matches!(delivered, Delivered::DeadLettered(Routed::Fallback(_))) {
            return Err(format!(
                "while the DLT is down, expected the fallback file, got {delivered:?}"
            ));
        }
    }
    let (entries, _) = fallback.entries().await.map_err(|e| e.to_string())?;
    println!(
        "   {} records in {} (fsynced)",
        entries.len(),
        fallback_path.display()
    );
    if entries.len() != 3 {
        return Err(format!(
            "the fallback file holds {} records, expected 3",
            entries.len()
        ));
    }
    if let Some(cluster) = &cluster {
        cluster.clear_interceptors();
    }
    println!("   {DLT} back; replaying");
    let report = within("replay", fallback.replay(&producer))
        .await?
        .map_err(|e| e.to_string())?;
    println!(
        "   replayed {}, remaining {}",
        report.replayed, report.remaining
    );
    if report.replayed != 3 || report.remaining != 0 {
        return Err(format!(
            "replay: {report:?}, expected 3 replayed and none remaining"
        ));
    }
    let _ = std::fs::remove_file(&fallback_path);
    producer.close().await;
    finish(&bootstrap, &run_id, 7, &stats, cluster).await
}

/// Reads the dead-letter topic back: `expected` records of this run, each with the error
/// headers.
async fn finish(
    bootstrap: &str,
    run_id: &str,
    expected: usize,
    stats: &Stats,
    cluster: Option<Cluster>,
) -> Result<(), String> {
    let letters = read_back(bootstrap, run_id).await?;
    println!("{DLT} holds {} records of this run:", letters.len());
    let mut seen = BTreeSet::new();
    for letter in &letters {
        let header = |name: &str| {
            letter
                .header(name)
                .and_then(|h| h.value.as_deref())
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .ok_or(format!(
                    "dead letter at offset {} has no {name} header",
                    letter.offset
                ))
        };
        for name in [
            "original-topic",
            "original-partition",
            "original-offset",
            "original-timestamp",
            "error-type",
            "error-message",
            "retry-count",
            "failed-at",
        ] {
            header(name)?;
        }
        let value =
            String::from_utf8_lossy(letter.value.as_deref().unwrap_or_default()).into_owned();
        let short: String = value.chars().take(40).collect();
        println!(
            "   {short}: {} from {} ({})",
            header("error-type")?,
            header("original-topic")?,
            header("error-message")?
        );
        seen.insert(value);
    }
    if seen.len() != expected {
        return Err(format!(
            "{DLT} holds {} distinct records of this run, expected {expected}",
            seen.len()
        ));
    }
    println!("stats: {:?}", stats.snapshot());
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
    let tp = TopicPartition::new(DLT, 0);
    consumer
        .assign(std::slice::from_ref(&tp))
        .map_err(|e| e.to_string())?;
    consumer
        .seek(&tp, Offset::Beginning)
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let mut done = HashSet::new();
    while done.is_empty() {
        match within("reading the DLT", consumer.recv_event())
            .await?
            .map_err(|e| e.to_string())?
        {
            Some(ConsumerEvent::Record(r)) => {
                if r.key.as_deref() == Some(run_id.as_bytes()) {
                    out.push(r)
                }
            }
            Some(ConsumerEvent::PartitionEof { partition, offset }) => {
                if consumer.watermarks(&partition).map(|(_, hw)| hw) == Some(offset) {
                    done.insert(partition);
                }
            }
            Some(_) => {}
            None => return Err("consumer closed".into()),
        }
    }
    consumer.close().await;
    Ok(out)
}
