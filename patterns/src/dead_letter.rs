//! Dead-letter topics: a record that failed for good goes to `<topic>.DLT` (configurable)
//! with its key, value and original headers, plus headers that say what failed and where
//! it came from.
//!
//! [`DeadLetterRouter::dead_letter_record`] builds that record (sans-IO: the failure time is
//! an argument). [`DeadLetterRouter::send`] produces it and waits for the acknowledgement;
//! when the dead-letter topic cannot be written it appends the record to the local
//! [`FallbackFile`] and fsyncs it. Either way, only once it returned `Ok` is the record
//! safely somewhere, and only then may the source offset be committed.

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use franzy::{ConsumerRecord, Header, Producer, ProducerRecord, RecordMetadata};

use crate::classify::{ErrorClass, KafkaErrors};
use crate::fallback::FallbackFile;
use crate::retry::RetryPolicy;
use crate::stats::{Counter, Stats};
use crate::PatternError;

/// How numbers (partition, offset, timestamp, retry count) are written in headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberEncoding {
    /// Decimal text (`"42"`), as the labs write them.
    Text,
    /// Big-endian binary (partition 4 bytes, offset and timestamp 8 bytes, retry count 4),
    /// as Spring Kafka's `DeadLetterPublishingRecoverer` writes them.
    BigEndian,
}

/// The names of the error headers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HeaderNames {
    /// The source topic.
    pub original_topic: Cow<'static, str>,
    /// The source partition.
    pub original_partition: Cow<'static, str>,
    /// The source offset.
    pub original_offset: Cow<'static, str>,
    /// The source record's timestamp (ms since the epoch).
    pub original_timestamp: Cow<'static, str>,
    /// The error's type (the application's name for it, or franzy's error class).
    pub error_type: Cow<'static, str>,
    /// The error's message.
    pub error_message: Cow<'static, str>,
    /// How many attempts failed before the record was dead-lettered.
    pub retry_count: Cow<'static, str>,
    /// When it failed, RFC 3339 in UTC with milliseconds (`2026-12-01T16:56:37.123Z`).
    pub failed_at: Cow<'static, str>,
    /// How numbers are written.
    pub numbers: NumberEncoding,
}

impl Default for HeaderNames {
    /// The (and the labs') names: `original-topic`, `original-partition`,
    /// `original-offset`, `original-timestamp`, `error-type`, `error-message`,
    /// `retry-count`, `failed-at`; numbers as text.
    fn default() -> Self {
        Self {
            original_topic: "original-topic".into(),
            original_partition: "original-partition".into(),
            original_offset: "original-offset".into(),
            original_timestamp: "original-timestamp".into(),
            error_type: "error-type".into(),
            error_message: "error-message".into(),
            retry_count: "retry-count".into(),
            failed_at: "failed-at".into(),
            numbers: NumberEncoding::Text,
        }
    }
}

impl HeaderNames {
    /// Spring Kafka's names (`KafkaHeaders.DLT_*`): `kafka_dlt-original-topic`,
    /// `kafka_dlt-original-partition`, `kafka_dlt-original-offset`,
    /// `kafka_dlt-original-timestamp`, `kafka_dlt-exception-fqcn`,
    /// `kafka_dlt-exception-message`, with numbers big-endian as Spring writes them. Spring
    /// has no retry-count nor failed-at header on a dead letter: its retry topics' attempt
    /// header `retry_topic-attempts` carries the count, and `kafka_dlt-failed-at` (franzy's
    /// addition, in Spring's prefix) the time.
    pub fn spring() -> Self {
        Self {
            original_topic: "kafka_dlt-original-topic".into(),
            original_partition: "kafka_dlt-original-partition".into(),
            original_offset: "kafka_dlt-original-offset".into(),
            original_timestamp: "kafka_dlt-original-timestamp".into(),
            error_type: "kafka_dlt-exception-fqcn".into(),
            error_message: "kafka_dlt-exception-message".into(),
            retry_count: "retry_topic-attempts".into(),
            failed_at: "kafka_dlt-failed-at".into(),
            numbers: NumberEncoding::BigEndian,
        }
    }

    /// Every name, in the order the headers are written.
    pub fn all(&self) -> [&str; 8] {
        [
            &self.original_topic,
            &self.original_partition,
            &self.original_offset,
            &self.original_timestamp,
            &self.error_type,
            &self.error_message,
            &self.retry_count,
            &self.failed_at,
        ]
    }
}

