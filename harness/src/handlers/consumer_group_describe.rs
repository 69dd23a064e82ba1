//! ConsumerGroupDescribe (key 69), v0-1: KIP-848 consumer groups, their epochs, assignor,
//! members with their assignments and target assignments.
//!
//! As Kafka answers it (`GroupCoordinatorService.consumerGroupDescribe`): each group on
//! its own: an empty id is INVALID_GROUP_ID, then its coordinator (NOT_COORDINATOR,
//! COORDINATOR_LOAD_IN_PROGRESS), then GROUP_ID_NOT_FOUND unless it is a consumer group
//! (a classic group is not one). Groups past
//! [`crate::cluster::ClusterConfig::max_partitions_per_request`] are INVALID_REQUEST.

use std::collections::{BTreeMap, BTreeSet};

use franzy::proto::ErrorCode;
use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment, DescribedGroup, Member, TopicPartitions,
};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, GroupId,
};
use uuid::Uuid;

use super::describe_groups::GROUP_OPERATIONS;
use super::{text, topic_name, RequestContext};
use crate::cluster::groups::{is_valid_group_id, ConsumerGroup};
use crate::cluster::ClusterState;

/// Kafka's `authorizedOperations` when not asked for.
const OPERATIONS_OMITTED: i32 = i32::MIN;
/// `member_type` of a member using the consumer protocol (v1, KIP-1099).
const CONSUMER_MEMBER_TYPE: i8 = 1;
/// `member_type` of a member using the classic protocol inside a consumer group.
const CLASSIC_MEMBER_TYPE: i8 = 0;

/// Serves a ConsumerGroupDescribe request.
pub fn handle(
    cluster: &ClusterState,
    ctx: &RequestContext,
    req: ConsumerGroupDescribeRequest,
) -> ConsumerGroupDescribeResponse {
    let cap = cluster.config().max_partitions_per_request;
    let operations = if req.include_authorized_operations {
        GROUP_OPERATIONS
    } else {
        OPERATIONS_OMITTED
    };
    let groups = req
        .group_ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            if i >= cap {
                return failed(id.clone(), ErrorCode::InvalidRequest, None);
            }
            if !is_valid_group_id(id.as_str()) {
                return failed(id.clone(), ErrorCode::InvalidGroupId, None);
            }
            if let Err(code) = cluster.check_group_coordinator(id.as_str(), ctx.broker_id, ctx.now)
            {
                return failed(id.clone(), code, None);
            }
            match cluster
                .groups()
                .group(id.as_str())
                .and_then(|g| g.as_consumer())
            {
                Some(group) => {
                    describe(cluster, group, ctx.api_version).with_authorized_operations(operations)
                }
                None => failed(
                    id.clone(),
                    ErrorCode::GroupIdNotFound,
                    Some(format!("Group {} not found.", id.as_str())),
                ),
            }
        })
        .collect();
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}

fn describe(cluster: &ClusterState, group: &ConsumerGroup, version: i16) -> DescribedGroup {
    let assignment = |a: &BTreeMap<Uuid, BTreeSet<i32>>| {
        Assignment::default().with_topic_partitions(
            a.iter()
                .map(|(topic, partitions)| {
                    let name = cluster
                        .topic_by_id(*topic)
                        .map_or(String::new(), |t| t.name().to_string());
                    TopicPartitions::default()
                        .with_topic_id(*topic)
                        .with_topic_name(topic_name(&name))
                        .with_partitions(partitions.iter().copied().collect())
                })
                .collect(),
        )
    };
    let empty = BTreeMap::new();
    let members = group
        .members()
        .map(|m| {
            Member::default()
                .with_member_id(text(&m.member_id))
                .with_instance_id(m.instance_id.as_ref().map(|i| text(i)))
                .with_rack_id(m.rack_id.as_ref().map(|r| text(r)))
                .with_member_epoch(m.member_epoch)
                .with_client_id(text(&m.client_id))
                .with_client_host(text(&m.client_host))
                .with_subscribed_topic_names(
                    m.subscribed_topic_names
                        .iter()
                        .map(|n| topic_name(n))
                        .collect(),
                )
                .with_subscribed_topic_regex(m.subscribed_topic_regex.as_ref().map(|r| text(r)))
                .with_assignment(assignment(&m.assigned))
                .with_target_assignment(assignment(group.target_of(&m.member_id).unwrap_or(&empty)))
                .with_member_type(match (version, m.uses_classic_protocol()) {
                    (0, _) => -1,
                    (_, true) => CLASSIC_MEMBER_TYPE,
                    (_, false) => CONSUMER_MEMBER_TYPE,
                })
        })
        .collect();
    DescribedGroup::default()
        .with_group_id(GroupId(text(group.id())))
        .with_group_state(text(group.state().name()))
        .with_group_epoch(group.group_epoch())
        .with_assignment_epoch(group.assignment_epoch())
        .with_assignor_name(text(&group.assignor_name(cluster.groups().config())))
        .with_members(members)
}

fn failed(id: GroupId, code: ErrorCode, message: Option<String>) -> DescribedGroup {
    DescribedGroup::default()
        .with_group_id(id)
        .with_error_code(code.code())
        .with_error_message(message.map(|m| text(&m)))
        .with_authorized_operations(OPERATIONS_OMITTED)
}

/// The answer that fails `req` with `code`: every group carries it.
pub fn error_response(
    req: &ConsumerGroupDescribeRequest,
    _version: i16,
    code: ErrorCode,
) -> ConsumerGroupDescribeResponse {
    ConsumerGroupDescribeResponse::default().with_groups(
        req.group_ids
            .iter()
            .map(|id| failed(id.clone(), code, None))
            .collect(),
    )
}
