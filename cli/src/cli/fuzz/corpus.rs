//! The corpus: requests of valid conversations, as the broker accepted them.
//!
//! Before fuzzing, the fuzzer holds the conversations a client has: ApiVersions and
//! Metadata; create a topic; an idempotent producer's InitProducerId and Produce; Fetch and
//! ListOffsets; a consumer group's FindCoordinator, JoinGroup (twice, KIP-394), SyncGroup,
//! Heartbeat, OffsetCommit, OffsetFetch, DescribeGroups, ListGroups, LeaveGroup; a
//! transaction's FindCoordinator, InitProducerId, AddPartitionsToTxn, transactional Produce
//! and EndTxn. Every request that got a response that decodes becomes a corpus entry, with
//! the broker it went to. A step a broker refuses (an API it lacks) is skipped and said.

use std::time::Duration;

use bytes::Bytes;
use franzy::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use franzy::kafka_protocol::messages::{
    add_partitions_to_txn_request::AddPartitionsToTxnTopic,
    create_topics_request::CreatableTopic,
    fetch_request::{FetchPartition, FetchTopic},
    join_group_request::JoinGroupRequestProtocol,
    list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic},
    offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic},
    offset_fetch_request::OffsetFetchRequestTopic,
    produce_request::{PartitionProduceData, TopicProduceData},
    sync_group_request::SyncGroupRequestAssignment,
    AddPartitionsToTxnRequest, ApiVersionsRequest, CreateTopicsRequest, DescribeGroupsRequest,
    EndTxnRequest, FetchRequest, FindCoordinatorRequest, GroupId, HeartbeatRequest,
    InitProducerIdRequest, JoinGroupRequest, LeaveGroupRequest, ListGroupsRequest,
    ListOffsetsRequest, MetadataRequest, OffsetCommitRequest, OffsetFetchRequest, ProduceRequest,
    ProducerId, SyncGroupRequest, TopicName, TransactionalId,
};
use franzy::proto::record_batch::RecordBatchBuilder;
use franzy::proto::{ApiKey, RequestKind, ResponseKind, StrBytes};

use super::oracle::Versions;
use super::wire::Wire;

/// One request of a valid conversation.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Index of the broker it was sent to (in [`Cluster::brokers`]).
    pub broker: usize,
    /// The API.
    pub api_key: ApiKey,
    /// The version.
    pub version: i16,
    /// The frame, size prefix included.
    pub frame: Bytes,
}

/// What the conversations learnt about the cluster.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    /// Broker addresses (`host:port`), the bootstrap first, then each node Metadata named.
    pub brokers: Vec<String>,
    /// Node ids of `brokers` (-1 for the bootstrap).
    pub node_ids: Vec<i32>,
    /// The versions each broker advertised (the bootstrap's, for all).
    pub versions: Versions,
}

impl Cluster {
    /// Index of the broker with node id `id`, else the bootstrap.
    pub fn broker_of(&self, id: i32) -> usize {
        self.node_ids.iter().position(|n| *n == id).unwrap_or(0)
    }
}

const WAIT: Duration = Duration::from_secs(10);

/// Negotiates versions with the bootstrap broker (ApiVersions v3, v0 if refused).
pub async fn negotiate(wire: &mut Wire) -> Result<(Versions, Vec<Entry>), String> {
    let mut entries = Vec::new();
    for version in [3i16, 0] {
        let body = ApiVersionsRequest::default();
        let body = if version >= 3 {
            body.with_client_software_name(StrBytes::from_static_str("franzy-fuzz"))
                .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")))
        } else {
            body
        };
        let (frame, response) = wire
            .call(ApiKey::ApiVersions, version, body.into(), WAIT)
            .await?;
        let ResponseKind::ApiVersions(response) = response else {
            return Err("ApiVersions answered with another response".into());
        };
        if response.error_code != 0 {
            continue;
        }
        entries.push(Entry {
            broker: 0,
            api_key: ApiKey::ApiVersions,
            version,
            frame,
        });
        let mut versions = Versions::new();
        for api in &response.api_keys {
            let Ok(key) = ApiKey::try_from(api.api_key) else {
                continue;
            };
            let known = franzy::fuzzing::request_versions(key);
            let min = api.min_version.max(known.min);
            let max = api.max_version.min(known.max);
            if min <= max {
                versions.insert(key, (min, max));
            }
        }
        return Ok((versions, entries));
    }
    Err("the broker refused ApiVersions v3 and v0".into())
}

