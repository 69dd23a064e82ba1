//! Produce (key 0), v3-13: appends one record batch per partition (KIP-98 framing; KIP-951
//! leader hints in v10+; topic ids in v13, KIP-516).
//!
//! Per partition, in Kafka's order: unknown topic (id) or partition, injected error, the
//! request-level record checks (exactly one magic-v2 batch; no zstd before v7), acks,
//! leadership, `min.insync.replicas` for acks=-1, then the log's own checks and the append.
//! Replication is instant, so acks=1 and acks=-1 answer the same. Produce never creates
//! topics (Kafka only auto-creates on Metadata). acks=0 gets no response at all, even on
//! error (Kafka would also close the connection then; the handler contract cannot say so).

use std::collections::BTreeSet;

use franzy::proto::batch_header::BatchHeader;
use franzy::proto::ErrorCode;
use kafka_protocol::messages::produce_response::{
    LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
use uuid::Uuid;

use super::{text, Reply, RequestContext};
use crate::cluster::{log_validator, ClusterError, ClusterState};

/// Serves a produce request.
pub fn handle(cluster: &mut ClusterState, ctx: &RequestContext, req: ProduceRequest) -> Reply {
    let version = ctx.api_version;
    let mut leaders: BTreeSet<i32> = BTreeSet::new();
    let mut responses = Vec::with_capacity(req.topic_data.len());
    for topic in req.topic_data {
        let name = if version >= 13 {
            cluster
                .topic_by_id(topic.topic_id)
                .map(|t| t.name().to_string())
        } else {
            Some(topic.name.0.as_str().to_string())
        };
        // Kafka keys partitions in a map: a repeated partition is produced once, last wins.
        let count = topic.partition_data.len();
        let mut partition_responses = Vec::with_capacity(count);
        for (i, data) in topic.partition_data.iter().enumerate() {
            let later = topic.partition_data[i + 1..]
                .iter()
                .any(|d| d.index == data.index);
            if later {
                continue;
            }
            let result = match &name {
                None => Err(ClusterError::code(ErrorCode::UnknownTopicId)),
                Some(name) => produce_partition(
                    cluster,
                    ctx,
                    req.acks,
                    name,
                    data.index,
                    data.records.as_deref(),
                ),
            };
            let response = match result {
                Ok(p) => p,
                Err(e) => {
                    let mut p = failed(data.index, &e, version);
                    if version >= 10 && e.code == ErrorCode::NotLeaderOrFollower {
                        if let Some(leader) = name
                            .as_deref()
                            .and_then(|n| cluster.partition(n, data.index))
                            .filter(|p| p.leader() >= 0)
                        {
                            leaders.insert(leader.leader());
                            p.current_leader = LeaderIdAndEpoch::default()
                                .with_leader_id(leader.leader().into())
                                .with_leader_epoch(leader.leader_epoch());
                        }
                    }
                    p
                }
            };
            partition_responses.push(response);
        }
        let mut response =
            TopicProduceResponse::default().with_partition_responses(partition_responses);
        if version >= 13 {
            response.topic_id = topic.topic_id;
        } else {
            response.name = topic.name;
        }
        responses.push(response);
    }
    if req.acks == 0 {
        return Reply::NoResponse;
    }
    let node_endpoints = leaders
        .into_iter()
        .filter_map(|id| cluster.broker(id))
        .map(|b| {
            NodeEndpoint::default()
                .with_node_id(b.id.into())
                .with_host(text(&b.host))
                .with_port(b.port)
        })
        .collect();
    let mut response = ProduceResponse::default().with_responses(responses);
    if version >= 10 {
        response.node_endpoints = node_endpoints;
    }
    Reply::Respond(franzy::proto::ResponseKind::Produce(response))
}

/// The answer that fails every partition of `req` with `code`.
pub fn error_response(req: &ProduceRequest, version: i16, code: ErrorCode) -> ProduceResponse {
    let error = ClusterError::code(code);
    let responses = req
        .topic_data
        .iter()
        .map(|topic| {
            let partitions = topic
                .partition_data
                .iter()
                .map(|p| failed(p.index, &error, version))
                .collect();
            let mut response = TopicProduceResponse::default().with_partition_responses(partitions);
            if version >= 13 {
                response.topic_id = topic.topic_id;
            } else {
                response.name = topic.name.clone();
            }
            response
        })
        .collect();
    ProduceResponse::default().with_responses(responses)
}

/// The (topic, partition) pairs of `req`, topic ids resolved through `cluster`.
pub fn partitions(
    cluster: &ClusterState,
    req: &ProduceRequest,
    version: i16,
) -> Vec<(String, i32)> {
    req.topic_data
        .iter()
        .filter_map(|topic| {
            let name = resolve(cluster, version, &topic.name, topic.topic_id)?;
            Some(
                topic
                    .partition_data
                    .iter()
                    .map(move |p| (name.clone(), p.index)),
            )
        })
        .flatten()
        .collect()
}

fn resolve(cluster: &ClusterState, version: i16, name: &TopicName, id: Uuid) -> Option<String> {
    if version >= 13 {
        cluster.topic_by_id(id).map(|t| t.name().to_string())
    } else {
        Some(name.0.as_str().to_string())
    }
}

fn produce_partition(
    cluster: &mut ClusterState,
    ctx: &RequestContext,
    acks: i16,
    topic: &str,
    partition: i32,
    records: Option<&[u8]>,
) -> Result<PartitionProduceResponse, ClusterError> {
    if cluster.partition(topic, partition).is_none() {
        return Err(ClusterError::code(ErrorCode::UnknownTopicOrPartition));
    }
    if let Some(code) = ctx.partition_errors.get(&(topic.to_string(), partition)) {
        return Err(ClusterError::code(*code));
    }
    let batch = log_validator::single_batch(records.unwrap_or_default())?;
    if ctx.api_version < 7 {
        if let Ok(header) = BatchHeader::parse(batch) {
            if header.attributes.compression_id() == 4 {
                return Err(ClusterError::new(
                    ErrorCode::UnsupportedCompressionType,
                    "Produce requests with version below 7 are not allowed to use ZStandard compression",
                ));
            }
        }
    }
    if !matches!(acks, -1..=1) {
        return Err(ClusterError::code(ErrorCode::InvalidRequiredAcks));
    }
    let p = cluster.client_partition(topic, partition, ctx.broker_id, -1, true)?;
    if acks == -1 {
        let min_isr = cluster
            .topic(topic)
            .and_then(|t| t.config("min.insync.replicas"))
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(1);
        if p.isr().len() < min_isr {
            return Err(ClusterError::new(
                ErrorCode::NotEnoughReplicas,
                format!(
                    "The size of the current ISR {} is insufficient to satisfy the min.isr requirement of {min_isr} for partition {topic}-{partition}",
                    p.isr().len()
                ),
            ));
        }
    }
    let info = cluster.append_records(topic, partition, batch, ctx.now_ms)?;
    Ok(PartitionProduceResponse::default()
        .with_index(partition)
        .with_base_offset(info.base_offset)
        .with_log_append_time_ms(info.log_append_time_ms)
        .with_log_start_offset(info.log_start_offset))
}

fn failed(index: i32, error: &ClusterError, version: i16) -> PartitionProduceResponse {
    let mut p = PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(error.code.code())
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1);
    if version >= 8 {
        p.error_message = error.message.as_deref().map(text);
        if let Some(index) = error.record_index {
            p.record_errors = vec![
                kafka_protocol::messages::produce_response::BatchIndexAndErrorMessage::default()
                    .with_batch_index(index)
                    .with_batch_index_error_message(error.message.as_deref().map(text)),
            ];
        }
    }
    p
}
