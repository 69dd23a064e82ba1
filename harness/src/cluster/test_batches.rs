//! Builds record batches for tests, as a producer would send them (base offset 0,
//! partition leader epoch -1), with franzy's record codec: compression is real.

use bytes::Bytes;
use franzy::proto::batch_header::compute_crc;
use franzy::proto::compression::Compression;
use franzy::proto::record_batch::RecordBatchBuilder;

/// A record batch under construction.
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    records: Vec<(i64, Vec<u8>)>,
    default_timestamp: i64,
    compression: Compression,
    producer: (i64, i16, i32),
    transactional: bool,
}

impl BatchBuilder {
    /// An empty batch whose records default to `timestamp`.
    pub fn new(timestamp: i64) -> Self {
        Self {
            records: Vec::new(),
            default_timestamp: timestamp,
            compression: Compression::None,
            producer: (-1, -1, -1),
            transactional: false,
        }
    }

    /// Adds a record with the default timestamp.
    pub fn record(mut self, value: &[u8]) -> Self {
        self.records.push((self.default_timestamp, value.to_vec()));
        self
    }

    /// Adds a record with its own timestamp.
    pub fn record_at(mut self, timestamp: i64, value: &[u8]) -> Self {
        self.records.push((timestamp, value.to_vec()));
        self
    }

    /// Adds `count` records of `size` bytes each.
    pub fn records(mut self, count: usize, size: usize) -> Self {
        for i in 0..count {
            self.records
                .push((self.default_timestamp, vec![(i % 251) as u8; size]));
        }
        self
    }

    /// Compresses the records with the codec of attribute id `id` (0-4).
    pub fn compression_id(mut self, id: u8) -> Self {
        self.compression = Compression::from_id(id).expect("test batches use codec ids 0-4");
        self
    }

    /// Sets producer id, epoch and base sequence.
    pub fn producer(mut self, id: i64, epoch: i16, base_sequence: i32) -> Self {
        self.producer = (id, epoch, base_sequence);
        self
    }

    /// Marks the batch transactional.
    pub fn transactional(mut self) -> Self {
        self.transactional = true;
        self
    }

    /// The encoded batch with a valid CRC. An empty builder gives a header-only batch with
    /// zero records (which brokers refuse), for tests of that rule.
    pub fn build(&self) -> Vec<u8> {
        let mut builder = RecordBatchBuilder::new()
            .compression(self.compression)
            .producer(self.producer.0, self.producer.1, self.producer.2)
            .transactional(self.transactional);
        for (timestamp, value) in &self.records {
            builder
                .append(
                    *timestamp,
                    None,
                    Some(Bytes::from(value.clone())),
                    Vec::new(),
                )
                .expect("test records fit a batch");
        }
        let mut batch = builder.build();
        if self.records.is_empty() {
            batch.base_timestamp = self.default_timestamp;
            batch.max_timestamp = self.default_timestamp;
        }
        batch.encode().expect("test batches encode").to_vec()
    }

    /// The encoded batch as `Bytes`.
    pub fn bytes(&self) -> Bytes {
        Bytes::from(self.build())
    }
}

/// Re-computes the CRC after a test edited covered bytes on purpose.
pub fn fix_crc(batch: &mut [u8]) {
    let crc = compute_crc(batch);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}
