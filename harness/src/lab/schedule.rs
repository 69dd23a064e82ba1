//! Fault schedules: what the lab does to the cluster, and when (in virtual time since the
//! run started). A schedule is drawn from a seed ([`Schedule::generate`]), printed in a small
//! line format that can be saved and edited ([`Schedule`]'s `Display`), and read back
//! ([`Schedule::parse`]), so that a failing run can be replayed, and shrunk, by hand.
//!
//! ```text
//! # franzy lab schedule
//! seed 7
//! records 5000
//! workload idempotent
//! at 812ms stop broker=1 for=2400ms
//! at 1400ms leader partition=3 broker=2
//! at 2000ms leaderless partition=4 for=700ms
//! at 2500ms fault api=Produce broker=0 action=disconnect times=2
//! at 2600ms fault api=Fetch partition=1 action=error:NotLeaderOrFollower times=3
//! at 3000ms fault api=Produce action=delay:1500ms times=1
//! ```
//!
//! `#` starts a comment; blank lines are ignored. Actions: `disconnect` (before handling),
//! `disconnect-after` (after handling: the client cannot tell whether it was applied),
//! `never-answer`, `error:NAME` (a Kafka error name as in `NotLeaderOrFollower`, or its
//! number; partition-narrowed errors fail just that partition) and `delay:DURATION`.

use std::fmt;
use std::time::Duration;

use franzy::proto::{ApiKey, ErrorCode};

use super::{SplitMix64, Workload, PARTITIONS};

/// The brokers of a lab cluster.
pub const BROKERS: i32 = 3;

/// A fault schedule and the run it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// The seed of the clients and the cluster (and of the faults, when drawn).
    pub seed: u64,
    /// Records the workload writes.
    pub records: usize,
    /// What the clients do.
    pub workload: Workload,
    /// The faults, in time order.
    pub faults: Vec<Timed>,
}

/// A fault and when it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Timed {
    /// Virtual time since the run started.
    pub at: Duration,
    /// What happens.
    pub fault: Fault,
}

/// One fault.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Broker `broker` stops (connections drop, leadership moves), and starts again after
    /// `down`.
    StopBroker {
        /// The broker.
        broker: i32,
        /// How long it stays down.
        down: Duration,
    },
    /// Broker `broker` becomes the leader of `partition` (in a new epoch), if it is up.
    MoveLeader {
        /// The partition of the lab's topic.
        partition: i32,
        /// The new leader.
        broker: i32,
    },
    /// `partition` has no leader for `down`, then the first live replica leads.
    Leaderless {
        /// The partition of the lab's topic.
        partition: i32,
        /// How long it has none.
        down: Duration,
    },
    /// An interceptor for the next `times` matching requests.
    Intercept {
        /// The API.
        api: ApiKey,
        /// Only on this broker.
        broker: Option<i32>,
        /// Only requests naming this partition of the lab's topic.
        partition: Option<i32>,
        /// What it does.
        action: FaultAction,
        /// How many requests it applies to.
        times: u64,
    },
}

/// What an interceptor fault does to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultAction {
    /// Close the connection before handling.
    Disconnect,
    /// Handle, then close the connection instead of answering.
    DisconnectAfter,
    /// Neither handle nor answer: the client's request timeout must fire.
    NeverAnswer,
    /// Answer with this error.
    Error(ErrorCode),
    /// Handle, and hold the answer back this long.
    Delay(Duration),
}

/// Retriable errors the generator draws, per API (all of them retriable for that API).
const RETRIABLE_PRODUCE: [ErrorCode; 5] = [
    ErrorCode::NotLeaderOrFollower,
    ErrorCode::NotEnoughReplicas,
    ErrorCode::NotEnoughReplicasAfterAppend,
    ErrorCode::RequestTimedOut,
    ErrorCode::UnknownTopicOrPartition,
];
const RETRIABLE_FETCH: [ErrorCode; 4] = [
    ErrorCode::NotLeaderOrFollower,
    ErrorCode::UnknownTopicOrPartition,
    ErrorCode::FencedLeaderEpoch,
    ErrorCode::UnknownLeaderEpoch,
];
/// Errors that fail a batch for good (the producer gives its records up, `Persisted::No`).
const FATAL_PRODUCE: [ErrorCode; 3] = [
    ErrorCode::InvalidRecord,
    ErrorCode::CorruptMessage,
    ErrorCode::TopicAuthorizationFailed,
];

