//! Whole record batches, magic v2: the records of a batch, their headers, control records,
//! and compression of the records section (protocol guide, "Record Batch", "Record",
//! "Record Header" and "Control Batches"; KIP-32 timestamps, KIP-82 headers, KIP-98
//! idempotence, transactions and control records).
//!
//! A batch is the 61-byte header of [`batch_header`](super::batch_header) followed by
//! `recordCount` records. When the batch is compressed, everything after the header is one
//! compressed block. Each record is:
//!
//! ```text
//! length          varint    bytes after this field
//! attributes      int8      unused, 0
//! timestampDelta  varlong   from baseTimestamp
//! offsetDelta     varint    from baseOffset
//! keyLength       varint    -1 for a null key
//! key             bytes
//! valueLength     varint    -1 for a null value
//! value           bytes
//! headerCount     varint
//!   headerKeyLength   varint    never null
//!   headerKey         bytes     a UTF-8 string
//!   headerValueLength varint    -1 for a null value
//!   headerValue       bytes
//! ```
//!
//! A control batch (KIP-98) holds one record whose key is `int16 version, int16 type`
//! (0 = abort, 1 = commit) and, for those two types, whose value is
//! `int16 version, int32 coordinatorEpoch`; see [`ControlRecord`].
//!
//! Decoding trusts nothing it reads: the CRC is checked, every length and count is checked
//! against the bytes that remain before it sizes anything, a `Vec` sized from a wire count
//! starts at no more than 1024 entries, offset and timestamp arithmetic is checked, each
//! record's length must equal the bytes its fields take, and `recordCount` must equal the
//! records present. Decompression stops at [`DecodeLimits::max_decompressed_bytes`].
//! Uncompressed keys, values and header fields are [`Bytes`] slices of the input, not copies.
//!
//! This file decodes; encoding lives in [`encode`] (re-exported here): one writer,
//! [`RecordBatchWriter`], that [`RecordBatch::encode`] (exactly the fields of a
//! [`RecordBatch`], with `batchLength`, `recordCount` and the CRC filled in, refusing a batch
//! its own decoder would refuse) and [`RecordBatchBuilder`] (offset and timestamp deltas,
//! `lastOffsetDelta` and `maxTimestamp` assigned as a producer does) go through, and one
//! record size, [`record_body_len`].

use std::ops::Range;

use bytes::{BufMut, Bytes};

use super::batch_header::{
    validate_batch, BatchAttributes, BatchError, BatchHeader, Batches, BATCH_HEADER_LEN,
};
use super::compression::{self, Compression};
use super::varint::{self, VarintError};
pub use crate::record::{Header, TimestampType};

pub mod encode;
pub use encode::{record_body_len, record_len, RecordBatchBuilder, RecordBatchWriter};

/// Default of [`DecodeLimits::max_decompressed_bytes`]: 64 MiB.
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: usize = 64 * 1024 * 1024;
/// The smallest record on the wire: one byte each for length, attributes, timestamp delta,
/// offset delta, key length, value length and header count.
pub const MIN_RECORD_LEN: usize = 7;
/// Most entries a `Vec` is given up front from a count read off the wire.
const MAX_INITIAL_CAPACITY: usize = 1024;
/// Producer id, epoch and sequence of a batch without an idempotent producer.
const NO_PRODUCER_ID: i64 = -1;
const NO_PRODUCER_EPOCH: i16 = -1;
const NO_SEQUENCE: i32 = -1;
/// `partitionLeaderEpoch` as a producer writes it; the broker stamps the real one.
const NO_PARTITION_LEADER_EPOCH: i32 = -1;
/// `baseTimestamp` and `maxTimestamp` of a batch without records.
const NO_TIMESTAMP: i64 = -1;

/// Bounds applied while decoding, against peers that send more than they should.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest records section a compressed batch may inflate to. Exceeding it is
    /// [`BatchError::DecompressionLimit`], detected while inflating. Default
    /// [`DEFAULT_MAX_DECOMPRESSED_BYTES`] (64 MiB): well above what a producer's `batch.size`
    /// and `max.request.size` produce, and far below what a bomb would ask for. A consumer
    /// that fetches batches of `n` bytes may want `max(64 MiB, 16 * n)`.
    pub max_decompressed_bytes: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_decompressed_bytes: DEFAULT_MAX_DECOMPRESSED_BYTES,
        }
    }
}

impl DecodeLimits {
    /// Limits with the given decompressed-size bound.
    pub fn new(max_decompressed_bytes: usize) -> Self {
        Self {
            max_decompressed_bytes,
        }
    }
}

/// A decoded record batch, or one to encode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordBatch {
    /// Offset of the first record (assigned by the broker; 0 from a producer).
    pub base_offset: i64,
    /// Leader epoch stamped by the broker; -1 from a producer.
    pub partition_leader_epoch: i32,
    /// Codec of the records section.
    pub compression: Compression,
    /// Meaning of the timestamps.
    pub timestamp_type: TimestampType,
    /// The batch belongs to a transaction (KIP-98).
    pub is_transactional: bool,
    /// The batch holds a control record rather than data (KIP-98).
    pub is_control: bool,
    /// `base_timestamp` is a delete horizon set by the log cleaner (KIP-534).
    pub has_delete_horizon: bool,
    /// Offset delta of the last record. Kept as written when compaction removed records, or
    /// all of them: consumers step past the batch to `base_offset + last_offset_delta + 1`.
    pub last_offset_delta: i32,
    /// Timestamp the record deltas are relative to (the first record's timestamp).
    pub base_timestamp: i64,
    /// Largest record timestamp, or the append time for [`TimestampType::LogAppendTime`].
    pub max_timestamp: i64,
    /// Idempotent producer id, or -1.
    pub producer_id: i64,
    /// Producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence of the first record, or -1; record `i` has `base_sequence + offset_delta`.
    pub base_sequence: i32,
    /// The records, in wire order.
    pub records: Vec<Record>,
}

/// One record of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    /// Offset relative to the batch's `base_offset`.
    pub offset_delta: i32,
    /// Timestamp relative to the batch's `base_timestamp`.
    pub timestamp_delta: i64,
    /// The key; `None` is a null key, distinct from an empty one.
    pub key: Option<Bytes>,
    /// The value; `None` is a null value (a tombstone), distinct from an empty one.
    pub value: Option<Bytes>,
    /// Headers in wire order; keys may repeat.
    pub headers: Vec<Header>,
}

/// Which end of a transaction a control record marks (its `type`, KIP-98).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControlRecordKind {
    /// The transaction aborted (type 0): consumers with `read_committed` drop its records.
    Abort,
    /// The transaction committed (type 1).
    Commit,
}

impl ControlRecordKind {
    /// The `type` field of the control record key.
    pub fn type_id(self) -> i16 {
        match self {
            Self::Abort => 0,
            Self::Commit => 1,
        }
    }

    /// The kind with `type` id `type_id`, or `None` for other control types (KRaft's
    /// leader-change and snapshot records, or types newer than this codec).
    pub fn from_type_id(type_id: i16) -> Option<Self> {
        match type_id {
            0 => Some(Self::Abort),
            1 => Some(Self::Commit),
            _ => None,
        }
    }
}

/// A transaction marker: the one record of a control batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ControlRecord {
    /// Commit or abort.
    pub kind: ControlRecordKind,
    /// Version of the control record key (0 today).
    pub version: i16,
    /// Epoch of the transaction coordinator that wrote the marker.
    pub coordinator_epoch: i32,
}

/// How much [`validate`] checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValidationLevel {
    /// Length, magic, CRC and header consistency: cheap, no decompression.
    Header,
    /// All of the above, then decompresses and parses every record, keeping none.
    Records,
}

impl ControlRecord {
    const KEY_LEN: usize = 4;
    const VALUE_LEN: usize = 6;

    /// A version-0 marker.
    pub fn new(kind: ControlRecordKind, coordinator_epoch: i32) -> Self {
        Self {
            kind,
            version: 0,
            coordinator_epoch,
        }
    }

