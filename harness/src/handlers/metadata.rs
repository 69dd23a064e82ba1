//! Metadata (key 3), v0-13: live brokers, cluster and controller ids, and topics with their
//! partitions, leaders, leader epochs (KIP-320), replicas, ISR and offline replicas; topic
//! ids in v10+ (KIP-516), lookups by id in v12+.
//!
//! Unknown topics are created when the request allows it (v4+ `allow_auto_topic_creation`;
//! always before v4) and [`crate::cluster::ClusterConfig::auto_create_topics`] is on. As in
//! Kafka, where creation goes through the controller, the request that triggers it is
//! answered LEADER_NOT_AVAILABLE for that topic; the next Metadata request sees it.
//!
//! One request creates at most
//! [`crate::cluster::ClusterConfig::max_topics_created_per_request`] topics; the others are
//! answered LEADER_NOT_AVAILABLE too, without being created, which is what a KRaft broker
//! answers for every topic it asked its controller to create whatever the controller
//! decided (Kafka's `DefaultAutoTopicCreationManager`). The client asks again, and each
//! request creates the next ones. A topic named twice is answered once, as Kafka's broker
//! reads the names into a set. Topics past
//! [`crate::cluster::ClusterConfig::max_partitions_per_request`] distinct names are answered
//! INVALID_REQUEST unread.
//!
//! The names are sorted out before the cluster lock ([`plan`]), and the answer is built
//! after it ([`finish`]): under the lock ([`apply`]) only the topics looked up cost anything.

use std::collections::HashSet;
use std::sync::Arc;

use franzy::proto::{ErrorCode, StrBytes};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{MetadataRequest, MetadataResponse};

use uuid::Uuid;

use super::{text, topic_name, RequestContext, TOPIC_OPERATIONS};
use crate::cluster::topic::{is_internal_topic, validate_topic_name};
use crate::cluster::{ClusterConfig, ClusterState, CoordinatorType, Topic};

/// `topic_authorized_operations` when not requested.
const OPERATIONS_OMITTED: i32 = i32::MIN;

/// Serves a Metadata request: [`plan`], [`apply`], [`finish`].
pub fn handle(
    cluster: &mut ClusterState,
    ctx: &RequestContext,
    req: MetadataRequest,
) -> MetadataResponse {
    let plan = plan(&req, cluster.config());
    finish(apply(cluster, ctx, req, plan))
}

/// What a Metadata request asks, worked out without the cluster: each named topic is looked
/// up, left out (named before), or refused (an invalid name, or past
/// [`ClusterConfig::max_partitions_per_request`] distinct topics: INVALID_REQUEST).
#[derive(Debug)]
pub struct MetadataPlan {
    steps: Vec<Step>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Look,
    Repeated,
    Refuse(ErrorCode),
}

/// Plans `req` (see [`MetadataPlan`]).
pub fn plan(req: &MetadataRequest, config: &ClusterConfig) -> MetadataPlan {
    let Some(requested) = req.topics.as_ref() else {
        return MetadataPlan { steps: Vec::new() };
    };
    let mut seen_names: HashSet<&str> = HashSet::new();
    let mut seen_ids = HashSet::new();
    let mut distinct = 0usize;
    let steps = requested
        .iter()
        .map(|t| {
            let first_time = if by_id(t) {
                seen_ids.insert(t.topic_id)
            } else {
                seen_names.insert(t.name.as_ref().map_or("", |n| n.0.as_str()))
            };
            if !first_time {
                return Step::Repeated;
            }
            distinct += 1;
            if distinct > config.max_partitions_per_request {
                return Step::Refuse(ErrorCode::InvalidRequest);
            }
            match &t.name {
                Some(name) if !by_id(t) && validate_topic_name(name.0.as_str()).is_err() => {
                    Step::Refuse(ErrorCode::InvalidTopicException)
                }
                _ => Step::Look,
            }
        })
        .collect();
    MetadataPlan { steps }
}

fn by_id(t: &MetadataRequestTopic) -> bool {
    t.name.is_none() || !t.topic_id.is_nil()
}

