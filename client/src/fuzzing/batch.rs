//! Valid record batches (protocol guide, "Record Batch"; KIP-98 for producer state and
//! control records), and runs of one producer's batches with their sequences in order or
//! deliberately out of it.

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;

use crate::proto::compression::Compression;
use crate::proto::record_batch::{
    ControlRecord, ControlRecordKind, Header, RecordBatch, RecordBatchBuilder, TimestampType,
};

/// A record batch that encodes and decodes: any codec, keys, values and headers (null,
/// empty, repeated keys), with or without an idempotent producer, transactional or not, or a
/// control batch holding a commit or abort marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedBatch {
    /// The batch.
    pub batch: RecordBatch,
}

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

impl GeneratedBatch {
    /// The batch's bytes.
    pub fn encode(&self) -> Bytes {
        // Generated batches are small and well formed: encoding cannot fail. Should it ever,
        // an empty batch list is still a valid `records` field.
        self.batch.encode().unwrap_or_default()
    }

    /// A batch of `producer` starting at `base_sequence`, with `records` records.
    pub fn arbitrary_of(
        u: &mut Unstructured<'_>,
        producer: Option<(i64, i16, i32)>,
        transactional: bool,
        records: usize,
    ) -> arbitrary::Result<Self> {
        let compression = *u.choose(&CODECS)?;
        let mut builder = RecordBatchBuilder::new()
            .compression(compression)
            .timestamp_type(TimestampType::CreateTime);
        if let Some((id, epoch, sequence)) = producer {
            builder = builder
                .producer(id, epoch, sequence)
                .transactional(transactional);
        }
        let base_timestamp: i64 = u.int_in_range(0..=4_102_444_800_000)?;
        for _ in 0..records.max(1) {
            let timestamp = base_timestamp.saturating_add(u.int_in_range(0..=60_000)?);
            let key = optional_bytes(u)?;
            let value = optional_bytes(u)?;
            let mut headers = Vec::new();
            for _ in 0..u.int_in_range(0..=3)? {
                headers.push(Header {
                    key: Bytes::from(*u.choose(&["trace-id", "", "a", "trace-id"])?),
                    value: optional_bytes(u)?,
                });
            }
            // Deltas are far from overflowing: the timestamps stay within a minute.
            if builder.append(timestamp, key, value, headers).is_err() {
                return Err(arbitrary::Error::IncorrectFormat);
            }
        }
        Ok(Self {
            batch: builder.build(),
        })
    }

    /// A control batch holding one transaction marker of `producer`.
    pub fn arbitrary_marker(
        u: &mut Unstructured<'_>,
        producer_id: i64,
        producer_epoch: i16,
    ) -> arbitrary::Result<Self> {
        let kind = if u.arbitrary()? {
            ControlRecordKind::Commit
        } else {
            ControlRecordKind::Abort
        };
        let marker = ControlRecord::new(kind, u.int_in_range(0..=5)?);
        let timestamp = u.int_in_range(0..=4_102_444_800_000)?;
        Ok(Self {
            batch: RecordBatch::transaction_marker(marker, producer_id, producer_epoch, timestamp),
        })
    }
}

impl<'a> Arbitrary<'a> for GeneratedBatch {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let producer_id = u.int_in_range(0..=1000)?;
        let producer_epoch = u.int_in_range(0..=3)?;
        match u.int_in_range(0u8..=7)? {
            0 => Self::arbitrary_marker(u, producer_id, producer_epoch),
            1..=3 => {
                let records = u.int_in_range(1..=5)?;
                Self::arbitrary_of(u, None, false, records)
            }
            _ => {
                let sequence = u.int_in_range(0..=100)?;
                let transactional = u.ratio(1, 3)?;
                let records = u.int_in_range(1..=5)?;
                Self::arbitrary_of(
                    u,
                    Some((producer_id, producer_epoch, sequence)),
                    transactional,
                    records,
                )
            }
        }
    }
}

fn optional_bytes(u: &mut Unstructured<'_>) -> arbitrary::Result<Option<Bytes>> {
    Ok(match u.int_in_range(0u8..=7)? {
        0 => None,
        1 => Some(Bytes::new()),
        _ => {
            let len = u.int_in_range(1..=32)?;
            let mut out = Vec::with_capacity(len);
            for _ in 0..len {
                out.push(u.arbitrary::<u8>()?);
            }
            Some(out.into())
        }
    })
}

/// How a [`ProducerRun`] breaks the order a broker expects (KIP-98: sequences start at 0 per
/// producer epoch and partition, and each batch continues the last).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disorder {
    /// In order: every batch continues the last.
    None,
    /// Two batches swapped.
    Swap,
    /// A batch sent again (a retry: the broker must answer with its first offsets).
    Duplicate,
    /// A sequence skipped (OUT_OF_ORDER_SEQUENCE_NUMBER).
    Gap,
    /// The epoch goes back after a bump (INVALID_PRODUCER_EPOCH / fenced).
    EpochBack,
    /// The sequence wraps past `i32::MAX` (Kafka continues at 0).
    Wrap,
}

/// Batches of one producer for one partition, meant to be sent in order, one Produce each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerRun {
    /// The producer id.
    pub producer_id: i64,
    /// How the run is out of order.
    pub disorder: Disorder,
    /// The batches, in sending order.
    pub batches: Vec<RecordBatch>,
}

impl<'a> Arbitrary<'a> for ProducerRun {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let producer_id = u.int_in_range(0..=1000)?;
        let disorder = *u.choose(&[
            Disorder::None,
            Disorder::Swap,
            Disorder::Duplicate,
            Disorder::Gap,
            Disorder::EpochBack,
            Disorder::Wrap,
        ])?;
        let mut epoch: i16 = 0;
        let mut sequence: i32 = if disorder == Disorder::Wrap {
            i32::MAX - 2
        } else {
            0
        };
        let mut batches = Vec::new();
        for index in 0..u.int_in_range(3..=5)? {
            if disorder == Disorder::EpochBack && index == 1 {
                epoch = 1;
                sequence = 0;
            }
            let records = u.int_in_range(1..=3usize)?;
            let batch_epoch = if disorder == Disorder::EpochBack && index >= 2 {
                0
            } else {
                epoch
            };
            let batch = GeneratedBatch::arbitrary_of(
                u,
                Some((producer_id, batch_epoch, sequence)),
                false,
                records,
            )?
            .batch;
            // i32 arithmetic as Kafka's: the sequence after i32::MAX is 0.
            let count = records as i32;
            sequence = if sequence > i32::MAX - count {
                count - (i32::MAX - sequence) - 1
            } else {
                sequence + count
            };
            if disorder == Disorder::Gap && index == 0 {
                sequence += 1;
            }
            batches.push(batch);
        }
        match disorder {
            Disorder::Swap => batches.swap(0, 1),
            Disorder::Duplicate => {
                let again = batches[0].clone();
                batches.insert(2.min(batches.len()), again);
            }
            _ => {}
        }
        Ok(Self {
            producer_id,
            disorder,
            batches,
        })
    }
}
