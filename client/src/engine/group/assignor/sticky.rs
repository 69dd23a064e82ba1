//! The sticky assignors (Java's `AbstractStickyAssignor`, `StickyAssignor`,
//! `CooperativeStickyAssignor`; KIP-54, KIP-341, KIP-429, KIP-792): a balanced assignment
//! that keeps as many partitions as it can with the member that owned them.
//!
//! Two builders, as in Java. When every member subscribes to the same topics, the
//! *constrained* builder gives each member its owned partitions up to its quota (`⌊P/N⌋`, or
//! `⌈P/N⌉` for the first `P mod N` members that own that many) and deals the rest out
//! round-robin to the members under quota, in member-id order. Otherwise the *general*
//! builder keeps owned partitions, gives each unassigned partition to the least-loaded
//! member that can take it, then moves partitions from the most to the least loaded member
//! until no member could take one from a member with two more, and keeps the result only if
//! it is better balanced than before.
//!
//! Owned partitions count only for the newest generation claiming them: a partition claimed
//! by two members of one generation is owned by neither; a member whose claim is from an
//! older generation loses it to the newer one (`allSubscriptionsEqual`).
//!
//! The cooperative assignor then removes from the assignment every partition that moves from
//! one member to another ("transferring ownership"): its owner revokes it in this
//! rebalance, and the follow-up rebalance assigns it to its new owner.
//!
//! Where Java iterates a `HashMap` (members, owned partitions), this iterates in member-id
//! order; the outputs agree with Java's unit tests, which do not depend on that order.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{
    into_assignments, java_hash_map_order, Assignment, GroupSubscription, PartitionAssignor,
    RebalanceProtocol, Subscription,
};
use crate::topic_partition::TopicPartition;

/// Java's `DEFAULT_GENERATION`.
const DEFAULT_GENERATION: i32 = -1;

/// `sticky`: balanced and sticky, eager (every partition is revoked before rejoining; the
/// owned partitions travel in `user_data`).
#[derive(Debug, Clone, Copy, Default)]
pub struct StickyAssignor;

/// `cooperative-sticky`: balanced and sticky, cooperative (KIP-429): only partitions that
/// move are revoked.
#[derive(Debug, Clone, Copy, Default)]
pub struct CooperativeStickyAssignor;

impl PartitionAssignor for StickyAssignor {
    fn name(&self) -> &str {
        "sticky"
    }

    fn subscription_user_data(
        &self,
        _topics: &BTreeSet<String>,
        owned: &[TopicPartition],
        generation: i32,
    ) -> Option<Bytes> {
        Some(encode_sticky_user_data(owned, Some(generation)))
    }

    fn assign(&self, group: &GroupSubscription) -> Result<BTreeMap<String, Assignment>, String> {
        let outcome = assign_sticky(group, sticky_member_data)?;
        Ok(into_assignments(outcome.assignment))
    }
}

impl PartitionAssignor for CooperativeStickyAssignor {
    fn name(&self) -> &str {
        "cooperative-sticky"
    }

    fn supported_protocols(&self) -> Vec<RebalanceProtocol> {
        vec![RebalanceProtocol::Cooperative, RebalanceProtocol::Eager]
    }

    fn subscription_user_data(
        &self,
        _topics: &BTreeSet<String>,
        _owned: &[TopicPartition],
        generation: i32,
    ) -> Option<Bytes> {
        Some(Bytes::copy_from_slice(&generation.to_be_bytes()))
    }

    fn assign(&self, group: &GroupSubscription) -> Result<BTreeMap<String, Assignment>, String> {
        let outcome = assign_sticky(group, cooperative_member_data)?;
        let mut assignment = outcome.assignment;
        let transferring = match outcome.transferring {
            Some(transferring) => transferring,
            None => transferring_ownership(group, &assignment),
        };
        for (partition, member) in transferring {
            if let Some(partitions) = assignment.get_mut(&member) {
                partitions.retain(|tp| *tp != partition);
            }
        }
        Ok(into_assignments(assignment))
    }
}

/// What a member claims to own, and in which generation (Java's `MemberData`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemberData {
    pub(crate) partitions: Vec<TopicPartition>,
    pub(crate) generation: Option<i32>,
}