    /// Reads the control record `record` (from a batch with `is_control` set). Returns
    /// `Ok(None)` for a well-formed key of a type other than commit or abort, which
    /// consumers skip. A key version above 0 is accepted as long as the fields of version
    /// 0 are there, as Kafka's readers do.
    pub fn decode(record: &Record) -> Result<Option<Self>, BatchError> {
        let invalid = |why: String| BatchError::Record(format!("control record: {why}"));
        let key = record
            .key
            .as_deref()
            .ok_or_else(|| invalid("null key".into()))?;
        let Some(&[v0, v1, t0, t1]) = key.get(..Self::KEY_LEN) else {
            return Err(invalid(format!("key of {} bytes", key.len())));
        };
        let version = i16::from_be_bytes([v0, v1]);
        if version < 0 {
            return Err(invalid(format!("key version {version}")));
        }
        let Some(kind) = ControlRecordKind::from_type_id(i16::from_be_bytes([t0, t1])) else {
            return Ok(None);
        };
        let value = record
            .value
            .as_deref()
            .ok_or_else(|| invalid("null marker value".into()))?;
        let Some(&[v0, v1, e0, e1, e2, e3]) = value.get(..Self::VALUE_LEN) else {
            return Err(invalid(format!("marker value of {} bytes", value.len())));
        };
        let value_version = i16::from_be_bytes([v0, v1]);
        if value_version < 0 {
            return Err(invalid(format!("marker value version {value_version}")));
        }
        Ok(Some(Self {
            kind,
            version,
            coordinator_epoch: i32::from_be_bytes([e0, e1, e2, e3]),
        }))
    }

    /// The record carrying this marker: offset and timestamp delta 0, no headers. The key
    /// is written with [`ControlRecord::version`], the value with version 0.
    pub fn to_record(&self) -> Record {
        let mut key = Vec::with_capacity(Self::KEY_LEN);
        key.put_i16(self.version);
        key.put_i16(self.kind.type_id());
        let mut value = Vec::with_capacity(Self::VALUE_LEN);
        value.put_i16(0);
        value.put_i32(self.coordinator_epoch);
        Record {
            key: Some(key.into()),
            value: Some(value.into()),
            ..Record::default()
        }
    }
}

impl RecordBatch {
    /// A control batch holding one transaction marker, as a partition leader appends it
    /// when the coordinator sends `WriteTxnMarkers`: transactional, uncompressed, no
    /// sequence, `base_offset` 0 and leader epoch -1 for the broker to stamp.
    pub fn transaction_marker(
        marker: ControlRecord,
        producer_id: i64,
        producer_epoch: i16,
        timestamp: i64,
    ) -> Self {
        Self {
            base_offset: 0,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            compression: Compression::None,
            timestamp_type: TimestampType::CreateTime,
            is_transactional: true,
            is_control: true,
            has_delete_horizon: false,
            last_offset_delta: 0,
            base_timestamp: timestamp,
            max_timestamp: timestamp,
            producer_id,
            producer_epoch,
            base_sequence: NO_SEQUENCE,
            records: vec![marker.to_record()],
        }
    }

    /// The attributes field these flags make.
    pub fn attributes(&self) -> BatchAttributes {
        BatchAttributes::new(
            self.compression,
            self.timestamp_type == TimestampType::LogAppendTime,
            self.is_transactional,
            self.is_control,
        )
        .with_delete_horizon(self.has_delete_horizon)
    }

    /// Offset of the last record, `base_offset + last_offset_delta`, also when the batch is
    /// empty after compaction (saturating; decoding refuses batches where it overflows).
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    /// Offset just past this batch: where a consumer continues (saturating; decoding
    /// refuses batches where it overflows, see [`RecordBatch::checked_next_offset`]).
    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }

    /// Offset just past this batch, or `None` when it does not fit an `int64`.
    pub fn checked_next_offset(&self) -> Option<i64> {
        self.base_offset
            .checked_add(i64::from(self.last_offset_delta))?
            .checked_add(1)
    }

    /// Absolute offset of `record` (saturating; decoding checks it fits).
    pub fn record_offset(&self, record: &Record) -> i64 {
        self.base_offset
            .saturating_add(i64::from(record.offset_delta))
    }

    /// Timestamp of `record` as Kafka consumers report it: `max_timestamp` for
    /// log-append-time batches, else `base_timestamp + timestamp_delta` (saturating;
    /// decoding checks it fits).
    pub fn record_timestamp(&self, record: &Record) -> i64 {
        match self.timestamp_type {
            TimestampType::LogAppendTime => self.max_timestamp,
            TimestampType::CreateTime => self.base_timestamp.saturating_add(record.timestamp_delta),
        }
    }

    /// Decodes the one batch that `batch` holds: checks length, magic and CRC, inflates the
    /// records within `limits`, and parses every record. Bytes after the batch are
    /// [`BatchError::TrailingBytes`]; to read a `records` field of many batches use
    /// [`decode_batches`].
    pub fn decode(batch: &Bytes, limits: &DecodeLimits) -> Result<Self, BatchError> {
        let (header, compression) = check_batch(batch)?;
        let section = records_section(&header, compression, batch.clone(), limits)?;
        let mut sink = Collect {
            section: &section,
            headers: Vec::new(),
            records: Vec::with_capacity(initial_capacity(header.record_count, section.len())),
        };
        parse_records(&section, &header, &mut sink)?;
        let attributes = header.attributes;
        Ok(Self {
            base_offset: header.base_offset,
            partition_leader_epoch: header.partition_leader_epoch,
            compression,
            timestamp_type: if attributes.is_log_append_time() {
                TimestampType::LogAppendTime
            } else {
                TimestampType::CreateTime
            },
            is_transactional: attributes.is_transactional(),
            is_control: attributes.is_control(),
            has_delete_horizon: attributes.has_delete_horizon(),
            last_offset_delta: header.last_offset_delta,
            base_timestamp: header.base_timestamp,
            max_timestamp: header.max_timestamp,
            producer_id: header.producer_id,
            producer_epoch: header.producer_epoch,
            base_sequence: header.base_sequence,
            records: sink.records,
        })
    }
}

/// Offset and timestamp deltas of every record of `batch`, in order, after the checks of
/// [`RecordBatch::decode`] other than the CRC: for a broker that checked the CRC already
/// ([`validate_batch`]) and needs only offsets and times (timestamp validation, time
/// indexes), without a copy of the batch or of its keys, values and headers. `header` is
/// `batch`'s own; compressed records are inflated within `limits`.
pub fn record_deltas(
    header: &BatchHeader,
    batch: &[u8],
    limits: &DecodeLimits,
) -> Result<Vec<RecordDelta>, BatchError> {
    record_deltas_sized(header, batch, limits).map(|(deltas, _)| deltas)
}

/// [`record_deltas`], and the size of the records section as parsed: inflated when the
/// batch is compressed, as stored otherwise. A broker charges the inflated sizes of a
/// request's batches against a budget they share.
pub fn record_deltas_sized(
    header: &BatchHeader,
    batch: &[u8],
    limits: &DecodeLimits,
) -> Result<(Vec<RecordDelta>, usize), BatchError> {
    if batch.len() > header.total_len() {
        return Err(BatchError::TrailingBytes(batch.len() - header.total_len()));
    }
    let section = batch
        .get(BATCH_HEADER_LEN..header.total_len())
        .ok_or(BatchError::Truncated {
            needed: header.total_len(),
            available: batch.len(),
        })?;
    let compression = header.attributes.compression()?;
    check_offsets(
        header.base_offset,
        header.last_offset_delta,
        header.record_count,
    )?;
    let mut sink = Deltas(Vec::with_capacity(initial_capacity(
        header.record_count,
        section.len(),
    )));
    let size = if needs_decompression(header, compression, section) {
        let inflated =
            compression::decompress(compression, section, limits.max_decompressed_bytes)?;
        parse_records(&inflated, header, &mut sink)?;
        inflated.len()
    } else {
        parse_records(section, header, &mut sink)?;
        section.len()
    };
    Ok((sink.0, size))
}

