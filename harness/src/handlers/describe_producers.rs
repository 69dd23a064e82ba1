//! DescribeProducers (key 61), v0: the active producers of partitions this broker leads
//! (KIP-664), as Kafka's `ReplicaManager.activeProducerState` answers: per producer id its
//! epoch, last sequence, last timestamp, the coordinator epoch of its last marker and the
//! first offset of its open transaction (-1 when none).

use std::collections::HashMap;
use std::sync::Arc;

use franzy::proto::ErrorCode;
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};

use super::{text, RequestContext};
use crate::cluster::ClusterState;

/// Serves a DescribeProducers request.
pub fn handle(
    cluster: &ClusterState,
    ctx: &RequestContext,
    req: DescribeProducersRequest,
) -> DescribeProducersResponse {
    let mut counts: HashMap<(&str, i32), usize> = HashMap::new();
    for topic in &req.topics {
        for p in &topic.partition_indexes {
            *counts.entry((topic.name.0.as_str(), *p)).or_default() += 1;
        }
    }
    let max_entries = cluster.config().max_partitions_per_request;
    let mut entries = 0usize;
    let topics = req
        .topics
        .iter()
        .map(|topic| {
            let name = topic.name.0.as_str();
            let partitions = topic
                .partition_indexes
                .iter()
                .map(|&index| {
                    entries += 1;
                    let response = PartitionResponse::default().with_partition_index(index);
                    let checked = if entries > max_entries
                        || counts.get(&(name, index)).copied().unwrap_or(0) > 1
                    {
                        Err(ErrorCode::InvalidRequest)
                    } else if let Some(code) = ctx.partition_error(name, index) {
                        Err(code)
                    } else {
                        cluster
                            .client_partition(name, index, ctx.broker_id, -1, true)
                            .map(|_| ())
                    };
                    if let Err(code) = checked {
                        return response
                            .with_error_code(code.code())
                            .with_error_message(Some(text(code_message(code))));
                    }
                    let producers = cluster
                        .producer_state(name, index)
                        .map(|states| {
                            states
                                .producers()
                                .map(|(id, entry)| {
                                    let last = entry.batches().last();
                                    ProducerState::default()
                                        .with_producer_id(ProducerId(id))
                                        .with_producer_epoch(i32::from(entry.epoch()))
                                        .with_last_sequence(entry.last_sequence())
                                        .with_last_timestamp(last.map_or(-1, |b| b.timestamp))
                                        .with_coordinator_epoch(entry.coordinator_epoch())
                                        .with_current_txn_start_offset(
                                            entry.current_txn_first_offset().unwrap_or(-1),
                                        )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    response
                        .with_error_message(None)
                        .with_active_producers(producers)
                })
                .collect();
            TopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}

fn code_message(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::NotLeaderOrFollower => "This server is not the leader for that topic-partition.",
        ErrorCode::UnknownTopicOrPartition => "This server does not host this topic-partition.",
        ErrorCode::InvalidRequest => "Duplicate partition or too many partitions in the request.",
        _ => "The partition could not be described.",
    }
}

/// The answer that fails every partition of `req` with `code`.
pub fn error_response(
    req: &DescribeProducersRequest,
    _version: i16,
    code: ErrorCode,
) -> DescribeProducersResponse {
    let topics = req
        .topics
        .iter()
        .map(|topic| {
            TopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(
                    topic
                        .partition_indexes
                        .iter()
                        .map(|&index| {
                            PartitionResponse::default()
                                .with_partition_index(index)
                                .with_error_code(code.code())
                                .with_error_message(None)
                        })
                        .collect(),
                )
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}

/// The partitions `req` names.
pub fn partitions(req: &DescribeProducersRequest) -> super::TopicPartitions {
    req.topics
        .iter()
        .flat_map(|t| {
            let name: Arc<str> = Arc::from(t.name.0.as_str());
            t.partition_indexes.iter().map(move |p| (name.clone(), *p))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::test_batches::BatchBuilder;
    use crate::handlers::test_support::{cluster_with, ctx, NOW};
    use crate::handlers::topic_name;
    use kafka_protocol::messages::describe_producers_request::TopicRequest;

    #[test]
    fn the_leader_lists_each_producer_with_its_last_sequence() {
        let mut c = cluster_with(1);
        let batch = BatchBuilder::new(NOW)
            .records(3, 10)
            .producer(42, 2, 0)
            .build();
        c.append_records("t", 0, &batch, NOW).expect("appended");
        let leader = c.partition("t", 0).expect("exists").leader();
        let req = DescribeProducersRequest::default().with_topics(vec![TopicRequest::default()
            .with_name(topic_name("t"))
            .with_partition_indexes(vec![0, 5])]);
        let r = handle(&c, &ctx(leader, 0), req.clone());
        let p = &r.topics[0].partitions;
        assert_eq!(p[0].error_code, 0);
        let producers: Vec<(i64, i32, i32, i64)> = p[0]
            .active_producers
            .iter()
            .map(|s| {
                (
                    s.producer_id.0,
                    s.producer_epoch,
                    s.last_sequence,
                    s.current_txn_start_offset,
                )
            })
            .collect();
        assert_eq!(producers, vec![(42, 2, 2, -1)]);
        assert_eq!(p[1].error_code, ErrorCode::UnknownTopicOrPartition.code());
        let follower = (leader + 1) % 3;
        let r = handle(&c, &ctx(follower, 0), req);
        assert_eq!(
            r.topics[0].partitions[0].error_code,
            ErrorCode::NotLeaderOrFollower.code()
        );
    }
}
