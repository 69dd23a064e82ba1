//! Builds magic-v2 record batches for tests, as a producer would send them (base offset 0,
//! partition leader epoch -1). Records are written uncompressed even when a compression id
//! is set: the broker never opens compressed records, so only the attribute bits matter.
//! To be replaced by the record codec in `franzy::proto` once it lands.

use franzy::proto::batch_header::{compute_crc, BATCH_HEADER_LEN, LOG_OVERHEAD};

/// A record batch under construction.
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    records: Vec<(i64, Vec<u8>)>,
    default_timestamp: i64,
    compression_id: u8,
    producer: (i64, i16, i32),
    transactional: bool,
}

impl BatchBuilder {
    /// An empty batch whose records default to `timestamp`.
    pub fn new(timestamp: i64) -> Self {
        Self {
            records: Vec::new(),
            default_timestamp: timestamp,
            compression_id: 0,
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

    /// Sets the compression bits of the attributes.
    pub fn compression_id(mut self, id: u8) -> Self {
        self.compression_id = id;
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

    /// The encoded batch with a valid CRC.
    pub fn build(&self) -> Vec<u8> {
        let base_timestamp = self.records.first().map_or(self.default_timestamp, |r| r.0);
        let max_timestamp = self
            .records
            .iter()
            .map(|r| r.0)
            .max()
            .unwrap_or(self.default_timestamp);
        let mut body = Vec::new();
        for (delta, (timestamp, value)) in self.records.iter().enumerate() {
            let mut record = vec![0u8];
            put_varlong(&mut record, timestamp - base_timestamp);
            put_varlong(&mut record, delta as i64);
            put_varlong(&mut record, -1);
            put_varlong(&mut record, value.len() as i64);
            record.extend_from_slice(value);
            put_varlong(&mut record, 0);
            put_varlong(&mut body, record.len() as i64);
            body.extend(record);
        }
        let count = self.records.len() as i32;
        let mut attributes = i16::from(self.compression_id);
        if self.transactional {
            attributes |= 1 << 4;
        }
        let mut b = Vec::with_capacity(BATCH_HEADER_LEN + body.len());
        b.extend_from_slice(&0i64.to_be_bytes());
        let length = (BATCH_HEADER_LEN - LOG_OVERHEAD + body.len()) as i32;
        b.extend_from_slice(&length.to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.push(2);
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(&attributes.to_be_bytes());
        b.extend_from_slice(&(count - 1).max(0).to_be_bytes());
        b.extend_from_slice(&base_timestamp.to_be_bytes());
        b.extend_from_slice(&max_timestamp.to_be_bytes());
        b.extend_from_slice(&self.producer.0.to_be_bytes());
        b.extend_from_slice(&self.producer.1.to_be_bytes());
        b.extend_from_slice(&self.producer.2.to_be_bytes());
        b.extend_from_slice(&count.to_be_bytes());
        b.extend(body);
        let crc = compute_crc(&b);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    /// The encoded batch as `Bytes`.
    pub fn bytes(&self) -> bytes::Bytes {
        bytes::Bytes::from(self.build())
    }
}

/// Re-computes the CRC after a test edited covered bytes on purpose.
pub fn fix_crc(batch: &mut [u8]) {
    let crc = compute_crc(batch);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

fn put_varlong(out: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}
