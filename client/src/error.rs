//! The client's error type and its classification.
//!
//! Errors are classified as librdkafka does:
//! - [`Error::is_retriable`]: trying the same operation again may succeed (a leader moved, a
//!   connection dropped, a request timed out);
//! - [`Error::requires_abort`]: inside a transaction, the transaction cannot commit and must be
//!   aborted, after which the producer is usable again;
//! - [`Error::is_fatal`]: the producer or consumer instance can no longer be used (fenced by a
//!   newer instance, a broken sequence that idempotence cannot repair, a broker that breaks the
//!   protocol in a way we cannot recover from).
//!
//! A transactional producer's operations say what they need next the same way (the Java
//! client's `TransactionManager` error table per request; DESIGN.md lists it): retriable
//! broker answers are retried inside and never surface; an error with
//! [`Error::requires_abort`] leaves the producer needing `abort_transaction()`; a fatal one
//! closes it. Three outcomes belong to transactions only: [`Error::TransactionAborted`] (a
//! record of a transaction that was aborted), [`Error::TransactionOutcomeUnknown`] (a commit
//! whose answer never came: it may or may not have committed) and
//! [`Error::InvalidTransactionState`] (a method called when the transaction's state does not
//! allow it, such as `send` before `begin_transaction`).

use std::sync::Arc;
use std::time::Duration;

use crate::proto::{ApiKey, ErrorCode};
use crate::record::ProducerRecord;
use crate::topic_partition::TopicPartition;

/// A shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Whether a record that failed may nonetheless be in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Persisted {
    /// The record was never acknowledged and cannot be in the log (it was never sent, or the
    /// broker answered with an error that means it was not written).
    No,
    /// The record may be in the log: a request carrying it was sent and no answer came back
    /// (timeout, dropped connection). Without idempotence, a retry may duplicate it.
    Possibly,
}

