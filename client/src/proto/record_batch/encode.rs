//! Writing record batches: one encoder, [`RecordBatchWriter`], writes each record straight
//! into the batch's buffer, then the header, the compression of the records section and the
//! CRC. Everything else that encodes is a thin layer over it: [`RecordBatch::encode`] feeds
//! it a decoded (or hand-built) batch's records with their own deltas and flags, and
//! [`RecordBatchBuilder`] only assembles a [`RecordBatch`] value the way a producer numbers
//! its records. [`record_body_len`] is the one place that knows how many bytes a record takes;
//! the producer's size accounting uses it too, so that its sizes match the encoder exactly.

use bytes::{BufMut, Bytes};

use super::{
    check_offsets, check_record, Header, Record, RecordBatch, TimestampType,
    NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE, NO_TIMESTAMP,
};
use crate::proto::batch_header::{
    compute_crc, BatchAttributes, BatchError, BATCH_HEADER_LEN, LOG_OVERHEAD, MAGIC_V2,
};
use crate::proto::compression::{self, Compression};
use crate::proto::varint;

/// Bytes of one record after its length prefix, when its timestamp delta takes
/// `timestamp_delta_len` bytes and its offset delta `offset_delta_len` bytes as varints;
/// `None` when a length or the total does not fit the `int32` the wire gives it.
///
/// The one record-size computation: the encoder sizes what it writes with it, and the
/// producer sizes its batches with it (at the deltas a record will have, or at the longest
/// varints for an upper bound).
pub fn record_body_len(
    timestamp_delta_len: usize,
    offset_delta_len: usize,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[Header],
) -> Option<usize> {
    fn bytes_len(bytes: &[u8]) -> Option<usize> {
        let length = i32::try_from(bytes.len()).ok()?;
        varint::varint_len(length).checked_add(bytes.len())
    }
    fn nullable_len(bytes: Option<&[u8]>) -> Option<usize> {
        bytes.map_or(Some(1), bytes_len)
    }
    let header_count = i32::try_from(headers.len()).ok()?;
    let mut length = 1 // attributes
        + timestamp_delta_len
        + offset_delta_len
        + varint::varint_len(header_count);
    length = length.checked_add(nullable_len(key)?)?;
    length = length.checked_add(nullable_len(value)?)?;
    for header in headers {
        length = length.checked_add(bytes_len(&header.key)?)?;
        length = length.checked_add(nullable_len(header.value.as_deref())?)?;
    }
    i32::try_from(length).ok()?;
    Some(length)
}

/// Bytes of one record with its length prefix, at these deltas; `None` as for
/// [`record_body_len`].
pub fn record_len(
    timestamp_delta: i64,
    offset_delta: i32,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[Header],
) -> Option<usize> {
    let body = record_body_len(
        varint::varlong_len(timestamp_delta),
        varint::varint_len(offset_delta),
        key,
        value,
        headers,
    )?;
    varint::varint_len(i32::try_from(body).ok()?).checked_add(body)
}

/// Writes a producer's batch record by record straight into its final buffer (the records
/// section, then compressed if asked, behind the 61-byte header): offset deltas 0, 1, 2, ...,
/// timestamps relative to the first record's, base offset 0, leader epoch -1, create time,
/// transactional if asked ([`RecordBatchWriter::transactional`]). Byte for byte what [`RecordBatchBuilder`] and [`RecordBatch::encode`]
/// produce for the same appends, without the intermediate [`Record`]s.
#[derive(Debug)]
pub struct RecordBatchWriter {
    out: Vec<u8>,
    compression: Compression,
    transactional: bool,
    count: i32,
    base_timestamp: i64,
    max_timestamp: i64,
}

impl RecordBatchWriter {
    /// A writer whose buffer holds `bytes` (the whole uncompressed batch, header included)
    /// without growing. Uncompressed by default.
    pub fn with_capacity(bytes: usize) -> Self {
        let mut out = Vec::with_capacity(bytes.max(BATCH_HEADER_LEN));
        out.resize(BATCH_HEADER_LEN, 0);
        Self {
            out,
            compression: Compression::None,
            transactional: false,
            count: 0,
            base_timestamp: NO_TIMESTAMP,
            max_timestamp: NO_TIMESTAMP,
        }
    }

