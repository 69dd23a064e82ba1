//! Client statistics: what a producer or consumer did, as a snapshot ([`Stats`], from
//! `Producer::stats` or `Consumer::stats`) and as JSON of a fixed schema ([`Stats::to_json`]),
//! as librdkafka's statistics are.
//!
//! Counting is cheap and bounded: counters are atomics, latencies go into fixed-size
//! histograms ([`Histogram`]: 32 power-of-two buckets of microseconds, never a growing list),
//! per-broker and per-partition entries exist once per broker and partition the client used.
//!
//! ## JSON schema (`to_json`)
//!
//! ```text
//! {
//!   "age_ms": u64,                  time since the client started
//!   "records": u64,                 records delivered (producer) or handed out (consumer)
//!   "bytes": u64,                   their key, value and header bytes
//!   "requests": u64,                requests sent, every broker together
//!   "request_rate": f64,            requests per second over the client's age
//!   "request_errors": u64,          requests that failed (connection lost, timed out)
//!   "retries": u64,                 batches or requests sent again
//!   "errors": {CLASS: u64},         failed records or requests by class: "retriable",
//!                                   "fatal", "other"
//!   "buffer_used_bytes": u64,       producer: bytes of buffer.memory in use (0 for consumers)
//!   "latency_us": {"count", "p50", "p90", "p99", "max"},   request round trips
//!   "brokers": {ADDRESS: {"connected": bool, "in_flight": u64, "requests": u64,
//!               "rtt_us": {"count", "p50", "p90", "p99", "max"}}},
//!   "partitions": {"TOPIC/PARTITION": {"batch_bytes": {"count", "p50", "p90", "p99", "max"},
//!                  "position": i64|null, "lag": i64|null}}
//! }
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::topic_partition::TopicPartition;

/// Buckets of a [`Histogram`]: bucket `i` holds values below `2^i`.
const BUCKETS: usize = 32;

/// A fixed-size histogram of non-negative values (microseconds, bytes): 32 power-of-two
/// buckets, a count, a sum and a maximum. Percentiles are the upper bound of the bucket they
/// fall in (at most the maximum seen): within a factor of two, in constant memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Histogram {
    buckets: [u64; BUCKETS],
    count: u64,
    sum: u64,
    max: u64,
}

impl Histogram {
    /// Adds one value.
    pub fn record(&mut self, value: u64) {
        let bucket = (u64::BITS - value.leading_zeros()) as usize;
        self.buckets[bucket.min(BUCKETS - 1)] += 1;
        self.count = self.count.saturating_add(1);
        self.sum = self.sum.saturating_add(value);
        self.max = self.max.max(value);
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The largest value recorded.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The mean, 0 when empty.
    pub fn mean(&self) -> u64 {
        self.sum.checked_div(self.count).unwrap_or(0)
    }

    /// The value below which a fraction `q` (0 to 1) of the values lie, to the bucket's
    /// upper bound (never above the maximum); 0 when empty.
    pub fn percentile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((self.count as f64) * q.clamp(0.0, 1.0)).ceil().max(1.0) as u64;
        let mut seen = 0u64;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let upper = if i == 0 {
                    0
                } else {
                    (1u64 << i).saturating_sub(1)
                };
                return upper.min(self.max);
            }
        }
        self.max
    }

    fn json(&self) -> String {
        format!(
            "{{\"count\":{},\"p50\":{},\"p90\":{},\"p99\":{},\"max\":{}}}",
            self.count,
            self.percentile(0.5),
            self.percentile(0.9),
            self.percentile(0.99),
            self.max
        )
    }
}

/// One broker, as the client sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BrokerStats {
    /// Whether the client's connection to it is up.
    pub connected: bool,
    /// Requests sent and not answered yet.
    pub in_flight: u64,
    /// Requests sent.
    pub requests: u64,
    /// Round trips, in microseconds.
    pub rtt_us: Histogram,
}

/// One partition, as the client sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PartitionStats {
    /// Producer: sizes of the batches delivered, in bytes of their records.
    pub batch_bytes: Histogram,
    /// Consumer: the next offset it will hand out.
    pub position: Option<i64>,
    /// Consumer: records between the position and the end offset.
    pub lag: Option<i64>,
}

