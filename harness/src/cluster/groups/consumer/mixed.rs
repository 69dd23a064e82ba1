//! Classic members in a consumer group, and the conversions between the group types
//! (Kafka's online migration: the classic half of `GroupMetadataManager`'s
//! `classicGroup*ToConsumerGroup` methods, `ConsumerGroup.fromClassicGroup`,
//! `validateOnlineDowngradeWithFencedMember`).
//!
//! A member that speaks the classic protocol inside a consumer group is a
//! [`ConsumerMember`] with [`ClassicMemberMetadata`]: its JoinGroup subscribes it (the
//! topics of its consumer protocol subscription) and reconciles it with the partitions the
//! subscription says it owns, and is answered at once with its member epoch as the
//! generation and no leader; its SyncGroup is answered with the partitions it is assigned
//! (not the target: the target's partitions another member still holds come later); its
//! Heartbeat answers REBALANCE_IN_PROGRESS while the group epoch is past its epoch, it must
//! revoke, or partitions it waited for were released, so that it rejoins. Its deadlines are
//! its own session timeout and, once told to rejoin or after joining, its rebalance
//! timeout (Kafka's join and sync timeouts), past which it is fenced.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use franzy::proto::ErrorCode;
use kafka_protocol::messages::consumer_protocol_assignment::{
    ConsumerProtocolAssignment, TopicPartition as AssignedTopic,
};
use kafka_protocol::messages::consumer_protocol_subscription::ConsumerProtocolSubscription;
use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use uuid::Uuid;

use super::super::classic::{
    join_error, sync_error, ClassicGroup, ClassicMember, JoinArgs, SyncArgs,
    CONSUMER_PROTOCOL_TYPE, UNKNOWN_MEMBER_ID,
};
use super::super::{JoinOutcome, Ops, SyncOutcome, TimerKey};
use super::{
    member_session_timeout, Assignment, ClassicMemberMetadata, ConsumerGroup, ConsumerMember,
    GroupError, MemberState, TopicCatalog,
};

/// The highest `ConsumerProtocolSubscription` / `ConsumerProtocolAssignment` version.
const HIGHEST_VERSION: i16 = 3;

/// What the coordinator reads of a consumer protocol subscription.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubscriptionFields {
    /// Subscribed topic names.
    pub topics: Vec<Arc<str>>,
    /// Owned partitions (v1+), by topic name.
    pub owned: Vec<(Arc<str>, Vec<i32>)>,
    /// The rack (v3+).
    pub rack_id: Option<Arc<str>>,
}

/// Java's `ConsumerProtocol.deserializeVersion`: the payload's version, None when it is
/// too short or negative.
pub fn protocol_version(payload: &[u8]) -> Option<i16> {
    let version = i16::from_be_bytes(payload.get(..2)?.try_into().ok()?);
    (version >= 0).then_some(version)
}

/// Java's `ConsumerProtocol.deserializeConsumerProtocolSubscription`; a version above the
/// highest known is read as the highest (later versions only add fields at the end).
pub fn decode_subscription(payload: &[u8]) -> Option<SubscriptionFields> {
    let version = protocol_version(payload)?.min(HIGHEST_VERSION);
    let mut body = Bytes::copy_from_slice(payload.get(2..)?);
    let message = ConsumerProtocolSubscription::decode(&mut body, version).ok()?;
    Some(SubscriptionFields {
        topics: message
            .topics
            .iter()
            .map(|t| Arc::from(t.as_str()))
            .collect(),
        owned: message
            .owned_partitions
            .iter()
            .map(|t| (Arc::from(t.topic.0.as_str()), t.partitions.clone()))
            .collect(),
        rack_id: message
            .rack_id
            .as_ref()
            .map(|r| Arc::from(r.as_str()))
            .filter(|r: &Arc<str>| !r.is_empty()),
    })
}

