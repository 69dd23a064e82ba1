//! Mixed groups on the wire (KIP-848's online migration, Kafka 4.x's default policy
//! `bidirectional`): a classic group with members upgraded by a ConsumerGroupHeartbeat,
//! classic members inside a consumer group (JoinGroup answered at once, partitions through
//! SyncGroup, rebalances through Heartbeat's REBALANCE_IN_PROGRESS, LeaveGroup), the
//! downgrade when the last consumer-protocol member leaves, the policy `disabled` refusing
//! the upgrade; franzy's classic consumer sharing a group with a raw KIP-848 member; and the
//! ConsumerGroupHeartbeat checks not covered by kip848_coordinator.rs (GROUP_MAX_SIZE_REACHED,
//! UNRELEASED_INSTANCE_ID, regexes resolved on the broker, the configured heartbeat interval
//! and session timeout, racks). In-memory connections under a paused clock.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use franzy::kafka_protocol::messages::consumer_protocol_assignment::{
    ConsumerProtocolAssignment, TopicPartition as AssignedTopic,
};
use franzy::kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use franzy::kafka_protocol::messages::leave_group_request::MemberIdentity;
use franzy::kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use franzy::kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use franzy::kafka_protocol::messages::{
    ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatRequest, DescribeGroupsRequest, GroupId,
    HeartbeatRequest, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, ListGroupsRequest,
    OffsetCommitRequest, SyncGroupRequest, SyncGroupResponse, TopicName,
};
use franzy::kafka_protocol::protocol::{Decodable, Encodable};
use franzy::proto::{ApiKey, ErrorCode, RequestKind, ResponseKind};
use franzy::{Config, Consumer, OffsetReset};
use franzy_harness::{Cluster, MigrationPolicy};
use franzy_tests::init_tracing;

use crate::kip848_wire::{
    self, assignment as cg_assignment, coordinator, heartbeat as cg_heartbeat, text, topic_id,
    Conn, Owned,
};
use tokio::time::Instant;

const GROUP: &str = "mixed-app";
const PARTITIONS: i32 = 4;

async fn cluster_with(policy: MigrationPolicy) -> Cluster {
    init_tracing();
    Cluster::builder()
        .brokers(3)
        .in_memory()
        .topic("t", PARTITIONS)
        .consumer_group_migration_policy(policy)
        .build()
        .await
        .expect("cluster starts")
}

// ---- KIP-848 members ------------------------------------------------------------------------

fn cg_join(member: &str, topics: &[&str]) -> ConsumerGroupHeartbeatRequest {
    kip848_wire::join(GROUP, member, topics)
}

fn cg_beat(member: &str, epoch: i32, owned: Option<&Owned>) -> ConsumerGroupHeartbeatRequest {
    kip848_wire::beat(GROUP, member, epoch, owned)
}

async fn cg_describe(conn: &mut Conn) -> ConsumerGroupDescribeResponse {
    kip848_wire::describe(conn, &[GROUP]).await
}

// ---- Classic members ------------------------------------------------------------------------

/// A consumer protocol subscription v1 to `topics`, owning `owned` of `t`.
fn subscription(topics: &[&str], owned: &[i32]) -> Bytes {
    let mut out = Vec::new();
    out.extend_from_slice(&1i16.to_be_bytes());
    out.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for t in topics {
        out.extend_from_slice(&(t.len() as i16).to_be_bytes());
        out.extend_from_slice(t.as_bytes());
    }
    out.extend_from_slice(&(-1i32).to_be_bytes());
    if owned.is_empty() {
        out.extend_from_slice(&0i32.to_be_bytes());
    } else {
        out.extend_from_slice(&1i32.to_be_bytes());
        out.extend_from_slice(&1i16.to_be_bytes());
        out.extend_from_slice(b"t");
        out.extend_from_slice(&(owned.len() as i32).to_be_bytes());
        for p in owned {
            out.extend_from_slice(&p.to_be_bytes());
        }
    }
    Bytes::from(out)
}

