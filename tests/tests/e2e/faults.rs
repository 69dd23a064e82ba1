//! Fault injection on the wire, over in-memory connections under a paused clock: every
//! delay and timeout here is virtual, so the tests take milliseconds and never flake.

use std::sync::Arc;
use std::time::Duration;

use franzy::proto::{ApiKey, ErrorCode, RequestKind, ResponseKind};
use franzy_harness::{Action, Cluster, Interceptor};
use franzy_tests::{init_tracing, FixtureError, RawConnection};

async fn cluster() -> Cluster {
    init_tracing();
    Cluster::builder()
        .brokers(3)
        .in_memory()
        .seed(11)
        .build()
        .await
        .expect("cluster starts")
}

fn api_versions() -> RequestKind {
    franzy_tests::api_versions_request()
}

fn error_code(response: &ResponseKind) -> i16 {
    match response {
        ResponseKind::ApiVersions(r) => r.error_code,
        other => panic!("unexpected response {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_delay_holds_the_response_for_exactly_that_long() {
    let cluster = cluster().await;
    cluster.intercept(Interceptor::new(
        ApiKey::ApiVersions,
        Action::Delay(Duration::from_secs(7)),
    ));
    let mut conn = RawConnection::new(cluster.connect(0).expect("connect"));
    let start = tokio::time::Instant::now();
    let (_, response) = conn
        .request(ApiKey::ApiVersions, 3, &api_versions())
        .await
        .expect("answered");
    assert_eq!(error_code(&response), 0);
    assert_eq!(start.elapsed().as_secs(), 7);
    // Used up: the next one is immediate.
    let start = tokio::time::Instant::now();
    conn.request(ApiKey::ApiVersions, 3, &api_versions())
        .await
        .expect("answered");
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn an_error_answers_for_the_whole_request_on_the_chosen_broker_only() {
    let cluster = cluster().await;
    cluster.intercept(
        Interceptor::new(
            ApiKey::ApiVersions,
            Action::Error(ErrorCode::CoordinatorNotAvailable),
        )
        .on_broker(1)
        .times(2),
    );
    let mut zero = RawConnection::new(cluster.connect(0).expect("connect"));
    let mut one = RawConnection::new(cluster.connect(1).expect("connect"));
    let (_, r) = zero
        .request(ApiKey::ApiVersions, 3, &api_versions())
        .await
        .expect("answered");
    assert_eq!(error_code(&r), 0);
    for _ in 0..2 {
        let (_, r) = one
            .request(ApiKey::ApiVersions, 3, &api_versions())
            .await
            .expect("answered");
        assert_eq!(error_code(&r), ErrorCode::CoordinatorNotAvailable.code());
    }
    let (_, r) = one
        .request(ApiKey::ApiVersions, 3, &api_versions())
        .await
        .expect("answered");
    assert_eq!(error_code(&r), 0);
    assert_eq!(cluster.pending_interceptors(), 0);
}

#[tokio::test(start_paused = true)]
async fn disconnect_closes_before_handling_and_never_answer_stays_silent() {
    let cluster = cluster().await;
    cluster.intercept(Interceptor::new(ApiKey::ApiVersions, Action::Disconnect));
    let mut conn = RawConnection::new(cluster.connect(0).expect("connect"));
    conn.send(ApiKey::ApiVersions, 3, &api_versions())
        .await
        .expect("send");
    conn.expect_closed(Duration::from_secs(1))
        .await
        .expect("closed");

    cluster.intercept(Interceptor::new(ApiKey::ApiVersions, Action::NeverAnswer));
    let mut conn = RawConnection::new(cluster.connect(0).expect("connect"));
    conn.send(ApiKey::ApiVersions, 3, &api_versions())
        .await
        .expect("send");
    // An hour of virtual time passes without an answer or a close.
    match conn.read_frame_within(Duration::from_secs(3600)).await {
        Err(FixtureError::TimedOut) => {}
        other => panic!("expected silence, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn alter_response_changes_the_bytes_sent() {
    let cluster = cluster().await;
    // Overwrite the error code (first two bytes after the 4-byte prefix and the 4-byte
    // correlation id of a v0 response header).
    cluster.intercept(Interceptor::new(
        ApiKey::ApiVersions,
        Action::AlterResponse(Arc::new(|frame: &mut bytes::BytesMut| {
            frame[8..10].copy_from_slice(&ErrorCode::UnknownServerError.code().to_be_bytes());
        })),
    ));
    let mut conn = RawConnection::new(cluster.connect(2).expect("connect"));
    let (_, r) = conn
        .request(ApiKey::ApiVersions, 3, &api_versions())
        .await
        .expect("answered");
    assert_eq!(error_code(&r), ErrorCode::UnknownServerError.code());
}

#[tokio::test(start_paused = true)]
async fn every_request_is_recorded_with_broker_client_and_virtual_time() {
    let cluster = cluster().await;
    let mut conn = RawConnection::new(cluster.connect(2).expect("connect"));
    conn.request(ApiKey::ApiVersions, 3, &api_versions())
        .await
        .expect("answered");
    tokio::time::sleep(Duration::from_secs(5)).await;
    conn.request(ApiKey::ApiVersions, 2, &api_versions())
        .await
        .expect("answered");
    let recorded = cluster.requests();
    assert_eq!(recorded.len(), 2);
    assert_eq!(recorded[0].api_key, ApiKey::ApiVersions);
    assert_eq!(recorded[0].api_version, 3);
    assert_eq!(recorded[1].api_version, 2);
    assert!(recorded.iter().all(|r| r.broker_id == 2));
    assert!(recorded
        .iter()
        .all(|r| r.client_id.as_deref() == Some("franzy-tests")));
    assert_eq!(recorded[1].at - recorded[0].at, Duration::from_secs(5));
}

#[tokio::test]
async fn a_stopped_broker_refuses_connections_and_comes_back_on_the_same_port() {
    init_tracing();
    let cluster = Cluster::builder()
        .brokers(2)
        .build()
        .await
        .expect("cluster starts");
    let address = cluster.broker_address(1).expect("tcp");
    let mut conn = RawConnection::new(
        tokio::net::TcpStream::connect(address)
            .await
            .expect("connect"),
    );
    conn.request(ApiKey::ApiVersions, 3, &api_versions())
        .await
        .expect("answered");
    cluster.stop_broker(1).expect("stop");
    conn.expect_closed(Duration::from_secs(5))
        .await
        .expect("connection dropped");
    assert!(
        tokio::net::TcpStream::connect(address).await.is_err(),
        "listener closed"
    );
    assert!(cluster.connect(1).is_err());
    cluster.start_broker(1).await.expect("restart");
    assert_eq!(cluster.broker_address(1), Some(address));
    let mut conn = RawConnection::new(
        tokio::net::TcpStream::connect(address)
            .await
            .expect("connect"),
    );
    conn.request(ApiKey::ApiVersions, 3, &api_versions())
        .await
        .expect("answered again");
}

#[tokio::test]
async fn shutdown_closes_live_connections() {
    init_tracing();
    let cluster = Cluster::builder()
        .brokers(1)
        .build()
        .await
        .expect("cluster starts");
    let address = cluster.broker_address(0).expect("tcp");
    let mut conn = RawConnection::new(
        tokio::net::TcpStream::connect(address)
            .await
            .expect("connect"),
    );
    conn.request(ApiKey::ApiVersions, 3, &api_versions())
        .await
        .expect("answered");
    cluster.shutdown().await;
    conn.expect_closed(Duration::from_secs(5))
        .await
        .expect("closed by shutdown");
}

fn init_producer_id(transactional_id: Option<&'static str>) -> RequestKind {
    use franzy::kafka_protocol::messages::{InitProducerIdRequest, TransactionalId};
    use franzy::proto::StrBytes;
    RequestKind::InitProducerId(
        InitProducerIdRequest::default()
            .with_transactional_id(
                transactional_id.map(|id| TransactionalId(StrBytes::from_static_str(id))),
            )
            .with_transaction_timeout_ms(60_000)
            .with_producer_id((-1).into())
            .with_producer_epoch(-1),
    )
}

fn init_producer_id_error(response: &ResponseKind) -> i16 {
    match response {
        ResponseKind::InitProducerId(r) => r.error_code,
        other => panic!("unexpected response {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn an_interceptor_narrowed_to_a_transactional_id_fails_only_requests_naming_it() {
    let cluster = cluster().await;
    cluster.intercept(
        Interceptor::new(
            ApiKey::InitProducerId,
            Action::Error(ErrorCode::CoordinatorLoadInProgress),
        )
        .on_transactional_id("payments")
        .times(2),
    );
    let mut conn = RawConnection::new(cluster.connect(0).expect("connect"));
    // Without a transactional id, or with another one, the interceptor does not apply:
    // an idempotent producer gets its id; another transactional id gets what broker 0
    // answers it (no broker coordinates before the first FindCoordinator).
    let (_, response) = conn
        .request(ApiKey::InitProducerId, 4, &init_producer_id(None))
        .await
        .expect("answered");
    assert_eq!(init_producer_id_error(&response), 0);
    let (_, response) = conn
        .request(
            ApiKey::InitProducerId,
            4,
            &init_producer_id(Some("billing")),
        )
        .await
        .expect("answered");
    assert_eq!(
        init_producer_id_error(&response),
        ErrorCode::NotCoordinator.code()
    );
    assert_eq!(cluster.pending_interceptors(), 1);
    for _ in 0..2 {
        let (_, response) = conn
            .request(
                ApiKey::InitProducerId,
                4,
                &init_producer_id(Some("payments")),
            )
            .await
            .expect("answered");
        assert_eq!(
            init_producer_id_error(&response),
            ErrorCode::CoordinatorLoadInProgress.code()
        );
    }
    assert_eq!(cluster.pending_interceptors(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_interceptor_narrowed_to_a_group_leaves_requests_naming_no_group_alone() {
    let cluster = cluster().await;
    cluster.intercept(
        Interceptor::new(ApiKey::InitProducerId, Action::Disconnect)
            .on_group("orders-app")
            .keep(),
    );
    let mut conn = RawConnection::new(cluster.connect(0).expect("connect"));
    let (_, response) = conn
        .request(ApiKey::InitProducerId, 4, &init_producer_id(None))
        .await
        .expect("answered: InitProducerId names no group");
    assert_eq!(init_producer_id_error(&response), 0);
}
