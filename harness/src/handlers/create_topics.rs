//! CreateTopics (key 19), v2-7: creates topics with partition counts, replication factors
//! or manual assignments and configs; `validate_only` checks without creating. v5+ answers
//! with the resulting configs (KIP-525), v7 with the topic id (KIP-516).
//!
//! Two caps bound what one request may create, each answered as Kafka answers its own
//! limits:
//! - more partitions than [`ClusterConfig::max_partitions_created_per_request`] (among the
//!   topics it would create) fails the whole request with POLICY_VIOLATION "Unable to
//!   perform excessively large batch operation.", what Kafka's KRaft controller answers an
//!   operation of more than 10,000 metadata records (`BoundedListTooLongException`);
//! - past [`ClusterConfig::max_topics_created_per_request`] topics, each further topic that
//!   would be created is refused, as by an exhausted controller mutation quota (KIP-599):
//!   THROTTLING_QUOTA_EXCEEDED from v6, which the Java admin client retries by itself;
//!   before v6, where Kafka never refuses for quota (old clients do not know the code),
//!   POLICY_VIOLATION, the controller's answer to an oversized operation. Topics that exist
//!   or are invalid get their own errors first, as the quota is checked last in Kafka.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use franzy::proto::ErrorCode;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use super::describe_configs::topic_entries;
use super::{text, RequestContext};
use crate::cluster::topic::validate_topic_name;
use crate::cluster::{ClusterConfig, ClusterError, ClusterState, NewTopic};

/// Kafka's message for an operation its controller refuses as too large.
pub(crate) const EXCESSIVELY_LARGE: &str = "Unable to perform excessively large batch operation.";

/// Serves a CreateTopics request.
pub fn handle(
    cluster: &mut ClusterState,
    ctx: &RequestContext,
    req: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let version = ctx.api_version;
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for t in &req.topics {
        *counts.entry(t.name.0.as_str()).or_default() += 1;
    }
    let max_created = cluster.config().max_topics_created_per_request;
    let max_partitions = cluster.config().max_partitions_created_per_request;
    let wanted = partitions_wanted(cluster, &req, &counts);
    if wanted > max_partitions as u64 {
        tracing::warn!(
            wanted,
            max = max_partitions,
            "create topics: too many partitions for one request"
        );
        let error = ClusterError::new(ErrorCode::PolicyViolation, EXCESSIVELY_LARGE);
        return CreateTopicsResponse::default().with_topics(
            req.topics
                .iter()
                .map(|t| failed(t.name.clone(), &error))
                .collect(),
        );
    }
    let over_quota = if version >= 6 {
        ClusterError::new(
            ErrorCode::ThrottlingQuotaExceeded,
            "The throttling quota has been exceeded.",
        )
    } else {
        ClusterError::new(ErrorCode::PolicyViolation, EXCESSIVELY_LARGE)
    };
    let mut created = 0usize;
    let mut refused = 0usize;
    let mut reported_duplicates = HashSet::new();
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let name = t.name.0.as_str();
        if counts.get(name).copied().unwrap_or(0) > 1 {
            if reported_duplicates.insert(name) {
                topics.push(failed(
                    t.name.clone(),
                    &ClusterError::new(ErrorCode::InvalidRequest, "Duplicate topic name."),
                ));
            }
            continue;
        }
        let request = NewTopic {
            name: name.to_string(),
            num_partitions: t.num_partitions,
            replication_factor: t.replication_factor,
            assignments: t
                .assignments
                .iter()
                .map(|a| {
                    (
                        a.partition_index,
                        a.broker_ids.iter().map(|b| b.0).collect(),
                    )
                })
                .collect(),
            configs: t
                .configs
                .iter()
                .map(|c| {
                    (
                        c.name.as_str().to_string(),
                        c.value.as_ref().map(|v| v.as_str().to_string()),
                    )
                })
                .collect(),
        };
        let outcome = if created >= max_created {
            // Every other check first: only a topic that would be created is refused.
            match cluster.create_topic_with(&request, true) {
                Ok(_) => {
                    refused += 1;
                    Err(over_quota.clone())
                }
                Err(e) => Err(e),
            }
        } else {
            cluster.create_topic_with(&request, req.validate_only)
        };
        if outcome.is_ok() {
            created += 1;
        }
        let result = match outcome {
            Err(e) => failed(t.name.clone(), &e),
            Ok(created) => {
                let mut result = CreatableTopicResult::default()
                    .with_name(t.name.clone())
                    .with_error_message(None)
                    .with_num_partitions(created.num_partitions)
                    .with_replication_factor(created.replication_factor);
                if version >= 7 {
                    result.topic_id = created.id;
                }
                if version >= 5 {
                    result.configs = Some(configs_of(cluster, name, &request));
                }
                result
            }
        };
        topics.push(result);
    }
    if refused > 0 {
        tracing::warn!(
            created,
            refused,
            "create topics: more topics than max_topics_created_per_request in one request"
        );
    }
    CreateTopicsResponse::default().with_topics(topics)
}

