//! KIP-848's consumer group protocol on the wire, with raw requests built here:
//! ConsumerGroupHeartbeat (joins, reconciliation through revocation, leaves, static members,
//! errors), ConsumerGroupDescribe, OffsetCommit/OffsetFetch v9 with member epochs,
//! interceptors by group id, sessions on the cluster clock, coordinator moves. In-memory
//! connections under a paused clock, so every timeout is virtual.

use std::collections::BTreeSet;
use std::time::Duration;

use franzy::kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use franzy::kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};
use franzy::kafka_protocol::messages::{
    ConsumerGroupHeartbeatRequest, GroupId, ListGroupsRequest, OffsetCommitRequest,
    OffsetFetchRequest, TopicName,
};
use franzy::proto::{ApiKey, ErrorCode, RequestKind, ResponseKind};
use franzy_harness::{Action, Cluster, Interceptor};
use franzy_tests::{init_tracing, RawConnection};

use crate::kip848_wire::{
    self, assignment, coordinator, describe, heartbeat, text, topic_id, Owned,
};

const GROUP: &str = "kip848-app";

async fn cluster() -> Cluster {
    init_tracing();
    Cluster::builder()
        .brokers(3)
        .in_memory()
        .topic("t", 4)
        .build()
        .await
        .expect("cluster starts")
}

fn join(member: &str, topics: &[&str]) -> ConsumerGroupHeartbeatRequest {
    kip848_wire::join(GROUP, member, topics)
}

fn beat(member: &str, epoch: i32, owned: Option<&Owned>) -> ConsumerGroupHeartbeatRequest {
    kip848_wire::beat(GROUP, member, epoch, owned)
}

fn count(o: &Owned) -> usize {
    o.values().map(BTreeSet::len).sum()
}

#[tokio::test(start_paused = true)]
async fn two_members_share_the_partitions_after_the_first_revokes() {
    let cluster = cluster().await;
    let t = topic_id(&cluster, "t");
    let (_, mut conn) = coordinator(&cluster, GROUP).await;
    let a = heartbeat(&mut conn, join("member-a", &["t"])).await;
    assert_eq!((a.error_code, a.member_epoch), (0, 1));
    assert_eq!(a.heartbeat_interval_ms, 5_000);
    let all = assignment(&a).expect("a's assignment");
    assert_eq!(all, [(t, [0, 1, 2, 3].into())].into());
    let b = heartbeat(&mut conn, join("member-b", &["t"])).await;
    assert_eq!((b.error_code, b.member_epoch), (0, 2));
    assert_eq!(assignment(&b), Some(Owned::new()), "nothing free yet");
    // a is told to give two up; until it does, b gets nothing.
    let asked = heartbeat(&mut conn, beat("member-a", 1, Some(&all))).await;
    assert_eq!(asked.member_epoch, 1);
    let kept = assignment(&asked).expect("what a keeps");
    assert_eq!(count(&kept), 2);
    let waiting = heartbeat(&mut conn, beat("member-b", 2, Some(&Owned::new()))).await;
    assert_eq!(
        (waiting.error_code, waiting.assignment.is_none()),
        (0, true)
    );
    let described = describe(&mut conn, &[GROUP]).await;
    let g = &described.groups[0];
    assert_eq!((g.error_code, g.group_state.as_str()), (0, "Reconciling"));
    assert_eq!((g.group_epoch, g.assignment_epoch), (2, 2));
    assert_eq!(g.assignor_name.as_str(), "uniform");
    // a revokes; b is given the rest.
    let done = heartbeat(&mut conn, beat("member-a", 1, Some(&kept))).await;
    assert_eq!(done.member_epoch, 2);
    let got = heartbeat(&mut conn, beat("member-b", 2, Some(&Owned::new()))).await;
    let theirs = assignment(&got).expect("b's partitions");
    let mut union: BTreeSet<i32> = kept[&t].clone();
    union.extend(&theirs[&t]);
    assert_eq!(union.len(), 4);
    assert!(kept[&t].is_disjoint(&theirs[&t]));
    let described = describe(&mut conn, &[GROUP]).await;
    let g = &described.groups[0];
    assert_eq!(g.group_state.as_str(), "Stable");
    assert_eq!(g.members.len(), 2);
    for m in &g.members {
        assert_eq!(m.member_epoch, 2);
        assert_eq!(m.member_type, 1);
        assert_eq!(m.subscribed_topic_names, vec![TopicName(text("t"))]);
        let tp = &m.assignment.topic_partitions[0];
        assert_eq!((tp.topic_id, tp.topic_name.as_str()), (t, "t"));
        assert_eq!(tp.partitions.len(), 2);
        assert_eq!(
            m.target_assignment.topic_partitions[0].partitions,
            tp.partitions
        );
    }
    // ListGroups v5 lists it as a consumer group, by type and by state.
    for (types, states, listed) in [
        (vec!["consumer"], vec![], true),
        (vec!["classic"], vec![], false),
        (vec![], vec!["stable"], true),
        (vec![], vec!["empty"], false),
    ] {
        let request = ListGroupsRequest::default()
            .with_types_filter(types.iter().map(|t| text(t)).collect())
            .with_states_filter(states.iter().map(|s| text(s)).collect());
        let (_, response) = conn
            .request(ApiKey::ListGroups, 5, &RequestKind::ListGroups(request))
            .await
            .expect("answered");
        let ResponseKind::ListGroups(r) = response else {
            panic!("a ListGroups response")
        };
        let found = r.groups.iter().find(|g| g.group_id.as_str() == GROUP);
        assert_eq!(found.is_some(), listed, "{types:?} {states:?}");
        if let Some(g) = found {
            assert_eq!(
                (
                    g.group_type.as_str(),
                    g.group_state.as_str(),
                    g.protocol_type.as_str()
                ),
                ("consumer", "Stable", "consumer")
            );
        }
    }
    // a leaves: its partitions go to b at the next epoch.
    let left = heartbeat(&mut conn, beat("member-a", -1, None)).await;
    assert_eq!((left.error_code, left.member_epoch), (0, -1));
    let owned = theirs.clone();
    let grown = heartbeat(&mut conn, beat("member-b", 2, Some(&owned))).await;
    assert_eq!(grown.member_epoch, 3);
    assert_eq!(assignment(&grown).map(|a| count(&a)), Some(4));
}

