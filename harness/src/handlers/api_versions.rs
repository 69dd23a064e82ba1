//! ApiVersions (key 18): the versions this broker implements (KIP-35, KIP-511).
//!
//! A client that asks for a version we do not implement gets a v0-shaped answer with
//! UNSUPPORTED_VERSION and the full list, so that it can retry with a version we know; that
//! answer is built by [`unsupported_version_response`] before any body is decoded.

use franzy::proto::ErrorCode;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

use super::{RequestContext, APIS};
use crate::cluster::ClusterState;

/// Answers with every API and version range in [`APIS`]. From v3 the client
/// software name and version must match Kafka's pattern (KIP-511), else INVALID_REQUEST
/// with no API list, as Kafka answers.
pub fn handle(
    _cluster: &ClusterState,
    ctx: &RequestContext,
    req: ApiVersionsRequest,
) -> ApiVersionsResponse {
    if ctx.api_version >= 3
        && !(valid_software_field(req.client_software_name.as_str())
            && valid_software_field(req.client_software_version.as_str()))
    {
        return ApiVersionsResponse::default().with_error_code(ErrorCode::InvalidRequest.code());
    }
    ApiVersionsResponse::default().with_api_keys(advertised())
}

/// Kafka's `[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?`.
fn valid_software_field(value: &str) -> bool {
    let bytes = value.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    first.is_ascii_alphanumeric()
        && last.is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'.')
}

/// The error answer for a whole ApiVersions request.
pub fn error_response(_version: i16, code: ErrorCode) -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(code.code())
        .with_api_keys(advertised())
}

/// The answer to an ApiVersions request of a version we do not implement, to be encoded
/// as version 0.
pub fn unsupported_version_response() -> ApiVersionsResponse {
    error_response(0, ErrorCode::UnsupportedVersion)
}

/// Every entry of the API table, as served.
fn advertised() -> Vec<ApiVersion> {
    APIS.iter()
        .map(|spec| {
            ApiVersion::default()
                .with_api_key(spec.key as i16)
                .with_min_version(spec.versions.min)
                .with_max_version(spec.versions.max)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::test_support::{cluster_with, ctx};
    use franzy::proto::StrBytes;

    #[test]
    fn lists_every_supported_api_and_checks_software_names() {
        let c = cluster_with(1);
        let req = |name: &'static str| {
            ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str(name))
                .with_client_software_version(StrBytes::from_static_str("2.3.0"))
        };
        let r = handle(&c, &ctx(0, 3), req("librdkafka"));
        assert_eq!(r.error_code, 0);
        assert_eq!(r.api_keys.len(), APIS.len());
        let r = handle(&c, &ctx(0, 3), req("bad name!"));
        assert_eq!(r.error_code, ErrorCode::InvalidRequest.code());
        assert!(r.api_keys.is_empty());
        // Before v3 the fields do not exist.
        assert_eq!(handle(&c, &ctx(0, 2), req("")).error_code, 0);
        assert_eq!(
            unsupported_version_response().error_code,
            ErrorCode::UnsupportedVersion.code()
        );
    }
}
