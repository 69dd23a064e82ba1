//! The group ids and transactional ids a request names, for interceptors narrowed with
//! [`crate::Interceptor::on_group`] and [`crate::Interceptor::on_transactional_id`] (and,
//! with the coordinators, for finding whose state a request concerns).
//!
//! One function per request type that names such ids, with the field each version uses;
//! an API's entry in the table ([`super::ApiSpec::named_ids`]) points at its function, so
//! the extraction is written once, also for APIs no handler serves yet.

use std::sync::Arc;

use franzy::proto::RequestKind;
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, ConsumerGroupDescribeRequest,
    ConsumerGroupHeartbeatRequest, DeleteGroupsRequest, DescribeGroupsRequest,
    DescribeTransactionsRequest, EndTxnRequest, FindCoordinatorRequest, HeartbeatRequest,
    InitProducerIdRequest, JoinGroupRequest, LeaveGroupRequest, OffsetCommitRequest,
    OffsetDeleteRequest, OffsetFetchRequest, SyncGroupRequest, TxnOffsetCommitRequest,
};

/// FindCoordinator's key type for a transactional id (0 is a group; 2, share groups, is
/// neither).
const KEY_TYPE_TRANSACTION: i8 = 1;

/// The group ids and transactional ids a request names, in request order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamedIds {
    /// Consumer group ids.
    pub groups: Vec<Arc<str>>,
    /// Transactional ids.
    pub transactional_ids: Vec<Arc<str>>,
}

impl NamedIds {
    /// Whether the request names no such id.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty() && self.transactional_ids.is_empty()
    }

    fn group(id: &str) -> Self {
        Self {
            groups: vec![Arc::from(id)],
            transactional_ids: Vec::new(),
        }
    }

    fn transactional_id(id: &str) -> Self {
        Self {
            groups: Vec::new(),
            transactional_ids: vec![Arc::from(id)],
        }
    }
}

/// The ids `request` names at `version`: the extraction for every request type that names
/// any (empty for the others), whether or not a handler serves it.
pub fn of(request: &RequestKind, version: i16) -> NamedIds {
    match request {
        RequestKind::FindCoordinator(req) => find_coordinator(req, version),
        RequestKind::JoinGroup(req) => join_group(req),
        RequestKind::SyncGroup(req) => sync_group(req),
        RequestKind::Heartbeat(req) => heartbeat(req),
        RequestKind::LeaveGroup(req) => leave_group(req),
        RequestKind::OffsetCommit(req) => offset_commit(req),
        RequestKind::OffsetFetch(req) => offset_fetch(req, version),
        RequestKind::OffsetDelete(req) => offset_delete(req),
        RequestKind::DescribeGroups(req) => describe_groups(req),
        RequestKind::DeleteGroups(req) => delete_groups(req),
        RequestKind::ConsumerGroupHeartbeat(req) => consumer_group_heartbeat(req),
        RequestKind::ConsumerGroupDescribe(req) => consumer_group_describe(req),
        RequestKind::InitProducerId(req) => init_producer_id(req),
        RequestKind::AddPartitionsToTxn(req) => add_partitions_to_txn(req, version),
        RequestKind::AddOffsetsToTxn(req) => add_offsets_to_txn(req),
        RequestKind::EndTxn(req) => end_txn(req),
        RequestKind::TxnOffsetCommit(req) => txn_offset_commit(req),
        RequestKind::DescribeTransactions(req) => describe_transactions(req),
        _ => NamedIds::default(),
    }
}

/// FindCoordinator: `key` before v4, `coordinator_keys` from v4; groups unless the key type
/// (v1+) says transaction.
pub fn find_coordinator(req: &FindCoordinatorRequest, version: i16) -> NamedIds {
    let keys: Vec<Arc<str>> = if version >= 4 {
        req.coordinator_keys
            .iter()
            .map(|k| Arc::from(k.as_str()))
            .collect()
    } else {
        vec![Arc::from(req.key.as_str())]
    };
    match version >= 1 && req.key_type == KEY_TYPE_TRANSACTION {
        true => NamedIds {
            groups: Vec::new(),
            transactional_ids: keys,
        },
        false if version >= 1 && req.key_type != 0 => NamedIds::default(),
        false => NamedIds {
            groups: keys,
            transactional_ids: Vec::new(),
        },
    }
}

/// JoinGroup: its group.
pub fn join_group(req: &JoinGroupRequest) -> NamedIds {
    NamedIds::group(req.group_id.as_str())
}

/// SyncGroup: its group.
pub fn sync_group(req: &SyncGroupRequest) -> NamedIds {
    NamedIds::group(req.group_id.as_str())
}

/// Heartbeat: its group.
pub fn heartbeat(req: &HeartbeatRequest) -> NamedIds {
    NamedIds::group(req.group_id.as_str())
}

