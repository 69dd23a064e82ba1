//! Where coordinators live: the group coordinator of a group id and the transaction
//! coordinator of a transactional id are the leader of one partition of an internal topic,
//! as in Kafka (`GroupCoordinatorService.partitionFor`, `TransactionStateManager.partitionFor`,
//! `KafkaApis.getCoordinator`).
//!
//! - A group's partition of `__consumer_offsets` is `abs(hash(group id)) %
//!   offsets.topic.num.partitions` (default 50), where `hash` is Java's `String.hashCode`
//!   and `abs` Kafka's `Utils.abs` (`i32::MIN` is 0); a transactional id's partition of
//!   `__transaction_state` likewise with `transaction.state.log.num.partitions` (default 50).
//! - The topics are created by the first FindCoordinator that needs them, with
//!   `offsets.topic.replication.factor` (`transaction.state.log.replication.factor`)
//!   replicas and Kafka's configs (`cleanup.policy=compact`, ...). As in Kafka, that request
//!   is answered COORDINATOR_NOT_AVAILABLE (Kafka asks its controller to create the topic and
//!   answers at once); the client's next FindCoordinator finds the leader. When fewer
//!   brokers are up than the replication factor, the topic is not created and every
//!   FindCoordinator is answered COORDINATOR_NOT_AVAILABLE, as Kafka's controller refuses
//!   the creation. The harness's default factor is min(3, brokers of the cluster), where
//!   Kafka's is 3 (which a one-broker Kafka never reaches unless configured down).
//! - The coordinator is simply the partition's current leader: it moves when its broker
//!   stops or leadership moves ([`ClusterState::set_leader`], or
//!   `Cluster::move_group_coordinator`). While the partition has no leader FindCoordinator
//!   answers COORDINATOR_NOT_AVAILABLE; a coordinator request sent to a broker that does not
//!   lead the partition (or before the topic exists) is answered NOT_COORDINATOR, as
//!   Kafka's coordinator runtime answers for a partition it has not loaded.
//! - After a move, the new leader "loads" the partition for
//!   [`CoordinatorConfig::load_delay`] (0 by default): requests meanwhile are answered
//!   COORDINATOR_LOAD_IN_PROGRESS, as while Kafka replays the partition's log.
//!
//! State changes here need the time of the change, which controller operations do not take:
//! the state keeps the latest time it was shown ([`ClusterState::observe_time`], called by
//! the server before each request, by the cluster's operations and by the timer), which is
//! the time of any change made meanwhile.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use franzy::proto::ErrorCode;
use uuid::Uuid;

use super::controller::NewTopic;
use super::{ClusterState, Time};

/// The group coordinator's internal topic.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// The transaction coordinator's internal topic.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";
/// Kafka's default `offsets.topic.num.partitions` and
/// `transaction.state.log.num.partitions`.
pub const DEFAULT_INTERNAL_TOPIC_PARTITIONS: i32 = 50;
/// Kafka's default `offsets.topic.replication.factor` and
/// `transaction.state.log.replication.factor`.
pub const DEFAULT_INTERNAL_TOPIC_REPLICATION_FACTOR: i16 = 3;

/// Which coordinator a key belongs to: FindCoordinator's `key_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CoordinatorType {
    /// A consumer group id (key type 0).
    Group,
    /// A transactional id (key type 1).
    Transaction,
}

impl CoordinatorType {
    /// The type FindCoordinator's `key_type` names; `None` for share groups (2, which this
    /// harness has no coordinator for) and unknown types.
    pub fn from_key_type(key_type: i8) -> Option<Self> {
        match key_type {
            0 => Some(Self::Group),
            1 => Some(Self::Transaction),
            _ => None,
        }
    }

    /// The coordinator whose internal topic is `topic`, if it is one.
    pub fn of_internal_topic(topic: &str) -> Option<Self> {
        match topic {
            OFFSETS_TOPIC => Some(Self::Group),
            TRANSACTION_STATE_TOPIC => Some(Self::Transaction),
            _ => None,
        }
    }

