//! ElectLeaders (key 43), v0-2 (KIP-183, KIP-460): moves leadership, as Kafka's controller
//! does (`ReplicationControlManager.electLeaders`).
//!
//! A preferred election (type 0, the only one of v0) makes each partition's first replica
//! its leader when it is alive and in sync: ELECTION_NOT_NEEDED if it already leads,
//! PREFERRED_LEADER_NOT_AVAILABLE if it cannot. An unclean election (type 1) gives a
//! leaderless partition its first live replica: ELECTION_NOT_NEEDED if it has a leader,
//! ELIGIBLE_LEADERS_NOT_AVAILABLE if no replica is up. Without a partition list every
//! partition is considered and only those whose leader moved are answered.

use std::collections::HashSet;

use franzy::proto::ErrorCode;
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse};

use super::{text, topic_name, RequestContext};
use crate::cluster::ClusterState;

/// `ElectionType.PREFERRED`.
pub const PREFERRED: i8 = 0;
/// `ElectionType.UNCLEAN`.
pub const UNCLEAN: i8 = 1;

/// Serves an ElectLeaders request.
pub fn handle(
    cluster: &mut ClusterState,
    ctx: &RequestContext,
    req: ElectLeadersRequest,
) -> ElectLeadersResponse {
    let election = if ctx.api_version == 0 {
        PREFERRED
    } else {
        req.election_type
    };
    let (targets, all) = match &req.topic_partitions {
        Some(topics) => (
            topics
                .iter()
                .map(|t| (t.topic.0.to_string(), t.partitions.clone()))
                .collect::<Vec<_>>(),
            false,
        ),
        None => (
            cluster
                .topics()
                .map(|t| {
                    (
                        t.name().to_string(),
                        t.partitions().iter().map(|p| p.index()).collect(),
                    )
                })
                .collect(),
            true,
        ),
    };
    let max_entries = cluster.config().max_partitions_per_request;
    let mut entries = 0usize;
    let mut seen: HashSet<(String, i32)> = HashSet::new();
    let mut results = Vec::new();
    for (topic, partitions) in targets {
        let mut answered = Vec::new();
        for index in partitions {
            entries += 1;
            let outcome = if entries > max_entries || !seen.insert((topic.clone(), index)) {
                Err((
                    ErrorCode::InvalidRequest,
                    "Duplicate or too many partitions".to_string(),
                ))
            } else if election == PREFERRED || election == UNCLEAN {
                elect(cluster, &topic, index, election)
            } else {
                Err((
                    ErrorCode::InvalidRequest,
                    format!("Unknown election type {election}"),
                ))
            };
            let result = PartitionResult::default().with_partition_id(index);
            match outcome {
                Ok(()) => answered.push(result.with_error_message(None)),
                Err(_) if all => {}
                Err((code, message)) => answered.push(
                    result
                        .with_error_code(code.code())
                        .with_error_message(Some(text(&message))),
                ),
            }
        }
        if !answered.is_empty() {
            results.push(
                ReplicaElectionResult::default()
                    .with_topic(topic_name(&topic))
                    .with_partition_result(answered),
            );
        }
    }
    ElectLeadersResponse::default().with_replica_election_results(results)
}

fn elect(
    cluster: &mut ClusterState,
    topic: &str,
    index: i32,
    election: i8,
) -> Result<(), (ErrorCode, String)> {
    let Some(partition) = cluster.partition(topic, index) else {
        return Err((
            ErrorCode::UnknownTopicOrPartition,
            "This server does not host this topic-partition.".to_string(),
        ));
    };
    let strategy = if election == PREFERRED {
        "PreferredReplicaPartitionLeaderElectionStrategy"
    } else {
        "UncleanPartitionLeaderElectionStrategy"
    };
    let failed =
        format!("Failed to elect leader for partition {topic}-{index} under strategy {strategy}");
    let target = if election == PREFERRED {
        let preferred = partition.replicas().first().copied();
        if preferred == Some(partition.leader()) {
            return Err((
                ErrorCode::ElectionNotNeeded,
                "Leader election not needed for topic partition.".to_string(),
            ));
        }
        match preferred {
            Some(p) if partition.isr().contains(&p) && cluster.is_broker_up(p) => p,
            _ => return Err((ErrorCode::PreferredLeaderNotAvailable, failed)),
        }
    } else {
        if partition.leader() >= 0 {
            return Err((
                ErrorCode::ElectionNotNeeded,
                "Leader election not needed for topic partition.".to_string(),
            ));
        }
        match partition
            .replicas()
            .iter()
            .copied()
            .find(|r| cluster.is_broker_up(*r))
        {
            Some(r) => r,
            None => return Err((ErrorCode::EligibleLeadersNotAvailable, failed)),
        }
    };
    cluster
        .set_leader(topic, index, target)
        .map_err(|code| (code, failed))
}

/// The answer that fails `req` with `code`: at the top from v1, on every partition named in
/// v0 (which has no top-level error).
pub fn error_response(
    req: &ElectLeadersRequest,
    version: i16,
    code: ErrorCode,
) -> ElectLeadersResponse {
    if version >= 1 {
        return ElectLeadersResponse::default().with_error_code(code.code());
    }
    let results = req
        .topic_partitions
        .iter()
        .flatten()
        .map(|t| {
            ReplicaElectionResult::default()
                .with_topic(t.topic.clone())
                .with_partition_result(
                    t.partitions
                        .iter()
                        .map(|p| {
                            PartitionResult::default()
                                .with_partition_id(*p)
                                .with_error_code(code.code())
                                .with_error_message(None)
                        })
                        .collect(),
                )
        })
        .collect();
    ElectLeadersResponse::default().with_replica_election_results(results)
}

/// The partitions `req` names.
pub fn partitions(req: &ElectLeadersRequest) -> super::TopicPartitions {
    req.topic_partitions
        .iter()
        .flatten()
        .flat_map(|t| {
            let name: std::sync::Arc<str> = std::sync::Arc::from(t.topic.0.as_str());
            t.partitions.iter().map(move |p| (name.clone(), *p))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::test_support::{cluster_with, ctx};
    use kafka_protocol::messages::elect_leaders_request::TopicPartitions;

    #[test]
    fn a_preferred_election_moves_the_leader_back_to_the_first_replica() {
        let mut c = cluster_with(1);
        let replicas = c.partition("t", 0).expect("exists").replicas().to_vec();
        let req = ElectLeadersRequest::default()
            .with_election_type(PREFERRED)
            .with_topic_partitions(Some(vec![TopicPartitions::default()
                .with_topic(topic_name("t"))
                .with_partitions(vec![0, 7])]));
        let codes = |r: &ElectLeadersResponse| -> Vec<i16> {
            r.replica_election_results[0]
                .partition_result
                .iter()
                .map(|p| p.error_code)
                .collect()
        };
        let r = handle(&mut c, &ctx(0, 2), req.clone());
        assert_eq!(
            codes(&r),
            vec![
                ErrorCode::ElectionNotNeeded.code(),
                ErrorCode::UnknownTopicOrPartition.code()
            ]
        );
        if replicas.len() > 1 {
            c.set_leader("t", 0, replicas[1]).expect("moved");
            let r = handle(&mut c, &ctx(0, 2), req);
            assert_eq!(codes(&r)[0], 0);
            assert_eq!(c.partition("t", 0).expect("exists").leader(), replicas[0]);
        }
        // Nothing to elect: an election of everything answers nothing.
        let r = handle(&mut c, &ctx(0, 2), ElectLeadersRequest::default());
        assert!(r.replica_election_results.is_empty());
    }
}
