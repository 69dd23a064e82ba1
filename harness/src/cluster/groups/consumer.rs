//! A KIP-848 consumer group (ConsumerGroupHeartbeat): Kafka's `ConsumerGroup`,
//! `ConsumerGroupMember`, `CurrentAssignmentBuilder` and the consumer half of
//! `GroupMetadataManager`, as one state machine.
//!
//! # Epochs and reconciliation
//!
//! The group epoch is bumped whenever what the assignment depends on changes: a member
//! joins, leaves or is fenced, a member's subscription changes, a subscribed topic appears,
//! goes, or gains partitions. The next heartbeat then computes a new target assignment
//! with the server-side assignor ([`super::assignors`]) and sets the assignment epoch to the
//! group epoch. Each member then reconciles towards its target, one heartbeat at a time, as
//! Kafka's `CurrentAssignmentBuilder` does:
//!
//! ```text
//!   STABLE --new target--> UNREVOKED_PARTITIONS (keeps its epoch; asked to revoke)
//!     ^                        | the member's next heartbeat no longer owns them
//!     |                        v
//!     +------------------- (next epoch) -- UNRELEASED_PARTITIONS (waits for partitions
//!                                           whose previous owner has not revoked them)
//! ```
//!
//! A partition is given to a member only when no member holds it (its partition epoch is
//! -1): a partition moves only after its previous owner has revoked it.
//!
//! # Subscriptions
//!
//! Members subscribe to topic names, or to a regular expression (`SubscribedTopicRegex`).
//! Kafka compiles it with RE2/J and matches whole topic names; the harness compiles it with
//! the `regex` crate (the RE2 family: the same syntax except RE2/J's `\C`, `\Q…\E` and a few
//! Unicode class names) and matches whole names too (`^(?:regex)$`). Internal topics
//! (`__consumer_offsets`, `__transaction_state`) never match. A regex that does not compile,
//! or whose compiled program is larger than 1 MiB, or whose text is longer than 64 KiB, is
//! answered INVALID_REGULAR_EXPRESSION. Kafka resolves regexes asynchronously and may
//! answer a first heartbeat before it did; the harness resolves them within the heartbeat.
//!
//! # Where the harness differs
//!
//! - A member rejoining with epoch 0 under a member id the group knows is taken as the
//!   same member starting over: it holds nothing (it must send no owned partitions) and is
//!   reconciled from scratch towards its target.
//! - Temporary leaves (-2) keep the static member and its partitions until its session
//!   times out, as Kafka does.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use franzy::proto::ErrorCode;
use regex::Regex;
use uuid::Uuid;

use super::assignors::{self, Assignment, AssignorMember, TopicInfo};
use super::{GroupConfig, Ops, TimerKey};

mod mixed;
pub use mixed::{decode_assignment, decode_subscription, encode_assignment, SubscriptionFields};

/// Kafka's `ConsumerGroupHeartbeatRequest.LEAVE_GROUP_MEMBER_EPOCH`.
pub const LEAVE_GROUP_MEMBER_EPOCH: i32 = -1;
/// Kafka's `ConsumerGroupHeartbeatRequest.LEAVE_GROUP_STATIC_MEMBER_EPOCH`.
pub const LEAVE_GROUP_STATIC_MEMBER_EPOCH: i32 = -2;
/// Longest regex text accepted.
pub const MAX_REGEX_BYTES: usize = 64 * 1024;
/// Largest compiled regex program accepted.
const MAX_REGEX_PROGRAM_BYTES: usize = 1024 * 1024;

/// Kafka's `ConsumerGroup.ConsumerGroupState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConsumerGroupState {
    /// No members.
    Empty,
    /// The target assignment is behind the group epoch.
    Assigning,
    /// Some member is not at the target assignment yet.
    Reconciling,
    /// Every member has its target assignment.
    Stable,
}

impl ConsumerGroupState {
    /// Kafka's name for the state.
    pub fn name(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::Assigning => "Assigning",
            Self::Reconciling => "Reconciling",
            Self::Stable => "Stable",
        }
    }
}

/// Kafka's `MemberState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemberState {
    /// At its target.
    Stable,
    /// Asked to revoke partitions; keeps its epoch until it does.
    UnrevokedPartitions,
    /// At the target epoch, waiting for partitions others still hold.
    UnreleasedPartitions,
}

impl MemberState {
    /// Kafka's name for the state.
    pub fn name(self) -> &'static str {
        match self {
            Self::Stable => "stable",
            Self::UnrevokedPartitions => "unrevoked_partitions",
            Self::UnreleasedPartitions => "unreleased_partitions",
        }
    }
}

/// A member of a consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerMember {
    /// Its id.
    pub member_id: Arc<str>,
    /// Its instance id (static membership).
    pub instance_id: Option<Arc<str>>,
    /// Its rack.
    pub rack_id: Option<Arc<str>>,
    /// The client id of its last heartbeat.
    pub client_id: Arc<str>,
    /// The client host of its last heartbeat.
    pub client_host: Arc<str>,
    /// How long it may take to revoke partitions.
    pub rebalance_timeout_ms: i32,
    /// Subscribed topic names.
    pub subscribed_topic_names: BTreeSet<Arc<str>>,
    /// Subscribed regular expression.
    pub subscribed_topic_regex: Option<Arc<str>>,
    /// The server assignor it asks for.
    pub server_assignor: Option<Arc<str>>,
    /// Its reconciliation state.
    pub state: MemberState,
    /// Its epoch (-2 after a static member's temporary leave).
    pub member_epoch: i32,
    /// Its epoch before the last change.
    pub previous_member_epoch: i32,
    /// The partitions it owns.
    pub assigned: Assignment,
    /// The partitions it must revoke.
    pub pending_revocation: Assignment,
    /// Set for a member that speaks the classic protocol (JoinGroup, SyncGroup, Heartbeat)
    /// inside this consumer group (Kafka's `ClassicMemberMetadata`).
    pub classic: Option<ClassicMemberMetadata>,
}

