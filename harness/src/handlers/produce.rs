//! Produce (key 0), v3-13: appends one record batch per partition (KIP-98 framing; KIP-951
//! leader hints in v10+; topic ids in v13, KIP-516).
//!
//! First, for the whole request: transactional records (the first batch of some partition
//! has the transactional bit) fail every partition with TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
//! the answer of a Kafka cluster whose ACLs allow no transactional id (transactions are not
//! implemented; InitProducerId refuses transactional ids the same way).
//!
//! Then per partition, in Kafka's order: unknown topic (id) or partition, injected error, the
//! request-level record checks (exactly one magic-v2 batch; no zstd before v7), acks,
//! leadership, `min.insync.replicas` for acks=-1, then the log's own checks, the producer's
//! epoch and sequence (idempotence, KIP-98: see `cluster::producer_state`), and the append.
//! A retried batch that is already in the log is answered with its original offsets.
//! Replication is instant, so acks=1 and acks=-1 answer the same. Produce never creates
//! topics (Kafka only auto-creates on Metadata). acks=0 gets no response at all; when a
//! partition of an acks=0 request fails, the connection is closed instead, as Kafka does.

use std::collections::BTreeSet;

use franzy::proto::batch_header::{BatchAttributes, BatchHeader, MAGIC_V2};
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
    if has_transactional_records(&req) {
        // Kafka checks WRITE on the transactional id before looking at any partition.
        let code = ErrorCode::TransactionalIdAuthorizationFailed;
        if req.acks == 0 {
            return Reply::Close {
                reason: format!("acks=0 produce failed with error {}", code.code()),
            };
        }
        let response = error_response(&req, version, code);
        return Reply::Respond(franzy::proto::ResponseKind::Produce(response));
    }
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
                    if let Some(detail) = &e.detail {
                        tracing::debug!(
                            topic = name.as_deref().unwrap_or_default(),
                            partition = data.index,
                            code = ?e.code,
                            "produce refused: {detail}"
                        );
                    }
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

