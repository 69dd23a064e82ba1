//! The record types every layer uses: what a producer sends ([`ProducerRecord`]) and hears
//! back ([`RecordMetadata`]), what a consumer hands out ([`ConsumerRecord`],
//! [`ConsumerEvent`]) and where it reads from ([`Offset`]), and the [`Header`]s and
//! [`TimestampType`] they share with the record batch codec.
//!
//! A leaf: this module imports nothing of the crate but [`TopicPartition`] (itself a leaf),
//! so that the wire codec, the engines, the drivers and the public API can all use these
//! types without importing each other.

use std::sync::Arc;

use bytes::Bytes;

use crate::topic_partition::TopicPartition;

/// A record header (KIP-82): a key and a nullable value. Keys may repeat within a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The key: a UTF-8 string for well-behaved producers, kept as bytes so that a record
    /// with an invalid one still decodes; see [`Header::key_str`].
    pub key: Bytes,
    /// The value; `None` is null, distinct from empty.
    pub value: Option<Bytes>,
}

impl Header {
    /// A header with a (non-null) value.
    pub fn new(key: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        Self {
            key: key.into(),
            value: Some(value.into()),
        }
    }

    /// A header with a null value.
    pub fn null(key: impl Into<Bytes>) -> Self {
        Self {
            key: key.into(),
            value: None,
        }
    }

    /// The key as a string, if it is valid UTF-8.
    pub fn key_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.key).ok()
    }
}

/// The last header named `key` (Kafka's `Headers.lastHeader`).
fn last_header<'a>(headers: &'a [Header], key: &[u8]) -> Option<&'a Header> {
    headers.iter().rev().find(|h| h.key == key)
}

/// What a record's timestamp means (attributes bit 3 of its batch, KIP-32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TimestampType {
    /// Set by the producer: each record's timestamp is `baseTimestamp + timestampDelta`.
    #[default]
    CreateTime,
    /// Set by the broker on append: every record's timestamp is `maxTimestamp`.
    LogAppendTime,
}

/// A record to send.
///
/// ```
/// use franzy::ProducerRecord;
/// let record = ProducerRecord::new("orders")
///     .with_key("customer-7")
///     .with_value("{\"total\": 12}")
///     .with_header("trace-id", "abc");
/// assert_eq!(record.partition, None);
/// assert_eq!(record.header("trace-id").and_then(|h| h.value.as_deref()), Some(&b"abc"[..]));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProducerRecord {
    /// The topic. Shared, so that a producer that sends many records to one topic clones an
    /// `Arc<str>` it keeps rather than allocating the name for every record.
    pub topic: Arc<str>,
    /// The partition, or `None` to let the partitioner choose (by key, or sticky).
    pub partition: Option<i32>,
    /// The key; `None` is a null key.
    pub key: Option<Bytes>,
    /// The value; `None` is a null value (a tombstone on compacted topics).
    pub value: Option<Bytes>,
    /// Headers, in order; keys may repeat.
    pub headers: Vec<Header>,
    /// The create time in milliseconds since the epoch, or `None` for the time of `send`.
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
    /// A record for `topic` with no key, value, headers, partition or timestamp. Give an
    /// `Arc<str>` clone to send many records without allocating the name each time.
    pub fn new(topic: impl Into<Arc<str>>) -> Self {
        Self {
            topic: topic.into(),
            ..Self::default()
        }
    }

    /// Sets the key.
    pub fn with_key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets the value.
    pub fn with_value(mut self, value: impl Into<Bytes>) -> Self {
        self.value = Some(value.into());
        self
    }

    /// Sends to this partition rather than the partitioner's choice.
    pub fn with_partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Appends a header.
    pub fn with_header(mut self, key: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        self.headers.push(Header::new(key, value));
        self
    }

    /// Replaces the headers.
    pub fn with_headers(mut self, headers: Vec<Header>) -> Self {
        self.headers = headers;
        self
    }

    /// Sets the create time (milliseconds since the Unix epoch).
    pub fn with_timestamp(mut self, timestamp: i64) -> Self {
        self.timestamp = Some(timestamp);
        self
    }

    /// The last header named `key`, as Kafka's `Headers.lastHeader`.
    pub fn header(&self, key: impl AsRef<[u8]>) -> Option<&Header> {
        last_header(&self.headers, key.as_ref())
    }
}

