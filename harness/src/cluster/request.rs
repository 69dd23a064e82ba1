//! A request as the state sees it: what a handler knows besides the body
//! ([`RequestContext`]), and a request waiting in the purgatory ([`Parked`]).

use std::collections::HashMap;

use franzy::proto::{ApiKey, ErrorCode, RequestKind};

use super::clock::Time;
use super::purgatory::WaiterId;

/// What a handler knows about the request besides its body.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The request's API.
    pub api_key: ApiKey,
    /// The request's API version.
    pub api_version: i16,
    /// The broker the request arrived at.
    pub broker_id: i32,
    /// The client id from the request header.
    pub client_id: Option<String>,
    /// Who waits if the request is parked: the connection it came on (a connection answers
    /// in order, so it has at most one request waiting). A coordinator that parks a request
    /// keeps this to resolve it later.
    pub waiter: WaiterId,
    /// Cluster time when the request was handled: deadlines count from it. Injected, never
    /// read inside handlers.
    pub now: Time,
    /// Wall-clock time in milliseconds since the Unix epoch at `now`, for timestamps
    /// (log-append time, ListOffsets by timestamp).
    pub now_ms: i64,
    /// Errors injected for single partitions of this request, by (topic name, partition).
    /// A handler that serves per-partition results answers these instead of doing the work.
    pub partition_errors: HashMap<(String, i32), ErrorCode>,
}

impl RequestContext {
    /// The error injected for `topic`/`partition`, if any (no allocation when none was).
    pub fn partition_error(&self, topic: &str, partition: i32) -> Option<ErrorCode> {
        if self.partition_errors.is_empty() {
            return None;
        }
        self.partition_errors
            .get(&(topic.to_string(), partition))
            .copied()
    }
}

/// A request waiting in the purgatory: its body, moved in whole, and its context. Its keys
/// and deadline are the purgatory's ([`super::purgatory::Wait`]).
#[derive(Debug)]
pub struct Parked {
    /// The request.
    pub request: RequestKind,
    /// Its context as when it was first handled (`now` is when it started waiting).
    pub context: RequestContext,
}
