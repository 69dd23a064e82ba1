//! The member's state machine driven by hand with plain `Instant`s: scripted coordinator
//! answers in, requests and events out.

use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FindCoordinatorResponse, HeartbeatResponse, JoinGroupResponse,
    LeaveGroupResponse, MetadataResponse, OffsetCommitResponse, OffsetFetchResponse, ResponseKind,
    SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::*;
use crate::engine::group::assignor::{Assignment, CooperativeStickyAssignor, RangeAssignor};
use crate::engine::group::requests::Body;

const MS: Duration = Duration::from_millis(1);

fn config(instance: Option<&str>) -> GroupConfig {
    GroupConfig {
        group_id: "g".into(),
        group_instance_id: instance.map(String::from),
        session_timeout: 10_000 * MS,
        rebalance_timeout: 60_000 * MS,
        heartbeat_interval: 1_000 * MS,
        retry_backoff: 100 * MS,
        retry_backoff_max: 1_000 * MS,
        auto_commit: true,
        auto_commit_interval: 5_000 * MS,
        rack: None,
        require_stable: false,
        protocol: crate::config::GroupProtocol::Classic,
        remote_assignor: None,
    }
}

fn engine(instance: Option<&str>, cooperative: bool) -> GroupEngine {
    let assignors: Vec<Box<dyn PartitionAssignor>> = if cooperative {
        vec![Box::new(CooperativeStickyAssignor)]
    } else {
        vec![Box::new(RangeAssignor)]
    };
    GroupEngine::new(config(instance), assignors, 7).expect("engine")
}

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn metadata(partitions: i32) -> Metadata {
    let broker = MetadataResponseBroker::default()
        .with_node_id(BrokerId(0))
        .with_host(text("b0"))
        .with_port(9092);
    let topic = MetadataResponseTopic::default()
        .with_name(Some(TopicName(text("t"))))
        .with_partitions(
            (0..partitions)
                .map(|p| {
                    MetadataResponsePartition::default()
                        .with_partition_index(p)
                        .with_leader_id(BrokerId(0))
                })
                .collect(),
        );
    let mut md = Metadata::new(Duration::from_secs(300));
    md.want("t");
    md.handle_response(
        &MetadataResponse::default()
            .with_brokers(vec![broker])
            .with_topics(vec![topic]),
        Instant::now(),
    );
    md
}

fn one(requests: Vec<GroupRequest>, api: kafka_protocol::messages::ApiKey) -> GroupRequest {
    let found: Vec<GroupRequest> = requests.into_iter().filter(|r| r.api() == api).collect();
    assert_eq!(found.len(), 1, "one {api:?}: {found:?}");
    found.into_iter().next().expect("one")
}

fn tp(p: i32) -> TopicPartition {
    TopicPartition::new("t", p)
}

/// Finds the coordinator: returns the engine's next requests after the answer.
fn find(engine: &mut GroupEngine, now: Instant) -> Vec<GroupRequest> {
    let find = one(engine.poll_requests(now), ApiKey::FindCoordinator);
    assert_eq!(find.target, Target::AnyBroker);
    let coordinator = Coordinator::default()
        .with_key(text("g"))
        .with_node_id(BrokerId(2))
        .with_host(text("b2"))
        .with_port(9094);
    engine.handle_response(
        find.id,
        4,
        ResponseKind::FindCoordinator(
            FindCoordinatorResponse::default().with_coordinators(vec![coordinator]),
        ),
        now,
    );
    engine.poll_requests(now)
}

fn join_answer(
    member: &str,
    generation: i32,
    leader: &str,
    members: &[(&str, Subscription)],
) -> ResponseKind {
    ResponseKind::JoinGroup(
        JoinGroupResponse::default()
            .with_member_id(text(member))
            .with_generation_id(generation)
            .with_protocol_name(Some(text("range")))
            .with_leader(text(leader))
            .with_members(
                members
                    .iter()
                    .map(|(id, s)| {
                        JoinGroupResponseMember::default()
                            .with_member_id(text(id))
                            .with_metadata(encode_subscription(s, 3))
                    })
                    .collect(),
            ),
    )
}

