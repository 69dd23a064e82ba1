//! The lab's clients, and the nemesis that carries out the schedule.
//!
//! The idempotent workload: one idempotent producer (acks=all) sends a record a millisecond,
//! each with a value of its own (its number), while the nemesis injects the schedule's
//! faults and a consumer reads along. Once every send has an outcome and the last fault is
//! over, the cluster is healed (interceptors cleared, brokers started, leaders elected) and
//! a second consumer reads every partition from the start to its end. Everything the
//! clients were told goes into the [`History`]; the cluster's logs are used only to know
//! where the ends are.
//!
//! The transactional workload: a transactional producer ([`TRANSACTIONAL_ID`]) sends the
//! records in transactions of 1 to 40, and commits or (one in four, drawn from the seed)
//! aborts each; a commit that fails for a reason that requires it is aborted. A producer
//! that fails for good is replaced by a new instance of the same transactional id (which
//! fences it). The readers read with `read_committed`, and a third, after the faults,
//! without it (an acknowledged record of an aborted transaction is in the log all the same).
//!
//! The group workload: the idempotent workload's writes, read by three members of one
//! consumer group ([`GROUP`]) that subscribe to the topic and commit what they read every
//! 200 ms and when partitions are revoked; one member leaves a third of the way through
//! and a fourth joins at two thirds, so that partitions move besides the faults. After the
//! faults the members read on until together they have read every partition to its end.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use franzy::consumer::{CallbackFuture, ConsumerHandle, RebalanceListener};
use franzy::{
    Config, Consumer, DeliveryFuture, Offset, Persisted, Producer, ProducerRecord, TopicPartition,
};
use tokio::time::{sleep, sleep_until, timeout, timeout_at, Instant};

use super::history::{
    Group, GroupAction, GroupEvent, History, ProducerInfo, ReadEvent, Reader, RecordId, Send,
    SendOutcome, Transaction,
};
use super::schedule::{Fault, FaultAction, Schedule};
use super::{
    LabError, SplitMix64, Workload, FINAL_READ_BOUND, PARTITIONS, RECORD_INTERVAL, TOPIC,
    WALL_CLOCK_START_MS,
};
use crate::{Action, Cluster, Interceptor};

/// The transactional workload's `transactional.id`.
pub const TRANSACTIONAL_ID: &str = "lab-transactions";
/// The group workload's group.
pub const GROUP: &str = "lab-group";
/// Longest one transactional call (init, begin, commit, abort) may take, in virtual time.
const TRANSACTION_CALL_BOUND: Duration = Duration::from_secs(120);
/// How often a group member commits what it read.
const COMMIT_INTERVAL: Duration = Duration::from_millis(200);

/// Longest a `send` may wait for buffer space, and longest the deliveries may take
/// after the last send, in virtual time. Past them a send is unresolved (an anomaly).
const SEND_BOUND: Duration = Duration::from_secs(600);
const DELIVERY_BOUND: Duration = Duration::from_secs(600);
/// How long a reader waits for a record before looking at whether it is done.
const POLL: Duration = Duration::from_millis(100);

/// A workload's history, and whether the final reader got stuck.
pub(super) struct Outcome {
    pub(super) history: History,
    pub(super) stalled: bool,
}

