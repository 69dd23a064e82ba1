//! LeaveGroup (key 13), v0-5: members leave a classic group; from v3 several at once, by
//! member id or, for static members, by instance id alone (KIP-345).
//!
//! As Kafka answers it (`KafkaApis.handleLeaveGroupRequest` with the request's
//! `normalizedData`, `classicGroupLeaveToClassicGroup`, `LeaveGroupResponse`): an empty group
//! id is INVALID_GROUP_ID, then the coordinator, both for the whole request; then each
//! member: an empty member id with a known instance id removes that static member,
//! otherwise UNKNOWN_MEMBER_ID; a member told MEMBER_ID_REQUIRED is forgotten; any other is
//! checked as the group checks members (UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID). An unknown
//! group answers UNKNOWN_MEMBER_ID for each member. Before v3 the request names one member
//! and its error is the response's. Members leaving end the join phase or start a rebalance.

use std::sync::Arc;

use franzy::proto::ErrorCode;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use super::RequestContext;
use crate::cluster::groups::is_valid_group_id;
use crate::cluster::ClusterState;

/// The first version with batched members.
const MIN_BATCHED_VERSION: i16 = 3;

/// Serves a LeaveGroup request.
pub fn handle(
    cluster: &mut ClusterState,
    ctx: &RequestContext,
    req: LeaveGroupRequest,
) -> LeaveGroupResponse {
    let version = ctx.api_version;
    let group_id = req.group_id.as_str();
    if !is_valid_group_id(group_id) {
        return error_response(&req, version, ErrorCode::InvalidGroupId);
    }
    let cap = cluster.config().max_partitions_per_request;
    let members: Vec<(Arc<str>, Option<Arc<str>>)> = if version >= MIN_BATCHED_VERSION {
        req.members
            .iter()
            .take(cap)
            .map(|m| {
                (
                    Arc::from(m.member_id.as_str()),
                    m.group_instance_id.as_ref().map(|i| Arc::from(i.as_str())),
                )
            })
            .collect()
    } else {
        vec![(Arc::from(req.member_id.as_str()), None)]
    };
    let results = match cluster.leave_group(group_id, &members, ctx.broker_id, ctx.now) {
        Ok(results) => results,
        Err(code) => return error_response(&req, version, code),
    };
    if version < MIN_BATCHED_VERSION {
        let code = results
            .first()
            .and_then(|r| r.err())
            .map_or(0, |code| code.code());
        return LeaveGroupResponse::default().with_error_code(code);
    }
    let past_cap = req.members.iter().skip(cap).map(|m| {
        MemberResponse::default()
            .with_member_id(m.member_id.clone())
            .with_group_instance_id(m.group_instance_id.clone())
            .with_error_code(ErrorCode::InvalidRequest.code())
    });
    let responses = req
        .members
        .iter()
        .zip(results)
        .map(|(m, result)| {
            MemberResponse::default()
                .with_member_id(m.member_id.clone())
                .with_group_instance_id(m.group_instance_id.clone())
                .with_error_code(result.err().map_or(0, |code| code.code()))
        })
        .chain(past_cap)
        .collect();
    LeaveGroupResponse::default().with_members(responses)
}

/// The answer that fails `req` with `code`: the top-level error only.
pub fn error_response(
    _req: &LeaveGroupRequest,
    _version: i16,
    code: ErrorCode,
) -> LeaveGroupResponse {
    LeaveGroupResponse::default().with_error_code(code.code())
}
