//! The group coordinator: consumer groups, their members and rebalances, as Apache Kafka's
//! `GroupCoordinatorService` / `GroupMetadataManager` run them, inside the cluster state.
//!
//! | module | what |
//! |---|---|
//! | [`classic`] | a classic group (JoinGroup/SyncGroup/Heartbeat/LeaveGroup): Kafka's state machine |
//! | [`consumer`] | a KIP-848 consumer group (ConsumerGroupHeartbeat): epochs, reconciliation; its `mixed` module: classic members inside it, the upgrade and downgrade |
//! | [`assignors`] | the consumer groups' server-side assignors, `uniform` and `range` |
//! | [`timers`] | keyed deadlines: sessions, join and sync phases, revocations |
//!
//! # Shape
//!
//! [`GroupCoordinator`] holds every group by id, an index of group ids by their partition of
//! `__consumer_offsets` (the coordinator of a partition is its leader, see
//! [`super::coordinator`]), the timers of all groups, and the caps. A group is a [`Group`]:
//! [`Group::Classic`] or KIP-848's [`Group::Consumer`] (ConsumerGroupHeartbeat), each with its
//! own module, its own timer keys in [`TimerKey`] and its own arms in the `ClusterState`
//! methods below, sharing the placement, the offsets ([`super::offsets`]), the caps, the
//! index and the timers. Requests name a group; what they may do to a group of the other type
//! is Kafka's (`classicGroupJoin` dispatching on `group.type()`), so each method matches on
//! the type.
//!
//! # Mixed groups
//!
//! Kafka 4.x's `group.consumer.migration.policy` defaults to `bidirectional`, and so does
//! [`GroupConfig::migration_policy`] ([`MigrationPolicy`]):
//!
//! - **Empty groups** change type under every policy: an empty classic group (or one with
//!   only offsets) becomes a consumer group at the first ConsumerGroupHeartbeat, an empty
//!   consumer group a classic one at the first JoinGroup; offsets stay.
//! - **Upgrade** (`bidirectional`, `upgrade`): a ConsumerGroupHeartbeat joining a classic
//!   group with members that all use the `consumer` protocol type converts it with its
//!   members (Kafka's `convertToConsumerGroup`): each becomes a classic member of a
//!   consumer group, Stable at the generation with its last assignment as its target; the
//!   requests waiting in a rebalance are answered REBALANCE_IN_PROGRESS. Refused
//!   (another protocol type, more members than `group.consumer.max.size`, or the policy):
//!   GROUP_ID_NOT_FOUND, "Group g is not a consumer group.".
//! - **Classic members in a consumer group** (every policy, as in Kafka): a JoinGroup of
//!   the `consumer` protocol type to a consumer group with members is served by the
//!   consumer group ([`consumer`]'s `mixed` module): answered at once with the member
//!   epoch as generation and no leader; the SyncGroup returns the member's assigned
//!   partitions; Heartbeat answers REBALANCE_IN_PROGRESS when the member must rejoin. A
//!   JoinGroup of another protocol type, or with no protocol every classic member
//!   supports, is INCONSISTENT_GROUP_PROTOCOL.
//! - **Downgrade** (`bidirectional`, `downgrade`): when the last member speaking the
//!   consumer protocol leaves (or is fenced) and classic members remain, the group
//!   becomes a classic group with them, Stable at the group epoch with their target
//!   assignments, and rebalances at once (Kafka's `convertToClassicGroup`). Under the
//!   other policies it stays a consumer group of classic members.
//!
//! The downgrade also happens (without a rebalance) when a static classic member takes
//! the instance id of the last consumer-protocol member, which it replaces.

//! # How requests wait
//!
//! A JoinGroup or SyncGroup that cannot be answered yet waits in the purgatory (its handler
//! answers `Reply::Park`), and its member remembers the waiter (Kafka's
//! `awaitingJoinFuture`). Whatever completes it (another member's request, a timer, a
//! coordinator move) pushes `(waiter, answer)` onto a list; the `ClusterState` method that
//! ran the step hands the answer of the request being served back directly, and every other
//! one to its waiting request ([`ClusterState::resolve`] with [`Resolution::Group`]). The
//! purgatory deadline of a waiting request is only a safety net beyond every timer that can
//! complete it; reaching it answers COORDINATOR_NOT_AVAILABLE (as does a full purgatory), and
//! the client finds the coordinator again and rejoins.
//!
//! # Time
//!
//! Sessions, join phases and sync phases are deadlines in [`timers`], reported by
//! [`ClusterState::poll_timeout`] and driven by [`ClusterState::handle_timeout`], so under a
//! paused clock a session expires exactly when the test's time passes it.
//!
//! # Coordinator moves
//!
//! When leadership of a partition of `__consumer_offsets` changes, its groups are unloaded
//! as Kafka unloads them (waiting JoinGroups and SyncGroups are answered NOT_COORDINATOR,
//! timers stop) and become what Kafka last wrote to the log for them (the group of the last
//! completed rebalance: Stable with its members and assignments, or Empty); when the
//! partition has a live leader again they are loaded (every member's session starts anew).
//! Committed offsets are untouched.
//!
//! # Bounds
//!
//! [`GroupConfig`]: groups (`max_groups`, 100,000), members and pending members per group
//! (`max_size`, Kafka's `group.max.size`, 10,000 here where Kafka's default is unbounded),
//! bytes of a member's protocol metadata or assignment (`max_member_bytes`, 1 MiB) and of all
//! groups' (`max_bytes`, 256 MiB). Past the group and byte caps a request is answered
//! UNKNOWN_SERVER_ERROR, which is what Kafka answers when a group's record does not fit its
//! log (`appendGroupMetadataErrorToResponseError`); past `max_size`, GROUP_MAX_SIZE_REACHED.
//! Waiting requests are bounded by the purgatory.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use franzy::proto::ErrorCode;

use super::coordinator::{CoordinatorType, OFFSETS_TOPIC};
use super::{ClusterState, Resolution, Time, WaiterId};

pub mod assignors;
pub mod classic;
pub mod consumer;
pub mod timers;

pub use classic::{ClassicGroup, ClassicGroupState, ClassicMember, JoinArgs, SyncArgs};
pub use consumer::{
    ConsumerGroup, ConsumerGroupState, ConsumerMember, GroupError, HeartbeatArgs, HeartbeatOutcome,
    MemberState,
};
use timers::Timers;

