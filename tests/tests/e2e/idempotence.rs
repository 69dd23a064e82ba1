//! Idempotent producing on the wire, frame by frame: InitProducerId, sequenced batches, a
//! retry of a batch whose answer was lost, and the state surviving a broker restart.

use std::time::Duration;

use bytes::Bytes;
use franzy::kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use franzy::kafka_protocol::messages::produce_response::PartitionProduceResponse;
use franzy::kafka_protocol::messages::{InitProducerIdRequest, ProduceRequest, TopicName};
use franzy::proto::record_batch::RecordBatchWriter;
use franzy::proto::{ApiKey, ErrorCode, RequestKind, ResponseKind, StrBytes};
use franzy_harness::{Action, Cluster, Interceptor};
use franzy_tests::{init_tracing, RawConnection};
use tokio::net::TcpStream;

async fn cluster() -> Cluster {
    init_tracing();
    Cluster::builder()
        .brokers(3)
        .topic("orders", 1)
        .seed(3)
        .build()
        .await
        .expect("cluster starts")
}

async fn connect(cluster: &Cluster, broker: i32) -> RawConnection<TcpStream> {
    let address = cluster.broker_address(broker).expect("tcp broker");
    RawConnection::new(TcpStream::connect(address).await.expect("connect"))
}

fn leader(cluster: &Cluster) -> i32 {
    cluster.with_state(|s| s.partition("orders", 0).map_or(-1, |p| p.leader()))
}

/// A batch of `count` records as an idempotent producer writes it.
fn batch(producer_id: i64, epoch: i16, sequence: i32, count: usize) -> Bytes {
    let mut writer = RecordBatchWriter::with_capacity(256);
    for i in 0..count {
        writer
            .append(
                1_700_000_000_000,
                None,
                Some(&format!("value-{sequence}-{i}").into_bytes()[..]),
                &[],
            )
            .expect("record fits");
    }
    writer
        .finish(producer_id, epoch, sequence)
        .expect("batch encodes")
}

async fn produce(conn: &mut RawConnection<TcpStream>, records: Bytes) -> PartitionProduceResponse {
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("orders")))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])]);
    let (_, response) = conn
        .request(ApiKey::Produce, 9, &RequestKind::Produce(request))
        .await
        .expect("produce answered");
    let ResponseKind::Produce(mut response) = response else {
        panic!("not a produce response: {response:?}")
    };
    response.responses.remove(0).partition_responses.remove(0)
}

async fn init_producer_id(conn: &mut RawConnection<TcpStream>) -> (i64, i16) {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000);
    let (_, response) = conn
        .request(
            ApiKey::InitProducerId,
            4,
            &RequestKind::InitProducerId(request),
        )
        .await
        .expect("InitProducerId answered");
    let ResponseKind::InitProducerId(response) = response else {
        panic!("not an InitProducerId response: {response:?}")
    };
    assert_eq!(response.error_code, 0);
    (response.producer_id.0, response.producer_epoch)
}

#[tokio::test]
async fn init_producer_id_is_advertised_and_served_by_every_broker() {
    let cluster = cluster().await;
    let mut conn = connect(&cluster, 2).await;
    let (_, response) = conn
        .request(
            ApiKey::ApiVersions,
            3,
            &franzy_tests::api_versions_request(),
        )
        .await
        .expect("ApiVersions answered");
    let ResponseKind::ApiVersions(response) = response else {
        panic!("not ApiVersions")
    };
    let advertised = response
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::InitProducerId as i16)
        .map(|k| (k.min_version, k.max_version));
    assert_eq!(advertised, Some((0, 5)));
    let mut ids = Vec::new();
    for broker in 0..3 {
        let mut conn = connect(&cluster, broker).await;
        ids.push(init_producer_id(&mut conn).await);
    }
    assert_eq!(ids, vec![(1000, 0), (1001, 0), (1002, 0)]);
}

#[tokio::test]
async fn a_retried_batch_is_written_once_even_across_a_restart() {
    let cluster = cluster().await;
    let mut any = connect(&cluster, 0).await;
    let (pid, epoch) = init_producer_id(&mut any).await;
    drop(any);
    let first_leader = leader(&cluster);
    let mut conn = connect(&cluster, first_leader).await;

    let first = batch(pid, epoch, 0, 3);
    let p = produce(&mut conn, first.clone()).await;
    assert_eq!((p.error_code, p.base_offset), (0, 0));
    let p = produce(&mut conn, batch(pid, epoch, 3, 2)).await;
    assert_eq!((p.error_code, p.base_offset), (0, 3));
    // The answer to the first was "lost": the producer sends it again.
    let p = produce(&mut conn, first.clone()).await;
    assert_eq!((p.error_code, p.base_offset), (0, 0));

    // A gap in the sequence is refused; an injected error is still an injected error.
    let p = produce(&mut conn, batch(pid, epoch, 9, 1)).await;
    assert_eq!(p.error_code, ErrorCode::OutOfOrderSequenceNumber.code());
    cluster.intercept(
        Interceptor::new(
            ApiKey::Produce,
            Action::Error(ErrorCode::OutOfOrderSequenceNumber),
        )
        .on_partition("orders", 0),
    );
    let p = produce(&mut conn, batch(pid, epoch, 5, 1)).await;
    assert_eq!(p.error_code, ErrorCode::OutOfOrderSequenceNumber.code());

    // The leader restarts; the new leader knows the producer.
    cluster.stop_broker(first_leader).expect("stop");
    conn.expect_closed(Duration::from_secs(5))
        .await
        .expect("connection dropped");
    // The listener's task lets go of the port soon after; bounded retries wait for that.
    let mut attempts = 0;
    while let Err(e) = cluster.start_broker(first_leader).await {
        attempts += 1;
        assert!(
            attempts < 100,
            "broker {first_leader} does not restart: {e}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let next_leader = leader(&cluster);
    assert_ne!(next_leader, first_leader);
    let mut conn = connect(&cluster, next_leader).await;
    let p = produce(&mut conn, first).await;
    assert_eq!((p.error_code, p.base_offset), (0, 0));
    let p = produce(&mut conn, batch(pid, epoch, 5, 1)).await;
    assert_eq!((p.error_code, p.base_offset), (0, 5));

    let (end, state) = cluster.with_state(|s| {
        let end = s.partition_log("orders", 0).map(|l| l.log_end_offset());
        let state = s
            .producer_state("orders", 0)
            .and_then(|p| p.entry(pid))
            .map(|e| (e.epoch(), e.last_sequence(), e.batches().len()));
        (end, state)
    });
    assert_eq!(end, Some(6));
    assert_eq!(state, Some((0, 5, 3)));
}
