//! One file per API key, and one table ([`APIS`]) that says, for each API served, everything
//! the server needs to know: its versions, its handler, how it looks again after waiting,
//! its error answer, the topic ids, topic-partitions and group or transactional ids it
//! names. Adding an API is one entry there plus one handler file. A handler is a pure
//! function of the cluster state and one decoded request: it never touches sockets or
//! clocks (time comes in [`RequestContext::now`]).
//!
//! | module | API (key) | what |
//! |---|---|---|
//! | [`produce`] | Produce (0) | validates, checks producer sequences, appends |
//! | [`fetch`] | Fetch (1) | reads stored batches, waits for `min_bytes` in the purgatory |
//! | [`list_offsets`] | ListOffsets (2) | offsets by timestamp, earliest, latest, max |
//! | [`metadata`] | Metadata (3) | brokers, topics, leaders; auto-creation |
//! | [`offset_commit`] | OffsetCommit (8) | a group's positions, checked against its generation |
//! | [`offset_fetch`] | OffsetFetch (9) | committed offsets; several groups (v8+), stable (v7+) |
//! | [`find_coordinator`] | FindCoordinator (10) | group and transaction coordinators, batched |
//! | [`join_group`] | JoinGroup (11) | joins a group; waits in the purgatory for the join phase |
//! | [`heartbeat`] | Heartbeat (12) | keeps a member's session; says when to rejoin |
//! | [`leave_group`] | LeaveGroup (13) | members leave (batched v3+, by instance id) |
//! | [`sync_group`] | SyncGroup (14) | the leader's assignment; waits in the purgatory for it |
//! | [`describe_groups`] | DescribeGroups (15) | state, protocol, members, assignments |
//! | [`list_groups`] | ListGroups (16) | the groups a broker coordinates; state/type filters |
//! | [`api_versions`] | ApiVersions (18) | what [`APIS`] lists |
//! | [`create_topics`] | CreateTopics (19) | topics, counts, assignments, configs |
//! | [`delete_topics`] | DeleteTopics (20) | by name or id |
//! | [`delete_records`] | DeleteRecords (21) | log start offsets moved forward, on the leader |
//! | [`init_producer_id`] | InitProducerId (22) | producer ids and epochs, idempotent or transactional |
//! | [`offset_for_leader_epoch`] | OffsetForLeaderEpoch (23) | end offset of an epoch |
//! | [`add_partitions_to_txn`] | AddPartitionsToTxn (24) | partitions join a transaction; verification (v4+) |
//! | [`add_offsets_to_txn`] | AddOffsetsToTxn (25) | a group's offsets partition joins a transaction |
//! | [`end_txn`] | EndTxn (26) | commit or abort: markers, group offsets |
//! | [`txn_offset_commit`] | TxnOffsetCommit (28) | group offsets staged in a transaction |
//! | [`describe_acls`] | DescribeAcls (29) | SECURITY_DISABLED, as without an authorizer |
//! | [`create_acls`] | CreateAcls (30) | SECURITY_DISABLED per creation, as without an authorizer |
//! | [`delete_acls`] | DeleteAcls (31) | SECURITY_DISABLED per filter, as without an authorizer |
//! | [`describe_configs`] | DescribeConfigs (32) | topic and broker configs |
//! | [`alter_configs`] | AlterConfigs (33) | a topic's or broker's configs replaced as a whole |
//! | [`describe_log_dirs`] | DescribeLogDirs (35) | one directory per broker, its replicas' sizes |
//! | [`create_partitions`] | CreatePartitions (37) | more partitions |
//! | [`delete_groups`] | DeleteGroups (42) | empty groups and their offsets |
//! | [`elect_leaders`] | ElectLeaders (43) | preferred or unclean elections move leaders |
//! | [`incremental_alter_configs`] | IncrementalAlterConfigs (44) | set, delete, append, subtract topic and dynamic broker configs |
//! | [`list_partition_reassignments`] | ListPartitionReassignments (46) | none is ever ongoing |
//! | [`offset_delete`] | OffsetDelete (47) | a group's offsets of some partitions |
//! | [`describe_client_quotas`] | DescribeClientQuotas (48) | filters checked; no quotas |
//! | [`describe_user_scram_credentials`] | DescribeUserScramCredentials (50) | the listeners' SCRAM users |
//! | [`describe_cluster`] | DescribeCluster (60) | brokers, cluster and controller ids |
//! | [`describe_producers`] | DescribeProducers (61) | a partition's active producers, on the leader |
//! | [`describe_transactions`] | DescribeTransactions (65) | a transactional id's state |
//! | [`list_transactions`] | ListTransactions (66) | the ids a broker coordinates, filtered |
//! | [`consumer_group_heartbeat`] | ConsumerGroupHeartbeat (68) | KIP-848: join, heartbeat, reconcile, leave |
//! | [`consumer_group_describe`] | ConsumerGroupDescribe (69) | KIP-848 groups, members, assignments |
//! | [`named_ids`] | - | the group and transactional ids requests name, every API |
//!
//! Call order, as the server drives it (see `server.rs`):
//! 1. the server decodes the frame and checks the version against the API's entry within
//!    the cluster's caps ([`served_range`]; an unsupported ApiVersions request gets
//!    [`api_versions::unsupported_version_response`]);
//! 2. `control.rs` matches interceptors against what the entry says the request names; a
//!    request-level error becomes [`ApiSpec::error_response`], partition-level errors go
//!    into [`RequestContext::partition_errors`];
//! 3. [`dispatch_prepared`] runs the handler. A handler that cannot answer yet answers
//!    [`Reply::Park`]: [`park`] moves the request into the cluster's purgatory, and
//!    [`complete_ready`] hands it back to the API's [`ApiSpec::complete`] whenever a key it
//!    waits on is touched, its outcome is resolved, or its deadline passes.
//!
//! How a coordinator's request waits, e.g. a JoinGroup until its rebalance completes (a
//! sketch; [`join_group`] and `cluster/groups/` do it this way, handing the outcome over as
//! `Resolution::Group`):
//!
//! ```ignore
//! // handle: the member joins; if the rebalance is not complete, park on the group.
//! let member = cluster.groups.join(&req, ctx.waiter, ctx.now)?; // remembers ctx.waiter
//! if !member.join_complete() {
//!     return Reply::Park(Park {
//!         keys: vec![WaitKey::Group(group_id)],
//!         deadline: ctx.now + rebalance_timeout,
//!         request: RequestKind::JoinGroup(req),
//!     });
//! }
//! // The coordinator, when the last member joined (a request) or the rebalance timed out
//! // (ClusterState::handle_timeout), computes each member's result and hands it over:
//! //     self.waiting.resolve(member.waiter, Resolution::Join(result));
//! // (or keeps it in the group and touches WaitKey::Group for every waiter to read it).
//! // complete: build the response from what it was handed.
//! fn complete(cluster: &mut ClusterState, parked: Parked, wake: Wake) -> Completion {
//!     match wake {
//!         Wake::Resolved(Resolution::Join(result)) => Completion::Done(respond(result)),
//!         Wake::Resolved(Resolution::Error(code)) => Completion::Done(error(code)),
//!         Wake::Touched => Completion::Wait(parked), // not yet
//!         Wake::Due => Completion::Done(error(ErrorCode::RebalanceInProgress)),
//!     }
//! }
//! ```

use std::sync::Arc;

use franzy::proto::{ApiKey, ErrorCode, RequestKind, ResponseKind, StrBytes};
use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::VersionRange;
use uuid::Uuid;

use crate::cluster::{ClusterState, Time, Wait, WaitKey, WaiterId, Wake};

pub use crate::cluster::{Parked, RequestContext};
pub use named_ids::NamedIds;

pub mod add_offsets_to_txn;
pub mod add_partitions_to_txn;
pub mod alter_configs;
pub mod api_versions;
pub mod consumer_group_describe;
pub mod consumer_group_heartbeat;
pub mod create_acls;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_acls;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_acls;
pub mod describe_client_quotas;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_log_dirs;
pub mod describe_producers;
pub mod describe_transactions;
pub mod describe_user_scram_credentials;
pub mod elect_leaders;
pub mod end_txn;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod list_partition_reassignments;
pub mod list_transactions;
pub mod metadata;
pub mod named_ids;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod sasl;
pub mod sync_group;
#[cfg(test)]
pub(crate) mod test_support;
pub mod txn_offset_commit;

/// Resolves a topic id to its name (under the cluster lock, or from a map made under it).
pub type ResolveTopicId<'a> = &'a dyn Fn(Uuid) -> Option<Arc<str>>;

/// (topic name, partition) pairs a request names, in request order; -1 for a whole topic.
pub type TopicPartitions = Vec<(Arc<str>, i32)>;

