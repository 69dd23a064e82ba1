//! The group member's state machine (Java's `AbstractCoordinator` and
//! `ConsumerCoordinator`): finding the coordinator, joining and syncing, heartbeats,
//! leaving, and the commits and committed-offset lookups that go to the coordinator.
//!
//! # Call order
//!
//! 1. The consumer subscribes ([`GroupEngine::subscribe`], [`GroupEngine::subscribe_pattern`])
//!    or, for manual assignment with commits, only commits and looks offsets up.
//! 2. The driver loops: [`GroupEngine::handle_metadata`] with the metadata cache (pattern
//!    matches, the leader's partition counts), [`GroupEngine::poll_requests`] for the
//!    requests to send, each answer to [`GroupEngine::handle_response`] or
//!    [`GroupEngine::handle_failure`], sleeping until [`GroupEngine::poll_timeout`].
//!    [`GroupEngine::poll_leader_topics`] names topics the leader needs metadata for before
//!    it can assign; refresh them and call [`GroupEngine::handle_metadata`] again.
//! 3. The consumer calls [`GroupEngine::handle_poll`] each time the application enters or
//!    leaves `recv` (the `max.poll.interval.ms` clock), takes [`GroupEvent`]s with
//!    [`GroupEngine::poll_event`] (one at a time: revoke, lose, assign, each with the user's
//!    callback) and reports each done with [`GroupEngine::handle_event_done`]; it takes
//!    start positions ([`GroupEngine::poll_start_positions`]), commit outcomes
//!    ([`GroupEngine::poll_commit_results`]), lookups ([`GroupEngine::poll_lookup_results`])
//!    and errors for the user ([`GroupEngine::poll_error`]).
//!
//! # Errors, as Java handles them
//!
//! - UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION: the member is out of the group; its partitions
//!   are lost and it rejoins with a new identity.
//! - REBALANCE_IN_PROGRESS: rejoin, keeping the partitions (cooperative) or revoking them
//!   first (eager).
//! - NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE, a failed request, no heartbeat answered
//!   for `session.timeout.ms`: the coordinator is looked up again.
//! - COORDINATOR_LOAD_IN_PROGRESS: the same request again after a backoff.
//! - MEMBER_ID_REQUIRED (KIP-394): join again at once with the member id given.
//! - FENCED_INSTANCE_ID, GROUP_AUTHORIZATION_FAILED, INCONSISTENT_GROUP_PROTOCOL,
//!   INVALID_SESSION_TIMEOUT, GROUP_MAX_SIZE_REACHED, UNRELEASED_INSTANCE_ID, unknown codes:
//!   fatal ([`Error::GroupFailed`]); the consumer must be recreated.
//! - Commits: REBALANCE_IN_PROGRESS, UNKNOWN_MEMBER_ID and ILLEGAL_GENERATION fail the
//!   commit with [`Error::CommitFailed`] (as Java's `CommitFailedException` /
//!   `RebalanceInProgressException`); retriable errors are retried until the commit's
//!   deadline for a synchronous commit, and reported for an asynchronous one.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use kafka_protocol::messages::ResponseKind;
use regex::Regex;
use tracing::{debug, info, warn};

use super::assignor::{
    common_protocol, GroupSubscription, PartitionAssignor, RebalanceProtocol, Subscription,
};
use super::protocol::{
    decode_assignment, decode_subscription, encode_assignment, encode_subscription,
    CONSUMER_PROTOCOL_VERSION,
};
use super::requests::{Body, GroupRequest, OffsetAndMetadata, Target};
use crate::config::{Config, GroupProtocol, IsolationLevel};
use crate::engine::backoff::{Backoff, Rng};
use crate::engine::metadata::Metadata;
use crate::error::Error;
use crate::proto::ErrorCode;
use crate::topic_partition::TopicPartition;

/// The group settings, from [`Config`].
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// `group.id`.
    pub group_id: String,
    /// `group.instance.id`.
    pub group_instance_id: Option<String>,
    /// `session.timeout.ms`.
    pub session_timeout: Duration,
    /// `max.poll.interval.ms`, also the rebalance timeout.
    pub rebalance_timeout: Duration,
    /// `heartbeat.interval.ms`.
    pub heartbeat_interval: Duration,
    /// `retry.backoff.ms`.
    pub retry_backoff: Duration,
    /// `retry.backoff.max.ms`.
    pub retry_backoff_max: Duration,
    /// `enable.auto.commit`.
    pub auto_commit: bool,
    /// `auto.commit.interval.ms`.
    pub auto_commit_interval: Duration,
    /// `client.rack`.
    pub rack: Option<String>,
    /// OffsetFetch's `require_stable` (v7+): with `read_committed`, as Java asks.
    pub require_stable: bool,
    /// `group.protocol`.
    pub protocol: GroupProtocol,
    /// `group.remote.assignor` (KIP-848 only).
    pub remote_assignor: Option<String>,
}

impl GroupConfig {
    /// The group settings of `config`; `None` without a `group.id`.
    pub fn from_config(config: &Config) -> Option<Self> {
        Some(Self {
            group_id: config.group_id.clone()?,
            group_instance_id: config.group_instance_id.clone(),
            session_timeout: config.session_timeout,
            rebalance_timeout: config.max_poll_interval,
            heartbeat_interval: config.heartbeat_interval,
            retry_backoff: config.retry_backoff,
            retry_backoff_max: config.retry_backoff_max,
            auto_commit: config.enable_auto_commit,
            auto_commit_interval: config.auto_commit_interval,
            rack: config.client_rack.clone(),
            require_stable: config.isolation_level == IsolationLevel::ReadCommitted,
            protocol: config.group_protocol,
            remote_assignor: config.group_remote_assignor.clone(),
        })
    }
}

/// A step of a rebalance that the consumer carries out with the user's callback, one at a
/// time, reporting each with [`GroupEngine::handle_event_done`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupEvent {
    /// These partitions are being taken away: stop handing out their records, run
    /// `on_partitions_revoked` (which may commit), then report done.
    Revoke(Vec<TopicPartition>),
    /// These partitions were lost (the member was removed from the group): their commits
    /// would be refused; run `on_partitions_lost`, then report done.
    Lose(Vec<TopicPartition>),
    /// The new assignment: apply it to the fetcher (new partitions wait for their
    /// committed offsets), run `on_partitions_assigned` with `added`, then report done.
    Assign {
        /// The whole assignment.
        assignment: Vec<TopicPartition>,
        /// The partitions this member did not own before.
        added: Vec<TopicPartition>,
    },
}

/// Identifies a commit or a lookup the consumer waits for.
pub type Token = u64;

/// The outcome of a committed-offset lookup.
pub type Committed = BTreeMap<TopicPartition, Option<OffsetAndMetadata>>;

#[derive(Debug, Clone)]
enum Phase {
    /// Not a member: nothing to join (manual assignment, or not subscribed yet).
    Idle,
    /// Rejoining: rebalance steps first, then a JoinGroup (in flight when `Some`).
    Joining { request: Option<u64> },
    /// The leader has the members and waits for metadata of their topics.
    Assigning { members: Vec<JoinedMember> },
    /// A SyncGroup to send (with `assignments` as the leader) or in flight.
    Syncing {
        assignments: Vec<(String, bytes::Bytes)>,
        request: Option<u64>,
    },
    /// A member with an assignment, heartbeating.
    Stable,
}

#[derive(Debug, Clone)]
struct JoinedMember {
    member_id: String,
    subscription: Subscription,
}

#[derive(Debug)]
struct Retry {
    backoff: Backoff,
    at: Option<Instant>,
}

impl Retry {
    fn new(config: &GroupConfig) -> Self {
        Self {
            backoff: Backoff::new(config.retry_backoff, config.retry_backoff_max),
            at: None,
        }
    }

    fn ready(&self, now: Instant) -> bool {
        self.at.is_none_or(|at| at <= now)
    }