/// The conversations. `connect` opens a connection to a broker by index.
pub struct Conversations<'a> {
    /// The cluster, filled in as it is learnt.
    pub cluster: &'a mut Cluster,
    /// The corpus so far.
    pub entries: Vec<Entry>,
    /// Steps a broker refused or failed, to report.
    pub skipped: Vec<String>,
    /// Names used: topic, group and transactional id.
    pub name: String,
    wires: Vec<Option<Wire>>,
}

impl<'a> Conversations<'a> {
    /// Conversations on `cluster`, naming their topic, group and transaction `name`.
    pub fn new(cluster: &'a mut Cluster, bootstrap: Wire, name: String) -> Self {
        Self {
            cluster,
            entries: Vec::new(),
            skipped: Vec::new(),
            name,
            wires: vec![Some(bootstrap)],
        }
    }

    fn version(&self, api: ApiKey, cap: i16) -> Option<i16> {
        let (min, max) = *self.cluster.versions.get(&api)?;
        (min <= cap).then_some(max.min(cap))
    }

    async fn wire(&mut self, broker: usize) -> Option<&mut Wire> {
        if self.wires.len() <= broker {
            self.wires.resize_with(broker + 1, || None);
        }
        if self.wires[broker].is_none() {
            let address = self.cluster.brokers.get(broker)?.clone();
            self.wires[broker] = Wire::connect(&address, WAIT).await.ok();
        }
        self.wires[broker].as_mut()
    }

    /// Sends one request of a conversation; on a decoded response, keeps it in the corpus.
    async fn call(
        &mut self,
        broker: usize,
        api_key: ApiKey,
        cap: i16,
        body: impl FnOnce(i16) -> RequestKind,
    ) -> Option<ResponseKind> {
        let Some(version) = self.version(api_key, cap) else {
            self.skipped.push(format!("{api_key:?}: not advertised"));
            return None;
        };
        let body = body(version);
        let wire = self.wire(broker).await?;
        match wire.call(api_key, version, body, WAIT).await {
            Ok((frame, response)) => {
                self.entries.push(Entry {
                    broker,
                    api_key,
                    version,
                    frame,
                });
                Some(response)
            }
            Err(error) => {
                self.skipped.push(error);
                // The connection may be gone; the next call opens another.
                self.wires[broker] = None;
                None
            }
        }
    }

