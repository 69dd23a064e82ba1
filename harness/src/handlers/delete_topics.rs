//! DeleteTopics (key 20), v1-6: deletes topics by name, and in v6 by id (KIP-516).

use std::collections::HashMap;
use std::sync::Arc;

use franzy::proto::ErrorCode;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use uuid::Uuid;

use super::{text, topic_name, RequestContext};
use crate::cluster::ClusterState;

/// Serves a DeleteTopics request.
pub fn handle(
    cluster: &mut ClusterState,
    ctx: &RequestContext,
    req: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let version = ctx.api_version;
    let targets = targets(&req, version);
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut ids: HashMap<Uuid, usize> = HashMap::new();
    for (name, id) in &targets {
        if let Some(name) = name {
            *names.entry(name.clone()).or_default() += 1;
        } else {
            *ids.entry(*id).or_default() += 1;
        }
    }
    let responses = targets
        .into_iter()
        .map(|(name, id)| {
            let result = DeletableTopicResult::default().with_name(name.as_deref().map(topic_name));
            let fail = |result: DeletableTopicResult, code: ErrorCode, message: &str| {
                let mut r = result.with_error_code(code.code());
                if version >= 5 {
                    r.error_message = Some(text(message));
                }
                r
            };
            match name {
                Some(_) if !id.is_nil() => fail(
                    result.with_topic_id(id),
                    ErrorCode::InvalidRequest,
                    "You may not specify both topic name and topic id.",
                ),
                Some(name) if names.get(&name).copied().unwrap_or(0) > 1 => {
                    fail(result, ErrorCode::InvalidRequest, "Duplicate topic name.")
                }
                Some(name) => match cluster.delete_topic(&name) {
                    Ok(id) if version >= 6 => result.with_topic_id(id),
                    Ok(_) => result,
                    Err(code) => fail(
                        result,
                        code,
                        "This server does not host this topic-partition.",
                    ),
                },
                None if ids.get(&id).copied().unwrap_or(0) > 1 => fail(
                    result.with_topic_id(id),
                    ErrorCode::InvalidRequest,
                    "Duplicate topic id.",
                ),
                None => match cluster.delete_topic_by_id(id) {
                    Ok(name) => result.with_topic_id(id).with_name(Some(topic_name(&name))),
                    Err(code) => fail(
                        result.with_topic_id(id).with_name(None),
                        code,
                        "This server does not host this topic ID.",
                    ),
                },
            }
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}

/// The answer that fails every topic of `req` with `code`.
pub fn error_response(
    req: &DeleteTopicsRequest,
    version: i16,
    code: ErrorCode,
) -> DeleteTopicsResponse {
    let responses = targets(req, version)
        .into_iter()
        .map(|(name, id)| {
            let mut r = DeletableTopicResult::default()
                .with_name(name.as_deref().map(topic_name))
                .with_error_code(code.code());
            if version >= 6 {
                r.topic_id = id;
            }
            r
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}

/// The topics of `req` (partition -1), ids resolved by `resolve`.
pub fn partitions(
    resolve: &dyn Fn(Uuid) -> Option<Arc<str>>,
    req: &DeleteTopicsRequest,
    version: i16,
) -> Vec<(Arc<str>, i32)> {
    targets(req, version)
        .into_iter()
        .filter_map(|(name, id)| name.map(Arc::from).or_else(|| resolve(id)))
        .map(|n| (n, -1))
        .collect()
}

/// (name, id) of each topic named, in request order.
fn targets(req: &DeleteTopicsRequest, version: i16) -> Vec<(Option<String>, Uuid)> {
    if version >= 6 {
        req.topics
            .iter()
            .map(|t| {
                (
                    t.name
                        .as_ref()
                        .map(|n: &TopicName| n.0.as_str().to_string()),
                    t.topic_id,
                )
            })
            .collect()
    } else {
        req.topic_names
            .iter()
            .map(|n| (Some(n.0.as_str().to_string()), Uuid::nil()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::test_support::{assert_encodes, cluster_with, ctx};
    use franzy::proto::ResponseKind;
    use kafka_protocol::messages::delete_topics_request::DeleteTopicState;

    #[test]
    fn deletes_by_name_and_by_id() {
        let mut c = cluster_with(1);
        c.create_topic("u", 1, Default::default()).expect("create");
        let id = c.topic("u").map_or(Uuid::nil(), |t| t.id());
        let req = DeleteTopicsRequest::default()
            .with_topic_names(vec![topic_name("t"), topic_name("nope")]);
        let r = handle(&mut c, &ctx(0, 5), req);
        let codes: Vec<i16> = r.responses.iter().map(|t| t.error_code).collect();
        assert_eq!(codes, vec![0, ErrorCode::UnknownTopicOrPartition.code()]);
        assert_encodes(&ResponseKind::DeleteTopics(r), 5);
        assert!(c.topic("t").is_none());
        let req = DeleteTopicsRequest::default().with_topics(vec![
            DeleteTopicState::default()
                .with_name(None)
                .with_topic_id(id),
            DeleteTopicState::default()
                .with_name(None)
                .with_topic_id(Uuid::from_u128(5)),
            DeleteTopicState::default()
                .with_name(Some(topic_name("x")))
                .with_topic_id(Uuid::from_u128(5)),
        ]);
        let r = handle(&mut c, &ctx(0, 6), req);
        let got: Vec<(i16, Option<&str>)> = r
            .responses
            .iter()
            .map(|t| (t.error_code, t.name.as_ref().map(|n| n.0.as_str())))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, Some("u")),
                (ErrorCode::UnknownTopicId.code(), None),
                (ErrorCode::InvalidRequest.code(), Some("x")),
            ]
        );
        assert_encodes(&ResponseKind::DeleteTopics(r), 6);
        assert!(c.topics().next().is_none());
    }
}
