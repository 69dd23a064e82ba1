//! The server-side assignors of KIP-848's consumer groups (`group.consumer.assignors`):
//! `uniform` (Kafka's `UniformAssignor`, the default) and `range` (Kafka's server-side
//! `RangeAssignor`). They compute a group's target assignment from its members'
//! subscriptions, the subscribed topics and the previous target assignment.
//!
//! Both are deterministic: members are ordered by member id and topics by name, so the
//! same group gives the same assignment on every run. They keep Kafka's properties, not
//! its exact choices:
//! - `uniform`: every partition of a subscribed topic goes to one member subscribed to it;
//!   when all members subscribe to the same topics, every member gets `⌊P/M⌋` or `⌈P/M⌉`
//!   partitions and keeps as many of its previous partitions as that allows (Kafka's
//!   `OptimizedUniformAssignmentBuilder`). With different subscriptions, previous owners keep
//!   their partitions, the rest go to the least loaded subscriber, then partitions move from
//!   a member to a subscriber holding two or more fewer (a simpler stand-in for Kafka's
//!   `GeneralUniformAssignmentBuilder`).
//! - `range`: per topic, its subscribers sorted by member id get contiguous ranges, the first
//!   `P mod M` one partition more (co-partitioned topics land on the same member).
//!
//! Rack-aware placement (members' `rack_id` against replica racks) is not done: the
//! harness's brokers have no racks.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use uuid::Uuid;

/// A member's partitions by topic id.
pub type Assignment = BTreeMap<Uuid, BTreeSet<i32>>;

/// Kafka's `UniformAssignor.NAME`.
pub const UNIFORM: &str = "uniform";
/// Kafka's `RangeAssignor.NAME`.
pub const RANGE: &str = "range";

/// A subscribed topic: its id and partition count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicInfo {
    /// The topic id.
    pub id: Uuid,
    /// How many partitions.
    pub partitions: i32,
}

/// A member as the assignor sees it.
#[derive(Debug, Clone)]
pub struct AssignorMember<'a> {
    /// Its id.
    pub member_id: &'a Arc<str>,
    /// The subscribed topics that exist (names resolved, regexes matched).
    pub topics: BTreeSet<&'a Arc<str>>,
    /// Its previous target assignment.
    pub previous: Option<&'a Assignment>,
}