impl Schedule {
    /// A schedule drawn from `seed`: between 3 and 14 faults over the time the workload
    /// writes (a record a millisecond), of every kind, with outages of up to 3 s.
    pub fn generate(seed: u64, records: usize, workload: Workload) -> Self {
        let mut rng = SplitMix64::new(seed ^ 0x6c61_625f_6661_756c);
        let window = super::write_window(records).as_millis().max(100) as u64;
        let count = 3 + rng.below(12);
        let mut faults: Vec<Timed> = (0..count)
            .map(|_| {
                let at = Duration::from_millis(rng.below(window));
                let fault = draw_fault(&mut rng);
                Timed { at, fault }
            })
            .collect();
        faults.sort_by_key(|t| t.at);
        Self {
            seed,
            records,
            workload,
            faults,
        }
    }

    /// Reads a schedule in the format `Display` writes (see the module doc).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut seed = None;
        let mut records = None;
        let mut workload = Workload::Idempotent;
        let mut faults = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let fail = |why: String| format!("line {}: {why}: {line:?}", number + 1);
            let mut words = line.split_whitespace();
            match words.next() {
                Some("seed") => {
                    seed = Some(number_of(words.next(), "seed").map_err(fail)?);
                }
                Some("records") => {
                    records = Some(number_of(words.next(), "records").map_err(fail)?);
                }
                Some("workload") => {
                    workload = words
                        .next()
                        .unwrap_or("")
                        .parse()
                        .map_err(|e: String| fail(e))?;
                }
                Some("at") => {
                    let at = duration_of(words.next().unwrap_or("")).map_err(fail)?;
                    let fault = parse_fault(words).map_err(fail)?;
                    faults.push(Timed { at, fault });
                }
                Some(other) => return Err(fail(format!("unknown line kind {other:?}"))),
                None => {}
            }
        }
        faults.sort_by_key(|t| t.at);
        Ok(Self {
            seed: seed.ok_or("no `seed` line")?,
            records: usize::try_from(records.ok_or("no `records` line")?)
                .map_err(|_| "records out of range")?,
            workload,
            faults,
        })
    }

    /// The schedule without fault `index` (for shrinking a failing run).
    pub fn without(&self, index: usize) -> Self {
        let mut smaller = self.clone();
        if index < smaller.faults.len() {
            smaller.faults.remove(index);
        }
        smaller
    }
}

fn draw_fault(rng: &mut SplitMix64) -> Fault {
    match rng.below(10) {
        0 | 1 => Fault::StopBroker {
            broker: rng.below(BROKERS as u64) as i32,
            down: Duration::from_millis(200 + rng.below(2800)),
        },
        2 => Fault::MoveLeader {
            partition: rng.below(PARTITIONS as u64) as i32,
            broker: rng.below(BROKERS as u64) as i32,
        },
        3 => Fault::Leaderless {
            partition: rng.below(PARTITIONS as u64) as i32,
            down: Duration::from_millis(100 + rng.below(1400)),
        },
        _ => {
            let apis = [
                ApiKey::Produce,
                ApiKey::Produce,
                ApiKey::Produce,
                ApiKey::Fetch,
                ApiKey::Fetch,
                ApiKey::Metadata,
                ApiKey::InitProducerId,
                ApiKey::ListOffsets,
            ];
            let api = apis[rng.below(apis.len() as u64) as usize];
            let broker = (rng.below(2) == 0).then(|| rng.below(BROKERS as u64) as i32);
            let mut partition = None;
            let action = match rng.below(7) {
                0 => FaultAction::Disconnect,
                1 => FaultAction::DisconnectAfter,
                2 => FaultAction::NeverAnswer,
                3 => FaultAction::Delay(Duration::from_millis(20 + rng.below(2000))),
                _ => {
                    let code = match api {
                        ApiKey::Produce if rng.below(8) == 0 => {
                            FATAL_PRODUCE[rng.below(FATAL_PRODUCE.len() as u64) as usize]
                        }
                        ApiKey::Produce => {
                            RETRIABLE_PRODUCE[rng.below(RETRIABLE_PRODUCE.len() as u64) as usize]
                        }
                        ApiKey::Fetch | ApiKey::ListOffsets => {
                            RETRIABLE_FETCH[rng.below(RETRIABLE_FETCH.len() as u64) as usize]
                        }
                        ApiKey::InitProducerId => ErrorCode::CoordinatorLoadInProgress,
                        _ => ErrorCode::UnknownServerError,
                    };
                    if matches!(api, ApiKey::Produce | ApiKey::Fetch | ApiKey::ListOffsets)
                        && rng.below(2) == 0
                    {
                        partition = Some(rng.below(PARTITIONS as u64) as i32);
                    }
                    FaultAction::Error(code)
                }
            };
            // Metadata errors are answered per topic; a whole-request error code would be
            // ignored by clients. Keep it to connection faults and delays.
            let action = match (api, action) {
                (ApiKey::Metadata, FaultAction::Error(_)) => FaultAction::Disconnect,
                (_, action) => action,
            };
            Fault::Intercept {
                api,
                broker,
                partition,
                action,
                times: 1 + rng.below(4),
            }
        }
    }
}

