//! InitProducerId (key 22), v0-5: a producer id and epoch, for an idempotent producer or a
//! transactional one (KIP-98; producer id and epoch in the request from v3, KIP-360;
//! flexible from v2; PRODUCER_FENCED from v4; TRANSACTION_ABORTABLE from v5, KIP-890, which
//! this API never answers).
//!
//! First, as `KafkaApis` checks: setting exactly one of the v3+ producer id and epoch is
//! INVALID_REQUEST. Then, as Kafka's `TransactionCoordinator.handleInitProducerId`:
//!
//! - without a transactional id, every request gets a fresh producer id (from the
//!   cluster-wide counter, [`ClusterState::allocate_producer_id`]) at epoch 0, from any
//!   broker; the producer id and epoch a v3+ request carries are ignored (a producer bumping
//!   its epoch after an OUT_OF_ORDER_SEQUENCE_NUMBER gets a new id);
//! - with one: an empty id is INVALID_REQUEST, a `transaction_timeout_ms` outside
//!   `1..=transaction.max.timeout.ms` INVALID_TRANSACTION_TIMEOUT (both checked by any
//!   broker), then a broker other than the id's coordinator answers NOT_COORDINATOR (or
//!   COORDINATOR_LOAD_IN_PROGRESS just after the coordinator moved there), and the
//!   coordinator decides ([`crate::cluster::transactions`]): a new id gets a producer id, a
//!   known one a bumped epoch; an open transaction of the previous producer is aborted
//!   first with a bumped epoch and the request answered CONCURRENT_TRANSACTIONS, for the
//!   client to retry; PRODUCER_FENCED (INVALID_PRODUCER_EPOCH before v4) when the v3+
//!   producer id and epoch name an older producer.
//!
//! `keep_prepared_txn` (v6, KIP-939) is not decodable here.

use franzy::proto::ErrorCode;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse};

use super::RequestContext;
use crate::cluster::transactions::{InitOutcome, Now};
use crate::cluster::ClusterState;

/// Kafka's `RecordBatch.NO_PRODUCER_ID` / `NO_PRODUCER_EPOCH`: "none" in v3+ requests.
const NO_PRODUCER_ID: i64 = -1;
const NO_PRODUCER_EPOCH: i16 = -1;

/// The first version whose clients know PRODUCER_FENCED.
const PRODUCER_FENCED_VERSION: i16 = 4;

/// Serves an InitProducerId request.
pub fn handle(
    cluster: &mut ClusterState,
    ctx: &RequestContext,
    req: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let version = ctx.api_version;
    // Below v3 the fields are not on the wire and decode as -1.
    let id_given = req.producer_id.0 != NO_PRODUCER_ID;
    let epoch_given = req.producer_epoch != NO_PRODUCER_EPOCH;
    if id_given != epoch_given {
        return error_response(&req, version, ErrorCode::InvalidRequest);
    }
    let Some(transactional_id) = req.transactional_id.as_ref() else {
        return match cluster.allocate_producer_id() {
            Ok(id) => answer(id, 0),
            Err(code) => error_response(&req, version, code),
        };
    };
    let transactional_id = transactional_id.as_str();
    let expected = id_given.then_some((req.producer_id.0, req.producer_epoch));
    match init_transactional(
        cluster,
        ctx,
        transactional_id,
        req.transaction_timeout_ms,
        expected,
    ) {
        Ok((producer_id, producer_epoch)) => answer(producer_id, producer_epoch),
        Err(ErrorCode::ProducerFenced) if version < PRODUCER_FENCED_VERSION => {
            error_response(&req, version, ErrorCode::InvalidProducerEpoch)
        }
        Err(code) => error_response(&req, version, code),
    }
}

fn init_transactional(
    cluster: &mut ClusterState,
    ctx: &RequestContext,
    transactional_id: &str,
    timeout_ms: i32,
    expected: Option<(i64, i16)>,
) -> Result<(i64, i16), ErrorCode> {
    if transactional_id.is_empty() {
        return Err(ErrorCode::InvalidRequest);
    }
    if !cluster.transactions().is_valid_timeout(timeout_ms) {
        return Err(ErrorCode::InvalidTransactionTimeout);
    }
    cluster.check_transaction_coordinator(transactional_id, ctx.broker_id, ctx.now)?;
    let now = Now::of(ctx);
    let outcome = {
        let (transactions, mut allocate) = cluster.transactions_and_ids();
        transactions.init_producer_id(transactional_id, timeout_ms, expected, now, &mut allocate)?
    };
    match outcome {
        InitOutcome::Initialized {
            producer_id,
            producer_epoch,
        } => Ok((producer_id, producer_epoch)),
        InitOutcome::Fencing => {
            // The previous producer's transaction is aborted (its markers written now
            // unless they are to wait); the client retries and gets the next epoch.
            cluster.write_due_markers(transactional_id, ctx.now);
            Err(ErrorCode::ConcurrentTransactions)
        }
    }
}

