//! `franzy bench produce|consume`: throughput and acknowledgement latency.
//!
//! Produce: `--count` records of `--size` bytes, keyless, spread over the topic's partitions
//! in runs of one batch (as the sticky partitioner does), with the client defaults
//! (acks=all, linger 5 ms) unless `-X` says otherwise. Each partition's acknowledgements are
//! awaited in order by their own task, which is exact because a partition's records are
//! acknowledged in order. A run's futures go to that task together, stamped with the time
//! its first record was sent (one clock read and one channel message per run rather than per
//! record, so that the measurement costs little next to what it measures; the latencies it
//! reports are at most one run's send time too long). Consume: reads `--count` records from
//! the beginning; without `-b` the embedded topic is first filled by an untimed produce run.
//! With `-G GROUP` the consumer subscribes as a member of that group (which, alone in it,
//! gets every partition) instead of assigning them: the group's committed offsets, else the
//! beginning, decide where it starts, and it commits as the defaults say (automatically,
//! every 5 s). The clock starts at the first record in both modes, so the join is not in it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use franzy::consumer::{Consumer, Offset};
use franzy::producer::{DeliveryFuture, Producer, ProducerRecord};
use franzy::{OffsetReset, TopicPartition};
use tokio::sync::mpsc;

use super::{ClientArgs, Target};

/// `franzy bench` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Measure produce throughput and acknowledgement latency.
    Produce(BenchArgs),
    /// Measure consume throughput.
    Consume(BenchArgs),
    /// Measure the client's resident memory: idle, and per 1,000 assigned partitions.
    Memory(BenchArgs),
}

/// Options of `franzy bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Number of records.
    #[arg(long, default_value_t = 1_000_000)]
    pub count: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Partitions of the embedded topic (without -b).
    #[arg(long, default_value_t = 6)]
    pub partitions: i32,
    /// Produce with a transactional producer, committing every N records.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub txn_records: Option<u64>,
    /// Consume as a member of this consumer group (subscribe) instead of assigning every
    /// partition; use a fresh group to read from the beginning.
    #[arg(short = 'G', long)]
    pub group: Option<String>,
    /// Hand the client's statistics to a callback every MS milliseconds
    /// (`statistics.interval.ms`), which renders them as JSON as a librdkafka `stats_cb`
    /// would: to measure what statistics cost (BENCHMARKS.md).
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub stats_interval_ms: Option<u64>,
}

/// What the statistics callback of `--stats-interval-ms` saw: snapshots and JSON bytes.
#[derive(Debug, Default)]
struct StatsSeen {
    snapshots: std::sync::atomic::AtomicU64,
    json_bytes: std::sync::atomic::AtomicU64,
}

impl StatsSeen {
    /// A builder of `config` with `statistics.interval.ms` and a callback counting into
    /// `self`, when `--stats-interval-ms` asks for it.
    fn builder<C>(
        self: &Arc<Self>,
        config: franzy::Config,
        interval_ms: Option<u64>,
        builder: fn(franzy::Config) -> franzy::ClientBuilder<C>,
    ) -> franzy::ClientBuilder<C> {
        let Some(ms) = interval_ms else {
            return builder(config);
        };
        let seen = self.clone();
        builder(config.statistics_interval(Duration::from_millis(ms))).on_statistics(move |stats| {
            use std::sync::atomic::Ordering::Relaxed;
            let json = stats.to_json();
            seen.snapshots.fetch_add(1, Relaxed);
            seen.json_bytes.fetch_add(json.len() as u64, Relaxed);
        })
    }
}

/// The summary line of the client's own statistics (`stats()`).
fn stats_summary(stats: &franzy::Stats, seen: &StatsSeen) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let errors: u64 = stats.errors.values().sum();
    let mut line = format!(
        "client stats: {} requests ({:.0}/s), request latency p50 {} us, p99 {} us, max {} us, \
         {} retries, {} errors, {} request errors",
        stats.requests,
        stats.request_rate(),
        stats.latency_us.percentile(0.5),
        stats.latency_us.percentile(0.99),
        stats.latency_us.max(),
        stats.retries,
        errors,
        stats.request_errors,
    );
    let snapshots = seen.snapshots.load(Relaxed);
    if let Some(each) = seen.json_bytes.load(Relaxed).checked_div(snapshots) {
        line.push_str(&format!(
            "; {snapshots} snapshots to the statistics callback, {each} bytes of JSON each"
        ));
    }
    line
}

/// Runs a benchmark and prints its figures.
pub async fn run(command: BenchCommand) -> Result<(), String> {
    match command {
        BenchCommand::Produce(args) => {
            let target = Target::resolve(&args.client, args.partitions).await?;
            let report = produce(&target, &args).await?;
            println!("{report}");
            target.shutdown().await;
        }
        BenchCommand::Consume(args) => {
            let target = Target::resolve(&args.client, args.partitions).await?;
            if target.embedded.is_some() {
                produce(&target, &args).await?;
            }
            let report = consume(&target, &args).await?;
            println!("{report}");
            target.shutdown().await;
        }
        BenchCommand::Memory(args) => {
            let target = Target::resolve(&args.client, args.partitions).await?;
            let report = memory(&target, &args).await?;
            println!("{report}");
            target.shutdown().await;
        }
    }
    Ok(())
}

