//! The error of a cluster operation: a Kafka error code plus the message Kafka would put
//! in the response's `error_message` field.

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
}

impl ClusterError {
    /// An error without a message.
    pub fn code(code: ErrorCode) -> Self {
        Self {
            code,
            message: None,
            record_index: None,
        }
    }

    /// An error with a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: Some(message.into()),
            record_index: None,
        }
    }
}

impl From<ErrorCode> for ClusterError {
    fn from(code: ErrorCode) -> Self {
        Self::code(code)
    }
}
