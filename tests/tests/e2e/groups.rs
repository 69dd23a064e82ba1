//! franzy's group consumer against the harness's group coordinator, in memory, under a
//! paused clock (session timeouts, poll intervals and rebalances all run on virtual time):
//! revoke callbacks committing synchronously, nothing of a revoked partition handed out
//! while its callback runs, cooperative-sticky moving only what moves, a coordinator moving
//! mid-rebalance, a static member restarting without a rebalance, a member exceeding
//! `max.poll.interval.ms`, a commit from a stale generation, session expiry, a crashed
//! member, twenty members joining at once, a static member fenced by a newer instance, a
//! pattern subscription meeting a new topic, and coordinator errors on every group API.
//!
//! Records go into the logs with `with_state(append_records)`; each value names its
//! partition and offset, so that every test checks that each record was read, and how many
//! times.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use franzy::consumer::{CallbackFuture, ConsumerHandle, RebalanceListener};
use franzy::kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use franzy::kafka_protocol::messages::{GroupId, OffsetCommitRequest, TopicName};
use franzy::proto::record_batch::RecordBatchBuilder;
use franzy::proto::{ApiKey, ErrorCode, RequestKind, ResponseKind, StrBytes};
use franzy::{
    Config, Consumer, ConsumerGroupMetadata, Error, OffsetReset, Producer, TopicPartition,
};
use franzy_harness::cluster::groups::classic::ClassicGroupState;
use franzy_harness::{Action, Cluster, Interceptor};
use franzy_tests::{init_tracing, RawConnection};
use tokio::task::JoinHandle;
use tokio::time::Instant;

const TOPIC: &str = "orders";
const GROUP: &str = "orders-app";
/// Longest any test waits for a condition, in virtual time.
const BOUND: Duration = Duration::from_secs(600);
const SESSION: Duration = Duration::from_secs(10);
const HEARTBEAT: Duration = Duration::from_secs(1);

async fn cluster(partitions: i32) -> Cluster {
    init_tracing();
    Cluster::builder()
        .brokers(3)
        .topic(TOPIC, partitions)
        .in_memory()
        .seed(3)
        .build()
        .await
        .expect("cluster starts")
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Appends `n` records to every partition, one batch each; values are `partition:offset`.
fn append(cluster: &Cluster, partitions: i32, n: usize) {
    append_to(cluster, TOPIC, partitions, n);
}

/// As [`append`], to `topic` (the KIP-848 tests use it too).
pub(crate) fn append_to(cluster: &Cluster, topic: &str, partitions: i32, n: usize) {
    for partition in 0..partitions {
        let end = cluster.with_state(|s| {
            s.partition(topic, partition)
                .map(|p| p.log().high_watermark())
                .expect("partition exists")
        });
        let mut builder = RecordBatchBuilder::new();
        for i in 0..n {
            let value = format!("{partition}:{}", end + i as i64);
            builder
                .append(now_ms(), None, Some(Bytes::from(value)), Vec::new())
                .expect("record fits");
        }
        let bytes = builder.build().encode().expect("batch encodes");
        cluster
            .with_state(|s| s.append_records(topic, partition, &bytes, now_ms()))
            .expect("append");
    }
}

/// Waits (in virtual time, 50 ms at a time) until `done` holds; fails the test at [`BOUND`].
pub(crate) async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + BOUND;
    while !done() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(BOUND, future).await {
        Ok(output) => output,
        Err(_) => panic!("not done within the bound: {what}"),
    }
}

/// The group as the coordinator has it: state, generation, members.
fn group_view(cluster: &Cluster) -> Option<(ClassicGroupState, i32, BTreeSet<String>)> {
    cluster.with_state(|s| {
        s.groups()
            .group(GROUP)
            .and_then(|g| g.as_classic())
            .map(|g| {
                (
                    g.state(),
                    g.generation(),
                    g.members().map(|m| m.id.to_string()).collect(),
                )
            })
    })
}

fn stable_with(cluster: &Cluster, members: usize) -> bool {
    group_view(cluster)
        .is_some_and(|(state, _, ids)| state == ClassicGroupState::Stable && ids.len() == members)
}

fn partitions_of(tps: &[TopicPartition]) -> Vec<i32> {
    let mut list: Vec<i32> = tps.iter().map(|tp| tp.partition).collect();
    list.sort_unstable();
    list
}

fn tp(partition: i32) -> TopicPartition {
    TopicPartition::new(TOPIC, partition)
}

// ---- What the members did, shared by their tasks and listeners ----------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Revoked(Vec<i32>),
    Assigned(Vec<i32>),
    Lost(Vec<i32>),
}

/// One record handed out by `recv`.
#[derive(Debug, Clone)]
struct Read {
    member: String,
    partition: i32,
    offset: i64,
    /// Whether a revoke or lose callback of this member was running when it came out.
    during_callback: bool,
}

/// A commit made by a revoke callback: its outcome and the positions it committed.
#[derive(Debug, Clone)]
struct CallbackCommit {
    member: String,
    result: Result<(), String>,
    positions: BTreeMap<i32, Option<i64>>,
    /// How many reads were logged when the callback started.
    reads_before: usize,
}

#[derive(Default)]
struct Log {
    /// Each step with how many reads were logged before it.
    steps: Vec<(String, Step, usize)>,
    reads: Vec<Read>,
    errors: Vec<(String, String)>,
    commits: Vec<CallbackCommit>,
    /// Members whose revoke or lose callback is running.
    in_callback: BTreeSet<String>,
}

type Shared = Arc<Mutex<Log>>;

fn lock(log: &Shared) -> MutexGuard<'_, Log> {
    log.lock().unwrap_or_else(|p| p.into_inner())
}

impl Log {
    fn steps_of(&self, member: &str) -> Vec<Step> {
        self.steps
            .iter()
            .filter(|(m, _, _)| m == member)
            .map(|(_, s, _)| s.clone())
            .collect()
    }

    fn step(&mut self, member: &str, step: Step) {
        let at = self.reads.len();
        self.steps.push((member.to_string(), step, at));
    }