#[tokio::test(start_paused = true)]
async fn kafka_errors_on_the_wire() {
    let cluster = cluster().await;
    let (node, mut conn) = coordinator(&cluster, GROUP).await;
    heartbeat(&mut conn, join("m", &["t"])).await;
    let cases: Vec<(ConsumerGroupHeartbeatRequest, ErrorCode)> = vec![
        (beat("m", 2, None), ErrorCode::FencedMemberEpoch),
        (beat("m", i32::MAX, None), ErrorCode::FencedMemberEpoch),
        (beat("ghost", 1, None), ErrorCode::UnknownMemberId),
        (beat("m", i32::MIN, None), ErrorCode::InvalidRequest),
        (beat("m", -2, None), ErrorCode::InvalidRequest),
        (join("", &["t"]), ErrorCode::InvalidRequest),
        (
            join("x", &["t"]).with_rebalance_timeout_ms(-1),
            ErrorCode::InvalidRequest,
        ),
        (
            join("x", &["t"]).with_server_assignor(Some(text("cooperative-sticky"))),
            ErrorCode::UnsupportedAssignor,
        ),
        (
            join("x", &[])
                .with_subscribed_topic_names(None)
                .with_subscribed_topic_regex(Some(text("t("))),
            ErrorCode::InvalidRegularExpression,
        ),
        (
            join("x", &["t"]).with_group_id(GroupId(text(""))),
            ErrorCode::InvalidRequest,
        ),
    ];
    for (request, expected) in cases {
        let r = heartbeat(&mut conn, request.clone()).await;
        assert_eq!(
            r.error_code,
            expected.code(),
            "{request:?} answered {:?}",
            r.error_message
        );
        assert!(
            r.error_message.is_some(),
            "Kafka's message for {expected:?}"
        );
    }
    // Another broker is not the coordinator.
    let mut other = RawConnection::new(cluster.connect((node + 1) % 3).expect("connect"));
    let r = heartbeat(&mut other, beat("m", 1, None)).await;
    assert_eq!(r.error_code, ErrorCode::NotCoordinator.code());
    // Describe: no such group, a bad id, a classic group are not consumer groups.
    let d = describe(&mut conn, &["nobody"]).await;
    assert!(matches!(
        d.groups[0].error_code,
        c if c == ErrorCode::GroupIdNotFound.code() || c == ErrorCode::NotCoordinator.code()
    ));
    let d = describe(&mut conn, &[""]).await;
    assert_eq!(d.groups[0].error_code, ErrorCode::InvalidGroupId.code());
}

