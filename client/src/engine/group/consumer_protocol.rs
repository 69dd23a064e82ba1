//! The KIP-848 consumer group protocol (`group.protocol=consumer`): the member's side of
//! ConsumerGroupHeartbeat, modelled on Java's `ConsumerMembershipManager` and
//! `ConsumerHeartbeatRequestManager` (Kafka 4.x) and librdkafka's `rdkafka_cgrp.c`.
//!
//! The broker assigns; the member heartbeats and reconciles towards the assignment it is
//! given, one step at a time, through the same [`GroupEvent`]s (and so the same rebalance
//! callbacks) as the classic protocol. Commits, lookups and the coordinator are shared with
//! the classic member in `member.rs`; this file holds what differs.
//!
//! ```text
//!  UNSUBSCRIBED --subscribe--> JOINING --answer--> STABLE <--answer-- ACKNOWLEDGING
//!                                ^                   | new assignment        ^
//!                                |                   v                       |
//!                         (epoch 0, same id)     RECONCILING: Revoke (commit first with
//!                                |               auto commit), then Assign; when both are
//!                             FENCED <-- FENCED_MEMBER_EPOCH, UNKNOWN_MEMBER_ID (Lose)
//!  close / unsubscribe: PREPARE_LEAVING (revoke) --> LEAVING (epoch -1, -2 static) --> UNJOINED
//!  UNSUPPORTED_ASSIGNOR, GROUP_MAX_SIZE_REACHED, ... --> FATAL (the error goes to the caller)
//! ```
//!
//! # Heartbeats
//!
//! The first heartbeat of a membership (epoch 0) carries every field; later ones leave the
//! fields that did not change since the last answered request null (Java's
//! `HeartbeatState.sentFields`), and the member sends everything again after an error or a
//! lost request. The interval is the broker's (`heartbeat_interval_ms` of each answer); a
//! heartbeat goes out at once to join, to acknowledge a reconciliation, after a
//! subscription change, and to leave. The member id is the client's own (KIP-1082: a
//! random UUID made once and kept across fencing, as Java 4.x does); an answer that names
//! another (v0 brokers make the id) is taken.
//!
//! # Errors, as Java handles them
//!
//! - FENCED_MEMBER_EPOCH, UNKNOWN_MEMBER_ID: the member is fenced; its partitions are lost
//!   (`on_partitions_lost`), and it rejoins with epoch 0 and the same member id.
//! - NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE, a lost request: the coordinator is looked
//!   up again and the next heartbeat carries every field.
//! - COORDINATOR_LOAD_IN_PROGRESS: the heartbeat again after the backoff.
//! - UNSUPPORTED_ASSIGNOR, GROUP_MAX_SIZE_REACHED, UNRELEASED_INSTANCE_ID,
//!   FENCED_INSTANCE_ID, INVALID_REQUEST, INVALID_REGULAR_EXPRESSION, UNSUPPORTED_VERSION,
//!   GROUP_AUTHORIZATION_FAILED and unknown codes: fatal ([`Error::GroupFailed`], from
//!   every later `recv`, commit and lookup).
//! - Commits carry the member id and epoch (OffsetCommit v9); STALE_MEMBER_EPOCH is
//!   retried (with the epoch of the next heartbeat) until a synchronous commit's deadline.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use kafka_protocol::messages::ConsumerGroupHeartbeatResponse;
use tracing::{debug, info, warn};
use uuid::Uuid;

use super::super::requests::{Body, GroupRequest, Heartbeat, Target};
use super::{GroupEngine, GroupEvent, Leave, Retry};
use crate::engine::backoff::Rng;
use crate::engine::metadata::Metadata;
use crate::proto::ErrorCode;
use crate::topic_partition::TopicPartition;