/// Why a record failed, as written into its dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The error's type: the application's name for it (`"JsonException"`), or its class.
    pub error_type: String,
    /// The error's message.
    pub message: String,
    /// Its class.
    pub class: ErrorClass,
    /// Attempts that failed.
    pub attempts: u32,
    /// When the last one failed.
    pub failed_at: SystemTime,
}

impl Failure {
    /// A failure of `class` with `message`, typed by its class name, after `attempts`
    /// attempts, at `failed_at`.
    pub fn new(
        class: ErrorClass,
        message: impl Into<String>,
        attempts: u32,
        failed_at: SystemTime,
    ) -> Self {
        Self {
            error_type: class.as_str().to_string(),
            message: message.into(),
            class,
            attempts,
            failed_at,
        }
    }

    /// Names the error's type.
    pub fn with_error_type(mut self, error_type: impl Into<String>) -> Self {
        self.error_type = error_type.into();
        self
    }
}

/// Where dead letters go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadLetterTopic {
    /// The source topic with this suffix (default `.DLT`).
    Suffix(String),
    /// One topic for every source.
    Fixed(String),
}

/// Builds dead letters and sends them (see the module doc).
#[derive(Debug, Clone)]
pub struct DeadLetterRouter {
    topic: DeadLetterTopic,
    names: HeaderNames,
    fallback: Option<FallbackFile>,
    retry: RetryPolicy,
    stats: Stats,
}

/// Where a dead letter ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routed {
    /// Acknowledged by the dead-letter topic.
    DeadLetterTopic(RecordMetadata),
    /// The dead-letter topic refused it (the error is given); appended to the fallback
    /// file and fsynced instead.
    Fallback(String),
}

impl Default for DeadLetterRouter {
    fn default() -> Self {
        Self::new()
    }
}

impl DeadLetterRouter {
    /// Sends to `<topic>.DLT`, with the default [`HeaderNames`], no fallback file.
    pub fn new() -> Self {
        Self {
            topic: DeadLetterTopic::Suffix(".DLT".into()),
            names: HeaderNames::default(),
            fallback: None,
            retry: RetryPolicy::immediate().max_attempts(1),
            stats: Stats::new("dead-letter"),
        }
    }

    /// Where dead letters go (default suffix `.DLT`; the labs' producer uses `.dlq`).
    pub fn topic(mut self, topic: DeadLetterTopic) -> Self {
        self.topic = topic;
        self
    }

    /// The header names (default [`HeaderNames::default`]; [`HeaderNames::spring`] is the
    /// Spring preset).
    pub fn header_names(mut self, names: HeaderNames) -> Self {
        self.names = names;
        self
    }

    /// Appends dead letters the topic refused to this file (default: none, and
    /// [`DeadLetterRouter::send`] fails instead).
    pub fn fallback(mut self, file: FallbackFile) -> Self {
        self.fallback = Some(file);
        self
    }

    /// Retries a dead letter's write under `policy` (transient errors only, as
    /// [`KafkaErrors`] classifies them) before the fallback file (default: one attempt; the
    /// producer already retries within its `delivery.timeout.ms`).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Counts into these stats (default: the router's own, labelled `dead-letter`).
    pub fn stats(mut self, stats: Stats) -> Self {
        self.stats = stats;
        self
    }

    /// The stats it counts into.
    pub fn statistics(&self) -> &Stats {
        &self.stats
    }

    /// The header names.
    pub fn names(&self) -> &HeaderNames {
        &self.names
    }

    /// The fallback file, if any.
    pub fn fallback_file(&self) -> Option<&FallbackFile> {
        self.fallback.as_ref()
    }

    /// The dead-letter topic of records from `source`.
    pub fn dead_letter_topic(&self, source: &str) -> String {
        match &self.topic {
            DeadLetterTopic::Suffix(suffix) => format!("{source}{suffix}"),
            DeadLetterTopic::Fixed(topic) => topic.clone(),
        }
    }