/// How the harness serves one API: one entry of [`APIS`].
#[derive(Clone, Copy)]
pub struct ApiSpec {
    /// The API.
    pub key: ApiKey,
    /// The versions served (and advertised by ApiVersions): what the handler implements,
    /// within what `kafka-protocol` can decode.
    pub versions: VersionRange,
    /// Serves a request, with what was prepared for it before the cluster lock.
    pub handle: fn(&mut ClusterState, &RequestContext, RequestKind, Prepared) -> Reply,
    /// Looks again at a request of this API that waited (after [`Reply::Park`]): answers, or
    /// waits on. APIs that never park answer a closed connection (a bug).
    pub complete: fn(&mut ClusterState, Parked, Wake) -> Completion,
    /// The answer that fails the whole request with a code, or `None` when the API (or
    /// this request, e.g. an acks=0 produce) has no way to carry one.
    pub error_response: fn(&RequestKind, i16, ErrorCode) -> Option<ResponseKind>,
    /// The topic ids the request names at this version (resolved under the lock).
    pub topic_ids: fn(&RequestKind, i16) -> Vec<Uuid>,
    /// The (topic, partition) pairs the request names at this version, ids resolved by the
    /// given function; partition -1 for a whole topic.
    pub partitions: fn(&RequestKind, i16, ResolveTopicId<'_>) -> TopicPartitions,
    /// The group ids and transactional ids the request names at this version.
    pub named_ids: fn(&RequestKind, i16) -> NamedIds,
}

impl std::fmt::Debug for ApiSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiSpec")
            .field("key", &self.key)
            .field("versions", &self.versions)
            .finish_non_exhaustive()
    }
}

impl ApiSpec {
    /// Whether `version` is served.
    pub fn serves(&self, version: i16) -> bool {
        self.versions.min <= version && version <= self.versions.max
    }
}

/// Work done on a request before the cluster lock is taken, handed to [`dispatch_prepared`].
#[derive(Debug, Default)]
pub enum Prepared {
    /// Nothing was prepared: the handler does all its work under the lock.
    #[default]
    Nothing,
    /// A produce request's batches, validated (see [`produce::prepare`]).
    Produce(produce::PreparedProduce),
    /// A Metadata request's names, sorted out (see [`metadata::plan`]).
    Metadata(metadata::MetadataPlan),
    /// The preparation failed (a bug): the connection is closed with this reason.
    Failed(String),
}

/// A handler's answer.
// Responses are built once and moved straight to the encoder: boxing them buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Reply {
    /// Send this response.
    Respond(ResponseKind),
    /// Send nothing (a produce with acks=0).
    NoResponse,
    /// Close the connection without answering, as Kafka does when an acks=0 produce fails:
    /// the client has no other way to learn of the failure.
    Close {
        /// Why, for the broker's log.
        reason: String,
    },
    /// Not yet: wait in the purgatory (see [`park`]) until a key is touched, the outcome is
    /// resolved, or the deadline passes.
    Park(Park),
    /// The cluster's part is done: [`finish`] builds the answer, after the cluster lock is
    /// released (only [`dispatch_prepared`] answers this; [`dispatch`] finishes itself).
    Finish(Unfinished),
}

/// A request a handler wants to wait, and on what.
#[derive(Debug)]
pub struct Park {
    /// The keys whose changes may let it answer.
    pub keys: Vec<WaitKey>,
    /// When it answers whatever happens.
    pub deadline: Time,
    /// The request, handed back whole (never copied).
    pub request: RequestKind,
}

/// What [`ApiSpec::complete`] made of a request that waited.
// As `Reply`: moved once, boxing buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Completion {
    /// Its answer.
    Done(Reply),
    /// Not yet: back into the purgatory, on the same keys and with the same deadline.
    /// Never after [`Wake::Due`].
    Wait(Parked),
}

/// A reply whose cluster part is done and whose building is left for after the lock.
#[derive(Debug)]
pub enum Unfinished {
    /// A produce request after [`produce::apply`].
    Produce(produce::AppliedProduce),
    /// A Metadata request after [`metadata::apply`].
    Metadata(metadata::AppliedMetadata),
    /// A fetch of more partitions than the cap: the rest are refused after the lock.
    Fetch(fetch::FetchPastCap),
}

/// Builds the answer of an [`Unfinished`] reply; needs no cluster.
pub fn finish(unfinished: Unfinished) -> Reply {
    match unfinished {
        Unfinished::Produce(applied) => produce::finish(applied),
        Unfinished::Metadata(applied) => {
            Reply::Respond(ResponseKind::Metadata(metadata::finish(applied)))
        }
        Unfinished::Fetch(past_cap) => fetch::finish(past_cap),
    }
}

const fn range(min: i16, max: i16) -> VersionRange {
    VersionRange { min, max }
}

