//! Committed offsets: per group and partition, the offset, leader epoch, metadata string
//! and commit time a consumer (or a transaction) committed, as Kafka's
//! `OffsetMetadataManager` keeps them (replayed from `__consumer_offsets`; here the store is
//! the state itself, so offsets survive coordinator moves and broker restarts).
//!
//! # API
//!
//! Plain commits (OffsetCommit) and reads (OffsetFetch), by the group coordinator:
//! - [`OffsetStore::commit`]: stores a partition's offset, or refuses it with
//!   OFFSET_METADATA_TOO_LARGE (metadata past `offset.metadata.max.bytes`, counted in UTF-16
//!   units as Java's `String.length()`) or INVALID_COMMIT_OFFSET_SIZE (past a cap, below);
//! - [`OffsetStore::fetch`] / [`OffsetStore::fetch_all`]: what is committed. With
//!   `require_stable` (OffsetFetch v7+, KIP-447), a partition with transactional offsets
//!   pending is answered UNSTABLE_OFFSET_COMMIT instead, as Kafka does;
//! - [`OffsetStore::delete`] (OffsetDelete) and [`OffsetStore::delete_group`]
//!   (DeleteGroups) drop committed and pending offsets alike (Kafka's tombstone removes the
//!   pending ones too).
//!
//! Transactional offsets (TxnOffsetCommit, EndTxn), by the transaction coordinator:
//! - [`OffsetStore::stage_transactional`]`(group, producer_id, producer_epoch, offsets)`:
//!   the offsets wait, invisible to OffsetFetch, under the producer id (one result per
//!   partition, with the same checks as a commit);
//! - [`OffsetStore::complete_transaction`]`(producer_id, commit)`: the transaction's marker.
//!   Commit makes every offset the producer staged visible, in every group, unless the
//!   partition was committed again after it was staged (Kafka keeps the latest record of
//!   the log, `replayEndTransactionMarker`); abort drops them. Returns the groups touched.
//! - [`OffsetStore::has_pending`] tells whether a partition has pending offsets.
//!
//! The generation checks of a TxnOffsetCommit (KIP-447) are the group coordinator's, not
//! the store's.
//!
//! # Bounds
//!
//! Kafka has none but the log; here every entry (committed or pending) is counted
//! ([`OffsetLimits`]): at most [`DEFAULT_MAX_OFFSETS_PER_GROUP`] partitions per group and
//! [`DEFAULT_MAX_OFFSET_BYTES`] for the whole store (each entry charged
//! [`ENTRY_OVERHEAD`] plus its topic name and metadata). A commit that would go past either
//! is refused for that partition with INVALID_COMMIT_OFFSET_SIZE, which is what Kafka
//! answers when an offset commit does not fit its log; an existing entry can always be
//! replaced by one no larger. Offsets never expire (`offsets.retention.minutes` is not
//! modelled).
//!
//! Costs: every operation is logarithmic in the store, except those that name many entries
//! (fetch all, delete a group, complete a transaction), which are linear in those entries.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use franzy::proto::ErrorCode;

/// Kafka's default `offset.metadata.max.bytes`.
pub const DEFAULT_OFFSET_METADATA_MAX_BYTES: usize = 4096;
/// Default of [`OffsetLimits::per_group`]: 100,000 partitions.
pub const DEFAULT_MAX_OFFSETS_PER_GROUP: usize = 100_000;
/// Default of [`OffsetLimits::bytes`]: 256 MiB.
pub const DEFAULT_MAX_OFFSET_BYTES: usize = 256 * 1024 * 1024;
/// What an entry costs besides its topic name and metadata.
pub const ENTRY_OVERHEAD: usize = 96;

/// Bounds of an [`OffsetStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetLimits {
    /// Longest metadata string, in UTF-16 units (`offset.metadata.max.bytes`). Default 4096.
    pub metadata_max_bytes: usize,
    /// Most partitions with an offset (committed or pending) per group. Default
    /// [`DEFAULT_MAX_OFFSETS_PER_GROUP`].
    pub per_group: usize,
    /// Most bytes of all entries together. Default [`DEFAULT_MAX_OFFSET_BYTES`].
    pub bytes: usize,
}

impl Default for OffsetLimits {
    fn default() -> Self {
        Self {
            metadata_max_bytes: DEFAULT_OFFSET_METADATA_MAX_BYTES,
            per_group: DEFAULT_MAX_OFFSETS_PER_GROUP,
            bytes: DEFAULT_MAX_OFFSET_BYTES,
        }
    }
}

