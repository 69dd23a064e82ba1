//! Placement: a record's partition (explicit, murmur2 of its key, or sticky), its batch
//! (the partition's open one, or a new one), or the per-topic queue of records waiting for
//! the topic's metadata.

use std::time::Instant;

use tracing::debug;

use super::size::{max_batch_bytes, record_size};
use super::{Accumulator, Batch, Entry, NewRecord, Placement};
use crate::config::Partitioner;
use crate::engine::backoff::Backoff;
use crate::engine::metadata::{Metadata, TopicInfo};
use crate::engine::partitioner::partition_for_key;
use crate::error::{Error, Persisted};
use crate::proto::batch_header::BATCH_HEADER_LEN;
use crate::topic_partition::TopicPartition;

impl<T> Accumulator<T> {
    /// Takes a record: partitions it and appends it to its partition's last batch (or a
    /// new one) if the topic's metadata is known, else queues it until
    /// [`Accumulator::handle_metadata`]. Records of a topic keep their order either way.
    pub fn append(&mut self, new: NewRecord<T>, metadata: &Metadata, now: Instant) -> Placement {
        let info = metadata.topic(&new.record.topic);
        self.append_known(new, info, metadata, now)
    }

    /// As [`Accumulator::append`], except that a record whose explicit partition the topic's
    /// known metadata does not have is given back rather than failed through its
    /// completion: for a `send` that reports that at once. Looks the topic up once.
    #[allow(clippy::result_large_err)] // the record goes back to the caller as it came
    #[inline]
    pub fn append_or_reject(
        &mut self,
        new: NewRecord<T>,
        metadata: &Metadata,
        now: Instant,
    ) -> Result<Placement, NewRecord<T>> {
        let info = metadata.topic(&new.record.topic);
        if let (Some(partition), Some(info)) = (new.record.partition, info) {
            if usize::try_from(partition).map_or(true, |p| p >= info.partitions.len()) {
                return Err(new);
            }
        }
        Ok(self.append_known(new, info, metadata, now))
    }

    #[inline]
    fn append_known(
        &mut self,
        new: NewRecord<T>,
        info: Option<&TopicInfo>,
        metadata: &Metadata,
        now: Instant,
    ) -> Placement {
        let entry = Entry {
            deadline: new.sent_at + self.config.delivery_timeout,
            record: new.record,
            completion: new.completion,
            timestamp: new.timestamp,
            reserved: new.reserved,
            epoch: self.epoch,
        };
        // The current epoch is the highest: mostly the last entry already, found without a
        // search.
        match self.outstanding.last_entry() {
            Some(mut last) if *last.key() == entry.epoch => *last.get_mut() += 1,
            _ => *self.outstanding.entry(entry.epoch).or_default() += 1,
        }
        self.buffered = self.buffered.saturating_add(entry.reserved);
        if let Some(error) = self.idempotence.fatal() {
            let error = error.clone();
            self.complete_failed(entry, error, Persisted::No);
            self.wake = true;
            return Placement::Failed;
        }
        let topic = &*entry.record.topic;
        if let Some(waiting) = self.waiting.get_mut(topic) {
            // Behind records of the same topic that wait: keep the order.
            self.metadata_refresh = true;
            self.wake = true;
            waiting.push_back(entry);
            return Placement::WaitingForMetadata;
        }
        // `place_in` queues the record for metadata if the topic is unknown.
        self.place_in(entry, info, metadata, now)
    }

    /// Partitions the records whose topic `metadata` now knows.
    pub fn handle_metadata(&mut self, metadata: &Metadata, now: Instant) {
        let known: Vec<String> = self
            .waiting
            .keys()
            .filter(|topic| metadata.topic(topic).is_some())
            .cloned()
            .collect();
        for topic in known {
            let Some(entries) = self.waiting.remove(&topic) else {
                continue;
            };
            debug!(%topic, records = entries.len(), "metadata known, partitioning");
            for entry in entries {
                self.place(entry, metadata, now);
            }
        }
    }

    fn place(&mut self, entry: Entry<T>, metadata: &Metadata, now: Instant) -> Placement {
        let info = metadata.topic(&entry.record.topic);
        self.place_in(entry, info, metadata, now)
    }

