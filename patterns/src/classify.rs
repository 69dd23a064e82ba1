//! Error classification: transient, permanent or configuration, as the labs sort errors.
//!
//! franzy's [`franzy::Error`] already says retriable, abortable or fatal; [`Classify`] is
//! the hook through which an application sorts its own processing errors the same way.
//! Every pattern of this crate asks its classifier before retrying: a permanent or a
//! configuration error is never retried.

use franzy::proto::ErrorCode;
use franzy::{Error, ProduceError};

/// What kind of failure an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Trying again may succeed (a broker down, a leader moving, a downstream timeout).
    Transient,
    /// Trying again fails the same way (a record too large, a topic that does not exist, a
    /// payload that does not parse): route it to the dead-letter topic.
    Permanent,
    /// The application is misconfigured (credentials, authorizations, serializers): neither
    /// retrying nor dead-lettering helps; fix the configuration.
    Configuration,
}

impl ErrorClass {
    /// Only transient errors are retried.
    pub fn is_retriable(self) -> bool {
        self == Self::Transient
    }

    /// The lowercase name written into headers and traces: `transient`, `permanent`,
    /// `configuration`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transient => "transient",
            Self::Permanent => "permanent",
            Self::Configuration => "configuration",
        }
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Sorts errors of type `E` into [`ErrorClass`]es. Any `Fn(&E) -> ErrorClass` is one.
pub trait Classify<E: ?Sized> {
    /// The class of `error`.
    fn classify(&self, error: &E) -> ErrorClass;
}

impl<E: ?Sized, F: Fn(&E) -> ErrorClass> Classify<E> for F {
    fn classify(&self, error: &E) -> ErrorClass {
        self(error)
    }
}

/// The classifier of franzy's own errors, following the labs' table: broker outages,
/// leader changes and timeouts are transient; authentication, authorization and invalid
/// settings are configuration errors; everything else (a record too large, a topic that
/// does not exist, a corrupt record) is permanent.
#[derive(Debug, Clone, Copy, Default)]
pub struct KafkaErrors;

impl Classify<Error> for KafkaErrors {
    fn classify(&self, error: &Error) -> ErrorClass {
        classify_kafka(error)
    }
}

impl Classify<ProduceError> for KafkaErrors {
    fn classify(&self, error: &ProduceError) -> ErrorClass {
        classify_kafka(&error.error)
    }
}

/// [`KafkaErrors`] as a function.
pub fn classify_kafka(error: &Error) -> ErrorClass {
    if let Some(code) = error.code() {
        if is_configuration_code(code) {
            return ErrorClass::Configuration;
        }
        // Kafka calls it retriable (metadata may lag a topic's creation), but a producer
        // that waited its whole delivery timeout for the topic will not see it appear: the
        // labs send it to the dead-letter topic.
        if code == ErrorCode::UnknownTopicOrPartition {
            return ErrorClass::Permanent;
        }
    }
    match error {
        Error::Config { .. }
        | Error::Authentication { .. }
        | Error::InvalidArgument(_)
        | Error::UnsupportedVersion { .. } => ErrorClass::Configuration,
        Error::UnknownPartition { .. } => ErrorClass::Permanent,
        // The producer retried until its delivery timeout: a broker was down that long. The
        // next attempt may find it back.
        Error::DeliveryTimeout(_) => ErrorClass::Transient,
        Error::Fatal(cause) if matches!(**cause, Error::Authentication { .. }) => {
            ErrorClass::Configuration
        }
        _ if error.is_retriable() => ErrorClass::Transient,
        _ => ErrorClass::Permanent,
    }
}

fn is_configuration_code(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::TopicAuthorizationFailed
            | ErrorCode::GroupAuthorizationFailed
            | ErrorCode::ClusterAuthorizationFailed
            | ErrorCode::TransactionalIdAuthorizationFailed
            | ErrorCode::SaslAuthenticationFailed
            | ErrorCode::UnsupportedSaslMechanism
            | ErrorCode::IllegalSaslState
            | ErrorCode::UnsupportedVersion
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use franzy::TopicPartition;
    use std::time::Duration;

    #[test]
    fn kafka_errors_follow_the_labs_table() {
        let tp = TopicPartition::new("orders", 0);
        let partition = |code| Error::Partition {
            partition: tp.clone(),
            code,
            message: None,
        };
        for (error, class) in [
            (
                partition(ErrorCode::NotLeaderOrFollower),
                ErrorClass::Transient,
            ),
            (
                partition(ErrorCode::NotEnoughReplicas),
                ErrorClass::Transient,
            ),
            (
                Error::RequestTimeout(Duration::from_secs(1)),
                ErrorClass::Transient,
            ),
            (
                Error::DeliveryTimeout(Duration::from_secs(1)),
                ErrorClass::Transient,
            ),
            (partition(ErrorCode::MessageTooLarge), ErrorClass::Permanent),
            (
                partition(ErrorCode::UnknownTopicOrPartition),
                ErrorClass::Permanent,
            ),
            (Error::TooLarge { size: 10, max: 1 }, ErrorClass::Permanent),
            (
                partition(ErrorCode::TopicAuthorizationFailed),
                ErrorClass::Configuration,
            ),
            (Error::config("acks", "bad"), ErrorClass::Configuration),
        ] {
            assert_eq!(classify_kafka(&error), class, "{error}");
            assert_eq!(KafkaErrors.classify(&error), class);
        }
    }

    #[test]
    fn closures_classify_and_only_transient_is_retriable() {
        let by_text = |e: &str| {
            if e.starts_with("timeout") {
                ErrorClass::Transient
            } else {
                ErrorClass::Permanent
            }
        };
        assert_eq!(by_text.classify("timeout calling"), ErrorClass::Transient);
        assert_eq!(by_text.classify("bad json"), ErrorClass::Permanent);
        assert!(ErrorClass::Transient.is_retriable());
        assert!(!ErrorClass::Permanent.is_retriable());
        assert!(!ErrorClass::Configuration.is_retriable());
        assert_eq!(ErrorClass::Configuration.to_string(), "configuration");
    }
}
