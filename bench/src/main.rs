//! `rdkafka-bench produce|consume`: librdkafka's throughput on `franzy bench`'s workload.
//!
//! ```text
//! rdkafka-bench produce -b BOOTSTRAP -t TOPIC [--count N] [--size BYTES] [-X key=value ...]
//! rdkafka-bench consume -b BOOTSTRAP -t TOPIC [--count N] [--group GROUP] [-X key=value ...]
//! ```
//!
//! Produce: `--count` keyless records of `--size` bytes ('x' repeated), spread over the
//! topic's partitions in runs of one batch (`batch.size / size` records per partition, then
//! the next partition), exactly as `franzy bench produce` does, through a `BaseProducer` with
//! a delivery callback. The clock runs from the first `send` to the last delivery report,
//! after one record per partition sent and delivered outside it (warm-up).
//! A full local queue (`QueueFull`) is waited out with `poll`, the librdkafka idiom.
//!
//! Consume: a `BaseConsumer` assigned every partition of the topic from the beginning reads
//! `--count` records; the clock starts at the first record, as in `franzy bench consume`.
//! With `--group`, the consumer instead subscribes to the topic as the only member of that
//! (fresh) group, which assigns it every partition; it starts at the beginning
//! (`auto.offset.reset=earliest`) and commits automatically every 5 s, as franzy's group
//! consumer does by default (`franzy bench consume -G`). The join is before the clock.
//!
//! The settings both benchmarks share by default are those of franzy's defaults; `-X` passes
//! anything else to librdkafka unchanged. The output lines have the same shape as
//! `franzy bench`'s.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

/// Producer settings equal to franzy's defaults (client/src/config.rs), by their librdkafka
/// names: acks=all, linger 5 ms, 16 KiB batches, 5 requests in flight per connection,
/// idempotence, and a 32 MiB buffer of records not yet delivered (franzy's `buffer.memory`;
/// librdkafka bounds its queue by bytes and by count, the count is lifted so that only the
/// bytes bound).
const PRODUCER_DEFAULTS: &[(&str, &str)] = &[
    ("acks", "all"),
    ("linger.ms", "5"),
    ("batch.size", "16384"),
    ("max.in.flight.requests.per.connection", "5"),
    ("queue.buffering.max.kbytes", "32768"),
    ("queue.buffering.max.messages", "10000000"),
    ("enable.idempotence", "true"),
    ("compression.type", "none"),
];

/// Consumer settings equal to franzy's defaults: fetch.min.bytes 1, fetch wait 500 ms,
/// 50 MiB per fetch, 1 MiB per partition.
///
/// Plus one in librdkafka's favour: `queued.min.messages` at 1,000,000 instead of 100,000.
/// librdkafka 2.0.2 counts that bound over the whole consumer queue (every partition's fetch
/// queue is forwarded to it) and, once it is reached, stops fetching until its broker thread
/// wakes up by itself, up to a second later (librdkafka 2.1 added `fetch.queue.backoff.ms`
/// for this). With 100-byte records that pause dominates: ~330k records/s instead of
/// ~1.8M. franzy bounds its prefetch by bytes (`max.partition.fetch.bytes` per partition,
/// `fetch.max.bytes` per broker), which allows more than 100,000 such records. bench/run.sh
/// also measures librdkafka with its default, for the record.
const CONSUMER_DEFAULTS: &[(&str, &str)] = &[
    ("queued.min.messages", "1000000"),
    ("fetch.min.bytes", "1"),
    ("fetch.wait.max.ms", "500"),
    ("fetch.max.bytes", "52428800"),
    ("max.partition.fetch.bytes", "1048576"),
    ("enable.auto.commit", "false"),
    ("enable.partition.eof", "false"),
];

struct Args {
    command: String,
    bootstrap: String,
    topic: String,
    count: u64,
    size: usize,
    group: Option<String>,
    /// Records per transaction (`--txn-records N`): a transactional producer, committing
    /// every N records.
    txn_records: Option<u64>,
    properties: Vec<(String, String)>,
}

