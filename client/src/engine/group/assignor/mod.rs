//! Partition assignors: how the group leader splits the subscribed topics' partitions among
//! the members (the "consumer" protocol type of the classic group protocol). Each built-in
//! assignor gives the Java client's output for the same input, so that franzy and Java
//! consumers can share a group whichever of them leads:
//!
//! | name | Java class | rebalance |
//! |---|---|---|
//! | `range` | `org.apache.kafka.clients.consumer.RangeAssignor` | eager |
//! | `roundrobin` | `org.apache.kafka.clients.consumer.RoundRobinAssignor` | eager |
//! | `sticky` | `org.apache.kafka.clients.consumer.StickyAssignor` | eager |
//! | `cooperative-sticky` | `org.apache.kafka.clients.consumer.CooperativeStickyAssignor` | cooperative (KIP-429) |
//!
//! Rack-aware assignment (KIP-881) is not done: consumers' `rack_id`s are carried in the
//! subscription but the assignors assign as if no rack were known, which is what Java does
//! when either the consumers or the partitions have no racks.
//!
//! A user assignor implements [`PartitionAssignor`]; give it to the consumer's builder. It
//! must be deterministic in its input: every member of the group may be the leader.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use bytes::Bytes;

use crate::topic_partition::TopicPartition;

mod range;
mod round_robin;
mod sticky;
#[cfg(test)]
mod tests;

pub use range::RangeAssignor;
pub use round_robin::RoundRobinAssignor;
pub use sticky::{CooperativeStickyAssignor, StickyAssignor};

/// How a rebalance treats the partitions a member owns (KIP-429).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RebalanceProtocol {
    /// Every member revokes everything before joining, and gets its new assignment after.
    Eager,
    /// Members keep what they own across the rebalance; only partitions that move are
    /// revoked, and they are assigned to their new owner in a follow-up rebalance.
    Cooperative,
}

/// One member's subscription, as the leader sees it in the JoinGroup answer (the
/// `ConsumerProtocolSubscription`, versions 0 to 3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subscription {
    /// The topics the member wants (for a pattern: the topics that match it).
    pub topics: Vec<String>,
    /// What the member's assignor put in `user_data` (the sticky assignors' state).
    pub user_data: Option<Bytes>,
    /// The partitions the member owns (v1+).
    pub owned_partitions: Vec<TopicPartition>,
    /// The generation those partitions were owned in (v2+); `None` if unknown.
    pub generation_id: Option<i32>,
    /// The member's `client.rack` (v3+).
    pub rack_id: Option<String>,
    /// The member's `group.instance.id` (from the JoinGroup answer, not the subscription).
    pub group_instance_id: Option<String>,
}

impl Subscription {
    /// A subscription to `topics` with nothing else.
    pub fn new(topics: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            topics: topics.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }
}

/// One member's assignment, as the leader hands it out in SyncGroup.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Assignment {
    /// The partitions.
    pub partitions: Vec<TopicPartition>,
    /// Assignor-specific data for the member.
    pub user_data: Option<Bytes>,
}

/// Everything an assignor's `assign` needs: the partition count of each subscribed topic
/// that exists (topics the metadata does not know, or that have no partition, are left
/// out, as Java does) and each member's subscription, by member id.
#[derive(Debug, Clone, Default)]
pub struct GroupSubscription {
    /// Partition count per topic.
    pub partitions_per_topic: BTreeMap<String, i32>,
    /// Subscriptions by member id.
    pub members: BTreeMap<String, Subscription>,
}

/// A partition assignor. Object-safe: the consumer keeps a list of `Box<dyn
/// PartitionAssignor>` in preference order (`partition.assignment.strategy`), and the group
/// coordinator picks the first one every member supports.
pub trait PartitionAssignor: Send + Sync + Debug {
    /// The protocol name sent in JoinGroup (`range`, `cooperative-sticky`, ...).
    fn name(&self) -> &str;

    /// The rebalance protocols it supports; the consumer uses the highest that every
    /// configured assignor supports (Java's rule). Default: eager only.
    fn supported_protocols(&self) -> Vec<RebalanceProtocol> {
        vec![RebalanceProtocol::Eager]
    }

    /// The `user_data` this member sends with its subscription, given what it owns now and
    /// the generation it got that in (-1 when none). Default: none.
    fn subscription_user_data(
        &self,
        _topics: &BTreeSet<String>,
        _owned: &[TopicPartition],
        _generation: i32,
    ) -> Option<Bytes> {
        None
    }

