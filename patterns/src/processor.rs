//! The consumer driver that puts the patterns together: for each record, the handler runs
//! under the retry policy and the circuit breaker; a record that fails for good goes to the
//! next retry topic or to the dead-letter topic (or, if that fails, to the fallback file);
//! its offset is committed only once it is processed or safely somewhere else.
//!
//! ```text
//!  recv ──► due? ──no──► pause partition, seek back, resume when due (Deferred)
//!             │yes
//!             ▼
//!        breaker allows? ──no──► pause all partitions until half-open (or dead-letter)
//!             │yes
//!             ▼
//!        handler ◄── retry (transient, within the policy)
//!         │ok             │gave up
//!         ▼               ▼
//!      commit      transient & next stage? ──yes──► retry topic (acknowledged) ─► commit
//!                         │no
//!                         ▼
//!               dead-letter topic (acknowledged) or fallback file (fsynced) ─► commit
//!               neither: seek back, no commit, Err
//! ```
//!
//! Partitions are never held by sleeping in the poll loop: a record not due yet, or a
//! breaker that is open, pauses partitions and [`Processor::next`] keeps polling the
//! consumer (heartbeats and rebalances go on) until they are resumed. The only sleeps are
//! the in-process retries of one record, bounded by the [`RetryPolicy`].

use std::collections::BTreeMap;
use std::fmt::Display;
use std::future::Future;
use std::time::{SystemTime, UNIX_EPOCH};

use franzy::{Consumer, ConsumerRecord, Offset, OffsetAndMetadata, Producer, TopicPartition};
use tokio::time::Instant;

use crate::circuit_breaker::{BreakerEvent, BreakerState, CircuitBreaker};
use crate::classify::{Classify, ErrorClass};
use crate::dead_letter::{DeadLetterRouter, Failure, Routed};
use crate::retry::{GiveUp, Next, RetryPolicy};
use crate::retry_topic::RetryTopics;
use crate::stats::{Counter, Stats};
use crate::PatternError;

/// Wall-clock time read through tokio's clock: the system time when it was created plus
/// the tokio time elapsed since. Under a paused tokio clock (tests) it is virtual, so
/// retry-topic due times follow the test's time.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    base: SystemTime,
    at: Instant,
}

impl Default for WallClock {
    fn default() -> Self {
        Self::new()
    }
}

impl WallClock {
    /// Starts now.
    pub fn new() -> Self {
        Self {
            base: SystemTime::now(),
            at: Instant::now(),
        }
    }

    /// The current time.
    pub fn now(&self) -> SystemTime {
        self.base + self.at.elapsed()
    }

    /// The current time in ms since the epoch.
    pub fn now_ms(&self) -> i64 {
        let since = self.now().duration_since(UNIX_EPOCH).unwrap_or_default();
        i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
    }
}

/// What an open breaker does to records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenOpen {
    /// Pause every assigned partition until the breaker is half-open (default).
    Pause,
    /// Send each record to the dead-letter topic, as the labs' consumer does.
    DeadLetter,
}

/// What became of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The handler succeeded (after `attempts` attempts); the offset is committed.
    Processed {
        /// Attempts made.
        attempts: u32,
    },
    /// Sent to this retry topic (acknowledged); the offset is committed.
    RetryTopic(String),
    /// Dead-lettered; the offset is committed.
    DeadLettered(Routed),
    /// Not handled now: its partition is paused and will be read again from it.
    Deferred,
}

/// The driver (see the module doc).
pub struct Processor<C> {
    retry: RetryPolicy,
    classify: C,
    router: DeadLetterRouter,
    retry_topics: Option<RetryTopics>,
    breaker: Option<CircuitBreaker>,
    when_open: WhenOpen,
    commit: bool,
    stop_on_configuration: bool,
    stats: Stats,
    clock: WallClock,
    /// Paused partitions: when to resume, and the offset to read again from.
    deferred: BTreeMap<TopicPartition, (Instant, Option<i64>)>,
    timeline: Vec<BreakerEvent>,
}

