//! KIP-848 consumer groups against Kafka's behaviour (`GroupMetadataManagerTest`'s
//! consumer-group cases): epochs, reconciliation (a partition moves only after its owner
//! revoked it), the assignors, static members, leaves, sessions and rebalance timeouts on
//! cluster time, subscriptions by name and regex, mixed groups, offsets with member epochs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use franzy::proto::ErrorCode;
use uuid::Uuid;

use super::assignors::Assignment;
use super::consumer::{decode_assignment, encode_assignment};
use super::*;
use crate::cluster::ClusterConfig;

const GROUP: &str = "g";

struct Bench {
    c: ClusterState,
    now: Time,
}

/// One heartbeat's fields, with builder-style setters.
#[derive(Clone)]
struct Hb {
    args: HeartbeatArgs,
    version: i16,
}

impl Hb {
    fn join(member: &str, topics: &[&str]) -> Self {
        Self {
            args: HeartbeatArgs {
                member_id: Arc::from(member),
                member_epoch: 0,
                instance_id: None,
                rack_id: None,
                rebalance_timeout_ms: 30_000,
                subscribed_topic_names: Some(topics.iter().map(|t| Arc::from(*t)).collect()),
                subscribed_topic_regex: None,
                server_assignor: None,
                owned: Some(Assignment::new()),
                client_id: Arc::from("client"),
                client_host: Arc::from("/127.0.0.1"),
            },
            version: 1,
        }
    }

    /// A plain heartbeat: epoch and owned partitions only.
    fn beat(member: &str, epoch: i32, owned: Option<Assignment>) -> Self {
        let mut hb = Self::join(member, &[]);
        hb.args.member_epoch = epoch;
        hb.args.rebalance_timeout_ms = -1;
        hb.args.subscribed_topic_names = None;
        hb.args.owned = owned;
        hb
    }

    fn instance(mut self, id: &str) -> Self {
        self.args.instance_id = Some(Arc::from(id));
        self
    }
}

impl Bench {
    fn new() -> Self {
        Self::with(GroupConfig::default())
    }

    fn with(groups: GroupConfig) -> Self {
        let mut c = ClusterState::new(ClusterConfig {
            groups,
            ..ClusterConfig::default()
        });
        c.create_internal_topic(CoordinatorType::Group)
            .expect("offsets topic");
        c.create_topic("t", 4, BTreeMap::new()).expect("topic t");
        Self { c, now: Time::ZERO }
    }

    fn coordinator(&self) -> i32 {
        let partition = self.c.coordinator_partition(CoordinatorType::Group, GROUP);
        self.c
            .partition(OFFSETS_TOPIC, partition)
            .map_or(-1, |p| p.leader())
    }

    fn send(&mut self, hb: Hb) -> Result<HeartbeatOutcome, GroupError> {
        let broker = self.coordinator();
        self.c
            .consumer_group_heartbeat(GROUP, hb.args, hb.version, broker, self.now)
    }

    fn code(&mut self, hb: Hb) -> ErrorCode {
        match self.send(hb) {
            Ok(outcome) => panic!("expected an error, got {outcome:?}"),
            Err(e) => e.code,
        }
    }

    fn topic_id(&self, name: &str) -> Uuid {
        self.c.topic(name).expect("topic").id()
    }

    fn group(&self) -> &ConsumerGroup {
        self.c
            .groups()
            .group(GROUP)
            .and_then(Group::as_consumer)
            .expect("a consumer group")
    }

    fn advance(&mut self, ms: u64) {
        self.now = self.now + Duration::from_millis(ms);
        self.c.handle_timeout(self.now);
    }

    /// No partition is held (assigned or pending revocation) by two members.
    fn assert_exclusive(&self) {
        let mut seen = BTreeSet::new();
        for m in self.group().members() {
            for (t, ps) in m.assigned.iter().chain(&m.pending_revocation) {
                for p in ps {
                    assert!(seen.insert((*t, *p)), "partition {t}/{p} held twice");
                }
            }
        }
    }
}

fn count(a: &Assignment) -> usize {
    a.values().map(BTreeSet::len).sum()
}

#[test]
fn a_first_member_gets_every_partition_at_epoch_one() {
    let mut b = Bench::new();
    let out = b.send(Hb::join("a", &["t"])).expect("joined");
    assert_eq!(out.member_epoch, 1);
    assert_eq!(out.heartbeat_interval_ms, 5_000);
    let t = b.topic_id("t");
    assert_eq!(out.assignment, Some([(t, [0, 1, 2, 3].into())].into()));
    assert_eq!(b.group().group_epoch(), 1);
    assert_eq!(b.group().state(), ConsumerGroupState::Stable);
    // A heartbeat with nothing new carries no assignment.
    let out = b.send(Hb::beat("a", 1, None)).expect("heartbeat");
    assert_eq!((out.member_epoch, out.assignment), (1, None));
}