/// A consumer protocol assignment (v1) of `partitions` of `t`.
fn encode_assignment(partitions: &[i32]) -> Bytes {
    let message = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
        AssignedTopic::default()
            .with_topic(TopicName(text("t")))
            .with_partitions(partitions.to_vec()),
    ]);
    let mut out = BytesMut::new();
    out.extend_from_slice(&1i16.to_be_bytes());
    message.encode(&mut out, 1).expect("encodes");
    out.freeze()
}

/// The partitions of `t` in a consumer protocol assignment.
fn decode_assignment(bytes: &[u8]) -> BTreeSet<i32> {
    assert!(bytes.len() >= 2, "an assignment: {bytes:?}");
    let version = i16::from_be_bytes([bytes[0], bytes[1]]);
    let mut body = Bytes::copy_from_slice(&bytes[2..]);
    let message = ConsumerProtocolAssignment::decode(&mut body, version).expect("decodes");
    message
        .assigned_partitions
        .iter()
        .filter(|t| t.topic.0.as_str() == "t")
        .flat_map(|t| t.partitions.iter().copied())
        .collect()
}

fn join_request(member: &str, owned: &[i32]) -> RequestKind {
    RequestKind::JoinGroup(
        JoinGroupRequest::default()
            .with_group_id(GroupId(text(GROUP)))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(20_000)
            .with_member_id(text(member))
            .with_protocol_type(text("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(text("range"))
                .with_metadata(subscription(&["t"], owned))]),
    )
}

async fn join(conn: &mut Conn, member: &str, owned: &[i32]) -> JoinGroupResponse {
    let (_, response) = conn
        .request(ApiKey::JoinGroup, 9, &join_request(member, owned))
        .await
        .expect("answered");
    let ResponseKind::JoinGroup(r) = response else {
        panic!("a JoinGroup response")
    };
    r
}

/// KIP-394: MEMBER_ID_REQUIRED, then the JoinGroup with the id; its answer.
async fn join_new(conn: &mut Conn) -> JoinGroupResponse {
    let first = join(conn, "", &[]).await;
    assert_eq!(first.error_code, ErrorCode::MemberIdRequired.code());
    join(conn, first.member_id.as_str(), &[]).await
}

async fn sync(
    conn: &mut Conn,
    member: &str,
    generation: i32,
    assignments: &[(&str, Bytes)],
) -> SyncGroupResponse {
    let request = SyncGroupRequest::default()
        .with_group_id(GroupId(text(GROUP)))
        .with_generation_id(generation)
        .with_member_id(text(member))
        .with_protocol_type(Some(text("consumer")))
        .with_protocol_name(Some(text("range")))
        .with_assignments(
            assignments
                .iter()
                .map(|(m, a)| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(text(m))
                        .with_assignment(a.clone())
                })
                .collect(),
        );
    let (_, response) = conn
        .request(ApiKey::SyncGroup, 5, &RequestKind::SyncGroup(request))
        .await
        .expect("answered");
    let ResponseKind::SyncGroup(r) = response else {
        panic!("a SyncGroup response")
    };
    r
}

async fn heartbeat(conn: &mut Conn, member: &str, generation: i32) -> i16 {
    let request = HeartbeatRequest::default()
        .with_group_id(GroupId(text(GROUP)))
        .with_generation_id(generation)
        .with_member_id(text(member));
    let (_, response) = conn
        .request(ApiKey::Heartbeat, 4, &RequestKind::Heartbeat(request))
        .await
        .expect("answered");
    let ResponseKind::Heartbeat(r) = response else {
        panic!("a Heartbeat response")
    };
    r.error_code
}

async fn leave(conn: &mut Conn, member: &str) -> (i16, i16) {
    let request = LeaveGroupRequest::default()
        .with_group_id(GroupId(text(GROUP)))
        .with_members(vec![MemberIdentity::default().with_member_id(text(member))]);
    let (_, response) = conn
        .request(ApiKey::LeaveGroup, 5, &RequestKind::LeaveGroup(request))
        .await
        .expect("answered");
    let ResponseKind::LeaveGroup(r) = response else {
        panic!("a LeaveGroup response")
    };
    (r.error_code, r.members[0].error_code)
}