/// Java's `ConsumerProtocol.deserializeConsumerProtocolAssignment`: the partitions by
/// topic name; an empty payload is an empty assignment.
pub fn decode_assignment(payload: &[u8]) -> Option<Vec<(Arc<str>, Vec<i32>)>> {
    if payload.is_empty() {
        return Some(Vec::new());
    }
    let version = protocol_version(payload)?.min(HIGHEST_VERSION);
    let mut body = Bytes::copy_from_slice(payload.get(2..)?);
    let message = ConsumerProtocolAssignment::decode(&mut body, version).ok()?;
    Some(
        message
            .assigned_partitions
            .iter()
            .map(|t| (Arc::from(t.topic.0.as_str()), t.partitions.clone()))
            .collect(),
    )
}

/// Java's `ConsumerProtocol.serializeAssignment` at `version` (clamped to what exists).
pub fn encode_assignment(partitions: &[(Arc<str>, Vec<i32>)], version: i16) -> Bytes {
    let version = version.clamp(0, HIGHEST_VERSION);
    let message = ConsumerProtocolAssignment::default().with_assigned_partitions(
        partitions
            .iter()
            .map(|(topic, partitions)| {
                AssignedTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partitions(partitions.clone())
            })
            .collect(),
    );
    let mut out = BytesMut::new();
    out.extend_from_slice(&version.to_be_bytes());
    if let Err(e) = message.encode(&mut out, version) {
        // Only a field a version cannot carry fails; an assignment has none.
        tracing::warn!(error = %e, "encoding a consumer protocol assignment");
        return Bytes::new();
    }
    out.freeze()
}

/// Partitions by topic name as an [`Assignment`] by topic id; topics the cluster does not
/// have are left out (Kafka's `toTopicPartitionMap`).
fn by_topic_id(partitions: &[(Arc<str>, Vec<i32>)], catalog: &dyn TopicCatalog) -> Assignment {
    let mut assignment = Assignment::new();
    for (topic, ps) in partitions {
        if let Some(info) = catalog.topic(topic) {
            assignment
                .entry(info.id)
                .or_default()
                .extend(ps.iter().copied());
        }
    }
    assignment.retain(|_, ps| !ps.is_empty());
    assignment
}

impl ConsumerGroup {
    /// Kafka's `ConsumerGroup.fromClassicGroup`: the consumer group a classic group of
    /// consumers becomes, members, assignments and all, at its generation. Every member is
    /// Stable at that epoch with its last assignment as its target; the next bump of the
    /// group epoch (the ConsumerGroupHeartbeat that converted it) rebalances it.
    pub fn from_classic(
        classic: &ClassicGroup,
        catalog: &dyn TopicCatalog,
    ) -> Result<Self, GroupError> {
        let malformed = || {
            GroupError::new(
                ErrorCode::GroupIdNotFound,
                format!(
                    "Cannot upgrade the classic group {} to consumer group because the embedded consumer protocol is malformed.",
                    classic.id()
                ),
            )
        };
        let mut group = ConsumerGroup::new(classic.id().clone());
        group.group_epoch = classic.generation();
        group.assignment_epoch = classic.generation();
        for old in classic.members() {
            // The metadata of the group's protocol (the first one while none is selected).
            let protocol = classic
                .protocol_name()
                .and_then(|p| old.metadata(p))
                .or_else(|| old.protocols.first().map(|(_, m)| m))
                .ok_or_else(malformed)?;
            let subscription = decode_subscription(protocol).ok_or_else(malformed)?;
            let assigned = decode_assignment(&old.assignment).ok_or_else(malformed)?;
            let assigned = by_topic_id(&assigned, catalog);
            let mut member = ConsumerMember::new(old.id.clone());
            member.member_epoch = classic.generation();
            member.previous_member_epoch = classic.generation();
            member.instance_id = old.instance_id.clone();
            member.rack_id = subscription.rack_id;
            member.rebalance_timeout_ms = old.rebalance_timeout_ms;
            member.client_id = old.client_id.clone();
            member.client_host = old.client_host.clone();
            member.subscribed_topic_names = subscription.topics.into_iter().collect();
            member.assigned = assigned.clone();
            member.classic = Some(ClassicMemberMetadata {
                session_timeout_ms: old.session_timeout_ms,
                protocols: old.protocols.clone(),
            });
            group.target.insert(old.id.clone(), assigned);
            group.put_member(None, member);
        }
        Ok(group)
    }