fn main() -> ExitCode {
    match parse_args(std::env::args().skip(1).collect()).and_then(run) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("rdkafka-bench: {message}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args(args: Vec<String>) -> Result<Args, String> {
    let usage = "usage: rdkafka-bench produce|consume -b BOOTSTRAP -t TOPIC [--count N] \
                 [--size BYTES] [--group GROUP] [--txn-records N] [-X key=value ...]";
    let mut iter = args.into_iter();
    let command = iter.next().ok_or(usage)?;
    let mut parsed = Args {
        command,
        bootstrap: String::new(),
        topic: String::new(),
        count: 1_000_000,
        size: 100,
        group: None,
        txn_records: None,
        properties: Vec::new(),
    };
    while let Some(flag) = iter.next() {
        let value = iter
            .next()
            .ok_or_else(|| format!("{flag} needs a value; {usage}"))?;
        match flag.as_str() {
            "-b" | "--bootstrap" => parsed.bootstrap = value,
            "-t" | "--topic" => parsed.topic = value,
            "--count" => {
                parsed.count = value.parse().map_err(|_| format!("bad --count {value}"))?
            }
            "--size" => parsed.size = value.parse().map_err(|_| format!("bad --size {value}"))?,
            "-G" | "--group" => parsed.group = Some(value),
            "--txn-records" => {
                let n: u64 = value
                    .parse()
                    .map_err(|_| format!("bad --txn-records {value}"))?;
                if n == 0 {
                    return Err("--txn-records must be at least 1".into());
                }
                parsed.txn_records = Some(n);
            }
            "-X" => {
                let (key, value) = value
                    .split_once('=')
                    .ok_or_else(|| format!("-X {value:?} is not KEY=VALUE"))?;
                parsed.properties.push((key.to_string(), value.to_string()));
            }
            _ => return Err(format!("unknown option {flag}; {usage}")),
        }
    }
    if parsed.bootstrap.is_empty() || parsed.topic.is_empty() {
        return Err(usage.to_string());
    }
    Ok(parsed)
}

fn run(args: Args) -> Result<String, String> {
    match args.command.as_str() {
        "produce" => produce(&args),
        "consume" => consume(&args),
        other => Err(format!("unknown command {other}: produce or consume")),
    }
}

fn config(args: &Args, defaults: &[(&str, &str)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &args.bootstrap)
        .set("client.id", "rdkafka-bench")
        .set("log_level", "4");
    for (key, value) in defaults {
        config.set(*key, *value);
    }
    for (key, value) in &args.properties {
        config.set(key, value);
    }
    config
}

/// Counts delivery reports.
#[derive(Default)]
struct Deliveries {
    delivered: AtomicU64,
    failed: AtomicU64,
}

impl ClientContext for Deliveries {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        log_to_stderr(level, fac, log_message);
    }
}

/// A consumer context that prints librdkafka's log lines (the rdkafka crate sends them to
/// the `log` crate, which has no logger here).
struct Logging;

impl ClientContext for Logging {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        log_to_stderr(level, fac, log_message);
    }
}

impl ConsumerContext for Logging {}