/// What a consumer group keeps of a member that uses the classic protocol (Kafka's
/// `ConsumerGroupMemberMetadataValue.ClassicMemberMetadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassicMemberMetadata {
    /// The session timeout of its JoinGroup.
    pub session_timeout_ms: i32,
    /// The protocols of its JoinGroup (name, subscription), in its order of preference.
    pub protocols: Vec<super::classic::Protocol>,
}

impl ConsumerMember {
    fn new(member_id: Arc<str>) -> Self {
        Self {
            member_id,
            instance_id: None,
            rack_id: None,
            client_id: Arc::from(""),
            client_host: Arc::from(""),
            rebalance_timeout_ms: -1,
            subscribed_topic_names: BTreeSet::new(),
            subscribed_topic_regex: None,
            server_assignor: None,
            state: MemberState::Stable,
            member_epoch: 0,
            previous_member_epoch: 0,
            assigned: Assignment::new(),
            pending_revocation: Assignment::new(),
            classic: None,
        }
    }

    /// Whether it speaks the classic protocol (Kafka's `useClassicProtocol`).
    pub fn uses_classic_protocol(&self) -> bool {
        self.classic.is_some()
    }

    fn is_reconciled_to(&self, epoch: i32) -> bool {
        self.state == MemberState::Stable && self.member_epoch == epoch
    }

    fn bytes(&self) -> usize {
        let names: usize = self
            .subscribed_topic_names
            .iter()
            .map(|n| n.len() + 8)
            .sum();
        self.member_id.len()
            + self.instance_id.as_ref().map_or(0, |s| s.len())
            + self.rack_id.as_ref().map_or(0, |s| s.len())
            + self.client_id.len()
            + self.client_host.len()
            + names
            + self.subscribed_topic_regex.as_ref().map_or(0, |s| s.len())
            + self.server_assignor.as_ref().map_or(0, |s| s.len())
            + assignment_bytes(&self.assigned)
            + assignment_bytes(&self.pending_revocation)
            + self.classic.as_ref().map_or(0, |c| {
                c.protocols
                    .iter()
                    .map(|(name, metadata)| name.len() + metadata.len())
                    .sum()
            })
    }
}

/// The subscribed topics that exist, by name.
type Subscription = BTreeMap<Arc<str>, TopicInfo>;
/// The topics each regex matches.
type RegexMatches = HashMap<Arc<str>, BTreeSet<Arc<str>>>;

/// A request-level error with Kafka's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupError {
    /// The code.
    pub code: ErrorCode,
    /// Kafka's message, when it gives one.
    pub message: Option<String>,
}

impl GroupError {
    /// An error with a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: Some(message.into()),
        }
    }
}

impl From<ErrorCode> for GroupError {
    fn from(code: ErrorCode) -> Self {
        Self {
            code,
            message: None,
        }
    }
}

/// A ConsumerGroupHeartbeat, decoded.
#[derive(Debug, Clone)]
pub struct HeartbeatArgs {
    /// The member id ("" for a v0 member joining).
    pub member_id: Arc<str>,
    /// The member epoch: 0 joins, -1 leaves, -2 leaves temporarily (static members).
    pub member_epoch: i32,
    /// The instance id.
    pub instance_id: Option<Arc<str>>,
    /// The rack id.
    pub rack_id: Option<Arc<str>>,
    /// The rebalance timeout, or -1 for unchanged.
    pub rebalance_timeout_ms: i32,
    /// The topic names, or None for unchanged.
    pub subscribed_topic_names: Option<BTreeSet<Arc<str>>>,
    /// The regex, or None for unchanged.
    pub subscribed_topic_regex: Option<Arc<str>>,
    /// The server assignor, or None for unchanged.
    pub server_assignor: Option<Arc<str>>,
    /// The partitions the member owns, or None for unchanged.
    pub owned: Option<Assignment>,
    /// The client id.
    pub client_id: Arc<str>,
    /// The client host.
    pub client_host: Arc<str>,
}

/// A ConsumerGroupHeartbeat's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatOutcome {
    /// The member id.
    pub member_id: Arc<str>,
    /// The member epoch.
    pub member_epoch: i32,
    /// The heartbeat interval (0 when leaving).
    pub heartbeat_interval_ms: i32,
    /// The member's assignment, when it is sent.
    pub assignment: Option<Assignment>,
}

/// Kafka's `throwIfConsumerGroupHeartbeatRequestIsInvalid` (4.0), for `version`.
pub fn validate(
    group_id: &str,
    args: &HeartbeatArgs,
    version: i16,
    config: &GroupConfig,
) -> Result<Option<Regex>, GroupError> {
    let invalid = |message: &str| Err(GroupError::new(ErrorCode::InvalidRequest, message));
    if group_id.is_empty() {
        return invalid("GroupId can't be empty.");
    }
    if args.instance_id.as_deref() == Some("") {
        return invalid("InstanceId can't be empty.");
    }
    if args.rack_id.as_deref() == Some("") {
        return invalid("RackId can't be empty.");
    }
    if version >= 1 && args.member_id.is_empty() {
        return invalid("MemberId can't be empty.");
    }
    match args.member_epoch {
        epoch if epoch > 0 || epoch == LEAVE_GROUP_MEMBER_EPOCH => {
            if args.member_id.is_empty() {
                return invalid("MemberId can't be empty.");
            }
        }
        0 => {
            if args.rebalance_timeout_ms == -1 {
                return invalid("RebalanceTimeoutMs must be provided in first request.");
            }
            if args.owned.as_ref().is_none_or(|o| !o.is_empty()) {
                return invalid("TopicPartitions must be empty when (re-)joining.");
            }
            if args.subscribed_topic_names.is_none() && args.subscribed_topic_regex.is_none() {
                return invalid(
                    "Either SubscribedTopicNames or SubscribedTopicRegex must be non-null when (re-)joining.",
                );
            }
        }
        LEAVE_GROUP_STATIC_MEMBER_EPOCH => {
            if args.member_id.is_empty() {
                return invalid("MemberId can't be empty.");
            }
            if args.instance_id.is_none() {
                return invalid("InstanceId can't be null.");
            }
        }
        _ => return invalid("MemberEpoch is invalid."),
    }
    if let Some(assignor) = &args.server_assignor {
        if !config.consumer_assignors.iter().any(|a| **a == **assignor) {
            return Err(GroupError::new(
                ErrorCode::UnsupportedAssignor,
                format!(
                    "ServerAssignor {assignor} is not supported. Supported assignors: {}.",
                    config.consumer_assignors.join(", ")
                ),
            ));
        }
    }
    args.subscribed_topic_regex
        .as_deref()
        .map(compile_regex)
        .transpose()
}

