//! Retry topics: `orders` → `orders.retry` (one or several stages, each with its delay) →
//! `orders.DLT`.
//!
//! A record that failed transiently is re-produced to the next stage with two headers: the
//! attempts made so far (`retry-attempt`) and the wall-clock time it is due
//! (`retry-due-at`, ms since the epoch); its original topic, partition, offset and
//! timestamp go along as the dead-letter headers (so that its dead letter, if it comes to
//! that, names where it came from). The consumer of a stage does not sleep in its poll
//! loop until a record is due: it pauses the record's partition, seeks back to it, and
//! resumes when the time comes ([`crate::Processor`] does this). After the last stage a
//! record goes to the dead-letter topic.
//!
//! Sans-IO: the current time is an argument of every method.

use std::time::Duration;

use bytes::Bytes;
use franzy::{ConsumerRecord, Header, ProducerRecord};

use crate::dead_letter::{origin_headers, HeaderNames};

/// One stage: its topic and how long a record waits there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryStage {
    /// The stage's topic.
    pub topic: String,
    /// How long after its failure a record is retried from this stage.
    pub delay: Duration,
}

/// The retry stages of one source topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryTopics {
    source: String,
    stages: Vec<RetryStage>,
    attempt_header: String,
    due_header: String,
}

impl RetryTopics {
    /// One stage, `<source>.retry`, with a 1 s delay.
    pub fn new(source: impl Into<String>) -> Self {
        let source = source.into();
        Self {
            stages: vec![RetryStage {
                topic: format!("{source}.retry"),
                delay: Duration::from_secs(1),
            }],
            source,
            attempt_header: "retry-attempt".into(),
            due_header: "retry-due-at".into(),
        }
    }

    /// One stage per delay: `<source>.retry` when there is one, else `<source>.retry-1`,
    /// `<source>.retry-2`, ... (give increasing delays). An empty list keeps the stages.
    pub fn delays(mut self, delays: &[Duration]) -> Self {
        if delays.is_empty() {
            return self;
        }
        let source = &self.source;
        self.stages = delays
            .iter()
            .enumerate()
            .map(|(i, delay)| RetryStage {
                topic: if delays.len() == 1 {
                    format!("{source}.retry")
                } else {
                    format!("{source}.retry-{}", i + 1)
                },
                delay: *delay,
            })
            .collect();
        self
    }

    /// Explicit stages (topics and delays). An empty list keeps the stages.
    pub fn stages(mut self, stages: Vec<RetryStage>) -> Self {
        if !stages.is_empty() {
            self.stages = stages;
        }
        self
    }

    /// The source topic.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Every topic to subscribe to: the source and every stage.
    pub fn topics(&self) -> Vec<String> {
        std::iter::once(self.source.clone())
            .chain(self.stages.iter().map(|s| s.topic.clone()))
            .collect()
    }

    /// The stages, in order.
    pub fn stage_list(&self) -> &[RetryStage] {
        &self.stages
    }

    /// The attempt header's name (`retry-attempt`).
    pub fn attempt_header(&self) -> &str {
        &self.attempt_header
    }

    /// The due-time header's name (`retry-due-at`).
    pub fn due_header(&self) -> &str {
        &self.due_header
    }

    /// 0 for the source topic, `i + 1` for stage `i`, `None` for another topic.
    pub fn position(&self, topic: &str) -> Option<usize> {
        if topic == self.source {
            return Some(0);
        }
        self.stages
            .iter()
            .position(|s| s.topic == topic)
            .map(|i| i + 1)
    }

