//! Exponential backoff with jitter (KIP-580), driven by a seeded generator so that tests
//! replay the same waits.
//!
//! The n-th wait is `min(initial * 2^n, max)` scaled by a random factor in [0.8, 1.2], as the
//! Java client does for `retry.backoff.ms` / `reconnect.backoff.ms`.

use std::time::Duration;

/// A small seeded generator (SplitMix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator that yields the same sequence for the same seed.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A float in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// An integer in [0, n); 0 when n is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

/// Backoff state of one retried thing (a broker connection, a batch).
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    /// Starts at `initial`, doubling to at most `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max: max.max(initial),
            failures: 0,
        }
    }

    /// Records a failure and returns how long to wait before the next attempt.
    pub fn next_delay(&mut self, rng: &mut Rng) -> Duration {
        let exponent = self.failures.min(31);
        self.failures = self.failures.saturating_add(1);
        let base = self.initial.saturating_mul(1u32 << exponent).min(self.max);
        let factor = 0.8 + 0.4 * rng.next_f64();
        base.mul_f64(factor).min(self.max.mul_f64(1.2))
    }

    /// Records a success: the next failure starts from `initial` again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Failures since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_within_jitter_and_caps() {
        let mut rng = Rng::new(42);
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        let waits: Vec<Duration> = (0..6).map(|_| backoff.next_delay(&mut rng)).collect();
        let bases = [100u64, 200, 400, 800, 1000, 1000];
        for (wait, base) in waits.iter().zip(bases) {
            let ms = wait.as_secs_f64() * 1000.0;
            assert!(
                ms >= base as f64 * 0.8 && ms <= base as f64 * 1.2,
                "{ms} vs {base}"
            );
        }
        backoff.reset();
        let first = backoff.next_delay(&mut rng).as_millis();
        assert!((80..=120).contains(&first));
    }

    #[test]
    fn the_same_seed_gives_the_same_waits() {
        let run = |seed| {
            let mut rng = Rng::new(seed);
            let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));
            (0..8)
                .map(|_| backoff.next_delay(&mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }
}
