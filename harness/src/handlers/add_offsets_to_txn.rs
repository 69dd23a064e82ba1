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