#[test]
fn a_partition_moves_only_after_its_owner_revoked_it() {
    let mut b = Bench::new();
    let t = b.topic_id("t");
    let a = b.send(Hb::join("a", &["t"])).expect("a joins");
    let all = a.assignment.expect("assignment");
    // b joins: epoch 2, but a still holds everything, so b waits with nothing.
    let joined = b.send(Hb::join("b", &["t"])).expect("b joins");
    assert_eq!(joined.member_epoch, 2);
    assert_eq!(joined.assignment, Some(Assignment::new()));
    assert_eq!(b.group().state(), ConsumerGroupState::Reconciling);
    assert_eq!(
        b.group().member("b").expect("b").state,
        MemberState::UnreleasedPartitions
    );
    b.assert_exclusive();
    // a is asked to revoke two: it stays at epoch 1 with the two it keeps.
    let asked = b
        .send(Hb::beat("a", 1, Some(all.clone())))
        .expect("a heartbeats");
    assert_eq!(asked.member_epoch, 1);
    let kept = asked.assignment.expect("the partitions a keeps");
    assert_eq!(count(&kept), 2);
    b.assert_exclusive();
    // b still gets nothing while a has not revoked.
    let waiting = b
        .send(Hb::beat("b", 2, Some(Assignment::new())))
        .expect("b");
    assert_eq!(waiting.assignment, None);
    // Still owning them (a heartbeat that lists them), a stays where it is.
    let still = b.send(Hb::beat("a", 1, Some(all))).expect("a");
    assert_eq!((still.member_epoch, still.assignment), (1, None));
    // a revokes: epoch 2, stable.
    let done = b
        .send(Hb::beat("a", 1, Some(kept.clone())))
        .expect("a revoked");
    assert_eq!(done.member_epoch, 2);
    // b now gets the other two.
    let got = b
        .send(Hb::beat("b", 2, Some(Assignment::new())))
        .expect("b");
    let theirs = got.assignment.expect("b's partitions");
    assert_eq!(count(&theirs), 2);
    let mut union: BTreeSet<i32> = kept[&t].clone();
    union.extend(&theirs[&t]);
    assert_eq!(union, [0, 1, 2, 3].into());
    b.assert_exclusive();
    assert_eq!(b.group().state(), ConsumerGroupState::Stable);
}

#[test]
fn epochs_the_member_cannot_have_are_fenced_or_refused() {
    let mut b = Bench::new();
    b.send(Hb::join("a", &["t"])).expect("joined");
    assert_eq!(b.code(Hb::beat("a", 2, None)), ErrorCode::FencedMemberEpoch);
    assert_eq!(
        b.code(Hb::beat("a", i32::MAX, None)),
        ErrorCode::FencedMemberEpoch
    );
    assert_eq!(b.code(Hb::beat("zz", 1, None)), ErrorCode::UnknownMemberId);
    for epoch in [-3, i32::MIN] {
        let err = b.send(Hb::beat("a", epoch, None)).expect_err("refused");
        assert_eq!(err.code, ErrorCode::InvalidRequest);
        assert_eq!(err.message.as_deref(), Some("MemberEpoch is invalid."));
    }
    // A join must carry its rebalance timeout, a subscription and no owned partitions.
    let mut no_timeout = Hb::join("c", &["t"]);
    no_timeout.args.rebalance_timeout_ms = -1;
    assert_eq!(b.code(no_timeout), ErrorCode::InvalidRequest);
    let mut owning = Hb::join("c", &["t"]);
    owning.args.owned = Some([(Uuid::nil(), [0].into())].into());
    assert_eq!(b.code(owning), ErrorCode::InvalidRequest);
    let mut nothing = Hb::join("c", &[]);
    nothing.args.subscribed_topic_names = None;
    assert_eq!(b.code(nothing), ErrorCode::InvalidRequest);
    // From v1 the member makes its id.
    assert_eq!(b.code(Hb::join("", &["t"])), ErrorCode::InvalidRequest);
    let mut v0 = Hb::join("", &["t"]);
    v0.version = 0;
    let made = b.send(v0).expect("v0 joins without an id");
    assert_eq!(made.member_id.len(), 36, "a UUID: {}", made.member_id);
    let mut assignor = Hb::join("c", &["t"]);
    assignor.args.server_assignor = Some(Arc::from("sticky"));
    assert_eq!(b.code(assignor), ErrorCode::UnsupportedAssignor);
    let mut empty_group = Hb::join("c", &["t"]);
    empty_group.args.instance_id = Some(Arc::from(""));
    assert_eq!(b.code(empty_group), ErrorCode::InvalidRequest);
    // No group for a member that is not joining.
    let partition = b.c.coordinator_partition(CoordinatorType::Group, "other");
    let other =
        b.c.partition(OFFSETS_TOPIC, partition)
            .map_or(-1, |p| p.leader());
    let err =
        b.c.consumer_group_heartbeat("other", Hb::beat("a", 1, None).args, 1, other, b.now)
            .expect_err("no group");
    assert_eq!(err.code, ErrorCode::GroupIdNotFound);
    // The wrong broker.
    let broker = b.coordinator();
    let err =
        b.c.consumer_group_heartbeat(GROUP, Hb::beat("a", 1, None).args, 1, broker + 1, b.now)
            .expect_err("not the coordinator");
    assert_eq!(err.code, ErrorCode::NotCoordinator);
}

