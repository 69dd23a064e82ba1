//! ListOffsets (key 2), v1-10: offsets by timestamp (KIP-79), with leader epochs (KIP-320),
//! isolation level (KIP-98) and the special timestamps -1 latest, -2 earliest, -3 max
//! timestamp (KIP-734), -4 earliest local (KIP-405), -5 latest tiered (KIP-1005).
//!
//! Without tiered storage the earliest local offset is the log start offset, and there is no
//! tiered offset (-1). Any other timestamp finds the first record at or after it.

use std::collections::HashMap;
use std::sync::Arc;

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
    // Partition entries past the cap are refused, not looked up.
    let max_entries = cluster.config().max_partitions_per_request;
    let mut entries = 0usize;
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
                    entries += 1;
                    if entries > max_entries
                        || counts.get(&(name, p.partition_index)).copied().unwrap_or(0) > 1
                    {
                        return failed(p.partition_index, ErrorCode::InvalidRequest);
                    }
                    if let Some(code) = ctx.partition_error(name, p.partition_index) {
                        return failed(p.partition_index, code);
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
pub fn partitions(req: &ListOffsetsRequest) -> Vec<(Arc<str>, i32)> {
    let mut out = Vec::new();
    for t in &req.topics {
        let name: Arc<str> = Arc::from(t.name.0.as_str());
        out.extend(
            t.partitions
                .iter()
                .map(|p| (name.clone(), p.partition_index)),
        );
    }
    out
}

fn failed(partition: i32, code: ErrorCode) -> ListOffsetsPartitionResponse {
    ListOffsetsPartitionResponse::default()
        .with_partition_index(partition)
        .with_error_code(code.code())
        .with_timestamp(-1)
        .with_offset(-1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::test_batches::BatchBuilder;
    use crate::handlers::test_support::{assert_encodes, cluster_with, ctx};
    use franzy::proto::ResponseKind;
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};

    fn req(parts: &[(i32, i64)]) -> ListOffsetsRequest {
        let partitions = parts
            .iter()
            .map(|&(p, t)| {
                ListOffsetsPartition::default()
                    .with_partition_index(p)
                    .with_timestamp(t)
            })
            .collect();
        ListOffsetsRequest::default()
            .with_replica_id((-1).into())
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(super::super::topic_name("t"))
                .with_partitions(partitions)])
    }

    fn answers(
        c: &ClusterState,
        broker: i32,
        version: i16,
        r: ListOffsetsRequest,
    ) -> Vec<(i16, i64, i64, i32)> {
        let response = handle(c, &ctx(broker, version), r);
        let out = response.topics[0]
            .partitions
            .iter()
            .map(|p| (p.error_code, p.offset, p.timestamp, p.leader_epoch))
            .collect();
        assert_encodes(&ResponseKind::ListOffsets(response), version);
        out
    }

    fn seeded() -> ClusterState {
        let mut c = cluster_with(1);
        let a = BatchBuilder::new(0)
            .record_at(100, b"a")
            .record_at(300, b"b")
            .record_at(200, b"c")
            .build();
        c.append_records("t", 0, &a, 1000).expect("append");
        c.set_leader("t", 0, 0).expect("bump epoch");
        let b = BatchBuilder::new(0)
            .record_at(250, b"d")
            .record_at(400, b"e")
            .build();
        c.append_records("t", 0, &b, 1000).expect("append");
        c
    }

    #[test]
    fn earliest_latest_and_by_timestamp() {
        let c = seeded();
        let got = answers(&c, 0, 7, req(&[(0, EARLIEST_TIMESTAMP)]));
        assert_eq!(got, vec![(0, 0, -1, 0)]);
        let got = answers(&c, 0, 7, req(&[(0, LATEST_TIMESTAMP)]));
        assert_eq!(got, vec![(0, 5, -1, 1)]);
        let got = answers(&c, 0, 7, req(&[(0, MAX_TIMESTAMP)]));
        assert_eq!(got, vec![(0, 4, 400, 1)]);
        let got = answers(&c, 0, 7, req(&[(0, 150)]));
        assert_eq!(got, vec![(0, 1, 300, 0)]);
        let got = answers(&c, 0, 7, req(&[(0, 301)]));
        assert_eq!(got, vec![(0, 4, 400, 1)]);
        let got = answers(&c, 0, 7, req(&[(0, 401)]));
        assert_eq!(got, vec![(0, -1, -1, -1)]);
        // Before v4 there is no leader epoch in the answer.
        let got = answers(&c, 0, 1, req(&[(0, 150)]));
        assert_eq!(got, vec![(0, 1, 300, -1)]);
    }

    #[test]
    fn errors_per_partition() {
        let c = seeded();
        let got = answers(&c, 1, 7, req(&[(0, EARLIEST_TIMESTAMP)]));
        assert_eq!(got[0].0, ErrorCode::NotLeaderOrFollower.code());
        let got = answers(
            &c,
            1,
            7,
            req(&[(0, EARLIEST_TIMESTAMP)]).with_replica_id((-2).into()),
        );
        assert_eq!(got[0].0, 0, "debugging tools may ask a follower");
        let got = answers(&c, 0, 7, req(&[(3, EARLIEST_TIMESTAMP)]));
        assert_eq!(got[0].0, ErrorCode::UnknownTopicOrPartition.code());
        let got = answers(&c, 0, 7, req(&[(0, -1), (0, -2)]));
        assert_eq!(
            got.iter().map(|g| g.0).collect::<Vec<_>>(),
            vec![ErrorCode::InvalidRequest.code(); 2]
        );
        let mut fenced = req(&[(0, -1)]);
        fenced.topics[0].partitions[0].current_leader_epoch = 0;
        assert_eq!(
            answers(&c, 0, 7, fenced)[0].0,
            ErrorCode::FencedLeaderEpoch.code()
        );
        let r = error_response(&req(&[(0, -1)]), 7, ErrorCode::NotController);
        assert_eq!(
            r.topics[0].partitions[0].error_code,
            ErrorCode::NotController.code()
        );
    }
}
