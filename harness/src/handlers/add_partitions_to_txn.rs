//! AddPartitionsToTxn (key 24), v0-5: partitions join a producer's transaction (KIP-98);
//! PRODUCER_FENCED from v2 (INVALID_PRODUCER_EPOCH before); flexible from v3; from v4 a
//! batch of transactions, each possibly `verify_only` (KIP-890 part 1: the form brokers send
//! the coordinator to check a produce; served here too, with the same answers);
//! TRANSACTION_ABORTABLE from v5.
//!
//! As Kafka's `KafkaApis.handleAddPartitionsToTxnRequest` and
//! `TransactionCoordinator.handleAddPartitionsToTransaction` answer, per transaction:
//!
//! - partitions of unknown topics (or unknown partitions) are UNKNOWN_TOPIC_OR_PARTITION and
//!   the transaction's other partitions OPERATION_NOT_ATTEMPTED: nothing is added;
//! - an empty transactional id is INVALID_REQUEST; a broker that is not the id's
//!   coordinator answers NOT_COORDINATOR (COORDINATOR_LOAD_IN_PROGRESS just after a move);
//! - then the coordinator ([`crate::cluster::transactions`]): INVALID_PRODUCER_ID_MAPPING,
//!   PRODUCER_FENCED, CONCURRENT_TRANSACTIONS while an end is being written, POLICY_VIOLATION
//!   past the partitions per transaction; otherwise every partition succeeds. A
//!   `verify_only` transaction answers each partition NONE or TRANSACTION_ABORTABLE (not in
//!   the transaction) and changes nothing.
//!
//! Every partition of a transaction carries the transaction's error; before v4 the one
//! transaction's partitions are the answer, from v4 each transaction is listed. Internal
//! topics' partitions may be added (Kafka does not check their authorization).

use std::collections::BTreeMap;
use std::sync::Arc;

use franzy::proto::ErrorCode;
use kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, TopicName, TransactionalId,
};

use super::RequestContext;
use crate::cluster::transactions::{Now, TransactionPartition, TransactionVersion};
use crate::cluster::ClusterState;

/// The first version of the batched form (KIP-890).
const BATCHED_VERSION: i16 = 4;
/// The first version whose clients know PRODUCER_FENCED.
const PRODUCER_FENCED_VERSION: i16 = 2;

/// Serves an AddPartitionsToTxn request.
pub fn handle(
    cluster: &mut ClusterState,
    ctx: &RequestContext,
    req: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    let version = ctx.api_version;
    if version < BATCHED_VERSION {
        let transaction = AddPartitionsToTxnTransaction::default()
            .with_transactional_id(req.v3_and_below_transactional_id)
            .with_producer_id(req.v3_and_below_producer_id)
            .with_producer_epoch(req.v3_and_below_producer_epoch)
            .with_topics(req.v3_and_below_topics);
        let result = add(cluster, ctx, &transaction);
        return AddPartitionsToTxnResponse::default()
            .with_results_by_topic_v3_and_below(result.topic_results);
    }
    let results = req
        .transactions
        .iter()
        .map(|transaction| add(cluster, ctx, transaction))
        .collect();
    AddPartitionsToTxnResponse::default().with_results_by_transaction(results)
}

/// One transaction of the request.
fn add(
    cluster: &mut ClusterState,
    ctx: &RequestContext,
    transaction: &AddPartitionsToTxnTransaction,
) -> AddPartitionsToTxnResult {
    let id = transaction.transactional_id.clone();
    let partitions = partitions_of(&transaction.topics);
    // Unknown topics or partitions fail the transaction; the others are not attempted.
    let unknown: Vec<bool> = partitions
        .iter()
        .map(|(topic, partition)| cluster.partition(topic, *partition).is_none())
        .collect();
    if unknown.iter().any(|u| *u) {
        let codes = unknown.iter().map(|&u| {
            if u {
                ErrorCode::UnknownTopicOrPartition
            } else {
                ErrorCode::OperationNotAttempted
            }
        });
        return result(id, partitions.iter().zip(codes));
    }
    let outcome = if transaction.verify_only {
        verify(cluster, ctx, transaction, &partitions)
    } else {
        add_to_transaction(cluster, ctx, transaction, &partitions)
            .map(|()| vec![None; partitions.len()])
    };
    let codes: Vec<Option<ErrorCode>> = match outcome {
        Ok(codes) => codes,
        Err(ErrorCode::ProducerFenced) if ctx.api_version < PRODUCER_FENCED_VERSION => {
            vec![Some(ErrorCode::InvalidProducerEpoch); partitions.len()]
        }
        Err(code) => vec![Some(code); partitions.len()],
    };
    result_of(id, partitions.iter().zip(codes))
}

