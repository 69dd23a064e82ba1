//! The lab's clients, and the nemesis that carries out the schedule.
//!
//! The idempotent workload: one idempotent producer (acks=all) sends a record a millisecond,
//! each with a value of its own (its number), while the nemesis injects the schedule's
//! faults and a consumer reads along. Once every send has an outcome and the last fault is
//! over, the cluster is healed (interceptors cleared, brokers started, leaders elected) and
//! a second consumer reads every partition from the start to its end. Everything the
//! clients were told goes into the [`History`]; the cluster's logs are used only to know
//! where the ends are.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use franzy::{Config, Consumer, Offset, Persisted, Producer, ProducerRecord, TopicPartition};
use tokio::time::{sleep_until, timeout, timeout_at, Instant};

use super::history::{History, ProducerInfo, ReadEvent, Reader, RecordId, Send, SendOutcome};
use super::schedule::{Fault, FaultAction, Schedule};
use super::{LabError, FINAL_READ_BOUND, PARTITIONS, RECORD_INTERVAL, TOPIC, WALL_CLOCK_START_MS};
use crate::{Action, Cluster, Interceptor};

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
    };
    Ok(Outcome {
        history,
        stalled: !complete,
    })
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
        let record = ProducerRecord::new(TOPIC)
            .with_key(format!("k{}", id % 61))
            .with_value(value_of(id))
            .with_timestamp(WALL_CLOCK_START_MS.saturating_add(number as i64));
        let sent = match timeout(SEND_BOUND, producer.send(record)).await {
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
            Ok(delivery) => match timeout_at(deadline, delivery).await {
                Ok(Ok(written)) => SendOutcome::Acked {
                    partition: written.partition,
                    offset: written.offset,
                },
                Ok(Err(error)) => failure(error.persisted),
                Err(_) => SendOutcome::Unresolved,
            },
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

/// Reads every partition to its end as the healed cluster has it; false if that took
/// longer than [`FINAL_READ_BOUND`] of virtual time.
async fn read_to_end(
    cluster: &Cluster,
    consumer: &Consumer,
    partitions: &[TopicPartition],
) -> (Vec<ReadEvent>, bool) {
    let ends: Vec<i64> = cluster.with_state(|s| {
        partitions
            .iter()
            .map(|tp| {
                s.partition_log(TOPIC, tp.partition)
                    .map_or(0, |log| log.high_watermark())
            })
            .collect()
    });
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