/// A Metadata request after [`apply`]: the answers of the topics looked up. The rest of the
/// answer needs no lock (see [`finish`]).
#[derive(Debug)]
pub struct AppliedMetadata {
    req: MetadataRequest,
    version: i16,
    steps: Vec<Step>,
    /// The answers of the topics looked up, in request order.
    looked_up: Vec<MetadataResponseTopic>,
    /// The response, without the requested topics.
    response: MetadataResponse,
    /// The whole request was refused.
    refused: bool,
}

/// The part of a Metadata request that needs the cluster: brokers, and the topics looked up
/// (created when allowed, up to [`ClusterConfig::max_topics_created_per_request`]).
pub fn apply(
    cluster: &mut ClusterState,
    ctx: &RequestContext,
    req: MetadataRequest,
    plan: MetadataPlan,
) -> AppliedMetadata {
    let version = ctx.api_version;
    let mut applied = AppliedMetadata {
        req,
        version,
        steps: plan.steps,
        looked_up: Vec::new(),
        response: MetadataResponse::default(),
        refused: false,
    };
    if version < 12 {
        if let Some(topics) = &applied.req.topics {
            if topics.iter().any(by_id) {
                // Kafka refuses topic ids (and so null names) before v12.
                applied.refused = true;
                return applied;
            }
        }
    }
    let req = &applied.req;
    let include_operations = version >= 8 && req.include_topic_authorized_operations;
    let all_topics = match &req.topics {
        None => true,
        Some(t) => version == 0 && t.is_empty(),
    };
    let allow_create =
        cluster.config().auto_create_topics && (version < 4 || req.allow_auto_topic_creation);
    let mut topics = Vec::new();
    let max_created = cluster.config().max_topics_created_per_request;
    let mut created = 0usize;
    let mut not_created = 0usize;
    if all_topics {
        topics.extend(
            cluster
                .topics()
                .map(|t| describe(cluster, t, version, include_operations)),
        );
    } else {
        let looked_up = req
            .topics
            .iter()
            .flatten()
            .zip(&applied.steps)
            .filter(|(_, step)| **step == Step::Look)
            .map(|(t, _)| t);
        for requested in looked_up {
            if by_id(requested) {
                let response = match cluster.topic_by_id(requested.topic_id) {
                    Some(t) => describe(cluster, t, version, include_operations),
                    None => MetadataResponseTopic::default()
                        .with_error_code(ErrorCode::UnknownTopicId.code())
                        .with_name(None)
                        .with_topic_id(requested.topic_id),
                };
                applied.looked_up.push(response);
                continue;
            }
            let name = requested.name.as_ref().map_or("", |n| n.0.as_str());
            if let Some(t) = cluster.topic(name) {
                applied
                    .looked_up
                    .push(describe(cluster, t, version, include_operations));
                continue;
            }
            let code = if !allow_create {
                ErrorCode::UnknownTopicOrPartition
            } else if created >= max_created {
                not_created += 1;
                ErrorCode::LeaderNotAvailable
            } else {
                let partitions = cluster.config().default_partitions;
                // Internal topics are created as their coordinator would create them.
                let creation = match CoordinatorType::of_internal_topic(name) {
                    Some(kind) => cluster.create_internal_topic(kind),
                    None => cluster.create_topic(name, partitions, Default::default()),
                };
                match creation {
                    Ok(_) => {
                        created += 1;
                        ErrorCode::LeaderNotAvailable
                    }
                    Err(code) => code,
                }
            };
            applied.looked_up.push(failed(requested, code, version));
        }
    }
    if not_created > 0 {
        tracing::warn!(
            created,
            not_created,
            "metadata: more topics to auto-create than max_topics_created_per_request; the rest answered LEADER_NOT_AVAILABLE, not created"
        );
    }
    let brokers = cluster
        .live_brokers()
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(b.id.into())
                .with_host(text(&b.host))
                .with_port(b.port)
        })
        .collect();
    let mut response = MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(StrBytes::from_string(
            cluster.config().cluster_id.clone(),
        )))
        .with_controller_id(cluster.controller_id().into())
        .with_topics(topics);
    if (8..=10).contains(&version) && applied.req.include_cluster_authorized_operations {
        response.cluster_authorized_operations = super::CLUSTER_OPERATIONS;
    }
    applied.response = response;
    applied
}