    /// Runs every conversation. Failures are skipped steps, never errors.
    pub async fn run(&mut self) {
        let topic = self.name.clone();
        self.metadata(None).await;
        self.call(0, ApiKey::CreateTopics, 7, |_| {
            CreateTopicsRequest::default()
                .with_topics(vec![CreatableTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.clone())))
                    .with_num_partitions(3)
                    .with_replication_factor(1)])
                .with_timeout_ms(5_000)
                .into()
        })
        .await;
        let mut leader = 0;
        for _ in 0..10 {
            if let Some(found) = self.metadata(Some(&topic)).await {
                leader = found;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.produce_and_fetch(leader, &topic).await;
        self.group(&topic).await;
        self.transaction(&topic).await;
    }

    /// Metadata for all topics or one; learns the brokers; returns the broker index of the
    /// leader of partition 0 of `topic`.
    async fn metadata(&mut self, topic: Option<&str>) -> Option<usize> {
        let topics = topic.map(|t| {
            vec![MetadataRequestTopic::default()
                .with_name(Some(TopicName(StrBytes::from_string(t.to_string()))))]
        });
        let response = self
            .call(0, ApiKey::Metadata, 12, move |version| {
                let request = MetadataRequest::default().with_topics(topics);
                if version >= 4 {
                    request.with_allow_auto_topic_creation(false)
                } else {
                    request
                }
                .into()
            })
            .await?;
        let ResponseKind::Metadata(metadata) = response else {
            return None;
        };
        for broker in &metadata.brokers {
            let address = format!("{}:{}", broker.host.as_str(), broker.port);
            if self.cluster.node_ids.contains(&broker.node_id.0) {
                continue;
            }
            // The bootstrap is one of the brokers: it takes its node id.
            if self.cluster.brokers[0] == address && self.cluster.node_ids[0] == -1 {
                self.cluster.node_ids[0] = broker.node_id.0;
                continue;
            }
            self.cluster.brokers.push(address);
            self.cluster.node_ids.push(broker.node_id.0);
        }
        let topic = topic?;
        let found = metadata
            .topics
            .iter()
            .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))?;
        let partition = found
            .partitions
            .iter()
            .find(|p| p.partition_index == 0 && p.error_code == 0)?;
        Some(self.cluster.broker_of(partition.leader_id.0))
    }

    async fn produce_and_fetch(&mut self, leader: usize, topic: &str) {
        let response = self
            .call(0, ApiKey::InitProducerId, 5, |_| {
                InitProducerIdRequest::default()
                    .with_transactional_id(None)
                    .with_transaction_timeout_ms(60_000)
                    .into()
            })
            .await;
        let (id, epoch) = match response {
            Some(ResponseKind::InitProducerId(r)) if r.error_code == 0 => {
                (r.producer_id.0, r.producer_epoch)
            }
            _ => (-1, -1),
        };
        let batch = batch(id, epoch, if id >= 0 { 0 } else { -1 }, false);
        self.call(leader, ApiKey::Produce, 12, |_| produce(topic, batch, None))
            .await;
        self.call(leader, ApiKey::Fetch, 12, |version| {
            let request = FetchRequest::default()
                .with_replica_id((-1).into())
                .with_max_wait_ms(100)
                .with_min_bytes(1)
                .with_topics(vec![FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partitions(vec![FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(0)
                        .with_partition_max_bytes(1 << 20)])]);
            let request = if version >= 3 {
                request.with_max_bytes(1 << 20)
            } else {
                request
            };
            request.into()
        })
        .await;
        self.call(leader, ApiKey::ListOffsets, 10, |_| {
            ListOffsetsRequest::default()
                .with_replica_id((-1).into())
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partitions(vec![ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(-1)])])
                .into()
        })
        .await;
    }

    /// FindCoordinator of `key_type` (0 group, 1 transaction) for `key`, asked again while
    /// the coordinator is loading or not yet chosen.
    async fn coordinator(&mut self, key_type: i8, key: &str) -> usize {
        let mut last_error = 0;
        for _ in 0..20 {
            let response = self
                .call(0, ApiKey::FindCoordinator, 6, |version| {
                    let request = FindCoordinatorRequest::default();
                    let request = if version >= 4 {
                        request.with_coordinator_keys(vec![StrBytes::from_string(key.to_string())])
                    } else {
                        request.with_key(StrBytes::from_string(key.to_string()))
                    };
                    if version >= 1 {
                        request.with_key_type(key_type)
                    } else {
                        request
                    }
                    .into()
                })
                .await;
            let (error, node) = match response {
                Some(ResponseKind::FindCoordinator(r)) => match r.coordinators.first() {
                    Some(c) => (c.error_code, c.node_id.0),
                    None => (r.error_code, r.node_id.0),
                },
                _ => return 0,
            };
            if error == 0 {
                return self.cluster.broker_of(node);
            }
            // One FindCoordinator in the corpus is enough.
            self.entries.pop();
            last_error = error;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        self.skipped.push(format!(
            "FindCoordinator({key_type}, {key}): error {last_error}"
        ));
        0
    }

    async fn group(&mut self, topic: &str) {
        let group = self.name.clone();
        let coordinator = self.coordinator(0, &group).await;
        let join = |member: String| {
            let group = group.clone();
            move |version: i16| {
                let request = JoinGroupRequest::default()
                    .with_group_id(GroupId(StrBytes::from_string(group)))
                    .with_session_timeout_ms(10_000)
                    .with_member_id(StrBytes::from_string(member))
                    .with_protocol_type(StrBytes::from_static_str("consumer"))
                    .with_protocols(vec![JoinGroupRequestProtocol::default()
                        .with_name(StrBytes::from_static_str("range"))
                        .with_metadata(Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0]))]);
                if version >= 1 {
                    request.with_rebalance_timeout_ms(10_000)
                } else {
                    request
                }
                .into()
            }
        };
        let mut joined = self
            .call(coordinator, ApiKey::JoinGroup, 9, join(String::new()))
            .await;
        if let Some(ResponseKind::JoinGroup(r)) = &joined {
            // KIP-394: MEMBER_ID_REQUIRED hands out the id to join with.
            if r.error_code == 79 {
                let member = r.member_id.to_string();
                joined = self
                    .call(coordinator, ApiKey::JoinGroup, 9, join(member))
                    .await;
            }
        }
        let Some(ResponseKind::JoinGroup(joined)) = joined else {
            return;
        };
        let member = joined.member_id.to_string();
        let generation = joined.generation_id;
        let group_id = || GroupId(StrBytes::from_string(group.clone()));
        let member_id = || StrBytes::from_string(member.clone());
        self.call(coordinator, ApiKey::SyncGroup, 5, |version| {
            let request = SyncGroupRequest::default()
                .with_group_id(group_id())
                .with_generation_id(generation)
                .with_member_id(member_id())
                .with_assignments(vec![SyncGroupRequestAssignment::default()
                    .with_member_id(member_id())
                    .with_assignment(Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 0]))]);
            if version >= 5 {
                request
                    .with_protocol_type(Some(StrBytes::from_static_str("consumer")))
                    .with_protocol_name(Some(StrBytes::from_static_str("range")))
            } else {
                request
            }
            .into()
        })
        .await;
        self.call(coordinator, ApiKey::Heartbeat, 4, |_| {
            HeartbeatRequest::default()
                .with_group_id(group_id())
                .with_generation_id(generation)
                .with_member_id(member_id())
                .into()
        })
        .await;
        let name = || TopicName(StrBytes::from_string(topic.to_string()));
        self.call(coordinator, ApiKey::OffsetCommit, 9, |_| {
            OffsetCommitRequest::default()
                .with_group_id(group_id())
                .with_generation_id_or_member_epoch(generation)
                .with_member_id(member_id())
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(name())
                    .with_partitions(vec![OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(1)
                        .with_committed_metadata(Some(StrBytes::from_static_str(
                            "fuzz",
                        )))])])
                .into()
        })
        .await;
        self.call(coordinator, ApiKey::OffsetFetch, 7, |_| {
            OffsetFetchRequest::default()
                .with_group_id(group_id())
                .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                    .with_name(name())
                    .with_partition_indexes(vec![0, 1, 2])]))
                .into()
        })
        .await;
        self.call(coordinator, ApiKey::DescribeGroups, 5, |_| {
            DescribeGroupsRequest::default()
                .with_groups(vec![group_id()])
                .into()
        })
        .await;
        self.call(coordinator, ApiKey::ListGroups, 4, |_| {
            ListGroupsRequest::default().into()
        })
        .await;
        self.call(coordinator, ApiKey::LeaveGroup, 2, |_| {
            LeaveGroupRequest::default()
                .with_group_id(group_id())
                .with_member_id(member_id())
                .into()
        })
        .await;
    }

    async fn transaction(&mut self, topic: &str) {
        let txn = self.name.clone();
        let coordinator = self.coordinator(1, &txn).await;
        let txn_id = || TransactionalId(StrBytes::from_string(txn.clone()));
        let response = self
            .call(coordinator, ApiKey::InitProducerId, 5, |_| {
                InitProducerIdRequest::default()
                    .with_transactional_id(Some(txn_id()))
                    .with_transaction_timeout_ms(60_000)
                    .into()
            })
            .await;
        let Some(ResponseKind::InitProducerId(init)) = response else {
            return;
        };
        if init.error_code != 0 {
            self.skipped.push(format!(
                "InitProducerId (transactional): error {}",
                init.error_code
            ));
            return;
        }
        let (id, epoch) = (init.producer_id.0, init.producer_epoch);
        self.call(coordinator, ApiKey::AddPartitionsToTxn, 3, |_| {
            AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(txn_id())
                .with_v3_and_below_producer_id(ProducerId(id))
                .with_v3_and_below_producer_epoch(epoch)
                .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partitions(vec![0])])
                .into()
        })
        .await;
        let leader = self.metadata(Some(topic)).await.unwrap_or(0);
        let batch = batch(id, epoch, 0, true);
        self.call(leader, ApiKey::Produce, 12, |_| {
            produce(topic, batch, Some(txn_id()))
        })
        .await;
        self.call(coordinator, ApiKey::EndTxn, 5, |_| {
            EndTxnRequest::default()
                .with_transactional_id(txn_id())
                .with_producer_id(ProducerId(id))
                .with_producer_epoch(epoch)
                .with_committed(true)
                .into()
        })
        .await;
    }
}

