//! The consumer: reads records of the partitions a consumer group assigns it
//! ([`Consumer::subscribe`], with a `group.id`), or of partitions it is given
//! ([`Consumer::assign`], as the Java consumer's `assign`).
//!
//! # In a group
//!
//! ```no_run
//! # async fn example() -> Result<(), franzy::Error> {
//! use franzy::{Config, Consumer};
//!
//! let config = Config::new("localhost:9092")
//!     .group_id("orders-audit")
//!     .enable_auto_commit(false);
//! let consumer = Consumer::new(config)?;
//! consumer.subscribe(["orders"])?;
//! while let Some(record) = consumer.recv().await? {
//!     println!("{}/{} at {}", record.topic, record.partition, record.offset);
//!     // At least once: commit what was handed out, after processing it.
//!     consumer.commit().await?;
//! }
//! # Ok(())
//! # }
//! ```
//!
//! The group's own task heartbeats, joins and syncs; rebalance steps (revoking, losing,
//! assigning partitions) run inside `recv`, with the [`RebalanceListener`] given to
//! [`ConsumerBuilder::rebalance_listener`]. While a revoke callback runs, no record of a
//! revoked partition is handed out, and it can commit through its [`ConsumerHandle`]. New
//! partitions start at their committed offset, else at `auto.offset.reset`. With
//! `enable.auto.commit` (the default), the positions of records already handed out are
//! committed every `auto.commit.interval.ms`, before partitions are revoked, and on close:
//! at least once. An application that does not call `recv` for `max.poll.interval.ms`
//! leaves the group; the next `recv` returns [`Error::PollIntervalExceeded`] and rejoins.
//!
//! # Manual assignment
//!
//! ```no_run
//! # async fn example() -> Result<(), franzy::Error> {
//! use franzy::consumer::{Consumer, Offset};
//! use franzy::{Config, OffsetReset, TopicPartition};
//!
//! let config = Config::new("localhost:9092").auto_offset_reset(OffsetReset::Earliest);
//! let consumer = Consumer::new(config)?;
//! consumer.assign(&[TopicPartition::new("orders", 0), TopicPartition::new("orders", 1)])?;
//! consumer.seek(&TopicPartition::new("orders", 1), Offset::At(42))?;
//! loop {
//!     match consumer.recv().await {
//!         Ok(Some(record)) => println!("{} {:?}", record.offset, record.value),
//!         // Closed (by `close`, from another task).
//!         Ok(None) => break,
//!         // A partition stopped by an error: `error.partition()` says which; a seek
//!         // restarts it. Or a broker unreachable for a while: told once, the consumer
//!         // keeps trying.
//!         Err(error) if !error.is_fatal() => eprintln!("{error}"),
//!         Err(error) => return Err(error),
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Every method takes `&self`, so one task can pause, resume, seek or reassign while another
//! waits in [`Consumer::recv`] (share the consumer in an `Arc`). [`Consumer::recv`] returns
//! records only; with `enable.partition.eof`, [`Consumer::recv_event`] also returns
//! [`ConsumerEvent::PartitionEof`] when a partition's end is reached.
//!
//! A background task fetches ahead of `recv` into a bounded buffer; `recv` hands out what is
//! buffered, waiting only when nothing is. Records of one partition come in offset order,
//! without gaps other than those of the log (compaction, transaction markers) and without
//! duplicates, across leader changes and reconnections. Errors that concern one partition
//! ([`Error::OffsetOutOfRange`] with `auto.offset.reset=none`, [`Error::CorruptRecord`], a
//! non-retriable [`Error::Partition`]) come out of `recv` in that partition's place in the
//! stream, once, naming it ([`Error::partition`]); the partition then stays stopped until
//! [`Consumer::seek`] moves it, while the others go on.
//!
//! Brokers that do not answer are retried with backoff (`reconnect.backoff.ms` doubling up
//! to `reconnect.backoff.max.ms`), each failure logged at warn level. Once a broker's
//! requests have failed for `reconnect.backoff.max.ms` with nothing answered in between,
//! `recv` returns [`Error::BrokerUnreachable`] once (or [`Error::AllBrokersDown`] when no
//! broker answers metadata requests while a partition's leader is unknown, as at bootstrap);
//! both are retriable, the consumer keeps trying, and the next `recv` returns records again
//! once the brokers answer.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::task::JoinHandle;