/// The partitions `req` would create: those of its first
/// [`ClusterConfig::max_topics_created_per_request`] topics that are named once, validly,
/// and do not exist yet (a topic that fails a later check is counted too).
fn partitions_wanted(
    cluster: &ClusterState,
    req: &CreateTopicsRequest,
    counts: &HashMap<&str, usize>,
) -> u64 {
    let config: &ClusterConfig = cluster.config();
    req.topics
        .iter()
        .filter(|t| {
            let name = t.name.0.as_str();
            counts.get(name).copied().unwrap_or(0) == 1
                && validate_topic_name(name).is_ok()
                && cluster.topic(name).is_none()
        })
        .take(config.max_topics_created_per_request)
        .map(|t| {
            if !t.assignments.is_empty() {
                t.assignments.len() as u64
            } else if t.num_partitions == -1 {
                u64::try_from(config.default_partitions).unwrap_or(0)
            } else {
                u64::try_from(t.num_partitions).unwrap_or(0)
            }
        })
        .fold(0u64, u64::saturating_add)
}

/// The answer that fails every topic of `req` with `code`.
pub fn error_response(
    req: &CreateTopicsRequest,
    _version: i16,
    code: ErrorCode,
) -> CreateTopicsResponse {
    let error = ClusterError::code(code);
    CreateTopicsResponse::default().with_topics(
        req.topics
            .iter()
            .map(|t| failed(t.name.clone(), &error))
            .collect(),
    )
}

/// The topics of `req` (partition -1: the whole topic).
pub fn partitions(req: &CreateTopicsRequest) -> Vec<(Arc<str>, i32)> {
    req.topics
        .iter()
        .map(|t| (Arc::from(t.name.0.as_str()), -1))
        .collect()
}

/// The configs the topic has (or would have, when only validating).
fn configs_of(
    cluster: &ClusterState,
    name: &str,
    request: &NewTopic,
) -> Vec<CreatableTopicConfigs> {
    let entries = match cluster.topic(name) {
        Some(topic) => topic_entries(cluster, topic),
        None => {
            // validate_only: describe a scratch copy of the cluster's view.
            let mut scratch = crate::cluster::ClusterState::new(cluster.config().clone());
            match scratch.create_topic_with(request, false) {
                Ok(_) => scratch
                    .topic(name)
                    .map(|t| topic_entries(&scratch, t))
                    .unwrap_or_default(),
                Err(_) => Vec::new(),
            }
        }
    };
    entries
        .into_iter()
        .map(|e| {
            CreatableTopicConfigs::default()
                .with_name(text(&e.name))
                .with_value(Some(text(&e.value)))
                .with_read_only(e.read_only)
                .with_config_source(e.source as i8)
                .with_is_sensitive(false)
        })
        .collect()
}

