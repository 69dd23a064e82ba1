//! The consumer's group side: the rebalance listener, the handle its callbacks get, commits
//! and committed-offset lookups, and how `recv` runs the rebalance steps.
//!
//! A rebalance step ([`GroupEvent`]) runs inside `recv`, as Java runs its listener inside
//! `poll`: records of partitions being revoked stop at once (what was buffered for them is
//! dropped, their positions stay at the last record handed out), the listener's future is
//! polled by `recv` until it completes, and only then does the step finish (the partitions
//! leave the fetcher; the group engine goes on to JoinGroup). Heartbeats meanwhile come from
//! the group's own task. With `enable.auto.commit`, the consumed positions are committed
//! before `on_partitions_revoked` runs.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use tokio::sync::oneshot;

use crate::engine::group::{Committed, GroupEvent, OffsetAndMetadata, Token};
use crate::error::Error;
use crate::group_metadata::ConsumerGroupMetadata;
use crate::io::fetch_loop::{self, Shared};
use crate::topic_partition::TopicPartition;

/// The future a [`RebalanceListener`] callback returns.
pub type CallbackFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Callbacks around rebalances (Java's `ConsumerRebalanceListener`), registered with
/// [`ConsumerBuilder::rebalance_listener`](crate::ConsumerBuilder::rebalance_listener).
///
/// Each runs inside the `recv` call that reaches the rebalance step, and `recv` hands out
/// nothing until it completes; heartbeats go on meanwhile. A callback gets a
/// [`ConsumerHandle`] that can commit, seek and read positions; it must not call `recv`.
/// Every method has a default that does nothing (`on_partitions_lost` defaults to
/// `on_partitions_revoked`, as in Java).
pub trait RebalanceListener: Send + Sync + 'static {
    /// `partitions` are being taken from this member. No record of them is handed out
    /// any more; their positions are still readable and committable (commit here to keep
    /// what was processed).
    fn on_partitions_revoked(
        &self,
        consumer: ConsumerHandle,
        partitions: Vec<TopicPartition>,
    ) -> CallbackFuture {
        let _ = (consumer, partitions);
        Box::pin(std::future::ready(()))
    }

    /// `partitions` were assigned to this member (for the cooperative protocol, only the
    /// new ones, possibly none). A seek here decides where they start; otherwise they start
    /// at their committed offset, or `auto.offset.reset`.
    fn on_partitions_assigned(
        &self,
        consumer: ConsumerHandle,
        partitions: Vec<TopicPartition>,
    ) -> CallbackFuture {
        let _ = (consumer, partitions);
        Box::pin(std::future::ready(()))
    }

    /// `partitions` were lost: the member was removed from the group (a session timeout,
    /// the poll interval exceeded), and other members may own them already; commits for
    /// them would be refused.
    fn on_partitions_lost(
        &self,
        consumer: ConsumerHandle,
        partitions: Vec<TopicPartition>,
    ) -> CallbackFuture {
        self.on_partitions_revoked(consumer, partitions)
    }
}

/// What the consumer keeps for its group outside the state lock.
#[derive(Default)]
pub(crate) struct GroupShared {
    pub(crate) listener: Option<Arc<dyn RebalanceListener>>,
    /// The rebalance step `recv` is running, with its callback.
    pub(crate) running: Mutex<Option<(GroupEvent, CallbackFuture)>>,
    /// Whether `running` holds a step (read without its lock on every `recv`).
    pub(crate) running_flag: AtomicBool,
    pub(crate) commits: Mutex<HashMap<Token, oneshot::Sender<Result<(), Error>>>>,
    pub(crate) lookups: Mutex<HashMap<Token, oneshot::Sender<Result<Committed, Error>>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl GroupShared {
    /// Whether a rebalance step's callback is running.
    pub(crate) fn step_running(&self) -> bool {
        self.running_flag.load(Ordering::Acquire)
    }

    /// Completes the waiters of finished commits and lookups.
    pub(crate) fn deliver(
        &self,
        commits: Vec<(Token, Result<(), Error>)>,
        lookups: Vec<(Token, Result<Committed, Error>)>,
    ) {
        if !commits.is_empty() {
            let mut waiters = lock(&self.commits);
            for (token, result) in commits {
                if let Some(waiter) = waiters.remove(&token) {
                    let _ = waiter.send(result);
                }
            }
        }
        if !lookups.is_empty() {
            let mut waiters = lock(&self.lookups);
            for (token, result) in lookups {
                if let Some(waiter) = waiters.remove(&token) {
                    let _ = waiter.send(result);
                }
            }
        }
    }
}

/// A handle on a consumer for rebalance callbacks (and any task): commits, lookups,
/// positions and seeks, without `recv`. Cheap to clone.
#[derive(Clone)]
pub struct ConsumerHandle {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for ConsumerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerHandle").finish_non_exhaustive()
    }
}

