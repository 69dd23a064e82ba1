//! The idempotent consumer: a record whose id was processed before is skipped. The id is a
//! header (an outbox id, a message id) or comes from the key or any extractor; the store
//! remembers it only after the handler succeeded, so a failure leaves the record to be
//! processed again.

#[cfg(feature = "sqlite")]
pub mod sqlite;

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use franzy::ConsumerRecord;

use crate::stats::{Counter, Stats};
use crate::PatternError;

/// Where processed ids are remembered. Implement it over a database table for ids that
/// must survive restarts; [`InMemoryDedup`] is bounded and forgets the oldest.
pub trait DedupStore {
    /// Whether `id` was marked processed.
    fn contains(&mut self, id: &[u8]) -> Result<bool, PatternError>;
    /// Marks `id` processed.
    fn mark(&mut self, id: Bytes) -> Result<(), PatternError>;
}

/// The most recent ids in memory, at most `max_ids` of them and `max_bytes` of id bytes:
/// the oldest are forgotten first.
#[derive(Debug, Clone)]
pub struct InMemoryDedup {
    ids: HashSet<Bytes>,
    order: VecDeque<Bytes>,
    bytes: usize,
    max_ids: usize,
    max_bytes: usize,
}

impl InMemoryDedup {
    /// Remembers up to `max_ids` ids and `max_bytes` bytes of them (each at least 1).
    pub fn new(max_ids: usize, max_bytes: usize) -> Self {
        Self {
            ids: HashSet::new(),
            order: VecDeque::new(),
            bytes: 0,
            max_ids: max_ids.max(1),
            max_bytes: max_bytes.max(1),
        }
    }

    /// Ids remembered.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

impl DedupStore for InMemoryDedup {
    fn contains(&mut self, id: &[u8]) -> Result<bool, PatternError> {
        Ok(self.ids.contains(id))
    }

    fn mark(&mut self, id: Bytes) -> Result<(), PatternError> {
        if id.len() > self.max_bytes || !self.ids.insert(id.clone()) {
            return Ok(());
        }
        self.bytes += id.len();
        self.order.push_back(id);
        while self.order.len() > self.max_ids || self.bytes > self.max_bytes {
            if let Some(old) = self.order.pop_front() {
                self.bytes -= old.len();
                self.ids.remove(&old);
            }
        }
        Ok(())
    }
}

/// A function giving a record's id.
pub type IdExtractor = Arc<dyn Fn(&ConsumerRecord) -> Option<Bytes> + Send + Sync>;

/// How a record's id is found.
#[derive(Clone)]
pub enum IdSource {
    /// The last header of this name.
    Header(String),
    /// The record's key.
    Key,
    /// Any function of the record.
    Extractor(IdExtractor),
}

impl fmt::Debug for IdSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Header(name) => f.debug_tuple("Header").field(name).finish(),
            Self::Key => f.write_str("Key"),
            Self::Extractor(_) => f.write_str("Extractor(..)"),
        }
    }
}

impl IdSource {
    /// The id of `record`, if it has one.
    pub fn id(&self, record: &ConsumerRecord) -> Option<Bytes> {
        match self {
            Self::Header(name) => record.header(name).and_then(|h| h.value.clone()),
            Self::Key => record.key.clone(),
            Self::Extractor(extract) => extract(record),
        }
    }
}

/// What the idempotent consumer did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dedup {
    /// Processed, and its id marked.
    Processed,
    /// Processed although it has no id (nothing to deduplicate on).
    ProcessedWithoutId,
    /// Its id was seen: skipped.
    Duplicate,
}

/// A handler's failure or the store's.
#[derive(Debug)]
pub enum DedupError<E> {
    /// The handler failed: the id is not marked.
    Handler(E),
    /// The store failed.
    Store(PatternError),
}

