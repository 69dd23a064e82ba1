//! Pure broker state: brokers, topics, partitions and their logs. No IO, no clock, no RNG:
//! every mutation takes what it needs (time, ids) as arguments or derives it from
//! [`ClusterConfig::seed`], so the same calls give the same state every run.
//!
//! | module | what |
//! |---|---|
//! | [`topic`] | a topic and Kafka's topic-name rules |
//! | [`partition`] | replicas, ISR, leader, leader epoch, and leader election |
//! | [`partition_log`] | the stored batches, offsets, reads and timestamp lookups |
//! | [`leader_epochs`] | which epoch began at which offset (KIP-101) |
//! | [`log_validator`] | what a broker checks before it appends |
//! | [`producer_state`] | idempotent producers per partition: epochs, last five batches |
//! | [`record_scan`] | record offsets and timestamps of uncompressed batches |
//! | [`topic_config`] | topic configs: defaults, types, validation |
//! | [`error`] | an error code with Kafka's message |

use std::collections::{BTreeMap, HashMap, HashSet};

use franzy::proto::ErrorCode;
use uuid::Uuid;

pub mod error;
pub mod leader_epochs;
pub mod log_validator;
pub mod partition;
pub mod partition_log;
pub mod producer_state;
pub mod record_scan;
#[cfg(test)]
pub(crate) mod test_batches;
pub mod topic;
pub mod topic_config;

pub use error::ClusterError;
pub use log_validator::{AppendLimits, InflateBudget, PrevalidatedBatch};
pub use partition::Partition;
pub use partition_log::{AppendInfo, PartitionLog, StoredBatch, TimestampOffset};
pub use producer_state::{ProducerEntry, ProducerStates};
pub use topic::Topic;

/// The first producer id InitProducerId hands out; the next ones count up from it, cluster
/// wide, in the order requests arrive. (Kafka hands out blocks of 1000 per broker starting at
/// 0; one deterministic counter keeps ids unique across brokers and restarts, and starting
/// above 0 keeps a real id apart from zeroed fields.)
pub const FIRST_PRODUCER_ID: i64 = 1000;

/// Settings fixed when the cluster is built.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Broker ids, in order (0, 1, 2, ... by default).
    pub broker_ids: Vec<i32>,
    /// The cluster id reported by Metadata and DescribeCluster.
    pub cluster_id: String,
    /// Create unknown topics when a Metadata request asks for them and allows it (Kafka's
    /// `auto.create.topics.enable`). Produce never creates topics, as in Kafka.
    pub auto_create_topics: bool,
    /// Partitions of an auto-created topic, and of CreateTopics with -1 (`num.partitions`).
    pub default_partitions: i32,
    /// Largest record batch accepted by Produce (`message.max.bytes`, Kafka's default
    /// 1048588), unless the topic sets `max.message.bytes`.
    pub message_max_bytes: usize,
    /// Replicas per partition when none is asked for (`default.replication.factor`),
    /// capped at the number of live brokers. Default 3.
    pub default_replication_factor: i16,
    /// Seed of everything Kafka would draw at random: topic ids and where replica placement
    /// starts. Default 0.
    pub seed: u64,
    /// Most entries one request may name (Produce, Fetch, ListOffsets and
    /// OffsetForLeaderEpoch partitions, DescribeConfigs resources, Metadata topics once
    /// each), counted in request order across its topics; the entries past it are answered
    /// INVALID_REQUEST without being served, so that one request holds the cluster lock for
    /// a bounded time. Kafka has no such cap; no client names this many. Default
    /// [`DEFAULT_MAX_PARTITIONS_PER_REQUEST`].
    pub max_partitions_per_request: usize,
    /// Most topics one Metadata (auto-creation) or CreateTopics request may create; see
    /// [`crate::handlers::metadata`] and [`crate::handlers::create_topics`] for what the
    /// others are answered. Default [`DEFAULT_MAX_TOPICS_CREATED_PER_REQUEST`].
    pub max_topics_created_per_request: usize,
    /// Most partitions one CreateTopics or CreatePartitions request may create; a request
    /// asking for more fails as a whole with POLICY_VIOLATION, as Kafka's controller refuses
    /// an operation of more than 10,000 metadata records. Default
    /// [`DEFAULT_MAX_PARTITIONS_CREATED_PER_REQUEST`].
    pub max_partitions_created_per_request: usize,
    /// Most bytes the compressed batches of one Produce request may inflate to, all
    /// partitions together, while they are validated; the partitions past it are answered
    /// POLICY_VIOLATION (see [`crate::handlers::produce`]). Each batch is also limited to
    /// 64 MiB on its own. Default [`DEFAULT_MAX_DECOMPRESSED_BYTES_PER_REQUEST`].
    pub max_decompressed_bytes_per_request: usize,
}

