//! The group coordinator on the wire, with raw requests built here: FindCoordinator,
//! coordinator moves, and (with the group coordinator) joins, syncs, heartbeats, commits.
//! In-memory connections under a paused clock, so every timeout is virtual.

use std::time::Duration;

use bytes::Bytes;
use franzy::kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use franzy::kafka_protocol::messages::leave_group_request::MemberIdentity;
use franzy::kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use franzy::kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};
use franzy::kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use franzy::kafka_protocol::messages::{
    DescribeGroupsRequest, FindCoordinatorRequest, GroupId, HeartbeatRequest, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, ListGroupsRequest, OffsetCommitRequest,
    OffsetFetchRequest, OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse, TopicName,
};
use franzy::proto::message::decode_response;
use franzy::proto::{ApiKey, ErrorCode, RequestKind, ResponseKind, StrBytes};
use franzy_harness::{Action, Cluster, CoordinatorType, Interceptor};
use franzy_tests::{init_tracing, RawConnection};
use tokio::io::DuplexStream;

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

fn connect(cluster: &Cluster, broker: i32) -> RawConnection<DuplexStream> {
    RawConnection::new(cluster.connect(broker).expect("connect"))
}

/// FindCoordinator v4 for one key: (error code, node id).
async fn find(
    conn: &mut RawConnection<DuplexStream>,
    kind: CoordinatorType,
    key: &str,
) -> (i16, i32) {
    let key_type = match kind {
        CoordinatorType::Group => 0,
        CoordinatorType::Transaction => 1,
    };
    let request = FindCoordinatorRequest::default()
        .with_key_type(key_type)
        .with_coordinator_keys(vec![StrBytes::from_string(key.to_string())]);
    let (_, response) = conn
        .request(
            ApiKey::FindCoordinator,
            4,
            &RequestKind::FindCoordinator(request),
        )
        .await
        .expect("answered");
    let ResponseKind::FindCoordinator(r) = response else {
        panic!("a FindCoordinator response")
    };
    let c = &r.coordinators[0];
    (c.error_code, c.node_id.0)
}

#[tokio::test(start_paused = true)]
async fn find_coordinator_creates_the_internal_topic_then_follows_leader_moves() {
    let cluster = cluster().await;
    let mut conn = connect(&cluster, 0);
    assert_eq!(cluster.group_coordinator("g"), None);
    let (code, _) = find(&mut conn, CoordinatorType::Group, "g").await;
    assert_eq!(code, ErrorCode::CoordinatorNotAvailable.code());
    let (code, node) = find(&mut conn, CoordinatorType::Group, "g").await;
    assert_eq!(code, 0);
    assert_eq!(cluster.group_coordinator("g"), Some(node));
    let other = (node + 1) % 3;
    cluster.move_group_coordinator("g", other).expect("moved");
    assert_eq!(
        find(&mut conn, CoordinatorType::Group, "g").await,
        (0, other)
    );
    // Transactional ids have coordinators of their own, moved the same way.
    assert_eq!(
        find(&mut conn, CoordinatorType::Transaction, "tx").await.0,
        ErrorCode::CoordinatorNotAvailable.code()
    );
    let (code, node) = find(&mut conn, CoordinatorType::Transaction, "tx").await;
    assert_eq!(code, 0);
    let target = (node + 1) % 3;
    cluster
        .move_transaction_coordinator("tx", target)
        .expect("moved");
    assert_eq!(cluster.transaction_coordinator("tx"), Some(target));
    assert_eq!(
        find(&mut conn, CoordinatorType::Transaction, "tx").await,
        (0, target)
    );
    // The group's coordinator stops: another takes over; every broker gives the same answer.
    cluster.stop_broker(other).expect("stopped");
    let mut alive = connect(&cluster, (other + 1) % 3);
    let (code, next) = find(&mut alive, CoordinatorType::Group, "g").await;
    assert_eq!(code, 0);
    assert_ne!(next, other);
    assert_eq!(cluster.group_coordinator("g"), Some(next));
    assert!(
        cluster.move_transaction_coordinator("tx", other).is_err(),
        "a stopped broker"
    );
}

// ---- The group protocol, request by request ------------------------------------------------

const GROUP: &str = "orders-app";

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn group_id(s: &str) -> GroupId {
    GroupId(text(s))
}