/// Every API this harness serves, in key order: exactly what ApiVersions advertises. Each
/// range is what the handler implements, within what `kafka-protocol` can decode (the full
/// decodable range for every API served; Kafka 4.x dropped the older versions too).
pub static APIS: &[ApiSpec] = &[
    ApiSpec {
        key: ApiKey::Produce,
        versions: range(3, 13),
        handle: |cluster, ctx, request, prepared| match request {
            RequestKind::Produce(req) => {
                let prepared = match prepared {
                    Prepared::Produce(prepared) => prepared,
                    _ => {
                        let max_entries = cluster.config().max_partitions_per_request;
                        let limits =
                            produce::TopicLimits::read(cluster, &req, ctx.api_version, max_entries);
                        produce::prepare(&req, ctx, &limits, cluster.config())
                    }
                };
                Reply::Finish(Unfinished::Produce(produce::apply(
                    cluster, ctx, req, prepared,
                )))
            }
            other => mismatched(ctx, &other),
        },
        complete: never_waits,
        error_response: |request, version, code| match request {
            RequestKind::Produce(req) if req.acks == 0 => None,
            RequestKind::Produce(req) => Some(ResponseKind::Produce(produce::error_response(
                req, version, code,
            ))),
            _ => None,
        },
        topic_ids: |request, version| match request {
            RequestKind::Produce(req) if version >= 13 => {
                req.topic_data.iter().map(|t| t.topic_id).collect()
            }
            _ => Vec::new(),
        },
        partitions: |request, version, resolve| match request {
            RequestKind::Produce(req) => produce::partitions(resolve, req, version),
            _ => Vec::new(),
        },
        named_ids: no_named_ids,
    },
    ApiSpec {
        key: ApiKey::Fetch,
        versions: range(4, 18),
        handle: |cluster, ctx, request, _| match request {
            RequestKind::Fetch(req) => fetch::handle(cluster, ctx, req),
            other => mismatched(ctx, &other),
        },
        complete: fetch::complete,
        error_response: |request, version, code| match request {
            RequestKind::Fetch(req) => Some(ResponseKind::Fetch(fetch::error_response(
                req, version, code,
            ))),
            _ => None,
        },
        topic_ids: |request, version| match request {
            RequestKind::Fetch(req) if version >= 13 => {
                req.topics.iter().map(|t| t.topic_id).collect()
            }
            _ => Vec::new(),
        },
        partitions: |request, version, resolve| match request {
            RequestKind::Fetch(req) => fetch::partitions(resolve, req, version),
            _ => Vec::new(),
        },
        named_ids: no_named_ids,
    },
    ApiSpec {
        key: ApiKey::ListOffsets,
        versions: range(1, 10),
        handle: |cluster, ctx, request, _| match request {
            RequestKind::ListOffsets(req) => Reply::Respond(ResponseKind::ListOffsets(
                list_offsets::handle(cluster, ctx, req),
            )),
            other => mismatched(ctx, &other),
        },
        complete: never_waits,
        error_response: |request, version, code| match request {
            RequestKind::ListOffsets(req) => Some(ResponseKind::ListOffsets(
                list_offsets::error_response(req, version, code),
            )),
            _ => None,
        },
        topic_ids: no_topic_ids,
        partitions: |request, _, _| match request {
            RequestKind::ListOffsets(req) => list_offsets::partitions(req),
            _ => Vec::new(),
        },
        named_ids: no_named_ids,
    },
    ApiSpec {
        key: ApiKey::Metadata,
        versions: range(0, 13),
        handle: |cluster, ctx, request, prepared| match request {
            RequestKind::Metadata(req) => {
                let plan = match prepared {
                    Prepared::Metadata(plan) => plan,
                    _ => metadata::plan(&req, cluster.config()),
                };
                Reply::Finish(Unfinished::Metadata(metadata::apply(
                    cluster, ctx, req, plan,
                )))
            }
            other => mismatched(ctx, &other),
        },
        complete: never_waits,
        error_response: |request, version, code| match request {
            RequestKind::Metadata(req) => Some(ResponseKind::Metadata(metadata::error_response(
                req, version, code,
            ))),
            _ => None,
        },
        topic_ids: |request, _| match request {
            RequestKind::Metadata(req) => req.topics.iter().flatten().map(|t| t.topic_id).collect(),
            _ => Vec::new(),
        },
        partitions: |request, _, resolve| match request {
            RequestKind::Metadata(req) => metadata::partitions(resolve, req),
            _ => Vec::new(),
        },
        named_ids: no_named_ids,
    },
    ApiSpec {
        key: ApiKey::OffsetCommit,
        versions: range(2, 9),
        handle: |cluster, ctx, request, _| match request {
            RequestKind::OffsetCommit(req) => Reply::Respond(ResponseKind::OffsetCommit(
                offset_commit::handle(cluster, ctx, req),
            )),
            other => mismatched(ctx, &other),
        },
        complete: never_waits,
        error_response: |request, version, code| match request {
            RequestKind::OffsetCommit(req) => Some(ResponseKind::OffsetCommit(
                offset_commit::error_response(req, version, code),
            )),
            _ => None,
        },
        topic_ids: no_topic_ids,
        partitions: |request, _, _| match request {
            RequestKind::OffsetCommit(req) => offset_commit::partitions(req),
            _ => Vec::new(),
        },
        named_ids: |request, _| match request {
            RequestKind::OffsetCommit(req) => named_ids::offset_commit(req),
            _ => NamedIds::default(),
        },
    },
    ApiSpec {
        key: ApiKey::OffsetFetch,
        versions: range(1, 9),
        handle: |cluster, ctx, request, _| match request {
            RequestKind::OffsetFetch(req) => Reply::Respond(ResponseKind::OffsetFetch(
                offset_fetch::handle(cluster, ctx, req),
            )),
            other => mismatched(ctx, &other),
        },
        complete: never_waits,
        error_response: |request, version, code| match request {
            RequestKind::OffsetFetch(req) => Some(ResponseKind::OffsetFetch(
                offset_fetch::error_response(req, version, code),
            )),
            _ => None,
        },
        topic_ids: no_topic_ids,
        partitions: |request, version, _| match request {
            RequestKind::OffsetFetch(req) => offset_fetch::partitions(req, version),
            _ => Vec::new(),
        },
        named_ids: |request, version| match request {
            RequestKind::OffsetFetch(req) => named_ids::offset_fetch(req, version),
            _ => NamedIds::default(),
        },
    },
    ApiSpec {
        key: ApiKey::FindCoordinator,
        versions: range(0, 6),
        handle: |cluster, ctx, request, _| match request {
            RequestKind::FindCoordinator(req) => Reply::Respond(ResponseKind::FindCoordinator(
                find_coordinator::handle(cluster, ctx, req),
            )),
            other => mismatched(ctx, &other),
        },
        complete: never_waits,
        error_response: |request, version, code| match request {
            RequestKind::FindCoordinator(req) => Some(ResponseKind::FindCoordinator(
                find_coordinator::error_response(req, version, code),
            )),
            _ => None,
        },
        topic_ids: no_topic_ids,
        partitions: no_partitions,
        named_ids: |request, version| match request {
            RequestKind::FindCoordinator(req) => named_ids::find_coordinator(req, version),
            _ => NamedIds::default(),
        },
    },
    ApiSpec {
        key: ApiKey::JoinGroup,
        versions: range(0, 9),
        handle: |cluster, ctx, request, _| match request {
            RequestKind::JoinGroup(req) => join_group::handle(cluster, ctx, req),
            other => mismatched(ctx, &other),
        },
        complete: join_group::complete,
        error_response: |request, version, code| match request {
            RequestKind::JoinGroup(req) => Some(ResponseKind::JoinGroup(
                join_group::error_response(req, version, code),
            )),
            _ => None,
        },
        topic_ids: no_topic_ids,
        partitions: no_partitions,
        named_ids: |request, _| match request {
            RequestKind::JoinGroup(req) => named_ids::join_group(req),
            _ => NamedIds::default(),
        },
    },
    ApiSpec {
        key: ApiKey::Heartbeat,
        versions: range(0, 4),
        handle: |cluster, ctx, request, _| match request {
            RequestKind::Heartbeat(req) => Reply::Respond(ResponseKind::Heartbeat(
                heartbeat::handle(cluster, ctx, req),
            )),
            other => mismatched(ctx, &other),
        },
        complete: never_waits,
        error_response: |request, version, code| match request {
            RequestKind::Heartbeat(req) => Some(ResponseKind::Heartbeat(
                heartbeat::error_response(req, version, code),
            )),
            _ => None,
        },
        topic_ids: no_topic_ids,
        partitions: no_partitions,
        named_ids: |request, _| match request {
            RequestKind::Heartbeat(req) => named_ids::heartbeat(req),
            _ => NamedIds::default(),
        },
    },
    ApiSpec {
        key: ApiKey::LeaveGroup,
        versions: range(0, 5),
        handle: |cluster, ctx, request, _| match request {
            RequestKind::LeaveGroup(req) => Reply::Respond(ResponseKind::LeaveGroup(
                leave_group::handle(cluster, ctx, req),
            )),
            other => mismatched(ctx, &other),
        },
        complete: never_waits,
        error_response: |request, version, code| match request {
            RequestKind::LeaveGroup(req) => Some(ResponseKind::LeaveGroup(
                leave_group::error_response(req, version, code),
            )),
            _ => None,
        },
        topic_ids: no_topic_ids,
        partitions: no_partitions,
        named_ids: |request, _| match request {
            RequestKind::LeaveGroup(req) => named_ids::leave_group(req),
            _ => NamedIds::default(),
        },
    },
    ApiSpec {
        key: ApiKey::SyncGroup,
        versions: range(0, 5),
        handle: |cluster, ctx, request, _| match request {
            RequestKind::SyncGroup(req) => sync_group::handle(cluster, ctx, req),
            other => mismatched(ctx, &other),
        },
        complete: sync_group::complete,
        error_response: |request, version, code| match request {
            RequestKind::SyncGroup(req) => Some(ResponseKind::SyncGroup(
                sync_group::error_response(req, version, code),
            )),
            _ => None,
        },
        topic_ids: no_topic_ids,
        partitions: no_partitions,
        named_ids: |request, _| match request {
            RequestKind::SyncGroup(req) => named_ids::sync_group(req),
            _ => NamedIds::default(),
        },
    },
    ApiSpec {
        key: ApiKey::DescribeGroups,
        versions: range(0, 6),
        handle: |cluster, ctx, request, _| match request {
            RequestKind::DescribeGroups(req) => Reply::Respond(ResponseKind::DescribeGroups(
                describe_groups::handle(cluster, ctx, req),
            )),
            other => mismatched(ctx, &other),
        },
        complete: never_waits,
        error_response: |request, version, code| match request {
            RequestKind::DescribeGroups(req) => Some(ResponseKind::DescribeGroups(
                describe_groups::error_response(req, version, code),
            )),
            _ => None,
        },
        topic_ids: no_topic_ids,
        partitions: no_partitions,
        named_ids: |request, _| match request {
            RequestKind::DescribeGroups(req) => named_ids::describe_groups(req),
            _ => NamedIds::default(),
        },
    },
    ApiSpec {
        key: ApiKey::ListGroups,
        versions: range(0, 5),
        handle: |cluster, ctx, request, _| match request {
            RequestKind::ListGroups(req) => Reply::Respond(ResponseKind::ListGroups(
                list_groups::handle(cluster, ctx, req),
            )),
            other => mismatched(ctx, &other),
        },
        complete: never_waits,
        error_response: |request, version, code| match request {
            RequestKind::ListGroups(req) => Some(ResponseKind::ListGroups(
                list_groups::error_response(req, version, code),
            )),
            _ => None,
        },
        topic_ids: no_topic_ids,
        partitions: no_partitions,
        named_ids: no_named_ids,
    },
    ApiSpec {
        key: ApiKey::SaslHandshake,
        // v0 is advertised because librdkafka before 2.10 requires it to see SASL at all
        // (it then uses v1); a v0 handshake itself is refused (security::Session).
        versions: range(0, 1),
        handle: |_, ctx, request, _| match request {
            RequestKind::SaslHandshake(_) => Reply::Respond(ResponseKind::SaslHandshake(
                sasl::handshake_response(ErrorCode::IllegalSaslState),
            )),
            other => mismatched(ctx, &other),
        },
        complete: never_waits,
        error_response: |request, _, code| match request {
            RequestKind::SaslHandshake(_) => {
                Some(ResponseKind::SaslHandshake(sasl::handshake_response(code)))
            }
            _ => None,
        },
        topic_ids: no_topic_ids,
        partitions: no_partitions,
        named_ids: no_named_ids,
    },
    ApiSpec {
        key: ApiKey::ApiVersions,
        versions: range(0, 4),
        handle: |cluster, ctx, request, _| match request {
            RequestKind::ApiVersions(req) => Reply::Respond(ResponseKind::ApiVersions(
                api_versions::handle(cluster, ctx, req),
            )),
            other => mismatched(ctx, &other),
        },
        complete: never_waits,
        error_response: |request, version, code| match request {
            RequestKind::ApiVersions(_) => Some(ResponseKind::ApiVersions(
                api_versions::error_response(version, code),
            )),
            _ => None,
        },
        topic_ids: no_topic_ids,
        partitions: no_partitions,
        named_ids: no_named_ids,
    },
    ApiSpec {
        key: ApiKey::CreateTopics,
        versions: range(2, 7),
        handle: |cluster, ctx, request, _| match request {
            RequestKind::CreateTopics(req) => Reply::Respond(ResponseKind::CreateTopics(
                create_topics::handle(cluster, ctx, req),
            )),
            other => mismatched(ctx, &other),
        },
        complete: never_waits,
        error_response: |request, version, code| match request {
            RequestKind::CreateTopics(req) => Some(ResponseKind::CreateTopics(
                create_topics::error_response(req, version, code),
            )),
            _ => None,
        },
        topic_ids: no_topic_ids,
        partitions: |request, _, _| match request {
            RequestKind::CreateTopics(req) => create_topics::partitions(req),
            _ => Vec::new(),
        },
        named_ids: no_named_ids,
    },
    ApiSpec {
        key: ApiKey::DeleteTopics,
        versions: range(1, 6),
        handle: |cluster, ctx, request, _| match request {
            RequestKind::DeleteTopics(req) => Reply::Respond(ResponseKind::DeleteTopics(
                delete_topics::handle(cluster, ctx, req),
            )),
            other => mismatched(ctx, &other),
        },
        complete: never_waits,
        error_response: |request, version, code| match request {
            RequestKind::DeleteTopics(req) => Some(ResponseKind::DeleteTopics(
                delete_topics::error_response(req, version, code),
            )),
            _ => None,
        },
        topic_ids: |request, version| match request {
            RequestKind::DeleteTopics(req) if version >= 6 => {
                req.topics.iter().map(|t| t.topic_id).collect()
            }
            _ => Vec::new(),
        },
        partitions: |request, version, resolve| match request {
            RequestKind::DeleteTopics(req) => delete_topics::partitions(resolve, req, version),
            _ => Vec::new(),
        },
        named_ids: no_named_ids,
    },
    ApiSpec {
        key: ApiKey::DeleteRecords,
        versions: range(0, 2),
        handle: |cluster, ctx, request, _| match request {
            RequestKind::DeleteRecords(req) => Reply::Respond(ResponseKind::DeleteRecords(
                delete_records::handle(cluster, ctx, req),
            )),
            other => mismatched(ctx, &other),
        },
        complete: never_waits,
        error_response: |request, version, code| match request {
            RequestKind::DeleteRecords(req) => Some(ResponseKind::DeleteRecords(
                delete_records::error_response(req, version, code),
            )),
            _ => None,
        },
        topic_ids: no_topic_ids,
        partitions: |request, _, _| match request {
            RequestKind::DeleteRecords(req) => delete_records::partitions(req),
            _ => Vec::new(),
        },
        named_ids: no_named_ids,
    },
    ApiSpec {
        key: ApiKey::InitProducerId,
        versions: range(0, 5),
        handle: |cluster, ctx, request, _| match request {
            RequestKind::InitProducerId(req) => Reply::Respond(ResponseKind::InitProducerId(
                init_producer_id::handle(cluster, ctx, req),
            )),
            other => mismatched(ctx, &other),
        },
        complete: never_waits,
        error_response: |request, version, code| match request {
            RequestKind::InitProducerId(req) => Some(ResponseKind::InitProducerId(
                init_producer_id::error_response(req, version, code),
            )),
            _ => None,
        },
        topic_ids: no_topic_ids,
        partitions: no_partitions,
        named_ids: |request, _| match request {
            RequestKind::InitProducerId(req) => named_ids::init_producer_id(req),
            _ => NamedIds::default(),
        },
    },
    ApiSpec {
        key: ApiKey::OffsetForLeaderEpoch,
        versions: range(2, 4),
        handle: |cluster, ctx, request, _| match request {
            RequestKind::OffsetForLeaderEpoch(req) => {
                Reply::Respond(ResponseKind::OffsetForLeaderEpoch(
                    offset_for_leader_epoch::handle(cluster, ctx, req),
                ))
            }
            other => mismatched(ctx, &other),
        },
        complete: never_waits,
        error_response: |request, version, code| match request {
            RequestKind::OffsetForLeaderEpoch(req) => Some(ResponseKind::OffsetForLeaderEpoch(
                offset_for_leader_epoch::error_response(req, version, code),
            )),
            _ => None,
        },
        topic_ids: no_topic_ids,
        partitions: |request, _, _| match request {
            RequestKind::OffsetForLeaderEpoch(req) => offset_for_leader_epoch::partitions(req),
            _ => Vec::new(),
        },
        named_ids: no_named_ids,
    },
    ApiSpec {
        key: ApiKey::AddPartitionsToTxn,
        versions: range(0, 5),
        handle: |cluster, ctx, request, _| match request {
            RequestKind::AddPartitionsToTxn(req) => Reply::Respond(
                ResponseKind::AddPartitionsToTxn(add_partitions_to_txn::handle(cluster, ctx, req)),
            ),
            other => mismatched(ctx, &other),
        },
        complete: never_waits,
        error_response: |request, version, code| match request {
            RequestKind::AddPartitionsToTxn(req) => Some(ResponseKind::AddPartitionsToTxn(
                add_partitions_to_txn::error_response(req, version, code),
            )),
            _ => None,
        },
        topic_ids: no_topic_ids,
        partitions: |request, version, _| match request {
            RequestKind::AddPartitionsToTxn(req) => add_partitions_to_txn::partitions(req, version),
            _ => Vec::new(),
        },
        named_ids: |request, version| match request {
            RequestKind::AddPartitionsToTxn(req) => named_ids::add_partitions_to_txn(req, version),
            _ => NamedIds::default(),
        },
    },
    ApiSpec {
        key: ApiKey::AddOffsetsToTxn,
        versions: range(0, 4),
        handle: |cluster, ctx, request, _| match request {
            RequestKind::AddOffsetsToTxn(req) => Reply::Respond(ResponseKind::AddOffsetsToTxn(
                add_offsets_to_txn::handle(cluster, ctx, req),
            )),
            other => mismatched(ctx, &other),
        },
        complete: never_waits,
        error_response: |request, version, code| match request {
            RequestKind::AddOffsetsToTxn(req) => Some(ResponseKind::AddOffsetsToTxn(
                add_offsets_to_txn::error_response(req, version, code),
            )),
            _ => None,
        },
        topic_ids: no_topic_ids,
        partitions: no_partitions,
        named_ids: |request, _| match request {
            RequestKind::AddOffsetsToTxn(req) => named_ids::add_offsets_to_txn(req),
            _ => NamedIds::default(),
        },
    },
    ApiSpec {
        key: ApiKey::EndTxn,
        versions: range(0, 5),
        handle: |cluster, ctx, request, _| match request {
            RequestKind::EndTxn(req) => {
                Reply::Respond(ResponseKind::EndTxn(end_txn::handle(cluster, ctx, req)))
            }
            other => mismatched(ctx, &other),
        },
        complete: never_waits,
        error_response: |request, version, code| match request {
            RequestKind::EndTxn(req) => Some(ResponseKind::EndTxn(end_txn::error_response(
                req, version, code,
            ))),
            _ => None,
        },
        topic_ids: no_topic_ids,
        partitions: no_partitions,
        named_ids: |request, _| match request {
            RequestKind::EndTxn(req) => named_ids::end_txn(req),
            _ => NamedIds::default(),
        },
    },
    ApiSpec {
        key: ApiKey::TxnOffsetCommit,
        versions: range(0, 5),
        handle: |cluster, ctx, request, _| match request {
            RequestKind::TxnOffsetCommit(req) => Reply::Respond(ResponseKind::TxnOffsetCommit(
                txn_offset_commit::handle(cluster, ctx, req),
            )),
            other => mismatched(ctx, &other),
        },
        complete: never_waits,
        error_response: |request, version, code| match request {
            RequestKind::TxnOffsetCommit(req) => Some(ResponseKind::TxnOffsetCommit(
                txn_offset_commit::error_response(req, version, code),
            )),
            _ => None,
        },
        topic_ids: no_topic_ids,
        partitions: |request, _, _| match request {
            RequestKind::TxnOffsetCommit(req) => txn_offset_commit::partitions(req),
            _ => Vec::new(),
        },
        named_ids: |request, _| match request {
            RequestKind::TxnOffsetCommit(req) => named_ids::txn_offset_commit(req),
            _ => NamedIds::default(),
        },
    },
    ApiSpec {
        key: ApiKey::DescribeAcls,
        versions: range(1, 3),
        handle: |cluster, ctx, request, _| match request {
            RequestKind::DescribeAcls(req) => Reply::Respond(ResponseKind::DescribeAcls(
                describe_acls::handle(cluster, ctx, req),
            )),
            other => mismatched(ctx, &other),
        },
        complete: never_waits,
        error_response: |request, version, code| match request {
            RequestKind::DescribeAcls(req) => Some(ResponseKind::DescribeAcls(
                describe_acls::error_response(req, version, code),
            )),
            _ => None,
        },
        topic_ids: no_topic_ids,
        partitions: no_partitions,
        named_ids: no_named_ids,
    },
    ApiSpec {
        key: ApiKey::CreateAcls,
        versions: range(1, 3),
        handle: |cluster, ctx, request, _| match request {
            RequestKind::CreateAcls(req) => Reply::Respond(ResponseKind::CreateAcls(
                create_acls::handle(cluster, ctx, req),
            )),
            other => mismatched(ctx, &other),
        },
        complete: never_waits,
        error_response: |request, version, code| match request {
            RequestKind::CreateAcls(req) => Some(ResponseKind::CreateAcls(
                create_acls::error_response(req, version, code),
            )),
            _ => None,
        },
        topic_ids: no_topic_ids,
        partitions: no_partitions,
        named_ids: no_named_ids,
    },
    ApiSpec {
        key: ApiKey::DeleteAcls,
        versions: range(1, 3),
        handle: |cluster, ctx, request, _| match request {
            RequestKind::DeleteAcls(req) => Reply::Respond(ResponseKind::DeleteAcls(
                delete_acls::handle(cluster, ctx, req),
            )),
            other => mismatched(ctx, &other),
        },
        complete: never_waits,
        error_response: |request, version, code| match request {
            RequestKind::DeleteAcls(req) => Some(ResponseKind::DeleteAcls(
                delete_acls::error_response(req, version, code),
            )),
            _ => None,
        },
        topic_ids: no_topic_ids,
        partitions: no_partitions,
        named_ids: no_named_ids,
    },
    ApiSpec {
        key: ApiKey::DescribeConfigs,
        versions: range(1, 4),
        handle: |cluster, ctx, request, _| match request {
            RequestKind::DescribeConfigs(req) => Reply::Respond(ResponseKind::DescribeConfigs(
                describe_configs::handle(cluster, ctx, req),
            )),
            other => mismatched(ctx, &other),
        },
        complete: never_waits,
        error_response: |request, version, code| match request {
            RequestKind::DescribeConfigs(req) => Some(ResponseKind::DescribeConfigs(
                describe_configs::error_response(req, version, code),
            )),
            _ => None,
        },
        topic_ids: no_topic_ids,
        partitions: |request, _, _| match request {
            RequestKind::DescribeConfigs(req) => describe_configs::partitions(req),
            _ => Vec::new(),
        },
        named_ids: no_named_ids,
    },
    ApiSpec {
        key: ApiKey::AlterConfigs,
        versions: range(0, 2),
        handle: |cluster, ctx, request, _| match request {
            RequestKind::AlterConfigs(req) => Reply::Respond(ResponseKind::AlterConfigs(
                alter_configs::handle(cluster, ctx, req),
            )),
            other => mismatched(ctx, &other),
        },
        complete: never_waits,
        error_response: |request, version, code| match request {
            RequestKind::AlterConfigs(req) => Some(ResponseKind::AlterConfigs(
                alter_configs::error_response(req, version, code),
            )),
            _ => None,
        },
        topic_ids: no_topic_ids,
        partitions: |request, _, _| match request {
            RequestKind::AlterConfigs(req) => alter_configs::partitions(req),
            _ => Vec::new(),
        },
        named_ids: no_named_ids,
    },
    ApiSpec {
        key: ApiKey::DescribeLogDirs,
        versions: range(1, 4),
        handle: |cluster, ctx, request, _| match request {
            RequestKind::DescribeLogDirs(req) => Reply::Respond(ResponseKind::DescribeLogDirs(
                describe_log_dirs::handle(cluster, ctx, req),
            )),
            other => mismatched(ctx, &other),
        },
        complete: never_waits,
        error_response: |request, version, code| match request {
            RequestKind::DescribeLogDirs(req) => Some(ResponseKind::DescribeLogDirs(
                describe_log_dirs::error_response(req, version, code),
            )),
            _ => None,
        },
        topic_ids: no_topic_ids,
        partitions: no_partitions,
        named_ids: no_named_ids,
    },
    ApiSpec {
        key: ApiKey::SaslAuthenticate,
        versions: range(0, 2),
        handle: |_, ctx, request, _| match request {
            RequestKind::SaslAuthenticate(_) => Reply::Respond(ResponseKind::SaslAuthenticate(
                sasl::authenticate_response(ErrorCode::IllegalSaslState),
            )),
            other => mismatched(ctx, &other),
        },
        complete: never_waits,
        error_response: |request, _, code| match request {
            RequestKind::SaslAuthenticate(_) => Some(ResponseKind::SaslAuthenticate(
                sasl::authenticate_response(code),
            )),
            _ => None,
        },
        topic_ids: no_topic_ids,
        partitions: no_partitions,
        named_ids: no_named_ids,
    },
    ApiSpec {
        key: ApiKey::CreatePartitions,
        versions: range(0, 3),
        handle: |cluster, ctx, request, _| match request {
            RequestKind::CreatePartitions(req) => Reply::Respond(ResponseKind::CreatePartitions(
                create_partitions::handle(cluster, ctx, req),
            )),
            other => mismatched(ctx, &other),
        },
        complete: never_waits,
        error_response: |request, version, code| match request {
            RequestKind::CreatePartitions(req) => Some(ResponseKind::CreatePartitions(
                create_partitions::error_response(req, version, code),
            )),
            _ => None,
        },
        topic_ids: no_topic_ids,
        partitions: |request, _, _| match request {
            RequestKind::CreatePartitions(req) => create_partitions::partitions(req),
            _ => Vec::new(),
        },
        named_ids: no_named_ids,
    },
    ApiSpec {
        key: ApiKey::DeleteGroups,
        versions: range(0, 2),
        handle: |cluster, ctx, request, _| match request {
            RequestKind::DeleteGroups(req) => Reply::Respond(ResponseKind::DeleteGroups(
                delete_groups::handle(cluster, ctx, req),
            )),
            other => mismatched(ctx, &other),
        },
        complete: never_waits,
        error_response: |request, version, code| match request {
            RequestKind::DeleteGroups(req) => Some(ResponseKind::DeleteGroups(
                delete_groups::error_response(req, version, code),
            )),
            _ => None,
        },
        topic_ids: no_topic_ids,
        partitions: no_partitions,
        named_ids: |request, _| match request {
            RequestKind::DeleteGroups(req) => named_ids::delete_groups(req),
            _ => NamedIds::default(),
        },
    },
    ApiSpec {
        key: ApiKey::ElectLeaders,
        versions: range(0, 2),
        handle: |cluster, ctx, request, _| match request {
            RequestKind::ElectLeaders(req) => Reply::Respond(ResponseKind::ElectLeaders(
                elect_leaders::handle(cluster, ctx, req),
            )),
            other => mismatched(ctx, &other),
        },
        complete: never_waits,
        error_response: |request, version, code| match request {
            RequestKind::ElectLeaders(req) => Some(ResponseKind::ElectLeaders(
                elect_leaders::error_response(req, version, code),
            )),
            _ => None,
        },
        topic_ids: no_topic_ids,
        partitions: |request, _, _| match request {
            RequestKind::ElectLeaders(req) => elect_leaders::partitions(req),
            _ => Vec::new(),
        },
        named_ids: no_named_ids,
    },
    ApiSpec {
        key: ApiKey::IncrementalAlterConfigs,
        versions: range(0, 1),
        handle: |cluster, ctx, request, _| match request {
            RequestKind::IncrementalAlterConfigs(req) => {
                Reply::Respond(ResponseKind::IncrementalAlterConfigs(
                    incremental_alter_configs::handle(cluster, ctx, req),
                ))
            }
            other => mismatched(ctx, &other),
        },
        complete: never_waits,
        error_response: |request, version, code| match request {
            RequestKind::IncrementalAlterConfigs(req) => {
                Some(ResponseKind::IncrementalAlterConfigs(
                    incremental_alter_configs::error_response(req, version, code),
                ))
            }
            _ => None,
        },
        topic_ids: no_topic_ids,
        partitions: |request, _, _| match request {
            RequestKind::IncrementalAlterConfigs(req) => incremental_alter_configs::partitions(req),
            _ => Vec::new(),
        },
        named_ids: no_named_ids,
    },
    ApiSpec {
        key: ApiKey::ListPartitionReassignments,
        versions: range(0, 0),
        handle: |cluster, ctx, request, _| match request {
            RequestKind::ListPartitionReassignments(req) => {
                Reply::Respond(ResponseKind::ListPartitionReassignments(
                    list_partition_reassignments::handle(cluster, ctx, req),
                ))
            }
            other => mismatched(ctx, &other),
        },
        complete: never_waits,
        error_response: |request, version, code| match request {
            RequestKind::ListPartitionReassignments(req) => {
                Some(ResponseKind::ListPartitionReassignments(
                    list_partition_reassignments::error_response(req, version, code),
                ))
            }
            _ => None,
        },
        topic_ids: no_topic_ids,
        partitions: no_partitions,
        named_ids: no_named_ids,
    },
    ApiSpec {
        key: ApiKey::OffsetDelete,
        versions: range(0, 0),
        handle: |cluster, ctx, request, _| match request {
            RequestKind::OffsetDelete(req) => Reply::Respond(ResponseKind::OffsetDelete(
                offset_delete::handle(cluster, ctx, req),
            )),
            other => mismatched(ctx, &other),
        },
        complete: never_waits,
        error_response: |request, version, code| match request {
            RequestKind::OffsetDelete(req) => Some(ResponseKind::OffsetDelete(
                offset_delete::error_response(req, version, code),
            )),
            _ => None,
        },
        topic_ids: no_topic_ids,
        partitions: |request, _, _| match request {
            RequestKind::OffsetDelete(req) => offset_delete::partitions(req),
            _ => Vec::new(),
        },
        named_ids: |request, _| match request {
            RequestKind::OffsetDelete(req) => named_ids::offset_delete(req),
            _ => NamedIds::default(),
        },
    },
    ApiSpec {
        key: ApiKey::DescribeClientQuotas,
        versions: range(0, 1),
        handle: |cluster, ctx, request, _| match request {
            RequestKind::DescribeClientQuotas(req) => {
                Reply::Respond(ResponseKind::DescribeClientQuotas(
                    describe_client_quotas::handle(cluster, ctx, req),
                ))
            }
            other => mismatched(ctx, &other),
        },
        complete: never_waits,
        error_response: |request, version, code| match request {
            RequestKind::DescribeClientQuotas(req) => Some(ResponseKind::DescribeClientQuotas(
                describe_client_quotas::error_response(req, version, code),
            )),
            _ => None,
        },
        topic_ids: no_topic_ids,
        partitions: no_partitions,
        named_ids: no_named_ids,
    },
    ApiSpec {
        key: ApiKey::DescribeUserScramCredentials,
        versions: range(0, 0),
        handle: |cluster, ctx, request, _| match request {
            RequestKind::DescribeUserScramCredentials(req) => {
                Reply::Respond(ResponseKind::DescribeUserScramCredentials(
                    describe_user_scram_credentials::handle(cluster, ctx, req),
                ))
            }
            other => mismatched(ctx, &other),
        },
        complete: never_waits,
        error_response: |request, version, code| match request {
            RequestKind::DescribeUserScramCredentials(req) => {
                Some(ResponseKind::DescribeUserScramCredentials(
                    describe_user_scram_credentials::error_response(req, version, code),
                ))
            }
            _ => None,
        },
        topic_ids: no_topic_ids,
        partitions: no_partitions,
        named_ids: no_named_ids,
    },
    ApiSpec {
        key: ApiKey::DescribeCluster,
        versions: range(0, 2),
        handle: |cluster, ctx, request, _| match request {
            RequestKind::DescribeCluster(req) => Reply::Respond(ResponseKind::DescribeCluster(
                describe_cluster::handle(cluster, ctx, req),
            )),
            other => mismatched(ctx, &other),
        },
        complete: never_waits,
        error_response: |request, version, code| match request {
            RequestKind::DescribeCluster(req) => Some(ResponseKind::DescribeCluster(
                describe_cluster::error_response(req, version, code),
            )),
            _ => None,
        },
        topic_ids: no_topic_ids,
        partitions: no_partitions,
        named_ids: no_named_ids,
    },
    ApiSpec {
        key: ApiKey::DescribeProducers,
        versions: range(0, 0),
        handle: |cluster, ctx, request, _| match request {
            RequestKind::DescribeProducers(req) => Reply::Respond(ResponseKind::DescribeProducers(
                describe_producers::handle(cluster, ctx, req),
            )),
            other => mismatched(ctx, &other),
        },
        complete: never_waits,
        error_response: |request, version, code| match request {
            RequestKind::DescribeProducers(req) => Some(ResponseKind::DescribeProducers(
                describe_producers::error_response(req, version, code),
            )),
            _ => None,
        },
        topic_ids: no_topic_ids,
        partitions: |request, _, _| match request {
            RequestKind::DescribeProducers(req) => describe_producers::partitions(req),
            _ => Vec::new(),
        },
        named_ids: no_named_ids,
    },
    ApiSpec {
        key: ApiKey::DescribeTransactions,
        versions: range(0, 0),
        handle: |cluster, ctx, request, _| match request {
            RequestKind::DescribeTransactions(req) => {
                Reply::Respond(ResponseKind::DescribeTransactions(
                    describe_transactions::handle(cluster, ctx, req),
                ))
            }
            other => mismatched(ctx, &other),
        },
        complete: never_waits,
        error_response: |request, version, code| match request {
            RequestKind::DescribeTransactions(req) => Some(ResponseKind::DescribeTransactions(
                describe_transactions::error_response(req, version, code),
            )),
            _ => None,
        },
        topic_ids: no_topic_ids,
        partitions: no_partitions,
        named_ids: |request, _| match request {
            RequestKind::DescribeTransactions(req) => named_ids::describe_transactions(req),
            _ => NamedIds::default(),
        },
    },
    ApiSpec {
        key: ApiKey::ListTransactions,
        versions: range(0, 1),
        handle: |cluster, ctx, request, _| match request {
            RequestKind::ListTransactions(req) => Reply::Respond(ResponseKind::ListTransactions(
                list_transactions::handle(cluster, ctx, req),
            )),
            other => mismatched(ctx, &other),
        },
        complete: never_waits,
        error_response: |request, version, code| match request {
            RequestKind::ListTransactions(req) => Some(ResponseKind::ListTransactions(
                list_transactions::error_response(req, version, code),
            )),
            _ => None,
        },
        topic_ids: no_topic_ids,
        partitions: no_partitions,
        named_ids: no_named_ids,
    },
    ApiSpec {
        key: ApiKey::ConsumerGroupHeartbeat,
        versions: range(0, 1),
        handle: |cluster, ctx, request, _| match request {
            RequestKind::ConsumerGroupHeartbeat(req) => {
                Reply::Respond(ResponseKind::ConsumerGroupHeartbeat(
                    consumer_group_heartbeat::handle(cluster, ctx, req),
                ))
            }
            other => mismatched(ctx, &other),
        },
        complete: never_waits,
        error_response: |request, version, code| match request {
            RequestKind::ConsumerGroupHeartbeat(req) => Some(ResponseKind::ConsumerGroupHeartbeat(
                consumer_group_heartbeat::error_response(req, version, code),
            )),
            _ => None,
        },
        topic_ids: no_topic_ids,
        partitions: no_partitions,
        named_ids: |request, _| match request {
            RequestKind::ConsumerGroupHeartbeat(req) => named_ids::consumer_group_heartbeat(req),
            _ => NamedIds::default(),
        },
    },
    ApiSpec {
        key: ApiKey::ConsumerGroupDescribe,
        versions: range(0, 1),
        handle: |cluster, ctx, request, _| match request {
            RequestKind::ConsumerGroupDescribe(req) => {
                Reply::Respond(ResponseKind::ConsumerGroupDescribe(
                    consumer_group_describe::handle(cluster, ctx, req),
                ))
            }
            other => mismatched(ctx, &other),
        },
        complete: never_waits,
        error_response: |request, version, code| match request {
            RequestKind::ConsumerGroupDescribe(req) => Some(ResponseKind::ConsumerGroupDescribe(
                consumer_group_describe::error_response(req, version, code),
            )),
            _ => None,
        },
        topic_ids: no_topic_ids,
        partitions: no_partitions,
        named_ids: |request, _| match request {
            RequestKind::ConsumerGroupDescribe(req) => named_ids::consumer_group_describe(req),
            _ => NamedIds::default(),
        },
    },
];