/// Default of [`ClusterConfig::max_partitions_per_request`]: 10,000.
pub const DEFAULT_MAX_PARTITIONS_PER_REQUEST: usize = 10_000;
/// Default of [`ClusterConfig::max_topics_created_per_request`]: 1,000.
pub const DEFAULT_MAX_TOPICS_CREATED_PER_REQUEST: usize = 1_000;
/// Default of [`ClusterConfig::max_partitions_created_per_request`]: 10,000, Kafka's
/// `QuorumController.MAX_RECORDS_PER_USER_OP` (a record per partition).
pub const DEFAULT_MAX_PARTITIONS_CREATED_PER_REQUEST: usize = 10_000;
/// Default of [`ClusterConfig::max_decompressed_bytes_per_request`]: 256 MiB.
pub const DEFAULT_MAX_DECOMPRESSED_BYTES_PER_REQUEST: usize = 256 * 1024 * 1024;

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            broker_ids: vec![0, 1, 2],
            cluster_id: "franzy-harness".to_string(),
            auto_create_topics: true,
            default_partitions: 1,
            message_max_bytes: 1_048_588,
            default_replication_factor: 3,
            seed: 0,
            max_partitions_per_request: DEFAULT_MAX_PARTITIONS_PER_REQUEST,
            max_topics_created_per_request: DEFAULT_MAX_TOPICS_CREATED_PER_REQUEST,
            max_partitions_created_per_request: DEFAULT_MAX_PARTITIONS_CREATED_PER_REQUEST,
            max_decompressed_bytes_per_request: DEFAULT_MAX_DECOMPRESSED_BYTES_PER_REQUEST,
        }
    }
}

/// A broker as clients see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// Node id.
    pub id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port (0 until the listener is bound).
    pub port: i32,
    /// Whether the broker is up; a down broker is left out of Metadata.
    pub up: bool,
}

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

/// The whole cluster's state.
#[derive(Debug)]
pub struct ClusterState {
    config: ClusterConfig,
    brokers: Vec<BrokerInfo>,
    /// Where each broker id sits in `brokers`: lookups run per partition and replica.
    broker_positions: HashMap<i32, usize>,
    topics: BTreeMap<String, Topic>,
    topic_names_by_id: HashMap<Uuid, String>,
    /// Every topic by the name it has with `.` written `_` (Kafka's collision rule), so that
    /// a new name is checked against all of them at once, not one by one.
    topic_names_by_collision_key: HashMap<String, String>,
    topics_created: u64,
    next_producer_id: i64,
}

impl ClusterState {
    /// An empty cluster with the configured brokers, none of them bound yet.
    pub fn new(config: ClusterConfig) -> Self {
        let mut brokers: Vec<BrokerInfo> = Vec::with_capacity(config.broker_ids.len());
        let mut broker_positions = HashMap::with_capacity(config.broker_ids.len());
        for &id in &config.broker_ids {
            // A repeated id would be a second broker nobody can address: keep the first.
            if let std::collections::hash_map::Entry::Vacant(slot) = broker_positions.entry(id) {
                slot.insert(brokers.len());
                brokers.push(BrokerInfo {
                    id,
                    host: "127.0.0.1".into(),
                    port: 0,
                    up: true,
                });
            }
        }
        Self {
            config,
            brokers,
            broker_positions,
            topics: BTreeMap::new(),
            topic_names_by_id: HashMap::new(),
            topic_names_by_collision_key: HashMap::new(),
            topics_created: 0,
            next_producer_id: FIRST_PRODUCER_ID,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// All brokers, up or down.
    pub fn brokers(&self) -> &[BrokerInfo] {
        &self.brokers
    }

    /// Broker `id`, up or down.
    pub fn broker(&self, id: i32) -> Option<&BrokerInfo> {
        self.brokers.get(*self.broker_positions.get(&id)?)
    }

    fn broker_mut(&mut self, id: i32) -> Option<&mut BrokerInfo> {
        self.brokers.get_mut(*self.broker_positions.get(&id)?)
    }

    /// Whether broker `id` exists and is up.
    pub fn is_broker_up(&self, id: i32) -> bool {
        self.broker(id).is_some_and(|b| b.up)
    }

    /// The brokers that are up, in configured order.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerInfo> {
        self.brokers.iter().filter(|b| b.up)
    }

    /// The controller id clients are told: the first live broker (a KRaft cluster reports a
    /// live broker, since clients cannot reach the controller quorum), or -1.
    pub fn controller_id(&self) -> i32 {
        self.live_brokers().next().map_or(-1, |b| b.id)
    }

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
        for topic in self.topics.values_mut() {
            let unclean = topic
                .config("unclean.leader.election.enable")
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
            for partition in &mut topic.partitions {
                if up {
                    partition.broker_up(id, unclean, is_up);
                } else {
                    partition.broker_down(id, is_up);
                }
            }
        }
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
        self.topic_names_by_collision_key
            .remove(&topic::unify_collision_chars(name));
        Ok(topic.id)
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

    /// All topics, by name.
    pub fn topics(&self) -> impl Iterator<Item = &Topic> {
        self.topics.values()
    }

    /// Topic `name`.
    pub fn topic(&self, name: &str) -> Option<&Topic> {
        self.topics.get(name)
    }

    /// The topic with id `id`.
    pub fn topic_by_id(&self, id: Uuid) -> Option<&Topic> {
        self.topic_names_by_id
            .get(&id)
            .and_then(|name| self.topics.get(name))
    }

    /// Partition `partition` of `topic`.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<&Partition> {
        self.topics.get(topic)?.partition(partition)
    }

