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

// ---- the client's Admin against the harness ----

use franzy::admin::{Admin, AlterConfigOp, ConfigResource, NewTopic, OffsetSpec, ResetTo};
use franzy::IsolationLevel;

fn admin(cluster: &Cluster) -> Admin {
    Admin::builder(Config::new(cluster.bootstrap()))
        .connector(Arc::new(cluster.connector()))
        .seed(9)
        .build()
        .expect("admin builds")
}

async fn within<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(BOUND, future)
        .await
        .expect("done within the bound")
}

fn code_of<T: std::fmt::Debug>(result: &Result<T, Error>) -> Option<franzy::proto::ErrorCode> {
    result.as_ref().err().and_then(Error::code)
}

async fn produce_values(cluster: &Cluster, topic: &str, partition: i32, count: usize) {
    let producer = Producer::builder(Config::new(cluster.bootstrap()))
        .connector(Arc::new(cluster.connector()))
        .seed(4)
        .build()
        .expect("producer builds");
    let mut deliveries = Vec::new();
    for i in 0..count {
        let record = ProducerRecord::new(topic.to_string())
            .with_partition(partition)
            .with_value(format!("v{i}"));
        deliveries.push(within(producer.send(record)).await.expect("accepted"));
    }
    for delivery in deliveries {
        within(delivery).await.expect("written");
    }
    within(producer.close()).await;
}

#[tokio::test(start_paused = true)]
async fn a_batch_create_reports_each_topic_and_topics_are_listed_described_grown_and_deleted() {
    let cluster = builder().build().await.expect("cluster starts");
    let admin = admin(&cluster);
    let batch = vec![
        NewTopic::new("fresh", 4).config("retention.ms", "60000"),
        NewTopic::new("orders", 2),
        NewTopic::new("bad name!", 1),
        NewTopic::new("bad-config", 1).config("retention.ms", "soon"),
        NewTopic::new("zero", 0),
    ];
    // validate_only creates nothing but reports the same outcomes.
    let validated = within(admin.create_topics(&batch, true))
        .await
        .expect("asked");
    assert!(validated["fresh"].is_ok(), "{validated:?}");
    assert!(cluster.with_state(|s| s.topic("fresh").is_none()));
    let created = within(admin.create_topics(&batch, false))
        .await
        .expect("asked");
    assert_eq!(created.len(), 5);
    let fresh = created["fresh"].as_ref().expect("fresh is created");
    assert_eq!(fresh.partitions, 4);
    assert_eq!(
        code_of(&created["orders"]),
        Some(franzy::proto::ErrorCode::TopicAlreadyExists)
    );
    assert_eq!(
        code_of(&created["bad name!"]),
        Some(franzy::proto::ErrorCode::InvalidTopicException)
    );
    assert_eq!(
        code_of(&created["bad-config"]),
        Some(franzy::proto::ErrorCode::InvalidConfig)
    );
    assert_eq!(
        code_of(&created["zero"]),
        Some(franzy::proto::ErrorCode::InvalidPartitions)
    );
    let listed = within(admin.list_topics(false)).await.expect("listed");
    let names: Vec<&str> = listed.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, vec!["fresh", "orders"]);
    let described = within(admin.describe_topics(&["fresh".into(), "nope".into()]))
        .await
        .expect("asked");
    let fresh_description = described["fresh"].as_ref().expect("described");
    assert_eq!(fresh_description.id, fresh.id);
    assert!(!fresh_description.id.is_nil());
    assert_eq!(fresh_description.partitions.len(), 4);
    assert!(fresh_description
        .partitions
        .iter()
        .all(|p| p.leader >= 0 && !p.isr.is_empty()));
    assert_eq!(
        code_of(&described["nope"]),
        Some(franzy::proto::ErrorCode::UnknownTopicOrPartition)
    );
    let grown =
        within(admin.create_partitions(&[("fresh".into(), 6), ("orders".into(), 1)], false))
            .await
            .expect("asked");
    assert!(grown["fresh"].is_ok());
    assert_eq!(
        code_of(&grown["orders"]),
        Some(franzy::proto::ErrorCode::InvalidPartitions)
    );
    assert_eq!(
        cluster.with_state(|s| s.topic("fresh").map(|t| t.partitions().len())),
        Some(6)
    );
    let deleted = within(admin.delete_topics(&["fresh".into(), "ghost".into()]))
        .await
        .expect("asked");
    assert!(deleted["fresh"].is_ok());
    assert_eq!(
        code_of(&deleted["ghost"]),
        Some(franzy::proto::ErrorCode::UnknownTopicOrPartition)
    );
    assert!(cluster.with_state(|s| s.topic("fresh").is_none()));
}

