//! What the crash tests share: a cluster, a connector that a "crash" cuts off, a
//! read_committed reader, and the outbox relay killed at each of its steps then restarted.
//!
//! A crash here is in-process and as abrupt as a SIGKILL for everything the cluster can
//! see: the future doing the work is dropped where it stands, and the dead process's
//! connections fail from that instant on (its producer, still alive in memory, can send
//! nothing more and opens no new connection). Its open transaction is left to the
//! coordinator, as a dead process leaves it, until the restarted relay's producer (same
//! `transactional.id`) initialises and fences it. The durable state (the outbox, the
//! fallback file) is what survives.

// Each test binary uses part of this module.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use franzy::proto::ApiKey;
use franzy::transport::{BoxedStream, ConnectFuture, Connector};
use franzy::{Config, Consumer, ConsumerEvent, ConsumerRecord, Offset, Producer, TopicPartition};
use franzy_harness::{Action, Cluster, Interceptor};
use franzy_patterns::{OutboxRelay, OutboxRow, OutboxSource, PatternError};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Longest a test waits for anything, in virtual time.
pub const BOUND: Duration = Duration::from_secs(900);

pub async fn within<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(BOUND, future)
        .await
        .expect("done within the bound")
}

pub async fn cluster(topics: &[(&str, i32)]) -> Cluster {
    let mut builder = Cluster::builder()
        .brokers(3)
        .in_memory()
        .seed(1)
        .auto_create_topics(false);
    for (topic, partitions) in topics {
        builder = builder.topic(*topic, *partitions);
    }
    builder.build().await.expect("cluster starts")
}

/// One process's connections to the cluster: [`Process::kill`] cuts them all.
#[derive(Clone)]
pub struct Process {
    inner: Arc<dyn Connector>,
    killed: Arc<AtomicBool>,
}

impl Process {
    pub fn new(cluster: &Cluster) -> Self {
        Self {
            inner: Arc::new(cluster.connector()),
            killed: Arc::new(AtomicBool::new(false)),
        }
    }

    /// From now on every read, write and connect of this process fails.
    pub fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
    }

    /// A producer of this process.
    pub fn producer(&self, config: Config) -> Producer {
        Producer::builder(config)
            .connector(Arc::new(self.clone()))
            .seed(7)
            .build()
            .expect("valid config")
    }
}

impl Connector for Process {
    fn connect<'a>(&'a self, address: &'a str) -> ConnectFuture<'a> {
        Box::pin(async move {
            if self.killed.load(Ordering::SeqCst) {
                return Err(io::Error::new(io::ErrorKind::ConnectionRefused, "killed"));
            }
            let stream = self.inner.connect(address).await?;
            Ok(Box::new(Killable {
                stream,
                killed: Arc::clone(&self.killed),
            }) as BoxedStream)
        })
    }
}

struct Killable {
    stream: BoxedStream,
    killed: Arc<AtomicBool>,
}

impl Killable {
    fn dead(&self) -> Option<io::Error> {
        self.killed
            .load(Ordering::SeqCst)
            .then(|| io::Error::new(io::ErrorKind::BrokenPipe, "killed"))
    }
}

