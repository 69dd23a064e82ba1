//! EndTxn (key 26), v0-5: commit or abort a producer's transaction (KIP-98;
//! PRODUCER_FENCED from v2, INVALID_PRODUCER_EPOCH before; flexible from v3;
//! TRANSACTION_ABORTABLE from v4, never answered here; v5 is transaction version 2, KIP-890
//! part 2: every end bumps the producer epoch, and the answer carries the producer id and
//! epoch of the next transaction).
//!
//! As Kafka's `TransactionCoordinator.endTransaction` decides it
//! ([`crate::cluster::transactions::Transactions::end_transaction`]): INVALID_REQUEST for an
//! empty id; NOT_COORDINATOR from a broker that does not coordinate it
//! (COORDINATOR_LOAD_IN_PROGRESS just after a move); INVALID_PRODUCER_ID_MAPPING,
//! PRODUCER_FENCED, CONCURRENT_TRANSACTIONS while the same end is being written,
//! INVALID_TXN_STATE for an end the state does not allow. A retried end of a transaction
//! that already ended the same way succeeds (in version 2 only when the request's epoch is
//! the one before the bump). On success the markers are written to every partition of the
//! transaction (at once, unless [`crate::cluster::TransactionConfig::marker_delay`] says
//! otherwise), and the group offsets it staged are committed or dropped; Kafka answers
//! once the end is in its log, before the markers, which is what the harness answers too.

use franzy::proto::ErrorCode;
use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse};

use super::RequestContext;
use crate::cluster::transactions::{
    EndOutcome, Now, TransactionVersion, NO_PRODUCER_EPOCH, NO_PRODUCER_ID,
};
use crate::cluster::ClusterState;

/// The first version whose clients know PRODUCER_FENCED.
const PRODUCER_FENCED_VERSION: i16 = 2;
/// The first version of transaction version 2 (KIP-890 part 2).
const EPOCH_BUMP_VERSION: i16 = 5;

/// Serves an EndTxn request.
pub fn handle(
    cluster: &mut ClusterState,
    ctx: &RequestContext,
    req: EndTxnRequest,
) -> EndTxnResponse {
    let version = ctx.api_version;
    match end(cluster, ctx, &req) {
        Ok((producer_id, producer_epoch)) => EndTxnResponse::default()
            .with_producer_id(producer_id.into())
            .with_producer_epoch(producer_epoch),
        Err(ErrorCode::ProducerFenced) if version < PRODUCER_FENCED_VERSION => {
            error_response(&req, version, ErrorCode::InvalidProducerEpoch)
        }
        Err(code) => error_response(&req, version, code),
    }
}

fn end(
    cluster: &mut ClusterState,
    ctx: &RequestContext,
    req: &EndTxnRequest,
) -> Result<(i64, i16), ErrorCode> {
    let id = req.transactional_id.as_str();
    if id.is_empty() {
        return Err(ErrorCode::InvalidRequest);
    }
    cluster.check_transaction_coordinator(id, ctx.broker_id, ctx.now)?;
    let version = if ctx.api_version >= EPOCH_BUMP_VERSION {
        TransactionVersion::V2
    } else {
        TransactionVersion::V1
    };
    let now = Now::of(ctx);
    let outcome = {
        let (transactions, mut allocate) = cluster.transactions_and_ids();
        transactions.end_transaction(
            id,
            (req.producer_id.0, req.producer_epoch),
            req.committed,
            version,
            now,
            &mut allocate,
        )?
    };
    let (producer_id, producer_epoch) = match outcome {
        EndOutcome::Prepared {
            producer_id,
            producer_epoch,
        } => {
            cluster.write_due_markers(id, ctx.now);
            (producer_id, producer_epoch)
        }
        EndOutcome::AlreadyEnded {
            producer_id,
            producer_epoch,
        } => (producer_id, producer_epoch),
    };
    // Version 1 answers carry no producer (Kafka sends -1, -1).
    Ok(match version {
        TransactionVersion::V2 => (producer_id, producer_epoch),
        TransactionVersion::V1 => (NO_PRODUCER_ID, NO_PRODUCER_EPOCH),
    })
}

