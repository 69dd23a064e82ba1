//! Dynamic broker configs (KIP-226), as IncrementalAlterConfigs and AlterConfigs set them on
//! a BROKER resource: per broker (the resource names a broker id) or cluster-wide defaults
//! (an empty name). Which names may change without a restart, and which only per broker,
//! follows Kafka's `DynamicBrokerConfig` (`AllDynamicConfigs`, `PerBrokerConfigs`); names
//! and values are checked as its `validateConfigs` does, a failure being INVALID_CONFIG
//! (Kafka's `ConfigException`); a broker name that is not a non-negative integer is
//! INVALID_REQUEST, as `ControllerConfigurationValidator.validateBrokerName` says.
//!
//! The values are kept and described (sources DYNAMIC_BROKER_CONFIG and
//! DYNAMIC_DEFAULT_BROKER_CONFIG); the harness does not act on them.

use std::collections::BTreeMap;

use franzy::proto::ErrorCode;

use super::topic_config::{validate_topic_config, ConfigKind, TOPIC_CONFIGS};

/// Per-broker entries kept at most (the ids are any non-negative integer, as in KRaft).
pub const MAX_BROKER_ENTRIES: usize = 1024;

/// Who may set a dynamic broker config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Per broker or as the cluster-wide default.
    Any,
    /// Per broker only (listeners, keystores: Kafka's `PerBrokerConfigs`).
    PerBroker,
}

/// The dynamic broker configs that are not topic-config synonyms (those are all dynamic,
/// Kafka's `DynamicLogConfig`): thread pools, connection quotas, the log cleaner, listeners
/// and their TLS stores, replication throttles, producer state.
const DYNAMIC: &[(&str, ConfigKind, Scope)] = &[
    ("advertised.listeners", ConfigKind::String, Scope::PerBroker),
    ("background.threads", ConfigKind::Int, Scope::Any),
    (
        "follower.replication.throttled.rate",
        ConfigKind::Long,
        Scope::Any,
    ),
    (
        "leader.replication.throttled.rate",
        ConfigKind::Long,
        Scope::Any,
    ),
    (
        "listener.security.protocol.map",
        ConfigKind::String,
        Scope::PerBroker,
    ),
    ("listeners", ConfigKind::String, Scope::PerBroker),
    ("log.cleaner.backoff.ms", ConfigKind::Long, Scope::Any),
    (
        "log.cleaner.dedupe.buffer.size",
        ConfigKind::Long,
        Scope::Any,
    ),
    (
        "log.cleaner.io.buffer.load.factor",
        ConfigKind::Double,
        Scope::Any,
    ),
    ("log.cleaner.io.buffer.size", ConfigKind::Int, Scope::Any),
    (
        "log.cleaner.io.max.bytes.per.second",
        ConfigKind::Double,
        Scope::Any,
    ),
    ("log.cleaner.threads", ConfigKind::Int, Scope::Any),
    ("max.connection.creation.rate", ConfigKind::Int, Scope::Any),
    ("max.connections", ConfigKind::Int, Scope::Any),
    ("max.connections.per.ip", ConfigKind::Int, Scope::Any),
    (
        "max.connections.per.ip.overrides",
        ConfigKind::String,
        Scope::Any,
    ),
    ("metric.reporters", ConfigKind::List, Scope::Any),
    ("num.io.threads", ConfigKind::Int, Scope::Any),
    ("num.network.threads", ConfigKind::Int, Scope::Any),
    (
        "num.recovery.threads.per.data.dir",
        ConfigKind::Int,
        Scope::Any,
    ),
    ("num.replica.fetchers", ConfigKind::Int, Scope::Any),
    ("producer.id.expiration.ms", ConfigKind::Int, Scope::Any),
    (
        "replica.alter.log.dirs.io.max.bytes.per.second",
        ConfigKind::Long,
        Scope::Any,
    ),
    (
        "ssl.keystore.location",
        ConfigKind::String,
        Scope::PerBroker,
    ),
    (
        "ssl.keystore.password",
        ConfigKind::String,
        Scope::PerBroker,
    ),
    ("ssl.keystore.type", ConfigKind::String, Scope::PerBroker),
    (
        "ssl.truststore.location",
        ConfigKind::String,
        Scope::PerBroker,
    ),
    (
        "ssl.truststore.password",
        ConfigKind::String,
        Scope::PerBroker,
    ),
    ("ssl.truststore.type", ConfigKind::String, Scope::PerBroker),
    (
        "transaction.partition.verification.enable",
        ConfigKind::Boolean,
        Scope::Any,
    ),
];

/// Thread counts Kafka refuses below 1 (`DynamicThreadPool.validateReconfiguration`).
const AT_LEAST_ONE: &[&str] = &[
    "background.threads",
    "log.cleaner.threads",
    "num.io.threads",
    "num.network.threads",
    "num.recovery.threads.per.data.dir",
    "num.replica.fetchers",
];

/// The type of dynamic broker config `name` and who may set it; `None` when Kafka cannot
/// change it without a restart.
pub fn dynamic_broker_config(name: &str) -> Option<(ConfigKind, Scope)> {
    if let Some(def) = TOPIC_CONFIGS
        .iter()
        .find(|d| !d.broker_synonym.is_empty() && d.broker_synonym == name)
    {
        return Some((def.kind, Scope::Any));
    }
    DYNAMIC
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, kind, scope)| (*kind, *scope))
}

/// Whether a sensitive value (a password) is hidden when described, as Kafka hides it.
pub fn is_sensitive(name: &str) -> bool {
    name.ends_with(".password")
}

