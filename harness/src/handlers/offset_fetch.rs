//! OffsetFetch (key 9), v1-9: a group's committed offsets, for named partitions or (topics
//! null, v2+) every partition it committed; several groups per request from v8 (KIP-709);
//! `require_stable` from v7 (KIP-447). (v0 read ZooKeeper and is gone from Kafka 4.0; v10's
//! topic ids are beyond what kafka-protocol decodes.)
//!
//! As Kafka answers it (`KafkaApis.handleOffsetFetchRequestFromCoordinator`,
//! `OffsetMetadataManager.fetchOffsets`/`fetchAllOffsets`): each group is looked up at its
//! coordinator (NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS for the group); an unknown
//! group or partition is no error, just offset -1, leader epoch -1 and metadata ""; with
//! `require_stable`, a partition with transactional offsets pending is
//! UNSTABLE_OFFSET_COMMIT. From v9 a KIP-848 consumer group checks the member id and
//! epoch (UNKNOWN_MEMBER_ID, STALE_MEMBER_EPOCH; no member id and epoch -1 is the admin). Before v8 the one group's error is the response's (and before v2,
//! which has no such field, every partition's). Topics are not checked against the cluster.
//! Partitions (and, from v8, groups) past
//! [`crate::cluster::ClusterConfig::max_partitions_per_request`] are INVALID_REQUEST.

use std::sync::Arc;

use franzy::proto::{ErrorCode, StrBytes};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};

use super::{topic_name, RequestContext, TopicPartitions};
use crate::cluster::{ClusterState, OffsetAndMetadata};

/// The first version with batched groups (KIP-709).
const MIN_BATCHED_VERSION: i16 = 8;

/// One partition's answer: offset, leader epoch, metadata, error.
type Fetched = (i32, Result<OffsetAndMetadata, ErrorCode>);

/// One group's answer: its error, or its topics.
type GroupFetch = Result<Vec<(TopicName, Vec<Fetched>)>, ErrorCode>;

/// Serves an OffsetFetch request.
pub fn handle(
    cluster: &ClusterState,
    ctx: &RequestContext,
    req: OffsetFetchRequest,
) -> OffsetFetchResponse {
    let version = ctx.api_version;
    let require_stable = version >= 7 && req.require_stable;
    let mut budget = cluster.config().max_partitions_per_request;
    if version < MIN_BATCHED_VERSION {
        let topics: Option<Vec<(TopicName, Vec<i32>)>> = req.topics.as_ref().map(|topics| {
            topics
                .iter()
                .map(|t| (t.name.clone(), t.partition_indexes.clone()))
                .collect()
        });
        let fetched = fetch_group(
            cluster,
            ctx,
            req.group_id.as_str(),
            None,
            topics,
            require_stable,
            &mut budget,
        );
        return match fetched {
            // v0-1 have no error field but the partitions'.
            Err(code) if version < 2 => error_response(&req, version, code),
            fetched => single_group_response(version, fetched),
        };
    }
    let groups = req
        .groups
        .iter()
        .map(|group| {
            let fetched = if budget == 0 {
                Err(ErrorCode::InvalidRequest)
            } else {
                budget -= 1;
                let topics = group.topics.as_ref().map(|topics| {
                    topics
                        .iter()
                        .map(|t| (t.name.clone(), t.partition_indexes.clone()))
                        .collect()
                });
                let member = (version >= 9).then(|| {
                    (
                        group.member_id.as_ref().map(|m| m.as_str()),
                        group.member_epoch,
                    )
                });
                fetch_group(
                    cluster,
                    ctx,
                    group.group_id.as_str(),
                    member,
                    topics,
                    require_stable,
                    &mut budget,
                )
            };
            group_response(group.group_id.clone(), fetched)
        })
        .collect();
    OffsetFetchResponse::default().with_groups(groups)
}

/// One group's offsets: the named partitions, or every committed one (`topics` None).
/// From v9 a KIP-848 member names itself and its epoch (`member`), which a consumer group
/// checks: UNKNOWN_MEMBER_ID, STALE_MEMBER_EPOCH.
fn fetch_group(
    cluster: &ClusterState,
    ctx: &RequestContext,
    group_id: &str,
    member: Option<(Option<&str>, i32)>,
    topics: Option<Vec<(TopicName, Vec<i32>)>>,
    require_stable: bool,
    budget: &mut usize,
) -> GroupFetch {
    cluster.check_group_coordinator(group_id, ctx.broker_id, ctx.now)?;
    if let Some((member_id, member_epoch)) = member {
        cluster.validate_offset_fetch(group_id, member_id, member_epoch)?;
    }
    let store = cluster.offsets();
    let Some(topics) = topics else {
        return Ok(store
            .fetch_all(group_id, require_stable)
            .into_iter()
            .map(|(topic, partitions)| {
                let partitions = partitions
                    .into_iter()
                    .map(|(p, r)| (p, r.cloned()))
                    .collect();
                (topic_name(&topic), partitions)
            })
            .collect());
    };
    Ok(topics
        .into_iter()
        .map(|(name, partitions)| {
            let fetched = partitions
                .into_iter()
                .map(|p| {
                    if *budget == 0 {
                        return (p, Err(ErrorCode::InvalidRequest));
                    }
                    *budget -= 1;
                    if let Some(code) = ctx.partition_error(name.as_str(), p) {
                        return (p, Err(code));
                    }
                    let found = store
                        .fetch(group_id, name.as_str(), p, require_stable)
                        .map(|o| o.cloned().unwrap_or_else(none));
                    (p, found)
                })
                .collect();
            (name, fetched)
        })
        .collect())
}