    /// Places `entry` in its topic described by `info` (`None`: unknown yet).
    #[inline]
    fn place_in(
        &mut self,
        entry: Entry<T>,
        info: Option<&TopicInfo>,
        metadata: &Metadata,
        now: Instant,
    ) -> Placement {
        let topic = &*entry.record.topic;
        let Some(info) = info else {
            self.metadata_refresh = true;
            self.wake = true;
            self.waiting
                .entry(topic.to_string())
                .or_default()
                .push_back(entry);
            return Placement::WaitingForMetadata;
        };
        let count = info.partitions.len();
        let count_u32 = u32::try_from(count).unwrap_or(u32::MAX);
        let partition = match entry.record.partition {
            Some(p) => p,
            None => {
                let keyed = match self.config.partitioner {
                    Partitioner::Random => None,
                    Partitioner::Murmur2Random => entry.record.key.as_deref(),
                    Partitioner::Murmur2 => Some(entry.record.key.as_deref().unwrap_or_default()),
                };
                match keyed {
                    Some(key) => partition_for_key(key, count_u32),
                    None => {
                        let available = info
                            .partitions
                            .iter()
                            .filter(|p| p.leader >= 0 && metadata.broker(p.leader).is_some())
                            .map(|p| p.partition);
                        self.sticky.partition(
                            topic,
                            available,
                            count_u32,
                            entry.reserved,
                            self.config.batch_size,
                            &mut self.rng,
                        )
                    }
                }
            }
        };
        if usize::try_from(partition).map_or(true, |p| p >= count) {
            let error = Error::UnknownPartition {
                partition: TopicPartition::new(topic, partition),
            };
            self.complete_failed(entry, error, Persisted::No);
            self.wake = true;
            return Placement::Failed;
        }
        self.append_to_partition(entry, partition, now);
        Placement::Partition(partition)
    }

    #[inline]
    fn append_to_partition(&mut self, entry: Entry<T>, partition: i32, now: Instant) {
        let limit = self.batch_limit(&entry.record.topic);
        let (idempotent, max_in_flight) =
            (self.idempotence.is_enabled(), self.config.max_in_flight);
        // Look the topic up before cloning its name: a clone per record is measurable.
        let partitions = match self.queues.get_mut(&*entry.record.topic) {
            Some(partitions) => partitions,
            None => self.queues.entry(entry.record.topic.clone()).or_default(),
        };
        let queue = partitions.entry(partition).or_default();
        // The sender needs waking only when the front batch of a partition that may send
        // changes: a first batch (its linger starts) or a front that became ready. With
        // the partition's in-flight limit reached an answer wakes the sender, which drains
        // then; and a batch behind the front changes no deadline.
        let front_changes = queue.in_flight < queue.in_flight_limit(idempotent, max_in_flight)
            && queue.batches.len() <= 1;
        if let Some(batch) = queue.batches.back_mut() {
            if try_append(batch, &entry) {
                batch.entries.push(entry);
                if batch.closed && front_changes {
                    self.wake = true;
                }
                return;
            }
            batch.closed = true;
        }
        if front_changes {
            self.wake = true;
        }
        let id = self.next_batch_id;
        self.next_batch_id += 1;
        let record_size = record_size(&entry.record, 0, 0);
        let size = BATCH_HEADER_LEN + record_size;
        // Room for as many records of this size as the batch takes, so that appends do not
        // move the entries again and again (bounded: a batch of tiny records grows).
        let capacity = (limit.saturating_sub(BATCH_HEADER_LEN) / record_size.max(1)).clamp(1, 1024);
        let topic = entry.record.topic.clone();
        let (deadline, base_timestamp) = (entry.deadline, entry.timestamp);
        let mut entries = self.spare_entries.pop().unwrap_or_default();
        entries.reserve(capacity);
        entries.push(entry);
        let batch = Batch {
            id,
            topic,
            partition,
            size,
            limit,
            closed: size >= limit,
            created: now,
            deadline,
            base_timestamp,
            attempts: 0,
            retry_at: None,
            backoff: Backoff::new(self.config.retry_backoff, self.config.retry_backoff_max),
            possibly_persisted: false,
            encoded: None,
            sent: false,
            numbering: None,
            entries,
        };
        queue.batches.push_back(batch);
    }

    /// Size at which a batch of `topic` closes: `batch.size`, but never more than fits a
    /// request.
    pub(super) fn batch_limit(&self, topic: &str) -> usize {
        self.config.batch_size.min(self.max_batch(topic))
    }

    pub(super) fn max_batch(&self, topic: &str) -> usize {
        max_batch_bytes(
            self.config.max_request_size,
            self.config.client_id_len,
            topic,
        )
    }
}

/// Whether the record fits the open batch; if so, accounts for it (size, deadline, closed
/// when full), and the caller pushes it. The entry is only borrowed here: moving it in and
/// back out cost two copies of it per record.
fn try_append<T>(batch: &mut Batch<T>, entry: &Entry<T>) -> bool {
    if batch.closed || batch.encoded.is_some() {
        return false;
    }
    let Ok(offset_delta) = i32::try_from(batch.entries.len()) else {
        return false;
    };
    let Some(timestamp_delta) = entry.timestamp.checked_sub(batch.base_timestamp) else {
        return false;
    };
    let size = record_size(&entry.record, offset_delta, timestamp_delta);
    if batch.size.saturating_add(size) > batch.limit {
        return false;
    }
    batch.size += size;
    batch.deadline = batch.deadline.min(entry.deadline);
    if batch.size >= batch.limit {
        batch.closed = true;
    }
    true
}
