//! ApiVersions (key 18): the versions this broker implements (KIP-35, KIP-511).
//!
//! A client that asks for a version we do not implement gets a v0-shaped answer with
//! UNSUPPORTED_VERSION and the full list, so that it can retry with a version we know; that
//! answer is built by [`unsupported_version_response`] before any body is decoded.

use franzy::proto::ErrorCode;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

use super::{supported_versions, RequestContext};
use crate::cluster::ClusterState;

/// Answers with every API and version range in [`supported_versions`].
pub fn handle(
    _cluster: &ClusterState,
    _ctx: &RequestContext,
    _req: ApiVersionsRequest,
) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(advertised())
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

fn advertised() -> Vec<ApiVersion> {
    supported_versions()
        .iter()
        .map(|(key, range)| {
            ApiVersion::default()
                .with_api_key(*key as i16)
                .with_min_version(range.min)
                .with_max_version(range.max)
        })
        .collect()
}