async fn produce(target: &Target, args: &BenchArgs) -> Result<String, String> {
    let mut config = target.config(&args.client)?;
    if args.txn_records.is_some() {
        config = config.transactional_id(format!("franzy-bench-{}", std::process::id()));
    }
    let batch_records = (config_batch_size(&config) / args.size.max(1)).max(1) as u64;
    let seen = Arc::new(StatsSeen::default());
    let producer = seen
        .builder(config, args.stats_interval_ms, Producer::builder)
        .build()
        .map_err(|e| e.to_string())?;
    if args.txn_records.is_some() {
        producer
            .init_transactions()
            .await
            .map_err(|e| format!("init_transactions: {e}"))?;
        producer
            .begin_transaction()
            .await
            .map_err(|e| format!("begin_transaction: {e}"))?;
    }
    let partitions = producer
        .partitions_for(&args.client.topic)
        .await
        .map_err(|e| e.to_string())?;
    let mut senders = Vec::new();
    let mut collectors = Vec::new();
    let per_partition = (args.count / partitions.max(1) as u64 + batch_records) as usize;
    for _ in 0..partitions {
        let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<DeliveryFuture>)>();
        senders.push(tx);
        collectors.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_partition);
            let mut failures = 0u64;
            while let Some((sent, deliveries)) = rx.recv().await {
                // Futures already resolved when the previous one was are stamped with its
                // time: a batch's records are acknowledged at the same moment.
                let mut latency = None;
                for mut delivery in deliveries {
                    let result = match std::future::poll_fn(|cx| {
                        Poll::Ready(Pin::new(&mut delivery).poll(cx))
                    })
                    .await
                    {
                        Poll::Ready(result) => {
                            latency.get_or_insert_with(|| sent.elapsed());
                            result
                        }
                        Poll::Pending => {
                            let result = delivery.await;
                            latency = Some(sent.elapsed());
                            result
                        }
                    };
                    match result {
                        Ok(_) => latencies.push(latency.unwrap_or_default()),
                        Err(_) => failures += 1,
                    }
                }
            }
            (latencies, failures)
        }));
    }
    let value = Bytes::from(vec![b'x'; args.size]);
    let topic: Arc<str> = args.client.topic.as_str().into();
    let start = Instant::now();
    let mut run: Vec<DeliveryFuture> = Vec::new();
    let mut run_started = start;
    for i in 0..args.count {
        let partition = ((i / batch_records) % partitions as u64) as usize;
        if i % batch_records == 0 {
            run_started = Instant::now();
        }
        let record = ProducerRecord::new(topic.clone())
            .with_value(value.clone())
            .with_partition(partition as i32);
        run.push(producer.send(record).await.map_err(|e| e.to_string())?);
        if let Some(n) = args.txn_records {
            if (i + 1) % n == 0 || i + 1 == args.count {
                producer
                    .commit_transaction()
                    .await
                    .map_err(|e| format!("commit_transaction: {e}"))?;
                if i + 1 < args.count {
                    producer
                        .begin_transaction()
                        .await
                        .map_err(|e| format!("begin_transaction: {e}"))?;
                }
            }
        }
        if (i + 1) % batch_records == 0 || i + 1 == args.count {
            let deliveries =
                std::mem::replace(&mut run, Vec::with_capacity(batch_records as usize));
            if senders[partition].send((run_started, deliveries)).is_err() {
                return Err("latency collector stopped".into());
            }
        }
    }
    drop(senders);
    let mut latencies = Vec::with_capacity(args.count as usize);
    let mut failures = 0;
    for collector in collectors {
        let (l, f) = collector.await.map_err(|e| e.to_string())?;
        latencies.extend(l);
        failures += f;
    }
    let elapsed = start.elapsed();
    let stats = producer.stats();
    producer.close().await;
    if failures > 0 {
        return Err(format!("{failures} records failed"));
    }
    // Percentiles by selection, not a sort: sorting a million latencies cost the process
    // more CPU (~0.1 s) than a tenth of the records it measures.
    let mut pct = |p: f64| {
        let i = ((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1));
        if latencies.is_empty() {
            return Duration::ZERO;
        }
        *latencies.select_nth_unstable(i).1
    };
    let (p50, p99, p999) = (pct(0.50), pct(0.99), pct(0.999));
    let max = latencies.iter().max().copied().unwrap_or_default();
    Ok(format!(
        "produce: {} records of {} bytes in {:.3} s: {:.0} records/s, {:.1} MB/s\n\
         ack latency: p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms\n{}",
        args.count,
        args.size,
        elapsed.as_secs_f64(),
        args.count as f64 / elapsed.as_secs_f64(),
        (args.count as f64 * args.size as f64) / elapsed.as_secs_f64() / 1e6,
        ms(p50),
        ms(p99),
        ms(p999),
        ms(max),
        stats_summary(&stats, &seen),
    ))
}

