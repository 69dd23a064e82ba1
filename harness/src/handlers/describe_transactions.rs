//! DescribeTransactions (key 65), v0: the state of transactional ids (KIP-664), as Kafka's
//! `TransactionCoordinator.handleDescribeTransactions` answers each id: INVALID_REQUEST for
//! an empty one, NOT_COORDINATOR from a broker that does not coordinate it
//! (COORDINATOR_LOAD_IN_PROGRESS just after a move), TRANSACTIONAL_ID_NOT_FOUND for an id
//! the coordinator does not know (or that expired); else its state's name, producer id and
//! epoch, timeout, the start of the open transaction (-1 when none) and its partitions by
//! topic (an error leaves the other fields at 0 and "", as Kafka does). Ids are answered in request order (a repeated id twice), which is what the admin
//! client, sending each id to its own coordinator, expects.

use std::collections::BTreeMap;

use franzy::proto::ErrorCode;
use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, TransactionalId,
};

use super::{text, topic_name, RequestContext};
use crate::cluster::ClusterState;

/// Serves a DescribeTransactions request.
pub fn handle(
    cluster: &ClusterState,
    ctx: &RequestContext,
    req: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let states = req
        .transactional_ids
        .iter()
        .map(|id| describe(cluster, ctx, id))
        .collect();
    DescribeTransactionsResponse::default().with_transaction_states(states)
}

fn describe(
    cluster: &ClusterState,
    ctx: &RequestContext,
    id: &TransactionalId,
) -> TransactionState {
    // Kafka leaves the other fields at their defaults (0, "").
    let failed = |code: ErrorCode| {
        TransactionState::default()
            .with_transactional_id(id.clone())
            .with_error_code(code.code())
    };
    if id.is_empty() {
        return failed(ErrorCode::InvalidRequest);
    }
    if let Err(code) = cluster.check_transaction_coordinator(id.as_str(), ctx.broker_id, ctx.now) {
        return failed(code);
    }
    let Some(txn) = cluster.transactions().get(id.as_str()) else {
        return failed(ErrorCode::TransactionalIdNotFound);
    };
    let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in txn.partitions() {
        topics.entry(topic.as_str()).or_default().push(*partition);
    }
    TransactionState::default()
        .with_transactional_id(id.clone())
        .with_transaction_state(text(txn.state().name()))
        .with_transaction_timeout_ms(txn.timeout_ms())
        .with_transaction_start_time_ms(txn.start_ms())
        .with_producer_id(txn.producer_id().into())
        .with_producer_epoch(txn.producer_epoch())
        .with_topics(
            topics
                .into_iter()
                .map(|(topic, partitions)| {
                    TopicData::default()
                        .with_topic(topic_name(topic))
                        .with_partitions(partitions)
                })
                .collect(),
        )
}

/// The answer that fails every id of `req` with `code`.
pub fn error_response(
    req: &DescribeTransactionsRequest,
    _version: i16,
    code: ErrorCode,
) -> DescribeTransactionsResponse {
    let states = req
        .transactional_ids
        .iter()
        .map(|id| {
            TransactionState::default()
                .with_transactional_id(id.clone())
                .with_error_code(code.code())
        })
        .collect();
    DescribeTransactionsResponse::default().with_transaction_states(states)
}

#[cfg(test)]
mod tests {
    use franzy::proto::{ApiKey, ResponseKind};

    use super::*;
    use crate::handlers::test_support::{
        add_txn_partitions, api_ctx, assert_encodes, cluster_with, init_txn, txn_coordinator, NOW,
    };

    #[test]
    fn each_id_is_described_by_its_coordinator() {
        let mut c = cluster_with(3);
        let (_, id, epoch) = init_txn(&mut c, "txn", 4);
        add_txn_partitions(&mut c, "txn", (id, epoch), &[2, 0]);
        let broker = txn_coordinator(&mut c, "txn");
        let ids = ["txn", "", "missing"]
            .into_iter()
            .map(|s| TransactionalId(text(s)))
            .collect();
        let req = DescribeTransactionsRequest::default().with_transactional_ids(ids);
        let r = handle(
            &c,
            &api_ctx(ApiKey::DescribeTransactions, broker, 0),
            req.clone(),
        );
        assert_encodes(&ResponseKind::DescribeTransactions(r.clone()), 0);
        let txn = &r.transaction_states[0];
        assert_eq!(txn.error_code, 0);
        assert_eq!(txn.transaction_state.as_str(), "Ongoing");
        assert_eq!((txn.producer_id.0, txn.producer_epoch), (id, epoch));
        assert_eq!(
            (txn.transaction_timeout_ms, txn.transaction_start_time_ms),
            (60_000, NOW)
        );
        assert_eq!(txn.topics.len(), 1);
        assert_eq!(txn.topics[0].partitions, vec![0, 2]);
        assert_eq!(
            r.transaction_states[1].error_code,
            ErrorCode::InvalidRequest.code()
        );
        let missing = r.transaction_states[2].error_code;
        // "missing" may live on another coordinator.
        assert!(
            missing == ErrorCode::TransactionalIdNotFound.code()
                || missing == ErrorCode::NotCoordinator.code()
        );
        let elsewhere = handle(
            &c,
            &api_ctx(ApiKey::DescribeTransactions, (broker + 1) % 3, 0),
            req,
        );
        assert_eq!(
            elsewhere.transaction_states[0].error_code,
            ErrorCode::NotCoordinator.code()
        );
    }
}