#[test]
fn a_lost_answer_is_forgiven_with_the_previous_epoch_and_a_subset() {
    let mut b = Bench::new();
    let t = b.topic_id("t");
    b.send(Hb::join("a", &["t"])).expect("joined");
    // Epoch 1, previous 0: a heartbeat at epoch 0 other than a join is a rejoin here.
    b.send(Hb::join("b", &["t"])).expect("b joins");
    let kept = b
        .send(Hb::beat("a", 1, Some([(t, [0, 1, 2, 3].into())].into())))
        .expect("asked to revoke")
        .assignment
        .expect("kept");
    b.send(Hb::beat("a", 1, Some(kept.clone())))
        .expect("epoch 2");
    // The answer with epoch 2 was lost: a comes back at 1 with a subset, accepted.
    let again = b.send(Hb::beat("a", 1, Some(kept))).expect("forgiven");
    assert_eq!(again.member_epoch, 2);
    // Not with partitions it does not have.
    let err = b
        .send(Hb::beat("a", 1, Some([(t, [0, 1, 2, 3].into())].into())))
        .expect_err("not a subset");
    assert_eq!(err.code, ErrorCode::FencedMemberEpoch);
}

#[test]
fn a_full_group_refuses_new_members() {
    let mut b = Bench::with(GroupConfig {
        consumer_max_size: 1,
        ..GroupConfig::default()
    });
    b.send(Hb::join("a", &["t"])).expect("joined");
    assert_eq!(
        b.code(Hb::join("b", &["t"])),
        ErrorCode::GroupMaxSizeReached
    );
    // The member already in is still served.
    b.send(Hb::beat("a", 1, None)).expect("member a");
}

#[test]
fn leaving_removes_the_member_and_bumps_the_group_epoch() {
    let mut b = Bench::new();
    b.send(Hb::join("a", &["t"])).expect("a");
    b.send(Hb::join("b", &["t"])).expect("b");
    let epoch = b.group().group_epoch();
    let left = b.send(Hb::beat("b", -1, None)).expect("b leaves");
    assert_eq!((left.member_id.as_ref(), left.member_epoch), ("b", -1));
    assert_eq!(b.group().group_epoch(), epoch + 1);
    assert!(b.group().member("b").is_none());
    assert_eq!(b.code(Hb::beat("b", -1, None)), ErrorCode::UnknownMemberId);
    b.send(Hb::beat("a", -1, None)).expect("a leaves");
    assert_eq!(b.group().state(), ConsumerGroupState::Empty);
}

#[test]
fn a_static_member_leaves_for_a_while_and_its_successor_takes_its_partitions() {
    let mut b = Bench::new();
    let first = b
        .send(Hb::join("a1", &["t"]).instance("i"))
        .expect("a1 joins");
    let epoch = b.group().group_epoch();
    // Another member with the same instance id is refused while a1 is there.
    assert_eq!(
        b.code(Hb::join("a2", &["t"]).instance("i")),
        ErrorCode::UnreleasedInstanceId
    );
    assert_eq!(
        b.code(Hb::beat("a2", 1, None).instance("i")),
        ErrorCode::FencedInstanceId
    );
    // -2 without an instance id is invalid; with it, a temporary leave.
    assert_eq!(b.code(Hb::beat("a1", -2, None)), ErrorCode::InvalidRequest);
    let left = b
        .send(Hb::beat("a1", -2, None).instance("i"))
        .expect("temporary leave");
    assert_eq!(left.member_epoch, -2);
    assert_eq!(b.group().group_epoch(), epoch, "no rebalance");
    assert_eq!(b.group().member("a1").expect("kept").member_epoch, -2);
    // Its successor gets what it had, with no new group epoch.
    let back = b
        .send(Hb::join("a2", &["t"]).instance("i"))
        .expect("a2 replaces a1");
    assert_eq!(back.assignment, first.assignment);
    assert_eq!(back.member_epoch, epoch);
    assert!(b.group().member("a1").is_none());
    assert_eq!(b.group().group_epoch(), epoch);
    // -1 with the instance id leaves for good.
    b.send(Hb::beat("a2", -1, None).instance("i"))
        .expect("leaves");
    assert!(b.group().is_empty());
}

#[test]
fn a_temporarily_departed_static_member_goes_when_its_session_ends() {
    let mut b = Bench::new();
    b.send(Hb::join("a1", &["t"]).instance("i")).expect("a1");
    b.send(Hb::beat("a1", -2, None).instance("i"))
        .expect("away");
    b.advance(44_999);
    assert!(b.group().member("a1").is_some());
    b.advance(1);
    assert!(b.group().member("a1").is_none(), "session timed out");
}