/// A snapshot of a client's statistics (the module doc has the JSON schema).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// Time since the client started.
    pub age: Duration,
    /// Records delivered (producer) or handed out (consumer).
    pub records: u64,
    /// Their key, value and header bytes.
    pub bytes: u64,
    /// Requests sent.
    pub requests: u64,
    /// Requests that failed (connection lost, timed out).
    pub request_errors: u64,
    /// Batches or requests sent again.
    pub retries: u64,
    /// Failed records or requests, by class (`retriable`, `fatal`, `other`).
    pub errors: BTreeMap<&'static str, u64>,
    /// Producer: bytes of `buffer.memory` in use.
    pub buffer_used_bytes: u64,
    /// Request round trips, in microseconds.
    pub latency_us: Histogram,
    /// Per broker address.
    pub brokers: BTreeMap<String, BrokerStats>,
    /// Per partition.
    pub partitions: BTreeMap<TopicPartition, PartitionStats>,
}

impl Stats {
    /// Requests per second over the client's age.
    pub fn request_rate(&self) -> f64 {
        let seconds = self.age.as_secs_f64();
        if seconds > 0.0 {
            self.requests as f64 / seconds
        } else {
            0.0
        }
    }

    /// The snapshot as JSON (schema in the module doc).
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        let _ = write!(
            out,
            "{{\"age_ms\":{},\"records\":{},\"bytes\":{},\"requests\":{},\"request_rate\":{:.3},\"request_errors\":{},\"retries\":{},\"errors\":{{",
            self.age.as_millis(),
            self.records,
            self.bytes,
            self.requests,
            self.request_rate(),
            self.request_errors,
            self.retries
        );
        let errors: Vec<String> = self
            .errors
            .iter()
            .map(|(class, n)| format!("\"{class}\":{n}"))
            .collect();
        out.push_str(&errors.join(","));
        let _ = write!(
            out,
            "}},\"buffer_used_bytes\":{},\"latency_us\":{},\"brokers\":{{",
            self.buffer_used_bytes,
            self.latency_us.json()
        );
        let brokers: Vec<String> = self
            .brokers
            .iter()
            .map(|(address, b)| {
                format!(
                    "{}:{{\"connected\":{},\"in_flight\":{},\"requests\":{},\"rtt_us\":{}}}",
                    json_string(address),
                    b.connected,
                    b.in_flight,
                    b.requests,
                    b.rtt_us.json()
                )
            })
            .collect();
        out.push_str(&brokers.join(","));
        out.push_str("},\"partitions\":{");
        let optional = |v: Option<i64>| v.map_or("null".to_string(), |v| v.to_string());
        let partitions: Vec<String> = self
            .partitions
            .iter()
            .map(|(tp, p)| {
                format!(
                    "{}:{{\"batch_bytes\":{},\"position\":{},\"lag\":{}}}",
                    json_string(&tp.to_string()),
                    p.batch_bytes.json(),
                    optional(p.position),
                    optional(p.lag)
                )
            })
            .collect();
        out.push_str(&partitions.join(","));
        out.push_str("}}");
        out
    }
}

/// `text` as a JSON string literal.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The live counters a client updates (shared by its tasks); [`Collector::snapshot`] copies
/// them into a [`Stats`].
#[derive(Debug)]
pub(crate) struct Collector {
    started: tokio::time::Instant,
    records: AtomicU64,
    bytes: AtomicU64,
    requests: AtomicU64,
    request_errors: AtomicU64,
    retries: AtomicU64,
    detail: Mutex<Detail>,
}

#[derive(Debug, Default)]
struct Detail {
    errors: BTreeMap<&'static str, u64>,
    latency_us: Histogram,
    brokers: BTreeMap<String, BrokerStats>,
    partitions: BTreeMap<TopicPartition, PartitionStats>,
}

impl Default for Collector {
    fn default() -> Self {
        Self {
            started: tokio::time::Instant::now(),
            records: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            request_errors: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            detail: Mutex::new(Detail::default()),
        }
    }
}

impl Collector {
    fn detail(&self) -> std::sync::MutexGuard<'_, Detail> {
        self.detail.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A connection to `address` opened (`true`) or failed or closed (`false`).
    pub(crate) fn connection(&self, address: &str, connected: bool) {
        self.detail()
            .brokers
            .entry(address.to_string())
            .or_default()
            .connected = connected;
    }