/// Kafka's `ConsumerGroupHeartbeatRequest.LEAVE_GROUP_MEMBER_EPOCH`.
pub(crate) const LEAVE_GROUP_MEMBER_EPOCH: i32 = -1;
/// Kafka's `LEAVE_GROUP_STATIC_MEMBER_EPOCH`: a static member's temporary leave.
pub(crate) const LEAVE_GROUP_STATIC_MEMBER_EPOCH: i32 = -2;

/// Java's `MemberState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// Not subscribed: not a member.
    Unsubscribed,
    /// Joining with epoch 0 (the heartbeat carries every field).
    Joining,
    /// A member at its assignment.
    Stable,
    /// Running the revoke and assign steps of a new assignment.
    Reconciling,
    /// Reconciled: the next heartbeat reports the partitions owned now.
    Acknowledging,
    /// Fenced by the coordinator: the lose step runs, then the member joins again.
    Fenced,
    /// Leaving: the owned partitions are being revoked.
    PrepareLeaving,
    /// The leave heartbeat (epoch -1 or -2) is to go or in flight.
    Leaving,
    /// Left the group (closed, or unsubscribed).
    Unjoined,
    /// A fatal error: the consumer must be recreated.
    Fatal,
}

impl MemberState {
    /// Java's name for the state.
    pub fn name(self) -> &'static str {
        match self {
            Self::Unsubscribed => "UNSUBSCRIBED",
            Self::Joining => "JOINING",
            Self::Stable => "STABLE",
            Self::Reconciling => "RECONCILING",
            Self::Acknowledging => "ACKNOWLEDGING",
            Self::Fenced => "FENCED",
            Self::PrepareLeaving => "PREPARE_LEAVING",
            Self::Leaving => "LEAVING",
            Self::Unjoined => "UNJOINED",
            Self::Fatal => "FATAL",
        }
    }
}

/// Partitions by topic id, as the protocol names them.
type ById = BTreeMap<Uuid, BTreeSet<i32>>;

/// The fields the coordinator has from this member since its last full heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Sent {
    topics: Option<Vec<String>>,
    regex: Option<String>,
    server_assignor: Option<String>,
    owned: Option<ById>,
}

/// What the member subscribes to, as the heartbeat names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Wanted {
    Topics(Vec<String>),
    Regex(String),
}

/// The KIP-848 member: see the module documentation.
#[derive(Debug)]
pub(super) struct Kip848 {
    member_id: String,
    epoch: i32,
    state: MemberState,
    /// The broker's heartbeat interval (the configured one until the first answer).
    interval: Duration,
    next_heartbeat: Option<Instant>,
    /// The heartbeat in flight: its id, what it carried, whether it acknowledges.
    in_flight: Option<(u64, Sent)>,
    /// Fields the coordinator has (the last answered requests'); `None`: send all.
    sent: Option<Sent>,
    /// Partitions owned, by id, as last reported or to be reported.
    owned: ById,
    /// The latest assignment from the coordinator, not reconciled yet.
    target: Option<ById>,
    /// The assignment whose revoke and assign steps are running.
    reconciling: Option<ById>,
    /// Topic names of the ids seen in assignments.
    names: BTreeMap<Uuid, String>,
    /// Some topic id of the target is not in the metadata yet.
    unresolved: bool,
    wanted: Option<Wanted>,
    /// When a metadata refresh was last asked for unresolved ids.
    metadata_asked: Option<Instant>,
    retry: Retry,
    remote_assignor: Option<String>,
}

impl Kip848 {
    pub(super) fn new(
        config: &super::GroupConfig,
        remote_assignor: Option<String>,
        rng: &mut Rng,
    ) -> Self {
        Self {
            member_id: member_id(rng),
            epoch: 0,
            state: MemberState::Unsubscribed,
            interval: config.heartbeat_interval,
            next_heartbeat: None,
            in_flight: None,
            sent: None,
            owned: ById::new(),
            target: None,
            reconciling: None,
            names: BTreeMap::new(),
            unresolved: false,
            wanted: None,
            metadata_asked: None,
            retry: Retry::new(config),
            remote_assignor,
        }
    }

