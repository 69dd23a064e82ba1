//! Choosing a partition for a record.
//!
//! Keyed records use the Java client's default: murmur2 of the key bytes (the seed and
//! mixing constants of Kafka's `Utils.murmur2`), made positive by masking the sign bit, modulo
//! the partition count; so a key lands on the same partition as with the Java client and
//! librdkafka's `murmur2_random`. Records without a key use uniform sticky partitioning
//! (KIP-480, KIP-794): they stick to one partition until about `batch.size` bytes went
//! there, then move to another partition chosen at random among those with a leader.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use super::backoff::Rng;
use super::metadata::Fnv1a;

/// Kafka's murmur2 hash of `data` (as `org.apache.kafka.common.utils.Utils.murmur2`).
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len() as u32;
    let mut h = SEED ^ length;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition of a keyed record among `partition_count` partitions, as Java computes it.
pub fn partition_for_key(key: &[u8], partition_count: u32) -> i32 {
    if partition_count == 0 {
        return 0;
    }
    let positive = (murmur2(key) & 0x7fff_ffff) as u32;
    (positive % partition_count) as i32
}

/// Per-topic sticky choice for records without a key.
#[derive(Debug, Default)]
pub struct StickyPartitioner {
    current: HashMap<String, Sticky, BuildHasherDefault<Fnv1a>>,
}

#[derive(Debug, Clone, Copy)]
struct Sticky {
    partition: i32,
    bytes: usize,
}

impl StickyPartitioner {
    /// A partitioner with no sticky choices yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The partition for a keyless record of `size` bytes to `topic`. `available` lists the
    /// partitions that have a leader (all partitions if none do); `partition_count` is the
    /// topic's size. Moves on once `batch_size` bytes went to the current choice. Called for
    /// every keyless record: it allocates only the first time it sees a topic.
    pub fn partition<I>(
        &mut self,
        topic: &str,
        available: I,
        partition_count: u32,
        size: usize,
        batch_size: usize,
        rng: &mut Rng,
    ) -> i32
    where
        I: Iterator<Item = i32> + Clone,
    {
        let valid = |p: i32| p >= 0 && (p as u32) < partition_count;
        let none_available = available.clone().next().is_none();
        let keep = |s: &Sticky| {
            valid(s.partition)
                && s.bytes < batch_size
                && (none_available || available.clone().any(|p| p == s.partition))
        };
        let choose = |rng: &mut Rng| {
            let partition = if none_available {
                rng.below(u64::from(partition_count.max(1))) as i32
            } else {
                let count = available.clone().count();
                let index = rng.below(count as u64) as usize;
                available.clone().nth(index).unwrap_or(0)
            };
            Sticky {
                partition,
                bytes: 0,
            }
        };
        let sticky = match self.current.get_mut(topic) {
            Some(sticky) => {
                if !keep(sticky) {
                    *sticky = choose(rng);
                }
                sticky
            }
            None => {
                let sticky = choose(rng);
                self.current.entry(topic.to_string()).or_insert(sticky)
            }
        };
        sticky.bytes = sticky.bytes.saturating_add(size);
        sticky.partition
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors computed with kafka-python 3.0.12's `murmur2` (a port of the Java function,
    /// reporting the hash unsigned), an implementation franzy did not write.
    const VECTORS: &[(&[u8], u32, i32)] = &[
        (b"", 275_646_681, 3),
        (b"a", 2_731_586_172, 4),
        (b"21", 3_321_034_988, 0),
        (b"foobar", 3_504_634_814, 0),
        (b"a-little-bit-long-string", 3_308_985_760, 2),
        (b"a-little-bit-longer-string", 2_808_662_467, 5),
        (
            b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
            4_236_069_325,
            5,
        ),
        (b"key-0", 29_210_041, 1),
        (b"key-1", 193_331_640, 0),
        (b"\x00\xff\x80", 2_506_231_675, 5),
    ];

    #[test]
    fn murmur2_matches_the_java_function() {
        for (key, hash, partition_of_6) in VECTORS {
            assert_eq!(murmur2(key) as u32, *hash, "key {key:?}");
            assert_eq!(partition_for_key(key, 6), *partition_of_6, "key {key:?}");
        }
        // Java's own unit test value for "21", signed.
        assert_eq!(murmur2(b"21"), -973_932_308);
    }

    #[test]
    fn sticky_stays_until_batch_size_then_moves_among_available() {
        let mut rng = Rng::new(3);
        let mut sticky = StickyPartitioner::new();
        let available = [1, 3, 5];
        let first = sticky.partition("t", available.iter().copied(), 6, 100, 1000, &mut rng);
        assert!(available.contains(&first));
        for _ in 0..8 {
            assert_eq!(
                sticky.partition("t", available.iter().copied(), 6, 100, 1000, &mut rng),
                first
            );
        }
        // 900 bytes so far; the 10th record fills the batch; the 11th may move.
        assert_eq!(
            sticky.partition("t", available.iter().copied(), 6, 100, 1000, &mut rng),
            first
        );
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..300 {
            let p = sticky.partition("t", available.iter().copied(), 6, 1000, 1000, &mut rng);
            assert!(available.contains(&p));
            seen.insert(p);
        }
        assert_eq!(seen.len(), 3, "uniform over the available partitions");
        // A partition that loses its leader is left at once.
        let p = sticky.partition("u", [2].into_iter(), 6, 1, 1000, &mut rng);
        assert_eq!(p, 2);
        assert_eq!(
            sticky.partition("u", [4].into_iter(), 6, 1, 1000, &mut rng),
            4
        );
    }
}
