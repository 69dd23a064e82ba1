//! franzy-patterns: the resilience patterns of the Kafka training labs, as a library on the
//! franzy client. Small, composable, tested against the harness's fault injection.
//!
//! # The promise
//!
//! **No record is lost, and none is committed before it is safely somewhere.** A record's
//! offset is committed only after one of: its handler succeeded; its retry-topic copy was
//! acknowledged; its dead letter was acknowledged; or its dead letter was appended to the
//! fallback file and fsynced. When none of these holds, nothing is committed, its partition
//! is rewound to it, and the caller gets an error: the record will be read again. A process
//! killed at any point therefore re-reads (at least once) what it had not secured.
//! Permanent and configuration errors are never retried.
//!
//! # Module map
//!
//! | module | pattern | sans-IO core | tokio driver |
//! |---|---|---|---|
//! | [`retry`] | retry policies | [`RetrySchedule`] | [`RetryPolicy::run`] |
//! | [`classify`] | transient / permanent / configuration | [`Classify`], [`KafkaErrors`] | |
//! | [`dead_letter`] | dead-letter topic with error headers | [`DeadLetterRouter::dead_letter_record`] | [`DeadLetterRouter::send`] |
//! | [`fallback`] | local-file fallback, replay | [`fallback::read_entries`] | [`FallbackFile`] |
//! | [`retry_topic`] | retry topics with delays | [`RetryTopics`] | [`Processor`] |
//! | [`circuit_breaker`] | closed / open / half-open | [`CircuitBreaker`] | [`Processor`] |
//! | [`processor`] | the consumer loop tying them | | [`Processor`] |
//! | [`batch`] | batch producer, resilient send | | [`send_batch`], [`send_or_dead_letter`] |
//! | [`idempotent`] | idempotent consumer | [`InMemoryDedup`], `SqliteDedup` (feature `sqlite`) | [`IdempotentConsumer`] |
//! | [`outbox`] | transactional outbox relay | [`InMemoryOutbox`], `SqliteOutbox` (feature `sqlite`) | [`OutboxRelay`] |
//! | [`stats`] | counters, traces, metrics | [`Stats`] | |
//!
//! # Data flow of a consumed record
//!
//! ```text
//! Consumer ─► Processor::next ─► Processor::handle ─► handler (RetryPolicy, CircuitBreaker)
//!                                      │ failed for good
//!                                      ├─ transient ─► RetryTopics: orders.retry ─┐ (paused
//!                                      │                 until due, then again) ◄─┘
//!                                      └─ otherwise ─► DeadLetterRouter ─► orders.DLT
//!                                                           └─ refused ─► FallbackFile (fsync)
//!                                                                           └─ replay ─► orders.DLT
//!                              commit ◄── only after one of the above was acknowledged
//! ```
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use franzy::{Config, Consumer, Producer};
//! use franzy_patterns::{DeadLetterRouter, ErrorClass, FallbackFile, Processor, RetryPolicy, RetryTopics};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::new("localhost:9092").group_id("orders-app").enable_auto_commit(false);
//! let (consumer, producer) = (Consumer::new(config.clone())?, Producer::new(config)?);
//! let topics = RetryTopics::new("orders").delays(&[Duration::from_secs(30)]);
//! consumer.subscribe(topics.topics())?;
//! let router = DeadLetterRouter::new().fallback(FallbackFile::new("/var/lib/app/orders.DLT.fallback"));
//! let classify = |e: &String| if e.contains("invalid") { ErrorClass::Permanent } else { ErrorClass::Transient };
//! let mut processor = Processor::new(RetryPolicy::exponential(Duration::from_millis(100)).full_jitter(), classify, router)
//!     .retry_topics(topics);
//! // orders -> (4 attempts) -> orders.retry (30 s later) -> orders.DLT (or the fallback file);
//! // each offset committed once the record is handled or safely elsewhere.
//! processor
//!     .run(&consumer, &producer, |record| {
//!         let ok = record.value.is_some();
//!         async move { if ok { Ok(()) } else { Err("invalid: empty order".to_string()) } }
//!     }, |_| false)
//!     .await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Features
//!
//! - `sqlite` (off by default): `SqliteOutbox`, an [`OutboxSource`] over a table of a SQLite
//!   database (`outbox::sqlite`); `SqliteDedup`, a [`DedupStore`] whose processed ids
//!   survive restarts (`idempotent::sqlite`); and a re-export of `rusqlite` for the
//!   application's own transactions. It builds SQLite's bundled C source, which the default build never does.
//!   `cargo test -p franzy-patterns --features sqlite` runs its tests.
//!
//! State machines take time as an argument and draw randomness from a seeded generator;
//! the drivers read tokio's clock, so that tests run under a paused clock.

