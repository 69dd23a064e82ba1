//! FindCoordinator (key 10), v0-6: the broker coordinating a consumer group (key type 0)
//! or a transactional id (key type 1, v1+), one key before v4, a batch of keys from v4
//! (KIP-699). As Kafka's `KafkaApis.handleFindCoordinatorRequest` answers:
//!
//! - the coordinator is the leader of the key's internal partition
//!   ([`ClusterState::find_coordinator`]); the first request of a kind creates the internal
//!   topic and is answered COORDINATOR_NOT_AVAILABLE, as is a partition without a leader;
//! - an unknown key type fails the whole request with INVALID_REQUEST ("Unknown coordinator
//!   type received"); share groups (2) get INVALID_REQUEST per key (before v6 Kafka refuses
//!   the type, from v6 this harness has no share coordinator, as a Kafka without one);
//! - an empty key is looked up like any other (Kafka hashes it too);
//! - before v4 an error answers node -1, host "" and port -1 with Kafka's message, and a
//!   success carries the message "NONE" (Kafka's `Errors.NONE.message()`); from v4 each key
//!   answers for itself, without a message.
//!
//! Keys past [`crate::cluster::ClusterConfig::max_partitions_per_request`] are answered
//! INVALID_REQUEST unread (Kafka has no such cap).

use franzy::proto::{ErrorCode, StrBytes};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{FindCoordinatorRequest, FindCoordinatorResponse};

use super::{text, RequestContext};
use crate::cluster::{ClusterState, CoordinatorType};

/// The first version with batched keys (KIP-699).
const MIN_BATCHED_VERSION: i16 = 4;
/// Share groups' key type (KIP-932).
const KEY_TYPE_SHARE: i8 = 2;

/// Serves a FindCoordinator request.
pub fn handle(
    cluster: &mut ClusterState,
    ctx: &RequestContext,
    req: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let version = ctx.api_version;
    // Before v1 there is no key type: always a group.
    let key_type = if version >= 1 { req.key_type } else { 0 };
    let kind = match CoordinatorType::from_key_type(key_type) {
        Some(kind) => Ok(kind),
        None if key_type == KEY_TYPE_SHARE => Err(ErrorCode::InvalidRequest),
        None => {
            let mut response = error_response(&req, version, ErrorCode::InvalidRequest);
            let message = format!("Unknown coordinator type received: {key_type}");
            if version < MIN_BATCHED_VERSION {
                response.error_message = Some(text(&message));
            } else {
                for coordinator in &mut response.coordinators {
                    coordinator.error_message = Some(text(&message));
                }
            }
            return response;
        }
    };
    // A topic created by this request is not there for its other keys yet: Kafka asks its
    // controller and answers the whole request from the metadata it had.
    let existed = matches!(kind, Ok(kind) if cluster.topic(kind.topic()).is_some());
    let look_up = |cluster: &mut ClusterState, key: &str| {
        let kind = kind?;
        let found = cluster.find_coordinator(kind, key);
        if existed {
            found
        } else {
            Err(ErrorCode::CoordinatorNotAvailable)
        }
    };
    if version < MIN_BATCHED_VERSION {
        return match look_up(cluster, req.key.as_str()) {
            Ok(broker) => {
                let (host, port) = address(cluster, broker);
                let message = (version >= 1).then(|| StrBytes::from_static_str("NONE"));
                FindCoordinatorResponse::default()
                    .with_error_message(message)
                    .with_node_id(broker.into())
                    .with_host(host)
                    .with_port(port)
            }
            Err(code) => error_response(&req, version, code),
        };
    }
    let cap = cluster.config().max_partitions_per_request;
    let mut coordinators = Vec::with_capacity(req.coordinator_keys.len().min(cap));
    for (i, key) in req.coordinator_keys.iter().enumerate() {
        let found = if i < cap {
            look_up(cluster, key.as_str())
        } else {
            Err(ErrorCode::InvalidRequest)
        };
        coordinators.push(match found {
            Ok(broker) => {
                let (host, port) = address(cluster, broker);
                Coordinator::default()
                    .with_key(key.clone())
                    .with_error_message(None)
                    .with_node_id(broker.into())
                    .with_host(host)
                    .with_port(port)
            }
            Err(code) => no_coordinator(key.clone(), code),
        });
    }
    FindCoordinatorResponse::default().with_coordinators(coordinators)
}

