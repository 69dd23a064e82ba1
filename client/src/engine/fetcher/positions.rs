//! Positions: the assignment, seeks, pauses, and resets by `auto.offset.reset`.

use indexmap::IndexMap;

use super::{unknown_partition, Buffered, FetchState, Fetcher, LookupTarget, PartitionState};
use crate::config::OffsetReset;
use crate::error::Error;
use crate::record::Offset;
use crate::topic_partition::TopicPartition;

impl Fetcher {
    /// Replaces the assignment. Partitions that stay keep their position, buffer and pause
    /// state (as the Java consumer's `assign` does); new ones start from
    /// `auto.offset.reset`; dropped ones are forgotten with whatever was buffered.
    pub fn assign(&mut self, partitions: &[TopicPartition]) {
        let mut next = IndexMap::with_capacity(partitions.len());
        for tp in partitions {
            if next.contains_key(tp) {
                continue;
            }
            let state = match self.partitions.swap_remove(tp) {
                Some(state) => state,
                None => {
                    let mut state = PartitionState::new(&tp.topic, &self.config);
                    self.reset_by_policy(&mut state, tp, None);
                    state
                }
            };
            next.insert(tp.clone(), state);
        }
        self.partitions = next;
        self.drain_cursor = 0;
    }

    /// The assigned partitions, in assignment order.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.partitions.keys().cloned().collect()
    }

    /// True when at least one partition is assigned.
    pub fn has_assignment(&self) -> bool {
        !self.partitions.is_empty()
    }

    /// The topics of the assignment.
    pub fn topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = self.partitions.keys().map(|tp| tp.topic.clone()).collect();
        topics.sort();
        topics.dedup();
        topics
    }

    /// Moves the position of an assigned partition, dropping what was buffered for it and
    /// ignoring answers to requests already sent. Restarts a partition halted by an error.
    pub fn seek(&mut self, tp: &TopicPartition, offset: Offset) -> Result<(), Error> {
        if let Offset::At(at) = offset {
            if at < 0 {
                return Err(Error::InvalidArgument(format!(
                    "cannot seek {tp} to negative offset {at}"
                )));
            }
        }
        let state = self
            .partitions
            .get_mut(tp)
            .ok_or_else(|| unknown_partition(tp))?;
        state.restart();
        match offset {
            Offset::At(at) => state.set_position(at),
            Offset::Beginning => state.look_up(LookupTarget::Earliest),
            Offset::End => state.look_up(LookupTarget::Latest),
            Offset::Timestamp(t) => state.look_up(LookupTarget::Timestamp(t)),
        }
        Ok(())
    }

    /// The next offset the user will get from `tp`; `None` when not assigned or while the
    /// position is being looked up (after a seek to the beginning, end or a timestamp, or a
    /// reset).
    pub fn position(&self, tp: &TopicPartition) -> Option<i64> {
        let state = self.partitions.get(tp)?;
        match state.state {
            FetchState::Lookup { .. } => None,
            _ => state.position,
        }
    }

    /// Log start offset and high watermark of `tp` as of the last fetch, if any.
    pub fn watermarks(&self, tp: &TopicPartition) -> Option<(i64, i64)> {
        let state = self.partitions.get(tp)?;
        (state.high_watermark >= 0).then_some((state.log_start_offset, state.high_watermark))
    }

    /// Stops fetching `partitions` and holds back what is buffered for them.
    pub fn pause(&mut self, partitions: &[TopicPartition]) -> Result<(), Error> {
        self.set_paused(partitions, true)
    }

    /// Undoes [`Fetcher::pause`]: buffered records flow again and fetching resumes.
    pub fn resume(&mut self, partitions: &[TopicPartition]) -> Result<(), Error> {
        self.set_paused(partitions, false)
    }

    fn set_paused(&mut self, partitions: &[TopicPartition], paused: bool) -> Result<(), Error> {
        if let Some(tp) = partitions
            .iter()
            .find(|tp| !self.partitions.contains_key(*tp))
        {
            return Err(unknown_partition(tp));
        }
        for tp in partitions {
            if let Some(state) = self.partitions.get_mut(tp) {
                state.paused = paused;
            }
        }
        Ok(())
    }

    /// The paused partitions.
    pub fn paused(&self) -> Vec<TopicPartition> {
        self.partitions
            .iter()
            .filter(|(_, s)| s.paused)
            .map(|(tp, _)| tp.clone())
            .collect()
    }

    /// Starts a reset by `auto.offset.reset`: a lookup, or with `none` an error for the
    /// user. `offset` is the out-of-range offset (`None` when there was no position).
    pub(super) fn reset_by_policy(
        &self,
        state: &mut PartitionState,
        tp: &TopicPartition,
        offset: Option<i64>,
    ) {
        match self.config.auto_offset_reset {
            OffsetReset::Earliest => state.look_up(LookupTarget::Earliest),
            OffsetReset::Latest => state.look_up(LookupTarget::Latest),
            OffsetReset::None => {
                state.position = offset;
                state.state = FetchState::Halted;
                state
                    .buffer
                    .push_back(Buffered::Error(Error::OffsetOutOfRange {
                        partition: tp.clone(),
                        offset: offset.unwrap_or(-1),
                    }));
            }
        }
    }
}
