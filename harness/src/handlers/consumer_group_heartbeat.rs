//! ConsumerGroupHeartbeat (key 68), v0-1: KIP-848's one request of the consumer group
//! protocol. A member joins (epoch 0), heartbeats with its epoch and the partitions it owns,
//! and learns its epoch and assignment; it leaves with epoch -1, or -2 for a static member's
//! temporary leave. The state machine is `cluster/groups/consumer.rs`.
//!
//! As Kafka answers it (`GroupCoordinatorService.consumerGroupHeartbeat`,
//! `GroupMetadataManager.consumerGroupHeartbeat`): the coordinator first (NOT_COORDINATOR,
//! COORDINATOR_LOAD_IN_PROGRESS); then the request's checks (INVALID_REQUEST with Kafka's
//! message: an empty group id, member id from v1, instance or rack id; a join without a
//! rebalance timeout, subscription, or with owned partitions; an epoch below -2),
//! UNSUPPORTED_ASSIGNOR, INVALID_REGULAR_EXPRESSION; then the group: GROUP_ID_NOT_FOUND
//! (no group for a member that is not joining, or a classic group with members),
//! GROUP_MAX_SIZE_REACHED, UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID, UNRELEASED_INSTANCE_ID,
//! FENCED_MEMBER_EPOCH. v0 members may join without an id (the coordinator makes one);
//! from v1 the member makes its own (KIP-1082).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use franzy::proto::{ErrorCode, StrBytes};
use kafka_protocol::messages::consumer_group_heartbeat_response::{
    Assignment as ResponseAssignment, TopicPartitions,
};
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};

use super::{text, RequestContext};
use crate::cluster::groups::assignors::Assignment;
use crate::cluster::groups::{GroupError, HeartbeatArgs};
use crate::cluster::ClusterState;

/// Serves a ConsumerGroupHeartbeat request.
pub fn handle(
    cluster: &mut ClusterState,
    ctx: &RequestContext,
    req: ConsumerGroupHeartbeatRequest,
) -> ConsumerGroupHeartbeatResponse {
    let args = args(ctx, &req);
    match cluster.consumer_group_heartbeat(
        req.group_id.as_str(),
        args,
        ctx.api_version,
        ctx.broker_id,
        ctx.now,
    ) {
        Ok(outcome) => ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(text(&outcome.member_id)))
            .with_member_epoch(outcome.member_epoch)
            .with_heartbeat_interval_ms(outcome.heartbeat_interval_ms)
            .with_assignment(outcome.assignment.as_ref().map(response_assignment)),
        Err(GroupError { code, message }) => {
            tracing::debug!(
                group = req.group_id.as_str(),
                member = req.member_id.as_str(),
                error = ?code,
                message = message.as_deref().unwrap_or(""),
                "consumer group heartbeat refused"
            );
            error_response(&req, ctx.api_version, code)
                .with_error_message(message.map(|m| text(&m)))
        }
    }
}

/// The request's fields, as the group coordinator takes them.
fn args(ctx: &RequestContext, req: &ConsumerGroupHeartbeatRequest) -> HeartbeatArgs {
    let arc = |s: &StrBytes| Arc::<str>::from(s.as_str());
    HeartbeatArgs {
        member_id: arc(&req.member_id),
        member_epoch: req.member_epoch,
        instance_id: req.instance_id.as_ref().map(arc),
        rack_id: req.rack_id.as_ref().map(arc),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        subscribed_topic_names: req
            .subscribed_topic_names
            .as_ref()
            .map(|names| names.iter().map(|n| arc(&n.0)).collect::<BTreeSet<_>>()),
        subscribed_topic_regex: req.subscribed_topic_regex.as_ref().map(arc),
        server_assignor: req.server_assignor.as_ref().map(arc),
        owned: req.topic_partitions.as_ref().map(|topics| {
            let mut owned = Assignment::new();
            for t in topics {
                owned
                    .entry(t.topic_id)
                    .or_default()
                    .extend(t.partitions.iter().copied());
            }
            owned.retain(|_, p| !p.is_empty());
            owned
        }),
        client_id: Arc::from(ctx.client_id.as_deref().unwrap_or("")),
        client_host: ctx.client_host.clone(),
    }
}

/// An assignment as the response carries it: topics by id, partitions ascending.
pub fn response_assignment(assignment: &BTreeMap<uuid::Uuid, BTreeSet<i32>>) -> ResponseAssignment {
    ResponseAssignment::default().with_topic_partitions(
        assignment
            .iter()
            .map(|(topic, partitions)| {
                TopicPartitions::default()
                    .with_topic_id(*topic)
                    .with_partitions(partitions.iter().copied().collect())
            })
            .collect(),
    )
}

/// The answer that fails `req` with `code`.
pub fn error_response(
    _req: &ConsumerGroupHeartbeatRequest,
    _version: i16,
    code: ErrorCode,
) -> ConsumerGroupHeartbeatResponse {
    ConsumerGroupHeartbeatResponse::default()
        .with_error_code(code.code())
        .with_member_epoch(0)
}