fn no_group() -> Error {
    Error::InvalidArgument("the consumer has no group.id: nothing can be committed".into())
}

impl ConsumerHandle {
    /// Commits the position of every assigned partition that has one (the offset after
    /// the last record handed out), and waits until the coordinator accepted it or
    /// `default.api.timeout.ms` passed. Retriable errors are retried meanwhile; a commit
    /// from a member no longer in the group's generation fails with
    /// [`Error::CommitFailed`].
    pub async fn commit(&self) -> Result<(), Error> {
        let offsets = self.consumed_offsets()?;
        self.commit_offsets(offsets).await
    }

    /// Commits `offsets` (with metadata and leader epochs), waiting as [`ConsumerHandle::commit`].
    pub async fn commit_offsets(
        &self,
        offsets: impl IntoIterator<Item = (TopicPartition, OffsetAndMetadata)>,
    ) -> Result<(), Error> {
        let offsets: Vec<(TopicPartition, OffsetAndMetadata)> = offsets.into_iter().collect();
        let timeout = self.shared.cluster.config().default_api_timeout;
        let answer = self.queue_commit(offsets, Some(timeout))?;
        match tokio::time::timeout(timeout + std::time::Duration::from_secs(1), answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(Error::Closed),
            Err(_) => Err(Error::CommitFailed {
                code: None,
                reason: format!("no answer within default.api.timeout.ms ({timeout:?})"),
            }),
        }
    }

    /// Commits the consumed positions without waiting (sent once, not retried, as Java's
    /// `commitAsync`); the returned future tells the outcome and may be dropped.
    pub fn commit_async(&self) -> impl Future<Output = Result<(), Error>> + Send + 'static {
        let queued = self
            .consumed_offsets()
            .and_then(|offsets| self.queue_commit(offsets, None));
        async move {
            match queued?.await {
                Ok(result) => result,
                Err(_) => Err(Error::Closed),
            }
        }
    }

    /// As [`ConsumerHandle::commit_async`], for explicit offsets.
    pub fn commit_offsets_async(
        &self,
        offsets: impl IntoIterator<Item = (TopicPartition, OffsetAndMetadata)>,
    ) -> impl Future<Output = Result<(), Error>> + Send + 'static {
        let queued = self.queue_commit(offsets.into_iter().collect(), None);
        async move {
            match queued?.await {
                Ok(result) => result,
                Err(_) => Err(Error::Closed),
            }
        }
    }

    /// The committed offsets of `partitions` (`None` where there is none), as the
    /// coordinator has them; waits up to `default.api.timeout.ms`.
    pub async fn committed(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, Option<OffsetAndMetadata>>, Error> {
        let timeout = self.shared.cluster.config().default_api_timeout;
        let (sender, answer) = oneshot::channel();
        {
            let mut state = self.shared.lock();
            let now = tokio::time::Instant::now().into_std();
            let group = state.group.as_mut().ok_or_else(no_group)?;
            let token = group.committed(partitions.to_vec(), now + timeout);
            lock(&self.shared.group.lookups).insert(token, sender);
            let results = group.poll_lookup_results();
            drop(state);
            self.shared.group.deliver(Vec::new(), results);
        }
        self.shared.group_wake.notify_one();
        match tokio::time::timeout(timeout + std::time::Duration::from_secs(1), answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(Error::Closed),
            Err(_) => Err(Error::RequestTimeout(timeout)),
        }
    }

    /// The offset of the next record `recv` returns from `tp`; `None` if `tp` is not
    /// assigned or its position is still being looked up.
    pub fn position(&self, tp: &TopicPartition) -> Option<i64> {
        self.shared.lock().fetcher.position(tp)
    }

    /// Records of `tp` not handed out yet: the end of the log (high watermark, or last
    /// stable offset with `read_committed`) as of the last fetch, minus the position.
    pub fn lag(&self, tp: &TopicPartition) -> Option<i64> {
        self.shared.lock().fetcher.lag(tp)
    }

    /// Moves the position of an assigned partition (see
    /// [`Consumer::seek`](crate::Consumer::seek)).
    pub fn seek(&self, tp: &TopicPartition, offset: crate::record::Offset) -> Result<(), Error> {
        self.shared.lock().fetcher.seek(tp, offset)?;
        self.shared.wake_driver();
        Ok(())
    }

    /// The assigned partitions.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.shared.lock().fetcher.assignment()
    }

    /// The member's group, generation and ids, for `send_offsets_to_transaction`; `None`
    /// without a `group.id`.
    pub fn consumer_group_metadata(&self) -> Option<ConsumerGroupMetadata> {
        self.shared
            .lock()
            .group
            .as_ref()
            .map(|group| group.group_metadata())
    }

    fn consumed_offsets(&self) -> Result<Vec<(TopicPartition, OffsetAndMetadata)>, Error> {
        let state = self.shared.lock();
        if state.group.is_none() {
            return Err(no_group());
        }
        Ok(state
            .fetcher
            .consumed_positions()
            .into_iter()
            .map(|(tp, offset)| (tp, OffsetAndMetadata::new(offset)))
            .collect())
    }

    fn queue_commit(
        &self,
        offsets: Vec<(TopicPartition, OffsetAndMetadata)>,
        timeout: Option<std::time::Duration>,
    ) -> Result<oneshot::Receiver<Result<(), Error>>, Error> {
        if let Some((tp, offset)) = offsets.iter().find(|(_, o)| o.offset < 0) {
            return Err(Error::InvalidArgument(format!(
                "cannot commit offset {} for {tp}",
                offset.offset
            )));
        }
        let (sender, answer) = oneshot::channel();
        let mut state = self.shared.lock();
        let now = tokio::time::Instant::now().into_std();
        let group = state.group.as_mut().ok_or_else(no_group)?;
        let token = group.commit(offsets, timeout.map(|t| now + t));
        lock(&self.shared.group.commits).insert(token, sender);
        let results = group.poll_commit_results();
        drop(state);
        self.shared.group.deliver(results, Vec::new());
        self.shared.group_wake.notify_one();
        Ok(answer)
    }

    /// The future of a rebalance step's callback: with auto commit, a commit of the
    /// consumed positions first (its failure is logged: the partitions go anyway).
    pub(crate) fn callback(&self, event: &GroupEvent) -> CallbackFuture {
        let listener = self.shared.group.listener.clone();
        let handle = self.clone();
        let auto_commit = self.shared.cluster.config().enable_auto_commit;
        match event.clone() {
            GroupEvent::Revoke(partitions) => Box::pin(async move {
                if auto_commit {
                    if let Err(error) = handle.commit().await {
                        tracing::warn!(%error, "committing before the partitions are revoked failed");
                    }
                }
                if let Some(listener) = listener {
                    listener.on_partitions_revoked(handle, partitions).await;
                }
            }),
            GroupEvent::Lose(partitions) => match listener {
                Some(listener) => listener.on_partitions_lost(handle, partitions),
                None => Box::pin(std::future::ready(())),
            },
            GroupEvent::Assign { added, .. } => match listener {
                Some(listener) => listener.on_partitions_assigned(handle, added),
                None => Box::pin(std::future::ready(())),
            },
        }
    }
}