/// The group's type as ListGroups v5 reports it, and its state as DescribeGroups does.
async fn group_type_and_state(conn: &mut Conn) -> (String, String) {
    let (_, response) = conn
        .request(
            ApiKey::ListGroups,
            5,
            &RequestKind::ListGroups(ListGroupsRequest::default()),
        )
        .await
        .expect("answered");
    let ResponseKind::ListGroups(listed) = response else {
        panic!("a ListGroups response")
    };
    let listed = listed
        .groups
        .iter()
        .find(|g| g.group_id.0.as_str() == GROUP)
        .expect("the group is listed");
    (
        listed.group_type.to_string(),
        listed.group_state.to_string(),
    )
}

/// A stable classic group with one member (the KIP-394 dance, the join phase, the leader's
/// assignment of every partition of `t`): its member id and generation.
async fn stable_classic_group(conn: &mut Conn) -> (String, i32) {
    let joined = join_new(conn).await;
    assert_eq!(joined.error_code, 0);
    let id = joined.member_id.to_string();
    assert_eq!(joined.leader.as_str(), id, "the only member leads");
    let synced = sync(
        conn,
        &id,
        joined.generation_id,
        &[(id.as_str(), encode_assignment(&[0, 1, 2, 3]))],
    )
    .await;
    assert_eq!(synced.error_code, 0);
    assert_eq!(decode_assignment(&synced.assignment), [0, 1, 2, 3].into());
    (id, joined.generation_id)
}

#[tokio::test(start_paused = true)]
async fn a_classic_group_with_a_member_is_upgraded_shared_and_downgraded_back() {
    let cluster = cluster_with(MigrationPolicy::default()).await;
    let t = topic_id(&cluster, "t");
    let (_, mut conn) = coordinator(&cluster, GROUP).await;
    let (classic, generation) = stable_classic_group(&mut conn).await;
    assert_eq!(generation, 1);
    assert_eq!(
        group_type_and_state(&mut conn).await,
        ("classic".into(), "Stable".into())
    );

    // A KIP-848 member joins: the group becomes a consumer group with the classic member in
    // it, at epoch 1 holding all of t; the newcomer gets nothing until it is released.
    let a = cg_heartbeat(&mut conn, cg_join("member-a", &["t"])).await;
    assert_eq!(
        (a.error_code, a.member_epoch),
        (0, 2),
        "{:?}",
        a.error_message
    );
    assert_eq!(cg_assignment(&a), Some(Owned::new()));
    assert_eq!(group_type_and_state(&mut conn).await.0, "consumer");
    let described = cg_describe(&mut conn).await;
    let g = &described.groups[0];
    assert_eq!((g.group_epoch, g.assignment_epoch), (2, 2));
    let types: BTreeMap<String, (i8, i32)> = g
        .members
        .iter()
        .map(|m| (m.member_id.to_string(), (m.member_type, m.member_epoch)))
        .collect();
    assert_eq!(
        types[&classic],
        (0, 1),
        "a classic member at the generation"
    );
    assert_eq!(types["member-a"], (1, 2));

    // The classic member's heartbeat says rebalance; it rejoins (eager: owning nothing),
    // is answered at once with its new epoch as generation and no leader, and syncs.
    assert_eq!(
        heartbeat(&mut conn, &classic, 1).await,
        ErrorCode::RebalanceInProgress.code()
    );
    let rejoined = join(&mut conn, &classic, &[]).await;
    assert_eq!(rejoined.error_code, 0);
    assert_eq!(rejoined.generation_id, 2);
    assert_eq!(rejoined.leader.as_str(), "");
    assert!(rejoined.members.is_empty());
    assert_eq!(rejoined.protocol_name.as_deref(), Some("range"));
    let stale = sync(&mut conn, &classic, 1, &[]).await;
    assert_eq!(stale.error_code, ErrorCode::IllegalGeneration.code());
    let synced = sync(&mut conn, &classic, 2, &[]).await;
    assert_eq!(synced.error_code, 0);
    let classic_part = decode_assignment(&synced.assignment);
    assert_eq!(classic_part.len(), 2);
    assert_eq!(heartbeat(&mut conn, &classic, 2).await, 0);

    // The released half goes to the KIP-848 member.
    let got = cg_heartbeat(&mut conn, cg_beat("member-a", 2, Some(&Owned::new()))).await;
    let theirs = cg_assignment(&got).expect("a's partitions");
    assert_eq!(theirs[&t].len(), 2);
    assert!(theirs[&t].is_disjoint(&classic_part));
    let described = cg_describe(&mut conn).await;
    assert_eq!(described.groups[0].group_state.as_str(), "Stable");

    // The classic member commits with its generation (OffsetCommit v8), a stale one fails.
    for (generation, expected) in [(2, 0), (1, ErrorCode::IllegalGeneration.code())] {
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(text(GROUP)))
            .with_member_id(text(&classic))
            .with_generation_id_or_member_epoch(generation)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(text("t")))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(*classic_part.first().expect("a partition"))
                    .with_committed_offset(7)])]);
        let (_, response) = conn
            .request(ApiKey::OffsetCommit, 8, &RequestKind::OffsetCommit(request))
            .await
            .expect("answered");
        let ResponseKind::OffsetCommit(r) = response else {
            panic!("an OffsetCommit response")
        };
        assert_eq!(r.topics[0].partitions[0].error_code, expected);
    }

    // The KIP-848 member leaves: the group is classic again at the group epoch and
    // rebalances; the classic member rejoins and leads generation 3 alone.
    let left = cg_heartbeat(&mut conn, cg_beat("member-a", -1, None)).await;
    assert_eq!(left.error_code, 0);
    assert_eq!(
        group_type_and_state(&mut conn).await,
        ("classic".into(), "PreparingRebalance".into())
    );
    assert_eq!(
        heartbeat(&mut conn, &classic, 2).await,
        ErrorCode::RebalanceInProgress.code()
    );
    let rejoined = join(&mut conn, &classic, &[]).await;
    assert_eq!(rejoined.error_code, 0);
    assert_eq!(rejoined.generation_id, 3);
    assert_eq!(rejoined.leader.as_str(), classic);
    assert_eq!(rejoined.members.len(), 1);
    let (_, response) = conn
        .request(
            ApiKey::DescribeGroups,
            5,
            &RequestKind::DescribeGroups(
                DescribeGroupsRequest::default().with_groups(vec![GroupId(text(GROUP))]),
            ),
        )
        .await
        .expect("answered");
    let ResponseKind::DescribeGroups(d) = response else {
        panic!("a DescribeGroups response")
    };
    assert_eq!(d.groups[0].group_state.as_str(), "CompletingRebalance");
    assert_eq!(d.groups[0].protocol_type.as_str(), "consumer");
}