/// The idempotent workload (see the module doc).
pub(super) async fn idempotent(
    cluster: &Cluster,
    schedule: &Schedule,
) -> Result<Outcome, LabError> {
    let seed = schedule.seed;
    let connector = Arc::new(cluster.connector());
    let producer = Producer::builder(producer_config(cluster)?)
        .connector(connector.clone())
        .seed(seed ^ 0x7072_6f64)
        .build()?;
    let live = Consumer::builder(consumer_config(cluster, "lab-live-reader")?)
        .connector(connector.clone())
        .seed(seed ^ 0x6c69_7665)
        .build()?;
    let partitions: Vec<TopicPartition> = (0..PARTITIONS)
        .map(|p| TopicPartition::new(TOPIC, p))
        .collect();
    live.assign(&partitions)?;
    for tp in &partitions {
        live.seek(tp, Offset::Beginning)?;
    }
    let start = Instant::now();
    let writing_done = Cell::new(false);
    let writes_and_faults = async {
        let (sends, ()) = tokio::join!(
            write(&producer, schedule.records),
            nemesis(cluster, schedule, start)
        );
        writing_done.set(true);
        sends
    };
    let (sends, live_events) = tokio::join!(writes_and_faults, read_along(&live, &writing_done));
    producer.close().await;
    live.close().await;
    heal(cluster).await;

    let last = Consumer::builder(consumer_config(cluster, "lab-final-reader")?)
        .connector(connector)
        .seed(seed ^ 0x6c61_7374)
        .build()?;
    last.assign(&partitions)?;
    for tp in &partitions {
        last.seek(tp, Offset::Beginning)?;
    }
    let (final_events, complete) = read_to_end(cluster, &last, &partitions).await;
    last.close().await;
    let history = History {
        producers: vec![ProducerInfo {
            name: "idempotent producer".into(),
            idempotent: true,
        }],
        sends,
        readers: vec![
            Reader {
                name: "reader during the faults".into(),
                read_committed: false,
                complete: false,
                events: live_events,
            },
            Reader {
                name: "reader after the faults".into(),
                read_committed: false,
                complete,
                events: final_events,
            },
        ],
        transactions: Vec::new(),
        groups: Vec::new(),
    };
    Ok(Outcome {
        history,
        stalled: !complete,
    })
}

/// The transactional workload (see the module doc).
pub(super) async fn transactional(
    cluster: &Cluster,
    schedule: &Schedule,
) -> Result<Outcome, LabError> {
    let seed = schedule.seed;
    let connector = Arc::new(cluster.connector());
    let live = Consumer::builder(read_committed(consumer_config(
        cluster,
        "lab-live-reader",
    )?)?)
    .connector(connector.clone())
    .seed(seed ^ 0x6c69_7665)
    .build()?;
    let partitions: Vec<TopicPartition> = (0..PARTITIONS)
        .map(|p| TopicPartition::new(TOPIC, p))
        .collect();
    live.assign(&partitions)?;
    for tp in &partitions {
        live.seek(tp, Offset::Beginning)?;
    }
    let start = Instant::now();
    let writing_done = Cell::new(false);
    let writes_and_faults = async {
        let (written, ()) = tokio::join!(
            write_transactions(cluster, &connector, schedule),
            nemesis(cluster, schedule, start)
        );
        writing_done.set(true);
        written
    };
    let (written, live_events) = tokio::join!(writes_and_faults, read_along(&live, &writing_done));
    let written = written?;
    live.close().await;
    heal(cluster).await;

    let mut readers = vec![Reader {
        name: "reader during the faults".into(),
        read_committed: true,
        complete: false,
        events: live_events,
    }];
    let mut stalled = false;
    for (name, committed, salt) in [
        ("reader after the faults", true, 0x6c61_7374),
        (
            "read_uncommitted reader after the faults",
            false,
            0x756e_636d,
        ),
    ] {
        let mut config = consumer_config(cluster, "lab-final-reader")?;
        if committed {
            config = read_committed(config)?;
        }
        let last = Consumer::builder(config)
            .connector(connector.clone())
            .seed(seed ^ salt)
            .build()?;
        last.assign(&partitions)?;
        for tp in &partitions {
            last.seek(tp, Offset::Beginning)?;
        }
        let (events, complete) = read_to_end(cluster, &last, &partitions).await;
        last.close().await;
        stalled |= !complete;
        readers.push(Reader {
            name: name.into(),
            read_committed: committed,
            complete,
            events,
        });
    }
    let history = History {
        producers: written.producers,
        sends: written.sends,
        readers,
        transactions: written.transactions,
        groups: Vec::new(),
    };
    Ok(Outcome { history, stalled })
}

