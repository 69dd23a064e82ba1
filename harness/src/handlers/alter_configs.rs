//! AlterConfigs (key 33), v0-2: replaces a resource's configs as a whole (the predecessor of
//! IncrementalAlterConfigs): every config named is set, every other config set on the topic
//! (or set dynamically on the broker, or cluster-wide for an empty broker name) goes back
//! to its default. Resources are answered one by one with the same checks as
//! [`super::incremental_alter_configs`].

use franzy::proto::ErrorCode;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};

use super::describe_configs::RESOURCE_TOPIC;
use super::{incremental_alter_configs, text, RequestContext};
use crate::cluster::ClusterState;

/// Serves an AlterConfigs request.
pub fn handle(
    cluster: &mut ClusterState,
    _ctx: &RequestContext,
    req: AlterConfigsRequest,
) -> AlterConfigsResponse {
    let max_entries = cluster.config().max_partitions_per_request;
    let duplicates = incremental_alter_configs::duplicate_resources(
        req.resources
            .iter()
            .map(|r| (r.resource_type, r.resource_name.as_str())),
    );
    let responses = req
        .resources
        .iter()
        .enumerate()
        .map(|(position, resource)| {
            let name = resource.resource_name.as_str();
            let outcome = if let Some(refused) = incremental_alter_configs::refused_resource(
                position,
                max_entries,
                &duplicates,
                (resource.resource_type, name),
            ) {
                Err(refused)
            } else {
                let configs: Vec<(&str, Option<&str>)> = resource
                    .configs
                    .iter()
                    .map(|c| (c.name.as_str(), c.value.as_ref().map(|v| v.as_str())))
                    .collect();
                incremental_alter_configs::replace(
                    cluster,
                    resource.resource_type,
                    name,
                    &configs,
                    req.validate_only,
                )
            };
            let response = AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            match outcome {
                Ok(()) => response.with_error_message(None),
                Err((code, message)) => response
                    .with_error_code(code.code())
                    .with_error_message(Some(text(&message))),
            }
        })
        .collect();
    AlterConfigsResponse::default().with_responses(responses)
}

/// The answer that fails every resource of `req` with `code`.
pub fn error_response(
    req: &AlterConfigsRequest,
    _version: i16,
    code: ErrorCode,
) -> AlterConfigsResponse {
    let responses = req
        .resources
        .iter()
        .map(|r| {
            AlterConfigsResourceResponse::default()
                .with_error_code(code.code())
                .with_error_message(None)
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone())
        })
        .collect();
    AlterConfigsResponse::default().with_responses(responses)
}

/// The topics `req` alters (partition -1: the whole topic).
pub fn partitions(req: &AlterConfigsRequest) -> super::TopicPartitions {
    req.resources
        .iter()
        .filter(|r| r.resource_type == RESOURCE_TOPIC)
        .map(|r| (std::sync::Arc::from(r.resource_name.as_str()), -1))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::test_support::{cluster_with, ctx};
    use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};

    fn request(configs: &[(&str, &str)]) -> AlterConfigsRequest {
        AlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
            .with_resource_type(RESOURCE_TOPIC)
            .with_resource_name(text("t"))
            .with_configs(
                configs
                    .iter()
                    .map(|(n, v)| {
                        AlterableConfig::default()
                            .with_name(text(n))
                            .with_value(Some(text(v)))
                    })
                    .collect(),
            )])
    }

    #[test]
    fn configs_not_named_go_back_to_their_defaults() {
        let mut c = cluster_with(1);
        let r = handle(
            &mut c,
            &ctx(0, 2),
            request(&[("retention.ms", "5"), ("segment.ms", "60000")]),
        );
        assert_eq!(r.responses[0].error_code, 0);
        let r = handle(&mut c, &ctx(0, 2), request(&[("segment.ms", "70000")]));
        assert_eq!(r.responses[0].error_code, 0);
        let topic = c.topic("t").expect("exists");
        assert_eq!(topic.config("retention.ms"), None);
        assert_eq!(topic.config("segment.ms"), Some("70000"));
        let r = handle(&mut c, &ctx(0, 2), request(&[("no.such.config", "1")]));
        assert_eq!(r.responses[0].error_code, ErrorCode::InvalidConfig.code());
    }
}
