//! Writes the committed seed corpus, `fuzz/seeds/<target>/`, with franzy's own codec: real
//! requests and responses of the common APIs (ApiVersions, Metadata, Produce, Fetch,
//! ListOffsets) at several versions, and valid record batches of every codec.
//!
//! ```text
//! cargo run --manifest-path fuzz/Cargo.toml --example gen_seeds
//! ```
//!
//! Deterministic: running it twice writes the same files, so `git status` shows whether the
//! committed seeds are current. Each target's directory is emptied first.
//!
//! Record batches are encoded here by hand (magic v2 records, protocol guide "Record Batch")
//! because franzy's record encoder is not merged yet; switch to it once it is.

use std::error::Error;
use std::fs;
use std::io::Write;
use std::path::Path;

use bytes::{Bytes, BytesMut};
use franzy::kafka_protocol::messages::api_versions_response::ApiVersion;
use franzy::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use franzy::kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use franzy::kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsTopic,
};
use franzy::kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use franzy::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use franzy::kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use franzy::kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use franzy::kafka_protocol::messages::produce_response::{
    PartitionProduceResponse, TopicProduceResponse,
};
use franzy::kafka_protocol::messages::{
    ApiVersionsRequest, ApiVersionsResponse, BrokerId, FetchRequest, FetchResponse,
    ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse, ProduceRequest,
    ProduceResponse, TopicName,
};
use franzy::kafka_protocol::protocol::StrBytes;
use franzy::proto::batch_header::{compute_crc, BATCH_HEADER_LEN, LOG_OVERHEAD};
use franzy::proto::compression::Compression;
use franzy::proto::frame::encode_frame;
use franzy::proto::message::{encode_request, encode_response};
use franzy::proto::{ApiKey, RequestHeader, RequestKind, ResponseKind};
use franzy_fuzz::chunks::Plan;
use franzy_fuzz::fetcher::{FetchedPartition, Script};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

const TOPIC: &str = "orders";
/// A fixed topic id, so that the seeds do not change from run to run.
const TOPIC_ID: [u8; 16] = *b"franzy-seed-0001";

fn main() -> Result<()> {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let codecs = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];
    let batches: Vec<(String, Vec<u8>)> = codecs
        .iter()
        .map(|&codec| Ok((codec_name(codec).to_string(), sample_batch(codec, 0)?)))
        .collect::<Result<_>>()?;
    let plain_batch = sample_batch(Compression::None, 0)?;

    let requests = requests(&plain_batch)?;
    let responses = responses(&plain_batch)?;

    // request_decode: the request frame body, as `decode_request` sees it.
    let mut out = Seeds::new(&seeds, "request_decode")?;
    for (name, frame) in &requests {
        out.write(name, &frame[4..])?;
    }

    // response_decode: api selector, version selector, then the response frame body.
    let keys = franzy_fuzz::api::keys();
    let mut out = Seeds::new(&seeds, "response_decode")?;
    for (name, api, version, frame) in &responses {
        let selector = franzy_fuzz::api::selector(&keys, *api, *version)
            .ok_or_else(|| format!("no selector for {api:?} v{version}"))?;
        let mut seed = selector.to_vec();
        seed.extend_from_slice(&frame[4..]);
        out.write(name, &seed)?;
    }

    // frame_decode: streams of whole frames, delivered in several ways.
    let mut out = Seeds::new(&seeds, "frame_decode")?;
    let mut stream = Vec::new();
    for (_, frame) in requests.iter().take(6) {
        stream.extend_from_slice(frame);
    }
    out.write("requests_at_once", &Plan::encode(&[], None, &stream))?;
    out.write("requests_byte_by_byte", &Plan::encode(&[1], None, &stream))?;
    out.write(
        "requests_ragged",
        &Plan::encode(&[3, 200, 7, usize::MAX], None, &stream),
    )?;
    let mut responses_stream = Vec::new();
    for (_, _, _, frame) in responses.iter().take(6) {
        responses_stream.extend_from_slice(frame);
    }
    out.write(
        "responses_ragged",
        &Plan::encode(&[5, 64], None, &responses_stream),
    )?;
    let cut = stream[..stream.len() - 3].to_vec();
    out.write("partial_tail", &Plan::encode(&[17], None, &cut))?;
    let mut two = BytesMut::new();
    encode_frame(b"first", &mut two)?;
    encode_frame(&[7u8; 40], &mut two)?;
    out.write(
        "too_large_for_tiny_max",
        &Plan::encode(&[2], Some(32), &two),
    )?;
    let mut negative = two.to_vec();
    negative.extend_from_slice(&(-1i32).to_be_bytes());
    out.write("negative_length", &Plan::encode(&[9], None, &negative))?;

    // batch_header: mode byte (bit 0: fix CRCs), then a records field.
    let mut out = Seeds::new(&seeds, "batch_header")?;
    for (name, batch) in &batches {
        out.write(&format!("batch_{name}"), &with_mode(0, batch))?;
    }
    let mut records = sample_batch(Compression::None, 0)?;
    records.extend(sample_batch(Compression::Gzip, 3)?);
    records.extend(empty_batch(6));
    out.write("three_batches", &with_mode(0, &records))?;
    let tail = sample_batch(Compression::Lz4, 6)?;
    records.extend_from_slice(&tail[..tail.len() / 2]);
    out.write("partial_tail", &with_mode(0, &records))?;
    let mut stale = empty_batch(9);
    stale[30] ^= 0xff;
    out.write("stale_crc_fixed", &with_mode(1, &stale))?;

    // record_batch_<codec>: one batch each, for the targets to come (see README.md).
    for (name, batch) in &batches {
        let mut out = Seeds::new(&seeds, &format!("record_batch_{name}"))?;
        out.write("three_records", batch)?;
    }

    // fetcher: scripts for the consumer's fetch engine (franzy_fuzz::fetcher).
    let mut out = Seeds::new(&seeds, "fetcher")?;
    for (name, script) in fetcher_scripts(&batches)? {
        out.write(name, &script.into_bytes())?;
    }
    Ok(())
}

