//! ListOffsets (key 2), v1-10: offsets by timestamp (KIP-79), with leader epochs (KIP-320),
//! isolation level (KIP-98) and the special timestamps -1 latest, -2 earliest, -3 max
//! timestamp (KIP-734), -4 earliest local (KIP-405), -5 latest tiered (KIP-1005).
//!
//! Without tiered storage the earliest local offset is the log start offset, and there is no
//! tiered offset (-1). Any other timestamp finds the first record at or after it.

use std::collections::HashMap;

use franzy::proto::ErrorCode;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::RequestContext;
use crate::cluster::{ClusterState, TimestampOffset};

/// Latest offset (the high watermark, or the last stable offset for read_committed).
pub const LATEST_TIMESTAMP: i64 = -1;
/// Log start offset.
pub const EARLIEST_TIMESTAMP: i64 = -2;
/// The record with the largest timestamp (KIP-734).
pub const MAX_TIMESTAMP: i64 = -3;
/// The first offset in local storage (KIP-405).
pub const EARLIEST_LOCAL_TIMESTAMP: i64 = -4;
/// The last offset in tiered storage (KIP-1005).
pub const LATEST_TIERED_TIMESTAMP: i64 = -5;
/// The first offset not yet in tiered storage (KIP-1023).
pub const EARLIEST_PENDING_UPLOAD_TIMESTAMP: i64 = -6;
/// `replica_id` of debugging tools, which may ask any replica.
const DEBUGGING_REPLICA_ID: i32 = -2;

/// Serves a ListOffsets request.
pub fn handle(
    cluster: &ClusterState,
    ctx: &RequestContext,
    req: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let version = ctx.api_version;
    let mut counts: HashMap<(&str, i32), usize> = HashMap::new();
    for topic in &req.topics {
        for p in &topic.partitions {
            *counts
                .entry((topic.name.0.as_str(), p.partition_index))
                .or_default() += 1;
        }
    }
    let require_leader = req.replica_id.0 != DEBUGGING_REPLICA_ID;
    let read_committed = version >= 2 && req.isolation_level == 1;
    let topics = req
        .topics
        .iter()
        .map(|topic| {
            let name = topic.name.0.as_str();
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    if counts.get(&(name, p.partition_index)).copied().unwrap_or(0) > 1 {
                        return failed(p.partition_index, ErrorCode::InvalidRequest);
                    }
                    if let Some(code) = ctx
                        .partition_errors
                        .get(&(name.to_string(), p.partition_index))
                    {
                        return failed(p.partition_index, *code);
                    }
                    let epoch = if version >= 4 {
                        p.current_leader_epoch
                    } else {
                        -1
                    };
                    let partition = match cluster.client_partition(
                        name,
                        p.partition_index,
                        ctx.broker_id,
                        epoch,
                        require_leader,
                    ) {
                        Ok(partition) => partition,
                        Err(code) => return failed(p.partition_index, code),
                    };
                    let log = partition.log();
                    let latest = if read_committed {
                        log.last_stable_offset()
                    } else {
                        log.high_watermark()
                    };
                    let no_time = |offset: i64, epoch: Option<i32>| TimestampOffset {
                        timestamp: -1,
                        offset,
                        leader_epoch: epoch.unwrap_or(-1),
                    };
                    let found = match p.timestamp {
                        LATEST_TIMESTAMP => Some(no_time(latest, Some(partition.leader_epoch()))),
                        EARLIEST_TIMESTAMP | EARLIEST_LOCAL_TIMESTAMP => {
                            let start = log.log_start_offset();
                            Some(no_time(start, log.leader_epochs().epoch_for_offset(start)))
                        }
                        LATEST_TIERED_TIMESTAMP | EARLIEST_PENDING_UPLOAD_TIMESTAMP => {
                            Some(no_time(-1, None))
                        }
                        MAX_TIMESTAMP => log.max_timestamp_offset().filter(|f| f.offset < latest),
                        target => log
                            .offset_for_timestamp(target)
                            .filter(|f| f.offset < latest),
                    };
                    let found = found.unwrap_or(TimestampOffset {
                        timestamp: -1,
                        offset: -1,
                        leader_epoch: -1,
                    });
                    let mut response = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_timestamp(found.timestamp)
                        .with_offset(found.offset);
                    if version >= 4 {
                        response.leader_epoch = found.leader_epoch;
                    }
                    response
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

/// The answer that fails every partition of `req` with `code`.
pub fn error_response(
    req: &ListOffsetsRequest,
    _version: i16,
    code: ErrorCode,
) -> ListOffsetsResponse {
    let topics = req
        .topics
        .iter()
        .map(|topic| {
            ListOffsetsTopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(
                    topic
                        .partitions
                        .iter()
                        .map(|p| failed(p.partition_index, code))
                        .collect(),
                )
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

/// The (topic, partition) pairs of `req`.
pub fn partitions(req: &ListOffsetsRequest) -> Vec<(String, i32)> {
    req.topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.name.0.as_str().to_string(), p.partition_index))
        })
        .collect()
}

fn failed(partition: i32, code: ErrorCode) -> ListOffsetsPartitionResponse {
    ListOffsetsPartitionResponse::default()
        .with_partition_index(partition)
        .with_error_code(code.code())
        .with_timestamp(-1)
        .with_offset(-1)
}