#[tokio::test(start_paused = true)]
async fn a_create_sent_to_a_moved_controller_is_retried_on_the_new_one() {
    use franzy_harness::{Action, Interceptor};
    let cluster = builder().build().await.expect("cluster starts");
    let admin = admin(&cluster);
    cluster.intercept(Interceptor::new(
        ApiKey::CreateTopics,
        Action::Error(franzy::proto::ErrorCode::NotController),
    ));
    let created = within(admin.create_topics(&[NewTopic::new("retried", 2)], false))
        .await
        .expect("asked");
    assert!(created["retried"].is_ok(), "{created:?}");
    let attempts = cluster
        .requests()
        .iter()
        .filter(|r| r.api_key == ApiKey::CreateTopics)
        .count();
    assert_eq!(attempts, 2);
}

#[tokio::test(start_paused = true)]
async fn configs_are_described_and_altered_per_resource() {
    let cluster = builder().build().await.expect("cluster starts");
    let admin = admin(&cluster);
    let topic = ConfigResource::Topic("orders".into());
    let changes = vec![
        (
            topic.clone(),
            vec![
                AlterConfigOp::Set("retention.ms".into(), "1234".into()),
                AlterConfigOp::Append("cleanup.policy".into(), "compact".into()),
            ],
        ),
        (
            ConfigResource::Topic("ghost".into()),
            vec![AlterConfigOp::Set("retention.ms".into(), "1".into())],
        ),
    ];
    let validated = within(admin.incremental_alter_configs(&changes, true))
        .await
        .expect("asked");
    assert!(validated[&topic].is_ok());
    assert!(cluster
        .with_state(|s| s
            .topic("orders")
            .and_then(|t| t.config("retention.ms").map(str::to_string)))
        .is_none());
    let altered = within(admin.incremental_alter_configs(&changes, false))
        .await
        .expect("asked");
    assert!(altered[&topic].is_ok());
    assert_eq!(
        code_of(&altered[&ConfigResource::Topic("ghost".into())]),
        Some(franzy::proto::ErrorCode::UnknownTopicOrPartition)
    );
    let broker = ConfigResource::Broker(1);
    let described = within(admin.describe_configs(&[topic.clone(), broker.clone()]))
        .await
        .expect("asked");
    let entries = described[&topic].as_ref().expect("topic described");
    let retention = entries
        .iter()
        .find(|e| e.name == "retention.ms")
        .expect("listed");
    assert_eq!(retention.value.as_deref(), Some("1234"));
    assert_eq!(retention.source_name(), "DYNAMIC_TOPIC_CONFIG");
    let policy = entries
        .iter()
        .find(|e| e.name == "cleanup.policy")
        .expect("listed");
    assert_eq!(policy.value.as_deref(), Some("delete,compact"));
    let broker_entries = described[&broker].as_ref().expect("broker described");
    let id = broker_entries
        .iter()
        .find(|e| e.name == "broker.id")
        .expect("listed");
    assert_eq!(id.value.as_deref(), Some("1"));
    let deleted = within(admin.incremental_alter_configs(
        &[(
            topic.clone(),
            vec![AlterConfigOp::Delete("retention.ms".into())],
        )],
        false,
    ))
    .await
    .expect("asked");
    assert!(deleted[&topic].is_ok());
    assert_eq!(
        cluster.with_state(|s| s
            .topic("orders")
            .and_then(|t| t.config("retention.ms").map(str::to_string))),
        None
    );
}

