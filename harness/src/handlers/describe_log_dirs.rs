//! DescribeLogDirs (key 35), v1-4 (KIP-113, KIP-827): each broker has one log directory,
//! `/var/lib/franzy-harness/broker-<id>`, holding the replicas it hosts, each with the bytes
//! of its stored batches and no lag (every replica is the one log). Volume sizes are -1
//! (`DescribeLogDirsResponse.UNKNOWN_VOLUME_BYTES`): there is no disk.

use std::collections::HashSet;

use franzy::proto::ErrorCode;
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse};

use super::{text, topic_name, RequestContext};
use crate::cluster::{ClusterState, Topic};

/// Serves a DescribeLogDirs request.
pub fn handle(
    cluster: &ClusterState,
    ctx: &RequestContext,
    req: DescribeLogDirsRequest,
) -> DescribeLogDirsResponse {
    let broker = ctx.broker_id;
    let hosted = |topic: &Topic, wanted: Option<&HashSet<i32>>| -> Option<DescribeLogDirsTopic> {
        let partitions: Vec<DescribeLogDirsPartition> = topic
            .partitions()
            .iter()
            .filter(|p| p.replicas().contains(&broker))
            .filter(|p| wanted.is_none_or(|w| w.contains(&p.index())))
            .map(|p| {
                DescribeLogDirsPartition::default()
                    .with_partition_index(p.index())
                    .with_partition_size(p.log().size_bytes())
            })
            .collect();
        (!partitions.is_empty()).then(|| {
            DescribeLogDirsTopic::default()
                .with_name(topic_name(topic.name()))
                .with_partitions(partitions)
        })
    };
    let max_entries = cluster.config().max_partitions_per_request;
    let topics: Vec<DescribeLogDirsTopic> = match &req.topics {
        None => cluster.topics().filter_map(|t| hosted(t, None)).collect(),
        Some(named) => named
            .iter()
            .take(max_entries)
            .filter_map(|t| {
                let wanted: HashSet<i32> = t.partitions.iter().take(max_entries).copied().collect();
                cluster
                    .topic(t.topic.0.as_str())
                    .and_then(|topic| hosted(topic, Some(&wanted)))
            })
            .collect(),
    };
    let dir = DescribeLogDirsResult::default()
        .with_log_dir(text(&format!("/var/lib/franzy-harness/broker-{broker}")))
        .with_topics(topics)
        .with_total_bytes(-1)
        .with_usable_bytes(-1);
    DescribeLogDirsResponse::default().with_results(vec![dir])
}

/// The answer that fails `req` with `code`.
pub fn error_response(
    _req: &DescribeLogDirsRequest,
    _version: i16,
    code: ErrorCode,
) -> DescribeLogDirsResponse {
    DescribeLogDirsResponse::default().with_error_code(code.code())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::test_batches::BatchBuilder;
    use crate::handlers::test_support::{cluster_with, ctx, NOW};

    #[test]
    fn a_broker_lists_the_replicas_it_hosts_with_their_sizes() {
        let mut c = cluster_with(3);
        let batch = BatchBuilder::new(NOW).records(2, 10).build();
        c.append_records("t", 0, &batch, NOW).expect("appended");
        let leader = c.partition("t", 0).expect("exists").leader();
        let r = handle(
            &c,
            &ctx(leader, 4),
            DescribeLogDirsRequest::default().with_topics(None),
        );
        let topic = r.results[0]
            .topics
            .iter()
            .find(|t| t.name.0.as_str() == "t")
            .expect("t is hosted");
        let p0 = topic
            .partitions
            .iter()
            .find(|p| p.partition_index == 0)
            .expect("partition 0 is hosted");
        assert_eq!(p0.partition_size, batch.len() as i64);
    }
}