use crate::assignor::PartitionAssignor;
use crate::builder::ClientBuilder;
use crate::config::Config;
use crate::engine::fetcher::{Fetcher, FetcherConfig};
use crate::engine::group::assignor::built_in;
use crate::engine::group::{GroupConfig, GroupEngine};
use crate::error::Error;
use crate::group_metadata::ConsumerGroupMetadata;
use crate::io::cluster::{ClientStart, ClusterClient};
use crate::io::fetch_loop::{self, Shared};
use crate::io::group_loop;
use crate::io::stats_loop;
use crate::topic_partition::TopicPartition;

pub(crate) mod group;

pub use crate::engine::group::OffsetAndMetadata;
pub use crate::record::{ConsumerEvent, ConsumerRecord, Header, Offset, TimestampType};
pub use group::{CallbackFuture, ConsumerHandle, RebalanceListener};

/// Builds a [`Consumer`] with a custom transport or seed.
pub type ConsumerBuilder = ClientBuilder<Consumer>;

impl ClientBuilder<Consumer> {
    /// The callbacks run around rebalances (see [`RebalanceListener`]). Default: none
    /// (with `enable.auto.commit`, positions are still committed before partitions go).
    pub fn rebalance_listener(mut self, listener: impl RebalanceListener) -> Self {
        self.listener = Some(Arc::new(listener));
        self
    }

    /// The assignors this member offers the group, in order of preference, replacing
    /// `partition.assignment.strategy` (built-in ones, or your own [`PartitionAssignor`]).
    pub fn assignors(mut self, assignors: Vec<Box<dyn PartitionAssignor>>) -> Self {
        self.assignors = Some(assignors);
        self
    }

    /// Validates the configuration (as [`Config::validate`], and `fetch.max.wait.ms` below
    /// `request.timeout.ms`) and starts the consumer's background tasks (one fetching, and
    /// with a `group.id` one for the group). Must be called within a tokio runtime.
    pub fn build(self) -> Result<Consumer, Error> {
        if self.config.fetch_max_wait >= self.config.request_timeout {
            // A long poll would outlast its own request and break the connection.
            return Err(Error::config(
                "fetch.max.wait.ms",
                "must be less than request.timeout.ms",
            ));
        }
        let fetcher_config = FetcherConfig::from_config(&self.config);
        let group_config = GroupConfig::from_config(&self.config);
        let assignors = match self.assignors {
            Some(assignors) => assignors,
            None => self
                .config
                .assignment_strategy
                .iter()
                .filter_map(|name| built_in(name))
                .collect(),
        };
        let interval = self.config.statistics_interval;
        let ClientStart {
            runtime,
            seed,
            cluster,
        } = ClusterClient::start("consumer", self.config, self.connector, self.seed)?;
        let fetcher = Fetcher::new(fetcher_config, seed);
        let group = group_config
            .map(|config| GroupEngine::new(config, assignors, seed))
            .transpose()?;
        let has_group = group.is_some();
        let group_shared = group::GroupShared {
            listener: self.listener,
            ..Default::default()
        };
        let shared = Arc::new(Shared::new(fetcher, group, group_shared, cluster));
        // The statistics task holds the consumer weakly: it ends with it, or at `close`.
        let weak = Arc::downgrade(&shared);
        let _detached = stats_loop::spawn(
            &runtime,
            interval,
            self.on_statistics,
            move || {
                let shared = weak.upgrade()?;
                let open = !shared.lock().closed;
                open.then(|| stats_of(&shared))
            },
            tracing::debug_span!("consumer_stats"),
        );
        let span = tracing::debug_span!("consumer");
        let driver = runtime.spawn(tracing::Instrument::instrument(
            fetch_loop::run(shared.clone()),
            span,
        ));
        let group_driver = has_group.then(|| {
            let span = tracing::debug_span!("consumer_group");
            runtime.spawn(tracing::Instrument::instrument(
                group_loop::run(shared.clone(), seed),
                span,
            ))
        });
        Ok(Consumer {
            shared,
            driver: Mutex::new(Some(driver)),
            group_driver: Mutex::new(group_driver),
        })
    }
}