/// Runs the rebalance steps for `recv`: `Ready(())` once there is none left to run,
/// `Pending` while a callback is running (it wakes `cx`).
pub(crate) fn poll_steps(shared: &Arc<Shared>, cx: &mut Context<'_>) -> Poll<()> {
    loop {
        {
            let mut running = lock(&shared.group.running);
            if let Some((_, future)) = running.as_mut() {
                if future.as_mut().poll(cx).is_pending() {
                    drop(running);
                    // The callback wakes only the last task that polled it: every task
                    // waiting in `recv` is woken when the step ends (`finish_step`).
                    shared.lock().register(cx.waker());
                    return Poll::Pending;
                }
                let Some((event, _)) = running.take() else {
                    continue;
                };
                shared.group.running_flag.store(false, Ordering::Release);
                drop(running);
                finish_step(shared, event);
                continue;
            }
        }
        let event = {
            let mut state = shared.lock();
            let now = tokio::time::Instant::now().into_std();
            let Some(event) = state.group.as_mut().and_then(|group| group.poll_event(now)) else {
                return Poll::Ready(());
            };
            match &event {
                GroupEvent::Revoke(partitions) | GroupEvent::Lose(partitions) => {
                    state.fetcher.hold(partitions);
                }
                GroupEvent::Assign { assignment, .. } => {
                    state.fetcher.assign_from_group(assignment);
                    let mut metadata = shared.cluster.metadata();
                    for topic in state.fetcher.topics() {
                        metadata.want(&topic);
                    }
                }
            }
            event
        };
        tracing::debug!(?event, "rebalance step");
        let handle = ConsumerHandle {
            shared: shared.clone(),
        };
        let future = handle.callback(&event);
        *lock(&shared.group.running) = Some((event, future));
        shared.group.running_flag.store(true, Ordering::Release);
    }
}

/// A step's callback is done: revoked or lost partitions leave the fetcher, new ones look
/// up their committed offsets.
fn finish_step(shared: &Arc<Shared>, event: GroupEvent) {
    let mut guard = shared.lock();
    let state = &mut *guard;
    let Some(group) = state.group.as_mut() else {
        return;
    };
    group.handle_event_done();
    match event {
        GroupEvent::Revoke(_) | GroupEvent::Lose(_) => {
            state.fetcher.assign_from_group(group.owned());
        }
        GroupEvent::Assign { .. } => {
            group.fetch_start_positions(state.fetcher.awaiting_committed());
        }
    }
    shared.group_wake.notify_one();
    shared.wake_driver();
    // Other tasks waiting in `recv` while the callback ran go on.
    fetch_loop::wake_user(guard);
}