    /// The dead letter of `record`: same key, value and headers, plus the error headers. A
    /// record that already carries `original-*` headers (it comes from a retry topic) keeps
    /// them, and goes to the dead-letter topic of its original topic.
    pub fn dead_letter_record(&self, record: &ConsumerRecord, failure: &Failure) -> ProducerRecord {
        let names = &self.names;
        let mut headers = origin_headers(record, names);
        let original_topic = headers
            .iter()
            .rev()
            .find(|h| h.key == names.original_topic.as_bytes())
            .and_then(|h| h.value.clone())
            .unwrap_or_default();
        headers.push(Header::new(
            names.error_type.to_string(),
            failure.error_type.clone(),
        ));
        headers.push(Header::new(
            names.error_message.to_string(),
            failure.message.clone(),
        ));
        headers.push(Header::new(
            names.retry_count.to_string(),
            encode_number(names.numbers, i64::from(failure.attempts), 4),
        ));
        headers.push(Header::new(
            names.failed_at.to_string(),
            rfc3339(failure.failed_at),
        ));
        let topic = self.dead_letter_topic(&String::from_utf8_lossy(&original_topic));
        crate::producer_record(topic, record.key.clone(), record.value.clone(), headers)
    }

    /// The dead letter of a record a producer could not send (the labs' producer DLQ):
    /// partition and offset are -1 when unknown, the timestamp -1 when not set.
    pub fn dead_letter_of_unsent(
        &self,
        record: &ProducerRecord,
        failure: &Failure,
    ) -> ProducerRecord {
        let mut source =
            ConsumerRecord::new(record.topic.clone(), record.partition.unwrap_or(-1), -1)
                .with_headers(record.headers.clone());
        source.timestamp = record.timestamp.unwrap_or(-1);
        source.key = record.key.clone();
        source.value = record.value.clone();
        self.dead_letter_record(&source, failure)
    }

    /// Sends `dead_letter` (from [`DeadLetterRouter::dead_letter_record`]) and waits for its
    /// acknowledgement; if the topic refuses it, appends it to the fallback file and fsyncs.
    /// `Err` when neither holds it: the record is nowhere safe, so the source offset must
    /// not be committed.
    pub async fn send(
        &self,
        producer: &Producer,
        dead_letter: ProducerRecord,
    ) -> Result<Routed, PatternError> {
        let topic = dead_letter.topic.clone();
        let sent = self
            .retry
            .run(&KafkaErrors, |_| {
                producer.send_and_wait(dead_letter.clone())
            })
            .await
            .map_err(|gave_up| gave_up.error);
        match sent {
            Ok(metadata) => {
                self.stats.incr(Counter::DeadLettered);
                tracing::info!(topic = %topic, partition = metadata.partition, offset = metadata.offset, "dead letter written");
                Ok(Routed::DeadLetterTopic(metadata))
            }
            Err(refused) => {
                let reason = refused.error.to_string();
                let Some(file) = &self.fallback else {
                    return Err(PatternError::Kafka(refused.error));
                };
                tracing::warn!(topic = %topic, error = %reason, path = %file.path().display(), "dead-letter topic refused the record; writing it to the fallback file");
                file.append(&refused.record).await?;
                self.stats.incr(Counter::WrittenToFallback);
                Ok(Routed::Fallback(reason))
            }
        }
    }
}

/// `record`'s headers without any error header of `names`, then its origin:
/// `original-topic`, `original-partition`, `original-offset`, `original-timestamp`, those
/// it already carries (it comes from a retry topic) or else its own.
pub fn origin_headers(record: &ConsumerRecord, names: &HeaderNames) -> Vec<Header> {
    let kept = |name: &str| record.header(name).and_then(|h| h.value.clone());
    let origin = match (
        kept(&names.original_topic),
        kept(&names.original_partition),
        kept(&names.original_offset),
        kept(&names.original_timestamp),
    ) {
        (Some(topic), Some(partition), Some(offset), Some(timestamp)) => {
            [topic, partition, offset, timestamp]
        }
        _ => [
            Bytes::copy_from_slice(record.topic.as_bytes()),
            encode_number(names.numbers, i64::from(record.partition), 4),
            encode_number(names.numbers, record.offset, 8),
            encode_number(names.numbers, record.timestamp, 8),
        ],
    };
    let replaced = names.all();
    let mut headers: Vec<Header> = record
        .headers
        .iter()
        .filter(|h| !replaced.iter().any(|name| h.key == name.as_bytes()))
        .cloned()
        .collect();
    let [topic, partition, offset, timestamp] = origin;
    headers.push(Header::new(names.original_topic.to_string(), topic));
    headers.push(Header::new(names.original_partition.to_string(), partition));
    headers.push(Header::new(names.original_offset.to_string(), offset));
    headers.push(Header::new(names.original_timestamp.to_string(), timestamp));
    headers
}