    pub(super) fn state(&self) -> MemberState {
        self.state
    }

    pub(super) fn member_id(&self) -> &str {
        &self.member_id
    }

    pub(super) fn epoch(&self) -> i32 {
        self.epoch
    }

    /// Whether the coordinator takes this member's commits: joined, with an epoch.
    pub(super) fn in_group(&self) -> bool {
        self.epoch > 0
            && matches!(
                self.state,
                MemberState::Stable
                    | MemberState::Reconciling
                    | MemberState::Acknowledging
                    | MemberState::PrepareLeaving
            )
    }

    /// The heartbeat interval the broker asked for.
    pub(super) fn interval(&self) -> Duration {
        self.interval
    }

    /// The id and epoch OffsetCommit and OffsetFetch carry.
    pub(super) fn identity(&self) -> (String, i32) {
        if self.in_group() {
            (self.member_id.clone(), self.epoch)
        } else {
            (String::new(), -1)
        }
    }

    fn is_due(&self, now: Instant) -> bool {
        matches!(
            self.state,
            MemberState::Acknowledging | MemberState::Leaving
        ) || self.sent.is_none()
            || self.next_heartbeat.is_none_or(|at| at <= now)
    }

    fn heartbeating(&self) -> bool {
        matches!(
            self.state,
            MemberState::Joining
                | MemberState::Stable
                | MemberState::Reconciling
                | MemberState::Acknowledging
                | MemberState::PrepareLeaving
        )
    }
}

/// A member id as Java's `Uuid.randomUuid().toString()`: 16 random bytes, URL-safe
/// base64 without padding.
fn member_id(rng: &mut Rng) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&rng.next_u64().to_be_bytes());
    bytes[8..].copy_from_slice(&rng.next_u64().to_be_bytes());
    let mut bits: u32 = 0;
    let mut count = 0;
    let mut out = String::with_capacity(22);
    for byte in bytes {
        bits = (bits << 8) | u32::from(byte);
        count += 8;
        while count >= 6 {
            count -= 6;
            out.push(char::from(ALPHABET[((bits >> count) & 63) as usize]));
        }
    }
    if count > 0 {
        out.push(char::from(ALPHABET[((bits << (6 - count)) & 63) as usize]));
    }
    out
}

fn by_topic_list(owned: &ById) -> Vec<(Uuid, Vec<i32>)> {
    owned
        .iter()
        .filter(|(_, p)| !p.is_empty())
        .map(|(id, p)| (*id, p.iter().copied().collect()))
        .collect()
}

impl GroupEngine {
    /// The KIP-848 member's state, `None` with the classic protocol.
    pub fn member_state(&self) -> Option<MemberState> {
        self.kip848.as_ref().map(Kip848::state)
    }

    /// The subscription changed (or was made): the next heartbeat says so; an unjoined
    /// member joins.
    pub(super) fn kip_subscription_changed(&mut self) {
        let wanted = match (&self.pattern, &self.topics) {
            (_, None) => None,
            (Some(pattern), Some(_)) => Some(Wanted::Regex(pattern_text(pattern.as_str()))),
            (None, Some(topics)) => Some(Wanted::Topics(topics.iter().cloned().collect())),
        };
        let failed = self.failed.is_some();
        let Some(kip) = self.kip848.as_mut() else {
            return;
        };
        kip.wanted = wanted;
        if kip.wanted.is_some()
            && !failed
            && matches!(kip.state, MemberState::Unsubscribed | MemberState::Unjoined)
        {
            kip.state = MemberState::Joining;
            kip.epoch = 0;
            kip.sent = None;
        }
        kip.next_heartbeat = None;
    }