/// At most this many breaker events are kept in [`Processor::breaker_timeline`].
const MAX_TIMELINE: usize = 4096;

impl<C> Processor<C> {
    /// A processor that retries with `retry`, sorts errors with `classify` and
    /// dead-letters with `router` (whose stats become the processor's).
    pub fn new(retry: RetryPolicy, classify: C, router: DeadLetterRouter) -> Self {
        let stats = router.statistics().clone();
        Self {
            retry,
            classify,
            router,
            retry_topics: None,
            breaker: None,
            when_open: WhenOpen::Pause,
            commit: true,
            stop_on_configuration: true,
            stats,
            clock: WallClock::new(),
            deferred: BTreeMap::new(),
            timeline: Vec::new(),
        }
    }

    /// Routes records that failed transiently through these retry topics before the
    /// dead-letter topic (subscribe to [`RetryTopics::topics`]).
    pub fn retry_topics(mut self, topics: RetryTopics) -> Self {
        self.retry_topics = Some(topics);
        self
    }

    /// Guards the handler with this breaker, which does `when_open` while open.
    pub fn circuit_breaker(mut self, breaker: CircuitBreaker, when_open: WhenOpen) -> Self {
        self.breaker = Some(breaker);
        self.when_open = when_open;
        self.stats.breaker_changed(BreakerState::Closed);
        self
    }

    /// Whether to commit each record's offset once it is handled (default true; false for
    /// a consumer without a group, or one that commits by itself).
    pub fn commit(mut self, commit: bool) -> Self {
        self.commit = commit;
        self
    }

    /// Whether a configuration error stops processing with [`PatternError::Configuration`]
    /// (default true: fix the configuration; nothing is committed) or dead-letters the
    /// record.
    pub fn stop_on_configuration_error(mut self, stop: bool) -> Self {
        self.stop_on_configuration = stop;
        self
    }

    /// The clock of retry-topic due times and failure times (default [`WallClock::new`]).
    pub fn clock(mut self, clock: WallClock) -> Self {
        self.clock = clock;
        self
    }

    /// Its stats.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Every breaker state change so far (the most recent 4096).
    pub fn breaker_timeline(&self) -> &[BreakerEvent] {
        &self.timeline
    }

    /// Partitions paused by the processor.
    pub fn deferred(&self) -> Vec<TopicPartition> {
        self.deferred.keys().cloned().collect()
    }

    /// The next record: resumes the partitions whose time came, then waits for the
    /// consumer (or for the next partition to resume). `None` once the consumer is closed.
    pub async fn next(
        &mut self,
        consumer: &Consumer,
    ) -> Result<Option<ConsumerRecord>, PatternError> {
        loop {
            self.resume_due(consumer);
            let deadline = self.deferred.values().map(|(at, _)| *at).min();
            let received = match deadline {
                None => consumer.recv().await,
                Some(deadline) => tokio::select! {
                    received = consumer.recv() => received,
                    _ = tokio::time::sleep_until(deadline) => continue,
                },
            };
            match received.map_err(PatternError::Kafka)? {
                None => return Ok(None),
                // Fetched before the pause took effect: read again after the resume.
                Some(record) if self.deferred.contains_key(&record.topic_partition()) => continue,
                Some(record) => return Ok(Some(record)),
            }
        }
    }