    /// Attempts already made on `record` (its attempt header; 0 when absent or unreadable).
    pub fn attempts(&self, record: &ConsumerRecord) -> u32 {
        header_number(record, &self.attempt_header)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0)
    }

    /// When `record` is due (ms since the epoch), if it is on a stage and says so.
    pub fn due_at_ms(&self, record: &ConsumerRecord) -> Option<i64> {
        if self.position(&record.topic).unwrap_or(0) == 0 {
            return None;
        }
        header_number(record, &self.due_header)
    }

    /// How long until `record` is due, at wall-clock `now_ms`; `None` if it is due.
    pub fn wait(&self, record: &ConsumerRecord, now_ms: i64) -> Option<Duration> {
        let due = self.due_at_ms(record)?;
        (due > now_ms).then(|| Duration::from_millis(u64::try_from(due - now_ms).unwrap_or(0)))
    }

    /// The record for the next stage after `record` failed, `attempts` attempts in all
    /// (those of earlier stages included), at wall-clock `now_ms`; `None` after the last
    /// stage (or for a topic that is neither the source nor a stage): dead-letter it.
    pub fn next_stage_record(
        &self,
        record: &ConsumerRecord,
        attempts: u32,
        now_ms: i64,
        names: &HeaderNames,
    ) -> Option<ProducerRecord> {
        let stage = self.stages.get(self.position(&record.topic)?)?;
        let delay = i64::try_from(stage.delay.as_millis()).unwrap_or(i64::MAX);
        let own = [self.attempt_header.as_str(), self.due_header.as_str()];
        let mut headers = origin_headers(record, names);
        headers.retain(|h| !own.iter().any(|n| h.key == n.as_bytes()));
        headers.push(Header::new(
            self.attempt_header.clone(),
            attempts.to_string(),
        ));
        headers.push(Header::new(
            self.due_header.clone(),
            now_ms.saturating_add(delay).to_string(),
        ));
        Some(crate::producer_record(
            stage.topic.clone(),
            record.key.clone(),
            record.value.clone(),
            headers,
        ))
    }
}

fn header_number(record: &ConsumerRecord, name: &str) -> Option<i64> {
    let value: &Bytes = record.header(name)?.value.as_ref()?;
    std::str::from_utf8(value).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn as_consumed(record: ProducerRecord, offset: i64) -> ConsumerRecord {
        let mut consumed = ConsumerRecord::new(record.topic.clone(), 0, offset)
            .with_headers(record.headers.clone());
        consumed.key = record.key;
        consumed.value = record.value;
        consumed
    }

    #[test]
    fn a_record_walks_the_stages_then_stops_with_its_attempts_and_origin() {
        let topics =
            RetryTopics::new("orders").delays(&[Duration::from_secs(1), Duration::from_secs(10)]);
        assert_eq!(
            topics.topics(),
            ["orders", "orders.retry-1", "orders.retry-2"]
        );
        let names = HeaderNames::default();
        let source = ConsumerRecord::new("orders", 4, 17)
            .with_key("k")
            .with_value("v");
        assert_eq!(topics.due_at_ms(&source), None);
        let first = topics
            .next_stage_record(&source, 3, 1_000, &names)
            .expect("stage 1");
        assert_eq!(&*first.topic, "orders.retry-1");
        let first = as_consumed(first, 0);
        assert_eq!(topics.attempts(&first), 3);
        assert_eq!(topics.due_at_ms(&first), Some(2_000));
        assert_eq!(topics.wait(&first, 1_500), Some(Duration::from_millis(500)));
        assert_eq!(topics.wait(&first, 2_000), None);
        let second = as_consumed(
            topics
                .next_stage_record(&first, 6, 5_000, &names)
                .expect("stage 2"),
            0,
        );
        assert_eq!(&*second.topic, "orders.retry-2");
        assert_eq!(topics.due_at_ms(&second), Some(15_000));
        assert_eq!(second.headers_named("retry-attempt").count(), 1);
        assert_eq!(
            second
                .header("original-offset")
                .and_then(|h| h.value.as_deref()),
            Some(&b"17"[..])
        );
        assert_eq!(
            second
                .header("original-partition")
                .and_then(|h| h.value.as_deref()),
            Some(&b"4"[..])
        );
        assert_eq!(second.key.as_deref(), Some(&b"k"[..]));
        assert!(
            topics.next_stage_record(&second, 9, 0, &names).is_none(),
            "last stage: DLT"
        );
        assert!(topics
            .next_stage_record(&ConsumerRecord::new("other", 0, 0), 1, 0, &names)
            .is_none());
    }

    #[test]
    fn unreadable_headers_count_as_absent() {
        let topics = RetryTopics::new("orders");
        let record = ConsumerRecord::new("orders.retry", 0, 0)
            .with_header("retry-attempt", "lots")
            .with_header("retry-due-at", vec![0xffu8, 0xfe]);
        assert_eq!(topics.attempts(&record), 0);
        assert_eq!(topics.due_at_ms(&record), None);
        assert_eq!(topics.wait(&record, 0), None);
    }
}
