//! Retry policies: immediate, fixed, exponential, and exponential with full or equal jitter
//! (the AWS architecture blog's names); bounded by a number of attempts, a longest delay
//! and a total time budget; deterministic under a seed.
//!
//! [`RetrySchedule`] is the sans-IO core: it is told when an attempt failed and how, and
//! answers how long to wait before the next one, or why to give up. [`RetryPolicy::run`] is
//! the thin tokio driver that wraps any async operation with it.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::classify::{Classify, ErrorClass};
use crate::rng::SeededRng;
use crate::PatternError;

/// How jitter spreads an exponential delay `d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// Exactly `d`.
    None,
    /// Uniform in `0..=d` ("full jitter").
    Full,
    /// `d/2` plus uniform in `0..=d/2` ("equal jitter").
    Equal,
}

/// The delay before each retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backoff {
    /// Retry at once.
    Immediate,
    /// The same delay before every retry.
    Fixed(Duration),
    /// `initial`, then `initial * multiplier`, `initial * multiplier^2`, ... (capped by
    /// [`RetryPolicy::max_delay`]), spread by `jitter`.
    Exponential {
        /// The delay before the first retry.
        initial: Duration,
        /// The growth factor, at least 1.
        multiplier: u32,
        /// How the delay is spread.
        jitter: Jitter,
    },
}

/// When and how often to retry. Cheap to clone; each run draws from its own generator
/// seeded with [`RetryPolicy::seed`], so the same policy gives the same delays every run.
///
/// ```
/// use std::time::Duration;
/// use franzy_patterns::RetryPolicy;
/// // The labs' producer policy: 3 retries after 100 ms, 200 ms, 400 ms.
/// let policy = RetryPolicy::exponential(Duration::from_millis(100)).max_attempts(4);
/// let delays: Vec<_> = policy.delays().collect();
/// assert_eq!(delays, [100, 200, 400].map(Duration::from_millis));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    backoff: Backoff,
    max_attempts: u32,
    max_delay: Duration,
    budget: Option<Duration>,
    seed: u64,
}

impl Default for RetryPolicy {
    /// Exponential from 100 ms, doubling, no jitter, 4 attempts, 30 s longest delay, no
    /// budget, seed 0.
    fn default() -> Self {
        Self::exponential(Duration::from_millis(100))
    }
}

impl RetryPolicy {
    fn with_backoff(backoff: Backoff) -> Self {
        Self {
            backoff,
            max_attempts: 4,
            max_delay: Duration::from_secs(30),
            budget: None,
            seed: 0,
        }
    }

    /// Retries at once.
    pub fn immediate() -> Self {
        Self::with_backoff(Backoff::Immediate)
    }

    /// Waits `delay` before each retry.
    pub fn fixed(delay: Duration) -> Self {
        Self::with_backoff(Backoff::Fixed(delay))
    }

    /// Waits `initial`, then doubles (see [`RetryPolicy::multiplier`]), without jitter.
    pub fn exponential(initial: Duration) -> Self {
        Self::with_backoff(Backoff::Exponential {
            initial,
            multiplier: 2,
            jitter: Jitter::None,
        })
    }

    /// The growth factor of an exponential backoff (default 2; 0 is taken as 1). No effect
    /// on the others.
    pub fn multiplier(mut self, factor: u32) -> Self {
        if let Backoff::Exponential { multiplier, .. } = &mut self.backoff {
            *multiplier = factor.max(1);
        }
        self
    }

    /// Full jitter on an exponential backoff (no effect on the others).
    pub fn full_jitter(self) -> Self {
        self.jitter(Jitter::Full)
    }

    /// Equal jitter on an exponential backoff (no effect on the others).
    pub fn equal_jitter(self) -> Self {
        self.jitter(Jitter::Equal)
    }