#[tokio::test(start_paused = true)]
async fn a_classic_member_joins_a_consumer_group_and_leaves_it() {
    let cluster = cluster_with(MigrationPolicy::default()).await;
    let t = topic_id(&cluster, "t");
    let (_, mut conn) = coordinator(&cluster, GROUP).await;
    let a = cg_heartbeat(&mut conn, cg_join("member-a", &["t"])).await;
    let all = cg_assignment(&a).expect("a holds everything");
    assert_eq!(all[&t].len(), 4);

    // The classic member joins (KIP-394 first): the group epoch is bumped for it; a still
    // holds everything, so it gets nothing yet.
    let joined = join_new(&mut conn).await;
    assert_eq!(joined.error_code, 0);
    assert_eq!(joined.generation_id, 2);
    let k = joined.member_id.to_string();
    let synced = sync(&mut conn, &k, 2, &[]).await;
    assert_eq!(decode_assignment(&synced.assignment), BTreeSet::new());
    assert_eq!(heartbeat(&mut conn, &k, 2).await, 0, "nothing released yet");
    // A classic protocol it does not share is refused; so is another protocol type.
    let mut other = join_request("", &[]);
    if let RequestKind::JoinGroup(r) = &mut other {
        r.protocol_type = text("connect");
    }
    let (_, response) = conn
        .request(ApiKey::JoinGroup, 9, &other)
        .await
        .expect("answered");
    let ResponseKind::JoinGroup(r) = response else {
        panic!("a JoinGroup response")
    };
    assert_eq!(r.error_code, ErrorCode::InconsistentGroupProtocol.code());

    // a revokes two partitions; the classic member's heartbeat tells it to rejoin for them.
    let asked = cg_heartbeat(&mut conn, cg_beat("member-a", 1, Some(&all))).await;
    let kept = cg_assignment(&asked).expect("what a keeps");
    let done = cg_heartbeat(&mut conn, cg_beat("member-a", 1, Some(&kept))).await;
    assert_eq!(done.member_epoch, 2);
    assert_eq!(
        heartbeat(&mut conn, &k, 2).await,
        ErrorCode::RebalanceInProgress.code()
    );
    let rejoined = join(&mut conn, &k, &[]).await;
    assert_eq!(rejoined.generation_id, 2);
    let synced = sync(&mut conn, &k, 2, &[]).await;
    let mine = decode_assignment(&synced.assignment);
    assert_eq!(mine.len(), 2);
    assert!(mine.is_disjoint(&kept[&t]));
    assert_eq!(heartbeat(&mut conn, &k, 2).await, 0);

    // KIP-848 checks do not apply to it, nor classic ones to a: a's Heartbeat is unknown.
    assert_eq!(
        heartbeat(&mut conn, "member-a", 2).await,
        ErrorCode::UnknownMemberId.code()
    );
    // It leaves: the group epoch is bumped and a gets everything back.
    assert_eq!(leave(&mut conn, &k).await, (0, 0));
    assert_eq!(
        leave(&mut conn, "member-a").await,
        (0, ErrorCode::UnknownMemberId.code()),
        "a KIP-848 member cannot leave through LeaveGroup"
    );
    let back = cg_heartbeat(&mut conn, cg_beat("member-a", 2, Some(&kept))).await;
    assert_eq!(back.member_epoch, 3);
    assert_eq!(cg_assignment(&back).map(|a| a[&t].len()), Some(4));
    assert_eq!(group_type_and_state(&mut conn).await.0, "consumer");
}