/// The answer that fails `req` with `code`: before v4 the top-level fields, from v4 every
/// key (Kafka's `FindCoordinatorRequest.getErrorResponse`).
pub fn error_response(
    req: &FindCoordinatorRequest,
    version: i16,
    code: ErrorCode,
) -> FindCoordinatorResponse {
    if version < MIN_BATCHED_VERSION {
        // v0 has no message field.
        let message = (version >= 1)
            .then(|| message(code).map(StrBytes::from_static_str))
            .flatten();
        return FindCoordinatorResponse::default()
            .with_error_code(code.code())
            .with_error_message(message)
            .with_node_id((-1).into())
            .with_host(StrBytes::default())
            .with_port(-1);
    }
    let coordinators = req
        .coordinator_keys
        .iter()
        .map(|key| {
            let mut coordinator = no_coordinator(key.clone(), code);
            coordinator.error_message = message(code).map(StrBytes::from_static_str);
            coordinator
        })
        .collect();
    FindCoordinatorResponse::default().with_coordinators(coordinators)
}

/// A key's answer without a coordinator (`Node.noNode()`).
fn no_coordinator(key: StrBytes, code: ErrorCode) -> Coordinator {
    Coordinator::default()
        .with_key(key)
        .with_error_code(code.code())
        .with_error_message(None)
        .with_node_id((-1).into())
        .with_host(StrBytes::default())
        .with_port(-1)
}

/// Where `broker` listens, as Metadata advertises it.
fn address(cluster: &ClusterState, broker: i32) -> (StrBytes, i32) {
    cluster
        .broker(broker)
        .map_or((StrBytes::default(), -1), |b| (text(&b.host), b.port))
}