/// The eager sticky assignor keeps owned partitions in `user_data` (StickyAssignor's
/// `STICKY_ASSIGNOR_USER_DATA_V1`, or V0 without the generation).
fn sticky_member_data(subscription: &Subscription) -> MemberData {
    match subscription
        .user_data
        .as_ref()
        .filter(|data| !data.is_empty())
    {
        None => MemberData {
            partitions: Vec::new(),
            generation: None,
        },
        Some(data) => decode_sticky_user_data(data).unwrap_or(MemberData {
            partitions: Vec::new(),
            generation: Some(DEFAULT_GENERATION),
        }),
    }
}

/// The cooperative assignor reads the subscription's own fields (v2+), or the generation
/// from `user_data` for older subscriptions.
fn cooperative_member_data(subscription: &Subscription) -> MemberData {
    if let Some(generation) = subscription.generation_id {
        return MemberData {
            partitions: subscription.owned_partitions.clone(),
            generation: Some(generation),
        };
    }
    let generation = subscription.user_data.as_ref().map(|data| {
        data.get(..4).map_or(DEFAULT_GENERATION, |b| {
            i32::from_be_bytes([b[0], b[1], b[2], b[3]])
        })
    });
    MemberData {
        partitions: subscription.owned_partitions.clone(),
        generation,
    }
}

/// `STICKY_ASSIGNOR_USER_DATA_V1`: `[topic: string, partitions: [int32]]`, then the
/// generation (omitted when `None`, which is V0).
pub(crate) fn encode_sticky_user_data(
    partitions: &[TopicPartition],
    generation: Option<i32>,
) -> Bytes {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for tp in partitions {
        by_topic.entry(&tp.topic).or_default().push(tp.partition);
    }
    let mut out = BytesMut::new();
    out.put_i32(i32::try_from(by_topic.len()).unwrap_or(i32::MAX));
    for (topic, partitions) in by_topic {
        out.put_i16(i16::try_from(topic.len()).unwrap_or(i16::MAX));
        out.put_slice(topic.as_bytes());
        out.put_i32(i32::try_from(partitions.len()).unwrap_or(i32::MAX));
        for partition in partitions {
            out.put_i32(partition);
        }
    }
    if let Some(generation) = generation {
        out.put_i32(generation);
    }
    out.freeze()
}

/// Reads V1, or V0 when the generation is missing; `None` when neither parses.
pub(crate) fn decode_sticky_user_data(data: &[u8]) -> Option<MemberData> {
    let mut buf = data;
    let topics = read_count(&mut buf)?;
    let mut partitions = Vec::new();
    for _ in 0..topics {
        if buf.remaining() < 2 {
            return None;
        }
        let len = usize::try_from(buf.get_i16()).ok()?;
        if buf.remaining() < len {
            return None;
        }
        let topic = std::str::from_utf8(&buf[..len]).ok()?.to_string();
        buf.advance(len);
        let count = read_count(&mut buf)?;
        for _ in 0..count {
            if buf.remaining() < 4 {
                return None;
            }
            partitions.push(TopicPartition::new(topic.clone(), buf.get_i32()));
        }
    }
    let generation = (buf.remaining() >= 4).then(|| buf.get_i32());
    Some(MemberData {
        partitions,
        generation,
    })
}

/// An array length: non-negative, and no more entries than bytes left (each takes at
/// least one).
fn read_count(buf: &mut &[u8]) -> Option<usize> {
    if buf.remaining() < 4 {
        return None;
    }
    let count = usize::try_from(buf.get_i32()).ok()?;
    (count <= buf.remaining()).then_some(count)
}

/// What the sticky builders produce.
struct StickyOutcome {
    assignment: BTreeMap<String, Vec<TopicPartition>>,
    /// Partitions moving to a new owner, known by the constrained builder; `None` from the
    /// general builder (the cooperative assignor computes them).
    transferring: Option<BTreeMap<TopicPartition, String>>,
}

