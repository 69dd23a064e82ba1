//! The controller's operations on the cluster state: topics created and deleted, partitions
//! added, leaders moved, brokers stopped and started. Kafka runs these in its controller
//! quorum and brokers learn them from metadata; here they change the one state directly, and
//! each change touches the waiting requests it concerns (a fetch parked on a partition whose
//! leader moved answers at once, as Kafka's `DelayedFetch` does).
//!
//! Placement and ids are deterministic: Kafka's striped replica placement starting at
//! `(seed + topics created) % live brokers`, and topic ids drawn from the seed and a counter.

use std::collections::{BTreeMap, HashSet};

use franzy::proto::ErrorCode;
use uuid::Uuid;

use super::topic_config;
use super::{topic, ClusterError, ClusterState, Partition, Topic};

/// A topic to create, as CreateTopics describes it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewTopic {
    /// The name.
    pub name: String,
    /// Partitions, or -1 for [`ClusterConfig::default_partitions`].
    pub num_partitions: i32,
    /// Replicas per partition, or -1 for the default.
    pub replication_factor: i16,
    /// Explicit replica lists by partition index; then both counts must be -1.
    pub assignments: Vec<(i32, Vec<i32>)>,
    /// Topic configs; a `None` value is refused, as Kafka does.
    pub configs: Vec<(String, Option<String>)>,
}

/// What CreateTopics reports about a created (or validated) topic.
#[derive(Debug, Clone, PartialEq)]
pub struct CreatedTopic {
    /// The new id (nil when only validating).
    pub id: Uuid,
    /// Number of partitions.
    pub num_partitions: i32,
    /// Replicas per partition.
    pub replication_factor: i16,
}

impl ClusterState {
    /// Records where broker `id` listens.
    pub fn set_broker_address(&mut self, id: i32, host: &str, port: u16) {
        if let Some(b) = self.broker_mut(id) {
            b.host = host.to_string();
            b.port = i32::from(port);
        }
    }

    /// Marks broker `id` up or down. Going down, it leaves the ISRs (unless it is the last
    /// member) and its partitions elect the next live in-sync replica in a new epoch, or have
    /// no leader (-1) when none is left. Coming back, it rejoins the ISR of partitions that
    /// have a leader, and leads those that had none if it was in their ISR (or the topic
    /// allows unclean election). Leadership does not move back to it by itself (Kafka's
    /// periodic preferred-leader election is not modelled; use [`ClusterState::set_leader`]).
    pub fn set_broker_up(&mut self, id: i32, up: bool) {
        let Some(broker) = self.broker_mut(id) else {
            return;
        };
        if broker.up == up {
            return;
        }
        broker.up = up;
        let live: HashSet<i32> = self.live_brokers().map(|b| b.id).collect();
        let is_up = |b: i32| live.contains(&b);
        let mut changed = Vec::new();
        for topic in self.topics.values_mut() {
            let unclean = topic
                .config("unclean.leader.election.enable")
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
            for partition in &mut topic.partitions {
                let before = (partition.leader_epoch(), partition.isr().len());
                if up {
                    partition.broker_up(id, unclean, is_up);
                } else {
                    partition.broker_down(id, is_up);
                }
                if before != (partition.leader_epoch(), partition.isr().len()) {
                    changed.push((topic.id, partition.index()));
                }
            }
        }
        // A fetch waiting on a partition whose leader moved answers at once (Kafka's
        // `DelayedFetch`, case A).
        for &(topic, partition) in &changed {
            self.touch_partition(topic, partition);
        }
        self.coordinator_leaders_changed(&changed);
    }

