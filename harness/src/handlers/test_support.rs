//! Helpers for handler tests: contexts, a seeded cluster, and an encode check that a
//! response is valid at the version it answers.

use std::collections::{BTreeMap, HashMap};

use bytes::BytesMut;
use franzy::proto::{ApiKey, ResponseKind};

use super::RequestContext;
use crate::cluster::{ClusterConfig, ClusterState, CoordinatorType, Time, WaiterId};

/// The time handler tests run at.
pub const NOW: i64 = 1_700_000_000_000;

/// A context for a request at `version` arriving at `broker`.
pub fn ctx(broker: i32, version: i16) -> RequestContext {
    api_ctx(ApiKey::ApiVersions, broker, version)
}

/// A context for a request of `api` at `version` arriving at `broker`, at cluster time zero
/// (wall-clock [`NOW`]), from waiter 1.
pub fn api_ctx(api: ApiKey, broker: i32, version: i16) -> RequestContext {
    RequestContext {
        api_key: api,
        api_version: version,
        broker_id: broker,
        client_id: Some("test".into()),
        waiter: WaiterId(1),
        now: Time::ZERO,
        now_ms: NOW,
        partition_errors: HashMap::new(),
    }
}

/// Three brokers and topic `t` with `partitions` partitions (partition p led by broker p % 3).
pub fn cluster_with(partitions: i32) -> ClusterState {
    cluster_configured(partitions, ClusterConfig::default())
}

/// [`cluster_with`], with `config` (its broker ids are replaced by 0, 1, 2).
pub fn cluster_configured(partitions: i32, config: ClusterConfig) -> ClusterState {
    let config = ClusterConfig {
        broker_ids: vec![0, 1, 2],
        ..config
    };
    let mut c = ClusterState::new(config);
    for id in 0..3 {
        c.set_broker_address(id, "127.0.0.1", 9092 + id as u16);
    }
    c.set_wall_clock_start(NOW);
    c.create_topic("t", partitions, BTreeMap::new())
        .expect("create topic t");
    c
}

/// Asserts that `response` encodes at `version`, as the server will do.
pub fn assert_encodes(response: &ResponseKind, version: i16) {
    let mut out = BytesMut::new();
    if let Err(e) = response.encode(&mut out, version) {
        panic!("response does not encode at v{version}: {e}");
    }
}

/// The broker coordinating transactional id `id` in `cluster`, creating the transaction
/// coordinators' topic first (as the first FindCoordinator would).
pub fn txn_coordinator(cluster: &mut ClusterState, id: &str) -> i32 {
    cluster
        .create_internal_topic(CoordinatorType::Transaction)
        .expect("the transaction state topic");
    cluster
        .find_coordinator(CoordinatorType::Transaction, id)
        .expect("a transaction coordinator")
}

/// The broker coordinating group `group` in `cluster`, creating `__consumer_offsets` first.
pub fn group_coordinator(cluster: &mut ClusterState, group: &str) -> i32 {
    cluster
        .create_internal_topic(CoordinatorType::Group)
        .expect("the offsets topic");
    cluster
        .find_coordinator(CoordinatorType::Group, group)
        .expect("a group coordinator")
}

/// InitProducerId for `id` at `version`, sent to its coordinator: (error, producer id, epoch).
pub fn init_txn(cluster: &mut ClusterState, id: &str, version: i16) -> (i16, i64, i16) {
    use kafka_protocol::messages::{InitProducerIdRequest, TransactionalId};
    let broker = txn_coordinator(cluster, id);
    let req = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(super::text(id))))
        .with_transaction_timeout_ms(60_000);
    let r = super::init_producer_id::handle(
        cluster,
        &api_ctx(ApiKey::InitProducerId, broker, version),
        req,
    );
    assert_encodes(&ResponseKind::InitProducerId(r.clone()), version);
    (r.error_code, r.producer_id.0, r.producer_epoch)
}

/// AddPartitionsToTxn (v3) of `partitions` of topic `t` for `id`'s `producer`: the codes.
pub fn add_txn_partitions(
    cluster: &mut ClusterState,
    id: &str,
    producer: (i64, i16),
    partitions: &[i32],
) -> Vec<i16> {
    use kafka_protocol::messages::{AddPartitionsToTxnRequest, TransactionalId};
    let broker = txn_coordinator(cluster, id);
    let req = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(TransactionalId(super::text(id)))
        .with_v3_and_below_producer_id(producer.0.into())
        .with_v3_and_below_producer_epoch(producer.1)
        .with_v3_and_below_topics(vec![super::add_partitions_to_txn::topic(
            "t",
            partitions.to_vec(),
        )]);
    let r = super::add_partitions_to_txn::handle(
        cluster,
        &api_ctx(ApiKey::AddPartitionsToTxn, broker, 3),
        req,
    );
    assert_encodes(&ResponseKind::AddPartitionsToTxn(r.clone()), 3);
    r.results_by_topic_v3_and_below
        .iter()
        .flat_map(|t| {
            t.results_by_partition
                .iter()
                .map(|p| p.partition_error_code)
        })
        .collect()
}

/// EndTxn for `id`'s `producer` at `version`: (error, producer id, epoch).
pub fn end_txn(
    cluster: &mut ClusterState,
    id: &str,
    producer: (i64, i16),
    commit: bool,
    version: i16,
) -> (i16, i64, i16) {
    use kafka_protocol::messages::{EndTxnRequest, TransactionalId};
    let broker = txn_coordinator(cluster, id);
    let req = EndTxnRequest::default()
        .with_transactional_id(TransactionalId(super::text(id)))
        .with_producer_id(producer.0.into())
        .with_producer_epoch(producer.1)
        .with_committed(commit);
    let r = super::end_txn::handle(cluster, &api_ctx(ApiKey::EndTxn, broker, version), req);
    assert_encodes(&ResponseKind::EndTxn(r.clone()), version);
    (r.error_code, r.producer_id.0, r.producer_epoch)
}

/// A transactional batch of one record of `producer`, base sequence `sequence`.
pub fn txn_records(producer: (i64, i16), sequence: i32) -> bytes::Bytes {
    crate::cluster::test_batches::BatchBuilder::new(NOW)
        .record(b"txn")
        .producer(producer.0, producer.1, sequence)
        .transactional()
        .bytes()
}

/// A Produce of `records` to t/`partition` at `version`, for transactional id `id`, sent to
/// the partition's leader: the partition's answer.
pub fn produce_txn(
    cluster: &mut ClusterState,
    id: Option<&str>,
    partition: i32,
    records: bytes::Bytes,
    version: i16,
) -> kafka_protocol::messages::produce_response::PartitionProduceResponse {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, TransactionalId};
    let topic = cluster.topic("t").map(|t| t.id()).unwrap_or_default();
    let leader = cluster.partition("t", partition).map_or(0, |p| p.leader());
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_transactional_id(id.map(|id| TransactionalId(super::text(id))))
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(super::topic_name("t"))
            .with_topic_id(topic)
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])]);
    match super::produce::handle(cluster, &api_ctx(ApiKey::Produce, leader, version), req) {
        super::Reply::Respond(ResponseKind::Produce(r)) => {
            assert_encodes(&ResponseKind::Produce(r.clone()), version);
            r.responses[0].partition_responses[0].clone()
        }
        other => panic!("expected a produce response, got {other:?}"),
    }
}
