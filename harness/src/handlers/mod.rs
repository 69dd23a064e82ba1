//! One file per API key. A handler is a pure function of the cluster state and one decoded
//! request: it never touches sockets or clocks (time comes in [`RequestContext::now_ms`]).
//!
//! | module | API (key) | what |
//! |---|---|---|
//! | [`produce`] | Produce (0) | validates, checks producer sequences, appends |
//! | [`fetch`] | Fetch (1) | reads stored batches, waits for `min_bytes` |
//! | [`list_offsets`] | ListOffsets (2) | offsets by timestamp, earliest, latest, max |
//! | [`metadata`] | Metadata (3) | brokers, topics, leaders; auto-creation |
//! | [`api_versions`] | ApiVersions (18) | what [`supported_versions`] lists |
//! | [`create_topics`] | CreateTopics (19) | topics, counts, assignments, configs |
//! | [`delete_topics`] | DeleteTopics (20) | by name or id |
//! | [`init_producer_id`] | InitProducerId (22) | producer ids for idempotent producers |
//! | [`offset_for_leader_epoch`] | OffsetForLeaderEpoch (23) | end offset of an epoch |
//! | [`describe_configs`] | DescribeConfigs (32) | topic and broker configs |
//! | [`create_partitions`] | CreatePartitions (37) | more partitions |
//! | [`describe_cluster`] | DescribeCluster (60) | brokers, cluster and controller ids |
//!
//! Call order, as the server drives it (see `server.rs`):
//! 1. the server decodes the frame and checks the version against [`supported_versions`]
//!    (an unsupported ApiVersions request gets [`api_versions::unsupported_version_response`]);
//! 2. `control.rs` matches interceptors; a request-level error becomes [`error_response`],
//!    partition-level errors go into [`RequestContext::partition_errors`];
//! 3. [`dispatch`] runs the handler. A fetch that cannot yet satisfy `min_bytes` answers
//!    [`Reply::Park`]; the server calls it again whenever a log grows, and a last time with
//!    `deadline_reached = true` when its wait is over.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use franzy::proto::{ApiKey, ErrorCode, RequestKind, ResponseKind, StrBytes};
use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::VersionRange;
use uuid::Uuid;

use crate::cluster::ClusterState;

pub mod api_versions;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod fetch;
pub mod init_producer_id;
pub mod list_offsets;
pub mod metadata;
pub mod offset_for_leader_epoch;
pub mod produce;
#[cfg(test)]
pub(crate) mod test_support;

/// What a handler knows about the request besides its body.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The broker the request arrived at.
    pub broker_id: i32,
    /// The request's API version.
    pub api_version: i16,
    /// The client id from the request header.
    pub client_id: Option<String>,
    /// Wall-clock time in milliseconds since the Unix epoch, for timestamps
    /// (log-append time, ListOffsets by timestamp). Injected, never read inside handlers.
    pub now_ms: i64,
    /// Errors injected for single partitions of this request, by (topic name, partition).
    /// A handler that serves per-partition results answers these instead of doing the work.
    pub partition_errors: HashMap<(String, i32), ErrorCode>,
    /// True on the last call for a parked fetch: answer with whatever is there.
    pub deadline_reached: bool,
}

