//! Answers: Fetch and ListOffsets responses applied partition by partition (offsets from
//! the broker checked before any arithmetic, errors classified, stalled answers backed
//! off), and requests that failed as a whole.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use indexmap::IndexMap;
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{FetchResponse, ListOffsetsResponse};
use tracing::{debug, warn};

use super::aborted::{AbortedTransactions, Verdict};
use super::{
    Applied, Buffered, FetchState, Fetcher, LookupTarget, PartitionState, PlannedFetch,
    PlannedLookup, RawBatch,
};
use crate::config::{IsolationLevel, OffsetReset};
use crate::engine::backoff::Rng;
use crate::error::Error;
use crate::proto::batch_header::Batches;
use crate::proto::record_batch::RecordBatch;
use crate::proto::ErrorCode;
use crate::topic_partition::TopicPartition;

impl Fetcher {
    /// Applies the answer to the ListOffsets request `id`.
    pub fn handle_list_offsets_response(
        &mut self,
        id: u64,
        response: &ListOffsetsResponse,
        now: Instant,
    ) {
        let Some(flight) = self.lookups.remove(&id) else {
            return;
        };
        self.brokers_looking_up.remove(&flight.broker);
        self.handle_answer(flight.broker, now);
        let mut answered = HashSet::new();
        for topic in &response.topics {
            for data in &topic.partitions {
                let tp = TopicPartition::new(topic.name.0.as_str(), data.partition_index);
                let Some(planned) = flight.partitions.iter().find(|p| p.tp == tp) else {
                    continue;
                };
                answered.insert(tp.clone());
                let Some(state) = current_lookup(&mut self.partitions, planned) else {
                    continue;
                };
                match ErrorCode::try_from_code(data.error_code) {
                    None if data.offset >= 0 => {
                        debug!(%tp, offset = data.offset, target = ?planned.target, "position looked up");
                        state.retry.succeed();
                        state.set_position(data.offset);
                    }
                    None if data.offset < -1 => {
                        // -1 is "no such offset"; nothing else below 0 is an offset.
                        Self::corrupt(
                            state,
                            &tp,
                            flight.broker,
                            data.offset,
                            format!("ListOffsets answered offset {}", data.offset),
                        );
                    }
                    None => {
                        // No record at or after the timestamp: the end of the log, as the
                        // Java consumer's offsetsForTimes + seekToEnd would give.
                        state.look_up(LookupTarget::Latest);
                        if planned.target == LookupTarget::Latest {
                            state.retry.fail(&mut self.rng, now);
                        }
                    }
                    Some(code) => {
                        let refresh = Self::partition_error(
                            &mut self.rng,
                            state,
                            &tp,
                            flight.broker,
                            code,
                            now,
                        );
                        if matches!(state.state, FetchState::Lookup { .. }) {
                            state.look_up(planned.target);
                        }
                        if refresh {
                            self.refresh.request();
                        }
                    }
                }
            }
        }
        // Partitions the broker left out are asked again.
        for planned in &flight.partitions {
            if answered.contains(&planned.tp) {
                continue;
            }
            if let Some(state) = current_lookup(&mut self.partitions, planned) {
                state.look_up(planned.target);
            }
        }
    }

    /// The ListOffsets request `id` failed as a whole (disconnect, timeout, ...): back off
    /// that broker (`reconnect.backoff.ms`), refresh the metadata, and count the failure
    /// towards [`Error::BrokerUnreachable`].
    pub fn handle_list_offsets_failure(&mut self, id: u64, error: &Error, now: Instant) {
        let Some(flight) = self.lookups.remove(&id) else {
            return;
        };
        self.brokers_looking_up.remove(&flight.broker);
        let delay = self.fail_broker(flight.broker, now);
        warn!(broker = flight.broker, %error, retry_in = ?delay, "ListOffsets failed");
        self.handle_request_failure(flight.broker, error, flight.sent_at, now);
        for planned in &flight.partitions {
            if let Some(state) = self.partitions.get_mut(&planned.tp) {
                if state.generation == planned.generation {
                    state.look_up(planned.target);
                    state.retry.fail(&mut self.rng, now);
                }
            }
        }
    }