/// Kafka's default `group.min.session.timeout.ms`.
pub const DEFAULT_MIN_SESSION_TIMEOUT: Duration = Duration::from_millis(6_000);
/// Kafka's default `group.max.session.timeout.ms`.
pub const DEFAULT_MAX_SESSION_TIMEOUT: Duration = Duration::from_millis(1_800_000);
/// Kafka's `group.initial.rebalance.delay.ms` default is 3 s; the harness's is zero.
pub const DEFAULT_INITIAL_REBALANCE_DELAY: Duration = Duration::ZERO;
/// Kafka's `classicGroupNewMemberJoinTimeoutMs`.
pub const DEFAULT_NEW_MEMBER_JOIN_TIMEOUT: Duration = Duration::from_secs(300);
/// Default of [`GroupConfig::max_size`].
pub const DEFAULT_GROUP_MAX_SIZE: usize = 10_000;
/// Default of [`GroupConfig::max_groups`].
pub const DEFAULT_MAX_GROUPS: usize = 100_000;
/// Default of [`GroupConfig::max_member_bytes`]: 1 MiB.
pub const DEFAULT_MAX_MEMBER_BYTES: usize = 1024 * 1024;
/// Default of [`GroupConfig::max_bytes`]: 256 MiB.
pub const DEFAULT_MAX_GROUP_BYTES: usize = 256 * 1024 * 1024;
/// Kafka's default `group.consumer.session.timeout.ms`.
pub const DEFAULT_CONSUMER_SESSION_TIMEOUT: Duration = Duration::from_millis(45_000);
/// Kafka's default `group.consumer.heartbeat.interval.ms`.
pub const DEFAULT_CONSUMER_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(5_000);

/// Kafka's `group.consumer.migration.policy` (`ConsumerGroupMigrationPolicy`): which
/// non-empty groups change type with their members (see the module doc, "Mixed groups").
/// Kafka's default, and the harness's, is [`MigrationPolicy::Bidirectional`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MigrationPolicy {
    /// Both upgrade (classic to consumer) and downgrade (consumer to classic).
    #[default]
    Bidirectional,
    /// Only the upgrade from classic to consumer.
    Upgrade,
    /// Only the downgrade from consumer to classic.
    Downgrade,
    /// Neither: a ConsumerGroupHeartbeat to a classic group with members is answered
    /// GROUP_ID_NOT_FOUND, and a consumer group whose last consumer-protocol member leaves
    /// stays a consumer group with its classic members.
    Disabled,
}

impl MigrationPolicy {
    /// Kafka's `isUpgradeEnabled`.
    pub fn upgrade_enabled(self) -> bool {
        matches!(self, Self::Bidirectional | Self::Upgrade)
    }

    /// Kafka's `isDowngradeEnabled`.
    pub fn downgrade_enabled(self) -> bool {
        matches!(self, Self::Bidirectional | Self::Downgrade)
    }

    /// Kafka's name for the policy.
    pub fn name(self) -> &'static str {
        match self {
            Self::Bidirectional => "bidirectional",
            Self::Upgrade => "upgrade",
            Self::Downgrade => "downgrade",
            Self::Disabled => "disabled",
        }
    }

    /// The policy named `name`, case-insensitively, as Kafka's config accepts it.
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::Bidirectional,
            Self::Upgrade,
            Self::Downgrade,
            Self::Disabled,
        ]
        .into_iter()
        .find(|p| p.name().eq_ignore_ascii_case(name.trim()))
    }
}

/// The group coordinator's settings (Kafka's `group.*` broker configs) and bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// Shortest session timeout a JoinGroup may ask for (`group.min.session.timeout.ms`,
    /// 6 s); below it INVALID_SESSION_TIMEOUT.
    pub min_session_timeout: Duration,
    /// Longest session timeout (`group.max.session.timeout.ms`, 30 min).
    pub max_session_timeout: Duration,
    /// How long a new group waits for more members before its first join phase ends,
    /// extended by as much for each member that joins meanwhile, up to the rebalance
    /// timeout (`group.initial.rebalance.delay.ms`; Kafka's default is 3 s, the harness's
    /// zero so that tests do not wait).
    pub initial_rebalance_delay: Duration,
    /// How long a new member's JoinGroup may wait before the member is dropped (Kafka's
    /// fixed 5 minutes).
    pub new_member_join_timeout: Duration,
    /// Most members (and, separately, members told MEMBER_ID_REQUIRED that have not joined
    /// yet) per group (`group.max.size`); past it GROUP_MAX_SIZE_REACHED. Default 10,000.
    pub max_size: usize,
    /// Most groups (with members or only offsets); a request that would create another is
    /// answered UNKNOWN_SERVER_ERROR. Default 100,000.
    pub max_groups: usize,
    /// Most bytes of one member's protocols (names and metadata) or of its assignment.
    /// Default 1 MiB.
    pub max_member_bytes: usize,
    /// Most bytes of all members' protocols and assignments together. Default 256 MiB.
    pub max_bytes: usize,
    /// A KIP-848 member's session (`group.consumer.session.timeout.ms`, 45 s): fenced when
    /// no heartbeat comes for this long.
    pub consumer_session_timeout: Duration,
    /// How often KIP-848 members heartbeat (`group.consumer.heartbeat.interval.ms`, 5 s).
    pub consumer_heartbeat_interval: Duration,
    /// The server-side assignors, the first the default (`group.consumer.assignors`:
    /// `uniform`, `range`); a member naming another is answered UNSUPPORTED_ASSIGNOR.
    pub consumer_assignors: Vec<String>,
    /// Most members per consumer group (`group.consumer.max.size`); past it
    /// GROUP_MAX_SIZE_REACHED. Default 10,000 (Kafka's is unbounded).
    pub consumer_max_size: usize,
    /// Which groups change protocol with their members (see "Mixed groups").
    pub migration_policy: MigrationPolicy,
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            min_session_timeout: DEFAULT_MIN_SESSION_TIMEOUT,
            max_session_timeout: DEFAULT_MAX_SESSION_TIMEOUT,
            initial_rebalance_delay: DEFAULT_INITIAL_REBALANCE_DELAY,
            new_member_join_timeout: DEFAULT_NEW_MEMBER_JOIN_TIMEOUT,
            max_size: DEFAULT_GROUP_MAX_SIZE,
            max_groups: DEFAULT_MAX_GROUPS,
            max_member_bytes: DEFAULT_MAX_MEMBER_BYTES,
            max_bytes: DEFAULT_MAX_GROUP_BYTES,
            consumer_session_timeout: DEFAULT_CONSUMER_SESSION_TIMEOUT,
            consumer_heartbeat_interval: DEFAULT_CONSUMER_HEARTBEAT_INTERVAL,
            consumer_assignors: vec![assignors::UNIFORM.to_string(), assignors::RANGE.to_string()],
            consumer_max_size: DEFAULT_GROUP_MAX_SIZE,
            migration_policy: MigrationPolicy::Bidirectional,
        }
    }
}