/// The answer that fails `req` with `code`: no producer id or epoch.
pub fn error_response(_req: &EndTxnRequest, _version: i16, code: ErrorCode) -> EndTxnResponse {
    EndTxnResponse::default()
        .with_error_code(code.code())
        .with_producer_id(NO_PRODUCER_ID.into())
        .with_producer_epoch(NO_PRODUCER_EPOCH)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::cluster::coordinator::TRANSACTION_STATE_TOPIC;
    use crate::cluster::{
        ClusterConfig, CoordinatorType, Time, TransactionConfig, TransactionState,
    };
    use crate::handlers::test_support::{
        add_txn_partitions, cluster_configured, cluster_with, end_txn, init_txn, produce_txn,
        txn_records,
    };

    fn state(c: &ClusterState, id: &str) -> Option<TransactionState> {
        c.transactions().get(id).map(|t| t.state())
    }

    fn markers(c: &ClusterState, partition: i32) -> Vec<(i16, bool)> {
        c.partition_log("t", partition)
            .map(|log| {
                log.batches()
                    .iter()
                    .filter(|b| b.header().attributes.is_control())
                    .map(|b| {
                        let bytes = b.bytes();
                        // The key's type: the last byte of the 4-byte key.
                        (b.header().producer_epoch, bytes[69] == 1)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn a_commit_writes_a_marker_to_every_partition_and_a_retry_succeeds() {
        let mut c = cluster_with(3);
        let (_, id, epoch) = init_txn(&mut c, "txn", 4);
        assert_eq!(
            add_txn_partitions(&mut c, "txn", (id, epoch), &[0, 2]),
            vec![0, 0]
        );
        let produced = produce_txn(&mut c, Some("txn"), 0, txn_records((id, epoch), 0), 9);
        assert_eq!(produced.error_code, 0);
        assert_eq!(end_txn(&mut c, "txn", (id, epoch), true, 3), (0, -1, -1));
        assert_eq!(state(&c, "txn"), Some(TransactionState::CompleteCommit));
        assert_eq!(markers(&c, 0), vec![(0, true)]);
        assert_eq!(markers(&c, 2), vec![(0, true)]);
        assert!(markers(&c, 1).is_empty(), "not in the transaction");
        let log = c.partition_log("t", 0).expect("log");
        assert_eq!((log.last_stable_offset(), log.high_watermark()), (2, 2));
        // The coordinator epoch is the transaction state partition's leader epoch.
        let partition = c.coordinator_partition(CoordinatorType::Transaction, "txn");
        let epoch_there = c
            .partition(TRANSACTION_STATE_TOPIC, partition)
            .map(|p| p.leader_epoch());
        let entry_epoch = log
            .producer_states()
            .entry(id)
            .map(|e| e.coordinator_epoch());
        assert_eq!(entry_epoch, epoch_there);
        // A retry of the commit succeeds and writes nothing; an abort is invalid.
        assert_eq!(end_txn(&mut c, "txn", (id, epoch), true, 3).0, 0);
        assert_eq!(
            end_txn(&mut c, "txn", (id, epoch), false, 3).0,
            ErrorCode::InvalidTxnState.code()
        );
        assert_eq!(markers(&c, 0).len(), 1);
        // Fenced: PRODUCER_FENCED from v2, INVALID_PRODUCER_EPOCH before.
        let fenced = (id, epoch + 1);
        assert_eq!(
            end_txn(&mut c, "txn", fenced, true, 2).0,
            ErrorCode::ProducerFenced.code()
        );
        assert_eq!(
            end_txn(&mut c, "txn", fenced, true, 1).0,
            ErrorCode::InvalidProducerEpoch.code()
        );
        assert_eq!(
            end_txn(&mut c, "txn", (id + 1, epoch), true, 3).0,
            ErrorCode::InvalidProducerIdMapping.code()
        );
        assert_eq!(
            end_txn(&mut c, "unknown", (id, epoch), true, 3).0,
            ErrorCode::InvalidProducerIdMapping.code()
        );
    }

    #[test]
    fn version_5_bumps_the_epoch_and_answers_with_it() {
        let mut c = cluster_with(1);
        let (_, id, epoch) = init_txn(&mut c, "txn", 5);
        // Produce v12 adds the partition itself (transaction version 2).
        let produced = produce_txn(&mut c, Some("txn"), 0, txn_records((id, epoch), 0), 12);
        assert_eq!(produced.error_code, 0);
        assert_eq!(end_txn(&mut c, "txn", (id, epoch), true, 5), (0, id, 1));
        // The markers carry the bumped epoch, which fences the previous one.
        assert_eq!(markers(&c, 0), vec![(1, true)]);
        // The retry with the old epoch answers the same.
        assert_eq!(end_txn(&mut c, "txn", (id, epoch), true, 5), (0, id, 1));
        // The next transaction, at epoch 1, sequences from 0.
        let next = produce_txn(&mut c, Some("txn"), 0, txn_records((id, 1), 0), 12);
        assert_eq!(next.error_code, 0);
        assert_eq!(end_txn(&mut c, "txn", (id, 1), false, 5), (0, id, 2));
        assert_eq!(markers(&c, 0), vec![(1, true), (2, false)]);
        // An abort with nothing open still bumps the epoch (v5 only); version 1 takes it
        // for a retry of the abort, and refuses a commit.
        assert_eq!(end_txn(&mut c, "txn", (id, 2), false, 5), (0, id, 3));
        assert_eq!(end_txn(&mut c, "txn", (id, 3), false, 4), (0, -1, -1));
        assert_eq!(
            end_txn(&mut c, "txn", (id, 3), true, 4).0,
            ErrorCode::InvalidTxnState.code()
        );
    }

    fn delayed(delay: Duration) -> ClusterState {
        cluster_configured(
            2,
            ClusterConfig {
                transactions: TransactionConfig {
                    marker_delay: delay,
                    ..TransactionConfig::default()
                },
                ..ClusterConfig::default()
            },
        )
    }

    #[test]
    fn while_the_markers_wait_the_coordinator_answers_concurrent_transactions() {
        let mut c = delayed(Duration::from_millis(100));
        let (_, id, epoch) = init_txn(&mut c, "txn", 4);
        add_txn_partitions(&mut c, "txn", (id, epoch), &[0]);
        assert_eq!(end_txn(&mut c, "txn", (id, epoch), true, 3).0, 0);
        assert_eq!(state(&c, "txn"), Some(TransactionState::PrepareCommit));
        assert!(markers(&c, 0).is_empty());
        let busy = ErrorCode::ConcurrentTransactions.code();
        assert_eq!(end_txn(&mut c, "txn", (id, epoch), true, 3).0, busy);
        assert_eq!(
            add_txn_partitions(&mut c, "txn", (id, epoch), &[1]),
            vec![busy]
        );
        assert_eq!(init_txn(&mut c, "txn", 4).0, busy);
        let due = Time::from_start(Duration::from_millis(100));
        assert_eq!(c.poll_timeout(), Some(due));
        c.handle_timeout(due);
        assert_eq!(state(&c, "txn"), Some(TransactionState::CompleteCommit));
        assert_eq!(markers(&c, 0), vec![(0, true)]);
        // Nothing left to do but the id's expiry, in a week.
        assert!(c.poll_timeout() > Some(Time::from_start(Duration::from_secs(7 * 86_400))));
    }

    #[test]
    fn a_commit_survives_a_coordinator_move_and_its_markers_are_written_once() {
        let mut c = delayed(Duration::from_millis(100));
        let (_, id, epoch) = init_txn(&mut c, "txn", 4);
        add_txn_partitions(&mut c, "txn", (id, epoch), &[0, 1]);
        assert_eq!(end_txn(&mut c, "txn", (id, epoch), true, 3).0, 0);
        let old = c
            .find_coordinator(CoordinatorType::Transaction, "txn")
            .expect("coordinator");
        let new = (old + 1) % 3;
        c.move_coordinator(CoordinatorType::Transaction, "txn", new)
            .expect("moved");
        // The old coordinator is not the coordinator any more; the new one has the state.
        let req = EndTxnRequest::default()
            .with_transactional_id(kafka_protocol::messages::TransactionalId(
                crate::handlers::text("txn"),
            ))
            .with_producer_id(id.into())
            .with_producer_epoch(epoch)
            .with_committed(true);
        let at = |broker| {
            crate::handlers::test_support::api_ctx(franzy::proto::ApiKey::EndTxn, broker, 3)
        };
        assert_eq!(
            handle(&mut c, &at(old), req.clone()).error_code,
            ErrorCode::NotCoordinator.code()
        );
        assert_eq!(
            handle(&mut c, &at(new), req.clone()).error_code,
            ErrorCode::ConcurrentTransactions.code()
        );
        c.handle_timeout(Time::from_start(Duration::from_millis(100)));
        assert_eq!(state(&c, "txn"), Some(TransactionState::CompleteCommit));
        assert_eq!(markers(&c, 0), vec![(0, true)]);
        assert_eq!(markers(&c, 1), vec![(0, true)]);
        // Written by the new coordinator: its (bumped) coordinator epoch.
        let partition = c.coordinator_partition(CoordinatorType::Transaction, "txn");
        let leader_epoch = c
            .partition(TRANSACTION_STATE_TOPIC, partition)
            .map(|p| p.leader_epoch());
        let written = c
            .partition_log("t", 0)
            .and_then(|l| l.producer_states().entry(id).map(|e| e.coordinator_epoch()));
        assert_eq!(written, leader_epoch);
        assert_eq!(handle(&mut c, &at(new), req).error_code, 0);
        c.handle_timeout(Time::from_start(Duration::from_secs(10)));
        assert_eq!(markers(&c, 0).len(), 1, "never twice");
    }

    #[test]
    fn markers_wait_while_no_broker_can_coordinate() {
        let mut c = delayed(Duration::from_millis(100));
        let (_, id, epoch) = init_txn(&mut c, "txn", 4);
        add_txn_partitions(&mut c, "txn", (id, epoch), &[0]);
        assert_eq!(end_txn(&mut c, "txn", (id, epoch), false, 3).0, 0);
        for broker in 0..3 {
            c.set_broker_up(broker, false);
        }
        c.handle_timeout(Time::from_start(Duration::from_millis(100)));
        assert_eq!(state(&c, "txn"), Some(TransactionState::PrepareAbort));
        // Put off to the next check, not retried at once.
        assert_eq!(
            c.poll_timeout(),
            Some(Time::from_start(Duration::from_millis(1100)))
        );
        c.set_broker_up(0, true);
        c.set_broker_up(1, true);
        c.set_broker_up(2, true);
        c.handle_timeout(Time::from_start(Duration::from_millis(1100)));
        assert_eq!(state(&c, "txn"), Some(TransactionState::CompleteAbort));
        assert_eq!(markers(&c, 0), vec![(0, false)]);
    }
}
