//! The group coordinator against Kafka's behaviour: the classic state machine state by
//! state and request by request (`ClassicGroupState`'s transitions, and what
//! `GroupMetadataManager` answers in each state), KIP-394 and KIP-345 flows, sessions,
//! rebalance and sync timeouts under cluster time, coordinator moves.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use franzy::proto::{ApiKey, ErrorCode, RequestKind};

use super::*;
use crate::cluster::{ClusterConfig, Parked, RequestContext, Wait, Wake};

const SESSION_MS: i32 = 10_000;
const REBALANCE_MS: i32 = 30_000;

fn code(c: ErrorCode) -> i16 {
    c.code()
}

/// A consumer-protocol subscription (version 0) to `topics`.
fn subscription(topics: &[&str]) -> Bytes {
    let mut out = Vec::new();
    out.extend_from_slice(&0i16.to_be_bytes());
    out.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for topic in topics {
        out.extend_from_slice(&(topic.len() as i16).to_be_bytes());
        out.extend_from_slice(topic.as_bytes());
    }
    out.extend_from_slice(&(-1i32).to_be_bytes());
    Bytes::from(out)
}

fn range(topics: &[&str]) -> Vec<(Arc<str>, Bytes)> {
    vec![(Arc::from("range"), subscription(topics))]
}

/// A cluster with `__consumer_offsets`, driven by hand: requests come from numbered
/// waiters, waiting ones are parked, and what the coordinator hands them is collected.
struct Bench {
    c: ClusterState,
    now: Time,
    next_waiter: u64,
}

impl Bench {
    fn new() -> Self {
        Self::with(GroupConfig::default())
    }

    fn with(groups: GroupConfig) -> Self {
        Self::configured(ClusterConfig {
            groups,
            ..ClusterConfig::default()
        })
    }

    fn configured(config: ClusterConfig) -> Self {
        let mut c = ClusterState::new(config);
        c.create_internal_topic(CoordinatorType::Group)
            .expect("offsets topic");
        Self {
            c,
            now: Time::ZERO,
            next_waiter: 100,
        }
    }

    fn coordinator(&self, group: &str) -> i32 {
        let partition = self.c.coordinator_partition(CoordinatorType::Group, group);
        self.c
            .partition(OFFSETS_TOPIC, partition)
            .map_or(-1, |p| p.leader())
    }

    fn waiter(&mut self) -> WaiterId {
        self.next_waiter += 1;
        WaiterId(self.next_waiter)
    }

    fn park(&mut self, waiter: WaiterId, deadline: Time, api: ApiKey) {
        let request = match api {
            ApiKey::JoinGroup => RequestKind::JoinGroup(Default::default()),
            _ => RequestKind::SyncGroup(Default::default()),
        };
        let context = RequestContext {
            api_key: api,
            api_version: 5,
            broker_id: 0,
            client_id: None,
            waiter,
            client_host: Arc::from("/127.0.0.1"),
            now: self.now,
            now_ms: 0,
            partition_errors: Default::default(),
        };
        self.c
            .park(
                waiter,
                Wait {
                    keys: Vec::new(),
                    deadline,
                    bytes: 1,
                    request: Parked { request, context },
                },
            )
            .expect("parks");
    }

    fn args(
        &self,
        member: &str,
        instance: Option<&str>,
        protocols: Vec<(Arc<str>, Bytes)>,
    ) -> JoinArgs {
        JoinArgs {
            member_id: Arc::from(member),
            instance_id: instance.map(Arc::from),
            client_id: Arc::from("client"),
            client_host: Arc::from("/127.0.0.1"),
            session_timeout_ms: SESSION_MS,
            rebalance_timeout_ms: REBALANCE_MS,
            protocol_type: Arc::from("consumer"),
            protocols,
            require_known_member_id: true,
            supports_skip_assignment: true,
        }
    }

    /// A JoinGroup: its answer now, or its waiter (parked).
    fn join_with(&mut self, group: &str, args: JoinArgs) -> Result<JoinOutcome, WaiterId> {
        let waiter = self.waiter();
        let broker = self.coordinator(group);
        match self.c.join_group(group, args, broker, waiter, self.now) {
            GroupReply::Now(answer) => Ok(answer),
            GroupReply::Wait(deadline) => {
                self.park(waiter, deadline, ApiKey::JoinGroup);
                Err(waiter)
            }
        }
    }

    fn join(&mut self, group: &str, member: &str) -> Result<JoinOutcome, WaiterId> {
        let args = self.args(member, None, range(&["t"]));
        self.join_with(group, args)
    }

    /// A new dynamic member's two JoinGroups (KIP-394): the id it got, and the second
    /// join's waiter or answer.
    fn join_new(&mut self, group: &str) -> (Arc<str>, Result<JoinOutcome, WaiterId>) {
        let first = self.join(group, "").expect("answered at once");
        assert_eq!(first.error_code, code(ErrorCode::MemberIdRequired));
        let id = first.member_id.clone();
        (id.clone(), self.join(group, &id))
    }

