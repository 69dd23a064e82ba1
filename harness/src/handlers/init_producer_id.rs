//! InitProducerId (key 22), v0-4: a producer id and epoch for an idempotent producer
//! (KIP-98; producer id and epoch in the request from v3, KIP-360; flexible from v2).
//!
//! Without a transactional id, as Kafka's `TransactionCoordinator.handleInitProducerId`
//! does: every request gets a fresh producer id (from the cluster-wide counter, see
//! [`ClusterState::allocate_producer_id`]) at epoch 0, from any broker. The producer id and
//! epoch a v3+ request carries are ignored (a producer bumping its epoch after an
//! OUT_OF_ORDER_SEQUENCE_NUMBER gets a new id), except that setting exactly one of them is
//! INVALID_REQUEST, as `KafkaApis` checks. `transaction_timeout_ms` is ignored.
//!
//! With a transactional id (even an empty one): TRANSACTIONAL_ID_AUTHORIZATION_FAILED.
//! Transactions are not implemented; this is what a Kafka cluster whose ACLs allow no
//! transactional id answers, before anything else: non-retriable, and fatal to Java and
//! librdkafka producers, so a transactional client stops at once instead of retrying (a
//! broker's "not the coordinator" answers would be retried forever). Produce refuses
//! transactional batches with the same code.

use franzy::proto::ErrorCode;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse};

use super::RequestContext;
use crate::cluster::ClusterState;

/// Kafka's `RecordBatch.NO_PRODUCER_ID` / `NO_PRODUCER_EPOCH`: "none" in v3+ requests.
const NO_PRODUCER_ID: i64 = -1;
const NO_PRODUCER_EPOCH: i16 = -1;

/// Serves an InitProducerId request.
pub fn handle(
    cluster: &mut ClusterState,
    ctx: &RequestContext,
    req: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let version = ctx.api_version;
    if req.transactional_id.is_some() {
        return error_response(&req, version, ErrorCode::TransactionalIdAuthorizationFailed);
    }
    // Below v3 the fields are not on the wire and decode as -1.
    let id_given = req.producer_id.0 != NO_PRODUCER_ID;
    let epoch_given = req.producer_epoch != NO_PRODUCER_EPOCH;
    if id_given != epoch_given {
        return error_response(&req, version, ErrorCode::InvalidRequest);
    }
    match cluster.allocate_producer_id() {
        Ok(id) => InitProducerIdResponse::default()
            .with_throttle_time_ms(0)
            .with_error_code(0)
            .with_producer_id(id.into())
            .with_producer_epoch(0),
        Err(code) => error_response(&req, version, code),
    }
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
        for version in 0..=4 {
            for broker in 0..3 {
                let r = init(&mut c, broker, version, idempotent());
                assert_eq!((r.error_code, r.producer_epoch), (0, 0), "v{version}");
                assert_eq!(r.throttle_time_ms, 0);
                ids.push(r.producer_id.0);
            }
        }
        let expected: Vec<i64> = (0..15).map(|i| 1000 + i).collect();
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

    #[test]
    fn transactional_ids_are_refused_for_good() {
        let mut c = cluster_with(1);
        for (version, id) in [(0, "txn"), (4, "txn"), (2, "")] {
            let req =
                idempotent().with_transactional_id(Some(StrBytes::from_static_str(id).into()));
            let r = init(&mut c, 0, version, req);
            assert_eq!(
                r.error_code,
                ErrorCode::TransactionalIdAuthorizationFailed.code()
            );
            assert!(!ErrorCode::TransactionalIdAuthorizationFailed.is_retriable());
            assert_eq!((r.producer_id.0, r.producer_epoch), (-1, -1));
        }
        // No id was used up by the refusals.
        assert_eq!(init(&mut c, 0, 4, idempotent()).producer_id.0, 1000);
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