#[tokio::test(start_paused = true)]
async fn a_classic_member_that_stops_heartbeating_is_fenced_and_its_partitions_move() {
    let cluster = cluster_with(MigrationPolicy::default()).await;
    let t = topic_id(&cluster, "t");
    let (_, mut conn) = coordinator(&cluster, GROUP).await;
    let (classic, _) = stable_classic_group(&mut conn).await;
    let a = cg_heartbeat(&mut conn, cg_join("member-a", &["t"])).await;
    assert_eq!(a.member_epoch, 2);
    // The classic member never comes back: past its own session timeout (10 s) it is
    // fenced, and a, which keeps heartbeating, gets everything.
    let mut epoch = 2;
    let mut owned = Owned::new();
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let r = cg_heartbeat(&mut conn, cg_beat("member-a", epoch, Some(&owned))).await;
        assert_eq!(r.error_code, 0);
        epoch = r.member_epoch;
        if let Some(got) = cg_assignment(&r) {
            owned = got;
        }
    }
    assert_eq!(owned.get(&t).map(BTreeSet::len), Some(4));
    assert_eq!(
        heartbeat(&mut conn, &classic, 1).await,
        ErrorCode::UnknownMemberId.code()
    );
    let described = cg_describe(&mut conn).await;
    assert_eq!(described.groups[0].members.len(), 1);
    assert_eq!(
        group_type_and_state(&mut conn).await.0,
        "consumer",
        "fencing a classic member never downgrades"
    );
}

