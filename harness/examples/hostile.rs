//! Hostile requests against an embedded harness, measured: how long each takes to answer, how
//! long a Metadata request to another broker waits meanwhile, and how much the process grows.
//!
//! ```sh
//! cargo run --release -p franzy-harness --example hostile            # every case
//! cargo run --release -p franzy-harness --example hostile -- produce  # cases whose name contains "produce"
//! ```
//!
//! The cluster is `franzy serve --brokers 3 --topic orders:6` in this process, reached over
//! loopback TCP with raw frames; the brokers have a tokio runtime of their own (two threads),
//! as they would in their own process. A probe, on a thread and runtime of its own, sends
//! Metadata v1 requests to broker 1, one after the other (1 ms apart), for the whole run;
//! each case reports the longest round trip the probe saw from when the case's requests
//! were built until it was answered (the hostile requests go to broker 0). Memory is the
//! growth of this process's resident set (`VmRSS` in /proc/self/status) across the case,
//! client side included.
//!
//! The numbers are recorded in BENCHMARKS.md ("Hostile requests").

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use franzy::proto::batch_header::compute_crc;
use franzy::proto::frame::FrameDecoder;
use franzy::proto::message::{decode_response, encode_request};
use franzy::proto::{ApiKey, RequestHeader, RequestKind, StrBytes};
use franzy_harness::Cluster;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiVersionsRequest, FetchRequest, MetadataRequest, ProduceRequest, TopicName,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOPIC: &str = "orders";

fn main() -> Result<(), String> {
    // The brokers get a runtime of their own, as `franzy serve` would in its own process:
    // a broker that blocks its threads must not also stop the clients that measure it.
    let brokers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let cluster = brokers
        .block_on(Cluster::builder().brokers(3).topic(TOPIC, 6).build())
        .map_err(|e| e.to_string())?;
    let clients = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let result = clients.block_on(run(&cluster));
    drop(cluster);
    clients.shutdown_background();
    brokers.shutdown_background();
    result
}

async fn run(cluster: &Cluster) -> Result<(), String> {
    let filter = std::env::args().nth(1).unwrap_or_default();
    let target = address(cluster, 0)?;
    let probe = Probe::start(address(cluster, 1)?)?;
    println!("harness: 3 brokers at {}", cluster.bootstrap());
    println!();
    println!("| case | request | answered in | probe max latency | RSS growth |");
    println!("|---|---|---|---|---|");
    let cases: Vec<(&str, Case)> = vec![
        ("produce 50,000 partition entries", Case::Produce(50_000)),
        ("produce 100,000 partition entries", Case::Produce(100_000)),
        ("produce 200,000 partition entries", Case::Produce(200_000)),
        (
            "produce 200,000 topic entries",
            Case::ProduceTopics(200_000),
        ),
        ("fetch 200,000 partition entries", Case::Fetch(200_000)),
        (
            "metadata auto-creating 20,000 topics",
            Case::Metadata(20_000),
        ),
        (
            "metadata auto-creating 100,000 topics",
            Case::Metadata(100_000),
        ),
        ("produce 90 gzip bombs of 1 GiB", Case::Bombs(90)),
        (
            "produce x5, 200,000 entries of a 249-char topic",
            Case::LongNames(5),
        ),
        (
            "ten frames of 100 MiB stopped at 95 MiB",
            Case::HalfFrames(10),
        ),
        ("2,000 idle connections", Case::Idle(2_000)),
    ];
    for (name, case) in cases {
        if !name.contains(filter.as_str()) {
            continue;
        }
        let rss_before = rss_kib();
        let outcome = case.run(cluster, target, &probe).await?;
        let latency = probe.max_latency();
        let grown = rss_kib().saturating_sub(rss_before);
        KEEP.lock().map_err(|e| e.to_string())?.clear();
        let answered = match outcome.answered {
            Some(true) => format!("{:.3} s", outcome.elapsed.as_secs_f64()),
            Some(false) => format!("not answered ({:.1} s)", outcome.elapsed.as_secs_f64()),
            None => "-".to_string(),
        };
        println!(
            "| {name} | {} | {answered} | {:.1} ms | {} |",
            human_bytes(outcome.request_bytes),
            latency.as_secs_f64() * 1000.0,
            human_bytes(grown as usize * 1024),
        );
        let _ = std::io::stdout().flush();
    }
    probe.stop();
    Ok(())
}

