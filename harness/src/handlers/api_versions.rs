//! ApiVersions (key 18): the versions this broker serves (KIP-35, KIP-511).
//!
//! The list is every entry of [`APIS`] within the cluster's caps
//! ([`crate::kafka_version::ApiVersionCaps`]: a Kafka release to pose as, per-API maxima), so
//! it says exactly what the server serves. A client that asks for a version of ApiVersions
//! we do not serve gets a v0-shaped answer with UNSUPPORTED_VERSION that lists ApiVersions'
//! own range only, as Kafka's `ApiVersionsRequest.getErrorResponse` answers, so that it can
//! retry with a version we know; that answer is built by [`unsupported_version_response`]
//! before any body is decoded.

use franzy::proto::{ApiKey, ErrorCode};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::VersionRange;

use super::{served_range, RequestContext, APIS};
use crate::cluster::{ClusterConfig, ClusterState};

/// Answers with every API and version range served. From v3 the client software name and
/// version must match Kafka's pattern (KIP-511), else INVALID_REQUEST with no API list, as
/// Kafka answers.
pub fn handle(
    cluster: &ClusterState,
    ctx: &RequestContext,
    req: ApiVersionsRequest,
) -> ApiVersionsResponse {
    if ctx.api_version >= 3
        && !(valid_software_field(req.client_software_name.as_str())
            && valid_software_field(req.client_software_version.as_str()))
    {
        return ApiVersionsResponse::default().with_error_code(ErrorCode::InvalidRequest.code());
    }
    ApiVersionsResponse::default().with_api_keys(advertised(cluster.config()))
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

/// The error answer for a whole ApiVersions request (an interceptor's): the code, and for
/// UNSUPPORTED_VERSION ApiVersions' own range, as Kafka answers.
pub fn error_response(_version: i16, code: ErrorCode) -> ApiVersionsResponse {
    let own =
        super::supported_range(ApiKey::ApiVersions).unwrap_or(VersionRange { min: 0, max: 0 });
    let response = ApiVersionsResponse::default().with_error_code(code.code());
    if code == ErrorCode::UnsupportedVersion {
        return response.with_api_keys(vec![entry(ApiKey::ApiVersions, own)]);
    }
    response
}

/// The answer to an ApiVersions request of a version outside `served` (ApiVersions' range
/// on this cluster), to be encoded as version 0.
pub fn unsupported_version_response(served: VersionRange) -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(ErrorCode::UnsupportedVersion.code())
        .with_api_keys(vec![entry(ApiKey::ApiVersions, served)])
}

/// Every entry of the API table served under `config`'s caps, in key order.
pub fn advertised(config: &ClusterConfig) -> Vec<ApiVersion> {
    APIS.iter()
        .filter_map(|spec| Some(entry(spec.key, served_range(config, spec.key)?)))
        .collect()
}

fn entry(api: ApiKey, range: VersionRange) -> ApiVersion {
    ApiVersion::default()
        .with_api_key(api as i16)
        .with_min_version(range.min)
        .with_max_version(range.max)
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
    }

    #[test]
    fn an_unsupported_version_is_answered_with_api_versions_own_range_only() {
        let r = unsupported_version_response(VersionRange { min: 0, max: 3 });
        assert_eq!(r.error_code, ErrorCode::UnsupportedVersion.code());
        let listed: Vec<(i16, i16, i16)> = r
            .api_keys
            .iter()
            .map(|k| (k.api_key, k.min_version, k.max_version))
            .collect();
        assert_eq!(listed, vec![(ApiKey::ApiVersions as i16, 0, 3)]);
        assert!(error_response(3, ErrorCode::NotController)
            .api_keys
            .is_empty());
        assert_eq!(
            error_response(3, ErrorCode::UnsupportedVersion)
                .api_keys
                .len(),
            1
        );
    }
}
