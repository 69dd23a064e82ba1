//! Fault injection and request recording.
//!
//! An [`Interceptor`] matches requests by API key and, optionally, by broker and by
//! topic-partition, and applies an [`Action`] to them. Interceptors are kept in the order they
//! were added and tried first-in first-out; each applies to a given number of requests
//! (one by default) and is then removed, unless it was made to [`Interceptor::keep`].
//!
//! How a request is matched, in order of registration:
//! - an interceptor narrowed to a partition with [`Action::Error`] fails just that partition
//!   of the request (the others are served), so several may apply to one request, one per
//!   partition;
//! - any other interceptor acts on the request as a whole; the first such match wins.
//!
//! Interceptors that fire with a probability draw from a generator seeded by the cluster's
//! seed, so a run with the same seed and the same requests injects the same faults.
//!
//! Every request the cluster receives is recorded ([`RecordedRequest`]) so that tests can
//! assert on what a client sent, up to a bounded number of entries.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use franzy::proto::{ApiKey, ErrorCode};

/// What an interceptor does to a request it matches.
#[derive(Clone)]
pub enum Action {
    /// Answer with this error: for the whole request, or for the one partition the
    /// interceptor is narrowed to. The request is not applied.
    Error(ErrorCode),
    /// Handle the request normally but hold the response back this long.
    Delay(Duration),
    /// Close the connection without handling the request.
    Disconnect,
    /// Handle the request (a produce is appended), then close the connection instead of
    /// answering: the client cannot know whether it was applied.
    DisconnectAfterHandling,
    /// Neither handle nor answer the request; the connection stays open and, as on a real
    /// broker whose channel is muted, answers nothing more.
    NeverAnswer,
    /// Handle the request, then pass the encoded response frame (length prefix included)
    /// through this function before sending it.
    AlterResponse(Arc<dyn Fn(&mut BytesMut) + Send + Sync>),
}

impl fmt::Debug for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Error(code) => f.debug_tuple("Error").field(code).finish(),
            Self::Delay(d) => f.debug_tuple("Delay").field(d).finish(),
            Self::Disconnect => f.write_str("Disconnect"),
            Self::DisconnectAfterHandling => f.write_str("DisconnectAfterHandling"),
            Self::NeverAnswer => f.write_str("NeverAnswer"),
            Self::AlterResponse(_) => f.write_str("AlterResponse(..)"),
        }
    }
}

/// A rule that injects a fault into matching requests.
#[derive(Debug, Clone)]
pub struct Interceptor {
    api: ApiKey,
    broker: Option<i32>,
    partition: Option<(String, i32)>,
    action: Action,
    remaining: Option<u64>,
    probability: Option<f64>,
}

impl Interceptor {
    /// An interceptor for requests of `api` that applies `action` to one request.
    pub fn new(api: ApiKey, action: Action) -> Self {
        Self {
            api,
            broker: None,
            partition: None,
            action,
            remaining: Some(1),
            probability: None,
        }
    }

    /// Only requests received by broker `id`.
    pub fn on_broker(mut self, id: i32) -> Self {
        self.broker = Some(id);
        self
    }

    /// Only requests that name `topic`/`partition`. With [`Action::Error`] only that
    /// partition fails.
    pub fn on_partition(mut self, topic: impl Into<String>, partition: i32) -> Self {
        self.partition = Some((topic.into(), partition));
        self
    }

    /// Apply to `n` matching requests instead of one.
    pub fn times(mut self, n: u64) -> Self {
        self.remaining = Some(n);
        self
    }

    /// Apply to every matching request until removed with [`Control::clear`].
    pub fn keep(mut self) -> Self {
        self.remaining = None;
        self
    }

    /// Apply to each matching request with probability `p` (0.0 to 1.0), drawn from the
    /// cluster's seeded generator. Requests it passes over do not count against
    /// [`Interceptor::times`].
    pub fn with_probability(mut self, p: f64) -> Self {
        self.probability = Some(p.clamp(0.0, 1.0));
        self
    }

    fn matches_request(&self, api: ApiKey, broker: i32) -> bool {
        self.api == api && self.broker.is_none_or(|b| b == broker)
    }
}

