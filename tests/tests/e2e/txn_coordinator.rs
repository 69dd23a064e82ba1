//! The transaction coordinator on the wire, with raw requests built here: InitProducerId,
//! AddPartitionsToTxn, transactional produces, EndTxn, and what read_committed fetches see
//! (last stable offset, aborted transactions); fencing, timeouts under a paused clock,
//! lost answers, CONCURRENT_TRANSACTIONS injected, and a coordinator moved mid-commit.
//! In-memory connections under a paused clock, so every timeout is virtual.

use std::time::Duration;

use bytes::Bytes;
use franzy::kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use franzy::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use franzy::kafka_protocol::messages::fetch_response::PartitionData;
use franzy::kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsTopic,
};
use franzy::kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use franzy::kafka_protocol::messages::{
    AddPartitionsToTxnRequest, DescribeTransactionsRequest, EndTxnRequest, FetchRequest,
    FindCoordinatorRequest, InitProducerIdRequest, ListOffsetsRequest, ProduceRequest, TopicName,
    TransactionalId,
};
use franzy::proto::record_batch::{decode_batches, DecodeLimits, RecordBatchBuilder};
use franzy::proto::{ApiKey, ErrorCode, RequestKind, ResponseKind, StrBytes};
use franzy_harness::{Action, Cluster, Interceptor};
use franzy_tests::{init_tracing, RawConnection};
use tokio::io::DuplexStream;

const TXN: &str = "tx";

async fn cluster_with(builder: franzy_harness::ClusterBuilder) -> Cluster {
    init_tracing();
    builder
        .brokers(3)
        .in_memory()
        .topic("t", 2)
        .build()
        .await
        .expect("cluster starts")
}

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn connect(cluster: &Cluster, broker: i32) -> RawConnection<DuplexStream> {
    RawConnection::new(cluster.connect(broker).expect("connect"))
}

async fn request(
    conn: &mut RawConnection<DuplexStream>,
    api: ApiKey,
    version: i16,
    body: RequestKind,
) -> ResponseKind {
    conn.request(api, version, &body).await.expect("answered").1
}

/// The coordinator of `TXN`, found over the wire (the first lookup creates the topic).
async fn coordinator(cluster: &Cluster) -> i32 {
    let mut conn = connect(cluster, 0);
    for _ in 0..2 {
        let req = FindCoordinatorRequest::default()
            .with_key_type(1)
            .with_coordinator_keys(vec![text(TXN)]);
        let ResponseKind::FindCoordinator(r) = request(
            &mut conn,
            ApiKey::FindCoordinator,
            4,
            RequestKind::FindCoordinator(req),
        )
        .await
        else {
            panic!("a FindCoordinator response")
        };
        if r.coordinators[0].error_code == 0 {
            return r.coordinators[0].node_id.0;
        }
    }
    panic!("no transaction coordinator")
}

/// InitProducerId v4 for `TXN` with `timeout_ms`: (error, producer id, epoch).
async fn init(conn: &mut RawConnection<DuplexStream>, timeout_ms: i32) -> (i16, i64, i16) {
    let req = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(text(TXN))))
        .with_transaction_timeout_ms(timeout_ms);
    let ResponseKind::InitProducerId(r) = request(
        conn,
        ApiKey::InitProducerId,
        4,
        RequestKind::InitProducerId(req),
    )
    .await
    else {
        panic!("an InitProducerId response")
    };
    (r.error_code, r.producer_id.0, r.producer_epoch)
}

/// AddPartitionsToTxn v3 of t's `partitions`: their codes.
async fn add(
    conn: &mut RawConnection<DuplexStream>,
    producer: (i64, i16),
    partitions: &[i32],
) -> Vec<i16> {
    let req = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(TransactionalId(text(TXN)))
        .with_v3_and_below_producer_id(producer.0.into())
        .with_v3_and_below_producer_epoch(producer.1)
        .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
            .with_name(TopicName(text("t")))
            .with_partitions(partitions.to_vec())]);
    let ResponseKind::AddPartitionsToTxn(r) = request(
        conn,
        ApiKey::AddPartitionsToTxn,
        3,
        RequestKind::AddPartitionsToTxn(req),
    )
    .await
    else {
        panic!("an AddPartitionsToTxn response")
    };
    r.results_by_topic_v3_and_below
        .iter()
        .flat_map(|t| {
            t.results_by_partition
                .iter()
                .map(|p| p.partition_error_code)
        })
        .collect()
}

fn end_request(producer: (i64, i16), commit: bool) -> RequestKind {
    RequestKind::EndTxn(
        EndTxnRequest::default()
            .with_transactional_id(TransactionalId(text(TXN)))
            .with_producer_id(producer.0.into())
            .with_producer_epoch(producer.1)
            .with_committed(commit),
    )
}