#[tokio::test(start_paused = true)]
async fn a_mixed_group_survives_a_coordinator_move() {
    let cluster = cluster_with(MigrationPolicy::default()).await;
    let t = topic_id(&cluster, "t");
    let (node, mut conn) = coordinator(&cluster, GROUP).await;
    let (classic, _) = stable_classic_group(&mut conn).await;
    let a = cg_heartbeat(&mut conn, cg_join("member-a", &["t"])).await;
    assert_eq!(a.member_epoch, 2);
    assert_eq!(join(&mut conn, &classic, &[]).await.generation_id, 2);
    let mine = decode_assignment(&sync(&mut conn, &classic, 2, &[]).await.assignment);
    assert_eq!(mine.len(), 2);
    let target = (node + 1) % 3;
    cluster
        .move_group_coordinator(GROUP, target)
        .expect("moved");
    // Both protocols are told to look for the coordinator; at the new one the group is
    // the same consumer group with its classic member, sessions started anew.
    assert_eq!(
        heartbeat(&mut conn, &classic, 2).await,
        ErrorCode::NotCoordinator.code()
    );
    let r = cg_heartbeat(&mut conn, cg_beat("member-a", 2, Some(&Owned::new()))).await;
    assert_eq!(r.error_code, ErrorCode::NotCoordinator.code());
    let (found, mut moved) = coordinator(&cluster, GROUP).await;
    assert_eq!(found, target);
    assert_eq!(heartbeat(&mut moved, &classic, 2).await, 0);
    let r = cg_heartbeat(&mut moved, cg_beat("member-a", 2, Some(&Owned::new()))).await;
    assert_eq!((r.error_code, r.member_epoch), (0, 2));
    let theirs = cg_assignment(&r).expect("a's half");
    assert!(theirs[&t].is_disjoint(&mine));
    assert_eq!(theirs[&t].len(), 2);
    assert_eq!(
        group_type_and_state(&mut moved).await,
        ("consumer".into(), "Stable".into())
    );
    // The classic member's session is its own (10 s): silent past it, it is fenced.
    let mut epoch = r.member_epoch;
    for _ in 0..11 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let r = cg_heartbeat(&mut moved, cg_beat("member-a", epoch, None)).await;
        assert_eq!(r.error_code, 0, "{:?}", r.error_message);
        epoch = r.member_epoch;
    }
    assert_eq!(epoch, 3, "the fencing bumped the group epoch");
    assert_eq!(
        heartbeat(&mut moved, &classic, 2).await,
        ErrorCode::UnknownMemberId.code()
    );
}

#[tokio::test(start_paused = true)]
async fn policy_disabled_refuses_the_upgrade_and_keeps_the_consumer_group() {
    let cluster = cluster_with(MigrationPolicy::Disabled).await;
    let (_, mut conn) = coordinator(&cluster, GROUP).await;
    stable_classic_group(&mut conn).await;
    let refused = cg_heartbeat(&mut conn, cg_join("member-a", &["t"])).await;
    assert_eq!(refused.error_code, ErrorCode::GroupIdNotFound.code());
    assert_eq!(
        refused.error_message.as_deref(),
        Some("Group mixed-app is not a consumer group.")
    );
    assert_eq!(
        group_type_and_state(&mut conn).await,
        ("classic".into(), "Stable".into())
    );

    // Under `disabled` a classic member may still join a consumer group, but the group
    // stays a consumer group when the last KIP-848 member leaves.
    let cluster = cluster_with(MigrationPolicy::Disabled).await;
    let (_, mut conn) = coordinator(&cluster, GROUP).await;
    cg_heartbeat(&mut conn, cg_join("member-a", &["t"])).await;
    let joined = join_new(&mut conn).await;
    assert_eq!(joined.error_code, 0);
    let left = cg_heartbeat(&mut conn, cg_beat("member-a", -1, None)).await;
    assert_eq!(left.error_code, 0);
    assert_eq!(group_type_and_state(&mut conn).await.0, "consumer");
    let described = cg_describe(&mut conn).await;
    assert_eq!(described.groups[0].members.len(), 1);
    assert_eq!(described.groups[0].members[0].member_type, 0);
}

// ---- franzy's classic consumer with a raw KIP-848 member --------------------------------

/// Appends `n` records to every partition of `t`; values are `partition:offset`.
fn append(cluster: &Cluster, n: usize) {
    crate::groups::append_to(cluster, "t", PARTITIONS, n);
}

/// Drives franzy's consumer (reading) and the raw KIP-848 member (heartbeating every
/// 500 ms, acknowledging what it is given) until `done` holds; bounded.
async fn drive(
    consumer: &Consumer,
    conn: &mut Conn,
    member: &mut Option<(i32, Owned)>,
    what: &str,
    mut done: impl FnMut(&Consumer, Option<&Owned>) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Some((epoch, owned)) = member.as_mut() {
            let r = cg_heartbeat(conn, cg_beat("member-a", *epoch, Some(owned))).await;
            assert_eq!(r.error_code, 0, "{:?}", r.error_message);
            *epoch = r.member_epoch;
            if let Some(got) = cg_assignment(&r) {
                *owned = got;
            }
        }
        if done(consumer, member.as_ref().map(|(_, o)| o)) {
            return;
        }
        assert!(Instant::now() < deadline, "never happened: {what}");
        let _ = tokio::time::timeout(Duration::from_millis(500), consumer.recv()).await;
    }
}

