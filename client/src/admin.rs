//! [`Admin`]: topics, configs, consumer groups and their lag, offsets, records, transactions
//! and the cluster, as Java's `Admin` client offers them.
//!
//! Every operation is async and goes to the broker that must answer it: the controller for
//! topic creation, deletion and new partitions; a group's or transactional id's coordinator
//! (found with FindCoordinator) for group and transaction operations; a partition's leader
//! for offsets, record deletion and producers; any broker for the rest. As Java's
//! `KafkaAdminClient`, an item that fails with a retriable code (NOT_CONTROLLER,
//! NOT_COORDINATOR, NOT_LEADER_OR_FOLLOWER, COORDINATOR_LOAD_IN_PROGRESS, a lost
//! connection, ...) is tried again after `retry.backoff.ms` (growing to
//! `retry.backoff.max.ms`), after looking up the controller, coordinator or leader anew,
//! until `default.api.timeout.ms`; the decisions are `engine::admin`'s.
//!
//! Where Kafka answers per item, so does `Admin`: a batch create of ten topics returns ten
//! results, each `Ok` or its own [`Error`]. The outer `Result` fails only when nothing could
//! be asked at all.
//!
//! ```no_run
//! # async fn lag() -> Result<(), franzy::Error> {
//! use franzy::{admin::Admin, Config, IsolationLevel};
//! let admin = Admin::builder(Config::new("localhost:9092")).build()?;
//! for p in admin.lag("my-group", IsolationLevel::ReadCommitted).await? {
//!     println!("{} {:?}", p.partition, p.lag);
//! }
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::messages::{
    create_partitions_request, create_topics_request, delete_records_request,
    delete_topics_request, describe_configs_request, describe_producers_request,
    incremental_alter_configs_request, list_offsets_request, metadata_request,
    offset_commit_request, offset_delete_request, offset_fetch_request, BrokerId,
    CreatePartitionsRequest, CreateTopicsRequest, DeleteGroupsRequest, DeleteRecordsRequest,
    DeleteTopicsRequest, DescribeClusterRequest, DescribeConfigsRequest, DescribeGroupsRequest,
    DescribeProducersRequest, DescribeTransactionsRequest, FindCoordinatorRequest, GroupId,
    IncrementalAlterConfigsRequest, ListGroupsRequest, ListOffsetsRequest, ListTransactionsRequest,
    MetadataRequest, MetadataResponse, OffsetCommitRequest, OffsetDeleteRequest,
    OffsetFetchRequest, TopicName, TransactionalId,
};
use uuid::Uuid;

use crate::builder::ClientBuilder;
use crate::config::{Config, IsolationLevel};
use crate::engine::admin::{check_reset_allowed, compute_lag, reset_target, retry_action};
pub use crate::engine::admin::{PartitionLag, ResetInputs, ResetTo, RetryAction};
use crate::engine::backoff::{Backoff, Rng};
use crate::engine::group::protocol::decode_assignment;
use crate::error::Error;
use crate::io::cluster::ClusterClient;
use crate::proto::{ApiKey, ErrorCode, RequestKind, ResponseKind, StrBytes};
use crate::topic_partition::TopicPartition;

/// Builds an [`Admin`] with a custom transport or seed.
pub type AdminBuilder = ClientBuilder<Admin>;

impl ClientBuilder<Admin> {
    /// Validates the configuration and starts the admin client. Must be called within a
    /// tokio runtime. Connections open on the first operation.
    pub fn build(self) -> Result<Admin, Error> {
        let start = ClusterClient::start("admin client", self.config, self.connector, self.seed)?;
        Ok(Admin {
            cluster: start.cluster,
            rng: Arc::new(Mutex::new(Rng::new(start.seed))),
        })
    }
}

/// The admin client. Cheap to clone: clones share connections and metadata.
#[derive(Debug, Clone)]
pub struct Admin {
    cluster: Arc<ClusterClient>,
    rng: Arc<Mutex<Rng>>,
}

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    /// The name.
    pub name: String,
    /// Partitions; -1 for the broker's `num.partitions`.
    pub partitions: i32,
    /// Replicas per partition; -1 for the broker's `default.replication.factor`.
    pub replication_factor: i16,
    /// Topic configs (`retention.ms`, `cleanup.policy`, ...).
    pub configs: BTreeMap<String, String>,
}

impl NewTopic {
    /// A topic with `partitions` partitions and the default replication factor.
    pub fn new(name: impl Into<String>, partitions: i32) -> Self {
        Self {
            name: name.into(),
            partitions,
            replication_factor: -1,
            configs: BTreeMap::new(),
        }
    }

    /// Sets the replication factor.
    pub fn replication_factor(mut self, factor: i16) -> Self {
        self.replication_factor = factor;
        self
    }

    /// Sets a topic config.
    pub fn config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.configs.insert(key.into(), value.into());
        self
    }
}

/// A created (or, with `validate_only`, validated) topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedTopic {
    /// The topic id (nil when only validated, or from brokers before CreateTopics v7).
    pub id: Uuid,
    /// Partitions, as the broker resolved them.
    pub partitions: i32,
    /// Replication factor, as the broker resolved it.
    pub replication_factor: i16,
}

/// A topic as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicListing {
    /// The name.
    pub name: String,
    /// The topic id.
    pub id: Uuid,
    /// Whether it is one of Kafka's internal topics.
    pub internal: bool,
}

/// A topic as described.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    /// The name.
    pub name: String,
    /// The topic id.
    pub id: Uuid,
    /// Whether it is one of Kafka's internal topics.
    pub internal: bool,
    /// Its partitions, by index.
    pub partitions: Vec<PartitionDescription>,
}

/// One partition of a described topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDescription {
    /// The index.
    pub partition: i32,
    /// The leader's broker id, or -1.
    pub leader: i32,
    /// The leader epoch.
    pub leader_epoch: i32,
    /// Replica broker ids.
    pub replicas: Vec<i32>,
    /// In-sync replica ids.
    pub isr: Vec<i32>,
}

/// A resource whose configs are described or altered.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConfigResource {
    /// A topic.
    Topic(String),
    /// A broker, by id.
    Broker(i32),
    /// The cluster-wide defaults of every broker (a BROKER resource with an empty name):
    /// the dynamic configs brokers take when they have no value of their own.
    BrokerDefault,
}

impl ConfigResource {
    fn wire(&self) -> (i8, String) {
        match self {
            Self::Topic(name) => (2, name.clone()),
            Self::Broker(id) => (4, id.to_string()),
            Self::BrokerDefault => (4, String::new()),
        }
    }

    /// The broker that must answer for this resource: a broker answers for itself.
    fn broker(&self) -> Option<i32> {
        match self {
            Self::Broker(id) => Some(*id),
            Self::Topic(_) | Self::BrokerDefault => None,
        }
    }
}

impl std::fmt::Display for ConfigResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Topic(name) => write!(f, "topic {name}"),
            Self::Broker(id) => write!(f, "broker {id}"),
            Self::BrokerDefault => f.write_str("broker defaults"),
        }
    }
}

/// One config of a resource, as DescribeConfigs answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// The name.
    pub name: String,
    /// The value (`None` for sensitive configs).
    pub value: Option<String>,
    /// Where the value comes from: Kafka's `ConfigSource` code (1 topic, 4 static broker,
    /// 5 default, ...).
    pub source: i8,
    /// Whether it cannot be altered.
    pub read_only: bool,
    /// Whether the value is hidden.
    pub sensitive: bool,
}

impl ConfigEntry {
    /// The source as Kafka names it (`TOPIC_CONFIG`, `DEFAULT_CONFIG`, ...).
    pub fn source_name(&self) -> &'static str {
        match self.source {
            1 => "DYNAMIC_TOPIC_CONFIG",
            2 => "DYNAMIC_BROKER_CONFIG",
            3 => "DYNAMIC_DEFAULT_BROKER_CONFIG",
            4 => "STATIC_BROKER_CONFIG",
            5 => "DEFAULT_CONFIG",
            6 => "DYNAMIC_BROKER_LOGGER_CONFIG",
            7 => "CLIENT_METRICS_CONFIG",
            8 => "GROUP_CONFIG",
            _ => "UNKNOWN",
        }
    }
}

/// One change of IncrementalAlterConfigs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlterConfigOp {
    /// Sets the config.
    Set(String, String),
    /// Removes it (back to its default).
    Delete(String),
    /// Adds items to a list config.
    Append(String, String),
    /// Removes items from a list config.
    Subtract(String, String),
}