/// Computes a target assignment with assignor `name` (one of [`UNIFORM`], [`RANGE`]; any
/// other is taken as uniform: names are checked when requests name them).
pub fn assign(
    name: &str,
    members: &[AssignorMember<'_>],
    topics: &BTreeMap<Arc<str>, TopicInfo>,
) -> BTreeMap<Arc<str>, Assignment> {
    if name == RANGE {
        range(members, topics)
    } else {
        uniform(members, topics)
    }
}

fn empty_result(members: &[AssignorMember<'_>]) -> BTreeMap<Arc<str>, Assignment> {
    members
        .iter()
        .map(|m| (m.member_id.clone(), Assignment::new()))
        .collect()
}

/// Kafka's server-side range assignor, without stickiness.
fn range(
    members: &[AssignorMember<'_>],
    topics: &BTreeMap<Arc<str>, TopicInfo>,
) -> BTreeMap<Arc<str>, Assignment> {
    let mut result = empty_result(members);
    for (name, info) in topics {
        let subscribers: Vec<&Arc<str>> = members
            .iter()
            .filter(|m| m.topics.contains(name))
            .map(|m| m.member_id)
            .collect();
        if subscribers.is_empty() || info.partitions <= 0 {
            continue;
        }
        let count = subscribers.len();
        let total = usize::try_from(info.partitions).unwrap_or(0);
        let (quota, extra) = (total / count, total % count);
        let mut next = 0i32;
        for (i, member) in subscribers.iter().enumerate() {
            let take = quota + usize::from(i < extra);
            let partitions: BTreeSet<i32> = (0..take)
                .map(|k| next + i32::try_from(k).unwrap_or(i32::MAX))
                .collect();
            next = next.saturating_add(i32::try_from(take).unwrap_or(i32::MAX));
            if !partitions.is_empty() {
                if let Some(assignment) = result.get_mut(*member) {
                    assignment.insert(info.id, partitions);
                }
            }
        }
    }
    result
}

/// Kafka's uniform assignor: balanced and sticky (see the module doc).
fn uniform(
    members: &[AssignorMember<'_>],
    topics: &BTreeMap<Arc<str>, TopicInfo>,
) -> BTreeMap<Arc<str>, Assignment> {
    if members.is_empty() {
        return BTreeMap::new();
    }
    let homogeneous = members.windows(2).all(|w| w[0].topics == w[1].topics);
    if homogeneous {
        uniform_homogeneous(members, topics)
    } else {
        uniform_heterogeneous(members, topics)
    }
}

/// Every partition of the topics `member` subscribes to, in topic-name order.
fn partitions_of<'t>(
    subscribed: impl Iterator<Item = &'t Arc<str>>,
    topics: &BTreeMap<Arc<str>, TopicInfo>,
) -> Vec<(Uuid, i32)> {
    let mut all = Vec::new();
    for name in subscribed {
        if let Some(info) = topics.get(name) {
            all.extend((0..info.partitions.max(0)).map(|p| (info.id, p)));
        }
    }
    all
}

fn uniform_homogeneous(
    members: &[AssignorMember<'_>],
    topics: &BTreeMap<Arc<str>, TopicInfo>,
) -> BTreeMap<Arc<str>, Assignment> {
    let all = partitions_of(members[0].topics.iter().copied(), topics);
    let valid: BTreeSet<(Uuid, i32)> = all.iter().copied().collect();
    let count = members.len();
    let min_quota = all.len() / count;
    let mut extra = all.len() % count;
    let mut owned: BTreeSet<(Uuid, i32)> = BTreeSet::new();
    let mut kept: Vec<Vec<(Uuid, i32)>> = Vec::with_capacity(count);
    // Members keep their previous partitions, up to their quota.
    for member in members {
        let mut mine: Vec<(Uuid, i32)> = member
            .previous
            .into_iter()
            .flat_map(|a| {
                a.iter()
                    .flat_map(|(t, ps)| ps.iter().map(move |p| (*t, *p)))
            })
            .filter(|tp| valid.contains(tp) && !owned.contains(tp))
            .collect();
        let cap = if mine.len() > min_quota && extra > 0 {
            extra -= 1;
            min_quota + 1
        } else {
            min_quota
        };
        mine.truncate(cap);
        owned.extend(mine.iter().copied());
        kept.push(mine);
    }
    // The rest fill members to the minimum quota, then one more each while extras last.
    let mut free = all.into_iter().filter(|tp| !owned.contains(tp));
    for mine in kept.iter_mut() {
        while mine.len() < min_quota {
            match free.next() {
                Some(tp) => mine.push(tp),
                None => break,
            }
        }
    }
    for mine in kept.iter_mut() {
        if mine.len() == min_quota {
            match free.next() {
                Some(tp) => mine.push(tp),
                None => break,
            }
        }
    }
    members
        .iter()
        .zip(kept)
        .map(|(member, mine)| (member.member_id.clone(), to_assignment(mine)))
        .collect()
}

fn uniform_heterogeneous(
    members: &[AssignorMember<'_>],
    topics: &BTreeMap<Arc<str>, TopicInfo>,
) -> BTreeMap<Arc<str>, Assignment> {
    let ids_to_names: BTreeMap<Uuid, &Arc<str>> =
        topics.iter().map(|(name, info)| (info.id, name)).collect();
    let union: BTreeSet<&Arc<str>> = members
        .iter()
        .flat_map(|m| m.topics.iter().copied())
        .collect();
    let all = partitions_of(union.into_iter(), topics);
    let mut owner: BTreeMap<(Uuid, i32), usize> = BTreeMap::new();
    let mut counts = vec![0usize; members.len()];
    let subscribes = |member: usize, topic: Uuid| {
        ids_to_names
            .get(&topic)
            .is_some_and(|name| members[member].topics.contains(name))
    };
    let valid: BTreeSet<(Uuid, i32)> = all.iter().copied().collect();
    for (i, member) in members.iter().enumerate() {
        for (topic, partitions) in member.previous.into_iter().flatten() {
            for &p in partitions {
                if valid.contains(&(*topic, p))
                    && subscribes(i, *topic)
                    && !owner.contains_key(&(*topic, p))
                {
                    owner.insert((*topic, p), i);
                    counts[i] += 1;
                }
            }
        }
    }
    for tp in &all {
        if owner.contains_key(tp) {
            continue;
        }
        let least = (0..members.len())
            .filter(|&i| subscribes(i, tp.0))
            .min_by_key(|&i| (counts[i], i));
        if let Some(i) = least {
            owner.insert(*tp, i);
            counts[i] += 1;
        }
    }
    // Balance: a partition moves to a subscriber holding two or more fewer. Each move
    // lowers the sum of squared counts, so this ends; the bound keeps it linear anyway.
    for _ in 0..3 {
        let mut moved = false;
        for tp in &all {
            let Some(&from) = owner.get(tp) else { continue };
            let to = (0..members.len())
                .filter(|&i| subscribes(i, tp.0))
                .min_by_key(|&i| (counts[i], i));
            if let Some(to) = to {
                if counts[to] + 1 < counts[from] {
                    owner.insert(*tp, to);
                    counts[from] -= 1;
                    counts[to] += 1;
                    moved = true;
                }
            }
        }
        if !moved {
            break;
        }
    }
    let mut result = empty_result(members);
    for ((topic, p), i) in owner {
        if let Some(assignment) = result.get_mut(members[i].member_id) {
            assignment.entry(topic).or_default().insert(p);
        }
    }
    result
}

fn to_assignment(partitions: Vec<(Uuid, i32)>) -> Assignment {
    let mut assignment = Assignment::new();
    for (topic, p) in partitions {
        assignment.entry(topic).or_default().insert(p);
    }
    assignment
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(n: u128, partitions: i32) -> TopicInfo {
        TopicInfo {
            id: Uuid::from_u128(n),
            partitions,
        }
    }

    fn count(a: &Assignment) -> usize {
        a.values().map(BTreeSet::len).sum()
    }

    fn names(list: &[&str]) -> Vec<Arc<str>> {
        list.iter().map(|s| Arc::from(*s)).collect()
    }

    #[test]
    fn uniform_balances_homogeneous_members_and_keeps_what_it_can() {
        let topics: BTreeMap<Arc<str>, TopicInfo> =
            [(Arc::from("a"), topic(1, 5)), (Arc::from("b"), topic(2, 2))].into();
        let ids = names(&["m1", "m2", "m3"]);
        let a: Arc<str> = Arc::from("a");
        let b: Arc<str> = Arc::from("b");
        let subscribed: BTreeSet<&Arc<str>> = [&a, &b].into();
        let members: Vec<AssignorMember<'_>> = ids
            .iter()
            .map(|id| AssignorMember {
                member_id: id,
                topics: subscribed.clone(),
                previous: None,
            })
            .collect();
        let first = assign(UNIFORM, &members, &topics);
        let mut counts: Vec<usize> = first.values().map(count).collect();
        counts.sort_unstable();
        assert_eq!(counts, vec![2, 2, 3]);
        let all: BTreeSet<(Uuid, i32)> = first
            .values()
            .flat_map(|a| {
                a.iter()
                    .flat_map(|(t, ps)| ps.iter().map(move |p| (*t, *p)))
            })
            .collect();
        assert_eq!(all.len(), 7, "every partition once");
        // m3 leaves: m1 and m2 keep theirs and share m3's.
        let members2: Vec<AssignorMember<'_>> = ids[..2]
            .iter()
            .map(|id| AssignorMember {
                member_id: id,
                topics: subscribed.clone(),
                previous: first.get(id),
            })
            .collect();
        let second = assign(UNIFORM, &members2, &topics);
        for id in &ids[..2] {
            let before = &first[id];
            let after = &second[id];
            for (t, ps) in before {
                assert!(ps.is_subset(&after[t]), "{id} keeps its partitions");
            }
        }
        let mut counts: Vec<usize> = second.values().map(count).collect();
        counts.sort_unstable();
        assert_eq!(counts, vec![3, 4]);
    }

    #[test]
    fn uniform_with_different_subscriptions_gives_each_partition_to_a_subscriber() {
        let topics: BTreeMap<Arc<str>, TopicInfo> =
            [(Arc::from("a"), topic(1, 4)), (Arc::from("b"), topic(2, 4))].into();
        let ids = names(&["m1", "m2"]);
        let a: Arc<str> = Arc::from("a");
        let b: Arc<str> = Arc::from("b");
        let members = vec![
            AssignorMember {
                member_id: &ids[0],
                topics: [&a, &b].into(),
                previous: None,
            },
            AssignorMember {
                member_id: &ids[1],
                topics: [&b].into(),
                previous: None,
            },
        ];
        let result = assign(UNIFORM, &members, &topics);
        assert!(
            !result[&ids[1]].contains_key(&Uuid::from_u128(1)),
            "m2 never gets a"
        );
        assert_eq!(result[&ids[0]][&Uuid::from_u128(1)].len(), 4);
        assert_eq!(count(&result[&ids[0]]) + count(&result[&ids[1]]), 8);
        assert_eq!(count(&result[&ids[1]]), 4, "balanced: 4 and 4");
    }

    #[test]
    fn range_gives_contiguous_ranges_in_member_order() {
        let topics: BTreeMap<Arc<str>, TopicInfo> = [(Arc::from("a"), topic(1, 5))].into();
        let ids = names(&["m1", "m2"]);
        let a: Arc<str> = Arc::from("a");
        let members: Vec<AssignorMember<'_>> = ids
            .iter()
            .map(|id| AssignorMember {
                member_id: id,
                topics: [&a].into(),
                previous: None,
            })
            .collect();
        let result = assign(RANGE, &members, &topics);
        assert_eq!(result[&ids[0]][&Uuid::from_u128(1)], [0, 1, 2].into());
        assert_eq!(result[&ids[1]][&Uuid::from_u128(1)], [3, 4].into());
    }
}