    fn fail(&mut self, rng: &mut Rng, now: Instant) {
        self.at = Some(now + self.backoff.next_delay(rng));
    }

    fn succeed(&mut self) {
        self.backoff.reset();
        self.at = None;
    }

    fn pending(&self, now: Instant) -> Option<Instant> {
        self.at.filter(|at| *at > now)
    }
}

#[derive(Debug)]
struct Commit {
    token: Token,
    offsets: Vec<(TopicPartition, OffsetAndMetadata)>,
    /// Retried until then (synchronous commits); `None`: tried once (asynchronous).
    deadline: Option<Instant>,
    retry_at: Option<Instant>,
}

#[derive(Debug)]
struct Lookup {
    /// `None`: start positions for the fetcher; `Some`: a user's `committed` call.
    token: Option<Token>,
    partitions: Vec<TopicPartition>,
    deadline: Option<Instant>,
}

#[derive(Debug)]
enum Leave {
    None,
    Pending(String),
    InFlight(u64),
}

/// The group member: see the module documentation.
#[derive(Debug)]
pub struct GroupEngine {
    config: GroupConfig,
    assignors: Vec<Box<dyn PartitionAssignor>>,
    protocol: RebalanceProtocol,
    rng: Rng,
    next_id: u64,

    coordinator: Option<(i32, String)>,
    find_in_flight: Option<u64>,
    find_retry: Retry,

    pattern: Option<Regex>,
    /// The topics subscribed to (for a pattern: those that match), `None` unsubscribed.
    topics: Option<BTreeSet<String>>,
    member_id: String,
    generation: i32,
    protocol_name: Option<String>,
    phase: Phase,
    rejoin: Option<String>,
    join_retry: Retry,
    owned: Vec<TopicPartition>,
    /// As leader: each topic of the group's subscriptions and its partition count when
    /// assigned; a change means a new assignment (Java's `isLeader` metadata check).
    assigned_counts: Option<BTreeMap<String, i32>>,

    heartbeat_in_flight: Option<u64>,
    next_heartbeat: Option<Instant>,
    last_heartbeat_answer: Option<Instant>,

    last_poll: Option<Instant>,
    in_poll: bool,
    poll_expired: bool,

    events: VecDeque<GroupEvent>,
    event_out: Option<GroupEvent>,

    commits: VecDeque<Commit>,
    commits_in_flight: HashMap<u64, Commit>,
    commit_results: Vec<(Token, Result<(), Error>)>,
    next_auto_commit: Option<Instant>,
    last_committed: HashMap<TopicPartition, i64>,
    /// The group's committed offset of each partition as last seen, committed by this
    /// member or looked up (statistics; `last_committed` is what auto-commit compares).
    seen_committed: HashMap<TopicPartition, i64>,

    lookups: VecDeque<Lookup>,
    lookups_in_flight: HashMap<u64, Lookup>,
    lookup_retry: Retry,
    start_positions: Vec<(TopicPartition, Option<i64>)>,
    lookup_results: Vec<(Token, Result<Committed, Error>)>,

    errors: VecDeque<Error>,
    leave: Leave,
    /// The member id a pending LeaveGroup names (the generation is reset at once).
    leaving_member: String,
    failed: Option<Error>,
    next_token: Token,
    /// The KIP-848 member (`group.protocol=consumer`); `None`: the classic protocol.
    kip848: Option<consumer_protocol::Kip848>,
}

impl GroupEngine {
    /// A member of `config.group_id` that assigns with `assignors` when it leads (in order
    /// of preference); `seed` drives backoff jitter. Errors when the assignors share no
    /// rebalance protocol or none is given.
    pub fn new(
        config: GroupConfig,
        assignors: Vec<Box<dyn PartitionAssignor>>,
        seed: u64,
    ) -> Result<Self, Error> {
        if assignors.is_empty() {
            return Err(Error::config(
                "partition.assignment.strategy",
                "at least one assignor is needed",
            ));
        }
        let protocol = common_protocol(&assignors).ok_or_else(|| {
            Error::config(
                "partition.assignment.strategy",
                "the assignors support no common rebalance protocol",
            )
        })?;
        let mut rng = Rng::new(seed);
        let kip848 = (config.protocol == GroupProtocol::Consumer).then(|| {
            consumer_protocol::Kip848::new(&config, config.remote_assignor.clone(), &mut rng)
        });
        Ok(Self {
            kip848,
            find_retry: Retry::new(&config),
            join_retry: Retry::new(&config),
            lookup_retry: Retry::new(&config),
            config,
            assignors,
            protocol,
            rng,
            next_id: 0,
            coordinator: None,
            find_in_flight: None,
            pattern: None,
            topics: None,
            member_id: String::new(),
            generation: -1,
            protocol_name: None,
            phase: Phase::Idle,
            rejoin: None,
            owned: Vec::new(),
            assigned_counts: None,
            heartbeat_in_flight: None,
            next_heartbeat: None,
            last_heartbeat_answer: None,
            last_poll: None,
            in_poll: false,
            poll_expired: false,
            events: VecDeque::new(),
            event_out: None,
            commits: VecDeque::new(),
            commits_in_flight: HashMap::new(),
            commit_results: Vec::new(),
            next_auto_commit: None,
            last_committed: HashMap::new(),
            seen_committed: HashMap::new(),
            lookups: VecDeque::new(),
            lookups_in_flight: HashMap::new(),
            start_positions: Vec::new(),
            lookup_results: Vec::new(),
            errors: VecDeque::new(),
            leave: Leave::None,
            leaving_member: String::new(),
            failed: None,
            next_token: 0,
        })
    }

    /// The settings.
    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// The rebalance protocol of the configured assignors.
    pub fn protocol(&self) -> RebalanceProtocol {
        self.protocol
    }

    /// Java's `ConsumerGroupMetadata`: group, generation, member id, instance id.
    pub fn group_metadata(&self) -> crate::group_metadata::ConsumerGroupMetadata {
        let (generation, member_id) = match &self.kip848 {
            Some(kip) => (kip.epoch(), kip.member_id().to_string()),
            None => (self.generation, self.member_id.clone()),
        };
        crate::group_metadata::ConsumerGroupMetadata::member(
            self.config.group_id.clone(),
            generation,
            member_id,
            self.config.group_instance_id.clone(),
        )
    }

    /// The partitions the group assigned this member.
    pub fn owned(&self) -> &[TopicPartition] {
        &self.owned
    }

    /// Whether the member subscribes (to topics or a pattern).
    pub fn is_subscribed(&self) -> bool {
        self.topics.is_some()
    }

