//! One file per API key. A handler is a pure function of the cluster state and one decoded
//! request: it never touches sockets or clocks (time comes in [`RequestContext::now_ms`]).
//!
//! Call order, as the server drives it (see `server.rs`):
//! 1. the server decodes the frame and checks the version against [`supported_versions`]
//!    (an unsupported ApiVersions request gets [`api_versions::unsupported_version_response`]);
//! 2. `control.rs` matches interceptors; a request-level error becomes [`error_response`],
//!    partition-level errors go into [`RequestContext::partition_errors`];
//! 3. [`dispatch`] runs the handler. A fetch that cannot yet satisfy `min_bytes` answers
//!    [`Reply::Park`]; the server calls it again whenever a log grows, and a last time with
//!    `deadline_reached = true` when its wait is over.

use std::collections::HashMap;
use std::time::Duration;

use franzy::proto::{ApiKey, ErrorCode, RequestKind, ResponseKind};
use kafka_protocol::protocol::VersionRange;

use crate::cluster::ClusterState;

pub mod api_versions;

/// What a handler knows about the request besides its body.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The broker the request arrived at.
    pub broker_id: i32,
    /// The request's API version.
    pub api_version: i16,
    /// The client id from the request header.
    pub client_id: Option<String>,
    /// Wall-clock time in milliseconds since the Unix epoch, for timestamps
    /// (log-append time, ListOffsets by timestamp). Injected, never read inside handlers.
    pub now_ms: i64,
    /// Errors injected for single partitions of this request, by (topic name, partition).
    /// A handler that serves per-partition results answers these instead of doing the work.
    pub partition_errors: HashMap<(String, i32), ErrorCode>,
    /// True on the last call for a parked fetch: answer with whatever is there.
    pub deadline_reached: bool,
}

/// A handler's answer.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // short-lived, one per request
pub enum Reply {
    /// Send this response.
    Respond(ResponseKind),
    /// Send nothing (a produce with acks=0).
    NoResponse,
    /// Not enough data for a fetch yet: call again when a log grows, and once more with
    /// `deadline_reached` after `max_wait`.
    Park {
        /// How long the request may wait, from its first arrival.
        max_wait: Duration,
    },
}

/// The versions this harness implements, per API: exactly what the handlers serve, and so
/// exactly what ApiVersions advertises.
pub fn supported_versions() -> &'static [(ApiKey, VersionRange)] {
    SUPPORTED
}

const fn range(min: i16, max: i16) -> VersionRange {
    VersionRange { min, max }
}

static SUPPORTED: &[(ApiKey, VersionRange)] = &[(ApiKey::ApiVersions, range(0, 4))];

/// The supported range for `api`, if the harness serves it.
pub fn supported_range(api: ApiKey) -> Option<VersionRange> {
    SUPPORTED
        .iter()
        .find(|(key, _)| *key == api)
        .map(|(_, r)| *r)
}

/// Runs the handler for `request`.
pub fn dispatch(cluster: &mut ClusterState, ctx: &RequestContext, request: RequestKind) -> Reply {
    match request {
        RequestKind::ApiVersions(req) => Reply::Respond(ResponseKind::ApiVersions(
            api_versions::handle(cluster, ctx, req),
        )),
        other => {
            // The server only dispatches APIs listed in `supported_versions`.
            tracing::error!(request = ?std::mem::discriminant(&other), "no handler for request");
            Reply::NoResponse
        }
    }
}

/// The response to `request` that reports `code` for the whole request (every topic and
/// partition it names, or its top-level error field), as a broker that fails the request
/// would send. `None` for APIs that have no way to report an error.
pub fn error_response(
    request: &RequestKind,
    api_version: i16,
    code: ErrorCode,
) -> Option<ResponseKind> {
    match request {
        RequestKind::ApiVersions(_) => Some(ResponseKind::ApiVersions(
            api_versions::error_response(api_version, code),
        )),
        _ => None,
    }
}

/// The (topic name, partition) pairs a request names, for interceptors narrowed to a
/// partition. Requests that name topics by id (Fetch v13+, Produce v13+) are resolved
/// through `cluster`.
pub fn partitions_of(_cluster: &ClusterState, _request: &RequestKind) -> Vec<(String, i32)> {
    Vec::new()
}