/// Compiles a subscription regex to match whole topic names.
pub fn compile_regex(regex: &str) -> Result<Regex, GroupError> {
    if regex.len() > MAX_REGEX_BYTES {
        return Err(GroupError::new(
            ErrorCode::InvalidRegularExpression,
            format!("SubscribedTopicRegex is longer than {MAX_REGEX_BYTES} bytes."),
        ));
    }
    let build = |pattern: &str| {
        regex::RegexBuilder::new(pattern)
            .size_limit(MAX_REGEX_PROGRAM_BYTES)
            .dfa_size_limit(MAX_REGEX_PROGRAM_BYTES)
            .build()
            .map_err(|e| {
                GroupError::new(
                    ErrorCode::InvalidRegularExpression,
                    format!(
                        "SubscribedTopicRegex `{regex}` is not a valid regular expression: {e}"
                    ),
                )
            })
    };
    // On its own first, so that anchoring cannot make a broken one whole ("a)(b").
    build(regex)?;
    build(&format!("^(?:{regex})$"))
}

/// The cluster's topics, as a group needs them.
pub trait TopicCatalog {
    /// Changes whenever a topic is created, deleted or grown.
    fn version(&self) -> u64;
    /// Topic `name`, unless it does not exist.
    fn topic(&self, name: &str) -> Option<TopicInfo>;
    /// Every non-internal topic whose whole name matches `regex`.
    fn matching(&self, regex: &Regex) -> Vec<(Arc<str>, TopicInfo)>;
}

/// A consumer group.
#[derive(Debug)]
pub struct ConsumerGroup {
    id: Arc<str>,
    group_epoch: i32,
    assignment_epoch: i32,
    members: BTreeMap<Arc<str>, ConsumerMember>,
    /// Member ids by instance id.
    static_members: HashMap<Arc<str>, Arc<str>>,
    /// The target assignment, by member id.
    target: BTreeMap<Arc<str>, Assignment>,
    /// The epoch of the member holding each partition (assigned or pending revocation).
    partition_epochs: HashMap<(Uuid, i32), i32>,
    /// The subscribed topics that exist: Kafka's subscription metadata.
    subscription: BTreeMap<Arc<str>, TopicInfo>,
    /// What each regex matched when the subscription was last computed.
    regex_matches: HashMap<Arc<str>, BTreeSet<Arc<str>>>,
    /// The catalog's version when the subscription was last computed: until it or a
    /// member's subscription changes, a heartbeat does not look at the topics at all.
    subscription_version: Option<u64>,
    /// How many members subscribe to each topic name.
    name_counts: HashMap<Arc<str>, usize>,
    /// How many members subscribe with each regex, and its compiled form.
    regexes: HashMap<Arc<str>, (usize, Regex)>,
    /// How many members ask for each server assignor.
    assignor_counts: BTreeMap<Arc<str>, usize>,
    /// How many members use the classic protocol.
    classic_members: usize,
    /// How many classic-protocol members support each protocol name.
    classic_protocols: HashMap<Arc<str>, usize>,
    /// Set by a step after which the group becomes a classic group (a fencing that leaves
    /// only classic members behind, or a static classic member replacing the last
    /// consumer-protocol one, under a policy that allows the downgrade): whether the
    /// classic group then rebalances. The coordinator converts it after the step.
    downgrade: Option<bool>,
    bytes: usize,
}

impl ConsumerGroup {
    /// A new, empty group.
    pub fn new(id: Arc<str>) -> Self {
        Self {
            id,
            group_epoch: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            target: BTreeMap::new(),
            partition_epochs: HashMap::new(),
            subscription: BTreeMap::new(),
            regex_matches: HashMap::new(),
            subscription_version: None,
            name_counts: HashMap::new(),
            regexes: HashMap::new(),
            assignor_counts: BTreeMap::new(),
            classic_members: 0,
            classic_protocols: HashMap::new(),
            downgrade: None,
            bytes: 0,
        }
    }

    /// The group id.
    pub fn id(&self) -> &Arc<str> {
        &self.id
    }

    /// The group epoch.
    pub fn group_epoch(&self) -> i32 {
        self.group_epoch
    }

    /// The epoch of the target assignment.
    pub fn assignment_epoch(&self) -> i32 {
        self.assignment_epoch
    }

    /// Kafka's state.
    pub fn state(&self) -> ConsumerGroupState {
        if self.members.is_empty() {
            ConsumerGroupState::Empty
        } else if self.group_epoch != self.assignment_epoch {
            ConsumerGroupState::Assigning
        } else if self
            .members
            .values()
            .any(|m| !m.is_reconciled_to(self.assignment_epoch))
        {
            ConsumerGroupState::Reconciling
        } else {
            ConsumerGroupState::Stable
        }
    }

    /// The members, by id.
    pub fn members(&self) -> impl Iterator<Item = &ConsumerMember> {
        self.members.values()
    }

    /// Member `id`.
    pub fn member(&self, id: &str) -> Option<&ConsumerMember> {
        self.members.get(id)
    }

    /// Whether the group has no member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Member `id`'s target assignment.
    pub fn target_of(&self, id: &str) -> Option<&Assignment> {
        self.target.get(id)
    }

    /// Whether the group subscribes to `topic` (by name or regex).
    pub fn is_subscribed_to(&self, topic: &str) -> bool {
        self.name_counts.contains_key(topic) || self.subscription.contains_key(topic)
    }