/// A Kafka consumer: in a group ([`Consumer::subscribe`]) or with manual assignment
/// ([`Consumer::assign`]). See the [module](self) documentation.
///
/// Every method takes `&self`: share it in an `Arc` to pause, resume or seek from one task
/// while another waits in [`Consumer::recv`]. Also a [`futures_core::Stream`] of records
/// (as `recv`, ending once closed), by value and by reference.
pub struct Consumer {
    shared: Arc<Shared>,
    driver: Mutex<Option<JoinHandle<()>>>,
    group_driver: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("cluster", &self.shared.cluster)
            .finish()
    }
}

impl Consumer {
    /// A consumer that reaches the brokers over TCP. Must be called within a tokio runtime.
    pub fn new(config: Config) -> Result<Self, Error> {
        Self::builder(config).build()
    }

    /// A builder, for a custom [`Connector`](crate::transport::Connector) or seed.
    pub fn builder(config: Config) -> ConsumerBuilder {
        ClientBuilder::new(config)
    }

    /// The number of partitions of `topic`, from the cluster's metadata (waiting up to
    /// `request.timeout.ms` for a topic that does not exist yet to appear).
    pub async fn partitions_for(&self, topic: &str) -> Result<usize, Error> {
        let timeout = self.shared.cluster.config().request_timeout;
        self.shared.cluster.partitions_for(topic, timeout).await
    }

    /// Replaces the assignment. Partitions that were already assigned keep their position
    /// and buffered records; new ones start at their committed offset when the consumer has
    /// a `group.id` (Java's "manual assignment with commits"), else (or without one) at
    /// `auto.offset.reset`, unless [`Consumer::seek`] says otherwise before the first
    /// fetch. A topic or partition that does not exist is waited for (the metadata is
    /// refreshed with backoff), as the Java consumer does. Errors while subscribed.
    pub fn assign(&self, partitions: &[TopicPartition]) -> Result<(), Error> {
        if let Some(tp) = partitions
            .iter()
            .find(|tp| tp.topic.is_empty() || tp.partition < 0)
        {
            return Err(Error::InvalidArgument(format!(
                "cannot assign {tp:?}: empty topic or negative partition"
            )));
        }
        {
            let mut state = self.shared.lock();
            let state = &mut *state;
            match state.group.as_mut() {
                Some(group) if group.is_subscribed() => {
                    return Err(Error::InvalidArgument(
                        "assign is not possible while subscribed (unsubscribe first)".into(),
                    ));
                }
                Some(group) => {
                    state.fetcher.assign_from_group(partitions);
                    group.fetch_start_positions(state.fetcher.awaiting_committed());
                    self.shared.group_wake.notify_one();
                }
                None => state.fetcher.assign(partitions),
            }
            let mut metadata = self.shared.cluster.metadata();
            for topic in state.fetcher.topics() {
                metadata.want(&topic);
            }
        }
        self.shared.wake_driver();
        Ok(())
    }

    /// Joins the consumer's group (`group.id`) subscribed to `topics`, replacing any
    /// subscription; the group assigns the partitions, `recv` runs the rebalances. Errors
    /// without a `group.id`, or with an empty topic name.
    pub fn subscribe<T: AsRef<str>>(
        &self,
        topics: impl IntoIterator<Item = T>,
    ) -> Result<(), Error> {
        let topics: Vec<String> = topics.into_iter().map(|t| t.as_ref().to_string()).collect();
        if topics.iter().any(String::is_empty) {
            return Err(Error::InvalidArgument(
                "cannot subscribe to an empty topic name".into(),
            ));
        }
        self.with_group(|group| {
            group.subscribe(topics);
            Ok(())
        })
    }