impl AsyncRead for Killable {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(error) = self.dead() {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Killable {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(error) = self.dead() {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(error) = self.dead() {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Every record of `topic` (all `partitions`) a read_committed consumer sees, read from the
/// beginning to the end, in partition then offset order.
pub async fn read_committed(
    cluster: &Cluster,
    topic: &str,
    partitions: i32,
) -> Vec<ConsumerRecord> {
    let config = Config::new(cluster.bootstrap())
        .set("isolation.level", "read_committed")
        .and_then(|c| c.set("enable.partition.eof", "true"))
        .expect("valid settings");
    let consumer = Consumer::builder(config)
        .connector(Arc::new(cluster.connector()))
        .seed(11)
        .build()
        .expect("valid config");
    let tps: Vec<TopicPartition> = (0..partitions)
        .map(|p| TopicPartition::new(topic, p))
        .collect();
    consumer.assign(&tps).expect("assign");
    for tp in &tps {
        consumer.seek(tp, Offset::Beginning).expect("seek");
    }
    let mut records = Vec::new();
    let mut done = HashSet::new();
    while done.len() < tps.len() {
        match within(consumer.recv_event())
            .await
            .expect("no error")
            .expect("open")
        {
            ConsumerEvent::Record(record) => records.push(record),
            ConsumerEvent::PartitionEof { partition, offset } => {
                if consumer.watermarks(&partition).map(|(_, hw)| hw) == Some(offset) {
                    done.insert(partition);
                }
            }
            other => panic!("unexpected event {other:?}"),
        }
    }
    consumer.close().await;
    records.sort_by_key(|r| (r.partition, r.offset));
    records
}

pub fn text(bytes: Option<&bytes::Bytes>) -> String {
    String::from_utf8_lossy(bytes.map(|b| &b[..]).unwrap_or_default()).into_owned()
}

pub fn header(record: &ConsumerRecord, name: &str) -> String {
    text(record.header(name).and_then(|h| h.value.as_ref()))
}

/// A directory of its own for this test binary's files.
pub fn temp_path(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("franzy-patterns-crash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

// ---------------------------------------------------------------------------------------
// The outbox relay killed at each step.

/// Where the relay dies, in the batch after the first (which committed and was marked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayCrash {
    /// While claiming the batch's rows: nothing of it was sent.
    InPending,
    /// Its transaction begun, AddPartitionsToTxn sent and never answered: nothing written.
    AddingPartitions,
    /// A Produce of the transaction written by the broker, its answer held: records in a
    /// transaction that never commits.
    Produced,
    /// EndTxn (commit) sent, never handled: the coordinator aborts the transaction when
    /// the restarted producer fences the dead one.
    CommitLost,
    /// EndTxn (commit) handled, its answer held: committed, and the dead relay never knew.
    CommitUnanswered,
    /// The commit returned; the rows not marked yet.
    BeforeMark,
    /// The rows marked; dies before the next batch.
    AfterMark,
}

impl RelayCrash {
    pub const ALL: [Self; 7] = [
        Self::InPending,
        Self::AddingPartitions,
        Self::Produced,
        Self::CommitLost,
        Self::CommitUnanswered,
        Self::BeforeMark,
        Self::AfterMark,
    ];

    /// Whether the crashed batch is in the topic twice afterwards: it committed, and the
    /// relay died before marking it (the at-least-once window the outbox module documents).
    pub fn duplicates_the_batch(self) -> bool {
        matches!(self, Self::CommitUnanswered | Self::BeforeMark)
    }

    fn interceptor(self) -> Option<Interceptor> {
        let hold = Action::Delay(Duration::from_secs(3600));
        match self {
            Self::AddingPartitions => Some(Interceptor::new(
                ApiKey::AddPartitionsToTxn,
                Action::NeverAnswer,
            )),
            Self::Produced => Some(Interceptor::new(ApiKey::Produce, hold)),
            Self::CommitLost => Some(Interceptor::new(ApiKey::EndTxn, Action::NeverAnswer)),
            Self::CommitUnanswered => Some(Interceptor::new(ApiKey::EndTxn, hold)),
            Self::InPending | Self::BeforeMark | Self::AfterMark => None,
        }
    }
}

/// An outbox source that, once armed, stops for good at one step (and says so).
pub struct Stopping<S> {
    pub inner: S,
    armed: AtomicBool,
    point: RelayCrash,
    reached: tokio::sync::Notify,
    calls: AtomicUsize,
}

impl<S> Stopping<S> {
    pub fn new(inner: S, point: RelayCrash) -> Self {
        Self {
            inner,
            armed: AtomicBool::new(false),
            point,
            reached: tokio::sync::Notify::new(),
            calls: AtomicUsize::new(0),
        }
    }

    fn stops_at(&self, point: RelayCrash) -> bool {
        self.point == point && self.armed.load(Ordering::SeqCst)
    }

    /// Never returns: the process stops here.
    async fn stop(&self) {
        self.reached.notify_one();
        std::future::pending::<()>().await;
    }
}

impl<S: OutboxSource + Sync> OutboxSource for Stopping<S> {
    fn pending(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<OutboxRow>, PatternError>> + Send {
        self.calls.fetch_add(1, Ordering::SeqCst);
        async move {
            if self.stops_at(RelayCrash::InPending) {
                self.stop().await;
            }
            // After the mark, the next batch is never asked for: the process is gone.
            if self.stops_at(RelayCrash::AfterMark) && self.calls.load(Ordering::SeqCst) > 2 {
                self.stop().await;
            }
            self.inner.pending(limit).await
        }
    }

    fn mark_sent(&self, ids: &[u64]) -> impl Future<Output = Result<(), PatternError>> + Send {
        let ids = ids.to_vec();
        async move {
            if self.stops_at(RelayCrash::BeforeMark) {
                self.stop().await;
            }
            self.inner.mark_sent(&ids).await
        }
    }
}

/// What a crash test checks afterwards, per row id: how many times it was read.
pub struct Relayed {
    /// Row id -> times read_committed saw it.
    pub counts: BTreeMap<u64, usize>,
    /// Every record read, in partition then offset order.
    pub records: Vec<ConsumerRecord>,
}

/// Runs the relay over `source` (rows already in it) with batches of `batch`: one batch
/// commits, the relay dies at `point` in the next, then a new process (`restart` gives the
/// source as reopened after the crash) relays everything. Returns what read_committed sees
/// of `topic`, whose `partitions` it reads.
pub async fn relay_crash_restart<S, R, F>(
    cluster: &Cluster,
    topic: &str,
    partitions: i32,
    batch: usize,
    source: S,
    point: RelayCrash,
    restart: F,
) -> (Relayed, R)
where
    S: OutboxSource + Sync,
    R: OutboxSource + Sync,
    F: FnOnce(S) -> R,
{
    let transactional_id = "outbox-relay";
    let config = Config::new(cluster.bootstrap()).transactional_id(transactional_id);
    let dead = Process::new(cluster);
    let producer = dead.producer(config.clone());
    within(producer.init_transactions()).await.expect("init");
    let source = Stopping::new(source, point);
    let relay = OutboxRelay::new().batch(batch);
    assert_eq!(
        within(relay.relay_once(&producer, &source))
            .await
            .expect("first batch"),
        batch,
        "the first batch relayed"
    );
    // Arm the crash for the next batch.
    source.armed.store(true, Ordering::SeqCst);
    let intercepted = point.interceptor().map(|i| cluster.intercept(i)).is_some();
    let crashed = async {
        if intercepted {
            while cluster.pending_interceptors() > 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            // Let the broker finish what the interceptor let through.
            tokio::time::sleep(Duration::from_millis(5)).await;
        } else {
            source.reached.notified().await;
        }
    };
    tokio::select! {
        () = crashed => {}
        result = relay.relay_all(&producer, &source) => {
            panic!("the relay finished ({result:?}) instead of stopping at {point:?}")
        }
    }
    dead.kill();
    drop(producer);
    cluster.clear_interceptors();

    // The restart: a new process, the same transactional id, the source as stored.
    let source = restart(source.inner);
    let alive = Process::new(cluster);
    let producer = alive.producer(config);
    within(producer.init_transactions())
        .await
        .expect("init fences the dead relay");
    let relay = OutboxRelay::new().batch(batch);
    within(relay.relay_all(&producer, &source))
        .await
        .expect("the restarted relay relays the rest");
    producer.close().await;

    let records = read_committed(cluster, topic, partitions).await;
    let mut counts = BTreeMap::new();
    for record in &records {
        let id: u64 = header(record, "outbox-id")
            .parse()
            .expect("every record carries its outbox id");
        *counts.entry(id).or_insert(0) += 1;
    }
    (Relayed { counts, records }, source)
}

/// Checks the outcome of [`relay_crash_restart`] for `rows` rows (ids 1..=rows) relayed in
/// batches of `batch`: every row read, the crashed (second) batch twice exactly when the
/// crash point commits without marking, every other row once; and per key, the first
/// copies in id order on one partition.
pub fn check_relayed(relayed: &Relayed, rows: u64, batch: u64, point: RelayCrash) {
    let second_batch = batch + 1..=2 * batch;
    for id in 1..=rows {
        let expected = if point.duplicates_the_batch() && second_batch.contains(&id) {
            2
        } else {
            1
        };
        assert_eq!(
            relayed.counts.get(&id).copied().unwrap_or(0),
            expected,
            "row {id} after a crash at {point:?}: {:?}",
            relayed.counts
        );
    }
    assert_eq!(relayed.counts.len() as u64, rows, "no other ids");
    let mut per_key: BTreeMap<String, (i32, Vec<u64>)> = BTreeMap::new();
    for record in &relayed.records {
        let id: u64 = header(record, "outbox-id").parse().expect("id");
        let entry = per_key
            .entry(text(record.key.as_ref()))
            .or_insert((record.partition, Vec::new()));
        assert_eq!(entry.0, record.partition, "one partition per key");
        if !entry.1.contains(&id) {
            entry.1.push(id);
        }
    }
    for (key, (_, ids)) in per_key {
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "key {key} out of order after a crash at {point:?}: {ids:?}"
        );
    }
}