/// One partition of a Fetch answer: no error, watermarks as given, `records`.
fn fetched(partition: u8, high_watermark: i64, records: Vec<u8>) -> FetchedPartition {
    FetchedPartition {
        partition,
        error: 0,
        high_watermark,
        last_stable_offset: high_watermark,
        log_start_offset: 0,
        fix_crcs: false,
        records,
    }
}

/// `batch` with its base offset rewritten (outside the CRC, as a broker does).
fn rebased(batch: &[u8], base_offset: i64) -> Vec<u8> {
    let mut batch = batch.to_vec();
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
    batch
}

/// Settings byte of `franzy_fuzz::fetcher`: earliest, `partitions` assigned, seek to 0.
fn settings(partitions: u8) -> u8 {
    ((partitions - 1) << 4) | 0x40
}

fn fetcher_scripts(batches: &[(String, Vec<u8>)]) -> Result<Vec<(&'static str, Script)>> {
    let plain = sample_batch(Compression::None, 0)?;
    let at = |base: i64| -> Result<Vec<u8>> { sample_batch(Compression::None, base) };
    let every_codec: Vec<u8> = batches
        .iter()
        .enumerate()
        .map(|(i, (_, b))| rebased(b, 3 * i as i64))
        .collect::<Vec<_>>()
        .concat();
    let mut cut = [at(0)?, at(3)?].concat();
    cut.truncate(cut.len() - 9);
    let scripts = vec![
        (
            "lookup_then_fetch_every_codec",
            // Positions from auto.offset.reset=earliest, then five batches of three records.
            Script::new(0x30)
                .list_offsets(&[(0, 0, 0, -1), (1, 0, 0, -1), (2, 0, 0, -1), (3, 0, 0, -1)])
                .fetch(18, 0, &[fetched(0, 15, every_codec)])
                .decode_ahead()
                .drain(0),
        ),
        (
            "two_brokers_pause_resume",
            Script::new(settings(2))
                .fetch(12, 0, &[fetched(0, 3, plain.clone())])
                .fetch(12, 0, &[fetched(1, 3, plain.clone())])
                .control(0, 1)
                .drain(1)
                .control(1, 1)
                .drain(0),
        ),
        (
            "cut_tail_then_rest",
            Script::new(settings(1))
                .fetch(18, 0, &[fetched(0, 6, cut)])
                .drain(0)
                .fetch(18, 0, &[fetched(0, 6, at(3)?)])
                .drain(0),
        ),
        (
            "batch_at_int64_max",
            Script::new(settings(1))
                .fetch(
                    18,
                    0,
                    &[fetched(
                        0,
                        i64::MAX,
                        [plain.clone(), rebased(&plain, i64::MAX)].concat(),
                    )],
                )
                .drain(0),
        ),
        (
            "batch_at_negative_offset",
            Script::new(settings(1))
                .fetch(18, 0, &[fetched(0, 9, rebased(&plain, i64::MIN))])
                .drain(0),
        ),
        (
            "high_watermark_far_ahead_without_data",
            Script::new(settings(1))
                .fetch(18, 0, &[fetched(0, i64::MAX, Vec::new())])
                .time(100)
                .fetch(18, 0, &[fetched(0, i64::MAX, Vec::new())])
                .time(1000)
                .fetch(18, 0, &[fetched(0, i64::MAX, Vec::new())])
                .drain(0),
        ),
        (
            "batches_below_the_fetch_offset",
            Script::new(settings(1))
                .seek(0, 0, 50)
                .fetch(18, 0, &[fetched(0, 60, plain.clone())])
                .time(200)
                .fetch(18, 0, &[fetched(0, 60, [plain.clone(), at(50)?].concat())])
                .drain(0),
        ),
        (
            "fetch_failures_until_an_outage",
            Script::new(settings(1))
                .fetch_failure(0)
                .time(60)
                .fetch_failure(2)
                .time(150)
                .fetch_failure(0)
                .time(300)
                .fetch_failure(0)
                .time(600)
                .fetch_failure(1)
                .drain(0)
                .time(1200)
                .fetch(18, 0, &[fetched(0, 3, plain.clone())])
                .drain(0),
        ),
        (
            "lookup_failures_and_a_bogus_offset",
            Script::new(0x00)
                .lookup_failure(0)
                .time(600)
                .lookup_failure(1)
                .time(1200)
                .lookup_failure(2)
                .time(1000)
                .list_offsets(&[(0, 0, -7, -1)])
                .drain(0)
                .seek(0, 1, 0)
                .list_offsets(&[(0, 0, 0, -1)])
                .drain(0),
        ),
        (
            "errors_reset_and_eof",
            // read_committed, enable.partition.eof, auto.offset.reset=earliest.
            Script::new(0x43)
                .fetch(18, 0, &[fetched(0, 3, plain.clone())])
                .fetch(18, 0, &[fetched(0, 3, Vec::new())])
                .drain(0)
                .fetch(
                    18,
                    0,
                    &[FetchedPartition {
                        error: 1,
                        ..fetched(0, -1, Vec::new())
                    }],
                )
                .list_offsets(&[(0, 0, 0, -1)])
                .fetch(
                    18,
                    0,
                    &[FetchedPartition {
                        error: 6,
                        ..fetched(0, 3, Vec::new())
                    }],
                )
                .drain(0)
                .control(2, 0)
                .control(3, 0),
        ),
        (
            "stale_crc_fixed_and_corrupt",
            Script::new(settings(1))
                .fetch(
                    9,
                    0,
                    &[FetchedPartition {
                        fix_crcs: true,
                        ..fetched(0, 6, [rebased(&plain, 0), empty_batch(3)].concat())
                    }],
                )
                .drain(0)
                .seek(0, 0, 0)
                .fetch(
                    9,
                    0,
                    &[fetched(0, 3, {
                        let mut bad = plain.clone();
                        let last = bad.len() - 1;
                        bad[last] ^= 0x55;
                        bad
                    })],
                )
                .drain(0),
        ),
    ];
    Ok(scripts)
}