fn assign_sticky(
    group: &GroupSubscription,
    member_data: fn(&Subscription) -> MemberData,
) -> Result<StickyOutcome, String> {
    // Only subscribed topics count (Java's caller passes no others).
    let subscribed: HashSet<&String> = group.members.values().flat_map(|s| &s.topics).collect();
    let group = &GroupSubscription {
        partitions_per_topic: group
            .partitions_per_topic
            .iter()
            .filter(|(topic, count)| **count > 0 && subscribed.contains(topic))
            .map(|(topic, count)| (topic.clone(), *count))
            .collect(),
        members: group.members.clone(),
    };
    let data: BTreeMap<&str, MemberData> = group
        .members
        .iter()
        .map(|(member, subscription)| (member.as_str(), member_data(subscription)))
        .collect();
    let claims = owned_claims(group, &data);
    if group.members.is_empty() {
        return Ok(StickyOutcome {
            assignment: BTreeMap::new(),
            transferring: Some(BTreeMap::new()),
        });
    }
    if claims.all_subscriptions_equal {
        let builder = Constrained::new(group, claims.owned, claims.multiply_claimed);
        let (assignment, transferring) = builder.build()?;
        Ok(StickyOutcome {
            assignment,
            transferring: Some(transferring),
        })
    } else {
        let max_generation = claims.max_generation;
        let assignment = General::new(group, claims.owned).build(&data, max_generation);
        Ok(StickyOutcome {
            assignment,
            transferring: None,
        })
    }
}

/// Java's `allSubscriptionsEqual` and what it fills in.
struct Claims {
    all_subscriptions_equal: bool,
    /// Each member's still-valid owned partitions of existing topics.
    owned: BTreeMap<String, Vec<TopicPartition>>,
    /// Partitions claimed by two members of the same generation.
    multiply_claimed: HashSet<TopicPartition>,
    max_generation: i32,
}

fn owned_claims(group: &GroupSubscription, data: &BTreeMap<&str, MemberData>) -> Claims {
    let mut all_equal = true;
    let mut first_topics: Option<BTreeSet<&String>> = None;
    let mut owned: BTreeMap<String, Vec<TopicPartition>> = BTreeMap::new();
    let mut multiply_claimed = HashSet::new();
    let mut owner_of: HashMap<TopicPartition, String> = HashMap::new();
    let mut max_generation = DEFAULT_GENERATION;
    for member in java_hash_map_order(group.members.keys().map(String::as_str)) {
        let member = &member.to_string();
        let subscription = &group.members[member];
        let topics: BTreeSet<&String> = subscription.topics.iter().collect();
        match &first_topics {
            None => first_topics = Some(topics),
            Some(first) => {
                if *first != topics {
                    all_equal = false;
                }
            }
        }
        let member_data = &data[member.as_str()];
        let generation = member_data.generation.unwrap_or(DEFAULT_GENERATION);
        max_generation = max_generation.max(generation);
        owned.insert(member.clone(), Vec::new());
        for tp in &member_data.partitions {
            if !group.partitions_per_topic.contains_key(&tp.topic) {
                continue;
            }
            match owner_of.get(tp).cloned() {
                None => {
                    owned.entry(member.clone()).or_default().push(tp.clone());
                    owner_of.insert(tp.clone(), member.clone());
                }
                Some(other) => {
                    // Java compares with the other subscription's own generation field.
                    let other_generation = group.members[&other]
                        .generation_id
                        .unwrap_or(DEFAULT_GENERATION);
                    if generation == other_generation {
                        multiply_claimed.insert(tp.clone());
                        if let Some(list) = owned.get_mut(&other) {
                            list.retain(|p| p != tp);
                        }
                        owner_of.insert(tp.clone(), member.clone());
                    } else if generation > other_generation {
                        owned.entry(member.clone()).or_default().push(tp.clone());
                        if let Some(list) = owned.get_mut(&other) {
                            list.retain(|p| p != tp);
                        }
                        owner_of.insert(tp.clone(), member.clone());
                    }
                }
            }
        }
    }
    Claims {
        all_subscriptions_equal: all_equal,
        owned,
        multiply_claimed,
        max_generation,
    }
}