    /// The jitter of an exponential backoff (default [`Jitter::None`]).
    pub fn jitter(mut self, spread: Jitter) -> Self {
        if let Backoff::Exponential { jitter, .. } = &mut self.backoff {
            *jitter = spread;
        }
        self
    }

    /// Attempts in all, the first included (default 4: one try and 3 retries; 0 is taken
    /// as 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The longest delay before one retry, jitter applied after the cap (default 30 s).
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// The total time from the first attempt after which no retry starts (default none): a
    /// retry whose delay would end past the budget is not made.
    pub fn budget(mut self, budget: Duration) -> Self {
        self.budget = Some(budget);
        self
    }

    /// The seed of the jitter (default 0).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The backoff.
    pub fn backoff(&self) -> &Backoff {
        &self.backoff
    }

    /// Attempts in all.
    pub fn attempts(&self) -> u32 {
        self.max_attempts
    }

    /// A schedule for one run whose first attempt starts at `started`.
    pub fn schedule(&self, started: Instant) -> RetrySchedule {
        RetrySchedule {
            policy: self.clone(),
            rng: SeededRng::new(self.seed),
            failures: 0,
            started,
        }
    }

    /// The delays before each retry of one run, ignoring the budget: what the schedule
    /// would answer for failures that take no time.
    pub fn delays(&self) -> impl Iterator<Item = Duration> {
        let mut rng = SeededRng::new(self.seed);
        let policy = self.clone();
        (1..self.max_attempts).map(move |retry| policy.delay(retry, &mut rng))
    }

    /// The delay before retry number `retry` (1-based).
    fn delay(&self, retry: u32, rng: &mut SeededRng) -> Duration {
        match &self.backoff {
            Backoff::Immediate => Duration::ZERO,
            Backoff::Fixed(delay) => (*delay).min(self.max_delay),
            Backoff::Exponential {
                initial,
                multiplier,
                jitter,
            } => {
                let factor = multiplier.checked_pow(retry - 1).unwrap_or(u32::MAX);
                let base = initial
                    .checked_mul(factor)
                    .unwrap_or(Duration::MAX)
                    .min(self.max_delay);
                let nanos = u64::try_from(base.as_nanos()).unwrap_or(u64::MAX);
                match jitter {
                    Jitter::None => base,
                    Jitter::Full => Duration::from_nanos(rng.up_to(nanos)),
                    Jitter::Equal => {
                        let half = nanos / 2;
                        Duration::from_nanos(nanos - half + rng.up_to(half))
                    }
                }
            }
        }
    }

    /// Runs `operation` until it succeeds, fails with an error `classify` does not call
    /// transient, or the policy gives up; sleeping (tokio time) between attempts.
    pub async fn run<T, E, F, Fut, C>(
        &self,
        classify: &C,
        mut operation: F,
    ) -> Result<T, RetryError<E>>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        C: Classify<E> + ?Sized,
    {
        let mut schedule = self.schedule(tokio::time::Instant::now().into_std());
        loop {
            let attempt = schedule.failures() + 1;
            match operation(attempt).await {
                Ok(value) => return Ok(value),
                Err(error) => {
                    let class = classify.classify(&error);
                    let now = tokio::time::Instant::now().into_std();
                    match schedule.handle_failure(class, now) {
                        Next::RetryAfter(delay) => {
                            tracing::debug!(attempt, class = class.as_str(), ?delay, "retrying");
                            tokio::time::sleep(delay).await;
                        }
                        Next::GiveUp(reason) => {
                            return Err(RetryError {
                                error,
                                class,
                                attempts: schedule.failures(),
                                reason,
                            })
                        }
                    }
                }
            }
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Wait this long, then try again.
    RetryAfter(Duration),
    /// Stop.
    GiveUp(GiveUp),
}

/// Why a run stopped retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUp {
    /// The error is not transient: retrying would fail the same way.
    NotRetriable(ErrorClass),
    /// Every attempt was made.
    AttemptsExhausted,
    /// The next retry would end past the time budget.
    BudgetExhausted,
}

impl std::fmt::Display for GiveUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotRetriable(class) => write!(f, "{class} error, not retried"),
            Self::AttemptsExhausted => f.write_str("attempts exhausted"),
            Self::BudgetExhausted => f.write_str("time budget exhausted"),
        }
    }
}