/// One seed directory, emptied when opened.
struct Seeds {
    dir: std::path::PathBuf,
}

impl Seeds {
    fn new(root: &Path, target: &str) -> Result<Self> {
        let dir = root.join(target);
        if dir.exists() {
            fs::remove_dir_all(&dir)?;
        }
        fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    fn write(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        fs::write(self.dir.join(name), bytes)?;
        Ok(())
    }
}

fn with_mode(mode: u8, records: &[u8]) -> Vec<u8> {
    let mut seed = vec![mode];
    seed.extend_from_slice(records);
    seed
}

fn codec_name(codec: Compression) -> &'static str {
    match codec {
        Compression::None => "none",
        Compression::Gzip => "gzip",
        Compression::Snappy => "snappy",
        Compression::Lz4 => "lz4",
        Compression::Zstd => "zstd",
    }
}

fn topic_name() -> TopicName {
    TopicName(StrBytes::from_static_str(TOPIC))
}

/// Framed requests: `(seed name, frame with its length prefix)`.
fn requests(batch: &[u8]) -> Result<Vec<(String, Bytes)>> {
    let uuid = uuid_of(TOPIC_ID);
    let mut out = Vec::new();
    let mut push = |api: ApiKey, version: i16, body: RequestKind| -> Result<()> {
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(i32::from(version) + 100)
            .with_client_id(Some(StrBytes::from_static_str("franzy-seed")));
        let mut frame = BytesMut::new();
        encode_request(&mut frame, &header, &body)
            .map_err(|e| format!("{api:?} v{version} request: {e}"))?;
        out.push((format!("{}_v{version}", snake(api)), frame.freeze()));
        Ok(())
    };

    for version in [0, 3, 4] {
        let mut body = ApiVersionsRequest::default();
        if version >= 3 {
            body = body
                .with_client_software_name(StrBytes::from_static_str("franzy"))
                .with_client_software_version(StrBytes::from_static_str("0.1.0"));
        }
        push(ApiKey::ApiVersions, version, RequestKind::ApiVersions(body))?;
    }
    for version in [0, 4, 9, 12] {
        let mut topic = MetadataRequestTopic::default().with_name(Some(topic_name()));
        if version >= 10 {
            topic = topic.with_topic_id(uuid);
        }
        let mut body = MetadataRequest::default().with_topics(Some(vec![topic]));
        if version >= 4 {
            body = body.with_allow_auto_topic_creation(false);
        }
        push(ApiKey::Metadata, version, RequestKind::Metadata(body))?;
    }
    for version in [3, 9, 13] {
        let mut topic =
            TopicProduceData::default().with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(Bytes::copy_from_slice(batch)))]);
        topic = if version >= 13 {
            topic.with_topic_id(uuid)
        } else {
            topic.with_name(topic_name())
        };
        let body = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![topic]);
        push(ApiKey::Produce, version, RequestKind::Produce(body))?;
    }
    for version in [4, 11, 13, 17] {
        let mut partition = FetchPartition::default()
            .with_partition(0)
            .with_fetch_offset(42)
            .with_partition_max_bytes(1 << 20);
        if version >= 9 {
            partition = partition.with_current_leader_epoch(3);
        }
        if version >= 5 {
            partition = partition.with_log_start_offset(0);
        }
        let mut topic = FetchTopic::default().with_partitions(vec![partition]);
        topic = if version >= 13 {
            topic.with_topic_id(uuid)
        } else {
            topic.with_topic(topic_name())
        };
        let mut body = FetchRequest::default()
            .with_max_wait_ms(500)
            .with_min_bytes(1)
            .with_topics(vec![topic]);
        if version >= 3 {
            body = body.with_max_bytes(50 << 20);
        }
        if version >= 4 {
            body = body.with_isolation_level(1);
        }
        if version >= 11 {
            body = body.with_rack_id(StrBytes::from_static_str("rack-a"));
        }
        if version < 15 {
            body = body.with_replica_id(BrokerId(-1));
        }
        push(ApiKey::Fetch, version, RequestKind::Fetch(body))?;
    }
    for version in [1, 5, 7, 10] {
        let mut partition = ListOffsetsPartition::default()
            .with_partition_index(0)
            .with_timestamp(-1);
        if version >= 4 {
            partition = partition.with_current_leader_epoch(3);
        }
        let topic = ListOffsetsTopic::default()
            .with_name(topic_name())
            .with_partitions(vec![partition]);
        let mut body = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![topic]);
        if version >= 2 {
            body = body.with_isolation_level(1);
        }
        if version >= 10 {
            body = body.with_timeout_ms(1000);
        }
        push(ApiKey::ListOffsets, version, RequestKind::ListOffsets(body))?;
    }
    Ok(out)
}