/// A consumer-protocol subscription (v0) to `t`.
fn subscription() -> Bytes {
    let mut out = Vec::new();
    out.extend_from_slice(&0i16.to_be_bytes());
    out.extend_from_slice(&1i32.to_be_bytes());
    out.extend_from_slice(&1i16.to_be_bytes());
    out.extend_from_slice(b"t");
    out.extend_from_slice(&(-1i32).to_be_bytes());
    Bytes::from(out)
}

fn join_request(member_id: &str, instance: Option<&str>) -> RequestKind {
    RequestKind::JoinGroup(
        JoinGroupRequest::default()
            .with_group_id(group_id(GROUP))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(20_000)
            .with_member_id(text(member_id))
            .with_group_instance_id(instance.map(text))
            .with_protocol_type(text("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(text("range"))
                .with_metadata(subscription())]),
    )
}

/// Finds the group's coordinator (the first lookup creates `__consumer_offsets`) and opens a
/// connection to it.
async fn coordinator_connection(
    cluster: &Cluster,
    group: &str,
) -> (i32, RawConnection<DuplexStream>) {
    let mut any = connect(cluster, 0);
    let (code, _) = find(&mut any, CoordinatorType::Group, group).await;
    assert_eq!(code, ErrorCode::CoordinatorNotAvailable.code());
    let (code, node) = find(&mut any, CoordinatorType::Group, group).await;
    assert_eq!(code, 0);
    (node, connect(cluster, node))
}

/// Sends a JoinGroup v9 without waiting for its answer.
async fn send_join(
    conn: &mut RawConnection<DuplexStream>,
    member_id: &str,
    instance: Option<&str>,
) {
    conn.send(ApiKey::JoinGroup, 9, &join_request(member_id, instance))
        .await
        .expect("sent");
}

async fn read_join(conn: &mut RawConnection<DuplexStream>) -> JoinGroupResponse {
    let frame = conn.read_frame().await.expect("answered");
    match decode_response(frame, ApiKey::JoinGroup, 9)
        .expect("decodes")
        .1
    {
        ResponseKind::JoinGroup(r) => r,
        other => panic!("{other:?}"),
    }
}

/// A new member's KIP-394 dance: MEMBER_ID_REQUIRED, then the JoinGroup with its id (sent,
/// not read). Returns its id.
async fn start_joining(conn: &mut RawConnection<DuplexStream>) -> String {
    send_join(conn, "", None).await;
    let first = read_join(conn).await;
    assert_eq!(first.error_code, ErrorCode::MemberIdRequired.code());
    let id = first.member_id.to_string();
    send_join(conn, &id, None).await;
    id
}

async fn send_sync(
    conn: &mut RawConnection<DuplexStream>,
    member: &str,
    generation: i32,
    assignments: &[(&str, &str)],
) {
    let request = SyncGroupRequest::default()
        .with_group_id(group_id(GROUP))
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
                        .with_assignment(Bytes::copy_from_slice(a.as_bytes()))
                })
                .collect(),
        );
    conn.send(ApiKey::SyncGroup, 5, &RequestKind::SyncGroup(request))
        .await
        .expect("sent");
}

async fn read_sync(conn: &mut RawConnection<DuplexStream>) -> SyncGroupResponse {
    let frame = conn.read_frame().await.expect("answered");
    match decode_response(frame, ApiKey::SyncGroup, 5)
        .expect("decodes")
        .1
    {
        ResponseKind::SyncGroup(r) => r,
        other => panic!("{other:?}"),
    }
}

async fn heartbeat(conn: &mut RawConnection<DuplexStream>, member: &str, generation: i32) -> i16 {
    let request = HeartbeatRequest::default()
        .with_group_id(group_id(GROUP))
        .with_generation_id(generation)
        .with_member_id(text(member));
    match conn
        .request(ApiKey::Heartbeat, 4, &RequestKind::Heartbeat(request))
        .await
        .expect("answered")
        .1
    {
        ResponseKind::Heartbeat(r) => r.error_code,
        other => panic!("{other:?}"),
    }
}

