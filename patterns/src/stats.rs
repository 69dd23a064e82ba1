//! Counters per pattern: processed, retried, sent to the dead-letter topic, written to the
//! fallback file, replayed, breaker state changes, duplicates skipped, outbox rows relayed.
//!
//! Three ways out: [`Stats::snapshot`] (a plain struct), a `tracing` event at `debug` for
//! every change (target `franzy_patterns::stats`, fields `pattern`, `counter`, `value`),
//! and [`Stats::metrics`] / [`Stats::prometheus`] for a metrics exporter.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use crate::circuit_breaker::BreakerState;

/// One counter of [`Stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Counter {
    /// Records (or operations) handled successfully.
    Processed,
    /// Retries made (an attempt after a failure; a record sent to a retry topic counts).
    Retried,
    /// Records acknowledged by the dead-letter topic.
    DeadLettered,
    /// Records appended to the local fallback file (and fsynced).
    WrittenToFallback,
    /// Fallback records replayed to the dead-letter topic and acknowledged.
    Replayed,
    /// Circuit breaker transitions (to any state).
    BreakerTransitions,
    /// Times the breaker opened.
    BreakerOpened,
    /// Duplicates skipped by an idempotent consumer.
    DuplicatesSkipped,
    /// Outbox rows produced in a committed transaction and marked sent.
    OutboxRelayed,
    /// Records deferred: their partition paused until they are due (a retry-topic delay,
    /// an open breaker).
    Deferred,
}

const COUNTERS: [Counter; 10] = [
    Counter::Processed,
    Counter::Retried,
    Counter::DeadLettered,
    Counter::WrittenToFallback,
    Counter::Replayed,
    Counter::BreakerTransitions,
    Counter::BreakerOpened,
    Counter::DuplicatesSkipped,
    Counter::OutboxRelayed,
    Counter::Deferred,
];

impl Counter {
    /// The metric name: `processed`, `retried`, `dead_lettered`, ...
    pub fn name(self) -> &'static str {
        match self {
            Self::Processed => "processed",
            Self::Retried => "retried",
            Self::DeadLettered => "dead_lettered",
            Self::WrittenToFallback => "written_to_fallback",
            Self::Replayed => "replayed",
            Self::BreakerTransitions => "breaker_transitions",
            Self::BreakerOpened => "breaker_opened",
            Self::DuplicatesSkipped => "duplicates_skipped",
            Self::OutboxRelayed => "outbox_relayed",
            Self::Deferred => "deferred",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The counters of one pattern instance. Clones share the counters.
#[derive(Debug, Clone)]
pub struct Stats {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pattern: String,
    counters: [AtomicU64; COUNTERS.len()],
    breaker_state: AtomicU8,
}

/// The counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatsSnapshot {
    /// See [`Counter::Processed`].
    pub processed: u64,
    /// See [`Counter::Retried`].
    pub retried: u64,
    /// See [`Counter::DeadLettered`].
    pub dead_lettered: u64,
    /// See [`Counter::WrittenToFallback`].
    pub written_to_fallback: u64,
    /// See [`Counter::Replayed`].
    pub replayed: u64,
    /// See [`Counter::BreakerTransitions`].
    pub breaker_transitions: u64,
    /// See [`Counter::BreakerOpened`].
    pub breaker_opened: u64,
    /// See [`Counter::DuplicatesSkipped`].
    pub duplicates_skipped: u64,
    /// See [`Counter::OutboxRelayed`].
    pub outbox_relayed: u64,
    /// See [`Counter::Deferred`].
    pub deferred: u64,
    /// The breaker's state, if a breaker reports to these stats.
    pub breaker_state: Option<BreakerState>,
}

impl Stats {
    /// Counters for `pattern` (the label of every metric and trace), all zero.
    pub fn new(pattern: impl Into<String>) -> Self {
        Self {
            inner: Arc::new(Inner {
                pattern: pattern.into(),
                counters: Default::default(),
                breaker_state: AtomicU8::new(0),
            }),
        }
    }

    /// The pattern label.
    pub fn pattern(&self) -> &str {
        &self.inner.pattern
    }