/// [`ApiSpec::complete`] of APIs that never park.
fn never_waits(_: &mut ClusterState, parked: Parked, _: Wake) -> Completion {
    mismatched_parked(parked)
}

/// [`ApiSpec::topic_ids`] of APIs that name topics by name only.
fn no_topic_ids(_: &RequestKind, _: i16) -> Vec<Uuid> {
    Vec::new()
}

/// [`ApiSpec::partitions`] of APIs that name no topic.
fn no_partitions(_: &RequestKind, _: i16, _: ResolveTopicId<'_>) -> Vec<(Arc<str>, i32)> {
    Vec::new()
}

/// [`ApiSpec::named_ids`] of APIs that name no group or transactional id.
fn no_named_ids(_: &RequestKind, _: i16) -> NamedIds {
    NamedIds::default()
}

/// The answer to a body that is not of the API its entry serves: a bug in the table, and a
/// closed connection is a clearer symptom than a hang.
fn mismatched(ctx: &RequestContext, request: &RequestKind) -> Reply {
    Reply::Close {
        reason: format!(
            "no {:?} handler for {:?}",
            ctx.api_key,
            std::mem::discriminant(request)
        ),
    }
}

/// [`mismatched`], for a parked request handed to the wrong API (or to one that never
/// parks).
pub(crate) fn mismatched_parked(parked: Parked) -> Completion {
    Completion::Done(mismatched(&parked.context, &parked.request))
}

