//! DeleteGroups (key 42), v0-2: deletes groups without members, with their offsets.
//!
//! As Kafka answers it (`KafkaApis.handleDeleteGroupsRequest`,
//! `GroupCoordinatorShard.deleteGroups`): each group named (once, however often it is
//! named) at its coordinator (NOT_COORDINATOR, ...); GROUP_ID_NOT_FOUND for a group that
//! does not exist, NON_EMPTY_GROUP for one with members; otherwise the group and all its
//! committed and pending offsets go. Groups past
//! [`crate::cluster::ClusterConfig::max_partitions_per_request`] are INVALID_REQUEST.

use std::collections::HashSet;

use franzy::proto::ErrorCode;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use super::RequestContext;
use crate::cluster::ClusterState;

/// Serves a DeleteGroups request.
pub fn handle(
    cluster: &mut ClusterState,
    ctx: &RequestContext,
    req: DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    let cap = cluster.config().max_partitions_per_request;
    let mut seen = HashSet::new();
    let results = req
        .groups_names
        .iter()
        .filter(|id| seen.insert(id.as_str()))
        .enumerate()
        .map(|(i, id)| {
            let result = if i >= cap {
                Err(ErrorCode::InvalidRequest)
            } else {
                cluster.delete_group(id.as_str(), ctx.broker_id, ctx.now)
            };
            DeletableGroupResult::default()
                .with_group_id(id.clone())
                .with_error_code(result.err().map_or(0, |code| code.code()))
        })
        .collect();
    DeleteGroupsResponse::default().with_results(results)
}

/// The answer that fails `req` with `code`: every group carries it.
pub fn error_response(
    req: &DeleteGroupsRequest,
    _version: i16,
    code: ErrorCode,
) -> DeleteGroupsResponse {
    DeleteGroupsResponse::default().with_results(
        req.groups_names
            .iter()
            .map(|id| {
                DeletableGroupResult::default()
                    .with_group_id(id.clone())
                    .with_error_code(code.code())
            })
            .collect(),
    )
}
