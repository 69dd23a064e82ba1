//! A classic group (the JoinGroup/SyncGroup protocol): Kafka's `ClassicGroup` and the
//! classic half of `GroupMetadataManager`, as one state machine.
//!
//! States and their transitions, as `ClassicGroupState` allows them:
//!
//! ```text
//!            +--------------------------------------------+
//!            v                                            |
//!   Empty --join--> PreparingRebalance --all joined--> CompletingRebalance --leader sync--> Stable
//!     ^               ^    |  (or rebalance timeout)          |                              |
//!     |               |    +--no member left--> Empty         +--join/leave/expiry-----------+--> PreparingRebalance
//!     +-- (a group loaded with no members)
//! ```
//!
//! Every transition is one of Kafka's, with its answers: a waiting JoinGroup or SyncGroup is
//! answered by pushing `(waiter, answer)` to [`Ops::answers`] (Kafka completes the request's
//! future), and time-driven steps are deadlines in [`Ops::timers`] (Kafka's coordinator
//! timer): a member's session (`Heartbeat`), the join phase (`Join`: the rebalance timeout,
//! or the initial rebalance delay of a new group), and the sync phase (`Sync`: members that
//! joined but never synced are removed after the rebalance timeout, KAFKA-13258).
//!
//! Where Kafka iterates a `HashMap` (the next leader when the leader leaves, the order of
//! members), members are ordered by id here, so runs repeat; where Kafka's protocol vote ties
//! (`selectProtocol`), the smallest protocol name wins.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use franzy::proto::ErrorCode;

use super::{GroupAnswer, JoinOutcome, JoinedMember, Ops, SyncOutcome, TimerKey};
use crate::cluster::WaiterId;

/// Kafka's `JoinGroupRequest.UNKNOWN_MEMBER_ID`.
pub const UNKNOWN_MEMBER_ID: &str = "";
/// The consumer protocol's type (`ConsumerProtocol.PROTOCOL_TYPE`).
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// Kafka's `ClassicGroupState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClassicGroupState {
    /// No members (offsets may remain).
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Waiting for the leader's assignment.
    CompletingRebalance,
    /// Members have their assignment.
    Stable,
    /// Gone (deleted or unloaded).
    Dead,
}

impl ClassicGroupState {
    /// Kafka's name for the state, as DescribeGroups and ListGroups report it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::PreparingRebalance => "PreparingRebalance",
            Self::CompletingRebalance => "CompletingRebalance",
            Self::Stable => "Stable",
            Self::Dead => "Dead",
        }
    }

    /// The states a group may come from into this one (`validPreviousStates`).
    fn valid_previous(self) -> &'static [ClassicGroupState] {
        use ClassicGroupState::*;
        match self {
            Empty => &[PreparingRebalance],
            PreparingRebalance => &[Stable, CompletingRebalance, Empty],
            CompletingRebalance => &[PreparingRebalance],
            Stable => &[CompletingRebalance],
            Dead => &[Stable, PreparingRebalance, CompletingRebalance, Empty, Dead],
        }
    }
}

/// One protocol a member supports, with its metadata (a subscription, for consumers).
pub type Protocol = (Arc<str>, Bytes);

/// A member of a classic group (`ClassicGroupMember`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassicMember {
    /// Its id.
    pub id: Arc<str>,
    /// Its `group.instance.id`, for static members (KIP-345).
    pub instance_id: Option<Arc<str>>,
    /// The client id of its JoinGroup.
    pub client_id: Arc<str>,
    /// Where its JoinGroup came from.
    pub client_host: Arc<str>,
    /// Its rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// Its session timeout.
    pub session_timeout_ms: i32,
    /// Its protocol type.
    pub protocol_type: Arc<str>,
    /// The protocols it supports, in its order of preference.
    pub protocols: Vec<Protocol>,
    /// Its current assignment.
    pub assignment: Bytes,
    /// The request waiting for its JoinGroup answer (Kafka's `awaitingJoinFuture`).
    awaiting_join: Option<WaiterId>,
    /// The request waiting for its SyncGroup answer.
    awaiting_sync: Option<WaiterId>,
    /// Joined in the current rebalance and not yet through it.
    is_new: bool,
}

impl ClassicMember {
    /// A new member, not waiting on anything.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: Arc<str>,
        instance_id: Option<Arc<str>>,
        client_id: Arc<str>,
        client_host: Arc<str>,
        rebalance_timeout_ms: i32,
        session_timeout_ms: i32,
        protocol_type: Arc<str>,
        protocols: Vec<Protocol>,
    ) -> Self {
        Self {
            id,
            instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            protocol_type,
            protocols,
            assignment: Bytes::new(),
            awaiting_join: None,
            awaiting_sync: None,
            is_new: false,
        }
    }

    /// Whether a JoinGroup of it waits for the join phase to end.
    pub fn is_awaiting_join(&self) -> bool {
        self.awaiting_join.is_some()
    }

    /// Whether a SyncGroup of it waits for the leader's assignment.
    pub fn is_awaiting_sync(&self) -> bool {
        self.awaiting_sync.is_some()
    }

    /// Its metadata for `protocol`, if it supports it.
    pub fn metadata(&self, protocol: &str) -> Option<&Bytes> {
        self.protocols
            .iter()
            .find(|(name, _)| &**name == protocol)
            .map(|(_, metadata)| metadata)
    }

    /// Bytes of its metadata and assignment, counted against the group caps.
    pub fn bytes(&self) -> usize {
        self.protocols
            .iter()
            .map(|(name, metadata)| name.len() + metadata.len())
            .sum::<usize>()
            .saturating_add(self.assignment.len())
    }

    /// Kafka's `hasSatisfiedHeartbeat`: a member waiting in a rebalance needs no
    /// heartbeat, unless it is new (new members may time out while waiting to join).
    fn has_satisfied_heartbeat(&self) -> bool {
        !self.is_new && (self.is_awaiting_join() || self.is_awaiting_sync())
    }

    /// The protocol it votes for among `candidates`: its most preferred one.
    fn vote<'a>(&'a self, candidates: &BTreeSet<&str>) -> Option<&'a Arc<str>> {
        self.protocols
            .iter()
            .map(|(name, _)| name)
            .find(|name| candidates.contains(&***name))
    }
}

/// What a JoinGroup asks of the coordinator, decoded and checked by the handler.
#[derive(Debug, Clone)]
pub struct JoinArgs {
    /// The member id it joins with ("" for a new member).
    pub member_id: Arc<str>,
    /// Its `group.instance.id`.
    pub instance_id: Option<Arc<str>>,
    /// The client id from the request header.
    pub client_id: Arc<str>,
    /// Where the request came from.
    pub client_host: Arc<str>,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Rebalance timeout (the session timeout for v0).
    pub rebalance_timeout_ms: i32,
    /// Protocol type.
    pub protocol_type: Arc<str>,
    /// Protocols, in preference order, names unique.
    pub protocols: Vec<Protocol>,
    /// v4+: a new dynamic member must first learn its id (KIP-394).
    pub require_known_member_id: bool,
    /// v9+: a static leader rejoining a stable group may skip the assignment (KIP-814).
    pub supports_skip_assignment: bool,
}