fn sync_answer(partitions: &[TopicPartition]) -> ResponseKind {
    let assignment = Assignment {
        partitions: partitions.to_vec(),
        user_data: None,
    };
    ResponseKind::SyncGroup(
        SyncGroupResponse::default().with_assignment(encode_assignment(&assignment, 3)),
    )
}

fn heartbeat_answer(code: ErrorCode) -> ResponseKind {
    ResponseKind::Heartbeat(HeartbeatResponse::default().with_error_code(code.code()))
}

/// Joins as the only member (the leader) of generation 1 with `partitions` of `t`.
fn joined(instance: Option<&str>, cooperative: bool, partitions: i32, now: Instant) -> GroupEngine {
    let mut engine = engine(instance, cooperative);
    engine.subscribe(["t".to_string()]);
    engine.handle_poll(now, true);
    let join = one(find(&mut engine, now), ApiKey::JoinGroup);
    let Body::JoinGroup { member_id, .. } = &join.body else {
        panic!("join")
    };
    assert_eq!(member_id, "", "the first join has no member id");
    let name = if cooperative {
        "cooperative-sticky"
    } else {
        "range"
    };
    let mut answer = join_answer("m-1", 1, "m-1", &[("m-1", Subscription::new(["t"]))]);
    if let ResponseKind::JoinGroup(body) = &mut answer {
        body.protocol_name = Some(text(name));
    }
    engine.handle_response(join.id, 9, answer, now);
    assert_eq!(engine.poll_leader_topics(), vec!["t".to_string()]);
    engine.handle_metadata(&metadata(partitions), now);
    let sync = one(engine.poll_requests(now), ApiKey::SyncGroup);
    let Body::SyncGroup {
        assignments,
        generation,
        ..
    } = &sync.body
    else {
        panic!("sync")
    };
    assert_eq!(*generation, 1);
    let mine = decode_assignment(&assignments[0].1).expect("assignment");
    engine.handle_response(sync.id, 5, sync_answer(&mine.partitions), now);
    let all: Vec<TopicPartition> = (0..partitions).map(tp).collect();
    assert_eq!(
        engine.poll_event(now),
        Some(GroupEvent::Assign {
            assignment: all.clone(),
            added: all
        })
    );
    engine.handle_event_done();
    assert!(engine.is_stable());
    engine
}