    /// Checks that every record `member` was handed out was of a partition it owned then:
    /// assigned, and not revoked or lost since (the revocation counting from when its
    /// callback started). `cooperative`: an assignment step names only what was added.
    fn check_reads_owned(&self, member: &str, cooperative: bool) {
        let mut owned: BTreeSet<i32> = BTreeSet::new();
        let mut steps = self.steps.iter().filter(|(m, _, _)| m == member).peekable();
        for (index, read) in self.reads.iter().enumerate() {
            while let Some((_, step, _)) = steps.next_if(|(_, _, at)| *at <= index) {
                match step {
                    Step::Assigned(added) => {
                        if !cooperative {
                            owned.clear();
                        }
                        owned.extend(added);
                    }
                    Step::Revoked(gone) | Step::Lost(gone) => {
                        for p in gone {
                            owned.remove(p);
                        }
                    }
                }
            }
            if read.member == member {
                assert!(
                    owned.contains(&read.partition),
                    "{member} was handed {}@{} (read #{index}) while owning {owned:?}",
                    read.partition,
                    read.offset
                );
            }
        }
    }

    /// The last offset `member` read of `partition` among the first `step_at` reads.
    fn last_read_before(&self, member: &str, partition: i32, step_at: usize) -> Option<i64> {
        self.reads[..step_at]
            .iter()
            .filter(|r| r.member == member && r.partition == partition)
            .map(|r| r.offset)
            .max()
    }

    /// How many times each record (partition, offset) was handed out, by anyone.
    fn counts(&self) -> BTreeMap<(i32, i64), usize> {
        let mut counts = BTreeMap::new();
        for read in &self.reads {
            *counts.entry((read.partition, read.offset)).or_default() += 1;
        }
        counts
    }

    fn reads_of(&self, member: &str) -> usize {
        self.reads.iter().filter(|r| r.member == member).count()
    }
}

/// Every record of the topic, by (partition, offset).
fn all_records(cluster: &Cluster, partitions: i32) -> BTreeSet<(i32, i64)> {
    (0..partitions)
        .flat_map(|p| {
            let end = cluster.with_state(|s| {
                s.partition(TOPIC, p)
                    .map(|p| p.log().high_watermark())
                    .expect("partition exists")
            });
            (0..end).map(move |o| (p, o))
        })
        .collect()
}

fn read_everything(log: &Shared, cluster: &Cluster, partitions: i32) -> bool {
    let all = all_records(cluster, partitions);
    let counts = lock(log).counts();
    all.iter().all(|r| counts.contains_key(r))
}

/// Records handed out more than once.
fn duplicates(log: &Shared) -> Vec<(i32, i64)> {
    lock(log)
        .counts()
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(r, _)| r)
        .collect()
}

struct Listener {
    name: String,
    log: Shared,
    /// Commit the consumed positions in `on_partitions_revoked`, waiting for the answer.
    commit_on_revoke: bool,
    /// How long the revoke callback takes after its commit (virtual time).
    revoke_pause: Duration,
}

impl RebalanceListener for Listener {
    fn on_partitions_revoked(
        &self,
        consumer: ConsumerHandle,
        partitions: Vec<TopicPartition>,
    ) -> CallbackFuture {
        let (name, log, commit, pause) = (
            self.name.clone(),
            self.log.clone(),
            self.commit_on_revoke,
            self.revoke_pause,
        );
        Box::pin(async move {
            {
                let mut log = lock(&log);
                log.in_callback.insert(name.clone());
                log.step(&name, Step::Revoked(partitions_of(&partitions)));
            }
            if commit {
                let reads_before = lock(&log).reads.len();
                let positions = partitions
                    .iter()
                    .map(|tp| (tp.partition, consumer.position(tp)))
                    .collect();
                let result = consumer.commit().await.map_err(|e| e.to_string());
                lock(&log).commits.push(CallbackCommit {
                    member: name.clone(),
                    result,
                    positions,
                    reads_before,
                });
            }
            tokio::time::sleep(pause).await;
            lock(&log).in_callback.remove(&name);
        })
    }

    fn on_partitions_assigned(
        &self,
        _consumer: ConsumerHandle,
        partitions: Vec<TopicPartition>,
    ) -> CallbackFuture {
        let (name, log) = (self.name.clone(), self.log.clone());
        Box::pin(async move {
            lock(&log).step(&name, Step::Assigned(partitions_of(&partitions)));
        })
    }

    fn on_partitions_lost(
        &self,
        _consumer: ConsumerHandle,
        partitions: Vec<TopicPartition>,
    ) -> CallbackFuture {
        let (name, log) = (self.name.clone(), self.log.clone());
        Box::pin(async move {
            lock(&log).step(&name, Step::Lost(partitions_of(&partitions)));
        })
    }
}

/// How a member is set up.
#[derive(Clone)]
struct Setup {
    strategy: &'static str,
    instance: Option<String>,
    auto_commit: bool,
    commit_on_revoke: bool,
    revoke_pause: Duration,
    max_poll_interval: Duration,
    /// Tasks calling `recv` on the consumer (0: the test calls it).
    readers: usize,
    /// Time each reader takes per record (virtual).
    per_record: Duration,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            strategy: "range",
            instance: None,
            auto_commit: false,
            commit_on_revoke: true,
            revoke_pause: Duration::ZERO,
            max_poll_interval: Duration::from_secs(60),
            readers: 1,
            per_record: Duration::ZERO,
        }
    }
}

struct Member {
    name: String,
    consumer: Arc<Consumer>,
    readers: Vec<JoinHandle<()>>,
}

impl Member {
    fn assignment(&self) -> Vec<i32> {
        partitions_of(&self.consumer.assignment())
    }

    fn generation(&self) -> i32 {
        self.consumer
            .consumer_group_metadata()
            .map_or(-1, |m| m.generation_id)
    }

    /// Closes the consumer (commit/revoke, LeaveGroup if dynamic); its readers end.
    async fn close(self) {
        within("close", self.consumer.close()).await;
        for reader in self.readers {
            within("the reader ends once closed", reader)
                .await
                .expect("reader task");
        }
    }
}

