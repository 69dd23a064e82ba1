//! DeleteRecords (key 21), v0-2: moves partitions' log start offsets forward (KIP-107), on
//! their leader, as Kafka's `ReplicaManager.deleteRecords` does.
//!
//! An offset of -1 means the high watermark. Any other offset below zero or past the high
//! watermark (`i64::MAX` included) is OFFSET_OUT_OF_RANGE; a partition this broker does not
//! lead is NOT_LEADER_OR_FOLLOWER; a compact-only topic is POLICY_VIOLATION. Kafka answers
//! once every replica's low watermark passed the offset; here replicas are the one log, so
//! the answer is immediate and `timeout_ms` is not waited on.

use std::collections::HashMap;
use std::sync::Arc;

use franzy::proto::ErrorCode;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::RequestContext;
use crate::cluster::ClusterState;

/// Serves a DeleteRecords request.
pub fn handle(
    cluster: &mut ClusterState,
    ctx: &RequestContext,
    req: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let mut counts: HashMap<(&str, i32), usize> = HashMap::new();
    for topic in &req.topics {
        for p in &topic.partitions {
            *counts
                .entry((topic.name.0.as_str(), p.partition_index))
                .or_default() += 1;
        }
    }
    // Partition entries past the cap are refused, not looked up.
    let max_entries = cluster.config().max_partitions_per_request;
    let mut entries = 0usize;
    let topics = req
        .topics
        .iter()
        .map(|topic| {
            let name = topic.name.0.as_str();
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    entries += 1;
                    let index = p.partition_index;
                    let outcome = if entries > max_entries
                        || counts.get(&(name, index)).copied().unwrap_or(0) > 1
                    {
                        Err(ErrorCode::InvalidRequest)
                    } else if let Some(code) = ctx.partition_error(name, index) {
                        Err(code)
                    } else {
                        cluster
                            .client_partition(name, index, ctx.broker_id, -1, true)
                            .map(|_| ())
                            .and_then(|()| cluster.delete_records(name, index, p.offset))
                    };
                    let result =
                        DeleteRecordsPartitionResult::default().with_partition_index(index);
                    match outcome {
                        Ok(low_watermark) => result.with_low_watermark(low_watermark),
                        Err(code) => result.with_low_watermark(-1).with_error_code(code.code()),
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}

/// The answer that fails every partition of `req` with `code`.
pub fn error_response(
    req: &DeleteRecordsRequest,
    _version: i16,
    code: ErrorCode,
) -> DeleteRecordsResponse {
    let topics = req
        .topics
        .iter()
        .map(|topic| {
            DeleteRecordsTopicResult::default()
                .with_name(topic.name.clone())
                .with_partitions(
                    topic
                        .partitions
                        .iter()
                        .map(|p| {
                            DeleteRecordsPartitionResult::default()
                                .with_partition_index(p.partition_index)
                                .with_low_watermark(-1)
                                .with_error_code(code.code())
                        })
                        .collect(),
                )
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}

/// The partitions `req` names.
pub fn partitions(req: &DeleteRecordsRequest) -> super::TopicPartitions {
    req.topics
        .iter()
        .flat_map(|t| {
            let name: Arc<str> = Arc::from(t.name.0.as_str());
            t.partitions
                .iter()
                .map(move |p| (name.clone(), p.partition_index))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::test_support::{cluster_with, ctx, NOW};
    use crate::handlers::topic_name;
    use kafka_protocol::messages::delete_records_request::{
        DeleteRecordsPartition, DeleteRecordsTopic,
    };

    fn request(offsets: &[(i32, i64)]) -> DeleteRecordsRequest {
        DeleteRecordsRequest::default().with_topics(vec![DeleteRecordsTopic::default()
            .with_name(topic_name("t"))
            .with_partitions(
                offsets
                    .iter()
                    .map(|(p, o)| {
                        DeleteRecordsPartition::default()
                            .with_partition_index(*p)
                            .with_offset(*o)
                    })
                    .collect(),
            )])
    }

    fn results(r: &DeleteRecordsResponse) -> Vec<(i32, i64, i16)> {
        r.topics[0]
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.low_watermark, p.error_code))
            .collect()
    }

    #[test]
    fn the_leader_moves_the_start_and_hostile_offsets_are_out_of_range() {
        let mut c = cluster_with(1);
        let batch = crate::cluster::test_batches::BatchBuilder::new(NOW)
            .records(5, 10)
            .build();
        c.append_records("t", 0, &batch, NOW).expect("appended");
        let leader = c.partition("t", 0).expect("exists").leader();
        let r = handle(&mut c, &ctx(leader, 2), request(&[(0, 3)]));
        assert_eq!(results(&r), vec![(0, 3, 0)]);
        let out_of_range = ErrorCode::OffsetOutOfRange.code();
        let r = handle(&mut c, &ctx(leader, 2), request(&[(0, i64::MAX)]));
        assert_eq!(results(&r), vec![(0, -1, out_of_range)]);
        let r = handle(&mut c, &ctx(leader, 2), request(&[(0, -7)]));
        assert_eq!(results(&r), vec![(0, -1, out_of_range)]);
        let r = handle(&mut c, &ctx(leader, 2), request(&[(0, -1)]));
        assert_eq!(results(&r), vec![(0, 5, 0)]);
        let r = handle(&mut c, &ctx(leader, 2), request(&[(9, 1)]));
        assert_eq!(
            results(&r),
            vec![(9, -1, ErrorCode::UnknownTopicOrPartition.code())]
        );
        let r = handle(&mut c, &ctx(leader, 2), request(&[(0, 1), (0, 2)]));
        let invalid = ErrorCode::InvalidRequest.code();
        assert_eq!(results(&r), vec![(0, -1, invalid), (0, -1, invalid)]);
    }
}
