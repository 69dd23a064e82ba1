//! ListPartitionReassignments (key 46), v0 (KIP-455): the harness never reassigns replicas,
//! so no reassignment is ever ongoing and the answer is empty, as Kafka's controller answers
//! when none is (topics it does not know are left out, as Kafka leaves them out).

use franzy::proto::ErrorCode;
use kafka_protocol::messages::{
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
};

use super::RequestContext;
use crate::cluster::ClusterState;

/// Serves a ListPartitionReassignments request.
pub fn handle(
    _cluster: &ClusterState,
    _ctx: &RequestContext,
    _req: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    ListPartitionReassignmentsResponse::default().with_error_message(None)
}

/// The answer that fails `req` with `code`.
pub fn error_response(
    _req: &ListPartitionReassignmentsRequest,
    _version: i16,
    code: ErrorCode,
) -> ListPartitionReassignmentsResponse {
    ListPartitionReassignmentsResponse::default().with_error_code(code.code())
}