    /// Splits the partitions among the members. Every member of `group.members` gets an
    /// entry (possibly empty). An error fails the rebalance (the leader rejoins).
    fn assign(&self, group: &GroupSubscription) -> Result<BTreeMap<String, Assignment>, String>;
}

/// The built-in assignor called `name`: its protocol name (`range`, `roundrobin`, `sticky`,
/// `cooperative-sticky`) or its Java class name.
pub fn built_in(name: &str) -> Option<Box<dyn PartitionAssignor>> {
    const PACKAGE: &str = "org.apache.kafka.clients.consumer.";
    let short = name.strip_prefix(PACKAGE).unwrap_or(name);
    Some(match short {
        "range" | "RangeAssignor" => Box::new(RangeAssignor),
        "roundrobin" | "RoundRobinAssignor" => Box::new(RoundRobinAssignor),
        "sticky" | "StickyAssignor" => Box::new(StickyAssignor),
        "cooperative-sticky" | "CooperativeStickyAssignor" => Box::new(CooperativeStickyAssignor),
        _ => return None,
    })
}

/// The protocol name of a built-in assignor given by its protocol or Java class name.
pub fn canonical_name(name: &str) -> Option<&'static str> {
    const PACKAGE: &str = "org.apache.kafka.clients.consumer.";
    let short = name.strip_prefix(PACKAGE).unwrap_or(name);
    Some(match short {
        "range" | "RangeAssignor" => "range",
        "roundrobin" | "RoundRobinAssignor" => "roundrobin",
        "sticky" | "StickyAssignor" => "sticky",
        "cooperative-sticky" | "CooperativeStickyAssignor" => "cooperative-sticky",
        _ => return None,
    })
}

/// The rebalance protocol of a list of assignors: the highest one all of them support
/// (Java's `ConsumerCoordinator` constructor); `None` if they share none.
pub fn common_protocol(assignors: &[Box<dyn PartitionAssignor>]) -> Option<RebalanceProtocol> {
    let mut common: Option<BTreeSet<RebalanceProtocol>> = None;
    for assignor in assignors {
        let supported: BTreeSet<RebalanceProtocol> =
            assignor.supported_protocols().into_iter().collect();
        common = Some(match common {
            None => supported,
            Some(so_far) => so_far.intersection(&supported).copied().collect(),
        });
    }
    common.and_then(|set| set.into_iter().next_back())
}

/// Members in Java's `MemberInfo` order: static members first, by `group.instance.id`,
/// then the others by member id.
pub(super) fn sorted_members<'a>(
    members: impl Iterator<Item = (&'a String, &'a Subscription)>,
) -> Vec<&'a str> {
    let mut members: Vec<(&String, &Subscription)> = members.collect();
    members.sort_by(
        |(a_id, a), (b_id, b)| match (&a.group_instance_id, &b.group_instance_id) {
            (Some(a), Some(b)) => a.cmp(b),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a_id.cmp(b_id),
        },
    );
    members.into_iter().map(|(id, _)| id.as_str()).collect()
}

/// `keys` in the order a `java.util.HashMap` holding them iterates (`String.hashCode`,
/// spread, bucket index; keys sharing a bucket in sorted order). Where Java's assignors
/// iterate a member map and the order decides the outcome (which member keeps a partition
/// claimed twice, which of several over-quota members keeps the larger quota), iterating
/// in this order gives Java's answer.
pub(super) fn java_hash_map_order<'a>(keys: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut keys: Vec<&str> = keys.collect();
    let mut capacity = 16usize;
    // Java resizes once the size exceeds 3/4 of the table.
    while keys.len() * 4 > capacity * 3 {
        capacity *= 2;
    }
    let bucket = |key: &str| {
        let hash = key.encode_utf16().fold(0i32, |h, unit| {
            h.wrapping_mul(31).wrapping_add(i32::from(unit))
        });
        let spread = hash ^ ((hash as u32) >> 16) as i32;
        (spread as u32 as usize) & (capacity - 1)
    };
    keys.sort_by(|a, b| bucket(a).cmp(&bucket(b)).then(a.cmp(b)));
    keys
}

/// An empty assignment for every member.
fn empty_assignments(group: &GroupSubscription) -> BTreeMap<String, Vec<TopicPartition>> {
    group
        .members
        .keys()
        .map(|member| (member.clone(), Vec::new()))
        .collect()
}

fn into_assignments(
    partitions: BTreeMap<String, Vec<TopicPartition>>,
) -> BTreeMap<String, Assignment> {
    partitions
        .into_iter()
        .map(|(member, partitions)| {
            (
                member,
                Assignment {
                    partitions,
                    user_data: None,
                },
            )
        })
        .collect()
}
