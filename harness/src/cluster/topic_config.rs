//! The topic-level configs Kafka knows, with their defaults, types and broker-level
//! synonyms (Kafka's `TopicConfig` / `LogConfig`, 4.0 defaults). Used to validate
//! CreateTopics configs and to answer DescribeConfigs.

/// A config's value type, as DescribeConfigs v3+ reports it (`ConfigType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigKind {
    /// `true` or `false`.
    Boolean,
    /// Free text or one of a set of names.
    String,
    /// 32-bit integer.
    Int,
    /// 64-bit integer.
    Long,
    /// Floating point.
    Double,
    /// Comma-separated list.
    List,
}

impl ConfigKind {
    /// The wire code of `DescribeConfigsResourceResult.config_type`.
    pub fn code(self) -> i8 {
        match self {
            Self::Boolean => 1,
            Self::String => 2,
            Self::Int => 3,
            Self::Long => 5,
            Self::Double => 6,
            Self::List => 7,
        }
    }
}

/// One topic config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicConfigDef {
    /// The topic-level name (`retention.ms`).
    pub name: &'static str,
    /// The broker config that supplies the default (`log.retention.ms`), or "" if none.
    pub broker_synonym: &'static str,
    /// Kafka's default value.
    pub default: &'static str,
    /// The value type.
    pub kind: ConfigKind,
    /// The smallest allowed numeric value, if bounded.
    pub min: Option<i64>,
    /// The allowed values, for enumerations (list items for `List`).
    pub allowed: &'static [&'static str],
}

const fn def(
    name: &'static str,
    broker_synonym: &'static str,
    default: &'static str,
    kind: ConfigKind,
) -> TopicConfigDef {
    TopicConfigDef {
        name,
        broker_synonym,
        default,
        kind,
        min: None,
        allowed: &[],
    }
}

const fn at_least(d: TopicConfigDef, min: i64) -> TopicConfigDef {
    TopicConfigDef {
        min: Some(min),
        ..d
    }
}

const fn one_of(d: TopicConfigDef, allowed: &'static [&'static str]) -> TopicConfigDef {
    TopicConfigDef { allowed, ..d }
}

const LONG_MAX: &str = "9223372036854775807";

use ConfigKind::{Boolean, Double, Int, List, Long, String};

/// Every topic config, in name order.
pub static TOPIC_CONFIGS: &[TopicConfigDef] = &[
    one_of(
        def("cleanup.policy", "log.cleanup.policy", "delete", List),
        &["compact", "delete"],
    ),
    at_least(
        def(
            "compression.gzip.level",
            "compression.gzip.level",
            "-1",
            Int,
        ),
        -1,
    ),
    def("compression.lz4.level", "compression.lz4.level", "9", Int),
    one_of(
        def("compression.type", "compression.type", "producer", String),
        &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"],
    ),
    def("compression.zstd.level", "compression.zstd.level", "3", Int),
    at_least(
        def(
            "delete.retention.ms",
            "log.cleaner.delete.retention.ms",
            "86400000",
            Long,
        ),
        0,
    ),
    at_least(
        def(
            "file.delete.delay.ms",
            "log.segment.delete.delay.ms",
            "60000",
            Long,
        ),
        0,
    ),
    at_least(
        def(
            "flush.messages",
            "log.flush.interval.messages",
            LONG_MAX,
            Long,
        ),
        1,
    ),
    at_least(def("flush.ms", "log.flush.interval.ms", LONG_MAX, Long), 0),
    def(
        "follower.replication.throttled.replicas",
        "follower.replication.throttled.replicas",
        "",
        List,
    ),
    at_least(
        def(
            "index.interval.bytes",
            "log.index.interval.bytes",
            "4096",
            Int,
        ),
        0,
    ),
    def(
        "leader.replication.throttled.replicas",
        "leader.replication.throttled.replicas",
        "",
        List,
    ),
    at_least(
        def(
            "local.retention.bytes",
            "log.local.retention.bytes",
            "-2",
            Long,
        ),
        -2,
    ),
    at_least(
        def("local.retention.ms", "log.local.retention.ms", "-2", Long),
        -2,
    ),
    at_least(
        def(
            "max.compaction.lag.ms",
            "log.cleaner.max.compaction.lag.ms",
            LONG_MAX,
            Long,
        ),
        1,
    ),
    at_least(
        def("max.message.bytes", "message.max.bytes", "1048588", Int),
        0,
    ),
    at_least(
        def(
            "message.timestamp.after.max.ms",
            "log.message.timestamp.after.max.ms",
            "3600000",
            Long,
        ),
        0,
    ),
    at_least(
        def(
            "message.timestamp.before.max.ms",
            "log.message.timestamp.before.max.ms",
            LONG_MAX,
            Long,
        ),
        0,
    ),
    one_of(
        def(
            "message.timestamp.type",
            "log.message.timestamp.type",
            "CreateTime",
            String,
        ),
        &["CreateTime", "LogAppendTime"],
    ),
    def(
        "min.cleanable.dirty.ratio",
        "log.cleaner.min.cleanable.ratio",
        "0.5",
        Double,
    ),
    at_least(
        def(
            "min.compaction.lag.ms",
            "log.cleaner.min.compaction.lag.ms",
            "0",
            Long,
        ),
        0,
    ),
    at_least(
        def("min.insync.replicas", "min.insync.replicas", "1", Int),
        1,
    ),
    def("preallocate", "log.preallocate", "false", Boolean),
    def("remote.log.copy.disable", "", "false", Boolean),
    def("remote.log.delete.on.disable", "", "false", Boolean),
    def("remote.storage.enable", "", "false", Boolean),
    at_least(
        def("retention.bytes", "log.retention.bytes", "-1", Long),
        i64::MIN,
    ),
    at_least(
        def("retention.ms", "log.retention.ms", "604800000", Long),
        -1,
    ),
    at_least(
        def("segment.bytes", "log.segment.bytes", "1073741824", Int),
        1024 * 1024,
    ),
    at_least(
        def(
            "segment.index.bytes",
            "log.index.size.max.bytes",
            "10485760",
            Int,
        ),
        4,
    ),
    at_least(def("segment.jitter.ms", "log.roll.jitter.ms", "0", Long), 0),
    at_least(def("segment.ms", "log.roll.ms", "604800000", Long), 1),
    def(
        "unclean.leader.election.enable",
        "unclean.leader.election.enable",
        "false",
        Boolean,
    ),
];