/// The cooperative assignor's transfers when the general builder ran: partitions assigned
/// to a member that did not own them while another member that owned them loses them.
fn transferring_ownership(
    group: &GroupSubscription,
    assignment: &BTreeMap<String, Vec<TopicPartition>>,
) -> BTreeMap<TopicPartition, String> {
    let mut added: BTreeMap<TopicPartition, String> = BTreeMap::new();
    let mut revoked: HashSet<TopicPartition> = HashSet::new();
    for (member, assigned) in assignment {
        let owned: HashSet<&TopicPartition> = group
            .members
            .get(member)
            .map(|s| s.owned_partitions.iter().collect())
            .unwrap_or_default();
        let assigned_set: HashSet<&TopicPartition> = assigned.iter().collect();
        for tp in assigned {
            if !owned.contains(tp) {
                added.insert(tp.clone(), member.clone());
            }
        }
        for tp in owned {
            if !assigned_set.contains(tp) {
                revoked.insert(tp.clone());
            }
        }
    }
    added.retain(|tp, _| revoked.contains(tp));
    added
}

fn all_partitions_sorted(group: &GroupSubscription) -> Vec<TopicPartition> {
    group
        .partitions_per_topic
        .iter()
        .flat_map(|(topic, &count)| (0..count).map(move |p| TopicPartition::new(topic.as_str(), p)))
        .collect()
}

/// Java's `ConstrainedAssignmentBuilder`: every member subscribes to the same topics.
struct Constrained<'a> {
    group: &'a GroupSubscription,
    owned: BTreeMap<String, Vec<TopicPartition>>,
    multiply_claimed: HashSet<TopicPartition>,
    maybe_revoked: HashMap<TopicPartition, String>,
    under_min_quota: Vec<String>,
    exactly_min_quota: std::collections::VecDeque<String>,
    min_quota: usize,
    max_quota: usize,
    expected_over_min: usize,
    current_over_min: usize,
    assignment: BTreeMap<String, Vec<TopicPartition>>,
    assigned: HashSet<TopicPartition>,
    transferring: BTreeMap<TopicPartition, String>,
}

impl<'a> Constrained<'a> {
    fn new(
        group: &'a GroupSubscription,
        owned: BTreeMap<String, Vec<TopicPartition>>,
        multiply_claimed: HashSet<TopicPartition>,
    ) -> Self {
        let total: usize = group
            .partitions_per_topic
            .values()
            .map(|&count| usize::try_from(count).unwrap_or(0))
            .sum();
        let members = owned.len().max(1);
        Self {
            group,
            assignment: owned.keys().map(|m| (m.clone(), Vec::new())).collect(),
            owned,
            multiply_claimed,
            maybe_revoked: HashMap::new(),
            under_min_quota: Vec::new(),
            exactly_min_quota: std::collections::VecDeque::new(),
            min_quota: total / members,
            max_quota: total.div_ceil(members),
            expected_over_min: total % members,
            current_over_min: 0,
            assigned: HashSet::new(),
            transferring: BTreeMap::new(),
        }
    }

    #[allow(clippy::type_complexity)]
    fn build(
        mut self,
    ) -> Result<
        (
            BTreeMap<String, Vec<TopicPartition>>,
            BTreeMap<TopicPartition, String>,
        ),
        String,
    > {
        self.assign_owned();
        let unassigned: Vec<TopicPartition> = all_partitions_sorted(self.group)
            .into_iter()
            .filter(|tp| !self.assigned.contains(tp))
            .collect();
        self.under_min_quota.sort();
        self.exactly_min_quota.make_contiguous().sort();
        self.assign_round_robin(&unassigned)?;
        self.verify_unfilled()?;
        Ok((self.assignment, self.transferring))
    }

    fn assign_owned(&mut self) {
        let mut owned = std::mem::take(&mut self.owned);
        let order: Vec<String> = java_hash_map_order(owned.keys().map(String::as_str))
            .into_iter()
            .map(str::to_string)
            .collect();
        for member in order {
            let mut partitions = owned.remove(&member).unwrap_or_default();
            partitions.sort_by(|a, b| a.partition.cmp(&b.partition).then(a.topic.cmp(&b.topic)));
            partitions.retain(|tp| !self.multiply_claimed.contains(tp));
            let keep = if partitions.len() < self.min_quota {
                self.under_min_quota.push(member.clone());
                partitions.len()
            } else if partitions.len() >= self.max_quota
                && self.current_over_min < self.expected_over_min
            {
                self.current_over_min += 1;
                if self.current_over_min == self.expected_over_min {
                    self.exactly_min_quota.clear();
                }
                self.max_quota
            } else {
                if self.current_over_min < self.expected_over_min {
                    self.exactly_min_quota.push_back(member.clone());
                }
                self.min_quota
            };
            for tp in partitions.split_off(keep) {
                self.maybe_revoked.insert(tp, member.clone());
            }
            self.assigned.extend(partitions.iter().cloned());
            if let Some(assignment) = self.assignment.get_mut(&member) {
                assignment.extend(partitions);
            }
        }
    }