impl AlterConfigOp {
    fn wire(&self) -> (&str, i8, Option<&str>) {
        match self {
            Self::Set(k, v) => (k, 0, Some(v)),
            Self::Delete(k) => (k, 1, None),
            Self::Append(k, v) => (k, 2, Some(v)),
            Self::Subtract(k, v) => (k, 3, Some(v)),
        }
    }
}

/// A group as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    /// The group id.
    pub group_id: String,
    /// The protocol type (`consumer` for consumer groups).
    pub protocol_type: String,
    /// The state (`Stable`, `Empty`, ...; empty from brokers before ListGroups v4).
    pub state: String,
    /// The broker that coordinates it.
    pub coordinator: i32,
}

/// A group as described.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// The group id.
    pub group_id: String,
    /// The state.
    pub state: String,
    /// The protocol type.
    pub protocol_type: String,
    /// The assignor the group chose.
    pub protocol: String,
    /// The members.
    pub members: Vec<MemberDescription>,
    /// The coordinator's broker id.
    pub coordinator: i32,
}

/// One member of a described group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    /// The member id.
    pub member_id: String,
    /// The static member's instance id, if any.
    pub instance_id: Option<String>,
    /// The client id.
    pub client_id: String,
    /// The client's host.
    pub host: String,
    /// Its assigned partitions (a consumer group's assignment, decoded).
    pub assignment: Vec<TopicPartition>,
}

/// What ListOffsets looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The end offset (high watermark, or last stable offset with read_committed).
    Latest,
    /// The record with the largest timestamp (KIP-734).
    MaxTimestamp,
    /// The first record at or after this timestamp (milliseconds).
    Timestamp(i64),
}

impl OffsetSpec {
    fn wire(self) -> i64 {
        match self {
            Self::Earliest => -2,
            Self::Latest => -1,
            Self::MaxTimestamp => -3,
            Self::Timestamp(t) => t,
        }
    }
}

/// ListOffsets' answer for one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedOffset {
    /// The offset, or -1 when no record matches a timestamp.
    pub offset: i64,
    /// The record's timestamp, or -1.
    pub timestamp: i64,
    /// The leader epoch of the offset, or -1.
    pub leader_epoch: i32,
}

/// The cluster, as DescribeCluster answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDescription {
    /// The cluster id.
    pub cluster_id: String,
    /// The controller's broker id.
    pub controller_id: i32,
    /// The brokers: (id, host, port, rack).
    pub brokers: Vec<(i32, String, i32, Option<String>)>,
}

/// A transactional id as described.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionDescription {
    /// The transactional id.
    pub transactional_id: String,
    /// The state (`Ongoing`, `CompleteCommit`, ...).
    pub state: String,
    /// The producer id.
    pub producer_id: i64,
    /// The producer epoch.
    pub producer_epoch: i16,
    /// The transaction timeout.
    pub timeout_ms: i32,
    /// When the ongoing transaction started (milliseconds), or -1.
    pub start_time_ms: i64,
    /// The partitions in the transaction.
    pub partitions: Vec<TopicPartition>,
}

/// A transactional id as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionListing {
    /// The transactional id.
    pub transactional_id: String,
    /// The producer id.
    pub producer_id: i64,
    /// The state.
    pub state: String,
}

/// One active producer of a partition (DescribeProducers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerState {
    /// The producer id.
    pub producer_id: i64,
    /// Its epoch.
    pub producer_epoch: i32,
    /// The sequence of its last record, or -1.
    pub last_sequence: i32,
    /// The timestamp of its last batch, or -1.
    pub last_timestamp: i64,
    /// The first offset of its open transaction, if one is.
    pub current_transaction_start_offset: Option<i64>,
}

/// Per-item results, in key order.
pub type Results<K, V> = BTreeMap<K, Result<V, Error>>;

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn topic_name(s: &str) -> TopicName {
    TopicName(text(s))
}

fn broker_error(code: ErrorCode, context: impl Into<String>, message: Option<&StrBytes>) -> Error {
    let context = context.into();
    Error::Broker {
        code,
        context: Some(match message {
            Some(m) if !m.is_empty() => format!("{context}: {m}"),
            _ => context,
        }),
    }
}

fn partition_error(
    partition: &TopicPartition,
    code: ErrorCode,
    message: Option<&StrBytes>,
) -> Error {
    Error::Partition {
        partition: partition.clone(),
        code,
        message: message.map(|m| m.to_string()),
    }
}

fn unexpected(api: ApiKey, peer: &str) -> Error {
    Error::Protocol {
        peer: peer.to_string(),
        reason: format!("{api:?} answered with another API"),
    }
}

/// Pulls the body of one API out of a response, or fails the operation.
macro_rules! body {
    ($response:expr, $variant:ident) => {
        match $response {
            ResponseKind::$variant(body) => body,
            _ => return Err(unexpected(ApiKey::$variant, "broker")),
        }
    };
}

/// The retry loop's clock: the deadline of one operation and its backoff.
struct Attempts {
    deadline: tokio::time::Instant,
    backoff: Backoff,
    rng: Arc<Mutex<Rng>>,
    cluster: Arc<ClusterClient>,
}

impl Attempts {
    fn past_deadline(&self) -> bool {
        tokio::time::Instant::now() >= self.deadline
    }

    /// Sleeps the next backoff; false when the deadline passed (nothing is tried again).
    async fn wait(&mut self) -> bool {
        if self.past_deadline() {
            return false;
        }
        let delay = {
            let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
            self.backoff.next_delay(&mut rng)
        };
        tokio::time::sleep_until((tokio::time::Instant::now() + delay).min(self.deadline)).await;
        self.cluster.stats().retry();
        true
    }
}

impl Admin {
    /// A builder, for a custom [`Connector`](crate::transport::Connector) or seed.
    pub fn builder(config: Config) -> AdminBuilder {
        ClientBuilder::new(config)
    }

    /// An admin client with the default transport (TCP). Must be called within a tokio
    /// runtime.
    pub fn new(config: Config) -> Result<Self, Error> {
        Self::builder(config).build()
    }

    /// A snapshot of the admin client's statistics: requests, latency, retries, per broker.
    pub fn stats(&self) -> crate::stats::Stats {
        let mut stats = self.cluster.stats().snapshot();
        stats.kind = "admin";
        stats.client_id.clone_from(&self.cluster.config().client_id);
        stats
    }

    fn attempts(&self) -> Attempts {
        let config = self.cluster.config();
        Attempts {
            deadline: tokio::time::Instant::now() + config.default_api_timeout,
            backoff: Backoff::new(config.retry_backoff, config.retry_backoff_max),
            rng: self.rng.clone(),
            cluster: self.cluster.clone(),
        }
    }

    /// Sends to any broker.
    async fn any<F>(&self, api: ApiKey, build: F) -> Result<ResponseKind, Error>
    where
        F: Fn(i16) -> Result<RequestKind, Error> + Send + Sync + Clone + 'static,
    {
        Ok(*self.cluster.request_any(api, build).await?.body)
    }

    /// Sends to broker `id`, learning its address from the metadata first if needed.
    async fn to_broker<F>(&self, id: i32, api: ApiKey, build: F) -> Result<ResponseKind, Error>
    where
        F: FnOnce(i16) -> Result<RequestKind, Error> + Send + 'static,
    {
        if self.cluster.metadata().broker(id).is_none() {
            self.metadata(Some(Vec::new())).await?;
        }
        match self
            .cluster
            .request_broker(id, api, Box::new(build), true)
            .await
        {
            Ok(Some(response)) => Ok(*response.body),
            Ok(None) => Err(unexpected(api, &format!("broker {id}"))),
            Err(failed) => Err(failed.error),
        }
    }

    /// A Metadata request for `topics` (`None`: every topic) that never creates a topic;
    /// the answer also refreshes the client's brokers and controller.
    async fn metadata(&self, topics: Option<Vec<String>>) -> Result<MetadataResponse, Error> {
        let build = move |version: i16| {
            let topics = topics.as_ref().map(|names| {
                names
                    .iter()
                    .map(|n| {
                        metadata_request::MetadataRequestTopic::default()
                            .with_name(Some(topic_name(n)))
                    })
                    .collect()
            });
            let mut request = MetadataRequest::default().with_topics(topics);
            if version >= 4 {
                request.allow_auto_topic_creation = false;
            }
            Ok(RequestKind::Metadata(request))
        };
        let response = body!(self.any(ApiKey::Metadata, build).await?, Metadata);
        self.cluster
            .metadata()
            .handle_response(&response, tokio::time::Instant::now().into_std());
        Ok(response)
    }