/// The group workload (see the module doc).
pub(super) async fn group(cluster: &Cluster, schedule: &Schedule) -> Result<Outcome, LabError> {
    let seed = schedule.seed;
    let connector = Arc::new(cluster.connector());
    let producer = Producer::builder(producer_config(cluster)?)
        .connector(connector.clone())
        .seed(seed ^ 0x7072_6f64)
        .build()?;
    let log = GroupLog::default();
    let names = ["a", "b", "c", "d"];
    let mut members = Vec::with_capacity(names.len());
    for (index, name) in names.iter().enumerate() {
        let consumer = Consumer::builder(member_config(cluster, name)?)
            .connector(connector.clone())
            .seed(seed ^ 0x6d65_6d00 ^ index as u64)
            .rebalance_listener(Listener {
                member: index,
                log: log.clone(),
            })
            .build()?;
        members.push(consumer);
    }
    let window = super::write_window(schedule.records);
    let start = Instant::now();
    let writing_done = Cell::new(false);
    // Member c leaves a third of the way through; d joins at two thirds.
    let leaves_at = start + window / 3;
    let joins_at = start + window * 2 / 3;
    let everyone_done = Cell::new(false);
    let writes_and_faults = async {
        let (sends, ()) = tokio::join!(
            write(&producer, schedule.records),
            nemesis(cluster, schedule, start)
        );
        producer.close().await;
        heal(cluster).await;
        writing_done.set(true);
        sends
    };
    let read = async {
        let ends = async {
            // Once the writes are over and the cluster healed, the group reads on until it
            // has read every partition to its end.
            while !writing_done.get() {
                sleep(POLL).await;
            }
            let ends = log_ends(
                cluster,
                &(0..PARTITIONS)
                    .map(|p| TopicPartition::new(TOPIC, p))
                    .collect::<Vec<_>>(),
            );
            let deadline = Instant::now() + FINAL_READ_BOUND;
            let complete = loop {
                if log.read_to(&ends) {
                    break true;
                }
                if Instant::now() >= deadline {
                    break false;
                }
                sleep(POLL).await;
            };
            everyone_done.set(true);
            complete
        };
        let (complete, (), (), (), ()) = tokio::join!(
            ends,
            member(&members[0], 0, &log, None, None, &everyone_done),
            member(&members[1], 1, &log, None, None, &everyone_done),
            member(&members[2], 2, &log, None, Some(leaves_at), &everyone_done),
            member(&members[3], 3, &log, Some(joins_at), None, &everyone_done),
        );
        complete
    };
    let (sends, complete) = tokio::join!(writes_and_faults, read);
    for consumer in &members {
        consumer.close().await;
    }
    let events = std::mem::take(&mut *log.lock());
    let history = History {
        producers: vec![ProducerInfo {
            name: "idempotent producer".into(),
            idempotent: true,
        }],
        sends,
        readers: Vec::new(),
        transactions: Vec::new(),
        groups: vec![Group {
            name: GROUP.into(),
            members: names.iter().map(|n| (*n).to_string()).collect(),
            complete,
            events,
        }],
    };
    Ok(Outcome {
        history,
        stalled: !complete,
    })
}

/// What the transactional writes recorded.
struct Transactions {
    producers: Vec<ProducerInfo>,
    sends: Vec<Send>,
    transactions: Vec<Transaction>,
}

