//! A circuit breaker: closed, open and half-open.
//!
//! Closed, calls go through and their outcomes are counted; when failures cross the
//! threshold (consecutive failures, or a failure rate over a window of recent calls) it
//! opens. Open, calls are refused until the open duration has passed; then it is half-open
//! and lets a number of trial calls through: all of them succeeding closes it, any failing
//! opens it again.
//!
//! Sans-IO: time is an argument ([`CircuitBreaker::allow`] and the `handle_*` methods take
//! `now`), state changes come out of [`CircuitBreaker::poll_event`]. The consumer driver
//! ([`crate::Processor`]) pauses its partitions while the breaker is open.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::PatternError;

/// The breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Calls go through.
    Closed = 0,
    /// Calls are refused.
    Open = 1,
    /// A few trial calls go through.
    HalfOpen = 2,
}

impl BreakerState {
    /// `closed`, `open` or `half-open`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half-open",
        }
    }
}

/// When a closed breaker opens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    /// After this many failures in a row (the labs' Polly `exceptionsAllowedBeforeBreaking`).
    ConsecutiveFailures(u32),
    /// When, over the last `window` calls (and only once `window` calls were seen), the
    /// share of failures reaches `rate` (0.0 to 1.0).
    FailureRate {
        /// The share of failures that opens the breaker.
        rate: f64,
        /// How many recent calls are looked at.
        window: u32,
    },
}

/// A state change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerEvent {
    /// The state left.
    pub from: BreakerState,
    /// The state entered.
    pub to: BreakerState,
    /// When.
    pub at: Instant,
}

/// The breaker's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    threshold: Threshold,
    open_for: Duration,
    half_open_trials: u32,
}

impl Default for BreakerConfig {
    /// The labs' settings: 5 consecutive failures, open 30 s, 1 trial call.
    fn default() -> Self {
        Self {
            threshold: Threshold::ConsecutiveFailures(5),
            open_for: Duration::from_secs(30),
            half_open_trials: 1,
        }
    }
}

impl BreakerConfig {
    /// Opens after `n` failures in a row (default 5).
    pub fn consecutive_failures(mut self, n: u32) -> Self {
        self.threshold = Threshold::ConsecutiveFailures(n);
        self
    }

    /// Opens when the failure rate over the last `window` calls reaches `rate`.
    pub fn failure_rate(mut self, rate: f64, window: u32) -> Self {
        self.threshold = Threshold::FailureRate { rate, window };
        self
    }

    /// How long the breaker stays open before its trial calls (default 30 s).
    pub fn open_for(mut self, duration: Duration) -> Self {
        self.open_for = duration;
        self
    }

    /// Calls let through while half-open, all of which must succeed to close (default 1).
    pub fn half_open_trials(mut self, n: u32) -> Self {
        self.half_open_trials = n;
        self
    }

    /// The breaker, or an error naming the bad setting.
    pub fn build(self) -> Result<CircuitBreaker, PatternError> {
        match self.threshold {
            Threshold::ConsecutiveFailures(0) => {
                return Err(PatternError::Config(
                    "circuit breaker: consecutive failures must be at least 1".into(),
                ))
            }
            Threshold::FailureRate { rate, window } => {
                if !(rate > 0.0 && rate <= 1.0) {
                    return Err(PatternError::Config(format!(
                        "circuit breaker: failure rate {rate} is not in (0, 1]"
                    )));
                }
                if window == 0 || window > 100_000 {
                    return Err(PatternError::Config(format!(
                        "circuit breaker: window {window} is not in 1..=100000"
                    )));
                }
            }
            Threshold::ConsecutiveFailures(_) => {}
        }
        if self.half_open_trials == 0 {
            return Err(PatternError::Config(
                "circuit breaker: half-open trials must be at least 1".into(),
            ));
        }
        Ok(CircuitBreaker {
            config: self,
            state: BreakerState::Closed,
            consecutive: 0,
            window: VecDeque::new(),
            opened_at: None,
            trials_started: 0,
            trials_succeeded: 0,
            events: VecDeque::new(),
        })
    }
}