    /// Leaving (close, unsubscribe): the owned partitions were revoked by the caller
    /// (close) or are revoked by the event queued here (unsubscribe); then a heartbeat
    /// with epoch -1 (-2 for a static member) goes out.
    pub(super) fn kip_leave(&mut self, reason: &str) {
        let busy = self.has_events();
        let Some(kip) = self.kip848.as_mut() else {
            return;
        };
        kip.wanted = None;
        kip.target = None;
        kip.reconciling = None;
        if kip.epoch > 0 && kip.heartbeating() {
            // Unsubscribing revokes first (the step queued before this call).
            kip.state = if busy {
                MemberState::PrepareLeaving
            } else {
                MemberState::Leaving
            };
            self.leave = Leave::Pending(reason.to_string());
        } else {
            kip.state = MemberState::Unjoined;
            kip.epoch = 0;
        }
    }

    /// Takes topic names for the assignment's ids from the metadata; starts reconciling
    /// once every id has a name.
    pub(super) fn kip_handle_metadata(&mut self, metadata: &Metadata) {
        let Some(kip) = self.kip848.as_mut() else {
            return;
        };
        let ids: Vec<Uuid> = kip
            .target
            .iter()
            .flat_map(|t| t.keys().copied())
            .filter(|id| !kip.names.contains_key(id))
            .collect();
        for id in ids {
            if let Some(name) = metadata.topic_name(id) {
                kip.names.insert(id, name.to_string());
            }
        }
        kip.unresolved = kip
            .target
            .as_ref()
            .is_some_and(|t| t.keys().any(|id| !kip.names.contains_key(id)));
    }

    /// Whether the metadata must be refreshed now: an assigned topic id has no name yet
    /// (asked at most once per `retry.backoff.max.ms`).
    pub fn poll_metadata_refresh(&mut self, now: Instant) -> bool {
        let every = self.config.retry_backoff_max;
        let Some(kip) = self.kip848.as_mut() else {
            return false;
        };
        if !kip.unresolved || kip.metadata_asked.is_some_and(|at| now < at + every) {
            return false;
        }
        kip.metadata_asked = Some(now);
        true
    }

    /// The steps that need no answer: a reconciliation finished (acknowledge it), a
    /// fenced member's lose step finished (join again), a new assignment to reconcile.
    pub(super) fn kip_prepare(&mut self, now: Instant) {
        let busy = self.has_events();
        let Some(kip) = self.kip848.as_mut() else {
            return;
        };
        if busy {
            return;
        }
        match kip.state {
            MemberState::Fenced => {
                info!(group = %self.config.group_id, member = %kip.member_id, "fenced: joining again with epoch 0");
                kip.state = if kip.wanted.is_some() {
                    MemberState::Joining
                } else {
                    MemberState::Unsubscribed
                };
                kip.epoch = 0;
                kip.sent = None;
                kip.next_heartbeat = Some(now);
            }
            MemberState::Reconciling => {
                if let Some(done) = kip.reconciling.take() {
                    kip.owned = done;
                }
                kip.state = MemberState::Acknowledging;
            }
            MemberState::PrepareLeaving => kip.state = MemberState::Leaving,
            _ => {}
        }
        if kip.state != MemberState::Stable || kip.unresolved {
            return;
        }
        let Some(target) = kip.target.take() else {
            return;
        };
        let mut assignment: Vec<TopicPartition> = Vec::new();
        for (id, partitions) in &target {
            let Some(name) = kip.names.get(id) else {
                // Resolved in kip_handle_metadata before; keep waiting if not.
                kip.target = Some(target);
                kip.unresolved = true;
                return;
            };
            assignment.extend(
                partitions
                    .iter()
                    .map(|p| TopicPartition::new(name.clone(), *p)),
            );
        }
        assignment.sort();
        let current: BTreeSet<&TopicPartition> = self.owned.iter().collect();
        let next: BTreeSet<&TopicPartition> = assignment.iter().collect();
        if current == next && kip.owned == target {
            return;
        }
        let revoked: Vec<TopicPartition> = self
            .owned
            .iter()
            .filter(|tp| !next.contains(tp))
            .cloned()
            .collect();
        let added: Vec<TopicPartition> = assignment
            .iter()
            .filter(|tp| !current.contains(tp))
            .cloned()
            .collect();
        info!(
            group = %self.config.group_id,
            member = %kip.member_id,
            epoch = kip.epoch,
            partitions = assignment.len(),
            added = added.len(),
            revoked = revoked.len(),
            "reconciling a new assignment"
        );
        kip.state = MemberState::Reconciling;
        kip.reconciling = Some(target);
        if !revoked.is_empty() {
            self.events.push_back(GroupEvent::Revoke(revoked));
        }
        self.owned = assignment.clone();
        self.events
            .push_back(GroupEvent::Assign { assignment, added });
    }