    /// Creates topic `name` with `partitions` partitions on min(default replication factor,
    /// live brokers) replicas each. Errors: TOPIC_ALREADY_EXISTS, INVALID_PARTITIONS,
    /// INVALID_TOPIC_EXCEPTION, INVALID_CONFIG, INVALID_REPLICATION_FACTOR (no live broker).
    pub fn create_topic(
        &mut self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<Uuid, ErrorCode> {
        let request = NewTopic {
            name: name.to_string(),
            num_partitions: partitions,
            replication_factor: -1,
            assignments: Vec::new(),
            configs: configs.into_iter().map(|(k, v)| (k, Some(v))).collect(),
        };
        self.create_topic_with(&request, false)
            .map(|created| created.id)
            .map_err(|e| e.code)
    }

    /// Creates a topic as CreateTopics asks, or only checks that it could (`validate_only`).
    /// Checks in Kafka's order: name, existence and collisions, counts or assignment,
    /// configs.
    pub fn create_topic_with(
        &mut self,
        request: &NewTopic,
        validate_only: bool,
    ) -> Result<CreatedTopic, ClusterError> {
        let name = request.name.as_str();
        topic::validate_topic_name(name)?;
        if self.topics.contains_key(name) {
            return Err(ClusterError::new(
                ErrorCode::TopicAlreadyExists,
                format!("Topic '{name}' already exists."),
            ));
        }
        let unified = topic::unify_collision_chars(name);
        if let Some(other) = self.topic_names_by_collision_key.get(&unified) {
            return Err(ClusterError::new(
                ErrorCode::InvalidTopicException,
                format!("Topic '{name}' collides with existing topic: {other}"),
            ));
        }
        let replicas = if request.assignments.is_empty() {
            let partitions = match request.num_partitions {
                -1 => self.config.default_partitions,
                n if n <= 0 => {
                    return Err(ClusterError::new(
                        ErrorCode::InvalidPartitions,
                        "Number of partitions was set to an invalid non-positive value.",
                    ))
                }
                n => n,
            };
            let factor = self.replication_factor(request.replication_factor)?;
            let start = self.placement_start();
            self.place(start, 0, partitions, factor)
        } else {
            if request.num_partitions != -1 || request.replication_factor != -1 {
                return Err(ClusterError::new(
                    ErrorCode::InvalidRequest,
                    "A manual partition assignment was specified, but numPartitions or replicationFactor was not set to -1.",
                ));
            }
            self.check_assignment(&request.assignments, 0)?
        };
        let mut configs = BTreeMap::new();
        for (key, value) in &request.configs {
            topic_config::validate_topic_config(key, value.as_deref())
                .map_err(|message| ClusterError::new(ErrorCode::InvalidConfig, message))?;
            if let Some(value) = value {
                configs.insert(key.clone(), value.trim().to_string());
            }
        }
        let created = CreatedTopic {
            id: Uuid::nil(),
            num_partitions: replicas.len() as i32,
            replication_factor: replicas.first().map_or(0, |r| r.len() as i16),
        };
        if validate_only {
            return Ok(created);
        }
        let id = self.next_topic_id();
        let placement_start = self.placement_start();
        self.topics_created += 1;
        self.topology_version += 1;
        let is_up = |b: i32| self.is_broker_up(b);
        let partitions = replicas
            .into_iter()
            .enumerate()
            .map(|(i, r)| Partition::new(i as i32, r, is_up))
            .collect();
        self.topics.insert(
            name.to_string(),
            Topic {
                name: name.to_string(),
                id,
                configs,
                partitions,
                placement_start,
            },
        );
        self.topic_names_by_id.insert(id, name.to_string());
        self.topic_names_by_collision_key
            .insert(unified, name.to_string());
        Ok(CreatedTopic { id, ..created })
    }

    /// Deletes topic `name` and its logs. UNKNOWN_TOPIC_OR_PARTITION if there is none.
    pub fn delete_topic(&mut self, name: &str) -> Result<Uuid, ErrorCode> {
        let topic = self
            .topics
            .remove(name)
            .ok_or(ErrorCode::UnknownTopicOrPartition)?;
        self.topic_names_by_id.remove(&topic.id);
        self.topology_version += 1;
        self.topic_names_by_collision_key
            .remove(&topic::unify_collision_chars(name));
        for partition in &topic.partitions {
            self.touch_partition(topic.id, partition.index());
        }
        // Kafka's group coordinator drops the offsets of deleted partitions.
        self.offsets.delete_topic(name);
        Ok(topic.id)
    }

    /// Replaces the configs set on topic `name` (AlterConfigs, IncrementalAlterConfigs),
    /// each already validated. UNKNOWN_TOPIC_OR_PARTITION if there is none.
    pub fn set_topic_configs(
        &mut self,
        name: &str,
        configs: BTreeMap<String, String>,
    ) -> Result<(), ErrorCode> {
        let topic = self
            .topics
            .get_mut(name)
            .ok_or(ErrorCode::UnknownTopicOrPartition)?;
        topic.configs = configs;
        Ok(())
    }

    /// Deletes the topic with id `id`. UNKNOWN_TOPIC_ID if there is none.
    pub fn delete_topic_by_id(&mut self, id: Uuid) -> Result<String, ErrorCode> {
        let name = self
            .topic_names_by_id
            .get(&id)
            .cloned()
            .ok_or(ErrorCode::UnknownTopicId)?;
        self.delete_topic(&name)
            .map_err(|_| ErrorCode::UnknownTopicId)?;
        Ok(name)
    }

    /// Grows topic `name` to `total` partitions (CreatePartitions), placing the new ones as
    /// creation would or on `assignments` (one replica list per new partition).
    pub fn create_partitions(
        &mut self,
        name: &str,
        total: i32,
        assignments: Option<&[Vec<i32>]>,
        validate_only: bool,
    ) -> Result<(), ClusterError> {
        let Some(topic) = self.topics.get(name) else {
            return Err(ClusterError::new(
                ErrorCode::UnknownTopicOrPartition,
                format!("This server does not host this topic-partition: {name}"),
            ));
        };
        let current = topic.partitions.len() as i32;
        if total < current {
            return Err(ClusterError::new(
                ErrorCode::InvalidPartitions,
                format!("The topic {name} currently has {current} partition(s); {total} would not be an increase."),
            ));
        }
        if total == current {
            return Err(ClusterError::new(
                ErrorCode::InvalidPartitions,
                format!("Topic already has {current} partition(s)."),
            ));
        }
        let factor = topic
            .partitions
            .first()
            .map_or(1, |p| p.replicas().len() as i16);
        let new_replicas = match assignments {
            None => {
                let live = self.live_brokers().count();
                if usize::try_from(factor).unwrap_or(0) > live {
                    return Err(ClusterError::new(
                        ErrorCode::InvalidReplicationFactor,
                        format!("Unable to replicate the partition {factor} time(s): The target replication factor of {factor} cannot be reached because only {live} broker(s) are registered."),
                    ));
                }
                self.place(topic.placement_start, current, total, factor)
            }
            Some(lists) => {
                if lists.len() as i64 != i64::from(total) - i64::from(current) {
                    return Err(ClusterError::new(
                        ErrorCode::InvalidReplicaAssignment,
                        format!(
                            "Attempted to add {} additional partition(s), but only {} assignment(s) were specified.",
                            i64::from(total) - i64::from(current),
                            lists.len()
                        ),
                    ));
                }
                let numbered: Vec<(i32, Vec<i32>)> = lists
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (current + i as i32, r.clone()))
                    .collect();
                let replicas = self.check_assignment(&numbered, current)?;
                if replicas.iter().any(|r| r.len() as i16 != factor) {
                    return Err(ClusterError::new(
                        ErrorCode::InvalidReplicaAssignment,
                        format!("The manual partition assignment includes a partition with {} replica(s), but this is not consistent with previous partitions, which have {factor} replica(s).", replicas.iter().map(Vec::len).find(|&n| n as i16 != factor).unwrap_or(0)),
                    ));
                }
                replicas
            }
        };
        if validate_only {
            return Ok(());
        }
        let live: HashSet<i32> = self.live_brokers().map(|b| b.id).collect();
        self.topology_version += 1;
        if let Some(topic) = self.topics.get_mut(name) {
            for (i, replicas) in new_replicas.into_iter().enumerate() {
                let index = current + i as i32;
                topic
                    .partitions
                    .push(Partition::new(index, replicas, |b| live.contains(&b)));
            }
        }
        Ok(())
    }