    /// Bytes its members and target assignment hold.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The assignor the next target assignment uses: the one most members ask for (ties to
    /// the first configured), else the first configured (Kafka's default assignor).
    pub fn assignor_name(&self, config: &GroupConfig) -> Arc<str> {
        let most = self.assignor_counts.values().copied().max().unwrap_or(0);
        if most > 0 {
            if let Some(name) = config
                .consumer_assignors
                .iter()
                .find(|a| self.assignor_counts.get(a.as_str()) == Some(&most))
            {
                return Arc::from(name.as_str());
            }
        }
        Arc::from(
            config
                .consumer_assignors
                .first()
                .map_or(assignors::UNIFORM, |s| s.as_str()),
        )
    }

    fn member_bytes(&self, id: &str) -> usize {
        self.members.get(id).map_or(0, ConsumerMember::bytes)
            + self.target.get(id).map_or(0, assignment_bytes)
    }

    /// Puts `member` in place of the member with id `old_id` (if any), keeping the counts,
    /// the static members and the partition epochs.
    fn put_member(&mut self, old_id: Option<&Arc<str>>, member: ConsumerMember) {
        if let Some(old_id) = old_id {
            if let Some(old) = self.take_member(old_id) {
                if **old_id != *member.member_id {
                    if let Some(target) = self.target.remove(old_id) {
                        self.target.insert(member.member_id.clone(), target);
                    }
                }
                drop(old);
            }
        }
        for name in &member.subscribed_topic_names {
            *self.name_counts.entry(name.clone()).or_default() += 1;
        }
        if let Some(regex) = &member.subscribed_topic_regex {
            if let Some((count, _)) = self.regexes.get_mut(regex) {
                *count += 1;
            } else if let Ok(compiled) = compile_regex(regex) {
                self.regexes.insert(regex.clone(), (1, compiled));
            }
        }
        if let Some(assignor) = &member.server_assignor {
            *self.assignor_counts.entry(assignor.clone()).or_default() += 1;
        }
        if let Some(classic) = &member.classic {
            self.classic_members += 1;
            for (name, _) in &classic.protocols {
                *self.classic_protocols.entry(name.clone()).or_default() += 1;
            }
        }
        if let Some(instance) = &member.instance_id {
            self.static_members
                .insert(instance.clone(), member.member_id.clone());
        }
        for (topic, partitions) in member.assigned.iter().chain(&member.pending_revocation) {
            for &p in partitions {
                self.partition_epochs
                    .insert((*topic, p), member.member_epoch);
            }
        }
        let id = member.member_id.clone();
        self.members.insert(id.clone(), member);
        self.bytes = self.bytes.saturating_add(self.member_bytes(&id));
    }