/// A group of either protocol.
#[derive(Debug)]
pub enum Group {
    /// The classic protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup).
    Classic(ClassicGroup),
    /// KIP-848's consumer protocol (ConsumerGroupHeartbeat).
    Consumer(ConsumerGroup),
}

impl Group {
    /// The group id.
    pub fn id(&self) -> &Arc<str> {
        match self {
            Group::Classic(g) => g.id(),
            Group::Consumer(g) => g.id(),
        }
    }

    /// Kafka's group type name, as ListGroups v5 reports it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Group::Classic(_) => "classic",
            Group::Consumer(_) => "consumer",
        }
    }

    /// The state's name, as DescribeGroups and ListGroups report it.
    pub fn state_name(&self) -> &'static str {
        match self {
            Group::Classic(g) => g.state().name(),
            Group::Consumer(g) => g.state().name(),
        }
    }

    /// The protocol type, or "".
    pub fn protocol_type(&self) -> &str {
        match self {
            Group::Classic(g) => g.protocol_type().map_or("", |t| t),
            Group::Consumer(_) => classic::CONSUMER_PROTOCOL_TYPE,
        }
    }

    /// The classic group, if it is one.
    pub fn as_classic(&self) -> Option<&ClassicGroup> {
        match self {
            Group::Classic(g) => Some(g),
            Group::Consumer(_) => None,
        }
    }

    /// The consumer group, if it is one.
    pub fn as_consumer(&self) -> Option<&ConsumerGroup> {
        match self {
            Group::Consumer(g) => Some(g),
            Group::Classic(_) => None,
        }
    }

    /// Whether the group has no members.
    pub fn is_empty(&self) -> bool {
        match self {
            Group::Classic(g) => matches!(
                g.state(),
                ClassicGroupState::Empty | ClassicGroupState::Dead
            ),
            Group::Consumer(g) => g.is_empty(),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Group::Classic(g) => g.bytes(),
            Group::Consumer(g) => g.bytes(),
        }
    }
}

/// A member in the leader's JoinGroup answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    /// Its id.
    pub member_id: Arc<str>,
    /// Its instance id.
    pub group_instance_id: Option<Arc<str>>,
    /// Its metadata for the selected protocol.
    pub metadata: Bytes,
}

/// A JoinGroup's answer, before it is put in the request's version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinOutcome {
    /// The error, or 0.
    pub error_code: i16,
    /// The generation, or -1.
    pub generation_id: i32,
    /// The protocol type.
    pub protocol_type: Option<Arc<str>>,
    /// The selected protocol.
    pub protocol_name: Option<Arc<str>>,
    /// The leader's member id, or "".
    pub leader: Arc<str>,
    /// A static leader rejoining a stable group may keep the assignment (KIP-814).
    pub skip_assignment: bool,
    /// The member's id.
    pub member_id: Arc<str>,
    /// Every member, for the leader; empty for the others.
    pub members: Vec<JoinedMember>,
}

/// A SyncGroup's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncOutcome {
    /// The error, or 0.
    pub error_code: i16,
    /// The protocol type.
    pub protocol_type: Option<Arc<str>>,
    /// The selected protocol.
    pub protocol_name: Option<Arc<str>>,
    /// The member's assignment.
    pub assignment: Bytes,
}

/// An answer the group coordinator decided for a request that waits (a
/// [`Resolution::Group`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupAnswer {
    /// A JoinGroup's.
    Join(JoinOutcome),
    /// A SyncGroup's.
    Sync(SyncOutcome),
}

/// What a timer is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimerKey {
    /// A classic member's session (or a pending member's wait to join): group, member.
    Heartbeat(Arc<str>, Arc<str>),
    /// A classic group's join phase.
    Join(Arc<str>),
    /// A classic group's sync phase.
    Sync(Arc<str>),
    /// A consumer group member's session: group, member.
    ConsumerSession(Arc<str>, Arc<str>),
    /// A consumer group member's time to revoke partitions: group, member.
    ConsumerRebalance(Arc<str>, Arc<str>),
    /// A classic member of a consumer group told to rejoin, until it does: group, member.
    ConsumerJoin(Arc<str>, Arc<str>),
    /// A classic member of a consumer group that joined, until it syncs: group, member.
    ConsumerSync(Arc<str>, Arc<str>),
}

/// A step's answer: now, or later to a waiting request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupReply<T> {
    /// The answer.
    Now(T),
    /// Not yet: park the request until this deadline at the latest (a safety net; the
    /// coordinator answers before).
    Wait(Time),
}

/// Member ids: `prefix-UUID` (the client id, or the instance id for static members), the
/// UUID drawn from the cluster's seed and a counter.
#[derive(Debug)]
pub struct MemberIds {
    seed: u64,
    next: u64,
}

impl MemberIds {
    /// The next member id.
    pub fn next(&mut self, prefix: &str) -> Arc<str> {
        self.next = self.next.wrapping_add(1);
        let hi = mix(self.seed ^ 0x6d65_6d62_6572_7321 ^ self.next.wrapping_mul(2));
        let lo = mix(hi ^ self.next.wrapping_mul(2).wrapping_add(1));
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&hi.to_be_bytes());
        bytes[8..].copy_from_slice(&lo.to_be_bytes());
        let uuid = uuid::Builder::from_random_bytes(bytes).into_uuid();
        Arc::from(format!("{prefix}-{}", uuid.hyphenated()))
    }

    /// The next bare UUID (a KIP-848 member id the coordinator makes, v0).
    pub fn uuid(&mut self) -> Arc<str> {
        let id = self.next("");
        Arc::from(id.trim_start_matches('-'))
    }
}

/// What a group step works with: the time, the settings, the timers, where answers go, and
/// the member id generator.
pub struct Ops<'a> {
    /// Now.
    pub now: Time,
    /// The settings.
    pub config: &'a GroupConfig,
    /// Every group's timers.
    pub timers: &'a mut Timers<TimerKey>,
    /// Answers for waiting requests, in the order they were decided.
    pub answers: &'a mut Vec<(WaiterId, GroupAnswer)>,
    /// Member ids.
    pub ids: &'a mut MemberIds,
}

impl Ops<'_> {
    fn answer_join(&mut self, waiter: WaiterId, answer: JoinOutcome) {
        self.answers.push((waiter, GroupAnswer::Join(answer)));
    }

    fn answer_sync(&mut self, waiter: WaiterId, answer: SyncOutcome) {
        self.answers.push((waiter, GroupAnswer::Sync(answer)));
    }
}

/// Every group, the timers, and the caps.
#[derive(Debug)]
pub struct GroupCoordinator {
    config: GroupConfig,
    groups: HashMap<Arc<str>, Group>,
    /// Group ids by their partition of `__consumer_offsets`.
    by_partition: HashMap<i32, BTreeSet<Arc<str>>>,
    timers: Timers<TimerKey>,
    ids: MemberIds,
    bytes: usize,
}