    /// Makes `broker` the leader of `topic`/`partition` in a new leader epoch, even if it
    /// already leads (so that tests can force an epoch change; Kafka bumps only on a change).
    /// Errors: UNKNOWN_TOPIC_OR_PARTITION; INVALID_REPLICA_ASSIGNMENT if `broker` is not a
    /// replica; BROKER_NOT_AVAILABLE if it is down.
    pub fn set_leader(
        &mut self,
        topic: &str,
        partition: i32,
        broker: i32,
    ) -> Result<(), ErrorCode> {
        let up = self.is_broker_up(broker);
        let t = self
            .topics
            .get_mut(topic)
            .ok_or(ErrorCode::UnknownTopicOrPartition)?;
        let id = t.id;
        let p = t
            .partition_mut(partition)
            .ok_or(ErrorCode::UnknownTopicOrPartition)?;
        if !p.replicas().contains(&broker) {
            return Err(ErrorCode::InvalidReplicaAssignment);
        }
        if !up {
            return Err(ErrorCode::BrokerNotAvailable);
        }
        p.join_isr(broker);
        p.elect(broker);
        self.touch_partition(id, partition);
        self.coordinator_leaders_changed(&[(id, partition)]);
        Ok(())
    }

    /// Leaves `topic`/`partition` without a leader (-1) in a new epoch, as when every ISR
    /// member is gone, until [`ClusterState::set_leader`] gives it one; clients see
    /// LEADER_NOT_AVAILABLE in Metadata and NOT_LEADER_OR_FOLLOWER from every broker.
    /// Errors: UNKNOWN_TOPIC_OR_PARTITION.
    pub fn clear_leader(&mut self, topic: &str, partition: i32) -> Result<(), ErrorCode> {
        let t = self
            .topics
            .get_mut(topic)
            .ok_or(ErrorCode::UnknownTopicOrPartition)?;
        let id = t.id;
        let p = t
            .partition_mut(partition)
            .ok_or(ErrorCode::UnknownTopicOrPartition)?;
        p.elect(-1);
        self.touch_partition(id, partition);
        Ok(())
    }