    /// Takes member `id` out, undoing what [`Self::put_member`] counted (its target stays).
    fn take_member(&mut self, id: &str) -> Option<ConsumerMember> {
        let bytes = self.member_bytes(id);
        let member = self.members.remove(id)?;
        self.bytes = self.bytes.saturating_sub(bytes);
        for name in &member.subscribed_topic_names {
            decrement(&mut self.name_counts, name);
        }
        if let Some(regex) = &member.subscribed_topic_regex {
            if let Some((count, _)) = self.regexes.get_mut(regex) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    self.regexes.remove(regex);
                    self.regex_matches.remove(regex);
                }
            }
        }
        if let Some(assignor) = &member.server_assignor {
            if let Some(count) = self.assignor_counts.get_mut(assignor) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    self.assignor_counts.remove(assignor);
                }
            }
        }
        if let Some(classic) = &member.classic {
            self.classic_members = self.classic_members.saturating_sub(1);
            for (name, _) in &classic.protocols {
                decrement(&mut self.classic_protocols, name);
            }
        }
        if let Some(instance) = &member.instance_id {
            if self.static_members.get(instance) == Some(&member.member_id) {
                self.static_members.remove(instance);
            }
        }
        for (topic, partitions) in member.assigned.iter().chain(&member.pending_revocation) {
            for &p in partitions {
                self.partition_epochs.remove(&(*topic, p));
            }
        }
        Some(member)
    }

    /// The subscription metadata: every subscribed topic that exists.
    fn compute_subscription(&self, catalog: &dyn TopicCatalog) -> (Subscription, RegexMatches) {
        let mut subscription = BTreeMap::new();
        for name in self.name_counts.keys() {
            if let Some(info) = catalog.topic(name) {
                subscription.insert(name.clone(), info);
            }
        }
        let mut matches = HashMap::new();
        for (text, (_, regex)) in &self.regexes {
            let mut names = BTreeSet::new();
            for (name, info) in catalog.matching(regex) {
                subscription.insert(name.clone(), info);
                names.insert(name);
            }
            matches.insert(text.clone(), names);
        }
        (subscription, matches)
    }

    /// Bumps the group epoch; past `i32::MAX` the group cannot go on.
    fn bump_epoch(&mut self) -> Result<(), GroupError> {
        self.group_epoch = self.group_epoch.checked_add(1).ok_or_else(|| {
            GroupError::new(
                ErrorCode::UnknownServerError,
                "The group epoch is exhausted.",
            )
        })?;
        Ok(())
    }

    /// Recomputes the subscription metadata; whether it changed.
    fn refresh_subscription(&mut self, catalog: &dyn TopicCatalog) -> bool {
        let (subscription, matches) = self.compute_subscription(catalog);
        self.regex_matches = matches;
        self.subscription_version = Some(catalog.version());
        if subscription != self.subscription {
            self.subscription = subscription;
            return true;
        }
        false
    }

    /// Computes the target assignment of the group epoch.
    fn compute_target(&mut self, config: &GroupConfig) {
        let assignor = self.assignor_name(config);
        let empty = BTreeSet::new();
        let inputs: Vec<AssignorMember<'_>> = self
            .members
            .values()
            .map(|m| {
                let mut topics: BTreeSet<&Arc<str>> = m
                    .subscribed_topic_names
                    .iter()
                    .filter(|n| self.subscription.contains_key(*n))
                    .collect();
                if let Some(regex) = &m.subscribed_topic_regex {
                    topics.extend(self.regex_matches.get(regex).unwrap_or(&empty));
                }
                AssignorMember {
                    member_id: &m.member_id,
                    topics,
                    previous: self.target.get(&m.member_id),
                }
            })
            .collect();
        let target = assignors::assign(&assignor, &inputs, &self.subscription);
        let before: usize = self.target.values().map(assignment_bytes).sum();
        let after: usize = target.values().map(assignment_bytes).sum();
        self.target = target;
        self.bytes = self.bytes.saturating_add(after).saturating_sub(before);
        self.assignment_epoch = self.group_epoch;
        tracing::debug!(
            group = &*self.id,
            epoch = self.group_epoch,
            assignor = &*assignor,
            "computed a new target assignment"
        );
    }

    /// A ConsumerGroupHeartbeat of a member (epoch 0 or more), validated by [`validate`].
    pub fn heartbeat(
        &mut self,
        args: HeartbeatArgs,
        catalog: &dyn TopicCatalog,
        ops: &mut Ops<'_>,
    ) -> Result<HeartbeatOutcome, GroupError> {
        let joining = args.member_epoch == 0;
        let max = ops.config.consumer_max_size;
        if self.members.len() >= max
            && (args.member_id.is_empty() || !self.members.contains_key(&args.member_id))
        {
            return Err(GroupError::new(
                ErrorCode::GroupMaxSizeReached,
                format!("The consumer group has reached its maximum capacity of {max} members."),
            ));
        }
        let member_id: Arc<str> = if args.member_id.is_empty() {
            ops.ids.uuid()
        } else {
            args.member_id.clone()
        };
        // The member as it was (None for a new one), and under which id it is stored.
        let (previous, stored_as) = self.resolve_member(&member_id, &args)?;
        let mut member = previous
            .clone()
            .unwrap_or_else(|| ConsumerMember::new(member_id.clone()));
        if joining && previous.is_some() {
            // Starting over (a rejoin, or a static member replacing its departed instance):
            // it holds nothing it has not been given again.
            member.member_id = member_id.clone();
            member.member_epoch = 0;
            member.previous_member_epoch = 0;
            member.state = MemberState::Stable;
            member.pending_revocation.clear();
            // A static member back from a temporary leave takes over what it held (Kafka
            // copies the departed member); any other rejoin starts empty.
            if previous
                .as_ref()
                .is_some_and(|p| p.member_epoch != LEAVE_GROUP_STATIC_MEMBER_EPOCH)
            {
                member.assigned.clear();
            }
        }
        if let Some(instance) = &args.instance_id {
            member.instance_id = Some(instance.clone());
        }
        if let Some(rack) = &args.rack_id {
            member.rack_id = Some(rack.clone());
        }
        if args.rebalance_timeout_ms != -1 {
            member.rebalance_timeout_ms = args.rebalance_timeout_ms;
        }
        if let Some(assignor) = &args.server_assignor {
            member.server_assignor = Some(assignor.clone());
        }
        if let Some(names) = &args.subscribed_topic_names {
            member.subscribed_topic_names = names.clone();
        }
        if let Some(regex) = &args.subscribed_topic_regex {
            member.subscribed_topic_regex = Some(regex.clone()).filter(|r| !r.is_empty());
        }
        member.client_id = args.client_id.clone();
        member.client_host = args.client_host.clone();
        // A ConsumerGroupHeartbeat speaks the consumer protocol (Kafka clears the classic
        // metadata of whoever sends one).
        member.classic = None;
        if member.bytes() > ops.config.max_member_bytes {
            return Err(GroupError::new(
                ErrorCode::UnknownServerError,
                "The member's subscription is past the group caps.",
            ));
        }
        let subscription_changed = previous.as_ref().map_or(
            !member.subscribed_topic_names.is_empty() || member.subscribed_topic_regex.is_some(),
            |p| {
                p.subscribed_topic_names != member.subscribed_topic_names
                    || p.subscribed_topic_regex != member.subscribed_topic_regex
            },
        );
        let assigned_before = previous.as_ref().map(|p| p.assigned.clone());
        let epoch_before = self.group_epoch;
        self.put_member(stored_as.as_ref(), member);
        // One bump for whatever changed (Kafka's `bumpGroupEpoch`).
        let metadata_changed = (subscription_changed
            || self.subscription_version != Some(catalog.version()))
            && self.refresh_subscription(catalog);
        if subscription_changed || metadata_changed {
            self.bump_epoch()?;
        }
        if self.group_epoch != epoch_before {
            tracing::info!(
                group = &*self.id,
                member = &*member_id,
                epoch = self.group_epoch,
                subscription_changed,
                metadata_changed,
                "bumped the group epoch"
            );
        }
        if self.group_epoch > self.assignment_epoch {
            self.compute_target(ops.config);
        }
        self.reconcile(&member_id, args.owned.as_ref(), ops);
        ops.timers.schedule(
            TimerKey::ConsumerSession(self.id.clone(), member_id.clone()),
            ops.now + ops.config.consumer_session_timeout,
        );
        let member = self
            .members
            .get(&member_id)
            .ok_or(ErrorCode::UnknownServerError)?;
        let full = joining
            || (args.rebalance_timeout_ms != -1
                && (args.subscribed_topic_names.is_some()
                    || args.subscribed_topic_regex.is_some())
                && args.owned.is_some());
        let changed = assigned_before.as_ref() != Some(&member.assigned);
        Ok(HeartbeatOutcome {
            member_id: member.member_id.clone(),
            member_epoch: member.member_epoch,
            heartbeat_interval_ms: ms_i32(ops.config.consumer_heartbeat_interval),
            assignment: (full || changed).then(|| member.assigned.clone()),
        })
    }

    /// Finds the member a heartbeat speaks for, checking its epoch (Kafka's
    /// `getOrMaybeSubscribe{Dynamic,Static}ConsumerGroupMember`): the member as it was and
    /// the id it is stored under, or (None, None) for a new member.
    #[allow(clippy::type_complexity)]
    fn resolve_member(
        &self,
        member_id: &Arc<str>,
        args: &HeartbeatArgs,
    ) -> Result<(Option<ConsumerMember>, Option<Arc<str>>), GroupError> {
        let joining = args.member_epoch == 0;
        let unknown = || {
            GroupError::new(
                ErrorCode::UnknownMemberId,
                format!("Member {member_id} is not a member of group {}.", self.id),
            )
        };
        let Some(instance) = &args.instance_id else {
            return match self.members.get(member_id) {
                Some(existing) => {
                    if !joining {
                        check_epoch(existing, args.member_epoch, args.owned.as_ref())?;
                    }
                    Ok((Some(existing.clone()), Some(existing.member_id.clone())))
                }
                None if joining => Ok((None, None)),
                None => Err(unknown()),
            };
        };
        let existing = self
            .static_members
            .get(instance)
            .and_then(|id| self.members.get(id));
        if joining {
            return match existing {
                None => match self.members.get(member_id) {
                    Some(same) => Ok((Some(same.clone()), Some(same.member_id.clone()))),
                    None => Ok((None, None)),
                },
                Some(e)
                    if e.member_epoch != LEAVE_GROUP_STATIC_MEMBER_EPOCH
                        && e.member_id != *member_id =>
                {
                    Err(GroupError::new(
                        ErrorCode::UnreleasedInstanceId,
                        format!(
                            "Static member {member_id} with instance id {instance} cannot join the group because the instance id is owned by {} member.",
                            e.member_id
                        ),
                    ))
                }
                Some(e) => Ok((Some(e.clone()), Some(e.member_id.clone()))),
            };
        }
        let Some(e) = existing else {
            return Err(GroupError::new(
                ErrorCode::UnknownMemberId,
                format!("Instance id {instance} is unknown."),
            ));
        };
        if e.member_id != *member_id {
            return Err(GroupError::new(
                ErrorCode::FencedInstanceId,
                format!(
                    "Static member {member_id} with instance id {instance} was fenced by member {}.",
                    e.member_id
                ),
            ));
        }
        check_epoch(e, args.member_epoch, args.owned.as_ref())?;
        Ok((Some(e.clone()), Some(e.member_id.clone())))
    }

    /// Moves member `id` towards its target (Kafka's `maybeReconcile`), scheduling or
    /// cancelling its rebalance timeout.
    fn reconcile(&mut self, id: &Arc<str>, owned: Option<&Assignment>, ops: &mut Ops<'_>) {
        let Some(member) = self.members.get(id) else {
            return;
        };
        if member.is_reconciled_to(self.assignment_epoch) {
            return;
        }
        let empty = Assignment::new();
        let target = self.target.get(id).unwrap_or(&empty);
        let updated = next_assignment(
            member,
            self.assignment_epoch,
            target,
            &self.partition_epochs,
            owned,
        );
        if updated == *member {
            return;
        }
        tracing::debug!(
            group = &*self.id,
            member = &**id,
            epoch = updated.member_epoch,
            state = updated.state.name(),
            "member reconciled"
        );
        let key = TimerKey::ConsumerRebalance(self.id.clone(), id.clone());
        if updated.state == MemberState::UnrevokedPartitions {
            let timeout = super::classic::ms(updated.rebalance_timeout_ms.max(0));
            ops.timers.schedule(key, ops.now + timeout);
        } else {
            ops.timers.cancel(&key);
        }
        self.put_member(Some(id), updated);
    }

    /// A leave (-1) or a static member's temporary leave (-2) (Kafka's
    /// `consumerGroupLeave`). The group epoch is bumped when a member goes.
    pub fn leave(
        &mut self,
        member_id: &Arc<str>,
        instance_id: Option<&Arc<str>>,
        member_epoch: i32,
        ops: &mut Ops<'_>,
    ) -> Result<HeartbeatOutcome, GroupError> {
        let outcome = HeartbeatOutcome {
            member_id: member_id.clone(),
            member_epoch,
            heartbeat_interval_ms: 0,
            assignment: None,
        };
        let Some(instance) = instance_id else {
            if !self.members.contains_key(member_id) {
                return Err(GroupError::new(
                    ErrorCode::UnknownMemberId,
                    format!("Member {member_id} is not a member of group {}.", self.id),
                ));
            }
            tracing::info!(
                group = &*self.id,
                member = &**member_id,
                "member left the consumer group"
            );
            self.fence(member_id, ops)?;
            return Ok(outcome);
        };
        let Some(existing) = self
            .static_members
            .get(instance)
            .and_then(|id| self.members.get(id))
        else {
            return Err(GroupError::new(
                ErrorCode::UnknownMemberId,
                format!("Instance id {instance} is unknown."),
            ));
        };
        if existing.member_id != *member_id {
            return Err(GroupError::new(
                ErrorCode::FencedInstanceId,
                format!(
                    "Static member {member_id} with instance id {instance} was fenced by member {}.",
                    existing.member_id
                ),
            ));
        }
        if member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH {
            let mut leaving = existing.clone();
            leaving.member_epoch = LEAVE_GROUP_STATIC_MEMBER_EPOCH;
            leaving.pending_revocation.clear();
            ops.timers.cancel(&TimerKey::ConsumerRebalance(
                self.id.clone(),
                member_id.clone(),
            ));
            tracing::info!(
                group = &*self.id,
                member = &**member_id,
                instance = &**instance,
                "static member temporarily left the consumer group"
            );
            self.put_member(Some(member_id), leaving);
            return Ok(outcome);
        }
        tracing::info!(
            group = &*self.id,
            member = &**member_id,
            instance = &**instance,
            "static member left the consumer group"
        );
        self.fence(member_id, ops)?;
        Ok(outcome)
    }

    /// Removes member `id`, its target and its timers, and bumps the group epoch (Kafka's
    /// `consumerGroupFenceMember`; the subscription metadata is recomputed at the next
    /// heartbeat).
    fn fence(&mut self, id: &Arc<str>, ops: &mut Ops<'_>) -> Result<(), GroupError> {
        // Kafka's `validateOnlineDowngradeWithFencedMember`, before the member goes.
        let downgrade = self.allows_downgrade_without(id, ops.config);
        self.remove_member(id, ops);
        if downgrade {
            // The coordinator converts the group after this step; Kafka does not bump the
            // epoch (the classic group's generation is the group epoch, and it rebalances).
            self.downgrade = Some(true);
            return Ok(());
        }
        self.bump_epoch()
    }

    /// Takes member `id` out with its target and its timers (Kafka's `removeMember` and
    /// `cancelTimers`), without bumping the group epoch.
    fn remove_member(&mut self, id: &Arc<str>, ops: &mut Ops<'_>) {
        // Taking the member out counts its target's bytes out too.
        self.take_member(id);
        self.target.remove(id);
        self.cancel_member_timers(id, ops);
        // Names no member subscribes to any more leave the subscription now, so that
        // OffsetDelete may delete their offsets at once.
        let names = &self.name_counts;
        let regexes = &self.regex_matches;
        self.subscription.retain(|name, _| {
            names.contains_key(name) || regexes.values().any(|m| m.contains(name))
        });
    }

    /// Cancels member `id`'s timers: session, rebalance, and a classic member's join and
    /// sync deadlines.
    fn cancel_member_timers(&self, id: &Arc<str>, ops: &mut Ops<'_>) {
        let group = &self.id;
        for key in [
            TimerKey::ConsumerSession(group.clone(), id.clone()),
            TimerKey::ConsumerRebalance(group.clone(), id.clone()),
            TimerKey::ConsumerJoin(group.clone(), id.clone()),
            TimerKey::ConsumerSync(group.clone(), id.clone()),
        ] {
            ops.timers.cancel(&key);
        }
    }

    /// Kafka's `validateOnlineDowngradeWithFencedMember`: whether fencing member `id`
    /// (which speaks the consumer protocol) leaves only classic members, at least one, in a
    /// group the policy lets go back to classic and the classic size cap allows.
    fn allows_downgrade_without(&self, id: &str, config: &GroupConfig) -> bool {
        let Some(member) = self.members.get(id) else {
            return false;
        };
        let others = self.members.len().saturating_sub(1);
        if member.uses_classic_protocol() || self.classic_members != others {
            return false;
        }
        if others == 0 {
            return false;
        }
        if !config.migration_policy.downgrade_enabled() {
            tracing::info!(
                group = &*self.id,
                "the group keeps its classic members as a consumer group: the migration policy does not allow the downgrade"
            );
            return false;
        }
        others <= config.max_size
    }

    /// Whether the last step asked for the group to become a classic group, and if so
    /// whether that group rebalances (and forgets that it asked).
    pub fn take_downgrade(&mut self) -> Option<bool> {
        self.downgrade.take()
    }

    /// Member `id`'s session expired (Kafka's `consumerGroupSessionTimeout`).
    pub fn expire_session(&mut self, id: &Arc<str>, ops: &mut Ops<'_>) {
        if self.members.contains_key(id) {
            tracing::info!(
                group = &*self.id,
                member = &**id,
                "member session expired; fenced"
            );
            if let Err(e) = self.fence(id, ops) {
                tracing::warn!(group = &*self.id, error = ?e, "fencing an expired member");
            }
        }
    }

    /// Member `id` did not revoke in time (Kafka's `consumerGroupRebalanceTimeout`).
    pub fn expire_rebalance(&mut self, id: &Arc<str>, ops: &mut Ops<'_>) {
        if self
            .members
            .get(id)
            .is_some_and(|m| m.state == MemberState::UnrevokedPartitions)
        {
            tracing::info!(
                group = &*self.id,
                member = &**id,
                "member did not revoke in time; fenced"
            );
            if let Err(e) = self.fence(id, ops) {
                tracing::warn!(group = &*self.id, error = ?e, "fencing a member past its rebalance timeout");
            }
        }
    }

    /// The coordinator no longer serves the group: its timers stop.
    pub fn unload(&self, ops: &mut Ops<'_>) {
        self.cancel_timers(ops);
    }

    /// The coordinator serves the group again (from `ops.now`): every member's session
    /// starts anew, and the rebalance timeout of those revoking.
    pub fn load(&self, ops: &mut Ops<'_>) {
        for member in self.members.values() {
            ops.timers.schedule(
                TimerKey::ConsumerSession(self.id.clone(), member.member_id.clone()),
                ops.now + member_session_timeout(member, ops.config),
            );
            if member.state == MemberState::UnrevokedPartitions {
                ops.timers.schedule(
                    TimerKey::ConsumerRebalance(self.id.clone(), member.member_id.clone()),
                    ops.now + super::classic::ms(member.rebalance_timeout_ms.max(0)),
                );
            }
        }
    }

    /// Cancels every timer of the group.
    pub fn cancel_timers(&self, ops: &mut Ops<'_>) {
        for id in self.members.keys() {
            self.cancel_member_timers(id, ops);
        }
    }

    /// Whether an OffsetCommit (or, `transactional`, a TxnOffsetCommit) by this member and
    /// epoch may commit (Kafka's `ConsumerGroup.validateOffsetCommit`).
    pub fn validate_offset_commit(
        &self,
        member_id: &str,
        member_epoch: i32,
        transactional: bool,
        version: i16,
    ) -> Result<(), ErrorCode> {
        if member_epoch < 0 && self.members.is_empty() {
            return Ok(());
        }
        let member = self
            .members
            .get(member_id)
            .ok_or(ErrorCode::UnknownMemberId)?;
        // Classic members commit with their generation (the member epoch) at any version.
        if !transactional && !member.uses_classic_protocol() && version < 9 {
            return Err(ErrorCode::UnsupportedVersion);
        }
        check_commit_epoch(member, member_epoch)
    }

    /// Whether an OffsetFetch (v9+) by this member and epoch may read (Kafka's
    /// `ConsumerGroup.validateOffsetFetch`): no member id and a negative epoch is the admin
    /// client or a consumer without group management.
    pub fn validate_offset_fetch(
        &self,
        member_id: Option<&str>,
        member_epoch: i32,
    ) -> Result<(), ErrorCode> {
        let Some(member_id) = member_id else {
            return if member_epoch < 0 {
                Ok(())
            } else {
                Err(ErrorCode::UnknownMemberId)
            };
        };
        let member = self
            .members
            .get(member_id)
            .ok_or(ErrorCode::UnknownMemberId)?;
        check_commit_epoch(member, member_epoch)
    }
}