enum Case {
    /// One Produce v3 with this many distinct partition indices of `orders`, null records.
    Produce(i32),
    /// One Produce v3 with this many topic entries of distinct names, one null entry each.
    ProduceTopics(usize),
    /// One Fetch v12 with this many distinct partition indices of `orders`.
    Fetch(i32),
    /// One Metadata v1 naming this many topics that do not exist (auto-creation is on).
    Metadata(usize),
    /// One Produce v3 with this many topic entries, each a gzip batch of 1 GiB of zeros.
    Bombs(usize),
    /// This many Produce v3 requests of 200,000 entries for one 249-character topic.
    LongNames(usize),
    /// This many connections that send 95 MiB of a 100 MiB frame, then nothing.
    HalfFrames(usize),
    /// This many connections that ask ApiVersions once, then idle; then each asks again.
    Idle(usize),
}

struct Outcome {
    request_bytes: usize,
    /// Whether every request was answered; `None` where no answer is expected.
    answered: Option<bool>,
    /// From the first byte sent to the last answer.
    elapsed: Duration,
}

impl Case {
    /// Builds the requests, then (from `probe.reset()`) sends them.
    async fn run(
        &self,
        cluster: &Cluster,
        target: SocketAddr,
        probe: &Probe,
    ) -> Result<Outcome, String> {
        match *self {
            Case::Produce(n) => {
                let request = produce(vec![(
                    TOPIC.to_string(),
                    (0..n).map(|i| (i, None)).collect(),
                )]);
                one_request(target, &frame(ApiKey::Produce, 3, &request)?, probe).await
            }
            Case::ProduceTopics(n) => {
                let topics = (0..n).map(|i| (format!("t{i}"), vec![(0, None)])).collect();
                one_request(target, &frame(ApiKey::Produce, 3, &produce(topics))?, probe).await
            }
            Case::Fetch(n) => {
                let partitions = (0..n)
                    .map(|i| {
                        FetchPartition::default()
                            .with_partition(i)
                            .with_partition_max_bytes(1 << 20)
                    })
                    .collect();
                let request = RequestKind::Fetch(
                    FetchRequest::default()
                        .with_replica_id((-1).into())
                        .with_max_bytes(50 << 20)
                        .with_session_epoch(-1)
                        .with_topics(vec![FetchTopic::default()
                            .with_topic(TopicName(StrBytes::from_static_str(TOPIC)))
                            .with_partitions(partitions)]),
                );
                one_request(target, &frame(ApiKey::Fetch, 12, &request)?, probe).await
            }
            Case::Metadata(n) => {
                let run = RUN.fetch_add(1, Ordering::Relaxed);
                let topics = (0..n)
                    .map(|i| {
                        MetadataRequestTopic::default().with_name(Some(TopicName(
                            StrBytes::from_string(format!("new-{run}-{i}")),
                        )))
                    })
                    .collect();
                let request =
                    RequestKind::Metadata(MetadataRequest::default().with_topics(Some(topics)));
                one_request(target, &frame(ApiKey::Metadata, 1, &request)?, probe).await
            }
            Case::Bombs(n) => {
                let leader = cluster.with_state(|s| s.partition(TOPIC, 0).map(|p| p.leader()));
                let leader = leader.ok_or("orders/0 has no leader")?;
                let bomb = gzip_bomb(1 << 30);
                let topics = (0..n)
                    .map(|_| (TOPIC.to_string(), vec![(0, Some(bomb.clone()))]))
                    .collect();
                let frame = frame(ApiKey::Produce, 3, &produce(topics))?;
                one_request(address(cluster, leader)?, &frame, probe).await
            }
            Case::LongNames(requests) => {
                let name = "x".repeat(249);
                let request = produce(vec![(name, (0..200_000).map(|i| (i, None)).collect())]);
                let frame = frame(ApiKey::Produce, 3, &request)?;
                let mut conn = Conn::open(target).await?;
                probe.reset();
                let started = Instant::now();
                let mut answered = true;
                for _ in 0..requests {
                    answered &= conn.round_trip(&frame).await.is_ok();
                }
                Ok(Outcome {
                    request_bytes: frame.len() * requests,
                    answered: Some(answered),
                    elapsed: started.elapsed(),
                })
            }
            Case::HalfFrames(n) => {
                probe.reset();
                let started = Instant::now();
                for _ in 0..n {
                    let mut stream = TcpStream::connect(target)
                        .await
                        .map_err(|e| e.to_string())?;
                    // Written from a task: once the broker stops reading, writes block.
                    let writer = tokio::spawn(async move {
                        let chunk = vec![0u8; 1 << 20];
                        let prefix = (100 * 1024 * 1024i32).to_be_bytes();
                        if stream.write_all(&prefix).await.is_ok() {
                            for _ in 0..95 {
                                if stream.write_all(&chunk).await.is_err() {
                                    break;
                                }
                            }
                        }
                        // Keep the socket open until the task is aborted.
                        std::future::pending::<()>().await;
                    });
                    KEEP.lock()
                        .map_err(|e| e.to_string())?
                        .push(Box::new(AbortOnDrop(writer)));
                }
                // Give the broker time to read whatever it will read.
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok(Outcome {
                    request_bytes: 95 * (1 << 20) * n,
                    answered: None,
                    elapsed: started.elapsed(),
                })
            }
            Case::Idle(n) => {
                let request = RequestKind::ApiVersions(ApiVersionsRequest::default());
                let frame = frame(ApiKey::ApiVersions, 0, &request)?;
                probe.reset();
                let started = Instant::now();
                let mut conns = Vec::with_capacity(n);
                for _ in 0..n {
                    let mut conn = Conn::open(target).await?;
                    conn.round_trip(&frame).await?;
                    conns.push(conn);
                }
                let mut answered = true;
                for conn in &mut conns {
                    answered &= conn.round_trip(&frame).await.is_ok();
                }
                let elapsed = started.elapsed();
                KEEP.lock()
                    .map_err(|e| e.to_string())?
                    .push(Box::new(conns));
                Ok(Outcome {
                    request_bytes: frame.len() * n * 2,
                    answered: Some(answered),
                    elapsed,
                })
            }
        }
    }
}

