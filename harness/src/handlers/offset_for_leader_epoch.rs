//! OffsetForLeaderEpoch (key 23), v2-4: the end offset of a leader epoch (KIP-101), which
//! clients use to detect log truncation after a leader change (KIP-320).
//!
//! The answer comes from the partition's epoch history: for the current epoch the log end
//! offset, for an older one the start offset of the next known epoch, and (-1, -1) for an
//! epoch newer than any known.

use std::collections::HashMap;
use std::sync::Arc;

use franzy::proto::ErrorCode;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::RequestContext;
use crate::cluster::ClusterState;

/// `replica_id` of debugging tools, which may ask any replica.
const DEBUGGING_REPLICA_ID: i32 = -2;

/// Serves an OffsetForLeaderEpoch request.
pub fn handle(
    cluster: &ClusterState,
    ctx: &RequestContext,
    req: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let require_leader = ctx.api_version < 3 || req.replica_id.0 != DEBUGGING_REPLICA_ID;
    // Partition entries past the cap are refused, not looked up.
    let max_entries = cluster.config().max_partitions_per_request;
    let mut entries = 0usize;
    let mut counts: HashMap<(&str, i32), usize> = HashMap::new();
    for t in &req.topics {
        for p in &t.partitions {
            *counts.entry((t.topic.0.as_str(), p.partition)).or_default() += 1;
        }
    }
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let name = t.topic.0.as_str();
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let failed = |code: ErrorCode| {
                        EpochEndOffset::default()
                            .with_partition(p.partition)
                            .with_error_code(code.code())
                    };
                    entries += 1;
                    if entries > max_entries
                        || counts.get(&(name, p.partition)).copied().unwrap_or(0) > 1
                    {
                        return failed(ErrorCode::InvalidRequest);
                    }
                    if let Some(code) = ctx.partition_error(name, p.partition) {
                        return failed(code);
                    }
                    match cluster.client_partition(
                        name,
                        p.partition,
                        ctx.broker_id,
                        p.current_leader_epoch,
                        require_leader,
                    ) {
                        Err(code) => failed(code),
                        Ok(partition) => {
                            let log = partition.log();
                            let (epoch, end_offset) = log
                                .leader_epochs()
                                .end_offset_for(p.leader_epoch, log.log_end_offset());
                            EpochEndOffset::default()
                                .with_partition(p.partition)
                                .with_leader_epoch(epoch)
                                .with_end_offset(end_offset)
                        }
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}

/// The answer that fails every partition of `req` with `code`.
pub fn error_response(
    req: &OffsetForLeaderEpochRequest,
    _version: i16,
    code: ErrorCode,
) -> OffsetForLeaderEpochResponse {
    let topics = req
        .topics
        .iter()
        .map(|t| {
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            EpochEndOffset::default()
                                .with_partition(p.partition)
                                .with_error_code(code.code())
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}

/// The (topic, partition) pairs of `req`.
pub fn partitions(req: &OffsetForLeaderEpochRequest) -> Vec<(Arc<str>, i32)> {
    let mut out = Vec::new();
    for t in &req.topics {
        let name: Arc<str> = Arc::from(t.topic.0.as_str());
        out.extend(t.partitions.iter().map(|p| (name.clone(), p.partition)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::test_batches::BatchBuilder;
    use crate::handlers::test_support::{assert_encodes, cluster_with, ctx};
    use franzy::proto::ResponseKind;
    use kafka_protocol::messages::offset_for_leader_epoch_request::{
        OffsetForLeaderPartition, OffsetForLeaderTopic,
    };

    fn ask(c: &ClusterState, broker: i32, epoch: i32, current: i32) -> (i16, i32, i64) {
        let req = OffsetForLeaderEpochRequest::default()
            .with_replica_id((-1).into())
            .with_topics(vec![OffsetForLeaderTopic::default()
                .with_topic(super::super::topic_name("t"))
                .with_partitions(vec![OffsetForLeaderPartition::default()
                    .with_partition(0)
                    .with_leader_epoch(epoch)
                    .with_current_leader_epoch(current)])]);
        let r = handle(c, &ctx(broker, 4), req);
        let p = &r.topics[0].partitions[0];
        let out = (p.error_code, p.leader_epoch, p.end_offset);
        assert_encodes(&ResponseKind::OffsetForLeaderEpoch(r), 4);
        out
    }

    #[test]
    fn epochs_end_where_the_next_began() {
        let mut c = cluster_with(1);
        c.append_records("t", 0, &BatchBuilder::new(0).records(3, 1).build(), 0)
            .expect("append");
        c.set_broker_up(0, false);
        c.append_records("t", 0, &BatchBuilder::new(0).records(2, 1).build(), 0)
            .expect("append");
        assert_eq!(ask(&c, 1, 0, 1), (0, 0, 3));
        assert_eq!(ask(&c, 1, 1, 1), (0, 1, 5));
        assert_eq!(ask(&c, 1, 2, -1), (0, -1, -1));
        assert_eq!(ask(&c, 1, 0, 0).0, ErrorCode::FencedLeaderEpoch.code());
        assert_eq!(ask(&c, 1, 0, 2).0, ErrorCode::UnknownLeaderEpoch.code());
        assert_eq!(ask(&c, 2, 0, 1).0, ErrorCode::NotLeaderOrFollower.code());
    }
}