/// Where a record was written.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordMetadata {
    /// The topic.
    pub topic: Arc<str>,
    /// The partition.
    pub partition: i32,
    /// The record's offset, or -1 with `acks=0` (the broker does not answer).
    pub offset: i64,
    /// The broker's append time for `LogAppendTime` topics, else the record's create time.
    pub timestamp: i64,
}

impl RecordMetadata {
    /// Metadata of a record written to `topic`/`partition` at `offset` with `timestamp`.
    pub fn new(topic: impl Into<Arc<str>>, partition: i32, offset: i64, timestamp: i64) -> Self {
        Self {
            topic: topic.into(),
            partition,
            offset,
            timestamp,
        }
    }

    /// The topic and partition.
    pub fn topic_partition(&self) -> TopicPartition {
        TopicPartition::new(&*self.topic, self.partition)
    }
}

/// A record handed to the user.
///
/// ```
/// use franzy::ConsumerRecord;
/// let record = ConsumerRecord::new("orders", 0, 41)
///     .with_value("{}")
///     .with_header("trace-id", "a")
///     .with_header("trace-id", "b");
/// // The last header of a name, as Kafka's `Headers.lastHeader`:
/// assert_eq!(record.header("trace-id").and_then(|h| h.value.as_deref()), Some(&b"b"[..]));
/// assert_eq!(record.headers_named("trace-id").count(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerRecord {
    /// The topic.
    pub topic: Arc<str>,
    /// The partition.
    pub partition: i32,
    /// The record's offset.
    pub offset: i64,
    /// The record's timestamp (ms since the epoch), as [`ConsumerRecord::timestamp_type`] says.
    pub timestamp: i64,
    /// Whether the producer or the broker set the timestamp.
    pub timestamp_type: TimestampType,
    /// The key; `None` is a null key. A slice of the fetch response when uncompressed.
    pub key: Option<Bytes>,
    /// The value; `None` is a null value (a tombstone). A slice of the fetch response when
    /// uncompressed.
    pub value: Option<Bytes>,
    /// The headers, in wire order; keys may repeat (see [`ConsumerRecord::header`]).
    pub headers: Vec<Header>,
    /// The leader epoch the batch was written in (KIP-320), if the broker stamped one.
    pub leader_epoch: Option<i32>,
}

impl ConsumerRecord {
    /// A record of `topic`/`partition` at `offset`, with no key, value or headers, timestamp
    /// 0 (create time) and no leader epoch: what a test of code that handles records
    /// starts from.
    pub fn new(topic: impl Into<Arc<str>>, partition: i32, offset: i64) -> Self {
        Self {
            topic: topic.into(),
            partition,
            offset,
            timestamp: 0,
            timestamp_type: TimestampType::CreateTime,
            key: None,
            value: None,
            headers: Vec::new(),
            leader_epoch: None,
        }
    }

    /// Sets the key.
    pub fn with_key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets the value.
    pub fn with_value(mut self, value: impl Into<Bytes>) -> Self {
        self.value = Some(value.into());
        self
    }

    /// Appends a header.
    pub fn with_header(mut self, key: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        self.headers.push(Header::new(key, value));
        self
    }

    /// Replaces the headers.
    pub fn with_headers(mut self, headers: Vec<Header>) -> Self {
        self.headers = headers;
        self
    }

    /// Sets the timestamp and what it means.
    pub fn with_timestamp(mut self, timestamp: i64, timestamp_type: TimestampType) -> Self {
        self.timestamp = timestamp;
        self.timestamp_type = timestamp_type;
        self
    }

    /// Sets the leader epoch.
    pub fn with_leader_epoch(mut self, leader_epoch: i32) -> Self {
        self.leader_epoch = Some(leader_epoch);
        self
    }