#[tokio::test(start_paused = true)]
async fn dynamic_broker_configs_are_set_per_broker_and_cluster_wide_and_described_with_their_sources(
) {
    use franzy::admin::{AlterConfigOp, ConfigResource};
    use franzy::proto::ErrorCode;
    let cluster = builder().build().await.expect("cluster starts");
    let admin = admin(&cluster);
    let (one, defaults) = (ConfigResource::Broker(1), ConfigResource::BrokerDefault);
    let set = |name: &str, value: &str| AlterConfigOp::Set(name.into(), value.into());
    let altered = within(admin.incremental_alter_configs(
        &[
            (
                one.clone(),
                vec![set("log.retention.ms", "2000"), set("num.io.threads", "16")],
            ),
            (defaults.clone(), vec![set("log.retention.ms", "1000")]),
            (ConfigResource::Broker(2), vec![set("broker.id", "5")]),
        ],
        false,
    ))
    .await
    .expect("asked");
    assert!(altered[&one].is_ok(), "{altered:?}");
    assert!(altered[&defaults].is_ok(), "{altered:?}");
    assert_eq!(
        code_of(&altered[&ConfigResource::Broker(2)]),
        Some(ErrorCode::InvalidConfig)
    );
    let refused = within(admin.incremental_alter_configs(
        &[(defaults.clone(), vec![set("listeners", "PLAINTEXT://:1")])],
        false,
    ))
    .await
    .expect("asked");
    assert_eq!(code_of(&refused[&defaults]), Some(ErrorCode::InvalidConfig));

    let topic = ConfigResource::Topic("orders".into());
    let described = within(admin.describe_configs(&[
        one.clone(),
        ConfigResource::Broker(0),
        defaults.clone(),
        topic.clone(),
    ]))
    .await
    .expect("asked");
    let entry = |resource: &ConfigResource, name: &str| {
        let entries = described[resource].as_ref().expect("described");
        entries
            .iter()
            .find(|e| e.name == name)
            .map(|e| (e.value.clone().unwrap_or_default(), e.source_name()))
    };
    assert_eq!(
        entry(&one, "log.retention.ms"),
        Some(("2000".into(), "DYNAMIC_BROKER_CONFIG"))
    );
    assert_eq!(
        entry(&one, "num.io.threads"),
        Some(("16".into(), "DYNAMIC_BROKER_CONFIG"))
    );
    assert_eq!(
        entry(&ConfigResource::Broker(0), "log.retention.ms"),
        Some(("1000".into(), "DYNAMIC_DEFAULT_BROKER_CONFIG"))
    );
    assert_eq!(entry(&ConfigResource::Broker(0), "num.io.threads"), None);
    assert_eq!(
        described[&defaults].as_ref().expect("described").len(),
        1,
        "the defaults list what was set cluster-wide"
    );
    assert_eq!(
        entry(&topic, "retention.ms"),
        Some(("1000".into(), "DYNAMIC_DEFAULT_BROKER_CONFIG"))
    );
}

#[tokio::test(start_paused = true)]
async fn offsets_records_producers_and_the_cluster() {
    let cluster = builder().build().await.expect("cluster starts");
    let admin = admin(&cluster);
    produce_values(&cluster, "orders", 0, 10).await;
    let p0 = TopicPartition::new("orders", 0);
    let ghost = TopicPartition::new("ghost", 0);
    let specs = vec![
        (p0.clone(), OffsetSpec::Latest),
        (ghost.clone(), OffsetSpec::Earliest),
    ];
    let listed = within(admin.list_offsets(&specs, IsolationLevel::ReadUncommitted))
        .await
        .expect("asked");
    assert_eq!(listed[&p0].as_ref().expect("listed").offset, 10);
    assert_eq!(
        code_of(&listed[&ghost]),
        Some(franzy::proto::ErrorCode::UnknownTopicOrPartition)
    );
    let max = within(admin.list_offsets(
        &[(p0.clone(), OffsetSpec::MaxTimestamp)],
        IsolationLevel::ReadUncommitted,
    ))
    .await
    .expect("asked");
    assert!(max[&p0].as_ref().expect("listed").offset >= 0);
    let deleted = within(admin.delete_records(&BTreeMap::from([
        (p0.clone(), 4),
        (TopicPartition::new("orders", 1), i64::MAX),
    ])))
    .await
    .expect("asked");
    assert_eq!(*deleted[&p0].as_ref().expect("deleted"), 4);
    assert_eq!(
        code_of(&deleted[&TopicPartition::new("orders", 1)]),
        Some(franzy::proto::ErrorCode::OffsetOutOfRange)
    );
    let earliest = within(admin.list_offsets(
        &[(p0.clone(), OffsetSpec::Earliest)],
        IsolationLevel::ReadUncommitted,
    ))
    .await
    .expect("asked");
    assert_eq!(earliest[&p0].as_ref().expect("listed").offset, 4);
    let producers = within(admin.describe_producers(std::slice::from_ref(&p0)))
        .await
        .expect("asked");
    let producers = producers[&p0].as_ref().expect("described");
    assert_eq!(producers.len(), 1, "one idempotent producer wrote");
    assert_eq!(producers[0].last_sequence, 9);
    let description = within(admin.describe_cluster()).await.expect("described");
    assert_eq!(description.brokers.len(), 3);
    assert!(description.controller_id >= 0);
}

