//! DescribeConfigs (key 32), v1-4: topic and broker configs with their sources, synonyms
//! (KIP-226) and types (KIP-507).
//!
//! A topic's configs are every topic config Kafka knows: the topic's own value (source
//! TOPIC_CONFIG) or the broker's (DYNAMIC_DEFAULT_BROKER_CONFIG when set cluster-wide with
//! IncrementalAlterConfigs or AlterConfigs, STATIC_BROKER_CONFIG where the harness differs
//! from Kafka's default, else DEFAULT_CONFIG). A broker resource named after the receiving
//! broker lists the broker-level configs, its own dynamic values first
//! (DYNAMIC_BROKER_CONFIG); an empty name lists the cluster-wide dynamic defaults
//! (DYNAMIC_DEFAULT_BROKER_CONFIG), as Kafka does. Passwords are sensitive: no value.

use std::collections::HashSet;
use std::sync::Arc;

use franzy::proto::ErrorCode;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};

use super::{text, RequestContext};
use crate::cluster::broker_config::{dynamic_broker_config, is_sensitive};
use crate::cluster::topic::validate_topic_name;
use crate::cluster::topic_config::{ConfigKind, TOPIC_CONFIGS};
use crate::cluster::{ClusterState, Topic};

/// `ConfigResource.Type.TOPIC`.
pub const RESOURCE_TOPIC: i8 = 2;
/// `ConfigResource.Type.BROKER`.
pub const RESOURCE_BROKER: i8 = 4;

/// Where a config value comes from (`DescribeConfigsResponse.ConfigSource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// Set on the topic.
    TopicConfig = 1,
    /// Set dynamically for this broker.
    DynamicBrokerConfig = 2,
    /// Set dynamically as the cluster-wide default.
    DynamicDefaultBrokerConfig = 3,
    /// Set in the broker's static configuration.
    StaticBrokerConfig = 4,
    /// Kafka's default.
    DefaultConfig = 5,
}

/// One config with its value, source and synonyms (most specific first).
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigEntry {
    /// The name.
    pub name: String,
    /// The value in force.
    pub value: String,
    /// Where it comes from.
    pub source: ConfigSource,
    /// The value type.
    pub kind: ConfigKind,
    /// Whether it cannot be altered.
    pub read_only: bool,
    /// (name, value, source) of every level that sets it.
    pub synonyms: Vec<(String, String, ConfigSource)>,
}

