//! TxnOffsetCommit (key 28), v0-5: a transactional producer commits a consumer group's
//! offsets in its transaction, to the group's coordinator (KIP-98; committed leader epoch
//! from v2; member id, instance id and generation from v3, KIP-447;
//! TRANSACTION_ABORTABLE from v4; from v5 the request also adds the group's partition to
//! the transaction, KIP-890 part 2).
//!
//! As Kafka's `KafkaApis.handleTxnOffsetCommitRequest` and the group coordinator's
//! `commitTransactionalOffsets` answer, in order:
//!
//! 1. partitions of unknown topics, and unknown partitions, are UNKNOWN_TOPIC_OR_PARTITION;
//! 2. an empty group id is INVALID_GROUP_ID for every partition; a broker that does not
//!    coordinate the group answers NOT_COORDINATOR (COORDINATOR_LOAD_IN_PROGRESS just
//!    after a move, COORDINATOR_NOT_AVAILABLE to clients before v2);
//! 3. the transaction is verified with its coordinator (KIP-890 part 1): the group's
//!    `__consumer_offsets` partition must be in the producer's transaction
//!    (AddOffsetsToTxn), else INVALID_TXN_STATE (TRANSACTION_ABORTABLE from v4); from v5
//!    the partition is added instead. The coordinator's INVALID_PRODUCER_ID_MAPPING,
//!    CONCURRENT_TRANSACTIONS and COORDINATOR_NOT_AVAILABLE pass through; PRODUCER_FENCED
//!    becomes INVALID_PRODUCER_EPOCH, as Kafka's `AddPartitionsToTxnManager` maps it;
//! 4. the member (KIP-447): a group the harness knows nothing of accepts a generation of
//!    -1 (a "simple" group, as Kafka creates one) and refuses any other with
//!    ILLEGAL_GENERATION;
//! 5. each offset is staged in the offset store under the producer id
//!    ([`crate::cluster::offsets::OffsetStore::stage_transactional`]):
//!    OFFSET_METADATA_TOO_LARGE or INVALID_COMMIT_OFFSET_SIZE per partition. Staged offsets
//!    are invisible to OffsetFetch until the transaction's commit marker, and dropped by
//!    its abort.

use std::sync::Arc;

use franzy::proto::ErrorCode;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use super::RequestContext;
use crate::cluster::coordinator::OFFSETS_TOPIC;
use crate::cluster::offsets::{OffsetAndMetadata, PartitionOffset};
use crate::cluster::transactions::{Now, TransactionVersion};
use crate::cluster::{ClusterState, CoordinatorType};

/// The first version whose clients expect COORDINATOR_LOAD_IN_PROGRESS (KAFKA-7296).
const LOAD_IN_PROGRESS_VERSION: i16 = 2;
/// The first version whose clients know TRANSACTION_ABORTABLE.
const ABORTABLE_VERSION: i16 = 4;
/// The first version that adds the group's partition to the transaction (KIP-890 part 2).
const ADD_PARTITION_VERSION: i16 = 5;

/// Serves a TxnOffsetCommit request.
pub fn handle(
    cluster: &mut ClusterState,
    ctx: &RequestContext,
    req: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    let version = ctx.api_version;
    // Per partition: `Some(code)` once decided, `None` to commit.
    let mut codes: Vec<Vec<Option<ErrorCode>>> = req
        .topics
        .iter()
        .map(|topic| {
            let known = cluster.topic(topic.name.0.as_str()).is_some();
            topic
                .partitions
                .iter()
                .map(|p| {
                    let exists = known
                        && cluster
                            .partition(topic.name.0.as_str(), p.partition_index)
                            .is_some();
                    (!exists).then_some(ErrorCode::UnknownTopicOrPartition)
                })
                .collect()
        })
        .collect();
    if codes.iter().flatten().any(Option::is_none) {
        match commit(cluster, ctx, &req, &codes) {
            Ok(results) => {
                let mut results = results.into_iter();
                for code in codes.iter_mut().flatten().filter(|c| c.is_none()) {
                    *code = results.next().and_then(Result::err);
                }
            }
            Err(code) => {
                let code = if code == ErrorCode::CoordinatorLoadInProgress
                    && version < LOAD_IN_PROGRESS_VERSION
                {
                    ErrorCode::CoordinatorNotAvailable
                } else {
                    code
                };
                for slot in codes.iter_mut().flatten().filter(|c| c.is_none()) {
                    *slot = Some(code);
                }
            }
        }
    }
    response(&req, codes)
}

