//! JoinGroup (key 11), v0-9: a member joins a classic group, and waits in the purgatory
//! until the join phase ends ([`crate::cluster::groups`]).
//!
//! Checked in Kafka's order (`KafkaApis.handleJoinGroupRequest`,
//! `GroupCoordinatorService.joinGroup`): an empty group id is INVALID_GROUP_ID, a session
//! timeout outside `group.min/max.session.timeout.ms` INVALID_SESSION_TIMEOUT, then the
//! coordinator (NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS), then the group. v0 has no
//! rebalance timeout: the session timeout is used (`JoinGroupRequest`). From v4 a new dynamic
//! member is first answered MEMBER_ID_REQUIRED with its id (KIP-394); v5+ carries
//! `group.instance.id` (KIP-345); v9+ may tell a static leader to skip the assignment
//! (KIP-814). The answer's protocol name is "" rather than null before v7, and null rather
//! than "" from v7 (`JoinGroupResponse`). Protocols named twice count once (the first).

use std::collections::HashSet;
use std::sync::Arc;

use franzy::proto::{ErrorCode, RequestKind, ResponseKind, StrBytes};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};

use super::{text, Completion, Park, Reply, RequestContext};
use crate::cluster::groups::{
    classic, is_valid_group_id, GroupAnswer, GroupReply, JoinArgs, JoinOutcome,
};
use crate::cluster::{ClusterState, Parked, Resolution, Wake};

/// Serves a JoinGroup request: its answer, or [`Reply::Park`] until the join phase ends.
pub fn handle(cluster: &mut ClusterState, ctx: &RequestContext, req: JoinGroupRequest) -> Reply {
    let version = ctx.api_version;
    let group_id = req.group_id.as_str();
    if !is_valid_group_id(group_id) {
        return respond(
            &req,
            version,
            classic::join_error(req.member_id.as_str(), ErrorCode::InvalidGroupId),
        );
    }
    let config = cluster.groups().config();
    let session = classic::ms(req.session_timeout_ms);
    if req.session_timeout_ms < 0
        || session < config.min_session_timeout
        || session > config.max_session_timeout
    {
        return respond(
            &req,
            version,
            classic::join_error(req.member_id.as_str(), ErrorCode::InvalidSessionTimeout),
        );
    }
    let args = args(&req, ctx);
    match cluster.join_group(group_id, args, ctx.broker_id, ctx.waiter, ctx.now) {
        GroupReply::Now(outcome) => respond(&req, version, outcome),
        GroupReply::Wait(deadline) => Reply::Park(Park {
            keys: Vec::new(),
            deadline,
            request: RequestKind::JoinGroup(req),
        }),
    }
}

/// A JoinGroup that waited: answered with what the coordinator decided for it, or, at its
/// deadline (a safety net the coordinator never lets pass), COORDINATOR_NOT_AVAILABLE so that
/// the client finds the coordinator and joins again.
pub fn complete(cluster: &mut ClusterState, parked: Parked, wake: Wake) -> Completion {
    let Parked {
        request: RequestKind::JoinGroup(req),
        context,
    } = parked
    else {
        return super::mismatched_parked(parked);
    };
    let version = context.api_version;
    let outcome = match wake {
        Wake::Touched => {
            return Completion::Wait(Parked {
                request: RequestKind::JoinGroup(req),
                context,
            })
        }
        Wake::Resolved(Resolution::Group(GroupAnswer::Join(outcome))) => outcome,
        Wake::Resolved(Resolution::Error(code)) => {
            classic::join_error(req.member_id.as_str(), code)
        }
        Wake::Resolved(_) | Wake::Due => {
            cluster.forget_group_waiter(req.group_id.as_str(), context.waiter);
            classic::join_error(req.member_id.as_str(), ErrorCode::CoordinatorNotAvailable)
        }
    };
    Completion::Done(respond(&req, version, outcome))
}

/// What the coordinator needs of the request.
fn args(req: &JoinGroupRequest, ctx: &RequestContext) -> JoinArgs {
    let version = ctx.api_version;
    let mut seen = HashSet::new();
    let protocols = req
        .protocols
        .iter()
        .filter(|p| seen.insert(p.name.as_str()))
        .map(|p| (Arc::from(p.name.as_str()), p.metadata.clone()))
        .collect();
    JoinArgs {
        member_id: Arc::from(req.member_id.as_str()),
        instance_id: req
            .group_instance_id
            .as_ref()
            .filter(|_| version >= 5)
            .map(|i| Arc::from(i.as_str())),
        client_id: Arc::from(ctx.client_id.as_deref().unwrap_or("")),
        client_host: ctx.client_host.clone(),
        session_timeout_ms: req.session_timeout_ms,
        rebalance_timeout_ms: if version == 0 {
            req.session_timeout_ms
        } else {
            req.rebalance_timeout_ms
        },
        protocol_type: Arc::from(req.protocol_type.as_str()),
        protocols,
        require_known_member_id: version >= 4,
        supports_skip_assignment: version >= 9,
    }
}

