//! Golden frames: franzy's codec against bytes written by implementations franzy did not write.
//!
//! The wire codec is shared by the client and the harness, so a mistake in it can cancel out
//! between the two. These fixtures were written by kcat 1.7.1 (librdkafka 2.0.2), by
//! kafka-python 3.0.12 and by librdkafka's mock cluster answering them, recorded on loopback
//! by `tests/interop/capture_golden.sh`; `golden/MANIFEST` lists each file with its API key,
//! version, direction and the command that produced it. CI does not re-capture: the values
//! asserted below (ports, cluster id, producer id, correlation ids) are those of the committed
//! capture, and must be updated together with the files.
//!
//! For every fixture the test decodes it, checks the fields we know from the capture, and
//! encodes the decoded value again: the bytes must be the captured ones. Two responses of the
//! mock cluster carry bytes after the end of the message as the spec defines it; see
//! [`TRAILING_BYTES`] for what they are and why the comparison stops before them.
//!
//! Record batches are checked with `batch_header::validate_batch` (CRC-32C) and their header
//! fields; the records of uncompressed batches are read by a small reader in this file, kept
//! independent of franzy's record codec on purpose. The compressed batches (gzip, snappy, lz4,
//! zstd) are checked up to the header here; their records are for the record batch codec's
//! own tests.

use std::collections::BTreeSet;

use bytes::{Bytes, BytesMut};
use franzy::kafka_protocol::messages::{
    ApiVersionsResponse, FetchRequest, FetchResponse, MetadataResponse, ProduceRequest,
    ProduceResponse,
};
use franzy::proto::batch_header::{validate_batch, BatchHeader, MAGIC_V2};
use franzy::proto::compression::Compression;
use franzy::proto::message::{
    decode_request, decode_response, encode_request, encode_response, DecodedRequest,
};
use franzy::proto::{ApiKey, ErrorCode, RequestKind, ResponseHeader, ResponseKind};

const GOLDEN_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden");

/// The mock cluster of the capture: broker ids and the ports they listened on (MANIFEST,
/// "bootstrap").
const BROKERS: [(i32, i32); 3] = [(1, 45789), (2, 39547), (3, 43919)];
const CLUSTER_ID: &str = "mockCluster157acba1e8a8";
/// Leader of partitions 0, 1 and 2 of topic `golden`.
const LEADERS: [i32; 3] = [1, 2, 2];
/// The producer id the mock cluster gave kafka-python's idempotent producer.
const KAFKA_PYTHON_PRODUCER_ID: i64 = 304_796_000;
/// librdkafka 2.0's mock cluster answers every Produce with this `log_append_time_ms`, although
/// the topic uses create time (a real broker answers -1). Kept as captured.
const MOCK_LOG_APPEND_TIME: i64 = 1234;

