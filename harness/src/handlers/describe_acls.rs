//! DescribeAcls (key 29), v1-3, answered as a Kafka broker without an authorizer answers
//! it (`KafkaApis.handleDescribeAcls` with no `authorizer.class.name`): SECURITY_DISABLED,
//! "No Authorizer is configured on the broker", and no resources.

use franzy::proto::ErrorCode;
use kafka_protocol::messages::{DescribeAclsRequest, DescribeAclsResponse};

use super::{text, RequestContext};
use crate::cluster::ClusterState;

/// Serves a DescribeAcls request.
pub fn handle(
    _cluster: &ClusterState,
    _ctx: &RequestContext,
    _req: DescribeAclsRequest,
) -> DescribeAclsResponse {
    DescribeAclsResponse::default()
        .with_error_code(ErrorCode::SecurityDisabled.code())
        .with_error_message(Some(text("No Authorizer is configured on the broker")))
}

/// The answer that fails `req` with `code`.
pub fn error_response(
    _req: &DescribeAclsRequest,
    _version: i16,
    code: ErrorCode,
) -> DescribeAclsResponse {
    DescribeAclsResponse::default().with_error_code(code.code())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::test_support::{cluster_with, ctx};

    #[test]
    fn without_an_authorizer_acls_are_security_disabled() {
        let r = handle(&cluster_with(1), &ctx(0, 3), DescribeAclsRequest::default());
        assert_eq!(r.error_code, ErrorCode::SecurityDisabled.code());
        assert!(r.resources.is_empty());
    }
}