    /// Compresses the records section with `compression` when the batch is finished.
    /// Default [`Compression::None`].
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Marks the batch as part of a transaction (the attributes' transactional bit,
    /// KIP-98): a transactional producer's batches. Default false.
    pub fn transactional(mut self, transactional: bool) -> Self {
        self.transactional = transactional;
        self
    }

    /// Appends a record with the next offset delta; the first record's `timestamp` is the
    /// batch's base timestamp. Fails when the batch already holds `i32::MAX` records, the
    /// timestamp's distance from the base overflows, or a length does not fit an `int32`.
    pub fn append(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
    ) -> Result<(), BatchError> {
        if self.count == i32::MAX {
            return Err(BatchError::TooLarge("more than i32::MAX records".into()));
        }
        if self.count == 0 {
            self.base_timestamp = timestamp;
            self.max_timestamp = timestamp;
        }
        let timestamp_delta = timestamp.checked_sub(self.base_timestamp).ok_or_else(|| {
            BatchError::Record(format!(
                "timestamp {timestamp} too far from base timestamp {}",
                self.base_timestamp
            ))
        })?;
        let index = usize::try_from(self.count).unwrap_or(usize::MAX);
        write_record(
            &mut self.out,
            index,
            self.count,
            timestamp_delta,
            key,
            value,
            headers,
        )?;
        self.max_timestamp = self.max_timestamp.max(timestamp);
        self.count += 1;
        Ok(())
    }

    /// Records appended so far.
    pub fn len(&self) -> usize {
        usize::try_from(self.count).unwrap_or(0)
    }

    /// True before the first [`RecordBatchWriter::append`].
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The encoded batch, base offset 0, with the idempotent producer's id, epoch and first
    /// sequence (-1, -1, -1 without idempotence, as the wire has it).
    pub fn finish(
        mut self,
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
    ) -> Result<Bytes, BatchError> {
        let fields = HeaderFields {
            base_offset: 0,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            attributes: BatchAttributes::new(self.compression, false, self.transactional, false),
            last_offset_delta: self.count.saturating_sub(1).max(0),
            base_timestamp: self.base_timestamp,
            max_timestamp: self.max_timestamp,
            producer_id,
            producer_epoch,
            base_sequence,
            record_count: self.count,
        };
        finish_batch(&mut self.out, 0, self.compression, &fields)?;
        Ok(self.out.into())
    }
}

impl RecordBatch {
    /// Encodes the batch: header fields as they are, `batchLength`, `recordCount` and CRC
    /// computed, records compressed with [`RecordBatch::compression`].
    ///
    /// Fails, rather than writing what a reader would refuse, when the batch does not fit
    /// the `int32` fields, when a record's offset delta lies outside
    /// `0..=last_offset_delta` or there are more records than offsets, or when an offset or
    /// timestamp overflows.
    pub fn encode(&self) -> Result<Bytes, BatchError> {
        let mut out = Vec::new();
        self.encode_into(&mut out)?;
        Ok(out.into())
    }

    /// As [`RecordBatch::encode`], appending to `out`; on error `out` is left as it was.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), BatchError> {
        let start = out.len();
        let result = self.write(out, start);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    fn write(&self, out: &mut Vec<u8>, start: usize) -> Result<(), BatchError> {
        let record_count = i32::try_from(self.records.len())
            .map_err(|_| BatchError::TooLarge(format!("{} records", self.records.len())))?;
        check_offsets(self.base_offset, self.last_offset_delta, record_count)?;
        for (index, record) in self.records.iter().enumerate() {
            check_record(
                index,
                record.offset_delta,
                record.timestamp_delta,
                self.last_offset_delta,
                self.base_timestamp,
            )?;
        }
        out.resize(start + BATCH_HEADER_LEN, 0);
        for (index, record) in self.records.iter().enumerate() {
            write_record(
                out,
                index,
                record.offset_delta,
                record.timestamp_delta,
                record.key.as_deref(),
                record.value.as_deref(),
                &record.headers,
            )?;
        }
        let fields = HeaderFields {
            base_offset: self.base_offset,
            partition_leader_epoch: self.partition_leader_epoch,
            attributes: self.attributes(),
            last_offset_delta: self.last_offset_delta,
            base_timestamp: self.base_timestamp,
            max_timestamp: self.max_timestamp,
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            base_sequence: self.base_sequence,
            record_count,
        };
        finish_batch(out, start, self.compression, &fields)
    }
}

/// Builds a producer's batch as a [`RecordBatch`] value: offsets deltas 0, 1, 2, ...,
/// timestamps relative to the first record's, `last_offset_delta` and `max_timestamp`
/// computed. Encode the result with [`RecordBatch::encode`]; to encode as records come,
/// use [`RecordBatchWriter`].
#[derive(Debug, Clone)]
pub struct RecordBatchBuilder {
    batch: RecordBatch,
}

impl Default for RecordBatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl RecordBatchBuilder {
    /// An empty batch: uncompressed, create time, no producer id, not transactional,
    /// base offset 0, leader epoch -1.
    pub fn new() -> Self {
        Self {
            batch: RecordBatch {
                base_offset: 0,
                partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
                compression: Compression::None,
                timestamp_type: TimestampType::CreateTime,
                is_transactional: false,
                is_control: false,
                has_delete_horizon: false,
                last_offset_delta: 0,
                base_timestamp: NO_TIMESTAMP,
                max_timestamp: NO_TIMESTAMP,
                producer_id: NO_PRODUCER_ID,
                producer_epoch: NO_PRODUCER_EPOCH,
                base_sequence: NO_SEQUENCE,
                records: Vec::new(),
            },
        }
    }