/// No committed offset: -1, no epoch, no metadata.
fn none() -> OffsetAndMetadata {
    OffsetAndMetadata {
        offset: -1,
        leader_epoch: -1,
        metadata: Arc::from(""),
        commit_timestamp_ms: -1,
        expire_timestamp_ms: None,
    }
}

/// The partition fields: (offset, leader epoch, metadata, error).
fn fields(result: Result<OffsetAndMetadata, ErrorCode>) -> (i64, i32, StrBytes, i16) {
    match result {
        Ok(o) => (
            o.offset,
            o.leader_epoch,
            StrBytes::from_string(o.metadata.to_string()),
            0,
        ),
        Err(code) => (-1, -1, StrBytes::default(), code.code()),
    }
}

fn single_group_response(version: i16, fetched: GroupFetch) -> OffsetFetchResponse {
    match fetched {
        Ok(topics) => OffsetFetchResponse::default().with_topics(
            topics
                .into_iter()
                .map(|(name, partitions)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(name)
                        .with_partitions(
                            partitions
                                .into_iter()
                                .map(|(p, result)| {
                                    let (offset, epoch, metadata, code) = fields(result);
                                    let mut partition = OffsetFetchResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(offset)
                                        .with_metadata(Some(metadata))
                                        .with_error_code(code);
                                    if version >= 5 {
                                        partition.committed_leader_epoch = epoch;
                                    }
                                    partition
                                })
                                .collect(),
                        )
                })
                .collect(),
        ),
        Err(code) => OffsetFetchResponse::default().with_error_code(code.code()),
    }
}

fn group_response(
    group_id: kafka_protocol::messages::GroupId,
    fetched: GroupFetch,
) -> OffsetFetchResponseGroup {
    let group = OffsetFetchResponseGroup::default().with_group_id(group_id);
    match fetched {
        Ok(topics) => group.with_topics(
            topics
                .into_iter()
                .map(|(name, partitions)| {
                    OffsetFetchResponseTopics::default()
                        .with_name(name)
                        .with_partitions(
                            partitions
                                .into_iter()
                                .map(|(p, result)| {
                                    let (offset, epoch, metadata, code) = fields(result);
                                    OffsetFetchResponsePartitions::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(offset)
                                        .with_committed_leader_epoch(epoch)
                                        .with_metadata(Some(metadata))
                                        .with_error_code(code)
                                })
                                .collect(),
                        )
                })
                .collect(),
        ),
        Err(code) => group.with_error_code(code.code()),
    }
}

/// The answer that fails `req` with `code` (`OffsetFetchRequest.getErrorResponse`): before
/// v2 every named partition carries it; v2-7 the top-level error; from v8 every group's.
pub fn error_response(
    req: &OffsetFetchRequest,
    version: i16,
    code: ErrorCode,
) -> OffsetFetchResponse {
    if version >= MIN_BATCHED_VERSION {
        let groups = req
            .groups
            .iter()
            .map(|g| group_response(g.group_id.clone(), Err(code)))
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    if version >= 2 {
        return OffsetFetchResponse::default().with_error_code(code.code());
    }
    let topics = req
        .topics
        .iter()
        .flatten()
        .map(|t| {
            let partitions = t
                .partition_indexes
                .iter()
                .map(|&p| (p, Err(code)))
                .collect();
            (t.name.clone(), partitions)
        })
        .collect();
    single_group_response(version, Ok(topics))
}

/// The topic-partitions the request names, for interceptors.
pub fn partitions(req: &OffsetFetchRequest, version: i16) -> TopicPartitions {
    let mut out = TopicPartitions::new();
    let mut add = |name: &str, partitions: &[i32]| {
        let name: Arc<str> = Arc::from(name);
        out.extend(partitions.iter().map(|&p| (name.clone(), p)));
    };
    if version >= MIN_BATCHED_VERSION {
        for group in &req.groups {
            for topic in group.topics.iter().flatten() {
                add(topic.name.as_str(), &topic.partition_indexes);
            }
        }
    } else {
        for topic in req.topics.iter().flatten() {
            add(topic.name.as_str(), &topic.partition_indexes);
        }
    }
    out
}
