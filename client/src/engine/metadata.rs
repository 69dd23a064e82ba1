//! The client's view of the cluster: brokers, topics, partitions and their leaders
//! (protocol guide, "Metadata"; KIP-320 for leader epochs).
//!
//! Call order: [`Metadata::request`] is what to ask for; feed each Metadata response
//! to [`Metadata::handle_response`]; call [`Metadata::invalidate`] when a request fails with
//! NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE or a disconnect;
//! ask [`Metadata::refresh_due`] when to refresh next.
//!
//! A partition's entry is only replaced by one with the same or a newer leader epoch: a
//! response from a broker that has not yet heard of a leader change must not move the
//! client back to the old leader.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, Instant};

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use crate::proto::ErrorCode;

/// A broker's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddress {
    /// Node id.
    pub id: i32,
    /// Host.
    pub host: String,
    /// Port.
    pub port: i32,
    /// Rack, if any.
    pub rack: Option<String>,
}

impl BrokerAddress {
    /// `host:port`.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// One partition's leadership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// Partition index.
    pub partition: i32,
    /// Leader broker id, or -1.
    pub leader: i32,
    /// Leader epoch, or -1 when the broker does not report one.
    pub leader_epoch: i32,
    /// Replica broker ids.
    pub replicas: Vec<i32>,
    /// In-sync replica ids.
    pub isr: Vec<i32>,
    /// The partition's error, e.g. LEADER_NOT_AVAILABLE.
    pub error: Option<ErrorCode>,
}

/// One topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// Name.
    pub name: String,
    /// Topic id (nil for brokers before Metadata v10).
    pub id: Uuid,
    /// Partitions, indexed by partition number.
    pub partitions: Vec<PartitionInfo>,
    /// Internal topic (`__consumer_offsets`, ...).
    pub is_internal: bool,
}

/// The metadata cache.
#[derive(Debug)]
pub struct Metadata {
    brokers: BTreeMap<i32, BrokerAddress>,
    /// By name, hashed with FNV-1a: `send` looks its topic up for every record, and the
    /// names are the client's own (no flooding to defend against).
    topics: HashMap<String, TopicInfo, BuildHasherDefault<Fnv1a>>,
    names_by_id: HashMap<Uuid, String>,
    /// Topics the client uses; only these are asked for (unless `all_topics`).
    wanted: BTreeSet<String>,
    /// Ask for every topic (a consumer's pattern subscription).
    all_topics: bool,
    /// Errors of wanted topics in the last response (unknown topic, ...).
    topic_errors: HashMap<String, ErrorCode>,
    cluster_id: Option<String>,
    controller_id: i32,
    max_age: Duration,
    last_refresh: Option<Instant>,
    stale: bool,
}

impl Metadata {
    /// An empty cache refreshed at least every `max_age` (`metadata.max.age.ms`).
    pub fn new(max_age: Duration) -> Self {
        Self {
            brokers: BTreeMap::new(),
            topics: HashMap::default(),
            names_by_id: HashMap::new(),
            wanted: BTreeSet::new(),
            all_topics: false,
            topic_errors: HashMap::new(),
            cluster_id: None,
            controller_id: -1,
            max_age,
            last_refresh: None,
            stale: true,
        }
    }

    /// Adds `topic` to the topics the client asks about; an unknown one makes the cache
    /// stale.
    pub fn want(&mut self, topic: &str) {
        if self.wanted.insert(topic.to_string()) && !self.topics.contains_key(topic) {
            self.stale = true;
        }
    }

    /// Asks for every topic from now on (`true`), as a pattern subscription needs, or only
    /// for the wanted ones again.
    pub fn want_all_topics(&mut self, all: bool) {
        if all && !self.all_topics {
            self.stale = true;
        }
        self.all_topics = all;
    }

    /// Every topic in the cache.
    pub fn topics(&self) -> impl Iterator<Item = &TopicInfo> {
        self.topics.values()
    }