    /// Sets the codec. Default [`Compression::None`].
    pub fn compression(mut self, compression: Compression) -> Self {
        self.batch.compression = compression;
        self
    }

    /// Sets the idempotent producer's id, epoch and the sequence of the first record.
    /// Default -1, -1, -1 (no idempotence).
    pub fn producer(mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) -> Self {
        self.batch.producer_id = producer_id;
        self.batch.producer_epoch = producer_epoch;
        self.batch.base_sequence = base_sequence;
        self
    }

    /// Marks the batch as part of a transaction. Default `false`.
    pub fn transactional(mut self, transactional: bool) -> Self {
        self.batch.is_transactional = transactional;
        self
    }

    /// Sets the base offset. Default 0, what producers send.
    pub fn base_offset(mut self, base_offset: i64) -> Self {
        self.batch.base_offset = base_offset;
        self
    }

    /// Sets the timestamp type. Default [`TimestampType::CreateTime`].
    pub fn timestamp_type(mut self, timestamp_type: TimestampType) -> Self {
        self.batch.timestamp_type = timestamp_type;
        self
    }

    /// Appends a record with the next offset delta. The first record's `timestamp` becomes
    /// the batch's base timestamp. Fails when the batch already holds `i32::MAX` records or
    /// the timestamp's distance from the base overflows.
    pub fn append(
        &mut self,
        timestamp: i64,
        key: Option<Bytes>,
        value: Option<Bytes>,
        headers: Vec<Header>,
    ) -> Result<(), BatchError> {
        let batch = &mut self.batch;
        let offset_delta = i32::try_from(batch.records.len())
            .map_err(|_| BatchError::TooLarge("more than i32::MAX records".into()))?;
        if batch.records.is_empty() {
            batch.base_timestamp = timestamp;
            batch.max_timestamp = timestamp;
        }
        let timestamp_delta = timestamp.checked_sub(batch.base_timestamp).ok_or_else(|| {
            BatchError::Record(format!(
                "timestamp {timestamp} too far from base timestamp {}",
                batch.base_timestamp
            ))
        })?;
        batch.max_timestamp = batch.max_timestamp.max(timestamp);
        batch.last_offset_delta = offset_delta;
        batch.records.push(Record {
            offset_delta,
            timestamp_delta,
            key,
            value,
            headers,
        });
        Ok(())
    }

    /// Records appended so far.
    pub fn len(&self) -> usize {
        self.batch.records.len()
    }

    /// True before the first [`RecordBatchBuilder::append`].
    pub fn is_empty(&self) -> bool {
        self.batch.records.is_empty()
    }

    /// The batch, ready for [`RecordBatch::encode`].
    pub fn build(self) -> RecordBatch {
        self.batch
    }
}

/// The header fields of a batch, as they go on the wire.
struct HeaderFields {
    base_offset: i64,
    partition_leader_epoch: i32,
    attributes: BatchAttributes,
    last_offset_delta: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    record_count: i32,
}

/// Appends one record, uncompressed; `index` names it in errors.
fn write_record(
    out: &mut Vec<u8>,
    index: usize,
    offset_delta: i32,
    timestamp_delta: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[Header],
) -> Result<(), BatchError> {
    let too_large = || BatchError::TooLarge(format!("record {index} exceeds i32::MAX bytes"));
    let body = record_body_len(
        varint::varlong_len(timestamp_delta),
        varint::varint_len(offset_delta),
        key,
        value,
        headers,
    )
    .ok_or_else(too_large)?;
    varint::encode_varint(out, i32::try_from(body).map_err(|_| too_large())?);
    out.put_u8(0); // attributes
    varint::encode_varlong(out, timestamp_delta);
    varint::encode_varint(out, offset_delta);
    // Every length below was checked to fit an i32 by record_body_len.
    write_nullable(out, key);
    write_nullable(out, value);
    varint::encode_varint(out, headers.len() as i32);
    for header in headers {
        varint::encode_varint(out, header.key.len() as i32);
        out.extend_from_slice(&header.key);
        write_nullable(out, header.value.as_deref());
    }
    Ok(())
}

fn write_nullable(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => varint::encode_varint(out, -1),
        Some(bytes) => {
            varint::encode_varint(out, bytes.len() as i32);
            out.extend_from_slice(bytes);
        }
    }
}

