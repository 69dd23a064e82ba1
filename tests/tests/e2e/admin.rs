//! Admin tools against the harness: the harness posing as a Kafka release (version caps),
//! the admin APIs, and the client's `Admin`, in memory under a paused clock.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use franzy::consumer::{Consumer, Offset};
use franzy::io::broker::BrokerConnection;
use franzy::producer::{Producer, ProducerRecord};
use franzy::proto::{ApiKey, RequestKind, ResponseKind};
use franzy::{Config, Error, TopicPartition};
use franzy_harness::{Cluster, ClusterBuilder, KafkaVersion};
use franzy_tests::{init_tracing, RawConnection};

/// Longest a test waits for anything, in virtual time.
const BOUND: Duration = Duration::from_secs(600);

fn builder() -> ClusterBuilder {
    init_tracing();
    Cluster::builder()
        .brokers(3)
        .topic("orders", 3)
        .in_memory()
        .seed(5)
}

/// What ApiVersions v3 advertises on broker 0: (key, min, max) by key.
async fn advertised(cluster: &Cluster) -> BTreeMap<i16, (i16, i16)> {
    let mut conn = RawConnection::new(cluster.connect(0).expect("connect"));
    let (_, response) = conn
        .request(
            ApiKey::ApiVersions,
            3,
            &franzy_tests::api_versions_request(),
        )
        .await
        .expect("answered");
    let ResponseKind::ApiVersions(response) = response else {
        panic!("not an ApiVersions answer: {response:?}");
    };
    assert_eq!(response.error_code, 0);
    response
        .api_keys
        .iter()
        .map(|k| (k.api_key, (k.min_version, k.max_version)))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_cluster_posing_as_2_8_advertises_what_2_8_had_within_what_it_implements() {
    let cluster = builder()
        .kafka_version(KafkaVersion::V2_8)
        .build()
        .await
        .expect("cluster starts");
    let listed = advertised(&cluster).await;
    // 2.8 had Produce v0-9; kafka-protocol decodes from v3.
    assert_eq!(listed.get(&(ApiKey::Produce as i16)), Some(&(3, 9)));
    assert_eq!(listed.get(&(ApiKey::Fetch as i16)), Some(&(4, 12)));
    assert_eq!(listed.get(&(ApiKey::ApiVersions as i16)), Some(&(0, 3)));
    assert_eq!(listed.get(&(ApiKey::Metadata as i16)), Some(&(0, 11)));
    // No transaction describes before 3.0.
    assert_eq!(listed.get(&(ApiKey::DescribeTransactions as i16)), None);
    assert_eq!(listed.get(&(ApiKey::ListTransactions as i16)), None);
    // Every listed range lies within 2.8's.
    for (key, (min, max)) in &listed {
        let api = ApiKey::try_from(*key).expect("a known key");
        let theirs = KafkaVersion::V2_8.range(api).expect("2.8 had it");
        assert!(theirs.min <= *min && *max <= theirs.max, "{api:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_cluster_posing_as_4_0_lacks_the_versions_4_0_removed() {
    let cluster = builder()
        .kafka_version(KafkaVersion::V4_0)
        .build()
        .await
        .expect("cluster starts");
    let listed = advertised(&cluster).await;
    assert_eq!(
        listed.get(&(ApiKey::JoinGroup as i16)).map(|r| r.0),
        Some(2)
    );
    assert_eq!(
        listed.get(&(ApiKey::OffsetCommit as i16)).map(|r| r.0),
        Some(2)
    );
    assert_eq!(listed.get(&(ApiKey::Produce as i16)), Some(&(3, 12)));
    assert_eq!(listed.get(&(ApiKey::Fetch as i16)), Some(&(4, 17)));
    // An old JoinGroup is refused: the connection closes.
    let mut conn = RawConnection::new(cluster.connect(1).expect("connect"));
    conn.send(
        ApiKey::JoinGroup,
        1,
        &RequestKind::JoinGroup(Default::default()),
    )
    .await
    .expect("sent");
    conn.expect_closed(Duration::from_secs(5))
        .await
        .expect("JoinGroup v1 closes the connection on 4.0");
}

#[tokio::test(start_paused = true)]
async fn an_api_version_request_past_the_release_is_answered_with_its_own_range() {
    let cluster = builder()
        .kafka_version(KafkaVersion::V2_8)
        .build()
        .await
        .expect("cluster starts");
    let mut conn = RawConnection::new(cluster.connect(0).expect("connect"));
    // ApiVersions v4 came with 3.9: a 2.8 broker answers v0 with its range, 0-3.
    conn.send(
        ApiKey::ApiVersions,
        4,
        &franzy_tests::api_versions_request(),
    )
    .await
    .expect("sent");
    let frame = conn.read_frame().await.expect("answered");
    let (_, response) =
        franzy::proto::message::decode_response(frame, ApiKey::ApiVersions, 0).expect("v0");
    let ResponseKind::ApiVersions(response) = response else {
        panic!("not an ApiVersions answer");
    };
    assert_eq!(
        response.error_code,
        franzy::proto::ErrorCode::UnsupportedVersion.code()
    );
    let listed: Vec<_> = response
        .api_keys
        .iter()
        .map(|k| (k.api_key, k.min_version, k.max_version))
        .collect();
    assert_eq!(listed, vec![(ApiKey::ApiVersions as i16, 0, 3)]);
}

#[tokio::test(start_paused = true)]
async fn per_api_caps_lower_or_remove_an_api() {
    let cluster = builder()
        .cap_api(ApiKey::Metadata, 9)
        .remove_api(ApiKey::DescribeTransactions)
        .build()
        .await
        .expect("cluster starts");
    let listed = advertised(&cluster).await;
    assert_eq!(listed.get(&(ApiKey::Metadata as i16)), Some(&(0, 9)));
    assert_eq!(listed.get(&(ApiKey::DescribeTransactions as i16)), None);
    assert!(listed.contains_key(&(ApiKey::ListTransactions as i16)));
    let mut conn = RawConnection::new(cluster.connect(0).expect("connect"));
    conn.send(
        ApiKey::DescribeTransactions,
        0,
        &RequestKind::DescribeTransactions(Default::default()),
    )
    .await
    .expect("sent");
    conn.expect_closed(Duration::from_secs(5))
        .await
        .expect("a removed API closes the connection");
}

#[tokio::test(start_paused = true)]
async fn the_client_negotiates_down_to_2_8_and_produces_and_consumes() {
    let cluster = builder()
        .kafka_version(KafkaVersion::V2_8)
        .build()
        .await
        .expect("cluster starts");
    let connector = Arc::new(cluster.connector());
    let producer = Producer::builder(Config::new(cluster.bootstrap()))
        .connector(connector.clone())
        .seed(3)
        .build()
        .expect("producer builds");
    for i in 0..3 {
        let record = ProducerRecord::new("orders")
            .with_partition(1)
            .with_value(format!("v{i}"));
        tokio::time::timeout(BOUND, producer.send_and_wait(record))
            .await
            .expect("in time")
            .expect("written through Produce v9 at most");
    }
    let produced: Vec<i16> = cluster
        .requests()
        .iter()
        .filter(|r| r.api_key == ApiKey::Produce)
        .map(|r| r.api_version)
        .collect();
    assert!(
        !produced.is_empty() && produced.iter().all(|v| *v <= 9),
        "{produced:?}"
    );
    let consumer = Consumer::builder(Config::new(cluster.bootstrap()))
        .connector(connector)
        .seed(3)
        .build()
        .expect("consumer builds");
    let tp = TopicPartition::new("orders", 1);
    consumer
        .assign(std::slice::from_ref(&tp))
        .expect("assigned");
    consumer.seek(&tp, Offset::Beginning).expect("seek");
    for i in 0..3 {
        let record = tokio::time::timeout(BOUND, consumer.recv())
            .await
            .expect("in time")
            .expect("no error")
            .expect("a record");
        assert_eq!(record.value.as_deref(), Some(format!("v{i}").as_bytes()));
    }
    let fetched: Vec<i16> = cluster
        .requests()
        .iter()
        .filter(|r| r.api_key == ApiKey::Fetch)
        .map(|r| r.api_version)
        .collect();
    assert!(
        !fetched.is_empty() && fetched.iter().all(|v| *v <= 12),
        "{fetched:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_client_fails_clearly_on_an_api_the_release_did_not_have() {
    let cluster = builder()
        .kafka_version(KafkaVersion::V2_8)
        .build()
        .await
        .expect("cluster starts");
    let connection = BrokerConnection::open(
        &cluster.connector(),
        "broker-0.franzy.invalid:9092",
        franzy::engine::connection::ConnectionConfig::default(),
        5,
        &Default::default(),
    )
    .await
    .expect("connects and negotiates");
    assert!(matches!(
        connection.version_for(ApiKey::DescribeTransactions),
        Err(Error::UnsupportedVersion { .. })
    ));
    assert!(connection.version_for(ApiKey::Produce).expect("2.8 had it") <= 9);
}

#[tokio::test(start_paused = true)]
async fn hostile_counts_and_offsets_get_clear_errors_and_the_harness_keeps_serving() {
    use franzy::kafka_protocol::messages::create_topics_request::CreatableTopic;
    use franzy::kafka_protocol::messages::delete_records_request::{
        DeleteRecordsPartition, DeleteRecordsTopic,
    };
    use franzy::kafka_protocol::messages::{
        CreateTopicsRequest, DeleteRecordsRequest, MetadataRequest, TopicName,
    };
    use franzy::proto::{ErrorCode, StrBytes};
    let cluster = builder().build().await.expect("cluster starts");
    let controller = cluster.with_state(|s| s.controller_id());
    let mut conn = RawConnection::new(cluster.connect(controller).expect("connect"));
    // A billion partitions in a few bytes.
    let create = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("huge")))
            .with_num_partitions(1_000_000_000)
            .with_replication_factor(1)])
        .with_timeout_ms(1000);
    let (_, response) = conn
        .request(ApiKey::CreateTopics, 7, &RequestKind::CreateTopics(create))
        .await
        .expect("answered");
    let ResponseKind::CreateTopics(response) = response else {
        panic!("not a CreateTopics answer");
    };
    assert_ne!(response.topics[0].error_code, 0);
    assert!(cluster.with_state(|s| s.topic("huge").is_none()));
    // Deleting records before offset i64::MAX.
    let leader = cluster.with_state(|s| s.partition("orders", 0).map(|p| p.leader()));
    let leader = leader.expect("orders-0 exists");
    let mut conn = RawConnection::new(cluster.connect(leader).expect("connect"));
    let delete = DeleteRecordsRequest::default()
        .with_topics(vec![DeleteRecordsTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("orders")))
            .with_partitions(vec![DeleteRecordsPartition::default()
                .with_partition_index(0)
                .with_offset(i64::MAX)])])
        .with_timeout_ms(1000);
    let (_, response) = conn
        .request(
            ApiKey::DeleteRecords,
            2,
            &RequestKind::DeleteRecords(delete),
        )
        .await
        .expect("answered");
    let ResponseKind::DeleteRecords(response) = response else {
        panic!("not a DeleteRecords answer");
    };
    let partition = &response.topics[0].partitions[0];
    assert_eq!(
        (partition.error_code, partition.low_watermark),
        (ErrorCode::OffsetOutOfRange.code(), -1)
    );
    // Still serving.
    let (_, response) = conn
        .request(
            ApiKey::Metadata,
            12,
            &RequestKind::Metadata(MetadataRequest::default().with_topics(None)),
        )
        .await
        .expect("answered");
    assert!(matches!(response, ResponseKind::Metadata(_)));
}