/// OffsetCommit v9 of `t`'s partitions: the error of each.
async fn commit(
    conn: &mut RawConnection<DuplexStream>,
    member: &str,
    generation: i32,
    offsets: &[(i32, i64)],
) -> Vec<i16> {
    let request = OffsetCommitRequest::default()
        .with_group_id(group_id(GROUP))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(text(member))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(text("t")))
            .with_partitions(
                offsets
                    .iter()
                    .map(|&(p, o)| {
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(p)
                            .with_committed_offset(o)
                            .with_committed_leader_epoch(-1)
                            .with_committed_metadata(Some(text("m")))
                    })
                    .collect(),
            )]);
    match conn
        .request(ApiKey::OffsetCommit, 9, &RequestKind::OffsetCommit(request))
        .await
        .expect("answered")
        .1
    {
        ResponseKind::OffsetCommit(r) => r.topics[0]
            .partitions
            .iter()
            .map(|p| p.error_code)
            .collect(),
        other => panic!("{other:?}"),
    }
}

/// OffsetFetch v9 of the group (all partitions when `partitions` is None).
async fn fetch_offsets(
    conn: &mut RawConnection<DuplexStream>,
    partitions: Option<Vec<i32>>,
) -> OffsetFetchResponse {
    let topics = partitions.map(|p| {
        vec![OffsetFetchRequestTopics::default()
            .with_name(TopicName(text("t")))
            .with_partition_indexes(p)]
    });
    let request = OffsetFetchRequest::default()
        .with_require_stable(true)
        .with_groups(vec![OffsetFetchRequestGroup::default()
            .with_group_id(group_id(GROUP))
            .with_member_id(None)
            .with_member_epoch(-1)
            .with_topics(topics)]);
    match conn
        .request(ApiKey::OffsetFetch, 9, &RequestKind::OffsetFetch(request))
        .await
        .expect("answered")
        .1
    {
        ResponseKind::OffsetFetch(r) => r,
        other => panic!("{other:?}"),
    }
}

fn committed(r: &OffsetFetchResponse) -> Vec<(i32, i64)> {
    r.groups[0]
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (p.partition_index, p.committed_offset))
        })
        .collect()
}

async fn leave(
    conn: &mut RawConnection<DuplexStream>,
    members: &[(&str, Option<&str>)],
) -> Vec<i16> {
    let request = LeaveGroupRequest::default()
        .with_group_id(group_id(GROUP))
        .with_members(
            members
                .iter()
                .map(|(m, i)| {
                    MemberIdentity::default()
                        .with_member_id(text(m))
                        .with_group_instance_id(i.map(text))
                })
                .collect(),
        );
    match conn
        .request(ApiKey::LeaveGroup, 5, &RequestKind::LeaveGroup(request))
        .await
        .expect("answered")
        .1
    {
        ResponseKind::LeaveGroup(r) => {
            assert_eq!(r.error_code, 0);
            r.members.iter().map(|m| m.error_code).collect()
        }
        other => panic!("{other:?}"),
    }
}

async fn describe_state(conn: &mut RawConnection<DuplexStream>) -> (String, usize) {
    let request = DescribeGroupsRequest::default().with_groups(vec![group_id(GROUP)]);
    match conn
        .request(
            ApiKey::DescribeGroups,
            5,
            &RequestKind::DescribeGroups(request),
        )
        .await
        .expect("answered")
        .1
    {
        ResponseKind::DescribeGroups(r) => (
            r.groups[0].group_state.to_string(),
            r.groups[0].members.len(),
        ),
        other => panic!("{other:?}"),
    }
}

/// Two members in generation 1... the leader id, the follower id, both connections.
struct TwoMembers {
    leader: (String, RawConnection<DuplexStream>),
    follower: (String, RawConnection<DuplexStream>),
    generation: i32,
    coordinator: i32,
}