/// Sends one request on a new connection and waits for its answer.
async fn one_request(target: SocketAddr, frame: &[u8], probe: &Probe) -> Result<Outcome, String> {
    let mut conn = Conn::open(target).await?;
    probe.reset();
    let started = Instant::now();
    let answered = conn.round_trip(frame).await.is_ok();
    Ok(Outcome {
        request_bytes: frame.len(),
        answered: Some(answered),
        elapsed: started.elapsed(),
    })
}

/// Whatever a case keeps open until its memory has been measured.
static KEEP: std::sync::Mutex<Vec<Box<dyn std::any::Any + Send>>> =
    std::sync::Mutex::new(Vec::new());

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Distinguishes the topic names of repeated runs.
static RUN: AtomicU64 = AtomicU64::new(0);

type Entries = Vec<(i32, Option<Bytes>)>;

fn produce(topics: Vec<(String, Entries)>) -> RequestKind {
    let topic_data = topics
        .into_iter()
        .map(|(name, entries)| {
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(name)))
                .with_partition_data(
                    entries
                        .into_iter()
                        .map(|(index, records)| {
                            PartitionProduceData::default()
                                .with_index(index)
                                .with_records(records)
                        })
                        .collect(),
                )
        })
        .collect();
    RequestKind::Produce(
        ProduceRequest::default()
            .with_acks(1)
            .with_timeout_ms(30_000)
            .with_topic_data(topic_data),
    )
}

fn frame(api: ApiKey, version: i16, body: &RequestKind) -> Result<Bytes, String> {
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("hostile")));
    let mut out = BytesMut::new();
    encode_request(&mut out, &header, body).map_err(|e| e.to_string())?;
    Ok(out.freeze())
}