async fn consume(target: &Target, args: &BenchArgs) -> Result<String, String> {
    let mut config = target.config(&args.client)?;
    if let Some(group) = &args.group {
        config = config.group_id(group.clone());
        // Where the group has no committed offset: the beginning, unless -X says otherwise.
        let reset_given = args
            .client
            .properties
            .iter()
            .any(|p| p.trim_start().starts_with("auto.offset.reset"));
        if !reset_given {
            config = config.auto_offset_reset(OffsetReset::Earliest);
        }
    }
    let seen = Arc::new(StatsSeen::default());
    let consumer = seen
        .builder(config, args.stats_interval_ms, Consumer::builder)
        .build()
        .map_err(|e| e.to_string())?;
    if args.group.is_some() {
        consumer
            .subscribe([args.client.topic.as_str()])
            .map_err(|e| e.to_string())?;
    } else {
        let partitions = consumer
            .partitions_for(&args.client.topic)
            .await
            .map_err(|e| e.to_string())?;
        let assignment: Vec<TopicPartition> = (0..partitions as i32)
            .map(|p| TopicPartition::new(args.client.topic.clone(), p))
            .collect();
        consumer.assign(&assignment).map_err(|e| e.to_string())?;
        for tp in &assignment {
            consumer
                .seek(tp, Offset::Beginning)
                .map_err(|e| e.to_string())?;
        }
    }
    let mut received = 0u64;
    let mut bytes = 0u64;
    let mut start = None;
    while received < args.count {
        let Some(record) = consumer.recv().await.map_err(|e| e.to_string())? else {
            return Err("the consumer closed".into());
        };
        start.get_or_insert_with(Instant::now);
        received += 1;
        bytes += record.value.as_ref().map_or(0, |v| v.len() as u64);
    }
    let elapsed = start
        .map(|s| s.elapsed())
        .unwrap_or_default()
        .max(Duration::from_micros(1));
    let stats = consumer.stats();
    consumer.close().await;
    Ok(format!(
        "consume: {} records ({} value bytes) in {:.3} s: {:.0} records/s, {:.1} MB/s\n{}",
        received,
        bytes,
        elapsed.as_secs_f64(),
        received as f64 / elapsed.as_secs_f64(),
        bytes as f64 / elapsed.as_secs_f64() / 1e6,
        stats_summary(&stats, &seen),
    ))
}

/// Idle RSS (a producer and a consumer connected, nothing sent), then the growth once a
/// consumer has every partition of the topic assigned and has fetched each of them to its end
/// once (`enable.partition.eof`), scaled to 1,000 partitions. The process's own resident set
/// (`VmRSS` of /proc/self/status), so run it against a broker in another process (`-b`).
async fn memory(target: &Target, args: &BenchArgs) -> Result<String, String> {
    let before_clients = rss_kib()?;
    let producer = Producer::new(target.config(&args.client)?).map_err(|e| e.to_string())?;
    let partitions = producer
        .partitions_for(&args.client.topic)
        .await
        .map_err(|e| e.to_string())?;
    let consumer = Consumer::new(target.config(&args.client)?.enable_partition_eof(true))
        .map_err(|e| e.to_string())?;
    consumer
        .partitions_for(&args.client.topic)
        .await
        .map_err(|e| e.to_string())?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = rss_kib()?;
    let assignment: Vec<TopicPartition> = (0..partitions as i32)
        .map(|p| TopicPartition::new(args.client.topic.clone(), p))
        .collect();
    consumer.assign(&assignment).map_err(|e| e.to_string())?;
    for tp in &assignment {
        consumer
            .seek(tp, Offset::Beginning)
            .map_err(|e| e.to_string())?;
    }
    let mut at_end = std::collections::HashSet::new();
    let mut records = 0u64;
    let deadline = Instant::now() + Duration::from_secs(120);
    while at_end.len() < assignment.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = tokio::time::timeout(left, consumer.recv_event())
            .await
            .map_err(|_| {
                format!(
                    "{} of {} partitions reached their end in 120 s",
                    at_end.len(),
                    assignment.len()
                )
            })?
            .map_err(|e| e.to_string())?;
        match event {
            Some(franzy::ConsumerEvent::PartitionEof { partition, .. }) => {
                at_end.insert(partition);
            }
            Some(_) => records += 1,
            None => return Err("the consumer closed".into()),
        }
    }
    let assigned = rss_kib()?;
    consumer.close().await;
    producer.close().await;
    let per_thousand = (assigned.saturating_sub(idle)) as f64 * 1000.0 / partitions.max(1) as f64;
    Ok(format!(
        "memory: RSS {before_clients} KiB before the clients, {idle} KiB idle (a producer and a \
         consumer connected), {assigned} KiB with {partitions} partitions assigned and read to \
         their end ({records} records): {per_thousand:.0} KiB per 1,000 partitions"
    ))
}

/// The process's resident set in KiB (`VmRSS`), Linux only.
fn rss_kib() -> Result<u64, String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("cannot read /proc/self/status (Linux only): {e}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "no VmRSS in /proc/self/status".to_string())
}

fn config_batch_size(config: &franzy::Config) -> usize {
    config.batch_size_bytes()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