fn answer(producer_id: i64, producer_epoch: i16) -> InitProducerIdResponse {
    InitProducerIdResponse::default()
        .with_throttle_time_ms(0)
        .with_error_code(0)
        .with_producer_id(producer_id.into())
        .with_producer_epoch(producer_epoch)
}

/// The answer that fails `req` with `code`: no producer id, no epoch (Kafka's
/// `InitProducerIdRequest.getErrorResponse`).
pub fn error_response(
    _req: &InitProducerIdRequest,
    _version: i16,
    code: ErrorCode,
) -> InitProducerIdResponse {
    InitProducerIdResponse::default()
        .with_throttle_time_ms(0)
        .with_error_code(code.code())
        .with_producer_id(NO_PRODUCER_ID.into())
        .with_producer_epoch(NO_PRODUCER_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::test_support::{api_ctx, assert_encodes, cluster_with, ctx};
    use crate::handlers::{dispatch, Reply};
    use franzy::proto::message::decode_request;
    use franzy::proto::{ApiKey, ResponseKind, StrBytes};

    fn idempotent() -> InitProducerIdRequest {
        InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000)
    }

    fn init(
        cluster: &mut ClusterState,
        broker: i32,
        version: i16,
        req: InitProducerIdRequest,
    ) -> InitProducerIdResponse {
        let response = handle(cluster, &ctx(broker, version), req);
        assert_encodes(&ResponseKind::InitProducerId(response.clone()), version);
        response
    }

    #[test]
    fn every_request_gets_a_new_id_at_epoch_zero_from_any_broker() {
        let mut c = cluster_with(1);
        let mut ids = Vec::new();
        for version in 0..=5 {
            for broker in 0..3 {
                let r = init(&mut c, broker, version, idempotent());
                assert_eq!((r.error_code, r.producer_epoch), (0, 0), "v{version}");
                assert_eq!(r.throttle_time_ms, 0);
                ids.push(r.producer_id.0);
            }
        }
        let expected: Vec<i64> = (0..18).map(|i| 1000 + i).collect();
        assert_eq!(ids, expected, "one counter for the cluster, from 1000");
    }

    #[test]
    fn a_v3_request_with_an_id_and_epoch_still_gets_a_new_id() {
        let mut c = cluster_with(1);
        let first = init(&mut c, 0, 4, idempotent());
        let bump = idempotent()
            .with_producer_id(first.producer_id)
            .with_producer_epoch(0);
        let r = init(&mut c, 0, 4, bump);
        assert_eq!(r.error_code, 0);
        assert_eq!(
            (r.producer_id.0, r.producer_epoch),
            (first.producer_id.0 + 1, 0)
        );
        for (id, epoch) in [(-1, 3), (1000, -1)] {
            let half = idempotent()
                .with_producer_id(id.into())
                .with_producer_epoch(epoch);
            let r = init(&mut c, 0, 3, half);
            assert_eq!(r.error_code, ErrorCode::InvalidRequest.code());
            assert_eq!((r.producer_id.0, r.producer_epoch), (-1, -1));
        }
    }

    fn transactional(id: &str) -> InitProducerIdRequest {
        idempotent().with_transactional_id(Some(StrBytes::from_string(id.to_string()).into()))
    }

    #[test]
    fn transactional_ids_are_checked_then_served_by_their_coordinator() {
        use crate::handlers::test_support::{init_txn, txn_coordinator};
        let mut c = cluster_with(1);
        // Before the coordinators' topic exists, no broker coordinates.
        let r = init(&mut c, 0, 4, transactional("txn"));
        assert_eq!(r.error_code, ErrorCode::NotCoordinator.code());
        let coordinator = txn_coordinator(&mut c, "txn");
        let other = (coordinator + 1) % 3;
        // Any broker refuses an empty id and a bad timeout first.
        let r = init(&mut c, other, 4, transactional(""));
        assert_eq!(r.error_code, ErrorCode::InvalidRequest.code());
        for timeout in [0, 900_001] {
            let req = transactional("txn").with_transaction_timeout_ms(timeout);
            let r = init(&mut c, other, 4, req);
            assert_eq!(r.error_code, ErrorCode::InvalidTransactionTimeout.code());
        }
        let r = init(&mut c, other, 4, transactional("txn"));
        assert_eq!(r.error_code, ErrorCode::NotCoordinator.code());
        assert_eq!((r.producer_id.0, r.producer_epoch), (-1, -1));
        // The coordinator: a new id at epoch 0, then bumps, at every version.
        for (version, epoch) in (0..=5).zip(0..) {
            assert_eq!(
                init_txn(&mut c, "txn", version),
                (0, 1000, epoch),
                "v{version}"
            );
        }
        // Producer ids come from the same counter as idempotent producers'.
        assert_eq!(init(&mut c, 0, 4, idempotent()).producer_id.0, 1001);
        assert_eq!(init_txn(&mut c, "other", 4), (0, 1002, 0));
        // v3+: naming an older producer is fenced: PRODUCER_FENCED from v4.
        let stale = transactional("txn")
            .with_producer_id(1000.into())
            .with_producer_epoch(2);
        let fenced = ErrorCode::ProducerFenced.code();
        assert_eq!(
            init(&mut c, coordinator, 4, stale.clone()).error_code,
            fenced
        );
        assert_eq!(
            init(&mut c, coordinator, 5, stale.clone()).error_code,
            fenced
        );
        assert_eq!(
            init(&mut c, coordinator, 3, stale).error_code,
            ErrorCode::InvalidProducerEpoch.code()
        );
        // The current producer bumps its epoch (KIP-360).
        let current = transactional("txn")
            .with_producer_id(1000.into())
            .with_producer_epoch(5);
        let r = init(&mut c, coordinator, 3, current);
        assert_eq!(
            (r.error_code, r.producer_id.0, r.producer_epoch),
            (0, 1000, 6)
        );
    }

    #[test]
    fn an_open_transaction_is_aborted_with_a_bumped_epoch_before_the_next_producer() {
        use crate::handlers::test_support::{
            add_txn_partitions, init_txn, produce_txn, txn_records,
        };
        let mut c = cluster_with(2);
        let (_, id, epoch) = init_txn(&mut c, "txn", 4);
        assert_eq!(
            add_txn_partitions(&mut c, "txn", (id, epoch), &[0, 1]),
            vec![0, 0]
        );
        let p = produce_txn(&mut c, Some("txn"), 0, txn_records((id, epoch), 0), 9);
        assert_eq!(p.error_code, 0);
        assert_eq!(
            c.partition_log("t", 0).map(|l| l.last_stable_offset()),
            Some(0)
        );
        // A new producer: the old transaction is aborted (markers at epoch 1) and the
        // client told to retry.
        assert_eq!(
            init_txn(&mut c, "txn", 4).0,
            ErrorCode::ConcurrentTransactions.code()
        );
        for partition in 0..2 {
            let log = c.partition_log("t", partition).expect("log");
            let marker = log.batches().last().expect("a marker");
            assert!(marker.header().attributes.is_control());
            assert_eq!(marker.header().producer_epoch, 1);
            assert_eq!(log.last_stable_offset(), log.high_watermark());
        }
        let aborted = c
            .partition_log("t", 0)
            .map(|l| l.aborted_index().copied().collect::<Vec<_>>())
            .unwrap_or_default();
        assert_eq!((aborted.len(), aborted[0].first_offset), (1, 0));
        assert_eq!(init_txn(&mut c, "txn", 4), (0, id, 2));
        // The old producer is fenced on the partitions.
        let zombie = produce_txn(&mut c, Some("txn"), 0, txn_records((id, epoch), 1), 9);
        assert_eq!(zombie.error_code, ErrorCode::InvalidProducerEpoch.code());
    }

    #[test]
    fn a_request_as_kafka_python_sends_it_is_served() {
        // The v4 request kafka-python 3.0.12 sent in the golden capture, through the
        // request decoder and the dispatcher as the server runs them.
        let golden = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../client/tests/golden/kafka_python_init_producer_id_v4_request.bin"
        ))
        .expect("golden frame");
        // The fixture is the frame after its size prefix: header, then body.
        let decoded = decode_request(bytes::Bytes::from(golden)).expect("decodes");
        assert_eq!(
            decoded.header.request_api_key,
            ApiKey::InitProducerId as i16
        );
        let mut c = cluster_with(1);
        let version = decoded.header.request_api_version;
        match dispatch(
            &mut c,
            &api_ctx(ApiKey::InitProducerId, 0, version),
            decoded.body,
        ) {
            Reply::Respond(ResponseKind::InitProducerId(r)) => {
                assert_eq!(
                    (r.error_code, r.producer_id.0, r.producer_epoch),
                    (0, 1000, 0)
                );
            }
            other => panic!("expected an InitProducerId response, got {other:?}"),
        }
    }
}
