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
//!   "client_id": string,            the client's `client.id`
//!   "type": string,                 "producer", "consumer" or "admin"
//!   "age_ms": u64,                  time since the client started
//!   "records": u64,                 records delivered (producer) or handed out (consumer)
//!   "bytes": u64,                   their key, value and header bytes
//!   "requests": u64,                requests sent, every broker together
//!   "request_rate": f64,            requests per second over the client's age
//!   "request_errors": u64,          requests that failed (connection lost, timed out)
//!   "retries": u64,                 batches (producer) or requests (admin) sent again
//!   "errors": {CLASS: u64},         failed records or requests by class: "retriable",
//!                                   "fatal", "other"
//!   "buffer_used_bytes": u64,       producer: bytes of buffer.memory in use (0 for consumers)
//!   "latency_us": {"count", "p50", "p90", "p99", "max"},   request round trips
//!   "brokers": {ADDRESS: {"connected": bool, "in_flight": u64, "requests": u64,
//!               "rtt_us": {"count", "p50", "p90", "p99", "max"}}},
//!   "partitions": {"TOPIC/PARTITION": {"batch_bytes": {"count", "p50", "p90", "p99", "max"},
//!                  "position": i64|null, "committed": i64|null, "lag": i64|null}}
//! }
//! ```
//!
//! ## Every interval
//!
//! With `statistics.interval.ms` above 0 (librdkafka's key; 0, the default, turns it off),
//! a producer or consumer built with [`ClientBuilder::on_statistics`] hands a snapshot to
//! that callback every interval, from a background task (`io/stats_loop.rs`), until it is
//! closed or dropped: the same snapshot as `stats()`, which `to_json` turns into what
//! librdkafka's `stats_cb` receives. With the `metrics` feature, each snapshot is also
//! exported through the [`metrics`](https://docs.rs/metrics) facade
//! ([`Stats::export_metrics`]), so that a Prometheus or StatsD recorder installed by the
//! application sees it without a callback.
//!
//! [`ClientBuilder::on_statistics`]: crate::builder::ClientBuilder::on_statistics

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::topic_partition::TopicPartition;

/// What the application gets every `statistics.interval.ms` (see
/// [`ClientBuilder::on_statistics`]).
///
/// [`ClientBuilder::on_statistics`]: crate::builder::ClientBuilder::on_statistics
pub type StatisticsCallback = std::sync::Arc<dyn Fn(&Stats) + Send + Sync>;

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
    /// Consumer: the group's committed offset, as this member last committed or looked it
    /// up.
    pub committed: Option<i64>,
    /// Consumer: records between the position and the end offset.
    pub lag: Option<i64>,
}

/// A snapshot of a client's statistics (the module doc has the JSON schema).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// The client's `client.id`.
    pub client_id: String,
    /// `producer`, `consumer` or `admin`.
    pub kind: &'static str,
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
            "{{\"client_id\":{},\"type\":{},\"age_ms\":{},\"records\":{},\"bytes\":{},\"requests\":{},\"request_rate\":{:.3},\"request_errors\":{},\"retries\":{},\"errors\":{{",
            json_string(&self.client_id),
            json_string(self.kind),
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
                    "{}:{{\"batch_bytes\":{},\"position\":{},\"committed\":{},\"lag\":{}}}",
                    json_string(&tp.to_string()),
                    p.batch_bytes.json(),
                    optional(p.position),
                    optional(p.committed),
                    optional(p.lag)
                )
            })
            .collect();
        out.push_str(&partitions.join(","));
        out.push_str("}}");
        out
    }
}

