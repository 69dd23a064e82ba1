//! OffsetDelete (key 47), v0: deletes a group's committed offsets of some partitions
//! (KIP-496).
//!
//! As Kafka answers it (`KafkaApis.handleOffsetDeleteRequest`,
//! `OffsetMetadataManager.deleteOffsets`): an empty group id is INVALID_GROUP_ID; partitions
//! of unknown topics, and unknown partitions, are UNKNOWN_TOPIC_OR_PARTITION; then, for the
//! whole request, the coordinator (NOT_COORDINATOR, ...) and the group: GROUP_ID_NOT_FOUND
//! without one, NON_EMPTY_GROUP for a group with members that does not use the consumer
//! protocol. A consumer group with members keeps the offsets of the topics it subscribes to
//! (GROUP_SUBSCRIBED_TO_TOPIC for each of their partitions); the others are deleted,
//! committed and pending alike, and answered without error whether there was one or not.

use std::sync::Arc;

use franzy::proto::ErrorCode;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

use super::{RequestContext, TopicPartitions};
use crate::cluster::groups::is_valid_group_id;
use crate::cluster::ClusterState;

/// Serves an OffsetDelete request.
pub fn handle(
    cluster: &mut ClusterState,
    ctx: &RequestContext,
    req: OffsetDeleteRequest,
) -> OffsetDeleteResponse {
    let version = ctx.api_version;
    let group_id = req.group_id.as_str();
    if !is_valid_group_id(group_id) {
        return error_response(&req, version, ErrorCode::InvalidGroupId);
    }
    if let Err(code) = cluster.validate_offset_delete(group_id, ctx.broker_id, ctx.now) {
        return error_response(&req, version, code);
    }
    let cap = cluster.config().max_partitions_per_request;
    let mut seen = 0usize;
    let topics = req
        .topics
        .iter()
        .map(|topic| {
            let name = topic.name.as_str();
            let known = cluster.topic(name).map(|t| t.partitions().len());
            let subscribed = cluster.group_subscribed_to(group_id, name);
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    seen += 1;
                    let index = p.partition_index;
                    let exists = known.is_some_and(|n| usize::try_from(index).is_ok_and(|i| i < n));
                    let result = if seen > cap {
                        Err(ErrorCode::InvalidRequest)
                    } else if let Some(code) = ctx.partition_error(name, index) {
                        Err(code)
                    } else if !exists {
                        Err(ErrorCode::UnknownTopicOrPartition)
                    } else if subscribed {
                        Err(ErrorCode::GroupSubscribedToTopic)
                    } else {
                        cluster.offsets_mut().delete(group_id, name, index);
                        Ok(())
                    };
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(index)
                        .with_error_code(result.err().map_or(0, |code| code.code()))
                })
                .collect();
            OffsetDeleteResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}

/// The answer that fails `req` with `code`: the top-level error only.
pub fn error_response(
    _req: &OffsetDeleteRequest,
    _version: i16,
    code: ErrorCode,
) -> OffsetDeleteResponse {
    OffsetDeleteResponse::default().with_error_code(code.code())
}

/// The topic-partitions the request names, for interceptors.
pub fn partitions(req: &OffsetDeleteRequest) -> TopicPartitions {
    req.topics
        .iter()
        .flat_map(|t| {
            let name: Arc<str> = Arc::from(t.name.as_str());
            t.partitions
                .iter()
                .map(move |p| (name.clone(), p.partition_index))
        })
        .collect()
}