/// Sends the records in transactions, one every [`RECORD_INTERVAL`], committing or
/// aborting each (see the module doc).
async fn write_transactions(
    cluster: &Cluster,
    connector: &Arc<crate::InMemoryConnector>,
    schedule: &Schedule,
) -> Result<Transactions, LabError> {
    let mut rng = SplitMix64::new(schedule.seed ^ 0x0074_786e_5f6c_6162);
    let mut written = Transactions {
        producers: Vec::new(),
        sends: Vec::with_capacity(schedule.records),
        transactions: Vec::new(),
    };
    let mut producer: Option<Producer> = None;
    let mut number = 0usize;
    let mut next = Instant::now();
    let mut failed_inits = 0;
    while number < schedule.records {
        let current = match producer.take() {
            Some(current) => current,
            None => {
                let instance = written.producers.len();
                let candidate = Producer::builder(transactional_config(cluster)?)
                    .connector(connector.clone())
                    .seed(schedule.seed ^ 0x7478_6e00 ^ instance as u64)
                    .build()?;
                match timeout(TRANSACTION_CALL_BOUND, candidate.init_transactions()).await {
                    Ok(Ok(())) => {
                        written.producers.push(ProducerInfo {
                            name: format!("transactional producer #{instance}"),
                            idempotent: true,
                        });
                        candidate
                    }
                    _ => {
                        candidate.close().await;
                        failed_inits += 1;
                        if failed_inits > 20 {
                            // The rest is never sent: nothing to check about it.
                            break;
                        }
                        sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                }
            }
        };
        let producer_index = written.producers.len() - 1;
        if !matches!(
            timeout(TRANSACTION_CALL_BOUND, current.begin_transaction()).await,
            Ok(Ok(()))
        ) {
            current.close().await;
            continue;
        }
        let transaction = written.transactions.len();
        written.transactions.push(Transaction::Unknown);
        let size = 1 + rng.below(40) as usize;
        let abort = rng.below(4) == 0;
        let mut pending: Vec<(RecordId, Result<DeliveryFuture, SendOutcome>)> = Vec::new();
        for _ in 0..size.min(schedule.records - number) {
            let id = number as RecordId;
            let sent = match timeout(SEND_BOUND, current.send(record_of(id))).await {
                Ok(Ok(delivery)) => Ok(delivery),
                Ok(Err(error)) => Err(failure(error.persisted)),
                Err(_) => Err(SendOutcome::Unresolved),
            };
            pending.push((id, sent));
            number += 1;
            next += RECORD_INTERVAL;
            sleep_until(next).await;
        }
        let (ended, usable) = if abort {
            end_by_abort(&current).await
        } else {
            match timeout(TRANSACTION_CALL_BOUND, current.commit_transaction()).await {
                Ok(Ok(())) => (Transaction::Committed, true),
                Ok(Err(error)) if error.requires_abort() => end_by_abort(&current).await,
                // Fatal, or an outcome the producer cannot know.
                Ok(Err(error)) => (Transaction::Unknown, !error.is_fatal()),
                Err(_) => (Transaction::Unknown, false),
            }
        };
        written.transactions[transaction] = ended;
        let deadline = Instant::now() + DELIVERY_BOUND;
        for (id, sent) in pending {
            let outcome = match sent {
                Ok(delivery) => delivered(deadline, delivery).await,
                Err(outcome) => outcome,
            };
            written.sends.push(Send {
                producer: producer_index,
                id,
                transaction: Some(transaction),
                outcome,
            });
        }
        if usable {
            producer = Some(current);
        } else {
            current.close().await;
        }
    }
    if let Some(current) = producer {
        current.close().await;
    }
    Ok(written)
}

/// Aborts the transaction: how it ended, and whether the producer can go on.
async fn end_by_abort(producer: &Producer) -> (Transaction, bool) {
    match timeout(TRANSACTION_CALL_BOUND, producer.abort_transaction()).await {
        Ok(Ok(())) => (Transaction::Aborted, true),
        Ok(Err(error)) => (Transaction::Unknown, !error.is_fatal()),
        Err(_) => (Transaction::Unknown, false),
    }
}

/// What a send's delivery said, by `deadline`.
async fn delivered(deadline: Instant, delivery: DeliveryFuture) -> SendOutcome {
    match timeout_at(deadline, delivery).await {
        Ok(Ok(written)) => SendOutcome::Acked {
            partition: written.partition,
            offset: written.offset,
        },
        Ok(Err(error)) => failure(error.persisted),
        Err(_) => SendOutcome::Unresolved,
    }
}

/// A group's shared log: every member's events, in the order they happened.
#[derive(Clone, Default)]
struct GroupLog(Arc<Mutex<Vec<GroupEvent>>>);

impl GroupLog {
    fn lock(&self) -> MutexGuard<'_, Vec<GroupEvent>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn push(&self, member: usize, action: GroupAction) {
        self.lock().push(GroupEvent { member, action });
    }

    /// Whether the group has read every partition up to `ends` (one per partition).
    fn read_to(&self, ends: &[i64]) -> bool {
        let mut next = vec![0i64; ends.len()];
        for event in self.lock().iter() {
            if let GroupAction::Record {
                partition, offset, ..
            } = event.action
            {
                if let Some(n) = usize::try_from(partition)
                    .ok()
                    .and_then(|p| next.get_mut(p))
                {
                    *n = (*n).max(offset.saturating_add(1));
                }
            }
        }
        next.iter().zip(ends).all(|(n, end)| n >= end)
    }

    /// Records the commit of `positions` (what a member's commit takes).
    fn committed(&self, member: usize, positions: &[(i32, i64)]) {
        for &(partition, offset) in positions {
            self.push(member, GroupAction::Committed { partition, offset });
        }
    }
}

