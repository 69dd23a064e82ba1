//! IncrementalAlterConfigs (key 44), v0-1: sets, deletes, appends to and subtracts from
//! topic configs (KIP-339), as Kafka's controller does (`ConfigurationControlManager`).
//!
//! Each resource is answered on its own: an unknown topic, a config Kafka does not know, a
//! value that fails its check, or APPEND/SUBTRACT on a config that is not a list fails that
//! resource only, and nothing of it is applied. With `validate_only` nothing is applied at
//! all. Broker resources set dynamic broker configs (KIP-226, `cluster/broker_config.rs`):
//! a broker id names one broker, an empty name the cluster-wide defaults; a config Kafka
//! cannot change dynamically, or only per broker when the name is empty, or a bad value is
//! INVALID_CONFIG, a name that is not a non-negative integer INVALID_REQUEST.

use std::collections::{BTreeMap, HashSet};

use franzy::proto::ErrorCode;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::{text, RequestContext};
use crate::cluster::broker_config::{dynamic_broker_config, validate_broker_config};
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
    let duplicates = duplicate_resources(
        req.resources
            .iter()
            .map(|r| (r.resource_type, r.resource_name.as_str())),
    );
    let responses = req
        .resources
        .iter()
        .enumerate()
        .map(|(position, resource)| {
            let name = resource.resource_name.as_str();
            let outcome = if let Some(refused) = refused_resource(
                position,
                max_entries,
                &duplicates,
                (resource.resource_type, name),
            ) {
                Err(refused)
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
        RESOURCE_BROKER => return alter_broker(cluster, name, ops, validate_only),
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
                let joined = append_or_subtract(current, value, *op == OP_APPEND);
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

/// The broker a BROKER resource names: `None` for the cluster-wide defaults (an empty
/// name), as Kafka's `ControllerConfigurationValidator.validateBrokerName` reads it.
pub(crate) fn broker_of(name: &str) -> Result<Option<i32>, (ErrorCode, String)> {
    if name.is_empty() {
        return Ok(None);
    }
    match name.parse::<i32>() {
        Ok(id) if id < 0 => Err((
            ErrorCode::InvalidRequest,
            "Invalid negative broker ID.".to_string(),
        )),
        Ok(id) => Ok(Some(id)),
        Err(_) => Err((
            ErrorCode::InvalidRequest,
            "Unable to parse broker name as a base 10 number.".to_string(),
        )),
    }
}

/// Applies `ops` to the dynamic configs of a broker or of the cluster-wide default.
fn alter_broker(
    cluster: &mut ClusterState,
    name: &str,
    ops: &[(&str, i8, Option<&str>)],
    validate_only: bool,
) -> Result<(), (ErrorCode, String)> {
    let broker = broker_of(name)?;
    let mut names = HashSet::new();
    if !ops.iter().all(|(n, _, _)| names.insert(*n)) {
        return Err((
            ErrorCode::InvalidRequest,
            "Error due to duplicate config keys".to_string(),
        ));
    }
    let mut configs = cluster
        .broker_configs()
        .of(broker)
        .cloned()
        .unwrap_or_default();
    for (key, op, value) in ops {
        match *op {
            OP_SET => {
                validate_broker_config(key, *value, broker.is_some())?;
                configs.insert(key.to_string(), value.unwrap_or_default().to_string());
            }
            OP_DELETE => {
                configs.remove(*key);
            }
            OP_APPEND | OP_SUBTRACT => {
                let list = matches!(dynamic_broker_config(key), Some((ConfigKind::List, _)));
                if !list {
                    validate_broker_config(key, Some(""), broker.is_some())?;
                    return Err((
                        ErrorCode::InvalidConfig,
                        format!("Config value append is not allowed for config key: {key}"),
                    ));
                }
                let Some(value) = value else {
                    return Err((
                        ErrorCode::InvalidConfig,
                        format!("Null value not supported for : {key}"),
                    ));
                };
                let current = configs.get(*key).map(String::as_str).unwrap_or_default();
                let joined = append_or_subtract(current, value, *op == OP_APPEND);
                validate_broker_config(key, Some(&joined), broker.is_some())?;
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
            .broker_configs_mut()
            .set(broker, configs)
            .map_err(|code| (code, "Too many brokers with dynamic configs".to_string()))?;
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
    let set: Option<Vec<String>> = match resource_type {
        RESOURCE_TOPIC => cluster
            .topic(name)
            .map(|topic| topic.configs().keys().cloned().collect()),
        RESOURCE_BROKER => match broker_of(name) {
            Ok(broker) => cluster
                .broker_configs()
                .of(broker)
                .map(|configs| configs.keys().cloned().collect()),
            Err(_) => None,
        },
        _ => None,
    };
    let unnamed: Vec<String> = set
        .unwrap_or_default()
        .into_iter()
        .filter(|k| !configs.iter().any(|(n, _)| n == k))
        .collect();
    ops.extend(unnamed.iter().map(|k| (k.as_str(), OP_DELETE, None)));
    alter(cluster, resource_type, name, &ops, validate_only)
}

/// The (type, name) pairs a request names more than once (both AlterConfigs APIs refuse
/// every copy of such a resource, as Kafka does).
pub(crate) fn duplicate_resources<'a>(
    resources: impl Iterator<Item = (i8, &'a str)>,
) -> HashSet<(i8, &'a str)> {
    let mut seen = HashSet::new();
    resources.filter(|key| !seen.insert(*key)).collect()
}

/// Why the resource at `position` is refused before its configs are read: past the
/// request's resource cap, or named twice.
pub(crate) fn refused_resource(
    position: usize,
    max_entries: usize,
    duplicates: &HashSet<(i8, &str)>,
    key: (i8, &str),
) -> Option<(ErrorCode, String)> {
    if position >= max_entries {
        Some((
            ErrorCode::InvalidRequest,
            format!("The request names more than {max_entries} resources"),
        ))
    } else if duplicates.contains(&key) {
        Some((
            ErrorCode::InvalidRequest,
            "Error due to duplicate resource.".to_string(),
        ))
    } else {
        None
    }
}
/// A list config after APPEND (`append`) or SUBTRACT of the comma-separated `value`: items
/// trimmed, empty ones dropped, an appended item kept once, every copy of a subtracted one
/// removed.
fn append_or_subtract(current: &str, value: &str, append: bool) -> String {
    let mut items: Vec<&str> = current
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if append {
            if !items.contains(&item) {
                items.push(item);
            }
        } else {
            items.retain(|i| *i != item);
        }
    }
    items.join(",")
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

    fn broker(name: &str, ops: &[(&str, i8, Option<&str>)]) -> AlterConfigsResource {
        resource(name, ops).with_resource_type(RESOURCE_BROKER)
    }

    /// (name, value, source) of broker `name`'s configs in `keys`, described by broker `at`.
    fn described(
        c: &ClusterState,
        at: i32,
        name: &str,
        keys: &[&str],
    ) -> Vec<(String, Option<String>, i8)> {
        use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
        use kafka_protocol::messages::DescribeConfigsRequest;
        let req = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(RESOURCE_BROKER)
                .with_resource_name(text(name))
                .with_configuration_keys(Some(keys.iter().map(|k| text(k)).collect())),
        ]);
        let r = super::super::describe_configs::handle(c, &ctx(at, 4), req);
        assert_eq!(r.results[0].error_code, 0);
        r.results[0]
            .configs
            .iter()
            .map(|e| {
                (
                    e.name.to_string(),
                    e.value.as_ref().map(|v| v.to_string()),
                    e.config_source,
                )
            })
            .collect()
    }

    #[test]
    fn dynamic_broker_configs_are_set_per_broker_and_cluster_wide_and_described_with_their_source()
    {
        let mut c = cluster_with(1);
        let alter = |c: &mut ClusterState, resources: Vec<AlterConfigsResource>| {
            let req = IncrementalAlterConfigsRequest::default().with_resources(resources);
            handle(c, &ctx(0, 1), req)
                .responses
                .iter()
                .map(|r| r.error_code)
                .collect::<Vec<i16>>()
        };
        let codes = alter(
            &mut c,
            vec![
                broker("", &[("log.retention.ms", OP_SET, Some("1000"))]),
                broker(
                    "0",
                    &[
                        ("log.retention.ms", OP_SET, Some("2000")),
                        ("num.io.threads", OP_SET, Some("4")),
                    ],
                ),
                broker("1", &[("broker.id", OP_SET, Some("7"))]),
                broker("2", &[("log.retention.ms", OP_SET, Some("soon"))]),
                broker("x", &[("num.io.threads", OP_SET, Some("4"))]),
                broker("-1", &[("num.io.threads", OP_SET, Some("4"))]),
            ],
        );
        let (ok, config, request) = (
            0,
            ErrorCode::InvalidConfig.code(),
            ErrorCode::InvalidRequest.code(),
        );
        assert_eq!(codes, vec![ok, ok, config, config, request, request]);
        // Listeners only per broker (and a resource named twice is refused as a whole).
        let listeners = broker("", &[("listeners", OP_SET, Some("PLAINTEXT://:9092"))]);
        assert_eq!(alter(&mut c, vec![listeners.clone()]), vec![config]);
        assert_eq!(
            alter(&mut c, vec![listeners.clone(), listeners]),
            vec![request, request]
        );
        let source = |s: &str| s.to_string();
        assert_eq!(
            described(
                &c,
                0,
                "0",
                &["log.retention.ms", "num.io.threads", "num.partitions"]
            ),
            vec![
                (source("log.retention.ms"), Some(source("2000")), 2),
                (source("num.io.threads"), Some(source("4")), 2),
                (source("num.partitions"), Some(source("1")), 5),
            ]
        );
        assert_eq!(
            described(&c, 0, "", &["log.retention.ms"]),
            vec![(source("log.retention.ms"), Some(source("1000")), 3)]
        );
        // A topic without its own value takes the cluster-wide dynamic default.
        let topic = c.topic("t").expect("topic t");
        let retention = super::super::describe_configs::topic_entries(&c, topic)
            .into_iter()
            .find(|e| e.name == "retention.ms")
            .expect("listed");
        assert_eq!(retention.value, "1000");
        assert_eq!(
            retention.source,
            super::super::describe_configs::ConfigSource::DynamicDefaultBrokerConfig
        );

        // Deleting the broker's own value falls back to the cluster-wide one; validate_only
        // changes nothing; APPEND works on lists only.
        assert_eq!(
            alter(
                &mut c,
                vec![broker("0", &[("log.retention.ms", OP_DELETE, None)])]
            ),
            vec![ok]
        );
        assert_eq!(
            described(&c, 0, "0", &["log.retention.ms"]),
            vec![(source("log.retention.ms"), Some(source("1000")), 3)]
        );
        let req = IncrementalAlterConfigsRequest::default()
            .with_validate_only(true)
            .with_resources(vec![broker("0", &[("num.io.threads", OP_SET, Some("9"))])]);
        assert_eq!(handle(&mut c, &ctx(0, 1), req).responses[0].error_code, ok);
        assert_eq!(
            described(&c, 0, "0", &["num.io.threads"]),
            vec![(source("num.io.threads"), Some(source("4")), 2)]
        );
        assert_eq!(
            alter(
                &mut c,
                vec![broker("", &[("metric.reporters", OP_APPEND, Some("a,b"))])]
            ),
            vec![ok]
        );
        assert_eq!(
            alter(
                &mut c,
                vec![broker("", &[("num.io.threads", OP_APPEND, Some("1"))])]
            ),
            vec![config]
        );
        assert_eq!(
            described(&c, 0, "", &["metric.reporters"]),
            vec![(source("metric.reporters"), Some(source("a,b")), 3)]
        );
    }

    #[test]
    fn alter_configs_replaces_a_brokers_dynamic_configs_as_a_whole() {
        let mut c = cluster_with(1);
        replace(
            &mut c,
            RESOURCE_BROKER,
            "0",
            &[
                ("num.io.threads", Some("4")),
                ("log.retention.ms", Some("5")),
            ],
            false,
        )
        .expect("set");
        replace(
            &mut c,
            RESOURCE_BROKER,
            "0",
            &[("num.io.threads", Some("6"))],
            false,
        )
        .expect("replaced");
        let kept = c.broker_configs().of(Some(0)).cloned().unwrap_or_default();
        assert_eq!(
            kept.into_iter().collect::<Vec<_>>(),
            vec![("num.io.threads".to_string(), "6".to_string())]
        );
        assert_eq!(
            replace(
                &mut c,
                RESOURCE_BROKER,
                "0",
                &[("broker.id", Some("1"))],
                false
            )
            .map_err(|e| e.0),
            Err(ErrorCode::InvalidConfig)
        );
    }
}