/// A committed offset, as OffsetFetch returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetAndMetadata {
    /// The offset.
    pub offset: i64,
    /// The leader epoch of the record before it, or -1.
    pub leader_epoch: i32,
    /// The committer's metadata string.
    pub metadata: Arc<str>,
    /// When it was committed (wall-clock milliseconds).
    pub commit_timestamp_ms: i64,
    /// When it would expire, for OffsetCommit v1's per-partition timestamp or v2-4's
    /// retention time; kept, never acted on.
    pub expire_timestamp_ms: Option<i64>,
}

impl OffsetAndMetadata {
    /// An offset with no leader epoch, no metadata and no expiry, committed at `now_ms`.
    pub fn new(offset: i64, now_ms: i64) -> Self {
        Self {
            offset,
            leader_epoch: -1,
            metadata: Arc::from(""),
            commit_timestamp_ms: now_ms,
            expire_timestamp_ms: None,
        }
    }
}

/// An entry and the position of its record in the (imagined) log, which decides between a
/// transactional offset and a plain commit of the same partition.
#[derive(Debug, Clone)]
struct Stored {
    value: OffsetAndMetadata,
    record: u64,
}

impl Stored {
    fn bytes(&self, topic: &str) -> usize {
        ENTRY_OVERHEAD
            .saturating_add(topic.len())
            .saturating_add(self.value.metadata.len())
    }
}

/// Partitions' entries, by topic and partition.
type Entries = BTreeMap<Arc<str>, BTreeMap<i32, Stored>>;

/// One producer's staged offsets, by group.
#[derive(Debug, Default)]
struct PendingTransaction {
    producer_epoch: i16,
    groups: BTreeMap<Arc<str>, Entries>,
}

/// Counts of what the store holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OffsetStats {
    /// Committed entries.
    pub committed: usize,
    /// Pending (transactional) entries.
    pub pending: usize,
    /// Bytes of all entries, as counted against [`OffsetLimits::bytes`].
    pub bytes: usize,
    /// Producers with pending offsets.
    pub open_transactions: usize,
}

/// Every group's committed offsets and the transactional offsets waiting for their
/// transaction's end. See the module doc.
#[derive(Debug, Default)]
pub struct OffsetStore {
    limits: OffsetLimits,
    committed: HashMap<Arc<str>, Entries>,
    pending: HashMap<i64, PendingTransaction>,
    /// Producers with pending offsets in each group.
    open_by_group: HashMap<Arc<str>, BTreeSet<i64>>,
    /// Entries (committed and pending) per group, for [`OffsetLimits::per_group`].
    per_group: HashMap<Arc<str>, usize>,
    next_record: u64,
    stats: OffsetStats,
}

/// An offset to store, of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionOffset {
    /// The topic.
    pub topic: Arc<str>,
    /// The partition.
    pub partition: i32,
    /// What to store.
    pub offset: OffsetAndMetadata,
}

