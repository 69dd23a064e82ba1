//! The prefetch buffer and what comes out of it: events for the user in offset order per
//! partition (partitions taking turns batch by batch), and batches decoded ahead by the
//! driver outside the lock the user's `recv` needs.

use bytes::Bytes;
use tracing::warn;

use super::{Buffered, FetchState, Fetcher, PartitionState};
use crate::error::Error;
use crate::proto::batch_header::BatchHeader;
use crate::proto::record_batch::{DecodeLimits, RecordBatch};
use crate::record::{ConsumerEvent, ConsumerRecord};
use crate::topic_partition::TopicPartition;

impl Fetcher {
    /// The next thing for the user, if any: a record, an end-of-partition event, or a
    /// partition's error; before those, an outage ([`Error::BrokerUnreachable`],
    /// [`Error::AllBrokersDown`]) once per failure episode. Partitions take turns batch by
    /// batch; paused ones are skipped.
    #[inline]
    pub fn poll_event(&mut self) -> Option<Result<ConsumerEvent, Error>> {
        if let Some((_, error)) = self.outage_errors.pop_front() {
            return Some(Err(error));
        }
        self.poll_event_inner()
    }

    /// The raw batches buffered by fetch responses since the last call, for the driver to
    /// decode ahead with [`decode_ahead`] outside the lock `recv` needs, and hand back with
    /// [`Fetcher::handle_decoded`]. Decoding them is optional: `poll_event` decodes any
    /// batch still raw when it reaches it.
    pub fn take_undecoded(&mut self) -> Vec<(TopicPartition, Bytes)> {
        std::mem::take(&mut self.undecoded)
    }

    /// Puts batches decoded ahead in place of their raw form, where they are still raw and
    /// buffered (a seek or `recv` may have got there first). A batch that failed to decode
    /// stays raw: `poll_event` reports the error in its place.
    pub fn handle_decoded(&mut self, decoded: Vec<(TopicPartition, Bytes, RecordBatch)>) {
        for (tp, bytes, batch) in decoded {
            let Some(state) = self.partitions.get_mut(&tp) else {
                continue;
            };
            let slot = state.buffer.iter_mut().find(|b| {
                matches!(b, Buffered::Raw(raw)
                    if raw.bytes.as_ptr() == bytes.as_ptr() && raw.bytes.len() == bytes.len())
            });
            if let Some(slot) = slot {
                let response_bytes = match slot {
                    Buffered::Raw(raw) => raw.response_bytes,
                    _ => continue,
                };
                *slot = Buffered::decoded(batch, response_bytes);
            }
        }
    }

    /// Whether `bytes`, a batch of `tp` from [`Fetcher::take_undecoded`], is still buffered
    /// raw: a driver that decodes ahead batch by batch skips those `poll_event` has reached
    /// (decoded, or consumed) meanwhile, or that a seek dropped.
    pub fn is_undecoded(&self, tp: &TopicPartition, bytes: &Bytes) -> bool {
        self.partitions.get(tp).is_some_and(|state| {
            state.buffer.iter().any(|b| {
                matches!(b, Buffered::Raw(raw)
                    if raw.bytes.as_ptr() == bytes.as_ptr() && raw.bytes.len() == bytes.len())
            })
        })
    }

    /// The decode limits, for [`decode_ahead`].
    pub fn decode_limits(&self) -> DecodeLimits {
        self.config.decode_limits
    }

    #[inline]
    fn poll_event_inner(&mut self) -> Option<Result<ConsumerEvent, Error>> {
        let count = self.partitions.len();
        // One full turn over the partitions, plus the one we started at.
        for _ in 0..=count {
            if count == 0 {
                return None;
            }
            let index = self.drain_cursor % count;
            let (tp, state) = self.partitions.get_index_mut(index)?;
            if !state.paused {
                let (event, finished_batch) =
                    Self::next_from(tp, state, &self.config.decode_limits);
                if finished_batch {
                    self.space_freed = true;
                }
                if let Some(event) = event {
                    if finished_batch {
                        self.drain_cursor = index + 1;
                    }
                    return Some(event);
                }
            }
            self.drain_cursor = index + 1;
        }
        None
    }