/// Checks `name` = `value` as a dynamic config of one broker (`per_broker`) or of the
/// cluster-wide default, as Kafka's `DynamicBrokerConfig.validateConfigs` does.
pub fn validate_broker_config(
    name: &str,
    value: Option<&str>,
    per_broker: bool,
) -> Result<(), (ErrorCode, String)> {
    let invalid = |message: String| Err((ErrorCode::InvalidConfig, message));
    let Some((kind, scope)) = dynamic_broker_config(name) else {
        return invalid(format!(
            "Cannot update these configs dynamically: Set({name})"
        ));
    };
    if scope == Scope::PerBroker && !per_broker {
        return invalid(format!(
            "Cannot update these configs at default cluster level, broker id must be specified: Set({name})"
        ));
    }
    let Some(value) = value else {
        return invalid(format!("Null value not supported for : {name}"));
    };
    if let Some(def) = TOPIC_CONFIGS
        .iter()
        .find(|d| !d.broker_synonym.is_empty() && d.broker_synonym == name)
    {
        // The topic config's own check, under the broker's name.
        return validate_topic_config(def.name, Some(value)).or_else(|message| {
            invalid(message.replace(
                &format!("for configuration {}:", def.name),
                &format!("for configuration {name}:"),
            ))
        });
    }
    let trimmed = value.trim();
    let wrong = |why: &str| {
        invalid(format!(
            "Invalid value {value} for configuration {name}: {why}"
        ))
    };
    match kind {
        ConfigKind::Boolean
            if !(trimmed.eq_ignore_ascii_case("true") || trimmed.eq_ignore_ascii_case("false")) =>
        {
            wrong("Expected value to be either true or false")
        }
        ConfigKind::Int => match trimmed.parse::<i32>() {
            Err(_) => wrong("Not a number of type INT"),
            Ok(n) if n < 1 && AT_LEAST_ONE.contains(&name) => wrong("Value must be at least 1"),
            Ok(_) => Ok(()),
        },
        ConfigKind::Long if trimmed.parse::<i64>().is_err() => wrong("Not a number of type LONG"),
        ConfigKind::Double if trimmed.parse::<f64>().is_err() => {
            wrong("Not a number of type DOUBLE")
        }
        _ => Ok(()),
    }
}

/// The dynamic broker configs set: per broker id, and the cluster-wide defaults.
#[derive(Debug, Clone, Default)]
pub struct BrokerConfigs {
    per_broker: BTreeMap<i32, BTreeMap<String, String>>,
    cluster_default: BTreeMap<String, String>,
}

impl BrokerConfigs {
    /// The configs set for broker `id` (`Some`) or as the cluster-wide default (`None`).
    pub fn of(&self, broker: Option<i32>) -> Option<&BTreeMap<String, String>> {
        match broker {
            Some(id) => self.per_broker.get(&id),
            None => Some(&self.cluster_default),
        }
    }

    /// Replaces what is set for broker `id` or the cluster-wide default; each value already
    /// validated. INVALID_REQUEST when it would keep more than [`MAX_BROKER_ENTRIES`]
    /// brokers' configs.
    pub fn set(
        &mut self,
        broker: Option<i32>,
        configs: BTreeMap<String, String>,
    ) -> Result<(), ErrorCode> {
        match broker {
            None => self.cluster_default = configs,
            Some(id) if configs.is_empty() => {
                self.per_broker.remove(&id);
            }
            Some(id) => {
                if !self.per_broker.contains_key(&id) && self.per_broker.len() >= MAX_BROKER_ENTRIES
                {
                    return Err(ErrorCode::InvalidRequest);
                }
                self.per_broker.insert(id, configs);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_values_are_checked_as_kafka_checks_them() {
        assert_eq!(
            validate_broker_config("log.retention.ms", Some("5"), false),
            Ok(())
        );
        assert_eq!(
            validate_broker_config("num.io.threads", Some("4"), false),
            Ok(())
        );
        let code = |name, value, per_broker| validate_broker_config(name, value, per_broker).err();
        assert_eq!(
            code("broker.id", Some("3"), true),
            Some((
                ErrorCode::InvalidConfig,
                "Cannot update these configs dynamically: Set(broker.id)".into()
            ))
        );
        assert_eq!(
            code("log.retention.ms", Some("soon"), true),
            Some((
                ErrorCode::InvalidConfig,
                "Invalid value soon for configuration log.retention.ms: Not a number of type LONG"
                    .into()
            ))
        );
        assert!(matches!(
            code("listeners", Some("PLAINTEXT://:9092"), false),
            Some((ErrorCode::InvalidConfig, m)) if m.contains("broker id must be specified")
        ));
        assert_eq!(
            validate_broker_config("listeners", Some("PLAINTEXT://:9092"), true),
            Ok(())
        );
        assert!(matches!(
            code("num.io.threads", Some("0"), true),
            Some((ErrorCode::InvalidConfig, m)) if m.contains("at least 1")
        ));
    }

    #[test]
    fn per_broker_entries_are_bounded() {
        let mut configs = BrokerConfigs::default();
        let one = BTreeMap::from([("num.io.threads".to_string(), "2".to_string())]);
        for id in 0..MAX_BROKER_ENTRIES as i32 {
            assert_eq!(configs.set(Some(id), one.clone()), Ok(()));
        }
        assert_eq!(
            configs.set(Some(-5 + i32::MAX), one.clone()),
            Err(ErrorCode::InvalidRequest)
        );
        // Emptied entries make room again.
        assert_eq!(configs.set(Some(0), BTreeMap::new()), Ok(()));
        assert_eq!(configs.set(Some(i32::MAX), one), Ok(()));
        assert_eq!(configs.of(Some(0)), None);
        assert_eq!(configs.of(None).map(BTreeMap::len), Some(0));
    }
}