fn respond(req: &JoinGroupRequest, version: i16, outcome: JoinOutcome) -> Reply {
    Reply::Respond(ResponseKind::JoinGroup(response(req, version, outcome)))
}

/// The response for `outcome` at `version`.
pub fn response(_req: &JoinGroupRequest, version: i16, outcome: JoinOutcome) -> JoinGroupResponse {
    let protocol_name = match (version >= 7, outcome.protocol_name) {
        (false, name) => Some(name.map_or_else(StrBytes::default, |n| text(&n))),
        (true, Some(name)) if !name.is_empty() => Some(text(&name)),
        (true, _) => None,
    };
    let members = outcome
        .members
        .into_iter()
        .map(|m| {
            JoinGroupResponseMember::default()
                .with_member_id(text(&m.member_id))
                .with_group_instance_id(
                    m.group_instance_id
                        .filter(|_| version >= 5)
                        .map(|i| text(&i)),
                )
                .with_metadata(m.metadata)
        })
        .collect();
    JoinGroupResponse::default()
        .with_error_code(outcome.error_code)
        .with_generation_id(outcome.generation_id)
        .with_protocol_type(outcome.protocol_type.map(|t| text(&t)))
        .with_protocol_name(protocol_name)
        .with_leader(text(&outcome.leader))
        .with_skip_assignment(version >= 9 && outcome.skip_assignment)
        .with_member_id(text(&outcome.member_id))
        .with_members(members)
}

/// The answer that fails `req` with `code` (Kafka's `JoinGroupRequest.getErrorResponse`:
/// generation -1, no protocol, no leader, no member id).
pub fn error_response(req: &JoinGroupRequest, version: i16, code: ErrorCode) -> JoinGroupResponse {
    response(req, version, classic::join_error("", code))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::CoordinatorType;
    use crate::handlers::test_support::{api_ctx, assert_encodes, cluster_with};
    use franzy::proto::ApiKey;
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;

    fn request(member: &str) -> JoinGroupRequest {
        JoinGroupRequest::default()
            .with_group_id(text("g").into())
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(30_000)
            .with_member_id(text(member))
            .with_protocol_type(text("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(text("range"))
                .with_metadata(bytes::Bytes::from_static(b"meta"))])
    }

    fn joined(reply: Reply) -> JoinGroupResponse {
        match reply {
            Reply::Respond(ResponseKind::JoinGroup(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn checks_come_in_kafkas_order_and_answers_encode_at_every_version() {
        let mut cluster = cluster_with(1);
        cluster
            .create_internal_topic(CoordinatorType::Group)
            .expect("topic");
        let coordinator = cluster
            .find_coordinator(CoordinatorType::Group, "g")
            .expect("coordinator");
        for version in 0..=9 {
            let ctx = api_ctx(ApiKey::JoinGroup, coordinator, version);
            let invalid = joined(handle(
                &mut cluster,
                &ctx,
                request("").with_group_id(text("").into()),
            ));
            assert_eq!(invalid.error_code, ErrorCode::InvalidGroupId.code());
            let short = joined(handle(
                &mut cluster,
                &ctx,
                request("").with_session_timeout_ms(10),
            ));
            assert_eq!(short.error_code, ErrorCode::InvalidSessionTimeout.code());
            let other = api_ctx(ApiKey::JoinGroup, (coordinator + 1) % 3, version);
            let elsewhere = joined(handle(&mut cluster, &other, request("")));
            assert_eq!(elsewhere.error_code, ErrorCode::NotCoordinator.code());
            for r in [invalid, short, elsewhere] {
                assert_encodes(&ResponseKind::JoinGroup(r.clone()), version);
                assert_eq!(r.protocol_name, (version < 7).then(StrBytes::default));
            }
        }
        // v4+: the member id first.
        let ctx = api_ctx(ApiKey::JoinGroup, coordinator, 4);
        let first = joined(handle(&mut cluster, &ctx, request("")));
        assert_eq!(first.error_code, ErrorCode::MemberIdRequired.code());
        assert!(first.member_id.starts_with("test-"));
        // Then it waits for the join phase.
        let reply = handle(&mut cluster, &ctx, request(first.member_id.as_str()));
        assert!(matches!(reply, Reply::Park(_)), "{reply:?}");
    }
}