/// A record's offset and timestamp relative to its batch's base offset and base timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordDelta {
    /// From the batch's base offset.
    pub offset_delta: i32,
    /// From the batch's base timestamp.
    pub timestamp_delta: i64,
}

/// Keeps the deltas only: for [`record_deltas`].
struct Deltas(Vec<RecordDelta>);

impl RecordSink for Deltas {
    fn header(&mut self, _: Range<usize>, _: Option<Range<usize>>) {}
    fn record(&mut self, record: RawRecord) {
        self.0.push(RecordDelta {
            offset_delta: record.offset_delta,
            timestamp_delta: record.timestamp_delta,
        });
    }
}

/// Checks one batch without keeping its records, as a broker does before appending a
/// produced batch: `batch` must be exactly one whole batch with a matching CRC, a known
/// codec, and offsets that add up. With [`ValidationLevel::Records`] the records are also
/// inflated (within `limits`) and parsed. Returns the header.
pub fn validate(
    batch: &[u8],
    level: ValidationLevel,
    limits: &DecodeLimits,
) -> Result<BatchHeader, BatchError> {
    let (header, compression) = check_batch(batch)?;
    if level == ValidationLevel::Records {
        let section = &batch[BATCH_HEADER_LEN..];
        if needs_decompression(&header, compression, section) {
            let inflated =
                compression::decompress(compression, section, limits.max_decompressed_bytes)?;
            parse_records(&inflated, &header, &mut Discard)?;
        } else {
            parse_records(section, &header, &mut Discard)?;
        }
    }
    Ok(header)
}

/// Decodes the batches of a `records` field (a produce request's or a fetch response's).
///
/// A fetch response may end with a batch cut short at the broker's byte limit; iteration
/// stops there quietly and [`DecodeBatches::truncated_tail`] reports it. A batch whose
/// header is unreadable (wrong magic, bad length) ends the iteration with its error, since
/// the next batch cannot be found; a batch that is framed correctly but fails later (CRC,
/// records) yields its error and iteration continues with the next batch.
pub fn decode_batches(records: Bytes, limits: DecodeLimits) -> DecodeBatches {
    DecodeBatches {
        records,
        position: 0,
        limits,
        truncated_tail: false,
        done: false,
    }
}

/// Iterator over the batches of a `records` field; see [`decode_batches`].
#[derive(Debug, Clone)]
pub struct DecodeBatches {
    records: Bytes,
    position: usize,
    limits: DecodeLimits,
    truncated_tail: bool,
    done: bool,
}

impl DecodeBatches {
    /// True once iteration stopped at a batch cut short by the end of the buffer.
    pub fn truncated_tail(&self) -> bool {
        self.truncated_tail
    }
}

impl Iterator for DecodeBatches {
    type Item = Result<RecordBatch, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let rest = self.records.get(self.position..).unwrap_or_default();
        let mut batches = Batches::new(rest);
        match batches.next() {
            None => {
                self.truncated_tail = batches.truncated_tail();
                self.done = true;
                None
            }
            Some(Err(e)) => {
                self.done = true;
                Some(Err(e))
            }
            Some(Ok((_, batch))) => {
                let start = self.position;
                self.position += batch.len();
                let batch = self.records.slice(start..self.position);
                Some(RecordBatch::decode(&batch, &self.limits))
            }
        }
    }
}

/// Checks that `batch` is exactly one whole batch with a valid CRC and consistent header.
fn check_batch(batch: &[u8]) -> Result<(BatchHeader, Compression), BatchError> {
    let header = validate_batch(batch)?;
    if batch.len() > header.total_len() {
        return Err(BatchError::TrailingBytes(batch.len() - header.total_len()));
    }
    let compression = header.attributes.compression()?;
    check_offsets(
        header.base_offset,
        header.last_offset_delta,
        header.record_count,
    )?;
    Ok((header, compression))
}

/// A batch has at most one record per offset, and the offset after it is representable (a
/// consumer continues there; a log's end offset is an `int64`).
fn check_offsets(
    base_offset: i64,
    last_offset_delta: i32,
    record_count: i32,
) -> Result<(), BatchError> {
    if last_offset_delta < 0
        || record_count < 0
        || i64::from(record_count) > i64::from(last_offset_delta) + 1
    {
        return Err(BatchError::InvalidRecordCount {
            count: record_count,
            last_offset_delta,
        });
    }
    if base_offset
        .checked_add(i64::from(last_offset_delta))
        .and_then(|last| last.checked_add(1))
        .is_none()
    {
        return Err(BatchError::OffsetOverflow {
            base_offset,
            last_offset_delta,
        });
    }
    Ok(())
}

/// A record's offset lies within its batch and its timestamp is representable.
fn check_record(
    index: usize,
    offset_delta: i32,
    timestamp_delta: i64,
    last_offset_delta: i32,
    base_timestamp: i64,
) -> Result<(), BatchError> {
    if !(0..=last_offset_delta).contains(&offset_delta) {
        return Err(BatchError::Record(format!(
            "record {index}: offset delta {offset_delta} outside 0..={last_offset_delta}"
        )));
    }
    if base_timestamp.checked_add(timestamp_delta).is_none() {
        return Err(BatchError::Record(format!(
            "record {index}: timestamp delta {timestamp_delta} overflows base {base_timestamp}"
        )));
    }
    Ok(())
}

/// An empty records section of an empty batch has nothing to inflate, whatever the codec:
/// that is how Kafka writes batches that compaction emptied.
fn needs_decompression(header: &BatchHeader, compression: Compression, section: &[u8]) -> bool {
    compression != Compression::None && !(section.is_empty() && header.record_count == 0)
}

/// The records of a checked batch, inflated if compressed.
fn records_section(
    header: &BatchHeader,
    compression: Compression,
    batch: Bytes,
    limits: &DecodeLimits,
) -> Result<Bytes, BatchError> {
    let section = batch.slice(BATCH_HEADER_LEN..);
    if needs_decompression(header, compression, &section) {
        compression::decompress(compression, &section, limits.max_decompressed_bytes)
    } else {
        Ok(section)
    }
}

/// Capacity for `count` items read off the wire when each takes at least
/// [`MIN_RECORD_LEN`] of `available` bytes.
fn initial_capacity(count: i32, available: usize) -> usize {
    usize::try_from(count)
        .unwrap_or(0)
        .min(available / MIN_RECORD_LEN)
        .min(MAX_INITIAL_CAPACITY)
}

/// A record with its variable fields as ranges of the records section.
struct RawRecord {
    offset_delta: i32,
    timestamp_delta: i64,
    key: Option<Range<usize>>,
    value: Option<Range<usize>>,
}

/// Receives records as [`parse_records`] reads them.
trait RecordSink {
    fn header(&mut self, key: Range<usize>, value: Option<Range<usize>>);
    fn record(&mut self, record: RawRecord);
}

/// Keeps nothing: for [`validate`].
struct Discard;

impl RecordSink for Discard {
    fn header(&mut self, _: Range<usize>, _: Option<Range<usize>>) {}
    fn record(&mut self, _: RawRecord) {}
}

/// Builds [`Record`]s whose fields are slices of the section.
struct Collect<'a> {
    section: &'a Bytes,
    headers: Vec<Header>,
    records: Vec<Record>,
}

impl RecordSink for Collect<'_> {
    fn header(&mut self, key: Range<usize>, value: Option<Range<usize>>) {
        self.headers.push(Header {
            key: self.section.slice(key),
            value: value.map(|value| self.section.slice(value)),
        });
    }

    fn record(&mut self, record: RawRecord) {
        self.records.push(Record {
            offset_delta: record.offset_delta,
            timestamp_delta: record.timestamp_delta,
            key: record.key.map(|key| self.section.slice(key)),
            value: record.value.map(|value| self.section.slice(value)),
            headers: std::mem::take(&mut self.headers),
        });
    }
}

