//! DeleteAcls (key 31), v1-3, answered as a Kafka broker without an authorizer answers it
//! (`AclApis.handleDeleteAcls` with no `authorizer.class.name`): every filter fails with
//! SECURITY_DISABLED, "No Authorizer is configured.", matching nothing.

use franzy::proto::ErrorCode;
use kafka_protocol::messages::delete_acls_response::DeleteAclsFilterResult;
use kafka_protocol::messages::{DeleteAclsRequest, DeleteAclsResponse};

use super::create_acls::NO_AUTHORIZER;
use super::{text, RequestContext};
use crate::cluster::ClusterState;

/// Serves a DeleteAcls request.
pub fn handle(
    _cluster: &ClusterState,
    _ctx: &RequestContext,
    req: DeleteAclsRequest,
) -> DeleteAclsResponse {
    answer(&req, ErrorCode::SecurityDisabled, Some(NO_AUTHORIZER))
}

/// The answer that fails `req` with `code` (`DeleteAclsRequest.getErrorResponse`: one
/// result per filter).
pub fn error_response(
    req: &DeleteAclsRequest,
    _version: i16,
    code: ErrorCode,
) -> DeleteAclsResponse {
    answer(req, code, None)
}

fn answer(req: &DeleteAclsRequest, code: ErrorCode, message: Option<&str>) -> DeleteAclsResponse {
    let results = req
        .filters
        .iter()
        .map(|_| {
            DeleteAclsFilterResult::default()
                .with_error_code(code.code())
                .with_error_message(message.map(text))
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::test_support::{assert_encodes, cluster_with, ctx};
    use franzy::proto::ResponseKind;
    use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;

    #[test]
    fn without_an_authorizer_every_filter_is_security_disabled_and_matches_nothing() {
        let req = DeleteAclsRequest::default().with_filters(vec![
            DeleteAclsFilter::default(),
            DeleteAclsFilter::default(),
        ]);
        for version in 1..=3 {
            let r = handle(&cluster_with(1), &ctx(0, version), req.clone());
            assert_eq!(r.filter_results.len(), 2);
            assert!(r.filter_results.iter().all(|x| {
                x.error_code == ErrorCode::SecurityDisabled.code()
                    && x.error_message.as_deref() == Some(NO_AUTHORIZER)
                    && x.matching_acls.is_empty()
            }));
            assert_encodes(&ResponseKind::DeleteAcls(r), version);
        }
    }
}