/// LeaveGroup: its group.
pub fn leave_group(req: &LeaveGroupRequest) -> NamedIds {
    NamedIds::group(req.group_id.as_str())
}

/// OffsetCommit: its group.
pub fn offset_commit(req: &OffsetCommitRequest) -> NamedIds {
    NamedIds::group(req.group_id.as_str())
}

/// OffsetFetch: `group_id` before v8, each of `groups` from v8 (KIP-709).
pub fn offset_fetch(req: &OffsetFetchRequest, version: i16) -> NamedIds {
    if version >= 8 {
        NamedIds {
            groups: req
                .groups
                .iter()
                .map(|g| Arc::from(g.group_id.as_str()))
                .collect(),
            transactional_ids: Vec::new(),
        }
    } else {
        NamedIds::group(req.group_id.as_str())
    }
}

/// OffsetDelete: its group.
pub fn offset_delete(req: &OffsetDeleteRequest) -> NamedIds {
    NamedIds::group(req.group_id.as_str())
}

/// DescribeGroups: each group.
pub fn describe_groups(req: &DescribeGroupsRequest) -> NamedIds {
    NamedIds {
        groups: req.groups.iter().map(|g| Arc::from(g.as_str())).collect(),
        transactional_ids: Vec::new(),
    }
}

/// ConsumerGroupDescribe: each group.
pub fn consumer_group_describe(req: &ConsumerGroupDescribeRequest) -> NamedIds {
    NamedIds {
        groups: req
            .group_ids
            .iter()
            .map(|g| Arc::from(g.as_str()))
            .collect(),
        transactional_ids: Vec::new(),
    }
}

/// DeleteGroups: each group.
pub fn delete_groups(req: &DeleteGroupsRequest) -> NamedIds {
    NamedIds {
        groups: req
            .groups_names
            .iter()
            .map(|g| Arc::from(g.as_str()))
            .collect(),
        transactional_ids: Vec::new(),
    }
}

/// ConsumerGroupHeartbeat (KIP-848): its group.
pub fn consumer_group_heartbeat(req: &ConsumerGroupHeartbeatRequest) -> NamedIds {
    NamedIds::group(req.group_id.as_str())
}

/// InitProducerId: its transactional id, when it has one (an idempotent producer's has
/// none).
pub fn init_producer_id(req: &InitProducerIdRequest) -> NamedIds {
    match &req.transactional_id {
        Some(id) => NamedIds::transactional_id(id.as_str()),
        None => NamedIds::default(),
    }
}

/// AddPartitionsToTxn: the one transactional id before v4, each transaction's from v4
/// (KIP-890's batched form, sent by brokers).
pub fn add_partitions_to_txn(req: &AddPartitionsToTxnRequest, version: i16) -> NamedIds {
    if version >= 4 {
        NamedIds {
            groups: Vec::new(),
            transactional_ids: req
                .transactions
                .iter()
                .map(|t| Arc::from(t.transactional_id.as_str()))
                .collect(),
        }
    } else {
        NamedIds::transactional_id(req.v3_and_below_transactional_id.as_str())
    }
}

/// AddOffsetsToTxn: its transactional id and the group whose offsets join the transaction.
pub fn add_offsets_to_txn(req: &AddOffsetsToTxnRequest) -> NamedIds {
    NamedIds {
        groups: vec![Arc::from(req.group_id.as_str())],
        transactional_ids: vec![Arc::from(req.transactional_id.as_str())],
    }
}

/// EndTxn: its transactional id.
pub fn end_txn(req: &EndTxnRequest) -> NamedIds {
    NamedIds::transactional_id(req.transactional_id.as_str())
}

/// TxnOffsetCommit: its transactional id and its group.
pub fn txn_offset_commit(req: &TxnOffsetCommitRequest) -> NamedIds {
    NamedIds {
        groups: vec![Arc::from(req.group_id.as_str())],
        transactional_ids: vec![Arc::from(req.transactional_id.as_str())],
    }
}