/// A small batch of three records, with headers.
pub fn batch(producer_id: i64, epoch: i16, sequence: i32, transactional: bool) -> Bytes {
    let mut builder = RecordBatchBuilder::new()
        .producer(producer_id, epoch, sequence)
        .transactional(transactional);
    for i in 0..3u8 {
        let headers = vec![franzy::proto::record_batch::Header {
            key: Bytes::from_static(b"fuzz"),
            value: Some(Bytes::copy_from_slice(&[i])),
        }];
        // Three small records cannot overflow a batch.
        let _ = builder.append(
            1_700_000_000_000 + i64::from(i),
            Some(Bytes::copy_from_slice(&[b'k', i])),
            Some(Bytes::from_static(b"franzy fuzz")),
            headers,
        );
    }
    builder.build().encode().unwrap_or_default()
}

/// A Produce request of `records` to partition 0 of `topic`, acks=-1.
pub fn produce(
    topic: &str,
    records: Bytes,
    transactional_id: Option<TransactionalId>,
) -> RequestKind {
    ProduceRequest::default()
        .with_transactional_id(transactional_id)
        .with_acks(-1)
        .with_timeout_ms(5_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])])
        .into()
}

impl Conversations<'_> {
    /// Metadata only: fills in the brokers.
    pub async fn learn_brokers(&mut self) {
        self.metadata(None).await;
    }

    /// The watcher's topic (one partition, one batch) and group (offset 1 committed on
    /// partition 0 as a group without members). Returns the broker indexes of the
    /// partition's leader and the group's coordinator, and the committed offset.
    pub async fn watch_setup(&mut self) -> Option<(usize, usize, i64)> {
        let name = self.name.clone();
        self.call(0, ApiKey::CreateTopics, 7, |_| {
            CreateTopicsRequest::default()
                .with_topics(vec![CreatableTopic::default()
                    .with_name(TopicName(StrBytes::from_string(name.clone())))
                    .with_num_partitions(1)
                    .with_replication_factor(1)])
                .with_timeout_ms(5_000)
                .into()
        })
        .await;
        let mut leader = None;
        for _ in 0..10 {
            leader = self.metadata(Some(&name)).await;
            if leader.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let leader = leader?;
        let records = batch(-1, -1, -1, false);
        match self
            .call(leader, ApiKey::Produce, 12, |_| {
                produce(&name, records, None)
            })
            .await?
        {
            ResponseKind::Produce(r)
                if r.responses
                    .iter()
                    .flat_map(|t| &t.partition_responses)
                    .all(|p| p.error_code == 0) => {}
            _ => {
                self.skipped.push("watch: produce failed".into());
                return None;
            }
        }
        let coordinator = self.coordinator(0, &name).await;
        let committed = 1;
        let response = self
            .call(coordinator, ApiKey::OffsetCommit, 9, |_| {
                OffsetCommitRequest::default()
                    .with_group_id(GroupId(StrBytes::from_string(name.clone())))
                    .with_generation_id_or_member_epoch(-1)
                    .with_topics(vec![OffsetCommitRequestTopic::default()
                        .with_name(TopicName(StrBytes::from_string(name.clone())))
                        .with_partitions(vec![OffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(committed)])])
                    .into()
            })
            .await?;
        let ResponseKind::OffsetCommit(r) = response else {
            return None;
        };
        let errors: Vec<i16> = r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .map(|p| p.error_code)
            .filter(|e| *e != 0)
            .collect();
        if !errors.is_empty() {
            self.skipped
                .push(format!("watch: OffsetCommit errors {errors:?}"));
            return None;
        }
        Some((leader, coordinator, committed))
    }
}