/// `n` as `encoding` says; `width` 4 or 8 bytes for big-endian (saturating to i32).
fn encode_number(encoding: NumberEncoding, n: i64, width: usize) -> Bytes {
    match encoding {
        NumberEncoding::Text => Bytes::from(n.to_string()),
        NumberEncoding::BigEndian if width == 4 => {
            let n = i32::try_from(n).unwrap_or(if n < 0 { i32::MIN } else { i32::MAX });
            Bytes::copy_from_slice(&n.to_be_bytes())
        }
        NumberEncoding::BigEndian => Bytes::copy_from_slice(&n.to_be_bytes()),
    }
}

/// `time` as RFC 3339 in UTC with milliseconds; times before 1970 are written as the epoch.
pub fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let millis = since.subsec_millis();
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn header<'a>(record: &'a ProducerRecord, name: &str) -> Option<&'a [u8]> {
        record.header(name).and_then(|h| h.value.as_deref())
    }

    #[test]
    fn rfc3339_matches_known_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_796_144_197_123);
        assert_eq!(rfc3339(t), "2026-12-01T16:56:37.123Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH - Duration::from_secs(5)),
            "1970-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn a_dead_letter_keeps_key_value_and_headers_and_adds_the_error_headers() {
        let source = ConsumerRecord::new("orders", 3, 41)
            .with_key("customer-7")
            .with_value("{bad json")
            .with_header("trace-id", "abc")
            .with_timestamp(1_700_000_000_000, franzy::TimestampType::CreateTime);
        let at = UNIX_EPOCH + Duration::from_millis(1_796_144_197_123);
        let failure = Failure::new(ErrorClass::Permanent, "expected value at line 1", 3, at)
            .with_error_type("JsonException");
        let router = DeadLetterRouter::new();
        let dl = router.dead_letter_record(&source, &failure);
        assert_eq!(&*dl.topic, "orders.DLT");
        assert_eq!(dl.key.as_deref(), Some(&b"customer-7"[..]));
        assert_eq!(dl.value.as_deref(), Some(&b"{bad json"[..]));
        for (name, value) in [
            ("trace-id", "abc"),
            ("original-topic", "orders"),
            ("original-partition", "3"),
            ("original-offset", "41"),
            ("original-timestamp", "1700000000000"),
            ("error-type", "JsonException"),
            ("error-message", "expected value at line 1"),
            ("retry-count", "3"),
            ("failed-at", "2026-12-01T16:56:37.123Z"),
        ] {
            assert_eq!(header(&dl, name), Some(value.as_bytes()), "{name}");
        }
        // Through a retry topic and back: the original headers are kept, not doubled.
        let again = ConsumerRecord::new("orders.retry", 0, 7).with_headers(dl.headers.clone());
        let dl2 = router.dead_letter_record(&again, &failure);
        assert_eq!(&*dl2.topic, "orders.DLT");
        assert_eq!(header(&dl2, "original-offset"), Some(&b"41"[..]));
        assert_eq!(
            dl2.headers
                .iter()
                .filter(|h| h.key == "original-topic")
                .count(),
            1
        );
    }

    #[test]
    fn the_spring_preset_writes_springs_names_and_binary_numbers() {
        let source = ConsumerRecord::new("orders", 2, 9);
        let failure = Failure::new(ErrorClass::Permanent, "boom", 1, UNIX_EPOCH);
        let router = DeadLetterRouter::new()
            .header_names(HeaderNames::spring())
            .topic(DeadLetterTopic::Fixed("all-dlt".into()));
        let dl = router.dead_letter_record(&source, &failure);
        assert_eq!(&*dl.topic, "all-dlt");
        assert_eq!(
            header(&dl, "kafka_dlt-original-topic"),
            Some(&b"orders"[..])
        );
        assert_eq!(
            header(&dl, "kafka_dlt-original-partition"),
            Some(&2i32.to_be_bytes()[..])
        );
        assert_eq!(
            header(&dl, "kafka_dlt-original-offset"),
            Some(&9i64.to_be_bytes()[..])
        );
        assert_eq!(
            header(&dl, "kafka_dlt-exception-message"),
            Some(&b"boom"[..])
        );
        assert!(dl.header("original-topic").is_none());
    }
}