/// The definition of topic config `name`.
pub fn topic_config_def(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// Checks one topic config as Kafka does on CreateTopics; the error is the message of an
/// INVALID_CONFIG answer.
pub fn validate_topic_config(name: &str, value: Option<&str>) -> Result<(), std::string::String> {
    let Some(def) = topic_config_def(name) else {
        return Err(format!("Unknown topic config name: {name}"));
    };
    let Some(value) = value else {
        return Err(format!(
            "Null value not supported for topic configs: {name}"
        ));
    };
    let invalid = |why: &str| {
        Err(format!(
            "Invalid value {value} for configuration {name}: {why}"
        ))
    };
    let trimmed = value.trim();
    let number = match def.kind {
        ConfigKind::Boolean => {
            if trimmed.eq_ignore_ascii_case("true") || trimmed.eq_ignore_ascii_case("false") {
                return Ok(());
            }
            return invalid("Expected value to be either true or false");
        }
        ConfigKind::Int => match trimmed.parse::<i32>() {
            Ok(n) => i64::from(n),
            Err(_) => return invalid("Not a number of type INT"),
        },
        ConfigKind::Long => match trimmed.parse::<i64>() {
            Ok(n) => n,
            Err(_) => return invalid("Not a number of type LONG"),
        },
        ConfigKind::Double => {
            return match trimmed.parse::<f64>() {
                Ok(_) => Ok(()),
                Err(_) => invalid("Not a number of type DOUBLE"),
            }
        }
        ConfigKind::String => {
            if !def.allowed.is_empty() && !def.allowed.contains(&trimmed) {
                return invalid(&format!(
                    "String must be one of: {}",
                    def.allowed.join(", ")
                ));
            }
            return Ok(());
        }
        ConfigKind::List => {
            if !def.allowed.is_empty() {
                for item in trimmed.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    if !def.allowed.contains(&item) {
                        return invalid(&format!(
                            "{item} is not one of: {}",
                            def.allowed.join(", ")
                        ));
                    }
                }
            }
            return Ok(());
        }
    };
    match def.min {
        Some(min) if number < min => invalid(&format!("Value must be at least {min}")),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_and_defaults_validate() {
        for pair in TOPIC_CONFIGS.windows(2) {
            assert!(
                pair[0].name < pair[1].name,
                "{} before {}",
                pair[0].name,
                pair[1].name
            );
        }
        for d in TOPIC_CONFIGS {
            assert_eq!(
                validate_topic_config(d.name, Some(d.default)),
                Ok(()),
                "{}",
                d.name
            );
        }
    }

    #[test]
    fn unknown_names_bad_types_and_bad_enums_are_rejected() {
        assert!(validate_topic_config("no.such.config", Some("1")).is_err());
        assert!(validate_topic_config("retention.ms", Some("soon")).is_err());
        assert!(validate_topic_config("retention.ms", None).is_err());
        assert!(validate_topic_config("min.insync.replicas", Some("0")).is_err());
        assert!(validate_topic_config("message.timestamp.type", Some("Whenever")).is_err());
        assert!(validate_topic_config("cleanup.policy", Some("compact,delete")).is_ok());
        assert!(validate_topic_config("cleanup.policy", Some("shred")).is_err());
        assert!(validate_topic_config("preallocate", Some("TRUE")).is_ok());
    }
}