/// The breaker (see the module doc).
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    state: BreakerState,
    consecutive: u32,
    /// Outcomes of recent calls, true for a failure (failure-rate threshold only).
    window: VecDeque<bool>,
    opened_at: Option<Instant>,
    trials_started: u32,
    trials_succeeded: u32,
    events: VecDeque<BreakerEvent>,
}

/// At most this many unread events are kept (the oldest are dropped).
const MAX_EVENTS: usize = 1024;

impl CircuitBreaker {
    /// Settings to build a breaker from.
    pub fn config() -> BreakerConfig {
        BreakerConfig::default()
    }

    /// The state at `now` (an open breaker whose time is up is half-open).
    pub fn state(&mut self, now: Instant) -> BreakerState {
        self.handle_timeout(now);
        self.state
    }

    /// When an open breaker turns half-open; `None` unless open.
    pub fn poll_deadline(&self) -> Option<Instant> {
        match (self.state, self.opened_at) {
            (BreakerState::Open, Some(at)) => Some(at + self.config.open_for),
            _ => None,
        }
    }

    /// Moves an open breaker whose time is up to half-open.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.poll_deadline().is_some_and(|deadline| now >= deadline) {
            self.transition(BreakerState::HalfOpen, now);
        }
    }

    /// Whether a call may start at `now`. A call allowed must be followed by
    /// [`CircuitBreaker::handle_success`] or [`CircuitBreaker::handle_failure`].
    pub fn allow(&mut self, now: Instant) -> bool {
        self.handle_timeout(now);
        match self.state {
            BreakerState::Closed => true,
            BreakerState::Open => false,
            BreakerState::HalfOpen => {
                if self.trials_started < self.config.half_open_trials {
                    self.trials_started += 1;
                    true
                } else {
                    false
                }
            }
        }
    }

    /// A call allowed earlier succeeded.
    pub fn handle_success(&mut self, now: Instant) {
        match self.state {
            BreakerState::Closed => {
                self.consecutive = 0;
                self.push_outcome(false);
            }
            BreakerState::HalfOpen => {
                self.trials_succeeded += 1;
                if self.trials_succeeded >= self.config.half_open_trials {
                    self.transition(BreakerState::Closed, now);
                }
            }
            // A call that started before the breaker opened: its success does not close it.
            BreakerState::Open => {}
        }
    }

    /// A call allowed earlier failed.
    pub fn handle_failure(&mut self, now: Instant) {
        match self.state {
            BreakerState::Closed => {
                self.consecutive = self.consecutive.saturating_add(1);
                self.push_outcome(true);
                let open = match self.config.threshold {
                    Threshold::ConsecutiveFailures(n) => self.consecutive >= n,
                    Threshold::FailureRate { rate, window } => {
                        let seen = self.window.len();
                        let failures = self.window.iter().filter(|f| **f).count();
                        seen >= window as usize && failures as f64 / seen as f64 >= rate
                    }
                };
                if open {
                    self.transition(BreakerState::Open, now);
                }
            }
            BreakerState::HalfOpen => self.transition(BreakerState::Open, now),
            BreakerState::Open => {}
        }
    }

    /// The next state change not read yet.
    pub fn poll_event(&mut self) -> Option<BreakerEvent> {
        self.events.pop_front()
    }

    fn push_outcome(&mut self, failed: bool) {
        if let Threshold::FailureRate { window, .. } = self.config.threshold {
            self.window.push_back(failed);
            while self.window.len() > window as usize {
                self.window.pop_front();
            }
        }
    }

    fn transition(&mut self, to: BreakerState, now: Instant) {
        let from = self.state;
        if from == to {
            return;
        }
        self.state = to;
        self.consecutive = 0;
        self.window.clear();
        self.trials_started = 0;
        self.trials_succeeded = 0;
        self.opened_at = (to == BreakerState::Open).then_some(now);
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(BreakerEvent { from, to, at: now });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(breaker: &mut CircuitBreaker) -> Vec<(BreakerState, BreakerState)> {
        std::iter::from_fn(|| breaker.poll_event())
            .map(|e| (e.from, e.to))
            .collect()
    }

    #[test]
    fn consecutive_failures_open_then_a_half_open_trial_closes() {
        use BreakerState::*;
        let t0 = Instant::now();
        let mut b = CircuitBreaker::config()
            .consecutive_failures(3)
            .open_for(Duration::from_secs(10))
            .build()
            .expect("valid");
        for _ in 0..2 {
            assert!(b.allow(t0));
            b.handle_failure(t0);
        }
        assert!(b.allow(t0));
        b.handle_success(t0); // resets the run
        for _ in 0..3 {
            assert!(b.allow(t0));
            b.handle_failure(t0);
        }
        assert_eq!(b.state(t0), Open);
        assert!(!b.allow(t0 + Duration::from_secs(9)));
        assert_eq!(b.poll_deadline(), Some(t0 + Duration::from_secs(10)));
        let t1 = t0 + Duration::from_secs(10);
        assert!(b.allow(t1), "one trial");
        assert!(!b.allow(t1), "only one trial");
        b.handle_failure(t1);
        assert_eq!(b.state(t1), Open, "a failed trial opens again");
        let t2 = t1 + Duration::from_secs(10);
        assert!(b.allow(t2));
        b.handle_success(t2);
        assert_eq!(b.state(t2), Closed);
        assert_eq!(
            events(&mut b),
            [
                (Closed, Open),
                (Open, HalfOpen),
                (HalfOpen, Open),
                (Open, HalfOpen),
                (HalfOpen, Closed)
            ]
        );
    }

    #[test]
    fn the_failure_rate_opens_only_over_a_full_window() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::config()
            .failure_rate(0.5, 4)
            .build()
            .expect("valid");
        for failed in [true, true, false] {
            assert!(b.allow(t0));
            if failed {
                b.handle_failure(t0)
            } else {
                b.handle_success(t0)
            }
        }
        assert_eq!(b.state(t0), BreakerState::Closed, "3 calls < window of 4");
        b.handle_success(t0);
        // window: T T F F = 50%, but only checked on a failure
        assert!(b.allow(t0));
        b.handle_failure(t0); // window: T F F T = 50%
        assert_eq!(b.state(t0), BreakerState::Open);
    }

    #[test]
    fn bad_settings_are_refused_with_a_clear_error() {
        for config in [
            CircuitBreaker::config().consecutive_failures(0),
            CircuitBreaker::config().failure_rate(0.0, 10),
            CircuitBreaker::config().failure_rate(f64::NAN, 10),
            CircuitBreaker::config().failure_rate(0.5, 0),
            CircuitBreaker::config().half_open_trials(0),
        ] {
            let error = config.build().expect_err("refused");
            assert!(
                error
                    .to_string()
                    .starts_with("invalid configuration: circuit breaker"),
                "{error}"
            );
        }
    }

    #[test]
    fn a_seeded_failure_pattern_gives_the_same_timeline_every_time() {
        let timeline = |seed: u64| {
            let mut rng = crate::rng::SeededRng::new(seed);
            let t0 = Instant::now();
            let mut b = CircuitBreaker::config()
                .consecutive_failures(3)
                .open_for(Duration::from_millis(500))
                .half_open_trials(2)
                .build()
                .expect("valid");
            let mut out = Vec::new();
            for i in 0..2000u64 {
                let now = t0 + Duration::from_millis(i * 10);
                if b.allow(now) {
                    if rng.up_to(99) < 40 {
                        b.handle_failure(now)
                    } else {
                        b.handle_success(now)
                    }
                }
                out.extend(std::iter::from_fn(|| b.poll_event()).map(|e| (e.to, e.at - t0)));
            }
            out
        };
        let a = timeline(7);
        assert_eq!(a, timeline(7));
        assert!(a.iter().any(|(s, _)| *s == BreakerState::Open));
        assert!(a.iter().any(|(s, _)| *s == BreakerState::Closed));
        // Never open -> closed directly, and open always lasts its 500 ms.
        for pair in a.windows(2) {
            if pair[0].0 == BreakerState::Open {
                assert_eq!(pair[1].0, BreakerState::HalfOpen);
                assert!(pair[1].1 - pair[0].1 >= Duration::from_millis(500));
            }
        }
    }
}