/// One request as the cluster received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// The API.
    pub api_key: ApiKey,
    /// The version the client used.
    pub api_version: i16,
    /// The broker that received it.
    pub broker_id: i32,
    /// The client id from the request header.
    pub client_id: Option<String>,
    /// The correlation id.
    pub correlation_id: i32,
    /// Time since the cluster started (tokio time, so virtual under a paused clock).
    pub at: Duration,
    /// The topic-partitions the request names, where it names any.
    pub partitions: Vec<(String, i32)>,
}

/// What the interceptors decided for one request.
#[derive(Debug, Default)]
pub struct Decision {
    /// The action for the whole request, if any.
    pub request_action: Option<Action>,
    /// Errors for single partitions.
    pub partition_errors: HashMap<(String, i32), ErrorCode>,
}

/// Default number of recorded requests kept before the oldest are dropped.
pub const DEFAULT_RECORD_LIMIT: usize = 100_000;

/// The interceptors and the request record of a cluster.
#[derive(Debug)]
pub struct Control {
    interceptors: Vec<Interceptor>,
    recorded: VecDeque<RecordedRequest>,
    record_limit: usize,
    dropped_records: u64,
    rng: SplitMix64,
}

impl Control {
    /// An empty control seeded with `seed`.
    pub fn new(seed: u64, record_limit: usize) -> Self {
        Self {
            interceptors: Vec::new(),
            recorded: VecDeque::new(),
            record_limit,
            dropped_records: 0,
            rng: SplitMix64(seed),
        }
    }

    /// Adds an interceptor after those already registered.
    pub fn add(&mut self, interceptor: Interceptor) {
        self.interceptors.push(interceptor);
    }

    /// Removes every interceptor.
    pub fn clear(&mut self) {
        self.interceptors.clear();
    }

    /// Interceptors that have not yet used up their count.
    pub fn pending(&self) -> usize {
        self.interceptors.len()
    }

    /// Records a request, dropping the oldest record past the limit.
    pub fn record(&mut self, request: RecordedRequest) {
        if self.record_limit == 0 {
            self.dropped_records += 1;
            return;
        }
        if self.recorded.len() == self.record_limit {
            self.recorded.pop_front();
            self.dropped_records += 1;
        }
        self.recorded.push_back(request);
    }

    /// The recorded requests, oldest first.
    pub fn recorded(&self) -> Vec<RecordedRequest> {
        self.recorded.iter().cloned().collect()
    }

    /// Forgets the recorded requests.
    pub fn clear_recorded(&mut self) {
        self.recorded.clear();
        self.dropped_records = 0;
    }

    /// How many records were dropped because the limit was reached.
    pub fn dropped_records(&self) -> u64 {
        self.dropped_records
    }

    /// Matches a request of `api` received by `broker` that names `partitions`, consuming
    /// one use of each interceptor that applies.
    pub fn decide(&mut self, api: ApiKey, broker: i32, partitions: &[(String, i32)]) -> Decision {
        let mut decision = Decision::default();
        let mut index = 0;
        while index < self.interceptors.len() {
            let applied = self.try_apply(index, api, broker, partitions, &mut decision);
            if applied {
                let interceptor = &mut self.interceptors[index];
                if let Some(left) = interceptor.remaining.as_mut() {
                    *left = left.saturating_sub(1);
                    if *left == 0 {
                        self.interceptors.remove(index);
                        continue;
                    }
                }
            }
            index += 1;
        }
        decision
    }

    fn try_apply(
        &mut self,
        index: usize,
        api: ApiKey,
        broker: i32,
        partitions: &[(String, i32)],
        decision: &mut Decision,
    ) -> bool {
        let interceptor = &self.interceptors[index];
        if !interceptor.matches_request(api, broker) {
            return false;
        }
        let partition_error = match (&interceptor.partition, &interceptor.action) {
            (Some(tp), action) => {
                if !partitions.contains(tp) {
                    return false;
                }
                match action {
                    Action::Error(code) => {
                        if decision.partition_errors.contains_key(tp) {
                            return false;
                        }
                        Some((tp.clone(), *code))
                    }
                    _ => None,
                }
            }
            (None, _) => None,
        };
        if partition_error.is_none() && decision.request_action.is_some() {
            return false;
        }
        if let Some(p) = interceptor.probability {
            if self.rng.next_f64() >= p {
                return false;
            }
        }
        let interceptor = &self.interceptors[index];
        match partition_error {
            Some((tp, code)) => {
                decision.partition_errors.insert(tp, code);
            }
            None => decision.request_action = Some(interceptor.action.clone()),
        }
        true
    }
}

