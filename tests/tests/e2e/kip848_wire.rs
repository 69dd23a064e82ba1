//! Raw KIP-848 requests shared by the wire-level tests (kip848_coordinator.rs,
//! kip848_mixed.rs): the coordinator found with FindCoordinator, ConsumerGroupHeartbeat
//! joins and heartbeats, assignments read back, ConsumerGroupDescribe.

use std::collections::{BTreeMap, BTreeSet};

use franzy::kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use franzy::kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse, FindCoordinatorRequest, GroupId, TopicName,
};
use franzy::proto::{ApiKey, RequestKind, ResponseKind, StrBytes};
use franzy_harness::Cluster;
use franzy_tests::RawConnection;
use tokio::io::DuplexStream;
use uuid::Uuid;

pub(crate) type Conn = RawConnection<DuplexStream>;
/// Partitions by topic id, as a heartbeat carries them.
pub(crate) type Owned = BTreeMap<Uuid, BTreeSet<i32>>;

pub(crate) fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

pub(crate) fn topic_id(cluster: &Cluster, name: &str) -> Uuid {
    cluster.with_state(|s| s.topic(name).map(|t| t.id()).expect("topic"))
}

/// The group's coordinator, found with FindCoordinator v4 (asked until it answers).
pub(crate) async fn coordinator(cluster: &Cluster, group: &str) -> (i32, Conn) {
    let mut any = RawConnection::new(cluster.connect(0).expect("connect"));
    for _ in 0..10 {
        let request = FindCoordinatorRequest::default()
            .with_key_type(0)
            .with_coordinator_keys(vec![text(group)]);
        let (_, response) = any
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
        if r.coordinators[0].error_code == 0 {
            let node = r.coordinators[0].node_id.0;
            return (
                node,
                RawConnection::new(cluster.connect(node).expect("connect")),
            );
        }
    }
    panic!("no coordinator for {group}")
}

/// A first heartbeat (epoch 0) subscribing `member` of `group` to `topics`.
pub(crate) fn join(group: &str, member: &str, topics: &[&str]) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(text(group)))
        .with_member_id(text(member))
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(30_000)
        .with_subscribed_topic_names(Some(topics.iter().map(|t| TopicName(text(t))).collect()))
        .with_topic_partitions(Some(Vec::new()))
}

/// A later heartbeat: unchanged fields null, `owned` the partitions the member holds (None:
/// unchanged since the last one).
pub(crate) fn beat(
    group: &str,
    member: &str,
    epoch: i32,
    owned: Option<&Owned>,
) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(text(group)))
        .with_member_id(text(member))
        .with_member_epoch(epoch)
        .with_rebalance_timeout_ms(-1)
        .with_subscribed_topic_names(None)
        .with_topic_partitions(owned.map(|o| {
            o.iter()
                .map(|(t, ps)| {
                    TopicPartitions::default()
                        .with_topic_id(*t)
                        .with_partitions(ps.iter().copied().collect())
                })
                .collect()
        }))
}

/// Sends a ConsumerGroupHeartbeat v1 and returns its answer.
pub(crate) async fn heartbeat(
    conn: &mut Conn,
    request: ConsumerGroupHeartbeatRequest,
) -> ConsumerGroupHeartbeatResponse {
    let (_, response) = conn
        .request(
            ApiKey::ConsumerGroupHeartbeat,
            1,
            &RequestKind::ConsumerGroupHeartbeat(request),
        )
        .await
        .expect("answered");
    let ResponseKind::ConsumerGroupHeartbeat(r) = response else {
        panic!("a ConsumerGroupHeartbeat response")
    };
    r
}

/// The assignment a heartbeat's answer carries, if any.
pub(crate) fn assignment(r: &ConsumerGroupHeartbeatResponse) -> Option<Owned> {
    r.assignment.as_ref().map(|a| {
        a.topic_partitions
            .iter()
            .map(|t| (t.topic_id, t.partitions.iter().copied().collect()))
            .collect()
    })
}

/// ConsumerGroupDescribe v1 of `groups`.
pub(crate) async fn describe(conn: &mut Conn, groups: &[&str]) -> ConsumerGroupDescribeResponse {
    let request = ConsumerGroupDescribeRequest::default()
        .with_group_ids(groups.iter().map(|g| GroupId(text(g))).collect());
    let (_, response) = conn
        .request(
            ApiKey::ConsumerGroupDescribe,
            1,
            &RequestKind::ConsumerGroupDescribe(request),
        )
        .await
        .expect("answered");
    let ResponseKind::ConsumerGroupDescribe(r) = response else {
        panic!("a ConsumerGroupDescribe response")
    };
    r
}