/// Bytes that the librdkafka 2.0.2 mock cluster writes after the end of a message, which the
/// decoder leaves unread (it does not require a frame to be consumed to its end; kafka-python
/// read the ListOffsets one below without complaint), and which a re-encoding therefore cannot
/// reproduce. The comparison covers everything before them, and
/// the test checks that they are exactly these bytes, so that any other difference still fails.
const TRAILING_BYTES: &[(&str, &[u8])] = &[
    // ListOffsets v4+ partitions end with leader_epoch (int32). The mock writes four more bytes
    // of 0xff after each partition; the fields before them are correct. With one partition,
    // as here, they trail the message; with several, they shift every partition after the
    // first, and no client can read the response (tests/interop/interop.py steps around it).
    ("kafka_python_list_offsets_v5_response.bin", &[0xff; 4]),
    // An ApiVersions request at a version the mock does not support (v3 here) gets a body
    // that is neither the v0 layout that KIP-511 prescribes for this case nor a valid v3 one:
    //   error_code 0x0023 | 0x01 | 0x0012 0x0000 0x0002 | 0x00000000
    // i.e. a one-byte array count of 1 (a compact array would say 2), the ApiVersions entry
    // without its tag buffer, and the throttle time with no tag buffer after it. Read as v3
    // (the version asked for), the error code is right and the rest is misread: an empty
    // compact array, throttle_time_ms 0x00120000 and an empty tag buffer, leaving five bytes.
    // librdkafka only looks at the error code and retries with v0; kafka-python 3.0 fails to
    // decode the frame and never connects (see tests/interop/kafka_python_golden.py). A client
    // talking to this broker must likewise act on the error code alone.
    (
        "librdkafka_api_versions_v3_unsupported_response.bin",
        &[0x02, 0x00, 0x00, 0x00, 0x00],
    ),
];

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn every_fixture_is_in_the_manifest_decodes_and_re_encodes_to_the_captured_bytes() {
    let fixtures = manifest();
    let listed: BTreeSet<String> = fixtures.iter().map(|f| f.file.clone()).collect();
    let on_disk: BTreeSet<String> = std::fs::read_dir(GOLDEN_DIR)
        .expect("golden dir readable")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".bin"))
        .collect();
    assert_eq!(listed, on_disk, "MANIFEST and the .bin files disagree");
    assert!(fixtures.len() >= 30, "only {} fixtures", fixtures.len());

    for fixture in &fixtures {
        match fixture.direction {
            Direction::Request => {
                let decoded = request(&fixture.file);
                assert_eq!(decoded.api_key, fixture.api_key, "{}", fixture.file);
                assert_eq!(
                    decoded.header.request_api_version, fixture.version,
                    "{}",
                    fixture.file
                );
                assert_eq!(
                    decoded.header.correlation_id, fixture.correlation_id,
                    "{}",
                    fixture.file
                );
            }
            Direction::Response => {
                let (header, _) = response(&fixture.file);
                assert_eq!(
                    header.correlation_id, fixture.correlation_id,
                    "{}",
                    fixture.file
                );
            }
        }
    }
}

#[test]
fn request_and_response_pairs_share_a_correlation_id() {
    let fixtures = manifest();
    let mut pairs = 0;
    for req in fixtures
        .iter()
        .filter(|f| f.direction == Direction::Request)
    {
        let stem = req.file.trim_end_matches("_request.bin");
        let Some(resp) = fixtures
            .iter()
            .find(|f| f.file == format!("{stem}_response.bin"))
        else {
            continue;
        };
        assert_eq!(
            (req.api_key, req.version, req.correlation_id),
            (resp.api_key, resp.version, resp.correlation_id),
            "{} / {}",
            req.file,
            resp.file
        );
        pairs += 1;
    }
    assert!(pairs >= 14, "only {pairs} request/response pairs");
}

#[test]
fn librdkafka_api_versions() {
    // librdkafka opens with ApiVersions v3 (flexible body, request header v2)...
    let v3 = request("librdkafka_api_versions_v3_request.bin");
    assert_eq!(
        v3.header.client_id.as_ref().map(|s| s.as_str()),
        Some("rdkafka")
    );
    assert_eq!(v3.header.correlation_id, 1);
    let RequestKind::ApiVersions(body) = &v3.body else {
        panic!("not ApiVersions: {:?}", v3.body)
    };
    assert_eq!(body.client_software_name.as_str(), "librdkafka");
    assert_eq!(body.client_software_version.as_str(), "2.0.2");

    // ... which the mock refuses with UNSUPPORTED_VERSION (see TRAILING_BYTES for the layout) ...
    let (header, refused) = response("librdkafka_api_versions_v3_unsupported_response.bin");
    assert_eq!(header.correlation_id, 1);
    let refused = api_versions_body(refused);
    assert_eq!(refused.error_code, ErrorCode::UnsupportedVersion.code());

    // ... so librdkafka falls back to v0, which the mock answers with its version table.
    let v0 = request("librdkafka_api_versions_v0_request.bin");
    assert_eq!(
        v0.header.client_id.as_ref().map(|s| s.as_str()),
        Some("rdkafka")
    );
    assert_eq!(v0.header.correlation_id, 2);
    let (header, table) = response("librdkafka_api_versions_v0_response.bin");
    assert_eq!(header.correlation_id, 2);
    assert_mock_version_table(&api_versions_body(table));
}