/// Kafka's `ConsumerGroup.validateMemberEpoch`: a stale epoch is STALE_MEMBER_EPOCH, or
/// ILLEGAL_GENERATION for a classic member (its generation is its epoch).
fn check_commit_epoch(member: &ConsumerMember, epoch: i32) -> Result<(), ErrorCode> {
    if epoch == member.member_epoch {
        Ok(())
    } else if member.uses_classic_protocol() {
        Err(ErrorCode::IllegalGeneration)
    } else {
        Err(ErrorCode::StaleMemberEpoch)
    }
}

/// A member's session timeout: its JoinGroup's for a classic member (Kafka's
/// `classicProtocolSessionTimeout`), else the group's.
fn member_session_timeout(member: &ConsumerMember, config: &GroupConfig) -> std::time::Duration {
    match &member.classic {
        Some(classic) => super::classic::ms(classic.session_timeout_ms),
        None => config.consumer_session_timeout,
    }
}

fn assignment_bytes(assignment: &Assignment) -> usize {
    assignment.values().map(|p| 16 + p.len() * 4).sum()
}

fn decrement(counts: &mut HashMap<Arc<str>, usize>, key: &Arc<str>) {
    if let Some(count) = counts.get_mut(key) {
        *count = count.saturating_sub(1);
        if *count == 0 {
            counts.remove(key);
        }
    }
}