/// Records assignments and revocations, and commits what was read before partitions go.
struct Listener {
    member: usize,
    log: GroupLog,
}

impl RebalanceListener for Listener {
    fn on_partitions_revoked(
        &self,
        consumer: ConsumerHandle,
        partitions: Vec<TopicPartition>,
    ) -> CallbackFuture {
        let (member, log) = (self.member, self.log.clone());
        Box::pin(async move {
            let positions = positions(&consumer);
            if matches!(
                timeout(Duration::from_secs(30), consumer.commit()).await,
                Ok(Ok(()))
            ) {
                log.committed(member, &positions);
            }
            for tp in partitions {
                log.push(
                    member,
                    GroupAction::Revoked {
                        partition: tp.partition,
                    },
                );
            }
        })
    }

    fn on_partitions_assigned(
        &self,
        _consumer: ConsumerHandle,
        partitions: Vec<TopicPartition>,
    ) -> CallbackFuture {
        for tp in partitions {
            self.log.push(
                self.member,
                GroupAction::Assigned {
                    partition: tp.partition,
                },
            );
        }
        Box::pin(std::future::ready(()))
    }

    fn on_partitions_lost(
        &self,
        _consumer: ConsumerHandle,
        partitions: Vec<TopicPartition>,
    ) -> CallbackFuture {
        for tp in partitions {
            self.log.push(
                self.member,
                GroupAction::Revoked {
                    partition: tp.partition,
                },
            );
        }
        Box::pin(std::future::ready(()))
    }
}

/// A member's positions in its assigned partitions (what `commit` commits).
fn positions(consumer: &ConsumerHandle) -> Vec<(i32, i64)> {
    consumer
        .assignment()
        .iter()
        .filter_map(|tp| Some((tp.partition, consumer.position(tp)?)))
        .collect()
}

