//! The round-robin assignor (Java's `RoundRobinAssignor`): every partition of every
//! subscribed topic, topics in name order, goes to the next member in `MemberInfo` order
//! that is subscribed to its topic.

use std::collections::{BTreeMap, BTreeSet};

use super::{
    empty_assignments, into_assignments, sorted_members, Assignment, GroupSubscription,
    PartitionAssignor,
};
use crate::topic_partition::TopicPartition;

/// `roundrobin`: partitions dealt out one at a time.
#[derive(Debug, Clone, Copy, Default)]
pub struct RoundRobinAssignor;

impl PartitionAssignor for RoundRobinAssignor {
    fn name(&self) -> &str {
        "roundrobin"
    }

    fn assign(&self, group: &GroupSubscription) -> Result<BTreeMap<String, Assignment>, String> {
        let mut assignment = empty_assignments(group);
        let members = sorted_members(group.members.iter());
        if members.is_empty() {
            return Ok(into_assignments(assignment));
        }
        let topics: BTreeSet<&String> = group
            .members
            .values()
            .flat_map(|subscription| &subscription.topics)
            .collect();
        let mut cursor = 0usize;
        for topic in topics {
            let Some(&count) = group.partitions_per_topic.get(topic) else {
                continue;
            };
            for partition in 0..count {
                // Java's CircularIterator: skip members not subscribed to the topic (one
                // is, since the topic came from some subscription).
                let mut skipped = 0;
                while !group.members[members[cursor % members.len()]]
                    .topics
                    .contains(topic)
                {
                    cursor += 1;
                    skipped += 1;
                    if skipped > members.len() {
                        return Err(format!("no member subscribes to {topic}"));
                    }
                }
                let member = members[cursor % members.len()];
                cursor += 1;
                if let Some(partitions) = assignment.get_mut(member) {
                    partitions.push(TopicPartition::new(topic.as_str(), partition));
                }
            }
        }
        Ok(into_assignments(assignment))
    }
}