    /// Joins the group subscribed to every topic whose whole name matches the regular
    /// expression `pattern` (Rust `regex` syntax), including topics created later (found by
    /// metadata refreshes, every `metadata.max.age.ms`); internal topics are left out.
    pub fn subscribe_pattern(&self, pattern: &str) -> Result<(), Error> {
        self.with_group(|group| group.subscribe_pattern(pattern))
    }

    /// Leaves the group: the partitions are revoked (callbacks run in `recv`), a dynamic
    /// member sends LeaveGroup.
    pub fn unsubscribe(&self) -> Result<(), Error> {
        self.with_group(|group| {
            group.unsubscribe();
            Ok(())
        })
    }

    /// The subscribed topics (for a pattern, those matched so far).
    pub fn subscription(&self) -> Vec<String> {
        self.shared
            .lock()
            .group
            .as_ref()
            .map(GroupEngine::subscription)
            .unwrap_or_default()
    }

    fn with_group<R>(
        &self,
        f: impl FnOnce(&mut GroupEngine) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let result = {
            let mut state = self.shared.lock();
            let group = state
                .group
                .as_mut()
                .ok_or_else(|| Error::InvalidArgument("subscribing needs a group.id".into()))?;
            f(group)?
        };
        self.shared.group_wake.notify_one();
        self.shared.wake_driver();
        Ok(result)
    }

    /// A handle for commits, positions and seeks from other tasks (what rebalance
    /// callbacks get).
    pub fn handle(&self) -> ConsumerHandle {
        ConsumerHandle {
            shared: self.shared.clone(),
        }
    }

    /// Commits the consumed positions (the offset after the last record handed out, for
    /// every assigned partition) and waits for the coordinator, up to
    /// `default.api.timeout.ms`. [`Error::CommitFailed`] if the group has moved on.
    pub async fn commit(&self) -> Result<(), Error> {
        self.handle().commit().await
    }

    /// Commits `offsets` (each the offset of the next record to read, with optional
    /// metadata and leader epoch) and waits, as [`Consumer::commit`].
    pub async fn commit_offsets(
        &self,
        offsets: impl IntoIterator<Item = (TopicPartition, OffsetAndMetadata)>,
    ) -> Result<(), Error> {
        self.handle().commit_offsets(offsets).await
    }

    /// Commits the consumed positions without waiting (not retried, as Java's
    /// `commitAsync`); the future tells the outcome and may be dropped.
    pub fn commit_async(&self) -> impl std::future::Future<Output = Result<(), Error>> + Send {
        self.handle().commit_async()
    }

    /// As [`Consumer::commit_async`], for explicit offsets.
    pub fn commit_offsets_async(
        &self,
        offsets: impl IntoIterator<Item = (TopicPartition, OffsetAndMetadata)>,
    ) -> impl std::future::Future<Output = Result<(), Error>> + Send {
        self.handle().commit_offsets_async(offsets)
    }

    /// The group's committed offsets of `partitions` (`None` where there is none).
    pub async fn committed(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<std::collections::BTreeMap<TopicPartition, Option<OffsetAndMetadata>>, Error> {
        self.handle().committed(partitions).await
    }

    /// Records of `tp` not handed out yet: the end of the log (the high watermark, or the
    /// last stable offset with `read_committed`) as the last fetch saw it, minus the
    /// position; `None` until both are known.
    pub fn lag(&self, tp: &TopicPartition) -> Option<i64> {
        self.shared.lock().fetcher.lag(tp)
    }

    /// The member's group id, generation, member id and instance id (Java's
    /// `groupMetadata()`), for a transactional producer's `send_offsets_to_transaction`;
    /// `None` without a `group.id`.
    pub fn consumer_group_metadata(&self) -> Option<ConsumerGroupMetadata> {
        self.handle().consumer_group_metadata()
    }

    /// Drops the whole assignment and everything buffered.
    pub fn unassign(&self) {
        self.shared.lock().fetcher.assign(&[]);
        self.shared.wake_driver();
    }

    /// The assigned partitions, in the order given to [`Consumer::assign`].
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.shared.lock().fetcher.assignment()
    }