/// Errors of the franzy client.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is malformed, asks for something franzy does not support
    /// (GSSAPI, JKS keystores), or conflicts with other
    /// settings; or a file it names cannot be read.
    #[error("invalid configuration {key}: {reason}")]
    Config {
        /// The Kafka property name (or builder method) at fault.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The broker answered with an error code for something other than one partition (a
    /// whole request, a topic, a producer id).
    #[error("broker error {code}{}", context.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Broker {
        /// Kafka's error code.
        code: ErrorCode,
        /// What the error applies to (a topic, an API) or the broker's message.
        context: Option<String>,
    },
    /// The broker answered with an error code for one partition: to a consumer, a
    /// non-retriable code that stopped the partition until a seek; to a producer, why a
    /// batch of the partition failed. [`Error::partition`] names it.
    #[error("broker error {code} for {partition}{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Partition {
        /// The partition.
        partition: TopicPartition,
        /// Kafka's error code.
        code: ErrorCode,
        /// The broker's message, if it sent one.
        message: Option<String>,
    },
    /// A connection could not be opened.
    #[error("cannot connect to {address}")]
    Connect {
        /// `host:port`.
        address: String,
        /// The cause.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The broker refused to authenticate the client, or the client refused the broker:
    /// wrong credentials (SASL_AUTHENTICATION_FAILED), a mechanism the broker does not
    /// enable, a SCRAM server signature that does not verify, a TLS handshake that failed
    /// (an unknown CA, a certificate for another host). Fatal: the same settings fail the
    /// same way, so the client's operations fail with it rather than retry forever.
    #[error("authentication with {broker} failed: {reason}")]
    Authentication {
        /// `host:port` of the broker.
        broker: String,
        /// Why, naming the cause (the broker's message, the TLS error).
        reason: String,
    },
    /// Authentication was interrupted by something a new connection may not meet again
    /// (ILLEGAL_SASL_STATE, a connection lost mid-exchange). Retriable; a connection
    /// attempt retries it once before it becomes [`Error::Authentication`].
    #[error("authentication with {broker} interrupted: {reason}")]
    AuthenticationInterrupted {
        /// `host:port` of the broker.
        broker: String,
        /// What happened.
        reason: String,
    },
    /// The connection broke while the request was in flight or queued.
    #[error("connection to {address} lost")]
    Disconnected {
        /// `host:port`.
        address: String,
    },
    /// No response arrived within `request.timeout.ms`.
    #[error("request timed out after {0:?}")]
    RequestTimeout(Duration),
    /// A record could not be delivered within `delivery.timeout.ms`.
    #[error("delivery timed out after {0:?}")]
    DeliveryTimeout(Duration),
    /// The peer sent bytes that are not valid Kafka protocol.
    #[error("protocol violation by {peer}: {reason}")]
    Protocol {
        /// `host:port` of the peer.
        peer: String,
        /// What was wrong.
        reason: String,
    },
    /// The broker supports no version of an API that franzy needs.
    #[error("{address} supports no version of {api:?} that franzy speaks")]
    UnsupportedVersion {
        /// `host:port` of the broker.
        address: String,
        /// The API.
        api: ApiKey,
    },
    /// A record or request is larger than a configured or broker limit.
    #[error("record of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Size of the record or batch.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The position is out of range and `auto.offset.reset` is `none`.
    #[error("offset {offset} out of range for {partition} and auto.offset.reset is none")]
    OffsetOutOfRange {
        /// The partition.
        partition: TopicPartition,
        /// The offset that was out of range.
        offset: i64,
    },
    /// A record, fetch response or batch could not be decoded, or a broker sent offsets
    /// that cannot be (a batch at a negative offset or ending past `i64::MAX`, a looked-up
    /// offset below -1).
    #[error(
        "corrupt record data in {partition}{}{}: {reason}",
        offset.map(|o| format!(" at offset {o}")).unwrap_or_default(),
        broker.map(|b| format!(" from broker {b}")).unwrap_or_default()
    )]
    CorruptRecord {
        /// The partition.
        partition: TopicPartition,
        /// The offset at fault (a batch's base offset, or the position), when known.
        offset: Option<i64>,
        /// The broker that sent the data, when it came from one.
        broker: Option<i32>,
        /// What was wrong.
        reason: String,
    },
    /// An operation on a partition the client does not know or is not assigned.
    #[error("unknown or unassigned partition {partition}")]
    UnknownPartition {
        /// The partition.
        partition: TopicPartition,
    },
    /// Every request to a broker the consumer needs has failed (no answer, a broken
    /// connection, bytes that are not Kafka protocol) for at least `reconnect.backoff.max.ms`.
    /// Returned once per such failure episode by `Consumer::recv`, which keeps retrying with
    /// backoff and consumes again once the broker answers. Retriable, unless the cause is
    /// fatal (the broker refused the credentials, its certificate is not trusted): then
    /// returned at the first failure, and fatal.
    #[error("broker {broker} unreachable for {failing_for:?}: {cause}")]
    BrokerUnreachable {
        /// The broker's node id.
        broker: i32,
        /// How long its requests have been failing.
        failing_for: Duration,
        /// The last failure.
        #[source]
        cause: Box<Error>,
    },
    /// No broker, bootstrap servers included, answered a metadata request for at least
    /// `reconnect.backoff.max.ms`, while the consumer needed one to find a partition's
    /// leader (librdkafka's `ALL_BROKERS_DOWN`). Returned once per episode, like
    /// [`Error::BrokerUnreachable`]. Retriable, unless the cause is fatal (as there).
    #[error("no broker reachable for {failing_for:?}: {cause}")]
    AllBrokersDown {
        /// How long metadata requests have been failing.
        failing_for: Duration,
        /// The last failure.
        #[source]
        cause: Box<Error>,
    },
    /// A commit was refused because the member is not in the group's current generation
    /// (it was removed, or a rebalance is in progress): Java's `CommitFailedException` and
    /// `RebalanceInProgressException`. The partitions may belong to another member now;
    /// the consumer rejoins on the next `recv`. Not retriable as is.
    #[error("commit failed: {reason}")]
    CommitFailed {
        /// The broker's code, when the coordinator refused the commit.
        code: Option<ErrorCode>,
        /// Why.
        reason: String,
    },
    /// The application did not call `recv` within `max.poll.interval.ms`: the consumer left
    /// its group (its partitions went to other members). Returned once by the next `recv`,
    /// which then rejoins the group; commits until then fail with [`Error::CommitFailed`].
    #[error("the time between recv calls exceeded max.poll.interval.ms ({interval:?}): the consumer left the group and rejoins")]
    PollIntervalExceeded {
        /// `max.poll.interval.ms`.
        interval: Duration,
    },
    /// The consumer's group membership failed for good: another consumer with the same
    /// `group.instance.id` fenced it (FENCED_INSTANCE_ID), it may not use the group
    /// (GROUP_AUTHORIZATION_FAILED), or the group refused its settings
    /// (INCONSISTENT_GROUP_PROTOCOL, INVALID_SESSION_TIMEOUT, ...). Fatal.
    #[error("consumer group {group} failed: {code}")]
    GroupFailed {
        /// The group id.
        group: String,
        /// Kafka's error code.
        code: ErrorCode,
    },
    /// The client was closed.
    #[error("client is closed")]
    Closed,
    /// An argument passed to a client method is not valid (a negative offset to seek to, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The producer can no longer be used because of this error, which by itself would not
    /// be fatal (idempotence was asked for and the brokers cannot give a producer id, ...).
    #[error("producer failed fatally: {0}")]
    Fatal(Box<Error>),
    /// The current transaction cannot commit because of this error (a record of the
    /// transaction failed, offsets could not be added, a retriable failure outlasted the
    /// commit's deadline before the commit reached the coordinator, ...): call
    /// `abort_transaction()`, after which the producer can begin a new transaction. Every
    /// transactional operation but the abort returns this until then.
    #[error("transaction must be aborted: {0}")]
    Abortable(Box<Error>),
    /// The record was part of a transaction that was aborted before it was sent (its
    /// transaction is aborted; nothing is left to do). Returned by the record's delivery.
    #[error("transaction aborted")]
    TransactionAborted,
    /// A commit whose answer never came: an `EndTxn` that may have reached the transaction
    /// coordinator got no answer (no response, a broken connection) until the commit's
    /// deadline (`transaction.timeout.ms` after the first `EndTxn` was sent), or a retry of it
    /// was answered with an error that does not say what became of the first one (fenced by
    /// a newer producer that may have found the transaction committed). The transaction may
    /// or may not have committed: the application must find out from the data (for a
    /// consume-transform-produce loop: the group's committed offsets).
    ///
    /// Neither retriable nor abortable: the producer re-initialises its producer id with an
    /// epoch bump (KIP-360) before the next transaction (`begin_transaction` waits for it), so
    /// the transaction's epoch is never used again. Fatal only when its cause is (the
    /// producer was fenced): [`Error::is_fatal`] follows the cause.
    #[error("transaction outcome unknown: {cause}")]
    TransactionOutcomeUnknown {
        /// The last failure of the commit.
        #[source]
        cause: Box<Error>,
    },
    /// A transactional method was called in a state that does not allow it: `send` or
    /// `commit_transaction` before `begin_transaction`, a transactional method of a producer
    /// without `transactional.id`, `begin_transaction` twice, ... (the Java client's
    /// `IllegalStateException`). Nothing changed: the producer is as it was.
    #[error("invalid transaction state: {0}")]
    InvalidTransactionState(String),
}

