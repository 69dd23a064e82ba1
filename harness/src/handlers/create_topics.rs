//! CreateTopics (key 19), v2-7: creates topics with partition counts, replication factors
//! or manual assignments and configs; `validate_only` checks without creating. v5+ answers
//! with the resulting configs (KIP-525), v7 with the topic id (KIP-516).

use std::collections::HashMap;

use franzy::proto::ErrorCode;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use super::describe_configs::topic_entries;
use super::{text, RequestContext};
use crate::cluster::{ClusterError, ClusterState, NewTopic};

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
    let mut reported_duplicates = Vec::new();
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let name = t.name.0.as_str();
        if counts.get(name).copied().unwrap_or(0) > 1 {
            if !reported_duplicates.contains(&name) {
                reported_duplicates.push(name);
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
        let result = match cluster.create_topic_with(&request, req.validate_only) {
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
    CreateTopicsResponse::default().with_topics(topics)
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
pub fn partitions(req: &CreateTopicsRequest) -> Vec<(String, i32)> {
    req.topics
        .iter()
        .map(|t| (t.name.0.as_str().to_string(), -1))
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
}