/// DescribeTransactions: each transactional id.
pub fn describe_transactions(req: &DescribeTransactionsRequest) -> NamedIds {
    NamedIds {
        groups: Vec::new(),
        transactional_ids: req
            .transactional_ids
            .iter()
            .map(|t| Arc::from(t.as_str()))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use franzy::proto::StrBytes;
    use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTransaction;
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
    use kafka_protocol::messages::{GroupId, TransactionalId};

    use super::*;

    fn s(text: &'static str) -> StrBytes {
        StrBytes::from_static_str(text)
    }

    fn group(id: &'static str) -> GroupId {
        GroupId(s(id))
    }

    fn txn(id: &'static str) -> TransactionalId {
        TransactionalId(s(id))
    }

    fn groups(ids: &[&str]) -> NamedIds {
        NamedIds {
            groups: ids.iter().map(|id| Arc::from(*id)).collect(),
            transactional_ids: Vec::new(),
        }
    }

    fn txns(ids: &[&str]) -> NamedIds {
        NamedIds {
            groups: Vec::new(),
            transactional_ids: ids.iter().map(|id| Arc::from(*id)).collect(),
        }
    }

    #[test]
    fn find_coordinator_keys_by_version_and_key_type() {
        let old = FindCoordinatorRequest::default().with_key(s("g"));
        assert_eq!(find_coordinator(&old, 0), groups(&["g"]));
        let txn_key = old.clone().with_key_type(1);
        assert_eq!(find_coordinator(&txn_key, 3), txns(&["g"]));
        // v0 has no key type: always a group.
        assert_eq!(find_coordinator(&txn_key, 0), groups(&["g"]));
        let share = old.clone().with_key_type(2);
        assert!(find_coordinator(&share, 3).is_empty());
        let batched = FindCoordinatorRequest::default()
            .with_key_type(1)
            .with_coordinator_keys(vec![s("a"), s("b")]);
        assert_eq!(find_coordinator(&batched, 4), txns(&["a", "b"]));
        let request = RequestKind::FindCoordinator(batched.with_key_type(0));
        assert_eq!(of(&request, 6), groups(&["a", "b"]));
    }

    #[test]
    fn group_requests_name_their_group() {
        let cases = [
            RequestKind::JoinGroup(JoinGroupRequest::default().with_group_id(group("j"))),
            RequestKind::SyncGroup(SyncGroupRequest::default().with_group_id(group("j"))),
            RequestKind::Heartbeat(HeartbeatRequest::default().with_group_id(group("j"))),
            RequestKind::LeaveGroup(LeaveGroupRequest::default().with_group_id(group("j"))),
            RequestKind::OffsetCommit(OffsetCommitRequest::default().with_group_id(group("j"))),
            RequestKind::OffsetDelete(OffsetDeleteRequest::default().with_group_id(group("j"))),
            RequestKind::ConsumerGroupHeartbeat(
                ConsumerGroupHeartbeatRequest::default().with_group_id(group("j")),
            ),
        ];
        for request in &cases {
            assert_eq!(of(request, 0), groups(&["j"]), "{request:?}");
        }
        let describe = DescribeGroupsRequest::default().with_groups(vec![group("a"), group("b")]);
        assert_eq!(describe_groups(&describe), groups(&["a", "b"]));
        let delete = DeleteGroupsRequest::default().with_groups_names(vec![group("c")]);
        assert_eq!(delete_groups(&delete), groups(&["c"]));
    }

    #[test]
    fn offset_fetch_names_one_group_before_v8_and_many_after() {
        let req = OffsetFetchRequest::default()
            .with_group_id(group("old"))
            .with_groups(vec![
                OffsetFetchRequestGroup::default().with_group_id(group("a")),
                OffsetFetchRequestGroup::default().with_group_id(group("b")),
            ]);
        assert_eq!(offset_fetch(&req, 7), groups(&["old"]));
        assert_eq!(offset_fetch(&req, 8), groups(&["a", "b"]));
    }

    #[test]
    fn transactional_requests_name_their_ids() {
        let idempotent = InitProducerIdRequest::default().with_transactional_id(None);
        assert!(init_producer_id(&idempotent).is_empty());
        let transactional = InitProducerIdRequest::default().with_transactional_id(Some(txn("tx")));
        assert_eq!(init_producer_id(&transactional), txns(&["tx"]));
        let end = EndTxnRequest::default().with_transactional_id(txn("tx"));
        assert_eq!(of(&RequestKind::EndTxn(end), 3), txns(&["tx"]));
        let add = AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(txn("old"))
            .with_transactions(vec![
                AddPartitionsToTxnTransaction::default().with_transactional_id(txn("a")),
                AddPartitionsToTxnTransaction::default().with_transactional_id(txn("b")),
            ]);
        assert_eq!(add_partitions_to_txn(&add, 3), txns(&["old"]));
        assert_eq!(add_partitions_to_txn(&add, 4), txns(&["a", "b"]));
        let both = NamedIds {
            groups: vec![Arc::from("g")],
            transactional_ids: vec![Arc::from("tx")],
        };
        let offsets = AddOffsetsToTxnRequest::default()
            .with_transactional_id(txn("tx"))
            .with_group_id(group("g"));
        assert_eq!(add_offsets_to_txn(&offsets), both);
        let commit = TxnOffsetCommitRequest::default()
            .with_transactional_id(txn("tx"))
            .with_group_id(group("g"));
        assert_eq!(txn_offset_commit(&commit), both);
        let describe =
            DescribeTransactionsRequest::default().with_transactional_ids(vec![txn("x")]);
        assert_eq!(describe_transactions(&describe), txns(&["x"]));
        // Requests that name neither.
        let metadata = RequestKind::Metadata(Default::default());
        assert!(of(&metadata, 12).is_empty());
    }
}