/// EndTxn v3: its error code.
async fn end(conn: &mut RawConnection<DuplexStream>, producer: (i64, i16), commit: bool) -> i16 {
    let ResponseKind::EndTxn(r) =
        request(conn, ApiKey::EndTxn, 3, end_request(producer, commit)).await
    else {
        panic!("an EndTxn response")
    };
    r.error_code
}

/// A transactional batch of `records` records of `producer`, from `sequence`.
fn txn_batch(producer: (i64, i16), sequence: i32, records: usize) -> Bytes {
    let mut builder = RecordBatchBuilder::new()
        .producer(producer.0, producer.1, sequence)
        .transactional(true);
    for i in 0..records {
        builder
            .append(0, None, Some(Bytes::from(format!("v{i}"))), Vec::new())
            .expect("fits");
    }
    builder.build().encode().expect("encodes")
}

/// Produce v9 of `records` to t/`partition`, sent to its leader, for `TXN`: the code.
async fn produce(cluster: &Cluster, partition: i32, records: Bytes) -> (i16, i64) {
    let leader = cluster.with_state(|s| s.partition("t", partition).map_or(0, |p| p.leader()));
    let mut conn = connect(cluster, leader);
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(1000)
        .with_transactional_id(Some(TransactionalId(text(TXN))))
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(text("t")))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])]);
    let ResponseKind::Produce(r) =
        request(&mut conn, ApiKey::Produce, 9, RequestKind::Produce(req)).await
    else {
        panic!("a Produce response")
    };
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// Fetch v12 of t/`partition` from `offset` with `isolation`: the partition's answer.
async fn fetch(cluster: &Cluster, partition: i32, offset: i64, isolation: i8) -> PartitionData {
    let leader = cluster.with_state(|s| s.partition("t", partition).map_or(0, |p| p.leader()));
    let mut conn = connect(cluster, leader);
    let req = FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(1 << 20)
        .with_isolation_level(isolation)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(text("t")))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])]);
    let ResponseKind::Fetch(r) =
        request(&mut conn, ApiKey::Fetch, 12, RequestKind::Fetch(req)).await
    else {
        panic!("a Fetch response")
    };
    r.responses[0].partitions[0].clone()
}

/// The data records (not markers) of a fetch answer, by offset.
fn data_offsets(p: &PartitionData) -> Vec<i64> {
    let records = p.records.clone().unwrap_or_default();
    let mut offsets = Vec::new();
    for batch in decode_batches(records, DecodeLimits::default()) {
        let batch = batch.expect("a batch");
        if batch.is_control {
            continue;
        }
        offsets.extend(batch.records.iter().map(|r| batch.record_offset(r)));
    }
    offsets
}

fn aborted(p: &PartitionData) -> Option<Vec<(i64, i64)>> {
    p.aborted_transactions.as_ref().map(|list| {
        list.iter()
            .map(|a| (a.producer_id.0, a.first_offset))
            .collect()
    })
}