/// Kafka's `throwIfConsumerGroupMemberEpochIsInvalid`.
fn check_epoch(
    member: &ConsumerMember,
    received: i32,
    owned: Option<&Assignment>,
) -> Result<(), GroupError> {
    if received > member.member_epoch {
        return Err(GroupError::new(
            ErrorCode::FencedMemberEpoch,
            format!(
                "The consumer group member has a greater member epoch ({received}) than the one known by the group coordinator ({}). The member must abandon all its partitions and rejoin.",
                member.member_epoch
            ),
        ));
    }
    if received < member.member_epoch {
        // The previous epoch with a subset of the current partitions: the answer that
        // bumped the epoch may have been lost.
        let subset = owned.is_some_and(|owned| {
            owned.iter().all(|(topic, partitions)| {
                member
                    .assigned
                    .get(topic)
                    .is_some_and(|mine| partitions.is_subset(mine))
            })
        });
        if received != member.previous_member_epoch || !subset {
            return Err(GroupError::new(
                ErrorCode::FencedMemberEpoch,
                format!(
                    "The consumer group member has a smaller member epoch ({received}) than the one known by the group coordinator ({}). The member must abandon all its partitions and rejoin.",
                    member.member_epoch
                ),
            ));
        }
    }
    Ok(())
}