#[test]
fn joins_with_the_member_id_the_coordinator_requires_and_assigns_as_leader() {
    let now = Instant::now();
    let mut engine = engine(None, false);
    engine.subscribe(["t".to_string()]);
    let join = one(find(&mut engine, now), ApiKey::JoinGroup);
    assert!(
        matches!(&join.target, Target::Coordinator { node: 2, address } if address == "b2:9094")
    );
    // KIP-394: the coordinator hands out an id and asks for a second JoinGroup with it.
    let required = ResponseKind::JoinGroup(
        JoinGroupResponse::default()
            .with_error_code(ErrorCode::MemberIdRequired.code())
            .with_member_id(text("m-1")),
    );
    engine.handle_response(join.id, 9, required, now);
    let again = one(engine.poll_requests(now), ApiKey::JoinGroup);
    let Body::JoinGroup {
        member_id,
        protocols,
        ..
    } = &again.body
    else {
        panic!("join")
    };
    assert_eq!(member_id, "m-1");
    assert_eq!(protocols[0].0, "range");
    let subscription = decode_subscription(&protocols[0].1).expect("subscription");
    assert_eq!(subscription.topics, vec!["t".to_string()]);
    engine.handle_response(
        again.id,
        9,
        join_answer(
            "m-1",
            1,
            "m-1",
            &[
                ("m-1", Subscription::new(["t"])),
                ("m-2", Subscription::new(["t"])),
            ],
        ),
        now,
    );
    // No SyncGroup before the leader has metadata for the group's topics.
    assert!(engine
        .poll_requests(now)
        .iter()
        .all(|r| r.api() != ApiKey::SyncGroup));
    engine.handle_metadata(&metadata(4), now);
    let sync = one(engine.poll_requests(now), ApiKey::SyncGroup);
    let Body::SyncGroup { assignments, .. } = &sync.body else {
        panic!("sync")
    };
    let decoded: Vec<(String, Vec<TopicPartition>)> = assignments
        .iter()
        .map(|(m, a)| {
            (
                m.clone(),
                decode_assignment(a).expect("assignment").partitions,
            )
        })
        .collect();
    assert_eq!(
        decoded,
        vec![
            ("m-1".into(), vec![tp(0), tp(1)]),
            ("m-2".into(), vec![tp(2), tp(3)])
        ]
    );
    engine.handle_response(sync.id, 5, sync_answer(&[tp(0), tp(1)]), now);
    assert!(matches!(
        engine.poll_event(now),
        Some(GroupEvent::Assign { .. })
    ));
    engine.handle_event_done();
    assert_eq!(engine.group_metadata().generation_id, 1);
    assert_eq!(engine.group_metadata().member_id, "m-1");
    // Heartbeats every heartbeat.interval.ms.
    assert!(engine.poll_requests(now + 999 * MS).is_empty());
    assert_eq!(engine.poll_timeout(now), Some(now + 1_000 * MS));
    let beat = one(engine.poll_requests(now + 1_000 * MS), ApiKey::Heartbeat);
    engine.handle_response(beat.id, 4, heartbeat_answer_ok(), now + 1_001 * MS);
    assert!(engine.poll_requests(now + 1_500 * MS).is_empty());
    one(engine.poll_requests(now + 2_000 * MS), ApiKey::Heartbeat);
}

fn heartbeat_answer_ok() -> ResponseKind {
    ResponseKind::Heartbeat(HeartbeatResponse::default())
}

#[test]
fn an_eager_rebalance_revokes_everything_before_joining_and_heartbeats_meanwhile() {
    let now = Instant::now();
    let mut engine = joined(None, false, 2, now);
    let beat = one(engine.poll_requests(now + 1_000 * MS), ApiKey::Heartbeat);
    engine.handle_response(
        beat.id,
        4,
        heartbeat_answer(ErrorCode::RebalanceInProgress),
        now + 1_000 * MS,
    );
    assert!(!engine.is_stable());
    assert_eq!(
        engine.poll_event(now + 1_000 * MS),
        Some(GroupEvent::Revoke(vec![tp(0), tp(1)]))
    );
    // The callback runs: no JoinGroup yet, but heartbeats go on.
    let requests = engine.poll_requests(now + 2_000 * MS);
    assert!(requests.iter().all(|r| r.api() != ApiKey::JoinGroup));
    one(requests, ApiKey::Heartbeat);
    engine.handle_event_done();
    assert!(engine.owned().is_empty());
    let join = one(engine.poll_requests(now + 2_000 * MS), ApiKey::JoinGroup);
    let Body::JoinGroup {
        member_id,
        protocols,
        ..
    } = &join.body
    else {
        panic!()
    };
    assert_eq!(member_id, "m-1", "a known member rejoins under its id");
    assert!(decode_subscription(&protocols[0].1)
        .expect("sub")
        .owned_partitions
        .is_empty());
}