    /// The internal topic whose partition leaders are these coordinators.
    pub fn topic(self) -> &'static str {
        match self {
            Self::Group => OFFSETS_TOPIC,
            Self::Transaction => TRANSACTION_STATE_TOPIC,
        }
    }
}

/// Settings of the internal topics and of coordinator moves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorConfig {
    /// Partitions of `__consumer_offsets` (`offsets.topic.num.partitions`). Default 50.
    pub offsets_topic_partitions: i32,
    /// Replicas of `__consumer_offsets` (`offsets.topic.replication.factor`); `None`:
    /// min(3, brokers of the cluster). Default `None`.
    pub offsets_topic_replication_factor: Option<i16>,
    /// Partitions of `__transaction_state` (`transaction.state.log.num.partitions`).
    /// Default 50.
    pub transaction_topic_partitions: i32,
    /// Replicas of `__transaction_state` (`transaction.state.log.replication.factor`);
    /// `None`: min(3, brokers of the cluster). Default `None`.
    pub transaction_topic_replication_factor: Option<i16>,
    /// How long a broker that became the leader of an internal partition answers
    /// COORDINATOR_LOAD_IN_PROGRESS for it (Kafka loads the partition's log first).
    /// Default zero.
    pub load_delay: Duration,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        Self {
            offsets_topic_partitions: DEFAULT_INTERNAL_TOPIC_PARTITIONS,
            offsets_topic_replication_factor: None,
            transaction_topic_partitions: DEFAULT_INTERNAL_TOPIC_PARTITIONS,
            transaction_topic_replication_factor: None,
            load_delay: Duration::ZERO,
        }
    }
}

impl CoordinatorConfig {
    /// Partitions of `kind`'s internal topic.
    pub fn partitions(&self, kind: CoordinatorType) -> i32 {
        match kind {
            CoordinatorType::Group => self.offsets_topic_partitions,
            CoordinatorType::Transaction => self.transaction_topic_partitions,
        }
    }

    fn replication_factor(&self, kind: CoordinatorType) -> Option<i16> {
        match kind {
            CoordinatorType::Group => self.offsets_topic_replication_factor,
            CoordinatorType::Transaction => self.transaction_topic_replication_factor,
        }
    }
}

/// What the state keeps about coordinator placement: the latest time it was shown, and
/// the internal partitions still loading after a move.
#[derive(Debug, Default)]
pub struct Placement {
    now: Time,
    /// Internal partitions being loaded by their new leader, until when.
    loading: HashMap<(CoordinatorType, i32), Time>,
}

/// Java's `String.hashCode`: `s[0]*31^(n-1) + ... + s[n-1]` over UTF-16 code units,
/// wrapping.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// The partition (of `partitions`) a key's coordinator lives on: Kafka's
/// `Utils.abs(key.hashCode()) % partitions`, where `Utils.abs(i32::MIN)` is 0. Partition 0
/// for a non-positive count.
pub fn partition_for(key: &str, partitions: i32) -> i32 {
    if partitions <= 0 {
        return 0;
    }
    let hash = java_string_hash(key);
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs % partitions
}

impl ClusterState {
    /// Tells the state the cluster's time: changes made without a request (leader moves,
    /// brokers stopped) take effect at the latest time shown. Never goes back.
    pub fn observe_time(&mut self, now: Time) {
        if now > self.placement.now {
            self.placement.now = now;
        }
    }

    /// The latest cluster time the state was shown.
    pub fn time(&self) -> Time {
        self.placement.now
    }

    /// The partition of `kind`'s internal topic that `key`'s coordinator lives on.
    pub fn coordinator_partition(&self, kind: CoordinatorType, key: &str) -> i32 {
        partition_for(key, self.config.coordinators.partitions(kind))
    }