    /// Applies the answer to the Fetch request `id`, sent at `version`.
    pub fn handle_fetch_response(
        &mut self,
        id: u64,
        version: i16,
        response: FetchResponse,
        now: Instant,
    ) {
        let Some(flight) = self.fetches.remove(&id) else {
            return;
        };
        self.brokers_fetching.remove(&flight.broker);
        for planned in &flight.partitions {
            if let Some(state) = self.partitions.get_mut(&planned.tp) {
                if state.fetch_in_flight == Some(id) {
                    state.fetch_in_flight = None;
                }
            }
        }
        self.handle_answer(flight.broker, now);
        if let Some(code) = ErrorCode::try_from_code(response.error_code) {
            let delay = self.fail_broker(flight.broker, now);
            warn!(broker = flight.broker, %code, retry_in = ?delay, "fetch failed");
            return;
        }
        if let Some(retry) = self.broker_backoff.get_mut(&flight.broker) {
            retry.succeed();
        }
        let planned_by_tp: HashMap<&TopicPartition, &PlannedFetch> =
            flight.partitions.iter().map(|p| (&p.tp, p)).collect();
        let mut progress = false;
        let mut stalled: Vec<&PlannedFetch> = Vec::new();
        for topic in response.responses {
            let name = if version >= 13 {
                flight
                    .partitions
                    .iter()
                    .find(|p| p.topic_id == topic.topic_id)
                    .map(|p| p.tp.topic.clone())
            } else {
                Some(topic.topic.0.as_str().to_string())
            };
            let Some(name) = name else {
                continue;
            };
            for data in topic.partitions {
                let tp = TopicPartition::new(name.clone(), data.partition_index);
                let Some(planned) = planned_by_tp.get(&tp) else {
                    continue;
                };
                match self.apply_partition(flight.broker, planned, data, now) {
                    Applied::Progress => progress = true,
                    Applied::Stalled => stalled.push(planned),
                    Applied::Idle | Applied::Other => {}
                }
            }
        }
        // A partition the broker says has more, but which got nothing, is fetched again at
        // once only if the answer brought something for another partition (it may have been
        // left out by `fetch.max.bytes`); an answer that moved nothing on backs those
        // partitions off, or a broker answering at once without data would be asked again
        // and again in a tight loop (librdkafka backs a partition off the same way).
        for planned in stalled {
            let Some(state) = self.partitions.get_mut(&planned.tp) else {
                continue;
            };
            if progress {
                state.retry.succeed();
            } else {
                let delay = state.retry.fail(&mut self.rng, now);
                debug!(
                    broker = flight.broker,
                    tp = %planned.tp,
                    offset = planned.fetch_offset,
                    high_watermark = state.high_watermark,
                    retry_in = ?delay,
                    "fetch brought nothing past the fetch offset although the broker has more; backing off"
                );
            }
        }
    }

    /// The Fetch request `id` failed as a whole (no answer, a broken connection, a protocol
    /// violation): back off from that broker (`reconnect.backoff.ms`, doubling up to
    /// `reconnect.backoff.max.ms`) and refresh the metadata; nothing was consumed, so the
    /// same offsets are fetched again. Counts towards [`Error::BrokerUnreachable`].
    pub fn handle_fetch_failure(&mut self, id: u64, error: &Error, now: Instant) {
        let Some(flight) = self.fetches.remove(&id) else {
            return;
        };
        self.brokers_fetching.remove(&flight.broker);
        for planned in &flight.partitions {
            if let Some(state) = self.partitions.get_mut(&planned.tp) {
                if state.fetch_in_flight == Some(id) {
                    state.fetch_in_flight = None;
                }
            }
        }
        let delay = self.fail_broker(flight.broker, now);
        warn!(broker = flight.broker, %error, retry_in = ?delay, "fetch failed");
        self.handle_request_failure(flight.broker, error, flight.sent_at, now);
    }