fn number_of(word: Option<&str>, what: &str) -> Result<u64, String> {
    word.and_then(|w| w.parse().ok())
        .ok_or_else(|| format!("`{what}` needs a number"))
}

/// `250ms`, `3s` or a bare number of milliseconds.
fn duration_of(text: &str) -> Result<Duration, String> {
    let (number, unit) = match text.strip_suffix("ms") {
        Some(number) => (number, 1),
        None => match text.strip_suffix('s') {
            Some(number) => (number, 1000),
            None => (text, 1),
        },
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{text:?} is not a duration (e.g. 250ms, 3s)"))
}

fn parse_fault<'a>(mut words: impl Iterator<Item = &'a str>) -> Result<Fault, String> {
    let kind = words.next().ok_or("a fault kind is missing")?;
    let mut fields = std::collections::BTreeMap::new();
    for word in words {
        let (key, value) = word
            .split_once('=')
            .ok_or_else(|| format!("{word:?} is not key=value"))?;
        fields.insert(key, value);
    }
    let int = |key: &str| -> Result<i32, String> {
        fields
            .get(key)
            .ok_or_else(|| format!("`{kind}` needs {key}="))?
            .parse()
            .map_err(|_| format!("{key}= needs a number"))
    };
    let optional_int = |key: &str| -> Result<Option<i32>, String> {
        fields
            .get(key)
            .map(|v| v.parse().map_err(|_| format!("{key}= needs a number")))
            .transpose()
    };
    let duration = |key: &str| -> Result<Duration, String> {
        duration_of(
            fields
                .get(key)
                .ok_or_else(|| format!("`{kind}` needs {key}="))?,
        )
    };
    match kind {
        "stop" => Ok(Fault::StopBroker {
            broker: int("broker")?,
            down: duration("for")?,
        }),
        "leader" => Ok(Fault::MoveLeader {
            partition: int("partition")?,
            broker: int("broker")?,
        }),
        "leaderless" => Ok(Fault::Leaderless {
            partition: int("partition")?,
            down: duration("for")?,
        }),
        "fault" => {
            let api = api_by_name(fields.get("api").ok_or("`fault` needs api=")?)?;
            let action = parse_action(fields.get("action").ok_or("`fault` needs action=")?)?;
            let times = match fields.get("times") {
                Some(n) => n.parse().map_err(|_| "times= needs a number")?,
                None => 1,
            };
            Ok(Fault::Intercept {
                api,
                broker: optional_int("broker")?,
                partition: optional_int("partition")?,
                action,
                times,
            })
        }
        other => Err(format!("unknown fault {other:?}")),
    }
}

fn parse_action(text: &str) -> Result<FaultAction, String> {
    match text {
        "disconnect" => Ok(FaultAction::Disconnect),
        "disconnect-after" => Ok(FaultAction::DisconnectAfter),
        "never-answer" => Ok(FaultAction::NeverAnswer),
        _ => {
            if let Some(name) = text.strip_prefix("error:") {
                return error_by_name(name).map(FaultAction::Error);
            }
            if let Some(delay) = text.strip_prefix("delay:") {
                return duration_of(delay).map(FaultAction::Delay);
            }
            Err(format!("unknown action {text:?}"))
        }
    }
}

/// An API key by its name (`Produce`, `produce`, `INIT_PRODUCER_ID`) or number.
pub fn api_by_name(name: &str) -> Result<ApiKey, String> {
    if let Ok(number) = name.parse::<i16>() {
        return ApiKey::try_from(number).map_err(|_| format!("unknown API key {number}"));
    }
    let wanted = normalize(name);
    (0..=200i16)
        .filter_map(|k| ApiKey::try_from(k).ok())
        .find(|key| normalize(&format!("{key:?}")) == wanted)
        .ok_or_else(|| format!("unknown API {name:?}"))
}

/// A Kafka error by its name (`NotLeaderOrFollower`, `NOT_LEADER_OR_FOLLOWER`) or code.
pub fn error_by_name(name: &str) -> Result<ErrorCode, String> {
    if let Ok(number) = name.parse::<i16>() {
        return ErrorCode::try_from_code(number).ok_or_else(|| format!("{number} is no error"));
    }
    let wanted = normalize(name);
    (-1..=200i16)
        .filter_map(ErrorCode::try_from_code)
        .find(|code| normalize(&format!("{code:?}")) == wanted)
        .ok_or_else(|| format!("unknown error {name:?}"))
}

