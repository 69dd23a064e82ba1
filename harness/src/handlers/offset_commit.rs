//! OffsetCommit (key 8), v2-9: a group's consumed positions, into the offset store
//! ([`crate::cluster::offsets`]). (v0-1 are gone from Kafka 4.0, v10's topic ids are beyond
//! what kafka-protocol decodes.)
//!
//! In Kafka's order (`KafkaApis.handleOffsetCommitRequest`, `GroupCoordinatorService.
//! commitOffsets`, `OffsetMetadataManager.commitOffset`):
//! 1. partitions of unknown topics, and unknown partitions, are UNKNOWN_TOPIC_OR_PARTITION
//!    (past [`crate::cluster::ClusterConfig::max_partitions_per_request`]: INVALID_REQUEST);
//!    when none is left the request is answered without the coordinator;
//! 2. then the whole request fails with the coordinator's error (NOT_COORDINATOR,
//!    COORDINATOR_LOAD_IN_PROGRESS) or the group's: an unknown group with a generation of
//!    0 or more is ILLEGAL_GENERATION (GROUP_ID_NOT_FOUND from v9); a member the group does
//!    not know UNKNOWN_MEMBER_ID, a replaced static member FENCED_INSTANCE_ID, another
//!    generation ILLEGAL_GENERATION, a group completing a rebalance REBALANCE_IN_PROGRESS.
//!    A KIP-848 consumer group checks v9's member epoch: UNKNOWN_MEMBER_ID, UNSUPPORTED_VERSION
//!    for one of its members committing below v9, STALE_MEMBER_EPOCH for another epoch.
//!    Generation -1 with no member commits to a group without members, creating a "simple"
//!    group if needed (the admin client, a consumer without group management);
//! 3. each partition is stored, or refused: OFFSET_METADATA_TOO_LARGE past
//!    `offset.metadata.max.bytes`, INVALID_COMMIT_OFFSET_SIZE past the store's caps.
//!
//! An accepted commit of a member keeps its session alive. The commit timestamp is the
//! broker's time; v2-4's retention time sets the (never acted on) expiry.

use std::sync::Arc;

use franzy::proto::ErrorCode;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use super::{RequestContext, TopicPartitions};
use crate::cluster::{ClusterState, OffsetAndMetadata};

/// Kafka's `OffsetCommitRequest.DEFAULT_RETENTION_TIME`: keep as long as the broker keeps.
const DEFAULT_RETENTION_TIME: i64 = -1;

/// Serves an OffsetCommit request.
pub fn handle(
    cluster: &mut ClusterState,
    ctx: &RequestContext,
    req: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let version = ctx.api_version;
    let cap = cluster.config().max_partitions_per_request;
    // First pass, as KafkaApis: which partitions exist.
    let mut seen = 0usize;
    let checks: Vec<Vec<Option<ErrorCode>>> = req
        .topics
        .iter()
        .map(|topic| {
            let known = cluster.topic(topic.name.as_str());
            topic
                .partitions
                .iter()
                .map(|p| {
                    seen += 1;
                    if seen > cap {
                        return Some(ErrorCode::InvalidRequest);
                    }
                    if let Some(code) = ctx.partition_error(topic.name.as_str(), p.partition_index)
                    {
                        return Some(code);
                    }
                    match known {
                        Some(t) if t.partition(p.partition_index).is_some() => None,
                        _ => Some(ErrorCode::UnknownTopicOrPartition),
                    }
                })
                .collect()
        })
        .collect();
    let any_valid = checks.iter().flatten().any(Option::is_none);
    if any_valid {
        let group_id = req.group_id.as_str();
        let instance_id = req
            .group_instance_id
            .as_ref()
            .filter(|_| version >= 7)
            .map(|i| i.as_str());
        if let Err(code) = cluster.validate_offset_commit(
            group_id,
            req.member_id.as_str(),
            instance_id,
            req.generation_id_or_member_epoch,
            version,
            ctx.broker_id,
            ctx.now,
        ) {
            return error_response(&req, version, code);
        }
    }
    let expire = (version <= 4 && req.retention_time_ms != DEFAULT_RETENTION_TIME)
        .then(|| ctx.now_ms.saturating_add(req.retention_time_ms));
    let topics = req
        .topics
        .iter()
        .zip(checks)
        .map(|(topic, checks)| {
            let partitions = topic
                .partitions
                .iter()
                .zip(checks)
                .map(|(p, check)| {
                    let result = match check {
                        Some(code) => Err(code),
                        None => {
                            let offset = OffsetAndMetadata {
                                offset: p.committed_offset,
                                leader_epoch: if version >= 6 {
                                    p.committed_leader_epoch
                                } else {
                                    -1
                                },
                                metadata: Arc::from(
                                    p.committed_metadata.as_ref().map_or("", |m| m.as_str()),
                                ),
                                commit_timestamp_ms: ctx.now_ms,
                                expire_timestamp_ms: expire,
                            };
                            cluster.offsets_mut().commit(
                                req.group_id.as_str(),
                                topic.name.as_str(),
                                p.partition_index,
                                offset,
                            )
                        }
                    };
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(result.err().map_or(0, |code| code.code()))
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// The answer that fails `req` with `code`: every partition carries it
/// (`OffsetCommitRequest.getErrorResponse`).
pub fn error_response(
    req: &OffsetCommitRequest,
    _version: i16,
    code: ErrorCode,
) -> OffsetCommitResponse {
    let topics = req
        .topics
        .iter()
        .map(|topic| {
            OffsetCommitResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(
                    topic
                        .partitions
                        .iter()
                        .map(|p| {
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code.code())
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// The topic-partitions the request names, for interceptors.
pub fn partitions(req: &OffsetCommitRequest) -> TopicPartitions {
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