#[test]
fn a_silent_member_is_fenced_when_its_session_ends() {
    let mut b = Bench::new();
    b.send(Hb::join("a", &["t"])).expect("a");
    b.send(Hb::join("b", &["t"])).expect("b");
    b.advance(40_000);
    b.send(Hb::beat("a", 1, None)).expect("a keeps its session");
    b.advance(5_000);
    assert!(b.group().member("b").is_none(), "b fenced");
    assert!(b.group().member("a").is_some());
    // a is given everything back once b is gone: first what was never revoked, then
    // (the next heartbeat) the two it had been revoking, once released.
    let t = b.topic_id("t");
    let owned = b.group().member("a").expect("a").assigned.clone();
    let first = b.send(Hb::beat("a", 1, Some(owned))).expect("a");
    assert_eq!(
        b.group().member("a").expect("a").state,
        MemberState::UnreleasedPartitions
    );
    let owned = b.group().member("a").expect("a").assigned.clone();
    let out = b
        .send(Hb::beat("a", first.member_epoch, Some(owned)))
        .expect("a");
    let a = b.group().member("a").expect("a");
    assert_eq!(a.assigned.get(&t).map(BTreeSet::len), Some(4));
    assert_eq!(out.member_epoch, b.group().group_epoch());
}

#[test]
fn a_member_that_does_not_revoke_in_time_is_fenced() {
    let mut b = Bench::new();
    let all = b
        .send(Hb::join("a", &["t"]))
        .expect("a")
        .assignment
        .expect("all");
    b.send(Hb::join("b", &["t"])).expect("b");
    b.send(Hb::beat("a", 1, Some(all.clone())))
        .expect("asked to revoke");
    assert_eq!(
        b.group().member("a").expect("a").state,
        MemberState::UnrevokedPartitions
    );
    // a keeps heartbeating (its session lives) but never revokes.
    for _ in 0..7 {
        b.advance(4_000);
        let _ = b.send(Hb::beat("a", 1, Some(all.clone())));
    }
    b.advance(3_000);
    assert!(
        b.group().member("a").is_none(),
        "fenced past its rebalance timeout"
    );
    assert_eq!(b.code(Hb::beat("a", 1, None)), ErrorCode::UnknownMemberId);
}

#[test]
fn a_rejoin_with_epoch_zero_starts_over() {
    let mut b = Bench::new();
    b.send(Hb::join("a", &["t"])).expect("a");
    let again = b.send(Hb::join("a", &["t"])).expect("a rejoins");
    assert_eq!(again.member_epoch, 1);
    assert_eq!(again.assignment.as_ref().map(count), Some(4));
}

#[test]
fn regex_subscriptions_follow_topics_as_they_come() {
    let mut b = Bench::new();
    b.c.create_topic("orders", 2, BTreeMap::new())
        .expect("orders");
    let mut join = Hb::join("a", &[]);
    join.args.subscribed_topic_names = None;
    join.args.subscribed_topic_regex = Some(Arc::from("t|ord.*"));
    let out = b.send(join).expect("joined");
    assert_eq!(out.assignment.as_ref().map(count), Some(6));
    assert!(b.group().is_subscribed_to("orders"));
    assert!(!b.group().is_subscribed_to(OFFSETS_TOPIC));
    let epoch = b.group().group_epoch();
    b.c.create_topic("orders-eu", 3, BTreeMap::new())
        .expect("orders-eu");
    let owned = b.group().member("a").expect("a").assigned.clone();
    let out = b
        .send(Hb::beat("a", epoch, Some(owned)))
        .expect("heartbeat");
    assert_eq!(
        b.group().group_epoch(),
        epoch + 1,
        "the new topic bumps the epoch"
    );
    assert_eq!(out.assignment.as_ref().map(count), Some(9));
    // Bad regexes are refused, whatever their shape.
    for bad in ["(", "a)(b", "[z-a]", "a{99999999}", &"(".repeat(100_000)] {
        let mut join = Hb::join("b", &[]);
        join.args.subscribed_topic_names = None;
        join.args.subscribed_topic_regex = Some(Arc::from(bad));
        assert_eq!(
            b.code(join),
            ErrorCode::InvalidRegularExpression,
            "{}",
            &bad[..bad.len().min(20)]
        );
    }
}

#[test]
fn the_range_assignor_is_chosen_by_the_members() {
    let mut b = Bench::new();
    let t = b.topic_id("t");
    let mut a = Hb::join("a", &["t"]);
    a.args.server_assignor = Some(Arc::from("range"));
    b.send(a).expect("a");
    let mut c = Hb::join("c", &["t"]);
    c.args.server_assignor = Some(Arc::from("range"));
    b.send(c).expect("c");
    assert_eq!(&*b.group().assignor_name(b.c.groups().config()), "range");
    assert_eq!(b.group().target_of("a"), Some(&[(t, [0, 1].into())].into()));
    assert_eq!(b.group().target_of("c"), Some(&[(t, [2, 3].into())].into()));
}