/// Completes the batch that starts at `out[start]`: its 61 header bytes (reserved) are
/// followed by the uncompressed records, which are compressed in place of themselves with
/// `compression`; then the header is written and the CRC computed.
fn finish_batch(
    out: &mut Vec<u8>,
    start: usize,
    compression: Compression,
    fields: &HeaderFields,
) -> Result<(), BatchError> {
    let records_start = start + BATCH_HEADER_LEN;
    if compression != Compression::None {
        let mut compressed = Vec::with_capacity(out.len().saturating_sub(records_start) / 2);
        compression::compress_into(compression, &out[records_start..], &mut compressed)?;
        out.truncate(records_start);
        out.extend_from_slice(&compressed);
    }
    let batch_length = i32::try_from(out.len() - start - LOG_OVERHEAD)
        .map_err(|_| BatchError::TooLarge(format!("{} bytes", out.len() - start)))?;
    let mut header = &mut out[start..records_start];
    header.put_i64(fields.base_offset);
    header.put_i32(batch_length);
    header.put_i32(fields.partition_leader_epoch);
    header.put_i8(MAGIC_V2);
    header.put_u32(0); // CRC, filled in below
    header.put_i16(fields.attributes.0);
    header.put_i32(fields.last_offset_delta);
    header.put_i64(fields.base_timestamp);
    header.put_i64(fields.max_timestamp);
    header.put_i64(fields.producer_id);
    header.put_i16(fields.producer_epoch);
    header.put_i32(fields.base_sequence);
    header.put_i32(fields.record_count);
    let crc = compute_crc(&out[start..]);
    out[start + 17..start + 21].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::record_batch::DecodeLimits;

    const CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    #[test]
    fn the_writer_and_the_builder_write_the_same_bytes_with_every_codec() -> Result<(), BatchError>
    {
        let headers = vec![Header::new("h", "1"), Header::null("n")];
        for codec in CODECS {
            let mut writer = RecordBatchWriter::with_capacity(64).compression(codec);
            let mut builder = RecordBatchBuilder::new()
                .compression(codec)
                .producer(7, 2, 40);
            for i in 0..20i64 {
                let value = format!("value {i}").repeat(3);
                let key = (i % 3 != 0).then(|| format!("key {i}"));
                writer.append(
                    1_000 + i * 7,
                    key.as_deref().map(str::as_bytes),
                    Some(value.as_bytes()),
                    &headers,
                )?;
                builder.append(
                    1_000 + i * 7,
                    key.map(Bytes::from),
                    Some(Bytes::from(value)),
                    headers.clone(),
                )?;
            }
            let written = writer.finish(7, 2, 40)?;
            let built = builder.build().encode()?;
            assert_eq!(written, built, "{codec:?}");
            let decoded = RecordBatch::decode(&written, &DecodeLimits::default())?;
            assert_eq!(decoded.records.len(), 20);
            assert_eq!(decoded.compression, codec);
            assert_eq!((decoded.producer_id, decoded.base_sequence), (7, 40));
        }
        Ok(())
    }

    #[test]
    fn a_transactional_batch_carries_the_bit_and_nothing_else_changes() -> Result<(), BatchError> {
        let mut writer = RecordBatchWriter::with_capacity(0).transactional(true);
        let mut builder = RecordBatchBuilder::new()
            .producer(7, 2, 0)
            .transactional(true);
        writer.append(5, None, Some(b"v"), &[])?;
        builder.append(5, None, Some(Bytes::from_static(b"v")), vec![])?;
        let written = writer.finish(7, 2, 0)?;
        assert_eq!(written, builder.build().encode()?);
        let decoded = RecordBatch::decode(&written, &DecodeLimits::default())?;
        assert!(decoded.is_transactional && !decoded.is_control);
        Ok(())
    }

    #[test]
    fn record_len_is_what_the_encoder_writes() -> Result<(), BatchError> {
        let headers = [Header::new("key", "value"), Header::null("")];
        let big = vec![7u8; 300];
        for (key, value, headers) in [
            (None, None, &headers[..0]),
            (Some(&b"k"[..]), Some(&big[..]), &headers[..]),
            (Some(&b""[..]), None, &headers[1..]),
        ] {
            for (timestamp_delta, offset_delta) in [(0, 0), (1 << 40, 70_000), (-5, 63)] {
                let mut out = Vec::new();
                write_record(
                    &mut out,
                    0,
                    offset_delta,
                    timestamp_delta,
                    key,
                    value,
                    headers,
                )?;
                assert_eq!(
                    record_len(timestamp_delta, offset_delta, key, value, headers),
                    Some(out.len())
                );
            }
        }
        Ok(())
    }
}