    fn sync(
        &mut self,
        group: &str,
        member: &str,
        generation: i32,
        assignments: &[(&str, &str)],
    ) -> Result<SyncOutcome, WaiterId> {
        let waiter = self.waiter();
        let broker = self.coordinator(group);
        let assignments = assignments
            .iter()
            .map(|(m, a)| (Arc::from(*m), Bytes::copy_from_slice(a.as_bytes())))
            .collect();
        let args = SyncArgs {
            member_id: member,
            instance_id: None,
            generation,
            protocol_type: Some("consumer"),
            protocol_name: Some("range"),
            assignments,
        };
        match self.c.sync_group(group, args, broker, waiter, self.now) {
            GroupReply::Now(answer) => Ok(answer),
            GroupReply::Wait(deadline) => {
                self.park(waiter, deadline, ApiKey::SyncGroup);
                Err(waiter)
            }
        }
    }

    fn heartbeat(&mut self, group: &str, member: &str, generation: i32) -> Result<(), ErrorCode> {
        let broker = self.coordinator(group);
        self.c
            .heartbeat(group, member, None, generation, broker, self.now)
    }

    fn leave(&mut self, group: &str, member: &str) -> Result<(), ErrorCode> {
        let broker = self.coordinator(group);
        let results = self
            .c
            .leave_group(group, &[(Arc::from(member), None)], broker, self.now)?;
        results.into_iter().next().unwrap_or(Ok(()))
    }

    /// Cluster time moves on by `ms`.
    fn advance(&mut self, ms: u64) {
        self.now = self.now + Duration::from_millis(ms);
        self.c.handle_timeout(self.now);
    }

    /// What the coordinator handed waiting requests, by waiter.
    fn answers(&mut self) -> BTreeMap<WaiterId, GroupAnswer> {
        let mut out = BTreeMap::new();
        while let Some(ready) = self.c.take_ready() {
            match ready.wake {
                Wake::Resolved(Resolution::Group(answer)) => {
                    out.insert(ready.waiter, answer);
                }
                other => panic!("waiter {:?} woken by {other:?}", ready.waiter),
            }
        }
        out
    }

    fn joined(&mut self, waiter: WaiterId) -> JoinOutcome {
        match self.answers().remove(&waiter) {
            Some(GroupAnswer::Join(answer)) => answer,
            other => panic!("no join answer for {waiter:?}: {other:?}"),
        }
    }

    fn state(&self, group: &str) -> ClassicGroupState {
        self.c
            .groups()
            .group(group)
            .and_then(Group::as_classic)
            .map_or(ClassicGroupState::Dead, ClassicGroup::state)
    }

    fn generation(&self, group: &str) -> i32 {
        self.c
            .groups()
            .group(group)
            .and_then(Group::as_classic)
            .map_or(-1, ClassicGroup::generation)
    }

    /// One member in a stable group at generation 1: its id.
    fn stable_single(&mut self, group: &str) -> Arc<str> {
        let (id, waiting) = self.join_new(group);
        let waiter = waiting.expect_err("waits for the initial delay");
        self.advance(0);
        let answer = self.joined(waiter);
        assert_eq!((answer.error_code, answer.generation_id), (0, 1));
        let synced = self
            .sync(group, &id, 1, &[(&id, "a1")])
            .expect("leader sync");
        assert_eq!(synced.assignment, Bytes::from_static(b"a1"));
        assert_eq!(self.state(group), ClassicGroupState::Stable);
        id
    }
}

#[test]
fn a_new_member_learns_its_id_then_leads_the_first_generation() {
    let mut b = Bench::new();
    let first = b.join("g", "").expect("answered");
    assert_eq!(first.error_code, code(ErrorCode::MemberIdRequired));
    assert!(
        first.member_id.starts_with("client-"),
        "{}",
        first.member_id
    );
    assert_eq!(first.member_id.len(), "client-".len() + 36);
    assert_eq!(b.state("g"), ClassicGroupState::Empty);
    let id = first.member_id.clone();
    let waiter = b
        .join("g", &id)
        .expect_err("waits for the initial rebalance delay");
    assert_eq!(b.state("g"), ClassicGroupState::PreparingRebalance);
    b.advance(0);
    let answer = b.joined(waiter);
    assert_eq!(answer.error_code, 0);
    assert_eq!(answer.generation_id, 1);
    assert_eq!(answer.leader, id);
    assert_eq!(answer.protocol_name.as_deref(), Some("range"));
    assert_eq!(answer.protocol_type.as_deref(), Some("consumer"));
    assert_eq!(answer.members.len(), 1);
    assert_eq!(answer.members[0].metadata, subscription(&["t"]));
    assert_eq!(b.state("g"), ClassicGroupState::CompletingRebalance);
    let synced = b.sync("g", &id, 1, &[(&id, "mine")]).expect("leader");
    assert_eq!(synced.error_code, 0);
    assert_eq!(synced.assignment, Bytes::from_static(b"mine"));
    assert_eq!(b.state("g"), ClassicGroupState::Stable);
    assert_eq!(b.heartbeat("g", &id, 1), Ok(()));
    // Before v4 a member is added at once, without MEMBER_ID_REQUIRED.
    let mut old = b.args("", None, range(&["t"]));
    old.require_known_member_id = false;
    assert!(b.join_with("old", old).is_err(), "added and waiting");
    assert_eq!(b.state("old"), ClassicGroupState::PreparingRebalance);
}