#[test]
fn partitions_of_a_grown_topic_are_assigned() {
    let mut b = Bench::new();
    b.send(Hb::join("a", &["t"])).expect("a");
    b.c.create_partitions("t", 6, None, false).expect("grown");
    let owned = b.group().member("a").expect("a").assigned.clone();
    let out = b.send(Hb::beat("a", 1, Some(owned))).expect("a");
    assert_eq!(out.member_epoch, 2);
    assert_eq!(out.assignment.as_ref().map(count), Some(6));
}

/// A consumer protocol subscription (v1: topics, no user data, owned partitions).
fn subscription(topics: &[&str], owned: &[(&str, &[i32])]) -> bytes::Bytes {
    let mut out = Vec::new();
    out.extend_from_slice(&1i16.to_be_bytes());
    out.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for t in topics {
        out.extend_from_slice(&(t.len() as i16).to_be_bytes());
        out.extend_from_slice(t.as_bytes());
    }
    out.extend_from_slice(&(-1i32).to_be_bytes());
    out.extend_from_slice(&(owned.len() as i32).to_be_bytes());
    for (t, ps) in owned {
        out.extend_from_slice(&(t.len() as i16).to_be_bytes());
        out.extend_from_slice(t.as_bytes());
        out.extend_from_slice(&(ps.len() as i32).to_be_bytes());
        for p in *ps {
            out.extend_from_slice(&p.to_be_bytes());
        }
    }
    bytes::Bytes::from(out)
}

fn classic_join(member: &str, metadata: bytes::Bytes) -> JoinArgs {
    JoinArgs {
        member_id: Arc::from(member),
        instance_id: None,
        client_id: Arc::from("c"),
        client_host: Arc::from("h"),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 10_000,
        protocol_type: Arc::from("consumer"),
        protocols: vec![(Arc::from("range"), metadata)],
        require_known_member_id: false,
        supports_skip_assignment: false,
    }
}

fn joined(reply: GroupReply<JoinOutcome>) -> JoinOutcome {
    match reply {
        GroupReply::Now(out) => out,
        GroupReply::Wait(_) => panic!("a JoinGroup to a consumer group is answered at once"),
    }
}

#[test]
fn empty_groups_change_protocol_and_other_protocol_types_are_refused() {
    let mut b = Bench::new();
    let broker = b.coordinator();
    // Offsets only (a "simple" classic group): the heartbeat makes it a consumer group.
    b.c.validate_offset_commit(GROUP, "", None, -1, 9, broker, b.now)
        .expect("simple commit");
    assert_eq!(
        b.c.groups().group(GROUP).map(Group::type_name),
        Some("classic")
    );
    b.send(Hb::join("a", &["t"])).expect("converted");
    assert_eq!(
        b.c.groups().group(GROUP).map(Group::type_name),
        Some("consumer")
    );
    // A classic member of another protocol type cannot join a consumer group.
    let mut join = classic_join("", subscription(&["t"], &[]));
    join.protocol_type = Arc::from("connect");
    let out = joined(b.c.join_group(GROUP, join.clone(), broker, WaiterId(1), b.now));
    assert_eq!(out.error_code, ErrorCode::InconsistentGroupProtocol.code());
    // Once empty, a JoinGroup makes it a classic group again.
    b.send(Hb::beat("a", -1, None)).expect("a leaves");
    let _ = b.c.join_group(GROUP, join, broker, WaiterId(2), b.now);
    assert_eq!(
        b.c.groups().group(GROUP).map(Group::type_name),
        Some("classic")
    );
    // A classic group of another protocol type is never upgraded.
    let err = b
        .send(Hb::join("x", &["t"]))
        .expect_err("classic with members");
    assert_eq!(err.code, ErrorCode::GroupIdNotFound);
}

#[test]
fn policy_disabled_refuses_the_upgrade_and_keeps_classic_members_in_a_consumer_group() {
    let mut b = Bench::with(GroupConfig {
        migration_policy: MigrationPolicy::Disabled,
        ..GroupConfig::default()
    });
    let broker = b.coordinator();
    // A classic group of consumers with a member, waiting in its first join phase.
    let reply = b.c.join_group(
        GROUP,
        classic_join("", subscription(&["t"], &[])),
        broker,
        WaiterId(1),
        b.now,
    );
    assert!(matches!(reply, GroupReply::Now(_) | GroupReply::Wait(_)));
    assert_eq!(b.c.groups().group(GROUP).map(Group::is_empty), Some(false));
    let err = b.send(Hb::join("a", &["t"])).expect_err("upgrade disabled");
    assert_eq!(err.code, ErrorCode::GroupIdNotFound);
    assert_eq!(
        err.message.as_deref(),
        Some("Group g is not a consumer group.")
    );

    // A consumer group: a classic member joins it all the same (Kafka's policy governs
    // conversions only); when the consumer member leaves, the group stays a consumer group.
    let mut b = Bench::with(GroupConfig {
        migration_policy: MigrationPolicy::Disabled,
        ..GroupConfig::default()
    });
    b.send(Hb::join("a", &["t"])).expect("a");
    let out = joined(b.c.join_group(
        GROUP,
        classic_join("k", subscription(&["t"], &[])),
        broker,
        WaiterId(1),
        b.now,
    ));
    assert_eq!(out.error_code, 0);
    b.send(Hb::beat("a", -1, None)).expect("a leaves");
    assert_eq!(
        b.c.groups().group(GROUP).map(Group::type_name),
        Some("consumer")
    );
    assert_eq!(b.group().members().count(), 1);
}