/// Whether the first batch of some partition is transactional, as Kafka's
/// `RequestUtils.hasTransactionalRecords` decides: a batch that is not all there, or whose
/// framing is unreadable, counts as not transactional (the partition checks refuse it).
fn has_transactional_records(req: &ProduceRequest) -> bool {
    const ATTRIBUTES: usize = 21;
    let first_batch = |records: &[u8]| -> Option<BatchAttributes> {
        let size = records.get(8..12)?;
        let size = i32::from_be_bytes([size[0], size[1], size[2], size[3]]);
        let total = usize::try_from(size).ok()?.checked_add(12)?;
        let batch = records.get(..total)?;
        if batch.get(16).map(|m| *m as i8) != Some(MAGIC_V2) {
            return None;
        }
        let a = batch.get(ATTRIBUTES..ATTRIBUTES + 2)?;
        Some(BatchAttributes(i16::from_be_bytes([a[0], a[1]])))
    };
    req.topic_data
        .iter()
        .flat_map(|t| &t.partition_data)
        .filter_map(|p| p.records.as_deref())
        .any(|records| first_batch(records).is_some_and(BatchAttributes::is_transactional))
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
    if info.duplicate {
        tracing::debug!(
            topic,
            partition,
            base_offset = info.base_offset,
            "produce: duplicate batch answered with its original offsets"
        );
    }
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
        .with_log_start_offset(error.log_start_offset.unwrap_or(-1));
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

    fn first_error(r: &ProduceResponse) -> i16 {
        first(r).error_code
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

    fn idempotent(producer_id: i64, epoch: i16, sequence: i32, records: usize) -> Bytes {
        BatchBuilder::new(NOW)
            .records(records, 3)
            .producer(producer_id, epoch, sequence)
            .bytes()
    }

    #[test]
    fn a_retried_batch_is_answered_with_its_original_offsets() {
        let mut c = cluster_with(1);
        let pid = c.allocate_producer_id().expect("id");
        produce_at(
            &mut c,
            0,
            9,
            -1,
            0,
            BatchBuilder::new(NOW).record(b"x").bytes(),
        );
        let original = idempotent(pid, 0, 0, 3);
        let r = produce_at(&mut c, 0, 9, -1, 0, original.clone());
        assert_eq!((first_error(&r), first(&r).base_offset), (0, 1));
        assert_eq!(first(&r).log_append_time_ms, -1);
        let r = produce_at(&mut c, 0, 9, -1, 0, idempotent(pid, 0, 3, 2));
        assert_eq!(first(&r).base_offset, 4);
        // The first batch again (its response was lost): not appended, same offsets. Kafka
        // reports the original's max timestamp as the log-append time, even on a
        // create-time topic.
        let r = produce_at(&mut c, 0, 9, -1, 0, original);
        assert_eq!((first_error(&r), first(&r).base_offset), (0, 1));
        assert_eq!(first(&r).log_append_time_ms, NOW);
        assert_eq!(c.partition_log("t", 0).map(|l| l.log_end_offset()), Some(6));
        let state = c.producer_state("t", 0).and_then(|s| s.entry(pid));
        assert_eq!(state.map(|e| (e.epoch(), e.last_sequence())), Some((0, 4)));
    }

    #[test]
    fn a_duplicate_on_a_log_append_time_topic_gets_the_original_time() {
        let mut c = cluster_with(1);
        let configs = BTreeMap::from([("message.timestamp.type".into(), "LogAppendTime".into())]);
        c.create_topic("lat", 1, configs).expect("create");
        let leader = c.partition("lat", 0).map_or(-1, |p| p.leader());
        let batch = idempotent(1000, 0, 0, 2);
        let mut context = ctx(leader, 9);
        let mut answers = Vec::new();
        for now in [NOW, NOW + 5000] {
            context.now_ms = now;
            let req = request(-1, "lat", Uuid::nil(), 0, batch.clone());
            let Reply::Respond(ResponseKind::Produce(r)) = handle(&mut c, &context, req) else {
                panic!("expected a produce response");
            };
            answers.push((first(&r).base_offset, first(&r).log_append_time_ms));
        }
        assert_eq!(answers, vec![(0, NOW), (0, NOW)]);
    }

    #[test]
    fn sequence_and_epoch_errors_carry_the_log_start_offset_and_no_message() {
        let mut c = cluster_with(1);
        let pid = 1000;
        produce_at(&mut c, 0, 9, -1, 0, idempotent(pid, 1, 0, 4));
        assert_eq!(c.delete_records("t", 0, 2), Ok(2));
        for version in [3, 8, 9, 13] {
            let gap = produce_at(&mut c, 0, version, -1, 0, idempotent(pid, 1, 5, 1));
            let p = first(&gap);
            assert_eq!(p.error_code, ErrorCode::OutOfOrderSequenceNumber.code());
            assert_eq!((p.base_offset, p.log_start_offset), (-1, 2), "v{version}");
            assert_eq!((p.error_message.clone(), p.record_errors.len()), (None, 0));
        }
        let stale = produce_at(&mut c, 0, 9, -1, 0, idempotent(pid, 0, 4, 1));
        assert_eq!(first_error(&stale), ErrorCode::InvalidProducerEpoch.code());
        assert_eq!(first(&stale).log_start_offset, 2);
        let new_epoch_mid_sequence = produce_at(&mut c, 0, 9, -1, 0, idempotent(pid, 2, 4, 1));
        assert_eq!(
            first_error(&new_epoch_mid_sequence),
            ErrorCode::OutOfOrderSequenceNumber.code()
        );
        let no_sequence = produce_at(&mut c, 0, 9, -1, 0, idempotent(pid, 1, -1, 1));
        assert_eq!(first_error(&no_sequence), ErrorCode::InvalidRecord.code());
        assert_eq!(c.partition_log("t", 0).map(|l| l.log_end_offset()), Some(4));
        // The producer continues where it was.
        let next = produce_at(&mut c, 0, 9, -1, 0, idempotent(pid, 1, 4, 1));
        assert_eq!((first_error(&next), first(&next).base_offset), (0, 4));
    }

    #[test]
    fn producer_state_survives_a_leader_change() {
        let mut c = cluster_with(1);
        let batch = idempotent(1000, 0, 0, 2);
        produce_at(&mut c, 0, 9, -1, 0, batch.clone());
        c.set_broker_up(0, false);
        let leader = c.partition("t", 0).map_or(-1, |p| p.leader());
        assert_ne!(leader, 0);
        let r = produce_at(&mut c, leader, 9, -1, 0, batch);
        assert_eq!((first_error(&r), first(&r).base_offset), (0, 0));
        let r = produce_at(&mut c, leader, 9, -1, 0, idempotent(1000, 0, 3, 1));
        assert_eq!(first_error(&r), ErrorCode::OutOfOrderSequenceNumber.code());
        c.set_broker_up(0, true);
        let r = produce_at(&mut c, leader, 9, -1, 0, idempotent(1000, 0, 2, 1));
        assert_eq!((first_error(&r), first(&r).base_offset), (0, 2));
    }

    #[test]
    fn transactional_records_fail_the_whole_request() {
        let mut c = cluster_with(2);
        let txn = BatchBuilder::new(NOW)
            .record(b"x")
            .producer(1000, 0, 0)
            .transactional()
            .bytes();
        let mut req = request(
            -1,
            "t",
            Uuid::nil(),
            0,
            BatchBuilder::new(NOW).record(b"y").bytes(),
        );
        req.topic_data[0].partition_data.push(
            PartitionProduceData::default()
                .with_index(1)
                .with_records(Some(txn.clone())),
        );
        let Reply::Respond(ResponseKind::Produce(r)) = handle(&mut c, &ctx(0, 9), req) else {
            panic!("expected a produce response");
        };
        let codes: Vec<i16> = r.responses[0]
            .partition_responses
            .iter()
            .map(|p| p.error_code)
            .collect();
        let refused = ErrorCode::TransactionalIdAuthorizationFailed.code();
        assert_eq!(codes, vec![refused, refused]);
        assert!(!ErrorCode::TransactionalIdAuthorizationFailed.is_retriable());
        assert_eq!(c.partition_log("t", 0).map(|l| l.log_end_offset()), Some(0));
        let req = request(0, "t", Uuid::nil(), 1, txn);
        assert!(matches!(
            handle(&mut c, &ctx(1, 9), req),
            Reply::Close { .. }
        ));
        // A cut-off transactional batch is not "transactional records": the partition
        // checks refuse it.
        let cut = BatchBuilder::new(NOW)
            .record(b"x")
            .producer(1000, 0, 0)
            .transactional()
            .bytes()
            .slice(..50);
        let r = produce_at(&mut c, 0, 9, -1, 0, cut);
        assert_eq!(first_error(&r), ErrorCode::InvalidRecord.code());
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