/// Framed responses: `(seed name, api, version, frame with its length prefix)`.
fn responses(batch: &[u8]) -> Result<Vec<(String, ApiKey, i16, Bytes)>> {
    let uuid = uuid_of(TOPIC_ID);
    let mut out = Vec::new();
    let mut push = |api: ApiKey, version: i16, body: ResponseKind| -> Result<()> {
        let mut frame = BytesMut::new();
        encode_response(&mut frame, api, version, i32::from(version) + 100, &body)
            .map_err(|e| format!("{api:?} v{version} response: {e}"))?;
        out.push((
            format!("{}_v{version}", snake(api)),
            api,
            version,
            frame.freeze(),
        ));
        Ok(())
    };

    for version in [0, 3, 4] {
        let keys = [
            ApiKey::Produce,
            ApiKey::Fetch,
            ApiKey::ListOffsets,
            ApiKey::Metadata,
        ]
        .iter()
        .map(|&api| {
            let range = api.valid_versions();
            ApiVersion::default()
                .with_api_key(api as i16)
                .with_min_version(range.min)
                .with_max_version(range.max)
        })
        .collect();
        let mut body = ApiVersionsResponse::default().with_api_keys(keys);
        if version >= 1 {
            body = body.with_throttle_time_ms(0);
        }
        push(
            ApiKey::ApiVersions,
            version,
            ResponseKind::ApiVersions(body),
        )?;
    }
    for version in [0, 4, 9, 12] {
        let broker = MetadataResponseBroker::default()
            .with_node_id(BrokerId(1))
            .with_host(StrBytes::from_static_str("localhost"))
            .with_port(9092);
        let mut partition = MetadataResponsePartition::default()
            .with_partition_index(0)
            .with_leader_id(BrokerId(1))
            .with_replica_nodes(vec![BrokerId(1)])
            .with_isr_nodes(vec![BrokerId(1)]);
        if version >= 7 {
            partition = partition.with_leader_epoch(3);
        }
        let mut topic = MetadataResponseTopic::default()
            .with_name(Some(topic_name()))
            .with_partitions(vec![partition]);
        if version >= 10 {
            topic = topic.with_topic_id(uuid);
        }
        let mut body = MetadataResponse::default()
            .with_brokers(vec![broker])
            .with_topics(vec![topic]);
        if version >= 1 {
            body = body.with_controller_id(BrokerId(1));
        }
        if version >= 2 {
            body = body.with_cluster_id(Some(StrBytes::from_static_str("franzy-cluster")));
        }
        push(ApiKey::Metadata, version, ResponseKind::Metadata(body))?;
    }
    for version in [3, 9, 13] {
        let mut partition = PartitionProduceResponse::default()
            .with_index(0)
            .with_base_offset(42);
        if version >= 5 {
            partition = partition.with_log_start_offset(0);
        }
        let mut topic = TopicProduceResponse::default().with_partition_responses(vec![partition]);
        topic = if version >= 13 {
            topic.with_topic_id(uuid)
        } else {
            topic.with_name(topic_name())
        };
        let body = ProduceResponse::default().with_responses(vec![topic]);
        push(ApiKey::Produce, version, ResponseKind::Produce(body))?;
    }
    for version in [4, 11, 13, 17] {
        let mut partition = PartitionData::default()
            .with_partition_index(0)
            .with_high_watermark(45)
            .with_last_stable_offset(45)
            .with_records(Some(Bytes::copy_from_slice(batch)));
        if version >= 5 {
            partition = partition.with_log_start_offset(0);
        }
        let mut topic = FetchableTopicResponse::default().with_partitions(vec![partition]);
        topic = if version >= 13 {
            topic.with_topic_id(uuid)
        } else {
            topic.with_topic(topic_name())
        };
        let mut body = FetchResponse::default().with_responses(vec![topic]);
        if version >= 7 {
            body = body.with_session_id(7);
        }
        push(ApiKey::Fetch, version, ResponseKind::Fetch(body))?;
    }
    for version in [1, 5, 7, 10] {
        let mut partition = ListOffsetsPartitionResponse::default()
            .with_partition_index(0)
            .with_timestamp(-1)
            .with_offset(45);
        if version >= 4 {
            partition = partition.with_leader_epoch(3);
        }
        let topic = ListOffsetsTopicResponse::default()
            .with_name(topic_name())
            .with_partitions(vec![partition]);
        let body = ListOffsetsResponse::default().with_topics(vec![topic]);
        push(
            ApiKey::ListOffsets,
            version,
            ResponseKind::ListOffsets(body),
        )?;
    }
    Ok(out)
}

