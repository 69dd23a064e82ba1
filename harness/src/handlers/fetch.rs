//! Fetch (key 1), v4-18: reads stored batches (KIP-74 byte limits, KIP-227 sessions,
//! KIP-320 leader epochs, KIP-392 follower fetching, KIP-516 topic ids in v13+, KIP-951
//! leader hints in v16+).
//!
//! Fetch sessions: this broker behaves like a Kafka broker whose session cache has no room
//! (`max.incremental.fetch.session.cache.slots=0`). Every full fetch (epoch -1 or 0) is
//! answered in full with session id 0, which tells the client that no session was created;
//! an incremental fetch (any other epoch) gets FETCH_SESSION_ID_NOT_FOUND, after which
//! clients fall back to full fetches.
//!
//! Reads follow Kafka's `ReplicaManager.readFromLog`: partitions in request order, each
//! limited by `partition_max_bytes` and what is left of `max_bytes`; bytes are cut at the
//! limit, possibly inside a batch, except that until some partition returned data the first
//! batch is returned whole whatever its size. Consumers (v11+) may fetch from followers,
//! which share the leader's log here. `min_bytes` not yet reached parks the request.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use franzy::proto::ErrorCode;
use kafka_protocol::messages::fetch_response::{
    EpochEndOffset, FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ResponseKind};

use super::{text, Reply, RequestContext};
use crate::cluster::ClusterState;

/// Kafka's broker-side cap on a fetch response (`fetch.max.bytes`, 55 MiB).
pub const FETCH_MAX_BYTES: usize = 57_671_680;

/// Serves a fetch request, or parks it until `min_bytes` can be met.
pub fn handle(cluster: &ClusterState, ctx: &RequestContext, req: FetchRequest) -> Reply {
    let version = ctx.api_version;
    if version >= 7 && !matches!(req.session_epoch, -1 | 0) {
        return Reply::Respond(ResponseKind::Fetch(
            FetchResponse::default().with_error_code(ErrorCode::FetchSessionIdNotFound.code()),
        ));
    }
    let replica_id = if version >= 15 {
        req.replica_state.replica_id.0
    } else {
        req.replica_id.0
    };
    let from_consumer = replica_id < 0;
    let only_leader = !from_consumer || version < 11;
    let read_committed = req.isolation_level == 1;
    let mut remaining = usize::try_from(req.max_bytes)
        .unwrap_or(0)
        .min(FETCH_MAX_BYTES);
    let mut min_one_batch = true;
    let mut total_bytes: usize = 0;
    // Errors and diverging epochs answer at once, as in Kafka's `DelayedFetch`.
    let mut any_error = false;
    let mut any_partition = false;
    let mut leaders = BTreeSet::new();
    let mut responses = Vec::with_capacity(req.topics.len());
    for topic in &req.topics {
        let name = if version >= 13 {
            cluster
                .topic_by_id(topic.topic_id)
                .map(|t| t.name().to_string())
        } else {
            Some(topic.topic.0.as_str().to_string())
        };
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for fp in &topic.partitions {
            any_partition = true;
            let Some(name) = name.as_deref() else {
                any_error = true;
                partitions.push(failed(fp.partition, ErrorCode::UnknownTopicId));
                continue;
            };
            if let Some(code) = ctx.partition_errors.get(&(name.to_string(), fp.partition)) {
                any_error = true;
                partitions.push(failed(fp.partition, *code));
                continue;
            }
            let current_epoch = if version >= 9 {
                fp.current_leader_epoch
            } else {
                -1
            };
            let p = match cluster.client_partition(
                name,
                fp.partition,
                ctx.broker_id,
                current_epoch,
                only_leader,
            ) {
                Ok(p) => p,
                Err(code) => {
                    any_error = true;
                    let mut data = failed(fp.partition, code);
                    if version >= 16
                        && matches!(
                            code,
                            ErrorCode::NotLeaderOrFollower | ErrorCode::FencedLeaderEpoch
                        )
                    {
                        if let Some(p) = cluster.partition(name, fp.partition) {
                            if p.leader() >= 0 {
                                leaders.insert(p.leader());
                                data.current_leader = LeaderIdAndEpoch::default()
                                    .with_leader_id(p.leader().into())
                                    .with_leader_epoch(p.leader_epoch());
                            }
                        }
                    }
                    partitions.push(data);
                    continue;
                }
            };
            let log = p.log();
            let mut data = PartitionData::default()
                .with_partition_index(fp.partition)
                .with_high_watermark(log.high_watermark())
                .with_last_stable_offset(log.last_stable_offset())
                .with_log_start_offset(log.log_start_offset())
                .with_aborted_transactions(read_committed.then(Vec::new))
                .with_records(Some(Bytes::new()));
            if version >= 12 && fp.last_fetched_epoch >= 0 {
                let (epoch, end_offset) = log
                    .leader_epochs()
                    .end_offset_for(fp.last_fetched_epoch, log.log_end_offset());
                if epoch < fp.last_fetched_epoch || end_offset < fp.fetch_offset {
                    // KIP-595/KIP-320: tell the fetcher where its history diverged.
                    data.diverging_epoch = EpochEndOffset::default()
                        .with_epoch(epoch)
                        .with_end_offset(end_offset);
                    any_error = true;
                    partitions.push(data);
                    continue;
                }
            }
            let limit = usize::try_from(fp.partition_max_bytes)
                .unwrap_or(0)
                .min(remaining);
            match log.read(fp.fetch_offset, limit, min_one_batch) {
                Ok(records) => {
                    if !records.is_empty() {
                        min_one_batch = false;
                    }
                    remaining = remaining.saturating_sub(records.len());
                    total_bytes = total_bytes.saturating_add(records.len());
                    data.records = Some(records);
                    partitions.push(data);
                }
                Err(code) => {
                    any_error = true;
                    partitions.push(failed(fp.partition, code));
                }
            }
        }
        let mut response = FetchableTopicResponse::default().with_partitions(partitions);
        if version >= 13 {
            response.topic_id = topic.topic_id;
        } else {
            response.topic = topic.topic.clone();
        }
        responses.push(response);
    }
    let min_bytes = usize::try_from(req.min_bytes).unwrap_or(0);
    if !ctx.deadline_reached
        && req.max_wait_ms > 0
        && any_partition
        && !any_error
        && total_bytes < min_bytes
    {
        return Reply::Park {
            max_wait: Duration::from_millis(u64::try_from(req.max_wait_ms).unwrap_or(0)),
        };
    }
    let mut response = FetchResponse::default().with_responses(responses);
    if version >= 16 {
        response.node_endpoints = leaders
            .into_iter()
            .filter_map(|id| cluster.broker(id))
            .map(|b| {
                NodeEndpoint::default()
                    .with_node_id(b.id.into())
                    .with_host(text(&b.host))
                    .with_port(b.port)
            })
            .collect();
    }
    Reply::Respond(ResponseKind::Fetch(response))
}