/// One member: subscribes at `joins_at` (or at once), reads and commits until
/// `leaves_at` (then closes) or until the group is done.
async fn member(
    consumer: &Consumer,
    index: usize,
    log: &GroupLog,
    joins_at: Option<Instant>,
    leaves_at: Option<Instant>,
    done: &Cell<bool>,
) {
    if let Some(at) = joins_at {
        sleep_until(at).await;
    }
    if consumer.subscribe([TOPIC]).is_err() {
        return;
    }
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let mut last_commit = Instant::now();
    while !done.get() {
        if leaves_at.is_some_and(|at| Instant::now() >= at) {
            break;
        }
        match timeout(POLL, consumer.recv()).await {
            Ok(Ok(Some(record))) => {
                log.push(
                    index,
                    GroupAction::Record {
                        partition: record.partition,
                        offset: record.offset,
                        id: id_of(record.value.as_deref()),
                    },
                );
                next.insert(record.partition, record.offset.saturating_add(1));
            }
            Ok(Ok(None)) => break,
            Ok(Err(error)) => {
                if let Some(tp) = error.partition() {
                    let to = next
                        .get(&tp.partition)
                        .map_or(Offset::Beginning, |&offset| Offset::At(offset));
                    if consumer.seek(tp, to).is_ok() {
                        log.push(
                            index,
                            GroupAction::Seek {
                                partition: tp.partition,
                            },
                        );
                    }
                }
            }
            Err(_) => {}
        }
        if Instant::now() >= last_commit + COMMIT_INTERVAL {
            last_commit = Instant::now();
            let handle = consumer.handle();
            let positions = positions(&handle);
            if matches!(
                timeout(Duration::from_secs(30), consumer.commit()).await,
                Ok(Ok(()))
            ) {
                log.committed(index, &positions);
            }
        }
    }
    consumer.close().await;
}

fn member_config(cluster: &Cluster, name: &str) -> Result<Config, franzy::Error> {
    consumer_config(cluster, &format!("lab-member-{name}"))?
        .set("group.id", GROUP)?
        .set("enable.auto.commit", "false")?
        .set("session.timeout.ms", "6000")?
        .set("heartbeat.interval.ms", "500")?
        .set("max.poll.interval.ms", "30000")
}

fn transactional_config(cluster: &Cluster) -> Result<Config, franzy::Error> {
    producer_config(cluster)?
        .set("transactional.id", TRANSACTIONAL_ID)?
        .set("transaction.timeout.ms", "10000")
}

fn read_committed(config: Config) -> Result<Config, franzy::Error> {
    config.set("isolation.level", "read_committed")
}

/// The workload's record number `id`.
fn record_of(id: RecordId) -> ProducerRecord {
    ProducerRecord::new(TOPIC)
        .with_key(format!("k{}", id % 61))
        .with_value(value_of(id))
        .with_timestamp(WALL_CLOCK_START_MS.saturating_add(id as i64))
}

fn producer_config(cluster: &Cluster) -> Result<Config, franzy::Error> {
    Config::new(cluster.bootstrap())
        .set("client.id", "lab-producer")?
        .set("acks", "all")?
        .set("enable.idempotence", "true")?
        .set("linger.ms", "5")?
        // Small: a request that is never answered must time out soon (NeverAnswer faults).
        .set("request.timeout.ms", "1000")?
        // Long enough to ride out every outage a schedule draws.
        .set("delivery.timeout.ms", "60000")?
        .set("retry.backoff.ms", "50")
}

fn consumer_config(cluster: &Cluster, name: &str) -> Result<Config, franzy::Error> {
    Config::new(cluster.bootstrap())
        .set("client.id", name)?
        .set("request.timeout.ms", "1000")?
        .set("fetch.max.wait.ms", "200")?
        .set("auto.offset.reset", "earliest")
}

/// The value of record `id`, and back.
fn value_of(id: RecordId) -> String {
    format!("r{id:07}")
}

fn id_of(value: Option<&[u8]>) -> Option<RecordId> {
    std::str::from_utf8(value?)
        .ok()?
        .strip_prefix('r')?
        .parse()
        .ok()
}

fn failure(persisted: Persisted) -> SendOutcome {
    match persisted {
        Persisted::No => SendOutcome::NotWritten,
        Persisted::Possibly => SendOutcome::MaybeWritten,
    }
}