fn snake(api: ApiKey) -> &'static str {
    match api {
        ApiKey::ApiVersions => "api_versions",
        ApiKey::Metadata => "metadata",
        ApiKey::Produce => "produce",
        ApiKey::Fetch => "fetch",
        ApiKey::ListOffsets => "list_offsets",
        _ => "other",
    }
}

fn uuid_of(bytes: [u8; 16]) -> uuid::Uuid {
    uuid::Uuid::from_bytes(bytes)
}

// ---- record batches, magic v2 ----

/// Three records (one with a null key, one with a header), compressed with `codec`.
fn sample_batch(codec: Compression, base_offset: i64) -> Result<Vec<u8>> {
    let mut records = Vec::new();
    record(&mut records, 0, 0, Some(b"k0"), Some(b"hello"), &[]);
    record(
        &mut records,
        1,
        5,
        None,
        Some(b"world"),
        &[(b"trace", Some(b"abc"))],
    );
    record(&mut records, 2, 9, Some(b"k2"), None, &[]);
    let body = compress(codec, &records)?;
    Ok(batch(codec, base_offset, 2, 3, &body))
}

/// A header-only batch with no records, as compaction can leave.
fn empty_batch(base_offset: i64) -> Vec<u8> {
    batch(Compression::None, base_offset, 0, 0, &[])
}