/// The entry for `api`, if the harness serves it.
pub fn spec(api: ApiKey) -> Option<&'static ApiSpec> {
    APIS.iter().find(|spec| spec.key == api)
}

/// The supported range for `api`, if the harness implements it (whatever the caps).
pub fn supported_range(api: ApiKey) -> Option<VersionRange> {
    spec(api).map(|spec| spec.versions)
}

/// The versions of `api` a cluster with `config` serves: its entry's range within the
/// cluster's caps (the release it poses as, per-API maxima); `None` if it serves none.
pub fn served_range(config: &crate::cluster::ClusterConfig, api: ApiKey) -> Option<VersionRange> {
    spec(api).and_then(|spec| config.api_versions.apply(api, spec.versions))
}

/// Every operation on a topic, as an authorized-operations bit set (READ, WRITE, CREATE,
/// DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS): there are no ACLs here.
pub(crate) const TOPIC_OPERATIONS: i32 = bits(&[3, 4, 5, 6, 7, 8, 10, 11]);
/// Every operation on the cluster (CREATE, ALTER, DESCRIBE, CLUSTER_ACTION,
/// DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE).
pub(crate) const CLUSTER_OPERATIONS: i32 = bits(&[5, 7, 8, 9, 10, 11, 12]);

const fn bits(operations: &[i32]) -> i32 {
    let mut out = 0;
    let mut i = 0;
    while i < operations.len() {
        out |= 1 << operations[i];
        i += 1;
    }
    out
}