    fn assign_round_robin(&mut self, unassigned: &[TopicPartition]) -> Result<(), String> {
        let mut cursor = 0;
        for (index, tp) in unassigned.iter().enumerate() {
            let (member, from_under) = if cursor < self.under_min_quota.len() {
                cursor += 1;
                (self.under_min_quota[cursor - 1].clone(), true)
            } else if self.under_min_quota.is_empty() {
                match self.exactly_min_quota.pop_front() {
                    Some(member) => (member, false),
                    None => {
                        return Err(format!(
                            "no more unfilled members to assign {} partitions to",
                            unassigned.len() - index
                        ))
                    }
                }
            } else {
                cursor = 1;
                (self.under_min_quota[0].clone(), true)
            };
            let count = self.assign_new(tp, &member);
            if count == self.min_quota && from_under {
                cursor -= 1;
                self.under_min_quota.remove(cursor);
                self.exactly_min_quota.push_back(member);
            } else if count == self.max_quota {
                self.current_over_min += 1;
            }
        }
        Ok(())
    }

    fn assign_new(&mut self, tp: &TopicPartition, member: &str) -> usize {
        let partitions = self.assignment.entry(member.to_string()).or_default();
        partitions.push(tp.clone());
        let moving = self
            .maybe_revoked
            .get(tp)
            .is_some_and(|previous| previous != member);
        if moving || self.multiply_claimed.contains(tp) {
            self.transferring.insert(tp.clone(), member.to_string());
        }
        partitions.len()
    }

    fn verify_unfilled(&self) -> Result<(), String> {
        if self.under_min_quota.is_empty() {
            return Ok(());
        }
        if self.current_over_min != self.expected_over_min {
            return Err(
                "fewer members reached the larger quota than expected, with no \
                        partition left to assign"
                    .into(),
            );
        }
        for member in &self.under_min_quota {
            let count = self.assignment.get(member).map_or(0, Vec::len);
            if count != self.min_quota {
                return Err(format!(
                    "member {member} has {count} partitions, below the quota of {}",
                    self.min_quota
                ));
            }
        }
        Ok(())
    }
}

/// Java's `PartitionMovements`: which partitions moved between which members during the
/// general builder's balancing, so that a partition moving back cancels out.
#[derive(Debug, Default)]
struct Movements {
    /// topic -> (from, to) -> partitions
    by_topic: HashMap<String, HashMap<(String, String), BTreeSet<TopicPartition>>>,
    by_partition: HashMap<TopicPartition, (String, String)>,
}

impl Movements {
    fn remove_record(&mut self, tp: &TopicPartition) -> Option<(String, String)> {
        let pair = self.by_partition.remove(tp)?;
        if let Some(topic) = self.by_topic.get_mut(&tp.topic) {
            if let Some(set) = topic.get_mut(&pair) {
                set.remove(tp);
                if set.is_empty() {
                    topic.remove(&pair);
                }
            }
            if topic.is_empty() {
                self.by_topic.remove(&tp.topic);
            }
        }
        Some(pair)
    }

    fn add_record(&mut self, tp: &TopicPartition, pair: (String, String)) {
        self.by_partition.insert(tp.clone(), pair.clone());
        self.by_topic
            .entry(tp.topic.clone())
            .or_default()
            .entry(pair)
            .or_default()
            .insert(tp.clone());
    }

    fn move_partition(&mut self, tp: &TopicPartition, old: &str, new: &str) {
        if self.by_partition.contains_key(tp) {
            if let Some((source, _)) = self.remove_record(tp) {
                if source != new {
                    self.add_record(tp, (source, new.to_string()));
                }
            }
        } else {
            self.add_record(tp, (old.to_string(), new.to_string()));
        }
    }