fn batch(
    codec: Compression,
    base_offset: i64,
    last_delta: i32,
    count: i32,
    body: &[u8],
) -> Vec<u8> {
    let base_timestamp: i64 = 1_700_000_000_000;
    let mut b = Vec::with_capacity(BATCH_HEADER_LEN + body.len());
    b.extend(base_offset.to_be_bytes());
    let length = (BATCH_HEADER_LEN - LOG_OVERHEAD + body.len()) as i32;
    b.extend(length.to_be_bytes());
    b.extend(0i32.to_be_bytes()); // partitionLeaderEpoch
    b.push(2); // magic
    b.extend(0u32.to_be_bytes()); // crc, filled in below
    b.extend(i16::from(codec.id()).to_be_bytes());
    b.extend(last_delta.to_be_bytes());
    b.extend(base_timestamp.to_be_bytes());
    b.extend((base_timestamp + 9).to_be_bytes()); // maxTimestamp
    b.extend((-1i64).to_be_bytes()); // producerId
    b.extend((-1i16).to_be_bytes()); // producerEpoch
    b.extend((-1i32).to_be_bytes()); // baseSequence
    b.extend(count.to_be_bytes());
    b.extend_from_slice(body);
    let crc = compute_crc(&b);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

type Header<'a> = (&'a [u8], Option<&'a [u8]>);

fn record(
    out: &mut Vec<u8>,
    offset_delta: i64,
    timestamp_delta: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[Header<'_>],
) {
    let mut body = vec![0u8]; // attributes
    varint(&mut body, timestamp_delta);
    varint(&mut body, offset_delta);
    nullable(&mut body, key);
    nullable(&mut body, value);
    varint(&mut body, headers.len() as i64);
    for (key, value) in headers {
        nullable(&mut body, Some(key));
        nullable(&mut body, *value);
    }
    varint(out, body.len() as i64);
    out.extend(body);
}

fn nullable(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => varint(out, -1),
        Some(b) => {
            varint(out, b.len() as i64);
            out.extend_from_slice(b);
        }
    }
}

/// Zig-zag varint (protocol buffers encoding), as record fields use.
fn varint(out: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn compress(codec: Compression, data: &[u8]) -> Result<Vec<u8>> {
    Ok(match codec {
        Compression::None => data.to_vec(),
        Compression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(data)?;
            enc.finish()?
        }
        Compression::Snappy => {
            // xerial framing, as the Java client writes: magic, version 1, compatible 1, then
            // length-prefixed raw snappy blocks.
            let mut out = b"\x82SNAPPY\x00".to_vec();
            out.extend(1i32.to_be_bytes());
            out.extend(1i32.to_be_bytes());
            let block = snap::raw::Encoder::new().compress_vec(data)?;
            out.extend((block.len() as i32).to_be_bytes());
            out.extend(block);
            out
        }
        Compression::Lz4 => {
            let mut enc = lz4_flex::frame::FrameEncoder::new(Vec::new());
            enc.write_all(data)?;
            enc.finish()?
        }
        Compression::Zstd => {
            ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
        }
    })
}
