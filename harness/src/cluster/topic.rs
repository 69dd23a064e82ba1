//! A topic: name, id, configs and partitions, and Kafka's rules for topic names.

use std::collections::BTreeMap;

use franzy::proto::ErrorCode;
use uuid::Uuid;

use super::error::ClusterError;
use super::partition::Partition;

/// The longest legal topic name (Kafka's `Topic.MAX_NAME_LENGTH`).
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// One topic.
#[derive(Debug, Clone, PartialEq)]
pub struct Topic {
    pub(crate) name: String,
    pub(crate) id: Uuid,
    pub(crate) configs: BTreeMap<String, String>,
    pub(crate) partitions: Vec<Partition>,
    /// Where replica placement started (Kafka picks it at random), so that added partitions
    /// continue the same pattern.
    pub(crate) placement_start: usize,
}

impl Topic {
    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The topic id (KIP-516).
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// Configs set on the topic (not the defaults).
    pub fn configs(&self) -> &BTreeMap<String, String> {
        &self.configs
    }

    /// The value of config `key` if it is set on the topic.
    pub fn config(&self, key: &str) -> Option<&str> {
        self.configs.get(key).map(String::as_str)
    }

    /// All partitions, by index.
    pub fn partitions(&self) -> &[Partition] {
        &self.partitions
    }

    /// Partition `index`.
    pub fn partition(&self, index: i32) -> Option<&Partition> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.partitions.get(i))
    }

    pub(crate) fn partition_mut(&mut self, index: i32) -> Option<&mut Partition> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.partitions.get_mut(i))
    }

    /// Whether this is one of Kafka's internal topics.
    pub fn is_internal(&self) -> bool {
        is_internal_topic(&self.name)
    }
}

/// Kafka's internal topics.
pub fn is_internal_topic(name: &str) -> bool {
    matches!(
        name,
        "__consumer_offsets" | "__transaction_state" | "__share_group_state"
    )
}

/// Checks a topic name as Kafka's `Topic.validate` does: INVALID_TOPIC_EXCEPTION unless it
/// is 1 to 249 characters of `[a-zA-Z0-9._-]` and not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), ClusterError> {
    let invalid = |why: String| Err(ClusterError::new(ErrorCode::InvalidTopicException, why));
    if name.is_empty() {
        return invalid("Topic name is illegal, it can't be empty".into());
    }
    if name == "." || name == ".." {
        return invalid("Topic name cannot be \".\" or \"..\"".into());
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return invalid(format!(
            "Topic name is illegal, it can't be longer than {MAX_TOPIC_NAME_LEN} characters, topic name: {name}"
        ));
    }
    if !name
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
    {
        return invalid(format!(
            "Topic name {name} is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// The form under which Kafka considers two names to collide (`.` and `_` are the same in
/// metric names).
pub fn unify_collision_chars(name: &str) -> String {
    name.replace('.', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka() {
        assert!(validate_topic_name("orders-v1.eu_west").is_ok());
        assert!(validate_topic_name(&"a".repeat(249)).is_ok());
        for bad in ["", ".", "..", "with space", "ünï", "a/b"] {
            let err = validate_topic_name(bad).expect_err(bad);
            assert_eq!(err.code, ErrorCode::InvalidTopicException);
        }
        assert!(validate_topic_name(&"a".repeat(250)).is_err());
        assert_eq!(unify_collision_chars("a.b_c"), "a_b_c");
    }
}