/// A protocol string.
pub(crate) fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// A protocol topic name.
pub(crate) fn topic_name(s: &str) -> TopicName {
    TopicName(text(s))
}

/// Runs the handler for `request`, doing all of its work here. A request that would wait
/// is answered [`Reply::Park`] and not parked (see [`park`]).
pub fn dispatch(cluster: &mut ClusterState, ctx: &RequestContext, request: RequestKind) -> Reply {
    match dispatch_prepared(cluster, ctx, request, Prepared::Nothing) {
        Reply::Finish(unfinished) => finish(unfinished),
        reply => reply,
    }
}

/// Runs the handler for `request` (of API `ctx.api_key`), with what was `prepared` for it
/// before the lock. The reply may be [`Reply::Finish`]: [`finish`] it once the lock is
/// released; or [`Reply::Park`]: [`park`] it.
pub fn dispatch_prepared(
    cluster: &mut ClusterState,
    ctx: &RequestContext,
    request: RequestKind,
    prepared: Prepared,
) -> Reply {
    if let Prepared::Failed(reason) = prepared {
        return Reply::Close { reason };
    }
    cluster.observe_time(ctx.now);
    let served = served_range(cluster.config(), ctx.api_key);
    match spec(ctx.api_key) {
        // The server only dispatches what the cluster serves: a handler never sees a
        // version past the caps.
        Some(spec)
            if served.is_some_and(|r| r.min <= ctx.api_version && ctx.api_version <= r.max) =>
        {
            (spec.handle)(cluster, ctx, request, prepared)
        }
        Some(_) => Reply::Close {
            reason: format!("{:?} v{} is not served", ctx.api_key, ctx.api_version),
        },
        None => mismatched(ctx, &request),
    }
}

