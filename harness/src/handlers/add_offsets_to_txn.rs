//! AddOffsetsToTxn (key 25), v0-4: a consumer group's offsets join a producer's
//! transaction, as the group's partition of `__consumer_offsets` (KIP-98; PRODUCER_FENCED
//! from v2, INVALID_PRODUCER_EPOCH before; flexible from v3; TRANSACTION_ABORTABLE from v4,
//! KIP-890, which this API never answers).
//!
//! As Kafka's `KafkaApis.handleAddOffsetsToTxnRequest`: the partition is
//! `__consumer_offsets`-`abs(hashCode(group)) % offsets.topic.num.partitions` (whether or not
//! the topic exists yet), added as AddPartitionsToTxn adds one
//! ([`crate::cluster::transactions::Transactions::add_partitions`]): NOT_COORDINATOR from a
//! broker that does not coordinate the transactional id, INVALID_REQUEST for an empty id,
//! INVALID_PRODUCER_ID_MAPPING, PRODUCER_FENCED, CONCURRENT_TRANSACTIONS, POLICY_VIOLATION
//! past the partitions per transaction. The offsets themselves come with TxnOffsetCommit,
//! to the group coordinator.

use franzy::proto::ErrorCode;
use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};

use super::RequestContext;
use crate::cluster::coordinator::OFFSETS_TOPIC;
use crate::cluster::transactions::{Now, TransactionVersion};
use crate::cluster::{ClusterState, CoordinatorType};

/// The first version whose clients know PRODUCER_FENCED.
const PRODUCER_FENCED_VERSION: i16 = 2;

/// Serves an AddOffsetsToTxn request.
pub fn handle(
    cluster: &mut ClusterState,
    ctx: &RequestContext,
    req: AddOffsetsToTxnRequest,
) -> AddOffsetsToTxnResponse {
    match add(cluster, ctx, &req) {
        Ok(()) => AddOffsetsToTxnResponse::default(),
        Err(ErrorCode::ProducerFenced) if ctx.api_version < PRODUCER_FENCED_VERSION => {
            error_response(&req, ctx.api_version, ErrorCode::InvalidProducerEpoch)
        }
        Err(code) => error_response(&req, ctx.api_version, code),
    }
}

fn add(
    cluster: &mut ClusterState,
    ctx: &RequestContext,
    req: &AddOffsetsToTxnRequest,
) -> Result<(), ErrorCode> {
    let id = req.transactional_id.as_str();
    if id.is_empty() {
        return Err(ErrorCode::InvalidRequest);
    }
    cluster.check_transaction_coordinator(id, ctx.broker_id, ctx.now)?;
    let partition = cluster.coordinator_partition(CoordinatorType::Group, req.group_id.as_str());
    let now = Now::of(ctx);
    cluster.transactions_mut().add_partitions(
        id,
        req.producer_id.0,
        req.producer_epoch,
        &[(OFFSETS_TOPIC.to_string(), partition)],
        TransactionVersion::V1,
        now,
    )
}

/// The answer that fails `req` with `code`.
pub fn error_response(
    _req: &AddOffsetsToTxnRequest,
    _version: i16,
    code: ErrorCode,
) -> AddOffsetsToTxnResponse {
    AddOffsetsToTxnResponse::default().with_error_code(code.code())
}

#[cfg(test)]
mod tests {
    use franzy::proto::{ApiKey, ResponseKind};
    use kafka_protocol::messages::{GroupId, TransactionalId};

    use super::*;
    use crate::cluster::{ClusterConfig, TransactionConfig};
    use crate::handlers::test_support::{
        api_ctx, assert_encodes, cluster_configured, end_txn, init_txn, txn_coordinator,
    };
    use crate::handlers::text;

    fn request(producer: (i64, i16)) -> AddOffsetsToTxnRequest {
        AddOffsetsToTxnRequest::default()
            .with_transactional_id(TransactionalId(text("txn")))
            .with_producer_id(producer.0.into())
            .with_producer_epoch(producer.1)
            .with_group_id(GroupId(text("g")))
    }

    #[test]
    fn the_groups_partition_joins_as_addpartitions_would_add_it() {
        let config = ClusterConfig {
            transactions: TransactionConfig {
                marker_delay: std::time::Duration::from_secs(1),
                ..TransactionConfig::default()
            },
            ..ClusterConfig::default()
        };
        let mut c = cluster_configured(1, config);
        let (_, id, epoch) = init_txn(&mut c, "txn", 4);
        let broker = txn_coordinator(&mut c, "txn");
        let add = |c: &mut ClusterState, broker: i32, version: i16, producer| {
            let r = handle(
                c,
                &api_ctx(ApiKey::AddOffsetsToTxn, broker, version),
                request(producer),
            );
            assert_encodes(&ResponseKind::AddOffsetsToTxn(r.clone()), version);
            r.error_code
        };
        assert_eq!(
            add(&mut c, (broker + 1) % 3, 3, (id, epoch)),
            ErrorCode::NotCoordinator.code()
        );
        assert_eq!(
            add(&mut c, broker, 1, (id, epoch + 1)),
            ErrorCode::InvalidProducerEpoch.code()
        );
        assert_eq!(
            add(&mut c, broker, 2, (id, epoch + 1)),
            ErrorCode::ProducerFenced.code()
        );
        assert_eq!(add(&mut c, broker, 4, (id, epoch)), 0);
        let partition = c.coordinator_partition(CoordinatorType::Group, "g");
        let joined = c.transactions().get("txn").is_some_and(|t| {
            t.partitions()
                .contains(&(OFFSETS_TOPIC.to_string(), partition))
        });
        assert!(joined);
        assert_eq!(end_txn(&mut c, "txn", (id, epoch), true, 3).0, 0);
        assert_eq!(
            add(&mut c, broker, 3, (id, epoch)),
            ErrorCode::ConcurrentTransactions.code()
        );
    }
}