async fn two_members(cluster: &Cluster) -> TwoMembers {
    let (node, mut a) = coordinator_connection(cluster, GROUP).await;
    let mut b = connect(cluster, node);
    let a_id = start_joining(&mut a).await;
    // The initial rebalance delay is 0: `a` is alone in generation 1.
    let first = read_join(&mut a).await;
    assert_eq!((first.error_code, first.generation_id), (0, 1));
    send_sync(&mut a, &a_id, 1, &[(&a_id, "a-alone")]).await;
    assert_eq!(
        read_sync(&mut a).await.assignment,
        Bytes::from_static(b"a-alone")
    );
    // `b` joins: a rebalance, which waits for `a` to rejoin.
    let b_id = start_joining(&mut b).await;
    assert_eq!(
        heartbeat(&mut a, &a_id, 1).await,
        ErrorCode::RebalanceInProgress.code()
    );
    send_join(&mut a, &a_id, None).await;
    let a_join = read_join(&mut a).await;
    let b_join = read_join(&mut b).await;
    assert_eq!((a_join.generation_id, b_join.generation_id), (2, 2));
    assert_eq!(a_join.leader.as_str(), a_id, "the leader stays the leader");
    assert_eq!(
        a_join.members.len(),
        2,
        "the leader gets every member's subscription"
    );
    assert!(b_join.members.is_empty());
    // The follower's sync waits for the leader's assignment.
    send_sync(&mut b, &b_id, 2, &[]).await;
    send_sync(&mut a, &a_id, 2, &[(&a_id, "p0,p1"), (&b_id, "p2,p3")]).await;
    assert_eq!(
        read_sync(&mut a).await.assignment,
        Bytes::from_static(b"p0,p1")
    );
    let b_sync = read_sync(&mut b).await;
    assert_eq!(
        (b_sync.error_code, b_sync.assignment.clone()),
        (0, Bytes::from_static(b"p2,p3"))
    );
    assert_eq!(b_sync.protocol_name.as_deref(), Some("range"));
    TwoMembers {
        leader: (a_id, a),
        follower: (b_id, b),
        generation: 2,
        coordinator: node,
    }
}