    /// The replication factor to use for a request's `factor` (-1: the default, capped at
    /// the live brokers).
    fn replication_factor(&self, factor: i16) -> Result<i16, ClusterError> {
        let live = self.live_brokers().count();
        let factor = match factor {
            -1 => self
                .config
                .default_replication_factor
                .min(i16::try_from(live).unwrap_or(i16::MAX)),
            f if f <= 0 => {
                return Err(ClusterError::new(
                    ErrorCode::InvalidReplicationFactor,
                    "Replication factor must be larger than 0, or -1 to use the default value.",
                ))
            }
            f => f,
        };
        if factor <= 0 || usize::try_from(factor).unwrap_or(0) > live {
            return Err(ClusterError::new(
                ErrorCode::InvalidReplicationFactor,
                format!("Unable to replicate the partition {factor} time(s): The target replication factor of {factor} cannot be reached because only {live} broker(s) are registered."),
            ));
        }
        Ok(factor)
    }

    /// Replica lists for partitions `from..to` over the live brokers, Kafka's striped
    /// placement: leaders round-robin from `start`, followers shifted by a step that grows
    /// after each full round.
    fn place(&self, start: usize, from: i32, to: i32, factor: i16) -> Vec<Vec<i32>> {
        let mut brokers: Vec<i32> = self.live_brokers().map(|b| b.id).collect();
        brokers.sort_unstable();
        let n = brokers.len();
        if n == 0 {
            return Vec::new();
        }
        let factor = usize::try_from(factor).unwrap_or(1).min(n);
        (from.max(0)..to)
            .map(|p| {
                let p = p as usize;
                let first = (p + start) % n;
                let shift = start + p / n;
                let mut replicas = vec![brokers[first]];
                for j in 0..factor.saturating_sub(1) {
                    let step = 1 + (shift + j) % (n - 1).max(1);
                    replicas.push(brokers[(first + step) % n]);
                }
                replicas
            })
            .collect()
    }

