//! IncrementalAlterConfigs (key 44), v0-1: sets, deletes, appends to and subtracts from
//! topic configs (KIP-339), as Kafka's controller does (`ConfigurationControlManager`).
//!
//! Each resource is answered on its own: an unknown topic, a config Kafka does not know, a
//! value that fails its check, or APPEND/SUBTRACT on a config that is not a list fails that
//! resource only, and nothing of it is applied. With `validate_only` nothing is applied at
//! all. Broker resources are refused with INVALID_REQUEST: the harness's broker configs are
//! static (what `ClusterBuilder` set), as a broker's `server.properties` values are.

use std::collections::{BTreeMap, HashSet};

use franzy::proto::ErrorCode;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::{text, RequestContext};
use crate::cluster::topic_config::{topic_config_def, validate_topic_config, ConfigKind};
use crate::cluster::ClusterState;

/// `AlterConfigOp.OpType`: SET.
pub const OP_SET: i8 = 0;
/// `AlterConfigOp.OpType`: DELETE.
pub const OP_DELETE: i8 = 1;
/// `AlterConfigOp.OpType`: APPEND.
pub const OP_APPEND: i8 = 2;
/// `AlterConfigOp.OpType`: SUBTRACT.
pub const OP_SUBTRACT: i8 = 3;

