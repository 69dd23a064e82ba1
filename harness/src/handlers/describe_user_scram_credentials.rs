//! DescribeUserScramCredentials (key 50), v0 (KIP-554). The harness keeps no SCRAM
//! credentials in its cluster state (a listener's SASL users live with the listener), so
//! every named user is RESOURCE_NOT_FOUND and asking for all users lists none, as Kafka
//! answers with no credentials stored. A user named twice is DUPLICATE_RESOURCE, and an
//! empty name RESOURCE_NOT_FOUND, as in Kafka's `ControllerApis`/`KafkaApis`.

use std::collections::HashMap;

use franzy::proto::ErrorCode;
use kafka_protocol::messages::describe_user_scram_credentials_response::DescribeUserScramCredentialsResult;
use kafka_protocol::messages::{
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};

use super::{text, RequestContext};
use crate::cluster::ClusterState;

/// Serves a DescribeUserScramCredentials request.
pub fn handle(
    cluster: &ClusterState,
    _ctx: &RequestContext,
    req: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    let users = req.users.unwrap_or_default();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for user in &users {
        *counts.entry(user.name.as_str()).or_default() += 1;
    }
    let max_entries = cluster.config().max_partitions_per_request;
    let results = users
        .iter()
        .enumerate()
        .map(|(position, user)| {
            let name = user.name.as_str();
            let (code, message) = if position >= max_entries {
                (
                    ErrorCode::InvalidRequest,
                    "Too many users in the request".to_string(),
                )
            } else if counts.get(name).copied().unwrap_or(0) > 1 {
                (
                    ErrorCode::DuplicateResource,
                    "Cannot describe SCRAM credentials for the same user twice in a single request"
                        .to_string(),
                )
            } else {
                (
                    ErrorCode::ResourceNotFound,
                    format!("Attempt to describe a user credential that does not exist: {name}"),
                )
            };
            DescribeUserScramCredentialsResult::default()
                .with_user(user.name.clone())
                .with_error_code(code.code())
                .with_error_message(Some(text(&message)))
        })
        .collect();
    DescribeUserScramCredentialsResponse::default()
        .with_error_message(None)
        .with_results(results)
}

/// The answer that fails `req` with `code`.
pub fn error_response(
    _req: &DescribeUserScramCredentialsRequest,
    _version: i16,
    code: ErrorCode,
) -> DescribeUserScramCredentialsResponse {
    DescribeUserScramCredentialsResponse::default().with_error_code(code.code())
}