fn start(cluster: &Cluster, name: &str, log: &Shared, setup: &Setup) -> Member {
    let mut config = Config::new(cluster.bootstrap())
        .client_id(name.to_string())
        .group_id(GROUP)
        .auto_offset_reset(OffsetReset::Earliest)
        .session_timeout(SESSION)
        .heartbeat_interval(HEARTBEAT)
        .max_poll_interval(setup.max_poll_interval)
        .enable_auto_commit(setup.auto_commit)
        .auto_commit_interval(Duration::from_secs(1))
        .partition_assignment_strategy([setup.strategy])
        .expect("a known strategy");
    if let Some(instance) = &setup.instance {
        config = config.group_instance_id(instance.clone());
    }
    let listener = Listener {
        name: name.to_string(),
        log: log.clone(),
        commit_on_revoke: setup.commit_on_revoke,
        revoke_pause: setup.revoke_pause,
    };
    let consumer = Arc::new(
        Consumer::builder(config)
            .connector(Arc::new(cluster.connector()))
            .seed(name.bytes().map(u64::from).sum())
            .rebalance_listener(listener)
            .build()
            .expect("consumer builds"),
    );
    consumer.subscribe([TOPIC]).expect("subscribe");
    let readers = (0..setup.readers)
        .map(|_| {
            tokio::spawn(read(
                consumer.clone(),
                name.to_string(),
                log.clone(),
                setup.per_record,
            ))
        })
        .collect();
    Member {
        name: name.to_string(),
        consumer,
        readers,
    }
}

/// A reader: logs every record `recv` hands out (and every error) until the consumer closes.
async fn read(consumer: Arc<Consumer>, name: String, log: Shared, per_record: Duration) {
    loop {
        match consumer.recv().await {
            Ok(Some(record)) => {
                {
                    let mut log = lock(&log);
                    let during_callback = log.in_callback.contains(&name);
                    log.reads.push(Read {
                        member: name.clone(),
                        partition: record.partition,
                        offset: record.offset,
                        during_callback,
                    });
                }
                if !per_record.is_zero() {
                    tokio::time::sleep(per_record).await;
                }
            }
            Ok(None) => return,
            Err(error) => lock(&log).errors.push((name.clone(), error.to_string())),
        }
    }
}

/// The members' assignments are disjoint and together cover `partitions`.
fn assignments_cover(members: &[&Member], partitions: i32) -> bool {
    let mut seen = BTreeSet::new();
    for member in members {
        for p in member.assignment() {
            if !seen.insert(p) {
                return false;
            }
        }
    }
    seen.len() == partitions as usize
}

/// Members stable in one generation with disjoint assignments covering the topic.
async fn settled(cluster: &Cluster, members: &[&Member], partitions: i32) {
    until(
        "the group is stable and its members split the topic",
        || {
            let Some((ClassicGroupState::Stable, generation, ids)) = group_view(cluster) else {
                return false;
            };
            ids.len() == members.len()
                && members.iter().all(|m| m.generation() == generation)
                && assignments_cover(members, partitions)
        },
    )
    .await;
}

/// The group's committed offset of a partition, as the coordinator's store has it.
fn committed(cluster: &Cluster, partition: i32) -> Option<i64> {
    cluster.with_state(|s| {
        s.offsets()
            .fetch(GROUP, TOPIC, partition, false)
            .ok()
            .flatten()
            .map(|o| o.offset)
    })
}

/// Whether the harness received a LeaveGroup from the client `client_id`.
fn sent_leave_group(cluster: &Cluster, client_id: &str) -> bool {
    cluster
        .requests()
        .iter()
        .any(|r| r.api_key == ApiKey::LeaveGroup && r.client_id.as_deref() == Some(client_id))
}