    /// The heartbeat to send now, if one is due.
    pub(super) fn kip_poll_heartbeat(
        &mut self,
        now: Instant,
        target: &Target,
    ) -> Option<GroupRequest> {
        let rebalance_timeout_ms = super::millis(self.config.rebalance_timeout);
        let instance_id = self.config.group_instance_id.clone();
        let rack = self.config.rack.clone();
        let group_id = self.config.group_id.clone();
        let leave = matches!(self.leave, Leave::Pending(_));
        let leave_pending = leave;
        let static_member = instance_id.is_some();
        let kip = self.kip848.as_mut()?;
        if kip.in_flight.is_some() || !kip.retry.ready(now) {
            return None;
        }
        let leave = leave && kip.state != MemberState::PrepareLeaving;
        self.next_id += 1;
        let id = self.next_id;
        if leave {
            let epoch = if static_member {
                LEAVE_GROUP_STATIC_MEMBER_EPOCH
            } else {
                LEAVE_GROUP_MEMBER_EPOCH
            };
            info!(group = %group_id, member = %kip.member_id, epoch, "leaving the group");
            self.leave = Leave::InFlight(id);
            kip.in_flight = Some((id, Sent::default()));
            return Some(GroupRequest {
                id,
                target: target.clone(),
                body: Body::ConsumerGroupHeartbeat(Heartbeat {
                    group_id,
                    member_id: kip.member_id.clone(),
                    member_epoch: epoch,
                    instance_id,
                    rebalance_timeout_ms: -1,
                    ..Heartbeat::default()
                }),
            });
        }
        if !kip.heartbeating() || kip.wanted.is_none() || leave_pending || !kip.is_due(now) {
            self.next_id -= 1;
            return None;
        }
        let full = kip.state == MemberState::Joining || kip.sent.is_none();
        let known = if full {
            Sent::default()
        } else {
            kip.sent.clone().unwrap_or_default()
        };
        let (topics, regex) = match &kip.wanted {
            Some(Wanted::Topics(topics)) => (Some(topics.clone()), None),
            Some(Wanted::Regex(regex)) => (None, Some(regex.clone())),
            None => (None, None),
        };
        let owned = if kip.state == MemberState::Joining {
            ById::new()
        } else {
            kip.owned.clone()
        };
        let now_sent = Sent {
            topics: topics.clone(),
            regex: regex.clone(),
            server_assignor: kip.remote_assignor.clone(),
            owned: Some(owned.clone()),
        };
        let beat = Heartbeat {
            group_id,
            member_id: kip.member_id.clone(),
            member_epoch: kip.epoch,
            instance_id,
            rack_id: if full { rack } else { None },
            rebalance_timeout_ms: if full { rebalance_timeout_ms } else { -1 },
            topics: if full || now_sent.topics != known.topics {
                topics
            } else {
                None
            },
            regex: if full || now_sent.regex != known.regex {
                regex
            } else {
                None
            },
            server_assignor: if full || now_sent.server_assignor != known.server_assignor {
                kip.remote_assignor.clone()
            } else {
                None
            },
            owned: if full || now_sent.owned != known.owned {
                Some(by_topic_list(&owned))
            } else {
                None
            },
        };
        debug!(
            member = %kip.member_id,
            epoch = kip.epoch,
            state = kip.state.name(),
            full,
            "ConsumerGroupHeartbeat"
        );
        kip.in_flight = Some((id, now_sent));
        kip.next_heartbeat = Some(now + kip.interval);
        Some(GroupRequest {
            id,
            target: target.clone(),
            body: Body::ConsumerGroupHeartbeat(beat),
        })
    }