/// Sends `records` records, one every [`RECORD_INTERVAL`], then waits for every outcome.
async fn write(producer: &Producer, records: usize) -> Vec<Send> {
    let mut pending = Vec::with_capacity(records);
    let mut next = Instant::now();
    for number in 0..records {
        let id = number as RecordId;
        let sent = match timeout(SEND_BOUND, producer.send(record_of(id))).await {
            Ok(Ok(delivery)) => Ok(delivery),
            Ok(Err(error)) => Err(failure(error.persisted)),
            Err(_) => Err(SendOutcome::Unresolved),
        };
        pending.push((id, sent));
        next += RECORD_INTERVAL;
        sleep_until(next).await;
    }
    let deadline = Instant::now() + DELIVERY_BOUND;
    let mut sends = Vec::with_capacity(records);
    for (id, sent) in pending {
        let outcome = match sent {
            Ok(delivery) => delivered(deadline, delivery).await,
            Err(outcome) => outcome,
        };
        sends.push(Send {
            producer: 0,
            id,
            transaction: None,
            outcome,
        });
    }
    sends
}

/// One thing the nemesis does.
enum Step {
    Stop(i32),
    Start(i32),
    Leader(i32, i32),
    ClearLeader(i32),
    RestoreLeader(i32),
    Intercept(Interceptor),
    Coordinator(i32),
}

/// Carries out the schedule, at its times after `start`.
async fn nemesis(cluster: &Cluster, schedule: &Schedule, start: Instant) {
    let mut steps: Vec<(Duration, Step)> = Vec::new();
    for timed in &schedule.faults {
        let at = timed.at;
        match &timed.fault {
            Fault::StopBroker { broker, down } => {
                steps.push((at, Step::Stop(*broker)));
                steps.push((at.saturating_add(*down), Step::Start(*broker)));
            }
            Fault::MoveLeader { partition, broker } => {
                steps.push((at, Step::Leader(*partition, *broker)));
            }
            Fault::Leaderless { partition, down } => {
                steps.push((at, Step::ClearLeader(*partition)));
                steps.push((at.saturating_add(*down), Step::RestoreLeader(*partition)));
            }
            Fault::MoveCoordinator { broker } => {
                steps.push((at, Step::Coordinator(*broker)));
            }
            Fault::Intercept {
                api,
                broker,
                partition,
                action,
                times,
            } => {
                let action = match *action {
                    FaultAction::Disconnect => Action::Disconnect,
                    FaultAction::DisconnectAfter => Action::DisconnectAfterHandling,
                    FaultAction::NeverAnswer => Action::NeverAnswer,
                    FaultAction::Error(code) => Action::Error(code),
                    FaultAction::Delay(delay) => Action::Delay(delay),
                };
                let mut interceptor = Interceptor::new(*api, action).times(*times);
                if let Some(broker) = broker {
                    interceptor = interceptor.on_broker(*broker);
                }
                if let Some(partition) = partition {
                    interceptor = interceptor.on_partition(TOPIC, *partition);
                }
                steps.push((at, Step::Intercept(interceptor)));
            }
        }
    }
    // Stable: steps at the same time run in schedule order.
    steps.sort_by_key(|(at, _)| *at);
    for (at, step) in steps {
        sleep_until(start + at).await;
        match step {
            Step::Stop(broker) => {
                let _ = cluster.stop_broker(broker);
            }
            Step::Start(broker) => {
                let _ = cluster.start_broker(broker).await;
            }
            Step::Leader(partition, broker) => {
                let _ = cluster.with_state(|s| s.set_leader(TOPIC, partition, broker));
            }
            Step::ClearLeader(partition) => {
                let _ = cluster.with_state(|s| s.clear_leader(TOPIC, partition));
            }
            Step::RestoreLeader(partition) => restore_leader(cluster, partition),
            Step::Intercept(interceptor) => cluster.intercept(interceptor),
            Step::Coordinator(broker) => {
                // Refused when the broker is down or no replica: the fault does nothing.
                let _ = match schedule.workload {
                    Workload::Idempotent => Ok(()),
                    Workload::Transactional => {
                        cluster.move_transaction_coordinator(TRANSACTIONAL_ID, broker)
                    }
                    Workload::Group => cluster.move_group_coordinator(GROUP, broker),
                };
            }
        }
    }
}