    /// Checks a manual assignment (partition index, replicas) numbered from `first`.
    fn check_assignment(
        &self,
        assignments: &[(i32, Vec<i32>)],
        first: i32,
    ) -> Result<Vec<Vec<i32>>, ClusterError> {
        let invalid = |m: String| Err(ClusterError::new(ErrorCode::InvalidReplicaAssignment, m));
        let mut sorted: Vec<&(i32, Vec<i32>)> = assignments.iter().collect();
        sorted.sort_by_key(|(i, _)| *i);
        let mut out = Vec::with_capacity(sorted.len());
        for (expected, (index, replicas)) in (first..).zip(sorted) {
            if *index != expected {
                return invalid(
                    "Partitions should be a consecutive 0-based integer sequence".into(),
                );
            }
            if replicas.is_empty() {
                return invalid(format!("The manual partition assignment includes an empty replica list for partition {index}."));
            }
            let mut seen = replicas.clone();
            seen.sort_unstable();
            seen.dedup();
            if seen.len() != replicas.len() {
                return invalid(format!("The manual partition assignment includes the partition {index} with duplicate replicas."));
            }
            if let Some(b) = replicas.iter().find(|&&b| self.broker(b).is_none()) {
                return invalid(format!("The manual partition assignment includes broker {b}, but no such broker is registered."));
            }
            if !replicas.iter().any(|&b| self.is_broker_up(b)) {
                return invalid(format!("All brokers specified in the manual partition assignment for partition {index} are fenced or in controlled shutdown."));
            }
            if let Some(previous) = out.first().map(Vec::len) {
                if previous != replicas.len() {
                    return invalid("All partitions in the manual partition assignment must have the same number of replicas.".into());
                }
            }
            out.push(replicas.clone());
        }
        Ok(out)
    }

    fn placement_start(&self) -> usize {
        // Kafka starts at a random broker; a seeded counter spreads leaders the same way.
        let n = self.live_brokers().count().max(1) as u64;
        (self.config.seed.wrapping_add(self.topics_created) % n) as usize
    }

    fn next_topic_id(&self) -> Uuid {
        let hi = mix(self
            .config
            .seed
            .wrapping_add(self.topics_created.wrapping_mul(2)));
        let lo = mix(hi ^ self.topics_created.wrapping_mul(2).wrapping_add(1));
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&hi.to_be_bytes());
        bytes[8..].copy_from_slice(&lo.to_be_bytes());
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }
}

