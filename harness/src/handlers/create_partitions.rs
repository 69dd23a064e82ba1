//! CreatePartitions (key 37), v0-3: grows topics (KIP-195). Partition counts only increase.
//! A request that would add more than
//! [`crate::cluster::ClusterConfig::max_partitions_created_per_request`] partitions fails as
//! a whole with POLICY_VIOLATION, as Kafka's controller refuses an oversized operation.

use std::collections::HashMap;
use std::sync::Arc;

use franzy::proto::ErrorCode;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::{text, RequestContext};
use crate::cluster::{ClusterError, ClusterState};

/// Serves a CreatePartitions request.
pub fn handle(
    cluster: &mut ClusterState,
    _ctx: &RequestContext,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for t in &req.topics {
        *counts.entry(t.name.0.as_str()).or_default() += 1;
    }
    // Kafka's controller refuses an operation of more than 10,000 metadata records (one per
    // new partition) as a whole; so does the harness past its cap.
    let max = cluster.config().max_partitions_created_per_request;
    let wanted = req
        .topics
        .iter()
        .filter(|t| counts.get(t.name.0.as_str()).copied().unwrap_or(0) == 1)
        .filter_map(|t| {
            let current = cluster.topic(t.name.0.as_str())?.partitions().len();
            let total = usize::try_from(t.count).ok()?;
            Some(total.saturating_sub(current) as u64)
        })
        .fold(0u64, u64::saturating_add);
    if wanted > max as u64 {
        tracing::warn!(
            wanted,
            max,
            "create partitions: too many partitions for one request"
        );
        let results = req
            .topics
            .iter()
            .map(|t| {
                CreatePartitionsTopicResult::default()
                    .with_name(t.name.clone())
                    .with_error_code(ErrorCode::PolicyViolation.code())
                    .with_error_message(Some(text(super::create_topics::EXCESSIVELY_LARGE)))
            })
            .collect();
        return CreatePartitionsResponse::default().with_results(results);
    }
    let results = req
        .topics
        .iter()
        .map(|t| {
            let name = t.name.0.as_str();
            let outcome = if counts.get(name).copied().unwrap_or(0) > 1 {
                Err(ClusterError::new(
                    ErrorCode::InvalidRequest,
                    "Duplicate topic in request.",
                ))
            } else {
                let assignments: Option<Vec<Vec<i32>>> = t.assignments.as_ref().map(|a| {
                    a.iter()
                        .map(|x| x.broker_ids.iter().map(|b| b.0).collect())
                        .collect()
                });
                cluster.create_partitions(name, t.count, assignments.as_deref(), req.validate_only)
            };
            let result = CreatePartitionsTopicResult::default().with_name(t.name.clone());
            match outcome {
                Ok(()) => result.with_error_message(None),
                Err(e) => result
                    .with_error_code(e.code.code())
                    .with_error_message(e.message.as_deref().map(text)),
            }
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}

/// The answer that fails every topic of `req` with `code`.
pub fn error_response(
    req: &CreatePartitionsRequest,
    _version: i16,
    code: ErrorCode,
) -> CreatePartitionsResponse {
    let results = req
        .topics
        .iter()
        .map(|t| {
            CreatePartitionsTopicResult::default()
                .with_name(t.name.clone())
                .with_error_code(code.code())
                .with_error_message(None)
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}

/// The topics of `req` (partition -1).
pub fn partitions(req: &CreatePartitionsRequest) -> Vec<(Arc<str>, i32)> {
    req.topics
        .iter()
        .map(|t| (Arc::from(t.name.0.as_str()), -1))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::test_support::{assert_encodes, cluster_with, ctx};
    use crate::handlers::topic_name;
    use franzy::proto::ResponseKind;
    use kafka_protocol::messages::create_partitions_request::{
        CreatePartitionsAssignment, CreatePartitionsTopic,
    };

    fn grow(name: &str, count: i32) -> CreatePartitionsTopic {
        CreatePartitionsTopic::default()
            .with_name(topic_name(name))
            .with_count(count)
            .with_assignments(None)
    }

    #[test]
    fn increases_only() {
        let mut c = cluster_with(2);
        let assigned =
            grow("t", 4).with_assignments(Some(vec![CreatePartitionsAssignment::default()
                .with_broker_ids(vec![0.into(), 1.into(), 2.into()])]));
        let req =
            CreatePartitionsRequest::default().with_topics(vec![grow("t", 3), grow("nope", 3)]);
        let r = handle(&mut c, &ctx(0, 3), req);
        assert_eq!(r.results[0].error_code, 0);
        assert_eq!(
            r.results[1].error_code,
            ErrorCode::UnknownTopicOrPartition.code()
        );
        assert_encodes(&ResponseKind::CreatePartitions(r), 3);
        assert_eq!(c.topic("t").map(|t| t.partitions().len()), Some(3));
        let req = CreatePartitionsRequest::default().with_topics(vec![grow("t", 2)]);
        let r = handle(&mut c, &ctx(0, 3), req);
        assert_eq!(r.results[0].error_code, ErrorCode::InvalidPartitions.code());
        assert!(r.results[0].error_message.is_some());
        let req = CreatePartitionsRequest::default().with_topics(vec![assigned]);
        let r = handle(&mut c, &ctx(0, 3), req);
        assert_eq!(r.results[0].error_code, 0);
        assert_eq!(
            c.partition("t", 3).map(|p| p.replicas().to_vec()),
            Some(vec![0, 1, 2])
        );
        let req = CreatePartitionsRequest::default().with_topics(vec![grow("t", 9), grow("t", 9)]);
        let r = handle(&mut c, &ctx(0, 3), req);
        assert!(r
            .results
            .iter()
            .all(|t| t.error_code == ErrorCode::InvalidRequest.code()));
        let req = CreatePartitionsRequest::default().with_topics(vec![grow("t", -3)]);
        let r = handle(&mut c, &ctx(0, 3), req);
        assert_eq!(r.results[0].error_code, ErrorCode::InvalidPartitions.code());
    }

    #[test]
    fn too_many_new_partitions_fail_the_whole_request() {
        let mut c = cluster_with(1);
        let req =
            CreatePartitionsRequest::default().with_topics(vec![CreatePartitionsTopic::default()
                .with_name(topic_name("t"))
                .with_count(i32::MAX)]);
        let r = handle(&mut c, &ctx(0, 3), req);
        assert_eq!(r.results[0].error_code, ErrorCode::PolicyViolation.code());
        assert_eq!(c.topic("t").map(|t| t.partitions().len()), Some(1));
    }
}