fn normalize(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

fn millis(d: Duration) -> u128 {
    d.as_millis()
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "# franzy lab schedule: replay with `franzy lab --replay FILE`"
        )?;
        writeln!(f, "seed {}", self.seed)?;
        writeln!(f, "records {}", self.records)?;
        writeln!(f, "workload {}", self.workload)?;
        for timed in &self.faults {
            writeln!(f, "at {}ms {}", millis(timed.at), timed.fault)?;
        }
        Ok(())
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::StopBroker { broker, down } => {
                write!(f, "stop broker={broker} for={}ms", millis(*down))
            }
            Self::MoveLeader { partition, broker } => {
                write!(f, "leader partition={partition} broker={broker}")
            }
            Self::Leaderless { partition, down } => {
                write!(
                    f,
                    "leaderless partition={partition} for={}ms",
                    millis(*down)
                )
            }
            Self::Intercept {
                api,
                broker,
                partition,
                action,
                times,
            } => {
                write!(f, "fault api={api:?}")?;
                if let Some(broker) = broker {
                    write!(f, " broker={broker}")?;
                }
                if let Some(partition) = partition {
                    write!(f, " partition={partition}")?;
                }
                write!(f, " action={action} times={times}")
            }
        }
    }
}

impl fmt::Display for FaultAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Disconnect => f.write_str("disconnect"),
            Self::DisconnectAfter => f.write_str("disconnect-after"),
            Self::NeverAnswer => f.write_str("never-answer"),
            Self::Error(code) => write!(f, "error:{code:?}"),
            Self::Delay(delay) => write!(f, "delay:{}ms", millis(*delay)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drawn_schedule_prints_and_parses_back_the_same() {
        for seed in 0..200 {
            let schedule = Schedule::generate(seed, 5000, Workload::Idempotent);
            assert!(!schedule.faults.is_empty());
            let text = schedule.to_string();
            assert_eq!(Schedule::parse(&text), Ok(schedule), "{text}");
        }
        assert_eq!(
            Schedule::generate(3, 5000, Workload::Idempotent),
            Schedule::generate(3, 5000, Workload::Idempotent)
        );
        assert_ne!(
            Schedule::generate(3, 5000, Workload::Idempotent),
            Schedule::generate(4, 5000, Workload::Idempotent)
        );
    }

    #[test]
    fn a_hand_written_schedule_parses_with_comments_and_names_in_any_case() {
        let text = "# mine\nseed 9\nrecords 10 # few\n\nat 1s stop broker=1 for=3s\n\
                    at 5 fault api=PRODUCE partition=2 action=error:NOT_LEADER_OR_FOLLOWER\n\
                    at 7ms fault api=1 action=delay:2s times=3\n";
        let schedule = Schedule::parse(text).expect("parses");
        assert_eq!(schedule.seed, 9);
        assert_eq!(schedule.records, 10);
        assert_eq!(schedule.workload, Workload::Idempotent);
        assert_eq!(
            schedule.faults,
            vec![
                Timed {
                    at: Duration::from_millis(5),
                    fault: Fault::Intercept {
                        api: ApiKey::Produce,
                        broker: None,
                        partition: Some(2),
                        action: FaultAction::Error(ErrorCode::NotLeaderOrFollower),
                        times: 1,
                    },
                },
                Timed {
                    at: Duration::from_millis(7),
                    fault: Fault::Intercept {
                        api: ApiKey::Fetch,
                        broker: None,
                        partition: None,
                        action: FaultAction::Delay(Duration::from_secs(2)),
                        times: 3,
                    },
                },
                Timed {
                    at: Duration::from_secs(1),
                    fault: Fault::StopBroker {
                        broker: 1,
                        down: Duration::from_secs(3),
                    },
                },
            ]
        );
        for bad in [
            "records 1",
            "seed 1\nrecords 1\nat 1ms explode",
            "seed 1\nrecords 1\nat soon stop broker=1 for=1s",
            "seed 1\nrecords 1\nat 1ms fault api=Nope action=disconnect",
            "seed 1\nrecords 1\nat 1ms fault api=Produce action=error:Nope",
            "seed 1\nrecords 1\nat 1ms stop broker=x for=1s",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn removing_a_fault_shrinks_the_schedule() {
        let schedule = Schedule::generate(5, 100, Workload::Idempotent);
        let smaller = schedule.without(0);
        assert_eq!(smaller.faults.len(), schedule.faults.len() - 1);
        assert_eq!(smaller.faults[..], schedule.faults[1..]);
    }
}
