//! Heartbeat (key 12), v0-4: a member of a classic group is alive, and learns whether it
//! must rejoin.
//!
//! As Kafka answers it (`GroupCoordinatorService.heartbeat`,
//! `classicGroupHeartbeatToClassicGroup`): an empty group id is INVALID_GROUP_ID; then the
//! coordinator (NOT_COORDINATOR; while it loads, no error at all, as Kafka "blindly"
//! answers); an unknown group or member UNKNOWN_MEMBER_ID; a static member whose instance
//! id now belongs to another member FENCED_INSTANCE_ID (v3+ carries the instance id); a
//! generation other than the group's ILLEGAL_GENERATION; REBALANCE_IN_PROGRESS while the
//! group prepares a rebalance (the member must rejoin); otherwise no error. Every accepted
//! heartbeat restarts the member's session.

use franzy::proto::ErrorCode;
use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use super::RequestContext;
use crate::cluster::groups::is_valid_group_id;
use crate::cluster::ClusterState;

/// Serves a Heartbeat request.
pub fn handle(
    cluster: &mut ClusterState,
    ctx: &RequestContext,
    req: HeartbeatRequest,
) -> HeartbeatResponse {
    let version = ctx.api_version;
    let group_id = req.group_id.as_str();
    if !is_valid_group_id(group_id) {
        return error_response(&req, version, ErrorCode::InvalidGroupId);
    }
    let instance_id = req
        .group_instance_id
        .as_ref()
        .filter(|_| version >= 3)
        .map(|i| i.as_str());
    match cluster.heartbeat(
        group_id,
        req.member_id.as_str(),
        instance_id,
        req.generation_id,
        ctx.broker_id,
        ctx.now,
    ) {
        Ok(()) => HeartbeatResponse::default(),
        Err(code) => error_response(&req, version, code),
    }
}

/// The answer that fails `req` with `code`.
pub fn error_response(
    _req: &HeartbeatRequest,
    _version: i16,
    code: ErrorCode,
) -> HeartbeatResponse {
    HeartbeatResponse::default().with_error_code(code.code())
}