    /// The broker coordinating `key`, for FindCoordinator: the leader of its internal
    /// partition. The first call for a kind creates its internal topic and answers
    /// COORDINATOR_NOT_AVAILABLE, as Kafka does; so does a partition without a leader, and
    /// a topic that cannot be created (fewer live brokers than its replication factor).
    pub fn find_coordinator(&mut self, kind: CoordinatorType, key: &str) -> Result<i32, ErrorCode> {
        let partition = self.coordinator_partition(kind, key);
        let Some(topic) = self.topic(kind.topic()) else {
            // Created or not (logged), the client asks again.
            let _ = self.create_internal_topic(kind);
            return Err(ErrorCode::CoordinatorNotAvailable);
        };
        match topic.partition(partition).map(|p| p.leader()) {
            Some(leader) if leader >= 0 && self.is_broker_up(leader) => Ok(leader),
            _ => Err(ErrorCode::CoordinatorNotAvailable),
        }
    }

    /// Whether `broker` may serve a request for `key`'s coordinator now: NOT_COORDINATOR
    /// unless it leads the key's internal partition (or before the topic exists),
    /// COORDINATOR_LOAD_IN_PROGRESS while it loads the partition after a move. Returns the
    /// partition.
    pub fn check_coordinator(
        &self,
        kind: CoordinatorType,
        key: &str,
        broker: i32,
        now: Time,
    ) -> Result<i32, ErrorCode> {
        let partition = self.coordinator_partition(kind, key);
        let leader = self
            .partition(kind.topic(), partition)
            .map_or(-1, |p| p.leader());
        if leader < 0 || leader != broker {
            return Err(ErrorCode::NotCoordinator);
        }
        match self.placement.loading.get(&(kind, partition)) {
            Some(&until) if now < until => Err(ErrorCode::CoordinatorLoadInProgress),
            _ => Ok(partition),
        }
    }

    /// Creates `kind`'s internal topic now if it does not exist (with its partitions,
    /// replication factor and configs, as FindCoordinator would). Errors as topic creation
    /// (INVALID_REPLICATION_FACTOR when fewer brokers are up than the factor).
    pub fn create_internal_topic(&mut self, kind: CoordinatorType) -> Result<Uuid, ErrorCode> {
        if let Some(topic) = self.topic(kind.topic()) {
            return Ok(topic.id());
        }
        let partitions = self.config.coordinators.partitions(kind);
        let factor = self
            .config
            .coordinators
            .replication_factor(kind)
            .unwrap_or_else(|| {
                let brokers = i16::try_from(self.brokers().len()).unwrap_or(i16::MAX);
                DEFAULT_INTERNAL_TOPIC_REPLICATION_FACTOR.min(brokers.max(1))
            });
        let request = internal_topic_request(kind, partitions, factor);
        match self.create_topic_with(&request, false) {
            Ok(created) => Ok(created.id),
            Err(error) => {
                tracing::warn!(
                    topic = kind.topic(),
                    code = ?error.code,
                    message = error.message.as_deref().unwrap_or(""),
                    "cannot create the internal topic; coordinators stay unavailable"
                );
                Err(error.code)
            }
        }
    }

    /// Makes `broker` the coordinator of `key` by moving the leadership of its internal
    /// partition there (creating the internal topic first if needed). Errors as
    /// [`ClusterState::set_leader`].
    pub fn move_coordinator(
        &mut self,
        kind: CoordinatorType,
        key: &str,
        broker: i32,
    ) -> Result<(), ErrorCode> {
        self.create_internal_topic(kind)?;
        let partition = self.coordinator_partition(kind, key);
        self.set_leader(kind.topic(), partition, broker)
    }

