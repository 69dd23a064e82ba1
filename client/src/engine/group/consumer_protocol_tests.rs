//! The KIP-848 member driven by hand: scripted ConsumerGroupHeartbeat answers in,
//! requests and rebalance steps out, no IO.

use std::time::{Duration, Instant};

use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, ConsumerGroupHeartbeatResponse, FindCoordinatorResponse, MetadataResponse,
    OffsetCommitResponse, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::MemberState;
use crate::config::GroupProtocol;
use crate::engine::group::assignor::RangeAssignor;
use crate::engine::group::requests::{Body, Heartbeat};
use crate::engine::group::{GroupConfig, GroupEngine, GroupEvent, OffsetAndMetadata};
use crate::engine::group::{GroupRequest, Target};
use crate::engine::metadata::Metadata;
use crate::error::Error;
use crate::proto::ErrorCode;
use crate::topic_partition::TopicPartition;

const MS: Duration = Duration::from_millis(1);
const TOPIC_ID: Uuid = Uuid::from_u128(7);

fn config(instance: Option<&str>) -> GroupConfig {
    GroupConfig {
        group_id: "g".into(),
        group_instance_id: instance.map(String::from),
        session_timeout: 45_000 * MS,
        rebalance_timeout: 60_000 * MS,
        heartbeat_interval: 3_000 * MS,
        retry_backoff: 100 * MS,
        retry_backoff_max: 1_000 * MS,
        auto_commit: true,
        auto_commit_interval: 5_000 * MS,
        rack: Some("rack-a".into()),
        require_stable: false,
        protocol: GroupProtocol::Consumer,
        remote_assignor: Some("uniform".into()),
    }
}

fn engine(instance: Option<&str>) -> GroupEngine {
    GroupEngine::new(config(instance), vec![Box::new(RangeAssignor)], 11).expect("engine")
}

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn tp(p: i32) -> TopicPartition {
    TopicPartition::new("t", p)
}