    /// The next event of one partition; also whether a buffered batch was finished.
    #[inline]
    fn next_from(
        tp: &TopicPartition,
        state: &mut PartitionState,
        limits: &DecodeLimits,
    ) -> (Option<Result<ConsumerEvent, Error>>, bool) {
        let mut finished = false;
        loop {
            let Some(front) = state.buffer.front_mut() else {
                return (None, finished);
            };
            match front {
                Buffered::Raw(raw) => match RecordBatch::decode(&raw.bytes, limits) {
                    Ok(batch) => *front = Buffered::decoded(batch, raw.response_bytes),
                    Err(error) => {
                        // Never skipped: the partition stops here, at this batch, until a
                        // seek; what was fetched after it is dropped.
                        let broker = raw.broker;
                        let offset = BatchHeader::parse(&raw.bytes)
                            .map(|h| h.base_offset)
                            .ok()
                            .or(state.position);
                        warn!(%tp, broker, ?offset, %error, "corrupt record batch; partition stopped until the next seek");
                        state.state = FetchState::Halted;
                        state.buffer.clear();
                        state.buffered_bytes = 0;
                        let error = Error::CorruptRecord {
                            partition: tp.clone(),
                            offset,
                            broker: Some(broker),
                            reason: error.to_string(),
                        };
                        return (Some(Err(error)), true);
                    }
                },
                Buffered::Skip { .. } => {
                    Self::skip_front(state);
                    finished = true;
                }
                Buffered::Eof(offset) => {
                    let offset = *offset;
                    state.buffer.pop_front();
                    let event = ConsumerEvent::PartitionEof {
                        partition: tp.clone(),
                        offset,
                    };
                    return (Some(Ok(event)), finished);
                }
                Buffered::Error(_) => {
                    let Some(Buffered::Error(error)) = state.buffer.pop_front() else {
                        return (None, finished);
                    };
                    return (Some(Err(error)), finished);
                }
                Buffered::Batch(buffered) => {
                    let position = state.position.unwrap_or(0);
                    let mut record = None;
                    for candidate in buffered.records.by_ref() {
                        let offset = buffered.batch.record_offset(&candidate);
                        if offset >= position {
                            record = Some((offset, candidate));
                            break;
                        }
                    }
                    let batch_done = buffered.records.len() == 0;
                    let event = record.map(|(offset, r)| {
                        let timestamp = buffered.batch.record_timestamp(&r);
                        let epoch = buffered.batch.partition_leader_epoch;
                        ConsumerEvent::Record(ConsumerRecord {
                            topic: state.topic.clone(),
                            partition: tp.partition,
                            offset,
                            timestamp,
                            timestamp_type: buffered.batch.timestamp_type,
                            key: r.key,
                            value: r.value,
                            headers: r.headers,
                            leader_epoch: (epoch >= 0).then_some(epoch),
                        })
                    });
                    // Decoding refused batches whose next offset overflows, and every record
                    // lies inside its batch: these cannot fail. Saturating rather than
                    // trusting that: a position is never allowed to wrap.
                    if let Some(ConsumerEvent::Record(r)) = &event {
                        state.position = Some(r.offset.saturating_add(1));
                    }
                    if batch_done {
                        let next = buffered.batch.next_offset();
                        let bytes = buffered.bytes;
                        state.buffer.pop_front();
                        state.buffered_bytes = state.buffered_bytes.saturating_sub(bytes);
                        state.position = Some(state.position.map_or(next, |p| p.max(next)));
                        finished = true;
                        // Markers and aborted batches right behind it hold nothing for the
                        // user: step over them now, so that the position after the last
                        // record of a fetch that reached the end is the end (the LSO), as
                        // the Java consumer's is.
                        while matches!(state.buffer.front(), Some(Buffered::Skip { .. })) {
                            Self::skip_front(state);
                        }
                    }
                    if let Some(event) = event {
                        return (Some(Ok(event)), finished);
                    }
                }
            }
        }
    }
}

impl Fetcher {
    /// Consumes the `Skip` at the front of the buffer: the position moves past it.
    fn skip_front(state: &mut PartitionState) {
        if let Some(Buffered::Skip {
            next_offset,
            response_bytes,
        }) = state.buffer.pop_front()
        {
            state.buffered_bytes = state.buffered_bytes.saturating_sub(response_bytes);
            state.position = Some(state.position.map_or(next_offset, |p| p.max(next_offset)));
        }
    }
}

/// Decodes raw batches from [`Fetcher::take_undecoded`]; those that do not decode are left
/// out (`poll_event` decodes them again and reports the error at their place).
pub fn decode_ahead(
    raw: Vec<(TopicPartition, Bytes)>,
    limits: &DecodeLimits,
) -> Vec<(TopicPartition, Bytes, RecordBatch)> {
    raw.into_iter()
        .filter_map(|(tp, bytes)| {
            let batch = RecordBatch::decode(&bytes, limits).ok()?;
            Some((tp, bytes, batch))
        })
        .collect()
}
