//! Sizes: what a record takes in a batch, and what a batch may take in a request. The
//! record sizes are [`crate::proto::record_batch::record_body_len`]'s, the
//! encoder's own, so a batch's size is exactly its uncompressed encoding.

use crate::proto::batch_header::BATCH_HEADER_LEN;
use crate::proto::record_batch::{record_body_len, record_len};
use crate::proto::varint;
use crate::record::ProducerRecord;

/// Upper bound of a Produce request's bytes besides its topics and batches: frame length,
/// request header without the client id, transactional id (null), acks, timeout, the topic
/// array's length and tagged fields.
pub const REQUEST_OVERHEAD: usize = 48;
/// Upper bound per topic besides its name: name length or topic id, partition array length,
/// tagged fields.
pub const TOPIC_OVERHEAD: usize = 24;
/// Upper bound per partition besides its batch: index, records length, tagged fields.
pub const PARTITION_OVERHEAD: usize = 16;

/// The largest batch (encoded) that fits one Produce request of `max_request_size` bytes
/// for `topic`, sent with a client id of `client_id_len` bytes.
pub fn max_batch_bytes(max_request_size: usize, client_id_len: usize, topic: &str) -> usize {
    max_request_size.saturating_sub(
        REQUEST_OVERHEAD + client_id_len + TOPIC_OVERHEAD + topic.len() + PARTITION_OVERHEAD,
    )
}

/// Bytes of a batch holding one record of `record_size` bytes.
pub fn single_record_batch_bytes(record_size: usize) -> usize {
    BATCH_HEADER_LEN.saturating_add(record_size)
}

/// Bytes `record` takes in an uncompressed batch (length prefix included) at these deltas
/// (saturating: a record whose lengths overflow the wire's `int32`s takes `usize::MAX`).
pub fn record_size(record: &ProducerRecord, offset_delta: i32, timestamp_delta: i64) -> usize {
    record_len(
        timestamp_delta,
        offset_delta,
        record.key.as_deref(),
        record.value.as_deref(),
        &record.headers,
    )
    .unwrap_or(usize::MAX)
}

/// Bytes `record` takes in any batch, at the largest possible deltas: what `send` reserves
/// of `buffer.memory` and checks against `max.request.size`.
pub fn record_size_upper_bound(record: &ProducerRecord) -> usize {
    record_body_len(
        varint::MAX_VARLONG_LEN,
        varint::MAX_VARINT_LEN,
        record.key.as_deref(),
        record.value.as_deref(),
        &record.headers,
    )
    .map_or(usize::MAX, |body| {
        varint::MAX_VARINT_LEN.saturating_add(body)
    })
}

pub(super) fn as_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}