fn add_to_transaction(
    cluster: &mut ClusterState,
    ctx: &RequestContext,
    transaction: &AddPartitionsToTxnTransaction,
    partitions: &[TransactionPartition],
) -> Result<(), ErrorCode> {
    let id = transaction.transactional_id.as_str();
    if id.is_empty() {
        return Err(ErrorCode::InvalidRequest);
    }
    cluster.check_transaction_coordinator(id, ctx.broker_id, ctx.now)?;
    let now = Now::of(ctx);
    cluster.transactions_mut().add_partitions(
        id,
        transaction.producer_id.0,
        transaction.producer_epoch,
        partitions,
        TransactionVersion::V1,
        now,
    )
}

fn verify(
    cluster: &ClusterState,
    ctx: &RequestContext,
    transaction: &AddPartitionsToTxnTransaction,
    partitions: &[TransactionPartition],
) -> Result<Vec<Option<ErrorCode>>, ErrorCode> {
    let id = transaction.transactional_id.as_str();
    if id.is_empty() {
        return Err(ErrorCode::InvalidRequest);
    }
    cluster.check_transaction_coordinator(id, ctx.broker_id, ctx.now)?;
    cluster.transactions().verify_partitions(
        id,
        transaction.producer_id.0,
        transaction.producer_epoch,
        partitions,
    )
}

/// The distinct partitions of `topics`, in request order.
fn partitions_of(topics: &[AddPartitionsToTxnTopic]) -> Vec<TransactionPartition> {
    let mut seen = std::collections::HashSet::new();
    topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.name.0.to_string(), *p)))
        .filter(|p| seen.insert(p.clone()))
        .collect()
}

fn result<'a>(
    id: TransactionalId,
    codes: impl Iterator<Item = (&'a TransactionPartition, ErrorCode)>,
) -> AddPartitionsToTxnResult {
    result_of(id, codes.map(|(p, code)| (p, Some(code))))
}

/// A transaction's answer: its partitions by topic, each with its code (`None`: success).
fn result_of<'a>(
    id: TransactionalId,
    codes: impl Iterator<Item = (&'a TransactionPartition, Option<ErrorCode>)>,
) -> AddPartitionsToTxnResult {
    let mut by_topic: BTreeMap<&str, Vec<AddPartitionsToTxnPartitionResult>> = BTreeMap::new();
    for ((topic, partition), code) in codes {
        by_topic.entry(topic.as_str()).or_default().push(
            AddPartitionsToTxnPartitionResult::default()
                .with_partition_index(*partition)
                .with_partition_error_code(code.map_or(0, |c| c.code())),
        );
    }
    let topic_results = by_topic
        .into_iter()
        .map(|(topic, results)| {
            AddPartitionsToTxnTopicResult::default()
                .with_name(super::topic_name(topic))
                .with_results_by_partition(results)
        })
        .collect();
    AddPartitionsToTxnResult::default()
        .with_transactional_id(id)
        .with_topic_results(topic_results)
}

/// The answer that fails the whole request with `code`: every partition before v4, the
/// top-level error from v4 (Kafka's `AddPartitionsToTxnRequest.getErrorResponse`).
pub fn error_response(
    req: &AddPartitionsToTxnRequest,
    version: i16,
    code: ErrorCode,
) -> AddPartitionsToTxnResponse {
    if version >= BATCHED_VERSION {
        return AddPartitionsToTxnResponse::default().with_error_code(code.code());
    }
    let partitions = partitions_of(&req.v3_and_below_topics);
    let result = result(
        req.v3_and_below_transactional_id.clone(),
        partitions.iter().map(|p| (p, code)),
    );
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(result.topic_results)
}

/// The (topic, partition) pairs the request names, every transaction's from v4.
pub fn partitions(req: &AddPartitionsToTxnRequest, version: i16) -> Vec<(Arc<str>, i32)> {
    let topics: Vec<&AddPartitionsToTxnTopic> = if version >= BATCHED_VERSION {
        req.transactions.iter().flat_map(|t| &t.topics).collect()
    } else {
        req.v3_and_below_topics.iter().collect()
    };
    topics
        .into_iter()
        .flat_map(|t| {
            let name: Arc<str> = Arc::from(t.name.0.as_str());
            t.partitions.iter().map(move |p| (name.clone(), *p))
        })
        .collect()
}

/// A topic entry of a request (for tests and callers building requests).
pub fn topic(name: &str, partitions: Vec<i32>) -> AddPartitionsToTxnTopic {
    AddPartitionsToTxnTopic::default()
        .with_name(TopicName(super::text(name)))
        .with_partitions(partitions)
}

#[cfg(test)]
mod tests {
    use franzy::proto::{ApiKey, ResponseKind};