    /// The last header named `key`, as Kafka's `Headers.lastHeader`; `None` if there is
    /// none. Its value may still be null.
    pub fn header(&self, key: impl AsRef<[u8]>) -> Option<&Header> {
        last_header(&self.headers, key.as_ref())
    }

    /// Every header named `key`, in wire order (Kafka's `Headers.headers(key)`). All headers,
    /// whatever their names, are [`ConsumerRecord::headers`].
    pub fn headers_named<'a>(
        &'a self,
        key: impl AsRef<[u8]> + 'a,
    ) -> impl Iterator<Item = &'a Header> + 'a {
        self.headers.iter().filter(move |h| h.key == key.as_ref())
    }

    /// The topic and partition.
    pub fn topic_partition(&self) -> TopicPartition {
        TopicPartition::new(&*self.topic, self.partition)
    }
}

/// Where a consumer's seek moves a partition's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Offset {
    /// The log start offset (looked up with ListOffsets).
    Beginning,
    /// The end of the log: the high watermark, or the last stable offset with
    /// `read_committed` (looked up with ListOffsets).
    End,
    /// This offset. An offset outside the log triggers `auto.offset.reset` on the next fetch.
    At(i64),
    /// The first offset whose record timestamp is at or after this one, in milliseconds
    /// since the epoch; the end of the log when there is none (ListOffsets, KIP-79).
    Timestamp(i64),
}

/// What the consumer hands out through `Consumer::recv_event`: records and, with
/// `enable.partition.eof`, ends of partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConsumerEvent {
    /// A record.
    Record(ConsumerRecord),
    /// The consumer reached the end of a partition (`enable.partition.eof`): the position is
    /// `offset`, the high watermark (or last stable offset with `read_committed`). Sent once
    /// each time the end is reached, as librdkafka does.
    PartitionEof {
        /// The partition.
        partition: TopicPartition,
        /// The end offset reached.
        offset: i64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_header_of_a_name_wins_and_all_can_be_iterated() {
        let record = ConsumerRecord::new("t", 1, 5)
            .with_header("a", "1")
            .with_headers(vec![
                Header::new("a", "1"),
                Header::null("b"),
                Header::new("a", "2"),
            ]);
        assert_eq!(
            record.header("a").and_then(|h| h.value.as_deref()),
            Some(&b"2"[..])
        );
        assert_eq!(record.header(b"b"), Some(&Header::null("b")));
        assert_eq!(record.header("c"), None);
        let values: Vec<_> = record.headers_named("a").map(|h| h.value.clone()).collect();
        assert_eq!(values, vec![Some("1".into()), Some("2".into())]);
        assert_eq!(record.headers.len(), 3);
        assert_eq!(record.topic_partition(), TopicPartition::new("t", 1));
        let sent = ProducerRecord::new("t")
            .with_header("x", "1")
            .with_header("x", "2");
        assert_eq!(sent.header("x"), Some(&Header::new("x", "2")));
    }

    #[test]
    fn record_builders_set_each_field() {
        let record = ProducerRecord::new("t")
            .with_key("k")
            .with_value("v")
            .with_partition(2)
            .with_header("h", "1")
            .with_timestamp(5);
        assert_eq!(&*record.topic, "t");
        assert_eq!(record.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(record.partition, Some(2));
        assert_eq!(record.headers, vec![Header::new("h", "1")]);
        assert_eq!(record.timestamp, Some(5));
        let record = record.with_headers(Vec::new());
        assert!(record.headers.is_empty());
        let consumed = ConsumerRecord::new("t", 0, 9)
            .with_key("k")
            .with_value("v")
            .with_timestamp(7, TimestampType::LogAppendTime)
            .with_leader_epoch(3);
        assert_eq!(
            (
                consumed.timestamp,
                consumed.timestamp_type,
                consumed.leader_epoch
            ),
            (7, TimestampType::LogAppendTime, Some(3))
        );
    }
}