/// One run of a [`RetryPolicy`]: the sans-IO state. Call
/// [`RetrySchedule::handle_failure`] after each failed attempt with the time it failed.
#[derive(Debug, Clone)]
pub struct RetrySchedule {
    policy: RetryPolicy,
    rng: SeededRng,
    failures: u32,
    started: Instant,
}

impl RetrySchedule {
    /// Attempts failed so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// An attempt failed at `now` with an error of `class`: retry after a delay, or stop.
    pub fn handle_failure(&mut self, class: ErrorClass, now: Instant) -> Next {
        self.failures = self.failures.saturating_add(1);
        if !class.is_retriable() {
            return Next::GiveUp(GiveUp::NotRetriable(class));
        }
        if self.failures >= self.policy.max_attempts {
            return Next::GiveUp(GiveUp::AttemptsExhausted);
        }
        let delay = self.policy.delay(self.failures, &mut self.rng);
        if let Some(budget) = self.policy.budget {
            let elapsed = now.saturating_duration_since(self.started);
            if elapsed.saturating_add(delay) > budget {
                return Next::GiveUp(GiveUp::BudgetExhausted);
            }
        }
        Next::RetryAfter(delay)
    }
}

/// The last error of a run that gave up, with how many attempts were made and why it
/// stopped.
#[derive(Debug, Clone)]
pub struct RetryError<E> {
    /// The last attempt's error.
    pub error: E,
    /// Its class.
    pub class: ErrorClass,
    /// Attempts made.
    pub attempts: u32,
    /// Why no more.
    pub reason: GiveUp,
}

impl<E: std::fmt::Display> std::fmt::Display for RetryError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "gave up after {} attempt(s) ({}): {}",
            self.attempts, self.reason, self.error
        )
    }
}

