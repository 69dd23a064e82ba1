//! CreateAcls (key 30), v1-3, answered as a Kafka broker without an authorizer answers it
//! (`AclApis.handleCreateAcls` with no `authorizer.class.name`): every creation fails with
//! SECURITY_DISABLED, "No Authorizer is configured.", and nothing is stored.

use franzy::proto::ErrorCode;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::{CreateAclsRequest, CreateAclsResponse};

use super::{text, RequestContext};
use crate::cluster::ClusterState;

/// Kafka's message for ACL changes without an authorizer.
pub const NO_AUTHORIZER: &str = "No Authorizer is configured.";

/// Serves a CreateAcls request.
pub fn handle(
    _cluster: &ClusterState,
    _ctx: &RequestContext,
    req: CreateAclsRequest,
) -> CreateAclsResponse {
    answer(&req, ErrorCode::SecurityDisabled, Some(NO_AUTHORIZER))
}

/// The answer that fails `req` with `code` (`CreateAclsRequest.getErrorResponse`: one
/// result per creation).
pub fn error_response(
    req: &CreateAclsRequest,
    _version: i16,
    code: ErrorCode,
) -> CreateAclsResponse {
    answer(req, code, None)
}

fn answer(req: &CreateAclsRequest, code: ErrorCode, message: Option<&str>) -> CreateAclsResponse {
    let results = req
        .creations
        .iter()
        .map(|_| {
            AclCreationResult::default()
                .with_error_code(code.code())
                .with_error_message(message.map(text))
        })
        .collect();
    CreateAclsResponse::default().with_results(results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::test_support::{assert_encodes, cluster_with, ctx};
    use franzy::proto::ResponseKind;
    use kafka_protocol::messages::create_acls_request::AclCreation;

    #[test]
    fn without_an_authorizer_every_creation_is_security_disabled() {
        let req = CreateAclsRequest::default().with_creations(vec![
            AclCreation::default().with_resource_name(text("orders")),
            AclCreation::default().with_resource_name(text("payments")),
        ]);
        for version in 1..=3 {
            let r = handle(&cluster_with(1), &ctx(0, version), req.clone());
            assert_eq!(r.results.len(), 2);
            assert!(r.results.iter().all(|x| {
                x.error_code == ErrorCode::SecurityDisabled.code()
                    && x.error_message.as_deref() == Some(NO_AUTHORIZER)
            }));
            assert_encodes(&ResponseKind::CreateAcls(r), version);
        }
        let empty = handle(&cluster_with(1), &ctx(0, 3), CreateAclsRequest::default());
        assert!(empty.results.is_empty());
    }
}
