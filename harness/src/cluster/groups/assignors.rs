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

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
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
    let subscribers = |i: usize| {
        members[i]
            .topics
            .iter()
            .filter_map(|name| topics.get(*name).map(|info| info.id))
    };
    let mut least = LeastLoaded::new(members.len(), subscribers, &counts);
    for tp in &all {
        if owner.contains_key(tp) {
            continue;
        }
        if let Some(i) = least.pick(tp.0, &counts) {
            owner.insert(*tp, i);
            counts[i] += 1;
            least.push(tp.0, i, counts[i]);
        }
    }
    // Balance: a partition moves to a subscriber holding two or more fewer. Each move
    // lowers the sum of squared counts, so this ends; the bound keeps it linear anyway.
    for _ in 0..3 {
        let mut moved = false;
        let mut least = LeastLoaded::new(members.len(), subscribers, &counts);
        for tp in &all {
            let Some(&from) = owner.get(tp) else { continue };
            if let Some(to) = least.pick(tp.0, &counts) {
                if counts[to] + 1 < counts[from] && subscribes(to, tp.0) {
                    owner.insert(*tp, to);
                    counts[from] -= 1;
                    counts[to] += 1;
                    least.push(tp.0, from, counts[from]);
                    moved = true;
                }
                least.push(tp.0, to, counts[to]);
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

/// The least loaded subscriber of each topic, by a heap per topic whose entries are
/// checked against the counts when they surface (an outdated one goes back in with the
/// count of now): picking is logarithmic, not a scan of every member.
struct LeastLoaded {
    heaps: HashMap<Uuid, BinaryHeap<Reverse<(usize, usize)>>>,
}

impl LeastLoaded {
    fn new<I: Iterator<Item = Uuid>>(
        members: usize,
        topics_of: impl Fn(usize) -> I,
        counts: &[usize],
    ) -> Self {
        let mut heaps: HashMap<Uuid, BinaryHeap<Reverse<(usize, usize)>>> = HashMap::new();
        for (i, &count) in counts.iter().enumerate().take(members) {
            for topic in topics_of(i) {
                heaps.entry(topic).or_default().push(Reverse((count, i)));
            }
        }
        Self { heaps }
    }

    /// The subscriber of `topic` with the fewest partitions (ties: the first member).
    fn pick(&mut self, topic: Uuid, counts: &[usize]) -> Option<usize> {
        let heap = self.heaps.get_mut(&topic)?;
        while let Some(Reverse((count, i))) = heap.pop() {
            if counts[i] == count {
                return Some(i);
            }
            heap.push(Reverse((counts[i], i)));
        }
        None
    }

    /// Member `i` of `topic` now holds `count`.
    fn push(&mut self, topic: Uuid, i: usize, count: usize) {
        if let Some(heap) = self.heaps.get_mut(&topic) {
            heap.push(Reverse((count, i)));
        }
    }
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
    fn uniform_gives_every_partition_to_exactly_one_subscriber_whatever_the_subscriptions() {
        let seed: u64 = std::env::var("FRANZY_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(848);
        let mut x = seed;
        let mut next = move || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let names: Vec<Arc<str>> = (0..6).map(|i| Arc::from(format!("t{i}"))).collect();
        let topics: BTreeMap<Arc<str>, TopicInfo> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), topic(i as u128 + 1, 1 + (next() % 9) as i32)))
            .collect();
        let ids: Vec<Arc<str>> = (0..40).map(|i| Arc::from(format!("m{i:02}"))).collect();
        let mut previous: Option<BTreeMap<Arc<str>, Assignment>> = None;
        for round in 0..3 {
            let members: Vec<AssignorMember<'_>> = ids
                .iter()
                .map(|id| AssignorMember {
                    member_id: id,
                    topics: names.iter().filter(|_| next() % 3 == 0).collect(),
                    previous: previous.as_ref().and_then(|p| p.get(id)),
                })
                .collect();
            let result = assign(UNIFORM, &members, &topics);
            for (name, info) in &topics {
                let subscribed = members.iter().any(|m| m.topics.contains(name));
                for p in 0..info.partitions {
                    let owners: Vec<&AssignorMember<'_>> = members
                        .iter()
                        .filter(|m| {
                            result[m.member_id]
                                .get(&info.id)
                                .is_some_and(|ps| ps.contains(&p))
                        })
                        .collect();
                    let expected = usize::from(subscribed);
                    assert_eq!(
                        owners.len(),
                        expected,
                        "seed {seed} round {round}: {name}/{p}"
                    );
                    assert!(
                        owners.iter().all(|m| m.topics.contains(name)),
                        "seed {seed}"
                    );
                }
            }
            previous = Some(result);
        }
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