#[tokio::test(start_paused = true)]
async fn two_members_join_sync_heartbeat_commit_and_one_leaves() {
    let cluster = cluster().await;
    let TwoMembers {
        leader: (a_id, mut a),
        follower: (b_id, mut b),
        generation,
        ..
    } = two_members(&cluster).await;
    assert_eq!(describe_state(&mut a).await, ("Stable".to_string(), 2));
    assert_eq!(heartbeat(&mut a, &a_id, generation).await, 0);
    assert_eq!(heartbeat(&mut b, &b_id, generation).await, 0);
    assert_eq!(
        commit(&mut a, &a_id, generation, &[(0, 10), (1, 11)]).await,
        vec![0, 0]
    );
    assert_eq!(
        commit(&mut b, &b_id, generation, &[(2, 20), (3, 30)]).await,
        vec![0, 0]
    );
    // A stale generation is refused, and changes nothing.
    assert_eq!(
        commit(&mut b, &b_id, generation - 1, &[(2, 99)]).await,
        vec![ErrorCode::IllegalGeneration.code()]
    );
    let fetched = fetch_offsets(&mut b, Some(vec![0, 2, 3])).await;
    assert_eq!(committed(&fetched), vec![(0, 10), (2, 20), (3, 30)]);
    let all = fetch_offsets(&mut b, None).await;
    assert_eq!(committed(&all), vec![(0, 10), (1, 11), (2, 20), (3, 30)]);
    assert_eq!(
        all.groups[0].topics[0].partitions[0].metadata.as_deref(),
        Some("m")
    );
    // `b` leaves: `a` must rejoin, alone in generation 3.
    assert_eq!(leave(&mut b, &[(&b_id, None)]).await, vec![0]);
    assert_eq!(
        heartbeat(&mut a, &a_id, generation).await,
        ErrorCode::RebalanceInProgress.code()
    );
    send_join(&mut a, &a_id, None).await;
    let rejoined = read_join(&mut a).await;
    assert_eq!((rejoined.generation_id, rejoined.members.len()), (3, 1));
    send_sync(&mut a, &a_id, 3, &[(&a_id, "all")]).await;
    assert_eq!(
        read_sync(&mut a).await.assignment,
        Bytes::from_static(b"all")
    );
    // The old generation's commits are refused; the new one's accepted.
    assert_eq!(
        commit(&mut a, &a_id, generation, &[(0, 12)]).await,
        vec![ErrorCode::IllegalGeneration.code()]
    );
    assert_eq!(commit(&mut a, &a_id, 3, &[(0, 12)]).await, vec![0]);
    // Sessions: `a` stops heartbeating and is removed after its 10 s session.
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(describe_state(&mut b).await, ("Empty".to_string(), 0));
    // Offsets outlive the members.
    assert_eq!(
        committed(&fetch_offsets(&mut b, Some(vec![0])).await),
        vec![(0, 12)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_static_member_that_restarts_replaces_its_old_id_which_is_fenced() {
    let cluster = cluster().await;
    let (node, mut old) = coordinator_connection(&cluster, GROUP).await;
    send_join(&mut old, "", Some("pod-1")).await;
    let joined = read_join(&mut old).await;
    assert_eq!(
        joined.error_code, 0,
        "static members skip MEMBER_ID_REQUIRED"
    );
    let old_id = joined.member_id.to_string();
    assert!(old_id.starts_with("pod-1-"), "{old_id}");
    send_sync(&mut old, &old_id, 1, &[(&old_id, "mine")]).await;
    read_sync(&mut old).await;
    // The pod restarts: same instance id, no member id. No rebalance: same generation.
    let mut new = connect(&cluster, node);
    send_join(&mut new, "", Some("pod-1")).await;
    let replaced = read_join(&mut new).await;
    assert_eq!((replaced.error_code, replaced.generation_id), (0, 1));
    let new_id = replaced.member_id.to_string();
    assert_ne!(new_id, old_id);
    let heartbeat_as = |member: &str| {
        RequestKind::Heartbeat(
            HeartbeatRequest::default()
                .with_group_id(group_id(GROUP))
                .with_generation_id(1)
                .with_member_id(text(member))
                .with_group_instance_id(Some(text("pod-1"))),
        )
    };
    let (_, r) = old
        .request(ApiKey::Heartbeat, 4, &heartbeat_as(&old_id))
        .await
        .expect("answered");
    assert!(
        matches!(r, ResponseKind::Heartbeat(h) if h.error_code == ErrorCode::FencedInstanceId.code())
    );
    let (_, r) = new
        .request(ApiKey::Heartbeat, 4, &heartbeat_as(&new_id))
        .await
        .expect("answered");
    assert!(matches!(r, ResponseKind::Heartbeat(h) if h.error_code == 0));
    assert_eq!(describe_state(&mut new).await, ("Stable".to_string(), 1));
    // It leaves by instance id alone.
    assert_eq!(leave(&mut new, &[("", Some("pod-1"))]).await, vec![0]);
    assert_eq!(describe_state(&mut new).await, ("Empty".to_string(), 0));
}

#[tokio::test(start_paused = true)]
async fn interceptors_by_group_delay_and_fail_every_group_api() {
    let cluster = cluster().await;
    let (_, mut conn) = coordinator_connection(&cluster, GROUP).await;
    // JoinGroup fails once with an injected error, then is delayed by 3 s.
    cluster.intercept(
        Interceptor::new(
            ApiKey::JoinGroup,
            Action::Error(ErrorCode::CoordinatorLoadInProgress),
        )
        .on_group(GROUP),
    );
    send_join(&mut conn, "", None).await;
    let failed = read_join(&mut conn).await;
    assert_eq!(
        failed.error_code,
        ErrorCode::CoordinatorLoadInProgress.code()
    );
    cluster.intercept(
        Interceptor::new(ApiKey::JoinGroup, Action::Delay(Duration::from_secs(3))).on_group(GROUP),
    );
    let start = tokio::time::Instant::now();
    let id = start_joining(&mut conn).await;
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    let joined = read_join(&mut conn).await;
    assert_eq!(joined.error_code, 0);
    // Another group's requests are untouched by interceptors narrowed to this one.
    cluster.intercept(
        Interceptor::new(
            ApiKey::SyncGroup,
            Action::Error(ErrorCode::RebalanceInProgress),
        )
        .on_group("other"),
    );
    // SyncGroup: delayed 2 s.
    cluster.intercept(
        Interceptor::new(ApiKey::SyncGroup, Action::Delay(Duration::from_secs(2))).on_group(GROUP),
    );
    let start = tokio::time::Instant::now();
    send_sync(&mut conn, &id, 1, &[(&id, "x")]).await;
    assert_eq!(read_sync(&mut conn).await.error_code, 0);
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    // Heartbeat: an injected REBALANCE_IN_PROGRESS, while the group is in fact stable.
    cluster.intercept(
        Interceptor::new(
            ApiKey::Heartbeat,
            Action::Error(ErrorCode::RebalanceInProgress),
        )
        .on_group(GROUP),
    );
    assert_eq!(
        heartbeat(&mut conn, &id, 1).await,
        ErrorCode::RebalanceInProgress.code()
    );
    assert_eq!(heartbeat(&mut conn, &id, 1).await, 0);
    // OffsetCommit: the whole request fails; then one partition only.
    cluster.intercept(
        Interceptor::new(
            ApiKey::OffsetCommit,
            Action::Error(ErrorCode::NotCoordinator),
        )
        .on_group(GROUP),
    );
    assert_eq!(
        commit(&mut conn, &id, 1, &[(0, 1), (1, 1)]).await,
        vec![ErrorCode::NotCoordinator.code(); 2]
    );
    cluster.intercept(
        Interceptor::new(
            ApiKey::OffsetCommit,
            Action::Error(ErrorCode::RequestTimedOut),
        )
        .on_partition("t", 1),
    );
    assert_eq!(
        commit(&mut conn, &id, 1, &[(0, 5), (1, 5)]).await,
        vec![0, ErrorCode::RequestTimedOut.code()]
    );
    assert_eq!(
        committed(&fetch_offsets(&mut conn, None).await),
        vec![(0, 5)]
    );
    assert_eq!(
        cluster.pending_interceptors(),
        1,
        "only the other group's is left"
    );
}

#[tokio::test(start_paused = true)]
async fn moving_the_coordinator_mid_rebalance_answers_not_coordinator_and_keeps_offsets() {
    let cluster = cluster().await;
    let TwoMembers {
        leader: (a_id, mut a),
        follower: (b_id, mut b),
        generation,
        coordinator,
    } = two_members(&cluster).await;
    assert_eq!(commit(&mut a, &a_id, generation, &[(0, 7)]).await, vec![0]);
    // A third member starts a rebalance; `a` rejoins and waits for `b`.
    let mut c = connect(&cluster, coordinator);
    let _c_id = start_joining(&mut c).await;
    send_join(&mut a, &a_id, None).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let target = (coordinator + 1) % 3;
    cluster
        .move_group_coordinator(GROUP, target)
        .expect("moved");
    // Both waiting joins are answered NOT_COORDINATOR at once.
    assert_eq!(
        read_join(&mut a).await.error_code,
        ErrorCode::NotCoordinator.code()
    );
    assert_eq!(
        read_join(&mut c).await.error_code,
        ErrorCode::NotCoordinator.code()
    );
    // The old coordinator refuses; the new one knows the group as last written: stable in
    // generation 2, with both members, and the committed offset.
    assert_eq!(
        heartbeat(&mut b, &b_id, generation).await,
        ErrorCode::NotCoordinator.code()
    );
    let mut any = connect(&cluster, 0);
    assert_eq!(
        find(&mut any, CoordinatorType::Group, GROUP).await,
        (0, target)
    );
    let mut moved_a = connect(&cluster, target);
    let mut moved_b = connect(&cluster, target);
    assert_eq!(heartbeat(&mut moved_b, &b_id, generation).await, 0);
    assert_eq!(
        describe_state(&mut moved_a).await,
        ("Stable".to_string(), 2)
    );
    assert_eq!(
        committed(&fetch_offsets(&mut moved_a, Some(vec![0])).await),
        vec![(0, 7)]
    );
    // The leader rejoins at the new coordinator: a rebalance there.
    send_join(&mut moved_a, &a_id, None).await;
    send_join(&mut moved_b, &b_id, None).await;
    let ja = read_join(&mut moved_a).await;
    let jb = read_join(&mut moved_b).await;
    assert_eq!(
        (ja.error_code, ja.generation_id, jb.generation_id),
        (0, 3, 3)
    );
    // ListGroups: the new coordinator lists it, the old one no more.
    let listed = |r: ResponseKind| match r {
        ResponseKind::ListGroups(r) => r
            .groups
            .iter()
            .map(|g| g.group_id.to_string())
            .collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    let list = RequestKind::ListGroups(ListGroupsRequest::default());
    let (_, r) = moved_a
        .request(ApiKey::ListGroups, 5, &list)
        .await
        .expect("answered");
    assert_eq!(listed(r), vec![GROUP.to_string()]);
    let (_, r) = b
        .request(ApiKey::ListGroups, 5, &list)
        .await
        .expect("answered");
    assert!(listed(r).is_empty());
}