/// Serves a DescribeConfigs request.
pub fn handle(
    cluster: &ClusterState,
    ctx: &RequestContext,
    req: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let version = ctx.api_version;
    let max_entries = cluster.config().max_partitions_per_request;
    let past_cap = format!("The request names more than {max_entries} resources");
    let results = req
        .resources
        .iter()
        .enumerate()
        .map(|(position, resource)| {
            let name = resource.resource_name.as_str();
            let entries = match resource.resource_type {
                // Resources past the cap are refused, not described.
                _ if position >= max_entries => Err((ErrorCode::InvalidRequest, past_cap.clone())),
                RESOURCE_TOPIC => match cluster.topic(name) {
                    Some(topic) => Ok(topic_entries(cluster, topic)),
                    None if validate_topic_name(name).is_err() => {
                        Err((ErrorCode::InvalidTopicException, format!("Invalid topic name {name}")))
                    }
                    None => Err((
                        ErrorCode::UnknownTopicOrPartition,
                        format!("Topic {name} does not exist"),
                    )),
                },
                RESOURCE_BROKER if name.is_empty() => Ok(cluster_default_entries(cluster)),
                RESOURCE_BROKER => match name.parse::<i32>() {
                    Ok(id) if id == ctx.broker_id => Ok(broker_entries(cluster, id)),
                    Ok(_) => Err((
                        ErrorCode::InvalidRequest,
                        format!("Unexpected broker id, expected {} or empty string, but received {name}", ctx.broker_id),
                    )),
                    Err(_) => Err((ErrorCode::InvalidRequest, "Broker id must be an integer".into())),
                },
                other => Err((ErrorCode::InvalidRequest, format!("Unsupported resource type: {other}"))),
            };
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            match entries {
                Err((code, message)) => result
                    .with_error_code(code.code())
                    .with_error_message(Some(text(&message))),
                Ok(entries) => {
                    let keys: Option<HashSet<&str>> = resource
                        .configuration_keys
                        .as_ref()
                        .map(|keys| keys.iter().map(|k| k.as_str()).collect());
                    let configs = entries
                        .into_iter()
                        .filter(|e| keys.as_ref().is_none_or(|keys| keys.contains(e.name.as_str())))
                        .map(|e| encode(e, version, req.include_synonyms))
                        .collect();
                    result.with_error_message(None).with_configs(configs)
                }
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// The topics `req` describes (partition -1: the whole topic).
pub fn partitions(req: &DescribeConfigsRequest) -> Vec<(Arc<str>, i32)> {
    req.resources
        .iter()
        .filter(|r| r.resource_type == RESOURCE_TOPIC)
        .map(|r| (Arc::from(r.resource_name.as_str()), -1))
        .collect()
}

/// The answer that fails every resource of `req` with `code`.
pub fn error_response(
    req: &DescribeConfigsRequest,
    _version: i16,
    code: ErrorCode,
) -> DescribeConfigsResponse {
    let results = req
        .resources
        .iter()
        .map(|r| {
            DescribeConfigsResult::default()
                .with_error_code(code.code())
                .with_error_message(None)
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone())
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// Every config of `topic`, in name order.
pub fn topic_entries(cluster: &ClusterState, topic: &Topic) -> Vec<ConfigEntry> {
    TOPIC_CONFIGS
        .iter()
        .map(|def| {
            let broker: Vec<(String, String, ConfigSource)> =
                broker_levels(cluster, None, def.broker_synonym)
                    .into_iter()
                    .map(|(value, source)| (def.broker_synonym.to_string(), value, source))
                    .collect();
            let mut synonyms = Vec::new();
            let (value, source) = match topic.config(def.name) {
                Some(v) => {
                    synonyms.push((
                        def.name.to_string(),
                        v.to_string(),
                        ConfigSource::TopicConfig,
                    ));
                    (v.to_string(), ConfigSource::TopicConfig)
                }
                None => match broker.first() {
                    Some((_, v, s)) => (v.clone(), *s),
                    None => (def.default.to_string(), ConfigSource::DefaultConfig),
                },
            };
            synonyms.extend(broker);
            ConfigEntry {
                name: def.name.to_string(),
                value,
                source,
                kind: def.kind,
                read_only: false,
                synonyms,
            }
        })
        .collect()
}

/// The broker-level configs of broker `id`: the harness's own, and any set dynamically.
fn broker_entries(cluster: &ClusterState, id: i32) -> Vec<ConfigEntry> {
    let mut names: Vec<(&str, ConfigKind)> = vec![
        ("auto.create.topics.enable", ConfigKind::Boolean),
        ("broker.id", ConfigKind::Int),
        ("default.replication.factor", ConfigKind::Int),
        ("num.partitions", ConfigKind::Int),
    ];
    names.extend(
        TOPIC_CONFIGS
            .iter()
            .filter(|d| !d.broker_synonym.is_empty())
            .map(|d| (d.broker_synonym, d.kind)),
    );
    let dynamic = [Some(id), None]
        .into_iter()
        .filter_map(|broker| cluster.broker_configs().of(broker))
        .flat_map(|configs| configs.keys())
        .filter_map(|name| dynamic_broker_config(name).map(|(kind, _)| (name.as_str(), kind)));
    names.extend(dynamic);
    names.sort_unstable_by_key(|(n, _)| *n);
    names.dedup_by_key(|(n, _)| *n);
    names
        .into_iter()
        .filter_map(|(name, kind)| {
            let levels = if name == "broker.id" {
                vec![(id.to_string(), ConfigSource::StaticBrokerConfig)]
            } else {
                broker_levels(cluster, Some(id), name)
            };
            let (value, source) = levels.first().cloned()?;
            Some(ConfigEntry {
                name: name.to_string(),
                value,
                source,
                kind,
                read_only: matches!(name, "broker.id"),
                synonyms: levels
                    .into_iter()
                    .map(|(value, source)| (name.to_string(), value, source))
                    .collect(),
            })
        })
        .collect()
}

/// The cluster-wide dynamic broker configs (a BROKER resource with an empty name).
fn cluster_default_entries(cluster: &ClusterState) -> Vec<ConfigEntry> {
    let Some(configs) = cluster.broker_configs().of(None) else {
        return Vec::new();
    };
    configs
        .iter()
        .map(|(name, value)| {
            let source = ConfigSource::DynamicDefaultBrokerConfig;
            ConfigEntry {
                name: name.clone(),
                value: value.clone(),
                source,
                kind: dynamic_broker_config(name).map_or(ConfigKind::String, |(kind, _)| kind),
                read_only: false,
                synonyms: vec![(name.clone(), value.clone(), source)],
            }
        })
        .collect()
}

/// Every level that sets broker config `name`, most specific first: broker `broker`'s own
/// dynamic value, the cluster-wide dynamic default, the static value or Kafka's default.
fn broker_levels(
    cluster: &ClusterState,
    broker: Option<i32>,
    name: &str,
) -> Vec<(String, ConfigSource)> {
    if name.is_empty() {
        return Vec::new();
    }
    let configs = cluster.broker_configs();
    let mut levels = Vec::new();
    if let Some(value) = broker
        .and_then(|id| configs.of(Some(id)))
        .and_then(|c| c.get(name))
    {
        levels.push((value.clone(), ConfigSource::DynamicBrokerConfig));
    }
    if let Some(value) = configs.of(None).and_then(|c| c.get(name)) {
        levels.push((value.clone(), ConfigSource::DynamicDefaultBrokerConfig));
    }
    levels.extend(broker_value(cluster, name));
    levels
}

/// The static value of broker config `name` and where it comes from.
fn broker_value(cluster: &ClusterState, name: &str) -> Option<(String, ConfigSource)> {
    let config = cluster.config();
    let ours = match name {
        "message.max.bytes" => Some(("1048588", config.message_max_bytes.to_string())),
        "auto.create.topics.enable" => Some(("true", config.auto_create_topics.to_string())),
        "num.partitions" => Some(("1", config.default_partitions.to_string())),
        "default.replication.factor" => Some(("1", config.default_replication_factor.to_string())),
        _ => None,
    };
    if let Some((kafka_default, value)) = ours {
        let source = if value == kafka_default {
            ConfigSource::DefaultConfig
        } else {
            ConfigSource::StaticBrokerConfig
        };
        return Some((value, source));
    }
    TOPIC_CONFIGS
        .iter()
        .find(|d| !d.broker_synonym.is_empty() && d.broker_synonym == name)
        .map(|d| (d.default.to_string(), ConfigSource::DefaultConfig))
}

fn encode(
    entry: ConfigEntry,
    version: i16,
    include_synonyms: bool,
) -> DescribeConfigsResourceResult {
    let sensitive = is_sensitive(&entry.name);
    let shown = |value: &str| (!sensitive).then(|| text(value));
    let synonyms = if include_synonyms {
        entry
            .synonyms
            .iter()
            .map(|(name, value, source)| {
                DescribeConfigsSynonym::default()
                    .with_name(text(name))
                    .with_value(shown(value))
                    .with_source(*source as i8)
            })
            .collect()
    } else {
        Vec::new()
    };
    let mut result = DescribeConfigsResourceResult::default()
        .with_name(text(&entry.name))
        .with_value(shown(&entry.value))
        .with_read_only(entry.read_only)
        .with_config_source(entry.source as i8)
        .with_is_sensitive(sensitive)
        .with_synonyms(synonyms)
        .with_documentation(None);
    if version >= 3 {
        result.config_type = entry.kind.code();
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::test_support::{assert_encodes, cluster_with, ctx};
    use franzy::proto::ResponseKind;
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    use std::collections::BTreeMap;

    fn resource(kind: i8, name: &str, keys: Option<&[&str]>) -> DescribeConfigsResource {
        DescribeConfigsResource::default()
            .with_resource_type(kind)
            .with_resource_name(text(name))
            .with_configuration_keys(keys.map(|k| k.iter().map(|s| text(s)).collect()))
    }

    #[test]
    fn topic_configs_with_sources_and_synonyms() {
        let mut c = cluster_with(1);
        let configs = BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]);
        c.create_topic("r", 1, configs).expect("create");
        let req = DescribeConfigsRequest::default()
            .with_include_synonyms(true)
            .with_resources(vec![
                resource(
                    RESOURCE_TOPIC,
                    "r",
                    Some(&["retention.ms", "max.message.bytes", "cleanup.policy"]),
                ),
                resource(RESOURCE_TOPIC, "nope", None),
            ]);
        for version in 1..=4 {
            let r = handle(&c, &ctx(0, version), req.clone());
            let found = &r.results[0];
            assert_eq!(found.error_code, 0);
            let got: Vec<(&str, Option<&str>, i8, usize)> = found
                .configs
                .iter()
                .map(|e| {
                    (
                        e.name.as_str(),
                        e.value.as_ref().map(|v| v.as_str()),
                        e.config_source,
                        e.synonyms.len(),
                    )
                })
                .collect();
            assert_eq!(
                got,
                vec![
                    ("cleanup.policy", Some("delete"), 5, 1),
                    ("max.message.bytes", Some("1048588"), 5, 1),
                    ("retention.ms", Some("1000"), 1, 2),
                ]
            );
            assert_eq!(
                r.results[1].error_code,
                ErrorCode::UnknownTopicOrPartition.code()
            );
            assert_encodes(&ResponseKind::DescribeConfigs(r), version);
        }
        let all = handle(
            &c,
            &ctx(0, 4),
            DescribeConfigsRequest::default().with_resources(vec![resource(
                RESOURCE_TOPIC,
                "r",
                None,
            )]),
        );
        assert_eq!(all.results[0].configs.len(), TOPIC_CONFIGS.len());
        assert!(all.results[0].configs.iter().all(|e| e.synonyms.is_empty()));
    }

    #[test]
    fn broker_configs_for_the_receiving_broker_only() {
        let c = cluster_with(1);
        let req = DescribeConfigsRequest::default().with_resources(vec![
            resource(
                RESOURCE_BROKER,
                "1",
                Some(&[
                    "num.partitions",
                    "default.replication.factor",
                    "message.max.bytes",
                ]),
            ),
            resource(RESOURCE_BROKER, "2", None),
            resource(RESOURCE_BROKER, "", None),
            resource(8, "1", None),
        ]);
        let r = handle(&c, &ctx(1, 4), req);
        let got: Vec<(&str, Option<&str>, i8)> = r.results[0]
            .configs
            .iter()
            .map(|e| {
                (
                    e.name.as_str(),
                    e.value.as_ref().map(|v| v.as_str()),
                    e.config_source,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("default.replication.factor", Some("3"), 4),
                ("message.max.bytes", Some("1048588"), 5),
                ("num.partitions", Some("1"), 5),
            ]
        );
        let codes: Vec<i16> = r.results.iter().map(|x| x.error_code).collect();
        assert_eq!(
            codes,
            vec![
                0,
                ErrorCode::InvalidRequest.code(),
                0,
                ErrorCode::InvalidRequest.code()
            ]
        );
        assert_encodes(&ResponseKind::DescribeConfigs(r), 4);
    }
}