pub mod batch;
pub mod circuit_breaker;
pub mod classify;
pub mod dead_letter;
pub mod fallback;
pub mod idempotent;
pub mod outbox;
pub mod processor;
pub mod retry;
pub mod retry_topic;
pub mod rng;
pub mod stats;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use batch::{send_batch, send_or_dead_letter, BatchReport, Delivered};
pub use circuit_breaker::{BreakerConfig, BreakerEvent, BreakerState, CircuitBreaker, Threshold};
pub use classify::{classify_kafka, Classify, ErrorClass, KafkaErrors};
pub use dead_letter::{
    DeadLetterRouter, DeadLetterTopic, Failure, HeaderNames, NumberEncoding, Routed,
};
pub use fallback::{replay, FallbackFile, ReplayReport};
#[cfg(feature = "sqlite")]
pub use idempotent::sqlite::SqliteDedup;
pub use idempotent::{Dedup, DedupError, DedupStore, IdSource, IdempotentConsumer, InMemoryDedup};
#[cfg(feature = "sqlite")]
pub use outbox::sqlite::SqliteOutbox;
pub use outbox::{classify_relay_error, InMemoryOutbox, OutboxRelay, OutboxRow, OutboxSource};
pub use processor::{Outcome, Processor, WallClock, WhenOpen};
pub use retry::{Backoff, GiveUp, Jitter, Next, RetryError, RetryPolicy, RetrySchedule};
pub use retry_topic::{RetryStage, RetryTopics};
pub use rng::SeededRng;
/// The SQLite bindings [`SqliteOutbox`] is built on (feature `sqlite`), for the
/// application's own connection and transactions.
#[cfg(feature = "sqlite")]
pub use rusqlite;
pub use stats::{Counter, Stats, StatsSnapshot};

/// Errors of the patterns.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PatternError {
    /// The client failed (a dead letter refused with no fallback file, a commit refused).
    #[error("kafka error")]
    Kafka(#[source] franzy::Error),
    /// The fallback file could not be written or read.
    #[error("fallback file {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// A setting of a pattern is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The handler failed with a configuration error: fix the configuration (nothing was
    /// committed).
    #[error("configuration error in the handler: {0}")]
    Configuration(String),
    /// The outbox source failed: its database refused a statement, or a row did not decode.
    #[error("outbox source")]
    Outbox(#[source] Arc<dyn std::error::Error + Send + Sync>),
}

/// A record for `topic` with these key, value and headers.
fn producer_record(
    topic: impl Into<Arc<str>>,
    key: Option<bytes::Bytes>,
    value: Option<bytes::Bytes>,
    headers: Vec<franzy::Header>,
) -> franzy::ProducerRecord {
    let mut record = franzy::ProducerRecord::new(topic);
    record.key = key;
    record.value = value;
    record.headers = headers;
    record
}

impl PatternError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source: Arc::new(source),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_error_is_send_sync_static() {
        fn check<T: Send + Sync + 'static + std::error::Error>() {}
        check::<super::PatternError>();
    }
}