#[tokio::test(start_paused = true)]
async fn transactions_are_listed_and_described_and_lag_differs_by_isolation() {
    let cluster = builder().build().await.expect("cluster starts");
    let admin = admin(&cluster);
    let p0 = TopicPartition::new("orders", 0);
    produce_values(&cluster, "orders", 0, 3).await;
    let producer = Producer::builder(Config::new(cluster.bootstrap()).transactional_id("tx-1"))
        .connector(Arc::new(cluster.connector()))
        .seed(5)
        .build()
        .expect("producer builds");
    within(producer.init_transactions())
        .await
        .expect("initialised");
    within(producer.begin_transaction()).await.expect("begun");
    for i in 0..4 {
        let record = ProducerRecord::new("orders")
            .with_partition(0)
            .with_value(format!("t{i}"));
        within(producer.send_and_wait(record))
            .await
            .expect("written");
    }
    // The group committed offset 1 and the transaction is open: read_committed's end is
    // the last stable offset (3), read_uncommitted's the high watermark (7).
    let committed =
        within(admin.alter_group_offsets("lagging", &BTreeMap::from([(p0.clone(), 1)])))
            .await
            .expect("asked");
    assert!(committed[&p0].is_ok(), "{committed:?}");
    let lag = |isolation| {
        let admin = admin.clone();
        async move {
            within(admin.lag("lagging", isolation))
                .await
                .expect("lag")
                .into_iter()
                .find(|l| l.partition.partition == 0)
                .expect("partition 0")
        }
    };
    let committed_lag = lag(IsolationLevel::ReadCommitted).await;
    assert_eq!((committed_lag.end, committed_lag.lag), (3, Some(2)));
    let uncommitted_lag = lag(IsolationLevel::ReadUncommitted).await;
    assert_eq!((uncommitted_lag.end, uncommitted_lag.lag), (7, Some(6)));
    let listed = within(admin.list_transactions()).await.expect("listed");
    assert!(
        listed
            .iter()
            .any(|t| t.transactional_id == "tx-1" && t.state == "Ongoing"),
        "{listed:?}"
    );
    let described = within(admin.describe_transactions(&["tx-1".into(), "nobody".into()]))
        .await
        .expect("asked");
    let tx = described["tx-1"].as_ref().expect("described");
    assert_eq!(tx.state, "Ongoing");
    assert_eq!(tx.partitions, vec![p0.clone()]);
    assert_eq!(
        code_of(&described["nobody"]),
        Some(franzy::proto::ErrorCode::TransactionalIdNotFound)
    );
    let producers = within(admin.describe_producers(std::slice::from_ref(&p0)))
        .await
        .expect("asked");
    let open = producers[&p0].as_ref().expect("described");
    assert!(
        open.iter()
            .any(|p| p.current_transaction_start_offset == Some(3)),
        "{open:?}"
    );
    within(producer.commit_transaction())
        .await
        .expect("committed");
    let after = lag(IsolationLevel::ReadCommitted).await;
    assert_eq!(after.end, 8, "the commit marker takes an offset");
}