/// What a SyncGroup asks of the coordinator.
#[derive(Debug, Clone)]
pub struct SyncArgs<'a> {
    /// The member.
    pub member_id: &'a str,
    /// Its `group.instance.id` (v3+).
    pub instance_id: Option<&'a str>,
    /// The generation it synced for.
    pub generation: i32,
    /// The protocol type it names (v5+), checked against the group's.
    pub protocol_type: Option<&'a str>,
    /// The protocol name it names (v5+), checked against the group's.
    pub protocol_name: Option<&'a str>,
    /// The leader's assignment, by member (ignored from the others).
    pub assignments: Vec<(Arc<str>, Bytes)>,
}

/// What the join phase timer does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JoinTimer {
    /// A new group's initial rebalance: extend while members keep arriving.
    Initial { delay_ms: u64, remaining_ms: u64 },
    /// Complete the join phase.
    Complete,
}

/// What Kafka writes to `__consumer_offsets` for a group (`GroupMetadataValue`), and what a
/// new coordinator loads after a move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRecord {
    generation: i32,
    protocol_type: Option<Arc<str>>,
    protocol_name: Option<Arc<str>>,
    leader: Option<Arc<str>>,
    /// The members, with only the selected protocol's metadata (Kafka stores only the
    /// subscription) and their assignment.
    members: Vec<ClassicMember>,
}

/// A classic group.
#[derive(Debug)]
pub struct ClassicGroup {
    id: Arc<str>,
    state: ClassicGroupState,
    previous_state: ClassicGroupState,
    protocol_type: Option<Arc<str>>,
    protocol_name: Option<Arc<str>>,
    generation: i32,
    leader: Option<Arc<str>>,
    members: BTreeMap<Arc<str>, ClassicMember>,
    /// Member id of each static member, by instance id.
    static_members: HashMap<Arc<str>, Arc<str>>,
    /// Members told MEMBER_ID_REQUIRED that have not joined with their id yet.
    pending_join: BTreeSet<Arc<str>>,
    awaiting_join_count: usize,
    /// How many members support each protocol.
    supported_protocols: HashMap<Arc<str>, usize>,
    /// Members that joined this generation but have not synced.
    pending_sync: BTreeSet<Arc<str>>,
    new_member_added: bool,
    join_timer: Option<JoinTimer>,
    /// The generation the sync timer was set for.
    sync_timer_generation: i32,
    subscribed_topics: Option<BTreeSet<Arc<str>>>,
    /// What was last "written to the log".
    record: Option<GroupRecord>,
    /// Bytes of the members' metadata and assignments.
    bytes: usize,
}

impl ClassicGroup {
    /// A new, empty group (Kafka writes its empty record at once).
    pub fn new(id: Arc<str>) -> Self {
        let mut group = Self {
            id,
            state: ClassicGroupState::Empty,
            previous_state: ClassicGroupState::Dead,
            protocol_type: None,
            protocol_name: None,
            generation: 0,
            leader: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending_join: BTreeSet::new(),
            awaiting_join_count: 0,
            supported_protocols: HashMap::new(),
            pending_sync: BTreeSet::new(),
            new_member_added: false,
            join_timer: None,
            sync_timer_generation: 0,
            subscribed_topics: None,
            record: None,
            bytes: 0,
        };
        group.write_record();
        group
    }

    /// The group id.
    pub fn id(&self) -> &Arc<str> {
        &self.id
    }

    /// The state.
    pub fn state(&self) -> ClassicGroupState {
        self.state
    }

    /// The generation.
    pub fn generation(&self) -> i32 {
        self.generation
    }

    /// The protocol type, once a member joined.
    pub fn protocol_type(&self) -> Option<&Arc<str>> {
        self.protocol_type.as_ref()
    }

    /// The protocol selected for this generation.
    pub fn protocol_name(&self) -> Option<&Arc<str>> {
        self.protocol_name.as_ref()
    }

    /// The leader's member id.
    pub fn leader(&self) -> Option<&Arc<str>> {
        self.leader.as_ref()
    }

    /// The members, by id.
    pub fn members(&self) -> impl Iterator<Item = &ClassicMember> {
        self.members.values()
    }

    /// Member `id`.
    pub fn member(&self, id: &str) -> Option<&ClassicMember> {
        self.members.get(id)
    }

    /// How many members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether it has no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Members told MEMBER_ID_REQUIRED that have not joined yet.
    pub fn pending_members(&self) -> usize {
        self.pending_join.len()
    }

    /// Bytes of its members' metadata and assignments.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// A "simple" group: only offsets, never a member (Kafka's `isSimpleGroup`).
    pub fn is_simple(&self) -> bool {
        self.protocol_type.is_none() && self.members.is_empty() && self.pending_join.is_empty()
    }

    /// The topics its consumers subscribe to, when known (consumer protocol only).
    pub fn subscribed_topics(&self) -> Option<&BTreeSet<Arc<str>>> {
        self.subscribed_topics.as_ref()
    }

    /// Whether the group uses the consumer protocol (`usesConsumerGroupProtocol`).
    pub fn uses_consumer_protocol(&self) -> bool {
        self.protocol_type.as_deref() == Some(CONSUMER_PROTOCOL_TYPE)
    }

    /// Kafka's `isSubscribedToTopic`: from the members' subscriptions when they could be
    /// read; otherwise a consumer group is taken to subscribe to everything.
    pub fn is_subscribed_to(&self, topic: &str) -> bool {
        match &self.subscribed_topics {
            Some(topics) => topics.contains(topic),
            None => self.uses_consumer_protocol(),
        }
    }

    /// Whether `member` is the leader.
    pub fn is_leader(&self, member: &str) -> bool {
        self.leader.as_deref() == Some(member)
    }

