//! DescribeCluster (key 60), v0-2: brokers, cluster id and controller id (KIP-700); fenced
//! (down) brokers on request in v2 (KIP-1073).

use franzy::proto::ErrorCode;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{DescribeClusterRequest, DescribeClusterResponse};

use super::{text, RequestContext, CLUSTER_OPERATIONS};
use crate::cluster::ClusterState;

/// `endpoint_type` asking for brokers.
const ENDPOINT_BROKERS: i8 = 1;

/// Serves a DescribeCluster request.
pub fn handle(
    cluster: &ClusterState,
    ctx: &RequestContext,
    req: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let version = ctx.api_version;
    if version >= 1 && req.endpoint_type != ENDPOINT_BROKERS {
        let mut response = error_response(&req, version, ErrorCode::UnsupportedEndpointType);
        response.error_message = Some(text(&format!(
            "The broker does not support endpoint type {}",
            req.endpoint_type
        )));
        return response;
    }
    let include_fenced = version >= 2 && req.include_fenced_brokers;
    let brokers = cluster
        .brokers()
        .iter()
        .filter(|b| b.up || include_fenced)
        .map(|b| {
            let mut broker = DescribeClusterBroker::default()
                .with_broker_id(b.id.into())
                .with_host(text(&b.host))
                .with_port(b.port);
            if version >= 2 {
                broker.is_fenced = !b.up;
            }
            broker
        })
        .collect();
    let mut response = DescribeClusterResponse::default()
        .with_cluster_id(text(&cluster.config().cluster_id))
        .with_controller_id(cluster.controller_id().into())
        .with_brokers(brokers);
    if version >= 1 {
        response.endpoint_type = ENDPOINT_BROKERS;
    }
    if req.include_cluster_authorized_operations {
        response.cluster_authorized_operations = CLUSTER_OPERATIONS;
    }
    response
}

/// The answer that fails `req` with `code`.
pub fn error_response(
    req: &DescribeClusterRequest,
    version: i16,
    code: ErrorCode,
) -> DescribeClusterResponse {
    let mut response = DescribeClusterResponse::default().with_error_code(code.code());
    if version >= 1 {
        response.endpoint_type = req.endpoint_type;
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::test_support::{assert_encodes, cluster_with, ctx};
    use franzy::proto::ResponseKind;

    #[test]
    fn live_brokers_and_fenced_ones_on_request() {
        let mut c = cluster_with(1);
        c.set_broker_up(0, false);
        for version in 0..=2 {
            let r = handle(&c, &ctx(1, version), DescribeClusterRequest::default());
            assert_eq!(
                r.brokers.iter().map(|b| b.broker_id.0).collect::<Vec<_>>(),
                vec![1, 2]
            );
            assert_eq!(
                (r.controller_id.0, r.cluster_id.as_str()),
                (1, "franzy-harness")
            );
            assert_encodes(&ResponseKind::DescribeCluster(r), version);
        }
        let r = handle(
            &c,
            &ctx(1, 2),
            DescribeClusterRequest::default().with_include_fenced_brokers(true),
        );
        assert_eq!(
            r.brokers
                .iter()
                .map(|b| (b.broker_id.0, b.is_fenced))
                .collect::<Vec<_>>(),
            vec![(0, true), (1, false), (2, false)]
        );
        let r = handle(
            &c,
            &ctx(1, 1),
            DescribeClusterRequest::default().with_endpoint_type(2),
        );
        assert_eq!(r.error_code, ErrorCode::UnsupportedEndpointType.code());
        assert_encodes(&ResponseKind::DescribeCluster(r), 1);
    }
}