    fn apply_partition(
        &mut self,
        broker: i32,
        planned: &PlannedFetch,
        data: PartitionData,
        now: Instant,
    ) -> Applied {
        let tp = &planned.tp;
        let reset = self.config.auto_offset_reset;
        let Some(state) = self.partitions.get_mut(tp) else {
            return Applied::Other;
        };
        if state.generation != planned.generation
            || state.state != FetchState::Fetching
            || state.fetch_offset != planned.fetch_offset
        {
            // Answer to a request sent before a seek or reset.
            return Applied::Other;
        }
        match ErrorCode::try_from_code(data.error_code) {
            None => {}
            Some(ErrorCode::OffsetOutOfRange) => {
                warn!(%tp, broker, offset = planned.fetch_offset, policy = ?reset, "fetch offset out of range");
                state.restart();
                let offset = planned.fetch_offset;
                match reset {
                    OffsetReset::Earliest => state.look_up(LookupTarget::Earliest),
                    OffsetReset::Latest => state.look_up(LookupTarget::Latest),
                    OffsetReset::None => {
                        state.position = Some(offset);
                        state.state = FetchState::Halted;
                        state
                            .buffer
                            .push_back(Buffered::Error(Error::OffsetOutOfRange {
                                partition: tp.clone(),
                                offset,
                            }));
                    }
                }
                return Applied::Other;
            }
            Some(code) => {
                if Self::partition_error(&mut self.rng, state, tp, broker, code, now) {
                    self.refresh.request();
                }
                return Applied::Other;
            }
        }
        // Watermarks are only stored and compared, never computed with; -1 is "unknown",
        // and anything else below 0 is ignored like it.
        if data.high_watermark >= 0 {
            state.high_watermark = data.high_watermark;
        }
        if data.last_stable_offset >= 0 {
            state.last_stable_offset = data.last_stable_offset;
        }
        if data.log_start_offset >= 0 {
            state.log_start_offset = data.log_start_offset;
        }
        let end = match self.config.isolation_level {
            IsolationLevel::ReadCommitted if data.last_stable_offset >= 0 => {
                data.last_stable_offset
            }
            _ => data.high_watermark,
        };
        if self.config.partition_eof && planned.fetch_offset == end && state.eof_offset != Some(end)
        {
            state.eof_offset = Some(end);
            state.buffer.push_back(Buffered::Eof(end));
        }
        let records = data.records.unwrap_or_default();
        // read_committed: batches of aborted transactions are dropped (KIP-98).
        let mut aborted = match self.config.isolation_level {
            IsolationLevel::ReadCommitted => {
                AbortedTransactions::new(data.aborted_transactions.as_deref())
            }
            IsolationLevel::ReadUncommitted => AbortedTransactions::default(),
        };
        let limits = self.config.decode_limits;
        let mut next = planned.fetch_offset;
        let mut start = 0usize;
        let mut last_pushed: Option<usize> = None;
        let mut counted = 0usize;
        let mut batches = Batches::new(&records);
        for item in batches.by_ref() {
            let (header, bytes) = match item {
                Ok(found) => found,
                Err(error) => {
                    Self::corrupt(state, tp, broker, next, error.to_string());
                    break;
                }
            };
            // Offsets a broker invents: a log has no negative offsets, and a batch must
            // leave an offset after it to continue from.
            let next_offset = match header.checked_next_offset() {
                Some(next_offset) if header.base_offset >= 0 => next_offset,
                _ => {
                    let reason = format!(
                        "batch at base offset {} with last offset delta {} is outside the offsets a log can have",
                        header.base_offset, header.last_offset_delta
                    );
                    Self::corrupt(state, tp, broker, header.base_offset, reason);
                    break;
                }
            };
            let range = start..start + bytes.len();
            start = range.end;
            if next_offset <= next {
                // Wholly before the fetch offset: nothing in it for us. (Its aborted
                // transactions and markers were read in the fetch that delivered it.)
                continue;
            }
            next = next_offset;
            let len = range.len();
            let bytes = records.slice(range);
            let skip = if header.attributes.is_control() {
                // A transaction marker: never for the user. Decoded here (it is one small
                // record) so that a corrupt one is reported at its place like any batch,
                // and so that read_committed sees where aborted transactions end.
                match RecordBatch::decode(&bytes, &limits) {
                    Ok(marker) => {
                        aborted.control_batch(&marker);
                        true
                    }
                    Err(_) => false,
                }
            } else {
                !aborted.is_empty() && aborted.data_batch(&header) == Verdict::Aborted
            };
            if skip {
                if state.buffer.is_empty() {
                    // Nothing before it waits for the user: the position moves at once.
                    state.position = Some(state.position.map_or(next, |p| p.max(next)));
                    continue;
                }
                state.buffer.push_back(Buffered::Skip {
                    next_offset: next,
                    response_bytes: len,
                });
            } else {
                // Decoded (and its CRC checked) when the user reaches it; see `Buffered::Raw`.
                self.undecoded.push((tp.clone(), bytes.clone()));
                state.buffer.push_back(Buffered::Raw(RawBatch {
                    bytes,
                    broker,
                    response_bytes: len,
                }));
            }
            counted += len;
            last_pushed = Some(state.buffer.len() - 1);
        }
        // Each batch counts its own bytes, released as it is consumed, so the partition is
        // fetched again while the user is still reading what came (prefetching). Bytes
        // before the fetch offset, of batches skipped at once, or in a cut-off tail count
        // with the last batch.
        if let Some(last) = last_pushed.and_then(|i| state.buffer.get_mut(i)) {
            let extra = records.len().saturating_sub(counted);
            match last {
                Buffered::Raw(last) => last.response_bytes += extra,
                Buffered::Skip { response_bytes, .. } => *response_bytes += extra,
                _ => {}
            }
            state.buffered_bytes += records.len();
        }
        state.fetch_offset = next;
        if state.state == FetchState::Halted {
            return Applied::Other;
        }
        if next > planned.fetch_offset {
            state.retry.succeed();
            return Applied::Progress;
        }
        if records.is_empty() && end <= planned.fetch_offset {
            state.retry.succeed();
            return Applied::Idle;
        }
        if !records.is_empty() {
            // With KIP-74 (Fetch v3+) a broker returns the first batch whole, so bytes
            // without one batch past the fetch offset are a broken broker (Java's consumer
            // throws "failed to make progress" here).
            warn!(
                %tp,
                broker,
                offset = planned.fetch_offset,
                bytes = records.len(),
                partial = batches.truncated_tail(),
                "fetch returned bytes but no batch past the fetch offset"
            );
        }
        Applied::Stalled
    }