/// A small seeded generator (SplitMix64): enough for fault probabilities, and the same
/// sequence for the same seed on every platform.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(t: &str, p: i32) -> (String, i32) {
        (t.to_string(), p)
    }

    #[test]
    fn interceptors_apply_once_in_fifo_order_unless_kept() {
        let mut control = Control::new(1, 10);
        control.add(Interceptor::new(
            ApiKey::Produce,
            Action::Error(ErrorCode::NotLeaderOrFollower),
        ));
        control.add(Interceptor::new(ApiKey::Produce, Action::Disconnect).keep());
        let first = control.decide(ApiKey::Produce, 0, &[]);
        assert!(matches!(
            first.request_action,
            Some(Action::Error(ErrorCode::NotLeaderOrFollower))
        ));
        for _ in 0..3 {
            let next = control.decide(ApiKey::Produce, 0, &[]);
            assert!(matches!(next.request_action, Some(Action::Disconnect)));
        }
        assert_eq!(control.pending(), 1);
        assert!(control
            .decide(ApiKey::Fetch, 0, &[])
            .request_action
            .is_none());
    }

    #[test]
    fn broker_and_partition_narrowing() {
        let mut control = Control::new(1, 10);
        control.add(
            Interceptor::new(
                ApiKey::Produce,
                Action::Error(ErrorCode::NotLeaderOrFollower),
            )
            .on_partition("orders", 1)
            .times(2),
        );
        control.add(Interceptor::new(ApiKey::Fetch, Action::NeverAnswer).on_broker(2));
        let d = control.decide(ApiKey::Produce, 0, &[tp("orders", 0), tp("orders", 1)]);
        assert!(d.request_action.is_none());
        assert_eq!(
            d.partition_errors.get(&tp("orders", 1)),
            Some(&ErrorCode::NotLeaderOrFollower)
        );
        assert!(!d.partition_errors.contains_key(&tp("orders", 0)));
        // A request that does not name the partition leaves the interceptor untouched.
        assert!(control
            .decide(ApiKey::Produce, 0, &[tp("orders", 0)])
            .partition_errors
            .is_empty());
        assert_eq!(
            control
                .decide(ApiKey::Produce, 0, &[tp("orders", 1)])
                .partition_errors
                .len(),
            1
        );
        assert!(control
            .decide(ApiKey::Produce, 0, &[tp("orders", 1)])
            .partition_errors
            .is_empty());
        assert!(control
            .decide(ApiKey::Fetch, 1, &[])
            .request_action
            .is_none());
        assert!(matches!(
            control.decide(ApiKey::Fetch, 2, &[]).request_action,
            Some(Action::NeverAnswer)
        ));
    }

    #[test]
    fn probabilistic_interceptors_repeat_with_the_seed() {
        let run = |seed| {
            let mut control = Control::new(seed, 10);
            control.add(
                Interceptor::new(ApiKey::Produce, Action::Disconnect)
                    .keep()
                    .with_probability(0.3),
            );
            (0..200)
                .map(|_| {
                    control
                        .decide(ApiKey::Produce, 0, &[])
                        .request_action
                        .is_some()
                })
                .collect::<Vec<_>>()
        };
        let a = run(7);
        assert_eq!(a, run(7));
        assert_ne!(a, run(8));
        let hits = a.iter().filter(|hit| **hit).count();
        assert!((30..=90).contains(&hits), "{hits} hits of 200 at p = 0.3");
    }

    #[test]
    fn recording_is_bounded() {
        let mut control = Control::new(0, 2);
        for correlation_id in 0..5 {
            control.record(RecordedRequest {
                api_key: ApiKey::Metadata,
                api_version: 12,
                broker_id: 0,
                client_id: None,
                correlation_id,
                at: Duration::ZERO,
                partitions: vec![],
            });
        }
        let ids: Vec<i32> = control
            .recorded()
            .iter()
            .map(|r| r.correlation_id)
            .collect();
        assert_eq!(ids, vec![3, 4]);
        assert_eq!(control.dropped_records(), 3);
    }
}