impl Error {
    /// A broker error without context.
    pub fn broker(code: ErrorCode) -> Self {
        Self::Broker {
            code,
            context: None,
        }
    }

    /// A configuration error for `key`.
    pub fn config(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Config {
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// The partition this error concerns, for every partition-scoped error
    /// ([`Error::Partition`], [`Error::OffsetOutOfRange`], [`Error::CorruptRecord`],
    /// [`Error::UnknownPartition`]): the one to seek, pause or report.
    pub fn partition(&self) -> Option<&TopicPartition> {
        match self {
            Self::Partition { partition, .. }
            | Self::OffsetOutOfRange { partition, .. }
            | Self::CorruptRecord { partition, .. }
            | Self::UnknownPartition { partition } => Some(partition),
            Self::Fatal(cause) | Self::Abortable(cause) => cause.partition(),
            _ => None,
        }
    }

    /// The broker error code, if this is a broker error (or wraps one: [`Error::Fatal`],
    /// [`Error::Abortable`]). [`Error::TransactionOutcomeUnknown`] has none, even when its
    /// cause is a broker error: a code such as PRODUCER_FENCED there does not mean the
    /// transaction failed.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Broker { code, .. }
            | Self::Partition { code, .. }
            | Self::GroupFailed { code, .. } => Some(*code),
            Self::CommitFailed { code, .. } => *code,
            Self::Fatal(cause) | Self::Abortable(cause) => cause.code(),
            _ => None,
        }
    }

