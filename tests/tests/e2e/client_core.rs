//! The client's connection layer against the harness, in memory, under a paused clock.

use std::sync::Arc;
use std::time::Duration;

use franzy::io::broker::BrokerConnection;
use franzy::io::cluster::ClusterClient;
use franzy::proto::ApiKey;
use franzy::{Config, Error};
use franzy_harness::{Action, Cluster, Interceptor};
use franzy_tests::init_tracing;

async fn cluster() -> Cluster {
    init_tracing();
    Cluster::builder()
        .brokers(2)
        .in_memory()
        .build()
        .await
        .expect("cluster starts")
}

#[tokio::test(start_paused = true)]
async fn a_connection_negotiates_versions_with_the_harness() {
    let cluster = cluster().await;
    let connector = cluster.connector();
    let config = franzy::engine::connection::ConnectionConfig::default();
    let connection = BrokerConnection::open(
        &connector,
        "broker-1.franzy.invalid:9092",
        config,
        5,
        &Default::default(),
    )
    .await
    .expect("connects and negotiates");
    assert_eq!(
        connection
            .version_for(ApiKey::ApiVersions)
            .expect("advertised"),
        4
    );
    assert!(matches!(
        connection.version_for(ApiKey::DescribeDelegationToken),
        Err(Error::UnsupportedVersion { .. })
    ));
    let recorded = cluster.requests();
    assert_eq!(recorded.len(), 1);
    assert_eq!(
        (
            recorded[0].api_key,
            recorded[0].api_version,
            recorded[0].broker_id
        ),
        (ApiKey::ApiVersions, 3, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn negotiation_that_never_answers_times_out_at_the_request_timeout() {
    let cluster = cluster().await;
    cluster.intercept(Interceptor::new(ApiKey::ApiVersions, Action::NeverAnswer));
    let config = franzy::engine::connection::ConnectionConfig {
        request_timeout: Duration::from_secs(3),
        ..Default::default()
    };
    let start = tokio::time::Instant::now();
    let result = BrokerConnection::open(
        &cluster.connector(),
        "broker-0.franzy.invalid:9092",
        config,
        5,
        &Default::default(),
    )
    .await;
    assert!(
        matches!(result, Err(Error::RequestTimeout(_))),
        "{result:?}"
    );
    assert_eq!(start.elapsed(), Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn reconnects_back_off_exponentially_with_jitter() {
    let cluster = cluster().await;
    let config = Config::new("broker-0.franzy.invalid:9092")
        .reconnect_backoff(Duration::from_millis(100))
        .reconnect_backoff_max(Duration::from_secs(1));
    let client =
        ClusterClient::new(config, Arc::new(cluster.connector()), 5).expect("valid config");
    cluster.stop_broker(0).expect("stop");
    let mut gaps = Vec::new();
    let mut last = tokio::time::Instant::now();
    for _ in 0..5 {
        assert!(client
            .connection("broker-0.franzy.invalid:9092")
            .await
            .is_err());
        let now = tokio::time::Instant::now();
        gaps.push(now - last);
        last = now;
    }
    // First attempt immediate; then roughly 100, 200, 400, 800 ms (+-20%).
    assert_eq!(gaps[0], Duration::ZERO);
    for (gap, base) in gaps[1..].iter().zip([100u64, 200, 400, 800]) {
        let ms = gap.as_millis() as u64;
        assert!(ms >= base * 8 / 10 && ms <= base * 12 / 10, "{gaps:?}");
    }
    cluster.start_broker(0).await.expect("restart");
    client
        .connection("broker-0.franzy.invalid:9092")
        .await
        .expect("connects once the broker is back");
}

#[tokio::test(start_paused = true)]
async fn partitions_for_waits_for_metadata_and_reports_unknown_topics() {
    init_tracing();
    let cluster = Cluster::builder()
        .brokers(3)
        .topic("orders", 6)
        .auto_create_topics(false)
        .in_memory()
        .build()
        .await
        .expect("cluster starts");
    let config = Config::new("broker-0.franzy.invalid:9092");
    let client =
        ClusterClient::new(config, Arc::new(cluster.connector()), 1).expect("valid config");
    assert_eq!(
        client
            .partitions_for("orders", Duration::from_secs(5))
            .await
            .expect("known"),
        6
    );
    let start = tokio::time::Instant::now();
    let missing = client.partitions_for("nope", Duration::from_secs(5)).await;
    assert!(
        matches!(
            &missing,
            Err(Error::Broker {
                code: franzy::proto::ErrorCode::UnknownTopicOrPartition,
                ..
            })
        ),
        "{missing:?}"
    );
    // UNKNOWN_TOPIC_OR_PARTITION is retriable: the client kept asking until the timeout.
    assert!(start.elapsed() >= Duration::from_secs(5));
    // A topic created meanwhile is found on the next refresh.
    cluster.create_topic("later", 2).expect("created");
    assert_eq!(
        client
            .partitions_for("later", Duration::from_secs(5))
            .await
            .expect("known"),
        2
    );
}