    /// The subscribed topics (for a pattern, those that matched so far).
    pub fn subscription(&self) -> Vec<String> {
        self.topics
            .as_ref()
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether a pattern subscription needs every topic's name from the metadata.
    pub fn wants_all_topics(&self) -> bool {
        self.pattern.is_some()
    }

    /// Whether the member is in a generation that still accepts its commits: it has joined
    /// and its next JoinGroup has not gone out (Java's `generationIfStable`).
    pub fn in_generation(&self) -> bool {
        match &self.kip848 {
            Some(kip) => kip.in_group(),
            None => self.heartbeating(),
        }
    }

    /// Whether the member is in a generation with an assignment and no rebalance going on.
    pub fn is_stable(&self) -> bool {
        match &self.kip848 {
            Some(kip) => kip.in_group(),
            None => matches!(self.phase, Phase::Stable) && self.rejoin.is_none(),
        }
    }

    /// The heartbeat interval in use: the broker's with KIP-848, else
    /// `heartbeat.interval.ms`.
    pub fn heartbeat_interval(&self) -> Duration {
        self.kip848.as_ref().map_or(
            self.config.heartbeat_interval,
            consumer_protocol::Kip848::interval,
        )
    }

    /// The fatal error, once the group failed.
    pub fn failure(&self) -> Option<&Error> {
        self.failed.as_ref()
    }

    fn next_request_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn next_token(&mut self) -> Token {
        self.next_token += 1;
        self.next_token
    }

    // ---- Subscription ----

    /// Subscribes to `topics` (replacing any subscription); a change rejoins the group.
    pub fn subscribe(&mut self, topics: impl IntoIterator<Item = String>) {
        self.pattern = None;
        self.set_topics(topics.into_iter().collect(), "subscription changed");
    }

    /// Subscribes to the topics whose whole name matches `pattern` (Java's
    /// `Pattern.matcher(topic).matches()`), now and as they are created; internal topics
    /// are left out. The match happens in [`GroupEngine::handle_metadata`].
    pub fn subscribe_pattern(&mut self, pattern: &str) -> Result<(), Error> {
        let anchored = Regex::new(&format!("^(?:{pattern})$"))
            .map_err(|e| Error::InvalidArgument(format!("bad topic pattern {pattern:?}: {e}")))?;
        self.pattern = Some(anchored);
        self.set_topics(BTreeSet::new(), "subscription changed");
        Ok(())
    }

    fn set_topics(&mut self, topics: BTreeSet<String>, reason: &str) {
        if self.kip848.is_some() {
            self.topics = Some(topics);
            self.kip_subscription_changed();
            return;
        }
        if self.topics.as_ref() == Some(&topics) {
            return;
        }
        self.topics = Some(topics);
        self.request_rejoin(reason);
    }

    /// Leaves the group (LeaveGroup for dynamic members) and drops the subscription; the
    /// owned partitions are revoked first ([`GroupEvent::Revoke`]).
    pub fn unsubscribe(&mut self) {
        if self.topics.take().is_none() {
            return;
        }
        self.pattern = None;
        if !self.owned.is_empty() {
            self.events
                .push_back(GroupEvent::Revoke(self.owned.clone()));
        }
        self.leave_group("the consumer unsubscribed");
        self.rejoin = None;
        self.phase = Phase::Idle;
    }

    fn request_rejoin(&mut self, reason: &str) {
        if self.topics.is_none() || self.failed.is_some() {
            return;
        }
        if self.kip848.is_some() {
            debug!(group = %self.config.group_id, reason, "the next heartbeat says so");
            self.kip_subscription_changed();
            return;
        }
        if self.rejoin.is_none() {
            debug!(group = %self.config.group_id, reason, "rejoin requested");
            self.rejoin = Some(reason.to_string());
        }
    }

    /// Feeds the metadata cache: a pattern matches new topics (a rejoin when the matched
    /// set changes), and the leader notices partition counts that changed since it
    /// assigned (a rejoin, so that new partitions get an owner).
    pub fn handle_metadata(&mut self, metadata: &Metadata, now: Instant) {
        self.kip_handle_metadata(metadata);
        if let Some(pattern) = &self.pattern {
            let matched: BTreeSet<String> = metadata
                .topics()
                .filter(|t| !t.is_internal && pattern.is_match(&t.name))
                .map(|t| t.name.clone())
                .collect();
            if self.topics.is_some() && self.topics.as_ref() != Some(&matched) {
                self.topics = Some(matched);
                self.request_rejoin("the pattern matches other topics");
            }
        }
        if let Phase::Assigning { members } = &self.phase {
            let topics: BTreeSet<&String> = members
                .iter()
                .flat_map(|m| &m.subscription.topics)
                .collect();
            if topics
                .iter()
                .all(|t| metadata.partition_count(t).is_some() || metadata.topic_error(t).is_some())
            {
                let members = members.clone();
                self.assign_as_leader(members, metadata, now);
            }
            return;
        }
        if let Some(counts) = &self.assigned_counts {
            let changed = counts.iter().any(|(topic, count)| {
                metadata
                    .partition_count(topic)
                    .is_some_and(|now| i32::try_from(now).unwrap_or(i32::MAX) != *count)
            });
            if changed {
                self.assigned_counts = None;
                self.request_rejoin("partitions were added to a subscribed topic");
            }
        }
    }

    /// The topics the leader needs metadata for (the group's subscriptions), while it
    /// waits to assign; the driver makes the metadata want them and refreshes it.
    pub fn poll_leader_topics(&self) -> Vec<String> {
        if self.kip848.is_some() {
            // The subscribed topics: their ids name the assignment's partitions.
            return if self.pattern.is_some() {
                Vec::new()
            } else {
                self.subscription()
            };
        }
        match &self.phase {
            Phase::Assigning { members } => {
                let topics: BTreeSet<&String> = members
                    .iter()
                    .flat_map(|m| &m.subscription.topics)
                    .collect();
                topics.into_iter().cloned().collect()
            }
            _ => self
                .assigned_counts
                .as_ref()
                .map(|c| c.keys().cloned().collect())
                .unwrap_or_default(),
        }
    }

    // ---- The application's side ----

    /// The application entered (`waiting`: it waits in `recv`) or left `recv` at `now`.
    /// If the member left the group because `max.poll.interval.ms` passed, the first call
    /// reports [`Error::PollIntervalExceeded`] and rejoins.
    pub fn handle_poll(&mut self, now: Instant, waiting: bool) {
        self.last_poll = Some(now);
        self.in_poll = waiting;
        if std::mem::take(&mut self.poll_expired) {
            self.errors.push_back(Error::PollIntervalExceeded {
                interval: self.config.rebalance_timeout,
            });
            self.request_rejoin("the application polls again");
        }
    }

    /// The next rebalance step for the consumer, once the previous one is done.
    pub fn poll_event(&mut self, now: Instant) -> Option<GroupEvent> {
        if self.event_out.is_some() {
            return None;
        }
        self.prepare_join(now);
        self.kip_prepare(now);
        let event = self.events.pop_front()?;
        self.event_out = Some(event.clone());
        Some(event)
    }

    /// Whether `recv` must look at the group before handing out records: a rebalance step
    /// or an error waits, or a rejoin will start with one.
    pub fn needs_attention(&self) -> bool {
        self.has_events()
            || !self.errors.is_empty()
            || (self.kip848.is_some() && self.failed.is_some())
            || self.poll_expired
            || (self.rejoin.is_some()
                && self.topics.is_some()
                && matches!(self.phase, Phase::Stable | Phase::Idle))
    }

    /// Whether a step is out with the consumer or waiting.
    pub fn has_events(&self) -> bool {
        self.event_out.is_some() || !self.events.is_empty()
    }

    /// The consumer finished the step [`GroupEngine::poll_event`] gave.
    pub fn handle_event_done(&mut self) {
        match self.event_out.take() {
            Some(GroupEvent::Revoke(partitions)) | Some(GroupEvent::Lose(partitions)) => {
                self.owned.retain(|tp| !partitions.contains(tp));
            }
            Some(GroupEvent::Assign { .. }) | None => {}
        }
    }

    /// An error for the user (fatal group errors, the poll interval, failed async commits);
    /// with KIP-848, once the group failed, its error again on every call.
    pub fn poll_error(&mut self) -> Option<Error> {
        self.errors.pop_front().or_else(|| {
            // KIP-848: a fatal error is the answer to every later `recv`, never a wait.
            self.kip848.as_ref().and(self.failed.clone())
        })
    }

    // ---- Commits and lookups ----

    /// Commits `offsets` to the group. `deadline`: a synchronous commit, retried on
    /// retriable errors until then; `None`: asynchronous, tried once. The outcome comes
    /// back through [`GroupEngine::poll_commit_results`] with the returned token.
    pub fn commit(
        &mut self,
        offsets: Vec<(TopicPartition, OffsetAndMetadata)>,
        deadline: Option<Instant>,
    ) -> Token {
        let token = self.next_token();
        if let Some(error) = &self.failed {
            self.commit_results.push((token, Err(error.clone())));
        } else if offsets.is_empty() {
            self.commit_results.push((token, Ok(())));
        } else {
            self.commits.push_back(Commit {
                token,
                offsets,
                deadline,
                retry_at: None,
            });
        }
        token
    }

    /// Whether an automatic commit is due: the consumer then commits the consumed
    /// positions ([`GroupEngine::auto_commit_offsets`]). Only in a stable generation when
    /// subscribed; always with manual assignment (Java auto-commits assigned partitions
    /// too when there is a `group.id`).
    pub fn poll_auto_commit(&mut self, now: Instant) -> bool {
        if !self.config.auto_commit || self.failed.is_some() {
            return false;
        }
        if self.topics.is_some() && !self.is_stable() {
            return false;
        }
        match self.next_auto_commit {
            Some(at) if at <= now => {
                self.next_auto_commit = Some(now + self.config.auto_commit_interval);
                true
            }
            None => {
                self.next_auto_commit = Some(now + self.config.auto_commit_interval);
                false
            }
            _ => false,
        }
    }

    /// The group's committed offset of `tp` as this member last committed or looked it up
    /// (for statistics: another member may have committed since).
    pub fn seen_committed(&self, tp: &TopicPartition) -> Option<i64> {
        self.seen_committed.get(tp).copied()
    }

    /// Of `positions`, those that changed since they were last committed.
    pub fn auto_commit_offsets(
        &self,
        positions: Vec<(TopicPartition, i64)>,
    ) -> Vec<(TopicPartition, OffsetAndMetadata)> {
        positions
            .into_iter()
            .filter(|(tp, offset)| self.last_committed.get(tp) != Some(offset))
            .map(|(tp, offset)| (tp, OffsetAndMetadata::new(offset)))
            .collect()
    }

    /// Looks up where `partitions` start: their committed offsets, delivered by
    /// [`GroupEngine::poll_start_positions`] (`None` for a partition without one).
    pub fn fetch_start_positions(&mut self, partitions: Vec<TopicPartition>) {
        if !partitions.is_empty() {
            self.lookups.push_back(Lookup {
                token: None,
                partitions,
                deadline: None,
            });
        }
    }

    /// Looks up the committed offsets of `partitions` for the user, until `deadline`.
    pub fn committed(&mut self, partitions: Vec<TopicPartition>, deadline: Instant) -> Token {
        let token = self.next_token();
        if let Some(error) = &self.failed {
            self.lookup_results.push((token, Err(error.clone())));
        } else {
            self.lookups.push_back(Lookup {
                token: Some(token),
                partitions,
                deadline: Some(deadline),
            });
        }
        token
    }

    /// Finished commits.
    pub fn poll_commit_results(&mut self) -> Vec<(Token, Result<(), Error>)> {
        std::mem::take(&mut self.commit_results)
    }

    /// Finished lookups of the user's.
    pub fn poll_lookup_results(&mut self) -> Vec<(Token, Result<Committed, Error>)> {
        std::mem::take(&mut self.lookup_results)
    }

    /// Committed offsets found for the fetcher's waiting partitions.
    pub fn poll_start_positions(&mut self) -> Vec<(TopicPartition, Option<i64>)> {
        std::mem::take(&mut self.start_positions)
    }

    // ---- Leaving ----

    /// Closing: leaves the group (a LeaveGroup for dynamic members; static members stay
    /// until `session.timeout.ms`, KIP-345). Whether a LeaveGroup is to be sent.
    pub fn close(&mut self) -> bool {
        debug!(group = %self.config.group_id, member = %self.member_id, "closing");
        self.topics = None;
        self.pattern = None;
        self.rejoin = None;
        self.leave_group("the consumer is closing");
        self.phase = Phase::Idle;
        matches!(self.leave, Leave::Pending(_))
    }

    /// Whether a LeaveGroup is still to be sent or answered.
    pub fn is_leaving(&self) -> bool {
        !matches!(self.leave, Leave::None)
    }

    /// Whether commits or lookups are waiting or in flight.
    pub fn has_pending_work(&self) -> bool {
        !self.commits.is_empty()
            || !self.commits_in_flight.is_empty()
            || !self.lookups.is_empty()
            || !self.lookups_in_flight.is_empty()
    }

    fn leave_group(&mut self, reason: &str) {
        if self.kip848.is_some() {
            self.kip_leave(reason);
            return;
        }
        let member = !self.member_id.is_empty() && self.generation >= 0;
        if member && self.config.group_instance_id.is_none() {
            self.leave = Leave::Pending(reason.to_string());
            self.leaving_member = self.member_id.clone();
        }
        self.reset_generation();
    }

    fn reset_generation(&mut self) {
        if self.kip848.is_some() {
            // The next heartbeat finds out whether the member was fenced.
            return;
        }
        self.generation = -1;
        self.member_id.clear();
        self.protocol_name = None;
        self.heartbeat_in_flight = None;
        self.next_heartbeat = None;
        self.assigned_counts = None;
        if matches!(
            self.phase,
            Phase::Stable | Phase::Assigning { .. } | Phase::Syncing { .. }
        ) {
            self.phase = Phase::Idle;
        }
    }

    fn fail(&mut self, error: Error) {
        warn!(group = %self.config.group_id, %error, "the consumer group failed");
        self.failed = Some(error.clone());
        self.errors.push_back(error.clone());
        for commit in self
            .commits
            .drain(..)
            .chain(self.commits_in_flight.drain().map(|(_, c)| c))
        {
            self.commit_results.push((commit.token, Err(error.clone())));
        }
        for lookup in self
            .lookups
            .drain(..)
            .chain(self.lookups_in_flight.drain().map(|(_, l)| l))
        {
            if let Some(token) = lookup.token {
                self.lookup_results.push((token, Err(error.clone())));
            }
        }
        self.phase = Phase::Idle;
        self.rejoin = None;
        self.topics = None;
    }

    fn group_failed(&self, code: ErrorCode) -> Error {
        Error::GroupFailed {
            group: self.config.group_id.clone(),
            code,
        }
    }

    // ---- The driver's side ----

    fn coordinator_lost(&mut self, why: &str) {
        if let Some((node, _)) = self.coordinator.take() {
            info!(group = %self.config.group_id, node, why, "group coordinator lost, looking it up again");
        }
        self.heartbeat_in_flight = None;
    }

    /// Whether there is anything to ask the coordinator.
    fn needs_coordinator(&self) -> bool {
        self.failed.is_none()
            && (self.topics.is_some()
                || !self.commits.is_empty()
                || !self.lookups.is_empty()
                || !matches!(self.leave, Leave::None))
    }

    /// Starts a rejoin when one is needed: the steps before JoinGroup (Java's
    /// `onJoinPrepare`): lost partitions after the member was removed, all owned
    /// partitions revoked for the eager protocol, partitions of topics no longer
    /// subscribed for the cooperative one.
    fn prepare_join(&mut self, now: Instant) {
        if self.rejoin.is_none() || self.topics.is_none() || self.failed.is_some() {
            return;
        }
        if matches!(
            self.phase,
            Phase::Joining { .. } | Phase::Assigning { .. } | Phase::Syncing { .. }
        ) {
            return;
        }
        let _ = now;
        if !self.owned.is_empty() {
            if self.generation < 0 {
                self.events.push_back(GroupEvent::Lose(self.owned.clone()));
            } else if self.protocol == RebalanceProtocol::Eager {
                self.events
                    .push_back(GroupEvent::Revoke(self.owned.clone()));
            } else {
                let topics = self.topics.clone().unwrap_or_default();
                let gone: Vec<TopicPartition> = self
                    .owned
                    .iter()
                    .filter(|tp| !topics.contains(&tp.topic))
                    .cloned()
                    .collect();
                if !gone.is_empty() {
                    self.events.push_back(GroupEvent::Revoke(gone));
                }
            }
        }
        self.phase = Phase::Joining { request: None };
    }

    /// The requests to send now, in order.
    pub fn poll_requests(&mut self, now: Instant) -> Vec<GroupRequest> {
        let mut out = Vec::new();
        self.check_timers(now);
        self.prepare_join(now);
        let Some((node, address)) = self.coordinator.clone() else {
            if self.needs_coordinator()
                && self.find_in_flight.is_none()
                && self.find_retry.ready(now)
            {
                let id = self.next_request_id();
                self.find_in_flight = Some(id);
                out.push(GroupRequest {
                    id,
                    target: Target::AnyBroker,
                    body: Body::FindCoordinator {
                        group_id: self.config.group_id.clone(),
                    },
                });
            }
            self.expire_waiting(now);
            return out;
        };
        let target = Target::Coordinator { node, address };
        if self.kip848.is_some() {
            self.kip_prepare(now);
            out.extend(self.kip_poll_heartbeat(now, &target));
        }
        let request = |id, body| GroupRequest {
            id,
            target: target.clone(),
            body,
        };
        if let (Leave::Pending(reason), None) = (&self.leave, &self.kip848) {
            let reason = reason.clone();
            info!(group = %self.config.group_id, member = %self.leaving_member, %reason, "leaving the group");
            let id = self.next_request_id();
            let member_id = std::mem::take(&mut self.leaving_member);
            out.push(request(
                id,
                Body::LeaveGroup {
                    group_id: self.config.group_id.clone(),
                    member_id,
                    group_instance_id: self.config.group_instance_id.clone(),
                    reason,
                },
            ));
            self.leave = Leave::InFlight(id);
        }
        // JoinGroup, once the rebalance steps before it are done.
        if let (Phase::Joining { request: None }, None) = (&self.phase, &self.kip848) {
            if !self.has_events() && self.join_retry.ready(now) && self.rejoin.is_some() {
                let id = self.next_request_id();
                let reason = self.rejoin.clone();
                out.push(request(id, self.join_body(reason)));
                self.phase = Phase::Joining { request: Some(id) };
                self.heartbeat_in_flight = None;
                self.next_heartbeat = None;
            }
        }
        if let Phase::Syncing {
            assignments,
            request: None,
        } = &self.phase
        {
            if self.join_retry.ready(now) {
                let assignments = assignments.clone();
                let id = self.next_request_id();
                out.push(request(
                    id,
                    Body::SyncGroup {
                        group_id: self.config.group_id.clone(),
                        generation: self.generation,
                        member_id: self.member_id.clone(),
                        group_instance_id: self.config.group_instance_id.clone(),
                        protocol_name: self.protocol_name.clone().unwrap_or_default(),
                        assignments: assignments.clone(),
                    },
                ));
                self.phase = Phase::Syncing {
                    assignments,
                    request: Some(id),
                };
            }
        }
        // Heartbeats while a member, until the JoinGroup goes out.
        if self.heartbeating()
            && self.heartbeat_in_flight.is_none()
            && self.next_heartbeat.is_some_and(|at| at <= now)
        {
            let id = self.next_request_id();
            out.push(request(
                id,
                Body::Heartbeat {
                    group_id: self.config.group_id.clone(),
                    generation: self.generation,
                    member_id: self.member_id.clone(),
                    group_instance_id: self.config.group_instance_id.clone(),
                },
            ));
            self.heartbeat_in_flight = Some(id);
            self.next_heartbeat = Some(now + self.config.heartbeat_interval);
        }
        // Commits, one request per commit; only in a stable generation when subscribed.
        let mut waiting = VecDeque::new();
        while let Some(mut commit) = self.commits.pop_front() {
            if commit.retry_at.is_some_and(|at| at > now) {
                waiting.push_back(commit);
                continue;
            }
            // Java's `generationIfStable`: a member commits in its generation until its
            // JoinGroup goes out (so a revoke callback before a rebalance can commit).
            if self.topics.is_some() && !self.in_generation() {
                let not_joined = match &self.kip848 {
                    Some(kip) => kip.state() != consumer_protocol::MemberState::Reconciling,
                    None => matches!(self.phase, Phase::Idle) && self.rejoin.is_none(),
                };
                let error = if not_joined {
                    commit_failed(
                        None,
                        "the consumer is not part of an active group (it was likely removed \
                         from it); it rejoins on the next recv",
                    )
                } else {
                    Error::CommitFailed {
                        code: Some(ErrorCode::RebalanceInProgress),
                        reason: "a rebalance is in progress: the offsets can be committed \
                                 again once it completes"
                            .into(),
                    }
                };
                self.commit_results.push((commit.token, Err(error)));
                continue;
            }
            commit.retry_at = None;
            let id = self.next_request_id();
            let (generation, member_id) = if let Some(kip) = &self.kip848 {
                let (member_id, epoch) = kip.identity();
                (epoch, member_id)
            } else if self.topics.is_some() {
                (self.generation, self.member_id.clone())
            } else {
                // Manual assignment: no generation, as Java's `Generation.NO_GENERATION`.
                (-1, String::new())
            };
            out.push(request(
                id,
                Body::OffsetCommit {
                    group_id: self.config.group_id.clone(),
                    generation,
                    member_id,
                    group_instance_id: self.config.group_instance_id.clone(),
                    offsets: commit.offsets.clone(),
                },
            ));
            self.commits_in_flight.insert(id, commit);
        }
        self.commits = waiting;
        // Committed-offset lookups, one in flight at a time.
        if self.lookups_in_flight.is_empty() && self.lookup_retry.ready(now) {
            if let Some(lookup) = self.lookups.pop_front() {
                let id = self.next_request_id();
                let member = self
                    .kip848
                    .as_ref()
                    .filter(|kip| kip.in_group())
                    .map(consumer_protocol::Kip848::identity);
                out.push(request(
                    id,
                    Body::OffsetFetch {
                        group_id: self.config.group_id.clone(),
                        partitions: lookup.partitions.clone(),
                        require_stable: self.config.require_stable,
                        member,
                    },
                ));
                self.lookups_in_flight.insert(id, lookup);
            }
        }
        out
    }

    fn heartbeating(&self) -> bool {
        self.generation >= 0
            && !self.member_id.is_empty()
            && matches!(self.phase, Phase::Stable | Phase::Joining { request: None })
    }

    fn join_body(&mut self, reason: Option<String>) -> Body {
        let topics: BTreeSet<String> = self.topics.clone().unwrap_or_default();
        let owned = self.owned.clone();
        let protocols = self
            .assignors
            .iter()
            .map(|assignor| {
                let subscription = Subscription {
                    topics: topics.iter().cloned().collect(),
                    user_data: assignor.subscription_user_data(&topics, &owned, self.generation),
                    owned_partitions: owned.clone(),
                    generation_id: (self.generation >= 0).then_some(self.generation),
                    rack_id: self.config.rack.clone(),
                    group_instance_id: None,
                };
                (
                    assignor.name().to_string(),
                    encode_subscription(&subscription, CONSUMER_PROTOCOL_VERSION),
                )
            })
            .collect();
        Body::JoinGroup {
            group_id: self.config.group_id.clone(),
            session_timeout_ms: millis(self.config.session_timeout),
            rebalance_timeout_ms: millis(self.config.rebalance_timeout),
            member_id: self.member_id.clone(),
            group_instance_id: self.config.group_instance_id.clone(),
            protocols,
            reason,
        }
    }

    /// Session and poll timers.
    fn check_timers(&mut self, now: Instant) {
        if self.heartbeating() {
            if let Some(last) = self.last_heartbeat_answer {
                if now >= last + self.config.session_timeout && self.coordinator.is_some() {
                    self.coordinator_lost("no heartbeat answered within session.timeout.ms");
                    self.last_heartbeat_answer = Some(now);
                }
            }
        }
        let kip_in_group = self.kip848.as_ref().is_some_and(|k| k.in_group());
        if kip_in_group && self.topics.is_some() && !self.in_poll {
            if let Some(last) = self.last_poll {
                if now >= last + self.config.rebalance_timeout {
                    warn!(
                        group = %self.config.group_id,
                        interval = ?self.config.rebalance_timeout,
                        "the application did not call recv within max.poll.interval.ms: \
                         leaving the group"
                    );
                    self.kip_poll_expired();
                    self.poll_expired = true;
                }
            }
        }
        if self.topics.is_some() && !self.in_poll && self.generation >= 0 {
            if let Some(last) = self.last_poll {
                if now >= last + self.config.rebalance_timeout {
                    warn!(
                        group = %self.config.group_id,
                        interval = ?self.config.rebalance_timeout,
                        "the application did not call recv within max.poll.interval.ms: \
                         leaving the group"
                    );
                    self.leave_group("consumer poll timeout has expired");
                    self.poll_expired = true;
                    self.rejoin = None;
                }
            }
        }
    }

    /// Synchronous commits and user lookups past their deadline fail; asynchronous ones
    /// waiting for a coordinator too.
    fn expire_waiting(&mut self, now: Instant) {
        let mut kept = VecDeque::new();
        while let Some(commit) = self.commits.pop_front() {
            if commit.deadline.is_some_and(|d| d <= now) {
                self.commit_results
                    .push((commit.token, Err(commit_timeout("no coordinator answered"))));
            } else {
                kept.push_back(commit);
            }
        }
        self.commits = kept;
        let mut kept = VecDeque::new();
        while let Some(lookup) = self.lookups.pop_front() {
            match (lookup.token, lookup.deadline) {
                (Some(token), Some(deadline)) if deadline <= now => {
                    self.lookup_results
                        .push((token, Err(Error::RequestTimeout(Duration::ZERO))));
                }
                _ => kept.push_back(lookup),
            }
        }
        self.lookups = kept;
    }

    /// The earliest time something is due: a heartbeat, a backoff's end, the session or
    /// poll deadline, an automatic commit, a commit's deadline.
    pub fn poll_timeout(&self, now: Instant) -> Option<Instant> {
        let mut times: Vec<Instant> = Vec::new();
        if self.heartbeating() {
            times.extend(self.next_heartbeat);
            times.extend(
                self.last_heartbeat_answer
                    .map(|t| t + self.config.session_timeout),
            );
        }
        let kip_in_group = self.kip848.as_ref().is_some_and(|k| k.in_group());
        if self.topics.is_some() && !self.in_poll && (self.generation >= 0 || kip_in_group) {
            times.extend(self.last_poll.map(|t| t + self.config.rebalance_timeout));
        }
        if self.config.auto_commit && (self.is_stable() || self.topics.is_none()) {
            times.extend(self.next_auto_commit);
        }
        times.extend(self.kip_timeout(now));
        times.extend(self.find_retry.pending(now));
        times.extend(self.join_retry.pending(now));
        times.extend(self.lookup_retry.pending(now));
        times.extend(
            self.commits
                .iter()
                .filter_map(|c| c.retry_at.or(c.deadline)),
        );
        times.extend(self.lookups.iter().filter_map(|l| l.deadline));
        times.into_iter().filter(|t| *t > now).min()
    }

    /// A request failed as a whole (no answer, a broken connection).
    pub fn handle_failure(&mut self, id: u64, error: &Error, now: Instant) {
        if self.find_in_flight == Some(id) {
            self.find_in_flight = None;
            self.find_retry.fail(&mut self.rng, now);
            debug!(group = %self.config.group_id, %error, "FindCoordinator failed");
            if matches!(error, Error::UnsupportedVersion { .. }) {
                self.fail(error.clone());
            }
            return;
        }
        if matches!(
            error,
            Error::UnsupportedVersion { .. } | Error::InvalidArgument(_)
        ) {
            self.fail(error.clone());
            return;
        }
        self.coordinator_lost(&error.to_string());
        self.handle_lost_request(id, error, now);
    }

    /// Puts a request whose answer will not come back where it can be sent again.
    fn handle_lost_request(&mut self, id: u64, error: &Error, now: Instant) {
        match &mut self.phase {
            Phase::Joining { request } if *request == Some(id) => {
                *request = None;
                self.join_retry.fail(&mut self.rng, now);
            }
            Phase::Syncing { request, .. } if *request == Some(id) => {
                // The generation may have moved on meanwhile: join again.
                self.phase = Phase::Joining { request: None };
                self.request_rejoin("SyncGroup failed");
            }
            _ => {}
        }
        if self.heartbeat_in_flight == Some(id) {
            self.heartbeat_in_flight = None;
        }
        self.kip_heartbeat_lost(id, now);
        if let Leave::InFlight(leave) = self.leave {
            if leave == id {
                self.leave = Leave::None;
            }
        }
        if let Some(mut commit) = self.commits_in_flight.remove(&id) {
            if commit.deadline.is_some_and(|d| d > now) {
                commit.retry_at = Some(now + self.config.retry_backoff);
                self.commits.push_front(commit);
            } else {
                self.commit_results.push((commit.token, Err(error.clone())));
            }
        }
        if let Some(lookup) = self.lookups_in_flight.remove(&id) {
            self.lookup_retry.fail(&mut self.rng, now);
            self.lookups.push_front(lookup);
        }
    }

    /// An answer to request `id`, at the negotiated `version`.
    pub fn handle_response(&mut self, id: u64, version: i16, response: ResponseKind, now: Instant) {
        let _ = version;
        match response {
            ResponseKind::FindCoordinator(body) if self.find_in_flight == Some(id) => {
                self.find_in_flight = None;
                let (code, node, host, port) = match body.coordinators.first() {
                    Some(c) => (c.error_code, c.node_id.0, c.host.to_string(), c.port),
                    None => (
                        body.error_code,
                        body.node_id.0,
                        body.host.to_string(),
                        body.port,
                    ),
                };
                match ErrorCode::try_from_code(code) {
                    None if node >= 0 => {
                        debug!(group = %self.config.group_id, node, %host, port, "group coordinator found");
                        self.coordinator = Some((node, format!("{host}:{port}")));
                        self.find_retry.succeed();
                        self.last_heartbeat_answer = Some(now);
                    }
                    Some(ErrorCode::GroupAuthorizationFailed) => {
                        self.fail(self.group_failed(ErrorCode::GroupAuthorizationFailed));
                    }
                    other => {
                        debug!(group = %self.config.group_id, error = ?other, "no group coordinator yet");
                        self.find_retry.fail(&mut self.rng, now);
                    }
                }
            }
            ResponseKind::JoinGroup(body) => self.handle_join(id, body, now),
            ResponseKind::SyncGroup(body) => self.handle_sync(id, body, now),
            ResponseKind::Heartbeat(body) if self.heartbeat_in_flight == Some(id) => {
                self.heartbeat_in_flight = None;
                self.handle_heartbeat(body.error_code, now);
            }
            ResponseKind::ConsumerGroupHeartbeat(body) if self.kip_owns(id) => {
                self.kip_handle_heartbeat(id, body, now);
            }
            ResponseKind::LeaveGroup(body) => {
                if matches!(self.leave, Leave::InFlight(leave) if leave == id) {
                    self.leave = Leave::None;
                    let code = body
                        .members
                        .first()
                        .map_or(body.error_code, |m| m.error_code)
                        .max(body.error_code);
                    if let Some(code) = ErrorCode::try_from_code(code) {
                        debug!(group = %self.config.group_id, ?code, "LeaveGroup answered with an error");
                    }
                }
            }
            ResponseKind::OffsetCommit(body) => {
                if let Some(commit) = self.commits_in_flight.remove(&id) {
                    self.handle_commit(commit, &body, now);
                }
            }
            ResponseKind::OffsetFetch(body) => {
                if let Some(lookup) = self.lookups_in_flight.remove(&id) {
                    self.handle_offset_fetch(lookup, body, now);
                }
            }
            _ => {}
        }
    }

    fn handle_join(
        &mut self,
        id: u64,
        body: kafka_protocol::messages::JoinGroupResponse,
        now: Instant,
    ) {
        if !matches!(self.phase, Phase::Joining { request: Some(r) } if r == id) {
            return;
        }
        self.phase = Phase::Joining { request: None };
        let code = ErrorCode::try_from_code(body.error_code);
        match code {
            None => {
                self.join_retry.succeed();
                self.member_id = body.member_id.to_string();
                self.generation = body.generation_id;
                self.protocol_name = body.protocol_name.map(|p| p.to_string());
                self.rejoin = None;
                let leader = body.leader.as_str() == self.member_id.as_str();
                info!(
                    group = %self.config.group_id,
                    generation = self.generation,
                    member = %self.member_id,
                    leader,
                    protocol = ?self.protocol_name,
                    "joined the group"
                );
                if leader && !body.skip_assignment {
                    let mut members = Vec::with_capacity(body.members.len());
                    for member in &body.members {
                        match decode_subscription(&member.metadata) {
                            Ok(mut subscription) => {
                                subscription.group_instance_id =
                                    member.group_instance_id.as_ref().map(|i| i.to_string());
                                members.push(JoinedMember {
                                    member_id: member.member_id.to_string(),
                                    subscription,
                                });
                            }
                            Err(error) => {
                                warn!(member = %member.member_id, %error, "unreadable subscription; assigning it nothing");
                                members.push(JoinedMember {
                                    member_id: member.member_id.to_string(),
                                    subscription: Subscription::default(),
                                });
                            }
                        }
                    }
                    self.phase = Phase::Assigning { members };
                } else {
                    self.phase = Phase::Syncing {
                        assignments: Vec::new(),
                        request: None,
                    };
                }
            }
            Some(ErrorCode::MemberIdRequired) => {
                // KIP-394: join again at once with the id the coordinator gave.
                self.member_id = body.member_id.to_string();
            }
            Some(ErrorCode::UnknownMemberId) | Some(ErrorCode::IllegalGeneration) => {
                // Out of the group: what it still owns (cooperative) is lost, and it
                // joins again as a new member (the steps before JoinGroup run again).
                self.reset_generation();
                self.phase = Phase::Idle;
            }
            Some(ErrorCode::RebalanceInProgress) => {
                self.join_retry.fail(&mut self.rng, now);
            }
            Some(ErrorCode::CoordinatorLoadInProgress) => {
                self.join_retry.fail(&mut self.rng, now);
            }
            Some(ErrorCode::CoordinatorNotAvailable) | Some(ErrorCode::NotCoordinator) => {
                self.coordinator_lost("JoinGroup answered that it is not the coordinator");
            }
            Some(code) => {
                let fatal = self.group_failed(code);
                self.fail(fatal);
            }
        }
    }

    /// As leader, with metadata for every subscribed topic: runs the assignor the group
    /// chose on the members' subscriptions.
    fn assign_as_leader(&mut self, members: Vec<JoinedMember>, metadata: &Metadata, now: Instant) {
        let name = self.protocol_name.clone().unwrap_or_default();
        let Some(assignor) = self.assignors.iter().find(|a| a.name() == name) else {
            let error = Error::InvalidArgument(format!(
                "the group chose assignor {name:?}, which this consumer does not have"
            ));
            self.fail(error);
            return;
        };
        let mut group = GroupSubscription::default();
        for member in &members {
            for topic in &member.subscription.topics {
                if let Some(count) = metadata.partition_count(topic).filter(|c| *c > 0) {
                    group
                        .partitions_per_topic
                        .insert(topic.clone(), i32::try_from(count).unwrap_or(i32::MAX));
                }
            }
            group
                .members
                .insert(member.member_id.clone(), member.subscription.clone());
        }
        match assignor.assign(&group) {
            Ok(assignment) => {
                let assignments = members
                    .iter()
                    .map(|m| {
                        let assigned = assignment.get(&m.member_id).cloned().unwrap_or_default();
                        (
                            m.member_id.clone(),
                            encode_assignment(&assigned, CONSUMER_PROTOCOL_VERSION),
                        )
                    })
                    .collect();
                self.assigned_counts = Some(group.partitions_per_topic.clone());
                self.phase = Phase::Syncing {
                    assignments,
                    request: None,
                };
            }
            Err(reason) => {
                warn!(group = %self.config.group_id, %reason, "the assignor failed; rejoining");
                self.phase = Phase::Joining { request: None };
                self.request_rejoin("the assignor failed");
                self.join_retry.fail(&mut self.rng, now);
            }
        }
    }

    fn handle_sync(
        &mut self,
        id: u64,
        body: kafka_protocol::messages::SyncGroupResponse,
        now: Instant,
    ) {
        if !matches!(self.phase, Phase::Syncing { request: Some(r), .. } if r == id) {
            return;
        }
        match ErrorCode::try_from_code(body.error_code) {
            None => {
                let assignment = match decode_assignment(&body.assignment) {
                    Ok(assignment) => assignment.partitions,
                    Err(error) => {
                        warn!(%error, "unreadable assignment; rejoining");
                        self.phase = Phase::Joining { request: None };
                        self.request_rejoin("unreadable assignment");
                        return;
                    }
                };
                self.phase = Phase::Stable;
                self.next_heartbeat = Some(now + self.config.heartbeat_interval);
                self.last_heartbeat_answer = Some(now);
                if self.next_auto_commit.is_none() {
                    self.next_auto_commit = Some(now + self.config.auto_commit_interval);
                }
                let added: Vec<TopicPartition> = assignment
                    .iter()
                    .filter(|tp| !self.owned.contains(tp))
                    .cloned()
                    .collect();
                let revoked: Vec<TopicPartition> = self
                    .owned
                    .iter()
                    .filter(|tp| !assignment.contains(tp))
                    .cloned()
                    .collect();
                info!(
                    group = %self.config.group_id,
                    generation = self.generation,
                    partitions = assignment.len(),
                    added = added.len(),
                    revoked = revoked.len(),
                    "assignment received"
                );
                if !revoked.is_empty() {
                    // Cooperative: give these up now, and rejoin so that their new owner
                    // gets them in the next generation (KIP-429).
                    self.events.push_back(GroupEvent::Revoke(revoked));
                    self.request_rejoin("partitions were revoked");
                }
                self.owned = assignment.clone();
                self.events
                    .push_back(GroupEvent::Assign { assignment, added });
            }
            Some(ErrorCode::RebalanceInProgress) => {
                self.phase = Phase::Joining { request: None };
                self.request_rejoin("the group is rebalancing again");
            }
            Some(ErrorCode::UnknownMemberId) | Some(ErrorCode::IllegalGeneration) => {
                self.reset_generation();
                self.phase = Phase::Idle;
                self.request_rejoin("SyncGroup: the member is not in this generation");
            }
            Some(ErrorCode::CoordinatorNotAvailable) | Some(ErrorCode::NotCoordinator) => {
                self.coordinator_lost("SyncGroup answered that it is not the coordinator");
                self.phase = Phase::Joining { request: None };
                self.request_rejoin("the coordinator moved");
            }
            Some(code) => {
                let fatal = self.group_failed(code);
                self.fail(fatal);
            }
        }
    }

    fn handle_heartbeat(&mut self, code: i16, now: Instant) {
        self.last_heartbeat_answer = Some(now);
        match ErrorCode::try_from_code(code) {
            None => {}
            Some(ErrorCode::RebalanceInProgress) => {
                if matches!(self.phase, Phase::Stable) {
                    self.request_rejoin("the group is rebalancing");
                }
            }
            Some(ErrorCode::UnknownMemberId) | Some(ErrorCode::IllegalGeneration) => {
                info!(group = %self.config.group_id, ?code, "the member is no longer in the group; rejoining");
                self.reset_generation();
                self.request_rejoin("the member was removed from the group");
            }
            Some(ErrorCode::CoordinatorNotAvailable) | Some(ErrorCode::NotCoordinator) => {
                self.coordinator_lost("Heartbeat answered that it is not the coordinator");
            }
            Some(ErrorCode::CoordinatorLoadInProgress) => {}
            Some(code) => {
                let fatal = self.group_failed(code);
                self.fail(fatal);
            }
        }
    }

    fn handle_commit(
        &mut self,
        mut commit: Commit,
        body: &kafka_protocol::messages::OffsetCommitResponse,
        now: Instant,
    ) {
        let mut first_error: Option<ErrorCode> = None;
        for topic in &body.topics {
            for partition in &topic.partitions {
                if let Some(code) = ErrorCode::try_from_code(partition.error_code) {
                    first_error.get_or_insert(code);
                }
            }
        }
        let Some(code) = first_error else {
            for (tp, offset) in &commit.offsets {
                self.last_committed.insert(tp.clone(), offset.offset);
                self.seen_committed.insert(tp.clone(), offset.offset);
            }
            self.commit_results.push((commit.token, Ok(())));
            return;
        };
        let retriable = matches!(
            code,
            // KIP-848: the member's epoch moved on; the retry carries the new one.
            ErrorCode::StaleMemberEpoch
                | ErrorCode::CoordinatorLoadInProgress
                | ErrorCode::CoordinatorNotAvailable
                | ErrorCode::NotCoordinator
                | ErrorCode::RequestTimedOut
        );
        if matches!(
            code,
            ErrorCode::CoordinatorNotAvailable
                | ErrorCode::NotCoordinator
                | ErrorCode::RequestTimedOut
        ) {
            self.coordinator_lost("OffsetCommit answered that it is not the coordinator");
        }
        let result = match code {
            _ if retriable => {
                if commit.deadline.is_some_and(|d| d > now) {
                    commit.retry_at = Some(now + self.config.retry_backoff);
                    self.commits.push_back(commit);
                    return;
                }
                Err(Error::Broker {
                    code,
                    context: Some(format!(
                        "committing offsets of group {}",
                        self.config.group_id
                    )),
                })
            }
            ErrorCode::RebalanceInProgress => {
                self.request_rejoin("the group is rebalancing");
                Err(Error::CommitFailed {
                    code: Some(code),
                    reason: "the group is rebalancing: the offsets can be committed again once \
                             it completes"
                        .into(),
                })
            }
            ErrorCode::UnknownMemberId | ErrorCode::IllegalGeneration => {
                self.reset_generation();
                self.request_rejoin("OffsetCommit: the member is not in this generation");
                Err(commit_failed(
                    Some(code),
                    "the group has already rebalanced and assigned the partitions to another \
                     member: the time between recv calls likely exceeded max.poll.interval.ms",
                ))
            }
            ErrorCode::FencedInstanceId | ErrorCode::GroupAuthorizationFailed => {
                let fatal = self.group_failed(code);
                self.fail(fatal.clone());
                Err(fatal)
            }
            _ => Err(Error::Broker {
                code,
                context: Some(format!(
                    "committing offsets of group {}",
                    self.config.group_id
                )),
            }),
        };
        if commit.deadline.is_none() {
            if let Err(error) = &result {
                warn!(group = %self.config.group_id, %error, "asynchronous commit failed");
            }
        }
        self.commit_results.push((commit.token, result));
    }

    fn handle_offset_fetch(
        &mut self,
        lookup: Lookup,
        body: kafka_protocol::messages::OffsetFetchResponse,
        now: Instant,
    ) {
        // v8+ answer per group; earlier versions at the top level.
        let (top_code, entries): (i16, Vec<FetchedOffset>) = match body.groups.first() {
            Some(group) => (
                group.error_code,
                group
                    .topics
                    .iter()
                    .flat_map(|t| {
                        t.partitions.iter().map(move |p| {
                            (
                                t.name.0.to_string(),
                                p.partition_index,
                                p.committed_offset,
                                p.committed_leader_epoch,
                                p.metadata.as_ref().map(|m| m.to_string()),
                                p.error_code,
                            )
                        })
                    })
                    .collect(),
            ),
            None => (
                body.error_code,
                body.topics
                    .iter()
                    .flat_map(|t| {
                        t.partitions.iter().map(move |p| {
                            (
                                t.name.0.to_string(),
                                p.partition_index,
                                p.committed_offset,
                                p.committed_leader_epoch,
                                p.metadata.as_ref().map(|m| m.to_string()),
                                p.error_code,
                            )
                        })
                    })
                    .collect(),
            ),
        };
        let mut retry = false;
        let mut fatal = None;
        match ErrorCode::try_from_code(top_code) {
            None => {}
            Some(ErrorCode::CoordinatorLoadInProgress) | Some(ErrorCode::StaleMemberEpoch) => {
                retry = true
            }
            Some(ErrorCode::UnknownMemberId) if self.kip848.is_some() => retry = true,
            Some(ErrorCode::CoordinatorNotAvailable) | Some(ErrorCode::NotCoordinator) => {
                self.coordinator_lost("OffsetFetch answered that it is not the coordinator");
                retry = true;
            }
            Some(code) => fatal = Some(self.group_failed(code)),
        }
        let mut found: Committed = BTreeMap::new();
        for (topic, partition, offset, epoch, metadata, code) in entries {
            let tp = TopicPartition::new(topic, partition);
            match ErrorCode::try_from_code(code) {
                None => {
                    let committed = (offset >= 0).then(|| OffsetAndMetadata {
                        offset,
                        leader_epoch: (epoch >= 0).then_some(epoch),
                        metadata: metadata.filter(|m| !m.is_empty()),
                    });
                    found.insert(tp, committed);
                }
                // A transaction's offsets not yet settled (require_stable), or a partition
                // the coordinator does not know yet: ask again.
                Some(_) => retry = true,
            }
        }
        if let Some(error) = fatal {
            if matches!(
                error,
                Error::GroupFailed {
                    code: ErrorCode::GroupAuthorizationFailed,
                    ..
                }
            ) {
                self.fail(error);
            } else if let Some(token) = lookup.token {
                self.lookup_results.push((token, Err(error)));
            }
            return;
        }
        if retry || lookup.partitions.iter().any(|tp| !found.contains_key(tp)) {
            let expired = lookup.deadline.is_some_and(|d| d <= now);
            if !expired {
                self.lookup_retry.fail(&mut self.rng, now);
                self.lookups.push_front(lookup);
                return;
            }
        }
        self.lookup_retry.succeed();
        for (tp, offset) in &found {
            match offset {
                Some(offset) => self.seen_committed.insert(tp.clone(), offset.offset),
                None => self.seen_committed.remove(tp),
            };
        }
        match lookup.token {
            Some(token) => self.lookup_results.push((token, Ok(found))),
            None => {
                for tp in lookup.partitions {
                    let offset = found.get(&tp).cloned().flatten().map(|o| o.offset);
                    self.start_positions.push((tp, offset));
                }
            }
        }
    }
}

/// One partition of an OffsetFetch answer: topic, partition, offset, leader epoch,
/// metadata, error code.
type FetchedOffset = (String, i32, i64, i32, Option<String>, i16);

fn millis(duration: Duration) -> i32 {
    i32::try_from(duration.as_millis()).unwrap_or(i32::MAX)
}

fn commit_failed(code: Option<ErrorCode>, reason: &str) -> Error {
    Error::CommitFailed {
        code,
        reason: reason.to_string(),
    }
}

fn commit_timeout(reason: &str) -> Error {
    Error::CommitFailed {
        code: Some(ErrorCode::RequestTimedOut),
        reason: format!("the commit did not complete in time: {reason}"),
    }
}

#[path = "consumer_protocol.rs"]
mod consumer_protocol;

#[cfg(test)]
#[path = "member_tests.rs"]
mod tests;
