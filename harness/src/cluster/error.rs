//! The error of a cluster operation: a Kafka error code plus the message Kafka would put
//! in the response's `error_message` field (or, where Kafka sends none, what it logs), and
//! the log start offset for the errors Kafka answers with it.

use franzy::proto::ErrorCode;

/// A refused operation.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterError {
    /// The code the response carries.
    pub code: ErrorCode,
    /// A human-readable message, or `None` where Kafka sends none.
    pub message: Option<String>,
    /// For record-level validation errors, the index of the offending record in its batch.
    pub record_index: Option<i32>,
    /// The partition's log start offset, for the errors Kafka answers with it (those its log
    /// raises after the record checks: producer epoch, sequence and transaction state);
    /// `None` answers -1.
    pub log_start_offset: Option<i64>,
    /// What Kafka logs for an error whose response carries no message, for our own log.
    pub detail: Option<String>,
}

impl ClusterError {
    /// An error without a message.
    pub fn code(code: ErrorCode) -> Self {
        Self {
            code,
            message: None,
            record_index: None,
            log_start_offset: None,
            detail: None,
        }
    }

    /// An error with a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            message: Some(message.into()),
            ..Self::code(code)
        }
    }

    /// An error Kafka answers without a message but logs with `detail`.
    pub fn logged(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            detail: Some(detail.into()),
            ..Self::code(code)
        }
    }

    /// The same error, answered with the partition's log start offset.
    pub fn with_log_start_offset(mut self, log_start_offset: i64) -> Self {
        self.log_start_offset = Some(log_start_offset);
        self
    }
}

impl From<ErrorCode> for ClusterError {
    fn from(code: ErrorCode) -> Self {
        Self::code(code)
    }
}