    fn partition_to_move(&self, tp: &TopicPartition, old: &str, new: &str) -> TopicPartition {
        let Some(topic) = self.by_topic.get(&tp.topic) else {
            return tp.clone();
        };
        let old = match self.by_partition.get(tp) {
            Some((source, _)) => source.as_str(),
            None => old,
        };
        topic
            .get(&(new.to_string(), old.to_string()))
            .and_then(|set| set.iter().next())
            .cloned()
            .unwrap_or_else(|| tp.clone())
    }
}

/// Java's `GeneralAssignmentBuilder`: members subscribe to different topics.
struct General<'a> {
    group: &'a GroupSubscription,
    total: usize,
    topic_consumers: BTreeMap<String, Vec<String>>,
    consumer_topics: BTreeMap<String, Vec<String>>,
    current: BTreeMap<String, Vec<TopicPartition>>,
    partition_owner: HashMap<TopicPartition, String>,
    sorted_partitions: Vec<TopicPartition>,
    /// Members by (assignment size, member id).
    by_load: BTreeSet<(usize, String)>,
    revocation_required: bool,
    movements: Movements,
}

impl<'a> General<'a> {
    fn new(
        group: &'a GroupSubscription,
        mut current: BTreeMap<String, Vec<TopicPartition>>,
    ) -> Self {
        let mut topic_consumers: BTreeMap<String, Vec<String>> = group
            .partitions_per_topic
            .keys()
            .map(|topic| (topic.clone(), Vec::new()))
            .collect();
        let mut consumer_topics = BTreeMap::new();
        for (member, subscription) in &group.members {
            let mut topics = Vec::new();
            for topic in &subscription.topics {
                if let Some(consumers) = topic_consumers.get_mut(topic) {
                    if !topics.contains(topic) {
                        topics.push(topic.clone());
                        consumers.push(member.clone());
                    }
                }
            }
            consumer_topics.insert(member.clone(), topics);
            current.entry(member.clone()).or_default();
        }
        let mut partition_owner = HashMap::new();
        for (member, partitions) in &current {
            for tp in partitions {
                partition_owner.insert(tp.clone(), member.clone());
            }
        }
        let mut sorted_topics: Vec<&String> = topic_consumers.keys().collect();
        sorted_topics.sort_by(|a, b| {
            topic_consumers[*a]
                .len()
                .cmp(&topic_consumers[*b].len())
                .then(a.cmp(b))
        });
        let sorted_partitions = sorted_topics
            .iter()
            .flat_map(|topic| {
                let count = group.partitions_per_topic[*topic];
                (0..count).map(|p| TopicPartition::new(topic.as_str(), p))
            })
            .collect();
        let total = group
            .partitions_per_topic
            .values()
            .map(|&count| usize::try_from(count).unwrap_or(0))
            .sum();
        Self {
            group,
            total,
            topic_consumers,
            consumer_topics,
            current,
            partition_owner,
            sorted_partitions,
            by_load: BTreeSet::new(),
            revocation_required: false,
            movements: Movements::default(),
        }
    }

    fn build(
        mut self,
        data: &BTreeMap<&str, MemberData>,
        max_generation: i32,
    ) -> BTreeMap<String, Vec<TopicPartition>> {
        let previous = self.previous_owners(data, max_generation);
        let assigned = self.assign_owned();
        let unassigned: Vec<TopicPartition> = self
            .sorted_partitions
            .iter()
            .filter(|tp| !assigned.contains(*tp))
            .cloned()
            .collect();
        self.by_load = self
            .current
            .iter()
            .map(|(member, partitions)| (partitions.len(), member.clone()))
            .collect();
        self.balance(&previous, unassigned);
        self.current
    }

    /// Java's `prepopulateCurrentAssignments`: where each partition was in an older
    /// generation than the newest, to move it back there if that helps the balance.
    fn previous_owners(
        &self,
        data: &BTreeMap<&str, MemberData>,
        max_generation: i32,
    ) -> HashMap<TopicPartition, (String, i32)> {
        let mut previous: HashMap<TopicPartition, (String, i32)> = HashMap::new();
        for member in java_hash_map_order(data.keys().copied()) {
            let member_data = &data[member];
            let generation = match member_data.generation {
                Some(generation) if generation < max_generation => generation,
                None if max_generation > DEFAULT_GENERATION => DEFAULT_GENERATION,
                _ => continue,
            };
            for tp in &member_data.partitions {
                let newer = previous
                    .get(tp)
                    .is_none_or(|(_, known)| generation > *known);
                if newer {
                    previous.insert(tp.clone(), (member.to_string(), generation));
                }
            }
        }
        previous
    }