/// A record batch (magic 2, gzip) whose records section is `inflated` zero bytes, compressed:
/// about 1 KB per MB.
fn gzip_bomb(inflated: usize) -> Bytes {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    let mut left = inflated;
    while left > 0 {
        let n = left.min(zeros.len());
        encoder.write_all(&zeros[..n]).expect("writing to a Vec");
        left -= n;
    }
    let records = encoder.finish().expect("writing to a Vec");
    let mut batch = BytesMut::with_capacity(61 + records.len());
    batch.put_i64(0); // base offset
    batch.put_i32((49 + records.len()) as i32); // batch length: bytes after this field
    batch.put_i32(-1); // partition leader epoch
    batch.put_i8(2); // magic
    batch.put_u32(0); // crc, below
    batch.put_i16(1); // attributes: gzip
    batch.put_i32(0); // last offset delta
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    batch.put_i64(now);
    batch.put_i64(now);
    batch.put_i64(-1); // producer id
    batch.put_i16(-1);
    batch.put_i32(-1);
    batch.put_i32(1); // record count
    batch.put_slice(&records);
    let crc = compute_crc(&batch);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch.freeze()
}

fn address(cluster: &Cluster, broker: i32) -> Result<SocketAddr, String> {
    cluster
        .broker_address(broker)
        .ok_or_else(|| format!("broker {broker} has no TCP address"))
}

/// A raw connection: whole frames out, whole frames in.
struct Conn {
    stream: TcpStream,
    buf: BytesMut,
}

impl Conn {
    async fn open(address: SocketAddr) -> Result<Self, String> {
        let stream = TcpStream::connect(address)
            .await
            .map_err(|e| e.to_string())?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        Ok(Self {
            stream,
            buf: BytesMut::new(),
        })
    }

    /// Sends a framed request and waits up to ten minutes for the response frame.
    async fn round_trip(&mut self, frame: &[u8]) -> Result<Bytes, String> {
        self.stream
            .write_all(frame)
            .await
            .map_err(|e| e.to_string())?;
        let decoder = FrameDecoder::new(1 << 30);
        tokio::time::timeout(Duration::from_secs(600), async {
            loop {
                if let Some(frame) = decoder.decode(&mut self.buf).map_err(|e| e.to_string())? {
                    return Ok(frame);
                }
                let n = self
                    .stream
                    .read_buf(&mut self.buf)
                    .await
                    .map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err("connection closed".to_string());
                }
            }
        })
        .await
        .map_err(|_| "no answer in ten minutes".to_string())?
    }
}

/// Metadata requests to another broker, back to back, keeping the longest round trip.
struct Probe {
    longest_micros: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Probe {
    /// Starts the probe on a thread and runtime of its own, so that nothing the clients do
    /// delays it: what it measures is the brokers.
    fn start(address: SocketAddr) -> Result<Self, String> {
        let request = RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default()
                .with_name(Some(TopicName(StrBytes::from_static_str(TOPIC)))),
        ])));
        let frame = frame(ApiKey::Metadata, 1, &request)?;
        let longest_micros = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (longest, stopped) = (longest_micros.clone(), stop.clone());
        let (ready_tx, ready) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return;
                }
            };
            runtime.block_on(async move {
                let mut conn = match Conn::open(address).await {
                    Ok(conn) => conn,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let first = conn.round_trip(&frame).await.and_then(|first| {
                    decode_response(first, ApiKey::Metadata, 1).map_err(|e| e.to_string())
                });
                let _ = ready_tx.send(first.map(|_| ()));
                while !stopped.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    if conn.round_trip(&frame).await.is_err() {
                        return;
                    }
                    let micros = started.elapsed().as_micros() as u64;
                    longest.fetch_max(micros, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            });
        });
        ready.recv().map_err(|e| e.to_string())??;
        Ok(Self {
            longest_micros,
            stop,
        })
    }

    fn reset(&self) {
        self.longest_micros.store(0, Ordering::Relaxed);
    }

    fn max_latency(&self) -> Duration {
        Duration::from_micros(self.longest_micros.load(Ordering::Relaxed))
    }

    fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// This process's resident set, in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn human_bytes(n: usize) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.2} GB", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1} MB", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1} KB", n / 1e3)
    } else {
        format!("{n} B")
    }
}