#[test]
fn a_classic_member_in_a_consumer_group_joins_syncs_and_rejoins_on_rebalance() {
    let mut b = Bench::new();
    let broker = b.coordinator();
    b.send(Hb::join("a", &["t"])).expect("a");
    // The classic member gets its member id first (JoinGroup v4+).
    let mut join = classic_join("", subscription(&["t"], &[]));
    join.require_known_member_id = true;
    let first = joined(b.c.join_group(GROUP, join.clone(), broker, WaiterId(1), b.now));
    assert_eq!(first.error_code, ErrorCode::MemberIdRequired.code());
    join.member_id = first.member_id.clone();
    let out = joined(b.c.join_group(GROUP, join.clone(), broker, WaiterId(2), b.now));
    assert_eq!(out.error_code, 0);
    assert_eq!(&*out.leader, "");
    assert!(out.members.is_empty());
    assert_eq!(out.protocol_name.as_deref(), Some("range"));
    // The group epoch was bumped to 2; "a" still holds every partition, so the classic
    // member waits for its share at epoch 2.
    assert_eq!(b.group().group_epoch(), 2);
    assert_eq!(out.generation_id, 2);
    let id = out.member_id.clone();
    let sync = |b: &mut Bench, generation: i32| match b.c.sync_group(
        GROUP,
        SyncArgs {
            member_id: &id,
            instance_id: None,
            generation,
            protocol_type: Some("consumer"),
            protocol_name: Some("range"),
            assignments: Vec::new(),
        },
        broker,
        WaiterId(9),
        b.now,
    ) {
        GroupReply::Now(out) => out,
        GroupReply::Wait(_) => panic!("answered at once"),
    };
    let synced = sync(&mut b, 2);
    assert_eq!(synced.error_code, 0);
    assert_eq!(
        decode_assignment(&synced.assignment).map(|a| a.len()),
        Some(0),
        "nothing is released yet"
    );
    assert_eq!(
        sync(&mut b, 1).error_code,
        ErrorCode::IllegalGeneration.code()
    );
    // Nothing released yet: the heartbeat is fine.
    assert_eq!(b.c.heartbeat(GROUP, &id, None, 2, broker, b.now), Ok(()));
    // "a" revokes two partitions: the classic member is told to rejoin.
    let t = b.topic_id("t");
    let out = b.send(Hb::beat("a", 1, None)).expect("a");
    let kept = out.assignment.expect("a's new assignment");
    assert_eq!(count(&kept), 2);
    b.send(Hb::beat("a", 1, Some(kept))).expect("a revoked");
    assert_eq!(
        b.c.heartbeat(GROUP, &id, None, 2, broker, b.now),
        Err(ErrorCode::RebalanceInProgress)
    );
    let out = joined(b.c.join_group(GROUP, join, broker, WaiterId(3), b.now));
    assert_eq!(out.generation_id, 2);
    let synced = sync(&mut b, 2);
    let assignment = decode_assignment(&synced.assignment).expect("an assignment");
    assert_eq!(assignment.len(), 1);
    assert_eq!(assignment[0].1.len(), 2);
    assert_eq!(b.c.heartbeat(GROUP, &id, None, 2, broker, b.now), Ok(()));
    assert_eq!(b.group().member(&id).map(|m| count(&m.assigned)), Some(2));
    assert!(b
        .group()
        .member(&id)
        .is_some_and(|m| m.assigned.contains_key(&t)));
    assert_eq!(b.group().state(), ConsumerGroupState::Stable);
    b.assert_exclusive();
    // Commits use the generation (its epoch), at any version.
    assert_eq!(
        b.c.validate_offset_commit(GROUP, &id, None, 2, 8, broker, b.now),
        Ok(())
    );
    assert_eq!(
        b.c.validate_offset_commit(GROUP, &id, None, 1, 8, broker, b.now),
        Err(ErrorCode::IllegalGeneration)
    );
    // A classic member cannot use the consumer protocol's checks, nor the other way round.
    assert_eq!(
        b.c.heartbeat(GROUP, "a", None, 2, broker, b.now),
        Err(ErrorCode::UnknownMemberId)
    );
    // It leaves with LeaveGroup; the group epoch is bumped.
    let left =
        b.c.leave_group(GROUP, &[(id.clone(), None)], broker, b.now)
            .expect("leave");
    assert_eq!(left, vec![Ok(())]);
    assert_eq!(b.group().group_epoch(), 3);
    assert_eq!(b.group().members().count(), 1);
}