    /// The members of a consumer group whose members all use the classic protocol, as
    /// Kafka's `ClassicGroup.fromConsumerGroup` makes them: each with its classic protocols
    /// and its target assignment, encoded at the version of its first protocol.
    pub fn to_classic_members(&self) -> Vec<ClassicMember> {
        let names: std::collections::HashMap<Uuid, &Arc<str>> = self
            .subscription
            .iter()
            .map(|(name, info)| (info.id, name))
            .collect();
        let empty = Assignment::new();
        self.members
            .values()
            .filter_map(|m| {
                let classic = m.classic.as_ref()?;
                let mut member = ClassicMember::new(
                    m.member_id.clone(),
                    m.instance_id.clone(),
                    m.client_id.clone(),
                    m.client_host.clone(),
                    m.rebalance_timeout_ms,
                    classic.session_timeout_ms,
                    Arc::from(CONSUMER_PROTOCOL_TYPE),
                    classic.protocols.clone(),
                );
                let version = classic
                    .protocols
                    .first()
                    .and_then(|(_, meta)| protocol_version(meta))
                    .unwrap_or(0);
                let target = self.target.get(&m.member_id).unwrap_or(&empty);
                member.assignment = encode_assignment(&by_name(target, &names), version);
                Some(member)
            })
            .collect()
    }