impl RequestContext {
    /// The error injected for `topic`/`partition`, if any (no allocation when none was).
    pub fn partition_error(&self, topic: &str, partition: i32) -> Option<ErrorCode> {
        if self.partition_errors.is_empty() {
            return None;
        }
        self.partition_errors
            .get(&(topic.to_string(), partition))
            .copied()
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
    /// Not enough data for a fetch yet: call again when a log grows, and once more with
    /// `deadline_reached` after `max_wait`.
    Park {
        /// How long the request may wait, from its first arrival.
        max_wait: Duration,
    },
    /// The cluster's part is done: [`finish`] builds the answer, after the cluster lock is
    /// released (only [`dispatch_prepared`] answers this; [`dispatch`] finishes itself).
    Finish(Unfinished),
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

/// The versions this harness implements, per API: exactly what the handlers serve, and so
/// exactly what ApiVersions advertises.
pub fn supported_versions() -> &'static [(ApiKey, VersionRange)] {
    SUPPORTED
}

const fn range(min: i16, max: i16) -> VersionRange {
    VersionRange { min, max }
}

/// Each range is what the handler implements, within what `kafka-protocol` can decode: the
/// full decodable range for every API served (Kafka 4.x dropped the older versions too).
static SUPPORTED: &[(ApiKey, VersionRange)] = &[
    (ApiKey::Produce, range(3, 13)),
    (ApiKey::Fetch, range(4, 18)),
    (ApiKey::ListOffsets, range(1, 10)),
    (ApiKey::Metadata, range(0, 13)),
    (ApiKey::ApiVersions, range(0, 4)),
    (ApiKey::CreateTopics, range(2, 7)),
    (ApiKey::DeleteTopics, range(1, 6)),
    (ApiKey::OffsetForLeaderEpoch, range(2, 4)),
    (ApiKey::DescribeConfigs, range(1, 4)),
    (ApiKey::InitProducerId, range(0, 4)),
    (ApiKey::CreatePartitions, range(0, 3)),
    (ApiKey::DescribeCluster, range(0, 2)),
];

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

/// The supported range for `api`, if the harness serves it.
pub fn supported_range(api: ApiKey) -> Option<VersionRange> {
    SUPPORTED
        .iter()
        .find(|(key, _)| *key == api)
        .map(|(_, r)| *r)
}

/// Runs the handler for `request`, doing all of its work here.
pub fn dispatch(cluster: &mut ClusterState, ctx: &RequestContext, request: RequestKind) -> Reply {
    match dispatch_prepared(cluster, ctx, request, Prepared::Nothing) {
        Reply::Finish(unfinished) => finish(unfinished),
        reply => reply,
    }
}

/// Runs the handler for `request`, with what was `prepared` for it before the lock. The reply
/// may be [`Reply::Finish`]: [`finish`] it once the lock is released.
pub fn dispatch_prepared(
    cluster: &mut ClusterState,
    ctx: &RequestContext,
    request: RequestKind,
    prepared: Prepared,
) -> Reply {
    let respond = Reply::Respond;
    let prepared = match prepared {
        Prepared::Failed(reason) => return Reply::Close { reason },
        other => other,
    };
    match request {
        RequestKind::Produce(req) => {
            let prepared = match prepared {
                Prepared::Produce(prepared) => prepared,
                _ => {
                    let limits = produce::TopicLimits::read(
                        cluster,
                        &req,
                        ctx.api_version,
                        cluster.config().max_partitions_per_request,
                    );
                    produce::prepare(&req, ctx, &limits, cluster.config())
                }
            };
            Reply::Finish(Unfinished::Produce(produce::apply(
                cluster, ctx, req, prepared,
            )))
        }
        RequestKind::Fetch(req) => fetch::handle(cluster, ctx, req),
        RequestKind::ListOffsets(req) => respond(ResponseKind::ListOffsets(list_offsets::handle(
            cluster, ctx, req,
        ))),
        RequestKind::Metadata(req) => {
            let plan = match prepared {
                Prepared::Metadata(plan) => plan,
                _ => metadata::plan(&req, cluster.config()),
            };
            Reply::Finish(Unfinished::Metadata(metadata::apply(
                cluster, ctx, req, plan,
            )))
        }
        RequestKind::ApiVersions(req) => respond(ResponseKind::ApiVersions(api_versions::handle(
            cluster, ctx, req,
        ))),
        RequestKind::CreateTopics(req) => respond(ResponseKind::CreateTopics(
            create_topics::handle(cluster, ctx, req),
        )),
        RequestKind::DeleteTopics(req) => respond(ResponseKind::DeleteTopics(
            delete_topics::handle(cluster, ctx, req),
        )),
        RequestKind::OffsetForLeaderEpoch(req) => respond(ResponseKind::OffsetForLeaderEpoch(
            offset_for_leader_epoch::handle(cluster, ctx, req),
        )),
        RequestKind::DescribeConfigs(req) => respond(ResponseKind::DescribeConfigs(
            describe_configs::handle(cluster, ctx, req),
        )),
        RequestKind::InitProducerId(req) => respond(ResponseKind::InitProducerId(
            init_producer_id::handle(cluster, ctx, req),
        )),
        RequestKind::CreatePartitions(req) => respond(ResponseKind::CreatePartitions(
            create_partitions::handle(cluster, ctx, req),
        )),
        RequestKind::DescribeCluster(req) => respond(ResponseKind::DescribeCluster(
            describe_cluster::handle(cluster, ctx, req),
        )),
        // The server only dispatches APIs listed in `supported_versions`; anything else is
        // a bug in that table, and a closed connection is a clearer symptom than a hang.
        other => Reply::Close {
            reason: format!("no handler for {:?}", std::mem::discriminant(&other)),
        },
    }
}

/// The response to `request` that reports `code` for the whole request (every topic and
/// partition it names, or its top-level error field), as a broker that fails the request
/// would send. `None` for APIs that have no way to report an error, and for a produce with
/// acks=0, which is never answered.
pub fn error_response(
    request: &RequestKind,
    api_version: i16,
    code: ErrorCode,
) -> Option<ResponseKind> {
    let v = api_version;
    Some(match request {
        RequestKind::Produce(req) if req.acks == 0 => return None,
        RequestKind::Produce(req) => ResponseKind::Produce(produce::error_response(req, v, code)),
        RequestKind::Fetch(req) => ResponseKind::Fetch(fetch::error_response(req, v, code)),
        RequestKind::ListOffsets(req) => {
            ResponseKind::ListOffsets(list_offsets::error_response(req, v, code))
        }
        RequestKind::Metadata(req) => {
            ResponseKind::Metadata(metadata::error_response(req, v, code))
        }
        RequestKind::ApiVersions(_) => {
            ResponseKind::ApiVersions(api_versions::error_response(v, code))
        }
        RequestKind::CreateTopics(req) => {
            ResponseKind::CreateTopics(create_topics::error_response(req, v, code))
        }
        RequestKind::DeleteTopics(req) => {
            ResponseKind::DeleteTopics(delete_topics::error_response(req, v, code))
        }
        RequestKind::OffsetForLeaderEpoch(req) => ResponseKind::OffsetForLeaderEpoch(
            offset_for_leader_epoch::error_response(req, v, code),
        ),
        RequestKind::DescribeConfigs(req) => {
            ResponseKind::DescribeConfigs(describe_configs::error_response(req, v, code))
        }
        RequestKind::InitProducerId(req) => {
            ResponseKind::InitProducerId(init_producer_id::error_response(req, v, code))
        }
        RequestKind::CreatePartitions(req) => {
            ResponseKind::CreatePartitions(create_partitions::error_response(req, v, code))
        }
        RequestKind::DescribeCluster(req) => {
            ResponseKind::DescribeCluster(describe_cluster::error_response(req, v, code))
        }
        _ => return None,
    })
}

/// The (topic name, partition) pairs a request names, for interceptors narrowed to a
/// partition; whole-topic requests (Metadata, CreateTopics, ...) give partition -1. Requests
/// that name topics by id (Fetch v13+, Produce v13+, DeleteTopics v6, Metadata v12+) are
/// resolved through `cluster`; unknown ids are left out. The version is read off the body:
/// a request carries ids exactly when their field is set.
pub fn partitions_of(cluster: &ClusterState, request: &RequestKind) -> Vec<(Arc<str>, i32)> {
    partitions_named(request, &|id| {
        cluster.topic_by_id(id).map(|t| Arc::from(t.name()))
    })
}

/// [`partitions_of`], with topic ids resolved by `resolve`: the server resolves the ids a
/// request names ([`topic_ids_of`]) under the cluster lock, and lists the partitions
/// without it.
pub fn partitions_named(
    request: &RequestKind,
    resolve: &dyn Fn(Uuid) -> Option<Arc<str>>,
) -> Vec<(Arc<str>, i32)> {
    match request {
        RequestKind::Produce(req) => {
            let by_id = req.topic_data.iter().any(|t| !t.topic_id.is_nil());
            produce::partitions(resolve, req, if by_id { 13 } else { 12 })
        }
        RequestKind::Fetch(req) => {
            let by_id = req.topics.iter().any(|t| !t.topic_id.is_nil());
            fetch::partitions(resolve, req, if by_id { 13 } else { 12 })
        }
        RequestKind::ListOffsets(req) => list_offsets::partitions(req),
        RequestKind::Metadata(req) => metadata::partitions(resolve, req),
        RequestKind::CreateTopics(req) => create_topics::partitions(req),
        RequestKind::DeleteTopics(req) => {
            let version = if req.topics.is_empty() { 5 } else { 6 };
            delete_topics::partitions(resolve, req, version)
        }
        RequestKind::OffsetForLeaderEpoch(req) => offset_for_leader_epoch::partitions(req),
        RequestKind::DescribeConfigs(req) => req
            .resources
            .iter()
            .filter(|r| r.resource_type == describe_configs::RESOURCE_TOPIC)
            .map(|r| (Arc::from(r.resource_name.as_str()), -1))
            .collect(),
        RequestKind::CreatePartitions(req) => create_partitions::partitions(req),
        _ => Vec::new(),
    }
}

/// The distinct topic ids a request names, for [`partitions_named`].
pub fn topic_ids_of(request: &RequestKind) -> Vec<Uuid> {
    let ids: Vec<Uuid> = match request {
        RequestKind::Produce(req) => req.topic_data.iter().map(|t| t.topic_id).collect(),
        RequestKind::Fetch(req) => req.topics.iter().map(|t| t.topic_id).collect(),
        RequestKind::Metadata(req) => req.topics.iter().flatten().map(|t| t.topic_id).collect(),
        RequestKind::DeleteTopics(req) => req.topics.iter().map(|t| t.topic_id).collect(),
        _ => Vec::new(),
    };
    let mut seen = std::collections::HashSet::new();
    ids.into_iter()
        .filter(|id| !id.is_nil() && seen.insert(*id))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::test_support::{assert_encodes, cluster_with, ctx};
    use super::*;

    fn default_request(api: ApiKey) -> RequestKind {
        use kafka_protocol::messages::*;
        match api {
            ApiKey::Produce => RequestKind::Produce(ProduceRequest::default().with_acks(1)),
            ApiKey::Fetch => RequestKind::Fetch(FetchRequest::default()),
            ApiKey::ListOffsets => RequestKind::ListOffsets(ListOffsetsRequest::default()),
            ApiKey::Metadata => RequestKind::Metadata(MetadataRequest::default()),
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
            other => panic!("no default request for {other:?}"),
        }
    }

    #[test]
    fn advertised_ranges_are_decodable_and_every_api_is_served() {
        for (api, range) in supported_versions() {
            let valid = api.valid_versions();
            assert!(range.min >= valid.min && range.max <= valid.max, "{api:?}");
            assert_eq!(supported_range(*api), Some(*range));
            for version in range.min..=range.max {
                let mut cluster = cluster_with(1);
                let mut context = ctx(0, version);
                context.deadline_reached = true;
                match dispatch(&mut cluster, &context, default_request(*api)) {
                    Reply::Respond(r) => assert_encodes(&r, version),
                    other => panic!("{api:?} v{version}: {other:?}"),
                }
                let error =
                    error_response(&default_request(*api), version, ErrorCode::NotController);
                match error {
                    Some(r) => assert_encodes(&r, version),
                    None => panic!("{api:?} v{version} has no error response"),
                }
            }
        }
        assert_eq!(supported_range(ApiKey::FindCoordinator), None);
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
            partitions_of(&cluster, &RequestKind::Fetch(by_id)),
            vec![("t".into(), 1)]
        );
        let by_name = FetchRequest::default().with_topics(vec![FetchTopic::default()
            .with_topic(topic_name("x"))
            .with_partitions(vec![FetchPartition::default().with_partition(0)])]);
        assert_eq!(
            partitions_of(&cluster, &RequestKind::Fetch(by_name)),
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
        let mut context = ctx(0, 9);
        context.deadline_reached = true;
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
        let Reply::Respond(ResponseKind::ListOffsets(r)) =
            dispatch(&mut cluster, &context, RequestKind::ListOffsets(list))
        else {
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
        let mut v3 = context.clone();
        v3.api_version = 3;
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
        let mut v4 = context.clone();
        v4.api_version = 4;
        let Reply::Respond(ResponseKind::DescribeConfigs(r)) =
            dispatch(&mut cluster, &v4, RequestKind::DescribeConfigs(describe))
        else {
            panic!("a describe configs response")
        };
        let codes: Vec<i16> = r.results.iter().map(|r| r.error_code).collect();
        assert_eq!(codes, vec![0, 0, invalid]);
    }
}
