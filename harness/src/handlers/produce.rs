//! Produce (key 0), v3-13: appends one record batch per partition (KIP-98 framing; KIP-951
//! leader hints in v10+; topic ids in v13, KIP-516).
//!
//! Per partition, in Kafka's order: unknown topic (id) or partition, injected error, the
//! request-level record checks (exactly one magic-v2 batch; no zstd before v7), acks,
//! leadership, `min.insync.replicas` for acks=-1, then the log's own checks and the append.
//! Replication is instant, so acks=1 and acks=-1 answer the same. Produce never creates
//! topics (Kafka only auto-creates on Metadata). acks=0 gets no response at all; when a
//! partition of an acks=0 request fails, the connection is closed instead, as Kafka does.

use std::collections::BTreeSet;

use franzy::proto::batch_header::BatchHeader;
use franzy::proto::ErrorCode;
use kafka_protocol::messages::produce_response::{
    LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
use uuid::Uuid;

use super::{text, Reply, RequestContext};
use crate::cluster::{log_validator, ClusterError, ClusterState};

/// Serves a produce request.
pub fn handle(cluster: &mut ClusterState, ctx: &RequestContext, req: ProduceRequest) -> Reply {
    let version = ctx.api_version;
    let mut leaders: BTreeSet<i32> = BTreeSet::new();
    let mut responses = Vec::with_capacity(req.topic_data.len());
    for topic in req.topic_data {
        let name = if version >= 13 {
            cluster
                .topic_by_id(topic.topic_id)
                .map(|t| t.name().to_string())
        } else {
            Some(topic.name.0.as_str().to_string())
        };
        // Kafka keys partitions in a map: a repeated partition is produced once, last wins.
        let count = topic.partition_data.len();
        let mut partition_responses = Vec::with_capacity(count);
        for (i, data) in topic.partition_data.iter().enumerate() {
            let later = topic.partition_data[i + 1..]
                .iter()
                .any(|d| d.index == data.index);
            if later {
                continue;
            }
            let result = match &name {
                None => Err(ClusterError::code(ErrorCode::UnknownTopicId)),
                Some(name) => produce_partition(
                    cluster,
                    ctx,
                    req.acks,
                    name,
                    data.index,
                    data.records.as_deref(),
                ),
            };
            let response = match result {
                Ok(p) => p,
                Err(e) => {
                    let mut p = failed(data.index, &e, version);
                    if version >= 10 && e.code == ErrorCode::NotLeaderOrFollower {
                        if let Some(leader) = name
                            .as_deref()
                            .and_then(|n| cluster.partition(n, data.index))
                            .filter(|p| p.leader() >= 0)
                        {
                            leaders.insert(leader.leader());
                            p.current_leader = LeaderIdAndEpoch::default()
                                .with_leader_id(leader.leader().into())
                                .with_leader_epoch(leader.leader_epoch());
                        }
                    }
                    p
                }
            };
            partition_responses.push(response);
        }
        let mut response =
            TopicProduceResponse::default().with_partition_responses(partition_responses);
        if version >= 13 {
            response.topic_id = topic.topic_id;
        } else {
            response.name = topic.name;
        }
        responses.push(response);
    }
    if req.acks == 0 {
        let failed = responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .find(|p| p.error_code != 0);
        return match failed {
            Some(p) => Reply::Close {
                reason: format!(
                    "acks=0 produce failed on partition {} with error {}",
                    p.index, p.error_code
                ),
            },
            None => Reply::NoResponse,
        };
    }
    let node_endpoints = leaders
        .into_iter()
        .filter_map(|id| cluster.broker(id))
        .map(|b| {
            NodeEndpoint::default()
                .with_node_id(b.id.into())
                .with_host(text(&b.host))
                .with_port(b.port)
        })
        .collect();
    let mut response = ProduceResponse::default().with_responses(responses);
    if version >= 10 {
        response.node_endpoints = node_endpoints;
    }
    Reply::Respond(franzy::proto::ResponseKind::Produce(response))
}

/// The answer that fails every partition of `req` with `code`.
pub fn error_response(req: &ProduceRequest, version: i16, code: ErrorCode) -> ProduceResponse {
    let error = ClusterError::code(code);
    let responses = req
        .topic_data
        .iter()
        .map(|topic| {
            let partitions = topic
                .partition_data
                .iter()
                .map(|p| failed(p.index, &error, version))
                .collect();
            let mut response = TopicProduceResponse::default().with_partition_responses(partitions);
            if version >= 13 {
                response.topic_id = topic.topic_id;
            } else {
                response.name = topic.name.clone();
            }
            response
        })
        .collect();
    ProduceResponse::default().with_responses(responses)
}

/// The (topic, partition) pairs of `req`, topic ids resolved through `cluster`.
pub fn partitions(
    cluster: &ClusterState,
    req: &ProduceRequest,
    version: i16,
) -> Vec<(String, i32)> {
    req.topic_data
        .iter()
        .filter_map(|topic| {
            let name = resolve(cluster, version, &topic.name, topic.topic_id)?;
            Some(
                topic
                    .partition_data
                    .iter()
                    .map(move |p| (name.clone(), p.index)),
            )
        })
        .flatten()
        .collect()
}

fn resolve(cluster: &ClusterState, version: i16, name: &TopicName, id: Uuid) -> Option<String> {
    if version >= 13 {
        cluster.topic_by_id(id).map(|t| t.name().to_string())
    } else {
        Some(name.0.as_str().to_string())
    }
}

fn produce_partition(
    cluster: &mut ClusterState,
    ctx: &RequestContext,
    acks: i16,
    topic: &str,
    partition: i32,
    records: Option<&[u8]>,
) -> Result<PartitionProduceResponse, ClusterError> {
    if cluster.partition(topic, partition).is_none() {
        return Err(ClusterError::code(ErrorCode::UnknownTopicOrPartition));
    }
    if let Some(code) = ctx.partition_errors.get(&(topic.to_string(), partition)) {
        return Err(ClusterError::code(*code));
    }
    let batch = log_validator::single_batch(records.unwrap_or_default())?;
    if ctx.api_version < 7 {
        if let Ok(header) = BatchHeader::parse(batch) {
            if header.attributes.compression_id() == 4 {
                return Err(ClusterError::new(
                    ErrorCode::UnsupportedCompressionType,
                    "Produce requests with version below 7 are not allowed to use ZStandard compression",
                ));
            }
        }
    }
    if !matches!(acks, -1..=1) {
        return Err(ClusterError::code(ErrorCode::InvalidRequiredAcks));
    }
    let p = cluster.client_partition(topic, partition, ctx.broker_id, -1, true)?;
    if acks == -1 {
        let min_isr = cluster
            .topic(topic)
            .and_then(|t| t.config("min.insync.replicas"))
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(1);
        if p.isr().len() < min_isr {
            return Err(ClusterError::new(
                ErrorCode::NotEnoughReplicas,
                format!(
                    "The size of the current ISR {} is insufficient to satisfy the min.isr requirement of {min_isr} for partition {topic}-{partition}",
                    p.isr().len()
                ),
            ));
        }
    }
    let info = cluster.append_records(topic, partition, batch, ctx.now_ms)?;
    Ok(PartitionProduceResponse::default()
        .with_index(partition)
        .with_base_offset(info.base_offset)
        .with_log_append_time_ms(info.log_append_time_ms)
        .with_log_start_offset(info.log_start_offset))
}

fn failed(index: i32, error: &ClusterError, version: i16) -> PartitionProduceResponse {
    let mut p = PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(error.code.code())
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1);
    if version >= 8 {
        p.error_message = error.message.as_deref().map(text);
        if let Some(index) = error.record_index {
            p.record_errors = vec![
                kafka_protocol::messages::produce_response::BatchIndexAndErrorMessage::default()
                    .with_batch_index(index)
                    .with_batch_index_error_message(error.message.as_deref().map(text)),
            ];
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::test_batches::BatchBuilder;
    use crate::handlers::test_support::{assert_encodes, cluster_with, ctx, NOW};
    use bytes::Bytes;
    use franzy::proto::ResponseKind;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use std::collections::BTreeMap;

    fn request(acks: i16, topic: &str, id: Uuid, partition: i32, records: Bytes) -> ProduceRequest {
        ProduceRequest::default()
            .with_acks(acks)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(super::super::topic_name(topic))
                .with_topic_id(id)
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(records))])])
    }

    fn produce_at(
        cluster: &mut ClusterState,
        broker: i32,
        version: i16,
        acks: i16,
        partition: i32,
        records: Bytes,
    ) -> ProduceResponse {
        let id = cluster.topic("t").map_or(Uuid::nil(), |t| t.id());
        let req = request(acks, "t", id, partition, records);
        match handle(cluster, &ctx(broker, version), req) {
            Reply::Respond(r) => {
                assert_encodes(&r, version);
                match r {
                    ResponseKind::Produce(r) => r,
                    other => panic!("unexpected {other:?}"),
                }
            }
            other => panic!("expected a response, got {other:?}"),
        }
    }

    fn first(r: &ProduceResponse) -> &PartitionProduceResponse {
        &r.responses[0].partition_responses[0]
    }

    #[test]
    fn offsets_are_assigned_across_batches_at_every_version() {
        let mut c = cluster_with(1);
        let mut expected = 0;
        for version in 3..=13 {
            let r = produce_at(
                &mut c,
                0,
                version,
                -1,
                0,
                BatchBuilder::new(NOW).records(2, 3).bytes(),
            );
            let p = first(&r);
            assert_eq!((p.error_code, p.base_offset), (0, expected), "v{version}");
            assert_eq!((p.log_append_time_ms, p.log_start_offset), (-1, 0));
            expected += 2;
        }
        assert_eq!(
            c.partition_log("t", 0).map(|l| l.high_watermark()),
            Some(expected)
        );
    }

    #[test]
    fn stored_bytes_are_the_producers_except_offset_and_epoch() {
        let mut c = cluster_with(1);
        let batch = BatchBuilder::new(NOW).records(3, 10).build();
        produce_at(&mut c, 0, 9, 1, 0, Bytes::from(batch.clone()));
        let stored = c.partition_log("t", 0).expect("log").batches()[0]
            .bytes()
            .clone();
        assert_eq!(stored.len(), batch.len());
        assert_eq!(stored[16..], batch[16..]);
        assert_eq!(stored[8..12], batch[8..12]);
        assert_eq!(stored[12..16], 0i32.to_be_bytes());
    }

    #[test]
    fn log_append_time_topics_stamp_the_batch() {
        let mut c = cluster_with(1);
        let configs = BTreeMap::from([("message.timestamp.type".into(), "LogAppendTime".into())]);
        c.create_topic("lat", 1, configs).expect("create");
        let req = request(
            1,
            "lat",
            Uuid::nil(),
            0,
            BatchBuilder::new(5).record(b"x").bytes(),
        );
        let leader = c.partition("lat", 0).map_or(-1, |p| p.leader());
        let Reply::Respond(ResponseKind::Produce(r)) = handle(&mut c, &ctx(leader, 9), req) else {
            panic!("expected a produce response");
        };
        assert_eq!(first(&r).log_append_time_ms, NOW);
    }

    #[test]
    fn corrupt_oversized_and_malformed_batches_are_refused() {
        let mut c = cluster_with(1);
        let mut bad = BatchBuilder::new(NOW).records(2, 3).build();
        let last = bad.len() - 1;
        bad[last] ^= 0x55;
        let r = produce_at(&mut c, 0, 9, 1, 0, Bytes::from(bad));
        assert_eq!(first(&r).error_code, ErrorCode::CorruptMessage.code());
        assert_eq!(
            (first(&r).base_offset, first(&r).log_start_offset),
            (-1, -1)
        );
        assert!(first(&r).error_message.is_some());

        let big = BatchBuilder::new(NOW).records(2, 600_000).bytes();
        let r = produce_at(&mut c, 0, 9, 1, 0, big);
        assert_eq!(first(&r).error_code, ErrorCode::MessageTooLarge.code());

        let configs = BTreeMap::from([("max.message.bytes".into(), "100".into())]);
        c.create_topic("small", 1, configs).expect("create");
        let req = request(
            1,
            "small",
            Uuid::nil(),
            0,
            BatchBuilder::new(NOW).records(3, 30).bytes(),
        );
        let leader = c.partition("small", 0).map_or(-1, |p| p.leader());
        let Reply::Respond(ResponseKind::Produce(r)) = handle(&mut c, &ctx(leader, 9), req) else {
            panic!("expected a produce response");
        };
        assert_eq!(first(&r).error_code, ErrorCode::MessageTooLarge.code());

        let mut v1 = BatchBuilder::new(NOW).record(b"x").build();
        v1[16] = 1;
        let r = produce_at(&mut c, 0, 9, 1, 0, Bytes::from(v1));
        assert_eq!(first(&r).error_code, ErrorCode::InvalidRecord.code());

        let zstd = BatchBuilder::new(NOW)
            .record(b"x")
            .compression_id(4)
            .bytes();
        let r = produce_at(&mut c, 0, 6, 1, 0, zstd.clone());
        assert_eq!(
            first(&r).error_code,
            ErrorCode::UnsupportedCompressionType.code()
        );
        let r = produce_at(&mut c, 0, 7, 1, 0, zstd);
        assert_eq!(first(&r).error_code, 0);

        let r = produce_at(&mut c, 0, 9, 1, 0, Bytes::new());
        assert_eq!(first(&r).error_code, ErrorCode::InvalidRecord.code());
        assert_eq!(c.partition_log("t", 0).map(|l| l.log_end_offset()), Some(1));
    }

    #[test]
    fn a_follower_refuses_and_names_the_leader_from_v10() {
        let mut c = cluster_with(1);
        let r = produce_at(
            &mut c,
            1,
            9,
            1,
            0,
            BatchBuilder::new(NOW).record(b"x").bytes(),
        );
        assert_eq!(first(&r).error_code, ErrorCode::NotLeaderOrFollower.code());
        assert_eq!(first(&r).current_leader, LeaderIdAndEpoch::default());
        let r = produce_at(
            &mut c,
            1,
            10,
            1,
            0,
            BatchBuilder::new(NOW).record(b"x").bytes(),
        );
        assert_eq!(first(&r).current_leader.leader_id, 0);
        assert_eq!(r.node_endpoints.len(), 1);
        assert_eq!(
            (r.node_endpoints[0].node_id.0, r.node_endpoints[0].port),
            (0, 9092)
        );
    }

    #[test]
    fn unknown_topics_ids_partitions_and_bad_acks() {
        let mut c = cluster_with(1);
        let r = produce_at(
            &mut c,
            0,
            9,
            1,
            3,
            BatchBuilder::new(NOW).record(b"x").bytes(),
        );
        assert_eq!(
            first(&r).error_code,
            ErrorCode::UnknownTopicOrPartition.code()
        );
        let req = request(
            1,
            "nope",
            Uuid::nil(),
            0,
            BatchBuilder::new(NOW).record(b"x").bytes(),
        );
        let Reply::Respond(ResponseKind::Produce(r)) = handle(&mut c, &ctx(0, 9), req) else {
            panic!("expected a produce response");
        };
        assert_eq!(
            first(&r).error_code,
            ErrorCode::UnknownTopicOrPartition.code()
        );
        assert!(c.topic("nope").is_none(), "produce never creates topics");
        let req = request(
            1,
            "",
            Uuid::from_u128(42),
            0,
            BatchBuilder::new(NOW).record(b"x").bytes(),
        );
        let Reply::Respond(ResponseKind::Produce(r)) = handle(&mut c, &ctx(0, 13), req) else {
            panic!("expected a produce response");
        };
        assert_eq!(first(&r).error_code, ErrorCode::UnknownTopicId.code());
        assert_eq!(r.responses[0].topic_id, Uuid::from_u128(42));
        let r = produce_at(
            &mut c,
            0,
            9,
            2,
            0,
            BatchBuilder::new(NOW).record(b"x").bytes(),
        );
        assert_eq!(first(&r).error_code, ErrorCode::InvalidRequiredAcks.code());
    }

    #[test]
    fn acks_zero_is_never_answered_and_injected_errors_win() {
        let mut c = cluster_with(1);
        let req = request(
            0,
            "t",
            Uuid::nil(),
            0,
            BatchBuilder::new(NOW).record(b"x").bytes(),
        );
        assert!(matches!(handle(&mut c, &ctx(0, 9), req), Reply::NoResponse));
        assert_eq!(c.partition_log("t", 0).map(|l| l.log_end_offset()), Some(1));
        // A failing acks=0 produce closes the connection: the only signal the client gets.
        let req = request(
            0,
            "t",
            Uuid::nil(),
            5,
            BatchBuilder::new(NOW).record(b"x").bytes(),
        );
        assert!(matches!(
            handle(&mut c, &ctx(0, 9), req),
            Reply::Close { .. }
        ));
        let mut context = ctx(0, 9);
        context
            .partition_errors
            .insert(("t".into(), 0), ErrorCode::NotEnoughReplicas);
        let req = request(
            1,
            "t",
            Uuid::nil(),
            0,
            BatchBuilder::new(NOW).record(b"x").bytes(),
        );
        let Reply::Respond(ResponseKind::Produce(r)) = handle(&mut c, &context, req) else {
            panic!("expected a produce response");
        };
        assert_eq!(first(&r).error_code, ErrorCode::NotEnoughReplicas.code());
        assert_eq!(c.partition_log("t", 0).map(|l| l.log_end_offset()), Some(1));
    }

    #[test]
    fn min_insync_replicas_applies_to_acks_all_only() {
        let mut c = cluster_with(1);
        let configs = BTreeMap::from([("min.insync.replicas".into(), "3".into())]);
        c.create_topic("strict", 1, configs).expect("create");
        c.set_broker_up(2, false);
        let leader = c.partition("strict", 0).map_or(-1, |p| p.leader());
        for (acks, code) in [(-1, ErrorCode::NotEnoughReplicas.code()), (1, 0)] {
            let req = request(
                acks,
                "strict",
                Uuid::nil(),
                0,
                BatchBuilder::new(NOW).record(b"x").bytes(),
            );
            let Reply::Respond(ResponseKind::Produce(r)) = handle(&mut c, &ctx(leader, 9), req)
            else {
                panic!("expected a produce response");
            };
            assert_eq!(first(&r).error_code, code, "acks={acks}");
        }
    }

    #[test]
    fn whole_request_errors_cover_every_partition() {
        let req = request(1, "t", Uuid::nil(), 0, Bytes::new());
        let r = error_response(&req, 9, ErrorCode::ClusterAuthorizationFailed);
        assert_eq!(
            first(&r).error_code,
            ErrorCode::ClusterAuthorizationFailed.code()
        );
        assert_encodes(&ResponseKind::Produce(r), 9);
    }
}