    /// A request went to `address`.
    pub(crate) fn request_sent(&self, address: &str) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut detail = self.detail();
        let broker = detail.brokers.entry(address.to_string()).or_default();
        broker.requests += 1;
        broker.in_flight += 1;
    }

    /// A request to `address` ended after `elapsed`, answered (`ok`) or not.
    pub(crate) fn request_done(&self, address: &str, elapsed: Duration, ok: bool) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        if !ok {
            self.request_errors.fetch_add(1, Ordering::Relaxed);
        }
        let mut detail = self.detail();
        if ok {
            detail.latency_us.record(micros);
        }
        let broker = detail.brokers.entry(address.to_string()).or_default();
        broker.in_flight = broker.in_flight.saturating_sub(1);
        if ok {
            broker.rtt_us.record(micros);
        } else {
            broker.connected = false;
        }
    }

    /// Records delivered or handed out: `count` of them, `bytes` together.
    pub(crate) fn records(&self, count: u64, bytes: u64) {
        self.records.fetch_add(count, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A batch of `bytes` delivered to `partition`.
    pub(crate) fn batch(&self, partition: &TopicPartition, bytes: u64) {
        self.detail()
            .partitions
            .entry(partition.clone())
            .or_default()
            .batch_bytes
            .record(bytes);
    }

    /// Something failed, of `class`.
    pub(crate) fn error(&self, class: &'static str) {
        *self.detail().errors.entry(class).or_default() += 1;
    }

    /// Something was sent again.
    pub(crate) fn retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// A copy of everything counted so far.
    pub(crate) fn snapshot(&self) -> Stats {
        let detail = self.detail();
        Stats {
            age: self.started.elapsed(),
            records: self.records.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            request_errors: self.request_errors.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            errors: detail.errors.clone(),
            buffer_used_bytes: 0,
            latency_us: detail.latency_us,
            brokers: detail.brokers.clone(),
            partitions: detail.partitions.clone(),
        }
    }
}

/// The class an error counts under in [`Stats::errors`].
pub(crate) fn error_class(error: &crate::Error) -> &'static str {
    if error.is_fatal() {
        "fatal"
    } else if error.is_retriable() {
        "retriable"
    } else {
        "other"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_fixed_buckets_within_a_factor_of_two() {
        let mut h = Histogram::default();
        assert_eq!(h.percentile(0.5), 0);
        for v in 1..=100u64 {
            h.record(v * 10);
        }
        assert_eq!((h.count(), h.max(), h.mean()), (100, 1000, 505));
        let p50 = h.percentile(0.5);
        assert!((500..=1023).contains(&p50), "{p50}");
        assert_eq!(h.percentile(1.0), 1000);
        assert!(h.percentile(0.99) <= 1000);
        h.record(u64::MAX);
        assert_eq!(h.max(), u64::MAX);
        assert_eq!(std::mem::size_of::<Histogram>(), (BUCKETS + 3) * 8);
    }

    #[test]
    fn the_snapshot_is_json_of_the_documented_schema() {
        let collector = Collector::default();
        collector.connection("b\"0:9092", true);
        collector.request_sent("b\"0:9092");
        collector.request_done("b\"0:9092", Duration::from_micros(300), true);
        collector.records(2, 10);
        collector.batch(&TopicPartition::new("t", 0), 10);
        collector.error("retriable");
        collector.retry();
        let stats = collector.snapshot();
        assert_eq!(
            (stats.records, stats.bytes, stats.requests, stats.retries),
            (2, 10, 1, 1)
        );
        let json = stats.to_json();
        for key in [
            "\"records\":2",
            "\"bytes\":10",
            "\"errors\":{\"retriable\":1}",
            "\"b\\\"0:9092\":{\"connected\":true,\"in_flight\":0,\"requests\":1",
            "\"t/0\":{\"batch_bytes\":{\"count\":1",
            "\"position\":null",
        ] {
            assert!(json.contains(key), "{key} in {json}");
        }
        assert!(json.starts_with('{') && json.ends_with('}'));
    }
}