    /// Handles a partition-level error code of a Fetch or ListOffsets answer. Returns
    /// whether the metadata should be refreshed.
    fn partition_error(
        rng: &mut Rng,
        state: &mut PartitionState,
        tp: &TopicPartition,
        broker: i32,
        code: ErrorCode,
        now: Instant,
    ) -> bool {
        match code {
            ErrorCode::NotLeaderOrFollower
            | ErrorCode::FencedLeaderEpoch
            | ErrorCode::UnknownTopicOrPartition
            | ErrorCode::UnknownTopicId
            | ErrorCode::InconsistentTopicId
            | ErrorCode::LeaderNotAvailable
            | ErrorCode::ReplicaNotAvailable
            | ErrorCode::KafkaStorageError
            | ErrorCode::OffsetNotAvailable => {
                debug!(%tp, %code, "partition error; refreshing metadata");
                state.retry.fail(rng, now);
                true
            }
            // Our metadata is newer than the broker's; it will catch up.
            ErrorCode::UnknownLeaderEpoch => {
                state.retry.fail(rng, now);
                false
            }
            ErrorCode::CorruptMessage => {
                state.state = FetchState::Halted;
                state
                    .buffer
                    .push_back(Buffered::Error(Error::CorruptRecord {
                        partition: tp.clone(),
                        offset: state.position,
                        broker: Some(broker),
                        reason: "broker reported a corrupt message".into(),
                    }));
                false
            }
            code if code.is_retriable() => {
                debug!(%tp, %code, "retriable partition error");
                state.retry.fail(rng, now);
                false
            }
            code => {
                warn!(%tp, %code, "partition error; partition stopped until the next seek");
                state.state = FetchState::Halted;
                state.buffer.push_back(Buffered::Error(Error::Partition {
                    partition: tp.clone(),
                    code,
                    message: None,
                }));
                false
            }
        }
    }

    pub(super) fn corrupt(
        state: &mut PartitionState,
        tp: &TopicPartition,
        broker: i32,
        offset: i64,
        reason: String,
    ) {
        warn!(%tp, broker, offset, %reason, "corrupt record data; partition stopped until the next seek");
        state.state = FetchState::Halted;
        state
            .buffer
            .push_back(Buffered::Error(Error::CorruptRecord {
                partition: tp.clone(),
                offset: Some(offset),
                broker: Some(broker),
                reason,
            }));
    }
}

/// The partition a lookup was planned for, if it still waits for that lookup.
fn current_lookup<'a>(
    partitions: &'a mut IndexMap<TopicPartition, PartitionState>,
    planned: &PlannedLookup,
) -> Option<&'a mut PartitionState> {
    let state = partitions.get_mut(&planned.tp)?;
    let waiting = state.generation == planned.generation
        && matches!(
            state.state,
            FetchState::Lookup {
                in_flight: true,
                ..
            }
        );
    waiting.then_some(state)
}