/// Names and labels of what [`Stats::export_metrics`] records.
#[cfg(feature = "metrics")]
impl Stats {
    /// Records the snapshot through the [`metrics`] facade, for whatever recorder the
    /// application installed (the `metrics` feature; the statistics task calls it every
    /// `statistics.interval.ms`). Every name has the labels `client_id` and `type`:
    ///
    /// | name | kind | more labels |
    /// |---|---|---|
    /// | `franzy_records_total`, `franzy_bytes_total` | counter | |
    /// | `franzy_requests_total`, `franzy_request_errors_total`, `franzy_retries_total` | counter | |
    /// | `franzy_errors_total` | counter | `class` |
    /// | `franzy_buffer_used_bytes` | gauge | |
    /// | `franzy_request_latency_us` | gauge | `quantile` (`0.5`, `0.9`, `0.99`, `1`) |
    /// | `franzy_broker_connected`, `franzy_broker_in_flight` | gauge | `broker` |
    /// | `franzy_broker_requests_total` | counter | `broker` |
    /// | `franzy_broker_rtt_us` | gauge | `broker`, `quantile` |
    /// | `franzy_partition_batches_total` | counter | `topic`, `partition` |
    /// | `franzy_partition_batch_bytes` | gauge | `topic`, `partition`, `quantile` |
    /// | `franzy_partition_position`, `franzy_partition_committed`, `franzy_partition_lag` | gauge | `topic`, `partition` (only when known) |
    ///
    /// Counters are set to the snapshot's totals ([`metrics::Counter::absolute`]), so
    /// exporting twice counts nothing twice.
    pub fn export_metrics(&self) {
        use metrics::{counter, gauge, Label};
        let client = vec![
            Label::new("client_id", self.client_id.clone()),
            Label::new("type", self.kind),
        ];
        let with = |extra: &[(&'static str, String)]| {
            let mut labels = client.clone();
            labels.extend(extra.iter().map(|(k, v)| Label::new(*k, v.clone())));
            labels
        };
        let quantiles =
            |name: &'static str, histogram: &Histogram, extra: &[(&'static str, String)]| {
                for (q, value) in [
                    ("0.5", histogram.percentile(0.5)),
                    ("0.9", histogram.percentile(0.9)),
                    ("0.99", histogram.percentile(0.99)),
                    ("1", histogram.max()),
                ] {
                    let mut labels = with(extra);
                    labels.push(Label::new("quantile", q));
                    gauge!(name, labels).set(value as f64);
                }
            };
        counter!("franzy_records_total", client.clone()).absolute(self.records);
        counter!("franzy_bytes_total", client.clone()).absolute(self.bytes);
        counter!("franzy_requests_total", client.clone()).absolute(self.requests);
        counter!("franzy_request_errors_total", client.clone()).absolute(self.request_errors);
        counter!("franzy_retries_total", client.clone()).absolute(self.retries);
        for (class, n) in &self.errors {
            counter!("franzy_errors_total", with(&[("class", class.to_string())])).absolute(*n);
        }
        gauge!("franzy_buffer_used_bytes", client.clone()).set(self.buffer_used_bytes as f64);
        quantiles("franzy_request_latency_us", &self.latency_us, &[]);
        for (address, broker) in &self.brokers {
            let labels = [("broker", address.clone())];
            gauge!("franzy_broker_connected", with(&labels)).set(if broker.connected {
                1.0
            } else {
                0.0
            });
            gauge!("franzy_broker_in_flight", with(&labels)).set(broker.in_flight as f64);
            counter!("franzy_broker_requests_total", with(&labels)).absolute(broker.requests);
            quantiles("franzy_broker_rtt_us", &broker.rtt_us, &labels);
        }
        for (tp, partition) in &self.partitions {
            let labels = [
                ("topic", tp.topic.clone()),
                ("partition", tp.partition.to_string()),
            ];
            counter!("franzy_partition_batches_total", with(&labels))
                .absolute(partition.batch_bytes.count());
            quantiles(
                "franzy_partition_batch_bytes",
                &partition.batch_bytes,
                &labels,
            );
            for (name, value) in [
                ("franzy_partition_position", partition.position),
                ("franzy_partition_committed", partition.committed),
                ("franzy_partition_lag", partition.lag),
            ] {
                if let Some(value) = value {
                    gauge!(name, with(&labels)).set(value as f64);
                }
            }
        }
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
            client_id: String::new(),
            kind: "",
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

    #[cfg(feature = "metrics")]
    #[test]
    fn a_snapshot_is_exported_through_the_metrics_facade() {
        use metrics_util::debugging::{DebugValue, DebuggingRecorder};

        let collector = Collector::default();
        collector.connection("b0:9092", true);
        collector.request_sent("b0:9092");
        collector.request_done("b0:9092", Duration::from_micros(300), true);
        collector.records(2, 10);
        collector.batch(&TopicPartition::new("t", 0), 10);
        collector.error("retriable");
        collector.retry();
        let mut stats = collector.snapshot();
        stats.client_id = "c1".into();
        stats.kind = "consumer";
        let tp = TopicPartition::new("t", 0);
        let partition = stats.partitions.get_mut(&tp).expect("counted");
        partition.committed = Some(7);
        partition.lag = Some(3);

        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            stats.export_metrics();
            // Counters carry totals: a second export adds nothing.
            stats.export_metrics();
        });
        let exported: BTreeMap<(String, Vec<(String, String)>), DebugValue> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| {
                let key = key.key();
                let mut labels: Vec<(String, String)> = key
                    .labels()
                    .map(|l| (l.key().to_string(), l.value().to_string()))
                    .collect();
                labels.sort();
                ((key.name().to_string(), labels), value)
            })
            .collect();
        let client = |extra: &[(&str, &str)]| {
            let mut labels: Vec<(String, String)> = [("client_id", "c1"), ("type", "consumer")]
                .iter()
                .chain(extra)
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            labels.sort();
            labels
        };
        let value = |name: &str, labels: Vec<(String, String)>| {
            exported
                .get(&(name.to_string(), labels))
                .unwrap_or_else(|| panic!("{name} exported: {exported:?}"))
        };
        let gauge = |v: f64| DebugValue::Gauge(v.into());
        assert_eq!(
            value("franzy_records_total", client(&[])),
            &DebugValue::Counter(2)
        );
        assert_eq!(
            value("franzy_bytes_total", client(&[])),
            &DebugValue::Counter(10)
        );
        assert_eq!(
            value("franzy_retries_total", client(&[])),
            &DebugValue::Counter(1)
        );
        assert_eq!(
            value("franzy_errors_total", client(&[("class", "retriable")])),
            &DebugValue::Counter(1)
        );
        assert_eq!(
            value("franzy_broker_connected", client(&[("broker", "b0:9092")])),
            &gauge(1.0)
        );
        assert_eq!(
            value(
                "franzy_broker_rtt_us",
                client(&[("broker", "b0:9092"), ("quantile", "1")])
            ),
            &gauge(300.0)
        );
        let partition = [("partition", "0"), ("topic", "t")];
        assert_eq!(
            value("franzy_partition_committed", client(&partition)),
            &gauge(7.0)
        );
        assert_eq!(
            value("franzy_partition_lag", client(&partition)),
            &gauge(3.0)
        );
        assert!(
            !exported.contains_key(&("franzy_partition_position".into(), client(&partition))),
            "an unknown position is not exported as a number"
        );
    }
}