/// splitmix64's finalizer: a fixed, well-spread function of the input.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::test_batches::BatchBuilder;
    use super::super::ClusterConfig;
    use super::*;

    fn cluster() -> ClusterState {
        ClusterState::new(ClusterConfig::default())
    }

    #[test]
    fn topics_get_deterministic_ids_and_striped_replicas() {
        let mut a = cluster();
        let mut b = cluster();
        let id = a.create_topic("t", 4, BTreeMap::new()).expect("create");
        assert_eq!(b.create_topic("t", 4, BTreeMap::new()), Ok(id));
        assert!(!id.is_nil());
        let other = a.create_topic("u", 1, BTreeMap::new()).expect("create");
        assert_ne!(id, other);
        let t = a.topic("t").expect("topic");
        let replicas: Vec<&[i32]> = t.partitions().iter().map(Partition::replicas).collect();
        assert_eq!(
            replicas,
            vec![&[0, 1, 2][..], &[1, 2, 0], &[2, 0, 1], &[0, 2, 1]]
        );
        let leaders: Vec<i32> = t.partitions().iter().map(Partition::leader).collect();
        assert_eq!(leaders, vec![0, 1, 2, 0]);
        assert!(t
            .partitions()
            .iter()
            .all(|p| p.isr() == p.replicas() && p.leader_epoch() == 0));
        assert_eq!(a.topic_by_id(id).map(Topic::name), Some("t"));
        // The next topic starts its leaders one broker further.
        assert_eq!(a.partition("u", 0).map(Partition::leader), Some(1));
    }

    #[test]
    fn topic_creation_errors() {
        let mut c = cluster();
        c.create_topic("t", 1, BTreeMap::new()).expect("create");
        assert_eq!(
            c.create_topic("t", 1, BTreeMap::new()),
            Err(ErrorCode::TopicAlreadyExists)
        );
        assert_eq!(
            c.create_topic("t.", 0, BTreeMap::new()),
            Err(ErrorCode::InvalidPartitions)
        );
        assert_eq!(
            c.create_topic("bad name", 1, BTreeMap::new()),
            Err(ErrorCode::InvalidTopicException)
        );
        c.create_topic("a.b", 1, BTreeMap::new()).expect("create");
        assert_eq!(
            c.create_topic("a_b", 1, BTreeMap::new()),
            Err(ErrorCode::InvalidTopicException)
        );
        let configs = BTreeMap::from([("retention.ms".to_string(), "soon".to_string())]);
        assert_eq!(
            c.create_topic("x", 1, configs),
            Err(ErrorCode::InvalidConfig)
        );
        let one = ClusterConfig {
            broker_ids: vec![7],
            ..ClusterConfig::default()
        };
        let mut small = ClusterState::new(one);
        small
            .create_topic("t", 2, BTreeMap::new())
            .expect("capped factor");
        assert_eq!(
            small.partition("t", 1).map(Partition::replicas),
            Some(&[7][..])
        );
    }

    #[test]
    fn a_down_leader_hands_over_and_the_epoch_grows() {
        let mut c = cluster();
        c.create_topic("t", 1, BTreeMap::new()).expect("create");
        c.set_broker_up(0, false);
        let p = c.partition("t", 0).expect("partition");
        assert_eq!((p.leader(), p.leader_epoch(), p.isr()), (1, 1, &[1, 2][..]));
        c.set_broker_up(1, false);
        c.set_broker_up(2, false);
        let p = c.partition("t", 0).expect("partition");
        // The last in-sync replica stays in the ISR; nobody leads.
        assert_eq!((p.leader(), p.leader_epoch(), p.isr()), (-1, 3, &[2][..]));
        // A replica outside the ISR cannot take over (no unclean election)...
        c.set_broker_up(0, true);
        assert_eq!(c.partition("t", 0).map(Partition::leader), Some(-1));
        // ...but the last ISR member can, and then everyone live catches up.
        c.set_broker_up(2, true);
        let p = c.partition("t", 0).expect("partition");
        assert_eq!((p.leader(), p.leader_epoch(), p.isr()), (2, 4, &[0, 2][..]));
        c.set_broker_up(1, true);
        assert_eq!(
            c.partition("t", 0).map(Partition::isr),
            Some(&[0, 1, 2][..])
        );
        assert_eq!(c.controller_id(), 0);
    }

    #[test]
    fn set_leader_bumps_the_epoch_and_records_it() {
        let mut c = cluster();
        c.create_topic("t", 1, BTreeMap::new()).expect("create");
        c.append_records("t", 0, &BatchBuilder::new(0).records(3, 1).build(), 0)
            .expect("append");
        assert_eq!(c.set_leader("t", 0, 2), Ok(()));
        assert_eq!(
            c.set_leader("t", 0, 9),
            Err(ErrorCode::InvalidReplicaAssignment)
        );
        assert_eq!(
            c.set_leader("t", 5, 1),
            Err(ErrorCode::UnknownTopicOrPartition)
        );
        let p = c.partition("t", 0).expect("partition");
        assert_eq!((p.leader(), p.leader_epoch()), (2, 1));
        assert_eq!(p.log().leader_epochs().end_offset_for(0, 3), (0, 3));
        let info = c
            .append_records("t", 0, &BatchBuilder::new(0).record(b"x").build(), 0)
            .expect("append");
        assert_eq!(info.base_offset, 3);
        let stored = c.partition_log("t", 0).expect("log").batches()[1]
            .header()
            .partition_leader_epoch;
        assert_eq!(stored, 1);
    }

    #[test]
    fn partitions_grow_only_and_topics_delete_by_name_or_id() {
        let mut c = cluster();
        let id = c.create_topic("t", 2, BTreeMap::new()).expect("create");
        assert_eq!(
            c.create_partitions("t", 2, None, false).map_err(|e| e.code),
            Err(ErrorCode::InvalidPartitions)
        );
        assert_eq!(
            c.create_partitions("t", 1, None, false).map_err(|e| e.code),
            Err(ErrorCode::InvalidPartitions)
        );
        assert_eq!(
            c.create_partitions("nope", 3, None, false)
                .map_err(|e| e.code),
            Err(ErrorCode::UnknownTopicOrPartition)
        );
        assert_eq!(c.create_partitions("t", 4, None, true), Ok(()));
        assert_eq!(c.topic("t").map(|t| t.partitions().len()), Some(2));
        assert_eq!(c.create_partitions("t", 4, None, false), Ok(()));
        assert_eq!(
            c.partition("t", 3).map(Partition::replicas),
            Some(&[0, 2, 1][..])
        );
        let bad = [vec![0, 0, 1]];
        assert_eq!(
            c.create_partitions("t", 5, Some(&bad), false)
                .map_err(|e| e.code),
            Err(ErrorCode::InvalidReplicaAssignment)
        );
        assert_eq!(c.delete_topic_by_id(id), Ok("t".to_string()));
        assert_eq!(c.delete_topic("t"), Err(ErrorCode::UnknownTopicOrPartition));
        assert_eq!(c.delete_topic_by_id(id), Err(ErrorCode::UnknownTopicId));
        assert!(c.topic_by_id(id).is_none());
    }

    #[test]
    fn collisions_are_found_by_index_and_forgotten_with_their_topic() {
        let mut c = cluster();
        c.create_topic("a.b", 1, BTreeMap::new()).expect("create");
        let collision = |c: &mut ClusterState, name: &str| {
            let request = NewTopic {
                name: name.to_string(),
                num_partitions: 1,
                replication_factor: -1,
                ..NewTopic::default()
            };
            c.create_topic_with(&request, false)
                .err()
                .map(|e| (e.code, e.message.unwrap_or_default()))
        };
        assert_eq!(
            collision(&mut c, "a_b"),
            Some((
                ErrorCode::InvalidTopicException,
                "Topic 'a_b' collides with existing topic: a.b".to_string()
            ))
        );
        assert_eq!(c.delete_topic("a.b").map(|_| ()), Ok(()));
        assert_eq!(collision(&mut c, "a_b"), None, "created once a.b is gone");
        assert_eq!(
            collision(&mut c, "a.b").map(|(_, m)| m),
            Some("Topic 'a.b' collides with existing topic: a_b".to_string())
        );
        // Many topics: each creation looks the index up once.
        for i in 0..20_000 {
            c.create_topic(&format!("many.{i}"), 1, BTreeMap::new())
                .expect("create");
        }
        assert_eq!(
            c.create_topic("many_19999", 1, BTreeMap::new()),
            Err(ErrorCode::InvalidTopicException)
        );
        assert_eq!(
            c.create_topic("many-19999", 1, BTreeMap::new()).map(|_| ()),
            Ok(())
        );
    }
}