#[test]
fn kafka_python_api_versions() {
    let req = request("kafka_python_api_versions_v2_request.bin");
    assert_eq!(
        req.header.client_id.as_ref().map(|s| s.as_str()),
        Some("franzy-golden")
    );
    assert_eq!(req.header.correlation_id, 1);
    let (_, table) = response("kafka_python_api_versions_v2_response.bin");
    let table = api_versions_body(table);
    assert_eq!(table.throttle_time_ms, 0);
    assert_mock_version_table(&table);
}

#[test]
fn librdkafka_metadata() {
    // `kcat -L` asks for all topics: a null array.
    let all = request("librdkafka_metadata_v2_request.bin");
    let RequestKind::Metadata(body) = &all.body else {
        panic!("not Metadata: {:?}", all.body)
    };
    assert_eq!(body.topics, None);

    // The producer asks for the one topic it writes to.
    let one = request("librdkafka_metadata_v2_topics_request.bin");
    let RequestKind::Metadata(body) = &one.body else {
        panic!("not Metadata: {:?}", one.body)
    };
    let names: Vec<&str> = body
        .topics
        .as_ref()
        .expect("named topics")
        .iter()
        .map(|t| t.name.as_ref().expect("topic name").as_str())
        .collect();
    assert_eq!(names, ["golden"]);
    assert!(body.allow_auto_topic_creation);

    let (_, resp) = response("librdkafka_metadata_v2_response.bin");
    assert_mock_metadata(&metadata_body(resp));
}

#[test]
fn kafka_python_metadata() {
    let req = request("kafka_python_metadata_v2_request.bin");
    let RequestKind::Metadata(body) = &req.body else {
        panic!("not Metadata: {:?}", req.body)
    };
    let names: Vec<&str> = body
        .topics
        .as_ref()
        .expect("named topics")
        .iter()
        .map(|t| t.name.as_ref().expect("topic name").as_str())
        .collect();
    assert_eq!(names, ["golden"]);
    let (_, resp) = response("kafka_python_metadata_v2_response.bin");
    assert_mock_metadata(&metadata_body(resp));

    // The same cluster answered both clients: the bodies after the correlation id are equal.
    assert_eq!(
        fixture_bytes("kafka_python_metadata_v2_response.bin").slice(4..),
        fixture_bytes("librdkafka_metadata_v2_response.bin").slice(4..)
    );
}

#[test]
fn librdkafka_produce_uncompressed() {
    let req = request("librdkafka_produce_v7_request.bin");
    assert_eq!(
        req.header.client_id.as_ref().map(|s| s.as_str()),
        Some("rdkafka")
    );
    let body = produce_body(&req);
    assert_eq!(body.transactional_id, None);
    assert_eq!(body.acks, -1, "librdkafka's default acks=all");
    assert_eq!(body.timeout_ms, 30_000);
    let (partition, records) = single_partition_records(body);
    assert_eq!(partition, 0);

    let batch = validate_batch(&records).expect("valid batch with a good CRC-32C");
    assert_eq!(batch.total_len(), records.len(), "one batch");
    assert_eq!(batch.magic, MAGIC_V2);
    assert_eq!(
        batch.attributes.compression().expect("codec"),
        Compression::None
    );
    assert!(!batch.attributes.is_transactional() && !batch.attributes.is_control());
    assert!(!batch.attributes.is_log_append_time());
    assert_eq!((batch.record_count, batch.last_offset_delta), (3, 2));
    assert_eq!(batch.base_offset, 0);
    assert_eq!(
        (batch.producer_id, batch.producer_epoch, batch.base_sequence),
        (-1, -1, -1),
        "not idempotent"
    );
    assert_eq!(batch.base_timestamp, batch.max_timestamp);
    assert_keyed_records(&records, &batch, "kcat");

    let (_, resp) = response("librdkafka_produce_v7_response.bin");
    assert_produced(&resp, 0, 0);
}