#[test]
fn a_classic_member_that_does_not_rejoin_in_time_is_fenced() {
    let mut b = Bench::new();
    let broker = b.coordinator();
    b.send(Hb::join("a", &["t"])).expect("a");
    let join = classic_join("k", subscription(&["t"], &[]));
    let out = joined(b.c.join_group(GROUP, join, broker, WaiterId(1), b.now));
    assert_eq!(out.error_code, 0);
    // It never syncs: past its rebalance timeout (10 s) it is fenced, although its
    // session (10 s too) is kept by heartbeats.
    b.advance(5_000);
    let _ = b.c.heartbeat(GROUP, "k", None, 2, broker, b.now);
    b.advance(5_001);
    assert!(b.group().member("k").is_none());
}

#[test]
fn a_non_empty_classic_group_is_upgraded_and_downgraded_back() {
    let mut b = Bench::new();
    let broker = b.coordinator();
    // A stable classic group of one consumer holding all of t.
    let join = classic_join("", subscription(&["t"], &[]));
    // The first join phase ends at the (zero) initial delay's timer.
    let _ = b.c.join_group(GROUP, join, broker, WaiterId(1), b.now);
    b.advance(1);
    let classic = b.c.groups().group(GROUP).and_then(Group::as_classic);
    let classic = classic.expect("a classic group");
    assert_eq!(classic.state(), ClassicGroupState::CompletingRebalance);
    let k = classic.members().next().expect("a member").id.clone();
    let generation = classic.generation();
    let assignment = encode_assignment(&[(Arc::from("t"), vec![0, 1, 2, 3])], 1);
    match b.c.sync_group(
        GROUP,
        SyncArgs {
            member_id: &k,
            instance_id: None,
            generation,
            protocol_type: None,
            protocol_name: None,
            assignments: vec![(k.clone(), assignment)],
        },
        broker,
        WaiterId(2),
        b.now,
    ) {
        GroupReply::Now(s) => assert_eq!(s.error_code, 0),
        GroupReply::Wait(_) => panic!("the leader's sync answers at once"),
    }
    // A KIP-848 member joins: the group becomes a consumer group with k at epoch 1.
    let out = b.send(Hb::join("a", &["t"])).expect("upgraded");
    assert_eq!(
        b.c.groups().group(GROUP).map(Group::type_name),
        Some("consumer")
    );
    assert_eq!(out.member_epoch, 2);
    assert_eq!(out.assignment.as_ref().map(count), Some(0), "k holds t");
    let classic = b.group().member(&k).expect("k converted").clone();
    assert!(classic.uses_classic_protocol());
    assert_eq!(classic.member_epoch, 1);
    assert_eq!(count(&classic.assigned), 4);
    // k's heartbeat says rebalance; it rejoins (eager: owning nothing) and gets its half.
    assert_eq!(
        b.c.heartbeat(GROUP, &k, None, 1, broker, b.now),
        Err(ErrorCode::RebalanceInProgress)
    );
    let out = joined(b.c.join_group(
        GROUP,
        classic_join(&k, subscription(&["t"], &[])),
        broker,
        WaiterId(3),
        b.now,
    ));
    assert_eq!(out.generation_id, 2);
    let out = b
        .send(Hb::beat("a", 2, Some(Assignment::new())))
        .expect("a");
    assert_eq!(out.assignment.as_ref().map(count), Some(2));
    b.assert_exclusive();
    // The KIP-848 member leaves: the group is classic again, k its only member, and it
    // rebalances (k's heartbeat says so).
    b.send(Hb::beat("a", -1, None)).expect("a leaves");
    let group = b.c.groups().group(GROUP).expect("the group");
    assert_eq!(group.type_name(), "classic");
    let classic = group.as_classic().expect("classic");
    assert_eq!(classic.state(), ClassicGroupState::PreparingRebalance);
    assert_eq!(classic.generation(), 2, "the group epoch, not bumped");
    assert!(classic.member(&k).is_some());
    assert_eq!(
        b.c.heartbeat(GROUP, &k, None, 2, broker, b.now),
        Err(ErrorCode::RebalanceInProgress)
    );
}