fn version_of(versions: &Versions, api: ApiKey, cap: i16) -> Result<i16, String> {
    match versions.get(&api) {
        Some((min, max)) if *min <= cap => Ok((*max).min(cap)),
        _ => Err(format!("{api:?} not advertised")),
    }
}

/// Fetches partition 0 of `topic` from offset 0: its high watermark and records.
pub async fn watch_fetch(
    wire: &mut Wire,
    versions: &Versions,
    topic: &str,
    wait: Duration,
) -> Result<(i64, Bytes), String> {
    let version = version_of(versions, ApiKey::Fetch, 12)?;
    let request = FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    let (_, response) = wire
        .call(ApiKey::Fetch, version, request.into(), wait)
        .await?;
    let ResponseKind::Fetch(response) = response else {
        return Err("Fetch answered with another response".into());
    };
    let partition = response
        .responses
        .first()
        .and_then(|t| t.partitions.first())
        .ok_or("Fetch response without the partition")?;
    if partition.error_code != 0 {
        return Err(format!("Fetch error {}", partition.error_code));
    }
    Ok((
        partition.high_watermark,
        partition.records.clone().unwrap_or_default(),
    ))
}

/// The offset `group` committed on partition 0 of `topic` (-1: none).
pub async fn watch_committed(
    wire: &mut Wire,
    versions: &Versions,
    group: &str,
    topic: &str,
    wait: Duration,
) -> Result<i64, String> {
    let version = version_of(versions, ApiKey::OffsetFetch, 7)?;
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_indexes(vec![0])]));
    let (_, response) = wire
        .call(ApiKey::OffsetFetch, version, request.into(), wait)
        .await?;
    let ResponseKind::OffsetFetch(response) = response else {
        return Err("OffsetFetch answered with another response".into());
    };
    if response.error_code != 0 {
        return Err(format!("OffsetFetch error {}", response.error_code));
    }
    let partition = response
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .ok_or("OffsetFetch response without the partition")?;
    if partition.error_code != 0 {
        return Err(format!("OffsetFetch error {}", partition.error_code));
    }
    Ok(partition.committed_offset)
}