#[test]
fn a_second_member_triggers_a_rebalance_that_waits_for_the_first_to_rejoin() {
    let mut b = Bench::new();
    let a = b.stable_single("g");
    let (c, waiting) = b.join_new("g");
    let c_waiter = waiting.expect_err("waits for the others");
    assert_eq!(b.state("g"), ClassicGroupState::PreparingRebalance);
    assert_eq!(b.heartbeat("g", &a, 1), Err(ErrorCode::RebalanceInProgress));
    // Sync during the join phase.
    assert_eq!(
        b.sync("g", &a, 1, &[]).expect("answered").error_code,
        code(ErrorCode::RebalanceInProgress)
    );
    // The last one in completes the join phase: answered at once, the other handed its
    // answer.
    let ja = b.join("g", &a).expect("the join phase completes with both");
    let answers = b.answers();
    let Some(GroupAnswer::Join(jc)) = answers.get(&c_waiter) else {
        panic!("both answered: {answers:?}")
    };
    assert_eq!((ja.generation_id, jc.generation_id), (2, 2));
    assert_eq!(ja.leader, a, "the leader stays");
    assert_eq!(ja.members.len(), 2);
    assert!(jc.members.is_empty());
    assert_eq!(b.state("g"), ClassicGroupState::CompletingRebalance);
    // The follower's sync waits for the leader's.
    let c_sync = b.sync("g", &c, 2, &[]).expect_err("waits for the leader");
    assert_eq!(b.heartbeat("g", &c, 2), Ok(()));
    // A stale generation is refused.
    assert_eq!(
        b.sync("g", &a, 1, &[]).expect("answered").error_code,
        code(ErrorCode::IllegalGeneration)
    );
    let leader = b
        .sync("g", &a, 2, &[(&a, "for-a"), (&c, "for-c")])
        .expect("leader answered");
    assert_eq!(leader.assignment, Bytes::from_static(b"for-a"));
    match b.answers().remove(&c_sync) {
        Some(GroupAnswer::Sync(s)) => {
            assert_eq!(s.error_code, 0);
            assert_eq!(s.assignment, Bytes::from_static(b"for-c"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(b.state("g"), ClassicGroupState::Stable);
    // A stable follower's sync gets its assignment at once.
    assert_eq!(
        b.sync("g", &c, 2, &[]).expect("answered").assignment,
        Bytes::from_static(b"for-c")
    );
}

#[test]
fn a_member_whose_session_expires_is_removed_and_the_group_rebalances() {
    let mut b = Bench::new();
    let a = b.stable_single("g");
    let (c, waiting) = b.join_new("g");
    waiting.expect_err("waits");
    b.join("g", &a).expect("completes the join phase");
    b.answers();
    b.sync("g", &c, 2, &[]).expect_err("follower waits");
    b.sync("g", &a, 2, &[(&a, "x"), (&c, "y")]).expect("leader");
    b.answers();
    // `a` keeps heartbeating, `c` goes silent.
    for _ in 0..2 {
        b.advance(4_000);
        assert_eq!(b.heartbeat("g", &a, 2), Ok(()));
    }
    b.advance(1_999);
    assert_eq!(b.state("g"), ClassicGroupState::Stable);
    b.advance(1);
    // 10 s after its last sign of life (its session): gone, and a rebalance began.
    assert_eq!(b.state("g"), ClassicGroupState::PreparingRebalance);
    assert_eq!(b.heartbeat("g", &c, 2), Err(ErrorCode::UnknownMemberId));
    assert_eq!(b.heartbeat("g", &a, 2), Err(ErrorCode::RebalanceInProgress));
    let answer = b.join("g", &a).expect("the join phase ends with it");
    assert_eq!((answer.generation_id, answer.members.len()), (3, 1));
}

#[test]
fn members_that_do_not_rejoin_in_the_rebalance_timeout_are_removed() {
    let mut b = Bench::new();
    let a = b.stable_single("g");
    let (_c, waiting) = b.join_new("g");
    let c_waiter = waiting.expect_err("waits for a");
    // `a` keeps heartbeating (REBALANCE_IN_PROGRESS) but never rejoins.
    for _ in 0..7 {
        b.advance(4_000);
        assert_eq!(b.heartbeat("g", &a, 1), Err(ErrorCode::RebalanceInProgress));
    }
    assert!(b.answers().is_empty());
    b.advance(2_000);
    // 30 s: the join phase ends without `a`; the new member leads generation 2.
    let answer = b.joined(c_waiter);
    assert_eq!(answer.generation_id, 2);
    assert_eq!(answer.members.len(), 1);
    assert_eq!(answer.leader, answer.member_id);
    assert_eq!(b.heartbeat("g", &a, 1), Err(ErrorCode::UnknownMemberId));
}

#[test]
fn members_that_joined_but_never_synced_are_removed_after_the_rebalance_timeout() {
    let mut b = Bench::new();
    let a = b.stable_single("g");
    let (c, waiting) = b.join_new("g");
    waiting.expect_err("waits");
    b.join("g", &a).expect("completes");
    b.answers();
    let a_sync = b.sync("g", &a, 2, &[]);
    // The leader is `a` and it synced (with no assignment for c); c never syncs.
    assert!(a_sync.is_ok());
    assert_eq!(b.state("g"), ClassicGroupState::Stable);
    for _ in 0..7 {
        b.advance(4_000);
        assert_eq!(b.heartbeat("g", &a, 2), Ok(()));
        let _ = b.heartbeat("g", &c, 2);
    }
    b.advance(3_000);
    // 31 s: the sync phase expired; `c` is gone and the group rebalances.
    assert_eq!(b.heartbeat("g", &c, 2), Err(ErrorCode::UnknownMemberId));
    assert_eq!(b.state("g"), ClassicGroupState::PreparingRebalance);
}

#[test]
fn a_pending_member_that_never_rejoins_expires_after_its_session() {
    let mut b = Bench::new();
    let a = b.stable_single("g");
    let first = b.join("g", "").expect("answered");
    assert_eq!(first.error_code, code(ErrorCode::MemberIdRequired));
    // Pending members do not disturb a stable group...
    assert_eq!(b.state("g"), ClassicGroupState::Stable);
    b.advance(5_000);
    assert_eq!(b.heartbeat("g", &a, 1), Ok(()));
    b.advance(6_000);
    // ...and are forgotten after the session timeout: the id no longer joins.
    let late = b.join("g", &first.member_id).expect("answered");
    assert_eq!(late.error_code, code(ErrorCode::UnknownMemberId));
}

#[test]
fn static_members_are_replaced_without_a_rebalance_and_the_old_id_is_fenced() {
    let mut b = Bench::new();
    let args = b.args("", Some("instance-1"), range(&["t"]));
    let waiter = b
        .join_with("g", args)
        .expect_err("static members join at once");
    b.advance(0);
    let first = b.joined(waiter);
    assert!(
        first.member_id.starts_with("instance-1-"),
        "{}",
        first.member_id
    );
    let old = first.member_id.clone();
    b.sync("g", &old, 1, &[(&old, "assigned")]).expect("leader");
    // The same instance joins again without its id (a restart): a new id, same generation.
    let args = b.args("", Some("instance-1"), range(&["t"]));
    let again = b.join_with("g", args).expect("answered at once");
    assert_eq!(again.error_code, 0);
    assert_ne!(again.member_id, old);
    assert_eq!(again.generation_id, 1);
    assert!(
        again.skip_assignment,
        "the leader keeps its assignment (v9)"
    );
    assert_eq!(b.state("g"), ClassicGroupState::Stable);
    let new = again.member_id.clone();
    let broker = b.coordinator("g");
    assert_eq!(
        b.c.heartbeat("g", &old, Some("instance-1"), 1, broker, b.now),
        Err(ErrorCode::FencedInstanceId)
    );
    assert_eq!(
        b.c.heartbeat("g", &new, Some("instance-1"), 1, broker, b.now),
        Ok(())
    );
    // The new id has the old one's assignment.
    let synced = b.sync("g", &new, 1, &[]).expect("stable");
    assert_eq!(synced.assignment, Bytes::from_static(b"assigned"));
    // A static member leaves by instance id alone.
    let results =
        b.c.leave_group(
            "g",
            &[(Arc::from(""), Some(Arc::from("instance-1")))],
            broker,
            b.now,
        )
        .expect("served");
    assert_eq!(results, vec![Ok(())]);
    // It was the only member: the rebalance ends at once with nobody.
    assert_eq!(b.state("g"), ClassicGroupState::Empty);
    assert_eq!(b.generation("g"), 2);
}

#[test]
fn a_replaced_static_member_waiting_for_its_assignment_is_fenced() {
    let mut b = Bench::new();
    let a = b.stable_single("g");
    let args = b.args("", Some("s"), range(&["t"]));
    let s_waiter = b.join_with("g", args).expect_err("joins the rebalance");
    b.join("g", &a).expect("completes");
    let s_id = match b.answers().remove(&s_waiter) {
        Some(GroupAnswer::Join(j)) => j.member_id,
        other => panic!("{other:?}"),
    };
    let s_sync = b
        .sync("g", &s_id, 2, &[])
        .expect_err("waits for the leader");
    // The instance restarts meanwhile: its old id's sync is fenced, and since the group is
    // completing a rebalance, another one begins.
    let args = b.args("", Some("s"), range(&["t"]));
    let _rejoin = b.join_with("g", args).expect_err("rebalances");
    match b.answers().remove(&s_sync) {
        Some(GroupAnswer::Sync(s)) => assert_eq!(s.error_code, code(ErrorCode::FencedInstanceId)),
        other => panic!("{other:?}"),
    }
    assert_eq!(b.state("g"), ClassicGroupState::PreparingRebalance);
}

#[test]
fn protocols_must_match_the_group() {
    let mut b = Bench::new();
    let a = b.stable_single("g");
    let mut other_type = b.args("", None, range(&["t"]));
    other_type.protocol_type = Arc::from("connect");
    assert_eq!(
        b.join_with("g", other_type).expect("answered").error_code,
        code(ErrorCode::InconsistentGroupProtocol)
    );
    let no_common = b.args(
        "",
        None,
        vec![(Arc::from("roundrobin"), subscription(&["t"]))],
    );
    assert_eq!(
        b.join_with("g", no_common).expect("answered").error_code,
        code(ErrorCode::InconsistentGroupProtocol)
    );
    // A new group needs a protocol type and protocols.
    let mut empty = b.args("", None, Vec::new());
    empty.protocol_type = Arc::from("consumer");
    assert_eq!(
        b.join_with("h", empty).expect("answered").error_code,
        code(ErrorCode::InconsistentGroupProtocol)
    );
    // SyncGroup checks the protocol name (v5+).
    let broker = b.coordinator("g");
    let args = SyncArgs {
        member_id: &a,
        instance_id: None,
        generation: 1,
        protocol_type: Some("consumer"),
        protocol_name: Some("sticky"),
        assignments: Vec::new(),
    };
    let sync = b.c.sync_group("g", args, broker, WaiterId(1), b.now);
    assert_eq!(
        sync,
        GroupReply::Now(classic::sync_error(ErrorCode::InconsistentGroupProtocol))
    );
    // The most voted common protocol wins.
    let mut b = Bench::new();
    let both = vec![
        (Arc::from("roundrobin"), subscription(&["t"])),
        (Arc::from("range"), subscription(&["t"])),
    ];
    let (id, _) = {
        let first = b
            .join_with("v", b.args("", None, both.clone()))
            .expect("id");
        (first.member_id.clone(), ())
    };
    let waiter = b
        .join_with("v", b.args(&id, None, both))
        .expect_err("waits");
    b.advance(0);
    assert_eq!(
        b.joined(waiter).protocol_name.as_deref(),
        Some("roundrobin")
    );
}

#[test]
fn unknown_members_and_groups_are_refused_as_kafka_refuses_them() {
    let mut b = Bench::new();
    // A member id for a group that does not exist.
    assert_eq!(
        b.join("nope", "someone").expect("answered").error_code,
        code(ErrorCode::UnknownMemberId)
    );
    assert!(b.c.groups().group("nope").is_none());
    assert_eq!(b.heartbeat("nope", "x", 1), Err(ErrorCode::UnknownMemberId));
    assert_eq!(b.leave("nope", "x"), Err(ErrorCode::UnknownMemberId));
    assert_eq!(
        b.sync("nope", "x", 1, &[]).expect("answered").error_code,
        code(ErrorCode::UnknownMemberId)
    );
    let a = b.stable_single("g");
    assert_eq!(
        b.join("g", "stranger").expect("answered").error_code,
        code(ErrorCode::UnknownMemberId)
    );
    assert_eq!(b.heartbeat("g", &a, 7), Err(ErrorCode::IllegalGeneration));
    assert_eq!(
        b.heartbeat("g", "stranger", 1),
        Err(ErrorCode::UnknownMemberId)
    );
    // Another broker is not the coordinator.
    let other = (b.coordinator("g") + 1) % 3;
    assert_eq!(
        b.c.heartbeat("g", &a, None, 1, other, b.now),
        Err(ErrorCode::NotCoordinator)
    );
}

#[test]
fn the_group_size_is_capped() {
    let mut b = Bench::with(GroupConfig {
        max_size: 1,
        ..GroupConfig::default()
    });
    let a = b.stable_single("g");
    // A stable group at its size takes no new member, not even a pending one.
    assert_eq!(
        b.join("g", "").expect("answered").error_code,
        code(ErrorCode::GroupMaxSizeReached)
    );
    assert_eq!(b.state("g"), ClassicGroupState::Stable);
    assert_eq!(b.heartbeat("g", &a, 1), Ok(()));
}

#[test]
fn leaving_rebalances_the_others_and_the_last_one_out_empties_the_group() {
    let mut b = Bench::new();
    let a = b.stable_single("g");
    let (c, waiting) = b.join_new("g");
    let c_waiter = waiting.expect_err("waits");
    // `a` leaves instead of rejoining: the join phase completes with `c` alone.
    assert_eq!(b.leave("g", &a), Ok(()));
    let answer = b.joined(c_waiter);
    assert_eq!(
        (answer.generation_id, answer.leader.clone()),
        (2, c.clone())
    );
    assert_eq!(b.leave("g", &a), Err(ErrorCode::UnknownMemberId));
    b.sync("g", &c, 2, &[(&c, "all")]).expect("leader");
    assert_eq!(b.leave("g", &c), Ok(()));
    assert_eq!(b.state("g"), ClassicGroupState::Empty);
    assert_eq!(b.generation("g"), 3);
}

#[test]
fn offset_commits_check_the_generation_as_kafka_does() {
    let mut b = Bench::new();
    let broker = b.coordinator("g");
    let now = b.now;
    // Unknown group: generation -1 creates a simple group; otherwise refused by version.
    assert_eq!(
        b.c.validate_offset_commit("s", "", None, -1, 8, b.coordinator("s"), now),
        Ok(())
    );
    let simple =
        b.c.groups()
            .group("s")
            .and_then(Group::as_classic)
            .expect("simple group");
    assert!(simple.is_simple());
    assert_eq!(
        b.c.validate_offset_commit("u", "m", None, 1, 8, b.coordinator("u"), now),
        Err(ErrorCode::IllegalGeneration)
    );
    assert_eq!(
        b.c.validate_offset_commit("u", "m", None, 1, 9, b.coordinator("u"), now),
        Err(ErrorCode::GroupIdNotFound)
    );
    // A group in a rebalance: REBALANCE_IN_PROGRESS while completing it.
    let (id, waiting) = b.join_new("g");
    let waiter = waiting.expect_err("waits");
    assert_eq!(
        b.c.validate_offset_commit("g", &id, None, 5, 8, broker, now),
        Err(ErrorCode::IllegalGeneration)
    );
    // Preparing a rebalance, the current generation (0) still commits.
    assert_eq!(
        b.c.validate_offset_commit("g", &id, None, 0, 8, broker, now),
        Ok(())
    );
    b.advance(0);
    b.joined(waiter);
    let now = b.now;
    assert_eq!(
        b.c.validate_offset_commit("g", &id, None, 1, 8, broker, now),
        Err(ErrorCode::RebalanceInProgress)
    );
    // ...but a transactional commit is not held back by the state (KIP-447).
    assert_eq!(
        b.c.validate_txn_offset_commit("g", &id, None, 1, broker, now),
        Ok(())
    );
    assert_eq!(
        b.c.validate_txn_offset_commit("g", &id, None, 0, broker, now),
        Err(ErrorCode::IllegalGeneration)
    );
    b.sync("g", &id, 1, &[]).expect("leader");
    assert_eq!(
        b.c.validate_offset_commit("g", &id, None, 1, 8, broker, now),
        Ok(())
    );
    assert_eq!(
        b.c.validate_offset_commit("g", &id, None, 0, 8, broker, now),
        Err(ErrorCode::IllegalGeneration)
    );
    assert_eq!(
        b.c.validate_offset_commit("g", "other", None, 1, 8, broker, now),
        Err(ErrorCode::UnknownMemberId)
    );
    // Generation -1 without a member id: only for an empty group.
    assert_eq!(
        b.c.validate_offset_commit("g", "", None, -1, 8, broker, now),
        Err(ErrorCode::UnknownMemberId)
    );
}

#[test]
fn a_commit_keeps_a_members_session() {
    let mut b = Bench::new();
    let a = b.stable_single("g");
    let broker = b.coordinator("g");
    for _ in 0..5 {
        b.advance(6_000);
        let now = b.now;
        assert_eq!(
            b.c.validate_offset_commit("g", &a, None, 1, 8, broker, now),
            Ok(())
        );
    }
    assert_eq!(b.state("g"), ClassicGroupState::Stable);
}

#[test]
fn groups_are_deleted_only_when_empty_and_take_their_offsets() {
    let mut b = Bench::new();
    let a = b.stable_single("g");
    let broker = b.coordinator("g");
    b.c.offsets_mut()
        .commit("g", "t", 0, crate::cluster::OffsetAndMetadata::new(5, 0))
        .expect("commit");
    assert_eq!(
        b.c.delete_group("g", broker, b.now),
        Err(ErrorCode::NonEmptyGroup)
    );
    assert_eq!(
        b.c.delete_group("none", b.coordinator("none"), b.now),
        Err(ErrorCode::GroupIdNotFound)
    );
    b.leave("g", &a).expect("left");
    assert_eq!(b.c.delete_group("g", broker, b.now), Ok(()));
    assert!(b.c.groups().group("g").is_none());
    assert!(!b.c.offsets().has_offsets("g"));
    assert_eq!(b.c.groups().timers(), 0);
}

#[test]
fn offset_deletion_is_refused_for_subscribed_topics_of_a_live_consumer_group() {
    let mut b = Bench::new();
    let a = b.stable_single("g");
    let broker = b.coordinator("g");
    assert_eq!(b.c.validate_offset_delete("g", broker, b.now), Ok(()));
    assert!(b.c.group_subscribed_to("g", "t"));
    assert!(!b.c.group_subscribed_to("g", "other"));
    b.leave("g", &a).expect("left");
    assert!(
        !b.c.group_subscribed_to("g", "t"),
        "an empty group subscribes to nothing"
    );
    assert_eq!(
        b.c.validate_offset_delete("none", b.coordinator("none"), b.now),
        Err(ErrorCode::GroupIdNotFound)
    );
}

#[test]
fn the_initial_rebalance_delay_gathers_members_into_one_generation() {
    let mut b = Bench::with(GroupConfig {
        initial_rebalance_delay: Duration::from_secs(3),
        ..GroupConfig::default()
    });
    let (_a, first) = b.join_new("g");
    let first = first.expect_err("waits");
    b.advance(2_000);
    let (_c, second) = b.join_new("g");
    let second = second.expect_err("waits");
    b.advance(1_000);
    // A member joined during the delay: extended by another delay.
    assert!(b.answers().is_empty());
    b.advance(3_000);
    let answers = b.answers();
    for waiter in [first, second] {
        match answers.get(&waiter) {
            Some(GroupAnswer::Join(j)) => assert_eq!(j.generation_id, 1),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_coordinator_move_answers_waiting_joins_not_coordinator_and_keeps_the_last_generation() {
    let mut b = Bench::new();
    let a = b.stable_single("g");
    let (_c, waiting) = b.join_new("g");
    let c_waiter = waiting.expect_err("waits");
    let old = b.coordinator("g");
    let new = (old + 1) % 3;
    b.c.move_coordinator(CoordinatorType::Group, "g", new)
        .expect("moved");
    match b.answers().remove(&c_waiter) {
        Some(GroupAnswer::Join(j)) => assert_eq!(j.error_code, code(ErrorCode::NotCoordinator)),
        other => panic!("{other:?}"),
    }
    // Loaded as last written: stable, generation 1, `a` with its assignment.
    assert_eq!(b.state("g"), ClassicGroupState::Stable);
    assert_eq!(b.generation("g"), 1);
    assert_eq!(
        b.c.heartbeat("g", &a, None, 1, old, b.now),
        Err(ErrorCode::NotCoordinator)
    );
    assert_eq!(b.heartbeat("g", &a, 1), Ok(()));
    assert_eq!(
        b.sync("g", &a, 1, &[]).expect("stable").assignment,
        Bytes::from_static(b"a1")
    );
    // Sessions restarted at the move: 10 s after it, a silent member is gone (and with it
    // the group's last member).
    b.advance(9_999);
    assert_eq!(b.state("g"), ClassicGroupState::Stable);
    b.advance(10_000);
    assert_eq!(b.state("g"), ClassicGroupState::Empty);
}

#[test]
fn a_coordinator_without_a_leader_runs_no_timers_and_restarts_sessions_when_loaded() {
    let mut b = Bench::new();
    let a = b.stable_single("g");
    let leader = b.coordinator("g");
    let partition = b.c.coordinator_partition(CoordinatorType::Group, "g");
    let replicas =
        b.c.partition(OFFSETS_TOPIC, partition)
            .map(|p| p.replicas().to_vec())
            .unwrap_or_default();
    for &r in &replicas {
        b.c.set_broker_up(r, false);
    }
    assert_eq!(b.coordinator("g"), -1);
    b.advance(60_000);
    assert_eq!(
        b.state("g"),
        ClassicGroupState::Stable,
        "no coordinator, no expiry"
    );
    // The last in-sync replica comes back and leads.
    let last = replicas.last().copied().unwrap_or(leader);
    b.c.set_broker_up(last, true);
    assert_eq!(b.coordinator("g"), last);
    b.advance(5_000);
    assert_eq!(b.heartbeat("g", &a, 1), Ok(()));
    b.advance(10_000);
    assert_eq!(b.state("g"), ClassicGroupState::Empty);
}

#[test]
fn subscriptions_are_read_as_version_zero_and_garbage_is_refused() {
    assert_eq!(
        classic::subscription_topics(&subscription(&["a", "bb"])),
        Some(vec![Arc::from("a"), Arc::from("bb")])
    );
    assert_eq!(classic::subscription_topics(&[0, 0]), None);
    assert_eq!(
        classic::subscription_topics(&[0, 0, 0x7f, 0xff, 0xff, 0xff]),
        None
    );
    assert_eq!(
        classic::subscription_topics(&[0, 0, 0, 0, 0, 1, 0, 5, b'a']),
        None
    );
}

/// A group of two members (leader `l`, follower `f`) brought into `state`.
fn in_state(state: ClassicGroupState) -> (Bench, Arc<str>, Arc<str>) {
    let mut b = Bench::new();
    let l = b.stable_single("g");
    let (f, waiting) = b.join_new("g");
    waiting.expect_err("waits for the leader");
    b.join("g", &l).expect("completes the join phase");
    b.answers();
    assert_eq!(b.state("g"), ClassicGroupState::CompletingRebalance);
    match state {
        ClassicGroupState::CompletingRebalance => {}
        ClassicGroupState::Stable => {
            b.sync("g", &l, 2, &[(&l, "l"), (&f, "f")]).expect("leader");
        }
        ClassicGroupState::PreparingRebalance => {
            b.sync("g", &l, 2, &[(&l, "l"), (&f, "f")]).expect("leader");
            let (_, third) = b.join_new("g");
            third.expect_err("waits for the others");
        }
        ClassicGroupState::Empty => {
            b.sync("g", &l, 2, &[(&l, "l"), (&f, "f")]).expect("leader");
            b.leave("g", &l).expect("leaves");
            b.leave("g", &f).expect("leaves");
        }
        ClassicGroupState::Dead => unreachable!("not a state a group is kept in"),
    }
    b.answers();
    assert_eq!(b.state("g"), state);
    (b, l, f)
}

#[test]
fn every_request_in_every_state_is_answered_as_kafka_answers_it() {
    use ClassicGroupState::*;
    const WAITS: i16 = i16::MIN;
    let none = 0;
    let rip = code(ErrorCode::RebalanceInProgress);
    let unknown = code(ErrorCode::UnknownMemberId);
    // state, then for the follower at the group's generation: JoinGroup with the same
    // protocols, SyncGroup, Heartbeat, OffsetCommit; then the leader's JoinGroup.
    let table = [
        (Empty, [unknown, unknown, unknown, unknown, unknown]),
        (PreparingRebalance, [WAITS, rip, rip, none, WAITS]),
        (CompletingRebalance, [none, WAITS, none, rip, none]),
        (Stable, [none, none, none, none, WAITS]),
    ];
    for (state, expected) in table {
        let answered = |r: Result<i16, WaiterId>| r.unwrap_or(WAITS);
        let outcome = |r: Result<JoinOutcome, WaiterId>| answered(r.map(|j| j.error_code));
        let (mut b, l, f) = in_state(state);
        let generation = b.generation("g");
        let join = outcome(b.join("g", &f));
        let (mut b, _, f) = in_state(state);
        let sync = answered(b.sync("g", &f, generation, &[]).map(|s| s.error_code));
        let (mut b, _, f) = in_state(state);
        let heartbeat = b.heartbeat("g", &f, generation).err().map_or(0, code);
        let (mut b, _, f) = in_state(state);
        let broker = b.coordinator("g");
        let now = b.now;
        let commit =
            b.c.validate_offset_commit("g", &f, None, generation, 8, broker, now)
                .err()
                .map_or(0, code);
        let (mut b, _, _) = in_state(state);
        let leader_join = outcome(b.join("g", &l));
        assert_eq!(
            [join, sync, heartbeat, commit, leader_join],
            expected,
            "{state:?}"
        );
    }
    // In Stable, a leader's JoinGroup (or a changed subscription) starts a rebalance.
    let (mut b, l, _) = in_state(Stable);
    b.join("g", &l).expect_err("waits for the follower");
    assert_eq!(b.state("g"), PreparingRebalance);
    let (mut b, _, f) = in_state(Stable);
    let changed = b.args(&f, None, range(&["t", "u"]));
    b.join_with("g", changed).expect_err("waits");
    assert_eq!(b.state("g"), PreparingRebalance);
    // In CompletingRebalance, a changed subscription aborts the sync phase: waiting syncs
    // are told REBALANCE_IN_PROGRESS.
    let (mut b, l, f) = in_state(CompletingRebalance);
    let waiting = b.sync("g", &f, 2, &[]).expect_err("waits for the leader");
    let changed = b.args(&l, None, range(&["u"]));
    b.join_with("g", changed).expect_err("rebalances");
    match b.answers().remove(&waiting) {
        Some(GroupAnswer::Sync(s)) => assert_eq!(s.error_code, rip),
        other => panic!("{other:?}"),
    }
    assert_eq!(b.state("g"), PreparingRebalance);
}

#[test]
fn while_a_new_coordinator_loads_heartbeats_pass_and_sessions_wait_for_it() {
    let mut b = Bench::configured(ClusterConfig {
        coordinators: crate::cluster::CoordinatorConfig {
            load_delay: Duration::from_secs(5),
            ..Default::default()
        },
        ..ClusterConfig::default()
    });
    let a = b.stable_single("g");
    let new = (b.coordinator("g") + 1) % 3;
    b.c.observe_time(b.now);
    b.c.move_coordinator(CoordinatorType::Group, "g", new)
        .expect("moved");
    // Kafka answers a heartbeat "blindly" while loading; other requests wait for the load.
    assert_eq!(b.heartbeat("g", &a, 1), Ok(()));
    assert_eq!(
        b.sync("g", &a, 1, &[]).expect("answered").error_code,
        code(ErrorCode::CoordinatorLoadInProgress)
    );
    let broker = b.coordinator("g");
    assert!(matches!(
        b.c.coordinated_groups(broker, &[], &[], b.now),
        Err(ErrorCode::CoordinatorLoadInProgress)
    ));
    // The session starts once loaded: 5 s + 10 s after the move, not 10 s.
    b.advance(14_999);
    assert_eq!(b.state("g"), ClassicGroupState::Stable);
    b.advance(1);
    assert_eq!(b.state("g"), ClassicGroupState::Empty);
    assert_eq!(
        b.c.coordinated_groups(broker, &[], &[], b.now)
            .map(|g| g.len()),
        Ok(1)
    );
}

#[test]
fn deleting_a_topic_deletes_its_committed_offsets() {
    let mut b = Bench::new();
    b.c.create_topic("t", 2, Default::default()).expect("topic");
    let offsets = b.c.offsets_mut();
    offsets
        .commit("g", "t", 1, crate::cluster::OffsetAndMetadata::new(5, 0))
        .expect("commit");
    b.c.delete_topic("t").expect("deleted");
    assert!(!b.c.offsets().has_offsets("g"));
}

#[test]
fn a_rebalance_timeout_of_zero_does_not_spin_when_nobody_rejoins() {
    let mut b = Bench::new();
    let args = b.args("", Some("s"), range(&["t"]));
    let waiter = b.join_with("g", args).expect_err("joins");
    b.advance(0);
    let first = b.joined(waiter).member_id;
    b.sync("g", &first, 1, &[]).expect("leader");
    // The static member restarts with a rebalance timeout of 0 (same protocol: no
    // rebalance), then keeps heartbeating but never rejoins, so that no join phase can end
    // with it.
    let mut args = b.args("", Some("s"), range(&["t"]));
    args.rebalance_timeout_ms = 0;
    let s = b.join_with("g", args).expect("replaced at once").member_id;
    let (c, waiting) = b.join_new("g");
    waiting.expect_err("a rebalance, waiting for the static member");
    b.leave("g", &c).expect("left");
    b.answers();
    assert_eq!(b.state("g"), ClassicGroupState::PreparingRebalance);
    // Past the first join timer (30 s), the phase is tried again every millisecond; every
    // step ends.
    for i in 0..20 {
        b.advance(5_000);
        assert_eq!(
            b.heartbeat("g", &s, 1),
            Err(ErrorCode::RebalanceInProgress),
            "step {i}"
        );
    }
    assert_eq!(b.state("g"), ClassicGroupState::PreparingRebalance);
    assert!(b.c.groups().timers() <= 2);
}