/// Parks a request its handler answered [`Reply::Park`] for, as `ctx.waiter`, holding
/// `bytes` (the size of its frame). `None` once it waits: its answer will come out of
/// [`complete_ready`]. When the purgatory is full, it is answered at once, as at its
/// deadline.
pub fn park(
    cluster: &mut ClusterState,
    context: RequestContext,
    park: Park,
    bytes: usize,
) -> Option<Reply> {
    let waiter = context.waiter;
    let wait = Wait {
        keys: park.keys,
        deadline: park.deadline,
        bytes,
        request: Parked {
            request: park.request,
            context,
        },
    };
    let refused = cluster.park(waiter, wait).err()?;
    match look_again(cluster, refused.request, Wake::Due) {
        Completion::Done(reply) => Some(reply),
        Completion::Wait(_) => Some(waited_past_deadline()),
    }
}

/// Most requests [`complete_ready`] looks at per call, as a multiple of those waiting when
/// it starts: a handler that touched the keys of another that touched its own would
/// otherwise go on forever. What is left stays ready, and
/// [`ClusterState::poll_timeout`] says so.
const LOOKS_PER_WAITER: usize = 4;

/// Looks again at every waiting request that is ready (touched, resolved or due), through
/// its API's [`ApiSpec::complete`]: the ones that answer are returned with their waiter, the
/// others wait on with their keys and deadline.
pub fn complete_ready(cluster: &mut ClusterState) -> Vec<(WaiterId, Reply)> {
    let mut answers = Vec::new();
    if !cluster.waiting().has_ready() {
        return answers;
    }
    let mut looks = (cluster.waiting().len().saturating_mul(LOOKS_PER_WAITER)).max(16);
    while looks > 0 {
        looks -= 1;
        let Some(ready) = cluster.take_ready() else {
            break;
        };
        let due = ready.wake == Wake::Due;
        let Wait {
            keys,
            deadline,
            bytes,
            request: parked,
        } = ready.wait;
        match look_again(cluster, parked, ready.wake) {
            Completion::Done(reply) => answers.push((ready.waiter, reply)),
            Completion::Wait(_) if due => answers.push((ready.waiter, waited_past_deadline())),
            Completion::Wait(parked) => {
                let wait = Wait {
                    keys,
                    deadline,
                    bytes,
                    request: parked,
                };
                if let Err(refused) = cluster.park(ready.waiter, wait) {
                    let reply = match look_again(cluster, refused.request, Wake::Due) {
                        Completion::Done(reply) => reply,
                        Completion::Wait(_) => waited_past_deadline(),
                    };
                    answers.push((ready.waiter, reply));
                }
            }
        }
    }
    answers
}

fn look_again(cluster: &mut ClusterState, parked: Parked, wake: Wake) -> Completion {
    match spec(parked.context.api_key) {
        Some(spec) => (spec.complete)(cluster, parked, wake),
        None => mismatched_parked(parked),
    }
}

fn waited_past_deadline() -> Reply {
    Reply::Close {
        reason: "a request went on waiting past its deadline".into(),
    }
}

/// The response to `request` that reports `code` for the whole request (every topic and
/// partition it names, or its top-level error field), as a broker that fails the request
/// would send. `None` for APIs that have no way to report an error, and for a produce with
/// acks=0, which is never answered.
pub fn error_response(
    request: &RequestKind,
    api: ApiKey,
    version: i16,
    code: ErrorCode,
) -> Option<ResponseKind> {
    (spec(api)?.error_response)(request, version, code)
}

/// The (topic name, partition) pairs a request of `api` at `version` names, for
/// interceptors narrowed to a partition; whole-topic requests (Metadata, CreateTopics, ...)
/// give partition -1. Topic ids are resolved through `cluster`; unknown ids are left out.
pub fn partitions_of(
    cluster: &ClusterState,
    request: &RequestKind,
    api: ApiKey,
    version: i16,
) -> Vec<(Arc<str>, i32)> {
    let resolve = |id| cluster.topic_by_id(id).map(|t| Arc::from(t.name()));
    spec(api).map_or_else(Vec::new, |spec| {
        (spec.partitions)(request, version, &resolve)
    })
}