    /// The controller's broker id (from the metadata; looked up anew when `fresh`).
    /// While the metadata names no controller among its brokers, it is asked again until
    /// `default.api.timeout.ms`, as Java's admin client waits for a metadata update.
    async fn controller(&self, fresh: bool) -> Result<i32, Error> {
        let known = self.cluster.metadata().controller_id();
        if known >= 0 && !fresh {
            return Ok(known);
        }
        let mut attempts = self.attempts();
        loop {
            self.metadata(Some(Vec::new())).await?;
            // The engine keeps a controller only when it is one of the brokers.
            let known = self.cluster.metadata().controller_id();
            if known >= 0 {
                return Ok(known);
            }
            if !attempts.wait().await {
                return Err(broker_error(
                    ErrorCode::NotController,
                    "no controller among the brokers",
                    None,
                ));
            }
        }
    }

    /// The coordinator of `key` (`key_type` 0: a group, 1: a transactional id), retried
    /// while the answer is retriable.
    async fn coordinator(&self, key: &str, key_type: i8) -> Result<i32, Error> {
        let mut attempts = self.attempts();
        loop {
            let owned = key.to_string();
            let build = move |version: i16| {
                let mut request = FindCoordinatorRequest::default();
                if version >= 1 {
                    request.key_type = key_type;
                }
                if version >= 4 {
                    request.coordinator_keys = vec![text(&owned)];
                } else {
                    request.key = text(&owned);
                }
                Ok(RequestKind::FindCoordinator(request))
            };
            let outcome = match self.any(ApiKey::FindCoordinator, build).await {
                Ok(ResponseKind::FindCoordinator(r)) => match r.coordinators.first() {
                    Some(c) => coordinator_outcome(
                        key,
                        c.error_code,
                        c.node_id.0,
                        c.error_message.as_ref(),
                    ),
                    None => coordinator_outcome(
                        key,
                        r.error_code,
                        r.node_id.0,
                        r.error_message.as_ref(),
                    ),
                },
                Ok(_) => Err(unexpected(ApiKey::FindCoordinator, "broker")),
                Err(error) => Err(error),
            };
            match outcome {
                Ok(node) => return Ok(node),
                Err(error) if error.is_retriable() && attempts.wait().await => continue,
                Err(error) => return Err(error),
            }
        }
    }

    // ---- topics ----

