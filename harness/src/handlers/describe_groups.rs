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
use crate::cluster::groups::{ClassicGroup, ClassicGroupState};
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
            // A consumer group is not a classic group: described as if there were none
            // (Kafka's `classicGroup` throws GROUP_ID_NOT_FOUND).
            let classic = cluster
                .groups()
                .group(id.as_str())
                .and_then(|g| g.as_classic());
            let mut described = match classic {
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

fn describe(classic: &ClassicGroup, version: i16) -> DescribedGroup {
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
        .with_group_state(text(classic.state().name()))
        .with_protocol_type(text(classic.protocol_type().map_or("", |t| t)))
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

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use franzy::proto::{ApiKey, ResponseKind};
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::offset_fetch_request::{
        OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
    };
    use kafka_protocol::messages::*;

    use super::*;
    use crate::cluster::{CoordinatorType, Time};
    use crate::handlers::test_support::{api_ctx, assert_encodes, cluster_with};
    use crate::handlers::{
        join_group, list_groups, offset_commit, offset_fetch, sync_group, topic_name, Reply,
    };

    /// A stable group "g" of one member with an offset of t/0 committed; the coordinator.
    fn stable_group(cluster: &mut ClusterState) -> (i32, String) {
        cluster
            .create_internal_topic(CoordinatorType::Group)
            .expect("topic");
        let broker = cluster
            .find_coordinator(CoordinatorType::Group, "g")
            .expect("coordinator");
        let join = JoinGroupRequest::default()
            .with_group_id(GroupId(text("g")))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(10_000)
            .with_member_id(text(""))
            .with_protocol_type(text("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(text("range"))
                .with_metadata(Bytes::from_static(b"sub"))]);
        // v3: no MEMBER_ID_REQUIRED; the member waits for the initial rebalance.
        let ctx = api_ctx(ApiKey::JoinGroup, broker, 3);
        assert!(matches!(
            join_group::handle(cluster, &ctx, join),
            Reply::Park(_)
        ));
        cluster.handle_timeout(Time::ZERO);
        let member = cluster
            .groups()
            .group("g")
            .and_then(|g| g.as_classic())
            .and_then(|g| g.leader().cloned())
            .expect("a leader");
        let sync = SyncGroupRequest::default()
            .with_group_id(GroupId(text("g")))
            .with_generation_id(1)
            .with_member_id(text(&member))
            .with_protocol_type(Some(text("consumer")))
            .with_protocol_name(Some(text("range")));
        let ctx = api_ctx(ApiKey::SyncGroup, broker, 5);
        assert!(matches!(
            sync_group::handle(cluster, &ctx, sync),
            Reply::Respond(ResponseKind::SyncGroup(ref r)) if r.error_code == 0
        ));
        (broker, member.to_string())
    }

    #[test]
    fn group_answers_with_content_encode_at_every_version() {
        let mut cluster = cluster_with(2);
        let (broker, member) = stable_group(&mut cluster);
        for version in 2..=9 {
            let commit = OffsetCommitRequest::default()
                .with_group_id(GroupId(text("g")))
                .with_generation_id_or_member_epoch(1)
                .with_member_id(text(&member))
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(topic_name("t"))
                    .with_partitions(vec![OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(i64::from(version))
                        .with_committed_metadata(Some(text("m")))])]);
            let ctx = api_ctx(ApiKey::OffsetCommit, broker, version);
            let r = offset_commit::handle(&mut cluster, &ctx, commit);
            assert_eq!(r.topics[0].partitions[0].error_code, 0, "v{version}");
            assert_encodes(&ResponseKind::OffsetCommit(r), version);
        }
        for version in 1..=9 {
            let ctx = api_ctx(ApiKey::OffsetFetch, broker, version);
            let request = if version >= 8 {
                OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(text("g")))
                    .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                        .with_name(topic_name("t"))
                        .with_partition_indexes(vec![0, 1])]))])
            } else {
                OffsetFetchRequest::default()
                    .with_group_id(GroupId(text("g")))
                    .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                        .with_name(topic_name("t"))
                        .with_partition_indexes(vec![0, 1])]))
            };
            let r = offset_fetch::handle(&cluster, &ctx, request);
            let offsets: Vec<i64> = if version >= 8 {
                r.groups[0].topics[0]
                    .partitions
                    .iter()
                    .map(|p| p.committed_offset)
                    .collect()
            } else {
                r.topics[0]
                    .partitions
                    .iter()
                    .map(|p| p.committed_offset)
                    .collect()
            };
            assert_eq!(offsets, vec![9, -1], "v{version}");
            assert_encodes(&ResponseKind::OffsetFetch(r), version);
        }
        for version in 0..=6 {
            let ctx = api_ctx(ApiKey::DescribeGroups, broker, version);
            let request = DescribeGroupsRequest::default()
                .with_groups(vec![GroupId(text("g")), GroupId(text("none"))])
                .with_include_authorized_operations(true);
            let r = handle(&cluster, &ctx, request);
            assert_eq!(r.groups[0].group_state.as_str(), "Stable");
            assert_eq!(r.groups[0].protocol_data.as_str(), "range");
            assert_eq!(
                r.groups[0].members[0].member_metadata,
                Bytes::from_static(b"sub")
            );
            assert_eq!(r.groups[0].members[0].client_host.as_str(), "/127.0.0.1");
            let missing = &r.groups[1];
            assert_eq!(missing.group_state.as_str(), "Dead");
            let expected = if version >= 6 {
                ErrorCode::GroupIdNotFound.code()
            } else {
                0
            };
            // "none" may live on another coordinator.
            if cluster
                .check_group_coordinator("none", broker, Time::ZERO)
                .is_ok()
            {
                assert_eq!(missing.error_code, expected, "v{version}");
            }
            assert_encodes(&ResponseKind::DescribeGroups(r), version);
        }
        for version in 0..=5 {
            let ctx = api_ctx(ApiKey::ListGroups, broker, version);
            let r = list_groups::handle(&cluster, &ctx, ListGroupsRequest::default());
            assert_eq!(r.groups.len(), 1);
            assert_eq!(r.groups[0].protocol_type.as_str(), "consumer");
            assert_encodes(&ResponseKind::ListGroups(r), version);
        }
        let ctx = api_ctx(ApiKey::ListGroups, broker, 5);
        let filtered = ListGroupsRequest::default()
            .with_states_filter(vec![text("empty")])
            .with_types_filter(vec![text("classic")]);
        assert!(list_groups::handle(&cluster, &ctx, filtered)
            .groups
            .is_empty());
        let filtered = ListGroupsRequest::default().with_states_filter(vec![text("STABLE")]);
        assert_eq!(
            list_groups::handle(&cluster, &ctx, filtered).groups.len(),
            1
        );
    }
}
