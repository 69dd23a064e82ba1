//! Positions: the assignment, seeks, pauses, and resets by `auto.offset.reset`.

use indexmap::IndexMap;

use super::{unknown_partition, Buffered, FetchState, Fetcher, LookupTarget, PartitionState};
use crate::config::{IsolationLevel, OffsetReset};
use crate::error::Error;
use crate::record::Offset;
use crate::topic_partition::TopicPartition;

impl Fetcher {
    /// Replaces the assignment. Partitions that stay keep their position, buffer and pause
    /// state (as the Java consumer's `assign` does); new ones start from
    /// `auto.offset.reset`; dropped ones are forgotten with whatever was buffered.
    pub fn assign(&mut self, partitions: &[TopicPartition]) {
        self.assign_starting(partitions, false);
    }

    /// Replaces the assignment as the group's coordinator gave it: partitions that stay keep
    /// everything, new ones wait for their committed offset ([`Fetcher::start_at_committed`])
    /// before they are fetched.
    pub fn assign_from_group(&mut self, partitions: &[TopicPartition]) {
        self.assign_starting(partitions, true);
    }

    fn assign_starting(&mut self, partitions: &[TopicPartition], await_committed: bool) {
        let mut next = IndexMap::with_capacity(partitions.len());
        for tp in partitions {
            if next.contains_key(tp) {
                continue;
            }
            let state = match self.partitions.swap_remove(tp) {
                Some(state) => state,
                None => {
                    let mut state = PartitionState::new(&tp.topic, &self.config);
                    if await_committed {
                        state.state = FetchState::AwaitingPosition;
                    } else {
                        self.reset_by_policy(&mut state, tp, None);
                    }
                    state
                }
            };
            next.insert(tp.clone(), state);
        }
        self.partitions = next;
        self.drain_cursor = 0;
    }

    /// The partitions waiting for their committed offset.
    pub fn awaiting_committed(&self) -> Vec<TopicPartition> {
        self.partitions
            .iter()
            .filter(|(_, s)| s.state == FetchState::AwaitingPosition)
            .map(|(tp, _)| tp.clone())
            .collect()
    }

    /// Starts a partition waiting for its committed offset: at `committed`, or where
    /// `auto.offset.reset` says when there is none. Ignored for a partition not waiting
    /// (the user sought it meanwhile, or it was revoked).
    pub fn start_at_committed(&mut self, tp: &TopicPartition, committed: Option<i64>) {
        let policy = self.config.auto_offset_reset;
        let Some(state) = self.partitions.get_mut(tp) else {
            return;
        };
        if state.state == FetchState::AwaitingPosition {
            match committed {
                Some(offset) if offset >= 0 => state.set_position(offset),
                _ => reset_state(policy, state, tp, None),
            }
        }
    }

    /// Holds `partitions` while they are being revoked: what is buffered for them is dropped
    /// (their position stays at the last record handed out), and nothing more is fetched or
    /// handed out for them.
    pub fn hold(&mut self, partitions: &[TopicPartition]) {
        for tp in partitions {
            if let Some(state) = self.partitions.get_mut(tp) {
                state.restart();
                if let Some(position) = state.position {
                    state.fetch_offset = position;
                }
                state.paused = true;
            }
        }
    }

    /// The position of every partition that has one: what a commit of the consumed
    /// positions sends (the offset of the next record to hand out, so every record handed
    /// out is covered, and none that was not).
    pub fn consumed_positions(&self) -> Vec<(TopicPartition, i64)> {
        self.partitions
            .iter()
            .filter(|(_, s)| {
                !matches!(
                    s.state,
                    FetchState::Lookup { .. } | FetchState::AwaitingPosition
                )
            })
            .filter_map(|(tp, s)| s.position.map(|p| (tp.clone(), p)))
            .collect()
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
            FetchState::Lookup { .. } | FetchState::AwaitingPosition => None,
            _ => state.position,
        }
    }

    /// Log start offset and high watermark of `tp` as of the last fetch, if any.
    pub fn watermarks(&self, tp: &TopicPartition) -> Option<(i64, i64)> {
        let state = self.partitions.get(tp)?;
        (state.high_watermark >= 0).then_some((state.log_start_offset, state.high_watermark))
    }

    /// How many records of `tp` are left to hand out: the end of the log (the high
    /// watermark, or the last stable offset with `read_committed`) minus the position, as
    /// of the last fetch; `None` before both are known.
    pub fn lag(&self, tp: &TopicPartition) -> Option<i64> {
        let state = self.partitions.get(tp)?;
        let end = match self.config.isolation_level {
            IsolationLevel::ReadCommitted => state.last_stable_offset,
            IsolationLevel::ReadUncommitted => state.high_watermark,
        };
        let position = self.position(tp)?;
        (end >= 0).then(|| end.saturating_sub(position).max(0))
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
        reset_state(self.config.auto_offset_reset, state, tp, offset);
    }
}

/// [`Fetcher::reset_by_policy`] with the policy given.
fn reset_state(
    policy: OffsetReset,
    state: &mut PartitionState,
    tp: &TopicPartition,
    offset: Option<i64>,
) {
    match policy {
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