    /// Creates topics (on the controller); with `validate_only` checks them without
    /// creating anything. Each topic has its own result.
    pub async fn create_topics(
        &self,
        topics: &[NewTopic],
        validate_only: bool,
    ) -> Result<Results<String, CreatedTopic>, Error> {
        let mut results = Results::new();
        let mut pending: Vec<NewTopic> = topics.to_vec();
        let mut attempts = self.attempts();
        let mut fresh = false;
        while !pending.is_empty() {
            let controller = self.controller(fresh).await?;
            let sent = pending.clone();
            let timeout = self.cluster.config().request_timeout;
            let build = move |_version: i16| {
                let topics = sent
                    .iter()
                    .map(|t| {
                        create_topics_request::CreatableTopic::default()
                            .with_name(topic_name(&t.name))
                            .with_num_partitions(t.partitions)
                            .with_replication_factor(t.replication_factor)
                            .with_configs(
                                t.configs
                                    .iter()
                                    .map(|(k, v)| {
                                        create_topics_request::CreatableTopicConfig::default()
                                            .with_name(text(k))
                                            .with_value(Some(text(v)))
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                Ok(RequestKind::CreateTopics(
                    CreateTopicsRequest::default()
                        .with_topics(topics)
                        .with_timeout_ms(millis(timeout))
                        .with_validate_only(validate_only),
                ))
            };
            let response = match self
                .to_broker(controller, ApiKey::CreateTopics, build)
                .await
            {
                Ok(response) => body!(response, CreateTopics),
                Err(error) if error.is_retriable() && attempts.wait().await => {
                    fresh = true;
                    continue;
                }
                Err(error) => {
                    for t in pending {
                        results.insert(t.name, Err(error.clone()));
                    }
                    break;
                }
            };
            let mut retry = Vec::new();
            fresh = false;
            for topic in pending {
                let answer = response
                    .topics
                    .iter()
                    .find(|r| r.name.0.as_str() == topic.name);
                let Some(answer) = answer else {
                    results.insert(
                        topic.name.clone(),
                        Err(unexpected(ApiKey::CreateTopics, "controller")),
                    );
                    continue;
                };
                match ErrorCode::try_from_code(answer.error_code) {
                    None => {
                        results.insert(
                            topic.name.clone(),
                            Ok(CreatedTopic {
                                id: answer.topic_id,
                                partitions: answer.num_partitions,
                                replication_factor: answer.replication_factor,
                            }),
                        );
                    }
                    Some(code)
                        if retry_action(code) != RetryAction::Fail && !attempts.past_deadline() =>
                    {
                        fresh |= retry_action(code) == RetryAction::RefreshMetadata;
                        retry.push(topic);
                    }
                    Some(code) => {
                        results.insert(
                            topic.name.clone(),
                            Err(broker_error(
                                code,
                                format!("topic {}", topic.name),
                                answer.error_message.as_ref(),
                            )),
                        );
                    }
                }
            }
            pending = retry;
            if !pending.is_empty() && !attempts.wait().await {
                for t in pending.drain(..) {
                    results.insert(
                        t.name.clone(),
                        Err(broker_error(
                            ErrorCode::RequestTimedOut,
                            format!("topic {}", t.name),
                            None,
                        )),
                    );
                }
            }
        }
        Ok(results)
    }

    /// Deletes topics (on the controller). Each topic has its own result.
    pub async fn delete_topics(&self, names: &[String]) -> Result<Results<String, ()>, Error> {
        let mut results = Results::new();
        let mut pending: Vec<String> = names.to_vec();
        let mut attempts = self.attempts();
        let mut fresh = false;
        while !pending.is_empty() {
            let controller = self.controller(fresh).await?;
            let sent = pending.clone();
            let timeout = self.cluster.config().request_timeout;
            let build = move |version: i16| {
                let mut request = DeleteTopicsRequest::default().with_timeout_ms(millis(timeout));
                if version >= 6 {
                    request.topics = sent
                        .iter()
                        .map(|n| {
                            delete_topics_request::DeleteTopicState::default()
                                .with_name(Some(topic_name(n)))
                        })
                        .collect();
                } else {
                    request.topic_names = sent.iter().map(|n| topic_name(n)).collect();
                }
                Ok(RequestKind::DeleteTopics(request))
            };
            let response = match self
                .to_broker(controller, ApiKey::DeleteTopics, build)
                .await
            {
                Ok(response) => body!(response, DeleteTopics),
                Err(error) if error.is_retriable() && attempts.wait().await => {
                    fresh = true;
                    continue;
                }
                Err(error) => {
                    for n in pending {
                        results.insert(n, Err(error.clone()));
                    }
                    break;
                }
            };
            let mut retry = Vec::new();
            fresh = false;
            for name in pending {
                let answer = response
                    .responses
                    .iter()
                    .find(|r| r.name.as_ref().map(|n| n.0.as_str()) == Some(name.as_str()));
                let code = answer.map_or(Some(ErrorCode::UnknownServerError), |a| {
                    ErrorCode::try_from_code(a.error_code)
                });
                match code {
                    None => {
                        results.insert(name, Ok(()));
                    }
                    Some(code)
                        if retry_action(code) != RetryAction::Fail && !attempts.past_deadline() =>
                    {
                        fresh |= retry_action(code) == RetryAction::RefreshMetadata;
                        retry.push(name);
                    }
                    Some(code) => {
                        let message = answer.and_then(|a| a.error_message.as_ref());
                        results.insert(
                            name.clone(),
                            Err(broker_error(code, format!("topic {name}"), message)),
                        );
                    }
                }
            }
            pending = retry;
            if !pending.is_empty() && !attempts.wait().await {
                for n in pending.drain(..) {
                    results.insert(
                        n.clone(),
                        Err(broker_error(
                            ErrorCode::RequestTimedOut,
                            format!("topic {n}"),
                            None,
                        )),
                    );
                }
            }
        }
        Ok(results)
    }

    /// Every topic, in name order; internal topics only with `include_internal`.
    pub async fn list_topics(&self, include_internal: bool) -> Result<Vec<TopicListing>, Error> {
        let response = self.retrying(|| self.metadata(None)).await?;
        let mut topics: Vec<TopicListing> = response
            .topics
            .iter()
            .filter(|t| t.error_code == 0 && (include_internal || !t.is_internal))
            .filter_map(|t| {
                Some(TopicListing {
                    name: t.name.as_ref()?.0.to_string(),
                    id: t.topic_id,
                    internal: t.is_internal,
                })
            })
            .collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(topics)
    }

    /// Describes topics: ids, partitions, leaders, replicas, in-sync replicas. Each topic
    /// has its own result (UNKNOWN_TOPIC_OR_PARTITION for one that does not exist).
    pub async fn describe_topics(
        &self,
        names: &[String],
    ) -> Result<Results<String, TopicDescription>, Error> {
        let wanted = names.to_vec();
        let response = self
            .retrying(|| self.metadata(Some(wanted.clone())))
            .await?;
        let mut results = Results::new();
        for name in names {
            let found = response
                .topics
                .iter()
                .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some(name.as_str()));
            let result = match found {
                None => Err(broker_error(
                    ErrorCode::UnknownTopicOrPartition,
                    format!("topic {name}"),
                    None,
                )),
                Some(t) => match ErrorCode::try_from_code(t.error_code) {
                    Some(code) => Err(broker_error(code, format!("topic {name}"), None)),
                    None => {
                        let mut partitions: Vec<PartitionDescription> = t
                            .partitions
                            .iter()
                            .map(|p| PartitionDescription {
                                partition: p.partition_index,
                                leader: p.leader_id.0,
                                leader_epoch: p.leader_epoch,
                                replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                                isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                            })
                            .collect();
                        partitions.sort_by_key(|p| p.partition);
                        Ok(TopicDescription {
                            name: name.clone(),
                            id: t.topic_id,
                            internal: t.is_internal,
                            partitions,
                        })
                    }
                },
            };
            results.insert(name.clone(), result);
        }
        Ok(results)
    }

    /// Grows topics to `(topic, total partitions)` (on the controller). Each topic has its
    /// own result.
    pub async fn create_partitions(
        &self,
        totals: &[(String, i32)],
        validate_only: bool,
    ) -> Result<Results<String, ()>, Error> {
        let sent = totals.to_vec();
        let timeout = self.cluster.config().request_timeout;
        let build = move |_version: i16| {
            Ok(RequestKind::CreatePartitions(
                CreatePartitionsRequest::default()
                    .with_topics(
                        sent.iter()
                            .map(|(name, count)| {
                                create_partitions_request::CreatePartitionsTopic::default()
                                    .with_name(topic_name(name))
                                    .with_count(*count)
                                    .with_assignments(None)
                            })
                            .collect(),
                    )
                    .with_timeout_ms(millis(timeout))
                    .with_validate_only(validate_only),
            ))
        };
        let response = self
            .retrying(|| async {
                let controller = self.controller(true).await?;
                let response = body!(
                    self.to_broker(controller, ApiKey::CreatePartitions, build.clone())
                        .await?,
                    CreatePartitions
                );
                // A moved controller fails every topic alike: retry the whole request.
                if let Some(code) = response
                    .results
                    .iter()
                    .filter_map(|r| ErrorCode::try_from_code(r.error_code))
                    .find(|c| retry_action(*c) == RetryAction::RefreshMetadata)
                {
                    return Err(broker_error(code, "CreatePartitions", None));
                }
                Ok(response)
            })
            .await?;
        let mut results = Results::new();
        for (name, _) in totals {
            let answer = response.results.iter().find(|r| r.name.0.as_str() == name);
            let result = match answer.map(|a| {
                (
                    ErrorCode::try_from_code(a.error_code),
                    a.error_message.as_ref(),
                )
            }) {
                Some((None, _)) => Ok(()),
                Some((Some(code), message)) => {
                    Err(broker_error(code, format!("topic {name}"), message))
                }
                None => Err(unexpected(ApiKey::CreatePartitions, "controller")),
            };
            results.insert(name.clone(), result);
        }
        Ok(results)
    }

    // ---- configs ----

    /// Describes the configs of topics and brokers (a broker's on that broker, topics' on
    /// any). Each resource has its own result.
    pub async fn describe_configs(
        &self,
        resources: &[ConfigResource],
    ) -> Result<Results<ConfigResource, Vec<ConfigEntry>>, Error> {
        let mut results = Results::new();
        let mut groups: BTreeMap<Option<i32>, Vec<ConfigResource>> = BTreeMap::new();
        for r in resources {
            groups.entry(r.broker()).or_default().push(r.clone());
        }
        for (broker, group) in groups {
            let sent = group.clone();
            let build = move |_version: i16| {
                Ok(RequestKind::DescribeConfigs(
                    DescribeConfigsRequest::default().with_resources(
                        sent.iter()
                            .map(|r| {
                                let (kind, name) = r.wire();
                                describe_configs_request::DescribeConfigsResource::default()
                                    .with_resource_type(kind)
                                    .with_resource_name(text(&name))
                                    .with_configuration_keys(None)
                            })
                            .collect(),
                    ),
                ))
            };
            let response = self
                .retrying(|| async {
                    let response = match broker {
                        Some(id) => {
                            self.to_broker(id, ApiKey::DescribeConfigs, build.clone())
                                .await?
                        }
                        None => self.any(ApiKey::DescribeConfigs, build.clone()).await?,
                    };
                    Ok(body!(response, DescribeConfigs))
                })
                .await;
            let response = match response {
                Ok(response) => response,
                Err(error) => {
                    for r in group {
                        results.insert(r, Err(error.clone()));
                    }
                    continue;
                }
            };
            for resource in group {
                let (kind, name) = resource.wire();
                let answer = response
                    .results
                    .iter()
                    .find(|r| r.resource_type == kind && r.resource_name.as_str() == name);
                let result = match answer {
                    None => Err(unexpected(ApiKey::DescribeConfigs, "broker")),
                    Some(a) => match ErrorCode::try_from_code(a.error_code) {
                        Some(code) => Err(broker_error(
                            code,
                            resource.to_string(),
                            a.error_message.as_ref(),
                        )),
                        None => Ok(a
                            .configs
                            .iter()
                            .map(|c| ConfigEntry {
                                name: c.name.to_string(),
                                value: c.value.as_ref().map(|v| v.to_string()),
                                source: c.config_source,
                                read_only: c.read_only,
                                sensitive: c.is_sensitive,
                            })
                            .collect()),
                    },
                };
                results.insert(resource, result);
            }
        }
        Ok(results)
    }

    /// Changes configs of topics and brokers (IncrementalAlterConfigs, KIP-339); with
    /// `validate_only` checks the changes without applying them. Each resource has its own
    /// result.
    pub async fn incremental_alter_configs(
        &self,
        changes: &[(ConfigResource, Vec<AlterConfigOp>)],
        validate_only: bool,
    ) -> Result<Results<ConfigResource, ()>, Error> {
        let mut results = Results::new();
        for (resource, ops) in changes {
            let (kind, name) = resource.wire();
            let ops = ops.clone();
            let build = move |_version: i16| {
                let configs = ops
                    .iter()
                    .map(|op| {
                        let (key, operation, value) = op.wire();
                        incremental_alter_configs_request::AlterableConfig::default()
                            .with_name(text(key))
                            .with_config_operation(operation)
                            .with_value(value.map(text))
                    })
                    .collect();
                Ok(RequestKind::IncrementalAlterConfigs(
                    IncrementalAlterConfigsRequest::default()
                        .with_resources(vec![
                            incremental_alter_configs_request::AlterConfigsResource::default()
                                .with_resource_type(kind)
                                .with_resource_name(text(&name))
                                .with_configs(configs),
                        ])
                        .with_validate_only(validate_only),
                ))
            };
            let broker = resource.broker();
            let response = self
                .retrying(|| async {
                    let response = match broker {
                        Some(id) => {
                            self.to_broker(id, ApiKey::IncrementalAlterConfigs, build.clone())
                                .await?
                        }
                        None => {
                            self.any(ApiKey::IncrementalAlterConfigs, build.clone())
                                .await?
                        }
                    };
                    Ok(body!(response, IncrementalAlterConfigs))
                })
                .await;
            let result = match response {
                Err(error) => Err(error),
                Ok(response) => match response.responses.first() {
                    None => Err(unexpected(ApiKey::IncrementalAlterConfigs, "broker")),
                    Some(a) => match ErrorCode::try_from_code(a.error_code) {
                        None => Ok(()),
                        Some(code) => Err(broker_error(
                            code,
                            resource.to_string(),
                            a.error_message.as_ref(),
                        )),
                    },
                },
            };
            results.insert(resource.clone(), result);
        }
        Ok(results)
    }

    // ---- consumer groups ----

    /// Every group of every broker, with its state, in id order.
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>, Error> {
        self.metadata(Some(Vec::new())).await?;
        let brokers: Vec<i32> = self.cluster.metadata().brokers().map(|b| b.id).collect();
        let mut groups = Vec::new();
        for broker in brokers {
            let response = self
                .retrying(|| async {
                    let build =
                        |_version: i16| Ok(RequestKind::ListGroups(ListGroupsRequest::default()));
                    Ok(body!(
                        self.to_broker(broker, ApiKey::ListGroups, build).await?,
                        ListGroups
                    ))
                })
                .await?;
            if let Some(code) = ErrorCode::try_from_code(response.error_code) {
                return Err(broker_error(
                    code,
                    format!("ListGroups on broker {broker}"),
                    None,
                ));
            }
            groups.extend(response.groups.iter().map(|g| GroupListing {
                group_id: g.group_id.0.to_string(),
                protocol_type: g.protocol_type.to_string(),
                state: g.group_state.to_string(),
                coordinator: broker,
            }));
        }
        groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        Ok(groups)
    }

    /// Sends a group request to the group's coordinator, finding it anew and trying again
    /// while the answer's code (read by `code`) asks for it.
    async fn to_coordinator<F>(
        &self,
        key: &str,
        key_type: i8,
        api: ApiKey,
        build: F,
        code: impl Fn(&ResponseKind) -> Option<ErrorCode>,
    ) -> Result<(i32, ResponseKind), Error>
    where
        F: Fn(i16) -> Result<RequestKind, Error> + Send + Sync + Clone + 'static,
    {
        let mut attempts = self.attempts();
        loop {
            let outcome = match self.coordinator(key, key_type).await {
                Ok(coordinator) => match self.to_broker(coordinator, api, build.clone()).await {
                    Ok(response) => match code(&response) {
                        Some(code) if retry_action(code) != RetryAction::Fail => {
                            Err(broker_error(code, key.to_string(), None))
                        }
                        _ => Ok((coordinator, response)),
                    },
                    Err(error) => Err(error),
                },
                Err(error) => Err(error),
            };
            match outcome {
                Ok(answer) => return Ok(answer),
                Err(error) if error.is_retriable() && attempts.wait().await => continue,
                Err(error) => return Err(error),
            }
        }
    }

    /// Describes groups: state, assignor, members and their assignments. Each group has its
    /// own result.
    pub async fn describe_groups(
        &self,
        group_ids: &[String],
    ) -> Result<Results<String, GroupDescription>, Error> {
        let mut results = Results::new();
        for group in group_ids {
            let id = group.clone();
            let build = move |_version: i16| {
                Ok(RequestKind::DescribeGroups(
                    DescribeGroupsRequest::default().with_groups(vec![GroupId(text(&id))]),
                ))
            };
            let answer = self
                .to_coordinator(group, 0, ApiKey::DescribeGroups, build, |r| match r {
                    ResponseKind::DescribeGroups(r) => r
                        .groups
                        .first()
                        .and_then(|g| ErrorCode::try_from_code(g.error_code)),
                    _ => None,
                })
                .await;
            let result = answer.and_then(|(coordinator, response)| {
                let response = body!(response, DescribeGroups);
                let g = response
                    .groups
                    .first()
                    .ok_or_else(|| unexpected(ApiKey::DescribeGroups, "coordinator"))?;
                if let Some(code) = ErrorCode::try_from_code(g.error_code) {
                    return Err(broker_error(
                        code,
                        format!("group {group}"),
                        g.error_message.as_ref(),
                    ));
                }
                let consumer = g.protocol_type.as_str() == "consumer";
                Ok(GroupDescription {
                    group_id: group.clone(),
                    state: g.group_state.to_string(),
                    protocol_type: g.protocol_type.to_string(),
                    protocol: g.protocol_data.to_string(),
                    coordinator,
                    members: g
                        .members
                        .iter()
                        .map(|m| MemberDescription {
                            member_id: m.member_id.to_string(),
                            instance_id: m.group_instance_id.as_ref().map(|i| i.to_string()),
                            client_id: m.client_id.to_string(),
                            host: m.client_host.to_string(),
                            assignment: if consumer {
                                decode_assignment(&m.member_assignment)
                                    .map(|a| a.partitions)
                                    .unwrap_or_default()
                            } else {
                                Vec::new()
                            },
                        })
                        .collect(),
                })
            });
            results.insert(group.clone(), result);
        }
        Ok(results)
    }

    /// Deletes groups (empty ones, with their offsets). Each group has its own result.
    pub async fn delete_groups(&self, group_ids: &[String]) -> Result<Results<String, ()>, Error> {
        let mut results = Results::new();
        for group in group_ids {
            let id = group.clone();
            let build = move |_version: i16| {
                Ok(RequestKind::DeleteGroups(
                    DeleteGroupsRequest::default().with_groups_names(vec![GroupId(text(&id))]),
                ))
            };
            let answer = self
                .to_coordinator(group, 0, ApiKey::DeleteGroups, build, |r| match r {
                    ResponseKind::DeleteGroups(r) => r
                        .results
                        .first()
                        .and_then(|g| ErrorCode::try_from_code(g.error_code)),
                    _ => None,
                })
                .await;
            let result = answer.and_then(|(_, response)| {
                let response = body!(response, DeleteGroups);
                match response
                    .results
                    .first()
                    .map(|r| ErrorCode::try_from_code(r.error_code))
                {
                    Some(None) => Ok(()),
                    Some(Some(code)) => Err(broker_error(code, format!("group {group}"), None)),
                    None => Err(unexpected(ApiKey::DeleteGroups, "coordinator")),
                }
            });
            results.insert(group.clone(), result);
        }
        Ok(results)
    }

    /// The offsets `group` committed, by partition (OffsetFetch of every partition; with
    /// `require_stable`, pending transactional commits are waited for, KIP-447).
    pub async fn list_group_offsets(
        &self,
        group: &str,
    ) -> Result<BTreeMap<TopicPartition, i64>, Error> {
        let id = group.to_string();
        let build = move |version: i16| {
            let mut request = OffsetFetchRequest::default();
            if version >= 8 {
                request.groups = vec![offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(text(&id)))
                    .with_topics(None)];
            } else {
                request.group_id = GroupId(text(&id));
                request.topics = None;
            }
            if version >= 7 {
                request.require_stable = true;
            }
            Ok(RequestKind::OffsetFetch(request))
        };
        let group_code = |r: &ResponseKind| match r {
            ResponseKind::OffsetFetch(r) => match r.groups.first() {
                Some(g) => ErrorCode::try_from_code(g.error_code),
                None => ErrorCode::try_from_code(r.error_code),
            },
            _ => None,
        };
        let (_, response) = self
            .to_coordinator(group, 0, ApiKey::OffsetFetch, build, group_code)
            .await?;
        if let Some(code) = group_code(&response) {
            return Err(broker_error(code, format!("group {group}"), None));
        }
        let response = body!(response, OffsetFetch);
        let mut offsets = BTreeMap::new();
        match response.groups.first() {
            Some(g) => {
                for t in &g.topics {
                    for p in &t.partitions {
                        if p.error_code == 0 && p.committed_offset >= 0 {
                            offsets.insert(
                                TopicPartition::new(t.name.0.to_string(), p.partition_index),
                                p.committed_offset,
                            );
                        }
                    }
                }
            }
            None => {
                for t in &response.topics {
                    for p in &t.partitions {
                        if p.error_code == 0 && p.committed_offset >= 0 {
                            offsets.insert(
                                TopicPartition::new(t.name.0.to_string(), p.partition_index),
                                p.committed_offset,
                            );
                        }
                    }
                }
            }
        }
        Ok(offsets)
    }

    /// Commits `offsets` for `group` as an admin (no member, generation -1): Kafka accepts
    /// it only while the group has no member. Each partition has its own result.
    pub async fn alter_group_offsets(
        &self,
        group: &str,
        offsets: &BTreeMap<TopicPartition, i64>,
    ) -> Result<Results<TopicPartition, ()>, Error> {
        let id = group.to_string();
        let sent = offsets.clone();
        let build = move |_version: i16| {
            let mut by_topic: BTreeMap<
                &str,
                Vec<offset_commit_request::OffsetCommitRequestPartition>,
            > = BTreeMap::new();
            for (tp, offset) in &sent {
                by_topic.entry(tp.topic.as_str()).or_default().push(
                    offset_commit_request::OffsetCommitRequestPartition::default()
                        .with_partition_index(tp.partition)
                        .with_committed_offset(*offset)
                        .with_committed_metadata(Some(text(""))),
                );
            }
            Ok(RequestKind::OffsetCommit(
                OffsetCommitRequest::default()
                    .with_group_id(GroupId(text(&id)))
                    .with_generation_id_or_member_epoch(-1)
                    .with_member_id(text(""))
                    .with_topics(
                        by_topic
                            .into_iter()
                            .map(|(topic, partitions)| {
                                offset_commit_request::OffsetCommitRequestTopic::default()
                                    .with_name(topic_name(topic))
                                    .with_partitions(partitions)
                            })
                            .collect(),
                    ),
            ))
        };
        let first_code = |r: &ResponseKind| match r {
            ResponseKind::OffsetCommit(r) => r
                .topics
                .iter()
                .flat_map(|t| &t.partitions)
                .filter_map(|p| ErrorCode::try_from_code(p.error_code))
                .find(|c| {
                    matches!(
                        retry_action(*c),
                        RetryAction::FindCoordinator | RetryAction::Backoff
                    )
                }),
            _ => None,
        };
        let (_, response) = self
            .to_coordinator(group, 0, ApiKey::OffsetCommit, build, first_code)
            .await?;
        let response = body!(response, OffsetCommit);
        let mut results = Results::new();
        for t in &response.topics {
            for p in &t.partitions {
                let tp = TopicPartition::new(t.name.0.to_string(), p.partition_index);
                let result = match ErrorCode::try_from_code(p.error_code) {
                    None => Ok(()),
                    Some(code) => Err(partition_error(&tp, code, None)),
                };
                results.insert(tp, result);
            }
        }
        Ok(results)
    }

    /// Deletes `group`'s committed offsets of `partitions` (OffsetDelete, KIP-496); refused
    /// for partitions the group is consuming. Each partition has its own result.
    pub async fn delete_group_offsets(
        &self,
        group: &str,
        partitions: &[TopicPartition],
    ) -> Result<Results<TopicPartition, ()>, Error> {
        let id = group.to_string();
        let sent = partitions.to_vec();
        let build = move |_version: i16| {
            let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
            for tp in &sent {
                by_topic
                    .entry(tp.topic.as_str())
                    .or_default()
                    .push(tp.partition);
            }
            Ok(RequestKind::OffsetDelete(
                OffsetDeleteRequest::default()
                    .with_group_id(GroupId(text(&id)))
                    .with_topics(
                        by_topic
                            .into_iter()
                            .map(|(topic, partitions)| {
                                offset_delete_request::OffsetDeleteRequestTopic::default()
                                    .with_name(topic_name(topic))
                                    .with_partitions(
                                        partitions
                                            .into_iter()
                                            .map(|p| offset_delete_request::OffsetDeleteRequestPartition::default().with_partition_index(p))
                                            .collect(),
                                    )
                            })
                            .collect(),
                    ),
            ))
        };
        let group_code = |r: &ResponseKind| match r {
            ResponseKind::OffsetDelete(r) => ErrorCode::try_from_code(r.error_code),
            _ => None,
        };
        let (_, response) = self
            .to_coordinator(group, 0, ApiKey::OffsetDelete, build, group_code)
            .await?;
        if let Some(code) = group_code(&response) {
            return Err(broker_error(code, format!("group {group}"), None));
        }
        let response = body!(response, OffsetDelete);
        let mut results = Results::new();
        for t in &response.topics {
            for p in &t.partitions {
                let tp = TopicPartition::new(t.name.0.to_string(), p.partition_index);
                let result = match ErrorCode::try_from_code(p.error_code) {
                    None => Ok(()),
                    Some(code) => Err(partition_error(&tp, code, None)),
                };
                results.insert(tp, result);
            }
        }
        Ok(results)
    }

    /// The lag of `group` on every partition it committed an offset for and every other
    /// partition of those topics: the end offset (the last stable offset with
    /// `ReadCommitted`, the high watermark otherwise) minus the committed offset.
    pub async fn lag(
        &self,
        group: &str,
        isolation: IsolationLevel,
    ) -> Result<Vec<PartitionLag>, Error> {
        let committed = self.list_group_offsets(group).await?;
        let topics: BTreeSet<String> = committed.keys().map(|tp| tp.topic.clone()).collect();
        let partitions = self.partitions_of(&topics).await?;
        let specs: Vec<(TopicPartition, OffsetSpec)> = partitions
            .into_iter()
            .map(|tp| (tp, OffsetSpec::Latest))
            .collect();
        let ends: BTreeMap<TopicPartition, i64> = self
            .list_offsets(&specs, isolation)
            .await?
            .into_iter()
            .filter_map(|(tp, r)| Some((tp, r.ok()?.offset)))
            .collect();
        Ok(compute_lag(&committed, &ends))
    }

    /// Every partition of `topics` (those that exist).
    async fn partitions_of(&self, topics: &BTreeSet<String>) -> Result<Vec<TopicPartition>, Error> {
        if topics.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<String> = topics.iter().cloned().collect();
        let described = self.describe_topics(&names).await?;
        Ok(described
            .into_values()
            .filter_map(|d| d.ok())
            .flat_map(|d| {
                d.partitions
                    .into_iter()
                    .map(move |p| TopicPartition::new(d.name.clone(), p.partition))
            })
            .collect())
    }

    /// Moves `group`'s committed offsets on every partition of `topics` (or of the topics it
    /// committed for, when `topics` is empty) as `kafka-consumer-groups --reset-offsets`
    /// does: refused unless the group has no member; `dry_run` computes without committing.
    /// Returns the new offsets.
    pub async fn reset_offsets(
        &self,
        group: &str,
        topics: &[String],
        to: &ResetTo,
        dry_run: bool,
    ) -> Result<BTreeMap<TopicPartition, i64>, Error> {
        let described = self.describe_groups(&[group.to_string()]).await?;
        if let Some(Ok(description)) = described.get(group) {
            check_reset_allowed(group, &description.state).map_err(|reason| Error::Broker {
                code: ErrorCode::NonEmptyGroup,
                context: Some(reason),
            })?;
        }
        let committed = self.list_group_offsets(group).await?;
        let topics: BTreeSet<String> = if topics.is_empty() {
            committed.keys().map(|tp| tp.topic.clone()).collect()
        } else {
            topics.iter().cloned().collect()
        };
        let partitions = self.partitions_of(&topics).await?;
        let lookup = |spec: OffsetSpec| -> Vec<(TopicPartition, OffsetSpec)> {
            partitions.iter().map(|tp| (tp.clone(), spec)).collect()
        };
        let offsets_of =
            |results: Results<TopicPartition, ListedOffset>| -> BTreeMap<TopicPartition, i64> {
                results
                    .into_iter()
                    .filter_map(|(tp, r)| Some((tp, r.ok()?.offset)))
                    .collect()
            };
        let isolation = IsolationLevel::ReadUncommitted;
        let earliest = offsets_of(
            self.list_offsets(&lookup(OffsetSpec::Earliest), isolation)
                .await?,
        );
        let latest = offsets_of(
            self.list_offsets(&lookup(OffsetSpec::Latest), isolation)
                .await?,
        );
        let for_timestamp = match to {
            ResetTo::Timestamp(t) => offsets_of(
                self.list_offsets(&lookup(OffsetSpec::Timestamp(*t)), isolation)
                    .await?,
            ),
            _ => BTreeMap::new(),
        };
        let mut targets = BTreeMap::new();
        for tp in &partitions {
            let (Some(&earliest), Some(&latest)) = (earliest.get(tp), latest.get(tp)) else {
                return Err(Error::Partition {
                    partition: tp.clone(),
                    code: ErrorCode::LeaderNotAvailable,
                    message: Some("its offsets could not be looked up".into()),
                });
            };
            let inputs = ResetInputs {
                earliest,
                latest,
                for_timestamp: for_timestamp.get(tp).copied().filter(|o| *o >= 0),
                committed: committed.get(tp).copied(),
            };
            targets.insert(tp.clone(), reset_target(to, inputs));
        }
        if !dry_run && !targets.is_empty() {
            let results = self.alter_group_offsets(group, &targets).await?;
            if let Some(error) = results.into_values().find_map(Result::err) {
                return Err(error);
            }
        }
        Ok(targets)
    }

    // ---- partitions on their leaders ----

    /// Runs `at(leader, partitions)` for the partitions each broker leads, trying again
    /// (after a metadata refresh and the backoff) those that fail retriably.
    async fn on_leaders<V, F, Fut>(
        &self,
        partitions: Vec<TopicPartition>,
        mut at: F,
    ) -> Result<Results<TopicPartition, V>, Error>
    where
        F: FnMut(i32, Vec<TopicPartition>) -> Fut,
        Fut: Future<
            Output = Result<Vec<(TopicPartition, Result<V, (ErrorCode, Option<StrBytes>)>)>, Error>,
        >,
    {
        let mut results = Results::new();
        let mut pending = partitions;
        let mut attempts = self.attempts();
        while !pending.is_empty() {
            let topics: BTreeSet<String> = pending.iter().map(|tp| tp.topic.clone()).collect();
            let metadata = self.metadata(Some(topics.into_iter().collect())).await?;
            let mut leaders: BTreeMap<i32, Vec<TopicPartition>> = BTreeMap::new();
            let mut retry = Vec::new();
            for tp in pending.drain(..) {
                let topic = metadata
                    .topics
                    .iter()
                    .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some(tp.topic.as_str()));
                let partition = topic.and_then(|t| {
                    t.partitions
                        .iter()
                        .find(|p| p.partition_index == tp.partition)
                });
                match (topic.map(|t| t.error_code), partition) {
                    (Some(0), Some(p)) if p.leader_id.0 >= 0 => {
                        leaders.entry(p.leader_id.0).or_default().push(tp)
                    }
                    (Some(0), Some(_)) => retry.push(tp),
                    (Some(code), _)
                        if code != 0
                            && ErrorCode::try_from_code(code).is_some_and(|c| {
                                c.is_retriable() && c != ErrorCode::UnknownTopicOrPartition
                            }) =>
                    {
                        retry.push(tp)
                    }
                    _ => {
                        let error = partition_error(&tp, ErrorCode::UnknownTopicOrPartition, None);
                        results.insert(tp, Err(error));
                    }
                }
            }
            for (leader, tps) in leaders {
                match at(leader, tps.clone()).await {
                    Ok(answers) => {
                        let mut answered = BTreeSet::new();
                        for (tp, answer) in answers {
                            answered.insert(tp.clone());
                            match answer {
                                Ok(value) => {
                                    results.insert(tp, Ok(value));
                                }
                                Err((code, _))
                                    if retry_action(code) != RetryAction::Fail
                                        && !attempts.past_deadline() =>
                                {
                                    retry.push(tp)
                                }
                                Err((code, message)) => {
                                    let error = partition_error(&tp, code, message.as_ref());
                                    results.insert(tp, Err(error));
                                }
                            }
                        }
                        for tp in tps.into_iter().filter(|tp| !answered.contains(tp)) {
                            results.insert(
                                tp,
                                Err(unexpected(ApiKey::Metadata, &format!("broker {leader}"))),
                            );
                        }
                    }
                    Err(error) if error.is_retriable() && !attempts.past_deadline() => {
                        retry.extend(tps)
                    }
                    Err(error) => {
                        for tp in tps {
                            results.insert(tp, Err(error.clone()));
                        }
                    }
                }
            }
            pending = retry;
            if !pending.is_empty() && !attempts.wait().await {
                for tp in pending.drain(..) {
                    let error = partition_error(&tp, ErrorCode::LeaderNotAvailable, None);
                    results.insert(tp, Err(error));
                }
            }
        }
        Ok(results)
    }

    /// Offsets by timestamp, earliest, latest or max timestamp, from each partition's leader.
    /// Each partition has its own result.
    pub async fn list_offsets(
        &self,
        specs: &[(TopicPartition, OffsetSpec)],
        isolation: IsolationLevel,
    ) -> Result<Results<TopicPartition, ListedOffset>, Error> {
        let wanted: BTreeMap<TopicPartition, OffsetSpec> = specs.iter().cloned().collect();
        let wanted = &wanted;
        let partitions: Vec<TopicPartition> = wanted.keys().cloned().collect();
        self.on_leaders(partitions, move |leader, tps| async move {
            let sent: Vec<(TopicPartition, i64)> = tps
                .iter()
                .map(|tp| (tp.clone(), wanted.get(tp).map_or(-1, |s| s.wire())))
                .collect();
            let build = move |version: i16| {
                let mut by_topic: BTreeMap<&str, Vec<list_offsets_request::ListOffsetsPartition>> =
                    BTreeMap::new();
                for (tp, timestamp) in &sent {
                    by_topic.entry(tp.topic.as_str()).or_default().push(
                        list_offsets_request::ListOffsetsPartition::default()
                            .with_partition_index(tp.partition)
                            .with_timestamp(*timestamp),
                    );
                }
                let mut request = ListOffsetsRequest::default()
                    .with_replica_id(BrokerId(-1))
                    .with_topics(
                        by_topic
                            .into_iter()
                            .map(|(topic, partitions)| {
                                list_offsets_request::ListOffsetsTopic::default()
                                    .with_name(topic_name(topic))
                                    .with_partitions(partitions)
                            })
                            .collect(),
                    );
                if version >= 2 && isolation == IsolationLevel::ReadCommitted {
                    request.isolation_level = 1;
                }
                Ok(RequestKind::ListOffsets(request))
            };
            let response = body!(
                self.to_broker(leader, ApiKey::ListOffsets, build).await?,
                ListOffsets
            );
            Ok(response
                .topics
                .iter()
                .flat_map(|t| {
                    t.partitions.iter().map(move |p| {
                        let tp = TopicPartition::new(t.name.0.to_string(), p.partition_index);
                        let answer = match ErrorCode::try_from_code(p.error_code) {
                            None => Ok(ListedOffset {
                                offset: p.offset,
                                timestamp: p.timestamp,
                                leader_epoch: p.leader_epoch,
                            }),
                            Some(code) => Err((code, None)),
                        };
                        (tp, answer)
                    })
                })
                .collect())
        })
        .await
    }

    /// Deletes the records before each offset (-1: the end) on each partition's leader;
    /// answers the new log start offsets. Each partition has its own result.
    pub async fn delete_records(
        &self,
        before: &BTreeMap<TopicPartition, i64>,
    ) -> Result<Results<TopicPartition, i64>, Error> {
        let partitions: Vec<TopicPartition> = before.keys().cloned().collect();
        let timeout = self.cluster.config().request_timeout;
        self.on_leaders(partitions, move |leader, tps| async move {
            let sent: Vec<(TopicPartition, i64)> = tps
                .iter()
                .map(|tp| (tp.clone(), before.get(tp).copied().unwrap_or(-1)))
                .collect();
            let build = move |_version: i16| {
                let mut by_topic: BTreeMap<
                    &str,
                    Vec<delete_records_request::DeleteRecordsPartition>,
                > = BTreeMap::new();
                for (tp, offset) in &sent {
                    by_topic.entry(tp.topic.as_str()).or_default().push(
                        delete_records_request::DeleteRecordsPartition::default()
                            .with_partition_index(tp.partition)
                            .with_offset(*offset),
                    );
                }
                Ok(RequestKind::DeleteRecords(
                    DeleteRecordsRequest::default()
                        .with_topics(
                            by_topic
                                .into_iter()
                                .map(|(topic, partitions)| {
                                    delete_records_request::DeleteRecordsTopic::default()
                                        .with_name(topic_name(topic))
                                        .with_partitions(partitions)
                                })
                                .collect(),
                        )
                        .with_timeout_ms(millis(timeout)),
                ))
            };
            let response = body!(
                self.to_broker(leader, ApiKey::DeleteRecords, build).await?,
                DeleteRecords
            );
            Ok(response
                .topics
                .iter()
                .flat_map(|t| {
                    t.partitions.iter().map(move |p| {
                        let tp = TopicPartition::new(t.name.0.to_string(), p.partition_index);
                        let answer = match ErrorCode::try_from_code(p.error_code) {
                            None => Ok(p.low_watermark),
                            Some(code) => Err((code, None)),
                        };
                        (tp, answer)
                    })
                })
                .collect())
        })
        .await
    }

    /// The active producers of each partition (DescribeProducers, KIP-664), from its leader.
    /// Each partition has its own result.
    pub async fn describe_producers(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<Results<TopicPartition, Vec<ProducerState>>, Error> {
        self.on_leaders(partitions.to_vec(), move |leader, tps| async move {
            let build = move |_version: i16| {
                let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
                for tp in &tps {
                    by_topic
                        .entry(tp.topic.as_str())
                        .or_default()
                        .push(tp.partition);
                }
                Ok(RequestKind::DescribeProducers(
                    DescribeProducersRequest::default().with_topics(
                        by_topic
                            .into_iter()
                            .map(|(topic, partitions)| {
                                describe_producers_request::TopicRequest::default()
                                    .with_name(topic_name(topic))
                                    .with_partition_indexes(partitions)
                            })
                            .collect(),
                    ),
                ))
            };
            let response = body!(
                self.to_broker(leader, ApiKey::DescribeProducers, build)
                    .await?,
                DescribeProducers
            );
            Ok(response
                .topics
                .iter()
                .flat_map(|t| {
                    t.partitions.iter().map(move |p| {
                        let tp = TopicPartition::new(t.name.0.to_string(), p.partition_index);
                        let answer = match ErrorCode::try_from_code(p.error_code) {
                            None => Ok(p
                                .active_producers
                                .iter()
                                .map(|s| ProducerState {
                                    producer_id: s.producer_id.0,
                                    producer_epoch: s.producer_epoch,
                                    last_sequence: s.last_sequence,
                                    last_timestamp: s.last_timestamp,
                                    current_transaction_start_offset: (s.current_txn_start_offset
                                        >= 0)
                                        .then_some(s.current_txn_start_offset),
                                })
                                .collect()),
                            Some(code) => Err((code, p.error_message.clone())),
                        };
                        (tp, answer)
                    })
                })
                .collect())
        })
        .await
    }

    // ---- transactions and the cluster ----

    /// Describes transactional ids, each on its coordinator. Each id has its own result.
    pub async fn describe_transactions(
        &self,
        ids: &[String],
    ) -> Result<Results<String, TransactionDescription>, Error> {
        let mut results = Results::new();
        for id in ids {
            let owned = id.clone();
            let build = move |_version: i16| {
                Ok(RequestKind::DescribeTransactions(
                    DescribeTransactionsRequest::default()
                        .with_transactional_ids(vec![TransactionalId(text(&owned))]),
                ))
            };
            let code = |r: &ResponseKind| match r {
                ResponseKind::DescribeTransactions(r) => r
                    .transaction_states
                    .first()
                    .and_then(|s| ErrorCode::try_from_code(s.error_code)),
                _ => None,
            };
            let answer = self
                .to_coordinator(id, 1, ApiKey::DescribeTransactions, build, code)
                .await;
            let result = answer.and_then(|(_, response)| {
                let response = body!(response, DescribeTransactions);
                let s = response
                    .transaction_states
                    .first()
                    .ok_or_else(|| unexpected(ApiKey::DescribeTransactions, "coordinator"))?;
                if let Some(code) = ErrorCode::try_from_code(s.error_code) {
                    return Err(broker_error(code, format!("transactional id {id}"), None));
                }
                Ok(TransactionDescription {
                    transactional_id: id.clone(),
                    state: s.transaction_state.to_string(),
                    producer_id: s.producer_id.0,
                    producer_epoch: s.producer_epoch,
                    timeout_ms: s.transaction_timeout_ms,
                    start_time_ms: s.transaction_start_time_ms,
                    partitions: s
                        .topics
                        .iter()
                        .flat_map(|t| {
                            t.partitions
                                .iter()
                                .map(move |p| TopicPartition::new(t.topic.0.to_string(), *p))
                        })
                        .collect(),
                })
            });
            results.insert(id.clone(), result);
        }
        Ok(results)
    }

    /// Every transactional id of every broker's coordinator, in id order.
    pub async fn list_transactions(&self) -> Result<Vec<TransactionListing>, Error> {
        self.metadata(Some(Vec::new())).await?;
        let brokers: Vec<i32> = self.cluster.metadata().brokers().map(|b| b.id).collect();
        let mut listed = Vec::new();
        for broker in brokers {
            let response = self
                .retrying(|| async {
                    let build = |_version: i16| {
                        Ok(RequestKind::ListTransactions(
                            ListTransactionsRequest::default(),
                        ))
                    };
                    Ok(body!(
                        self.to_broker(broker, ApiKey::ListTransactions, build)
                            .await?,
                        ListTransactions
                    ))
                })
                .await?;
            if let Some(code) = ErrorCode::try_from_code(response.error_code) {
                return Err(broker_error(
                    code,
                    format!("ListTransactions on broker {broker}"),
                    None,
                ));
            }
            listed.extend(
                response
                    .transaction_states
                    .iter()
                    .map(|s| TransactionListing {
                        transactional_id: s.transactional_id.0.to_string(),
                        producer_id: s.producer_id.0,
                        state: s.transaction_state.to_string(),
                    }),
            );
        }
        listed.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        Ok(listed)
    }

    /// The cluster: its id, controller and brokers (DescribeCluster, KIP-700).
    pub async fn describe_cluster(&self) -> Result<ClusterDescription, Error> {
        let response = self
            .retrying(|| async {
                let build = |_version: i16| {
                    Ok(RequestKind::DescribeCluster(
                        DescribeClusterRequest::default(),
                    ))
                };
                Ok(body!(
                    self.any(ApiKey::DescribeCluster, build).await?,
                    DescribeCluster
                ))
            })
            .await?;
        if let Some(code) = ErrorCode::try_from_code(response.error_code) {
            return Err(broker_error(
                code,
                "DescribeCluster",
                response.error_message.as_ref(),
            ));
        }
        let mut brokers: Vec<(i32, String, i32, Option<String>)> = response
            .brokers
            .iter()
            .map(|b| {
                (
                    b.broker_id.0,
                    b.host.to_string(),
                    b.port,
                    b.rack.as_ref().map(|r| r.to_string()),
                )
            })
            .collect();
        brokers.sort();
        Ok(ClusterDescription {
            cluster_id: response.cluster_id.to_string(),
            controller_id: response.controller_id.0,
            brokers,
        })
    }

    /// Runs `attempt` until it succeeds, fails for good, or `default.api.timeout.ms` passes.
    async fn retrying<T, F, Fut>(&self, mut attempt: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let mut attempts = self.attempts();
        loop {
            match attempt().await {
                Ok(value) => return Ok(value),
                Err(error) if error.is_retriable() && attempts.wait().await => continue,
                Err(error) => return Err(error),
            }
        }
    }
}

fn coordinator_outcome(
    key: &str,
    code: i16,
    node: i32,
    message: Option<&StrBytes>,
) -> Result<i32, Error> {
    match ErrorCode::try_from_code(code) {
        None if node >= 0 => Ok(node),
        None => Err(broker_error(
            ErrorCode::CoordinatorNotAvailable,
            format!("coordinator of {key}"),
            None,
        )),
        Some(code) => Err(broker_error(code, format!("coordinator of {key}"), message)),
    }
}

fn millis(duration: Duration) -> i32 {
    i32::try_from(duration.as_millis()).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_error_is_send_sync_and_static() {
        fn assert_bounds<T: Send + Sync + 'static>() {}
        assert_bounds::<Error>();
        assert_bounds::<Admin>();
    }

    #[test]
    fn wire_forms_follow_kafka() {
        assert_eq!(
            ConfigResource::Topic("t".into()).wire(),
            (2, "t".to_string())
        );
        assert_eq!(ConfigResource::Broker(3).wire(), (4, "3".to_string()));
        assert_eq!(ConfigResource::BrokerDefault.wire(), (4, String::new()));
        assert_eq!(OffsetSpec::Earliest.wire(), -2);
        assert_eq!(OffsetSpec::Latest.wire(), -1);
        assert_eq!(OffsetSpec::MaxTimestamp.wire(), -3);
        assert_eq!(
            AlterConfigOp::Subtract("a".into(), "b".into()).wire(),
            ("a", 3, Some("b"))
        );
        assert_eq!(millis(Duration::from_secs(u64::MAX)), i32::MAX);
    }
}