#[test]
fn librdkafka_produce_compressed() {
    let codecs = [
        ("gzip", Compression::Gzip, 0),
        ("snappy", Compression::Snappy, 3),
        ("lz4", Compression::Lz4, 6),
        ("zstd", Compression::Zstd, 9),
    ];
    for (name, codec, base_offset) in codecs {
        let req = request(&format!("librdkafka_produce_v7_{name}_request.bin"));
        let (partition, records) = single_partition_records(produce_body(&req));
        assert_eq!(partition, 1, "{name}");
        let batch = validate_batch(&records).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(batch.total_len(), records.len(), "{name}: one batch");
        assert_eq!(
            batch.attributes.compression().expect("codec"),
            codec,
            "{name}"
        );
        assert_eq!(
            (batch.record_count, batch.last_offset_delta),
            (3, 2),
            "{name}"
        );
        assert_eq!(batch.base_offset, 0, "{name}: the producer writes 0");
        // Compressed: the plaintext value must not appear as such.
        assert!(
            !contains(&records, b"value-1-abcdefghabcdefghabcdefgh"),
            "{name}: records look uncompressed"
        );

        let (_, resp) = response(&format!("librdkafka_produce_v7_{name}_response.bin"));
        assert_produced(&resp, 1, base_offset);

        // The broker stored the batch as sent and serves it back with its base offset set.
        let (_, fetched) = response(&format!("librdkafka_fetch_v11_{name}_response.bin"));
        let fetched = fetch_body(fetched);
        let part = &fetched.responses[0].partitions[0];
        assert_eq!((part.partition_index, part.error_code), (1, 0), "{name}");
        assert_eq!(part.high_watermark, 12, "{name}");
        let served = part.records.clone().expect("records");
        assert_same_batch_at(&records, &served, base_offset);
    }
}

#[test]
fn librdkafka_list_offsets_and_fetch() {
    let req = request("librdkafka_list_offsets_v2_request.bin");
    let RequestKind::ListOffsets(body) = &req.body else {
        panic!("not ListOffsets: {:?}", req.body)
    };
    assert_eq!(body.replica_id.0, -1);
    assert_eq!(
        body.isolation_level, 1,
        "librdkafka defaults to read_committed"
    );
    assert_eq!(body.topics.len(), 1);
    assert_eq!(body.topics[0].name.as_str(), "golden");
    let partition = &body.topics[0].partitions[0];
    assert_eq!(
        (partition.partition_index, partition.timestamp),
        (0, -2),
        "earliest"
    );
    let (_, resp) = response("librdkafka_list_offsets_v2_response.bin");
    assert_earliest_offset(resp, 0);

    let req = request("librdkafka_fetch_v11_request.bin");
    let body = fetch_request_body(&req);
    assert_eq!(body.replica_id.0, -1);
    assert_eq!((body.max_wait_ms, body.min_bytes), (500, 1));
    assert_eq!(body.max_bytes, 52_428_800);
    assert_eq!(body.isolation_level, 1);
    assert_eq!(
        (body.session_id, body.session_epoch),
        (0, -1),
        "no fetch session"
    );
    assert_eq!(body.topics[0].topic.as_str(), "golden");
    let partition = &body.topics[0].partitions[0];
    assert_eq!((partition.partition, partition.fetch_offset), (0, 0));
    assert_eq!(partition.partition_max_bytes, 1_048_576);

    let (_, resp) = response("librdkafka_fetch_v11_response.bin");
    let resp = fetch_body(resp);
    assert_eq!(resp.error_code, 0);
    assert_eq!(resp.responses[0].topic.as_str(), "golden");
    let part = &resp.responses[0].partitions[0];
    assert_eq!((part.partition_index, part.error_code), (0, 0));
    assert_eq!(
        (
            part.high_watermark,
            part.last_stable_offset,
            part.log_start_offset
        ),
        (3, 3, 0)
    );
    assert_eq!(part.aborted_transactions, Some(vec![]));
    let served = part.records.clone().expect("records");
    let batch = validate_batch(&served).expect("valid batch");
    assert_keyed_records(&served, &batch, "kcat");

    // Byte for byte the batch librdkafka produced.
    let (_, produced) =
        single_partition_records(produce_body(&request("librdkafka_produce_v7_request.bin")));
    assert_same_batch_at(&produced, &served, 0);
}