/// Parses exactly `header.record_count` records filling all of `section`.
fn parse_records(
    section: &[u8],
    header: &BatchHeader,
    sink: &mut impl RecordSink,
) -> Result<(), BatchError> {
    let declared = header.record_count;
    let mut cursor = Cursor {
        buf: section,
        position: 0,
        record: 0,
    };
    for index in 0..usize::try_from(declared).unwrap_or(0) {
        if cursor.remaining() == 0 {
            return Err(BatchError::RecordCountMismatch {
                declared,
                found: index,
            });
        }
        cursor.record = index;
        let record = read_record(&mut cursor, sink)?;
        check_record(
            index,
            record.offset_delta,
            record.timestamp_delta,
            header.last_offset_delta,
            header.base_timestamp,
        )?;
        sink.record(record);
    }
    if cursor.remaining() != 0 {
        return Err(BatchError::Record(format!(
            "{} bytes after the last of {declared} records",
            cursor.remaining()
        )));
    }
    Ok(())
}

fn read_record(
    cursor: &mut Cursor<'_>,
    sink: &mut impl RecordSink,
) -> Result<RawRecord, BatchError> {
    let length = cursor.length("record length")?;
    let end = cursor.position + length;
    // Fields are read from a cursor that ends where the record does, so none can run into
    // the next record, and any bytes the fields leave over are caught below.
    let mut body = Cursor {
        buf: &cursor.buf[..end],
        position: cursor.position,
        record: cursor.record,
    };
    let _attributes = body.byte("record attributes")?;
    let timestamp_delta = body.varlong("timestamp delta")?;
    let offset_delta = body.varint("offset delta")?;
    let key = body.nullable_bytes("key length")?;
    let value = body.nullable_bytes("value length")?;
    let header_count = body.varint("header count")?;
    let header_count = usize::try_from(header_count)
        .map_err(|_| body.malformed(format!("negative header count {header_count}")))?;
    // A header takes at least two bytes: an empty key and a null value.
    if header_count > body.remaining() / 2 {
        return Err(body.malformed(format!(
            "{header_count} headers in {} bytes",
            body.remaining()
        )));
    }
    for _ in 0..header_count {
        let key = body.length("header key length")?;
        let key = body.take(key);
        let value = body.nullable_bytes("header value length")?;
        sink.header(key, value);
    }
    if body.position != end {
        return Err(body.malformed(format!(
            "length {length} but fields end {} bytes early",
            end - body.position
        )));
    }
    cursor.position = end;
    Ok(RawRecord {
        offset_delta,
        timestamp_delta,
        key,
        value,
    })
}

/// Reads record fields from `buf[position..]`, naming the record in its errors.
struct Cursor<'a> {
    buf: &'a [u8],
    position: usize,
    record: usize,
}

