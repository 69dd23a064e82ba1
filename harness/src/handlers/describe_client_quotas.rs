//! DescribeClientQuotas (key 48), v0-1 (KIP-546): the harness sets no quotas, so every
//! valid filter matches nothing. Filters are checked as Kafka's `ClientQuotaFilter` is: a
//! component of match type EXACT (0) needs a name, DEFAULT (1) and ANY (2) must not have one,
//! an entity type appears once, and the entity types are `user`, `client-id` and `ip`.

use std::collections::HashSet;

use franzy::proto::ErrorCode;
use kafka_protocol::messages::{DescribeClientQuotasRequest, DescribeClientQuotasResponse};

use super::{text, RequestContext};
use crate::cluster::ClusterState;

/// Serves a DescribeClientQuotas request.
pub fn handle(
    _cluster: &ClusterState,
    _ctx: &RequestContext,
    req: DescribeClientQuotasRequest,
) -> DescribeClientQuotasResponse {
    match check(&req) {
        Ok(()) => DescribeClientQuotasResponse::default()
            .with_error_message(None)
            .with_entries(Some(Vec::new())),
        Err(message) => DescribeClientQuotasResponse::default()
            .with_error_code(ErrorCode::InvalidRequest.code())
            .with_error_message(Some(text(&message)))
            .with_entries(None),
    }
}

fn check(req: &DescribeClientQuotasRequest) -> Result<(), String> {
    let mut types = HashSet::new();
    for component in &req.components {
        let entity = component.entity_type.as_str();
        if !matches!(entity, "user" | "client-id" | "ip") {
            return Err(format!("Unknown entity type: {entity}"));
        }
        if !types.insert(entity) {
            return Err(format!("Duplicate entity type: {entity}"));
        }
        match (component.match_type, &component._match) {
            (0, Some(_)) | (1, None) | (2, None) => {}
            (0, None) => return Err(format!("Exact match of {entity} needs a name")),
            (1 | 2, Some(_)) => {
                return Err(format!(
                    "Match of {entity} takes no name for this match type"
                ))
            }
            (other, _) => return Err(format!("Unknown match type: {other}")),
        }
    }
    Ok(())
}

/// The answer that fails `req` with `code`.
pub fn error_response(
    _req: &DescribeClientQuotasRequest,
    _version: i16,
    code: ErrorCode,
) -> DescribeClientQuotasResponse {
    DescribeClientQuotasResponse::default()
        .with_error_code(code.code())
        .with_entries(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::test_support::{cluster_with, ctx};
    use kafka_protocol::messages::describe_client_quotas_request::ComponentData;

    #[test]
    fn no_quotas_match_and_bad_filters_are_invalid() {
        let c = cluster_with(1);
        let component = |entity: &str, kind: i8, name: Option<&str>| {
            ComponentData::default()
                .with_entity_type(text(entity))
                .with_match_type(kind)
                .with_match(name.map(text))
        };
        let ok = DescribeClientQuotasRequest::default().with_components(vec![component(
            "user",
            0,
            Some("alice"),
        )]);
        let r = handle(&c, &ctx(0, 1), ok);
        assert_eq!((r.error_code, r.entries.map(|e| e.len())), (0, Some(0)));
        for bad in [
            component("user", 0, None),
            component("planet", 2, None),
            component("ip", 1, Some("x")),
        ] {
            let r = handle(
                &c,
                &ctx(0, 1),
                DescribeClientQuotasRequest::default().with_components(vec![bad]),
            );
            assert_eq!(r.error_code, ErrorCode::InvalidRequest.code());
        }
    }
}