    /// Whether `id` is the heartbeat in flight.
    pub(super) fn kip_owns(&self, id: u64) -> bool {
        self.kip848
            .as_ref()
            .is_some_and(|k| k.in_flight.as_ref().is_some_and(|(i, _)| *i == id))
    }

    /// The heartbeat `id` got no answer: the coordinator is looked up again and the next
    /// heartbeat carries every field.
    pub(super) fn kip_heartbeat_lost(&mut self, id: u64, now: Instant) {
        let Some(kip) = self.kip848.as_mut() else {
            return;
        };
        if kip.in_flight.as_ref().is_some_and(|(i, _)| *i == id) {
            kip.in_flight = None;
            kip.sent = None;
            kip.retry.fail(&mut self.rng, now);
            if kip.state == MemberState::Leaving {
                // Not answered: the session ends it anyway.
                kip.state = MemberState::Unjoined;
                kip.epoch = 0;
            }
        }
    }

    /// The answer to heartbeat `id`.
    pub(super) fn kip_handle_heartbeat(
        &mut self,
        id: u64,
        body: ConsumerGroupHeartbeatResponse,
        now: Instant,
    ) {
        let Some(kip) = self.kip848.as_mut() else {
            return;
        };
        let Some((_, carried)) = kip.in_flight.take().filter(|(i, _)| *i == id) else {
            return;
        };
        let code = ErrorCode::try_from_code(body.error_code);
        if !matches!(self.leave, Leave::InFlight(l) if l == id)
            && matches!(
                kip.state,
                MemberState::Leaving
                    | MemberState::Unjoined
                    | MemberState::Unsubscribed
                    | MemberState::Fatal
            )
        {
            // The answer to a heartbeat sent before the member started leaving.
            return;
        }
        if matches!(self.leave, Leave::InFlight(l) if l == id) {
            // Whatever the answer, the member is out.
            self.leave = Leave::None;
            if let Some(code) = code {
                debug!(group = %self.config.group_id, ?code, "the leave heartbeat answered with an error");
            }
            kip.state = if kip.wanted.is_some() {
                MemberState::Joining
            } else {
                MemberState::Unjoined
            };
            kip.epoch = 0;
            kip.sent = None;
            kip.owned.clear();
            return;
        }
        let Some(code) = code else {
            kip.retry.succeed();
            if let Some(member) = body.member_id.as_ref().filter(|m| !m.is_empty()) {
                if member.as_str() != kip.member_id {
                    kip.member_id = member.to_string();
                }
            }
            if body.member_epoch != kip.epoch {
                debug!(member = %kip.member_id, from = kip.epoch, to = body.member_epoch, "member epoch");
            }
            kip.epoch = body.member_epoch;
            if body.heartbeat_interval_ms > 0 {
                kip.interval =
                    Duration::from_millis(body.heartbeat_interval_ms.unsigned_abs().into());
            }
            kip.next_heartbeat = Some(now + kip.interval);
            // The acknowledgement is the heartbeat that carried what is owned now (an
            // earlier one may be answered after the reconciliation ended).
            let acknowledged = carried.owned.as_ref() == Some(&kip.owned);
            kip.sent = Some(carried);
            match kip.state {
                // Kafka answers a join with epoch 1 or more; librdkafka's mock answers 0
                // until it assigned: still joining (full heartbeats, at the interval).
                MemberState::Joining if kip.epoch > 0 => {
                    info!(group = %self.config.group_id, member = %kip.member_id, epoch = kip.epoch, "joined the group");
                    kip.state = MemberState::Stable;
                    if self.next_auto_commit.is_none() {
                        self.next_auto_commit = Some(now + self.config.auto_commit_interval);
                    }
                }
                MemberState::Acknowledging if acknowledged => kip.state = MemberState::Stable,
                _ => {}
            }
            if let Some(assignment) = body.assignment {
                let mut target = ById::new();
                for topic in assignment.topic_partitions {
                    // Bounded by the response, which the frame limit bounds.
                    target
                        .entry(topic.topic_id)
                        .or_default()
                        .extend(topic.partitions.into_iter().filter(|p| *p >= 0));
                }
                target.retain(|_, p| !p.is_empty());
                kip.unresolved = target.keys().any(|id| !kip.names.contains_key(id));
                kip.target = Some(target);
            }
            return;
        };
        kip.sent = None;
        match code {
            ErrorCode::FencedMemberEpoch | ErrorCode::UnknownMemberId => {
                warn!(group = %self.config.group_id, member = %kip.member_id, epoch = kip.epoch, ?code, "the member was fenced: its partitions are lost, it joins again");
                self.kip_fence();
            }
            ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable => {
                self.coordinator_lost(
                    "ConsumerGroupHeartbeat answered that it is not the coordinator",
                );
            }
            ErrorCode::CoordinatorLoadInProgress => {
                kip.retry.fail(&mut self.rng, now);
            }
            code => {
                let message = body
                    .error_message
                    .map(|m| m.to_string())
                    .unwrap_or_default();
                warn!(group = %self.config.group_id, ?code, %message, "ConsumerGroupHeartbeat failed");
                kip.state = MemberState::Fatal;
                let fatal = self.group_failed(code);
                self.fail(fatal);
            }
        }
    }

