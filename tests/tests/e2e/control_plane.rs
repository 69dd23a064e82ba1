//! The control plane over real HTTP: each operation changes the cluster as its Rust method
//! would, and bad requests get JSON errors, not a dropped connection.

use std::time::Duration;

use franzy_harness::Cluster;
use franzy_tests::init_tracing;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One request; the status code and the body.
async fn http(
    address: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, String) {
    let mut stream = TcpStream::connect(address).await.expect("connects");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("writes");
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut answer))
        .await
        .expect("answered in time")
        .expect("reads");
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn every_control_changes_the_cluster_and_errors_are_json() {
    init_tracing();
    let cluster = Cluster::builder()
        .brokers(3)
        .topic("orders", 3)
        .build()
        .await
        .expect("cluster");
    let control = cluster.serve_control("127.0.0.1:0").await.expect("serves");
    let at = control.local_addr();

    let (status, body) = http(at, "GET", "/brokers", "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body.matches("\"up\":true").count(), 3, "{body}");
    assert_eq!(http(at, "POST", "/brokers/1/stop", "").await.0, 200);
    assert!(!cluster.with_state(|s| s.is_broker_up(1)));
    assert_eq!(http(at, "POST", "/brokers/1/start", "").await.0, 200);
    assert!(cluster.with_state(|s| s.is_broker_up(1)));
    assert_eq!(http(at, "POST", "/brokers/9/stop", "").await.0, 404);

    let (status, body) = http(at, "POST", "/partitions/orders/0/leader/2", "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        cluster.with_state(|s| s.partition("orders", 0).map(|p| p.leader())),
        Some(2)
    );
    assert_eq!(
        http(at, "POST", "/partitions/orders/0/leaderless", "")
            .await
            .0,
        200
    );
    assert_eq!(
        cluster.with_state(|s| s.partition("orders", 0).map(|p| p.leader())),
        Some(-1)
    );
    assert_eq!(
        http(at, "POST", "/partitions/nope/0/leader/2", "").await.0,
        400
    );

    let fault = r#"{"api":"Produce","broker":1,"topic":"orders","partition":0,"error":"NOT_LEADER_OR_FOLLOWER","times":3}"#;
    assert_eq!(http(at, "POST", "/faults", fault).await.0, 200);
    assert_eq!(
        http(at, "POST", "/faults", r#"{"api":"Fetch","drop":"never"}"#)
            .await
            .0,
        200
    );
    assert_eq!(cluster.pending_interceptors(), 2);
    assert_eq!(http(at, "GET", "/faults", "").await.1, "{\"pending\":2}");
    let (status, body) = http(at, "POST", "/faults", r#"{"api":"Produce"}"#).await;
    assert_eq!(status, 400);
    assert!(body.starts_with("{\"error\":"), "{body}");
    assert_eq!(http(at, "DELETE", "/faults", "").await.0, 200);
    assert_eq!(cluster.pending_interceptors(), 0);

    // The request log, filtered: a raw ApiVersions to broker 2, none to the others.
    let mut conn = franzy_tests::RawConnection::new(
        TcpStream::connect(cluster.broker_address(2).expect("tcp"))
            .await
            .expect("connects"),
    );
    conn.request(
        franzy::proto::ApiKey::ApiVersions,
        3,
        &franzy_tests::api_versions_request(),
    )
    .await
    .expect("answered");
    let (status, body) = http(at, "GET", "/requests?api=ApiVersions&broker=2", "").await;
    assert_eq!(status, 200);
    assert_eq!(body.matches("\"api\":\"ApiVersions\"").count(), 1, "{body}");
    assert_eq!(http(at, "GET", "/requests?broker=0", "").await.1, "[]");
    assert_eq!(
        http(at, "GET", "/requests?since=99999999", "").await.1,
        "[]"
    );
    assert_eq!(http(at, "GET", "/requests?api=Nope", "").await.0, 400);

    // Coordinators move to the broker asked for (each creating its internal topic first).
    assert_eq!(http(at, "POST", "/groups/g/coordinator/1", "").await.0, 200);
    assert_eq!(
        http(at, "POST", "/transactions/t/coordinator/2", "")
            .await
            .0,
        200
    );
    assert_eq!(http(at, "POST", "/groups/g/coordinator/9", "").await.0, 400);
    assert_eq!(http(at, "GET", "/brokers/1/stop", "").await.0, 405);
    assert_eq!(http(at, "GET", "/nothing", "").await.0, 404);
    // A body over 64 KiB is refused from its length alone.
    let mut stream = TcpStream::connect(at).await.expect("connects");
    stream
        .write_all(b"POST /faults HTTP/1.1\r\nContent-Length: 71680\r\n\r\n")
        .await
        .expect("writes");
    let mut answer = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut answer)).await;
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
}

#[tokio::test]
async fn the_harness_statistics_are_served_as_json() {
    init_tracing();
    let cluster = Cluster::builder()
        .brokers(1)
        .build()
        .await
        .expect("cluster");
    let control = cluster.serve_control("127.0.0.1:0").await.expect("serves");
    let at = control.local_addr();
    let mut conn = franzy_tests::RawConnection::new(
        TcpStream::connect(cluster.broker_address(0).expect("broker 0"))
            .await
            .expect("connects"),
    );
    conn.request(
        franzy::proto::ApiKey::ApiVersions,
        3,
        &franzy_tests::api_versions_request(),
    )
    .await
    .expect("answered");
    let (status, body) = http(at, "GET", "/stats", "").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"requests\":{\"ApiVersions\":1}"), "{body}");
    let stats = cluster.stats();
    assert!(
        body.contains(&format!("\"bytes_in\":{}", stats.bytes_in)),
        "{body}"
    );
    assert!(
        body.contains(&format!("\"largest_request\":{}", stats.largest_request)),
        "{body}"
    );
    assert_eq!(http(at, "POST", "/stats", "").await.0, 405);
}