#[test]
fn kafka_python_idempotent_produce_and_fetch() {
    let req = request("kafka_python_init_producer_id_v4_request.bin");
    // InitProducerId v4 is a flexible version: request header v2 with tagged fields.
    assert_eq!(
        req.header.client_id.as_ref().map(|s| s.as_str()),
        Some("franzy-golden")
    );
    let RequestKind::InitProducerId(body) = &req.body else {
        panic!("not InitProducerId: {:?}", req.body)
    };
    assert_eq!(body.transactional_id, None);
    assert_eq!((body.producer_id.0, body.producer_epoch), (-1, -1));
    let (_, resp) = response("kafka_python_init_producer_id_v4_response.bin");
    let ResponseKind::InitProducerId(resp) = resp else {
        panic!("not InitProducerId: {resp:?}")
    };
    assert_eq!(resp.error_code, 0);
    assert_eq!(
        (resp.producer_id.0, resp.producer_epoch),
        (KAFKA_PYTHON_PRODUCER_ID, 0)
    );

    let req = request("kafka_python_produce_v7_request.bin");
    let body = produce_body(&req);
    assert_eq!(body.acks, -1, "acks='all'");
    assert_eq!(
        body.timeout_ms, 20_000,
        "kafka_python_golden.py's request_timeout_ms"
    );
    let (partition, records) = single_partition_records(body);
    assert_eq!(partition, 2);
    let batch = validate_batch(&records).expect("valid batch");
    assert_eq!(
        batch.attributes.compression().expect("codec"),
        Compression::None
    );
    assert_eq!((batch.record_count, batch.last_offset_delta), (3, 2));
    assert_eq!(
        (batch.producer_id, batch.producer_epoch, batch.base_sequence),
        (KAFKA_PYTHON_PRODUCER_ID, 0, 0),
        "idempotent batch carries the id from InitProducerId"
    );
    assert_keyed_records(&records, &batch, "kafka-python");
    let (_, resp) = response("kafka_python_produce_v7_response.bin");
    assert_produced(&resp, 2, 0);

    let req = request("kafka_python_list_offsets_v5_request.bin");
    let RequestKind::ListOffsets(body) = &req.body else {
        panic!("not ListOffsets: {:?}", req.body)
    };
    assert_eq!(
        body.isolation_level, 0,
        "kafka-python defaults to read_uncommitted"
    );
    let partition = &body.topics[0].partitions[0];
    assert_eq!((partition.partition_index, partition.timestamp), (2, -2));
    assert_eq!(partition.current_leader_epoch, -1);
    let (_, resp) = response("kafka_python_list_offsets_v5_response.bin");
    assert_earliest_offset(resp, 2);

    let req = request("kafka_python_fetch_v11_request.bin");
    let body = fetch_request_body(&req);
    assert_eq!(body.isolation_level, 0);
    assert_eq!(
        (body.session_id, body.session_epoch),
        (0, 0),
        "asks for a new fetch session"
    );
    let partition = &body.topics[0].partitions[0];
    assert_eq!((partition.partition, partition.fetch_offset), (2, 0));

    let (_, resp) = response("kafka_python_fetch_v11_response.bin");
    let resp = fetch_body(resp);
    let part = &resp.responses[0].partitions[0];
    assert_eq!(
        (part.partition_index, part.error_code, part.high_watermark),
        (2, 0, 3)
    );
    let served = part.records.clone().expect("records");
    assert_same_batch_at(&records, &served, 0);
}

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Request,
    Response,
}

#[derive(Debug, Clone)]
struct Fixture {
    file: String,
    api_key: ApiKey,
    version: i16,
    direction: Direction,
    correlation_id: i32,
}

/// The fixtures listed in `golden/MANIFEST` (tab-separated: file, source, api key, api name,
/// version, direction, correlation id, bytes, pick, step; `#` starts a comment line).
fn manifest() -> Vec<Fixture> {
    let text = std::fs::read_to_string(format!("{GOLDEN_DIR}/MANIFEST")).expect("MANIFEST");
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            assert!(fields.len() >= 8, "short MANIFEST line: {line}");
            let key: i16 = fields[2].parse().expect("api key");
            let fixture = Fixture {
                file: fields[0].to_owned(),
                api_key: ApiKey::try_from(key).unwrap_or_else(|()| panic!("api key {key}")),
                version: fields[4].parse().expect("version"),
                direction: match fields[5] {
                    "request" => Direction::Request,
                    "response" => Direction::Response,
                    other => panic!("direction {other}"),
                },
                correlation_id: fields[6].parse().expect("correlation id"),
            };
            let size: usize = fields[7].parse().expect("size");
            assert_eq!(fixture_bytes(&fixture.file).len(), size, "{}", fixture.file);
            fixture
        })
        .collect()
}