/// Whether the member still owns any of `revoking` (it does when it did not say).
fn owns_any(owned: Option<&Assignment>, revoking: &Assignment) -> bool {
    let Some(owned) = owned else {
        return true;
    };
    owned.iter().any(|(topic, partitions)| {
        revoking
            .get(topic)
            .is_some_and(|r| partitions.iter().any(|p| r.contains(p)))
    })
}

/// Kafka's `CurrentAssignmentBuilder.build`: the member's next state.
fn next_assignment(
    member: &ConsumerMember,
    target_epoch: i32,
    target: &Assignment,
    partition_epochs: &HashMap<(Uuid, i32), i32>,
    owned: Option<&Assignment>,
) -> ConsumerMember {
    match member.state {
        MemberState::Stable if member.member_epoch == target_epoch => member.clone(),
        MemberState::UnrevokedPartitions if owns_any(owned, &member.pending_revocation) => {
            member.clone()
        }
        _ => compute_next(member, target_epoch, target, partition_epochs, owned),
    }
}

/// Kafka's `CurrentAssignmentBuilder.computeNextAssignment`.
fn compute_next(
    member: &ConsumerMember,
    target_epoch: i32,
    target: &Assignment,
    partition_epochs: &HashMap<(Uuid, i32), i32>,
    owned: Option<&Assignment>,
) -> ConsumerMember {
    let mut unreleased = false;
    let mut assigned = Assignment::new();
    let mut revoking = Assignment::new();
    let mut adding = Assignment::new();
    let empty = BTreeSet::new();
    let topics: BTreeSet<Uuid> = target
        .keys()
        .chain(member.assigned.keys())
        .copied()
        .collect();
    for topic in topics {
        let wanted = target.get(&topic).unwrap_or(&empty);
        let current = member.assigned.get(&topic).unwrap_or(&empty);
        let kept: BTreeSet<i32> = current.intersection(wanted).copied().collect();
        let revoke: BTreeSet<i32> = current.difference(&kept).copied().collect();
        let mut add = BTreeSet::new();
        for &p in wanted.difference(&kept) {
            if partition_epochs.contains_key(&(topic, p)) {
                unreleased = true;
            } else {
                add.insert(p);
            }
        }
        if !kept.is_empty() {
            assigned.insert(topic, kept);
        }
        if !revoke.is_empty() {
            revoking.insert(topic, revoke);
        }
        if !add.is_empty() {
            adding.insert(topic, add);
        }
    }
    let mut next = member.clone();
    // Kafka's `updateMemberEpoch`: the previous epoch is the one before this step.
    next.previous_member_epoch = member.member_epoch;
    if !revoking.is_empty() && owns_any(owned, &revoking) {
        next.state = MemberState::UnrevokedPartitions;
        next.assigned = assigned;
        next.pending_revocation = revoking;
        return next;
    }
    for (topic, partitions) in adding {
        assigned.entry(topic).or_default().extend(partitions);
    }
    next.state = if unreleased {
        MemberState::UnreleasedPartitions
    } else {
        MemberState::Stable
    };
    next.member_epoch = target_epoch;
    next.assigned = assigned;
    next.pending_revocation = Assignment::new();
    next
}

/// A duration as Kafka's i32 milliseconds, saturating.
fn ms_i32(d: std::time::Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}
