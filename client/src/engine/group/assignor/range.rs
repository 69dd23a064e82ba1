//! The range assignor (Java's `RangeAssignor`, without rack awareness): for each topic
//! separately, the members subscribed to it in `MemberInfo` order take consecutive ranges of
//! its partitions, the first `partitions % members` one more than the rest.

use std::collections::BTreeMap;

use super::{
    empty_assignments, into_assignments, sorted_members, Assignment, GroupSubscription,
    PartitionAssignor,
};
use crate::topic_partition::TopicPartition;

/// `range`: per-topic ranges; co-partitioned topics go to the same members.
#[derive(Debug, Clone, Copy, Default)]
pub struct RangeAssignor;

impl PartitionAssignor for RangeAssignor {
    fn name(&self) -> &str {
        "range"
    }

    fn assign(&self, group: &GroupSubscription) -> Result<BTreeMap<String, Assignment>, String> {
        let mut assignment = empty_assignments(group);
        for (topic, &count) in &group.partitions_per_topic {
            if count <= 0 {
                continue;
            }
            let members = sorted_members(
                group
                    .members
                    .iter()
                    .filter(|(_, subscription)| subscription.topics.contains(topic)),
            );
            if members.is_empty() {
                continue;
            }
            let member_count = i32::try_from(members.len()).unwrap_or(i32::MAX);
            let per_member = count / member_count;
            let with_extra = count % member_count;
            let mut next = 0;
            for (index, member) in (0..).zip(&members) {
                let take = per_member + i32::from(index < with_extra);
                let partitions = assignment.entry((*member).to_string()).or_default();
                partitions.extend((next..next + take).map(|p| TopicPartition::new(topic, p)));
                next += take;
            }
        }
        Ok(into_assignments(assignment))
    }
}
