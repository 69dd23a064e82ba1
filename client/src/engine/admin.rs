//! The admin client's decisions, without IO: how a failed item is retried (Java's
//! `KafkaAdminClient`: retriable codes are tried again after `retry.backoff.ms` until
//! `default.api.timeout.ms`, after finding the controller, coordinator or leader anew), a
//! group's lag from its committed offsets and the end offsets, and the offsets
//! `kafka-consumer-groups --reset-offsets` would set.
//!
//! Call order, as `crate::admin` drives it: send the pending items; [`retry_action`] on each
//! item's error code splits them into done and to-retry; before trying again, refresh
//! what the action names (metadata for a leader or the controller, FindCoordinator for a
//! coordinator), sleep the backoff, stop at the deadline.

use std::collections::BTreeMap;

use crate::proto::ErrorCode;
use crate::topic_partition::TopicPartition;

/// What to do about an item that failed with a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAction {
    /// Report the error: it will not pass by trying again.
    Fail,
    /// Try again after the backoff, at the same broker.
    Backoff,
    /// Refresh the metadata (the controller or the partition's leader moved), then try again.
    RefreshMetadata,
    /// Find the coordinator again (FindCoordinator), then try again.
    FindCoordinator,
}

/// How an item failed with `code` is retried, as Java's admin client does.
pub fn retry_action(code: ErrorCode) -> RetryAction {
    match code {
        ErrorCode::NotController
        | ErrorCode::NotLeaderOrFollower
        | ErrorCode::LeaderNotAvailable
        | ErrorCode::FencedLeaderEpoch
        | ErrorCode::UnknownLeaderEpoch => RetryAction::RefreshMetadata,
        ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable => {
            RetryAction::FindCoordinator
        }
        ErrorCode::CoordinatorLoadInProgress => RetryAction::Backoff,
        // A topic just created may not be known everywhere yet; Java's admin client reports
        // UNKNOWN_TOPIC_OR_PARTITION to the caller for describes and deletes, so do we.
        ErrorCode::UnknownTopicOrPartition => RetryAction::Fail,
        code if code.is_retriable() => RetryAction::Backoff,
        _ => RetryAction::Fail,
    }
}

/// One partition's lag in a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    /// The partition.
    pub partition: TopicPartition,
    /// The group's committed offset, if it committed one.
    pub committed: Option<i64>,
    /// The end offset: the high watermark, or with read_committed the last stable offset.
    pub end: i64,
    /// `end - committed` (never negative); `None` without a committed offset, as
    /// `kafka-consumer-groups` shows "-".
    pub lag: Option<i64>,
}

/// The lag of every partition in `committed` or `ends`, in partition order. A partition
/// without an end offset (its lookup failed) is left out.
pub fn compute_lag(
    committed: &BTreeMap<TopicPartition, i64>,
    ends: &BTreeMap<TopicPartition, i64>,
) -> Vec<PartitionLag> {
    ends.iter()
        .map(|(partition, &end)| {
            let committed = committed.get(partition).copied().filter(|o| *o >= 0);
            PartitionLag {
                partition: partition.clone(),
                committed,
                end,
                lag: committed.map(|c| end.saturating_sub(c).max(0)),
            }
        })
        .collect()
}

/// Where `reset_offsets` moves a group's positions, as `kafka-consumer-groups
/// --reset-offsets` options say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResetTo {
    /// `--to-earliest`: the log start offset.
    Earliest,
    /// `--to-latest`: the end offset.
    Latest,
    /// `--to-offset N`: that offset, within the log's range.
    Offset(i64),
    /// `--to-datetime` / `--by-duration`: the first offset at or after this timestamp
    /// (milliseconds), else the end offset.
    Timestamp(i64),
    /// `--shift-by N`: the committed offset plus N (negative moves back), within the range.
    ShiftBy(i64),
    /// `--to-current`: the committed offset (or the end offset without one).
    Current,
}

/// What a partition's log offers a reset: its earliest and end offsets, the offset found for
/// a timestamp (if one was asked and found), and the committed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResetInputs {
    /// The log start offset.
    pub earliest: i64,
    /// The end offset.
    pub latest: i64,
    /// ListOffsets' answer for [`ResetTo::Timestamp`], if any record is that recent.
    pub for_timestamp: Option<i64>,
    /// The committed offset, if any.
    pub committed: Option<i64>,
}

