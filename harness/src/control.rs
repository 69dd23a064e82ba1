//! Fault injection and request recording.
//!
//! An [`Interceptor`] matches requests by API key and, optionally, by broker, by
//! topic-partition, by group id, by transactional id and by a condition on the decoded body
//! ([`Interceptor::when`]), and applies an [`Action`] to them.
//! What a request names (partitions, group ids, transactional ids) comes from its API's
//! entry in the handlers' table (`handlers::APIS`), so interceptors work for every API
//! there, and for the ones added later. Interceptors are kept in the order they
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
//! assert on what a client sent. The record is bounded ([`RecordLimits`]): in requests, in
//! bytes, and in the partitions kept per request (the first ones, with a count of the rest);
//! topic names and client ids are interned, so a name repeated in many requests is held once.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use franzy::proto::{ApiKey, ErrorCode, RequestKind};

use crate::handlers::NamedIds;

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

/// A condition on a request's decoded body (see [`Interceptor::when`]).
#[derive(Clone)]
pub struct BodyMatcher(Arc<dyn Fn(&RequestKind) -> bool + Send + Sync>);

impl fmt::Debug for BodyMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BodyMatcher(..)")
    }
}

/// A rule that injects a fault into matching requests.
#[derive(Debug, Clone)]
pub struct Interceptor {
    api: ApiKey,
    body: Option<BodyMatcher>,
    broker: Option<i32>,
    partition: Option<(String, i32)>,
    group: Option<String>,
    transactional_id: Option<String>,
    action: Action,
    remaining: Option<u64>,
    probability: Option<f64>,
}

