//! A small seeded random number generator (SplitMix64): the patterns draw jitter from it,
//! so that the same seed gives the same delays, run after run. Never a global RNG.

/// SplitMix64 (Steele, Lea, Flood 2014): 64 bits of state, every seed valid.
#[derive(Debug, Clone)]
pub struct SeededRng(u64);

impl SeededRng {
    /// A generator that starts from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..=max`, uniform (Lemire's multiply-shift, without the rejection step:
    /// the bias is below 2^-64 per draw, far under what jitter cares about).
    pub fn up_to(&mut self, max: u64) -> u64 {
        let range = u128::from(max) + 1;
        ((u128::from(self.next_u64()) * range) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_sequence_and_draws_stay_in_range() {
        let mut a = SeededRng::new(42);
        let mut b = SeededRng::new(42);
        for _ in 0..100 {
            let x = a.up_to(10);
            assert_eq!(x, b.up_to(10));
            assert!(x <= 10);
        }
        assert_ne!(SeededRng::new(1).next_u64(), SeededRng::new(2).next_u64());
        assert_eq!(SeededRng::new(3).up_to(0), 0);
        // u64::MAX as a bound does not overflow.
        let _ = SeededRng::new(3).up_to(u64::MAX);
    }
}