#[tokio::test(start_paused = true)]
async fn franzys_classic_consumer_shares_a_group_with_a_kip848_member_through_upgrade_and_downgrade(
) {
    let cluster = cluster_with(MigrationPolicy::default()).await;
    let t = topic_id(&cluster, "t");
    append(&cluster, 5);
    let config = Config::new(cluster.bootstrap())
        .client_id("franzy-classic")
        .group_id(GROUP)
        .auto_offset_reset(OffsetReset::Earliest)
        .session_timeout(Duration::from_secs(10))
        .heartbeat_interval(Duration::from_secs(1));
    let consumer = Consumer::builder(config)
        .connector(Arc::new(cluster.connector()))
        .seed(5)
        .build()
        .expect("consumer builds");
    consumer.subscribe(["t"]).expect("subscribe");
    let (_, mut conn) = coordinator(&cluster, GROUP).await;
    let mut member = None;
    drive(
        &consumer,
        &mut conn,
        &mut member,
        "franzy's consumer owns t",
        |c, _| c.assignment().len() == PARTITIONS as usize,
    )
    .await;
    assert_eq!(group_type_and_state(&mut conn).await.0, "classic");

    // The KIP-848 member joins: upgrade; the classic consumer is told to rejoin, and the
    // two end up with disjoint halves.
    let a = cg_heartbeat(&mut conn, cg_join("member-a", &["t"])).await;
    assert_eq!(a.error_code, 0, "{:?}", a.error_message);
    member = Some((a.member_epoch, cg_assignment(&a).unwrap_or_default()));
    assert_eq!(group_type_and_state(&mut conn).await.0, "consumer");
    drive(
        &consumer,
        &mut conn,
        &mut member,
        "the partitions split",
        |c, owned| {
            let mine: BTreeSet<i32> = c.assignment().iter().map(|tp| tp.partition).collect();
            let theirs = owned.and_then(|o| o.get(&t)).cloned().unwrap_or_default();
            mine.len() == 2 && theirs.len() == 2 && mine.is_disjoint(&theirs)
        },
    )
    .await;
    let described = cg_describe(&mut conn).await;
    assert_eq!(described.groups[0].group_state.as_str(), "Stable");
    append(&cluster, 5);

    // The KIP-848 member leaves: downgrade; franzy's consumer rejoins the classic group and
    // owns everything again.
    let left = cg_heartbeat(&mut conn, cg_beat("member-a", -1, None)).await;
    assert_eq!(left.error_code, 0);
    member = None;
    assert_eq!(group_type_and_state(&mut conn).await.0, "classic");
    drive(
        &consumer,
        &mut conn,
        &mut member,
        "franzy's consumer owns t again",
        |c, _| c.assignment().len() == PARTITIONS as usize,
    )
    .await;
    assert_eq!(
        group_type_and_state(&mut conn).await,
        ("classic".into(), "Stable".into())
    );
    tokio::time::timeout(Duration::from_secs(60), consumer.close())
        .await
        .expect("closes");
}

// ---- ConsumerGroupHeartbeat checks kip848_coordinator.rs does not cover ----------------------