impl Interceptor {
    /// An interceptor for requests of `api` that applies `action` to one request.
    pub fn new(api: ApiKey, action: Action) -> Self {
        Self {
            api,
            body: None,
            broker: None,
            partition: None,
            group: None,
            transactional_id: None,
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

    /// Only requests that name consumer group `id` (FindCoordinator for a group, JoinGroup,
    /// SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch, AddOffsetsToTxn,
    /// TxnOffsetCommit, ...). An [`Action::Error`] fails the whole request.
    pub fn on_group(mut self, id: impl Into<String>) -> Self {
        self.group = Some(id.into());
        self
    }

    /// Only requests that name transactional id `id` (FindCoordinator for a transaction,
    /// InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, TxnOffsetCommit, ...).
    /// An [`Action::Error`] fails the whole request.
    pub fn on_transactional_id(mut self, id: impl Into<String>) -> Self {
        self.transactional_id = Some(id.into());
        self
    }

    /// Only requests whose decoded body satisfies `matches`: a fault on one field value, as
    /// `franzy serve --plant-fuzz-bugs` plants for the fuzzer to find.
    pub fn when(mut self, matches: impl Fn(&RequestKind) -> bool + Send + Sync + 'static) -> Self {
        self.body = Some(BodyMatcher(Arc::new(matches)));
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

    fn matches_request(
        &self,
        api: ApiKey,
        broker: i32,
        ids: &NamedIds,
        body: Option<&RequestKind>,
    ) -> bool {
        let names = |wanted: &Option<String>, named: &[Arc<str>]| {
            wanted
                .as_deref()
                .is_none_or(|wanted| named.iter().any(|id| &**id == wanted))
        };
        self.api == api
            && self
                .body
                .as_ref()
                .is_none_or(|matcher| body.is_some_and(|b| (matcher.0)(b)))
            && self.broker.is_none_or(|b| b == broker)
            && names(&self.group, &ids.groups)
            && names(&self.transactional_id, &ids.transactional_ids)
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
    pub client_id: Option<Arc<str>>,
    /// The correlation id.
    pub correlation_id: i32,
    /// Time since the cluster started (tokio time, so virtual under a paused clock).
    pub at: Duration,
    /// The topic-partitions the request names, where it names any, in request order
    /// (partition -1 for a whole topic): the first [`RecordLimits::partitions_per_request`]
    /// of them. [`RecordedRequest::partition_count`] counts them all.
    pub partitions: Vec<(Arc<str>, i32)>,
    /// How many more topic-partitions the request named than `partitions` keeps.
    pub partitions_omitted: usize,
}

impl RecordedRequest {
    /// How many topic-partitions the request named, kept in `partitions` or not.
    pub fn partition_count(&self) -> usize {
        self.partitions
            .len()
            .saturating_add(self.partitions_omitted)
    }
}

/// A request as [`Control::record`] receives it, before it is summarised.
#[derive(Debug, Clone, Copy)]
pub struct RequestSummary<'a> {
    /// The API.
    pub api_key: ApiKey,
    /// The version the client used.
    pub api_version: i16,
    /// The broker that received it.
    pub broker_id: i32,
    /// The client id from the request header.
    pub client_id: Option<&'a str>,
    /// The correlation id.
    pub correlation_id: i32,
    /// Time since the cluster started.
    pub at: Duration,
    /// Every topic-partition the request names.
    pub partitions: &'a [(Arc<str>, i32)],
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
/// Default bound of the request record's memory: 64 MiB.
pub const DEFAULT_RECORD_BYTES: usize = 64 * 1024 * 1024;
/// Default number of topic-partitions kept per recorded request.
pub const DEFAULT_RECORDED_PARTITIONS: usize = 1_000;

/// Bounds of the request record. The oldest requests are dropped while either of the first
/// two is exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordLimits {
    /// Most requests kept. Default [`DEFAULT_RECORD_LIMIT`].
    pub requests: usize,
    /// Most bytes the record holds: each request's fixed part and partition list, and each
    /// interned name once. Default [`DEFAULT_RECORD_BYTES`].
    pub bytes: usize,
    /// Topic-partitions kept per request (the first ones; the rest are counted in
    /// [`RecordedRequest::partitions_omitted`]). Default [`DEFAULT_RECORDED_PARTITIONS`].
    pub partitions_per_request: usize,
}

impl Default for RecordLimits {
    fn default() -> Self {
        Self {
            requests: DEFAULT_RECORD_LIMIT,
            bytes: DEFAULT_RECORD_BYTES,
            partitions_per_request: DEFAULT_RECORDED_PARTITIONS,
        }
    }
}

/// What an interned name is charged besides its bytes: the `Arc` counts and a set slot.
const INTERNED_OVERHEAD: usize = 48;

/// The interceptors and the request record of a cluster.
#[derive(Debug)]
pub struct Control {
    interceptors: Vec<Interceptor>,
    recorded: VecDeque<RecordedRequest>,
    limits: RecordLimits,
    /// Bytes of the recorded requests themselves (fixed part and partition lists).
    recorded_bytes: usize,
    /// Topic names and client ids the record refers to, each held once.
    interned: HashSet<Arc<str>>,
    interned_bytes: usize,
    /// Interned names after the last sweep for names no record uses any more.
    interned_after_sweep: usize,
    dropped_records: u64,
    rng: SplitMix64,
}

impl Control {
    /// An empty control seeded with `seed` that keeps up to `record_limit` requests (and the
    /// other bounds at their defaults).
    pub fn new(seed: u64, record_limit: usize) -> Self {
        Self::with_record_limits(
            seed,
            RecordLimits {
                requests: record_limit,
                ..RecordLimits::default()
            },
        )
    }

    /// An empty control seeded with `seed`, its record bounded by `limits`.
    pub fn with_record_limits(seed: u64, limits: RecordLimits) -> Self {
        Self {
            interceptors: Vec::new(),
            recorded: VecDeque::new(),
            limits,
            recorded_bytes: 0,
            interned: HashSet::new(),
            interned_bytes: 0,
            interned_after_sweep: 0,
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

    /// Records a request (its first partitions, names interned), dropping the oldest
    /// records while the record is over its bounds. Costs O(partitions kept).
    pub fn record(&mut self, request: RequestSummary<'_>) {
        if self.limits.requests == 0 || self.limits.bytes == 0 {
            self.dropped_records += 1;
            return;
        }
        let kept = request
            .partitions
            .len()
            .min(self.limits.partitions_per_request);
        let mut partitions = Vec::with_capacity(kept);
        let mut last: Option<(&Arc<str>, Arc<str>)> = None;
        for (name, partition) in &request.partitions[..kept] {
            // Partitions of one topic entry share their name: intern it once per run.
            let interned = match &last {
                Some((given, interned)) if Arc::ptr_eq(given, name) => interned.clone(),
                _ => {
                    let interned = self.intern(name);
                    last = Some((name, interned.clone()));
                    interned
                }
            };
            partitions.push((interned, *partition));
        }
        let client_id = request.client_id.map(|id| self.intern(id));
        let recorded = RecordedRequest {
            api_key: request.api_key,
            api_version: request.api_version,
            broker_id: request.broker_id,
            client_id,
            correlation_id: request.correlation_id,
            at: request.at,
            partitions,
            partitions_omitted: request.partitions.len() - kept,
        };
        self.recorded_bytes = self.recorded_bytes.saturating_add(record_cost(&recorded));
        self.recorded.push_back(recorded);
        while self.recorded.len() > self.limits.requests || self.bytes() > self.limits.bytes {
            let Some(oldest) = self.recorded.pop_front() else {
                break;
            };
            self.dropped_records += 1;
            self.forget(oldest);
        }
        if self.bytes() > self.limits.bytes
            || self.interned.len() > self.interned_after_sweep.saturating_mul(2) + 1024
        {
            self.sweep_interned();
        }
    }

    /// Bytes held by the record: requests, partition lists and interned names.
    pub fn recorded_bytes(&self) -> usize {
        self.bytes()
    }

    /// The recorded requests, oldest first.
    pub fn recorded(&self) -> Vec<RecordedRequest> {
        self.recorded.iter().cloned().collect()
    }

    /// Forgets the recorded requests.
    pub fn clear_recorded(&mut self) {
        self.recorded.clear();
        self.recorded_bytes = 0;
        self.interned.clear();
        self.interned_bytes = 0;
        self.interned_after_sweep = 0;
        self.dropped_records = 0;
    }

    fn bytes(&self) -> usize {
        self.recorded_bytes.saturating_add(self.interned_bytes)
    }

    fn intern(&mut self, name: &str) -> Arc<str> {
        if let Some(interned) = self.interned.get(name) {
            return interned.clone();
        }
        let interned: Arc<str> = Arc::from(name);
        self.interned_bytes = self
            .interned_bytes
            .saturating_add(name.len() + INTERNED_OVERHEAD);
        self.interned.insert(interned.clone());
        interned
    }

    /// Drops a record evicted from the front, and the interned names only it used.
    fn forget(&mut self, record: RecordedRequest) {
        self.recorded_bytes = self.recorded_bytes.saturating_sub(record_cost(&record));
        let mut names: Vec<Arc<str>> = Vec::new();
        for (name, _) in record.partitions {
            if names.last().is_none_or(|last| !Arc::ptr_eq(last, &name)) {
                names.push(name);
            }
        }
        names.extend(record.client_id);
        names.sort_unstable_by_key(|name| Arc::as_ptr(name).cast::<u8>() as usize);
        names.dedup_by(|a, b| Arc::ptr_eq(a, b));
        for name in names {
            // Held by `names` and by the interner alone: no other record uses it.
            if Arc::strong_count(&name) == 2 && self.interned.remove(&*name) {
                self.interned_bytes = self
                    .interned_bytes
                    .saturating_sub(name.len() + INTERNED_OVERHEAD);
            }
        }
    }

    /// Drops interned names nothing refers to any more (a name is kept by `forget` while a
    /// copy handed out by [`Control::recorded`] still holds it).
    fn sweep_interned(&mut self) {
        let mut freed = 0usize;
        self.interned.retain(|name| {
            let used = Arc::strong_count(name) > 1;
            if !used {
                freed += name.len() + INTERNED_OVERHEAD;
            }
            used
        });
        self.interned_bytes = self.interned_bytes.saturating_sub(freed);
        self.interned_after_sweep = self.interned.len();
    }

    /// How many records were dropped because the limit was reached.
    pub fn dropped_records(&self) -> u64 {
        self.dropped_records
    }

    /// Matches a request of `api` received by `broker` that names `partitions` and the
    /// group and transactional `ids`, consuming one use of each interceptor that applies.
    /// Linear in the interceptors plus the partitions (looked up in a set built once, if an
    /// interceptor is narrowed to one) and ids.
    pub fn decide(
        &mut self,
        api: ApiKey,
        broker: i32,
        partitions: &[(Arc<str>, i32)],
        ids: &NamedIds,
    ) -> Decision {
        self.decide_with_body(api, broker, partitions, ids, None)
    }

    /// As [`Control::decide`], with the request's decoded body for interceptors made with
    /// [`Interceptor::when`] (which match nothing without it).
    pub fn decide_with_body(
        &mut self,
        api: ApiKey,
        broker: i32,
        partitions: &[(Arc<str>, i32)],
        ids: &NamedIds,
        body: Option<&RequestKind>,
    ) -> Decision {
        let mut decision = Decision::default();
        let mut named = NamedPartitions {
            partitions,
            set: None,
        };
        let mut index = 0;
        while index < self.interceptors.len() {
            let applied =
                self.try_apply(index, (api, broker, ids, body), &mut named, &mut decision);
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
        (api, broker, ids, body): (ApiKey, i32, &NamedIds, Option<&RequestKind>),
        named: &mut NamedPartitions<'_>,
        decision: &mut Decision,
    ) -> bool {
        let interceptor = &self.interceptors[index];
        if !interceptor.matches_request(api, broker, ids, body) {
            return false;
        }
        let partition_error = match (&interceptor.partition, &interceptor.action) {
            (Some(tp), action) => {
                if !named.contains(&tp.0, tp.1) {
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

/// What [`RecordedRequest`] costs the record, besides its interned names.
fn record_cost(record: &RecordedRequest) -> usize {
    std::mem::size_of::<RecordedRequest>().saturating_add(
        record
            .partitions
            .capacity()
            .saturating_mul(std::mem::size_of::<(Arc<str>, i32)>()),
    )
}

/// The partitions a request names, with a set to look them up in, built on first use.
struct NamedPartitions<'a> {
    partitions: &'a [(Arc<str>, i32)],
    set: Option<HashSet<(&'a str, i32)>>,
}

impl NamedPartitions<'_> {
    fn contains(&mut self, topic: &str, partition: i32) -> bool {
        let partitions = self.partitions;
        self.set
            .get_or_insert_with(|| partitions.iter().map(|(t, p)| (&**t, *p)).collect())
            .contains(&(topic, partition))
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

    fn tp(t: &str, p: i32) -> (Arc<str>, i32) {
        (Arc::from(t), p)
    }

    #[test]
    fn interceptors_apply_once_in_fifo_order_unless_kept() {
        let mut control = Control::new(1, 10);
        control.add(Interceptor::new(
            ApiKey::Produce,
            Action::Error(ErrorCode::NotLeaderOrFollower),
        ));
        control.add(Interceptor::new(ApiKey::Produce, Action::Disconnect).keep());
        let first = control.decide(ApiKey::Produce, 0, &[], &NamedIds::default());
        assert!(matches!(
            first.request_action,
            Some(Action::Error(ErrorCode::NotLeaderOrFollower))
        ));
        for _ in 0..3 {
            let next = control.decide(ApiKey::Produce, 0, &[], &NamedIds::default());
            assert!(matches!(next.request_action, Some(Action::Disconnect)));
        }
        assert_eq!(control.pending(), 1);
        assert!(control
            .decide(ApiKey::Fetch, 0, &[], &NamedIds::default())
            .request_action
            .is_none());
    }

    #[test]
    fn body_matchers_see_the_decoded_request_and_nothing_without_it() {
        use kafka_protocol::messages::HeartbeatRequest;
        let mut control = Control::new(1, 10);
        control.add(
            Interceptor::new(ApiKey::Heartbeat, Action::Disconnect)
                .when(|body| matches!(body, RequestKind::Heartbeat(h) if h.generation_id == 7))
                .keep(),
        );
        let heartbeat = |generation| {
            RequestKind::Heartbeat(HeartbeatRequest::default().with_generation_id(generation))
        };
        let ids = NamedIds::default();
        let decide = |control: &mut Control, body: Option<&RequestKind>| {
            control
                .decide_with_body(ApiKey::Heartbeat, 0, &[], &ids, body)
                .request_action
        };
        assert!(decide(&mut control, Some(&heartbeat(6))).is_none());
        assert!(matches!(
            decide(&mut control, Some(&heartbeat(7))),
            Some(Action::Disconnect)
        ));
        assert!(decide(&mut control, None).is_none());
        assert_eq!(control.pending(), 1);
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
        let d = control.decide(
            ApiKey::Produce,
            0,
            &[tp("orders", 0), tp("orders", 1)],
            &NamedIds::default(),
        );
        assert!(d.request_action.is_none());
        assert_eq!(
            d.partition_errors.get(&("orders".to_string(), 1)),
            Some(&ErrorCode::NotLeaderOrFollower)
        );
        assert!(!d.partition_errors.contains_key(&("orders".to_string(), 0)));
        // A request that does not name the partition leaves the interceptor untouched.
        assert!(control
            .decide(ApiKey::Produce, 0, &[tp("orders", 0)], &NamedIds::default())
            .partition_errors
            .is_empty());
        assert_eq!(
            control
                .decide(ApiKey::Produce, 0, &[tp("orders", 1)], &NamedIds::default())
                .partition_errors
                .len(),
            1
        );
        assert!(control
            .decide(ApiKey::Produce, 0, &[tp("orders", 1)], &NamedIds::default())
            .partition_errors
            .is_empty());
        assert!(control
            .decide(ApiKey::Fetch, 1, &[], &NamedIds::default())
            .request_action
            .is_none());
        assert!(matches!(
            control
                .decide(ApiKey::Fetch, 2, &[], &NamedIds::default())
                .request_action,
            Some(Action::NeverAnswer)
        ));
    }

    #[test]
    fn group_and_transactional_id_narrowing() {
        let mut control = Control::new(1, 10);
        control.add(
            Interceptor::new(ApiKey::JoinGroup, Action::Error(ErrorCode::NotCoordinator))
                .on_group("orders-app"),
        );
        control.add(
            Interceptor::new(
                ApiKey::InitProducerId,
                Action::Error(ErrorCode::ConcurrentTransactions),
            )
            .on_transactional_id("tx-1")
            .keep(),
        );
        let group = |id: &str| NamedIds {
            groups: vec![Arc::from(id)],
            transactional_ids: Vec::new(),
        };
        let txn = |id: &str| NamedIds {
            groups: Vec::new(),
            transactional_ids: vec![Arc::from(id)],
        };
        // Another group, or no group at all, passes.
        assert!(control
            .decide(ApiKey::JoinGroup, 0, &[], &group("other"))
            .request_action
            .is_none());
        assert!(control
            .decide(ApiKey::JoinGroup, 0, &[], &NamedIds::default())
            .request_action
            .is_none());
        assert!(matches!(
            control
                .decide(ApiKey::JoinGroup, 0, &[], &group("orders-app"))
                .request_action,
            Some(Action::Error(ErrorCode::NotCoordinator))
        ));
        // Used up: the next join of that group passes.
        assert!(control
            .decide(ApiKey::JoinGroup, 0, &[], &group("orders-app"))
            .request_action
            .is_none());
        for _ in 0..2 {
            assert!(matches!(
                control
                    .decide(ApiKey::InitProducerId, 1, &[], &txn("tx-1"))
                    .request_action,
                Some(Action::Error(ErrorCode::ConcurrentTransactions))
            ));
        }
        assert!(control
            .decide(ApiKey::InitProducerId, 1, &[], &txn("tx-2"))
            .request_action
            .is_none());
        // A group id is not a transactional id.
        assert!(control
            .decide(ApiKey::InitProducerId, 1, &[], &group("tx-1"))
            .request_action
            .is_none());
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
                        .decide(ApiKey::Produce, 0, &[], &NamedIds::default())
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

    fn summary<'a>(correlation_id: i32, partitions: &'a [(Arc<str>, i32)]) -> RequestSummary<'a> {
        RequestSummary {
            api_key: ApiKey::Produce,
            api_version: 9,
            broker_id: 0,
            client_id: Some("client"),
            correlation_id,
            at: Duration::ZERO,
            partitions,
        }
    }

    #[test]
    fn recording_is_bounded() {
        let mut control = Control::new(0, 2);
        for correlation_id in 0..5 {
            control.record(summary(correlation_id, &[]));
        }
        let ids: Vec<i32> = control
            .recorded()
            .iter()
            .map(|r| r.correlation_id)
            .collect();
        assert_eq!(ids, vec![3, 4]);
        assert_eq!(control.dropped_records(), 3);
    }

    #[test]
    fn the_record_keeps_the_first_partitions_and_one_copy_of_each_name() {
        let limits = RecordLimits {
            requests: 10,
            bytes: 1 << 20,
            partitions_per_request: 3,
        };
        let mut control = Control::with_record_limits(0, limits);
        let name: Arc<str> = Arc::from("x".repeat(249));
        let partitions: Vec<(Arc<str>, i32)> = (0..100).map(|p| (name.clone(), p)).collect();
        control.record(summary(1, &partitions));
        control.record(summary(2, &partitions));
        let recorded = control.recorded();
        let kept: Vec<i32> = recorded[0].partitions.iter().map(|(_, p)| *p).collect();
        assert_eq!(kept, vec![0, 1, 2]);
        assert_eq!(recorded[0].partitions_omitted, 97);
        assert_eq!(recorded[1].partition_count(), 100);
        // Both records share the interned copy, not the request's own.
        let first = &recorded[0].partitions[0].0;
        assert!(Arc::ptr_eq(first, &recorded[1].partitions[2].0));
        assert!(!Arc::ptr_eq(first, &name));
        assert_eq!(control.interned.len(), 2, "the topic and the client id");
    }

    #[test]
    fn the_record_is_bounded_in_bytes_and_forgets_the_names_it_dropped() {
        let limits = RecordLimits {
            requests: 1_000_000,
            bytes: 64 * 1024,
            partitions_per_request: 10,
        };
        let mut control = Control::with_record_limits(0, limits);
        for i in 0..10_000 {
            let name: Arc<str> = Arc::from(format!("{i:0>200}"));
            control.record(summary(i, &[(name, 0)]));
            assert!(control.recorded_bytes() <= limits.bytes);
        }
        assert!(control.dropped_records() > 9_000);
        // Each kept request's topic, and the client id.
        assert_eq!(control.interned.len(), control.recorded.len() + 1);
        // A name still held by a copy handed out survives its record, until a sweep.
        let copies = control.recorded();
        control.clear_recorded();
        assert_eq!((control.recorded_bytes(), control.interned.len()), (0, 0));
        drop(copies);
    }
}