/// Metadata knowing topic `t` (id 7) with `partitions` partitions.
fn metadata(partitions: i32) -> Metadata {
    let broker = MetadataResponseBroker::default()
        .with_node_id(BrokerId(0))
        .with_host(text("b0"))
        .with_port(9092);
    let topic = MetadataResponseTopic::default()
        .with_name(Some(TopicName(text("t"))))
        .with_topic_id(TOPIC_ID)
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

fn only(requests: Vec<GroupRequest>, api: ApiKey) -> GroupRequest {
    let found: Vec<GroupRequest> = requests.into_iter().filter(|r| r.api() == api).collect();
    assert_eq!(found.len(), 1, "one {api:?}: {found:?}");
    found.into_iter().next().expect("one")
}

fn beat_of(request: &GroupRequest) -> Heartbeat {
    match &request.body {
        Body::ConsumerGroupHeartbeat(beat) => beat.clone(),
        other => panic!("not a heartbeat: {other:?}"),
    }
}

/// Answers FindCoordinator; returns the requests that follow.
fn find(engine: &mut GroupEngine, now: Instant) -> Vec<GroupRequest> {
    let find = only(engine.poll_requests(now), ApiKey::FindCoordinator);
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

fn answer(epoch: i32, assignment: Option<&[i32]>) -> ResponseKind {
    ResponseKind::ConsumerGroupHeartbeat(
        ConsumerGroupHeartbeatResponse::default()
            .with_member_epoch(epoch)
            .with_heartbeat_interval_ms(2_000)
            .with_assignment(assignment.map(|partitions| {
                Assignment::default().with_topic_partitions(vec![TopicPartitions::default()
                    .with_topic_id(TOPIC_ID)
                    .with_partitions(partitions.to_vec())])
            })),
    )
}

fn error(code: ErrorCode) -> ResponseKind {
    ResponseKind::ConsumerGroupHeartbeat(
        ConsumerGroupHeartbeatResponse::default()
            .with_error_code(code.code())
            .with_error_message(Some(text("refused"))),
    )
}

/// Runs every queued rebalance step as the consumer would, returning them.
fn run_steps(engine: &mut GroupEngine, now: Instant) -> Vec<GroupEvent> {
    let mut steps = Vec::new();
    for _ in 0..10 {
        let Some(event) = engine.poll_event(now) else {
            break;
        };
        steps.push(event);
        engine.handle_event_done();
    }
    steps
}

/// A member of `t` owning `partitions` at epoch `epoch`, its acknowledgement answered.
fn stable(partitions: &[i32], epoch: i32, now: Instant) -> GroupEngine {
    let mut engine = engine(None);
    engine.subscribe(["t".to_string()]);
    let join = only(find(&mut engine, now), ApiKey::ConsumerGroupHeartbeat);
    engine.handle_response(join.id, 1, answer(epoch, Some(partitions)), now);
    engine.handle_metadata(&metadata(4), now);
    run_steps(&mut engine, now);
    let ack = only(engine.poll_requests(now), ApiKey::ConsumerGroupHeartbeat);
    engine.handle_response(ack.id, 1, answer(epoch, None), now);
    assert_eq!(engine.member_state(), Some(MemberState::Stable));
    engine
}

#[test]
fn joins_with_every_field_then_sends_only_what_changed() {
    let now = Instant::now();
    let mut engine = engine(None);
    assert_eq!(engine.member_state(), Some(MemberState::Unsubscribed));
    engine.subscribe(["t".to_string()]);
    assert_eq!(engine.member_state(), Some(MemberState::Joining));
    let join = only(find(&mut engine, now), ApiKey::ConsumerGroupHeartbeat);
    assert_eq!(
        join.target,
        Target::Coordinator {
            node: 2,
            address: "b2:9094".into()
        }
    );
    let beat = beat_of(&join);
    // A random id of Java's form (22 characters of URL-safe base64), epoch 0.
    assert_eq!(beat.member_id.len(), 22, "{}", beat.member_id);
    assert_eq!(beat.member_epoch, 0);
    assert_eq!(beat.topics, Some(vec!["t".to_string()]));
    assert_eq!(beat.regex, None);
    assert_eq!(beat.rebalance_timeout_ms, 60_000);
    assert_eq!(beat.rack_id.as_deref(), Some("rack-a"));
    assert_eq!(beat.server_assignor.as_deref(), Some("uniform"));
    assert_eq!(beat.owned, Some(Vec::new()));
    // Nothing more while it is in flight.
    assert!(engine.poll_requests(now).is_empty());
    engine.handle_response(join.id, 1, answer(3, Some(&[0, 1])), now);
    assert_eq!(engine.member_state(), Some(MemberState::Stable));
    // The topic id resolves through the metadata; then revoke nothing, assign both.
    assert!(
        engine.poll_event(now).is_none(),
        "waits for the topic's name"
    );
    assert!(engine.poll_metadata_refresh(now));
    assert!(!engine.poll_metadata_refresh(now), "asked once per backoff");
    engine.handle_metadata(&metadata(4), now);
    let steps = run_steps(&mut engine, now);
    assert_eq!(
        steps,
        vec![GroupEvent::Assign {
            assignment: vec![tp(0), tp(1)],
            added: vec![tp(0), tp(1)],
        }]
    );
    assert_eq!(engine.member_state(), Some(MemberState::Acknowledging));
    // The acknowledgement goes at once, with only the owned partitions.
    let ack = only(engine.poll_requests(now), ApiKey::ConsumerGroupHeartbeat);
    let beat = beat_of(&ack);
    assert_eq!(beat.member_epoch, 3);
    assert_eq!(beat.owned, Some(vec![(TOPIC_ID, vec![0, 1])]));
    assert_eq!(beat.topics, None);
    assert_eq!(beat.server_assignor, None);
    assert_eq!(beat.rack_id, None);
    assert_eq!(beat.rebalance_timeout_ms, -1);
    engine.handle_response(ack.id, 1, answer(3, None), now);
    assert_eq!(engine.member_state(), Some(MemberState::Stable));
    assert_eq!(engine.group_metadata().generation_id, 3);
    // Then every heartbeat interval the broker asked for (2 s), with nothing changed.
    assert_eq!(engine.heartbeat_interval(), 2_000 * MS);
    assert!(engine.poll_requests(now + 1_999 * MS).is_empty());
    assert_eq!(engine.poll_timeout(now), Some(now + 2_000 * MS));
    let later = now + 2_000 * MS;
    let beat = beat_of(&only(
        engine.poll_requests(later),
        ApiKey::ConsumerGroupHeartbeat,
    ));
    assert_eq!(
        (
            beat.topics,
            beat.owned,
            beat.server_assignor,
            beat.member_epoch
        ),
        (None, None, None, 3)
    );
}

#[test]
fn a_subscription_change_is_sent_at_once() {
    let now = Instant::now();
    let mut engine = stable(&[0], 1, now);
    engine.subscribe(["t".to_string(), "u".to_string()]);
    let beat = beat_of(&only(
        engine.poll_requests(now),
        ApiKey::ConsumerGroupHeartbeat,
    ));
    assert_eq!(beat.topics, Some(vec!["t".to_string(), "u".to_string()]));
    assert_eq!(beat.owned, None);
}

#[test]
fn a_revocation_runs_and_commits_before_it_is_acknowledged() {
    let now = Instant::now();
    let mut engine = stable(&[0, 1], 1, now);
    let beat = only(
        engine.poll_requests(now + 2_000 * MS),
        ApiKey::ConsumerGroupHeartbeat,
    );
    let now = now + 2_000 * MS;
    engine.handle_response(beat.id, 1, answer(2, Some(&[0])), now);
    engine.handle_metadata(&metadata(4), now);
    // The revoke step first; while it runs, the old assignment is reported (no ack yet)
    // and a commit carries the member id and the new epoch.
    let revoke = engine.poll_event(now).expect("a step");
    assert_eq!(revoke, GroupEvent::Revoke(vec![tp(1)]));
    assert_eq!(engine.member_state(), Some(MemberState::Reconciling));
    engine.commit(
        vec![(tp(1), OffsetAndMetadata::new(42))],
        Some(now + 5_000 * MS),
    );
    let requests = engine.poll_requests(now);
    assert!(requests
        .iter()
        .all(|r| r.api() != ApiKey::ConsumerGroupHeartbeat));
    let commit = only(requests, ApiKey::OffsetCommit);
    match &commit.body {
        Body::OffsetCommit {
            generation,
            member_id,
            ..
        } => {
            assert_eq!(*generation, 2);
            assert_eq!(member_id, engine.group_metadata().member_id.as_str());
        }
        other => panic!("{other:?}"),
    }
    // STALE_MEMBER_EPOCH: retried (a synchronous commit) rather than failed.
    let stale =
        OffsetCommitResponse::default().with_topics(vec![OffsetCommitResponseTopic::default()
            .with_name(TopicName(text("t")))
            .with_partitions(vec![OffsetCommitResponsePartition::default()
                .with_partition_index(1)
                .with_error_code(ErrorCode::StaleMemberEpoch.code())])]);
    engine.handle_response(commit.id, 9, ResponseKind::OffsetCommit(stale), now);
    assert!(engine.poll_commit_results().is_empty(), "retried");
    let retry = only(engine.poll_requests(now + 200 * MS), ApiKey::OffsetCommit);
    engine.handle_response(
        retry.id,
        9,
        ResponseKind::OffsetCommit(OffsetCommitResponse::default()),
        now,
    );
    assert!(matches!(
        engine.poll_commit_results().as_slice(),
        [(_, Ok(()))]
    ));
    engine.handle_event_done();
    // Then the assign step, then the acknowledgement with what is owned now.
    assert_eq!(
        engine.poll_event(now),
        Some(GroupEvent::Assign {
            assignment: vec![tp(0)],
            added: vec![],
        })
    );
    engine.handle_event_done();
    let ack = beat_of(&only(
        engine.poll_requests(now),
        ApiKey::ConsumerGroupHeartbeat,
    ));
    assert_eq!(ack.member_epoch, 2);
    assert_eq!(ack.owned, Some(vec![(TOPIC_ID, vec![0])]));
    assert_eq!(engine.owned(), &[tp(0)]);
}

#[test]
fn a_fenced_member_loses_its_partitions_and_rejoins_with_epoch_0_and_its_id() {
    for code in [ErrorCode::FencedMemberEpoch, ErrorCode::UnknownMemberId] {
        let now = Instant::now();
        let mut engine = stable(&[0, 1], 4, now);
        let id = engine.group_metadata().member_id.clone();
        let beat = only(
            engine.poll_requests(now + 2_000 * MS),
            ApiKey::ConsumerGroupHeartbeat,
        );
        engine.handle_response(beat.id, 1, error(code), now);
        assert_eq!(engine.member_state(), Some(MemberState::Fenced));
        // Commits are refused while fenced.
        assert!(!engine.in_generation());
        assert!(
            engine.poll_requests(now).is_empty(),
            "no join before the lose step"
        );
        assert_eq!(
            run_steps(&mut engine, now),
            vec![GroupEvent::Lose(vec![tp(0), tp(1)])]
        );
        let join = beat_of(&only(
            engine.poll_requests(now),
            ApiKey::ConsumerGroupHeartbeat,
        ));
        assert_eq!(join.member_epoch, 0, "{code:?}");
        assert_eq!(join.member_id, id, "the same member id, as Java 4.x");
        assert_eq!(join.topics, Some(vec!["t".to_string()]));
        assert_eq!(join.owned, Some(Vec::new()));
        assert!(engine.owned().is_empty());
    }
}

#[test]
fn fatal_errors_reach_the_caller_and_fail_what_waits() {
    for code in [
        ErrorCode::UnsupportedAssignor,
        ErrorCode::GroupMaxSizeReached,
        ErrorCode::UnreleasedInstanceId,
        ErrorCode::UnsupportedVersion,
        ErrorCode::InvalidRequest,
    ] {
        let now = Instant::now();
        let mut engine = engine(None);
        engine.subscribe(["t".to_string()]);
        let join = only(find(&mut engine, now), ApiKey::ConsumerGroupHeartbeat);
        engine.handle_response(join.id, 1, error(code), now);
        assert_eq!(engine.member_state(), Some(MemberState::Fatal));
        match engine.poll_error() {
            Some(Error::GroupFailed { code: got, .. }) => assert_eq!(got, code),
            other => panic!("{code:?}: {other:?}"),
        }
        assert!(engine.failure().is_some());
        let token = engine.commit(vec![(tp(0), OffsetAndMetadata::new(1))], None);
        assert!(matches!(
            engine.poll_commit_results().as_slice(),
            [(t, Err(Error::GroupFailed { .. }))] if *t == token
        ));
        // No more heartbeats: nothing hangs waiting for one.
        assert!(engine.poll_requests(now + 60_000 * MS).is_empty());
    }
}

#[test]
fn leaving_sends_epoch_minus_1_or_minus_2_for_a_static_member() {
    for (instance, epoch) in [(None, -1), (Some("i-1"), -2)] {
        let now = Instant::now();
        let mut engine = engine(instance);
        engine.subscribe(["t".to_string()]);
        let join = only(find(&mut engine, now), ApiKey::ConsumerGroupHeartbeat);
        assert_eq!(beat_of(&join).instance_id.as_deref(), instance);
        engine.handle_response(join.id, 1, answer(1, Some(&[])), now);
        assert!(engine.close());
        assert!(engine.is_leaving());
        let leave = only(engine.poll_requests(now), ApiKey::ConsumerGroupHeartbeat);
        let beat = beat_of(&leave);
        assert_eq!(beat.member_epoch, epoch);
        assert_eq!(beat.instance_id.as_deref(), instance);
        engine.handle_response(leave.id, 1, answer(epoch, None), now);
        assert!(!engine.is_leaving());
        assert_eq!(engine.member_state(), Some(MemberState::Unjoined));
        assert!(engine.poll_requests(now + 60_000 * MS).is_empty());
    }
}

#[test]
fn unsubscribing_revokes_first_then_leaves() {
    let now = Instant::now();
    let mut engine = stable(&[0, 1], 1, now);
    engine.unsubscribe();
    assert_eq!(
        engine.poll_event(now),
        Some(GroupEvent::Revoke(vec![tp(0), tp(1)]))
    );
    assert!(
        engine.poll_requests(now).is_empty(),
        "no leave while the revoke step runs"
    );
    engine.handle_event_done();
    let leave = beat_of(&only(
        engine.poll_requests(now),
        ApiKey::ConsumerGroupHeartbeat,
    ));
    assert_eq!(leave.member_epoch, -1);
}

#[test]
fn a_moved_coordinator_is_found_again_and_told_everything() {
    let now = Instant::now();
    let mut engine = stable(&[0], 1, now);
    let beat = only(
        engine.poll_requests(now + 2_000 * MS),
        ApiKey::ConsumerGroupHeartbeat,
    );
    engine.handle_response(beat.id, 1, error(ErrorCode::NotCoordinator), now);
    let rejoin = only(find(&mut engine, now), ApiKey::ConsumerGroupHeartbeat);
    let beat = beat_of(&rejoin);
    // Still a member (epoch kept), but every field again.
    assert_eq!(beat.member_epoch, 1);
    assert_eq!(beat.topics, Some(vec!["t".to_string()]));
    assert_eq!(beat.owned, Some(vec![(TOPIC_ID, vec![0])]));
    assert_eq!(beat.rebalance_timeout_ms, 60_000);
    // A lost request: also everything again, after the backoff.
    engine.handle_failure(
        rejoin.id,
        &Error::Protocol {
            peer: "b2".into(),
            reason: "gone".into(),
        },
        now,
    );
    let again = only(
        find(&mut engine, now + 2_000 * MS),
        ApiKey::ConsumerGroupHeartbeat,
    );
    assert_eq!(beat_of(&again).topics, Some(vec!["t".to_string()]));
}

#[test]
fn a_pattern_subscription_sends_the_regex() {
    let now = Instant::now();
    let mut engine = engine(None);
    engine.subscribe_pattern("orders-.*").expect("a pattern");
    let beat = beat_of(&only(
        find(&mut engine, now),
        ApiKey::ConsumerGroupHeartbeat,
    ));
    assert_eq!(beat.regex.as_deref(), Some("orders-.*"));
    assert_eq!(beat.topics, None);
}

#[test]
fn an_answer_to_an_earlier_heartbeat_is_no_acknowledgement() {
    let now = Instant::now();
    let mut engine = stable(&[0], 1, now);
    let now = now + 2_000 * MS;
    // A heartbeat goes out; its answer brings a new assignment...
    let first = only(engine.poll_requests(now), ApiKey::ConsumerGroupHeartbeat);
    engine.handle_response(first.id, 1, answer(2, Some(&[0, 1])), now);
    engine.handle_metadata(&metadata(4), now);
    // ... and the next regular heartbeat is in flight when the reconciliation ends.
    let now = now + 2_000 * MS;
    let second = only(engine.poll_requests(now), ApiKey::ConsumerGroupHeartbeat);
    assert_eq!(beat_of(&second).owned, None, "nothing changed yet");
    assert_eq!(run_steps(&mut engine, now).len(), 1);
    assert_eq!(engine.member_state(), Some(MemberState::Acknowledging));
    engine.handle_response(second.id, 1, answer(2, None), now);
    // Still to acknowledge: the acknowledgement goes at once, with both partitions.
    assert_eq!(engine.member_state(), Some(MemberState::Acknowledging));
    let ack = beat_of(&only(
        engine.poll_requests(now),
        ApiKey::ConsumerGroupHeartbeat,
    ));
    assert_eq!(ack.owned, Some(vec![(TOPIC_ID, vec![0, 1])]));
}

#[test]
fn a_join_answered_with_epoch_0_goes_on_joining_at_the_interval() {
    // librdkafka's mock answers a join with epoch 0 until it has assigned.
    let now = Instant::now();
    let mut engine = engine(None);
    engine.subscribe(["t".to_string()]);
    let join = only(find(&mut engine, now), ApiKey::ConsumerGroupHeartbeat);
    engine.handle_response(join.id, 1, answer(0, None), now);
    assert_eq!(engine.member_state(), Some(MemberState::Joining));
    assert!(!engine.in_generation());
    assert!(
        engine.poll_requests(now).is_empty(),
        "waits for the interval"
    );
    let again = beat_of(&only(
        engine.poll_requests(now + 2_000 * MS),
        ApiKey::ConsumerGroupHeartbeat,
    ));
    assert_eq!(again.member_epoch, 0);
    assert_eq!(
        again.topics,
        Some(vec!["t".to_string()]),
        "every field again"
    );
    assert_eq!(again.owned, Some(Vec::new()));
}

#[test]
fn past_max_poll_interval_the_member_leaves_loses_and_rejoins_on_the_next_recv() {
    let now = Instant::now();
    let mut engine = stable(&[0, 1], 3, now);
    engine.handle_poll(now, false);
    // 60 s without recv (heartbeats answered meanwhile): a leave heartbeat goes at once.
    let mut at = now;
    for _ in 0..29 {
        at += 2_000 * MS;
        let beat = only(engine.poll_requests(at), ApiKey::ConsumerGroupHeartbeat);
        engine.handle_response(beat.id, 1, answer(3, None), at);
    }
    let late = now + 60_000 * MS;
    assert_eq!(engine.poll_timeout(at), Some(late));
    let leave = only(engine.poll_requests(late), ApiKey::ConsumerGroupHeartbeat);
    assert_eq!(beat_of(&leave).member_epoch, -1);
    engine.handle_response(leave.id, 1, answer(-1, None), late);
    assert_eq!(engine.member_state(), Some(MemberState::Unjoined));
    // The next recv: the partitions are lost, the error reported, and the member joins.
    engine.handle_poll(late, true);
    assert!(matches!(
        engine.poll_error(),
        Some(Error::PollIntervalExceeded { .. })
    ));
    assert_eq!(
        run_steps(&mut engine, late),
        vec![GroupEvent::Lose(vec![tp(0), tp(1)])]
    );
    let join = beat_of(&only(
        engine.poll_requests(late),
        ApiKey::ConsumerGroupHeartbeat,
    ));
    assert_eq!((join.member_epoch, join.owned), (0, Some(Vec::new())));
}

#[test]
fn a_heartbeat_answered_after_close_began_does_not_stall_the_leave() {
    let now = Instant::now();
    let mut engine = stable(&[0], 1, now);
    let beat = only(
        engine.poll_requests(now + 2_000 * MS),
        ApiKey::ConsumerGroupHeartbeat,
    );
    assert!(engine.close());
    // The regular heartbeat's answer comes while the leave waits for it.
    engine.handle_response(beat.id, 1, answer(1, None), now);
    assert!(engine.is_leaving());
    let leave = only(engine.poll_requests(now), ApiKey::ConsumerGroupHeartbeat);
    assert_eq!(beat_of(&leave).member_epoch, -1);
    engine.handle_response(leave.id, 1, answer(-1, None), now);
    assert!(!engine.is_leaving());
    assert_eq!(engine.member_state(), Some(MemberState::Unjoined));
}