/// The answer to a Metadata request after [`apply`], without the cluster: every topic named
/// once, in request order.
pub fn finish(applied: AppliedMetadata) -> MetadataResponse {
    let AppliedMetadata {
        req,
        version,
        steps,
        looked_up,
        mut response,
        refused,
    } = applied;
    if refused {
        return error_response(&req, version, ErrorCode::InvalidRequest);
    }
    let mut looked_up = looked_up.into_iter();
    for (requested, step) in req.topics.iter().flatten().zip(steps) {
        match step {
            Step::Repeated => {}
            Step::Refuse(code) => response.topics.push(failed(requested, code, version)),
            // `apply` answered every topic it looked up; a missing one would be a bug.
            Step::Look => response.topics.push(
                looked_up
                    .next()
                    .unwrap_or_else(|| failed(requested, ErrorCode::UnknownServerError, version)),
            ),
        }
    }
    response
}

/// The answer for a requested topic that fails with `code`.
fn failed(
    requested: &MetadataRequestTopic,
    code: ErrorCode,
    version: i16,
) -> MetadataResponseTopic {
    match &requested.name {
        Some(name) if !by_id(requested) => MetadataResponseTopic::default()
            .with_error_code(code.code())
            .with_name(Some(name.clone()))
            .with_is_internal(is_internal_topic(name.0.as_str())),
        _ => {
            let mut topic = MetadataResponseTopic::default()
                .with_error_code(code.code())
                .with_name(None);
            if version >= 10 {
                topic.topic_id = requested.topic_id;
            }
            topic
        }
    }
}

/// The answer that fails `req` with `code`: every requested topic carries it, and the
/// top-level error (v13) too, as Kafka's `MetadataRequest.getErrorResponse`.
pub fn error_response(req: &MetadataRequest, version: i16, code: ErrorCode) -> MetadataResponse {
    let topics = req
        .topics
        .iter()
        .flatten()
        .map(|t| {
            let mut topic = MetadataResponseTopic::default()
                .with_error_code(code.code())
                .with_name(t.name.clone());
            if version >= 10 {
                topic.topic_id = t.topic_id;
            }
            topic
        })
        .collect();
    let mut response = MetadataResponse::default().with_topics(topics);
    if version >= 13 {
        response.error_code = code.code();
    }
    response
}

/// The topics `req` names (partition -1: the whole topic), ids resolved by `resolve`.
pub fn partitions(
    resolve: &dyn Fn(Uuid) -> Option<Arc<str>>,
    req: &MetadataRequest,
) -> Vec<(Arc<str>, i32)> {
    req.topics
        .iter()
        .flatten()
        .filter_map(|t| match &t.name {
            Some(name) => Some((Arc::from(name.0.as_str()), -1)),
            None => resolve(t.topic_id).map(|name| (name, -1)),
        })
        .collect()
}