fn fixture_bytes(file: &str) -> Bytes {
    let path = format!("{GOLDEN_DIR}/{file}");
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
}

fn trailing_bytes(file: &str) -> &'static [u8] {
    TRAILING_BYTES
        .iter()
        .find(|(name, _)| *name == file)
        .map_or(&[], |(_, bytes)| *bytes)
}

/// Decodes a request fixture and checks that encoding it again gives the captured bytes.
fn request(file: &str) -> DecodedRequest {
    let captured = fixture_bytes(file);
    let decoded =
        decode_request(captured.clone()).unwrap_or_else(|e| panic!("{file}: decode: {e}"));
    let mut out = BytesMut::new();
    encode_request(&mut out, &decoded.header, &decoded.body)
        .unwrap_or_else(|e| panic!("{file}: encode: {e}"));
    assert_re_encoded(file, &captured, &out);
    decoded
}

/// Decodes a response fixture at the API and version its request had (from the MANIFEST) and
/// checks that encoding it again gives the captured bytes.
fn response(file: &str) -> (ResponseHeader, ResponseKind) {
    let fixture = manifest()
        .into_iter()
        .find(|f| f.file == file)
        .unwrap_or_else(|| panic!("{file} not in MANIFEST"));
    assert_eq!(fixture.direction, Direction::Response, "{file}");
    let captured = fixture_bytes(file);
    let (header, body) = decode_response(captured.clone(), fixture.api_key, fixture.version)
        .unwrap_or_else(|e| panic!("{file}: decode: {e}"));
    let mut out = BytesMut::new();
    encode_response(
        &mut out,
        fixture.api_key,
        fixture.version,
        header.correlation_id,
        &body,
    )
    .unwrap_or_else(|e| panic!("{file}: encode: {e}"));
    assert_re_encoded(file, &captured, &out);
    (header, body)
}