    /// Adds `n` to `counter`.
    pub fn add(&self, counter: Counter, n: u64) {
        let value = self.inner.counters[counter.index()]
            .fetch_add(n, Ordering::Relaxed)
            .saturating_add(n);
        tracing::debug!(
            target: "franzy_patterns::stats",
            pattern = %self.inner.pattern,
            counter = counter.name(),
            value,
        );
    }

    /// Adds one to `counter`.
    pub fn incr(&self, counter: Counter) {
        self.add(counter, 1);
    }

    /// The value of `counter`.
    pub fn get(&self, counter: Counter) -> u64 {
        self.inner.counters[counter.index()].load(Ordering::Relaxed)
    }

    /// Records the breaker's new state (and counts the transition).
    pub fn breaker_changed(&self, state: BreakerState) {
        self.inner
            .breaker_state
            .store(state as u8 + 1, Ordering::Relaxed);
        self.incr(Counter::BreakerTransitions);
        if state == BreakerState::Open {
            self.incr(Counter::BreakerOpened);
        }
        tracing::info!(
            target: "franzy_patterns::stats",
            pattern = %self.inner.pattern,
            breaker = state.as_str(),
            "circuit breaker state changed"
        );
    }

    /// Every counter at once.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            processed: self.get(Counter::Processed),
            retried: self.get(Counter::Retried),
            dead_lettered: self.get(Counter::DeadLettered),
            written_to_fallback: self.get(Counter::WrittenToFallback),
            replayed: self.get(Counter::Replayed),
            breaker_transitions: self.get(Counter::BreakerTransitions),
            breaker_opened: self.get(Counter::BreakerOpened),
            duplicates_skipped: self.get(Counter::DuplicatesSkipped),
            outbox_relayed: self.get(Counter::OutboxRelayed),
            deferred: self.get(Counter::Deferred),
            breaker_state: match self.inner.breaker_state.load(Ordering::Relaxed) {
                1 => Some(BreakerState::Closed),
                2 => Some(BreakerState::Open),
                3 => Some(BreakerState::HalfOpen),
                _ => None,
            },
        }
    }

    /// `(name, value)` for every counter, named `franzy_patterns_<counter>_total`, plus
    /// `franzy_patterns_breaker_state` (0 closed, 1 open, 2 half-open) when a breaker
    /// reports here: what a metrics exporter registers as counters and a gauge, labelled
    /// with [`Stats::pattern`].
    pub fn metrics(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = COUNTERS
            .iter()
            .map(|c| (format!("franzy_patterns_{}_total", c.name()), self.get(*c)))
            .collect();
        if let Some(state) = self.snapshot().breaker_state {
            out.push(("franzy_patterns_breaker_state".into(), state as u64));
        }
        out
    }

    /// The metrics in Prometheus' text exposition format, labelled `pattern="..."`.
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        let label = self
            .inner
            .pattern
            .replace('\\', "\\\\")
            .replace('"', "\\\"");
        for (name, value) in self.metrics() {
            let kind = if name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name}{{pattern=\"{label}\"}} {value}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_show_in_the_snapshot_the_metrics_and_prometheus_text() {
        let stats = Stats::new("orders-dlt");
        let clone = stats.clone();
        clone.incr(Counter::Processed);
        stats.add(Counter::DeadLettered, 2);
        stats.breaker_changed(BreakerState::Open);
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.processed, 1);
        assert_eq!(snapshot.dead_lettered, 2);
        assert_eq!(snapshot.breaker_opened, 1);
        assert_eq!(snapshot.breaker_transitions, 1);
        assert_eq!(snapshot.breaker_state, Some(BreakerState::Open));
        let metrics = stats.metrics();
        assert!(metrics.contains(&("franzy_patterns_dead_lettered_total".into(), 2)));
        assert!(metrics.contains(&("franzy_patterns_breaker_state".into(), 1)));
        let text = stats.prometheus();
        assert!(text.contains("franzy_patterns_processed_total{pattern=\"orders-dlt\"} 1\n"));
        assert!(text.contains("# TYPE franzy_patterns_breaker_state gauge\n"));
    }
}
