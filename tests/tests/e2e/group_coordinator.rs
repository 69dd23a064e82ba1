//! The group coordinator on the wire, with raw requests built here: FindCoordinator,
//! coordinator moves, and (with the group coordinator) joins, syncs, heartbeats, commits.
//! In-memory connections under a paused clock, so every timeout is virtual.

use franzy::kafka_protocol::messages::FindCoordinatorRequest;
use franzy::proto::{ApiKey, ErrorCode, RequestKind, ResponseKind, StrBytes};
use franzy_harness::{Cluster, CoordinatorType};
use franzy_tests::{init_tracing, RawConnection};
use tokio::io::DuplexStream;

async fn cluster() -> Cluster {
    init_tracing();
    Cluster::builder()
        .brokers(3)
        .in_memory()
        .topic("t", 4)
        .build()
        .await
        .expect("cluster starts")
}

fn connect(cluster: &Cluster, broker: i32) -> RawConnection<DuplexStream> {
    RawConnection::new(cluster.connect(broker).expect("connect"))
}

/// FindCoordinator v4 for one key: (error code, node id).
async fn find(
    conn: &mut RawConnection<DuplexStream>,
    kind: CoordinatorType,
    key: &str,
) -> (i16, i32) {
    let key_type = match kind {
        CoordinatorType::Group => 0,
        CoordinatorType::Transaction => 1,
    };
    let request = FindCoordinatorRequest::default()
        .with_key_type(key_type)
        .with_coordinator_keys(vec![StrBytes::from_string(key.to_string())]);
    let (_, response) = conn
        .request(
            ApiKey::FindCoordinator,
            4,
            &RequestKind::FindCoordinator(request),
        )
        .await
        .expect("answered");
    let ResponseKind::FindCoordinator(r) = response else {
        panic!("a FindCoordinator response")
    };
    let c = &r.coordinators[0];
    (c.error_code, c.node_id.0)
}

#[tokio::test(start_paused = true)]
async fn find_coordinator_creates_the_internal_topic_then_follows_leader_moves() {
    let cluster = cluster().await;
    let mut conn = connect(&cluster, 0);
    assert_eq!(cluster.group_coordinator("g"), None);
    let (code, _) = find(&mut conn, CoordinatorType::Group, "g").await;
    assert_eq!(code, ErrorCode::CoordinatorNotAvailable.code());
    let (code, node) = find(&mut conn, CoordinatorType::Group, "g").await;
    assert_eq!(code, 0);
    assert_eq!(cluster.group_coordinator("g"), Some(node));
    let other = (node + 1) % 3;
    cluster.move_group_coordinator("g", other).expect("moved");
    assert_eq!(
        find(&mut conn, CoordinatorType::Group, "g").await,
        (0, other)
    );
    // Transactional ids have coordinators of their own, moved the same way.
    assert_eq!(
        find(&mut conn, CoordinatorType::Transaction, "tx").await.0,
        ErrorCode::CoordinatorNotAvailable.code()
    );
    let (code, node) = find(&mut conn, CoordinatorType::Transaction, "tx").await;
    assert_eq!(code, 0);
    let target = (node + 1) % 3;
    cluster
        .move_transaction_coordinator("tx", target)
        .expect("moved");
    assert_eq!(cluster.transaction_coordinator("tx"), Some(target));
    assert_eq!(
        find(&mut conn, CoordinatorType::Transaction, "tx").await,
        (0, target)
    );
    // The group's coordinator stops: another takes over; every broker gives the same answer.
    cluster.stop_broker(other).expect("stopped");
    let mut alive = connect(&cluster, (other + 1) % 3);
    let (code, next) = find(&mut alive, CoordinatorType::Group, "g").await;
    assert_eq!(code, 0);
    assert_ne!(next, other);
    assert_eq!(cluster.group_coordinator("g"), Some(next));
    assert!(
        cluster.move_transaction_coordinator("tx", other).is_err(),
        "a stopped broker"
    );
}