#[tokio::test(start_paused = true)]
async fn a_group_is_listed_described_its_reset_refused_while_active_and_done_once_empty() {
    let cluster = builder().build().await.expect("cluster starts");
    let admin = admin(&cluster);
    for partition in 0..3 {
        produce_values(&cluster, "orders", partition, 5).await;
    }
    let consumer = Consumer::builder(
        Config::new(cluster.bootstrap())
            .group_id("readers")
            .auto_offset_reset(franzy::OffsetReset::Earliest)
            .enable_auto_commit(false),
    )
    .connector(Arc::new(cluster.connector()))
    .seed(6)
    .build()
    .expect("consumer builds");
    consumer.subscribe(["orders"]).expect("subscribed");
    for _ in 0..15 {
        within(consumer.recv())
            .await
            .expect("no error")
            .expect("a record");
    }
    within(consumer.commit()).await.expect("committed");
    let groups = within(admin.list_groups()).await.expect("listed");
    let readers = groups
        .iter()
        .find(|g| g.group_id == "readers")
        .expect("listed");
    assert_eq!(
        (readers.state.as_str(), readers.protocol_type.as_str()),
        ("Stable", "consumer")
    );
    let described = within(admin.describe_groups(&["readers".into()]))
        .await
        .expect("asked");
    let group = described["readers"].as_ref().expect("described");
    assert_eq!(group.members.len(), 1);
    let mut assigned = group.members[0].assignment.clone();
    assigned.sort();
    assert_eq!(
        assigned,
        (0..3)
            .map(|p| TopicPartition::new("orders", p))
            .collect::<Vec<_>>()
    );
    let lag = within(admin.lag("readers", IsolationLevel::ReadUncommitted))
        .await
        .expect("lag");
    assert!(lag.iter().all(|l| l.lag == Some(0)), "{lag:?}");
    // Active: the reset is refused, as kafka-consumer-groups refuses it.
    let refused = within(admin.reset_offsets("readers", &[], &ResetTo::Earliest, false)).await;
    assert_eq!(
        refused.as_ref().err().and_then(Error::code),
        Some(franzy::proto::ErrorCode::NonEmptyGroup)
    );
    // A commit as an admin while members are in the group is refused by the coordinator.
    let direct = within(admin.alter_group_offsets(
        "readers",
        &BTreeMap::from([(TopicPartition::new("orders", 0), 0)]),
    ))
    .await
    .expect("asked");
    assert!(direct.values().all(Result::is_err), "{direct:?}");
    within(consumer.close()).await;
    let dry = within(admin.reset_offsets("readers", &[], &ResetTo::ShiftBy(-2), true))
        .await
        .expect("dry run");
    assert!(dry.values().all(|o| *o == 3), "{dry:?}");
    let lag = within(admin.lag("readers", IsolationLevel::ReadUncommitted))
        .await
        .expect("lag");
    assert!(
        lag.iter().all(|l| l.lag == Some(0)),
        "a dry run commits nothing"
    );
    let reset =
        within(admin.reset_offsets("readers", &["orders".into()], &ResetTo::Earliest, false))
            .await
            .expect("reset while empty");
    assert_eq!(reset.len(), 3);
    let lag = within(admin.lag("readers", IsolationLevel::ReadUncommitted))
        .await
        .expect("lag");
    assert!(lag.iter().all(|l| l.lag == Some(5)), "{lag:?}");
    let offsets =
        within(admin.delete_group_offsets("readers", &[TopicPartition::new("orders", 2)]))
            .await
            .expect("asked");
    assert!(offsets.values().all(Result::is_ok), "{offsets:?}");
    let left = within(admin.list_group_offsets("readers"))
        .await
        .expect("fetched");
    assert_eq!(left.len(), 2);
    let deleted = within(admin.delete_groups(&["readers".into(), "unknown-group".into()]))
        .await
        .expect("asked");
    assert!(deleted["readers"].is_ok());
    assert_eq!(
        code_of(&deleted["unknown-group"]),
        Some(franzy::proto::ErrorCode::GroupIdNotFound)
    );
}

#[tokio::test(start_paused = true)]
async fn the_lag_of_a_group_consuming_under_load_drains_to_zero() {
    let cluster = builder().build().await.expect("cluster starts");
    let admin = admin(&cluster);
    let consumer = Consumer::builder(
        Config::new(cluster.bootstrap())
            .group_id("busy")
            .auto_offset_reset(franzy::OffsetReset::Earliest)
            .enable_auto_commit(false),
    )
    .connector(Arc::new(cluster.connector()))
    .seed(8)
    .build()
    .expect("consumer builds");
    consumer.subscribe(["orders"]).expect("subscribed");
    let mut read = 0usize;
    let mut seen_lag = false;
    for round in 0..10 {
        produce_values(&cluster, "orders", round % 3, 20).await;
        // Read half of what is there, commit, and look at the lag.
        for _ in 0..10 {
            within(consumer.recv())
                .await
                .expect("no error")
                .expect("a record");
            read += 1;
        }
        within(consumer.commit()).await.expect("committed");
        let total: i64 = within(admin.lag("busy", IsolationLevel::ReadUncommitted))
            .await
            .expect("lag")
            .iter()
            .map(|l| l.lag.unwrap_or(0))
            .sum();
        seen_lag |= total > 0;
    }
    assert!(seen_lag, "the consumer fell behind under load");
    while read < 200 {
        within(consumer.recv())
            .await
            .expect("no error")
            .expect("a record");
        read += 1;
    }
    within(consumer.commit()).await.expect("committed");
    let lag = within(admin.lag("busy", IsolationLevel::ReadUncommitted))
        .await
        .expect("lag");
    assert_eq!(lag.len(), 3);
    assert!(lag.iter().all(|l| l.lag == Some(0)), "{lag:?}");
    within(consumer.close()).await;
}