impl OffsetStore {
    /// An empty store bounded by `limits`.
    pub fn new(limits: OffsetLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// The bounds.
    pub fn limits(&self) -> OffsetLimits {
        self.limits
    }

    /// What the store holds.
    pub fn stats(&self) -> OffsetStats {
        self.stats
    }

    /// Whether `metadata` is longer than `offset.metadata.max.bytes` (in UTF-16 units, as
    /// Java's `String.length()`).
    pub fn metadata_too_large(&self, metadata: &str) -> bool {
        // Cheap bounds first: UTF-16 units are between a third of the bytes and the bytes.
        if metadata.len() <= self.limits.metadata_max_bytes {
            return false;
        }
        if metadata.len() / 3 > self.limits.metadata_max_bytes {
            return true;
        }
        metadata.encode_utf16().count() > self.limits.metadata_max_bytes
    }

    /// Commits `offset` for `group`'s `topic`/`partition`, replacing what was committed.
    /// OFFSET_METADATA_TOO_LARGE or INVALID_COMMIT_OFFSET_SIZE (see the module doc).
    pub fn commit(
        &mut self,
        group: &str,
        topic: &str,
        partition: i32,
        offset: OffsetAndMetadata,
    ) -> Result<(), ErrorCode> {
        if self.metadata_too_large(&offset.metadata) {
            return Err(ErrorCode::OffsetMetadataTooLarge);
        }
        let existing = self
            .committed
            .get(group)
            .and_then(|topics| topics.get(topic))
            .and_then(|partitions| partitions.get(&partition))
            .map(|stored| stored.bytes(topic));
        let record = self.next_record();
        let stored = Stored {
            value: offset,
            record,
        };
        self.reserve(group, existing, stored.bytes(topic))?;
        let group = self.intern_group(group);
        let topics = self.committed.entry(group).or_default();
        let topic = intern_topic(topics, topic);
        if topics
            .entry(topic)
            .or_default()
            .insert(partition, stored)
            .is_none()
        {
            self.stats.committed += 1;
        }
        Ok(())
    }

    /// What `group` committed for `topic`/`partition`. With `require_stable`,
    /// UNSTABLE_OFFSET_COMMIT while a transaction has offsets pending for it.
    pub fn fetch(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
        require_stable: bool,
    ) -> Result<Option<&OffsetAndMetadata>, ErrorCode> {
        if require_stable && self.has_pending(group, topic, partition) {
            return Err(ErrorCode::UnstableOffsetCommit);
        }
        Ok(self
            .committed
            .get(group)
            .and_then(|topics| topics.get(topic))
            .and_then(|partitions| partitions.get(&partition))
            .map(|stored| &stored.value))
    }

    /// Every partition `group` committed, by topic and partition. With `require_stable`,
    /// the ones with pending transactional offsets are UNSTABLE_OFFSET_COMMIT.
    #[allow(clippy::type_complexity)]
    pub fn fetch_all(
        &self,
        group: &str,
        require_stable: bool,
    ) -> Vec<(Arc<str>, Vec<(i32, Result<&OffsetAndMetadata, ErrorCode>)>)> {
        let Some(topics) = self.committed.get(group) else {
            return Vec::new();
        };
        let pending = require_stable && self.open_by_group.contains_key(group);
        topics
            .iter()
            .map(|(topic, partitions)| {
                let partitions = partitions
                    .iter()
                    .map(|(&partition, stored)| {
                        if pending && self.has_pending(group, topic, partition) {
                            (partition, Err(ErrorCode::UnstableOffsetCommit))
                        } else {
                            (partition, Ok(&stored.value))
                        }
                    })
                    .collect();
                (topic.clone(), partitions)
            })
            .collect()
    }

    /// Whether `group` has any offset, committed or pending.
    pub fn has_offsets(&self, group: &str) -> bool {
        self.per_group.get(group).is_some_and(|&n| n > 0)
    }

    /// The topics `group` has committed offsets for.
    pub fn committed_topics(&self, group: &str) -> impl Iterator<Item = &Arc<str>> {
        self.committed.get(group).into_iter().flat_map(|t| t.keys())
    }

    /// Whether a transaction has offsets pending for `group`'s `topic`/`partition`.
    /// Linear in the transactions open on the group.
    pub fn has_pending(&self, group: &str, topic: &str, partition: i32) -> bool {
        let Some(producers) = self.open_by_group.get(group) else {
            return false;
        };
        producers.iter().any(|producer| {
            self.pending
                .get(producer)
                .and_then(|txn| txn.groups.get(group))
                .and_then(|topics| topics.get(topic))
                .is_some_and(|partitions| partitions.contains_key(&partition))
        })
    }

    /// Whether any transaction has offsets pending for `group`.
    pub fn has_open_transactions(&self, group: &str) -> bool {
        self.open_by_group.contains_key(group)
    }

    /// The producer epoch `producer_id` staged its pending offsets with, if it has any.
    pub fn pending_producer_epoch(&self, producer_id: i64) -> Option<i16> {
        self.pending.get(&producer_id).map(|txn| txn.producer_epoch)
    }

    /// Deletes `group`'s offset of `topic`/`partition`, committed and pending (Kafka's
    /// tombstone). Whether there was any.
    pub fn delete(&mut self, group: &str, topic: &str, partition: i32) -> bool {
        // Bytes of the entries removed, given back at the end.
        let mut freed = Vec::new();
        if let Some(topics) = self.committed.get_mut(group) {
            if let Some(partitions) = topics.get_mut(topic) {
                if let Some(stored) = partitions.remove(&partition) {
                    freed.push(stored.bytes(topic));
                    self.stats.committed -= 1;
                    if partitions.is_empty() {
                        topics.remove(topic);
                    }
                }
            }
            if topics.is_empty() {
                self.committed.remove(group);
            }
        }
        if let Some(producers) = self.open_by_group.get(group) {
            for producer in producers {
                let Some(partitions) = self
                    .pending
                    .get_mut(producer)
                    .and_then(|txn| txn.groups.get_mut(group))
                    .and_then(|topics| topics.get_mut(topic))
                else {
                    continue;
                };
                // The producer stays open on the group until its marker, as in Kafka.
                if let Some(stored) = partitions.remove(&partition) {
                    freed.push(stored.bytes(topic));
                    self.stats.pending -= 1;
                }
            }
        }
        let removed = !freed.is_empty();
        for bytes in freed {
            self.release(group, bytes);
        }
        removed
    }

    /// Deletes every offset of `group`, committed and pending. How many there were.
    pub fn delete_group(&mut self, group: &str) -> usize {
        let mut removed = 0;
        if let Some(topics) = self.committed.remove(group) {
            for (topic, partitions) in topics {
                for stored in partitions.values() {
                    self.stats.committed -= 1;
                    self.stats.bytes = self.stats.bytes.saturating_sub(stored.bytes(&topic));
                    removed += 1;
                }
            }
        }
        if let Some(producers) = self.open_by_group.remove(group) {
            for producer in producers {
                let Some(txn) = self.pending.get_mut(&producer) else {
                    continue;
                };
                if let Some(topics) = txn.groups.remove(group) {
                    for (topic, partitions) in topics {
                        for stored in partitions.values() {
                            self.stats.pending -= 1;
                            self.stats.bytes =
                                self.stats.bytes.saturating_sub(stored.bytes(&topic));
                            removed += 1;
                        }
                    }
                }
                if txn.groups.is_empty() {
                    self.pending.remove(&producer);
                    self.stats.open_transactions -= 1;
                }
            }
        }
        self.per_group.remove(group);
        removed
    }

    /// Stages offsets `producer_id` (at `producer_epoch`) commits for `group` in its
    /// transaction (TxnOffsetCommit): invisible to [`OffsetStore::fetch`] until
    /// [`OffsetStore::complete_transaction`] commits them. One result per offset, in order,
    /// with the checks of [`OffsetStore::commit`]; a partition staged again in the same
    /// transaction is replaced.
    pub fn stage_transactional(
        &mut self,
        group: &str,
        producer_id: i64,
        producer_epoch: i16,
        offsets: impl IntoIterator<Item = PartitionOffset>,
    ) -> Vec<Result<(), ErrorCode>> {
        let mut results = Vec::new();
        for PartitionOffset {
            topic,
            partition,
            offset,
        } in offsets
        {
            if self.metadata_too_large(&offset.metadata) {
                results.push(Err(ErrorCode::OffsetMetadataTooLarge));
                continue;
            }
            let existing = self
                .pending
                .get(&producer_id)
                .and_then(|txn| txn.groups.get(group))
                .and_then(|topics| topics.get(&topic))
                .and_then(|partitions| partitions.get(&partition))
                .map(|stored| stored.bytes(&topic));
            let record = self.next_record();
            let stored = Stored {
                value: offset,
                record,
            };
            if let Err(code) = self.reserve(group, existing, stored.bytes(&topic)) {
                results.push(Err(code));
                continue;
            }
            let group = self.intern_group(group);
            let txn = match self.pending.entry(producer_id) {
                std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
                std::collections::hash_map::Entry::Vacant(slot) => {
                    self.stats.open_transactions += 1;
                    slot.insert(PendingTransaction::default())
                }
            };
            txn.producer_epoch = producer_epoch;
            let topics = txn.groups.entry(group.clone()).or_default();
            let topic = intern_topic(topics, &topic);
            if topics
                .entry(topic)
                .or_default()
                .insert(partition, stored)
                .is_none()
            {
                self.stats.pending += 1;
            }
            self.open_by_group
                .entry(group)
                .or_default()
                .insert(producer_id);
            results.push(Ok(()));
        }
        results
    }

    /// The end of `producer_id`'s transaction (its marker in `__consumer_offsets`): with
    /// `commit`, each offset it staged becomes the committed offset of its partition unless
    /// the partition was committed again after it was staged; otherwise they are dropped.
    /// Returns the groups it had offsets in (none when it had no offsets pending).
    pub fn complete_transaction(&mut self, producer_id: i64, commit: bool) -> Vec<Arc<str>> {
        let Some(txn) = self.pending.remove(&producer_id) else {
            return Vec::new();
        };
        self.stats.open_transactions -= 1;
        let mut groups = Vec::with_capacity(txn.groups.len());
        for (group, topics) in txn.groups {
            if let Some(producers) = self.open_by_group.get_mut(&group) {
                producers.remove(&producer_id);
                if producers.is_empty() {
                    self.open_by_group.remove(&group);
                }
            }
            for (topic, partitions) in topics {
                for (partition, stored) in partitions {
                    self.stats.pending -= 1;
                    let bytes = stored.bytes(&topic);
                    self.release(&group, bytes);
                    if commit {
                        self.materialize(&group, &topic, partition, stored);
                    }
                }
            }
            groups.push(group);
        }
        groups
    }

    /// Moves a committed transaction's entry into the committed offsets, unless a later
    /// record committed the partition. Never refused for a cap: its room was reserved when
    /// it was staged, and was just released.
    fn materialize(&mut self, group: &Arc<str>, topic: &Arc<str>, partition: i32, stored: Stored) {
        let bytes = stored.bytes(topic);
        let topics = self.committed.entry(group.clone()).or_default();
        let partitions = topics.entry(topic.clone()).or_default();
        match partitions.get(&partition) {
            Some(existing) if existing.record > stored.record => return,
            Some(existing) => {
                let old = existing.bytes(topic);
                self.stats.bytes = self.stats.bytes.saturating_sub(old).saturating_add(bytes);
            }
            None => {
                self.stats.committed += 1;
                self.stats.bytes = self.stats.bytes.saturating_add(bytes);
                *self.per_group.entry(group.clone()).or_default() += 1;
            }
        }
        partitions.insert(partition, stored);
    }

    fn next_record(&mut self) -> u64 {
        let record = self.next_record;
        self.next_record = record.saturating_add(1);
        record
    }

    /// Takes room for an entry of `bytes` in `group`, replacing one of `existing` bytes
    /// (if any): INVALID_COMMIT_OFFSET_SIZE past a cap.
    fn reserve(
        &mut self,
        group: &str,
        existing: Option<usize>,
        bytes: usize,
    ) -> Result<(), ErrorCode> {
        let count = self.per_group.get(group).copied().unwrap_or(0);
        let total = self
            .stats
            .bytes
            .saturating_sub(existing.unwrap_or(0))
            .saturating_add(bytes);
        let grows = existing.is_none_or(|old| bytes > old);
        if (existing.is_none() && count >= self.limits.per_group)
            || (grows && total > self.limits.bytes)
        {
            return Err(ErrorCode::InvalidCommitOffsetSize);
        }
        self.stats.bytes = total;
        if existing.is_none() {
            match self.per_group.get_mut(group) {
                Some(n) => *n += 1,
                None => {
                    self.per_group.insert(Arc::from(group), 1);
                }
            }
        }
        Ok(())
    }

    /// Gives back one entry of `bytes` of `group`.
    fn release(&mut self, group: &str, bytes: usize) {
        self.stats.bytes = self.stats.bytes.saturating_sub(bytes);
        if let Some(n) = self.per_group.get_mut(group) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_group.remove(group);
            }
        }
    }

    /// The group id as stored (one allocation per group, shared by its maps).
    fn intern_group(&self, group: &str) -> Arc<str> {
        self.per_group
            .get_key_value(group)
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| Arc::from(group))
    }
}