    /// Leadership of these partitions (by topic id) changed: internal partitions start
    /// loading on their new leader, and the coordinators let go of what their old leader
    /// held. Called by the controller's operations.
    pub(crate) fn coordinator_leaders_changed(&mut self, changed: &[(Uuid, i32)]) {
        if changed.is_empty() {
            return;
        }
        let mut moved: BTreeMap<CoordinatorType, Vec<i32>> = BTreeMap::new();
        for kind in [CoordinatorType::Group, CoordinatorType::Transaction] {
            let Some(id) = self.topic(kind.topic()).map(|t| t.id()) else {
                continue;
            };
            for &(topic, partition) in changed {
                if topic == id {
                    moved.entry(kind).or_default().push(partition);
                }
            }
        }
        let until = self.placement.now + self.config.coordinators.load_delay;
        for (&kind, partitions) in &moved {
            for &partition in partitions {
                if self.config.coordinators.load_delay.is_zero() {
                    self.placement.loading.remove(&(kind, partition));
                } else {
                    self.placement.loading.insert((kind, partition), until);
                }
            }
        }
    }
}

/// The CreateTopics entry Kafka's broker sends its controller for an internal topic
/// (`DefaultAutoTopicCreationManager.creatableTopic`), with the configs its coordinator
/// asks for.
fn internal_topic_request(kind: CoordinatorType, partitions: i32, factor: i16) -> NewTopic {
    let config = |key: &str, value: &str| (key.to_string(), Some(value.to_string()));
    let configs = match kind {
        CoordinatorType::Group => vec![
            config("cleanup.policy", "compact"),
            config("compression.type", "producer"),
            config("segment.bytes", "104857600"),
        ],
        CoordinatorType::Transaction => vec![
            config("cleanup.policy", "compact"),
            config("compression.type", "producer"),
            config("min.insync.replicas", "2"),
            config("segment.bytes", "104857600"),
            config("unclean.leader.election.enable", "false"),
        ],
    };
    NewTopic {
        name: kind.topic().to_string(),
        num_partitions: partitions,
        replication_factor: factor,
        assignments: Vec::new(),
        configs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ClusterConfig;

    fn cluster() -> ClusterState {
        ClusterState::new(ClusterConfig::default())
    }

    #[test]
    fn hashes_and_partitions_are_javas() {
        // Values of "...".hashCode() in Java.
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("hello"), 99_162_322);
        assert_eq!(java_string_hash("my-group"), -1_906_497_762);
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        // Non-ASCII text is hashed by UTF-16 code units ("é" is 0xE9, "😀" two units).
        assert_eq!(java_string_hash("é"), 0xE9);
        assert_eq!(java_string_hash("😀"), 1_772_899);
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        assert_eq!(partition_for("hello", 50), 99_162_322 % 50);
        // A negative hash: its absolute value.
        assert_eq!(partition_for("my-group", 50), 1_906_497_762 % 50);
        assert_eq!(partition_for("x", 0), 0);
    }

    #[test]
    fn the_first_lookup_creates_the_topic_and_answers_not_available_once() {
        let mut c = cluster();
        assert_eq!(
            c.find_coordinator(CoordinatorType::Group, "g"),
            Err(ErrorCode::CoordinatorNotAvailable)
        );
        let topic = c.topic(OFFSETS_TOPIC).expect("created");
        assert_eq!(topic.partitions().len(), 50);
        assert!(topic.is_internal());
        assert_eq!(topic.config("cleanup.policy"), Some("compact"));
        assert!(topic.partitions().iter().all(|p| p.replicas().len() == 3));
        let partition = c.coordinator_partition(CoordinatorType::Group, "g");
        let leader = c.partition(OFFSETS_TOPIC, partition).map(|p| p.leader());
        assert_eq!(c.find_coordinator(CoordinatorType::Group, "g").ok(), leader);
        // The transaction coordinator has a topic of its own.
        assert!(c.topic(TRANSACTION_STATE_TOPIC).is_none());
        assert_eq!(
            c.find_coordinator(CoordinatorType::Transaction, "t"),
            Err(ErrorCode::CoordinatorNotAvailable)
        );
        assert!(c
            .find_coordinator(CoordinatorType::Transaction, "t")
            .is_ok());
        assert_eq!(
            c.topic(TRANSACTION_STATE_TOPIC)
                .and_then(|t| t.config("min.insync.replicas")),
            Some("2")
        );
    }

    #[test]
    fn too_few_live_brokers_for_the_factor_leave_the_coordinator_unavailable() {
        let mut c = cluster();
        c.set_broker_up(2, false);
        for _ in 0..2 {
            assert_eq!(
                c.find_coordinator(CoordinatorType::Group, "g"),
                Err(ErrorCode::CoordinatorNotAvailable)
            );
        }
        assert!(c.topic(OFFSETS_TOPIC).is_none());
        c.set_broker_up(2, true);
        assert!(c.find_coordinator(CoordinatorType::Group, "g").is_err());
        assert!(c.find_coordinator(CoordinatorType::Group, "g").is_ok());
        // A one-broker cluster gets a factor of one by default.
        let mut single = ClusterState::new(ClusterConfig {
            broker_ids: vec![0],
            ..ClusterConfig::default()
        });
        assert!(single
            .find_coordinator(CoordinatorType::Group, "g")
            .is_err());
        assert_eq!(single.find_coordinator(CoordinatorType::Group, "g"), Ok(0));
    }

    #[test]
    fn the_coordinator_is_the_current_leader_and_moves_with_it() {
        let mut c = cluster();
        let _ = c.find_coordinator(CoordinatorType::Group, "g");
        let first = c
            .find_coordinator(CoordinatorType::Group, "g")
            .expect("a coordinator");
        let now = Time::ZERO;
        assert!(c
            .check_coordinator(CoordinatorType::Group, "g", first, now)
            .is_ok());
        let other = (first + 1) % 3;
        assert_eq!(
            c.check_coordinator(CoordinatorType::Group, "g", other, now),
            Err(ErrorCode::NotCoordinator)
        );
        c.move_coordinator(CoordinatorType::Group, "g", other)
            .expect("moved");
        assert_eq!(c.find_coordinator(CoordinatorType::Group, "g"), Ok(other));
        assert_eq!(
            c.check_coordinator(CoordinatorType::Group, "g", first, now),
            Err(ErrorCode::NotCoordinator)
        );
        // Its broker stops: the next replica leads.
        c.set_broker_up(other, false);
        let next = c
            .find_coordinator(CoordinatorType::Group, "g")
            .expect("another leader");
        assert_ne!(next, other);
        // No leader at all: not available; the brokers are not the coordinator.
        for b in 0..3 {
            c.set_broker_up(b, false);
        }
        assert_eq!(
            c.find_coordinator(CoordinatorType::Group, "g"),
            Err(ErrorCode::CoordinatorNotAvailable)
        );
    }

    #[test]
    fn a_new_leader_loads_for_the_configured_delay() {
        let mut c = ClusterState::new(ClusterConfig {
            coordinators: CoordinatorConfig {
                load_delay: Duration::from_secs(2),
                ..CoordinatorConfig::default()
            },
            ..ClusterConfig::default()
        });
        let at = |s| Time::from_start(Duration::from_secs(s));
        c.create_internal_topic(CoordinatorType::Group)
            .expect("created");
        let leader = c
            .find_coordinator(CoordinatorType::Group, "g")
            .expect("leader");
        // Created leaders are not moves: no loading.
        assert!(c
            .check_coordinator(CoordinatorType::Group, "g", leader, at(0))
            .is_ok());
        c.observe_time(at(10));
        let other = (leader + 1) % 3;
        c.move_coordinator(CoordinatorType::Group, "g", other)
            .expect("moved");
        assert_eq!(
            c.check_coordinator(CoordinatorType::Group, "g", other, at(11)),
            Err(ErrorCode::CoordinatorLoadInProgress)
        );
        assert!(c
            .check_coordinator(CoordinatorType::Group, "g", other, at(12))
            .is_ok());
        // Time never goes back.
        c.observe_time(at(5));
        assert_eq!(c.time(), at(10));
    }
}
