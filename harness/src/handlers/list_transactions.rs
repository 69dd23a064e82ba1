//! ListTransactions (key 66), v0-1: the transactional ids a broker coordinates (KIP-664;
//! `duration_filter` from v1, KIP-994). As Kafka's `TransactionStateManager.
//! listTransactionStates`: only ids whose `__transaction_state` partition this broker leads
//! (the admin client asks every broker), not Dead, filtered by producer id and by state
//! name when the filters are not empty (names Kafka does not know come back in
//! `unknown_state_filters`), and by time open when `duration_filter` is not negative (longer
//! than it; an id with no transaction open counts from -1, as in Kafka). While a partition
//! of this broker's is still loading after a move, the answer is
//! COORDINATOR_LOAD_IN_PROGRESS. Sorted by id.
//!
//! v2's `transactional_id_pattern` (KIP-1152, a Java regular expression) is not served:
//! the table stops at v1.

use franzy::proto::ErrorCode;
use kafka_protocol::messages::list_transactions_response::TransactionState;
use kafka_protocol::messages::{
    ListTransactionsRequest, ListTransactionsResponse, TransactionalId,
};

use super::{text, RequestContext};
use crate::cluster::transactions::Now;
use crate::cluster::ClusterState;

/// Serves a ListTransactions request.
pub fn handle(
    cluster: &ClusterState,
    ctx: &RequestContext,
    req: ListTransactionsRequest,
) -> ListTransactionsResponse {
    let states: Vec<String> = req.state_filters.iter().map(|s| s.to_string()).collect();
    let producers: Vec<i64> = req.producer_id_filters.iter().map(|p| p.0).collect();
    let duration = if ctx.api_version >= 1 {
        req.duration_filter
    } else {
        -1
    };
    let mut loading = false;
    let mut owned =
        |id: &str| match cluster.check_transaction_coordinator(id, ctx.broker_id, ctx.now) {
            Ok(_) => true,
            Err(ErrorCode::CoordinatorLoadInProgress) => {
                loading = true;
                false
            }
            Err(_) => false,
        };
    let now = Now::of(ctx);
    let (listed, unknown) = cluster
        .transactions()
        .list(&states, &producers, duration, now, &mut owned);
    if loading {
        return error_response(&req, ctx.api_version, ErrorCode::CoordinatorLoadInProgress);
    }
    ListTransactionsResponse::default()
        .with_unknown_state_filters(unknown.iter().map(|s| text(s)).collect())
        .with_transaction_states(
            listed
                .into_iter()
                .map(|t| {
                    TransactionState::default()
                        .with_transactional_id(TransactionalId(text(&t.transactional_id)))
                        .with_producer_id(t.producer_id.into())
                        .with_transaction_state(text(t.state.name()))
                })
                .collect(),
        )
}

/// The answer that fails `req` with `code`.
pub fn error_response(
    _req: &ListTransactionsRequest,
    _version: i16,
    code: ErrorCode,
) -> ListTransactionsResponse {
    ListTransactionsResponse::default().with_error_code(code.code())
}

#[cfg(test)]
mod tests {
    use franzy::proto::{ApiKey, ResponseKind};

    use super::*;
    use crate::handlers::test_support::{
        add_txn_partitions, api_ctx, assert_encodes, cluster_with, init_txn, txn_coordinator,
    };

    #[test]
    fn each_broker_lists_the_ids_it_coordinates() {
        let mut c = cluster_with(1);
        let mut by_broker = [0usize; 3];
        for i in 0..12 {
            let id = format!("id{i}");
            let (_, pid, epoch) = init_txn(&mut c, &id, 4);
            if i % 2 == 0 {
                add_txn_partitions(&mut c, &id, (pid, epoch), &[0]);
            }
            let broker = txn_coordinator(&mut c, &id);
            by_broker[usize::try_from(broker).unwrap_or(0)] += 1;
        }
        let mut listed = 0;
        for broker in 0..3 {
            let req = ListTransactionsRequest::default().with_duration_filter(-1);
            let r = handle(&c, &api_ctx(ApiKey::ListTransactions, broker, 1), req);
            assert_encodes(&ResponseKind::ListTransactions(r.clone()), 1);
            assert_eq!(r.transaction_states.len(), by_broker[broker as usize]);
            listed += r.transaction_states.len();
        }
        assert_eq!(listed, 12);
        let broker = txn_coordinator(&mut c, "id0");
        let req = ListTransactionsRequest::default()
            .with_state_filters(vec![text("Ongoing"), text("Nope")])
            .with_duration_filter(-1);
        let r = handle(&c, &api_ctx(ApiKey::ListTransactions, broker, 0), req);
        assert_eq!(r.unknown_state_filters, vec![text("Nope")]);
        assert!(r
            .transaction_states
            .iter()
            .all(|t| t.transaction_state.as_str() == "Ongoing"));
        assert!(r
            .transaction_states
            .iter()
            .any(|t| t.transactional_id.as_str() == "id0"));
    }
}