/// The topic name as stored in `topics` (shared by its partitions).
fn intern_topic(topics: &Entries, topic: &str) -> Arc<str> {
    topics
        .get_key_value(topic)
        .map(|(k, _)| k.clone())
        .unwrap_or_else(|| Arc::from(topic))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offset(o: i64) -> OffsetAndMetadata {
        OffsetAndMetadata::new(o, 1_000)
    }

    fn staged(topic: &str, partition: i32, o: i64) -> PartitionOffset {
        PartitionOffset {
            topic: Arc::from(topic),
            partition,
            offset: offset(o),
        }
    }

    fn fetched(
        store: &OffsetStore,
        group: &str,
        topic: &str,
        p: i32,
        stable: bool,
    ) -> Result<Option<i64>, ErrorCode> {
        store
            .fetch(group, topic, p, stable)
            .map(|o| o.map(|o| o.offset))
    }

    #[test]
    fn commits_replace_and_are_fetched_by_partition_and_all() {
        let mut store = OffsetStore::default();
        store.commit("g", "t", 0, offset(5)).expect("commit");
        store.commit("g", "t", 0, offset(7)).expect("commit");
        let with_metadata = OffsetAndMetadata {
            leader_epoch: 3,
            metadata: Arc::from("hello"),
            ..offset(9)
        };
        store
            .commit("g", "a", 2, with_metadata.clone())
            .expect("commit");
        store.commit("other", "t", 0, offset(1)).expect("commit");
        assert_eq!(fetched(&store, "g", "t", 0, false), Ok(Some(7)));
        assert_eq!(fetched(&store, "g", "t", 1, false), Ok(None));
        assert_eq!(fetched(&store, "nobody", "t", 0, true), Ok(None));
        let all = store.fetch_all("g", true);
        let flat: Vec<(String, i32, i64)> = all
            .iter()
            .flat_map(|(topic, partitions)| {
                partitions
                    .iter()
                    .map(move |(p, r)| (topic.to_string(), *p, r.map(|o| o.offset).unwrap_or(-9)))
            })
            .collect();
        assert_eq!(flat, vec![("a".into(), 2, 9), ("t".into(), 0, 7)]);
        assert_eq!(store.fetch("g", "a", 2, false), Ok(Some(&with_metadata)));
        assert_eq!(store.stats().committed, 3);
        assert!(store.delete("g", "t", 0));
        assert!(!store.delete("g", "t", 0));
        assert_eq!(store.delete_group("g"), 1);
        assert!(!store.has_offsets("g"));
        assert!(store.has_offsets("other"));
        let stats = store.stats();
        assert_eq!(stats.committed, 1);
        assert_eq!(stats.bytes, ENTRY_OVERHEAD + 1);
    }

    #[test]
    fn metadata_is_limited_in_utf16_units() {
        let store = OffsetStore::new(OffsetLimits {
            metadata_max_bytes: 4,
            ..OffsetLimits::default()
        });
        assert!(!store.metadata_too_large("abcd"));
        assert!(store.metadata_too_large("abcde"));
        // Four characters of two bytes each are four units: within.
        assert!(!store.metadata_too_large("éééé"));
        // Two emoji are four units.
        assert!(!store.metadata_too_large("😀😀"));
        assert!(store.metadata_too_large("😀😀a"));
        let mut store = OffsetStore::default();
        let long = OffsetAndMetadata {
            metadata: Arc::from("x".repeat(4097)),
            ..offset(1)
        };
        assert_eq!(
            store.commit("g", "t", 0, long.clone()),
            Err(ErrorCode::OffsetMetadataTooLarge)
        );
        assert_eq!(
            store.stage_transactional(
                "g",
                7,
                0,
                [PartitionOffset {
                    topic: Arc::from("t"),
                    partition: 0,
                    offset: long
                }]
            ),
            vec![Err(ErrorCode::OffsetMetadataTooLarge)]
        );
        assert_eq!(store.stats(), OffsetStats::default());
    }

    #[test]
    fn caps_refuse_new_entries_but_let_existing_ones_be_replaced() {
        let mut store = OffsetStore::new(OffsetLimits {
            per_group: 2,
            bytes: 3 * (ENTRY_OVERHEAD + 1),
            ..OffsetLimits::default()
        });
        store.commit("g", "t", 0, offset(1)).expect("first");
        store.commit("g", "t", 1, offset(1)).expect("second");
        assert_eq!(
            store.commit("g", "t", 2, offset(1)),
            Err(ErrorCode::InvalidCommitOffsetSize)
        );
        store.commit("g", "t", 1, offset(2)).expect("replaced");
        // Pending entries count too.
        assert_eq!(
            store.stage_transactional("g", 9, 0, [staged("t", 3, 1)]),
            vec![Err(ErrorCode::InvalidCommitOffsetSize)]
        );
        store.commit("h", "t", 0, offset(1)).expect("another group");
        // The bytes cap is the whole store's.
        assert_eq!(
            store.commit("i", "t", 0, offset(1)),
            Err(ErrorCode::InvalidCommitOffsetSize)
        );
        let bigger = OffsetAndMetadata {
            metadata: Arc::from("more"),
            ..offset(1)
        };
        assert_eq!(
            store.commit("h", "t", 0, bigger),
            Err(ErrorCode::InvalidCommitOffsetSize)
        );
        store.delete_group("g");
        store.commit("i", "t", 0, offset(1)).expect("room again");
        assert_eq!(store.stats().bytes, 2 * (ENTRY_OVERHEAD + 1));
    }

    #[test]
    fn transactional_offsets_wait_for_their_marker() {
        let mut store = OffsetStore::default();
        store.commit("g", "t", 0, offset(1)).expect("commit");
        let results =
            store.stage_transactional("g", 42, 3, [staged("t", 0, 10), staged("t", 1, 11)]);
        assert_eq!(results, vec![Ok(()), Ok(())]);
        assert_eq!(store.pending_producer_epoch(42), Some(3));
        // Invisible, and unstable for a fetch that asks.
        assert_eq!(fetched(&store, "g", "t", 0, false), Ok(Some(1)));
        assert_eq!(fetched(&store, "g", "t", 1, false), Ok(None));
        assert_eq!(
            fetched(&store, "g", "t", 1, true),
            Err(ErrorCode::UnstableOffsetCommit)
        );
        assert_eq!(fetched(&store, "g", "t", 2, true), Ok(None));
        let all = store.fetch_all("g", true);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].1[0].1, Err(ErrorCode::UnstableOffsetCommit));
        assert!(store.has_open_transactions("g"));
        // Commit: both become visible.
        assert_eq!(store.complete_transaction(42, true), vec![Arc::from("g")]);
        assert_eq!(fetched(&store, "g", "t", 0, true), Ok(Some(10)));
        assert_eq!(fetched(&store, "g", "t", 1, true), Ok(Some(11)));
        assert!(!store.has_open_transactions("g"));
        assert_eq!(store.complete_transaction(42, true), Vec::<Arc<str>>::new());
        let stats = store.stats();
        assert_eq!(
            (stats.committed, stats.pending, stats.open_transactions),
            (2, 0, 0)
        );
        assert_eq!(stats.bytes, 2 * (ENTRY_OVERHEAD + 1));
    }

    #[test]
    fn an_abort_drops_the_offsets_and_a_later_plain_commit_wins() {
        let mut store = OffsetStore::default();
        store.stage_transactional("g", 1, 0, [staged("t", 0, 10)]);
        store.stage_transactional("h", 1, 0, [staged("t", 0, 20)]);
        let mut groups = store.complete_transaction(1, false);
        groups.sort();
        assert_eq!(groups, vec![Arc::from("g"), Arc::from("h")]);
        assert_eq!(fetched(&store, "g", "t", 0, true), Ok(None));
        assert!(!store.has_offsets("g"));
        assert_eq!(store.stats(), OffsetStats::default());
        // Staged, then committed plainly: the plain commit is the later record and stays.
        store.stage_transactional("g", 2, 0, [staged("t", 0, 10)]);
        store.commit("g", "t", 0, offset(50)).expect("commit");
        store.complete_transaction(2, true);
        assert_eq!(fetched(&store, "g", "t", 0, true), Ok(Some(50)));
        // Committed plainly, then staged: the transaction's offset is later and wins.
        store.stage_transactional("g", 3, 0, [staged("t", 0, 60)]);
        store.complete_transaction(3, true);
        assert_eq!(fetched(&store, "g", "t", 0, true), Ok(Some(60)));
        assert_eq!(store.stats().committed, 1);
        assert_eq!(store.stats().bytes, ENTRY_OVERHEAD + 1);
    }

    #[test]
    fn deleting_a_partition_or_group_drops_pending_offsets_too() {
        let mut store = OffsetStore::default();
        store.stage_transactional("g", 1, 0, [staged("t", 0, 10), staged("t", 1, 11)]);
        store.stage_transactional("g", 2, 0, [staged("t", 0, 12)]);
        assert!(store.delete("g", "t", 0));
        assert!(!store.has_pending("g", "t", 0));
        assert!(store.has_pending("g", "t", 1));
        store.complete_transaction(1, true);
        store.complete_transaction(2, true);
        assert_eq!(fetched(&store, "g", "t", 0, false), Ok(None));
        assert_eq!(fetched(&store, "g", "t", 1, false), Ok(Some(11)));
        store.stage_transactional("g", 3, 0, [staged("u", 0, 1)]);
        assert_eq!(store.delete_group("g"), 2);
        assert_eq!(store.stats(), OffsetStats::default());
        assert!(store.complete_transaction(3, true).is_empty());
        assert!(!store.has_offsets("g"));
    }
}