#[test]
fn a_member_removed_from_the_group_loses_its_partitions_and_rejoins_as_new() {
    let now = Instant::now();
    let mut engine = joined(None, false, 2, now);
    let beat = one(engine.poll_requests(now + 1_000 * MS), ApiKey::Heartbeat);
    engine.handle_response(
        beat.id,
        4,
        heartbeat_answer(ErrorCode::UnknownMemberId),
        now + 1_000 * MS,
    );
    assert_eq!(
        engine.poll_event(now + 1_000 * MS),
        Some(GroupEvent::Lose(vec![tp(0), tp(1)]))
    );
    engine.handle_event_done();
    let join = one(engine.poll_requests(now + 1_000 * MS), ApiKey::JoinGroup);
    let Body::JoinGroup { member_id, .. } = &join.body else {
        panic!()
    };
    assert_eq!(member_id, "");
    // A commit now fails: the member is not in a generation.
    let token = engine.commit(
        vec![(tp(0), OffsetAndMetadata::new(5))],
        Some(now + 60_000 * MS),
    );
    let _ = engine.poll_requests(now + 1_000 * MS);
    let results = engine.poll_commit_results();
    assert!(
        matches!(&results[..], [(t, Err(Error::CommitFailed { .. }))] if *t == token),
        "{results:?}"
    );
}

#[test]
fn the_coordinator_is_looked_up_again_when_it_moves_or_stops_answering() {
    let now = Instant::now();
    let mut engine = joined(None, false, 1, now);
    let beat = one(engine.poll_requests(now + 1_000 * MS), ApiKey::Heartbeat);
    engine.handle_response(
        beat.id,
        4,
        heartbeat_answer(ErrorCode::NotCoordinator),
        now + 1_000 * MS,
    );
    one(
        engine.poll_requests(now + 1_000 * MS),
        ApiKey::FindCoordinator,
    );
    // Found again: heartbeats resume; then no answer for session.timeout.ms.
    let mut engine = joined(None, false, 1, now);
    let beat = one(engine.poll_requests(now + 1_000 * MS), ApiKey::Heartbeat);
    engine.handle_failure(
        beat.id,
        &Error::RequestTimeout(Duration::from_secs(30)),
        now + 1_000 * MS,
    );
    one(
        engine.poll_requests(now + 1_000 * MS),
        ApiKey::FindCoordinator,
    );
    assert!(
        engine.owned().len() == 1,
        "partitions are kept while the coordinator is looked up"
    );
}

#[test]
fn a_static_member_sends_its_instance_id_and_leaves_no_group_on_close() {
    let now = Instant::now();
    let mut engine = engine(Some("instance-1"), false);
    engine.subscribe(["t".to_string()]);
    let join = one(find(&mut engine, now), ApiKey::JoinGroup);
    let Body::JoinGroup {
        group_instance_id, ..
    } = &join.body
    else {
        panic!()
    };
    assert_eq!(group_instance_id.as_deref(), Some("instance-1"));
    let mut engine = joined(Some("instance-1"), false, 1, now);
    assert!(!engine.close(), "a static member sends no LeaveGroup");
    assert!(engine
        .poll_requests(now)
        .iter()
        .all(|r| r.api() != ApiKey::LeaveGroup));
    let mut dynamic = joined(None, false, 1, now);
    assert!(dynamic.close());
    let leave = one(dynamic.poll_requests(now), ApiKey::LeaveGroup);
    let Body::LeaveGroup { member_id, .. } = &leave.body else {
        panic!()
    };
    assert_eq!(member_id, "m-1");
    assert!(dynamic.is_leaving());
    dynamic.handle_response(
        leave.id,
        5,
        ResponseKind::LeaveGroup(LeaveGroupResponse::default()),
        now,
    );
    assert!(!dynamic.is_leaving());
}

#[test]
fn fenced_by_another_instance_is_fatal() {
    let now = Instant::now();
    let mut engine = joined(Some("instance-1"), false, 1, now);
    let beat = one(engine.poll_requests(now + 1_000 * MS), ApiKey::Heartbeat);
    engine.handle_response(
        beat.id,
        4,
        heartbeat_answer(ErrorCode::FencedInstanceId),
        now + 1_000 * MS,
    );
    let error = engine.poll_error().expect("an error");
    assert!(error.is_fatal(), "{error}");
    assert_eq!(error.code(), Some(ErrorCode::FencedInstanceId));
    assert!(engine.poll_requests(now + 2_000 * MS).is_empty());
}