impl<E: fmt::Display> fmt::Display for DedupError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Handler(e) => write!(f, "handler failed: {e}"),
            Self::Store(e) => write!(f, "dedup store failed: {e}"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for DedupError<E> {}

/// The idempotent consumer (see the module doc).
#[derive(Debug)]
pub struct IdempotentConsumer<S> {
    store: S,
    id: IdSource,
    stats: Stats,
}

impl<S: DedupStore> IdempotentConsumer<S> {
    /// Deduplicates on `id` with `store`.
    pub fn new(store: S, id: IdSource) -> Self {
        Self {
            store,
            id,
            stats: Stats::new("idempotent-consumer"),
        }
    }

    /// Its stats.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Runs `handler` on `record` unless its id was processed; marks the id after success.
    pub async fn process<F, Fut, E>(
        &mut self,
        record: &ConsumerRecord,
        handler: F,
    ) -> Result<Dedup, DedupError<E>>
    where
        F: FnOnce(&ConsumerRecord) -> Fut,
        Fut: Future<Output = Result<(), E>>,
    {
        let id = self.id.id(record);
        if let Some(id) = &id {
            if self.store.contains(id).map_err(DedupError::Store)? {
                self.stats.incr(Counter::DuplicatesSkipped);
                return Ok(Dedup::Duplicate);
            }
        }
        handler(record).await.map_err(DedupError::Handler)?;
        self.stats.incr(Counter::Processed);
        match id {
            Some(id) => {
                self.store.mark(id).map_err(DedupError::Store)?;
                Ok(Dedup::Processed)
            }
            None => Ok(Dedup::ProcessedWithoutId),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn duplicates_are_skipped_and_failures_are_not_marked() {
        let mut consumer = IdempotentConsumer::new(
            InMemoryDedup::new(100, 1 << 20),
            IdSource::Header("message-id".into()),
        );
        let record =
            |id: &str| ConsumerRecord::new("t", 0, 0).with_header("message-id", id.to_string());
        let mut handled = Vec::new();
        let failed = consumer
            .process(&record("a"), |_| async { Err::<(), _>("downstream down") })
            .await;
        assert!(matches!(
            failed,
            Err(DedupError::Handler("downstream down"))
        ));
        let mut outcomes = Vec::new();
        for id in ["a", "b", "a", "b", "c"] {
            let outcome = consumer
                .process(&record(id), |r| {
                    handled.push(r.header("message-id").and_then(|h| h.value.clone()));
                    async { Ok::<(), &str>(()) }
                })
                .await
                .expect("processed");
            outcomes.push(outcome);
        }
        use Dedup::*;
        assert_eq!(
            outcomes,
            [Processed, Processed, Duplicate, Duplicate, Processed]
        );
        assert_eq!(handled.len(), 3, "a, b, c once each");
        assert_eq!(consumer.stats().snapshot().duplicates_skipped, 2);
        let outcome = consumer
            .process(&ConsumerRecord::new("t", 0, 1), |_| async {
                Ok::<(), &str>(())
            })
            .await
            .expect("processed");
        assert_eq!(outcome, Dedup::ProcessedWithoutId);
    }

    #[test]
    fn the_in_memory_store_forgets_the_oldest_beyond_its_bounds() {
        let mut store = InMemoryDedup::new(3, 1 << 20);
        for id in ["1", "2", "3", "4"] {
            store.mark(Bytes::from(id)).expect("mark");
        }
        assert_eq!(store.len(), 3);
        assert!(!store.contains(b"1").expect("contains"));
        assert!(store.contains(b"4").expect("contains"));
        let mut by_bytes = InMemoryDedup::new(100, 10);
        for id in ["aaaa", "bbbb", "cccc"] {
            by_bytes.mark(Bytes::from(id)).expect("mark");
        }
        assert_eq!(by_bytes.len(), 2, "12 bytes > 10: the oldest goes");
        by_bytes
            .mark(Bytes::from(vec![0u8; 11]))
            .expect("an id too large is not kept");
        assert_eq!(by_bytes.len(), 2);
    }
}