    /// Kafka's `classicGroupJoinToConsumerGroup`: a classic member joins (or rejoins) this
    /// non-empty consumer group, answered at once.
    pub fn classic_join(
        &mut self,
        args: JoinArgs,
        catalog: &dyn TopicCatalog,
        ops: &mut Ops<'_>,
    ) -> JoinOutcome {
        match self.classic_join_inner(args.clone(), catalog, ops) {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::debug!(group = &*self.id, error = ?e, "classic member's JoinGroup refused");
                join_error(&args.member_id, e.code)
            }
        }
    }

    fn classic_join_inner(
        &mut self,
        args: JoinArgs,
        catalog: &dyn TopicCatalog,
        ops: &mut Ops<'_>,
    ) -> Result<JoinOutcome, GroupError> {
        let is_unknown = &*args.member_id == UNKNOWN_MEMBER_ID;
        let member_id: Arc<str> = if is_unknown {
            ops.ids.uuid()
        } else {
            args.member_id.clone()
        };
        let max = ops.config.consumer_max_size;
        if self.members.len() >= max && !self.members.contains_key(&member_id) {
            return Err(GroupError::new(
                ErrorCode::GroupMaxSizeReached,
                format!("The consumer group has reached its maximum capacity of {max} members."),
            ));
        }
        if !self.supports_classic_protocols(&args.protocol_type, &args.protocols) {
            return Err(GroupError::new(
                ErrorCode::InconsistentGroupProtocol,
                format!("Member {member_id}'s protocols are not supported."),
            ));
        }
        if args.require_known_member_id && is_unknown && args.instance_id.is_none() {
            tracing::info!(
                group = &*self.id,
                member = &*member_id,
                "dynamic classic member joins the consumer group; asking it to rejoin with its id"
            );
            return Ok(join_error(&member_id, ErrorCode::MemberIdRequired));
        }
        let subscription = args
            .protocols
            .first()
            .and_then(|(_, metadata)| decode_subscription(metadata))
            .ok_or_else(|| {
                GroupError::new(
                    ErrorCode::UnknownServerError,
                    "Malformed embedded consumer protocol in subscription deserialization.",
                )
            })?;
        // Kafka's `validateOnlineDowngradeWithReplacedMemberId`, on the group as it is
        // before the step: a static classic member replacing the last consumer-protocol
        // member turns the group into a classic group (without a rebalance).
        let downgrade_on_replace = args.instance_id.as_ref().is_some_and(|instance| {
            self.static_members
                .get(instance)
                .and_then(|id| self.members.get(id))
                .is_some_and(|existing| {
                    !existing.uses_classic_protocol()
                        && self.classic_members + 1 == self.members.len()
                        && ops.config.migration_policy.downgrade_enabled()
                        && self.members.len() <= ops.config.max_size
                })
        });
        // Kafka's `getOrMaybeSubscribe{Dynamic,Static}ConsumerGroupMember` with
        // createIfNotExists: a classic member's epoch is not checked.
        let (previous, stored_as) = match &args.instance_id {
            None => match self.members.get(&member_id) {
                Some(existing) => (Some(existing.clone()), Some(member_id.clone())),
                None => (None, None),
            },
            Some(instance) => match self
                .static_members
                .get(instance)
                .and_then(|id| self.members.get(id))
            {
                None => match self.members.get(&member_id) {
                    Some(existing) => (Some(existing.clone()), Some(member_id.clone())),
                    None => (None, None),
                },
                Some(existing) => {
                    // A copy of the static member under its new id, at epoch 0.
                    let mut copy = existing.clone();
                    copy.member_id = member_id.clone();
                    copy.member_epoch = 0;
                    copy.previous_member_epoch = 0;
                    if existing.member_id != member_id {
                        self.cancel_member_timers(&existing.member_id, ops);
                    }
                    (Some(copy), Some(existing.member_id.clone()))
                }
            },
        };
        let mut member = previous
            .clone()
            .unwrap_or_else(|| ConsumerMember::new(member_id.clone()));
        if let Some(instance) = &args.instance_id {
            member.instance_id = Some(instance.clone());
        }
        if let Some(rack) = &subscription.rack_id {
            member.rack_id = Some(rack.clone());
        }
        if args.rebalance_timeout_ms != -1 {
            member.rebalance_timeout_ms = args.rebalance_timeout_ms;
        }
        member.subscribed_topic_names = subscription.topics.iter().cloned().collect();
        member.client_id = args.client_id.clone();
        member.client_host = args.client_host.clone();
        member.classic = Some(ClassicMemberMetadata {
            session_timeout_ms: args.session_timeout_ms,
            protocols: args.protocols.clone(),
        });
        if member.bytes() > ops.config.max_member_bytes {
            return Err(ErrorCode::UnknownServerError.into());
        }
        let subscription_changed =
            previous
                .as_ref()
                .map_or(!member.subscribed_topic_names.is_empty(), |p| {
                    p.subscribed_topic_names != member.subscribed_topic_names
                        || p.subscribed_topic_regex != member.subscribed_topic_regex
                });
        self.put_member(stored_as.as_ref(), member);
        let metadata_changed = (subscription_changed
            || self.subscription_version != Some(catalog.version()))
            && self.refresh_subscription(catalog);
        if subscription_changed || metadata_changed {
            self.bump_epoch()?;
            tracing::info!(
                group = &*self.id,
                member = &*member_id,
                epoch = self.group_epoch,
                "bumped the group epoch (classic member joined)"
            );
        }
        if self.group_epoch > self.assignment_epoch {
            self.compute_target(ops.config);
        }
        let owned = by_topic_id(&subscription.owned, catalog);
        self.reconcile(&member_id, Some(&owned), ops);
        if downgrade_on_replace {
            tracing::info!(
                group = &*self.id,
                member = &*member_id,
                "a static classic member replaced the last consumer-protocol member"
            );
            self.downgrade = Some(false);
        }
        let member = self
            .members
            .get(&member_id)
            .ok_or(ErrorCode::UnknownServerError)?;
        let group = &self.id;
        ops.timers
            .cancel(&TimerKey::ConsumerJoin(group.clone(), member_id.clone()));
        ops.timers.schedule(
            TimerKey::ConsumerSession(group.clone(), member_id.clone()),
            ops.now + member_session_timeout(member, ops.config),
        );
        ops.timers.schedule(
            TimerKey::ConsumerSync(group.clone(), member_id.clone()),
            ops.now + super::super::classic::ms(args.rebalance_timeout_ms),
        );
        Ok(JoinOutcome {
            error_code: 0,
            generation_id: member.member_epoch,
            protocol_type: Some(Arc::from(CONSUMER_PROTOCOL_TYPE)),
            protocol_name: args.protocols.first().map(|(name, _)| name.clone()),
            leader: Arc::from(""),
            skip_assignment: false,
            member_id: member_id.clone(),
            members: Vec::new(),
        })
    }

    /// Kafka's `supportsClassicProtocols`: the consumer protocol type, and a protocol every
    /// classic member supports.
    fn supports_classic_protocols(
        &self,
        protocol_type: &str,
        protocols: &[super::super::classic::Protocol],
    ) -> bool {
        if protocol_type != CONSUMER_PROTOCOL_TYPE {
            return false;
        }
        if self.members.is_empty() {
            return !protocols.is_empty();
        }
        protocols.iter().any(|(name, _)| {
            self.classic_protocols.get(name).copied().unwrap_or(0) == self.classic_members
        })
    }

    /// Kafka's `validateConsumerGroupMember`: the member a classic request speaks for.
    fn classic_member_of(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<&ConsumerMember, ErrorCode> {
        let member = match instance_id {
            None => self.members.get(member_id),
            Some(instance) => {
                let member = self
                    .static_members
                    .get(instance)
                    .and_then(|id| self.members.get(id))
                    .ok_or(ErrorCode::UnknownMemberId)?;
                if *member.member_id != *member_id {
                    return Err(ErrorCode::FencedInstanceId);
                }
                Some(member)
            }
        }
        .ok_or(ErrorCode::UnknownMemberId)?;
        // Kafka's `throwIfMemberDoesNotUseClassicProtocol`.
        if !member.uses_classic_protocol() {
            return Err(ErrorCode::UnknownMemberId);
        }
        Ok(member)
    }

    /// Whether a classic member must rejoin: for a SyncGroup (Kafka's
    /// `throwIfRebalanceInProgress`), when the group epoch passed the member's and it is not
    /// revoking; for a Heartbeat (`classicGroupHeartbeatToConsumerGroup`), also while it must
    /// revoke, or once partitions it waited for were released. Its join deadline then
    /// starts, unless it runs already.
    fn check_rebalance(
        &self,
        member: &ConsumerMember,
        heartbeat: bool,
        ops: &mut Ops<'_>,
    ) -> Result<(), ErrorCode> {
        let rejoin = if heartbeat {
            member.member_epoch < self.group_epoch
                || member.state == MemberState::UnrevokedPartitions
                || (member.state == MemberState::UnreleasedPartitions
                    && !self.waiting_on_unreleased(member))
        } else {
            self.group_epoch > member.member_epoch
                && member.state != MemberState::UnrevokedPartitions
        };
        if rejoin {
            let key = TimerKey::ConsumerJoin(self.id.clone(), member.member_id.clone());
            if !ops.timers.is_scheduled(&key) {
                let timeout = super::super::classic::ms(member.rebalance_timeout_ms);
                ops.timers.schedule(key, ops.now + timeout);
            }
            return Err(ErrorCode::RebalanceInProgress);
        }
        Ok(())
    }

    /// Kafka's `waitingOnUnreleasedPartition`: whether a partition of the member's target
    /// that it does not hold yet is still held by another member.
    fn waiting_on_unreleased(&self, member: &ConsumerMember) -> bool {
        let Some(target) = self.target.get(&member.member_id) else {
            return false;
        };
        target.iter().any(|(topic, partitions)| {
            partitions.iter().any(|p| {
                !member.assigned.get(topic).is_some_and(|a| a.contains(p))
                    && self.partition_epochs.contains_key(&(*topic, *p))
            })
        })
    }

    /// Kafka's `classicGroupSyncToConsumerGroup`: the member's assigned partitions.
    pub fn classic_sync(&mut self, args: SyncArgs<'_>, ops: &mut Ops<'_>) -> SyncOutcome {
        let member = match self.classic_member_of(args.member_id, args.instance_id) {
            Ok(member) => member.clone(),
            Err(code) => return sync_error(code),
        };
        if member.member_epoch != args.generation {
            return sync_error(ErrorCode::IllegalGeneration);
        }
        let Some(classic) = &member.classic else {
            return sync_error(ErrorCode::UnknownMemberId);
        };
        let protocol_name = classic.protocols.first().map(|(name, _)| name.clone());
        if args
            .protocol_type
            .is_some_and(|t| t != CONSUMER_PROTOCOL_TYPE)
            || args
                .protocol_name
                .is_some_and(|n| protocol_name.as_deref() != Some(n))
        {
            return sync_error(ErrorCode::InconsistentGroupProtocol);
        }
        if let Err(code) = self.check_rebalance(&member, false, ops) {
            return sync_error(code);
        }
        let id = &member.member_id;
        ops.timers
            .cancel(&TimerKey::ConsumerSync(self.id.clone(), id.clone()));
        ops.timers.schedule(
            TimerKey::ConsumerSession(self.id.clone(), id.clone()),
            ops.now + member_session_timeout(&member, ops.config),
        );
        let names: std::collections::HashMap<Uuid, &Arc<str>> = self
            .subscription
            .iter()
            .map(|(name, info)| (info.id, name))
            .collect();
        let version = classic
            .protocols
            .first()
            .and_then(|(_, meta)| protocol_version(meta))
            .unwrap_or(0);
        SyncOutcome {
            error_code: 0,
            protocol_type: args.protocol_type.map(Arc::from),
            protocol_name: args.protocol_name.map(Arc::from),
            assignment: encode_assignment(&by_name(&member.assigned, &names), version),
        }
    }

    /// Kafka's `classicGroupHeartbeatToConsumerGroup`: keeps the session, and answers
    /// REBALANCE_IN_PROGRESS when the member must rejoin.
    pub fn classic_heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        ops: &mut Ops<'_>,
    ) -> Result<(), ErrorCode> {
        let member = self.classic_member_of(member_id, instance_id)?.clone();
        if member.member_epoch != generation {
            return Err(ErrorCode::IllegalGeneration);
        }
        ops.timers.schedule(
            TimerKey::ConsumerSession(self.id.clone(), member.member_id.clone()),
            ops.now + member_session_timeout(&member, ops.config),
        );
        self.check_rebalance(&member, true, ops)
    }

    /// Kafka's `classicGroupLeaveToConsumerGroup`: each classic member named leaves; the
    /// group epoch is bumped once if any did.
    pub fn classic_leave(
        &mut self,
        members: &[(Arc<str>, Option<Arc<str>>)],
        ops: &mut Ops<'_>,
    ) -> Result<Vec<Result<(), ErrorCode>>, GroupError> {
        let mut results = Vec::with_capacity(members.len());
        let mut removed = false;
        for (member_id, instance_id) in members {
            let found = match instance_id {
                None => self.classic_member_of(member_id, None),
                Some(instance) => {
                    // An admin may remove a static member by instance id alone.
                    let id = if member_id.is_empty() {
                        self.static_members.get(instance).cloned()
                    } else {
                        Some(member_id.clone())
                    };
                    match id {
                        Some(id) => self.classic_member_of(&id, Some(instance)),
                        None => Err(ErrorCode::UnknownMemberId),
                    }
                }
            };
            match found.map(|m| m.member_id.clone()) {
                Ok(id) => {
                    tracing::info!(
                        group = &*self.id,
                        member = &*id,
                        "classic member left the consumer group"
                    );
                    self.remove_member(&id, ops);
                    removed = true;
                    results.push(Ok(()));
                }
                Err(code) => results.push(Err(code)),
            }
        }
        if removed {
            self.bump_epoch()?;
        }
        Ok(results)
    }

    /// A classic member did not rejoin, or did not sync, within its rebalance timeout
    /// (Kafka's join and sync timeouts): it is fenced.
    pub fn expire_classic(&mut self, id: &Arc<str>, ops: &mut Ops<'_>) {
        if self.members.contains_key(id) {
            tracing::info!(
                group = &*self.id,
                member = &**id,
                "classic member did not rejoin or sync within its rebalance timeout; fenced"
            );
            if let Err(e) = self.fence(id, ops) {
                tracing::warn!(group = &*self.id, error = ?e, "fencing a classic member");
            }
        }
    }

    /// Whether every member uses the classic protocol.
    pub fn all_members_classic(&self) -> bool {
        self.classic_members == self.members.len()
    }
}

/// An assignment by topic id as partitions by topic name (topics without a name left out).
fn by_name(
    assignment: &Assignment,
    names: &std::collections::HashMap<Uuid, &Arc<str>>,
) -> Vec<(Arc<str>, Vec<i32>)> {
    let mut out: Vec<(Arc<str>, Vec<i32>)> = assignment
        .iter()
        .filter_map(|(id, ps)| {
            names
                .get(id)
                .map(|name| ((*name).clone(), ps.iter().copied().collect()))
        })
        .collect();
    out.sort();
    out
}
