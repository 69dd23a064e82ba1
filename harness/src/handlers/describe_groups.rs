//! DescribeGroups (key 15), v0-6: each group's state, protocol, members and assignments.
//!
//! As Kafka answers it (`KafkaApis.handleDescribeGroupsRequest`,
//! `GroupMetadataManager.describeGroups`): each group at its coordinator (NOT_COORDINATOR,
//! ... for that group); a group that does not exist is described as "Dead", and from v6
//! answered GROUP_ID_NOT_FOUND with "Group G not found." (KIP-1043). A stable group reports
//! its protocol in `protocol_data` and each member's metadata for it; in other states the
//! members come without metadata. Assignments are always there. With
//! `include_authorized_operations` (v3+) a described group has every group operation (READ,
//! DELETE, DESCRIBE): there are no ACLs. Groups past
//! [`crate::cluster::ClusterConfig::max_partitions_per_request`] are INVALID_REQUEST.

use franzy::proto::{ErrorCode, StrBytes};
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse, GroupId};

use super::{text, RequestContext};
use crate::cluster::groups::{ClassicGroupState, Group};
use crate::cluster::ClusterState;

/// Every operation on a group, as an authorized-operations bit set (READ, DELETE,
/// DESCRIBE).
pub(crate) const GROUP_OPERATIONS: i32 = (1 << 3) | (1 << 6) | (1 << 8);
/// `authorized_operations` when not asked for (Kafka's `Integer.MIN_VALUE`).
const OPERATIONS_OMITTED: i32 = i32::MIN;

/// Serves a DescribeGroups request.
pub fn handle(
    cluster: &ClusterState,
    ctx: &RequestContext,
    req: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let version = ctx.api_version;
    let cap = cluster.config().max_partitions_per_request;
    let operations = if version >= 3 && req.include_authorized_operations {
        GROUP_OPERATIONS
    } else {
        OPERATIONS_OMITTED
    };
    let groups = req
        .groups
        .iter()
        .enumerate()
        .map(|(i, id)| {
            if i >= cap {
                return failed(id.clone(), ErrorCode::InvalidRequest);
            }
            if let Err(code) = cluster.check_group_coordinator(id.as_str(), ctx.broker_id, ctx.now)
            {
                return failed(id.clone(), code);
            }
            let mut described = match cluster.groups().group(id.as_str()) {
                Some(group) => describe(group, version),
                None if version >= 6 => DescribedGroup::default()
                    .with_group_id(id.clone())
                    .with_group_state(text(ClassicGroupState::Dead.name()))
                    .with_error_code(ErrorCode::GroupIdNotFound.code())
                    .with_error_message(Some(text(&format!("Group {} not found.", id.as_str())))),
                None => DescribedGroup::default()
                    .with_group_id(id.clone())
                    .with_group_state(text(ClassicGroupState::Dead.name())),
            };
            described.authorized_operations = if described.error_code == 0 {
                operations
            } else {
                OPERATIONS_OMITTED
            };
            described
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

fn describe(group: &Group, version: i16) -> DescribedGroup {
    let Group::Classic(classic) = group;
    let stable = classic.state() == ClassicGroupState::Stable;
    let protocol = classic.protocol_name().filter(|_| stable);
    let members = classic
        .members()
        .map(|m| {
            let metadata = protocol
                .and_then(|p| m.metadata(p).cloned())
                .unwrap_or_default();
            DescribedGroupMember::default()
                .with_member_id(text(&m.id))
                .with_group_instance_id(
                    m.instance_id
                        .as_ref()
                        .filter(|_| version >= 4)
                        .map(|i| text(i)),
                )
                .with_client_id(text(&m.client_id))
                .with_client_host(text(&m.client_host))
                .with_member_metadata(metadata)
                .with_member_assignment(m.assignment.clone())
        })
        .collect();
    DescribedGroup::default()
        .with_error_message(None)
        .with_group_id(GroupId(text(classic.id())))
        .with_group_state(text(group.state_name()))
        .with_protocol_type(text(group.protocol_type()))
        .with_protocol_data(protocol.map_or_else(StrBytes::default, |p| text(p)))
        .with_members(members)
}

/// A group that could not be described.
fn failed(id: GroupId, code: ErrorCode) -> DescribedGroup {
    DescribedGroup::default()
        .with_group_id(id)
        .with_error_code(code.code())
        .with_error_message(None)
        .with_authorized_operations(OPERATIONS_OMITTED)
}

/// The answer that fails `req` with `code`: every group carries it.
pub fn error_response(
    req: &DescribeGroupsRequest,
    _version: i16,
    code: ErrorCode,
) -> DescribeGroupsResponse {
    DescribeGroupsResponse::default().with_groups(
        req.groups
            .iter()
            .map(|id| failed(id.clone(), code))
            .collect(),
    )
}