    /// Trying again may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Broker { code, .. } | Self::Partition { code, .. } => code.is_retriable(),
            Self::Connect { .. }
            | Self::Disconnected { .. }
            | Self::RequestTimeout(_)
            | Self::AuthenticationInterrupted { .. } => true,
            // An outage whose cause is an authentication failure will not pass by itself.
            Self::BrokerUnreachable { cause, .. } | Self::AllBrokersDown { cause, .. } => {
                !cause.is_fatal()
            }
            _ => false,
        }
    }

    /// The instance can no longer be used and must be recreated.
    pub fn is_fatal(&self) -> bool {
        match self {
            Self::Fatal(_) | Self::Authentication { .. } | Self::GroupFailed { .. } => true,
            Self::BrokerUnreachable { cause, .. } | Self::AllBrokersDown { cause, .. } => {
                cause.is_fatal()
            }
            Self::TransactionOutcomeUnknown { cause } => cause.is_fatal(),
            Self::Broker { code, .. } | Self::Partition { code, .. } => matches!(
                code,
                ErrorCode::ProducerFenced
                    | ErrorCode::InvalidProducerEpoch
                    | ErrorCode::TransactionalIdAuthorizationFailed
                    | ErrorCode::ClusterAuthorizationFailed
                    | ErrorCode::FencedInstanceId
                    | ErrorCode::UnsupportedForMessageFormat
            ),
            _ => false,
        }
    }

    /// Inside a transaction, this error means the transaction must be aborted; the producer
    /// stays usable afterwards. Fatal errors are not abortable: the producer is gone. Neither
    /// are misuse ([`Error::InvalidTransactionState`], [`Error::Config`], ...), a record of a
    /// transaction already aborted ([`Error::TransactionAborted`]), nor a commit of unknown
    /// outcome ([`Error::TransactionOutcomeUnknown`]: there is no transaction left to abort).
    pub fn requires_abort(&self) -> bool {
        !self.is_fatal()
            && !self.is_retriable()
            && !matches!(
                self,
                Self::Config { .. }
                    | Self::Closed
                    | Self::InvalidArgument(_)
                    | Self::InvalidTransactionState(_)
                    | Self::TransactionAborted
                    | Self::TransactionOutcomeUnknown { .. }
            )
    }
}

/// A record that could not be sent, with the reason and the record itself (for a retry by
/// the application or a dead-letter topic).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ProduceError {
    /// Why.
    pub error: Error,
    /// Whether the record may be in the log despite the failure.
    pub persisted: Persisted,
    /// The record, as given to `send` (boxed: it is large and errors travel in `Result`s).
    pub record: Box<ProducerRecord>,
}

impl ProduceError {
    /// `record` failed with `error`; `persisted` says whether it may be in the log anyway.
    pub fn new(error: Error, persisted: Persisted, record: ProducerRecord) -> Self {
        Self {
            error,
            persisted,
            record: Box::new(record),
        }
    }
}