/// Kafka's default message for the codes FindCoordinator answers (`Errors.message()`).
fn message(code: ErrorCode) -> Option<&'static str> {
    Some(match code {
        ErrorCode::CoordinatorNotAvailable => "The coordinator is not available.",
        ErrorCode::NotCoordinator => "This is not the correct coordinator.",
        ErrorCode::CoordinatorLoadInProgress => {
            "The coordinator is loading and hence can't process requests."
        }
        ErrorCode::InvalidRequest => {
            "This most likely occurs because of a request being malformed by the client library or the message was sent to an incompatible broker. See the broker logs for more details."
        }
        ErrorCode::GroupAuthorizationFailed => "Group authorization failed.",
        ErrorCode::TransactionalIdAuthorizationFailed => {
            "The transactional id authorization failed."
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::coordinator::{OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC};
    use crate::handlers::test_support::{api_ctx, assert_encodes, cluster_with};
    use franzy::proto::{ApiKey, ResponseKind};

    fn find(
        cluster: &mut ClusterState,
        version: i16,
        req: FindCoordinatorRequest,
    ) -> FindCoordinatorResponse {
        let ctx = api_ctx(ApiKey::FindCoordinator, 0, version);
        let response = handle(cluster, &ctx, req);
        assert_encodes(&ResponseKind::FindCoordinator(response.clone()), version);
        response
    }

    fn group(key: &str) -> FindCoordinatorRequest {
        FindCoordinatorRequest::default().with_key(text(key))
    }

    fn batch(key_type: i8, keys: &[&str]) -> FindCoordinatorRequest {
        FindCoordinatorRequest::default()
            .with_key_type(key_type)
            .with_coordinator_keys(keys.iter().map(|k| text(k)).collect())
    }

    #[test]
    fn a_group_coordinator_is_found_after_the_topic_is_created_at_every_old_version() {
        for version in 0..4 {
            let mut cluster = cluster_with(1);
            let first = find(&mut cluster, version, group("g"));
            assert_eq!(first.error_code, ErrorCode::CoordinatorNotAvailable.code());
            assert_eq!((first.node_id.0, first.port), (-1, -1));
            let expected_message =
                (version >= 1).then(|| text("The coordinator is not available."));
            assert_eq!(first.error_message, expected_message, "v{version}");
            assert!(cluster.topic(OFFSETS_TOPIC).is_some());
            let second = find(&mut cluster, version, group("g"));
            assert_eq!(second.error_code, 0);
            let partition = cluster.coordinator_partition(CoordinatorType::Group, "g");
            let leader = cluster
                .partition(OFFSETS_TOPIC, partition)
                .map(|p| p.leader());
            assert_eq!(Some(second.node_id.0), leader);
            assert_eq!(second.port, 9092 + second.node_id.0);
            assert_eq!(second.host.as_str(), "127.0.0.1");
        }
    }

    #[test]
    fn batched_keys_answer_each_and_transactions_have_their_own_topic() {
        let mut cluster = cluster_with(1);
        let first = find(&mut cluster, 4, batch(1, &["a", "b"]));
        assert!(first
            .coordinators
            .iter()
            .all(|c| c.error_code == ErrorCode::CoordinatorNotAvailable.code()));
        assert!(cluster.topic(TRANSACTION_STATE_TOPIC).is_some());
        assert!(cluster.topic(OFFSETS_TOPIC).is_none());
        let second = find(&mut cluster, 6, batch(1, &["a", "", "b"]));
        let keys: Vec<&str> = second.coordinators.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, vec!["a", "", "b"]);
        for c in &second.coordinators {
            assert_eq!(c.error_code, 0);
            assert_eq!(c.error_message, None);
            let partition = cluster.coordinator_partition(CoordinatorType::Transaction, &c.key);
            let leader = cluster
                .partition(TRANSACTION_STATE_TOPIC, partition)
                .map(|p| p.leader());
            assert_eq!(Some(c.node_id.0), leader);
        }
        // An empty batch is an empty answer.
        assert!(find(&mut cluster, 4, batch(0, &[])).coordinators.is_empty());
    }

    #[test]
    fn unknown_and_share_key_types_are_invalid_requests() {
        let mut cluster = cluster_with(1);
        let old = find(&mut cluster, 3, group("g").with_key_type(7));
        assert_eq!(old.error_code, ErrorCode::InvalidRequest.code());
        assert_eq!(
            old.error_message,
            Some(text("Unknown coordinator type received: 7"))
        );
        let new = find(&mut cluster, 5, batch(-1, &["x", "y"]));
        assert!(new
            .coordinators
            .iter()
            .all(|c| c.error_code == ErrorCode::InvalidRequest.code()));
        let share = find(&mut cluster, 3, group("s").with_key_type(2));
        assert_eq!(share.error_code, ErrorCode::InvalidRequest.code());
        let share = find(&mut cluster, 6, batch(2, &["s"]));
        assert_eq!(
            share.coordinators[0].error_code,
            ErrorCode::InvalidRequest.code()
        );
        // v0 has no key type: the field is not looked at.
        assert!(cluster.topic(OFFSETS_TOPIC).is_none());
        find(&mut cluster, 0, group("g").with_key_type(7));
        assert!(cluster.topic(OFFSETS_TOPIC).is_some());
    }

    #[test]
    fn a_partition_without_a_leader_has_no_coordinator() {
        let mut cluster = cluster_with(1);
        cluster
            .create_internal_topic(CoordinatorType::Group)
            .expect("created");
        for broker in 0..3 {
            cluster.set_broker_up(broker, false);
        }
        let r = find(&mut cluster, 4, batch(0, &["g"]));
        assert_eq!(
            r.coordinators[0].error_code,
            ErrorCode::CoordinatorNotAvailable.code()
        );
        assert_eq!(r.coordinators[0].node_id.0, -1);
    }

    #[test]
    fn keys_past_the_cap_are_refused() {
        let config = crate::cluster::ClusterConfig {
            max_partitions_per_request: 2,
            ..Default::default()
        };
        let mut cluster = crate::handlers::test_support::cluster_configured(1, config);
        let r = find(&mut cluster, 4, batch(0, &["a", "b", "c"]));
        let codes: Vec<i16> = r.coordinators.iter().map(|c| c.error_code).collect();
        let unavailable = ErrorCode::CoordinatorNotAvailable.code();
        assert_eq!(
            codes,
            vec![unavailable, unavailable, ErrorCode::InvalidRequest.code()]
        );
    }
}