#[test]
fn exceeding_the_poll_interval_leaves_the_group_then_reports_and_rejoins() {
    let now = Instant::now();
    let mut engine = joined(None, false, 1, now);
    // The application leaves recv and does not come back.
    engine.handle_poll(now, false);
    assert_eq!(
        engine.poll_timeout(now),
        Some(now + 1_000 * MS),
        "next heartbeat first"
    );
    let mut at = now;
    let mut leave = None;
    while at < now + 61_000 * MS {
        at += 1_000 * MS;
        for request in engine.poll_requests(at) {
            match request.api() {
                ApiKey::Heartbeat => {
                    engine.handle_response(request.id, 4, heartbeat_answer_ok(), at)
                }
                ApiKey::LeaveGroup => leave = Some((at, request)),
                other => panic!("unexpected {other:?}"),
            }
        }
        if leave.is_some() {
            break;
        }
    }
    let (left_at, leave) = leave.expect("a LeaveGroup");
    assert_eq!(left_at, now + 60_000 * MS, "at max.poll.interval.ms");
    let Body::LeaveGroup {
        member_id, reason, ..
    } = &leave.body
    else {
        panic!()
    };
    assert_eq!(member_id, "m-1");
    assert!(reason.contains("poll timeout"));
    // The next recv is told, loses the partitions and rejoins.
    engine.handle_poll(left_at + 5_000 * MS, true);
    assert!(matches!(
        engine.poll_error(),
        Some(Error::PollIntervalExceeded { .. })
    ));
    assert_eq!(
        engine.poll_event(left_at + 5_000 * MS),
        Some(GroupEvent::Lose(vec![tp(0)]))
    );
    engine.handle_event_done();
    one(
        engine.poll_requests(left_at + 5_000 * MS),
        ApiKey::JoinGroup,
    );
}

#[test]
fn commits_carry_the_generation_and_fail_clearly_when_it_is_stale() {
    let now = Instant::now();
    let mut engine = joined(None, false, 1, now);
    let token = engine.commit(
        vec![(
            tp(0),
            OffsetAndMetadata::new(42)
                .with_metadata("m")
                .with_leader_epoch(3),
        )],
        Some(now + 60_000 * MS),
    );
    let commit = one(engine.poll_requests(now), ApiKey::OffsetCommit);
    let Body::OffsetCommit {
        generation,
        member_id,
        offsets,
        ..
    } = &commit.body
    else {
        panic!()
    };
    assert_eq!((*generation, member_id.as_str()), (1, "m-1"));
    assert_eq!(offsets[0].1.offset, 42);
    let answer = |code: ErrorCode| {
        ResponseKind::OffsetCommit(OffsetCommitResponse::default().with_topics(vec![
            OffsetCommitResponseTopic::default()
                .with_name(TopicName(text("t")))
                .with_partitions(vec![OffsetCommitResponsePartition::default()
                    .with_partition_index(0)
                    .with_error_code(code.code())]),
        ]))
    };
    // A retriable error: a synchronous commit is sent again after the backoff.
    engine.handle_response(
        commit.id,
        8,
        answer(ErrorCode::CoordinatorLoadInProgress),
        now,
    );
    assert!(engine.poll_commit_results().is_empty());
    assert!(engine
        .poll_requests(now + 50 * MS)
        .iter()
        .all(|r| r.api() != ApiKey::OffsetCommit));
    let commit = one(engine.poll_requests(now + 100 * MS), ApiKey::OffsetCommit);
    engine.handle_response(
        commit.id,
        8,
        answer(ErrorCode::IllegalGeneration),
        now + 100 * MS,
    );
    let results = engine.poll_commit_results();
    assert!(
        matches!(&results[..], [(t, Err(Error::CommitFailed { code: Some(ErrorCode::IllegalGeneration), .. }))] if *t == token),
        "{results:?}"
    );
    assert!(!engine.is_stable(), "the member rejoins");
}