    /// The Metadata request for the wanted topics (any version: the fields it sets exist in
    /// all), or for all topics (null from v1 on) while a pattern subscription asks for
    /// them. An empty list asks only for the brokers (v0 reads it as "all topics", which is
    /// harmless).
    pub fn request(&self) -> MetadataRequest {
        if self.all_topics {
            return MetadataRequest::default()
                .with_topics(None)
                .with_allow_auto_topic_creation(false);
        }
        let topics = self
            .wanted
            .iter()
            .map(|t| {
                MetadataRequestTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_string(t.clone()))))
            })
            .collect();
        MetadataRequest::default()
            .with_topics(Some(topics))
            .with_allow_auto_topic_creation(true)
    }

    /// Marks the cache stale so that the next [`Metadata::refresh_due`] is now.
    pub fn invalidate(&mut self) {
        self.stale = true;
    }

    /// When the next refresh is due: `now` when stale or never refreshed, else the
    /// periodic deadline.
    pub fn refresh_due(&self, now: Instant) -> Instant {
        match self.last_refresh {
            Some(at) if !self.stale => at + self.max_age,
            _ => now,
        }
    }

    /// Applies a Metadata response received at `now`.
    pub fn handle_response(&mut self, response: &MetadataResponse, now: Instant) {
        self.brokers = response
            .brokers
            .iter()
            .map(|b| {
                let address = BrokerAddress {
                    id: b.node_id.0,
                    host: b.host.to_string(),
                    port: b.port,
                    rack: b.rack.as_ref().map(|r| r.to_string()),
                };
                (address.id, address)
            })
            .collect();
        self.cluster_id = response.cluster_id.as_ref().map(|c| c.to_string());
        // A controller that is not among the brokers cannot be reached: Java's
        // MetadataResponse.controller() is null then, and its admin client waits for new
        // metadata. (librdkafka 2.0's mock cluster names broker 0, which it does not have.)
        let controller = response.controller_id.0;
        self.controller_id = if self.brokers.contains_key(&controller) {
            controller
        } else {
            -1
        };
        let mut incomplete = false;
        for topic in &response.topics {
            let Some(name) = topic.name.as_ref().map(|n| n.to_string()) else {
                continue;
            };
            if let Some(code) = ErrorCode::try_from_code(topic.error_code) {
                self.topic_errors.insert(name.clone(), code);
                if code.is_retriable() {
                    incomplete = true;
                }
                if code == ErrorCode::UnknownTopicOrPartition {
                    if let Some(old) = self.topics.remove(&name) {
                        self.names_by_id.remove(&old.id);
                    }
                }
                continue;
            }
            self.topic_errors.remove(&name);
            let mut partitions: Vec<PartitionInfo> = topic
                .partitions
                .iter()
                .map(|p| PartitionInfo {
                    partition: p.partition_index,
                    leader: p.leader_id.0,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                    isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                    error: ErrorCode::try_from_code(p.error_code),
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            if partitions
                .iter()
                .enumerate()
                .any(|(i, p)| p.partition != i as i32)
            {
                // Gaps in the partition list: not something a broker sends; ask again.
                incomplete = true;
                continue;
            }
            if let Some(old) = self.topics.get(&name) {
                for (new, old) in partitions.iter_mut().zip(&old.partitions) {
                    if new.leader_epoch >= 0 && old.leader_epoch > new.leader_epoch {
                        *new = old.clone();
                        incomplete = true;
                    }
                }
            }
            if partitions.iter().any(|p| p.leader < 0 || p.error.is_some()) {
                incomplete = true;
            }
            self.names_by_id.insert(topic.topic_id, name.clone());
            self.topics.insert(
                name.clone(),
                TopicInfo {
                    name,
                    id: topic.topic_id,
                    partitions,
                    is_internal: topic.is_internal,
                },
            );
        }
        self.last_refresh = Some(now);
        // Leaderless partitions or stale epochs: refresh again soon (the caller backs off).
        self.stale = incomplete;
    }

    /// A broker by id.
    pub fn broker(&self, id: i32) -> Option<&BrokerAddress> {
        self.brokers.get(&id)
    }

    /// All known brokers.
    pub fn brokers(&self) -> impl Iterator<Item = &BrokerAddress> {
        self.brokers.values()
    }

    /// A topic by name.
    pub fn topic(&self, name: &str) -> Option<&TopicInfo> {
        self.topics.get(name)
    }

    /// A topic's name by id.
    pub fn topic_name(&self, id: Uuid) -> Option<&str> {
        self.names_by_id.get(&id).map(String::as_str)
    }

    /// The error the last response gave for `topic`, if any.
    pub fn topic_error(&self, topic: &str) -> Option<ErrorCode> {
        self.topic_errors.get(topic).copied()
    }

    /// Number of partitions of `topic`, if known.
    pub fn partition_count(&self, topic: &str) -> Option<usize> {
        self.topics.get(topic).map(|t| t.partitions.len())
    }

    /// The leader of `topic`/`partition`, if it has one that is a known broker.
    pub fn leader(&self, topic: &str, partition: i32) -> Option<&PartitionInfo> {
        let info = self
            .topics
            .get(topic)?
            .partitions
            .get(usize::try_from(partition).ok()?)?;
        (info.leader >= 0 && self.brokers.contains_key(&info.leader)).then_some(info)
    }

    /// The cluster id, once known.
    pub fn cluster_id(&self) -> Option<&str> {
        self.cluster_id.as_deref()
    }

    /// The controller's broker id, or -1.
    pub fn controller_id(&self) -> i32 {
        self.controller_id
    }
}

/// The 64-bit FNV-1a hash: a few cycles for a topic name, where SipHash costs tens of
/// nanoseconds per lookup.
#[derive(Debug, Clone, Copy)]
pub struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv1a {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::{BrokerId, TopicName};
    use kafka_protocol::protocol::StrBytes;

    fn response(leaders: &[(i32, i32)]) -> MetadataResponse {
        let brokers = (0..3)
            .map(|id| {
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(id))
                    .with_host(StrBytes::from_static_str("127.0.0.1"))
                    .with_port(9092 + id)
            })
            .collect();
        let partitions = leaders
            .iter()
            .enumerate()
            .map(|(i, (leader, epoch))| {
                MetadataResponsePartition::default()
                    .with_partition_index(i as i32)
                    .with_leader_id(BrokerId(*leader))
                    .with_leader_epoch(*epoch)
            })
            .collect();
        let topic = MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str("orders"))))
            .with_topic_id(Uuid::from_u128(7))
            .with_partitions(partitions);
        MetadataResponse::default()
            .with_brokers(brokers)
            .with_topics(vec![topic])
    }

    #[test]
    fn a_controller_that_is_no_broker_is_unknown() {
        let now = Instant::now();
        let mut md = Metadata::new(Duration::from_secs(300));
        md.handle_response(&response(&[]).with_controller_id(BrokerId(2)), now);
        assert_eq!(md.controller_id(), 2);
        // Brokers 0..3 only: broker 7 cannot be reached, so no controller is known.
        md.handle_response(&response(&[]).with_controller_id(BrokerId(7)), now);
        assert_eq!(md.controller_id(), -1);
    }

    #[test]
    fn caches_leaders_and_resolves_ids() {
        let now = Instant::now();
        let mut md = Metadata::new(Duration::from_secs(300));
        md.want("orders");
        assert_eq!(md.refresh_due(now), now);
        md.handle_response(&response(&[(0, 1), (1, 1)]), now);
        assert_eq!(md.partition_count("orders"), Some(2));
        assert_eq!(md.leader("orders", 1).map(|p| p.leader), Some(1));
        assert_eq!(
            md.broker(1).map(BrokerAddress::address).as_deref(),
            Some("127.0.0.1:9093")
        );
        assert_eq!(md.topic_name(Uuid::from_u128(7)), Some("orders"));
        assert_eq!(md.refresh_due(now), now + Duration::from_secs(300));
        md.invalidate();
        assert_eq!(md.refresh_due(now), now);
    }

    #[test]
    fn an_older_leader_epoch_does_not_replace_a_newer_one() {
        let now = Instant::now();
        let mut md = Metadata::new(Duration::from_secs(300));
        md.handle_response(&response(&[(2, 5)]), now);
        md.handle_response(&response(&[(0, 4)]), now);
        assert_eq!(
            md.leader("orders", 0).map(|p| (p.leader, p.leader_epoch)),
            Some((2, 5))
        );
        assert_eq!(
            md.refresh_due(now),
            now,
            "a stale answer asks for another refresh"
        );
        md.handle_response(&response(&[(1, 6)]), now);
        assert_eq!(
            md.leader("orders", 0).map(|p| (p.leader, p.leader_epoch)),
            Some((1, 6))
        );
    }

    #[test]
    fn leaderless_partitions_and_unknown_topics() {
        let now = Instant::now();
        let mut md = Metadata::new(Duration::from_secs(300));
        md.handle_response(&response(&[(-1, 3)]), now);
        assert!(md.leader("orders", 0).is_none());
        assert_eq!(md.refresh_due(now), now);
        let mut unknown = response(&[]);
        unknown.topics[0].error_code = ErrorCode::UnknownTopicOrPartition.code();
        md.handle_response(&unknown, now);
        assert_eq!(
            md.topic_error("orders"),
            Some(ErrorCode::UnknownTopicOrPartition)
        );
        assert!(md.topic("orders").is_none());
        assert!(md.leader("orders", 7).is_none());
    }
}
