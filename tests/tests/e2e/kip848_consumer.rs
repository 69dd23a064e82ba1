//! franzy's consumer with `group.protocol=consumer` (KIP-848) against the harness's
//! consumer group coordinator, in memory under a paused clock: members joining and leaving
//! while records flow, a member fenced when its session expires on the cluster clock, the
//! coordinator moving, a static member's temporary leave (epoch -2) and its return, and a
//! fatal error (an unknown server-side assignor) reaching the caller. The same
//! subscribe / recv / commit / callback API as the classic tests in `groups.rs`.
//!
//! Each record's value names its partition and offset, so that every test checks each
//! record was read, and how many times.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use franzy::consumer::{CallbackFuture, ConsumerHandle, RebalanceListener};
use franzy::proto::{ApiKey, ErrorCode, RequestKind};
use franzy::{Config, Consumer, Error, GroupProtocol, OffsetReset, TopicPartition};
use franzy_harness::cluster::groups::consumer::ConsumerGroupState;
use franzy_harness::{Action, Cluster, Interceptor};
use franzy_tests::init_tracing;

use crate::groups::{until, within};
use tokio::task::JoinHandle;
use tokio::time::Instant;

const TOPIC: &str = "orders";
const GROUP: &str = "orders-kip848";
const PARTITIONS: i32 = 6;
const SESSION: Duration = Duration::from_secs(10);
const HEARTBEAT: Duration = Duration::from_secs(1);

async fn cluster() -> Cluster {
    init_tracing();
    Cluster::builder()
        .brokers(3)
        .topic(TOPIC, PARTITIONS)
        .in_memory()
        .seed(5)
        .consumer_group_session_timeout(SESSION)
        .consumer_group_heartbeat_interval(HEARTBEAT)
        .build()
        .await
        .expect("cluster starts")
}

/// Appends `n` records to every partition; values are `partition:offset`.
fn append(cluster: &Cluster, n: usize) {
    crate::groups::append_to(cluster, TOPIC, PARTITIONS, n);
}

/// Appends `n` records to every partition every 200 ms for `how_long` (virtual time).
async fn feed(cluster: &Cluster, n: usize, how_long: Duration) {
    let stop = Instant::now() + how_long;
    while Instant::now() < stop {
        append(cluster, n);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Revoked(Vec<i32>),
    Assigned(Vec<i32>),
    Lost(Vec<i32>),
}

#[derive(Default)]
struct Log {
    steps: Vec<(String, Step)>,
    /// (member, partition, offset) of each record handed out.
    reads: Vec<(String, i32, i64)>,
    errors: Vec<(String, String)>,
    /// Commits made by revoke callbacks that failed.
    failed_commits: Vec<String>,
}

type Shared = Arc<Mutex<Log>>;

fn lock(log: &Shared) -> MutexGuard<'_, Log> {
    log.lock().unwrap_or_else(|p| p.into_inner())
}

impl Log {
    fn counts(&self) -> BTreeMap<(i32, i64), usize> {
        let mut counts = BTreeMap::new();
        for (_, partition, offset) in &self.reads {
            *counts.entry((*partition, *offset)).or_default() += 1;
        }
        counts
    }

    fn duplicates(&self) -> BTreeSet<(i32, i64)> {
        self.counts()
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(r, _)| r)
            .collect()
    }

    fn steps_of(&self, member: &str) -> Vec<Step> {
        self.steps
            .iter()
            .filter(|(m, _)| m == member)
            .map(|(_, s)| s.clone())
            .collect()
    }
}

fn partitions_of(tps: &[TopicPartition]) -> Vec<i32> {
    let mut list: Vec<i32> = tps.iter().map(|tp| tp.partition).collect();
    list.sort_unstable();
    list
}