#[test]
fn offsets_are_checked_against_member_epochs() {
    let mut b = Bench::new();
    let broker = b.coordinator();
    b.send(Hb::join("a", &["t"])).expect("a");
    let commit = |b: &mut Bench, member: &str, epoch: i32, version: i16| {
        b.c.validate_offset_commit(GROUP, member, None, epoch, version, broker, b.now)
    };
    assert_eq!(commit(&mut b, "a", 1, 9), Ok(()));
    assert_eq!(commit(&mut b, "a", 2, 9), Err(ErrorCode::StaleMemberEpoch));
    assert_eq!(commit(&mut b, "a", 0, 9), Err(ErrorCode::StaleMemberEpoch));
    assert_eq!(
        commit(&mut b, "a", 1, 8),
        Err(ErrorCode::UnsupportedVersion)
    );
    assert_eq!(commit(&mut b, "zz", 1, 9), Err(ErrorCode::UnknownMemberId));
    assert_eq!(commit(&mut b, "", -1, 9), Err(ErrorCode::UnknownMemberId));
    assert_eq!(b.c.validate_offset_fetch(GROUP, Some("a"), 1), Ok(()));
    assert_eq!(
        b.c.validate_offset_fetch(GROUP, Some("a"), 7),
        Err(ErrorCode::StaleMemberEpoch)
    );
    assert_eq!(b.c.validate_offset_fetch(GROUP, None, -1), Ok(()));
    assert_eq!(
        b.c.validate_offset_fetch(GROUP, Some("zz"), 1),
        Err(ErrorCode::UnknownMemberId)
    );
    // Deleting a group with members is refused; its offsets of other topics may go.
    assert_eq!(
        b.c.delete_group(GROUP, broker, b.now),
        Err(ErrorCode::NonEmptyGroup)
    );
    assert_eq!(b.c.validate_offset_delete(GROUP, broker, b.now), Ok(()));
    assert!(b.c.group_subscribed_to(GROUP, "t"));
    b.send(Hb::beat("a", -1, None)).expect("leaves");
    assert!(!b.c.group_subscribed_to(GROUP, "t"));
    assert_eq!(
        commit(&mut b, "", -1, 9),
        Ok(()),
        "the admin commits to an empty group"
    );
    assert_eq!(b.c.delete_group(GROUP, broker, b.now), Ok(()));
}

#[test]
fn a_coordinator_move_keeps_members_and_restarts_sessions() {
    let mut b = Bench::new();
    b.send(Hb::join("a", &["t"])).expect("a");
    let old = b.coordinator();
    let new = (old + 1) % 3;
    b.advance(30_000);
    b.c.move_coordinator(CoordinatorType::Group, GROUP, new)
        .expect("moved");
    let err =
        b.c.consumer_group_heartbeat(GROUP, Hb::beat("a", 1, None).args, 1, old, b.now)
            .expect_err("the old coordinator");
    assert_eq!(err.code, ErrorCode::NotCoordinator);
    // The session started anew at the move: 30 s later a is still there.
    b.advance(30_000);
    assert!(b.group().member("a").is_some());
    let out = b.send(Hb::beat("a", 1, None)).expect("the new coordinator");
    assert_eq!(out.member_epoch, 1);
}

#[test]
fn a_static_classic_member_replacing_the_last_consumer_member_downgrades_without_a_rebalance() {
    let mut b = Bench::new();
    let broker = b.coordinator();
    let s = b.send(Hb::join("s", &["t"]).instance("i")).expect("s");
    let all = s.assignment.expect("s holds t");
    b.send(Hb::beat("s", 1, Some(all.clone()))).expect("s");
    let out = joined(b.c.join_group(
        GROUP,
        classic_join("k", subscription(&["t"], &[])),
        broker,
        WaiterId(1),
        b.now,
    ));
    assert_eq!(out.error_code, 0);
    let kept = b
        .send(Hb::beat("s", 1, Some(all)))
        .expect("s revokes")
        .assignment
        .expect("what s keeps");
    b.send(Hb::beat("s", 1, Some(kept.clone())))
        .expect("s done");
    // A classic consumer with s's instance id: the group becomes classic at once, Stable,
    // with k and the newcomer holding s's partitions.
    let mut join = classic_join("", subscription(&["t"], &[]));
    join.instance_id = Some(Arc::from("i"));
    let out = joined(b.c.join_group(GROUP, join, broker, WaiterId(2), b.now));
    assert_eq!(out.error_code, 0);
    let group = b.c.groups().group(GROUP).expect("the group");
    let classic = group.as_classic().expect("downgraded");
    assert_eq!(classic.state(), ClassicGroupState::Stable);
    assert_eq!(classic.len(), 2);
    let newcomer = classic.member(&out.member_id).expect("the newcomer");
    assert_eq!(newcomer.instance_id.as_deref(), Some("i"));
    let theirs = decode_assignment(&newcomer.assignment).expect("an assignment");
    assert_eq!(
        theirs.iter().map(|(_, ps)| ps.len()).sum::<usize>(),
        count(&kept)
    );
    assert!(classic.member("k").is_some());
}

#[test]
fn the_migration_policy_defaults_to_kafkas_and_parses_its_names() {
    assert_eq!(
        GroupConfig::default().migration_policy,
        MigrationPolicy::Bidirectional
    );
    for (name, policy, upgrade, downgrade) in [
        ("bidirectional", MigrationPolicy::Bidirectional, true, true),
        ("UPGRADE", MigrationPolicy::Upgrade, true, false),
        (" Downgrade ", MigrationPolicy::Downgrade, false, true),
        ("disabled", MigrationPolicy::Disabled, false, false),
    ] {
        assert_eq!(MigrationPolicy::parse(name), Some(policy));
        assert_eq!(
            (policy.upgrade_enabled(), policy.downgrade_enabled()),
            (upgrade, downgrade)
        );
    }
    assert_eq!(MigrationPolicy::parse("sideways"), None);
}