impl Cursor<'_> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.position
    }

    fn malformed(&self, why: String) -> BatchError {
        BatchError::Record(format!("record {}: {why}", self.record))
    }

    fn varint_error(&self, what: &str, error: VarintError) -> BatchError {
        match error {
            VarintError::Incomplete => self.malformed(format!("{what} truncated")),
            VarintError::Overflow { .. } => self.malformed(format!("{what} varint too long")),
        }
    }

    fn byte(&mut self, what: &str) -> Result<u8, BatchError> {
        let byte = *self
            .buf
            .get(self.position)
            .ok_or_else(|| self.malformed(format!("{what} truncated")))?;
        self.position += 1;
        Ok(byte)
    }

    fn varint(&mut self, what: &str) -> Result<i32, BatchError> {
        // Most varints of a record (attributes aside: deltas, lengths, the header count)
        // take one or two bytes; those are read here without the general decoder's loop.
        let rest = self.buf.get(self.position..).unwrap_or_default();
        match *rest {
            [b0, ..] if b0 < 0x80 => {
                self.position += 1;
                Ok(varint::zigzag_decode_32(u32::from(b0)))
            }
            [b0, b1, ..] if b1 < 0x80 => {
                self.position += 2;
                Ok(varint::zigzag_decode_32(
                    u32::from(b0 & 0x7f) | u32::from(b1) << 7,
                ))
            }
            _ => {
                let (value, len) =
                    varint::decode_varint(rest).map_err(|e| self.varint_error(what, e))?;
                self.position += len;
                Ok(value)
            }
        }
    }

    fn varlong(&mut self, what: &str) -> Result<i64, BatchError> {
        let rest = self.buf.get(self.position..).unwrap_or_default();
        match *rest {
            [b0, ..] if b0 < 0x80 => {
                self.position += 1;
                Ok(varint::zigzag_decode_64(u64::from(b0)))
            }
            _ => {
                let (value, len) =
                    varint::decode_varlong(rest).map_err(|e| self.varint_error(what, e))?;
                self.position += len;
                Ok(value)
            }
        }
    }

    /// A non-negative length that fits in the bytes remaining.
    fn length(&mut self, what: &str) -> Result<usize, BatchError> {
        let length = self.varint(what)?;
        self.check_length(what, length)
    }

    fn check_length(&self, what: &str, length: i32) -> Result<usize, BatchError> {
        match usize::try_from(length) {
            Ok(length) if length <= self.remaining() => Ok(length),
            _ => Err(self.malformed(format!(
                "{what} {length} with {} bytes remaining",
                self.remaining()
            ))),
        }
    }

    /// Consumes `length` bytes, already checked to be there.
    fn take(&mut self, length: usize) -> Range<usize> {
        let range = self.position..self.position + length;
        self.position = range.end;
        range
    }

    /// A length-prefixed byte string where length -1 means null.
    fn nullable_bytes(&mut self, what: &str) -> Result<Option<Range<usize>>, BatchError> {
        let length = self.varint(what)?;
        if length == -1 {
            return Ok(None);
        }
        let length = self.check_length(what, length)?;
        Ok(Some(self.take(length)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::batch_header::LOG_OVERHEAD;
    use proptest::prelude::*;

    const ALL_CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];
    const T0: i64 = 1_700_000_000_000;

    #[test]
    fn the_cursors_short_varint_paths_read_what_the_general_decoder_reads() {
        // Every one- and two-byte prefix (with and without a byte after it), against
        // varint::decode_varint and decode_varlong: same values, lengths and failures.
        for b0 in 0..=255u8 {
            for b1 in 0..=255u8 {
                for buf in [&[b0][..], &[b0, b1][..], &[b0, b1, 0x01][..]] {
                    let mut cursor = Cursor {
                        buf,
                        position: 0,
                        record: 0,
                    };
                    let read = cursor.varint("v").map(|v| (v, cursor.position));
                    let expected = varint::decode_varint(buf);
                    assert_eq!(read.ok(), expected.ok(), "varint {buf:02x?}");
                    let mut cursor = Cursor {
                        buf,
                        position: 0,
                        record: 0,
                    };
                    let read = cursor.varlong("v").map(|v| (v, cursor.position));
                    let expected = varint::decode_varlong(buf);
                    assert_eq!(read.ok(), expected.ok(), "varlong {buf:02x?}");
                }
            }
        }
    }

    fn limits() -> DecodeLimits {
        DecodeLimits::default()
    }

    /// Recomputes the CRC of a hand-made or altered batch.
    fn fix_crc(batch: &mut [u8]) {
        let crc = crc32c::crc32c(&batch[21..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
    }

    /// A batch assembled field by field around `section`, independently of the encoder:
    /// base offset 0, no producer, timestamps `T0`.
    fn frame_batch(
        section: &[u8],
        record_count: i32,
        last_offset_delta: i32,
        attributes: i16,
    ) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(0i64.to_be_bytes());
        b.extend(((BATCH_HEADER_LEN - LOG_OVERHEAD + section.len()) as i32).to_be_bytes());
        b.extend((-1i32).to_be_bytes());
        b.push(2);
        b.extend([0; 4]);
        b.extend(attributes.to_be_bytes());
        b.extend(last_offset_delta.to_be_bytes());
        b.extend(T0.to_be_bytes());
        b.extend(T0.to_be_bytes());
        b.extend((-1i64).to_be_bytes());
        b.extend((-1i16).to_be_bytes());
        b.extend((-1i32).to_be_bytes());
        b.extend(record_count.to_be_bytes());
        b.extend(section);
        fix_crc(&mut b);
        b
    }

    fn decode(bytes: &[u8]) -> Result<RecordBatch, BatchError> {
        RecordBatch::decode(&Bytes::copy_from_slice(bytes), &limits())
    }

    fn record_error(result: Result<RecordBatch, BatchError>) -> String {
        match result {
            Err(BatchError::Record(why)) => why,
            other => panic!("expected a record error, got {other:?}"),
        }
    }

    proptest! {
        /// The writer and the builder agree byte for byte, whatever the keys, values,
        /// headers, timestamps and producer fields.
        #[test]
        fn the_writer_writes_what_the_builder_encodes(
            records in proptest::collection::vec(
                (
                    -5_000i64..5_000,
                    proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
                    proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)),
                    proptest::collection::vec(
                        (
                            proptest::collection::vec(any::<u8>(), 0..10),
                            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..10)),
                        ),
                        0..3,
                    ),
                ),
                0..20,
            ),
            producer in proptest::option::of((0i64..1000, 0i16..10, 0i32..100_000)),
        ) {
            let (id, epoch, sequence) = producer.unwrap_or((-1, -1, -1));
            let mut builder = RecordBatchBuilder::new().producer(id, epoch, sequence);
            let mut writer = RecordBatchWriter::with_capacity(0);
            for (delta, key, value, headers) in &records {
                let headers: Vec<Header> = headers
                    .iter()
                    .map(|(k, v)| Header {
                        key: Bytes::copy_from_slice(k),
                        value: v.as_deref().map(Bytes::copy_from_slice),
                    })
                    .collect();
                let key = key.as_deref().map(Bytes::copy_from_slice);
                let value = value.as_deref().map(Bytes::copy_from_slice);
                builder
                    .append(T0 + delta, key.clone(), value.clone(), headers.clone())
                    .expect("builder append");
                writer
                    .append(T0 + delta, key.as_deref(), value.as_deref(), &headers)
                    .expect("writer append");
            }
            prop_assert_eq!(writer.len(), records.len());
            let written = writer.finish(id, epoch, sequence).expect("finish");
            let encoded = builder.build().encode().expect("encode");
            prop_assert_eq!(written, encoded);
        }
    }

    #[test]
    fn record_deltas_read_what_decode_reads_without_keeping_the_records() {
        for codec in ALL_CODECS {
            let mut builder = RecordBatchBuilder::new().compression(codec);
            for (n, delta) in [0i64, 7, -3, 1_000].into_iter().enumerate() {
                builder
                    .append(
                        T0 + delta,
                        Some(Bytes::from(format!("k{n}"))),
                        None,
                        vec![Header::new("h", "v")],
                    )
                    .expect("append");
            }
            let encoded = builder.build().encode().expect("encode");
            let header = BatchHeader::parse(&encoded).expect("header");
            let decoded = decode(&encoded).expect("decode");
            let deltas = record_deltas(&header, &encoded, &limits()).expect("deltas");
            let expected: Vec<RecordDelta> = decoded
                .records
                .iter()
                .map(|r| RecordDelta {
                    offset_delta: r.offset_delta,
                    timestamp_delta: r.timestamp_delta,
                })
                .collect();
            assert_eq!(deltas, expected, "{codec:?}");
            if codec == Compression::None {
                // The record checks still apply: one byte less in the records section.
                let mut short = encoded.to_vec();
                short.pop();
                let length = (short.len() - LOG_OVERHEAD) as i32;
                short[8..12].copy_from_slice(&length.to_be_bytes());
                let header = BatchHeader::parse(&short).expect("header");
                assert!(record_deltas(&header, &short, &limits()).is_err());
            }
            let trailing = [&encoded[..], &[0]].concat();
            assert!(matches!(
                record_deltas(&header, &trailing, &limits()),
                Err(BatchError::TrailingBytes(_))
            ));
        }
    }

    #[test]
    fn crc32c_is_castagnoli() {
        // The check value of CRC-32C (RFC 3720, appendix B.4).
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
    }

    /// Two records laid out by hand from the protocol guide, field by field.
    #[test]
    fn golden_two_record_batch() {
        let mut expected = Vec::new();
        expected.extend([0, 0, 0, 0, 0, 0, 0, 0]); // baseOffset 0
        expected.extend([0, 0, 0, 73]); // batchLength: 49 header bytes + 17 + 7
        expected.extend([0xff, 0xff, 0xff, 0xff]); // partitionLeaderEpoch -1
        expected.push(2); // magic
        expected.extend([0, 0, 0, 0]); // crc, below
        expected.extend([0, 0]); // attributes: no compression, create time
        expected.extend([0, 0, 0, 1]); // lastOffsetDelta 1
        expected.extend([0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00]); // baseTimestamp T0
        expected.extend([0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x05]); // maxTimestamp T0+5
        expected.extend([0xff; 8]); // producerId -1
        expected.extend([0xff; 2]); // producerEpoch -1
        expected.extend([0xff; 4]); // baseSequence -1
        expected.extend([0, 0, 0, 2]); // recordCount 2
                                       // Record 0: length 16 (zig-zag 32), attributes 0, timestampDelta 0, offsetDelta 0,
                                       // keyLength 1 (2) "k", valueLength 5 (10) "value", 1 header (2):
                                       // keyLength 1 (2) "h", valueLength 1 (2) "v".
        expected.extend([0x20, 0x00, 0x00, 0x00, 0x02, b'k', 0x0a]);
        expected.extend(b"value");
        expected.extend([0x02, 0x02, b'h', 0x02, b'v']);
        // Record 1: length 6 (12), attributes 0, timestampDelta 5 (10), offsetDelta 1 (2),
        // null key (-1 is 1), empty value (0), no headers.
        expected.extend([0x0c, 0x00, 0x0a, 0x02, 0x01, 0x00, 0x00]);
        let crc = crc32c::crc32c(&expected[21..]);
        expected[17..21].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(expected.len(), 85);

        let mut builder = RecordBatchBuilder::new();
        builder
            .append(
                T0,
                Some(Bytes::from_static(b"k")),
                Some(Bytes::from_static(b"value")),
                vec![Header::new("h", "v")],
            )
            .expect("fits");
        builder
            .append(T0 + 5, None, Some(Bytes::new()), Vec::new())
            .expect("fits");
        let batch = builder.build();
        assert_eq!(batch.encode().expect("encodes")[..], expected[..]);

        let decoded = decode(&expected).expect("decodes");
        assert_eq!(decoded, batch);
        assert_eq!(decoded.records[0].headers[0].key_str(), Some("h"));
        assert_eq!(decoded.record_timestamp(&decoded.records[1]), T0 + 5);
        assert_eq!(decoded.record_offset(&decoded.records[1]), 1);
        assert_eq!(decoded.next_offset(), 2);
    }

    /// A commit marker laid out by hand (KIP-98 control record).
    #[test]
    fn golden_commit_marker() {
        let mut expected = Vec::new();
        expected.extend([0, 0, 0, 0, 0, 0, 0, 0]); // baseOffset
        expected.extend([0, 0, 0, 66]); // batchLength: 49 + 17
        expected.extend([0xff, 0xff, 0xff, 0xff]); // partitionLeaderEpoch
        expected.push(2);
        expected.extend([0, 0, 0, 0]); // crc
        expected.extend([0x00, 0x30]); // attributes: transactional (0x10) | control (0x20)
        expected.extend([0, 0, 0, 0]); // lastOffsetDelta
        expected.extend(T0.to_be_bytes()); // baseTimestamp
        expected.extend(T0.to_be_bytes()); // maxTimestamp
        expected.extend([0, 0, 0, 0, 0, 0, 0, 42]); // producerId 42
        expected.extend([0, 3]); // producerEpoch 3
        expected.extend([0xff; 4]); // baseSequence -1
        expected.extend([0, 0, 0, 1]); // recordCount
                                       // length 16, attributes, timestampDelta, offsetDelta, keyLength 4 (8),
                                       // key: version 0, type 1 (commit), valueLength 6 (12),
                                       // value: version 0, coordinatorEpoch 5, no headers.
        expected.extend([0x20, 0x00, 0x00, 0x00, 0x08, 0, 0, 0, 1, 0x0c]);
        expected.extend([0, 0, 0, 0, 0, 5, 0x00]);
        let crc = crc32c::crc32c(&expected[21..]);
        expected[17..21].copy_from_slice(&crc.to_be_bytes());

        let marker = ControlRecord::new(ControlRecordKind::Commit, 5);
        let batch = RecordBatch::transaction_marker(marker, 42, 3, T0);
        assert_eq!(batch.encode().expect("encodes")[..], expected[..]);

        let decoded = decode(&expected).expect("decodes");
        assert!(decoded.is_control && decoded.is_transactional);
        assert_eq!(ControlRecord::decode(&decoded.records[0]), Ok(Some(marker)));
    }

    /// Batches written by Sarama, the Go client (from its `record_batch_test.go`), so that a
    /// mistake this codec shares between its encoder and decoder still shows: one record,
    /// key 01020304, value 050607, header 08090a = 0b0c, timestamp delta 5 ms, raw and
    /// compressed with gzip, raw (unframed) snappy, and lz4 with a content checksum.
    #[test]
    fn decodes_batches_written_by_another_client() {
        let header = |length: u8, crc: [u8; 4], codec: u8| {
            let mut b = vec![0; 8];
            b.extend([0, 0, 0, length, 0, 0, 0, 0, 2]);
            b.extend(crc);
            b.extend([0, codec, 0, 0, 0, 0]);
            b.extend([0, 0, 1, 88, 141, 205, 89, 56]); // baseTimestamp 1479847795000
            b.extend([0; 8 + 8 + 2 + 4]); // maxTimestamp, producer id, epoch, sequence: 0
            b.extend([0, 0, 0, 1]);
            b
        };
        let record: &[u8] = &[
            40, 0, 10, 0, 8, 1, 2, 3, 4, 6, 5, 6, 7, 2, 6, 8, 9, 10, 4, 11, 12,
        ];
        let plain = [&header(70, [84, 121, 97, 253], 0)[..], record].concat();
        let gzip = [
            &header(95, [231, 74, 206, 165], 1)[..],
            &[
                31, 139, 8, 0, 0, 9, 110, 136, 0, 255, 0, 21, 0, 234, 255, 40, 0, 10, 0, 8, 1, 2,
                3, 4, 6, 5, 6, 7, 2, 6, 8, 9, 10, 4, 11, 12, 3, 0, 173, 201, 88, 103, 21, 0, 0, 0,
            ],
        ]
        .concat();
        let snappy = [
            &header(72, [21, 0, 159, 97], 2)[..],
            &[
                21, 80, 40, 0, 10, 0, 8, 1, 2, 3, 4, 6, 5, 6, 7, 2, 6, 8, 9, 10, 4, 11, 12,
            ],
        ]
        .concat();
        let lz4 = [
            &header(89, [169, 74, 119, 197], 3)[..],
            &[
                4, 34, 77, 24, 100, 112, 185, 21, 0, 0, 128, 40, 0, 10, 0, 8, 1, 2, 3, 4, 6, 5, 6,
                7, 2, 6, 8, 9, 10, 4, 11, 12, 0, 0, 0, 0, 12, 59, 239, 146,
            ],
        ]
        .concat();
        let expected = Record {
            offset_delta: 0,
            timestamp_delta: 5,
            key: Some(Bytes::from_static(&[1, 2, 3, 4])),
            value: Some(Bytes::from_static(&[5, 6, 7])),
            headers: vec![Header::new(&[8u8, 9, 10][..], &[11u8, 12][..])],
        };
        for (codec, wire) in [
            (Compression::None, &plain),
            (Compression::Gzip, &gzip),
            (Compression::Snappy, &snappy),
            (Compression::Lz4, &lz4),
        ] {
            let batch = decode(wire).unwrap_or_else(|e| panic!("{codec:?}: {e}"));
            assert_eq!(batch.compression, codec);
            assert_eq!(batch.base_timestamp, 1_479_847_795_000);
            assert_eq!(batch.records, std::slice::from_ref(&expected), "{codec:?}");
        }
        assert_eq!(
            decode(&plain).expect("decodes").encode().expect("encodes")[..],
            plain[..]
        );
    }

    #[test]
    fn control_record_variants() {
        let record = |key: &[u8], value: Option<&[u8]>| Record {
            key: Some(Bytes::copy_from_slice(key)),
            value: value.map(Bytes::copy_from_slice),
            ..Record::default()
        };
        let abort = ControlRecord::new(ControlRecordKind::Abort, -1);
        assert_eq!(ControlRecord::decode(&abort.to_record()), Ok(Some(abort)));
        // A newer key version with extra bytes, and a longer value: read as version 0.
        let newer = record(&[0, 1, 0, 0, 9], Some(&[0, 1, 0, 0, 0, 7, 99]));
        assert_eq!(
            ControlRecord::decode(&newer),
            Ok(Some(ControlRecord {
                kind: ControlRecordKind::Abort,
                version: 1,
                coordinator_epoch: 7
            }))
        );
        // KRaft's leader change (type 2) is not a transaction marker.
        assert_eq!(
            ControlRecord::decode(&record(&[0, 0, 0, 2], None)),
            Ok(None)
        );
        for bad in [
            record(&[0, 0, 0], Some(&[0; 6])),
            record(&[0xff, 0xff, 0, 1], Some(&[0; 6])),
            record(&[0, 0, 0, 1], None),
            record(&[0, 0, 0, 1], Some(&[0; 5])),
            record(&[0, 0, 0, 1], Some(&[0x80, 0, 0, 0, 0, 0])),
            Record::default(),
        ] {
            assert!(
                matches!(ControlRecord::decode(&bad), Err(BatchError::Record(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn uncompressed_fields_are_slices_of_the_input() {
        let mut builder = RecordBatchBuilder::new();
        builder
            .append(
                T0,
                Some(Bytes::from_static(b"key")),
                Some(Bytes::from_static(b"value")),
                vec![Header::new("h", "header value")],
            )
            .expect("fits");
        let wire = builder.build().encode().expect("encodes");
        let range = wire.as_ptr_range();
        let decoded = RecordBatch::decode(&wire, &limits()).expect("decodes");
        let record = &decoded.records[0];
        let header = &record.headers[0];
        for field in [
            record.key.as_ref(),
            record.value.as_ref(),
            Some(&header.key),
            header.value.as_ref(),
        ] {
            let field = field.expect("present");
            assert!(range.contains(&field.as_ptr()), "copied instead of sliced");
        }
    }

    #[test]
    fn empty_and_compacted_batches_can_be_stepped_over() {
        // Compaction removed every record of offsets 100..=109: no records section even
        // though the attributes still name a codec.
        let mut empty = frame_batch(&[], 0, 9, i16::from(Compression::Zstd.id()));
        empty[0..8].copy_from_slice(&100i64.to_be_bytes());
        let decoded = decode(&empty).expect("decodes");
        assert!(decoded.records.is_empty());
        assert_eq!((decoded.last_offset(), decoded.next_offset()), (109, 110));
        for level in [ValidationLevel::Header, ValidationLevel::Records] {
            let header = validate(&empty, level, &limits()).expect("valid");
            assert_eq!(header.next_offset(), 110);
        }
        // Records kept at offset deltas 3 and 7 of 0..=9, compressed.
        let batch = RecordBatch {
            last_offset_delta: 9,
            records: vec![
                Record {
                    offset_delta: 3,
                    ..Record::default()
                },
                Record {
                    offset_delta: 7,
                    ..Record::default()
                },
            ],
            ..RecordBatchBuilder::new()
                .compression(Compression::Lz4)
                .build()
        };
        let decoded = decode(&batch.encode().expect("encodes")).expect("decodes");
        assert_eq!(decoded, batch);
        assert_eq!(decoded.next_offset(), 10);
    }

    #[test]
    fn builder_computes_deltas_and_max_timestamp() {
        let mut builder = RecordBatchBuilder::new()
            .producer(7, 1, 100)
            .transactional(true)
            .compression(Compression::Snappy);
        assert!(builder.is_empty());
        for timestamp in [T0, T0 + 30, T0 - 10] {
            builder
                .append(timestamp, None, None, Vec::new())
                .expect("fits");
        }
        assert_eq!(builder.len(), 3);
        let batch = builder.build();
        assert_eq!(batch.last_offset_delta, 2);
        assert_eq!((batch.base_timestamp, batch.max_timestamp), (T0, T0 + 30));
        let deltas: Vec<_> = batch.records.iter().map(|r| r.timestamp_delta).collect();
        assert_eq!(deltas, [0, 30, -10]);
        assert_eq!(decode(&batch.encode().expect("encodes")), Ok(batch));

        let mut builder = RecordBatchBuilder::new();
        builder
            .append(i64::MIN, None, None, Vec::new())
            .expect("fits");
        assert!(builder.append(i64::MAX, None, None, Vec::new()).is_err());
    }

    #[test]
    fn log_append_time_reports_the_max_timestamp() {
        let mut builder = RecordBatchBuilder::new().timestamp_type(TimestampType::LogAppendTime);
        builder.append(T0, None, None, Vec::new()).expect("fits");
        let mut batch = builder.build();
        batch.max_timestamp = T0 + 1000;
        let decoded = decode(&batch.encode().expect("encodes")).expect("decodes");
        assert_eq!(decoded.record_timestamp(&decoded.records[0]), T0 + 1000);
    }

    #[test]
    fn encode_refuses_what_decode_would_refuse_and_leaves_the_buffer_alone() {
        let valid = RecordBatchBuilder::new().build();
        let out_of_range = RecordBatch {
            records: vec![Record {
                offset_delta: 1,
                ..Record::default()
            }],
            ..valid.clone()
        };
        let too_many = RecordBatch {
            records: vec![Record::default(), Record::default()],
            ..valid.clone()
        };
        let overflowing = RecordBatch {
            base_offset: i64::MAX,
            last_offset_delta: 1,
            ..valid.clone()
        };
        let bad_timestamp = RecordBatch {
            base_timestamp: i64::MAX,
            records: vec![Record {
                timestamp_delta: 1,
                ..Record::default()
            }],
            ..valid.clone()
        };
        for batch in [out_of_range, too_many, overflowing, bad_timestamp] {
            let mut out = vec![1, 2, 3];
            assert!(batch.encode_into(&mut out).is_err(), "{batch:?}");
            assert_eq!(out, [1, 2, 3]);
        }
        let mut out = vec![1, 2, 3];
        valid.encode_into(&mut out).expect("encodes");
        assert_eq!(decode(&out[3..]), Ok(valid));
    }

    #[test]
    fn truncation_at_every_length_is_reported() {
        for codec in ALL_CODECS {
            let mut builder = RecordBatchBuilder::new().compression(codec);
            for i in 0..5u8 {
                builder
                    .append(
                        T0 + i64::from(i),
                        None,
                        Some(Bytes::from(vec![i; 30])),
                        Vec::new(),
                    )
                    .expect("fits");
            }
            let wire = builder.build().encode().expect("encodes");
            for cut in 0..wire.len() {
                assert!(
                    matches!(decode(&wire[..cut]), Err(BatchError::Truncated { .. })),
                    "{codec:?} cut at {cut}"
                );
                assert!(validate(&wire[..cut], ValidationLevel::Records, &limits()).is_err());
            }
            assert_eq!(
                decode(&[&wire[..], &[0]].concat()),
                Err(BatchError::TrailingBytes(1))
            );
        }
    }

    #[test]
    fn any_flipped_bit_under_the_crc_is_caught() {
        let mut builder = RecordBatchBuilder::new().compression(Compression::Gzip);
        builder
            .append(T0, Some(Bytes::from_static(b"k")), None, Vec::new())
            .expect("fits");
        let wire = builder.build().encode().expect("encodes").to_vec();
        for at in 21..wire.len() {
            let mut bad = wire.clone();
            bad[at] ^= 0x10;
            assert!(
                matches!(decode(&bad), Err(BatchError::CrcMismatch { .. })),
                "byte {at}"
            );
            assert!(matches!(
                validate(&bad, ValidationLevel::Header, &limits()),
                Err(BatchError::CrcMismatch { .. })
            ));
        }
        // The base offset and leader epoch are outside the CRC.
        let mut moved = wire.clone();
        moved[0..8].copy_from_slice(&5i64.to_be_bytes());
        assert_eq!(decode(&moved).map(|b| b.base_offset), Ok(5));
    }

    /// Record 0: length 6, attributes, timestampDelta 0, offsetDelta 0, null key, null
    /// value, no headers.
    const NULL_RECORD: [u8; 7] = [0x0c, 0, 0, 0, 0x01, 0x01, 0];

    #[test]
    fn record_count_must_match_the_records() {
        let two = [NULL_RECORD, NULL_RECORD].concat();
        assert_eq!(
            decode(&frame_batch(&two, 3, 2, 0)),
            Err(BatchError::RecordCountMismatch {
                declared: 3,
                found: 2
            })
        );
        assert_eq!(
            validate(
                &frame_batch(&two, 3, 2, 0),
                ValidationLevel::Records,
                &limits()
            ),
            Err(BatchError::RecordCountMismatch {
                declared: 3,
                found: 2
            })
        );
        // A cheap header check does not read records.
        assert!(validate(
            &frame_batch(&two, 3, 2, 0),
            ValidationLevel::Header,
            &limits()
        )
        .is_ok());
        assert!(record_error(decode(&frame_batch(&two, 1, 2, 0))).contains("after the last"));
        // More records than offsets, a count of i32::MAX, and an overflowing last offset.
        assert!(matches!(
            decode(&frame_batch(&two, 2, 0, 0)),
            Err(BatchError::InvalidRecordCount { .. })
        ));
        assert!(matches!(
            decode(&frame_batch(&two, i32::MAX, i32::MAX, 0)),
            Err(BatchError::RecordCountMismatch { found: 2, .. })
        ));
        let mut overflowing = frame_batch(&two, 2, 1, 0);
        overflowing[0..8].copy_from_slice(&i64::MAX.to_be_bytes());
        assert!(matches!(
            decode(&overflowing),
            Err(BatchError::OffsetOverflow { .. })
        ));
        // The last record at i64::MAX leaves no offset to continue from.
        let mut at_the_end = frame_batch(&two, 2, 1, 0);
        at_the_end[0..8].copy_from_slice(&(i64::MAX - 1).to_be_bytes());
        assert!(matches!(
            decode(&at_the_end),
            Err(BatchError::OffsetOverflow { .. })
        ));
        let mut last_possible = frame_batch(&two, 2, 1, 0);
        last_possible[0..8].copy_from_slice(&(i64::MAX - 2).to_be_bytes());
        assert_eq!(
            decode(&last_possible).map(|b| b.checked_next_offset()),
            Ok(Some(i64::MAX))
        );
        // A compressed count that lies is caught after inflating.
        let packed = compression::compress(Compression::Zstd, &two).expect("compresses");
        assert!(matches!(
            decode(&frame_batch(&packed, 3, 2, 4)),
            Err(BatchError::RecordCountMismatch { found: 2, .. })
        ));
    }

    #[test]
    fn hostile_lengths_and_varints_are_record_errors() {
        let cases: [(&str, Vec<u8>); 12] = [
            (
                "record length 2^31-1",
                vec![0xfe, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0, 1, 1, 0],
            ),
            ("negative record length", vec![0x03, 0, 0, 0, 1, 1, 0]),
            ("record length varint too long", vec![0xff; 12]),
            (
                "key length 2^31-1",
                vec![0x10, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff, 0x0f],
            ),
            ("key length -2", vec![0x0c, 0, 0, 0, 0x03, 0x01, 0]),
            (
                "value length past the record",
                vec![0x0c, 0, 0, 0, 0x01, 0x04, 0],
            ),
            (
                "header count 2^31-1",
                vec![0x10, 0, 0, 0, 1, 1, 0xfe, 0xff, 0xff, 0xff, 0x0f],
            ),
            ("negative header count", vec![0x0c, 0, 0, 0, 1, 1, 0x01]),
            (
                "null header key",
                vec![0x10, 0, 0, 0, 1, 1, 0x02, 0x01, 0x01],
            ),
            (
                "length longer than the fields",
                vec![0x0e, 0, 0, 0, 1, 1, 0, 0],
            ),
            (
                "length shorter than the fields",
                vec![0x0a, 0, 0, 0, 1, 1, 0],
            ),
            (
                "timestamp delta varlong too long",
                [&[0x18, 0][..], &[0xff; 11]].concat(),
            ),
        ];
        for (what, section) in cases {
            let batch = frame_batch(&section, 1, 0, 0);
            let why = record_error(decode(&batch));
            assert!(why.starts_with("record 0:"), "{what}: {why}");
            assert!(
                validate(&batch, ValidationLevel::Records, &limits()).is_err(),
                "{what}"
            );
        }
        // Offset delta beyond lastOffsetDelta (4 is zig-zag 2), and timestamps overflowing.
        let beyond = [0x0c, 0, 0, 0x04, 0x01, 0x01, 0];
        assert!(record_error(decode(&frame_batch(&beyond, 1, 1, 0))).contains("offset delta 2"));
        let mut late = vec![0x1e, 0]; // length 15
        late.extend([0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]); // i64::MAX
        late.extend([0, 1, 1, 0]);
        assert!(record_error(decode(&frame_batch(&late, 1, 0, 0))).contains("timestamp"));
    }

    #[test]
    fn unknown_codecs_and_bombs_are_refused() {
        assert_eq!(
            decode(&frame_batch(&NULL_RECORD, 1, 0, 5)),
            Err(BatchError::UnknownCompression(5))
        );
        let bomb = compression::compress(Compression::Gzip, &vec![0; 4 << 20]).expect("compresses");
        let batch = Bytes::from(frame_batch(&bomb, 1, 0, 1));
        let small = DecodeLimits::new(1 << 20);
        assert_eq!(
            RecordBatch::decode(&batch, &small),
            Err(BatchError::DecompressionLimit { limit: 1 << 20 })
        );
        assert_eq!(
            validate(&batch, ValidationLevel::Records, &small),
            Err(BatchError::DecompressionLimit { limit: 1 << 20 })
        );
        // Garbage where the compressed records should be.
        assert!(matches!(
            decode(&frame_batch(&NULL_RECORD, 1, 0, 3)),
            Err(BatchError::Decompression(_))
        ));
    }

    #[test]
    fn decode_batches_reads_many_and_tolerates_a_partial_tail() {
        let mut records = Vec::new();
        for (index, codec) in ALL_CODECS.into_iter().enumerate() {
            let mut builder = RecordBatchBuilder::new()
                .compression(codec)
                .base_offset(index as i64 * 10);
            builder
                .append(T0, None, Some(Bytes::from_static(b"v")), Vec::new())
                .expect("fits");
            builder.build().encode_into(&mut records).expect("encodes");
        }
        let whole = records.len();
        RecordBatch::transaction_marker(ControlRecord::new(ControlRecordKind::Abort, 0), 1, 0, T0)
            .encode_into(&mut records)
            .expect("encodes");
        records.truncate(whole + 30);

        let mut batches = decode_batches(Bytes::from(records.clone()), limits());
        let offsets: Vec<i64> = batches
            .by_ref()
            .map(|batch| batch.expect("whole batch").base_offset)
            .collect();
        assert_eq!(offsets, [0, 10, 20, 30, 40]);
        assert!(batches.truncated_tail());

        // A corrupt batch yields its error and the next batch is still read.
        let second = BatchHeader::parse(&records).expect("header").total_len();
        records[second + 40] ^= 1;
        let results: Vec<_> = decode_batches(Bytes::from(records.clone()), limits()).collect();
        assert_eq!(results.len(), 5);
        assert!(matches!(results[1], Err(BatchError::CrcMismatch { .. })));
        assert!(results[2].is_ok());

        // An unreadable header ends the iteration.
        records[second + 16] = 1;
        let results: Vec<_> = decode_batches(Bytes::from(records), limits()).collect();
        assert_eq!(results.len(), 2);
        assert_eq!(results[1], Err(BatchError::UnsupportedMagic(1)));
    }

    fn nullable_bytes() -> impl Strategy<Value = Option<Bytes>> {
        prop::option::of(prop::collection::vec(any::<u8>(), 0..40).prop_map(Bytes::from))
    }

    fn header() -> impl Strategy<Value = Header> {
        // Few distinct keys, so that duplicates are common.
        let key = prop::sample::select(vec!["", "a", "b", "trace-id"]);
        (key, nullable_bytes()).prop_map(|(key, value)| Header {
            key: Bytes::from_static(key.as_bytes()),
            value,
        })
    }

    fn record() -> impl Strategy<Value = (u8, Record)> {
        (
            0..3u8,
            -1_000_000_000_000i64..1_000_000_000_000,
            nullable_bytes(),
            nullable_bytes(),
            prop::collection::vec(header(), 0..4),
        )
            .prop_map(|(gap, timestamp_delta, key, value, headers)| {
                let record = Record {
                    offset_delta: 0,
                    timestamp_delta,
                    key,
                    value,
                    headers,
                };
                (gap, record)
            })
    }

    prop_compose! {
        fn batch()(
            codec in prop::sample::select(ALL_CODECS.to_vec()),
            flags in any::<[bool; 4]>(),
            base_offset in 0..i64::MAX / 2,
            partition_leader_epoch: i32,
            base_timestamp in -1..4_000_000_000_000i64,
            max_timestamp: i64,
            producer in (any::<i64>(), any::<i16>(), any::<i32>()),
            records in prop::collection::vec(record(), 0..12),
            extra_offsets in 0..5i32,
        ) -> RecordBatch {
            let mut next = 0i32;
            let records: Vec<Record> = records
                .into_iter()
                .map(|(gap, mut record)| {
                    next += i32::from(gap);
                    record.offset_delta = next;
                    next += 1;
                    record
                })
                .collect();
            RecordBatch {
                base_offset,
                partition_leader_epoch,
                compression: codec,
                timestamp_type: if flags[0] {
                    TimestampType::LogAppendTime
                } else {
                    TimestampType::CreateTime
                },
                is_transactional: flags[1],
                is_control: flags[2],
                has_delete_horizon: flags[3],
                last_offset_delta: (next - 1).max(0) + extra_offsets,
                base_timestamp,
                max_timestamp,
                producer_id: producer.0,
                producer_epoch: producer.1,
                base_sequence: producer.2,
                records,
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn batches_round_trip(batch in batch()) {
            let wire = batch.encode().expect("encodes");
            let decoded = RecordBatch::decode(&wire, &limits()).expect("decodes");
            prop_assert_eq!(&decoded, &batch);
            let header = validate(&wire, ValidationLevel::Records, &limits()).expect("valid");
            prop_assert_eq!(header.record_count as usize, batch.records.len());
            prop_assert_eq!(header.next_offset(), batch.next_offset());
            // The codecs are deterministic, so re-encoding gives the same bytes.
            prop_assert_eq!(decoded.encode().expect("encodes"), wire);
        }

        #[test]
        fn altered_batches_never_panic_and_validate_agrees_with_decode(
            batch in batch(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        ) {
            let mut wire = batch.encode().expect("encodes").to_vec();
            for (at, byte) in edits {
                let at = at.index(wire.len());
                wire[at] = byte;
            }
            fix_crc(&mut wire);
            let decoded = decode(&wire);
            let validated = validate(&wire, ValidationLevel::Records, &limits());
            prop_assert_eq!(decoded.is_ok(), validated.is_ok(), "{:?} vs {:?}", decoded, validated);
            if let (Err(decode_error), Err(validate_error)) = (&decoded, &validated) {
                prop_assert_eq!(decode_error, validate_error);
            }
        }

        #[test]
        fn arbitrary_records_sections_never_panic(
            section in prop::collection::vec(any::<u8>(), 0..200),
            record_count in 0..40i32,
        ) {
            let batch = frame_batch(&section, record_count, 100, 0);
            let _ = decode(&batch);
        }
    }
}