#[test]
fn committed_offsets_are_looked_up_for_new_partitions() {
    let now = Instant::now();
    let mut engine = engine(None, false);
    // Manual assignment with a group: no JoinGroup, only the lookup.
    engine.fetch_start_positions(vec![tp(0), tp(1)]);
    let requests = find(&mut engine, now);
    let fetch = one(requests, ApiKey::OffsetFetch);
    let answer = ResponseKind::OffsetFetch(OffsetFetchResponse::default().with_topics(vec![
        OffsetFetchResponseTopic::default()
            .with_name(TopicName(text("t")))
            .with_partitions(vec![
                OffsetFetchResponsePartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(17),
                OffsetFetchResponsePartition::default()
                    .with_partition_index(1)
                    .with_committed_offset(-1),
            ]),
    ]));
    engine.handle_response(fetch.id, 7, answer, now);
    assert_eq!(
        engine.poll_start_positions(),
        vec![(tp(0), Some(17)), (tp(1), None)]
    );
}

#[test]
fn cooperative_rebalances_revoke_only_what_moves_and_rejoin() {
    let now = Instant::now();
    let mut engine = joined(None, true, 4, now);
    assert_eq!(engine.protocol(), RebalanceProtocol::Cooperative);
    let beat = one(engine.poll_requests(now + 1_000 * MS), ApiKey::Heartbeat);
    engine.handle_response(
        beat.id,
        4,
        heartbeat_answer(ErrorCode::RebalanceInProgress),
        now + 1_000 * MS,
    );
    // Nothing is revoked before joining: the subscription did not change.
    assert_eq!(engine.poll_event(now + 1_000 * MS), None);
    let join = one(engine.poll_requests(now + 1_000 * MS), ApiKey::JoinGroup);
    let Body::JoinGroup { protocols, .. } = &join.body else {
        panic!()
    };
    let sub = decode_subscription(&protocols[0].1).expect("sub");
    assert_eq!(sub.owned_partitions, vec![tp(0), tp(1), tp(2), tp(3)]);
    assert_eq!(sub.generation_id, Some(1));
    // A follower now: the leader took partitions 2 and 3 away.
    engine.handle_response(
        join.id,
        9,
        join_answer("m-1", 2, "m-2", &[]),
        now + 1_000 * MS,
    );
    let sync = one(engine.poll_requests(now + 1_000 * MS), ApiKey::SyncGroup);
    engine.handle_response(sync.id, 5, sync_answer(&[tp(0), tp(1)]), now + 1_000 * MS);
    assert_eq!(
        engine.poll_event(now + 1_000 * MS),
        Some(GroupEvent::Revoke(vec![tp(2), tp(3)]))
    );
    engine.handle_event_done();
    assert_eq!(
        engine.poll_event(now + 1_000 * MS),
        Some(GroupEvent::Assign {
            assignment: vec![tp(0), tp(1)],
            added: vec![]
        })
    );
    engine.handle_event_done();
    // ... and rejoins so that the revoked partitions find their new owner.
    one(engine.poll_requests(now + 1_000 * MS), ApiKey::JoinGroup);
}