/// Serves an IncrementalAlterConfigs request.
pub fn handle(
    cluster: &mut ClusterState,
    _ctx: &RequestContext,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let max_entries = cluster.config().max_partitions_per_request;
    let mut seen: HashSet<(i8, &str)> = HashSet::new();
    let duplicates: HashSet<(i8, &str)> = req
        .resources
        .iter()
        .filter(|r| !seen.insert((r.resource_type, r.resource_name.as_str())))
        .map(|r| (r.resource_type, r.resource_name.as_str()))
        .collect();
    let responses = req
        .resources
        .iter()
        .enumerate()
        .map(|(position, resource)| {
            let name = resource.resource_name.as_str();
            let outcome = if position >= max_entries {
                Err((
                    ErrorCode::InvalidRequest,
                    format!("The request names more than {max_entries} resources"),
                ))
            } else if duplicates.contains(&(resource.resource_type, name)) {
                Err((
                    ErrorCode::InvalidRequest,
                    "Error due to duplicate resource.".to_string(),
                ))
            } else {
                let ops: Vec<(&str, i8, Option<&str>)> = resource
                    .configs
                    .iter()
                    .map(|c| {
                        (
                            c.name.as_str(),
                            c.config_operation,
                            c.value.as_ref().map(|v| v.as_str()),
                        )
                    })
                    .collect();
                alter(
                    cluster,
                    resource.resource_type,
                    name,
                    &ops,
                    req.validate_only,
                )
            };
            let response = AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            match outcome {
                Ok(()) => response.with_error_message(None),
                Err((code, message)) => response
                    .with_error_code(code.code())
                    .with_error_message(Some(text(&message))),
            }
        })
        .collect();
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

/// Applies `ops` (name, operation, value) to one resource, or checks them only.
fn alter(
    cluster: &mut ClusterState,
    resource_type: i8,
    name: &str,
    ops: &[(&str, i8, Option<&str>)],
    validate_only: bool,
) -> Result<(), (ErrorCode, String)> {
    match resource_type {
        RESOURCE_TOPIC => {}
        RESOURCE_BROKER => {
            return Err((
                ErrorCode::InvalidRequest,
                format!(
                    "Cannot update these configs dynamically: {}",
                    ops.iter()
                        .map(|(n, _, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ))
        }
        other => {
            return Err((
                ErrorCode::InvalidRequest,
                format!("Unsupported resource type: {other}"),
            ))
        }
    }
    let Some(topic) = cluster.topic(name) else {
        return Err((
            ErrorCode::UnknownTopicOrPartition,
            format!("The topic '{name}' does not exist."),
        ));
    };
    let mut names = HashSet::new();
    if !ops.iter().all(|(n, _, _)| names.insert(*n)) {
        return Err((
            ErrorCode::InvalidRequest,
            "Error due to duplicate config keys".to_string(),
        ));
    }
    let mut configs: BTreeMap<String, String> = topic.configs().clone();
    for (key, op, value) in ops {
        let invalid = |why: String| Err((ErrorCode::InvalidConfig, why));
        let Some(def) = topic_config_def(key) else {
            return invalid(format!("Unknown topic config name: {key}"));
        };
        match *op {
            OP_SET => {
                validate_topic_config(key, *value).map_err(|m| (ErrorCode::InvalidConfig, m))?;
                let value = value.unwrap_or_default();
                configs.insert(key.to_string(), value.to_string());
            }
            OP_DELETE => {
                configs.remove(*key);
            }
            OP_APPEND | OP_SUBTRACT => {
                if def.kind != ConfigKind::List {
                    return invalid(format!(
                        "Config value append is not allowed for config key: {key}"
                    ));
                }
                let Some(value) = value else {
                    return invalid(format!("Null value not supported for : {key}"));
                };
                let current = configs.get(*key).map(String::as_str).unwrap_or(def.default);
                let mut items: Vec<&str> = current
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect();
                for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    if *op == OP_APPEND {
                        if !items.contains(&item) {
                            items.push(item);
                        }
                    } else {
                        items.retain(|i| *i != item);
                    }
                }
                let joined = items.join(",");
                validate_topic_config(key, Some(&joined))
                    .map_err(|m| (ErrorCode::InvalidConfig, m))?;
                configs.insert(key.to_string(), joined);
            }
            other => {
                return Err((
                    ErrorCode::InvalidRequest,
                    format!("Unknown operation type {other}"),
                ))
            }
        }
    }
    if !validate_only {
        cluster
            .set_topic_configs(name, configs)
            .map_err(|code| (code, format!("The topic '{name}' does not exist.")))?;
    }
    Ok(())
}

/// The answer that fails every resource of `req` with `code`.
pub fn error_response(
    req: &IncrementalAlterConfigsRequest,
    _version: i16,
    code: ErrorCode,
) -> IncrementalAlterConfigsResponse {
    let responses = req
        .resources
        .iter()
        .map(|r| {
            AlterConfigsResourceResponse::default()
                .with_error_code(code.code())
                .with_error_message(None)
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone())
        })
        .collect();
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

/// The topics `req` alters (partition -1: the whole topic).
pub fn partitions(req: &IncrementalAlterConfigsRequest) -> super::TopicPartitions {
    req.resources
        .iter()
        .filter(|r| r.resource_type == RESOURCE_TOPIC)
        .map(|r| (std::sync::Arc::from(r.resource_name.as_str()), -1))
        .collect()
}

/// Applies a whole-replacement AlterConfigs to one resource (shared with
/// [`super::alter_configs`]): the topic's configs become exactly `configs`.
pub(crate) fn replace(
    cluster: &mut ClusterState,
    resource_type: i8,
    name: &str,
    configs: &[(&str, Option<&str>)],
    validate_only: bool,
) -> Result<(), (ErrorCode, String)> {
    let mut ops: Vec<(&str, i8, Option<&str>)> =
        configs.iter().map(|(n, v)| (*n, OP_SET, *v)).collect();
    // Everything not named goes back to its default.
    let unnamed: Vec<String> = match (resource_type, cluster.topic(name)) {
        (RESOURCE_TOPIC, Some(topic)) => topic
            .configs()
            .keys()
            .filter(|k| !configs.iter().any(|(n, _)| n == k))
            .cloned()
            .collect(),
        _ => Vec::new(),
    };
    ops.extend(unnamed.iter().map(|k| (k.as_str(), OP_DELETE, None)));
    alter(cluster, resource_type, name, &ops, validate_only)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::test_support::{cluster_with, ctx};
    use kafka_protocol::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig,
    };

    fn resource(name: &str, ops: &[(&str, i8, Option<&str>)]) -> AlterConfigsResource {
        AlterConfigsResource::default()
            .with_resource_type(RESOURCE_TOPIC)
            .with_resource_name(text(name))
            .with_configs(
                ops.iter()
                    .map(|(n, op, v)| {
                        AlterableConfig::default()
                            .with_name(text(n))
                            .with_config_operation(*op)
                            .with_value(v.map(text))
                    })
                    .collect(),
            )
    }

    #[test]
    fn each_resource_is_answered_on_its_own_and_validate_only_applies_nothing() {
        let mut c = cluster_with(1);
        let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
            resource("t", &[("retention.ms", OP_SET, Some("1000"))]),
            resource("missing", &[("retention.ms", OP_SET, Some("1000"))]),
        ]);
        let r = handle(&mut c, &ctx(0, 1), req.clone().with_validate_only(true));
        let codes: Vec<i16> = r.responses.iter().map(|r| r.error_code).collect();
        assert_eq!(codes, vec![0, ErrorCode::UnknownTopicOrPartition.code()]);
        assert_eq!(c.topic("t").and_then(|t| t.config("retention.ms")), None);
        handle(&mut c, &ctx(0, 1), req);
        assert_eq!(
            c.topic("t").and_then(|t| t.config("retention.ms")),
            Some("1000")
        );
    }

    #[test]
    fn append_and_subtract_work_on_lists_only_and_bad_values_apply_nothing() {
        let mut c = cluster_with(1);
        let alter = |c: &mut ClusterState, ops: &[(&str, i8, Option<&str>)]| {
            let req =
                IncrementalAlterConfigsRequest::default().with_resources(vec![resource("t", ops)]);
            handle(c, &ctx(0, 1), req).responses[0].error_code
        };
        assert_eq!(
            alter(&mut c, &[("cleanup.policy", OP_APPEND, Some("compact"))]),
            0
        );
        assert_eq!(
            c.topic("t").and_then(|t| t.config("cleanup.policy")),
            Some("delete,compact")
        );
        assert_eq!(
            alter(&mut c, &[("cleanup.policy", OP_SUBTRACT, Some("delete"))]),
            0
        );
        assert_eq!(
            c.topic("t").and_then(|t| t.config("cleanup.policy")),
            Some("compact")
        );
        assert_eq!(
            alter(&mut c, &[("retention.ms", OP_APPEND, Some("5"))]),
            ErrorCode::InvalidConfig.code()
        );
        assert_eq!(
            alter(
                &mut c,
                &[
                    ("retention.ms", OP_SET, Some("7")),
                    ("segment.bytes", OP_SET, Some("x"))
                ]
            ),
            ErrorCode::InvalidConfig.code()
        );
        assert_eq!(c.topic("t").and_then(|t| t.config("retention.ms")), None);
        assert_eq!(
            alter(
                &mut c,
                &[
                    ("retention.ms", OP_SET, Some("7")),
                    ("retention.ms", OP_DELETE, None)
                ]
            ),
            ErrorCode::InvalidRequest.code()
        );
        assert_eq!(alter(&mut c, &[("cleanup.policy", OP_DELETE, None)]), 0);
        assert_eq!(c.topic("t").and_then(|t| t.config("cleanup.policy")), None);
    }
}