    fn resume_due(&mut self, consumer: &Consumer) {
        let now = Instant::now();
        let due: Vec<TopicPartition> = self
            .deferred
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(tp, _)| tp.clone())
            .collect();
        for tp in due {
            if let Some((_, offset)) = self.deferred.remove(&tp) {
                // A partition revoked meanwhile is not ours to resume: errors are ignored.
                if let Some(offset) = offset {
                    let _ = consumer.seek(&tp, Offset::At(offset));
                }
                let _ = consumer.resume(std::slice::from_ref(&tp));
                tracing::debug!(topic = %tp.topic, partition = tp.partition, "partition resumed");
            }
        }
    }

    fn defer(
        &mut self,
        consumer: &Consumer,
        tp: TopicPartition,
        offset: Option<i64>,
        until: Instant,
    ) {
        let _ = consumer.pause(std::slice::from_ref(&tp));
        if let Some(offset) = offset {
            let _ = consumer.seek(&tp, Offset::At(offset));
        }
        let entry = self.deferred.entry(tp).or_insert((until, offset));
        entry.0 = entry.0.max(until);
        if offset.is_some() {
            entry.1 = offset;
        }
    }

    fn drain_breaker_events(&mut self) {
        if let Some(breaker) = &mut self.breaker {
            while let Some(event) = breaker.poll_event() {
                self.stats.breaker_changed(event.to);
                if self.timeline.len() >= MAX_TIMELINE {
                    self.timeline.remove(0);
                }
                self.timeline.push(event);
            }
        }
    }

    /// Pauses every assigned partition until the breaker turns half-open; the record's
    /// partition is read again from the record.
    fn pause_for_breaker(&mut self, consumer: &Consumer, record: &ConsumerRecord) {
        let until = self
            .breaker
            .as_ref()
            .and_then(CircuitBreaker::poll_deadline)
            .map(Instant::from_std)
            .unwrap_or_else(Instant::now);
        let own = record.topic_partition();
        for tp in consumer.assignment() {
            let offset = if tp == own {
                Some(record.offset)
            } else {
                consumer.position(&tp)
            };
            self.defer(consumer, tp, offset, until);
        }
        self.defer(consumer, own, Some(record.offset), until);
        self.stats.incr(Counter::Deferred);
    }

    async fn commit_after(
        &self,
        consumer: &Consumer,
        record: &ConsumerRecord,
    ) -> Result<(), PatternError> {
        if !self.commit {
            return Ok(());
        }
        let next = record.offset.saturating_add(1);
        consumer
            .commit_offsets([(record.topic_partition(), OffsetAndMetadata::new(next))])
            .await
            .map_err(PatternError::Kafka)
    }

    /// Handles `record` with `handler` (see the module doc). `Err` when the record is not
    /// safely anywhere (its partition is then rewound to it, nothing committed) or on a
    /// configuration error.
    pub async fn handle<H, Fut, E>(
        &mut self,
        consumer: &Consumer,
        producer: &Producer,
        record: ConsumerRecord,
        handler: &mut H,
    ) -> Result<Outcome, PatternError>
    where
        H: FnMut(&ConsumerRecord) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: Display,
        C: Classify<E>,
    {
        if let Some(topics) = &self.retry_topics {
            if let Some(wait) = topics.wait(&record, self.clock.now_ms()) {
                let until = Instant::now() + wait;
                self.defer(
                    consumer,
                    record.topic_partition(),
                    Some(record.offset),
                    until,
                );
                self.stats.incr(Counter::Deferred);
                return Ok(Outcome::Deferred);
            }
        }
        let prior = self
            .retry_topics
            .as_ref()
            .map_or(0, |topics| topics.attempts(&record));
        let mut schedule = self.retry.schedule(Instant::now().into_std());
        loop {
            if let Some(breaker) = &mut self.breaker {
                let allowed = breaker.allow(Instant::now().into_std());
                self.drain_breaker_events();
                if !allowed {
                    return match self.when_open {
                        WhenOpen::Pause => {
                            self.pause_for_breaker(consumer, &record);
                            Ok(Outcome::Deferred)
                        }
                        WhenOpen::DeadLetter => {
                            let failure = Failure::new(
                                ErrorClass::Transient,
                                "circuit breaker open",
                                prior + schedule.failures(),
                                self.clock.now(),
                            )
                            .with_error_type("CircuitBreakerOpen");
                            self.dead_letter(consumer, producer, &record, &failure)
                                .await
                        }
                    };
                }
            }
            let result = handler(&record).await;
            let now = Instant::now().into_std();
            let error = match result {
                Ok(()) => {
                    if let Some(breaker) = &mut self.breaker {
                        breaker.handle_success(now);
                    }
                    self.drain_breaker_events();
                    self.commit_after(consumer, &record).await?;
                    self.stats.incr(Counter::Processed);
                    return Ok(Outcome::Processed {
                        attempts: schedule.failures() + 1,
                    });
                }
                Err(error) => error,
            };
            if let Some(breaker) = &mut self.breaker {
                breaker.handle_failure(now);
            }
            self.drain_breaker_events();
            let class = self.classify.classify(&error);
            let reason = match schedule.handle_failure(class, now) {
                Next::RetryAfter(delay) => {
                    self.stats.incr(Counter::Retried);
                    tracing::debug!(topic = %record.topic, partition = record.partition, offset = record.offset, error = %error, ?delay, "retrying");
                    tokio::time::sleep(delay).await;
                    continue;
                }
                Next::GiveUp(reason) => reason,
            };
            let attempts = prior + schedule.failures();
            let failure = Failure::new(class, error.to_string(), attempts, self.clock.now());
            tracing::warn!(topic = %record.topic, partition = record.partition, offset = record.offset, error = %error, class = class.as_str(), %reason, "record failed");
            if class == ErrorClass::Configuration && self.stop_on_configuration {
                let _ = consumer.seek(&record.topic_partition(), Offset::At(record.offset));
                return Err(PatternError::Configuration(error.to_string()));
            }
            if class == ErrorClass::Transient
                && matches!(reason, GiveUp::AttemptsExhausted | GiveUp::BudgetExhausted)
            {
                let next = self.retry_topics.as_ref().and_then(|topics| {
                    topics.next_stage_record(
                        &record,
                        attempts,
                        self.clock.now_ms(),
                        self.router.names(),
                    )
                });
                if let Some(next) = next {
                    let topic = next.topic.to_string();
                    if let Err(refused) = producer.send_and_wait(next).await {
                        let _ = consumer.seek(&record.topic_partition(), Offset::At(record.offset));
                        return Err(PatternError::Kafka(refused.error));
                    }
                    self.stats.incr(Counter::Retried);
                    self.commit_after(consumer, &record).await?;
                    return Ok(Outcome::RetryTopic(topic));
                }
            }
            return self
                .dead_letter(consumer, producer, &record, &failure)
                .await;
        }
    }

    async fn dead_letter(
        &mut self,
        consumer: &Consumer,
        producer: &Producer,
        record: &ConsumerRecord,
        failure: &Failure,
    ) -> Result<Outcome, PatternError> {
        let letter = self.router.dead_letter_record(record, failure);
        match self.router.send(producer, letter).await {
            Ok(routed) => {
                self.commit_after(consumer, record).await?;
                Ok(Outcome::DeadLettered(routed))
            }
            Err(error) => {
                // Nowhere safe: read it again later, commit nothing.
                let _ = consumer.seek(&record.topic_partition(), Offset::At(record.offset));
                Err(error)
            }
        }
    }

    /// Reads and handles records until `done` says so (it sees the stats after each
    /// record) or the consumer closes; stops at the first error.
    pub async fn run<H, Fut, E>(
        &mut self,
        consumer: &Consumer,
        producer: &Producer,
        mut handler: H,
        mut done: impl FnMut(&Stats) -> bool,
    ) -> Result<(), PatternError>
    where
        H: FnMut(&ConsumerRecord) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: Display,
        C: Classify<E>,
    {
        while !done(&self.stats) {
            let Some(record) = self.next(consumer).await? else {
                return Ok(());
            };
            self.handle(consumer, producer, record, &mut handler)
                .await?;
        }
        Ok(())
    }
}
