//! Planning: which Fetch and ListOffsets requests to send to which broker, and the
//! requests they become for the version negotiated with it (protocol guide, "Fetch API",
//! "ListOffsets"; KIP-74 byte limits, KIP-320 leader epochs, KIP-516 topic ids).

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{FetchRequest, ListOffsetsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::{millis_i32, FetchState, Fetcher, InFlightFetch, InFlightLookup, LookupTarget};
use crate::engine::metadata::Metadata;
use crate::error::Error;
use crate::topic_partition::TopicPartition;

/// One Fetch request to send: build it with [`FetchPlan::request`] for the negotiated
/// version, and hand the answer back with [`FetchPlan::id`].
#[derive(Debug, Clone)]
pub struct FetchPlan {
    id: u64,
    broker: i32,
    max_wait_ms: i32,
    min_bytes: i32,
    max_bytes: i32,
    isolation_level: i8,
    partitions: Vec<PlannedFetch>,
}

#[derive(Debug, Clone)]
pub(super) struct PlannedFetch {
    pub(super) tp: TopicPartition,
    pub(super) topic_id: Uuid,
    pub(super) leader_epoch: i32,
    pub(super) fetch_offset: i64,
    pub(super) max_bytes: i32,
    pub(super) generation: u64,
}

impl FetchPlan {
    /// The id to hand back with the answer.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The broker to send it to.
    pub fn broker(&self) -> i32 {
        self.broker
    }

    /// The partitions and fetch offsets, in request order.
    pub fn partitions(&self) -> impl Iterator<Item = (&TopicPartition, i64)> {
        self.partitions.iter().map(|p| (&p.tp, p.fetch_offset))
    }

    /// The request at `version`: topic names before v13, topic ids from v13 on (an error if
    /// the metadata had none), the current leader epoch from v9 on, and no fetch session
    /// (session id 0, epoch -1: a full fetch every time).
    pub fn request(&self, version: i16) -> Result<FetchRequest, Error> {
        let mut topics: Vec<FetchTopic> = Vec::new();
        for planned in &self.partitions {
            let partition = FetchPartition::default()
                .with_partition(planned.tp.partition)
                .with_current_leader_epoch(planned.leader_epoch)
                .with_fetch_offset(planned.fetch_offset)
                .with_partition_max_bytes(planned.max_bytes);
            let same_topic = topics.last().is_some_and(|t| {
                if version >= 13 {
                    t.topic_id == planned.topic_id
                } else {
                    t.topic.0.as_str() == planned.tp.topic
                }
            });
            if same_topic {
                if let Some(topic) = topics.last_mut() {
                    topic.partitions.push(partition);
                }
                continue;
            }
            let mut topic = FetchTopic::default().with_partitions(vec![partition]);
            if version >= 13 {
                if planned.topic_id.is_nil() {
                    return Err(Error::Protocol {
                        peer: format!("broker {}", self.broker),
                        reason: format!(
                            "Fetch v{version} needs a topic id, and metadata gave none for {}",
                            planned.tp.topic
                        ),
                    });
                }
                topic.topic_id = planned.topic_id;
            } else {
                topic.topic = TopicName(StrBytes::from_string(planned.tp.topic.clone()));
            }
            topics.push(topic);
        }
        Ok(FetchRequest::default()
            .with_replica_id((-1).into())
            .with_max_wait_ms(self.max_wait_ms)
            .with_min_bytes(self.min_bytes)
            .with_max_bytes(self.max_bytes)
            .with_isolation_level(self.isolation_level)
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(topics))
    }
}

/// One ListOffsets request to send; see [`FetchPlan`].
#[derive(Debug, Clone)]
pub struct ListOffsetsPlan {
    id: u64,
    broker: i32,
    isolation_level: i8,
    timeout_ms: i32,
    partitions: Vec<PlannedLookup>,
}

#[derive(Debug, Clone)]
pub(super) struct PlannedLookup {
    pub(super) tp: TopicPartition,
    pub(super) leader_epoch: i32,
    pub(super) target: LookupTarget,
    pub(super) generation: u64,
}

impl ListOffsetsPlan {
    /// The id to hand back with the answer.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The broker to send it to.
    pub fn broker(&self) -> i32 {
        self.broker
    }

    /// The request at `version` (1 and later): as a consumer (replica id -1), with the
    /// isolation level (v2+; brokers older than that have no transactions) and current
    /// leader epochs (v4+).
    pub fn request(&self, version: i16) -> ListOffsetsRequest {
        let mut topics: Vec<ListOffsetsTopic> = Vec::new();
        for planned in &self.partitions {
            let partition = ListOffsetsPartition::default()
                .with_partition_index(planned.tp.partition)
                .with_current_leader_epoch(planned.leader_epoch)
                .with_timestamp(planned.target.timestamp());
            match topics
                .iter_mut()
                .find(|t| t.name.0.as_str() == planned.tp.topic)
            {
                Some(topic) => topic.partitions.push(partition),
                None => topics.push(
                    ListOffsetsTopic::default()
                        .with_name(TopicName(StrBytes::from_string(planned.tp.topic.clone())))
                        .with_partitions(vec![partition]),
                ),
            }
        }
        ListOffsetsRequest::default()
            .with_replica_id((-1).into())
            .with_isolation_level(if version >= 2 {
                self.isolation_level
            } else {
                0
            })
            .with_timeout_ms(self.timeout_ms)
            .with_topics(topics)
    }
}

impl Fetcher {
    /// The ListOffsets requests to send now: one per broker leading partitions whose
    /// position must be looked up, unless one is in flight to that broker already.
    pub fn poll_list_offsets(&mut self, now: Instant, metadata: &Metadata) -> Vec<ListOffsetsPlan> {
        let mut groups: BTreeMap<i32, Vec<PlannedLookup>> = BTreeMap::new();
        let mut missing_leader = false;
        for (tp, state) in &mut self.partitions {
            let FetchState::Lookup {
                target,
                in_flight: false,
            } = state.state
            else {
                continue;
            };
            if !state.retry.ready(now) {
                continue;
            }
            let Some(info) = metadata.leader(&tp.topic, tp.partition) else {
                missing_leader = true;
                continue;
            };
            if self.brokers_looking_up.contains(&info.leader)
                || !self
                    .broker_backoff
                    .get_mut(&info.leader)
                    .is_none_or(|r| r.ready(now))
            {
                continue;
            }
            groups.entry(info.leader).or_default().push(PlannedLookup {
                tp: tp.clone(),
                leader_epoch: info.leader_epoch,
                target,
                generation: state.generation,
            });
        }
        if missing_leader {
            self.refresh.request();
        }
        let mut plans = Vec::with_capacity(groups.len());
        for (broker, partitions) in groups {
            for planned in &partitions {
                if let Some(state) = self.partitions.get_mut(&planned.tp) {
                    state.state = FetchState::Lookup {
                        target: planned.target,
                        in_flight: true,
                    };
                }
            }
            let id = self.next_id();
            self.brokers_looking_up.insert(broker);
            self.lookups.insert(
                id,
                InFlightLookup {
                    broker,
                    sent_at: now,
                    partitions: partitions.clone(),
                },
            );
            plans.push(ListOffsetsPlan {
                id,
                broker,
                isolation_level: self.config.isolation_level.wire_value(),
                timeout_ms: millis_i32(self.config.request_timeout),
                partitions,
            });
        }
        plans
    }

    /// The Fetch requests to send now: one per broker without a fetch in flight, for the
    /// partitions it leads that have a position, are not paused or backing off, and whose
    /// buffers are below the bounds (see the module documentation).
    pub fn poll_fetches(&mut self, now: Instant, metadata: &Metadata) -> Vec<FetchPlan> {
        let partition_limit = usize::try_from(self.config.partition_max_bytes).unwrap_or(0);
        let broker_limit = usize::try_from(self.config.max_bytes).unwrap_or(0);
        let mut buffered_by_broker: HashMap<i32, usize> = HashMap::new();
        for (tp, state) in &self.partitions {
            if state.paused || state.buffered_bytes == 0 {
                continue;
            }
            if let Some(info) = metadata.leader(&tp.topic, tp.partition) {
                *buffered_by_broker.entry(info.leader).or_default() += state.buffered_bytes;
            }
        }
        let mut groups: BTreeMap<i32, Vec<PlannedFetch>> = BTreeMap::new();
        let mut missing_leader = false;
        let count = self.partitions.len();
        for i in 0..count {
            let index = (self.fetch_rotation + i) % count;
            let Some((tp, state)) = self.partitions.get_index_mut(index) else {
                continue;
            };
            if state.state != FetchState::Fetching
                || state.paused
                || state.fetch_in_flight.is_some()
                || state.buffered_bytes >= partition_limit
                || !state.retry.ready(now)
            {
                continue;
            }
            let Some(info) = metadata.leader(&tp.topic, tp.partition) else {
                missing_leader = true;
                continue;
            };
            let broker = info.leader;
            if self.brokers_fetching.contains(&broker)
                || buffered_by_broker.get(&broker).copied().unwrap_or(0) >= broker_limit
                || !self
                    .broker_backoff
                    .get_mut(&broker)
                    .is_none_or(|r| r.ready(now))
            {
                continue;
            }
            let topic_id = metadata.topic(&tp.topic).map_or(Uuid::nil(), |t| t.id);
            groups.entry(broker).or_default().push(PlannedFetch {
                tp: tp.clone(),
                topic_id,
                leader_epoch: info.leader_epoch,
                fetch_offset: state.fetch_offset,
                max_bytes: self.config.partition_max_bytes,
                generation: state.generation,
            });
        }
        if missing_leader {
            self.refresh.request();
        }
        if !groups.is_empty() {
            self.fetch_rotation = self.fetch_rotation.wrapping_add(1);
        }
        let mut plans = Vec::with_capacity(groups.len());
        for (broker, partitions) in groups {
            let id = self.next_id();
            for planned in &partitions {
                if let Some(state) = self.partitions.get_mut(&planned.tp) {
                    state.fetch_in_flight = Some(id);
                }
            }
            self.brokers_fetching.insert(broker);
            self.fetches.insert(
                id,
                InFlightFetch {
                    broker,
                    sent_at: now,
                    partitions: partitions.clone(),
                },
            );
            plans.push(FetchPlan {
                id,
                broker,
                max_wait_ms: millis_i32(self.config.max_wait),
                min_bytes: self.config.min_bytes,
                max_bytes: self.config.max_bytes,
                isolation_level: self.config.isolation_level.wire_value(),
                partitions,
            });
        }
        plans
    }
}