fn log_to_stderr(level: RDKafkaLogLevel, fac: &str, log_message: &str) {
    eprintln!("librdkafka {level:?} {fac}: {log_message}");
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.delivered.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

fn partition_count<C: ClientContext>(
    client: &rdkafka::client::Client<C>,
    topic: &str,
) -> Result<i32, String> {
    let metadata = client
        .fetch_metadata(Some(topic), Duration::from_secs(30))
        .map_err(|e| format!("metadata: {e}"))?;
    let count = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map_or(0, |t| t.partitions().len());
    if count == 0 {
        return Err(format!("topic {topic} has no partitions"));
    }
    i32::try_from(count).map_err(|_| "too many partitions".to_string())
}

fn produce(args: &Args) -> Result<String, String> {
    let mut config = config(args, PRODUCER_DEFAULTS);
    if args.txn_records.is_some() {
        config.set(
            "transactional.id",
            format!("rdkafka-bench-{}", std::process::id()),
        );
    }
    let txn_timeout = Duration::from_secs(60);
    let batch_size: usize = config
        .get("batch.size")
        .and_then(|v| v.parse().ok())
        .unwrap_or(16384);
    let batch_records = (batch_size / args.size.max(1)).max(1) as u64;
    let producer: BaseProducer<Deliveries> = config
        .create_with_context(Deliveries::default())
        .map_err(|e| format!("cannot create the producer: {e}"))?;
    let partitions = partition_count(producer.client(), &args.topic)?;
    let value = vec![b'x'; args.size];
    if args.txn_records.is_some() {
        producer
            .init_transactions(txn_timeout)
            .map_err(|e| format!("init_transactions: {e}"))?;
        producer
            .begin_transaction()
            .map_err(|e| format!("begin_transaction: {e}"))?;
    }
    // One record per partition first, outside the clock: librdkafka 2.10+ may wait for its
    // 500 ms producer-id retry timer when no learned broker is up yet as it asks for its
    // idempotent producer id (seen against both brokers, depending on timing), which is
    // not throughput. The records count in neither the time nor the rate.
    for partition in 0..partitions {
        let record = BaseRecord::<(), [u8]>::to(&args.topic)
            .payload(&value[..])
            .partition(partition);
        producer
            .send(record)
            .map_err(|(error, _)| format!("send: {error}"))?;
    }
    if args.txn_records.is_some() {
        producer
            .commit_transaction(txn_timeout)
            .map_err(|e| format!("commit_transaction: {e}"))?;
    } else {
        producer
            .flush(Duration::from_secs(60))
            .map_err(|e| format!("flush: {e}"))?;
    }
    let warm_up = producer.context().delivered.load(Ordering::Relaxed);
    let start = Instant::now();
    if args.txn_records.is_some() {
        producer
            .begin_transaction()
            .map_err(|e| format!("begin_transaction: {e}"))?;
    }
    for i in 0..args.count {
        let partition = ((i / batch_records) % partitions as u64) as i32;
        let mut record = BaseRecord::<(), [u8]>::to(&args.topic)
            .payload(&value[..])
            .partition(partition);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(1));
                }
                Err((error, _)) => return Err(format!("send: {error}")),
            }
        }
        if i % 1024 == 0 {
            producer.poll(Duration::ZERO);
        }
        if let Some(n) = args.txn_records {
            if (i + 1) % n == 0 || i + 1 == args.count {
                producer
                    .commit_transaction(txn_timeout)
                    .map_err(|e| format!("commit_transaction: {e}"))?;
                if i + 1 < args.count {
                    producer
                        .begin_transaction()
                        .map_err(|e| format!("begin_transaction: {e}"))?;
                }
            }
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .map_err(|e| format!("flush: {e}"))?;
    let elapsed = start.elapsed();
    let context = producer.context();
    let delivered = context.delivered.load(Ordering::Relaxed) - warm_up;
    let failed = context.failed.load(Ordering::Relaxed);
    if failed > 0 || delivered != args.count {
        return Err(format!(
            "{delivered} of {} records delivered, {failed} failed",
            args.count
        ));
    }
    Ok(format!(
        "produce: {} records of {} bytes in {:.3} s: {:.0} records/s, {:.1} MB/s",
        args.count,
        args.size,
        elapsed.as_secs_f64(),
        args.count as f64 / elapsed.as_secs_f64(),
        (args.count as f64 * args.size as f64) / elapsed.as_secs_f64() / 1e6,
    ))
}

fn consume(args: &Args) -> Result<String, String> {
    let mut config = config(args, CONSUMER_DEFAULTS);
    if let Some(group) = &args.group {
        // A group member, with franzy's (and Java's) defaults: auto commit every 5 s.
        config
            .set("group.id", group)
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "5000");
        for (key, value) in &args.properties {
            config.set(key, value);
        }
    } else if config.get("group.id").is_none() {
        // librdkafka wants a group id for a consumer handle; with assign() and no commits
        // no group request is ever needed.
        config.set("group.id", "rdkafka-bench");
    }
    let consumer: BaseConsumer<Logging> = config
        .create_with_context(Logging)
        .map_err(|e| format!("cannot create the consumer: {e}"))?;
    if args.group.is_some() {
        consumer
            .subscribe(&[args.topic.as_str()])
            .map_err(|e| format!("subscribe: {e}"))?;
    } else {
        let partitions = partition_count(consumer.client(), &args.topic)?;
        let mut assignment = TopicPartitionList::new();
        for partition in 0..partitions {
            assignment
                .add_partition_offset(&args.topic, partition, Offset::Beginning)
                .map_err(|e| format!("assign: {e}"))?;
        }
        consumer
            .assign(&assignment)
            .map_err(|e| format!("assign: {e}"))?;
    }
    let mut received = 0u64;
    let mut bytes = 0u64;
    let mut start = None;
    let deadline = Instant::now()
        + Duration::from_secs(
            std::env::var("RDKAFKA_BENCH_TIMEOUT")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(300),
        );
    while received < args.count {
        if Instant::now() > deadline {
            return Err(format!("only {received} records in time"));
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                start.get_or_insert_with(Instant::now);
                received += 1;
                bytes += message.payload().map_or(0, |v| v.len() as u64);
            }
            Some(Err(error)) => return Err(format!("consume: {error}")),
            None => {}
        }
    }
    let elapsed = start
        .map(|s| s.elapsed())
        .unwrap_or_default()
        .max(Duration::from_micros(1));
    Ok(format!(
        "consume: {} records ({} value bytes) in {:.3} s: {:.0} records/s, {:.1} MB/s",
        received,
        bytes,
        elapsed.as_secs_f64(),
        received as f64 / elapsed.as_secs_f64(),
        bytes as f64 / elapsed.as_secs_f64() / 1e6,
    ))
}