    /// `max.poll.interval.ms` passed without a `recv` (Java's `transitionToStale`): the
    /// member leaves at once (epoch -1) and its partitions are lost; the next `recv` runs
    /// the lose step, reports [`crate::Error::PollIntervalExceeded`] and joins again.
    pub(super) fn kip_poll_expired(&mut self) {
        let owned = self.owned.clone();
        self.events.clear();
        self.kip_leave("consumer poll timeout has expired");
        if let Some(kip) = self.kip848.as_mut() {
            kip.owned.clear();
        }
        if !owned.is_empty() {
            self.events.push_back(GroupEvent::Lose(owned));
        }
    }

    /// Fenced: everything owned is lost (the lose step runs first), then the member joins
    /// again with epoch 0 and its member id.
    pub(super) fn kip_fence(&mut self) {
        let Some(kip) = self.kip848.as_mut() else {
            return;
        };
        kip.state = MemberState::Fenced;
        kip.epoch = 0;
        kip.sent = None;
        kip.target = None;
        kip.reconciling = None;
        kip.owned.clear();
        kip.next_heartbeat = None;
        self.events.clear();
        if !self.owned.is_empty() {
            self.events.push_back(GroupEvent::Lose(self.owned.clone()));
        }
    }

    /// When the next heartbeat or retry is due.
    pub(super) fn kip_timeout(&self, now: Instant) -> Vec<Instant> {
        let Some(kip) = self.kip848.as_ref() else {
            return Vec::new();
        };
        let mut times = Vec::new();
        if kip.heartbeating() && kip.in_flight.is_none() {
            times.extend(kip.next_heartbeat);
        }
        times.extend(kip.retry.pending(now));
        if kip.unresolved {
            let again = kip
                .metadata_asked
                .map_or(now, |at| at + self.config.retry_backoff_max);
            times.push(again);
        }
        times
    }
}

/// The regex as the heartbeat sends it: the text given to `subscribe_pattern` (the
/// engine keeps it anchored as `^(?:...)$`; the broker matches whole names itself).
fn pattern_text(anchored: &str) -> String {
    anchored
        .strip_prefix("^(?:")
        .and_then(|s| s.strip_suffix(")$"))
        .unwrap_or(anchored)
        .to_string()
}

#[cfg(test)]
#[path = "consumer_protocol_tests.rs"]
mod tests;