    fn assign_owned(&mut self) -> HashSet<TopicPartition> {
        let mut assigned = HashSet::new();
        for (member, partitions) in self.current.iter_mut() {
            let subscription = &self.group.members[member];
            let mut kept = Vec::with_capacity(partitions.len());
            for tp in partitions.drain(..) {
                if !self.topic_consumers.contains_key(&tp.topic) {
                    self.partition_owner.remove(&tp);
                } else if !subscription.topics.contains(&tp.topic) {
                    self.revocation_required = true;
                } else {
                    assigned.insert(tp.clone());
                    kept.push(tp);
                }
            }
            *partitions = kept;
        }
        assigned
    }

    fn load(&self, member: &str) -> usize {
        self.current.get(member).map_or(0, Vec::len)
    }

    fn max_assignment_size(&self, member: &str) -> usize {
        let topics = &self.consumer_topics[member];
        if topics.len() == self.group.partitions_per_topic.len() {
            self.total
        } else {
            topics
                .iter()
                .map(|t| usize::try_from(self.group.partitions_per_topic[t]).unwrap_or(0))
                .sum()
        }
    }

    fn is_balanced(&self) -> bool {
        let (Some((min, _)), Some((max, _))) = (self.by_load.first(), self.by_load.last()) else {
            return true;
        };
        if *min + 1 >= *max {
            return true;
        }
        let mut owners: HashMap<&TopicPartition, &str> = HashMap::new();
        for (member, partitions) in &self.current {
            for tp in partitions {
                owners.insert(tp, member);
            }
        }
        for (count, member) in &self.by_load {
            if *count == self.max_assignment_size(member) {
                continue;
            }
            let mine: HashSet<&TopicPartition> = self.current[member].iter().collect();
            for topic in &self.consumer_topics[member] {
                for p in 0..self.group.partitions_per_topic[topic] {
                    let tp = TopicPartition::new(topic.as_str(), p);
                    if mine.contains(&tp) {
                        continue;
                    }
                    if let Some(other) = owners.get(&tp) {
                        if count + 1 < self.load(other) {
                            return false;
                        }
                    }
                }
            }
        }
        true
    }

    fn balance_score(assignment: &BTreeMap<String, Vec<TopicPartition>>) -> usize {
        let sizes: Vec<usize> = assignment.values().map(Vec::len).collect();
        let mut score = 0;
        for (i, a) in sizes.iter().enumerate() {
            for b in &sizes[i + 1..] {
                score += a.abs_diff(*b);
            }
        }
        score
    }

    /// Gives `tp` to the least-loaded member that may take it.
    fn assign_to_least_loaded(&mut self, tp: &TopicPartition) {
        let member = self
            .by_load
            .iter()
            .find(|(_, member)| self.consumer_topics[member].contains(&tp.topic))
            .map(|(_, member)| member.clone());
        if let Some(member) = member {
            let load = self.load(&member);
            self.by_load.remove(&(load, member.clone()));
            self.current
                .entry(member.clone())
                .or_default()
                .push(tp.clone());
            self.partition_owner.insert(tp.clone(), member.clone());
            self.by_load.insert((load + 1, member));
        }
    }

    fn topic_can_move(&self, topic: &str) -> bool {
        self.topic_consumers
            .get(topic)
            .is_some_and(|c| c.len() >= 2)
    }

    fn member_can_move(&self, member: &str) -> bool {
        let partitions = &self.current[member];
        partitions.len() < self.max_assignment_size(member)
            || partitions.iter().any(|tp| self.topic_can_move(&tp.topic))
    }