/// Every record of the topic, by (partition, offset).
fn all_records(cluster: &Cluster) -> BTreeSet<(i32, i64)> {
    (0..PARTITIONS)
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

fn read_everything(log: &Shared, cluster: &Cluster) -> bool {
    let counts = lock(log).counts();
    all_records(cluster).iter().all(|r| counts.contains_key(r))
}

/// Commits the consumed positions in `on_partitions_revoked`, waiting for the answer, as
/// the classic tests do: the next owner starts exactly where this one stopped.
struct Listener {
    name: String,
    log: Shared,
}

impl RebalanceListener for Listener {
    fn on_partitions_revoked(
        &self,
        consumer: ConsumerHandle,
        partitions: Vec<TopicPartition>,
    ) -> CallbackFuture {
        let (name, log) = (self.name.clone(), self.log.clone());
        Box::pin(async move {
            lock(&log)
                .steps
                .push((name.clone(), Step::Revoked(partitions_of(&partitions))));
            if let Err(error) = consumer.commit().await {
                lock(&log).failed_commits.push(format!("{name}: {error}"));
            }
        })
    }

    fn on_partitions_assigned(
        &self,
        _consumer: ConsumerHandle,
        partitions: Vec<TopicPartition>,
    ) -> CallbackFuture {
        let (name, log) = (self.name.clone(), self.log.clone());
        Box::pin(async move {
            lock(&log)
                .steps
                .push((name, Step::Assigned(partitions_of(&partitions))));
        })
    }

    fn on_partitions_lost(
        &self,
        _consumer: ConsumerHandle,
        partitions: Vec<TopicPartition>,
    ) -> CallbackFuture {
        let (name, log) = (self.name.clone(), self.log.clone());
        Box::pin(async move {
            lock(&log)
                .steps
                .push((name, Step::Lost(partitions_of(&partitions))));
        })
    }
}

struct Member {
    consumer: Arc<Consumer>,
    reader: JoinHandle<()>,
}

impl Member {
    fn assignment(&self) -> Vec<i32> {
        partitions_of(&self.consumer.assignment())
    }

    fn epoch(&self) -> i32 {
        self.consumer
            .consumer_group_metadata()
            .map_or(-1, |m| m.generation_id)
    }

    fn member_id(&self) -> String {
        self.consumer
            .consumer_group_metadata()
            .map(|m| m.member_id)
            .unwrap_or_default()
    }

    async fn close(self) {
        within("close", self.consumer.close()).await;
        within("the reader ends once closed", self.reader)
            .await
            .expect("reader task");
    }
}

/// The only change from a classic member: `group.protocol=consumer` (and no
/// session/heartbeat/assignor keys, which the broker decides).
fn config(cluster: &Cluster, name: &str) -> Config {
    Config::new(cluster.bootstrap())
        .client_id(name.to_string())
        .group_id(GROUP)
        .group_protocol(GroupProtocol::Consumer)
        .auto_offset_reset(OffsetReset::Earliest)
        .enable_auto_commit(false)
}

fn start_with(cluster: &Cluster, name: &str, log: &Shared, config: Config) -> Member {
    let consumer = Arc::new(
        Consumer::builder(config)
            .connector(Arc::new(cluster.connector()))
            .seed(name.bytes().map(u64::from).sum())
            .rebalance_listener(Listener {
                name: name.to_string(),
                log: log.clone(),
            })
            .build()
            .expect("consumer builds"),
    );
    consumer.subscribe([TOPIC]).expect("subscribe");
    let reader = tokio::spawn(read(consumer.clone(), name.to_string(), log.clone()));
    Member { consumer, reader }
}

fn start(cluster: &Cluster, name: &str, log: &Shared) -> Member {
    start_with(cluster, name, log, config(cluster, name))
}

async fn read(consumer: Arc<Consumer>, name: String, log: Shared) {
    loop {
        match consumer.recv().await {
            Ok(Some(record)) => {
                lock(&log)
                    .reads
                    .push((name.clone(), record.partition, record.offset));
            }
            Ok(None) => return,
            Err(error) => {
                lock(&log).errors.push((name.clone(), error.to_string()));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The consumer group as the coordinator has it: state, group epoch, member ids.
fn group_view(cluster: &Cluster) -> Option<(ConsumerGroupState, i32, BTreeSet<String>)> {
    cluster.with_state(|s| {
        s.groups()
            .group(GROUP)
            .and_then(|g| g.as_consumer())
            .map(|g| {
                (
                    g.state(),
                    g.group_epoch(),
                    g.members().map(|m| m.member_id.to_string()).collect(),
                )
            })
    })
}

/// The group is stable with exactly `members`, whose assignments are disjoint and cover
/// the topic, each member at the group's epoch.
async fn settled(cluster: &Cluster, members: &[&Member]) {
    until(
        "the group is stable and its members split the topic",
        || {
            let Some((ConsumerGroupState::Stable, epoch, ids)) = group_view(cluster) else {
                return false;
            };
            let mut seen = BTreeSet::new();
            let disjoint = members
                .iter()
                .flat_map(|m| m.assignment())
                .all(|p| seen.insert(p));
            ids.len() == members.len()
                && members
                    .iter()
                    .all(|m| ids.contains(&m.member_id()) && m.epoch() == epoch)
                && disjoint
                && seen.len() == PARTITIONS as usize
        },
    )
    .await;
}

/// Each ConsumerGroupHeartbeat the cluster receives: member id, epoch, instance id.
type Beats = Arc<Mutex<Vec<(String, i32, Option<String>)>>>;

fn lock_beats(beats: &Beats) -> MutexGuard<'_, Vec<(String, i32, Option<String>)>> {
    beats.lock().unwrap_or_else(|p| p.into_inner())
}

/// Records every heartbeat's member id, epoch and instance id (an interceptor that never
/// acts).
fn spy_heartbeats(cluster: &Cluster) -> Beats {
    let beats = Beats::default();
    let spy = beats.clone();
    cluster.intercept(
        Interceptor::new(
            ApiKey::ConsumerGroupHeartbeat,
            Action::Error(ErrorCode::UnknownServerError),
        )
        .when(move |request| {
            if let RequestKind::ConsumerGroupHeartbeat(h) = request {
                lock_beats(&spy).push((
                    h.member_id.to_string(),
                    h.member_epoch,
                    h.instance_id.as_ref().map(|i| i.to_string()),
                ));
            }
            false
        })
        .keep(),
    );
    beats
}

#[tokio::test(start_paused = true)]
async fn members_joining_and_leaving_while_records_flow_lose_and_repeat_nothing() {
    let cluster = cluster().await;
    append(&cluster, 30);
    let beats = spy_heartbeats(&cluster);
    let log = Shared::default();
    let a = start(&cluster, "a", &log);
    let b = start(&cluster, "b", &log);
    settled(&cluster, &[&a, &b]).await;
    assert_eq!(a.assignment().len() + b.assignment().len(), 6);
    let b_id = b.member_id();
    feed(&cluster, 5, Duration::from_secs(3)).await;
    // A third member joins while records flow: partitions move only after their owner
    // revoked them (and committed, in its callback).
    let c = start(&cluster, "c", &log);
    tokio::join!(feed(&cluster, 5, Duration::from_secs(5)), async {
        settled(&cluster, &[&a, &b, &c]).await
    });
    assert_eq!(c.assignment().len(), 2, "the uniform assignor balances");
    // b leaves (revoking with a commit, then epoch -1) while records flow.
    let leaving = b.close();
    let ((), ()) = tokio::join!(leaving, feed(&cluster, 5, Duration::from_secs(3)));
    settled(&cluster, &[&a, &c]).await;
    feed(&cluster, 5, Duration::from_secs(2)).await;
    until("everything is read", || read_everything(&log, &cluster)).await;
    {
        let log = lock(&log);
        assert!(log.errors.is_empty(), "{:?}", log.errors);
        assert!(log.failed_commits.is_empty(), "{:?}", log.failed_commits);
        // Revocations committed before their partitions moved: nothing read twice.
        assert_eq!(log.duplicates(), BTreeSet::new());
        // Incremental: a revocation names only what moves; nobody lost anything.
        for (member, step) in &log.steps {
            assert!(!matches!(step, Step::Lost(_)), "{member}: {step:?}");
        }
        assert!(log
            .steps_of("a")
            .iter()
            .any(|s| matches!(s, Step::Revoked(p) if !p.is_empty())));
    }
    // b sent a leave heartbeat (epoch -1), and nobody a JoinGroup or LeaveGroup.
    let b_epochs: Vec<i32> = lock_beats(&beats)
        .iter()
        .filter(|(member, _, _)| *member == b_id)
        .map(|(_, epoch, _)| *epoch)
        .collect();
    assert_eq!(b_epochs.first(), Some(&0), "b joined with epoch 0");
    assert_eq!(
        b_epochs.last(),
        Some(&-1),
        "b left with epoch -1: {b_epochs:?}"
    );
    assert!(!cluster
        .requests()
        .iter()
        .any(|r| matches!(r.api_key, ApiKey::JoinGroup | ApiKey::LeaveGroup)));
    a.close().await;
    c.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_member_fenced_by_its_session_loses_its_partitions_and_rejoins() {
    let cluster = cluster().await;
    append(&cluster, 20);
    let beats = spy_heartbeats(&cluster);
    let log = Shared::default();
    let a = start(&cluster, "a", &log);
    let b = start(&cluster, "b", &log);
    settled(&cluster, &[&a, &b]).await;
    let b_id = b.member_id();
    let b_had = b.assignment();
    // b's next heartbeat is held past its session (10 s on the cluster clock): the
    // coordinator fences it and gives its partitions to a; the held heartbeat is then
    // answered UNKNOWN_MEMBER_ID.
    let id = b_id.clone();
    cluster.intercept(
        Interceptor::new(
            ApiKey::ConsumerGroupHeartbeat,
            Action::Delay(SESSION + Duration::from_secs(3)),
        )
        .when(move |request| {
            matches!(request, RequestKind::ConsumerGroupHeartbeat(h)
                if h.member_id.as_str() == id && h.member_epoch > 0)
        })
        .times(1),
    );
    let held = Instant::now();
    feed(&cluster, 3, Duration::from_secs(4)).await;
    until("a owns everything", || a.assignment().len() == 6).await;
    assert!(
        held.elapsed() >= SESSION - HEARTBEAT * 2,
        "moved {:?} after b went quiet, before its session ended",
        held.elapsed()
    );
    // b lost its partitions (on_partitions_lost), then joined again with epoch 0 under
    // the same member id (Java 4.x), and the group split again.
    until("b lost its partitions", || {
        lock(&log)
            .steps_of("b")
            .contains(&Step::Lost(b_had.clone()))
    })
    .await;
    settled(&cluster, &[&a, &b]).await;
    assert_eq!(b.member_id(), b_id);
    let b_epochs: Vec<i32> = lock_beats(&beats)
        .iter()
        .filter(|(member, _, _)| *member == b_id)
        .map(|(_, epoch, _)| *epoch)
        .collect();
    assert_eq!(
        b_epochs.iter().filter(|e| **e == 0).count(),
        2,
        "joined twice under one id: {b_epochs:?}"
    );
    feed(&cluster, 3, Duration::from_secs(2)).await;
    until("everything is read", || read_everything(&log, &cluster)).await;
    // At least once: only what b read of its partitions after its last commit can be
    // read again (no commit was made: b's revoke callback never ran, it lost them).
    {
        let log = lock(&log);
        let b_read: BTreeSet<(i32, i64)> = log
            .reads
            .iter()
            .filter(|(m, _, _)| m == "b")
            .map(|(_, p, o)| (*p, *o))
            .collect();
        let again = log.duplicates();
        assert!(
            again.is_subset(&b_read),
            "read twice, not by b first: {:?}",
            again.difference(&b_read).collect::<Vec<_>>()
        );
        assert!(log.errors.is_empty(), "{:?}", log.errors);
    }
    a.close().await;
    b.close().await;
}

#[tokio::test(start_paused = true)]
async fn the_coordinator_moving_loses_and_repeats_nothing() {
    let cluster = cluster().await;
    append(&cluster, 20);
    let log = Shared::default();
    let a = start(&cluster, "a", &log);
    let b = start(&cluster, "b", &log);
    settled(&cluster, &[&a, &b]).await;
    let epochs = (a.epoch(), b.epoch());
    let from = cluster.group_coordinator(GROUP).expect("a coordinator");
    let to = (from + 1) % 3;
    cluster
        .move_group_coordinator(GROUP, to)
        .expect("the coordinator moves");
    feed(&cluster, 3, Duration::from_secs(5)).await;
    // A third member joins through the new coordinator, and the others follow it there.
    let c = start(&cluster, "c", &log);
    settled(&cluster, &[&a, &b, &c]).await;
    assert_eq!(cluster.group_coordinator(GROUP), Some(to));
    feed(&cluster, 3, Duration::from_secs(2)).await;
    until("everything is read", || read_everything(&log, &cluster)).await;
    {
        let log = lock(&log);
        assert_eq!(log.duplicates(), BTreeSet::new());
        assert!(log.errors.is_empty(), "{:?}", log.errors);
        assert!(log.failed_commits.is_empty(), "{:?}", log.failed_commits);
        for (member, step) in &log.steps {
            assert!(!matches!(step, Step::Lost(_)), "{member}: {step:?}");
        }
    }
    // The members kept their membership across the move (no fencing, epochs only grew).
    assert!(a.epoch() >= epochs.0 && b.epoch() >= epochs.1);
    // Heartbeats reached the new coordinator.
    assert!(cluster
        .requests()
        .iter()
        .any(|r| r.api_key == ApiKey::ConsumerGroupHeartbeat && r.broker_id == to));
    a.close().await;
    b.close().await;
    c.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_static_member_s_temporary_leave_keeps_its_partitions_for_its_return() {
    let cluster = cluster().await;
    append(&cluster, 20);
    let beats = spy_heartbeats(&cluster);
    let log = Shared::default();
    let static_config = |name: &str| config(&cluster, name).group_instance_id("pod-1");
    let a = start_with(&cluster, "a", &log, static_config("a"));
    let b = start(&cluster, "b", &log);
    settled(&cluster, &[&a, &b]).await;
    let a_had = a.assignment();
    let b_had = b.assignment();
    let b_steps = lock(&log).steps_of("b").len();
    // a closes: it revokes (committing), then leaves with epoch -2, a temporary leave.
    a.close().await;
    let a_epochs: Vec<(i32, Option<String>)> = lock_beats(&beats)
        .iter()
        .filter(|(_, _, instance)| instance.as_deref() == Some("pod-1"))
        .map(|(_, epoch, instance)| (*epoch, instance.clone()))
        .collect();
    assert_eq!(
        a_epochs.last(),
        Some(&(-2, Some("pod-1".to_string()))),
        "{a_epochs:?}"
    );
    feed(&cluster, 3, Duration::from_secs(4)).await;
    // Within the session, nothing moves to b.
    assert_eq!(b.assignment(), b_had);
    // The same instance comes back (a new process, a new member id) and gets a's
    // partitions back without b rebalancing.
    let back = start_with(&cluster, "a-again", &log, static_config("a-again"));
    until("the static member is back with its partitions", || {
        back.assignment() == a_had
    })
    .await;
    feed(&cluster, 3, Duration::from_secs(2)).await;
    until("everything is read", || read_everything(&log, &cluster)).await;
    {
        let log = lock(&log);
        assert_eq!(log.steps_of("b").len(), b_steps, "b never rebalanced");
        assert_eq!(log.duplicates(), BTreeSet::new());
        assert!(log.errors.is_empty(), "{:?}", log.errors);
    }
    assert_eq!(b.assignment(), b_had);
    back.close().await;
    b.close().await;
}

#[tokio::test(start_paused = true)]
async fn an_unknown_server_assignor_fails_the_consumer_with_a_clear_error() {
    let cluster = cluster().await;
    let config = config(&cluster, "x")
        .set("group.remote.assignor", "nonsense")
        .expect("any name is taken");
    let consumer = Consumer::builder(config)
        .connector(Arc::new(cluster.connector()))
        .build()
        .expect("consumer builds");
    consumer.subscribe([TOPIC]).expect("subscribe");
    let error = within("recv reports the error", consumer.recv())
        .await
        .expect_err("a fatal group error");
    assert!(
        matches!(
            &error,
            Error::GroupFailed {
                code: ErrorCode::UnsupportedAssignor,
                ..
            }
        ),
        "{error}"
    );
    assert!(error.is_fatal(), "{error}");
    // Every later call says the same; nothing hangs.
    let again = within("recv again", consumer.recv()).await;
    assert!(
        matches!(
            again,
            Err(Error::GroupFailed {
                code: ErrorCode::UnsupportedAssignor,
                ..
            })
        ),
        "{again:?}"
    );
    let commit = within("commit", consumer.commit()).await;
    assert!(commit.is_err(), "{commit:?}");
    within("close", consumer.close()).await;
}
