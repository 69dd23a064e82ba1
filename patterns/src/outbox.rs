//! The outbox relay: rows an application wrote to an outbox table (in the same database
//! transaction as its business change) are produced to Kafka in a Kafka transaction, and
//! marked sent only after that transaction committed.
//!
//! # The guarantee: at least once, each copy carrying its row id
//!
//! A crash after the commit and before the mark sends the rows again on the next relay
//! (at least once); every record carries its row id in the `outbox-id` header, so that an
//! [`crate::IdempotentConsumer`] keyed on it processes each row once. A transaction that
//! fails, or whose relay dies before the commit, is aborted (by the relay, or by the
//! coordinator once the restarted relay's producer initialises with the same
//! `transactional.id`): `read_committed` readers never see its records, and the rows stay
//! pending. So under `read_committed` a row is never lost, and appears twice only when its
//! relay died (or its mark failed) between Kafka's commit and the source's mark; the tests
//! kill the relay at each step of a batch (`patterns/tests/crash.rs`, and
//! `sqlite_outbox.rs` with the SQLite source).
//!
//! # Order
//!
//! Rows are produced in the order [`OutboxSource::pending`] gives them (oldest first), in
//! one transaction per batch, the next batch only after the last one was marked; records
//! with the same key go to the same partition. A consumer therefore reads one aggregate's
//! rows (one key) in order, with at most a repeated batch after a crash.
//!
//! # Sources
//!
//! [`OutboxSource`] is the seam to the application's database: [`InMemoryOutbox`] for
//! tests and examples, and with the `sqlite` feature (off by default: it builds SQLite's
//! C source) `sqlite::SqliteOutbox`, a table of a SQLite database with claims, so that
//! several relays can share it.

#[cfg(feature = "sqlite")]
pub mod sqlite;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use franzy::{Header, Producer};

use crate::classify::{classify_kafka, ErrorClass};
use crate::retry::{RetryError, RetryPolicy};
use crate::stats::{Counter, Stats};
use crate::PatternError;

/// How [`OutboxRelay::run`] classes a failed round: the client's errors as
/// [`classify_kafka`] does (fenced and other fatal errors are permanent), the source's
/// (its database) and the fallback file's transient, invalid settings configuration.
pub fn classify_relay_error(error: &PatternError) -> ErrorClass {
    match error {
        PatternError::Kafka(error) => classify_kafka(error),
        PatternError::Outbox(_) | PatternError::Io { .. } => ErrorClass::Transient,
        PatternError::Config(_) | PatternError::Configuration(_) => ErrorClass::Configuration,
    }
}

/// One row of the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    /// Its id, unique in the outbox.
    pub id: u64,
    /// The topic to produce to.
    pub topic: String,
    /// The key.
    pub key: Option<Bytes>,
    /// The value.
    pub value: Option<Bytes>,
    /// Headers.
    pub headers: Vec<Header>,
}

/// Where the relay reads rows from: implement it over the application's database.
pub trait OutboxSource {
    /// Up to `limit` rows not marked sent, oldest first. A source several relays share
    /// claims the rows it returns (as `sqlite::SqliteOutbox` does).
    fn pending(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<OutboxRow>, PatternError>> + Send;
    /// Marks these rows sent, all or (on an error) none; rows already marked stay marked.
    fn mark_sent(&self, ids: &[u64]) -> impl Future<Output = Result<(), PatternError>> + Send;
}

/// The last id given, and every row with whether it was sent.
type Rows = (u64, BTreeMap<u64, (OutboxRow, bool)>);

/// An outbox in memory (tests, examples).
#[derive(Debug, Default)]
pub struct InMemoryOutbox {
    rows: Mutex<Rows>,
}

impl InMemoryOutbox {
    /// An empty outbox.
    pub fn new() -> Self {
        Self::default()
    }

    fn rows(&self) -> std::sync::MutexGuard<'_, Rows> {
        // A panic while holding the lock cannot leave the map half-changed: take it anyway.
        self.rows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds a row for `topic`; its id.
    pub fn insert(
        &self,
        topic: impl Into<String>,
        key: Option<Bytes>,
        value: Option<Bytes>,
    ) -> u64 {
        let mut rows = self.rows();
        rows.0 += 1;
        let id = rows.0;
        let row = OutboxRow {
            id,
            topic: topic.into(),
            key,
            value,
            headers: Vec::new(),
        };
        rows.1.insert(id, (row, false));
        id
    }