    /// The members waiting for a JoinGroup or SyncGroup answer: (member, waiter).
    pub fn waiters(&self) -> impl Iterator<Item = WaiterId> + '_ {
        self.members
            .values()
            .flat_map(|m| m.awaiting_join.into_iter().chain(m.awaiting_sync))
    }

    /// The largest rebalance timeout of its members (`rebalanceTimeoutMs`).
    pub fn rebalance_timeout_ms(&self) -> i32 {
        self.members
            .values()
            .map(|m| m.rebalance_timeout_ms)
            .max()
            .unwrap_or(0)
    }

    // ---- Requests --------------------------------------------------------------------

    /// Kafka's `classicGroupJoinToClassicGroup` after the group was found or created: the
    /// answer, now or when the join phase ends, goes to `waiter`.
    pub fn join(&mut self, args: JoinArgs, waiter: WaiterId, ops: &mut Ops<'_>) {
        let is_unknown = &*args.member_id == UNKNOWN_MEMBER_ID;
        if !self.accepts_joining_member(&args.member_id, ops.config.max_size) {
            self.remove(&args.member_id, ops);
            ops.answer_join(
                waiter,
                join_error(UNKNOWN_MEMBER_ID, ErrorCode::GroupMaxSizeReached),
            );
        } else if is_unknown {
            self.join_new_member(args, waiter, ops);
        } else {
            self.join_existing_member(args, waiter, ops);
        }
    }

    /// Kafka's `classicGroupSyncToClassicGroup` (the group has members): the answer, now or
    /// when the leader's assignment comes, goes to `waiter`.
    pub fn sync(&mut self, args: SyncArgs<'_>, waiter: WaiterId, ops: &mut Ops<'_>) {
        let member_id = args.member_id;
        if let Err(code) = self.validate_sync(&args) {
            ops.answer_sync(waiter, sync_error(code));
            return;
        }
        match self.state {
            ClassicGroupState::PreparingRebalance => {
                ops.answer_sync(waiter, sync_error(ErrorCode::RebalanceInProgress));
            }
            ClassicGroupState::CompletingRebalance => {
                if let Some(member) = self.members.get_mut(member_id) {
                    member.awaiting_sync = Some(waiter);
                }
                self.remove_pending_sync_member(member_id, ops);
                if self.is_leader(member_id) {
                    let mut given: HashMap<Arc<str>, Bytes> =
                        args.assignments.into_iter().collect();
                    let assignment: Vec<(Arc<str>, Bytes)> = self
                        .members
                        .keys()
                        .map(|id| (id.clone(), given.remove(id).unwrap_or_default()))
                        .collect();
                    // Kafka writes the record, then propagates once it is committed.
                    self.set_and_propagate_assignment(assignment, ops);
                    self.transition(ClassicGroupState::Stable);
                    self.write_record();
                }
            }
            ClassicGroupState::Stable => {
                self.remove_pending_sync_member(member_id, ops);
                let assignment = self
                    .members
                    .get(member_id)
                    .map(|m| m.assignment.clone())
                    .unwrap_or_default();
                ops.answer_sync(
                    waiter,
                    SyncOutcome {
                        error_code: 0,
                        protocol_type: self.protocol_type.clone(),
                        protocol_name: self.protocol_name.clone(),
                        assignment,
                    },
                );
            }
            // Checked by `validate_sync`; an empty group is answered before.
            ClassicGroupState::Empty | ClassicGroupState::Dead => {
                ops.answer_sync(waiter, sync_error(ErrorCode::UnknownMemberId));
            }
        }
    }

    /// Kafka's `classicGroupHeartbeatToClassicGroup`.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        ops: &mut Ops<'_>,
    ) -> Result<(), ErrorCode> {
        if self.state == ClassicGroupState::Dead {
            return Err(ErrorCode::CoordinatorNotAvailable);
        }
        self.validate_member(member_id, instance_id)?;
        if generation != self.generation {
            return Err(ErrorCode::IllegalGeneration);
        }
        match self.state {
            ClassicGroupState::Empty | ClassicGroupState::Dead => Err(ErrorCode::UnknownMemberId),
            ClassicGroupState::PreparingRebalance => {
                self.reschedule_heartbeat(member_id, None, ops);
                Err(ErrorCode::RebalanceInProgress)
            }
            ClassicGroupState::CompletingRebalance | ClassicGroupState::Stable => {
                self.reschedule_heartbeat(member_id, None, ops);
                Ok(())
            }
        }
    }

    /// Kafka's `classicGroupLeaveToClassicGroup`: one result per member identity
    /// (member id, instance id), in order.
    pub fn leave(
        &mut self,
        members: &[(Arc<str>, Option<Arc<str>>)],
        ops: &mut Ops<'_>,
    ) -> Result<Vec<Result<(), ErrorCode>>, ErrorCode> {
        if self.state == ClassicGroupState::Dead {
            return Err(ErrorCode::CoordinatorNotAvailable);
        }
        let mut results = Vec::with_capacity(members.len());
        for (member_id, instance_id) in members {
            let result = if &**member_id == UNKNOWN_MEMBER_ID {
                match instance_id
                    .as_ref()
                    .and_then(|i| self.static_members.get(i))
                {
                    Some(current) => {
                        let current = current.clone();
                        self.remove_current_member(&current, ops);
                        Ok(())
                    }
                    None => Err(ErrorCode::UnknownMemberId),
                }
            } else if self.pending_join.contains(member_id) {
                self.remove(member_id, ops);
                ops.timers
                    .cancel(&TimerKey::Heartbeat(self.id.clone(), member_id.clone()));
                Ok(())
            } else {
                self.validate_member(member_id, instance_id.as_deref())
                    .map(|()| self.remove_current_member(member_id, ops))
            };
            results.push(result);
        }
        if results.iter().any(Result::is_ok) {
            match self.state {
                ClassicGroupState::Stable | ClassicGroupState::CompletingRebalance => {
                    self.maybe_prepare_rebalance_or_complete_join(ops);
                }
                ClassicGroupState::PreparingRebalance => self.maybe_complete_join_phase(ops),
                _ => {}
            }
        }
        Ok(results)
    }

    /// Kafka's `ClassicGroup.validateOffsetCommit`, for OffsetCommit (`transactional`
    /// false) and TxnOffsetCommit (KIP-447).
    pub fn validate_offset_commit(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        transactional: bool,
    ) -> Result<(), ErrorCode> {
        if self.state == ClassicGroupState::Dead {
            return Err(ErrorCode::CoordinatorNotAvailable);
        }
        if generation < 0 && self.state == ClassicGroupState::Empty {
            // The admin client, or a consumer not using group management.
            return Ok(());
        }
        if generation >= 0 || !member_id.is_empty() || instance_id.is_some() {
            self.validate_member(member_id, instance_id)?;
            if generation != self.generation {
                return Err(ErrorCode::IllegalGeneration);
            }
        } else if !transactional && self.state != ClassicGroupState::Empty {
            return Err(ErrorCode::UnknownMemberId);
        }
        if !transactional && self.state == ClassicGroupState::CompletingRebalance {
            return Err(ErrorCode::RebalanceInProgress);
        }
        Ok(())
    }

    /// An OffsetCommit keeps a member's session in Stable and PreparingRebalance (Kafka's
    /// `commitOffset`).
    pub fn commit_keeps_session(&mut self, member_id: &str, ops: &mut Ops<'_>) {
        if matches!(
            self.state,
            ClassicGroupState::Stable | ClassicGroupState::PreparingRebalance
        ) && self.members.contains_key(member_id)
        {
            self.reschedule_heartbeat(member_id, None, ops);
        }
    }

    // ---- Timers ----------------------------------------------------------------------

    /// Member `member_id`'s session (or pending membership) ran out
    /// (`expireClassicGroupMemberHeartbeat`).
    pub fn expire_heartbeat(&mut self, member_id: &Arc<str>, ops: &mut Ops<'_>) {
        if self.state == ClassicGroupState::Dead {
            return;
        }
        if self.pending_join.contains(member_id) {
            self.remove(member_id, ops);
            if self.state == ClassicGroupState::PreparingRebalance && self.has_all_members_joined()
            {
                self.complete_join(ops);
            }
            return;
        }
        let Some(member) = self.members.get(member_id) else {
            return;
        };
        if !member.has_satisfied_heartbeat() {
            tracing::debug!(group = %self.id, member = %member_id, "session expired; removing member");
            self.remove_member_and_update(member_id, ops);
        }
    }

    /// The join phase's timer fired.
    pub fn expire_join(&mut self, ops: &mut Ops<'_>) {
        match self.join_timer.take() {
            Some(JoinTimer::Initial {
                delay_ms,
                remaining_ms,
            }) => self.try_complete_initial_rebalance(delay_ms, remaining_ms, ops),
            Some(JoinTimer::Complete) => self.complete_join(ops),
            None => {}
        }
    }

    /// The sync phase's timer fired: members that joined but never synced are removed
    /// (`expirePendingSync`).
    pub fn expire_sync(&mut self, ops: &mut Ops<'_>) {
        if self.sync_timer_generation != self.generation {
            return;
        }
        if !matches!(
            self.state,
            ClassicGroupState::CompletingRebalance | ClassicGroupState::Stable
        ) || self.pending_sync.is_empty()
        {
            return;
        }
        let pending: Vec<Arc<str>> = std::mem::take(&mut self.pending_sync).into_iter().collect();
        for member_id in &pending {
            self.remove(member_id, ops);
            ops.timers
                .cancel(&TimerKey::Heartbeat(self.id.clone(), member_id.clone()));
        }
        tracing::debug!(group = %self.id, removed = pending.len(), "members that never synced removed");
        self.prepare_rebalance(ops);
    }

    // ---- Conversion -------------------------------------------------------------------

    /// Kafka's `ClassicGroup.fromConsumerGroup`: the classic group a consumer group whose
    /// members all speak the classic protocol becomes, Stable at `generation` (the group
    /// epoch) with those members and their assignments (the first added leads); written to
    /// the log as Kafka writes it. [`Self::start_after_downgrade`] then starts it.
    pub fn from_consumer(id: Arc<str>, generation: i32, members: Vec<ClassicMember>) -> Self {
        let mut group = Self::new(id);
        group.generation = generation;
        group.protocol_type = Some(Arc::from(CONSUMER_PROTOCOL_TYPE));
        group.previous_state = ClassicGroupState::Empty;
        group.state = ClassicGroupState::Stable;
        for member in members {
            group.add(member, None);
        }
        group.protocol_name = group.select_protocol();
        group.subscribed_topics = group.compute_subscribed_topics();
        group.write_record();
        group
    }

    /// After [`Self::from_consumer`] (Kafka's `convertToClassicGroup`): every member's
    /// session starts, and the group rebalances when a member left (`rebalance`), not when
    /// a static member was replaced.
    pub fn start_after_downgrade(&mut self, rebalance: bool, ops: &mut Ops<'_>) {
        let ids: Vec<Arc<str>> = self.members.keys().cloned().collect();
        for id in &ids {
            self.reschedule_heartbeat(id, None, ops);
        }
        if rebalance {
            self.prepare_rebalance(ops);
        }
    }

    /// Kafka's `completeAllJoinFutures` and `completeAllSyncFutures` with `error` (the
    /// group is about to become a consumer group), and its timers stop.
    pub fn answer_all_waiting(&mut self, error: ErrorCode, ops: &mut Ops<'_>) {
        for member in self.members.values_mut() {
            if let Some(waiter) = member.awaiting_join.take() {
                ops.answer_join(waiter, join_error(&member.id, error));
            }
            if let Some(waiter) = member.awaiting_sync.take() {
                ops.answer_sync(waiter, sync_error(error));
            }
        }
        self.awaiting_join_count = 0;
        self.cancel_timers(ops);
    }

    // ---- Coordinator moves -----------------------------------------------------------

    /// The coordinator let go of the group (`onUnloaded`): requests waiting in a join
    /// phase, or for an assignment, are answered NOT_COORDINATOR, and its timers stop. The
    /// group becomes what was last written, as the next coordinator will load it.
    pub fn unload(&mut self, ops: &mut Ops<'_>) {
        let previous = self.state;
        for member in self.members.values_mut() {
            if previous == ClassicGroupState::PreparingRebalance {
                if let Some(waiter) = member.awaiting_join.take() {
                    ops.answers.push((
                        waiter,
                        GroupAnswer::Join(join_error(&member.id, ErrorCode::NotCoordinator)),
                    ));
                }
            }
            if matches!(
                previous,
                ClassicGroupState::CompletingRebalance | ClassicGroupState::Stable
            ) {
                if let Some(waiter) = member.awaiting_sync.take() {
                    ops.answers.push((
                        waiter,
                        GroupAnswer::Sync(sync_error(ErrorCode::NotCoordinator)),
                    ));
                }
            }
        }
        self.cancel_timers(ops);
        let record = self.record.clone();
        *self = Self::from_record(self.id.clone(), record);
    }

    /// The group's new coordinator loaded it (`onLoaded`): every member's session starts
    /// now, and a group over the size cap rebalances.
    pub fn load(&mut self, ops: &mut Ops<'_>) {
        let ids: Vec<Arc<str>> = self.members.keys().cloned().collect();
        for id in &ids {
            self.reschedule_heartbeat(id, None, ops);
        }
        if self.members.len() > ops.config.max_size {
            self.prepare_rebalance(ops);
        }
    }

    /// Stops every timer of the group (it is deleted or unloaded).
    pub fn cancel_timers(&self, ops: &mut Ops<'_>) {
        for id in self.members.keys().chain(&self.pending_join) {
            ops.timers
                .cancel(&TimerKey::Heartbeat(self.id.clone(), id.clone()));
        }
        ops.timers.cancel(&TimerKey::Join(self.id.clone()));
        ops.timers.cancel(&TimerKey::Sync(self.id.clone()));
    }

    /// A group as a coordinator loads it from its record: Stable with its members, or
    /// Empty.
    fn from_record(id: Arc<str>, record: Option<GroupRecord>) -> Self {
        let mut group = Self::new(id);
        let Some(record) = record else {
            return group;
        };
        group.generation = record.generation;
        group.protocol_type = record.protocol_type.clone();
        group.protocol_name = record.protocol_name.clone();
        group.leader = record.leader.clone();
        group.state = if record.members.is_empty() {
            ClassicGroupState::Empty
        } else {
            ClassicGroupState::Stable
        };
        for member in &record.members {
            if let Some(instance) = &member.instance_id {
                group
                    .static_members
                    .insert(instance.clone(), member.id.clone());
            }
            group.bytes = group.bytes.saturating_add(member.bytes());
            for (name, _) in &member.protocols {
                *group.supported_protocols.entry(name.clone()).or_default() += 1;
            }
            group.members.insert(member.id.clone(), member.clone());
        }
        group.subscribed_topics = group.compute_subscribed_topics();
        group.record = Some(record);
        group
    }

    /// Remembers the group as Kafka's record would hold it (the members with the selected
    /// protocol's metadata and their assignment).
    fn write_record(&mut self) {
        let protocol = self.protocol_name.clone();
        let members = self
            .members
            .values()
            .map(|m| {
                let protocols = protocol
                    .as_ref()
                    .and_then(|p| m.metadata(p).map(|meta| vec![(p.clone(), meta.clone())]))
                    .unwrap_or_default();
                ClassicMember {
                    protocols,
                    awaiting_join: None,
                    awaiting_sync: None,
                    is_new: false,
                    ..m.clone()
                }
            })
            .collect();
        self.record = Some(GroupRecord {
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone(),
            members,
        });
    }

    // ---- Kafka's GroupMetadataManager, classic part --------------------------------

    fn join_new_member(&mut self, args: JoinArgs, waiter: WaiterId, ops: &mut Ops<'_>) {
        if self.state == ClassicGroupState::Dead {
            ops.answer_join(
                waiter,
                join_error(UNKNOWN_MEMBER_ID, ErrorCode::CoordinatorNotAvailable),
            );
            return;
        }
        if !self.supports_protocols(&args.protocol_type, &args.protocols) {
            ops.answer_join(
                waiter,
                join_error(UNKNOWN_MEMBER_ID, ErrorCode::InconsistentGroupProtocol),
            );
            return;
        }
        let prefix = args.instance_id.as_deref().unwrap_or(&args.client_id);
        let new_id = ops.ids.next(prefix);
        if let Some(instance) = args.instance_id.clone() {
            match self.static_members.get(&instance).cloned() {
                Some(old_id) => {
                    tracing::debug!(group = %self.id, %instance, old = %old_id, new = %new_id, "static member replaced");
                    self.update_static_member(args, old_id, new_id, waiter, ops);
                }
                None => self.add_member(args, new_id, waiter, ops),
            }
        } else if args.require_known_member_id {
            if self.pending_join.len() >= ops.config.max_size {
                ops.answer_join(
                    waiter,
                    join_error(UNKNOWN_MEMBER_ID, ErrorCode::GroupMaxSizeReached),
                );
                return;
            }
            self.pending_join.insert(new_id.clone());
            let session = ms(args.session_timeout_ms);
            ops.timers.schedule(
                TimerKey::Heartbeat(self.id.clone(), new_id.clone()),
                ops.now + session,
            );
            ops.answer_join(waiter, join_error(&new_id, ErrorCode::MemberIdRequired));
        } else {
            self.add_member(args, new_id, waiter, ops);
        }
    }

    fn join_existing_member(&mut self, args: JoinArgs, waiter: WaiterId, ops: &mut Ops<'_>) {
        let member_id = args.member_id.clone();
        if self.state == ClassicGroupState::Dead {
            ops.answer_join(
                waiter,
                join_error(&member_id, ErrorCode::CoordinatorNotAvailable),
            );
            return;
        }
        if !self.supports_protocols(&args.protocol_type, &args.protocols) {
            ops.answer_join(
                waiter,
                join_error(&member_id, ErrorCode::InconsistentGroupProtocol),
            );
            return;
        }
        if self.pending_join.contains(&member_id) {
            if args.instance_id.is_some() {
                // Kafka throws IllegalStateException: a pending member is never static.
                ops.answer_join(
                    waiter,
                    join_error(&member_id, ErrorCode::UnknownServerError),
                );
                return;
            }
            self.add_member(args, member_id, waiter, ops);
            return;
        }
        if let Err(code) = self.validate_member(&member_id, args.instance_id.as_deref()) {
            ops.answer_join(waiter, join_error(&member_id, code));
            return;
        }
        let matches = self
            .members
            .get(&member_id)
            .is_some_and(|m| m.protocols == args.protocols);
        match self.state {
            ClassicGroupState::PreparingRebalance => {
                self.update_member_then_rebalance(&member_id, args, waiter, ops);
            }
            ClassicGroupState::CompletingRebalance if matches => {
                // It may have missed the JoinGroup answer: give it again.
                let members = if self.is_leader(&member_id) {
                    self.current_members()
                } else {
                    Vec::new()
                };
                let answer = self.join_answer(&member_id, members, false);
                ops.answer_join(waiter, answer);
            }
            ClassicGroupState::CompletingRebalance => {
                self.update_member_then_rebalance(&member_id, args, waiter, ops);
            }
            ClassicGroupState::Stable if self.is_leader(&member_id) || !matches => {
                // A leader's JoinGroup forces a rebalance (e.g. the topics changed).
                self.update_member_then_rebalance(&member_id, args, waiter, ops);
            }
            ClassicGroupState::Stable => {
                let answer = self.join_answer(&member_id, Vec::new(), false);
                ops.answer_join(waiter, answer);
            }
            ClassicGroupState::Empty | ClassicGroupState::Dead => {
                ops.answer_join(waiter, join_error(&member_id, ErrorCode::UnknownMemberId));
            }
        }
    }

    fn update_member_then_rebalance(
        &mut self,
        member_id: &Arc<str>,
        args: JoinArgs,
        waiter: WaiterId,
        ops: &mut Ops<'_>,
    ) {
        self.update_member(
            member_id,
            args.protocols,
            args.rebalance_timeout_ms,
            args.session_timeout_ms,
            Some(waiter),
        );
        self.maybe_prepare_rebalance_or_complete_join(ops);
    }

    fn add_member(
        &mut self,
        args: JoinArgs,
        member_id: Arc<str>,
        waiter: WaiterId,
        ops: &mut Ops<'_>,
    ) {
        let mut member = ClassicMember::new(
            member_id.clone(),
            args.instance_id,
            args.client_id,
            args.client_host,
            args.rebalance_timeout_ms,
            args.session_timeout_ms,
            args.protocol_type,
            args.protocols,
        );
        member.is_new = true;
        if self.state == ClassicGroupState::PreparingRebalance
            && self.previous_state == ClassicGroupState::Empty
        {
            self.new_member_added = true;
        }
        self.add(member, Some(waiter));
        // A new member cannot heartbeat (it has no id yet) and its parked JoinGroup hides a
        // disconnect: it times out after the new-member join timeout instead.
        self.reschedule_heartbeat(&member_id, Some(ops.config.new_member_join_timeout), ops);
        self.maybe_prepare_rebalance_or_complete_join(ops);
    }

    fn update_static_member(
        &mut self,
        args: JoinArgs,
        old_id: Arc<str>,
        new_id: Arc<str>,
        waiter: WaiterId,
        ops: &mut Ops<'_>,
    ) {
        let current_leader = self.leader.clone();
        self.replace_static_member(&old_id, &new_id, ops);
        self.reschedule_heartbeat(&new_id, None, ops);
        let supports_skip = args.supports_skip_assignment;
        self.update_member(
            &new_id,
            args.protocols,
            args.rebalance_timeout_ms,
            args.session_timeout_ms,
            Some(waiter),
        );
        match self.state {
            ClassicGroupState::Stable => {
                if self.select_protocol().as_ref() == self.protocol_name.as_ref() {
                    // Same protocol: no rebalance; the new id is persisted and it gets the
                    // current generation.
                    self.write_record();
                    let answer = if supports_skip {
                        let is_leader = self.is_leader(&new_id);
                        let members = if is_leader {
                            self.current_members()
                        } else {
                            Vec::new()
                        };
                        self.join_answer(&new_id, members, is_leader)
                    } else {
                        JoinOutcome {
                            leader: current_leader.unwrap_or_else(|| Arc::from("")),
                            ..self.join_answer(&new_id, Vec::new(), false)
                        }
                    };
                    self.complete_join_of(&new_id, answer, ops);
                } else {
                    self.maybe_prepare_rebalance_or_complete_join(ops);
                }
            }
            ClassicGroupState::CompletingRebalance => {
                // The old id may be in the assignment the leader is computing: rebalance.
                self.prepare_rebalance(ops);
            }
            _ => self.maybe_complete_join_phase(ops),
        }
    }

    fn maybe_prepare_rebalance_or_complete_join(&mut self, ops: &mut Ops<'_>) {
        if ClassicGroupState::PreparingRebalance
            .valid_previous()
            .contains(&self.state)
        {
            self.prepare_rebalance(ops);
        } else {
            self.maybe_complete_join_phase(ops);
        }
    }

    /// Kafka's `prepareRebalance`.
    pub fn prepare_rebalance(&mut self, ops: &mut Ops<'_>) {
        if self.state == ClassicGroupState::CompletingRebalance {
            self.reset_and_propagate_assignment_with_error(ErrorCode::RebalanceInProgress, ops);
        }
        self.remove_sync_expiration(ops);
        let initial = self.state == ClassicGroupState::Empty;
        if initial {
            let delay_ms = millis(ops.config.initial_rebalance_delay);
            let remaining_ms = (self.rebalance_timeout_ms().max(0) as u64).saturating_sub(delay_ms);
            self.schedule_join(
                JoinTimer::Initial {
                    delay_ms,
                    remaining_ms,
                },
                delay_ms,
                ops,
            );
        }
        self.transition(ClassicGroupState::PreparingRebalance);
        tracing::debug!(group = %self.id, generation = self.generation, "preparing to rebalance");
        if !initial {
            self.maybe_complete_join_else_schedule(ops);
        }
    }

    fn maybe_complete_join_else_schedule(&mut self, ops: &mut Ops<'_>) {
        if self.has_all_members_joined() {
            self.complete_join(ops);
        } else {
            let timeout = self.rebalance_timeout_ms().max(0) as u64;
            self.schedule_join(JoinTimer::Complete, timeout, ops);
        }
    }

    fn try_complete_initial_rebalance(
        &mut self,
        delay_ms: u64,
        remaining_ms: u64,
        ops: &mut Ops<'_>,
    ) {
        if self.new_member_added && remaining_ms != 0 {
            self.new_member_added = false;
            let initial = millis(ops.config.initial_rebalance_delay);
            let new_delay = initial.min(remaining_ms);
            let new_remaining = remaining_ms.saturating_sub(delay_ms);
            self.schedule_join(
                JoinTimer::Initial {
                    delay_ms: new_delay,
                    remaining_ms: new_remaining,
                },
                new_delay,
                ops,
            );
        } else {
            self.complete_join(ops);
        }
    }

    fn maybe_complete_join_phase(&mut self, ops: &mut Ops<'_>) {
        if self.state != ClassicGroupState::PreparingRebalance
            || self.previous_state == ClassicGroupState::Empty
            || !self.has_all_members_joined()
        {
            return;
        }
        self.complete_join(ops);
    }

    /// Kafka's `completeClassicGroupJoin`: dynamic members that did not rejoin are removed,
    /// the next generation starts, and every waiting JoinGroup is answered.
    fn complete_join(&mut self, ops: &mut Ops<'_>) {
        ops.timers.cancel(&TimerKey::Join(self.id.clone()));
        self.join_timer = None;
        let not_rejoined: Vec<Arc<str>> = self
            .members
            .values()
            .filter(|m| !m.is_awaiting_join() && m.instance_id.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in &not_rejoined {
            self.remove(id, ops);
            ops.timers
                .cancel(&TimerKey::Heartbeat(self.id.clone(), id.clone()));
        }
        if self.state == ClassicGroupState::Dead {
            return;
        }
        if !self.maybe_elect_new_joined_leader() && !self.members.is_empty() {
            // Nobody rejoined: wait another rebalance timeout for sessions to expire. At
            // least a millisecond: with a rebalance timeout of 0 this would otherwise fire
            // again at the same instant, forever (Kafka's timer would spin too).
            let timeout = (self.rebalance_timeout_ms().max(0) as u64).max(1);
            self.schedule_join(JoinTimer::Complete, timeout, ops);
            return;
        }
        self.init_next_generation();
        if self.state == ClassicGroupState::Empty {
            tracing::debug!(group = %self.id, generation = self.generation, "group is empty");
            self.write_record();
            return;
        }
        tracing::debug!(group = %self.id, generation = self.generation, members = self.members.len(), "join phase complete");
        let ids: Vec<Arc<str>> = self.members.keys().cloned().collect();
        let leader_members = self.current_members();
        for id in &ids {
            let members = if self.is_leader(id) {
                leader_members.clone()
            } else {
                Vec::new()
            };
            let answer = self.join_answer(id, members, false);
            self.complete_join_of(id, answer, ops);
            self.reschedule_heartbeat(id, None, ops);
            if let Some(member) = self.members.get_mut(id) {
                member.is_new = false;
            }
            self.pending_sync.insert(id.clone());
        }
        self.sync_timer_generation = self.generation;
        let timeout = ms(self.rebalance_timeout_ms());
        ops.timers
            .schedule(TimerKey::Sync(self.id.clone()), ops.now + timeout);
    }

    fn remove_member_and_update(&mut self, member_id: &Arc<str>, ops: &mut Ops<'_>) {
        self.complete_join_of(
            member_id,
            join_error(UNKNOWN_MEMBER_ID, ErrorCode::UnknownMemberId),
            ops,
        );
        self.remove(member_id, ops);
        match self.state {
            ClassicGroupState::Stable | ClassicGroupState::CompletingRebalance => {
                self.maybe_prepare_rebalance_or_complete_join(ops);
            }
            ClassicGroupState::PreparingRebalance if self.has_all_members_joined() => {
                self.complete_join(ops);
            }
            _ => {}
        }
    }

    fn remove_current_member(&mut self, member_id: &Arc<str>, ops: &mut Ops<'_>) {
        ops.timers
            .cancel(&TimerKey::Heartbeat(self.id.clone(), member_id.clone()));
        self.complete_join_of(
            member_id,
            join_error(UNKNOWN_MEMBER_ID, ErrorCode::UnknownMemberId),
            ops,
        );
        self.remove(member_id, ops);
    }

    fn reset_and_propagate_assignment_with_error(&mut self, error: ErrorCode, ops: &mut Ops<'_>) {
        for member in self.members.values_mut() {
            self.bytes = self.bytes.saturating_sub(member.assignment.len());
            member.assignment = Bytes::new();
        }
        self.propagate_assignment(Some(error), ops);
    }

    fn set_and_propagate_assignment(
        &mut self,
        assignment: Vec<(Arc<str>, Bytes)>,
        ops: &mut Ops<'_>,
    ) {
        for (id, bytes) in assignment {
            if let Some(member) = self.members.get_mut(&id) {
                self.bytes = self
                    .bytes
                    .saturating_sub(member.assignment.len())
                    .saturating_add(bytes.len());
                member.assignment = bytes;
            }
        }
        self.propagate_assignment(None, ops);
    }

    fn propagate_assignment(&mut self, error: Option<ErrorCode>, ops: &mut Ops<'_>) {
        let (protocol_type, protocol_name) = match error {
            None => (self.protocol_type.clone(), self.protocol_name.clone()),
            Some(_) => (None, None),
        };
        let ids: Vec<Arc<str>> = self
            .members
            .values()
            .filter(|m| m.is_awaiting_sync())
            .map(|m| m.id.clone())
            .collect();
        for id in ids {
            let Some(member) = self.members.get_mut(&id) else {
                continue;
            };
            let Some(waiter) = member.awaiting_sync.take() else {
                continue;
            };
            ops.answer_sync(
                waiter,
                SyncOutcome {
                    error_code: error.map_or(0, |e| e.code()),
                    protocol_type: protocol_type.clone(),
                    protocol_name: protocol_name.clone(),
                    assignment: member.assignment.clone(),
                },
            );
            // Sessions that expired while waiting were ignored: start them again.
            self.reschedule_heartbeat(&id, None, ops);
        }
    }

    fn remove_sync_expiration(&mut self, ops: &mut Ops<'_>) {
        self.pending_sync.clear();
        ops.timers.cancel(&TimerKey::Sync(self.id.clone()));
    }

    fn remove_pending_sync_member(&mut self, member_id: &str, ops: &mut Ops<'_>) {
        self.pending_sync.remove(member_id);
        let done = match self.state {
            ClassicGroupState::CompletingRebalance | ClassicGroupState::Stable => {
                self.pending_sync.is_empty()
            }
            _ => true,
        };
        if done {
            ops.timers.cancel(&TimerKey::Sync(self.id.clone()));
        }
    }

    fn reschedule_heartbeat(&self, member_id: &str, timeout: Option<Duration>, ops: &mut Ops<'_>) {
        let Some(member) = self.members.get(member_id) else {
            return;
        };
        let timeout = timeout.unwrap_or_else(|| ms(member.session_timeout_ms));
        ops.timers.schedule(
            TimerKey::Heartbeat(self.id.clone(), member.id.clone()),
            ops.now + timeout,
        );
    }

    fn schedule_join(&mut self, timer: JoinTimer, after_ms: u64, ops: &mut Ops<'_>) {
        self.join_timer = Some(timer);
        ops.timers.schedule(
            TimerKey::Join(self.id.clone()),
            ops.now + Duration::from_millis(after_ms),
        );
    }

    // ---- Kafka's ClassicGroup --------------------------------------------------------

    fn accepts_joining_member(&self, member_id: &str, max_size: usize) -> bool {
        match self.state {
            ClassicGroupState::Empty | ClassicGroupState::Dead => true,
            ClassicGroupState::PreparingRebalance => {
                self.members
                    .get(member_id)
                    .is_some_and(ClassicMember::is_awaiting_join)
                    || self.awaiting_join_count < max_size
            }
            ClassicGroupState::CompletingRebalance | ClassicGroupState::Stable => {
                self.members.contains_key(member_id) || self.members.len() < max_size
            }
        }
    }

    fn validate_sync(&self, args: &SyncArgs<'_>) -> Result<(), ErrorCode> {
        if self.state == ClassicGroupState::Dead {
            return Err(ErrorCode::CoordinatorNotAvailable);
        }
        self.validate_member(args.member_id, args.instance_id)?;
        if args.generation != self.generation {
            return Err(ErrorCode::IllegalGeneration);
        }
        let inconsistent = |given: Option<&str>, ours: Option<&Arc<str>>| matches!((given, ours), (Some(given), Some(ours)) if given != &**ours);
        if inconsistent(args.protocol_type, self.protocol_type.as_ref())
            || inconsistent(args.protocol_name, self.protocol_name.as_ref())
        {
            return Err(ErrorCode::InconsistentGroupProtocol);
        }
        Ok(())
    }

    /// Kafka's `validateMember`: a static member's instance id must map to this member id
    /// (FENCED_INSTANCE_ID when another holds it), and the member must exist.
    pub fn validate_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), ErrorCode> {
        if let Some(instance) = instance_id {
            match self.static_members.get(instance) {
                None => return Err(ErrorCode::UnknownMemberId),
                Some(existing) if &**existing != member_id => {
                    tracing::debug!(group = %self.id, %instance, member = member_id, existing = %existing, "fenced static member");
                    return Err(ErrorCode::FencedInstanceId);
                }
                Some(_) => {}
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(ErrorCode::UnknownMemberId);
        }
        Ok(())
    }

    fn supports_protocols(&self, protocol_type: &str, protocols: &[Protocol]) -> bool {
        if self.state == ClassicGroupState::Empty {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|(name, _)| {
                self.supported_protocols.get(name).copied().unwrap_or(0) == self.members.len()
            })
    }

    fn add(&mut self, mut member: ClassicMember, waiter: Option<WaiterId>) {
        if let Some(instance) = &member.instance_id {
            self.static_members
                .insert(instance.clone(), member.id.clone());
        }
        if self.members.is_empty() {
            self.protocol_type = Some(member.protocol_type.clone());
        }
        if self.leader.is_none() {
            self.leader = Some(member.id.clone());
        }
        for (name, _) in &member.protocols {
            *self.supported_protocols.entry(name.clone()).or_default() += 1;
        }
        member.awaiting_join = waiter;
        if waiter.is_some() {
            self.awaiting_join_count += 1;
        }
        self.bytes = self.bytes.saturating_add(member.bytes());
        self.pending_join.remove(&member.id);
        self.members.insert(member.id.clone(), member);
    }

    /// Kafka's `ClassicGroup.remove` (pending members too).
    fn remove(&mut self, member_id: &str, _ops: &mut Ops<'_>) {
        if let Some(removed) = self.members.remove(member_id) {
            for (name, _) in &removed.protocols {
                if let Some(count) = self.supported_protocols.get_mut(name) {
                    *count = count.saturating_sub(1);
                    if *count == 0 {
                        self.supported_protocols.remove(name);
                    }
                }
            }
            if removed.is_awaiting_join() {
                self.awaiting_join_count = self.awaiting_join_count.saturating_sub(1);
            }
            if let Some(instance) = &removed.instance_id {
                self.static_members.remove(instance);
            }
            self.bytes = self.bytes.saturating_sub(removed.bytes());
        }
        if self.is_leader(member_id) {
            self.leader = self.members.keys().next().cloned();
        }
        self.pending_join.remove(member_id);
        self.pending_sync.remove(member_id);
    }

    fn maybe_elect_new_joined_leader(&mut self) -> bool {
        let Some(leader) = &self.leader else {
            return false;
        };
        if self
            .members
            .get(leader)
            .is_some_and(ClassicMember::is_awaiting_join)
        {
            return true;
        }
        match self.members.values().find(|m| m.is_awaiting_join()) {
            Some(member) => {
                tracing::debug!(group = %self.id, old = %leader, new = %member.id, "leader did not rejoin; another leads");
                self.leader = Some(member.id.clone());
                true
            }
            None => false,
        }
    }

    fn replace_static_member(&mut self, old_id: &Arc<str>, new_id: &Arc<str>, ops: &mut Ops<'_>) {
        let Some(mut old) = self.members.remove(old_id) else {
            return;
        };
        // Fence whoever still uses the old id and waits.
        if let Some(waiter) = old.awaiting_join.take() {
            self.awaiting_join_count = self.awaiting_join_count.saturating_sub(1);
            ops.answers.push((
                waiter,
                GroupAnswer::Join(JoinOutcome {
                    leader: Arc::from(""),
                    ..join_error(old_id, ErrorCode::FencedInstanceId)
                }),
            ));
        }
        if let Some(waiter) = old.awaiting_sync.take() {
            ops.answers.push((
                waiter,
                GroupAnswer::Sync(sync_error(ErrorCode::FencedInstanceId)),
            ));
        }
        ops.timers
            .cancel(&TimerKey::Heartbeat(self.id.clone(), old_id.clone()));
        let replacement = ClassicMember {
            id: new_id.clone(),
            is_new: false,
            ..old
        };
        if let Some(instance) = &replacement.instance_id {
            self.static_members.insert(instance.clone(), new_id.clone());
        }
        if self.pending_sync.remove(old_id) {
            self.pending_sync.insert(new_id.clone());
        }
        self.members.insert(new_id.clone(), replacement);
        if self.is_leader(old_id) {
            self.leader = Some(new_id.clone());
        }
    }

    fn update_member(
        &mut self,
        member_id: &str,
        protocols: Vec<Protocol>,
        rebalance_timeout_ms: i32,
        session_timeout_ms: i32,
        waiter: Option<WaiterId>,
    ) {
        let Some(member) = self.members.get_mut(member_id) else {
            return;
        };
        for (name, _) in &member.protocols {
            if let Some(count) = self.supported_protocols.get_mut(name) {
                *count = count.saturating_sub(1);
            }
        }
        for (name, _) in &protocols {
            *self.supported_protocols.entry(name.clone()).or_default() += 1;
        }
        let before = member.bytes();
        member.protocols = protocols;
        self.bytes = self
            .bytes
            .saturating_sub(before)
            .saturating_add(member.bytes());
        member.rebalance_timeout_ms = rebalance_timeout_ms;
        member.session_timeout_ms = session_timeout_ms;
        match (waiter.is_some(), member.is_awaiting_join()) {
            (true, false) => self.awaiting_join_count += 1,
            (false, true) => self.awaiting_join_count = self.awaiting_join_count.saturating_sub(1),
            _ => {}
        }
        member.awaiting_join = waiter;
        self.supported_protocols.retain(|_, count| *count > 0);
    }

    /// Answers `member_id`'s waiting JoinGroup, if it has one (`completeJoinFuture`).
    fn complete_join_of(&mut self, member_id: &str, answer: JoinOutcome, ops: &mut Ops<'_>) {
        let Some(member) = self.members.get_mut(member_id) else {
            return;
        };
        if let Some(waiter) = member.awaiting_join.take() {
            self.awaiting_join_count = self.awaiting_join_count.saturating_sub(1);
            ops.answers.push((waiter, GroupAnswer::Join(answer)));
        }
    }

    /// Forgets `waiter` if a member's JoinGroup or SyncGroup waits on it (its request was
    /// answered some other way). Whether one did.
    pub fn forget_waiter(&mut self, waiter: WaiterId) -> bool {
        for member in self.members.values_mut() {
            if member.awaiting_join == Some(waiter) {
                member.awaiting_join = None;
                self.awaiting_join_count = self.awaiting_join_count.saturating_sub(1);
                return true;
            }
            if member.awaiting_sync == Some(waiter) {
                member.awaiting_sync = None;
                return true;
            }
        }
        false
    }

    fn has_all_members_joined(&self) -> bool {
        self.members.len() == self.awaiting_join_count && self.pending_join.is_empty()
    }

    fn transition(&mut self, to: ClassicGroupState) {
        debug_assert!(
            to.valid_previous().contains(&self.state),
            "{:?} -> {to:?}",
            self.state
        );
        self.previous_state = self.state;
        self.state = to;
    }

    /// Kafka's `selectProtocol`: each member votes for its most preferred protocol that
    /// every member supports; the most votes win (ties: the smallest name).
    fn select_protocol(&self) -> Option<Arc<str>> {
        let n = self.members.len();
        let candidates: BTreeSet<&str> = self
            .supported_protocols
            .iter()
            .filter(|(_, &count)| count == n)
            .map(|(name, _)| &**name)
            .collect();
        let mut votes: BTreeMap<&Arc<str>, usize> = BTreeMap::new();
        for member in self.members.values() {
            if let Some(choice) = member.vote(&candidates) {
                *votes.entry(choice).or_default() += 1;
            }
        }
        let best = votes.values().copied().max()?;
        votes
            .into_iter()
            .find(|(_, count)| *count == best)
            .map(|(name, _)| name.clone())
    }

    fn init_next_generation(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        if self.members.is_empty() {
            self.protocol_name = None;
            self.subscribed_topics = self.compute_subscribed_topics();
            self.transition(ClassicGroupState::Empty);
        } else {
            self.protocol_name = self.select_protocol();
            self.subscribed_topics = self.compute_subscribed_topics();
            self.transition(ClassicGroupState::CompletingRebalance);
        }
        self.pending_sync.clear();
    }

    /// The members as the leader's JoinGroup answer lists them, with their metadata for
    /// the selected protocol.
    fn current_members(&self) -> Vec<JoinedMember> {
        let protocol = self.protocol_name.as_deref().unwrap_or("");
        self.members
            .values()
            .map(|m| JoinedMember {
                member_id: m.id.clone(),
                group_instance_id: m.instance_id.clone(),
                metadata: m.metadata(protocol).cloned().unwrap_or_default(),
            })
            .collect()
    }

    fn join_answer(
        &self,
        member_id: &Arc<str>,
        members: Vec<JoinedMember>,
        skip: bool,
    ) -> JoinOutcome {
        JoinOutcome {
            error_code: 0,
            generation_id: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone().unwrap_or_else(|| Arc::from("")),
            skip_assignment: skip,
            member_id: member_id.clone(),
            members,
        }
    }

    /// Kafka's `computeSubscribedTopics`: the topics of every member's consumer-protocol
    /// subscription (read as version 0, the prefix of every version), when the group uses
    /// the consumer protocol and they all parse.
    fn compute_subscribed_topics(&self) -> Option<BTreeSet<Arc<str>>> {
        if !self.uses_consumer_protocol() {
            return None;
        }
        if self.members.is_empty() {
            return Some(BTreeSet::new());
        }
        let protocol = self.protocol_name.as_ref()?;
        let mut topics = BTreeSet::new();
        for member in self.members.values() {
            let metadata = member.metadata(protocol)?;
            topics.extend(subscription_topics(metadata)?);
        }
        Some(topics)
    }
}