impl<E: std::error::Error + 'static> std::error::Error for RetryError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl From<RetryError<franzy::Error>> for PatternError {
    fn from(error: RetryError<franzy::Error>) -> Self {
        PatternError::Kafka(error.error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn each_backoff_gives_its_delays() {
        assert_eq!(
            RetryPolicy::immediate().delays().collect::<Vec<_>>(),
            [Duration::ZERO; 3]
        );
        assert_eq!(
            RetryPolicy::fixed(ms(250))
                .max_attempts(3)
                .delays()
                .collect::<Vec<_>>(),
            [ms(250), ms(250)]
        );
        assert_eq!(
            RetryPolicy::exponential(ms(100))
                .multiplier(3)
                .max_attempts(5)
                .max_delay(ms(1000))
                .delays()
                .collect::<Vec<_>>(),
            [ms(100), ms(300), ms(900), ms(1000)]
        );
    }

    #[test]
    fn jitter_stays_within_its_bounds_and_is_deterministic_under_a_seed() {
        let full = RetryPolicy::exponential(ms(100))
            .full_jitter()
            .max_attempts(8);
        let equal = RetryPolicy::exponential(ms(100))
            .equal_jitter()
            .max_attempts(8);
        let plain: Vec<_> = RetryPolicy::exponential(ms(100))
            .max_attempts(8)
            .delays()
            .collect();
        for seed in 0..50 {
            let a: Vec<_> = full.clone().seed(seed).delays().collect();
            assert_eq!(a, full.clone().seed(seed).delays().collect::<Vec<_>>());
            let b: Vec<_> = equal.clone().seed(seed).delays().collect();
            for ((f, e), p) in a.iter().zip(&b).zip(&plain) {
                assert!(f <= p, "full jitter {f:?} above {p:?}");
                assert!(
                    *e >= *p / 2 && e <= p,
                    "equal jitter {e:?} outside {p:?}/2..={p:?}"
                );
            }
        }
        let seeds: std::collections::BTreeSet<Vec<Duration>> = (0..10)
            .map(|s| full.clone().seed(s).delays().collect())
            .collect();
        assert!(seeds.len() > 1, "the seed changes the delays");
    }

    #[test]
    fn huge_factors_saturate_at_the_max_delay() {
        let policy = RetryPolicy::exponential(Duration::from_secs(u64::MAX / 4))
            .multiplier(u32::MAX)
            .max_attempts(40)
            .max_delay(Duration::from_secs(60))
            .full_jitter();
        assert!(policy.delays().all(|d| d <= Duration::from_secs(60)));
    }

    #[test]
    fn the_schedule_stops_on_permanent_errors_attempts_and_budget() {
        let start = Instant::now();
        let policy = RetryPolicy::fixed(ms(100)).max_attempts(3);
        let mut s = policy.schedule(start);
        assert_eq!(
            s.handle_failure(ErrorClass::Permanent, start),
            Next::GiveUp(GiveUp::NotRetriable(ErrorClass::Permanent))
        );
        let mut s = policy.schedule(start);
        assert_eq!(
            s.handle_failure(ErrorClass::Configuration, start),
            Next::GiveUp(GiveUp::NotRetriable(ErrorClass::Configuration))
        );
        let mut s = policy.schedule(start);
        assert_eq!(
            s.handle_failure(ErrorClass::Transient, start),
            Next::RetryAfter(ms(100))
        );
        assert_eq!(
            s.handle_failure(ErrorClass::Transient, start),
            Next::RetryAfter(ms(100))
        );
        assert_eq!(
            s.handle_failure(ErrorClass::Transient, start),
            Next::GiveUp(GiveUp::AttemptsExhausted)
        );
        assert_eq!(s.failures(), 3);
        let mut s = policy
            .clone()
            .max_attempts(100)
            .budget(ms(250))
            .schedule(start);
        assert_eq!(
            s.handle_failure(ErrorClass::Transient, start + ms(100)),
            Next::RetryAfter(ms(100))
        );
        assert_eq!(
            s.handle_failure(ErrorClass::Transient, start + ms(200)),
            Next::GiveUp(GiveUp::BudgetExhausted)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn run_retries_transient_errors_with_the_policys_delays() {
        let calls = AtomicU32::new(0);
        let started = tokio::time::Instant::now();
        let result = RetryPolicy::exponential(ms(100))
            .max_attempts(4)
            .run(&|_: &&str| ErrorClass::Transient, |attempt| {
                calls.fetch_add(1, Ordering::Relaxed);
                async move {
                    if attempt < 3 {
                        Err("down")
                    } else {
                        Ok(attempt)
                    }
                }
            })
            .await;
        assert_eq!(result.ok(), Some(3));
        assert_eq!(calls.load(Ordering::Relaxed), 3);
        // 100 ms + 200 ms of virtual time.
        assert_eq!(started.elapsed(), ms(300));
    }

    #[tokio::test(start_paused = true)]
    async fn run_never_retries_a_permanent_error() {
        let calls = AtomicU32::new(0);
        let error = RetryPolicy::immediate()
            .max_attempts(10)
            .run(&|_: &&str| ErrorClass::Permanent, |_| {
                calls.fetch_add(1, Ordering::Relaxed);
                async { Err::<(), _>("bad record") }
            })
            .await
            .err();
        let error = error.expect("a permanent error fails the run");
        assert_eq!(calls.load(Ordering::Relaxed), 1);
        assert_eq!(error.attempts, 1);
        assert_eq!(error.reason, GiveUp::NotRetriable(ErrorClass::Permanent));
        assert_eq!(
            error.to_string(),
            "gave up after 1 attempt(s) (permanent error, not retried): bad record"
        );
    }
}