    /// Rows not marked sent.
    pub fn unsent(&self) -> usize {
        self.rows().1.values().filter(|(_, sent)| !sent).count()
    }
}

impl OutboxSource for InMemoryOutbox {
    fn pending(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<OutboxRow>, PatternError>> + Send {
        let rows = self
            .rows()
            .1
            .values()
            .filter(|(_, sent)| !sent)
            .take(limit)
            .map(|(row, _)| row.clone())
            .collect();
        std::future::ready(Ok(rows))
    }

    fn mark_sent(&self, ids: &[u64]) -> impl Future<Output = Result<(), PatternError>> + Send {
        let mut rows = self.rows();
        for id in ids {
            if let Some((_, sent)) = rows.1.get_mut(id) {
                *sent = true;
            }
        }
        std::future::ready(Ok(()))
    }
}

/// The relay (see the module doc). Its producer must be transactional and initialised.
#[derive(Debug, Clone)]
pub struct OutboxRelay {
    batch: usize,
    stats: Stats,
}

impl Default for OutboxRelay {
    fn default() -> Self {
        Self::new()
    }
}

impl OutboxRelay {
    /// Relays up to 500 rows per transaction.
    pub fn new() -> Self {
        Self {
            batch: 500,
            stats: Stats::new("outbox"),
        }
    }

    /// Rows per transaction (at least 1).
    pub fn batch(mut self, rows: usize) -> Self {
        self.batch = rows.max(1);
        self
    }

    /// Its stats.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Produces one batch of pending rows in one transaction and marks them sent after the
    /// commit; the number relayed (0 when nothing is pending). On a failure the transaction
    /// is aborted (if the producer can) and the rows stay pending.
    pub async fn relay_once(
        &self,
        producer: &Producer,
        source: &impl OutboxSource,
    ) -> Result<usize, PatternError> {
        let rows = source.pending(self.batch).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        producer
            .begin_transaction()
            .await
            .map_err(PatternError::Kafka)?;
        let sent = async {
            let mut deliveries = Vec::with_capacity(rows.len());
            for row in &rows {
                let mut headers = row.headers.clone();
                headers.push(Header::new("outbox-id", row.id.to_string()));
                let record = crate::producer_record(
                    row.topic.clone(),
                    row.key.clone(),
                    row.value.clone(),
                    headers,
                );
                deliveries.push(producer.send(record).await.map_err(|e| e.error)?);
            }
            for delivery in deliveries {
                delivery.await.map_err(|e| e.error)?;
            }
            producer.commit_transaction().await
        }
        .await;
        if let Err(error) = sent {
            if !error.is_fatal() {
                let _ = producer.abort_transaction().await;
            }
            return Err(PatternError::Kafka(error));
        }
        let ids: Vec<u64> = rows.iter().map(|r| r.id).collect();
        source.mark_sent(&ids).await?;
        self.stats.add(Counter::OutboxRelayed, ids.len() as u64);
        Ok(ids.len())
    }

    /// Relays for as long as it runs, as the labs' background `OutboxProcessor` does:
    /// everything pending, then again every `poll_interval`. A failed round (its
    /// transaction aborted, its rows still pending) is tried again under `retry`, with
    /// errors classed by [`classify_relay_error`]: transient ones (a broker or the database
    /// briefly unavailable, a mark that failed after its commit) are retried after the
    /// policy's delays; the run returns the error when the policy gives up, and at once
    /// on any other error (fenced by a newer relay with the same `transactional.id`, a
    /// record the cluster refuses). Each success starts the policy afresh.
    ///
    /// Dropping the future stops the relay wherever it is, as a crash would: rows not
    /// marked are sent again by the next relay (see the module doc). A transaction the drop
    /// left open is aborted when the next relay's producer initialises; close this producer
    /// rather than using it for another transaction.
    pub async fn run(
        &self,
        producer: &Producer,
        source: &impl OutboxSource,
        poll_interval: Duration,
        retry: &RetryPolicy,
    ) -> Result<(), RetryError<PatternError>> {
        loop {
            let relayed = retry
                .run(&classify_relay_error, |_| self.relay_all(producer, source))
                .await?;
            if relayed > 0 {
                tracing::debug!(relayed, "outbox rows relayed");
            }
            tokio::time::sleep(poll_interval).await;
        }
    }

    /// Relays until nothing is pending; the rows relayed.
    pub async fn relay_all(
        &self,
        producer: &Producer,
        source: &impl OutboxSource,
    ) -> Result<usize, PatternError> {
        let mut total = 0;
        loop {
            let n = self.relay_once(producer, source).await?;
            if n == 0 {
                return Ok(total);
            }
            total += n;
        }
    }
}