#[tokio::test(start_paused = true)]
async fn commits_and_fetches_carry_the_member_epoch() {
    let cluster = cluster().await;
    let (_, mut conn) = coordinator(&cluster, GROUP).await;
    heartbeat(&mut conn, join("m", &["t"])).await;
    let commit = |epoch: i32, version: i16| {
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(text(GROUP)))
            .with_member_id(text("m"))
            .with_generation_id_or_member_epoch(epoch)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(text("t")))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(42)])]);
        (version, RequestKind::OffsetCommit(request))
    };
    for (epoch, version, expected) in [
        (1, 9, 0),
        (2, 9, ErrorCode::StaleMemberEpoch.code()),
        (1, 8, ErrorCode::UnsupportedVersion.code()),
    ] {
        let (version, request) = commit(epoch, version);
        let (_, response) = conn
            .request(ApiKey::OffsetCommit, version, &request)
            .await
            .expect("answered");
        let ResponseKind::OffsetCommit(r) = response else {
            panic!("an OffsetCommit response")
        };
        assert_eq!(
            r.topics[0].partitions[0].error_code, expected,
            "epoch {epoch} v{version}"
        );
    }
    let fetch = |member: Option<&str>, epoch: i32| {
        RequestKind::OffsetFetch(OffsetFetchRequest::default().with_groups(vec![
            OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(text(GROUP)))
                .with_member_id(member.map(text))
                .with_member_epoch(epoch)
                .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                    .with_name(TopicName(text("t")))
                    .with_partition_indexes(vec![0])])),
        ]))
    };
    for (member, epoch, expected_error, expected_offset) in [
        (Some("m"), 1, 0, 42),
        (Some("m"), 5, ErrorCode::StaleMemberEpoch.code(), -1),
        (Some("ghost"), 1, ErrorCode::UnknownMemberId.code(), -1),
        (None, -1, 0, 42),
    ] {
        let (_, response) = conn
            .request(ApiKey::OffsetFetch, 9, &fetch(member, epoch))
            .await
            .expect("answered");
        let ResponseKind::OffsetFetch(r) = response else {
            panic!("an OffsetFetch response")
        };
        let g = &r.groups[0];
        assert_eq!(g.error_code, expected_error, "{member:?} at {epoch}");
        if expected_error == 0 {
            assert_eq!(g.topics[0].partitions[0].committed_offset, expected_offset);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn interceptors_by_group_reach_the_new_apis() {
    let cluster = cluster().await;
    let (_, mut conn) = coordinator(&cluster, GROUP).await;
    cluster.intercept(
        Interceptor::new(
            ApiKey::ConsumerGroupHeartbeat,
            Action::Error(ErrorCode::CoordinatorLoadInProgress),
        )
        .on_group(GROUP),
    );
    cluster.intercept(
        Interceptor::new(
            ApiKey::ConsumerGroupHeartbeat,
            Action::Error(ErrorCode::NotCoordinator),
        )
        .on_group("someone-else"),
    );
    let r = heartbeat(&mut conn, join("m", &["t"])).await;
    assert_eq!(r.error_code, ErrorCode::CoordinatorLoadInProgress.code());
    let r = heartbeat(&mut conn, join("m", &["t"])).await;
    assert_eq!(
        (r.error_code, r.member_epoch),
        (0, 1),
        "the other group's interceptor waits"
    );
    cluster.intercept(
        Interceptor::new(
            ApiKey::ConsumerGroupDescribe,
            Action::Delay(Duration::from_secs(2)),
        )
        .on_group(GROUP),
    );
    let start = tokio::time::Instant::now();
    let d = describe(&mut conn, &[GROUP]).await;
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    assert_eq!(d.groups[0].members.len(), 1);
    let seen = cluster
        .requests()
        .iter()
        .filter(|r| r.api_key == ApiKey::ConsumerGroupHeartbeat)
        .count();
    assert_eq!(seen, 2, "both heartbeats recorded");
}

#[tokio::test(start_paused = true)]
async fn sessions_end_on_the_cluster_clock_and_static_members_come_back() {
    init_tracing();
    let cluster = Cluster::builder()
        .brokers(3)
        .in_memory()
        .topic("t", 4)
        .consumer_group_session_timeout(Duration::from_secs(10))
        .consumer_group_heartbeat_interval(Duration::from_secs(1))
        .build()
        .await
        .expect("cluster starts");
    let (_, mut conn) = coordinator(&cluster, GROUP).await;
    let first = heartbeat(
        &mut conn,
        join("pod-a", &["t"]).with_instance_id(Some(text("pod"))),
    )
    .await;
    assert_eq!((first.error_code, first.heartbeat_interval_ms), (0, 1_000));
    let dynamic = heartbeat(&mut conn, join("d", &["t"])).await;
    assert_eq!(dynamic.error_code, 0);
    // The static member steps out for a while (-2): no rebalance.
    let away = heartbeat(
        &mut conn,
        beat("pod-a", -2, None).with_instance_id(Some(text("pod"))),
    )
    .await;
    assert_eq!((away.error_code, away.member_epoch), (0, -2));
    let epoch = describe(&mut conn, &[GROUP]).await.groups[0].group_epoch;
    // Its successor takes its place and its partitions, without a new epoch.
    let back = heartbeat(
        &mut conn,
        join("pod-b", &["t"]).with_instance_id(Some(text("pod"))),
    )
    .await;
    assert_eq!(back.error_code, 0);
    // It holds what its target keeps of its predecessor's partitions (the predecessor
    // never heard of "d" joining, so it still held all four).
    let held = assignment(&back).expect("b's assignment");
    let before = assignment(&first).expect("a's assignment");
    assert_eq!(count(&held), 2);
    for (t, ps) in &held {
        assert!(ps.is_subset(&before[t]));
    }
    assert_eq!(
        describe(&mut conn, &[GROUP]).await.groups[0].group_epoch,
        epoch
    );
    // Taking an instance id that is in use is refused.
    let taken = heartbeat(
        &mut conn,
        join("pod-c", &["t"]).with_instance_id(Some(text("pod"))),
    )
    .await;
    assert_eq!(taken.error_code, ErrorCode::UnreleasedInstanceId.code());
    // "d" stops heartbeating; pod-b keeps on. After 10 s of cluster time d is gone.
    for _ in 0..11 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let r = heartbeat(
            &mut conn,
            beat("pod-b", back.member_epoch, None).with_instance_id(Some(text("pod"))),
        )
        .await;
        assert!(
            r.error_code == 0 || r.error_code == ErrorCode::FencedMemberEpoch.code(),
            "pod-b: {:?}",
            r.error_message
        );
        if r.error_code != 0 {
            break;
        }
    }
    let d = describe(&mut conn, &[GROUP]).await;
    let ids: Vec<&str> = d.groups[0]
        .members
        .iter()
        .map(|m| m.member_id.as_str())
        .collect();
    assert_eq!(ids, vec!["pod-b"]);
    let r = heartbeat(&mut conn, beat("d", dynamic.member_epoch, None)).await;
    assert_eq!(r.error_code, ErrorCode::UnknownMemberId.code());
}

#[tokio::test(start_paused = true)]
async fn the_group_survives_a_coordinator_move() {
    let cluster = cluster().await;
    let (node, mut conn) = coordinator(&cluster, GROUP).await;
    let joined = heartbeat(&mut conn, join("m", &["t"])).await;
    let owned = assignment(&joined).expect("assignment");
    let target = (node + 1) % 3;
    cluster
        .move_group_coordinator(GROUP, target)
        .expect("moved");
    let r = heartbeat(&mut conn, beat("m", 1, Some(&owned))).await;
    assert_eq!(r.error_code, ErrorCode::NotCoordinator.code());
    let (found, mut moved) = coordinator(&cluster, GROUP).await;
    assert_eq!(found, target);
    let r = heartbeat(&mut moved, beat("m", 1, Some(&owned))).await;
    assert_eq!((r.error_code, r.member_epoch), (0, 1));
    let d = describe(&mut moved, &[GROUP]).await;
    assert_eq!(d.groups[0].group_state.as_str(), "Stable");
}

#[tokio::test(start_paused = true)]
async fn a_heartbeat_claiming_two_billion_topics_in_a_few_bytes_is_refused() {
    let cluster = cluster().await;
    let (_, mut conn) = coordinator(&cluster, GROUP).await;
    // ConsumerGroupHeartbeat v1, header v2: key, version, correlation id, null client id,
    // no tagged fields; body: group "g", member "m", epoch 0, null instance and rack,
    // rebalance timeout, then a compact array claiming 2^31 - 2 topic names.
    let mut frame = Vec::new();
    frame.extend_from_slice(&(ApiKey::ConsumerGroupHeartbeat as i16).to_be_bytes());
    frame.extend_from_slice(&1i16.to_be_bytes());
    frame.extend_from_slice(&3i32.to_be_bytes());
    frame.extend_from_slice(&(-1i16).to_be_bytes());
    frame.push(0);
    frame.extend_from_slice(&[2, b'g', 2, b'm']);
    frame.extend_from_slice(&0i32.to_be_bytes());
    frame.extend_from_slice(&[0, 0]);
    frame.extend_from_slice(&30_000i32.to_be_bytes());
    frame.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x07]);
    conn.send_frame(&frame).await.expect("send");
    conn.expect_closed(Duration::from_secs(5))
        .await
        .expect("closed");
    // The coordinator still serves the group.
    let (_, mut fresh) = coordinator(&cluster, GROUP).await;
    let r = heartbeat(&mut fresh, join("m", &["t"])).await;
    assert_eq!((r.error_code, r.member_epoch), (0, 1));
}