    use super::*;
    use crate::handlers::test_support::{
        add_txn_partitions, api_ctx, assert_encodes, cluster_with, init_txn, txn_coordinator,
    };

    fn transaction(
        id: &str,
        producer: (i64, i16),
        verify_only: bool,
        partitions: Vec<i32>,
    ) -> AddPartitionsToTxnTransaction {
        AddPartitionsToTxnTransaction::default()
            .with_transactional_id(TransactionalId(super::super::text(id)))
            .with_producer_id(producer.0.into())
            .with_producer_epoch(producer.1)
            .with_verify_only(verify_only)
            .with_topics(vec![topic("t", partitions)])
    }

    fn codes(result: &AddPartitionsToTxnResult) -> Vec<(i32, i16)> {
        result
            .topic_results
            .iter()
            .flat_map(|t| {
                t.results_by_partition
                    .iter()
                    .map(|p| (p.partition_index, p.partition_error_code))
            })
            .collect()
    }

    #[test]
    fn unknown_partitions_fail_the_transaction_and_nothing_is_added() {
        let mut c = cluster_with(2);
        let (_, id, epoch) = init_txn(&mut c, "txn", 4);
        let not_attempted = ErrorCode::OperationNotAttempted.code();
        let unknown = ErrorCode::UnknownTopicOrPartition.code();
        assert_eq!(
            add_txn_partitions(&mut c, "txn", (id, epoch), &[0, 7]),
            vec![not_attempted, unknown]
        );
        assert_eq!(
            c.transactions().get("txn").map(|t| t.partitions().len()),
            Some(0)
        );
        assert_eq!(
            add_txn_partitions(&mut c, "txn", (id, epoch), &[0, 1, 0]),
            vec![0, 0]
        );
        // Fenced: INVALID_PRODUCER_EPOCH for clients before v2.
        let broker = txn_coordinator(&mut c, "txn");
        let req = AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(TransactionalId(super::super::text("txn")))
            .with_v3_and_below_producer_id(id.into())
            .with_v3_and_below_producer_epoch(epoch + 1)
            .with_v3_and_below_topics(vec![topic("t", vec![0])]);
        for (version, code) in [
            (1, ErrorCode::InvalidProducerEpoch),
            (2, ErrorCode::ProducerFenced),
        ] {
            let r = handle(
                &mut c,
                &api_ctx(ApiKey::AddPartitionsToTxn, broker, version),
                req.clone(),
            );
            assert_encodes(&ResponseKind::AddPartitionsToTxn(r.clone()), version);
            assert_eq!(
                r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code,
                code.code()
            );
        }
        // Another broker is not the coordinator.
        let r = handle(
            &mut c,
            &api_ctx(ApiKey::AddPartitionsToTxn, (broker + 1) % 3, 3),
            req,
        );
        assert_eq!(
            r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code,
            ErrorCode::NotCoordinator.code()
        );
    }

    #[test]
    fn the_batched_form_adds_or_verifies_each_transaction() {
        let mut c = cluster_with(2);
        let (_, a, a_epoch) = init_txn(&mut c, "a", 4);
        let broker = txn_coordinator(&mut c, "a");
        // Only ids this broker coordinates can be served; find another on the same broker.
        let other = (0..100)
            .map(|i| format!("b{i}"))
            .find(|id| txn_coordinator(&mut c, id) == broker)
            .expect("an id coordinated by the same broker");
        let (_, b, b_epoch) = init_txn(&mut c, &other, 4);
        let req = AddPartitionsToTxnRequest::default().with_transactions(vec![
            transaction("a", (a, a_epoch), false, vec![0]),
            transaction(&other, (b, b_epoch), true, vec![0, 1]),
        ]);
        for version in 4..=5 {
            let r = handle(
                &mut c,
                &api_ctx(ApiKey::AddPartitionsToTxn, broker, version),
                req.clone(),
            );
            assert_encodes(&ResponseKind::AddPartitionsToTxn(r.clone()), version);
            assert_eq!(r.results_by_transaction.len(), 2);
            assert_eq!(codes(&r.results_by_transaction[0]), vec![(0, 0)]);
            let abortable = ErrorCode::TransactionAbortable.code();
            assert_eq!(
                codes(&r.results_by_transaction[1]),
                vec![(0, abortable), (1, abortable)]
            );
        }
        // Verification changes nothing.
        assert_eq!(
            c.transactions().get(&other).map(|t| t.partitions().len()),
            Some(0)
        );
        let error = error_response(&req, 4, ErrorCode::ClusterAuthorizationFailed);
        assert_eq!(
            error.error_code,
            ErrorCode::ClusterAuthorizationFailed.code()
        );
        assert_eq!(partitions(&req, 4).len(), 3);
    }
}