// ---- statistics ----

#[tokio::test(start_paused = true)]
async fn producer_consumer_and_admin_statistics_count_what_they_did() {
    let cluster = builder().build().await.expect("cluster starts");
    let producer = Producer::builder(Config::new(cluster.bootstrap()))
        .connector(Arc::new(cluster.connector()))
        .seed(2)
        .build()
        .expect("producer builds");
    let mut deliveries = Vec::new();
    for i in 0..20 {
        let record = ProducerRecord::new("orders")
            .with_partition(i % 2)
            .with_key(format!("k{i:02}"))
            .with_value("0123456789");
        deliveries.push(within(producer.send(record)).await.expect("accepted"));
    }
    for delivery in deliveries {
        within(delivery).await.expect("written");
    }
    let stats = producer.stats();
    assert_eq!((stats.records, stats.bytes), (20, 20 * (3 + 10)));
    assert!(stats.requests >= 2, "{stats:?}");
    assert_eq!(
        stats.buffer_used_bytes, 0,
        "everything delivered gave its buffer back"
    );
    assert!(stats.latency_us.count() >= 1);
    assert!(stats
        .brokers
        .values()
        .any(|b| b.connected && b.requests > 0));
    assert!(stats.brokers.values().all(|b| b.in_flight == 0));
    let batches: u64 = stats
        .partitions
        .values()
        .map(|p| p.batch_bytes.count())
        .sum();
    assert!(batches >= 2, "{stats:?}");
    let json = stats.to_json();
    for key in [
        "\"records\":20",
        "\"bytes\":260",
        "\"latency_us\":{",
        "\"orders/0\":{\"batch_bytes\"",
    ] {
        assert!(json.contains(key), "{key} in {json}");
    }
    within(producer.close()).await;

    let consumer = Consumer::builder(Config::new(cluster.bootstrap()))
        .connector(Arc::new(cluster.connector()))
        .seed(3)
        .build()
        .expect("consumer builds");
    let tp = TopicPartition::new("orders", 0);
    consumer
        .assign(std::slice::from_ref(&tp))
        .expect("assigned");
    consumer.seek(&tp, Offset::Beginning).expect("seek");
    for _ in 0..10 {
        within(consumer.recv())
            .await
            .expect("no error")
            .expect("a record");
    }
    let stats = consumer.stats();
    assert_eq!((stats.records, stats.bytes), (10, 10 * 13));
    let partition = &stats.partitions[&tp];
    assert_eq!(partition.position, Some(10));
    assert_eq!(partition.lag, Some(0));
    assert!(stats
        .to_json()
        .contains("\"orders/0\":{\"batch_bytes\":{\"count\":0"));

    // The admin's retries are counted.
    use franzy_harness::{Action, Interceptor};
    let admin = admin(&cluster);
    cluster.intercept(Interceptor::new(
        ApiKey::CreateTopics,
        Action::Error(franzy::proto::ErrorCode::NotController),
    ));
    within(admin.create_topics(&[NewTopic::new("counted", 1)], false))
        .await
        .expect("asked");
    assert_eq!(admin.stats().retries, 1);
}

#[tokio::test(start_paused = true)]
async fn the_harness_counts_requests_per_api_bytes_and_the_largest_request() {
    let cluster = builder().build().await.expect("cluster starts");
    let before = cluster.stats();
    let admin = admin(&cluster);
    within(admin.describe_cluster()).await.expect("described");
    within(admin.list_topics(false)).await.expect("listed");
    let stats = cluster.stats();
    let count = |api| stats.requests_of(api);
    assert_eq!(count(ApiKey::DescribeCluster), 1);
    assert!(count(ApiKey::Metadata) >= 1);
    assert!(count(ApiKey::ApiVersions) >= 1);
    assert_eq!(
        stats.requests(),
        cluster.requests().len() as u64 + before.requests()
    );
    assert!(stats.bytes_in > 0 && stats.bytes_out > stats.bytes_in);
    assert!(stats.largest_request > 0 && stats.largest_request <= stats.bytes_in);
}