/// The offset a reset sets on one partition, as `kafka-consumer-groups` computes it: offsets
/// outside `[earliest, latest]` are clamped to the nearest end (the tool warns and clamps).
pub fn reset_target(to: &ResetTo, inputs: ResetInputs) -> i64 {
    let clamp = |offset: i64| offset.clamp(inputs.earliest, inputs.latest.max(inputs.earliest));
    match *to {
        ResetTo::Earliest => inputs.earliest,
        ResetTo::Latest => inputs.latest,
        ResetTo::Offset(offset) => clamp(offset),
        ResetTo::Timestamp(_) => inputs.for_timestamp.unwrap_or(inputs.latest),
        ResetTo::ShiftBy(delta) => clamp(
            inputs
                .committed
                .unwrap_or(inputs.latest)
                .saturating_add(delta),
        ),
        ResetTo::Current => inputs.committed.map_or(inputs.latest, clamp),
    }
}

/// Whether a group in `state` may have its offsets reset: only when no member is in it, as
/// `kafka-consumer-groups` requires ("Empty", or "Dead" for a group that does not exist).
pub fn check_reset_allowed(group: &str, state: &str) -> Result<(), String> {
    match state {
        "Empty" | "Dead" | "" => Ok(()),
        other => Err(format!(
            "assignments can only be reset if the group '{group}' is inactive, but the current state is {other}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(partition: i32) -> TopicPartition {
        TopicPartition::new("t", partition)
    }

    #[test]
    fn lag_is_end_minus_committed_and_unknown_without_a_commit() {
        let committed = BTreeMap::from([(tp(0), 4), (tp(1), 10), (tp(3), -1)]);
        let ends = BTreeMap::from([(tp(0), 10), (tp(1), 7), (tp(2), 5), (tp(3), 2)]);
        let lag: Vec<(i32, Option<i64>, Option<i64>)> = compute_lag(&committed, &ends)
            .into_iter()
            .map(|l| (l.partition.partition, l.committed, l.lag))
            .collect();
        assert_eq!(
            lag,
            vec![
                (0, Some(4), Some(6)),
                // Committed past the end (records deleted or truncated): no negative lag.
                (1, Some(10), Some(0)),
                (2, None, None),
                (3, None, None),
            ]
        );
    }

    #[test]
    fn resets_follow_kafka_consumer_groups() {
        let inputs = ResetInputs {
            earliest: 5,
            latest: 20,
            for_timestamp: Some(12),
            committed: Some(8),
        };
        assert_eq!(reset_target(&ResetTo::Earliest, inputs), 5);
        assert_eq!(reset_target(&ResetTo::Latest, inputs), 20);
        assert_eq!(reset_target(&ResetTo::Offset(15), inputs), 15);
        assert_eq!(reset_target(&ResetTo::Offset(2), inputs), 5);
        assert_eq!(reset_target(&ResetTo::Offset(i64::MAX), inputs), 20);
        assert_eq!(reset_target(&ResetTo::Timestamp(1), inputs), 12);
        let none_that_recent = ResetInputs {
            for_timestamp: None,
            ..inputs
        };
        assert_eq!(reset_target(&ResetTo::Timestamp(9), none_that_recent), 20);
        assert_eq!(reset_target(&ResetTo::ShiftBy(-100), inputs), 5);
        assert_eq!(reset_target(&ResetTo::ShiftBy(3), inputs), 11);
        assert_eq!(reset_target(&ResetTo::ShiftBy(i64::MAX), inputs), 20);
        assert_eq!(reset_target(&ResetTo::Current, inputs), 8);
    }

    #[test]
    fn resets_need_an_inactive_group_and_retries_follow_the_code() {
        assert!(check_reset_allowed("g", "Empty").is_ok());
        assert!(check_reset_allowed("g", "Dead").is_ok());
        let refused = check_reset_allowed("g", "Stable").expect_err("active");
        assert!(refused.contains("Stable"), "{refused}");
        assert_eq!(
            retry_action(ErrorCode::NotController),
            RetryAction::RefreshMetadata
        );
        assert_eq!(
            retry_action(ErrorCode::NotCoordinator),
            RetryAction::FindCoordinator
        );
        assert_eq!(
            retry_action(ErrorCode::CoordinatorLoadInProgress),
            RetryAction::Backoff
        );
        assert_eq!(
            retry_action(ErrorCode::RequestTimedOut),
            RetryAction::Backoff
        );
        assert_eq!(
            retry_action(ErrorCode::TopicAlreadyExists),
            RetryAction::Fail
        );
        assert_eq!(
            retry_action(ErrorCode::InvalidPartitions),
            RetryAction::Fail
        );
    }
}
