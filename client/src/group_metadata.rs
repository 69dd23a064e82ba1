//! What a transactional producer needs to know about a consumer group member, so that the
//! offsets it sends to a transaction (`TxnOffsetCommit`) are fenced as the member's own
//! commits would be (KIP-447). A leaf: it imports nothing of the crate.

/// A consumer group member as seen at one generation: Java's `ConsumerGroupMetadata`.
///
/// A group consumer hands it out for its current generation; a producer's
/// `send_offsets_to_transaction` sends it with the offsets, and the group coordinator refuses
/// them if the member has since been replaced or the generation has moved on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ConsumerGroupMetadata {
    /// The group id.
    pub group_id: String,
    /// The generation the member belongs to; -1 when unknown (offsets are then checked
    /// against the group id only, as before KIP-447).
    pub generation_id: i32,
    /// The member id the coordinator gave; empty when unknown.
    pub member_id: String,
    /// The static member's `group.instance.id`, if any (KIP-345).
    pub group_instance_id: Option<String>,
}

impl ConsumerGroupMetadata {
    /// Metadata carrying only the group id: no generation or member checks (Java's
    /// `new ConsumerGroupMetadata(groupId)`).
    pub fn new(group_id: impl Into<String>) -> Self {
        Self {
            group_id: group_id.into(),
            generation_id: -1,
            member_id: String::new(),
            group_instance_id: None,
        }
    }

    /// Metadata of one member at one generation.
    pub fn member(
        group_id: impl Into<String>,
        generation_id: i32,
        member_id: impl Into<String>,
        group_instance_id: Option<String>,
    ) -> Self {
        Self {
            group_id: group_id.into(),
            generation_id,
            member_id: member_id.into(),
            group_instance_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_only_metadata_checks_nothing_but_the_group() {
        let metadata = ConsumerGroupMetadata::new("orders");
        assert_eq!(metadata.generation_id, -1);
        assert!(metadata.member_id.is_empty() && metadata.group_instance_id.is_none());
        let member = ConsumerGroupMetadata::member("orders", 3, "m-1", Some("i-1".into()));
        assert_ne!(metadata, member);
        assert_eq!(member.generation_id, 3);
    }
}