/// Steps 2 to 5 for the partitions still undecided in `codes`; one result per such
/// partition, in request order.
fn commit(
    cluster: &mut ClusterState,
    ctx: &RequestContext,
    req: &TxnOffsetCommitRequest,
    codes: &[Vec<Option<ErrorCode>>],
) -> Result<Vec<Result<(), ErrorCode>>, ErrorCode> {
    let version = ctx.api_version;
    let group = req.group_id.as_str();
    if group.is_empty() {
        return Err(ErrorCode::InvalidGroupId);
    }
    let partition =
        cluster.check_coordinator(CoordinatorType::Group, group, ctx.broker_id, ctx.now)?;
    verify_transaction(cluster, ctx, req, partition).map_err(|code| match code {
        ErrorCode::ProducerFenced => ErrorCode::InvalidProducerEpoch,
        ErrorCode::TransactionAbortable if version < ABORTABLE_VERSION => {
            ErrorCode::InvalidTxnState
        }
        code => code,
    })?;
    // KIP-447: the member and generation are checked as the group coordinator checks an
    // OffsetCommit (a group it does not know accepts only generation -1, and is created).
    cluster.validate_txn_offset_commit(
        group,
        req.member_id.as_str(),
        req.group_instance_id.as_deref(),
        req.generation_id,
        ctx.broker_id,
        ctx.now,
    )?;
    let now_ms = ctx.now_ms;
    let offsets: Vec<PartitionOffset> = req
        .topics
        .iter()
        .zip(codes)
        .flat_map(|(topic, codes)| {
            let name: Arc<str> = Arc::from(topic.name.0.as_str());
            topic
                .partitions
                .iter()
                .zip(codes)
                .filter(|(_, code)| code.is_none())
                .map(move |(p, _)| PartitionOffset {
                    topic: name.clone(),
                    partition: p.partition_index,
                    offset: OffsetAndMetadata {
                        offset: p.committed_offset,
                        leader_epoch: if version >= 2 {
                            p.committed_leader_epoch
                        } else {
                            -1
                        },
                        metadata: Arc::from(p.committed_metadata.as_deref().unwrap_or("")),
                        commit_timestamp_ms: now_ms,
                        expire_timestamp_ms: None,
                    },
                })
        })
        .collect();
    Ok(cluster.offsets_mut().stage_transactional(
        group,
        req.producer_id.0,
        req.producer_epoch,
        offsets,
    ))
}

/// Step 3: the group's partition of `__consumer_offsets` is in the producer's
/// transaction (added from v5), as the transaction coordinator answers the group
/// coordinator's verification.
fn verify_transaction(
    cluster: &mut ClusterState,
    ctx: &RequestContext,
    req: &TxnOffsetCommitRequest,
    partition: i32,
) -> Result<(), ErrorCode> {
    let id = req.transactional_id.as_str();
    if id.is_empty() {
        return Err(ErrorCode::InvalidRequest);
    }
    cluster.active_transaction_coordinator(id, ctx.now)?;
    let offsets_partition = [(OFFSETS_TOPIC.to_string(), partition)];
    if ctx.api_version >= ADD_PARTITION_VERSION {
        let now = Now::of(ctx);
        return cluster.transactions_mut().add_partitions(
            id,
            req.producer_id.0,
            req.producer_epoch,
            &offsets_partition,
            TransactionVersion::V2,
            now,
        );
    }
    let verified = cluster.transactions().verify_partitions(
        id,
        req.producer_id.0,
        req.producer_epoch,
        &offsets_partition,
    )?;
    match verified.first() {
        Some(Some(code)) => Err(*code),
        _ => Ok(()),
    }
}