#[tokio::test(start_paused = true)]
async fn group_max_size_unreleased_instance_ids_regexes_intervals_and_racks() {
    init_tracing();
    let cluster = Cluster::builder()
        .brokers(3)
        .in_memory()
        .topic("t", PARTITIONS)
        .topic("events-a", 2)
        .consumer_group_max_size(3)
        .consumer_group_heartbeat_interval(Duration::from_millis(700))
        .consumer_group_session_timeout(Duration::from_secs(3))
        .build()
        .await
        .expect("cluster starts");
    let (_, mut conn) = coordinator(&cluster, GROUP).await;
    // The interval is the group config's.
    let a = cg_heartbeat(
        &mut conn,
        cg_join("member-a", &["t"]).with_rack_id(Some(text("rack-1"))),
    )
    .await;
    assert_eq!((a.error_code, a.heartbeat_interval_ms), (0, 700));
    // A static member holds its instance id: another member with it is UNRELEASED_INSTANCE_ID
    // until the first leaves temporarily (-2).
    let s = cg_heartbeat(
        &mut conn,
        cg_join("static-1", &["t"]).with_instance_id(Some(text("instance"))),
    )
    .await;
    assert_eq!(s.error_code, 0);
    // The group is full at 3: a fourth member is GROUP_MAX_SIZE_REACHED, a classic one too.
    let c = cg_heartbeat(&mut conn, cg_join("member-c", &["t"])).await;
    assert_eq!(c.error_code, 0);
    let full = cg_heartbeat(&mut conn, cg_join("member-d", &["t"])).await;
    assert_eq!(full.error_code, ErrorCode::GroupMaxSizeReached.code());
    assert!(full.error_message.is_some());
    let classic = join(&mut conn, "", &[]).await;
    assert_eq!(classic.error_code, ErrorCode::GroupMaxSizeReached.code());
    let left = cg_heartbeat(&mut conn, cg_beat("member-c", -1, None)).await;
    assert_eq!(left.error_code, 0);
    let clash = cg_heartbeat(
        &mut conn,
        cg_join("static-2", &["t"]).with_instance_id(Some(text("instance"))),
    )
    .await;
    assert_eq!(clash.error_code, ErrorCode::UnreleasedInstanceId.code());
    let gone = cg_heartbeat(
        &mut conn,
        cg_beat("static-1", s.member_epoch, None).with_instance_id(Some(text("instance"))),
    )
    .await;
    assert_eq!(gone.error_code, 0);
    let gone = cg_heartbeat(
        &mut conn,
        cg_beat("static-1", -2, None).with_instance_id(Some(text("instance"))),
    )
    .await;
    assert_eq!((gone.error_code, gone.member_epoch), (0, -2));
    let back = cg_heartbeat(
        &mut conn,
        cg_join("static-2", &["t"]).with_instance_id(Some(text("instance"))),
    )
    .await;
    assert_eq!(back.error_code, 0, "{:?}", back.error_message);

    // A regex is resolved on the broker, against topics created later too.
    let r = cg_heartbeat(
        &mut conn,
        cg_beat("member-a", a.member_epoch, None)
            .with_subscribed_topic_regex(Some(text("events-.*")))
            .with_subscribed_topic_names(Some(Vec::new())),
    )
    .await;
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    cluster.create_topic("events-b", 1).expect("created");
    let described = cg_describe(&mut conn).await;
    let a_described = described.groups[0]
        .members
        .iter()
        .find(|m| m.member_id.as_str() == "member-a")
        .expect("a")
        .clone();
    assert_eq!(a_described.rack_id.as_deref(), Some("rack-1"));
    assert_eq!(
        a_described.subscribed_topic_regex.as_deref(),
        Some("events-.*")
    );
    let mut epoch = r.member_epoch;
    let mut owned = Owned::new();
    let mut topics = BTreeSet::new();
    for _ in 0..10 {
        let r = cg_heartbeat(&mut conn, cg_beat("member-a", epoch, Some(&owned))).await;
        assert_eq!(r.error_code, 0);
        epoch = r.member_epoch;
        if let Some(got) = cg_assignment(&r) {
            owned = got;
        }
        let s = cg_heartbeat(
            &mut conn,
            cg_beat("static-2", back.member_epoch, None).with_instance_id(Some(text("instance"))),
        )
        .await;
        assert_eq!(s.error_code, 0);
        topics = owned.keys().copied().collect();
        if topics.len() == 2 {
            break;
        }
    }
    assert_eq!(
        topics,
        [
            topic_id(&cluster, "events-a"),
            topic_id(&cluster, "events-b")
        ]
        .into(),
        "a regex member holds every matching topic, the one created later too"
    );
    // The session is the group config's: 3 s without a heartbeat fences a.
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    let fenced = cg_heartbeat(&mut conn, cg_beat("member-a", epoch, None)).await;
    assert_eq!(fenced.error_code, ErrorCode::UnknownMemberId.code());
}
