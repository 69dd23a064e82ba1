//! ListGroups (key 16), v0-5: the groups this broker coordinates (a client asks every
//! broker and merges), with their protocol type, state (v4+) and type (v5+); filtered by
//! state names (v4+, case-insensitive, KIP-518) and type names (v5+, "classic",
//! "consumer", KIP-848), as Kafka's `GroupMetadataManager.listGroups` filters them. While
//! one of the broker's partitions of `__consumer_offsets` loads after a move, the answer is
//! COORDINATOR_LOAD_IN_PROGRESS, as Kafka's `listGroups` fails on a loading shard.

use franzy::proto::ErrorCode;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};

use super::{text, RequestContext};
use crate::cluster::ClusterState;

/// Serves a ListGroups request.
pub fn handle(
    cluster: &ClusterState,
    ctx: &RequestContext,
    req: ListGroupsRequest,
) -> ListGroupsResponse {
    let version = ctx.api_version;
    let states: Vec<String> = if version >= 4 {
        req.states_filter.iter().map(|s| s.to_string()).collect()
    } else {
        Vec::new()
    };
    let types: Vec<String> = if version >= 5 {
        req.types_filter.iter().map(|s| s.to_string()).collect()
    } else {
        Vec::new()
    };
    let groups = match cluster.coordinated_groups(ctx.broker_id, &states, &types, ctx.now) {
        Ok(groups) => groups,
        Err(code) => return error_response(&req, version, code),
    };
    let groups = groups
        .into_iter()
        .map(|group| {
            let mut listed = ListedGroup::default()
                .with_group_id(GroupId(text(group.id())))
                .with_protocol_type(text(group.protocol_type()));
            if version >= 4 {
                listed.group_state = text(group.state_name());
            }
            if version >= 5 {
                listed.group_type = text(group.type_name());
            }
            listed
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}

/// The answer that fails `req` with `code`.
pub fn error_response(
    _req: &ListGroupsRequest,
    _version: i16,
    code: ErrorCode,
) -> ListGroupsResponse {
    ListGroupsResponse::default().with_error_code(code.code())
}