    /// Moves the position of an assigned partition: records buffered for it are dropped and
    /// the next one `recv` returns from it is at `offset`. [`Offset::Beginning`],
    /// [`Offset::End`] and [`Offset::Timestamp`] are looked up by the background task;
    /// [`Consumer::position`] is `None` until then. Also restarts a partition stopped by an
    /// error. Errors: [`Error::UnknownPartition`] if `tp` is not assigned,
    /// [`Error::InvalidArgument`] for a negative [`Offset::At`].
    pub fn seek(&self, tp: &TopicPartition, offset: Offset) -> Result<(), Error> {
        self.shared.lock().fetcher.seek(tp, offset)?;
        self.shared.wake_driver();
        Ok(())
    }

    /// The offset of the next record `recv` returns from `tp`; `None` if `tp` is not
    /// assigned or its position is still being looked up.
    pub fn position(&self, tp: &TopicPartition) -> Option<i64> {
        self.shared.lock().fetcher.position(tp)
    }

    /// Log start offset and high watermark of `tp` as the last fetch saw them.
    pub fn watermarks(&self, tp: &TopicPartition) -> Option<(i64, i64)> {
        self.shared.lock().fetcher.watermarks(tp)
    }

    /// Stops fetching `partitions`; records already buffered for them are held back (not
    /// dropped) until [`Consumer::resume`]. Errors with [`Error::UnknownPartition`], changing
    /// nothing, if one is not assigned. A `recv` waiting in another task keeps waiting for
    /// the other partitions.
    pub fn pause(&self, partitions: &[TopicPartition]) -> Result<(), Error> {
        self.shared.lock().fetcher.pause(partitions)?;
        self.shared.wake_driver();
        Ok(())
    }

    /// Undoes [`Consumer::pause`]; a `recv` waiting in another task gets the records held
    /// back.
    pub fn resume(&self, partitions: &[TopicPartition]) -> Result<(), Error> {
        let state = {
            let mut state = self.shared.lock();
            state.fetcher.resume(partitions)?;
            state
        };
        // Records held back may be ready at once.
        fetch_loop::wake_user(state);
        self.shared.wake_driver();
        Ok(())
    }

    /// The paused partitions.
    pub fn paused(&self) -> Vec<TopicPartition> {
        self.shared.lock().fetcher.paused()
    }

    /// The next record, waiting until there is one; `None` once the consumer is closed.
    /// Partition errors and outages ([`Error::BrokerUnreachable`], [`Error::AllBrokersDown`]:
    /// retriable, once per failure episode, see the [module](self) documentation) come out
    /// as `Err`, once each; the consumer goes on after them. End-of-partition events are
    /// never returned here (see [`Consumer::recv_event`]). Cancel-safe: dropping the future
    /// loses nothing.
    pub async fn recv(&self) -> Result<Option<ConsumerRecord>, Error> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The next record or end-of-partition event (with `enable.partition.eof`), waiting
    /// until there is one; `None` once the consumer is closed. Errors as [`Consumer::recv`].
    pub async fn recv_event(&self) -> Result<Option<ConsumerEvent>, Error> {
        poll_fn(|cx| self.poll_recv_event(cx)).await
    }

    /// A snapshot of the consumer's statistics: records and bytes handed out, requests and
    /// their latency, errors by class, per broker, and per assigned partition its position
    /// and lag, and the group's committed offset as this member last committed or looked
    /// it up (see [`crate::stats`] for the fields and the JSON schema).
    pub fn stats(&self) -> crate::stats::Stats {
        stats_of(&self.shared)
    }

    /// The polling form of [`Consumer::recv`].
    pub fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Result<Option<ConsumerRecord>, Error>> {
        self.poll_next(cx, true).map(|event| {
            event.map(|event| match event {
                Some(ConsumerEvent::Record(record)) => Some(record),
                // Left out by `poll_next`.
                _ => None,
            })
        })
    }