/// The answer that fails the whole fetch with `code`: the top-level error (v7+) and, before
/// v13, the same error on every partition, as Kafka's `FetchRequest.getErrorResponse`.
pub fn error_response(req: &FetchRequest, version: i16, code: ErrorCode) -> FetchResponse {
    let responses = if version < 13 {
        req.topics
            .iter()
            .map(|topic| {
                FetchableTopicResponse::default()
                    .with_topic(topic.topic.clone())
                    .with_partitions(
                        topic
                            .partitions
                            .iter()
                            .map(|p| failed(p.partition, code))
                            .collect(),
                    )
            })
            .collect()
    } else {
        Vec::new()
    };
    FetchResponse::default()
        .with_error_code(code.code())
        .with_responses(responses)
}

/// The (topic, partition) pairs of `req`, topic ids (v13+) resolved through `cluster`.
pub fn partitions(cluster: &ClusterState, req: &FetchRequest, version: i16) -> Vec<(String, i32)> {
    let mut out = Vec::new();
    for topic in &req.topics {
        let name = if version >= 13 {
            match cluster.topic_by_id(topic.topic_id) {
                Some(t) => t.name().to_string(),
                None => continue,
            }
        } else {
            topic.topic.0.as_str().to_string()
        };
        out.extend(topic.partitions.iter().map(|p| (name.clone(), p.partition)));
    }
    out
}

fn failed(partition: i32, code: ErrorCode) -> PartitionData {
    PartitionData::default()
        .with_partition_index(partition)
        .with_error_code(code.code())
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_aborted_transactions(None)
        .with_records(Some(Bytes::new()))
}