/// The topics of a consumer protocol subscription (version, then `[topic]`), or `None` if
/// it does not parse. Bounded by the bytes given.
pub fn subscription_topics(metadata: &[u8]) -> Option<Vec<Arc<str>>> {
    let mut rest = metadata;
    let mut take = |n: usize| -> Option<&[u8]> {
        if rest.len() < n {
            return None;
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Some(head)
    };
    let version = i16::from_be_bytes(take(2)?.try_into().ok()?);
    if version < 0 {
        return None;
    }
    let count = i32::from_be_bytes(take(4)?.try_into().ok()?);
    let count = usize::try_from(count).ok()?;
    // Each topic takes at least its 2-byte length.
    if count > metadata.len() / 2 {
        return None;
    }
    let mut topics = Vec::with_capacity(count);
    for _ in 0..count {
        let len = i16::from_be_bytes(take(2)?.try_into().ok()?);
        let len = usize::try_from(len).ok()?;
        let name = std::str::from_utf8(take(len)?).ok()?;
        topics.push(Arc::from(name));
    }
    Some(topics)
}

/// A JoinGroup error answer (Kafka's `new JoinGroupResponseData().setMemberId(..)
/// .setErrorCode(..)`: generation -1, no protocol, no leader).
pub fn join_error(member_id: &str, code: ErrorCode) -> JoinOutcome {
    JoinOutcome {
        error_code: code.code(),
        generation_id: -1,
        protocol_type: None,
        protocol_name: None,
        leader: Arc::from(""),
        skip_assignment: false,
        member_id: Arc::from(member_id),
        members: Vec::new(),
    }
}

/// A SyncGroup error answer.
pub fn sync_error(code: ErrorCode) -> SyncOutcome {
    SyncOutcome {
        error_code: code.code(),
        protocol_type: None,
        protocol_name: None,
        assignment: Bytes::new(),
    }
}

/// Milliseconds from the wire as a duration (negative: zero).
pub fn ms(value: i32) -> Duration {
    Duration::from_millis(u64::try_from(value).unwrap_or(0))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