fn describe(
    cluster: &ClusterState,
    topic: &Topic,
    version: i16,
    include_operations: bool,
) -> MetadataResponseTopic {
    let partitions = topic
        .partitions()
        .iter()
        .map(|p| {
            let offline: Vec<_> = p
                .replicas()
                .iter()
                .filter(|&&b| !cluster.is_broker_up(b))
                .map(|&b| b.into())
                .collect();
            let leader_up = p.leader() >= 0 && cluster.is_broker_up(p.leader());
            MetadataResponsePartition::default()
                .with_error_code(if leader_up {
                    0
                } else {
                    ErrorCode::LeaderNotAvailable.code()
                })
                .with_partition_index(p.index())
                .with_leader_id(if leader_up { p.leader() } else { -1 }.into())
                .with_leader_epoch(p.leader_epoch())
                .with_replica_nodes(p.replicas().iter().map(|&b| b.into()).collect())
                .with_isr_nodes(p.isr().iter().map(|&b| b.into()).collect())
                .with_offline_replicas(offline)
        })
        .collect();
    let mut response = MetadataResponseTopic::default()
        .with_name(Some(topic_name(topic.name())))
        .with_is_internal(topic.is_internal())
        .with_partitions(partitions)
        .with_topic_authorized_operations(if include_operations {
            TOPIC_OPERATIONS
        } else {
            OPERATIONS_OMITTED
        });
    if version >= 10 {
        response.topic_id = topic.id();
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{ClusterConfig, ClusterState};
    use crate::handlers::test_support::{assert_encodes, cluster_with, ctx};
    use franzy::proto::ResponseKind;
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use uuid::Uuid;

    fn named(names: &[&str]) -> MetadataRequest {
        MetadataRequest::default()
            .with_allow_auto_topic_creation(true)
            .with_topics(Some(
                names
                    .iter()
                    .map(|n| MetadataRequestTopic::default().with_name(Some(topic_name(n))))
                    .collect(),
            ))
    }

    fn run(c: &mut ClusterState, version: i16, req: MetadataRequest) -> MetadataResponse {
        let r = handle(c, &ctx(0, version), req);
        let kind = ResponseKind::Metadata(r);
        assert_encodes(&kind, version);
        match kind {
            ResponseKind::Metadata(r) => r,
            _ => unreachable!("built above"),
        }
    }

    #[test]
    fn every_version_describes_all_topics() {
        let mut c = cluster_with(3);
        for version in 0..=13 {
            let req = if version == 0 {
                MetadataRequest::default().with_topics(Some(Vec::new()))
            } else {
                MetadataRequest::default().with_topics(None)
            };
            let r = run(&mut c, version, req);
            assert_eq!(r.brokers.len(), 3, "v{version}");
            assert_eq!(r.controller_id.0, 0);
            assert_eq!(
                r.cluster_id.as_ref().map(|s| s.as_str()),
                Some("franzy-harness")
            );
            let t = &r.topics[0];
            assert_eq!(t.partitions.len(), 3);
            let p = &t.partitions[1];
            assert_eq!((p.leader_id.0, p.leader_epoch), (1, 0));
            assert_eq!(p.replica_nodes.len(), 3);
            if version >= 10 {
                assert_eq!(Some(t.topic_id), c.topic("t").map(|t| t.id()));
            }
        }
    }

    #[test]
    fn a_down_broker_leaves_and_its_partitions_move() {
        let mut c = cluster_with(3);
        c.set_broker_up(1, false);
        let r = run(&mut c, 12, named(&["t"]));
        assert_eq!(
            r.brokers.iter().map(|b| b.node_id.0).collect::<Vec<_>>(),
            vec![0, 2]
        );
        let p = &r.topics[0].partitions[1];
        assert_eq!((p.error_code, p.leader_id.0, p.leader_epoch), (0, 2, 1));
        assert_eq!(
            p.offline_replicas.iter().map(|b| b.0).collect::<Vec<_>>(),
            vec![1]
        );
        assert!(!p.isr_nodes.iter().any(|b| b.0 == 1));
        c.set_broker_up(0, false);
        c.set_broker_up(2, false);
        let r = run(&mut c, 12, named(&["t"]));
        assert!(r.brokers.is_empty());
        assert_eq!(r.controller_id.0, -1);
        let p = &r.topics[0].partitions[0];
        assert_eq!(
            (p.error_code, p.leader_id.0),
            (ErrorCode::LeaderNotAvailable.code(), -1)
        );
    }

    #[test]
    fn unknown_topics_are_created_only_when_both_sides_allow() {
        let mut c = cluster_with(1);
        let r = run(&mut c, 12, named(&["fresh"]));
        assert_eq!(r.topics[0].error_code, ErrorCode::LeaderNotAvailable.code());
        assert!(c.topic("fresh").is_some());
        let r = run(&mut c, 12, named(&["fresh"]));
        assert_eq!(r.topics[0].error_code, 0);
        let r = run(
            &mut c,
            12,
            named(&["other"]).with_allow_auto_topic_creation(false),
        );
        assert_eq!(
            r.topics[0].error_code,
            ErrorCode::UnknownTopicOrPartition.code()
        );
        let r = run(&mut c, 12, named(&["bad name"]));
        assert_eq!(
            r.topics[0].error_code,
            ErrorCode::InvalidTopicException.code()
        );
        let mut off = ClusterState::new(ClusterConfig {
            auto_create_topics: false,
            ..ClusterConfig::default()
        });
        let r = run(&mut off, 12, named(&["fresh"]));
        assert_eq!(
            r.topics[0].error_code,
            ErrorCode::UnknownTopicOrPartition.code()
        );
    }

    #[test]
    fn topic_ids_resolve_from_v12_and_are_refused_before() {
        let mut c = cluster_with(1);
        let id = c.topic("t").map_or(Uuid::nil(), |t| t.id());
        let by_id = |id| {
            MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default()
                .with_topic_id(id)
                .with_name(None)]))
        };
        let r = run(&mut c, 12, by_id(id));
        assert_eq!(r.topics[0].name.as_ref().map(|n| n.0.as_str()), Some("t"));
        let r = run(&mut c, 12, by_id(Uuid::from_u128(9)));
        assert_eq!(r.topics[0].error_code, ErrorCode::UnknownTopicId.code());
        let r = run(
            &mut c,
            13,
            by_id(id).with_topics(Some(vec![MetadataRequestTopic::default()
                .with_topic_id(id)
                .with_name(None)])),
        );
        assert_eq!(r.topics[0].error_code, 0);
        let r = run(&mut c, 11, by_id(id));
        assert_eq!(r.topics[0].error_code, ErrorCode::InvalidRequest.code());
        let r = error_response(&by_id(id), 13, ErrorCode::NotController);
        assert_eq!(r.error_code, ErrorCode::NotController.code());
    }

    #[test]
    fn auto_creation_stops_at_the_cap_and_repeated_names_are_answered_once() {
        let config = ClusterConfig {
            max_topics_created_per_request: 2,
            ..ClusterConfig::default()
        };
        let mut c = crate::handlers::test_support::cluster_configured(1, config);
        let req = named(&["a", "b", "a", "t", "c", "d", "t"]);
        let r = run(&mut c, 9, req);
        let answers: Vec<(String, i16)> = r
            .topics
            .iter()
            .map(|t| {
                let name = t.name.as_ref().map_or("", |n| n.0.as_str());
                (name.to_string(), t.error_code)
            })
            .collect();
        let pending = ErrorCode::LeaderNotAvailable.code();
        let expected: Vec<(String, i16)> = [("a", pending), ("b", pending), ("t", 0)]
            .into_iter()
            .chain([("c", pending), ("d", pending)])
            .map(|(n, code)| (n.to_string(), code))
            .collect();
        assert_eq!(answers, expected);
        // Two created; the others were answered as pending but not created.
        assert!(c.topic("a").is_some() && c.topic("b").is_some());
        assert!(c.topic("c").is_none() && c.topic("d").is_none());
        // The client asks again, and the next request creates them.
        let r = run(&mut c, 9, named(&["a", "c", "d"]));
        let codes: Vec<i16> = r.topics.iter().map(|t| t.error_code).collect();
        assert_eq!(codes, vec![0, pending, pending]);
        assert!(c.topic("c").is_some() && c.topic("d").is_some());
    }

    #[test]
    fn names_past_the_cap_are_refused_unread() {
        let config = ClusterConfig {
            max_partitions_per_request: 2,
            ..ClusterConfig::default()
        };
        let mut c = crate::handlers::test_support::cluster_configured(1, config);
        let r = run(&mut c, 9, named(&["t", "t", "bad name", "new"]));
        let codes: Vec<i16> = r.topics.iter().map(|t| t.error_code).collect();
        assert_eq!(
            codes,
            vec![
                0,
                ErrorCode::InvalidTopicException.code(),
                ErrorCode::InvalidRequest.code()
            ]
        );
        assert!(c.topic("new").is_none());
    }
}