/// Step 4: the committing member, KIP-447. The harness's group coordinator keeps no
/// members yet, so every group is one Kafka would create as a "simple" group on this
/// commit: generation -1 is accepted, any other is ILLEGAL_GENERATION
/// (`OffsetMetadataManager.validateTransactionalOffsetCommit`).
fn response(
    req: &TxnOffsetCommitRequest,
    codes: Vec<Vec<Option<ErrorCode>>>,
) -> TxnOffsetCommitResponse {
    let topics = req
        .topics
        .iter()
        .zip(codes)
        .map(|(topic, codes)| {
            TxnOffsetCommitResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(
                    topic
                        .partitions
                        .iter()
                        .zip(codes)
                        .map(|(p, code)| {
                            TxnOffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code.map_or(0, |c| c.code()))
                        })
                        .collect(),
                )
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}

/// The answer that fails every partition of `req` with `code`.
pub fn error_response(
    req: &TxnOffsetCommitRequest,
    _version: i16,
    code: ErrorCode,
) -> TxnOffsetCommitResponse {
    let codes = req
        .topics
        .iter()
        .map(|t| vec![Some(code); t.partitions.len()])
        .collect();
    response(req, codes)
}

/// The (topic, partition) pairs of `req`.
pub fn partitions(req: &TxnOffsetCommitRequest) -> Vec<(Arc<str>, i32)> {
    req.topics
        .iter()
        .flat_map(|t| {
            let name: Arc<str> = Arc::from(t.name.0.as_str());
            t.partitions
                .iter()
                .map(move |p| (name.clone(), p.partition_index))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use franzy::proto::{ApiKey, ResponseKind};
    use kafka_protocol::messages::txn_offset_commit_request::{
        TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::{AddOffsetsToTxnRequest, GroupId, TransactionalId};

    use super::*;
    use crate::handlers::test_support::{
        api_ctx, assert_encodes, cluster_with, end_txn, group_coordinator, init_txn,
        txn_coordinator,
    };
    use crate::handlers::{add_offsets_to_txn, text, topic_name};

    fn commit_request(producer: (i64, i16), generation: i32) -> TxnOffsetCommitRequest {
        TxnOffsetCommitRequest::default()
            .with_transactional_id(TransactionalId(text("txn")))
            .with_group_id(GroupId(text("g")))
            .with_producer_id(producer.0.into())
            .with_producer_epoch(producer.1)
            .with_generation_id(generation)
            .with_topics(vec![
                TxnOffsetCommitRequestTopic::default()
                    .with_name(topic_name("t"))
                    .with_partitions(vec![
                        TxnOffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(42),
                        TxnOffsetCommitRequestPartition::default()
                            .with_partition_index(9)
                            .with_committed_offset(1),
                    ]),
                TxnOffsetCommitRequestTopic::default()
                    .with_name(topic_name("nope"))
                    .with_partitions(vec![TxnOffsetCommitRequestPartition::default()]),
            ])
    }

    fn commit(c: &mut ClusterState, req: TxnOffsetCommitRequest, version: i16) -> Vec<i16> {
        let broker = group_coordinator(c, "g");
        let r = handle(c, &api_ctx(ApiKey::TxnOffsetCommit, broker, version), req);
        assert_encodes(&ResponseKind::TxnOffsetCommit(r.clone()), version);
        r.topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .collect()
    }

    fn add_offsets(c: &mut ClusterState, producer: (i64, i16)) -> i16 {
        let broker = txn_coordinator(c, "txn");
        let req = AddOffsetsToTxnRequest::default()
            .with_transactional_id(TransactionalId(text("txn")))
            .with_producer_id(producer.0.into())
            .with_producer_epoch(producer.1)
            .with_group_id(GroupId(text("g")));
        let r = add_offsets_to_txn::handle(c, &api_ctx(ApiKey::AddOffsetsToTxn, broker, 3), req);
        assert_encodes(&ResponseKind::AddOffsetsToTxn(r.clone()), 3);
        r.error_code
    }

    fn committed(c: &ClusterState) -> Option<i64> {
        c.offsets()
            .fetch("g", "t", 0, false)
            .ok()
            .flatten()
            .map(|o| o.offset)
    }

    #[test]
    fn offsets_wait_for_the_commit_and_vanish_with_an_abort() {
        let mut c = cluster_with(2);
        let (_, id, epoch) = init_txn(&mut c, "txn", 4);
        let unknown = ErrorCode::UnknownTopicOrPartition.code();
        // The group's partition is not in the transaction yet.
        let invalid = ErrorCode::InvalidTxnState.code();
        assert_eq!(
            commit(&mut c, commit_request((id, epoch), -1), 3),
            vec![invalid, unknown, unknown]
        );
        let abortable = ErrorCode::TransactionAbortable.code();
        assert_eq!(
            commit(&mut c, commit_request((id, epoch), -1), 4),
            vec![abortable, unknown, unknown]
        );
        assert_eq!(add_offsets(&mut c, (id, epoch)), 0);
        let partitions = c.transactions().get("txn").map(|t| t.partitions().clone());
        let offsets_partition =
            c.coordinator_partition(crate::cluster::CoordinatorType::Group, "g");
        assert_eq!(
            partitions.map(|p| p.into_iter().collect::<Vec<_>>()),
            Some(vec![(OFFSETS_TOPIC.to_string(), offsets_partition)])
        );
        // KIP-447: a group the harness does not know accepts generation -1 only.
        assert_eq!(
            commit(&mut c, commit_request((id, epoch), 3), 3),
            vec![ErrorCode::IllegalGeneration.code(), unknown, unknown]
        );
        assert_eq!(
            commit(&mut c, commit_request((id, epoch), -1), 3),
            vec![0, unknown, unknown]
        );
        assert_eq!(committed(&c), None, "pending until the commit");
        assert!(c.offsets().has_pending("g", "t", 0));
        assert_eq!(end_txn(&mut c, "txn", (id, epoch), true, 3).0, 0);
        assert_eq!(committed(&c), Some(42));
        // Aborted: dropped.
        assert_eq!(add_offsets(&mut c, (id, epoch)), 0);
        let mut req = commit_request((id, epoch), -1);
        req.topics[0].partitions[0].committed_offset = 99;
        assert_eq!(commit(&mut c, req, 3)[0], 0);
        assert_eq!(end_txn(&mut c, "txn", (id, epoch), false, 3).0, 0);
        assert_eq!(committed(&c), Some(42));
        assert!(!c.offsets().has_pending("g", "t", 0));
    }

    #[test]
    fn the_group_coordinator_and_the_producer_are_checked() {
        let mut c = cluster_with(2);
        let (_, id, epoch) = init_txn(&mut c, "txn", 4);
        let broker = group_coordinator(&mut c, "g");
        let req = commit_request((id, epoch), -1);
        let r = handle(
            &mut c,
            &api_ctx(ApiKey::TxnOffsetCommit, (broker + 1) % 3, 3),
            req,
        );
        assert_eq!(
            r.topics[0].partitions[0].error_code,
            ErrorCode::NotCoordinator.code()
        );
        let mut empty_group = commit_request((id, epoch), -1);
        empty_group.group_id = GroupId(text(""));
        let r = handle(
            &mut c,
            &api_ctx(ApiKey::TxnOffsetCommit, broker, 3),
            empty_group,
        );
        assert_eq!(
            r.topics[0].partitions[0].error_code,
            ErrorCode::InvalidGroupId.code()
        );
        assert_eq!(add_offsets(&mut c, (id, epoch)), 0);
        assert_eq!(
            commit(&mut c, commit_request((id, epoch + 1), -1), 3)[0],
            ErrorCode::InvalidProducerEpoch.code()
        );
        assert_eq!(
            commit(&mut c, commit_request((id + 7, epoch), -1), 3)[0],
            ErrorCode::InvalidProducerIdMapping.code()
        );
        // v5 adds the group's partition itself.
        let (_, id2, epoch2) = {
            end_txn(&mut c, "txn", (id, epoch), false, 3);
            init_txn(&mut c, "txn", 4)
        };
        assert_eq!(commit(&mut c, commit_request((id2, epoch2), -1), 5)[0], 0);
        assert!(c.offsets().has_pending("g", "t", 0));
    }
}