    fn balance(
        &mut self,
        previous: &HashMap<TopicPartition, (String, i32)>,
        mut unassigned: Vec<TopicPartition>,
    ) {
        let initializing = self.by_load.last().is_none_or(|(count, _)| *count == 0);
        for tp in &unassigned {
            if self.topic_consumers[&tp.topic].is_empty() {
                continue;
            }
            self.assign_to_least_loaded(tp);
        }
        // Partitions of topics only one member wants cannot move.
        let fixed_topics: HashSet<String> = self
            .topic_consumers
            .keys()
            .filter(|topic| !self.topic_can_move(topic))
            .cloned()
            .collect();
        self.sorted_partitions
            .retain(|tp| !fixed_topics.contains(&tp.topic));
        unassigned.retain(|tp| !fixed_topics.contains(&tp.topic));
        let mut fixed_members = BTreeMap::new();
        let members: Vec<String> = self.consumer_topics.keys().cloned().collect();
        for member in members {
            if !self.member_can_move(&member) {
                let load = self.load(&member);
                self.by_load.remove(&(load, member.clone()));
                if let Some(partitions) = self.current.remove(&member) {
                    fixed_members.insert(member, partitions);
                }
            }
        }
        let before = self.current.clone();
        let owners_before = self.partition_owner.clone();
        let by_load_before = self.by_load.clone();
        if !self.revocation_required {
            self.reassign(&unassigned, previous);
        }
        let sorted = self.sorted_partitions.clone();
        let moved = self.reassign(&sorted, previous);
        if !initializing
            && moved
            && Self::balance_score(&self.current) >= Self::balance_score(&before)
        {
            self.current = before;
            self.partition_owner = owners_before;
            self.by_load = by_load_before;
        }
        for (member, partitions) in fixed_members {
            self.by_load.insert((partitions.len(), member.clone()));
            self.current.insert(member, partitions);
        }
    }

    /// Java's `performReassignments`.
    fn reassign(
        &mut self,
        partitions: &[TopicPartition],
        previous: &HashMap<TopicPartition, (String, i32)>,
    ) -> bool {
        let mut moved_any = false;
        loop {
            let mut modified = false;
            for tp in partitions {
                if self.is_balanced() {
                    break;
                }
                let Some(owner) = self.partition_owner.get(tp).cloned() else {
                    continue;
                };
                if let Some((previous_owner, _)) = previous.get(tp) {
                    if self.current.contains_key(previous_owner)
                        && self.load(&owner) > self.load(previous_owner) + 1
                    {
                        let previous_owner = previous_owner.clone();
                        self.move_to(tp, &previous_owner);
                        moved_any = true;
                        modified = true;
                        continue;
                    }
                }
                let others = self.topic_consumers[&tp.topic].clone();
                for other in others {
                    if self.current.contains_key(&other)
                        && self.load(&owner) > self.load(&other) + 1
                    {
                        let least = self
                            .by_load
                            .iter()
                            .find(|(_, m)| self.consumer_topics[m].contains(&tp.topic))
                            .map(|(_, m)| m.clone());
                        if let Some(least) = least {
                            self.move_to(tp, &least);
                            moved_any = true;
                            modified = true;
                        }
                        break;
                    }
                }
            }
            if !modified {
                return moved_any;
            }
        }
    }

    /// Java's `reassignPartition(partition, newConsumer)`.
    fn move_to(&mut self, tp: &TopicPartition, new_owner: &str) {
        let Some(owner) = self.partition_owner.get(tp).cloned() else {
            return;
        };
        let tp = self.movements.partition_to_move(tp, &owner, new_owner);
        let Some(old_owner) = self.partition_owner.get(&tp).cloned() else {
            return;
        };
        let (old_load, new_load) = (self.load(&old_owner), self.load(new_owner));
        self.by_load.remove(&(old_load, old_owner.clone()));
        self.by_load.remove(&(new_load, new_owner.to_string()));
        self.movements.move_partition(&tp, &old_owner, new_owner);
        if let Some(partitions) = self.current.get_mut(&old_owner) {
            partitions.retain(|p| *p != tp);
        }
        self.current
            .entry(new_owner.to_string())
            .or_default()
            .push(tp.clone());
        self.partition_owner.insert(tp, new_owner.to_string());
        self.by_load
            .insert((self.load(new_owner), new_owner.to_string()));
        self.by_load.insert((self.load(&old_owner), old_owner));
    }
}