    /// The log of `topic`/`partition`: high watermark, log start and end offsets, batches.
    pub fn partition_log(&self, topic: &str, partition: i32) -> Option<&PartitionLog> {
        self.partition(topic, partition).map(Partition::log)
    }

    /// The idempotent producers' state on `topic`/`partition`: per producer id, its epoch
    /// and its last five batches' sequences and offsets.
    pub fn producer_state(&self, topic: &str, partition: i32) -> Option<&ProducerStates> {
        self.partition_log(topic, partition)
            .map(PartitionLog::producer_states)
    }

    /// A new producer id for an idempotent producer (InitProducerId without a transactional
    /// id), from a cluster-wide counter starting at [`FIRST_PRODUCER_ID`]. Never the same
    /// twice; UNKNOWN_SERVER_ERROR once every id is used up, as Kafka's `ProducerIdManager`
    /// fails then.
    pub fn allocate_producer_id(&mut self) -> Result<i64, ErrorCode> {
        let id = self.next_producer_id;
        self.next_producer_id = id.checked_add(1).ok_or(ErrorCode::UnknownServerError)?;
        Ok(id)
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
        let p = self
            .topics
            .get_mut(topic)
            .and_then(|t| t.partition_mut(partition))
            .ok_or(ErrorCode::UnknownTopicOrPartition)?;
        if !p.replicas().contains(&broker) {
            return Err(ErrorCode::InvalidReplicaAssignment);
        }
        if !up {
            return Err(ErrorCode::BrokerNotAvailable);
        }
        p.join_isr(broker);
        p.elect(broker);
        Ok(())
    }

    /// The limits that govern appends to `topic`: its configs over the cluster's.
    pub fn append_limits(&self, topic: &str) -> Option<AppendLimits> {
        let t = self.topics.get(topic)?;
        let long = |key: &str, default: i64| {
            t.config(key)
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(default)
        };
        let max_message_bytes = t
            .config("max.message.bytes")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(self.config.message_max_bytes);
        Some(AppendLimits {
            max_message_bytes,
            log_append_time: t.config("message.timestamp.type") == Some("LogAppendTime"),
            timestamp_before_max_ms: long("message.timestamp.before.max.ms", i64::MAX),
            timestamp_after_max_ms: long("message.timestamp.after.max.ms", 3_600_000),
        })
    }

    /// Validates a produce request's `records` for `topic`/`partition` as a leader would and
    /// appends the batch, at time `now_ms` (see [`log_validator`]), then checks its
    /// producer's epoch and sequence (see [`producer_state`]): a retried batch is answered
    /// with the original's offsets ([`AppendInfo::duplicate`]) and not appended again. Does
    /// not check leadership: that depends on the broker asked.
    pub fn append_records(
        &mut self,
        topic: &str,
        partition: i32,
        records: &[u8],
        now_ms: i64,
    ) -> Result<AppendInfo, ClusterError> {
        if !self.topics.contains_key(topic) {
            return Err(ClusterError::code(ErrorCode::UnknownTopicOrPartition));
        }
        let batch = log_validator::single_batch(records)?;
        self.append_batch(
            topic,
            partition,
            batch,
            now_ms,
            None,
            &mut InflateBudget::per_batch_only(),
        )
    }