/// Appends `n` records to every partition every 200 ms for `how_long` (virtual time).
async fn feed(cluster: &Cluster, partitions: i32, n: usize, how_long: Duration) {
    let stop = Instant::now() + how_long;
    while Instant::now() < stop {
        append(cluster, partitions, n);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---- Rebalance callbacks -------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_revoke_callback_commits_synchronously_and_the_next_owner_starts_there() {
    const PARTITIONS: i32 = 6;
    let cluster = cluster(PARTITIONS).await;
    append(&cluster, PARTITIONS, 50);
    let log = Shared::default();
    // Slow readers: records are still unread when the partitions are revoked.
    let slow = Setup {
        per_record: Duration::from_millis(20),
        ..Setup::default()
    };
    let a = start(&cluster, "a", &log, &slow);
    until("a reads from every partition", || {
        let log = lock(&log);
        (0..PARTITIONS).all(|p| log.reads.iter().any(|r| r.partition == p))
    })
    .await;
    let b = start(&cluster, "b", &log, &slow);
    // Every partition has records after the revocation.
    feed(&cluster, PARTITIONS, 5, Duration::from_secs(3)).await;
    until("everything is read", || {
        read_everything(&log, &cluster, PARTITIONS)
    })
    .await;
    settled(&cluster, &[&a, &b], PARTITIONS).await;

    {
        let log = lock(&log);
        let revoked: Vec<Step> = log
            .steps_of("a")
            .into_iter()
            .filter(|s| matches!(s, Step::Revoked(_)))
            .collect();
        assert_eq!(
            revoked,
            vec![Step::Revoked((0..PARTITIONS).collect())],
            "eager: a gives everything back, once"
        );
        let commit = log
            .commits
            .iter()
            .find(|c| c.member == "a")
            .expect("a's revoke callback committed");
        assert_eq!(commit.result, Ok(()), "the commit in the callback succeeds");
        let mut moved_with_records = 0;
        for (&partition, &position) in &commit.positions {
            // The position committed is right after the last record a was handed.
            let last = log.last_read_before("a", partition, commit.reads_before);
            match last {
                Some(last) => assert_eq!(position, Some(last + 1), "partition {partition}"),
                None => assert!(matches!(position, None | Some(0)), "partition {partition}"),
            }
            // No commit came after it (b never revoked anything): the store has it.
            if let Some(position) = position {
                assert_eq!(committed(&cluster, partition), Some(position));
                // The next record of the partition, whoever read it, is that one.
                let next = log.reads[commit.reads_before..]
                    .iter()
                    .find(|r| r.partition == partition)
                    .expect("the partition is read on");
                assert_eq!(next.offset, position, "partition {partition} went on there");
                if next.member == "b" {
                    moved_with_records += 1;
                }
            }
        }
        assert!(
            moved_with_records > 0,
            "some partition a had read moved to b"
        );
        log.check_reads_owned("a", false);
        log.check_reads_owned("b", false);
    }
    assert_eq!(duplicates(&log), Vec::<(i32, i64)>::new(), "read twice");
    a.close().await;
    b.close().await;
}

#[tokio::test(start_paused = true)]
async fn no_record_of_a_revoked_partition_is_handed_out_while_its_callback_runs() {
    const PARTITIONS: i32 = 6;
    let cluster = cluster(PARTITIONS).await;
    append(&cluster, PARTITIONS, 50);
    let log = Shared::default();
    // Two tasks call recv on the one consumer; its revoke callback takes 5 s, while
    // records keep arriving and are fetched ahead.
    let setup = Setup {
        readers: 2,
        revoke_pause: Duration::from_secs(5),
        per_record: Duration::from_millis(10),
        ..Setup::default()
    };
    let a = start(&cluster, "a", &log, &setup);
    until("a reads", || lock(&log).reads_of("a") >= 20).await;
    let b = start(&cluster, "b", &log, &Setup::default());
    feed(&cluster, PARTITIONS, 5, Duration::from_secs(12)).await;
    until("everything is read", || {
        read_everything(&log, &cluster, PARTITIONS)
    })
    .await;
    settled(&cluster, &[&a, &b], PARTITIONS).await;

    {
        let log = lock(&log);
        assert!(
            log.steps_of("a")
                .contains(&Step::Revoked((0..PARTITIONS).collect())),
            "a's partitions were revoked: {:?}",
            log.steps_of("a")
        );
        let during: Vec<&Read> = log.reads.iter().filter(|r| r.during_callback).collect();
        assert!(
            during.is_empty(),
            "handed out while a revoke callback ran: {during:?}"
        );
        log.check_reads_owned("a", false);
        log.check_reads_owned("b", false);
        assert!(
            log.commits.iter().all(|c| c.result.is_ok()),
            "{:?}",
            log.commits
        );
    }
    assert_eq!(duplicates(&log), Vec::<(i32, i64)>::new(), "read twice");
    // Both of a's readers end when it closes: neither was left behind by the callback.
    a.close().await;
    b.close().await;
}

#[tokio::test(start_paused = true)]
async fn cooperative_sticky_revokes_only_the_partitions_that_move() {
    const PARTITIONS: i32 = 6;
    let cluster = cluster(PARTITIONS).await;
    append(&cluster, PARTITIONS, 100);
    let log = Shared::default();
    let setup = Setup {
        strategy: "cooperative-sticky",
        per_record: Duration::from_millis(10),
        ..Setup::default()
    };
    let a = start(&cluster, "a", &log, &setup);
    settled(&cluster, &[&a], PARTITIONS).await;
    let before = lock(&log).steps_of("a").len();
    let b = start(&cluster, "b", &log, &setup);
    feed(&cluster, PARTITIONS, 5, Duration::from_secs(5)).await;
    until("everything is read", || {
        read_everything(&log, &cluster, PARTITIONS)
    })
    .await;
    settled(&cluster, &[&a, &b], PARTITIONS).await;

    let (a_steps, b_steps) = {
        let log = lock(&log);
        log.check_reads_owned("a", true);
        log.check_reads_owned("b", true);
        (log.steps_of("a")[before..].to_vec(), log.steps_of("b"))
    };
    let revoked: Vec<&Vec<i32>> = a_steps
        .iter()
        .filter_map(|s| match s {
            Step::Revoked(p) => Some(p),
            _ => None,
        })
        .collect();
    assert_eq!(revoked.len(), 1, "one revocation: {a_steps:?}");
    let moved: BTreeSet<i32> = revoked[0].iter().copied().collect();
    assert_eq!(moved.len(), 3, "half the partitions move: {a_steps:?}");
    assert!(
        !a_steps.iter().any(|s| matches!(s, Step::Lost(_))),
        "{a_steps:?}"
    );
    // a kept the rest all along (nothing re-added), b got exactly what a gave up.
    assert!(
        a_steps.iter().all(|s| match s {
            Step::Assigned(added) => added.is_empty(),
            _ => true,
        }),
        "{a_steps:?}"
    );
    let kept: BTreeSet<i32> = (0..PARTITIONS).filter(|p| !moved.contains(p)).collect();
    assert_eq!(a.assignment().into_iter().collect::<BTreeSet<_>>(), kept);
    assert_eq!(b.assignment().into_iter().collect::<BTreeSet<_>>(), moved);
    let b_added: BTreeSet<i32> = b_steps
        .iter()
        .flat_map(|s| match s {
            Step::Assigned(added) => added.clone(),
            _ => Vec::new(),
        })
        .collect();
    assert_eq!(b_added, moved);
    assert_eq!(duplicates(&log), Vec::<(i32, i64)>::new(), "read twice");
    a.close().await;
    b.close().await;
}

// ---- The coordinator ------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn the_coordinator_moving_mid_rebalance_loses_and_repeats_nothing() {
    const PARTITIONS: i32 = 6;
    let cluster = cluster(PARTITIONS).await;
    append(&cluster, PARTITIONS, 100);
    let log = Shared::default();
    let setup = Setup {
        per_record: Duration::from_millis(10),
        ..Setup::default()
    };
    let a = start(&cluster, "a", &log, &setup);
    let b = start(&cluster, "b", &log, &setup);
    settled(&cluster, &[&a, &b], PARTITIONS).await;
    let (_, generation, _) = group_view(&cluster).expect("the group exists");
    let coordinator = cluster.group_coordinator(GROUP).expect("a coordinator");
    // A third member starts a rebalance; the coordinator moves while it waits for the
    // others to rejoin.
    let c = start(&cluster, "c", &log, &setup);
    let deadline = Instant::now() + BOUND;
    while !group_view(&cluster)
        .is_some_and(|(state, _, _)| state == ClassicGroupState::PreparingRebalance)
    {
        assert!(Instant::now() < deadline, "no rebalance started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let target = (coordinator + 1) % 3;
    cluster
        .move_group_coordinator(GROUP, target)
        .expect("moved");
    feed(&cluster, PARTITIONS, 5, Duration::from_secs(3)).await;
    until("everything is read", || {
        read_everything(&log, &cluster, PARTITIONS)
    })
    .await;
    settled(&cluster, &[&a, &b, &c], PARTITIONS).await;

    assert_eq!(cluster.group_coordinator(GROUP), Some(target));
    let (_, now, _) = group_view(&cluster).expect("the group exists");
    assert!(now > generation, "a new generation at the new coordinator");
    // The members found the new coordinator.
    let found_again = cluster
        .requests()
        .iter()
        .filter(|r| r.api_key == ApiKey::JoinGroup && r.broker_id == target)
        .count();
    assert!(found_again >= 3, "every member joined at broker {target}");
    {
        let log = lock(&log);
        for member in ["a", "b", "c"] {
            log.check_reads_owned(member, false);
        }
        assert!(
            log.commits.iter().all(|c| c.result.is_ok()),
            "{:?}",
            log.commits
        );
    }
    assert_eq!(duplicates(&log), Vec::<(i32, i64)>::new(), "read twice");
    for member in [a, b, c] {
        member.close().await;
    }
}

// ---- Membership -----------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_static_member_restarting_within_the_session_causes_no_rebalance() {
    const PARTITIONS: i32 = 6;
    let cluster = cluster(PARTITIONS).await;
    append(&cluster, PARTITIONS, 50);
    let log = Shared::default();
    let static_member = |instance: &str| Setup {
        instance: Some(instance.to_string()),
        ..Setup::default()
    };
    let a = start(&cluster, "a", &log, &static_member("instance-a"));
    let b = start(&cluster, "b", &log, &static_member("instance-b"));
    settled(&cluster, &[&a, &b], PARTITIONS).await;
    until("everything is read", || {
        read_everything(&log, &cluster, PARTITIONS)
    })
    .await;
    let (_, generation, members) = group_view(&cluster).expect("the group exists");
    let a_partitions = a.assignment();
    let a_id = a
        .consumer
        .consumer_group_metadata()
        .expect("in a group")
        .member_id;
    let b_steps = lock(&log).steps_of("b").len();

    // a stops (its callback commits) without leaving the group, and comes back 3 s later.
    a.close().await;
    assert!(
        !sent_leave_group(&cluster, "a"),
        "a static member sends no LeaveGroup"
    );
    assert_eq!(group_view(&cluster).map(|v| v.2), Some(members.clone()));
    append(&cluster, PARTITIONS, 10);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let a2 = start(&cluster, "a2", &log, &static_member("instance-a"));
    until("a2 owns a's partitions", || {
        a2.assignment() == a_partitions && a2.generation() == generation
    })
    .await;
    until("everything is read", || {
        read_everything(&log, &cluster, PARTITIONS)
    })
    .await;
    // Let heartbeats run for a while: still no rebalance.
    tokio::time::sleep(SESSION * 2).await;

    let (state, now, ids) = group_view(&cluster).expect("the group exists");
    assert_eq!(
        (state, now),
        (ClassicGroupState::Stable, generation),
        "no rebalance"
    );
    let a2_id = a2
        .consumer
        .consumer_group_metadata()
        .expect("in a group")
        .member_id;
    assert_ne!(a2_id, a_id, "the restarted member has a new member id");
    assert!(ids.contains(&a2_id) && !ids.contains(&a_id), "{ids:?}");
    assert_eq!(ids.len(), 2);
    assert_eq!(b.generation(), generation);
    assert_eq!(
        lock(&log).steps_of("b").len(),
        b_steps,
        "b saw no revocation or assignment"
    );
    assert_eq!(
        duplicates(&log),
        Vec::<(i32, i64)>::new(),
        "a2 started where a committed"
    );
    a2.close().await;
    b.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_member_exceeding_max_poll_interval_leaves_and_is_told() {
    const PARTITIONS: i32 = 6;
    let cluster = cluster(PARTITIONS).await;
    append(&cluster, PARTITIONS, 50);
    let log = Shared::default();
    let interval = Duration::from_secs(20);
    // a's application calls recv itself, here.
    let a = start(
        &cluster,
        "a",
        &log,
        &Setup {
            readers: 0,
            max_poll_interval: interval,
            ..Setup::default()
        },
    );
    let b = start(&cluster, "b", &log, &Setup::default());
    let mut a_read = BTreeSet::new();
    let deadline = Instant::now() + BOUND;
    // a reads until the group has settled with both members and a has read some records.
    while !(stable_with(&cluster, 2) && a_read.len() >= 10 && a.assignment().len() == 3) {
        assert!(Instant::now() < deadline, "a never settled");
        if let Ok(Ok(Some(record))) =
            tokio::time::timeout(Duration::from_millis(100), a.consumer.recv()).await
        {
            a_read.insert((record.partition, record.offset));
            lock(&log).reads.push(Read {
                member: "a".into(),
                partition: record.partition,
                offset: record.offset,
                during_callback: false,
            });
        }
    }
    let a_partitions = a.assignment();

    // a's application stalls: after max.poll.interval.ms the member leaves the group, and
    // b gets every partition.
    let stalled = Instant::now();
    until("b owns everything", || {
        b.assignment().len() == PARTITIONS as usize && stable_with(&cluster, 1)
    })
    .await;
    assert!(
        stalled.elapsed() >= interval - Duration::from_secs(1),
        "not before the poll interval: {:?}",
        stalled.elapsed()
    );
    assert!(sent_leave_group(&cluster, "a"), "a dynamic member leaves");
    // Commits from the stalled member fail: it is not in the group any more.
    let commit = within("commit", a.consumer.commit()).await;
    assert!(
        matches!(commit, Err(Error::CommitFailed { .. })),
        "{commit:?}"
    );
    // The application is told on its next recv, and the partitions are lost, not revoked.
    let told = within("recv", a.consumer.recv()).await;
    assert!(
        matches!(told, Err(Error::PollIntervalExceeded { interval: i }) if i == interval),
        "{told:?}"
    );
    let a_steps = lock(&log).steps_of("a");
    assert_eq!(
        a_steps.last(),
        Some(&Step::Lost(a_partitions.clone())),
        "{a_steps:?}"
    );
    // Then a rejoins and the two split the topic again; nothing is lost, and only what a
    // read without committing is read again.
    let a = Member {
        readers: vec![tokio::spawn(read(
            a.consumer.clone(),
            "a".into(),
            log.clone(),
            Duration::ZERO,
        ))],
        ..a
    };
    append(&cluster, PARTITIONS, 10);
    settled(&cluster, &[&a, &b], PARTITIONS).await;
    until("everything is read", || {
        read_everything(&log, &cluster, PARTITIONS)
    })
    .await;
    let again: BTreeSet<(i32, i64)> = duplicates(&log).into_iter().collect();
    assert!(
        again.is_subset(&a_read),
        "read twice, not by the stalled member first: {:?}",
        again.difference(&a_read).collect::<Vec<_>>()
    );
    a.close().await;
    b.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_commit_from_a_stale_generation_is_refused() {
    const PARTITIONS: i32 = 6;
    let cluster = cluster(PARTITIONS).await;
    append(&cluster, PARTITIONS, 20);
    let log = Shared::default();
    let a = start(&cluster, "a", &log, &Setup::default());
    let b = start(&cluster, "b", &log, &Setup::default());
    settled(&cluster, &[&a, &b], PARTITIONS).await;
    let stale: ConsumerGroupMetadata = a.consumer.consumer_group_metadata().expect("in a group");
    let c = start(&cluster, "c", &log, &Setup::default());
    settled(&cluster, &[&a, &b, &c], PARTITIONS).await;
    let current = a.consumer.consumer_group_metadata().expect("in a group");
    assert_eq!(current.member_id, stale.member_id, "a is the same member");
    assert!(current.generation_id > stale.generation_id);
    let before = committed(&cluster, 0);

    // OffsetCommit with a's member id and its old generation: ILLEGAL_GENERATION.
    let coordinator = cluster.group_coordinator(GROUP).expect("a coordinator");
    let mut conn = RawConnection::new(cluster.connect(coordinator).expect("connect"));
    let commit = |generation: i32| {
        RequestKind::OffsetCommit(
            OffsetCommitRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(GROUP.to_string())))
                .with_generation_id_or_member_epoch(generation)
                .with_member_id(StrBytes::from_string(stale.member_id.clone()))
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_string(TOPIC.to_string())))
                    .with_partitions(vec![OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(12_345)
                        .with_committed_leader_epoch(-1)])]),
        )
    };
    let code = |response: ResponseKind| match response {
        ResponseKind::OffsetCommit(r) => r.topics[0].partitions[0].error_code,
        other => panic!("{other:?}"),
    };
    let (_, response) = conn
        .request(ApiKey::OffsetCommit, 9, &commit(stale.generation_id))
        .await
        .expect("answered");
    assert_eq!(code(response), ErrorCode::IllegalGeneration.code());
    assert_eq!(committed(&cluster, 0), before, "nothing was stored");

    // A transactional producer sending offsets with the stale metadata: the group
    // coordinator refuses them, the transaction must abort, and nothing is committed.
    let producer = Producer::builder(Config::new(cluster.bootstrap()).transactional_id("tx"))
        .connector(Arc::new(cluster.connector()))
        .seed(5)
        .build()
        .expect("valid config");
    within("init", producer.init_transactions())
        .await
        .expect("initialised");
    within("begin", producer.begin_transaction())
        .await
        .expect("begin");
    let sent = within(
        "send offsets",
        producer.send_offsets_to_transaction([(tp(0), 12_345)], &stale),
    )
    .await;
    let outcome = match sent {
        Err(error) => Err(error),
        Ok(()) => within("commit", producer.commit_transaction()).await,
    };
    let error = outcome.expect_err("a stale generation is refused");
    assert!(error.requires_abort(), "{error:?}");
    within("abort", producer.abort_transaction())
        .await
        .expect("aborted");
    assert_eq!(committed(&cluster, 0), before, "nothing was stored");
    // With the current generation, both are accepted.
    within("begin", producer.begin_transaction())
        .await
        .expect("begin");
    within(
        "send offsets",
        producer.send_offsets_to_transaction([(tp(0), 12_345)], &current),
    )
    .await
    .expect("offsets added");
    within("commit", producer.commit_transaction())
        .await
        .expect("committed");
    assert_eq!(committed(&cluster, 0), Some(12_345));
    let (_, response) = conn
        .request(ApiKey::OffsetCommit, 9, &commit(current.generation_id))
        .await
        .expect("answered");
    assert_eq!(code(response), 0);
    within("close", producer.close()).await;
    for member in [a, b, c] {
        member.close().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_session_expires_on_the_cluster_clock_and_not_before() {
    const PARTITIONS: i32 = 6;
    let cluster = cluster(PARTITIONS).await;
    let log = Shared::default();
    // b is static: closing it sends no LeaveGroup, so only its session's end removes it.
    let a = start(&cluster, "a", &log, &Setup::default());
    let b = start(
        &cluster,
        "b",
        &log,
        &Setup {
            instance: Some("instance-b".into()),
            ..Setup::default()
        },
    );
    settled(&cluster, &[&a, &b], PARTITIONS).await;
    let (_, generation, _) = group_view(&cluster).expect("the group exists");
    b.close().await;
    // The last request of b's that kept its session alive.
    let last_heartbeat = cluster
        .requests()
        .iter()
        .filter(|r| {
            r.client_id.as_deref() == Some("b")
                && matches!(
                    r.api_key,
                    ApiKey::Heartbeat
                        | ApiKey::OffsetCommit
                        | ApiKey::JoinGroup
                        | ApiKey::SyncGroup
                )
        })
        .map(|r| r.at)
        .max()
        .expect("b sent requests");
    let closed = cluster.uptime();
    assert!(closed >= last_heartbeat);
    // Up to the session timeout after its last request, b is a member and a keeps its half.
    while cluster.uptime() < last_heartbeat + SESSION - Duration::from_millis(100) {
        let (state, now, ids) = group_view(&cluster).expect("the group exists");
        assert_eq!(
            (state, now, ids.len()),
            (ClassicGroupState::Stable, generation, 2),
            "at {:?}, {:?} after b's last request",
            cluster.uptime(),
            cluster.uptime() - last_heartbeat
        );
        assert_eq!(a.assignment().len(), 3);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Then it expires, and a gets everything after one rebalance (a heartbeat away).
    until("a owns everything", || {
        a.assignment().len() == PARTITIONS as usize && stable_with(&cluster, 1)
    })
    .await;
    let moved = cluster.uptime() - last_heartbeat;
    assert!(
        moved <= SESSION + HEARTBEAT * 3,
        "b's partitions moved {moved:?} after its last request"
    );
    let (_, now, _) = group_view(&cluster).expect("the group exists");
    assert_eq!(now, generation + 1, "one rebalance");
    a.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_crashed_member_s_partitions_move_after_its_session_times_out() {
    const PARTITIONS: i32 = 6;
    let cluster = cluster(PARTITIONS).await;
    append(&cluster, PARTITIONS, 50);
    let log = Shared::default();
    // Auto commit: b's last positions reach the coordinator every second.
    let setup = Setup {
        auto_commit: true,
        commit_on_revoke: false,
        per_record: Duration::from_millis(20),
        ..Setup::default()
    };
    let a = start(&cluster, "a", &log, &setup);
    let b = start(&cluster, "b", &log, &setup);
    settled(&cluster, &[&a, &b], PARTITIONS).await;
    until("b reads", || lock(&log).reads_of("b") >= 30).await;
    let b_partitions = b.assignment();

    // b crashes: its tasks stop, nothing is committed or sent any more.
    for reader in &b.readers {
        reader.abort();
    }
    let Member {
        consumer, readers, ..
    } = b;
    for reader in readers {
        let _ = reader.await;
    }
    let consumer = Arc::try_unwrap(consumer).expect("the readers are gone");
    drop(consumer);
    let crashed = Instant::now();
    let b_read: BTreeSet<(i32, i64)> = lock(&log)
        .reads
        .iter()
        .filter(|r| r.member == "b")
        .map(|r| (r.partition, r.offset))
        .collect();
    append(&cluster, PARTITIONS, 20);
    until("a owns everything", || {
        a.assignment().len() == PARTITIONS as usize
    })
    .await;
    assert!(
        crashed.elapsed() >= SESSION - HEARTBEAT * 2,
        "moved {:?} after the crash, before the session timeout",
        crashed.elapsed()
    );
    assert!(!sent_leave_group(&cluster, "b"), "b never left");
    until("everything is read", || {
        read_everything(&log, &cluster, PARTITIONS)
    })
    .await;
    // What b read after its last commit is read again by a; nothing else is.
    let again: BTreeSet<(i32, i64)> = duplicates(&log).into_iter().collect();
    assert!(
        again.is_subset(&b_read),
        "read twice, not by b first: {:?}",
        again.difference(&b_read).collect::<Vec<_>>()
    );
    assert!(
        again.iter().all(|(p, _)| b_partitions.contains(p)),
        "{again:?}"
    );
    a.close().await;
}

#[tokio::test(start_paused = true)]
async fn twenty_members_joining_at_once_each_get_their_share_and_read_everything_once() {
    const PARTITIONS: i32 = 40;
    const MEMBERS: usize = 20;
    let cluster = cluster(PARTITIONS).await;
    append(&cluster, PARTITIONS, 10);
    let log = Shared::default();
    // enable.auto.commit: positions are committed before partitions are revoked.
    let setup = Setup {
        auto_commit: true,
        commit_on_revoke: false,
        per_record: Duration::from_millis(5),
        ..Setup::default()
    };
    let members: Vec<Member> = (0..MEMBERS)
        .map(|i| start(&cluster, &format!("m{i:02}"), &log, &setup))
        .collect();
    let all: Vec<&Member> = members.iter().collect();
    settled(&cluster, &all, PARTITIONS).await;
    append(&cluster, PARTITIONS, 5);
    until("everything is read", || {
        read_everything(&log, &cluster, PARTITIONS)
    })
    .await;
    settled(&cluster, &all, PARTITIONS).await;
    let shares: HashMap<String, usize> = members
        .iter()
        .map(|m| (m.name.clone(), m.assignment().len()))
        .collect();
    assert!(
        shares.values().all(|n| *n == PARTITIONS as usize / MEMBERS),
        "{shares:?}"
    );
    {
        let log = lock(&log);
        for member in &members {
            log.check_reads_owned(&member.name, false);
        }
        assert!(log.errors.is_empty(), "{:?}", log.errors);
    }
    assert_eq!(duplicates(&log), Vec::<(i32, i64)>::new(), "read twice");
    for member in members {
        member.close().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_static_member_fenced_by_a_newer_instance_fails_fatally() {
    const PARTITIONS: i32 = 6;
    let cluster = cluster(PARTITIONS).await;
    append(&cluster, PARTITIONS, 20);
    let log = Shared::default();
    let setup = Setup {
        instance: Some("instance-a".into()),
        readers: 0,
        ..Setup::default()
    };
    let old = start(&cluster, "old", &log, &setup);
    // The old instance's application polls (its callbacks run in recv).
    let deadline = Instant::now() + BOUND;
    while old.assignment().len() != PARTITIONS as usize {
        assert!(
            Instant::now() < deadline,
            "the old instance never got its partitions"
        );
        let _ = tokio::time::timeout(Duration::from_millis(100), old.consumer.recv()).await;
    }
    // A second process with the same group.instance.id takes its place in the group.
    let new = start(
        &cluster,
        "new",
        &log,
        &Setup {
            instance: Some("instance-a".into()),
            ..Setup::default()
        },
    );
    until("the new instance owns everything", || {
        new.assignment().len() == PARTITIONS as usize && stable_with(&cluster, 1)
    })
    .await;
    // The old one learns at its next heartbeat: fatal, as Java's FencedInstanceIdException.
    let error = loop {
        assert!(Instant::now() < deadline, "the old instance was never told");
        match tokio::time::timeout(Duration::from_millis(100), old.consumer.recv()).await {
            Ok(Err(error)) => break error,
            Ok(Ok(None)) => panic!("closed"),
            Ok(Ok(Some(_))) | Err(_) => {}
        }
    };
    assert!(
        matches!(
            &error,
            Error::GroupFailed { code, .. } if *code == ErrorCode::FencedInstanceId
        ),
        "{error:?}"
    );
    assert!(error.is_fatal(), "{error:?}");
    let commit = within("commit", old.consumer.commit()).await;
    assert!(
        commit.is_err(),
        "a fenced member commits nothing: {commit:?}"
    );
    until("the new instance reads everything", || {
        read_everything(&log, &cluster, PARTITIONS)
    })
    .await;
    assert_eq!(group_view(&cluster).map(|v| v.2.len()), Some(1));
    old.close().await;
    new.close().await;
}

/// Reads until `read` holds `want` records, each of a topic matching `events-.*`, once.
async fn read_pattern(consumer: &Consumer, read: &mut BTreeSet<(String, i32, i64)>, want: usize) {
    let deadline = Instant::now() + BOUND;
    while read.len() < want {
        assert!(Instant::now() < deadline, "only {} records", read.len());
        match tokio::time::timeout(Duration::from_millis(100), consumer.recv()).await {
            Ok(Ok(Some(r))) => {
                assert!(r.topic.starts_with("events-"), "{}", r.topic);
                let key = (r.topic.to_string(), r.partition, r.offset);
                assert!(read.insert(key.clone()), "{key:?} read twice");
            }
            Ok(other) => panic!("{other:?}"),
            Err(_) => {}
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_pattern_subscription_follows_topics_created_later() {
    let cluster = cluster(1).await;
    cluster.create_topic("events-a", 2).expect("created");
    cluster.create_topic("other", 2).expect("created");
    append_to(&cluster, "events-a", 2, 10);
    append_to(&cluster, "other", 2, 10);
    let config = Config::new(cluster.bootstrap())
        .group_id(GROUP)
        .auto_offset_reset(OffsetReset::Earliest)
        .session_timeout(SESSION)
        .heartbeat_interval(HEARTBEAT)
        .set("metadata.max.age.ms", "2000")
        .expect("valid");
    let consumer = Consumer::builder(config)
        .connector(Arc::new(cluster.connector()))
        .seed(11)
        .build()
        .expect("consumer builds");
    consumer
        .subscribe_pattern("events-.*")
        .expect("a valid pattern");
    let mut read: BTreeSet<(String, i32, i64)> = BTreeSet::new();
    read_pattern(&consumer, &mut read, 20).await;
    // A topic created later, matching: the group rebalances and the member reads it too.
    cluster.create_topic("events-b", 3).expect("created");
    append_to(&cluster, "events-b", 3, 5);
    read_pattern(&consumer, &mut read, 35).await;
    let subscription: BTreeSet<String> = consumer.subscription().into_iter().collect();
    assert_eq!(
        subscription,
        ["events-a", "events-b"]
            .map(String::from)
            .into_iter()
            .collect()
    );
    assert_eq!(consumer.assignment().len(), 5);
    within("close", consumer.close()).await;
}

#[tokio::test(start_paused = true)]
async fn coordinator_errors_on_every_group_api_are_retried_or_rejoined_as_java_does() {
    const PARTITIONS: i32 = 6;
    let cluster = cluster(PARTITIONS).await;
    append(&cluster, PARTITIONS, 30);
    // Errors a coordinator answers while it moves or loads, on each API of the group, and
    // delays: the members find the coordinator again, retry or rejoin, and get there.
    for (api, action, times) in [
        (
            ApiKey::JoinGroup,
            Action::Error(ErrorCode::CoordinatorLoadInProgress),
            2,
        ),
        (ApiKey::JoinGroup, Action::Delay(Duration::from_secs(2)), 1),
        (
            ApiKey::SyncGroup,
            Action::Error(ErrorCode::NotCoordinator),
            1,
        ),
        (
            ApiKey::SyncGroup,
            Action::Error(ErrorCode::RebalanceInProgress),
            1,
        ),
        (
            ApiKey::Heartbeat,
            Action::Error(ErrorCode::CoordinatorNotAvailable),
            2,
        ),
        (
            ApiKey::Heartbeat,
            Action::Error(ErrorCode::RebalanceInProgress),
            1,
        ),
        (
            ApiKey::OffsetCommit,
            Action::Error(ErrorCode::NotCoordinator),
            1,
        ),
        (
            ApiKey::OffsetCommit,
            Action::Error(ErrorCode::CoordinatorLoadInProgress),
            1,
        ),
    ] {
        cluster.intercept(Interceptor::new(api, action).on_group(GROUP).times(times));
    }
    let log = Shared::default();
    let a = start(&cluster, "a", &log, &Setup::default());
    let b = start(&cluster, "b", &log, &Setup::default());
    until("everything is read", || {
        read_everything(&log, &cluster, PARTITIONS)
    })
    .await;
    settled(&cluster, &[&a, &b], PARTITIONS).await;
    // A synchronous commit goes through the commit faults left, if the revoke callbacks'
    // commits did not meet them all (retriable: retried until default.api.timeout.ms),
    // and what it committed is what was read.
    within("commit", a.consumer.commit())
        .await
        .expect("committed despite the coordinator's errors");
    assert_eq!(
        cluster.pending_interceptors(),
        0,
        "every fault was injected"
    );
    for p in a.assignment() {
        assert_eq!(
            committed(&cluster, p),
            a.consumer.position(&tp(p)),
            "partition {p}"
        );
    }
    {
        let log = lock(&log);
        log.check_reads_owned("a", false);
        log.check_reads_owned("b", false);
        assert!(
            log.errors.is_empty(),
            "nothing reached the application: {:?}",
            log.errors
        );
        assert!(
            log.commits.iter().all(|c| c.result.is_ok()),
            "the callbacks' commits were retried: {:?}",
            log.commits
        );
    }
    a.close().await;
    b.close().await;
}