#[tokio::test(start_paused = true)]
async fn commits_and_aborts_are_what_read_committed_fetches_see() {
    let cluster = cluster_with(Cluster::builder()).await;
    let broker = coordinator(&cluster).await;
    let mut conn = connect(&cluster, broker);
    let (code, id, epoch) = init(&mut conn, 60_000).await;
    assert_eq!(code, 0);
    let producer = (id, epoch);
    // Without AddPartitionsToTxn the produce is refused (KIP-890).
    assert_eq!(
        produce(&cluster, 0, txn_batch(producer, 0, 2)).await.0,
        ErrorCode::InvalidTxnState.code()
    );
    assert_eq!(add(&mut conn, producer, &[0, 1]).await, vec![0, 0]);
    assert_eq!(
        produce(&cluster, 0, txn_batch(producer, 0, 2)).await,
        (0, 0)
    );
    // Open: read_uncommitted sees the records, read_committed stops at the LSO.
    let uncommitted = fetch(&cluster, 0, 0, 0).await;
    assert_eq!(
        (uncommitted.high_watermark, uncommitted.last_stable_offset),
        (2, 0)
    );
    assert_eq!(data_offsets(&uncommitted), vec![0, 1]);
    let committed = fetch(&cluster, 0, 0, 1).await;
    assert!(data_offsets(&committed).is_empty());
    assert_eq!(aborted(&committed), Some(vec![]));
    assert_eq!(end(&mut conn, producer, true).await, 0);
    let committed = fetch(&cluster, 0, 0, 1).await;
    assert_eq!(
        (committed.high_watermark, committed.last_stable_offset),
        (3, 3)
    );
    assert_eq!(data_offsets(&committed), vec![0, 1]);
    assert_eq!(aborted(&committed), Some(vec![]));
    // Partition 1 was in the transaction without records: a marker only.
    assert_eq!(fetch(&cluster, 1, 0, 1).await.high_watermark, 1);
    // An aborted transaction: read_committed is told, with its first offset.
    assert_eq!(add(&mut conn, producer, &[0]).await, vec![0]);
    assert_eq!(
        produce(&cluster, 0, txn_batch(producer, 2, 3)).await,
        (0, 3)
    );
    assert_eq!(end(&mut conn, producer, false).await, 0);
    let committed = fetch(&cluster, 0, 0, 1).await;
    assert_eq!(
        (committed.high_watermark, committed.last_stable_offset),
        (7, 7)
    );
    assert_eq!(aborted(&committed), Some(vec![(id, 3)]));
    assert_eq!(
        data_offsets(&committed),
        vec![0, 1, 3, 4, 5],
        "the client drops 3-5"
    );
    assert_eq!(aborted(&fetch(&cluster, 0, 7, 1).await), Some(vec![]));
    // ListOffsets' latest with read_committed is the LSO; it lags while a transaction
    // is open.
    assert_eq!(add(&mut conn, producer, &[0]).await, vec![0]);
    assert_eq!(
        produce(&cluster, 0, txn_batch(producer, 5, 1)).await,
        (0, 7)
    );
    let leader = cluster.with_state(|s| s.partition("t", 0).map_or(0, |p| p.leader()));
    let mut list_conn = connect(&cluster, leader);
    for (isolation, expected) in [(0, 8), (1, 7)] {
        let req = ListOffsetsRequest::default()
            .with_replica_id((-1).into())
            .with_isolation_level(isolation)
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(TopicName(text("t")))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(-1)])]);
        let ResponseKind::ListOffsets(r) = request(
            &mut list_conn,
            ApiKey::ListOffsets,
            5,
            RequestKind::ListOffsets(req),
        )
        .await
        else {
            panic!("a ListOffsets response")
        };
        assert_eq!(
            r.topics[0].partitions[0].offset, expected,
            "isolation {isolation}"
        );
    }
    // DescribeTransactions shows it open.
    let req = DescribeTransactionsRequest::default()
        .with_transactional_ids(vec![TransactionalId(text(TXN))]);
    let ResponseKind::DescribeTransactions(r) = request(
        &mut conn,
        ApiKey::DescribeTransactions,
        0,
        RequestKind::DescribeTransactions(req),
    )
    .await
    else {
        panic!("a DescribeTransactions response")
    };
    assert_eq!(
        r.transaction_states[0].transaction_state.as_str(),
        "Ongoing"
    );
    assert_eq!(r.transaction_states[0].topics[0].partitions, vec![0]);
}

#[tokio::test(start_paused = true)]
async fn a_new_producer_fences_the_old_one_after_aborting_its_transaction() {
    let cluster = cluster_with(Cluster::builder()).await;
    let broker = coordinator(&cluster).await;
    let mut conn = connect(&cluster, broker);
    let (_, id, epoch) = init(&mut conn, 60_000).await;
    let old = (id, epoch);
    add(&mut conn, old, &[0]).await;
    assert_eq!(produce(&cluster, 0, txn_batch(old, 0, 1)).await.0, 0);
    // The new producer's InitProducerId aborts the open transaction first.
    assert_eq!(
        init(&mut conn, 60_000).await.0,
        ErrorCode::ConcurrentTransactions.code()
    );
    let (code, new_id, new_epoch) = init(&mut conn, 60_000).await;
    assert_eq!((code, new_id, new_epoch), (0, id, epoch + 2));
    let p = fetch(&cluster, 0, 0, 1).await;
    assert_eq!(aborted(&p), Some(vec![(id, 0)]));
    assert_eq!(p.last_stable_offset, p.high_watermark);
    // The old producer is fenced everywhere.
    assert_eq!(
        produce(&cluster, 0, txn_batch(old, 1, 1)).await.0,
        ErrorCode::InvalidProducerEpoch.code()
    );
    assert_eq!(
        add(&mut conn, old, &[1]).await,
        vec![ErrorCode::ProducerFenced.code()]
    );
    assert_eq!(
        end(&mut conn, old, true).await,
        ErrorCode::ProducerFenced.code()
    );
}