impl GroupCoordinator {
    /// No groups yet.
    pub fn new(config: GroupConfig, seed: u64) -> Self {
        Self {
            config,
            groups: HashMap::new(),
            by_partition: HashMap::new(),
            timers: Timers::default(),
            ids: MemberIds { seed, next: 0 },
            bytes: 0,
        }
    }

    /// The settings.
    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// Group `id`.
    pub fn group(&self, id: &str) -> Option<&Group> {
        self.groups.get(id)
    }

    /// Every group, in no order.
    pub fn groups(&self) -> impl Iterator<Item = &Group> {
        self.groups.values()
    }

    /// How many groups.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// Whether there is no group.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Bytes of all members' protocols and assignments.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The earliest timer.
    pub fn next_deadline(&self) -> Option<Time> {
        self.timers.next()
    }

    /// How many timers are set.
    pub fn timers(&self) -> usize {
        self.timers.len()
    }

    /// Runs `step` on classic group `id` with the coordinator's timers, keeping the bytes
    /// count; its answers are appended to `answers`. `None` when there is no such group.
    fn with_classic<R>(
        &mut self,
        id: &str,
        now: Time,
        answers: &mut Vec<(WaiterId, GroupAnswer)>,
        step: impl FnOnce(&mut ClassicGroup, &mut Ops<'_>) -> R,
    ) -> Option<R> {
        let Self {
            config,
            groups,
            timers,
            ids,
            bytes,
            ..
        } = self;
        let Some(Group::Classic(group)) = groups.get_mut(id) else {
            return None;
        };
        let before = group.bytes();
        let mut ops = Ops {
            now,
            config,
            timers,
            answers,
            ids,
        };
        let result = step(group, &mut ops);
        *bytes = bytes.saturating_sub(before).saturating_add(group.bytes());
        Some(result)
    }

    /// As [`Self::with_classic`], for consumer group `id`.
    fn with_consumer<R>(
        &mut self,
        id: &str,
        now: Time,
        step: impl FnOnce(&mut ConsumerGroup, &mut Ops<'_>) -> R,
    ) -> Option<R> {
        let Self {
            config,
            groups,
            timers,
            ids,
            bytes,
            ..
        } = self;
        let Some(Group::Consumer(group)) = groups.get_mut(id) else {
            return None;
        };
        let before = group.bytes();
        let mut answers = Vec::new();
        let mut ops = Ops {
            now,
            config,
            timers,
            answers: &mut answers,
            ids,
        };
        let result = step(group, &mut ops);
        *bytes = bytes.saturating_sub(before).saturating_add(group.bytes());
        if let Some(rebalance) = group.take_downgrade() {
            // Kafka's `convertToClassicGroup`: the last member speaking the consumer
            // protocol left; the classic members carry on in a classic group, which
            // rebalances.
            tracing::info!(
                group = id,
                epoch = group.group_epoch(),
                "downgrading the consumer group to a classic group"
            );
            group.cancel_timers(&mut ops);
            let mut classic = ClassicGroup::from_consumer(
                group.id().clone(),
                group.group_epoch(),
                group.to_classic_members(),
            );
            classic.start_after_downgrade(rebalance, &mut ops);
            *bytes = bytes
                .saturating_sub(group.bytes())
                .saturating_add(classic.bytes());
            if let Some(slot) = groups.get_mut(id) {
                *slot = Group::Classic(classic);
            }
        }
        // A consumer group has no waiting requests, and a group just downgraded has none
        // yet, so nothing can have been answered here.
        if !answers.is_empty() {
            tracing::warn!(
                group = id,
                answers = answers.len(),
                "a consumer group step answered waiting requests; dropped"
            );
        }
        Some(result)
    }

    /// Puts `group` in place of the group with its id (a conversion), keeping the bytes
    /// count and the partition index.
    fn replace(&mut self, partition: i32, group: Group) {
        let id = group.id().clone();
        self.by_partition
            .entry(partition)
            .or_default()
            .insert(id.clone());
        self.bytes = self.bytes.saturating_add(group.bytes());
        if let Some(old) = self.groups.insert(id, group) {
            self.bytes = self.bytes.saturating_sub(old.bytes());
        }
    }

    /// Creates classic group `id` (on `partition`), unless there are too many groups.
    fn create_classic(&mut self, id: &str, partition: i32) -> Result<(), ErrorCode> {
        self.create(id, partition, |id| Group::Classic(ClassicGroup::new(id)))
    }

    /// Creates consumer group `id` (on `partition`), unless there are too many groups.
    fn create_consumer(&mut self, id: &str, partition: i32) -> Result<(), ErrorCode> {
        self.create(id, partition, |id| Group::Consumer(ConsumerGroup::new(id)))
    }

    fn create(
        &mut self,
        id: &str,
        partition: i32,
        make: impl FnOnce(Arc<str>) -> Group,
    ) -> Result<(), ErrorCode> {
        if self.groups.contains_key(id) {
            return Ok(());
        }
        if self.groups.len() >= self.config.max_groups {
            tracing::warn!(
                group = id,
                max_groups = self.config.max_groups,
                "group cap reached; refusing a new group with UNKNOWN_SERVER_ERROR"
            );
            return Err(ErrorCode::UnknownServerError);
        }
        let id: Arc<str> = Arc::from(id);
        self.by_partition
            .entry(partition)
            .or_default()
            .insert(id.clone());
        self.groups.insert(id.clone(), make(id));
        Ok(())
    }

    /// Removes group `id` and its timers.
    fn remove(&mut self, id: &str, partition: i32) -> Option<Group> {
        let group = self.groups.remove(id)?;
        if let Some(ids) = self.by_partition.get_mut(&partition) {
            ids.remove(id);
            if ids.is_empty() {
                self.by_partition.remove(&partition);
            }
        }
        self.bytes = self.bytes.saturating_sub(group.bytes());
        let mut answers = Vec::new();
        let mut ops = Ops {
            now: Time::ZERO,
            config: &self.config,
            timers: &mut self.timers,
            answers: &mut answers,
            ids: &mut self.ids,
        };
        match &group {
            Group::Classic(classic) => classic.cancel_timers(&mut ops),
            Group::Consumer(consumer) => consumer.cancel_timers(&mut ops),
        }
        Some(group)
    }

    /// The groups of `partition`.
    pub fn groups_of_partition(&self, partition: i32) -> impl Iterator<Item = &Group> {
        self.by_partition
            .get(&partition)
            .into_iter()
            .flatten()
            .filter_map(|id| self.groups.get(id))
    }
}

/// Kafka's `GroupCoordinatorService.isGroupIdNotEmpty`.
pub fn is_valid_group_id(id: &str) -> bool {
    !id.is_empty()
}

impl ClusterState {
    /// The group coordinator's state: groups, timers, settings.
    pub fn groups(&self) -> &GroupCoordinator {
        &self.groups
    }

    /// Whether `broker` may serve a request for group `group_id` now (see
    /// [`ClusterState::check_coordinator`]).
    pub fn check_group_coordinator(
        &self,
        group_id: &str,
        broker: i32,
        now: Time,
    ) -> Result<i32, ErrorCode> {
        self.check_coordinator(CoordinatorType::Group, group_id, broker, now)
    }

    /// A JoinGroup of `group_id` at `broker`, whose answer goes to `waiter`: checked as
    /// Kafka's `GroupCoordinatorService.joinGroup` checks it (the group id and session
    /// timeout are the handler's), the coordinator, then the group's own rules.
    pub fn join_group(
        &mut self,
        group_id: &str,
        args: JoinArgs,
        broker: i32,
        waiter: WaiterId,
        now: Time,
    ) -> GroupReply<JoinOutcome> {
        let member_id = args.member_id.clone();
        let refuse = |code| GroupReply::Now(classic::join_error(&member_id, code));
        let partition = match self.check_group_coordinator(group_id, broker, now) {
            Ok(partition) => partition,
            Err(code) => return refuse(code),
        };
        let member_bytes: usize = args
            .protocols
            .iter()
            .map(|(name, metadata)| name.len() + metadata.len())
            .sum();
        if member_bytes > self.groups.config.max_member_bytes
            || self.groups.bytes.saturating_add(member_bytes) > self.groups.config.max_bytes
        {
            tracing::warn!(
                group = group_id,
                member_bytes,
                "member metadata past the group caps; answering UNKNOWN_SERVER_ERROR"
            );
            return refuse(ErrorCode::UnknownServerError);
        }
        match self.groups.group(group_id) {
            // Kafka's `classicGroupJoinToClassicGroup` replaces an empty consumer group.
            Some(Group::Consumer(g)) if g.is_empty() => {
                self.groups.remove(group_id, partition);
            }
            // Kafka's `classicGroupJoinToConsumerGroup`, answered at once.
            Some(Group::Consumer(_)) => {
                let catalog = ClusterTopics {
                    topics: &self.topics,
                    version: self.topology_version,
                };
                let answer = self
                    .groups
                    .with_consumer(group_id, now, |group, ops| {
                        group.classic_join(args, &catalog, ops)
                    })
                    .unwrap_or_else(|| {
                        classic::join_error(&member_id, ErrorCode::UnknownServerError)
                    });
                return GroupReply::Now(answer);
            }
            _ => {}
        }
        if self.groups.group(group_id).is_none() {
            // Kafka creates the group only for a member without an id.
            if &*args.member_id != classic::UNKNOWN_MEMBER_ID {
                return refuse(ErrorCode::UnknownMemberId);
            }
            if let Err(code) = self.groups.create_classic(group_id, partition) {
                return refuse(code);
            }
        }
        let rebalance_timeout = classic::ms(args.rebalance_timeout_ms);
        let mut answers = Vec::new();
        let group_timeout = self
            .groups
            .with_classic(group_id, now, &mut answers, |group, ops| {
                group.join(args, waiter, ops);
                classic::ms(group.rebalance_timeout_ms())
            })
            .unwrap_or_default();
        let slack = self.groups.config.new_member_join_timeout
            + self.groups.config.initial_rebalance_delay
            + Duration::from_secs(60);
        let deadline = now + rebalance_timeout.max(group_timeout) * 2 + slack;
        match self.deliver(answers, Some(waiter)) {
            Some(GroupAnswer::Join(answer)) => GroupReply::Now(answer),
            Some(GroupAnswer::Sync(_)) => refuse(ErrorCode::UnknownServerError),
            None => GroupReply::Wait(deadline),
        }
    }

    /// A SyncGroup (Kafka's `classicGroupSync`; the v5 protocol presence check is the
    /// handler's).
    pub fn sync_group(
        &mut self,
        group_id: &str,
        args: SyncArgs<'_>,
        broker: i32,
        waiter: WaiterId,
        now: Time,
    ) -> GroupReply<SyncOutcome> {
        if let Err(code) = self.check_group_coordinator(group_id, broker, now) {
            return GroupReply::Now(classic::sync_error(code));
        }
        let empty = match self.groups.group(group_id) {
            None => true,
            Some(Group::Classic(g)) => g.state() == ClassicGroupState::Empty,
            Some(Group::Consumer(g)) => g.is_empty(),
        };
        if empty {
            return GroupReply::Now(classic::sync_error(ErrorCode::UnknownMemberId));
        }
        if let Some(answer) = self.groups.with_consumer(group_id, now, |group, ops| {
            group.classic_sync(args.clone(), ops)
        }) {
            return GroupReply::Now(answer);
        }
        let given: usize = args.assignments.iter().map(|(_, a)| a.len()).sum();
        if args
            .assignments
            .iter()
            .any(|(_, a)| a.len() > self.groups.config.max_member_bytes)
            || self.groups.bytes.saturating_add(given) > self.groups.config.max_bytes
        {
            tracing::warn!(
                group = group_id,
                bytes = given,
                "assignment past the group caps; answering UNKNOWN_SERVER_ERROR"
            );
            return GroupReply::Now(classic::sync_error(ErrorCode::UnknownServerError));
        }
        let mut answers = Vec::new();
        let timeout = self
            .groups
            .with_classic(group_id, now, &mut answers, |group, ops| {
                group.sync(args, waiter, ops);
                classic::ms(group.rebalance_timeout_ms())
            })
            .unwrap_or_default();
        let deadline = now + timeout * 2 + Duration::from_secs(60);
        match self.deliver(answers, Some(waiter)) {
            Some(GroupAnswer::Sync(answer)) => GroupReply::Now(answer),
            Some(GroupAnswer::Join(_)) => {
                GroupReply::Now(classic::sync_error(ErrorCode::UnknownServerError))
            }
            None => GroupReply::Wait(deadline),
        }
    }

    /// A Heartbeat (Kafka's `classicGroupHeartbeat`). While the coordinator loads, Kafka
    /// answers a heartbeat with no error.
    pub fn heartbeat(
        &mut self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        broker: i32,
        now: Time,
    ) -> Result<(), ErrorCode> {
        match self.check_group_coordinator(group_id, broker, now) {
            Err(ErrorCode::CoordinatorLoadInProgress) => return Ok(()),
            Err(code) => return Err(code),
            Ok(_) => {}
        }
        if let Some(result) = self.groups.with_consumer(group_id, now, |group, ops| {
            group.classic_heartbeat(member_id, instance_id, generation, ops)
        }) {
            return result;
        }
        let mut answers = Vec::new();
        let result = self
            .groups
            .with_classic(group_id, now, &mut answers, |group, ops| {
                group.heartbeat(member_id, instance_id, generation, ops)
            })
            .unwrap_or(Err(ErrorCode::UnknownMemberId));
        self.deliver(answers, None);
        result
    }

    /// A LeaveGroup of `members` (member id, instance id): one result per member, or an
    /// error for the whole request (the coordinator). An unknown group answers
    /// UNKNOWN_MEMBER_ID for every member, as Kafka does.
    pub fn leave_group(
        &mut self,
        group_id: &str,
        members: &[(Arc<str>, Option<Arc<str>>)],
        broker: i32,
        now: Time,
    ) -> Result<Vec<Result<(), ErrorCode>>, ErrorCode> {
        self.check_group_coordinator(group_id, broker, now)?;
        if let Some(result) = self.groups.with_consumer(group_id, now, |group, ops| {
            group.classic_leave(members, ops)
        }) {
            return result.map_err(|e| e.code);
        }
        let mut answers = Vec::new();
        let result = self
            .groups
            .with_classic(group_id, now, &mut answers, |group, ops| {
                group.leave(members, ops)
            })
            .unwrap_or_else(|| Ok(vec![Err(ErrorCode::UnknownMemberId); members.len()]));
        self.deliver(answers, None);
        result
    }

    /// Whether an OffsetCommit (v`version`) of `group_id` by this member and generation may
    /// commit (Kafka's `OffsetMetadataManager.validateOffsetCommit`): the coordinator, then
    /// the group. A generation below 0 commits to a group without members, creating a
    /// "simple" group if there is none. An accepted commit keeps the member's session.
    #[allow(clippy::too_many_arguments)]
    pub fn validate_offset_commit(
        &mut self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        version: i16,
        broker: i32,
        now: Time,
    ) -> Result<(), ErrorCode> {
        let partition = self.check_group_coordinator(group_id, broker, now)?;
        if self.groups.group(group_id).is_none() {
            if generation >= 0 {
                return Err(if version >= 9 {
                    ErrorCode::GroupIdNotFound
                } else {
                    ErrorCode::IllegalGeneration
                });
            }
            self.groups.create_classic(group_id, partition)?;
        }
        if let Some(Group::Consumer(group)) = self.groups.group(group_id) {
            return group.validate_offset_commit(member_id, generation, false, version);
        }
        let mut answers = Vec::new();
        let result = self
            .groups
            .with_classic(group_id, now, &mut answers, |group, ops| {
                group.validate_offset_commit(member_id, instance_id, generation, false)?;
                group.commit_keeps_session(member_id, ops);
                Ok(())
            })
            .unwrap_or(Err(ErrorCode::UnknownServerError));
        self.deliver(answers, None);
        result
    }

    /// Whether a TxnOffsetCommit of `group_id` by this member and generation may stage its
    /// offsets (KIP-447; Kafka's `validateTransactionalOffsetCommit`): the coordinator of the
    /// group at `broker`, then the group's member and generation. A generation below 0
    /// creates a simple group if there is none; an unknown group otherwise is
    /// ILLEGAL_GENERATION. For the transaction coordinator's TxnOffsetCommit handler, which
    /// then stages the offsets ([`super::OffsetStore::stage_transactional`]).
    pub fn validate_txn_offset_commit(
        &mut self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        broker: i32,
        now: Time,
    ) -> Result<(), ErrorCode> {
        let partition = self.check_group_coordinator(group_id, broker, now)?;
        if self.groups.group(group_id).is_none() {
            if generation >= 0 {
                return Err(ErrorCode::IllegalGeneration);
            }
            self.groups.create_classic(group_id, partition)?;
        }
        match self.groups.group(group_id) {
            Some(Group::Classic(group)) => {
                group.validate_offset_commit(member_id, instance_id, generation, true)
            }
            Some(Group::Consumer(group)) => {
                group.validate_offset_commit(member_id, generation, true, i16::MAX)
            }
            None => Err(ErrorCode::UnknownServerError),
        }
    }

    /// A ConsumerGroupHeartbeat (v`version`) of `group_id` at `broker` (Kafka's
    /// `GroupMetadataManager.consumerGroupHeartbeat`): the coordinator, the request's
    /// checks, a leave (-1, -2) or a heartbeat of the group, created for a member
    /// joining (an empty classic group is replaced, see "Mixed groups").
    pub fn consumer_group_heartbeat(
        &mut self,
        group_id: &str,
        args: HeartbeatArgs,
        version: i16,
        broker: i32,
        now: Time,
    ) -> Result<HeartbeatOutcome, GroupError> {
        // Kafka routes the request to the group's shard first, then checks it.
        let partition = self.check_group_coordinator(group_id, broker, now)?;
        consumer::validate(group_id, &args, version, &self.groups.config)?;
        let not_consumer = || {
            GroupError::new(
                ErrorCode::GroupIdNotFound,
                format!("Group {group_id} is not a consumer group."),
            )
        };
        if args.member_epoch < 0 {
            return match self.groups.group(group_id) {
                Some(Group::Consumer(_)) => self
                    .groups
                    .with_consumer(group_id, now, |group, ops| {
                        group.leave(
                            &args.member_id,
                            args.instance_id.as_ref(),
                            args.member_epoch,
                            ops,
                        )
                    })
                    .unwrap_or_else(|| Err(not_consumer())),
                Some(Group::Classic(_)) => Err(not_consumer()),
                None => Err(GroupError::new(
                    ErrorCode::GroupIdNotFound,
                    format!("Consumer group {group_id} not found."),
                )),
            };
        }
        match self.groups.group(group_id) {
            None if args.member_epoch != 0 => {
                return Err(GroupError::new(
                    ErrorCode::GroupIdNotFound,
                    format!("Consumer group {group_id} not found."),
                ))
            }
            None => self.groups.create_consumer(group_id, partition)?,
            Some(Group::Classic(classic)) => {
                let empty = matches!(
                    classic.state(),
                    ClassicGroupState::Empty | ClassicGroupState::Dead
                );
                if args.member_epoch != 0 {
                    return Err(not_consumer());
                }
                if empty {
                    // Kafka's `maybeDeleteEmptyClassicGroup`: the offsets stay.
                    self.groups.remove(group_id, partition);
                    self.groups.create_consumer(group_id, partition)?;
                } else {
                    self.upgrade_classic_group(group_id, partition, now)?;
                }
            }
            Some(Group::Consumer(_)) => {}
        }
        let catalog = ClusterTopics {
            topics: &self.topics,
            version: self.topology_version,
        };
        let max_bytes = self.groups.config.max_bytes;
        if self.groups.bytes > max_bytes {
            tracing::warn!(
                group = group_id,
                "group bytes past the cap; answering UNKNOWN_SERVER_ERROR"
            );
            return Err(ErrorCode::UnknownServerError.into());
        }
        self.groups
            .with_consumer(group_id, now, |group, ops| {
                group.heartbeat(args, &catalog, ops)
            })
            .unwrap_or_else(|| Err(not_consumer()))
    }

    /// Kafka's `validateOnlineUpgrade` and `convertToConsumerGroup`: a ConsumerGroupHeartbeat
    /// joins classic group `group_id`, which has members. Under a policy that allows the
    /// upgrade, with members that all use the consumer protocol and no more of them than a
    /// consumer group may have, the group becomes a consumer group with its members, their
    /// assignments and the generation as its epoch (requests waiting in a rebalance are
    /// answered REBALANCE_IN_PROGRESS; offsets stay). Otherwise GROUP_ID_NOT_FOUND.
    fn upgrade_classic_group(
        &mut self,
        group_id: &str,
        partition: i32,
        now: Time,
    ) -> Result<(), GroupError> {
        let config = &self.groups.config;
        let Some(Group::Classic(classic)) = self.groups.group(group_id) else {
            return Err(ErrorCode::UnknownServerError.into());
        };
        let refusal = if !config.migration_policy.upgrade_enabled() {
            Some("the online upgrade is disabled")
        } else if !classic.uses_consumer_protocol() {
            Some("the group does not use the consumer embedded protocol")
        } else if classic.len() > config.consumer_max_size {
            Some("the group size exceeds the consumer group maximum size")
        } else {
            None
        };
        if let Some(reason) = refusal {
            tracing::info!(
                group = group_id,
                reason,
                "cannot upgrade the classic group to a consumer group"
            );
            return Err(GroupError::new(
                ErrorCode::GroupIdNotFound,
                format!("Group {group_id} is not a consumer group."),
            ));
        }
        let catalog = ClusterTopics {
            topics: &self.topics,
            version: self.topology_version,
        };
        let converted = ConsumerGroup::from_classic(classic, &catalog)?;
        tracing::info!(
            group = group_id,
            generation = classic.generation(),
            members = classic.len(),
            "upgrading the classic group to a consumer group"
        );
        let mut answers = Vec::new();
        self.groups
            .with_classic(group_id, now, &mut answers, |group, ops| {
                group.answer_all_waiting(ErrorCode::RebalanceInProgress, ops)
            });
        self.deliver(answers, None);
        self.groups.remove(group_id, partition);
        self.groups.replace(partition, Group::Consumer(converted));
        // Each member's session, with its own session timeout.
        self.groups
            .with_consumer(group_id, now, |group, ops| group.load(ops));
        Ok(())
    }

    /// Whether an OffsetFetch v9+ by this member and epoch may read `group_id`'s offsets
    /// (Kafka's `validateOffsetFetch`; only consumer groups check).
    pub fn validate_offset_fetch(
        &self,
        group_id: &str,
        member_id: Option<&str>,
        member_epoch: i32,
    ) -> Result<(), ErrorCode> {
        match self.groups.group(group_id) {
            Some(Group::Consumer(group)) => group.validate_offset_fetch(member_id, member_epoch),
            _ => Ok(()),
        }
    }

    /// DeleteGroups of one group (Kafka's `GroupCoordinatorShard.deleteGroups`):
    /// GROUP_ID_NOT_FOUND if there is none, NON_EMPTY_GROUP while it has members; otherwise
    /// the group and all its offsets go.
    pub fn delete_group(
        &mut self,
        group_id: &str,
        broker: i32,
        now: Time,
    ) -> Result<(), ErrorCode> {
        let partition = self.check_group_coordinator(group_id, broker, now)?;
        match self.groups.group(group_id) {
            None => return Err(ErrorCode::GroupIdNotFound),
            Some(Group::Classic(group)) => match group.state() {
                ClassicGroupState::Dead => return Err(ErrorCode::GroupIdNotFound),
                ClassicGroupState::Empty => {}
                _ => return Err(ErrorCode::NonEmptyGroup),
            },
            Some(Group::Consumer(group)) if !group.is_empty() => {
                return Err(ErrorCode::NonEmptyGroup)
            }
            Some(Group::Consumer(_)) => {}
        }
        self.groups.remove(group_id, partition);
        self.offsets.delete_group(group_id);
        Ok(())
    }

    /// Whether OffsetDelete may delete `group_id`'s offsets (Kafka's
    /// `validateOffsetDelete`): GROUP_ID_NOT_FOUND without a group, NON_EMPTY_GROUP for a
    /// group with members that does not use the consumer protocol. Then
    /// [`ClusterState::group_subscribed_to`] tells which topics it may not delete.
    pub fn validate_offset_delete(
        &self,
        group_id: &str,
        broker: i32,
        now: Time,
    ) -> Result<(), ErrorCode> {
        self.check_group_coordinator(group_id, broker, now)?;
        match self.groups.group(group_id) {
            None => Err(ErrorCode::GroupIdNotFound),
            Some(Group::Classic(group)) => match group.state() {
                ClassicGroupState::Dead => Err(ErrorCode::GroupIdNotFound),
                ClassicGroupState::Empty => Ok(()),
                _ if group.uses_consumer_protocol() => Ok(()),
                _ => Err(ErrorCode::NonEmptyGroup),
            },
            Some(Group::Consumer(_)) => Ok(()),
        }
    }

    /// Whether group `group_id` subscribes to `topic` (Kafka's `isSubscribedToTopic`).
    pub fn group_subscribed_to(&self, group_id: &str, topic: &str) -> bool {
        match self.groups.group(group_id) {
            Some(Group::Classic(group)) => group.is_subscribed_to(topic),
            Some(Group::Consumer(group)) => group.is_subscribed_to(topic),
            None => false,
        }
    }

    /// The groups `broker` coordinates (ListGroups lists only those; clients ask every
    /// broker), filtered by state names (case-insensitive) and type names when given.
    ///
    /// COORDINATOR_LOAD_IN_PROGRESS while one of its partitions loads, as Kafka answers.
    pub fn coordinated_groups(
        &self,
        broker: i32,
        states: &[String],
        types: &[String],
        now: Time,
    ) -> Result<Vec<&Group>, ErrorCode> {
        let Some(topic) = self.topic(OFFSETS_TOPIC) else {
            return Ok(Vec::new());
        };
        let states: BTreeSet<String> = states.iter().map(|s| s.trim().to_lowercase()).collect();
        let types: BTreeSet<String> = types.iter().map(|s| s.trim().to_lowercase()).collect();
        let mut listed = Vec::new();
        for partition in topic.partitions() {
            if partition.leader() != broker {
                continue;
            }
            if self.is_loading(CoordinatorType::Group, partition.index(), now) {
                return Err(ErrorCode::CoordinatorLoadInProgress);
            }
            for group in self.groups.groups_of_partition(partition.index()) {
                let state_ok =
                    states.is_empty() || states.contains(&group.state_name().to_lowercase());
                let type_ok = types.is_empty() || types.contains(group.type_name());
                if state_ok && type_ok {
                    listed.push(group);
                }
            }
        }
        Ok(listed)
    }

    /// The request waiting as `waiter` for group `group_id` was answered otherwise (its
    /// deadline, a full purgatory): its member no longer waits on it.
    pub fn forget_group_waiter(&mut self, group_id: &str, waiter: WaiterId) {
        if let Some(Group::Classic(group)) = self.groups.groups.get_mut(group_id) {
            group.forget_waiter(waiter);
        }
    }

    /// Hands every answer to its waiting request, except `own`'s, which is returned (the
    /// request being served answers it itself).
    fn deliver(
        &mut self,
        answers: Vec<(WaiterId, GroupAnswer)>,
        own: Option<WaiterId>,
    ) -> Option<GroupAnswer> {
        let mut mine = None;
        for (waiter, answer) in answers {
            if Some(waiter) == own {
                mine = Some(answer);
            } else {
                self.resolve(waiter, Resolution::Group(answer));
            }
        }
        mine
    }

    /// Drives the group timers due at `now`: expired sessions, join and sync phases.
    /// Timers of groups whose coordinator has no live leader are dropped (the group is
    /// loaded again, with new timers, when it has one).
    pub(crate) fn expire_groups(&mut self, now: Time) {
        // Bounded, as `complete_ready` is: what is left stays due, and the next call (at
        // once: `poll_timeout` reports the past deadline) goes on.
        let mut budget = self.groups.timers.len().saturating_mul(2).max(64);
        while budget > 0 {
            budget -= 1;
            let Some(key) = self.groups.timers.pop_due(now) else {
                break;
            };
            let group_id = match &key {
                TimerKey::Heartbeat(group, _)
                | TimerKey::Join(group)
                | TimerKey::Sync(group)
                | TimerKey::ConsumerSession(group, _)
                | TimerKey::ConsumerRebalance(group, _)
                | TimerKey::ConsumerJoin(group, _)
                | TimerKey::ConsumerSync(group, _) => group.clone(),
            };
            if !self.group_is_loaded(&group_id) {
                continue;
            }
            match &key {
                TimerKey::ConsumerSession(_, member) => {
                    self.groups.with_consumer(&group_id, now, |group, ops| {
                        group.expire_session(member, ops)
                    });
                    continue;
                }
                TimerKey::ConsumerRebalance(_, member) => {
                    self.groups.with_consumer(&group_id, now, |group, ops| {
                        group.expire_rebalance(member, ops)
                    });
                    continue;
                }
                TimerKey::ConsumerJoin(_, member) | TimerKey::ConsumerSync(_, member) => {
                    self.groups.with_consumer(&group_id, now, |group, ops| {
                        group.expire_classic(member, ops)
                    });
                    continue;
                }
                _ => {}
            }
            let mut answers = Vec::new();
            self.groups
                .with_classic(&group_id, now, &mut answers, |group, ops| match &key {
                    TimerKey::Heartbeat(_, member) => group.expire_heartbeat(member, ops),
                    TimerKey::Join(_) => group.expire_join(ops),
                    TimerKey::Sync(_) => group.expire_sync(ops),
                    TimerKey::ConsumerSession(..)
                    | TimerKey::ConsumerRebalance(..)
                    | TimerKey::ConsumerJoin(..)
                    | TimerKey::ConsumerSync(..) => {}
                });
            self.deliver(answers, None);
        }
    }

    /// Whether group `id`'s partition of `__consumer_offsets` has a live leader.
    fn group_is_loaded(&self, id: &str) -> bool {
        let partition = self.coordinator_partition(CoordinatorType::Group, id);
        self.partition(OFFSETS_TOPIC, partition)
            .is_some_and(|p| p.leader() >= 0 && self.is_broker_up(p.leader()))
    }

    /// Leadership of these partitions of `__consumer_offsets` changed: their groups are
    /// unloaded (waiting requests answered NOT_COORDINATOR) and reloaded from what was last
    /// written, with new sessions, if the partition has a live leader.
    pub(crate) fn group_partitions_moved(&mut self, partitions: &[i32]) {
        let now = self.time();
        // Sessions start once the new coordinator has loaded the partition (Kafka schedules
        // them in `onLoaded`); meanwhile heartbeats are answered without error.
        let loaded = now + self.config().coordinators.load_delay;
        let mut answers = Vec::new();
        for &partition in partitions {
            let live = self
                .partition(OFFSETS_TOPIC, partition)
                .is_some_and(|p| p.leader() >= 0 && self.is_broker_up(p.leader()));
            let ids: Vec<Arc<str>> = self
                .groups
                .by_partition
                .get(&partition)
                .map(|ids| ids.iter().cloned().collect())
                .unwrap_or_default();
            for id in ids {
                self.groups
                    .with_classic(&id, now, &mut answers, |group, ops| group.unload(ops));
                self.groups
                    .with_consumer(&id, now, |group, ops| group.unload(ops));
                if live {
                    self.groups
                        .with_classic(&id, loaded, &mut answers, |group, ops| group.load(ops));
                    self.groups
                        .with_consumer(&id, loaded, |group, ops| group.load(ops));
                }
            }
        }
        self.deliver(answers, None);
    }
}

/// The cluster's topics, for a consumer group's subscriptions.
struct ClusterTopics<'a> {
    topics: &'a BTreeMap<String, super::topic::Topic>,
    version: u64,
}

impl consumer::TopicCatalog for ClusterTopics<'_> {
    fn version(&self) -> u64 {
        self.version
    }

    fn topic(&self, name: &str) -> Option<assignors::TopicInfo> {
        self.topics.get(name).map(|t| assignors::TopicInfo {
            id: t.id(),
            partitions: i32::try_from(t.partitions().len()).unwrap_or(i32::MAX),
        })
    }

    fn matching(&self, regex: &regex::Regex) -> Vec<(Arc<str>, assignors::TopicInfo)> {
        self.topics
            .values()
            .filter(|t| !t.is_internal() && regex.is_match(t.name()))
            .map(|t| {
                (
                    Arc::from(t.name()),
                    assignors::TopicInfo {
                        id: t.id(),
                        partitions: i32::try_from(t.partitions().len()).unwrap_or(i32::MAX),
                    },
                )
            })
            .collect()
    }
}

/// splitmix64's finalizer.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod consumer_tests;
#[cfg(test)]
mod tests;
