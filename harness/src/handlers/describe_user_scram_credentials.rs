//! DescribeUserScramCredentials (key 50), v0 (KIP-554): the SCRAM users of the listeners
//! (`ListenerSecurity::user` with a SCRAM mechanism enabled), each with one credential per
//! SCRAM mechanism and the listener's iterations. No users named (null or empty) lists
//! them all; a named user without credentials is RESOURCE_NOT_FOUND, a user named twice
//! DUPLICATE_RESOURCE, as in Kafka's `ScramControlManager.describeScramCredentials`.

use std::collections::HashMap;

use franzy::proto::ErrorCode;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
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
    let known = cluster.scram_users();
    if users.is_empty() {
        let results = known
            .iter()
            .map(|(user, credentials)| found(user, credentials))
            .collect();
        return DescribeUserScramCredentialsResponse::default()
            .with_error_message(None)
            .with_results(results);
    }
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
            } else if let Some(credentials) = known.get(name) {
                return found(name, credentials);
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

/// A user's result with its credentials.
fn found(user: &str, credentials: &[(i8, i32)]) -> DescribeUserScramCredentialsResult {
    DescribeUserScramCredentialsResult::default()
        .with_user(text(user))
        .with_error_message(None)
        .with_credential_infos(
            credentials
                .iter()
                .map(|(mechanism, iterations)| {
                    CredentialInfo::default()
                        .with_mechanism(*mechanism)
                        .with_iterations(*iterations)
                })
                .collect(),
        )
}

/// The answer that fails `req` with `code`.
pub fn error_response(
    _req: &DescribeUserScramCredentialsRequest,
    _version: i16,
    code: ErrorCode,
) -> DescribeUserScramCredentialsResponse {
    DescribeUserScramCredentialsResponse::default().with_error_code(code.code())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::test_support::{cluster_with, ctx};
    use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
    use std::collections::BTreeMap;

    /// A user's name, error code and credentials (mechanism, iterations).
    type Described = (String, i16, Vec<(i8, i32)>);

    fn ask(cluster: &ClusterState, users: Option<&[&str]>) -> Vec<Described> {
        let req = DescribeUserScramCredentialsRequest::default().with_users(users.map(|u| {
            u.iter()
                .map(|n| UserName::default().with_name(text(n)))
                .collect()
        }));
        handle(cluster, &ctx(0, 0), req)
            .results
            .iter()
            .map(|r| {
                (
                    r.user.to_string(),
                    r.error_code,
                    r.credential_infos
                        .iter()
                        .map(|c| (c.mechanism, c.iterations))
                        .collect(),
                )
            })
            .collect()
    }

    #[test]
    fn the_listeners_users_are_described_and_others_are_not_found() {
        let mut c = cluster_with(1);
        assert_eq!(ask(&c, None), vec![]);
        c.set_scram_users(BTreeMap::from([
            ("alice".to_string(), vec![(1, 4096), (2, 4096)]),
            ("bob".to_string(), vec![(1, 4096), (2, 4096)]),
        ]));
        let all = ask(&c, None);
        assert_eq!(
            all.iter().map(|(u, _, _)| u.as_str()).collect::<Vec<_>>(),
            vec!["alice", "bob"]
        );
        assert_eq!(all[0].2, vec![(1, 4096), (2, 4096)]);
        assert_eq!(ask(&c, Some(&[])), all, "an empty list asks for everyone");
        let named = ask(&c, Some(&["bob", "carol"]));
        assert_eq!((named[0].1, named[0].2.len()), (0, 2));
        assert_eq!(
            (named[1].1, named[1].2.len()),
            (ErrorCode::ResourceNotFound.code(), 0)
        );
        let twice = ask(&c, Some(&["bob", "bob"]));
        assert!(twice
            .iter()
            .all(|(_, code, _)| *code == ErrorCode::DuplicateResource.code()));
    }
}