/// The distinct topic ids a request names, for [`ApiSpec::partitions`]: the server resolves
/// them under the cluster lock, then lists the partitions without it.
pub fn topic_ids_of(spec: &ApiSpec, request: &RequestKind, version: i16) -> Vec<Uuid> {
    let ids = (spec.topic_ids)(request, version);
    if ids.is_empty() {
        return ids;
    }
    let mut seen = std::collections::HashSet::new();
    ids.into_iter()
        .filter(|id| !id.is_nil() && seen.insert(*id))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::test_support::{api_ctx, assert_encodes, cluster_with};
    use super::*;

    fn default_request(api: ApiKey) -> RequestKind {
        use kafka_protocol::messages::*;
        match api {
            ApiKey::Produce => RequestKind::Produce(ProduceRequest::default().with_acks(1)),
            ApiKey::Fetch => RequestKind::Fetch(FetchRequest::default()),
            ApiKey::ListOffsets => RequestKind::ListOffsets(ListOffsetsRequest::default()),
            ApiKey::Metadata => RequestKind::Metadata(MetadataRequest::default()),
            ApiKey::FindCoordinator => {
                RequestKind::FindCoordinator(FindCoordinatorRequest::default())
            }
            ApiKey::OffsetCommit => RequestKind::OffsetCommit(OffsetCommitRequest::default()),
            ApiKey::OffsetFetch => RequestKind::OffsetFetch(OffsetFetchRequest::default()),
            ApiKey::JoinGroup => RequestKind::JoinGroup(JoinGroupRequest::default()),
            ApiKey::Heartbeat => RequestKind::Heartbeat(HeartbeatRequest::default()),
            ApiKey::LeaveGroup => RequestKind::LeaveGroup(LeaveGroupRequest::default()),
            ApiKey::SyncGroup => RequestKind::SyncGroup(SyncGroupRequest::default()),
            ApiKey::DescribeGroups => RequestKind::DescribeGroups(DescribeGroupsRequest::default()),
            ApiKey::ListGroups => RequestKind::ListGroups(ListGroupsRequest::default()),
            ApiKey::DeleteGroups => RequestKind::DeleteGroups(DeleteGroupsRequest::default()),
            ApiKey::OffsetDelete => RequestKind::OffsetDelete(OffsetDeleteRequest::default()),
            ApiKey::ApiVersions => RequestKind::ApiVersions(ApiVersionsRequest::default()),
            ApiKey::CreateTopics => RequestKind::CreateTopics(CreateTopicsRequest::default()),
            ApiKey::DeleteTopics => RequestKind::DeleteTopics(DeleteTopicsRequest::default()),
            ApiKey::OffsetForLeaderEpoch => {
                RequestKind::OffsetForLeaderEpoch(OffsetForLeaderEpochRequest::default())
            }
            ApiKey::DescribeConfigs => {
                RequestKind::DescribeConfigs(DescribeConfigsRequest::default())
            }
            ApiKey::InitProducerId => RequestKind::InitProducerId(
                InitProducerIdRequest::default().with_transactional_id(None),
            ),
            ApiKey::CreatePartitions => {
                RequestKind::CreatePartitions(CreatePartitionsRequest::default())
            }
            ApiKey::DescribeCluster => {
                RequestKind::DescribeCluster(DescribeClusterRequest::default())
            }
            ApiKey::AddPartitionsToTxn => {
                RequestKind::AddPartitionsToTxn(AddPartitionsToTxnRequest::default())
            }
            ApiKey::AddOffsetsToTxn => {
                RequestKind::AddOffsetsToTxn(AddOffsetsToTxnRequest::default())
            }
            ApiKey::EndTxn => RequestKind::EndTxn(EndTxnRequest::default()),
            ApiKey::TxnOffsetCommit => {
                RequestKind::TxnOffsetCommit(TxnOffsetCommitRequest::default())
            }
            ApiKey::DescribeTransactions => {
                RequestKind::DescribeTransactions(DescribeTransactionsRequest::default())
            }
            ApiKey::ListTransactions => {
                RequestKind::ListTransactions(ListTransactionsRequest::default())
            }
            ApiKey::ConsumerGroupHeartbeat => {
                RequestKind::ConsumerGroupHeartbeat(ConsumerGroupHeartbeatRequest::default())
            }
            ApiKey::ConsumerGroupDescribe => {
                RequestKind::ConsumerGroupDescribe(ConsumerGroupDescribeRequest::default())
            }
            ApiKey::DeleteRecords => RequestKind::DeleteRecords(Default::default()),
            ApiKey::DescribeAcls => RequestKind::DescribeAcls(Default::default()),
            ApiKey::CreateAcls => RequestKind::CreateAcls(Default::default()),
            ApiKey::DeleteAcls => RequestKind::DeleteAcls(Default::default()),
            ApiKey::AlterConfigs => RequestKind::AlterConfigs(Default::default()),
            ApiKey::DescribeLogDirs => RequestKind::DescribeLogDirs(Default::default()),
            ApiKey::ElectLeaders => RequestKind::ElectLeaders(Default::default()),
            ApiKey::IncrementalAlterConfigs => {
                RequestKind::IncrementalAlterConfigs(Default::default())
            }
            ApiKey::ListPartitionReassignments => {
                RequestKind::ListPartitionReassignments(Default::default())
            }
            ApiKey::DescribeClientQuotas => RequestKind::DescribeClientQuotas(Default::default()),
            ApiKey::DescribeUserScramCredentials => {
                RequestKind::DescribeUserScramCredentials(Default::default())
            }
            ApiKey::DescribeProducers => RequestKind::DescribeProducers(Default::default()),
            ApiKey::SaslHandshake => RequestKind::SaslHandshake(Default::default()),
            ApiKey::SaslAuthenticate => RequestKind::SaslAuthenticate(Default::default()),
            other => panic!("no default request for {other:?}"),
        }
    }

    #[test]
    fn every_api_in_the_table_is_decodable_served_and_has_an_error_answer_at_every_version() {
        let mut previous = None;
        for spec in APIS {
            let api = spec.key;
            // One entry per API, in key order.
            assert!(previous < Some(api as i16), "{api:?} out of order or twice");
            previous = Some(api as i16);
            let valid = api.valid_versions();
            let range = spec.versions;
            assert!(range.min >= valid.min && range.max <= valid.max, "{api:?}");
            assert_eq!(supported_range(api), Some(range));
            for version in range.min..=range.max {
                let mut cluster = cluster_with(1);
                let context = api_ctx(api, 0, version);
                match dispatch(&mut cluster, &context, default_request(api)) {
                    Reply::Respond(r) => assert_encodes(&r, version),
                    other => panic!("{api:?} v{version}: {other:?}"),
                }
                let error = error_response(
                    &default_request(api),
                    api,
                    version,
                    ErrorCode::NotController,
                );
                match error {
                    Some(r) => assert_encodes(&r, version),
                    None => panic!("{api:?} v{version} has no error response"),
                }
            }
        }
        // An inter-broker API, never served to clients.
        assert_eq!(supported_range(ApiKey::AlterPartition), None);
    }

    #[test]
    fn api_versions_advertises_exactly_the_table() {
        use kafka_protocol::messages::ApiVersionsRequest;
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("franzy"))
            .with_client_software_version(StrBytes::from_static_str("1.0"));
        for version in 0..=4 {
            let Reply::Respond(ResponseKind::ApiVersions(r)) = dispatch(
                &mut cluster_with(1),
                &api_ctx(ApiKey::ApiVersions, 0, version),
                RequestKind::ApiVersions(request.clone()),
            ) else {
                panic!("an ApiVersions response")
            };
            let advertised: Vec<(i16, i16, i16)> = r
                .api_keys
                .iter()
                .map(|a| (a.api_key, a.min_version, a.max_version))
                .collect();
            let table: Vec<(i16, i16, i16)> = APIS
                .iter()
                .map(|s| (s.key as i16, s.versions.min, s.versions.max))
                .collect();
            assert_eq!(advertised, table, "v{version}");
        }
    }

    #[test]
    fn a_body_of_another_api_closes_the_connection() {
        let mut cluster = cluster_with(1);
        let reply = dispatch(
            &mut cluster,
            &api_ctx(ApiKey::Fetch, 0, 12),
            default_request(ApiKey::Metadata),
        );
        assert!(matches!(reply, Reply::Close { .. }), "{reply:?}");
    }

    #[test]
    fn partitions_of_resolves_names_and_ids() {
        use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
        use kafka_protocol::messages::FetchRequest;
        let cluster = cluster_with(2);
        let id = cluster.topic("t").map(|t| t.id()).unwrap_or_default();
        let by_id = FetchRequest::default().with_topics(vec![FetchTopic::default()
            .with_topic_id(id)
            .with_partitions(vec![FetchPartition::default().with_partition(1)])]);
        assert_eq!(
            partitions_of(
                &cluster,
                &RequestKind::Fetch(by_id.clone()),
                ApiKey::Fetch,
                13
            ),
            vec![("t".into(), 1)]
        );
        // Before v13 the topic is named, and the id (were it set) is not looked at.
        assert!(
            partitions_of(&cluster, &RequestKind::Fetch(by_id), ApiKey::Fetch, 12)
                .iter()
                .all(|(name, _)| name.is_empty())
        );
        let by_name = FetchRequest::default().with_topics(vec![FetchTopic::default()
            .with_topic(topic_name("x"))
            .with_partitions(vec![FetchPartition::default().with_partition(0)])]);
        assert_eq!(
            partitions_of(&cluster, &RequestKind::Fetch(by_name), ApiKey::Fetch, 12),
            vec![("x".into(), 0)]
        );
    }

    #[test]
    fn partition_entries_past_the_cap_are_refused_by_every_api() {
        use crate::cluster::ClusterConfig;
        use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
        use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
        use kafka_protocol::messages::list_offsets_request::{
            ListOffsetsPartition, ListOffsetsTopic,
        };
        use kafka_protocol::messages::offset_for_leader_epoch_request::{
            OffsetForLeaderPartition, OffsetForLeaderTopic,
        };
        use kafka_protocol::messages::*;
        let config = ClusterConfig {
            max_partitions_per_request: 2,
            ..ClusterConfig::default()
        };
        let mut cluster = super::test_support::cluster_configured(3, config);
        let context = api_ctx(ApiKey::Fetch, 0, 9);
        let invalid = ErrorCode::InvalidRequest.code();
        let fetch_topic = |count: i32| {
            FetchTopic::default()
                .with_topic(topic_name("t"))
                .with_partitions(
                    (0..count)
                        .map(|p| {
                            FetchPartition::default()
                                .with_partition(p)
                                .with_partition_max_bytes(1024)
                        })
                        .collect(),
                )
        };
        let fetch = FetchRequest::default()
            .with_max_bytes(1 << 20)
            .with_topics(vec![fetch_topic(3), fetch_topic(2)]);
        // The entries past the cap are answered after the lock: see that both halves meet.
        let Reply::Finish(unfinished) = dispatch_prepared(
            &mut cluster,
            &context,
            RequestKind::Fetch(fetch),
            Prepared::Nothing,
        ) else {
            panic!("an unfinished fetch")
        };
        let Reply::Respond(ResponseKind::Fetch(r)) = finish(unfinished) else {
            panic!("a fetch response")
        };
        let codes: Vec<Vec<i16>> = r
            .responses
            .iter()
            .map(|t| t.partitions.iter().map(|p| p.error_code).collect())
            .collect();
        let not_leader = ErrorCode::NotLeaderOrFollower.code();
        assert_eq!(
            codes,
            vec![vec![0, not_leader, invalid], vec![invalid, invalid]]
        );
        let indices: Vec<i32> = r.responses[0]
            .partitions
            .iter()
            .map(|p| p.partition_index)
            .collect();
        assert_eq!(indices, vec![0, 1, 2]);

        let list = ListOffsetsRequest::default()
            .with_replica_id((-1).into())
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic_name("t"))
                .with_partitions(
                    (0..3)
                        .map(|p| ListOffsetsPartition::default().with_partition_index(p))
                        .collect(),
                )]);
        let Reply::Respond(ResponseKind::ListOffsets(r)) = dispatch(
            &mut cluster,
            &api_ctx(ApiKey::ListOffsets, 0, 9),
            RequestKind::ListOffsets(list),
        ) else {
            panic!("a list offsets response")
        };
        let codes: Vec<i16> = r.topics[0]
            .partitions
            .iter()
            .map(|p| p.error_code)
            .collect();
        assert_eq!(
            codes,
            vec![0, ErrorCode::NotLeaderOrFollower.code(), invalid]
        );

        let epochs = OffsetForLeaderEpochRequest::default().with_topics(vec![
            OffsetForLeaderTopic::default()
                .with_topic(topic_name("t"))
                .with_partitions(
                    (0..3)
                        .map(|p| {
                            OffsetForLeaderPartition::default()
                                .with_partition(p)
                                .with_current_leader_epoch(-1)
                        })
                        .collect(),
                ),
        ]);
        let v3 = api_ctx(ApiKey::OffsetForLeaderEpoch, 0, 3);
        let Reply::Respond(ResponseKind::OffsetForLeaderEpoch(r)) =
            dispatch(&mut cluster, &v3, RequestKind::OffsetForLeaderEpoch(epochs))
        else {
            panic!("an offset for leader epoch response")
        };
        assert_eq!(r.topics[0].partitions[2].error_code, invalid);
        assert_eq!(r.topics[0].partitions[0].error_code, 0);

        let resource = || {
            DescribeConfigsResource::default()
                .with_resource_type(describe_configs::RESOURCE_TOPIC)
                .with_resource_name(text("t"))
        };
        let describe = DescribeConfigsRequest::default().with_resources(vec![
            resource(),
            resource(),
            resource(),
        ]);
        let v4 = api_ctx(ApiKey::DescribeConfigs, 0, 4);
        let Reply::Respond(ResponseKind::DescribeConfigs(r)) =
            dispatch(&mut cluster, &v4, RequestKind::DescribeConfigs(describe))
        else {
            panic!("a describe configs response")
        };
        let codes: Vec<i16> = r.results.iter().map(|r| r.error_code).collect();
        assert_eq!(codes, vec![0, 0, invalid]);
    }
}