/// `framed` is a whole frame as the encoder writes it: size prefix, then the body.
fn assert_re_encoded(file: &str, captured: &[u8], framed: &[u8]) {
    let (prefix, body) = framed.split_at(4);
    let announced = i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    assert_eq!(
        usize::try_from(announced).ok(),
        Some(body.len()),
        "{file}: size prefix"
    );
    let trailing = trailing_bytes(file);
    let (message, extra) = captured.split_at(captured.len() - trailing.len());
    assert_eq!(extra, trailing, "{file}: bytes past the end of the message");
    if body != message {
        let at = body
            .iter()
            .zip(message)
            .position(|(a, b)| a != b)
            .unwrap_or(body.len().min(message.len()));
        panic!(
            "{file}: re-encoding differs from the capture at byte {at} \
             (captured {} bytes, re-encoded {}):\ncaptured   {:02x?}\nre-encoded {:02x?}",
            message.len(),
            body.len(),
            &message[at.saturating_sub(8)..message.len().min(at + 24)],
            &body[at.saturating_sub(8)..body.len().min(at + 24)],
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Message helpers
// ---------------------------------------------------------------------------------------------

fn api_versions_body(kind: ResponseKind) -> ApiVersionsResponse {
    match kind {
        ResponseKind::ApiVersions(body) => body,
        other => panic!("not ApiVersions: {other:?}"),
    }
}

fn metadata_body(kind: ResponseKind) -> MetadataResponse {
    match kind {
        ResponseKind::Metadata(body) => body,
        other => panic!("not Metadata: {other:?}"),
    }
}

fn fetch_body(kind: ResponseKind) -> FetchResponse {
    match kind {
        ResponseKind::Fetch(body) => body,
        other => panic!("not Fetch: {other:?}"),
    }
}

fn produce_body(req: &DecodedRequest) -> &ProduceRequest {
    match &req.body {
        RequestKind::Produce(body) => body,
        other => panic!("not Produce: {other:?}"),
    }
}

fn fetch_request_body(req: &DecodedRequest) -> &FetchRequest {
    match &req.body {
        RequestKind::Fetch(body) => body,
        other => panic!("not Fetch: {other:?}"),
    }
}

/// The partition index and records of a produce request for one partition of `golden`.
fn single_partition_records(body: &ProduceRequest) -> (i32, Bytes) {
    assert_eq!(body.topic_data.len(), 1);
    assert_eq!(body.topic_data[0].name.as_str(), "golden");
    let partitions = &body.topic_data[0].partition_data;
    assert_eq!(partitions.len(), 1);
    let records = partitions[0].records.clone().expect("records present");
    assert!(!records.is_empty());
    (partitions[0].index, records)
}

/// The version table of librdkafka 2.0.2's mock cluster, as both clients received it.
fn assert_mock_version_table(table: &ApiVersionsResponse) {
    assert_eq!(table.error_code, 0);
    let ranges: Vec<(i16, i16, i16)> = table
        .api_keys
        .iter()
        .map(|v| (v.api_key, v.min_version, v.max_version))
        .collect();
    assert_eq!(ranges.len(), 17);
    for expected in [
        (0, 0, 7),  // Produce
        (1, 0, 11), // Fetch
        (2, 0, 5),  // ListOffsets
        (3, 0, 2),  // Metadata
        (18, 0, 2), // ApiVersions
        (22, 0, 4), // InitProducerId
    ] {
        assert!(ranges.contains(&expected), "{expected:?} not in {ranges:?}");
    }
}

fn assert_mock_metadata(resp: &MetadataResponse) {
    let brokers: Vec<(i32, &str, i32)> = resp
        .brokers
        .iter()
        .map(|b| (b.node_id.0, b.host.as_str(), b.port))
        .collect();
    let expected: Vec<(i32, &str, i32)> = BROKERS
        .iter()
        .map(|&(id, port)| (id, "127.0.0.1", port))
        .collect();
    assert_eq!(brokers, expected);
    assert_eq!(
        resp.cluster_id.as_ref().map(|s| s.as_str()),
        Some(CLUSTER_ID)
    );
    assert_eq!(resp.controller_id.0, 0);
    assert_eq!(resp.topics.len(), 1);
    let topic = &resp.topics[0];
    assert_eq!(topic.error_code, 0);
    assert_eq!(topic.name.as_ref().map(|n| n.as_str()), Some("golden"));
    assert!(!topic.is_internal);
    assert_eq!(topic.partitions.len(), 3);
    for (index, partition) in topic.partitions.iter().enumerate() {
        assert_eq!(partition.partition_index, index as i32);
        assert_eq!(partition.error_code, 0);
        assert_eq!(
            partition.leader_id.0, LEADERS[index],
            "leader of partition {index}"
        );
        let replicas: Vec<i32> = partition.replica_nodes.iter().map(|b| b.0).collect();
        let isr: Vec<i32> = partition.isr_nodes.iter().map(|b| b.0).collect();
        assert_eq!(
            (replicas.as_slice(), isr.as_slice()),
            (&[1, 2, 3][..], &[1, 2, 3][..])
        );
    }
}

fn assert_produced(resp: &ResponseKind, partition: i32, base_offset: i64) {
    let ResponseKind::Produce(ProduceResponse { responses, .. }) = resp else {
        panic!("not Produce: {resp:?}")
    };
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].name.as_str(), "golden");
    let part = &responses[0].partition_responses[0];
    assert_eq!(part.index, partition);
    assert_eq!(part.error_code, 0);
    assert_eq!(part.base_offset, base_offset);
    assert_eq!(part.log_append_time_ms, MOCK_LOG_APPEND_TIME);
    assert_eq!(part.log_start_offset, 0);
}

fn assert_earliest_offset(resp: ResponseKind, partition: i32) {
    let ResponseKind::ListOffsets(resp) = resp else {
        panic!("not ListOffsets: {resp:?}")
    };
    assert_eq!(resp.topics[0].name.as_str(), "golden");
    let part = &resp.topics[0].partitions[0];
    assert_eq!((part.partition_index, part.error_code), (partition, 0));
    assert_eq!((part.offset, part.timestamp), (0, -1));
}

// ---------------------------------------------------------------------------------------------
// Record batches
// ---------------------------------------------------------------------------------------------

/// `served` is the batch `produced` with its base offset set to `base_offset`, and nothing else
/// changed (the partition leader epoch stays as the producer wrote it on this mock).
fn assert_same_batch_at(produced: &[u8], served: &[u8], base_offset: i64) {
    let header = validate_batch(served).expect("served batch valid");
    assert_eq!(header.total_len(), served.len(), "one batch served");
    assert_eq!(header.base_offset, base_offset);
    assert_eq!(served.len(), produced.len());
    assert_eq!(
        &served[8..],
        &produced[8..],
        "batch changed between produce and fetch"
    );
}

/// The three records both clients produced: keys k1..k3, values v1..v3, headers
/// `trace=abc` and `source=<source>`, offset deltas 0..2, timestamps in send order with the
/// batch's max timestamp the last one's.
fn assert_keyed_records(records: &[u8], header: &BatchHeader, source: &str) {
    let parsed = read_uncompressed_records(&records[..header.total_len()], header);
    assert_eq!(parsed.len(), 3);
    for (i, record) in parsed.iter().enumerate() {
        let n = i + 1;
        assert_eq!(record.offset_delta, i as i64);
        assert!(record.timestamp_delta >= 0);
        assert_eq!(record.key.as_deref(), Some(format!("k{n}").as_bytes()));
        assert_eq!(record.value.as_deref(), Some(format!("v{n}").as_bytes()));
        let headers: Vec<(&str, Option<&[u8]>)> = record
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_deref()))
            .collect();
        assert_eq!(
            headers,
            [
                ("trace", Some(&b"abc"[..])),
                ("source", Some(source.as_bytes()))
            ]
        );
    }
    assert!(parsed
        .windows(2)
        .all(|w| w[0].timestamp_delta <= w[1].timestamp_delta));
    assert_eq!(
        header.base_timestamp + parsed[2].timestamp_delta,
        header.max_timestamp
    );
}