    /// The polling form of [`Consumer::recv_event`].
    pub fn poll_recv_event(
        &self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<ConsumerEvent>, Error>> {
        self.poll_next(cx, false)
    }

    /// The next event (records only if `records_only`), `Ok(None)` once closed. One lock
    /// per record on the common path; rebalance steps and group errors take the slow path
    /// only when the group engine has some.
    #[inline]
    fn poll_next(
        &self,
        cx: &mut Context<'_>,
        records_only: bool,
    ) -> Poll<Result<Option<ConsumerEvent>, Error>> {
        let next = self.poll_next_uncounted(cx, records_only);
        let stats = self.shared.cluster.stats();
        match &next {
            Poll::Ready(Ok(Some(ConsumerEvent::Record(record)))) => {
                let len = |b: Option<&bytes::Bytes>| b.map_or(0, |b| b.len() as u64);
                let headers: u64 = record
                    .headers
                    .iter()
                    .map(|h| h.key.len() as u64 + len(h.value.as_ref()))
                    .sum();
                stats.records(
                    1,
                    len(record.key.as_ref()) + len(record.value.as_ref()) + headers,
                );
            }
            Poll::Ready(Err(error)) => stats.error(crate::stats::error_class(error)),
            _ => {}
        }
        next
    }

    #[inline]
    fn poll_next_uncounted(
        &self,
        cx: &mut Context<'_>,
        records_only: bool,
    ) -> Poll<Result<Option<ConsumerEvent>, Error>> {
        let mut steps_done = false;
        loop {
            let mut state = self.shared.lock();
            if state.closed {
                return Poll::Ready(Ok(None));
            }
            if let Some(group) = state.group.as_mut() {
                // Entering recv: a member that left because max.poll.interval.ms passed
                // learns it now, before anything is handed out (the error is reported
                // after its partitions are lost, and none of their records comes out).
                group.handle_poll(tokio::time::Instant::now().into_std(), true);
                let attention = self.shared.group.step_running() || group.needs_attention();
                if attention && !steps_done {
                    drop(state);
                    steps_done = true;
                    // Rebalance steps first: their callbacks run here, as Java runs them
                    // in poll.
                    let now = tokio::time::Instant::now().into_std();
                    if group::poll_steps(&self.shared, cx).is_pending() {
                        self.note_poll(now, true);
                        return Poll::Pending;
                    }
                    let error = self
                        .shared
                        .lock()
                        .group
                        .as_mut()
                        .and_then(GroupEngine::poll_error);
                    if let Some(error) = error {
                        self.note_poll(now, false);
                        return Poll::Ready(Err(error));
                    }
                    continue;
                }
            }
            let event = loop {
                match state.fetcher.poll_event() {
                    // End-of-partition events are for `recv_event` only.
                    Some(Ok(ConsumerEvent::PartitionEof { .. })) if records_only => continue,
                    event => break event,
                }
            };
            let freed = state.fetcher.poll_space_freed();
            let poll = match event {
                Some(event) => Poll::Ready(event.map(Some)),
                None => {
                    state.register(cx.waker());
                    Poll::Pending
                }
            };
            if let Some(group) = state.group.as_mut() {
                // The max.poll.interval.ms clock: waiting in recv counts as polling.
                group.handle_poll(tokio::time::Instant::now().into_std(), poll.is_pending());
            }
            drop(state);
            if freed {
                self.shared.wake_driver();
            }
            return poll;
        }
    }

    /// Tells the group when the application entered or left `recv`.
    fn note_poll(&self, now: std::time::Instant, waiting: bool) {
        if let Some(group) = self.shared.lock().group.as_mut() {
            group.handle_poll(now, waiting);
        }
    }

    /// Closes the consumer; buffered records are dropped. In a group: the owned partitions
    /// are revoked (the listener's `on_partitions_revoked` runs, and with
    /// `enable.auto.commit` the consumed positions are committed first), then a dynamic
    /// member leaves the group (a static one stays until `session.timeout.ms`, so that a
    /// restart causes no rebalance, KIP-345). A `recv` waiting in another task returns
    /// `None`, as does every later one.
    pub async fn close(&self) {
        self.leave_group().await;
        self.shared.close();
        for driver in [&self.driver, &self.group_driver] {
            let driver = driver
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .take();
            if let Some(driver) = driver {
                let _ = tokio::time::timeout(fetch_loop::CLOSE_TIMEOUT, driver).await;
            }
        }
    }

    /// The group part of `close`, as Java's `onLeavePrepare`: the owned partitions are
    /// revoked (with the commit of `enable.auto.commit`) while the member is in its
    /// generation, or lost when a rebalance is under way; manual assignment commits.
    async fn leave_group(&self) {
        let (owned, subscribed, auto_commit, in_generation) = {
            let state = self.shared.lock();
            let Some(group) = state.group.as_ref() else {
                return;
            };
            if state.closed {
                return;
            }
            (
                group.owned().to_vec(),
                group.is_subscribed(),
                group.config().auto_commit,
                group.in_generation(),
            )
        };
        let handle = self.handle();
        if subscribed && !owned.is_empty() {
            self.shared.lock().fetcher.hold(&owned);
            let event = if in_generation {
                crate::engine::group::GroupEvent::Revoke(owned)
            } else {
                crate::engine::group::GroupEvent::Lose(owned)
            };
            handle.callback(&event).await;
        } else if auto_commit && !subscribed {
            if let Err(error) = handle.commit().await {
                tracing::warn!(%error, "the commit on close failed");
            }
        }
        let leaving = self
            .shared
            .lock()
            .group
            .as_mut()
            .is_some_and(GroupEngine::close);
        self.shared.group_wake.notify_one();
        if leaving {
            let deadline =
                tokio::time::Instant::now() + self.shared.cluster.config().request_timeout;
            while tokio::time::Instant::now() < deadline
                && self
                    .shared
                    .lock()
                    .group
                    .as_ref()
                    .is_some_and(GroupEngine::is_leaving)
            {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

impl futures_core::Stream for Consumer {
    type Item = Result<ConsumerRecord, Error>;

    /// Yields what [`Consumer::recv`] returns; ends once the consumer is closed.
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_recv(cx).map(Result::transpose)
    }
}

impl futures_core::Stream for &Consumer {
    type Item = Result<ConsumerRecord, Error>;

    /// As the stream of an owned consumer, through a shared one.
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.poll_recv(cx).map(Result::transpose)
    }
}

/// The snapshot of [`Consumer::stats`]: the shared counters, and per assigned partition
/// what the fetcher and the group member know.
fn stats_of(shared: &Shared) -> crate::stats::Stats {
    let mut stats = shared.cluster.stats().snapshot();
    stats.kind = "consumer";
    stats
        .client_id
        .clone_from(&shared.cluster.config().client_id);
    let state = shared.lock();
    for tp in state.fetcher.assignment() {
        let committed = state.group.as_ref().and_then(|g| g.seen_committed(&tp));
        let entry = stats.partitions.entry(tp.clone()).or_default();
        entry.position = state.fetcher.position(&tp);
        entry.lag = state.fetcher.lag(&tp);
        entry.committed = committed;
    }
    stats
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.shared.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn building_needs_a_tokio_runtime() {
        let result = Consumer::new(Config::new("localhost:9092"));
        assert!(
            matches!(result, Err(Error::InvalidArgument(_))),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn the_long_poll_must_end_before_the_request_times_out() {
        let config = Config::new("localhost:9092")
            .fetch_max_wait(Duration::from_secs(30))
            .request_timeout(Duration::from_secs(30));
        let result = Consumer::new(config);
        assert!(
            matches!(&result, Err(Error::Config { key, .. }) if key == "fetch.max.wait.ms"),
            "{result:?}"
        );
        let result = Consumer::new(Config::new("not an address"));
        assert!(matches!(result, Err(Error::Config { .. })), "{result:?}");
        let consumer = Consumer::new(Config::new("localhost:9092")).expect("valid");
        consumer.close().await;
    }
}