#[test]
fn fatal_join_errors_end_the_membership() {
    for code in [
        ErrorCode::GroupAuthorizationFailed,
        ErrorCode::InconsistentGroupProtocol,
        ErrorCode::InvalidSessionTimeout,
        ErrorCode::GroupMaxSizeReached,
    ] {
        let now = Instant::now();
        let mut engine = engine(None, false);
        engine.subscribe(["t".to_string()]);
        let join = one(find(&mut engine, now), ApiKey::JoinGroup);
        let answer =
            ResponseKind::JoinGroup(JoinGroupResponse::default().with_error_code(code.code()));
        engine.handle_response(join.id, 9, answer, now);
        let error = engine.poll_error().expect("error");
        assert!(
            matches!(error, Error::GroupFailed { code: c, .. } if c == code),
            "{error}"
        );
        let token = engine.commit(vec![(tp(0), OffsetAndMetadata::new(1))], None);
        assert!(matches!(&engine.poll_commit_results()[..], [(t, Err(_))] if *t == token));
    }
    let _ = Bytes::new();
}

#[test]
fn a_pattern_subscribes_to_the_topics_it_matches_as_they_appear() {
    let now = Instant::now();
    let mut engine = engine(None, false);
    engine
        .subscribe_pattern("t|orders-.*")
        .expect("a valid pattern");
    assert!(engine.wants_all_topics());
    engine.handle_metadata(&metadata(2), now);
    assert_eq!(engine.subscription(), vec!["t".to_string()]);
    let join = one(find(&mut engine, now), ApiKey::JoinGroup);
    let Body::JoinGroup { protocols, .. } = &join.body else {
        panic!()
    };
    assert_eq!(
        decode_subscription(&protocols[0].1).expect("sub").topics,
        vec!["t".to_string()]
    );
    // The whole name must match (Java's `matches()`), and internal topics never do.
    let broker = MetadataResponseBroker::default()
        .with_node_id(BrokerId(0))
        .with_host(text("b0"))
        .with_port(9092);
    let topic = |name: &str, internal: bool| {
        MetadataResponseTopic::default()
            .with_name(Some(TopicName(text(name))))
            .with_is_internal(internal)
            .with_partitions(vec![
                MetadataResponsePartition::default().with_leader_id(BrokerId(0))
            ])
    };
    let mut md = metadata(2);
    md.handle_response(
        &MetadataResponse::default()
            .with_brokers(vec![broker])
            .with_topics(vec![
                topic("orders-eu", false),
                topic("xorders-eu", false),
                topic("__consumer_offsets", false).with_is_internal(true),
            ]),
        now,
    );
    engine.handle_metadata(&md, now);
    assert_eq!(
        engine.subscription(),
        vec!["orders-eu".to_string(), "t".to_string()]
    );
    assert!(!engine.is_stable(), "a new match rejoins");
    assert!(engine.subscribe_pattern("(").is_err());
}

#[test]
fn a_cooperative_member_refused_at_join_loses_what_it_kept_and_joins_anew() {
    let now = Instant::now();
    let mut engine = joined(None, true, 2, now);
    let beat = one(engine.poll_requests(now + 1_000 * MS), ApiKey::Heartbeat);
    engine.handle_response(
        beat.id,
        4,
        heartbeat_answer(ErrorCode::RebalanceInProgress),
        now + 1_000 * MS,
    );
    let join = one(engine.poll_requests(now + 1_000 * MS), ApiKey::JoinGroup);
    assert_eq!(engine.owned().len(), 2, "cooperative: kept while joining");
    let refused = ResponseKind::JoinGroup(
        JoinGroupResponse::default().with_error_code(ErrorCode::UnknownMemberId.code()),
    );
    engine.handle_response(join.id, 9, refused, now + 1_100 * MS);
    assert_eq!(
        engine.poll_event(now + 1_100 * MS),
        Some(GroupEvent::Lose(vec![tp(0), tp(1)]))
    );
    engine.handle_event_done();
    let join = one(engine.poll_requests(now + 1_100 * MS), ApiKey::JoinGroup);
    let Body::JoinGroup {
        member_id,
        protocols,
        ..
    } = &join.body
    else {
        panic!()
    };
    assert_eq!(member_id, "");
    assert!(decode_subscription(&protocols[0].1)
        .expect("sub")
        .owned_partitions
        .is_empty());
}