    /// Appends one batch of a produce request (as [`log_validator::single_batch`] found it)
    /// as [`ClusterState::append_records`] does, with the log-level validation taken from
    /// `prevalidated` when it was done at `now_ms` against the topic's current limits, and
    /// otherwise done here, inflating compressed records within `budget`.
    pub fn append_batch(
        &mut self,
        topic: &str,
        partition: i32,
        batch: &[u8],
        now_ms: i64,
        prevalidated: Option<PrevalidatedBatch>,
        budget: &mut InflateBudget,
    ) -> Result<AppendInfo, ClusterError> {
        let limits = self
            .append_limits(topic)
            .ok_or(ClusterError::code(ErrorCode::UnknownTopicOrPartition))?;
        match prevalidated {
            Some(done) if done.limits == limits && done.now_ms == now_ms => done.outcome?,
            _ => {
                log_validator::validate_for_append_within(batch, &limits, now_ms, budget)?;
            }
        }
        let p = self
            .topics
            .get_mut(topic)
            .and_then(|t| t.partition_mut(partition))
            .ok_or(ClusterError::code(ErrorCode::UnknownTopicOrPartition))?;
        let epoch = p.leader_epoch();
        p.log_mut()
            .append(batch, epoch, limits.log_append_time.then_some(now_ms))
    }

    /// Moves the log start offset of `topic`/`partition` to `before_offset` (-1: the high
    /// watermark), as DeleteRecords does. Returns the new log start offset. Errors:
    /// UNKNOWN_TOPIC_OR_PARTITION, OFFSET_OUT_OF_RANGE, POLICY_VIOLATION (compact-only topic).
    pub fn delete_records(
        &mut self,
        topic: &str,
        partition: i32,
        before_offset: i64,
    ) -> Result<i64, ErrorCode> {
        let t = self
            .topics
            .get_mut(topic)
            .ok_or(ErrorCode::UnknownTopicOrPartition)?;
        let compact_only = t.config("cleanup.policy").is_some_and(|v| {
            let policies: Vec<&str> = v.split(',').map(str::trim).collect();
            policies.contains(&"compact") && !policies.contains(&"delete")
        });
        let p = t
            .partition_mut(partition)
            .ok_or(ErrorCode::UnknownTopicOrPartition)?;
        if compact_only {
            return Err(ErrorCode::PolicyViolation);
        }
        p.log_mut().delete_records_before(before_offset)
    }

    /// The partition a client may use on `broker`, as Kafka's `ReplicaManager` decides:
    /// UNKNOWN_TOPIC_OR_PARTITION if it does not exist; NOT_LEADER_OR_FOLLOWER if `broker`
    /// holds no replica; FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH if
    /// `current_leader_epoch` (unless -1) is older / newer than the partition's (KIP-320);
    /// NOT_LEADER_OR_FOLLOWER if `require_leader` and `broker` does not lead.
    pub fn client_partition(
        &self,
        topic: &str,
        partition: i32,
        broker: i32,
        current_leader_epoch: i32,
        require_leader: bool,
    ) -> Result<&Partition, ErrorCode> {
        let p = self
            .partition(topic, partition)
            .ok_or(ErrorCode::UnknownTopicOrPartition)?;
        if !p.replicas().contains(&broker) {
            return Err(ErrorCode::NotLeaderOrFollower);
        }
        if current_leader_epoch != -1 {
            if current_leader_epoch < p.leader_epoch() {
                return Err(ErrorCode::FencedLeaderEpoch);
            }
            if current_leader_epoch > p.leader_epoch() {
                return Err(ErrorCode::UnknownLeaderEpoch);
            }
        }
        if require_leader && p.leader() != broker {
            return Err(ErrorCode::NotLeaderOrFollower);
        }
        Ok(p)
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
    use super::test_batches::BatchBuilder;
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
    fn delete_records_respects_the_cleanup_policy() {
        let mut c = cluster();
        c.create_topic("t", 1, BTreeMap::new()).expect("create");
        let compact = BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]);
        c.create_topic("c", 1, compact).expect("create");
        c.append_records("t", 0, &BatchBuilder::new(0).records(4, 1).build(), 0)
            .expect("append");
        assert_eq!(c.delete_records("t", 0, 2), Ok(2));
        assert_eq!(
            c.partition_log("t", 0).map(PartitionLog::log_start_offset),
            Some(2)
        );
        assert_eq!(c.delete_records("c", 0, 0), Err(ErrorCode::PolicyViolation));
        assert_eq!(
            c.delete_records("t", 1, 0),
            Err(ErrorCode::UnknownTopicOrPartition)
        );
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