/// Gives `partition` a leader if it has none: its first live replica.
fn restore_leader(cluster: &Cluster, partition: i32) {
    cluster.with_state(|s| {
        let candidate = s.partition(TOPIC, partition).and_then(|p| {
            (p.leader() == -1)
                .then(|| p.replicas().iter().copied().find(|&b| s.is_broker_up(b)))
                .flatten()
        });
        if let Some(broker) = candidate {
            let _ = s.set_leader(TOPIC, partition, broker);
        }
    });
}

/// Ends every fault: interceptors cleared, every broker up, every partition led.
async fn heal(cluster: &Cluster) {
    cluster.clear_interceptors();
    for broker in cluster.broker_ids() {
        let _ = cluster.start_broker(broker).await;
    }
    for partition in 0..PARTITIONS {
        restore_leader(cluster, partition);
    }
}

/// What a reader does with one answer of `recv`: records are recorded; a partition error
/// makes it seek past what it has read (the partition stops until a seek), and that is
/// recorded too. False when the consumer is closed.
fn take(
    consumer: &Consumer,
    answer: Result<Option<franzy::ConsumerRecord>, franzy::Error>,
    events: &mut Vec<ReadEvent>,
    next: &mut BTreeMap<i32, i64>,
) -> bool {
    match answer {
        Ok(Some(record)) => {
            events.push(ReadEvent::Record {
                partition: record.partition,
                offset: record.offset,
                id: id_of(record.value.as_deref()),
            });
            next.insert(record.partition, record.offset.saturating_add(1));
            true
        }
        Ok(None) => false,
        Err(error) => {
            if let Some(tp) = error.partition() {
                let to = next
                    .get(&tp.partition)
                    .map_or(Offset::Beginning, |&offset| Offset::At(offset));
                if consumer.seek(tp, to).is_ok() {
                    events.push(ReadEvent::Seek {
                        partition: tp.partition,
                    });
                }
            }
            true
        }
    }
}

/// Reads while the writes and faults go on.
async fn read_along(consumer: &Consumer, done: &Cell<bool>) -> Vec<ReadEvent> {
    let mut events = Vec::new();
    let mut next = BTreeMap::new();
    while !done.get() {
        if let Ok(answer) = timeout(POLL, consumer.recv()).await {
            if !take(consumer, answer, &mut events, &mut next) {
                break;
            }
        }
    }
    events
}

/// Each partition's end (high watermark) as the cluster has it now.
fn log_ends(cluster: &Cluster, partitions: &[TopicPartition]) -> Vec<i64> {
    cluster.with_state(|s| {
        partitions
            .iter()
            .map(|tp| {
                s.partition_log(TOPIC, tp.partition)
                    .map_or(0, |log| log.high_watermark())
            })
            .collect()
    })
}

/// Reads every partition to its end as the healed cluster has it; false if that took
/// longer than [`FINAL_READ_BOUND`] of virtual time.
async fn read_to_end(
    cluster: &Cluster,
    consumer: &Consumer,
    partitions: &[TopicPartition],
) -> (Vec<ReadEvent>, bool) {
    let ends = log_ends(cluster, partitions);
    let deadline = Instant::now() + FINAL_READ_BOUND;
    let mut events = Vec::new();
    let mut next = BTreeMap::new();
    loop {
        let at_end = partitions
            .iter()
            .zip(&ends)
            .all(|(tp, &end)| consumer.position(tp).is_some_and(|p| p >= end));
        if at_end {
            return (events, true);
        }
        let now = Instant::now();
        if now >= deadline {
            return (events, false);
        }
        if let Ok(answer) = timeout_at((now + POLL).min(deadline), consumer.recv()).await {
            if !take(consumer, answer, &mut events, &mut next) {
                return (events, false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_carry_their_id() {
        for id in [0, 7, 4999, 1_234_567, 99_999_999] {
            assert_eq!(id_of(Some(value_of(id).as_bytes())), Some(id));
        }
        assert_eq!(id_of(Some(b"x12")), None);
        assert_eq!(id_of(None), None);
    }
}