fn failed(name: kafka_protocol::messages::TopicName, error: &ClusterError) -> CreatableTopicResult {
    CreatableTopicResult::default()
        .with_name(name)
        .with_error_code(error.code.code())
        .with_error_message(error.message.as_deref().map(text))
        .with_configs(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::test_support::{assert_encodes, cluster_with, ctx};
    use crate::handlers::topic_name;
    use franzy::proto::ResponseKind;
    use kafka_protocol::messages::create_topics_request::{
        CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
    };

    fn topic(name: &str, partitions: i32, factor: i16) -> CreatableTopic {
        CreatableTopic::default()
            .with_name(topic_name(name))
            .with_num_partitions(partitions)
            .with_replication_factor(factor)
    }

    fn run(
        c: &mut ClusterState,
        version: i16,
        topics: Vec<CreatableTopic>,
        validate_only: bool,
    ) -> Vec<CreatableTopicResult> {
        let req = CreateTopicsRequest::default()
            .with_topics(topics)
            .with_validate_only(validate_only);
        let r = handle(c, &ctx(0, version), req);
        let kind = ResponseKind::CreateTopics(r);
        assert_encodes(&kind, version);
        match kind {
            ResponseKind::CreateTopics(r) => r.topics,
            _ => unreachable!("built above"),
        }
    }

    #[test]
    fn creates_with_defaults_configs_and_ids() {
        let mut c = cluster_with(1);
        let with_config = topic("c", 2, 2).with_configs(vec![CreatableTopicConfig::default()
            .with_name(text("retention.ms"))
            .with_value(Some(text("1000")))]);
        let r = run(&mut c, 7, vec![topic("a", -1, -1), with_config], false);
        assert_eq!(
            (
                r[0].error_code,
                r[0].num_partitions,
                r[0].replication_factor
            ),
            (0, 1, 3)
        );
        assert_eq!(Some(r[0].topic_id), c.topic("a").map(|t| t.id()));
        assert_eq!((r[1].num_partitions, r[1].replication_factor), (2, 2));
        let retention = r[1]
            .configs
            .iter()
            .flatten()
            .find(|e| e.name.as_str() == "retention.ms")
            .map(|e| (e.value.clone(), e.config_source));
        assert_eq!(retention, Some((Some(text("1000")), 1)));
        assert_eq!(
            c.topic("c").and_then(|t| t.config("retention.ms")),
            Some("1000")
        );
        for version in 2..=7 {
            let r = run(
                &mut c,
                version,
                vec![topic(&format!("v{version}"), 1, 1)],
                false,
            );
            assert_eq!(r[0].error_code, 0);
        }
    }

    #[test]
    fn validate_only_creates_nothing() {
        let mut c = cluster_with(1);
        let r = run(&mut c, 7, vec![topic("dry", 3, 1)], true);
        assert_eq!((r[0].error_code, r[0].num_partitions), (0, 3));
        assert!(c.topic("dry").is_none());
    }

    #[test]
    fn errors_per_topic() {
        let mut c = cluster_with(1);
        let assigned = topic("m", -1, -1).with_assignments(vec![
            CreatableReplicaAssignment::default()
                .with_partition_index(0)
                .with_broker_ids(vec![2.into()]),
            CreatableReplicaAssignment::default()
                .with_partition_index(1)
                .with_broker_ids(vec![9.into()]),
        ]);
        let bad_config = topic("x", 1, 1).with_configs(vec![CreatableTopicConfig::default()
            .with_name(text("no.such"))
            .with_value(Some(text("1")))]);
        let r = run(
            &mut c,
            7,
            vec![
                topic("t", 1, 1),
                topic("d", 1, 1),
                topic("d", 1, 1),
                topic("p", 0, 1),
                topic("r", 1, 4),
                topic("r0", 1, 0),
                topic("bad/name", 1, 1),
                assigned,
                bad_config,
                topic("mixed", 2, -1).with_assignments(vec![CreatableReplicaAssignment::default()]),
            ],
            false,
        );
        let codes: Vec<i16> = r.iter().map(|t| t.error_code).collect();
        assert_eq!(
            codes,
            vec![
                ErrorCode::TopicAlreadyExists.code(),
                ErrorCode::InvalidRequest.code(),
                ErrorCode::InvalidPartitions.code(),
                ErrorCode::InvalidReplicationFactor.code(),
                ErrorCode::InvalidReplicationFactor.code(),
                ErrorCode::InvalidTopicException.code(),
                ErrorCode::InvalidReplicaAssignment.code(),
                ErrorCode::InvalidConfig.code(),
                ErrorCode::InvalidRequest.code(),
            ]
        );
        assert!(r.iter().all(|t| t.error_message.is_some()));
        assert!(c.topic("d").is_none() && c.topic("m").is_none());
    }

    #[test]
    fn topics_past_the_cap_are_refused_as_over_quota_or_policy() {
        let config = crate::cluster::ClusterConfig {
            max_topics_created_per_request: 2,
            ..crate::cluster::ClusterConfig::default()
        };
        let mut c = crate::handlers::test_support::cluster_configured(1, config);
        let topics = || {
            vec![
                topic("a", 1, -1),
                topic("b", 1, -1),
                topic("t", 1, -1),
                topic("c", 1, -1),
                topic("bad name", 1, -1),
            ]
        };
        let r = run(&mut c, 7, topics(), false);
        let codes: Vec<i16> = r.iter().map(|t| t.error_code).collect();
        // Past the cap, a topic that exists or is invalid gets its own error first.
        assert_eq!(
            codes,
            vec![
                0,
                0,
                ErrorCode::TopicAlreadyExists.code(),
                ErrorCode::ThrottlingQuotaExceeded.code(),
                ErrorCode::InvalidTopicException.code(),
            ]
        );
        assert!(c.topic("c").is_none());
        // Before v6 the same refusal is a policy violation.
        let r = run(
            &mut c,
            5,
            vec![topic("c", 1, -1), topic("d", 1, -1), topic("e", 1, -1)],
            false,
        );
        let codes: Vec<i16> = r.iter().map(|t| t.error_code).collect();
        assert_eq!(codes, vec![0, 0, ErrorCode::PolicyViolation.code()]);
        assert!(c.topic("e").is_none());
    }

    #[test]
    fn too_many_partitions_fail_the_whole_request_without_being_placed() {
        let mut c = cluster_with(1);
        for validate_only in [true, false] {
            let r = run(
                &mut c,
                7,
                vec![topic("a", 1, -1), topic("huge", i32::MAX, -1)],
                validate_only,
            );
            assert!(r
                .iter()
                .all(|t| t.error_code == ErrorCode::PolicyViolation.code()));
            assert_eq!(r[0].error_message.as_deref(), Some(EXCESSIVELY_LARGE));
        }
        assert!(c.topic("a").is_none());
        // Up to the cap is fine: 10,000 partitions in all.
        let r = run(
            &mut c,
            7,
            vec![topic("a", 9_999, 1), topic("b", 1, 1)],
            true,
        );
        assert!(r.iter().all(|t| t.error_code == 0));
    }
}