#[tokio::test(start_paused = true)]
async fn a_transaction_past_its_timeout_is_aborted_by_the_clock() {
    let cluster =
        cluster_with(Cluster::builder().transaction_abort_interval(Duration::from_millis(500)))
            .await;
    let broker = coordinator(&cluster).await;
    let mut conn = connect(&cluster, broker);
    let (_, id, epoch) = init(&mut conn, 1_000).await;
    add(&mut conn, (id, epoch), &[0]).await;
    assert_eq!(
        produce(&cluster, 0, txn_batch((id, epoch), 0, 2)).await.0,
        0
    );
    assert_eq!(fetch(&cluster, 0, 0, 1).await.last_stable_offset, 0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let p = fetch(&cluster, 0, 0, 1).await;
    assert_eq!((p.last_stable_offset, p.high_watermark), (3, 3));
    assert_eq!(aborted(&p), Some(vec![(id, 0)]));
    // The zombie's commit and records are fenced by the bumped epoch.
    assert_eq!(
        end(&mut conn, (id, epoch), true).await,
        ErrorCode::ProducerFenced.code()
    );
    assert_eq!(
        produce(&cluster, 0, txn_batch((id, epoch), 2, 1)).await.0,
        ErrorCode::InvalidProducerEpoch.code()
    );
    let state = cluster.with_state(|s| {
        s.transactions()
            .get(TXN)
            .map(|t| (t.state(), t.producer_epoch()))
    });
    assert_eq!(
        state,
        Some((
            franzy_harness::cluster::TransactionState::CompleteAbort,
            epoch + 1
        ))
    );
}

#[tokio::test(start_paused = true)]
async fn a_lost_end_answer_is_retried_and_the_markers_are_written_once() {
    let cluster = cluster_with(Cluster::builder()).await;
    let broker = coordinator(&cluster).await;
    let mut conn = connect(&cluster, broker);
    let (_, id, epoch) = init(&mut conn, 60_000).await;
    add(&mut conn, (id, epoch), &[0]).await;
    produce(&cluster, 0, txn_batch((id, epoch), 0, 1)).await;
    cluster.intercept(
        Interceptor::new(ApiKey::EndTxn, Action::DisconnectAfterHandling).on_transactional_id(TXN),
    );
    conn.send(ApiKey::EndTxn, 3, &end_request((id, epoch), true))
        .await
        .expect("sent");
    conn.expect_closed(Duration::from_secs(5))
        .await
        .expect("closed without an answer");
    // The client retries on a new connection: the commit had happened, and succeeds.
    let mut conn = connect(&cluster, broker);
    assert_eq!(end(&mut conn, (id, epoch), true).await, 0);
    let markers = cluster.with_state(|s| {
        s.partition_log("t", 0).map_or(0, |l| {
            l.batches()
                .iter()
                .filter(|b| b.header().attributes.is_control())
                .count()
        })
    });
    assert_eq!(markers, 1);
    // CONCURRENT_TRANSACTIONS three times, then the answer.
    add(&mut conn, (id, epoch), &[0]).await;
    cluster.intercept(
        Interceptor::new(
            ApiKey::EndTxn,
            Action::Error(ErrorCode::ConcurrentTransactions),
        )
        .on_transactional_id(TXN)
        .times(3),
    );
    for _ in 0..3 {
        assert_eq!(
            end(&mut conn, (id, epoch), false).await,
            ErrorCode::ConcurrentTransactions.code()
        );
    }
    assert_eq!(end(&mut conn, (id, epoch), false).await, 0);
    assert_eq!(cluster.pending_interceptors(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_coordinator_moved_mid_commit_completes_it_once() {
    let cluster =
        cluster_with(Cluster::builder().transaction_marker_delay(Duration::from_millis(200))).await;
    let old = coordinator(&cluster).await;
    let mut conn = connect(&cluster, old);
    let (_, id, epoch) = init(&mut conn, 60_000).await;
    add(&mut conn, (id, epoch), &[0, 1]).await;
    produce(&cluster, 0, txn_batch((id, epoch), 0, 1)).await;
    assert_eq!(end(&mut conn, (id, epoch), true).await, 0);
    let new = (old + 1) % 3;
    cluster
        .move_transaction_coordinator(TXN, new)
        .expect("moved");
    assert_eq!(coordinator(&cluster).await, new);
    assert_eq!(
        end(&mut conn, (id, epoch), true).await,
        ErrorCode::NotCoordinator.code()
    );
    let mut conn = connect(&cluster, new);
    assert_eq!(
        end(&mut conn, (id, epoch), true).await,
        ErrorCode::ConcurrentTransactions.code()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(end(&mut conn, (id, epoch), true).await, 0);
    for partition in 0..2 {
        let markers = cluster.with_state(|s| {
            s.partition_log("t", partition).map_or(0, |l| {
                l.batches()
                    .iter()
                    .filter(|b| b.header().attributes.is_control())
                    .count()
            })
        });
        assert_eq!(markers, 1, "partition {partition}");
    }
    let p = fetch(&cluster, 0, 0, 1).await;
    assert_eq!(data_offsets(&p), vec![0]);
    assert_eq!(p.last_stable_offset, 2);
}
