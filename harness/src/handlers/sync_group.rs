//! SyncGroup (key 14), v0-5: the leader hands out the assignment; every member waits in the
//! purgatory until it has it ([`crate::cluster::groups`]).
//!
//! As Kafka checks it (`KafkaApis.handleSyncGroupRequest`, `GroupCoordinatorService.
//! syncGroup`, `classicGroupSync`): from v5 a missing protocol type or name is
//! INCONSISTENT_GROUP_PROTOCOL; an empty group id INVALID_GROUP_ID; then the coordinator;
//! an unknown or empty group UNKNOWN_MEMBER_ID; the member (UNKNOWN_MEMBER_ID,
//! FENCED_INSTANCE_ID), the generation (ILLEGAL_GENERATION), a protocol type or name other
//! than the group's (INCONSISTENT_GROUP_PROTOCOL); REBALANCE_IN_PROGRESS while members
//! rejoin. An error answers an empty assignment.

use std::sync::Arc;

use franzy::proto::{ErrorCode, RequestKind, ResponseKind};
use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};

use super::{text, Completion, Park, Reply, RequestContext};
use crate::cluster::groups::{
    classic, is_valid_group_id, GroupAnswer, GroupReply, SyncArgs, SyncOutcome,
};
use crate::cluster::{ClusterState, Parked, Resolution, Wake};

/// Serves a SyncGroup request: its answer, or [`Reply::Park`] until the leader's
/// assignment.
pub fn handle(cluster: &mut ClusterState, ctx: &RequestContext, req: SyncGroupRequest) -> Reply {
    let version = ctx.api_version;
    if version >= 5 && (req.protocol_type.is_none() || req.protocol_name.is_none()) {
        return respond(
            version,
            classic::sync_error(ErrorCode::InconsistentGroupProtocol),
        );
    }
    let group_id = req.group_id.as_str();
    if !is_valid_group_id(group_id) {
        return respond(version, classic::sync_error(ErrorCode::InvalidGroupId));
    }
    let assignments = req
        .assignments
        .iter()
        .map(|a| (Arc::from(a.member_id.as_str()), a.assignment.clone()))
        .collect();
    let args = SyncArgs {
        member_id: req.member_id.as_str(),
        instance_id: req
            .group_instance_id
            .as_ref()
            .filter(|_| version >= 3)
            .map(|i| i.as_str()),
        generation: req.generation_id,
        protocol_type: req.protocol_type.as_ref().map(|t| t.as_str()),
        protocol_name: req.protocol_name.as_ref().map(|n| n.as_str()),
        assignments,
    };
    match cluster.sync_group(group_id, args, ctx.broker_id, ctx.waiter, ctx.now) {
        GroupReply::Now(outcome) => respond(version, outcome),
        GroupReply::Wait(deadline) => Reply::Park(Park {
            keys: Vec::new(),
            deadline,
            request: RequestKind::SyncGroup(req),
        }),
    }
}

/// A SyncGroup that waited: answered with the assignment (or error) the coordinator handed
/// it, or COORDINATOR_NOT_AVAILABLE at its safety deadline.
pub fn complete(cluster: &mut ClusterState, parked: Parked, wake: Wake) -> Completion {
    let Parked {
        request: RequestKind::SyncGroup(req),
        context,
    } = parked
    else {
        return super::mismatched_parked(parked);
    };
    let version = context.api_version;
    let outcome = match wake {
        Wake::Touched => {
            return Completion::Wait(Parked {
                request: RequestKind::SyncGroup(req),
                context,
            })
        }
        Wake::Resolved(Resolution::Group(GroupAnswer::Sync(outcome))) => outcome,
        Wake::Resolved(Resolution::Error(code)) => classic::sync_error(code),
        Wake::Resolved(_) | Wake::Due => {
            cluster.forget_group_waiter(req.group_id.as_str(), context.waiter);
            classic::sync_error(ErrorCode::CoordinatorNotAvailable)
        }
    };
    Completion::Done(respond(version, outcome))
}

fn respond(version: i16, outcome: SyncOutcome) -> Reply {
    Reply::Respond(ResponseKind::SyncGroup(response(version, outcome)))
}

/// The response for `outcome` at `version` (protocol type and name from v5).
pub fn response(version: i16, outcome: SyncOutcome) -> SyncGroupResponse {
    let (protocol_type, protocol_name) = if version >= 5 {
        (
            outcome.protocol_type.map(|t| text(&t)),
            outcome.protocol_name.map(|n| text(&n)),
        )
    } else {
        (None, None)
    };
    SyncGroupResponse::default()
        .with_error_code(outcome.error_code)
        .with_protocol_type(protocol_type)
        .with_protocol_name(protocol_name)
        .with_assignment(outcome.assignment)
}

/// The answer that fails `req` with `code`: an empty assignment.
pub fn error_response(_req: &SyncGroupRequest, version: i16, code: ErrorCode) -> SyncGroupResponse {
    response(version, classic::sync_error(code))
}