#[derive(Debug)]
struct Record {
    offset_delta: i64,
    timestamp_delta: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

/// Reads the records of an uncompressed batch (protocol guide, "Record"): a length, then
/// attributes, timestamp delta, offset delta, key, value and headers, lengths as zigzag
/// varints with -1 for null. Written here, not taken from franzy, so that it checks the
/// fixtures independently.
fn read_uncompressed_records(batch: &[u8], header: &BatchHeader) -> Vec<Record> {
    assert_eq!(header.attributes.compression_id(), 0, "uncompressed only");
    let mut reader = Reader {
        buf: &batch[61..],
        pos: 0,
    };
    let mut records = Vec::new();
    for _ in 0..header.record_count {
        let length = usize::try_from(reader.varint()).expect("record length");
        let end = reader.pos + length;
        assert_eq!(reader.byte(), 0, "record attributes are unused");
        let timestamp_delta = reader.varint();
        let offset_delta = reader.varint();
        let key = reader.nullable_bytes();
        let value = reader.nullable_bytes();
        let header_count = reader.varint();
        let headers = (0..header_count)
            .map(|_| {
                let name = reader.nullable_bytes().expect("header names are not null");
                let name = String::from_utf8(name).expect("utf-8 header name");
                (name, reader.nullable_bytes())
            })
            .collect();
        assert_eq!(reader.pos, end, "record length");
        records.push(Record {
            offset_delta,
            timestamp_delta,
            key,
            value,
            headers,
        });
    }
    assert_eq!(reader.pos, reader.buf.len(), "bytes after the last record");
    records
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> u8 {
        let b = self.buf[self.pos];
        self.pos += 1;
        b
    }

    /// A zigzag-encoded varint (up to 64 bits).
    fn varint(&mut self) -> i64 {
        let mut raw: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte();
            raw |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return (raw >> 1) as i64 ^ -((raw & 1) as i64);
            }
        }
        panic!("varint longer than 10 bytes");
    }

    fn nullable_bytes(&mut self) -> Option<Vec<u8>> {
        let len = self.varint();
        if len < 0 {
            return None;
        }
        let len = usize::try_from(len).expect("length");
        let bytes = self.buf[self.pos..self.pos + len].to_vec();
        self.pos += len;
        Some(bytes)
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