impl std::fmt::Display for ProduceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot produce to {}: {}", self.record.topic, self.error)
    }
}

impl std::error::Error for ProduceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_is_send_sync_static() {
        fn assert_bounds<T: Send + Sync + 'static + std::error::Error>() {}
        assert_bounds::<Error>();
    }

    #[test]
    fn classification_follows_librdkafka() {
        assert!(Error::broker(ErrorCode::NotLeaderOrFollower).is_retriable());
        assert!(!Error::broker(ErrorCode::NotLeaderOrFollower).requires_abort());
        assert!(Error::RequestTimeout(Duration::from_secs(30)).is_retriable());
        assert!(Error::broker(ErrorCode::ProducerFenced).is_fatal());
        assert!(!Error::broker(ErrorCode::ProducerFenced).requires_abort());
        assert!(Error::broker(ErrorCode::MessageTooLarge).requires_abort());
        assert!(Error::DeliveryTimeout(Duration::from_secs(120)).requires_abort());
        assert!(!Error::config("linger.ms", "not a number").requires_abort());
        let cause = Box::new(Error::Disconnected {
            address: "b1:9092".into(),
        });
        for outage in [
            Error::BrokerUnreachable {
                broker: 1,
                failing_for: Duration::from_secs(2),
                cause: cause.clone(),
            },
            Error::AllBrokersDown {
                failing_for: Duration::from_secs(2),
                cause,
            },
        ] {
            assert!(outage.is_retriable(), "{outage}");
            assert!(!outage.is_fatal(), "{outage}");
            assert!(!outage.requires_abort(), "{outage}");
            let source = std::error::Error::source(&outage).map(ToString::to_string);
            assert_eq!(source.as_deref(), Some("connection to b1:9092 lost"));
        }
    }

    #[test]
    fn transaction_outcomes_are_classified_for_what_comes_next() {
        let timeout = Error::RequestTimeout(Duration::from_secs(30));
        // A retriable cause made abortable: abort, then go on.
        let abortable = Error::Abortable(Box::new(timeout.clone()));
        assert!(abortable.requires_abort() && !abortable.is_retriable() && !abortable.is_fatal());
        let partition = TopicPartition::new("t", 1);
        let failed_batch = Error::Abortable(Box::new(Error::Partition {
            partition: partition.clone(),
            code: ErrorCode::InvalidProducerEpoch,
            message: None,
        }));
        assert_eq!(failed_batch.code(), Some(ErrorCode::InvalidProducerEpoch));
        assert_eq!(failed_batch.partition(), Some(&partition));
        // Records of an aborted transaction: nothing left to do.
        let aborted = Error::TransactionAborted;
        assert!(!aborted.requires_abort() && !aborted.is_retriable() && !aborted.is_fatal());
        // A torn commit: not retriable, not abortable; fatal only when fenced.
        let unknown = Error::TransactionOutcomeUnknown {
            cause: Box::new(timeout),
        };
        assert!(!unknown.requires_abort() && !unknown.is_retriable() && !unknown.is_fatal());
        assert_eq!(
            unknown.to_string(),
            "transaction outcome unknown: request timed out after 30s"
        );
        assert!(std::error::Error::source(&unknown).is_some());
        let fenced = Error::TransactionOutcomeUnknown {
            cause: Box::new(Error::broker(ErrorCode::ProducerFenced)),
        };
        assert!(fenced.is_fatal() && !fenced.requires_abort());
        assert_eq!(
            fenced.code(),
            None,
            "the fencing does not say the commit failed"
        );
        // Misuse changes nothing.
        let misuse = Error::InvalidTransactionState("no transaction in progress".into());
        assert!(!misuse.requires_abort() && !misuse.is_retriable() && !misuse.is_fatal());
    }

    #[test]
    fn partition_errors_name_their_partition_as_data() {
        let tp = TopicPartition::new("orders", 4);
        let denied = Error::Partition {
            partition: tp.clone(),
            code: ErrorCode::TopicAuthorizationFailed,
            message: None,
        };
        assert_eq!(denied.partition(), Some(&tp));
        assert_eq!(denied.code(), Some(ErrorCode::TopicAuthorizationFailed));
        assert!(!denied.is_retriable() && !denied.is_fatal() && denied.requires_abort());
        assert_eq!(
            denied.to_string(),
            "broker error TopicAuthorizationFailed for orders/4"
        );
        let moved = Error::Partition {
            partition: tp.clone(),
            code: ErrorCode::NotLeaderOrFollower,
            message: Some("leader moved".into()),
        };
        assert!(moved.is_retriable());
        assert!(
            moved.to_string().ends_with("for orders/4: leader moved"),
            "{moved}"
        );
        let fenced = Error::Partition {
            partition: tp.clone(),
            code: ErrorCode::ProducerFenced,
            message: None,
        };
        assert!(fenced.is_fatal());
        for error in [
            Error::OffsetOutOfRange {
                partition: tp.clone(),
                offset: 9,
            },
            Error::CorruptRecord {
                partition: tp.clone(),
                offset: None,
                broker: Some(1),
                reason: "bad crc".into(),
            },
            Error::UnknownPartition {
                partition: tp.clone(),
            },
            Error::Fatal(Box::new(fenced)),
        ] {
            assert_eq!(error.partition(), Some(&tp), "{error}");
        }
        assert_eq!(Error::broker(ErrorCode::NotController).partition(), None);
        assert_eq!(Error::Closed.partition(), None);
    }

    #[test]
    fn corrupt_data_names_where_it_came_from() {
        let error = Error::CorruptRecord {
            partition: TopicPartition::new("t", 3),
            offset: Some(i64::MAX),
            broker: Some(2),
            reason: "no offset after the batch".into(),
        };
        assert_eq!(
            error.to_string(),
            "corrupt record data in t/3 at offset 9223372036854775807 from broker 2: no offset after the batch"
        );
        let local = Error::CorruptRecord {
            partition: TopicPartition::new("t", 3),
            offset: None,
            broker: None,
            reason: "cannot encode batch".into(),
        };
        assert_eq!(
            local.to_string(),
            "corrupt record data in t/3: cannot encode batch"
        );
    }

    #[test]
    fn messages_are_lowercase_without_trailing_period() {
        let samples = [
            Error::config("acks", "must be all, 0, 1 or -1"),
            Error::broker(ErrorCode::NotLeaderOrFollower),
            Error::Closed,
            Error::RequestTimeout(Duration::from_millis(5)),
            Error::CorruptRecord {
                partition: TopicPartition::new("t", 0),
                offset: Some(i64::MAX),
                broker: Some(2),
                reason: "batch offsets overflow".into(),
            },
            Error::BrokerUnreachable {
                broker: 1,
                failing_for: Duration::from_secs(1),
                cause: Box::new(Error::RequestTimeout(Duration::from_secs(30))),
            },
            Error::AllBrokersDown {
                failing_for: Duration::from_secs(1),
                cause: Box::new(Error::RequestTimeout(Duration::from_secs(30))),
            },
        ];
        for e in samples {
            let text = e.to_string();
            assert!(!text.ends_with('.'), "{text}");
            assert!(
                text.chars().next().is_some_and(|c| !c.is_uppercase()),
                "{text}"
            );
        }
    }

    #[test]
    fn produce_error_is_an_error_with_the_record() {
        fn assert_bounds<T: Send + Sync + 'static + std::error::Error>() {}
        assert_bounds::<ProduceError>();
        let error = ProduceError::new(
            Error::Closed,
            Persisted::No,
            ProducerRecord::new("t").with_value("v"),
        );
        assert_eq!(error.to_string(), "cannot produce to t: client is closed");
        assert_eq!(error.record.value.as_deref(), Some(&b"v"[..]));
        assert!(std::error::Error::source(&error).is_some());
    }
}
