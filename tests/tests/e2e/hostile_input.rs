//! A broker must survive whatever arrives on a socket: each case here gets a clean close or
//! an error response, and the broker keeps serving the next client.

use std::time::Duration;

use franzy::kafka_protocol::messages::MetadataRequest;
use franzy::proto::{ApiKey, ErrorCode, RequestKind, ResponseKind, StrBytes};
use franzy_harness::Cluster;
use franzy_tests::{init_tracing, RawConnection};
use tokio::net::TcpStream;

const CLOSE_WAIT: Duration = Duration::from_secs(5);

async fn cluster() -> Cluster {
    init_tracing();
    Cluster::builder()
        .brokers(1)
        .build()
        .await
        .expect("cluster starts")
}

async fn connect(cluster: &Cluster) -> RawConnection<TcpStream> {
    let address = cluster.broker_address(0).expect("tcp broker");
    RawConnection::new(TcpStream::connect(address).await.expect("connect"))
}

/// The broker still answers a well-formed ApiVersions on a new connection.
async fn assert_still_serving(cluster: &Cluster) {
    let mut conn = connect(cluster).await;
    let request = franzy_tests::api_versions_request();
    let (_, response) = conn
        .request(ApiKey::ApiVersions, 3, &request)
        .await
        .expect("broker still serves");
    let ResponseKind::ApiVersions(response) = response else {
        panic!("not an ApiVersions response")
    };
    assert_eq!(response.error_code, 0);
    assert!(!response.api_keys.is_empty());
}

async fn assert_closed_after(cluster: &Cluster, bytes: &[u8]) {
    let mut conn = connect(cluster).await;
    conn.send_raw(bytes).await.expect("send");
    conn.expect_closed(CLOSE_WAIT)
        .await
        .expect("broker closes the connection");
    assert_still_serving(cluster).await;
}

#[tokio::test]
async fn every_refusal_leaves_a_tracing_event_naming_the_reason() {
    let (events, _guard) = franzy_tests::capture_events();
    let cluster = Cluster::builder()
        .brokers(1)
        .build()
        .await
        .expect("cluster starts");
    assert_closed_after(&cluster, b"GET / HTTP/1.1\r\n\r\n").await;
    assert_closed_after(&cluster, &(-7i32).to_be_bytes()).await;
    let lines = events.lines();
    let refusals: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("WARN") && l.contains("closing connection"))
        .collect();
    assert!(
        refusals.iter().any(|l| l.contains("exceeds the maximum")),
        "{lines:#?}"
    );
    assert!(
        refusals
            .iter()
            .any(|l| l.contains("negative frame length -7")),
        "{lines:#?}"
    );
}

#[tokio::test]
async fn http_and_tls_bytes_are_refused() {
    let cluster = cluster().await;
    assert_closed_after(&cluster, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    // The start of a TLS 1.2 ClientHello record.
    assert_closed_after(
        &cluster,
        &[
            0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
        ],
    )
    .await;
}

#[tokio::test]
async fn negative_zero_and_oversized_lengths_are_refused() {
    let cluster = cluster().await;
    assert_closed_after(&cluster, &(-1i32).to_be_bytes()).await;
    assert_closed_after(&cluster, &0i32.to_be_bytes()).await;
    assert_closed_after(&cluster, &i32::MAX.to_be_bytes()).await;
    // Just over the 100 MiB default.
    assert_closed_after(&cluster, &(100 * 1024 * 1024 + 1i32).to_be_bytes()).await;
}

#[tokio::test]
async fn random_garbage_is_refused() {
    let cluster = cluster().await;
    // Deterministic noise: a prefix that reads as a small length, then junk.
    let mut junk = vec![0x00, 0x00, 0x00, 0x20];
    let mut x: u32 = 0x1234_5678;
    for _ in 0..32 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        junk.push(x as u8);
    }
    assert_closed_after(&cluster, &junk).await;
}

#[tokio::test]
async fn a_frame_too_short_for_a_header_is_refused() {
    let cluster = cluster().await;
    let mut conn = connect(&cluster).await;
    conn.send_frame(&[0x00, 0x12, 0x00]).await.expect("send");
    conn.expect_closed(CLOSE_WAIT).await.expect("closed");
    assert_still_serving(&cluster).await;
}

#[tokio::test]
async fn a_truncated_frame_then_hangup_leaves_the_broker_serving() {
    let cluster = cluster().await;
    let mut conn = connect(&cluster).await;
    // Announce 1 MiB, send 10 bytes, hang up.
    let mut bytes = (1024 * 1024i32).to_be_bytes().to_vec();
    bytes.extend_from_slice(&[0u8; 10]);
    conn.send_raw(&bytes).await.expect("send");
    drop(conn);
    assert_still_serving(&cluster).await;
}

#[tokio::test]
async fn unknown_api_key_and_unimplemented_api_close_the_connection() {
    let cluster = cluster().await;
    // api key 999, version 0, correlation id 7, null client id.
    let mut frame = Vec::new();
    frame.extend_from_slice(&999i16.to_be_bytes());
    frame.extend_from_slice(&0i16.to_be_bytes());
    frame.extend_from_slice(&7i32.to_be_bytes());
    frame.extend_from_slice(&(-1i16).to_be_bytes());
    let mut conn = connect(&cluster).await;
    conn.send_frame(&frame).await.expect("send");
    conn.expect_closed(CLOSE_WAIT).await.expect("closed");
    // DescribeDelegationToken (41) is a real API the harness does not implement.
    frame[0..2].copy_from_slice(&(ApiKey::DescribeDelegationToken as i16).to_be_bytes());
    let mut conn = connect(&cluster).await;
    conn.send_frame(&frame).await.expect("send");
    conn.expect_closed(CLOSE_WAIT).await.expect("closed");
    assert_still_serving(&cluster).await;
}

#[tokio::test]
async fn an_unsupported_api_versions_version_gets_the_v0_fallback() {
    let cluster = cluster().await;
    let mut conn = connect(&cluster).await;
    // ApiVersions v127: the header is v2 (flexible), the body is whatever; the broker must
    // answer in v0 with UNSUPPORTED_VERSION and its list.
    let mut frame = Vec::new();
    frame.extend_from_slice(&(ApiKey::ApiVersions as i16).to_be_bytes());
    frame.extend_from_slice(&127i16.to_be_bytes());
    frame.extend_from_slice(&42i32.to_be_bytes());
    frame.extend_from_slice(&(-1i16).to_be_bytes());
    frame.push(0); // no tagged fields
    conn.send_frame(&frame).await.expect("send");
    let response = conn.read_frame().await.expect("fallback answer");
    let (header, body) = franzy::proto::message::decode_response(response, ApiKey::ApiVersions, 0)
        .expect("v0 response");
    assert_eq!(header.correlation_id, 42);
    let ResponseKind::ApiVersions(body) = body else {
        panic!("not ApiVersions")
    };
    assert_eq!(body.error_code, ErrorCode::UnsupportedVersion.code());
    let own = body
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::ApiVersions as i16)
        .expect("lists ApiVersions itself");
    assert_eq!((own.min_version, own.max_version), (0, 4));
}

#[tokio::test]
async fn an_unsupported_version_of_another_api_closes_the_connection() {
    let cluster = cluster().await;
    let mut conn = connect(&cluster).await;
    let request = RequestKind::Metadata(MetadataRequest::default());
    // Metadata v13 encodes, but the frame claims version 99 after patching the prefix.
    let mut out = bytes::BytesMut::new();
    let header = franzy::proto::RequestHeader::default()
        .with_request_api_key(ApiKey::Metadata as i16)
        .with_request_api_version(12)
        .with_correlation_id(1);
    franzy::proto::message::encode_request(&mut out, &header, &request).expect("encode");
    out[6..8].copy_from_slice(&99i16.to_be_bytes());
    conn.send_raw(&out).await.expect("send");
    conn.expect_closed(CLOSE_WAIT).await.expect("closed");
    assert_still_serving(&cluster).await;
}

#[tokio::test]
async fn an_array_count_far_beyond_the_frame_is_refused_without_allocating_it() {
    let cluster = cluster().await;
    let mut conn = connect(&cluster).await;
    // ApiVersions v3 is flexible; its body starts with compact strings. Use Metadata v4
    // (non-flexible) whose body is an int32 topic count: claim 2^31-1 topics in 5 bytes.
    let mut frame = Vec::new();
    frame.extend_from_slice(&(ApiKey::Metadata as i16).to_be_bytes());
    frame.extend_from_slice(&4i16.to_be_bytes());
    frame.extend_from_slice(&9i32.to_be_bytes());
    frame.extend_from_slice(&(-1i16).to_be_bytes());
    frame.extend_from_slice(&i32::MAX.to_be_bytes());
    frame.push(1);
    conn.send_frame(&frame).await.expect("send");
    conn.expect_closed(CLOSE_WAIT).await.expect("closed");
    assert_still_serving(&cluster).await;
}

#[tokio::test]
async fn many_connections_announcing_huge_frames_do_not_stop_the_broker() {
    let cluster = cluster().await;
    let mut idle = Vec::new();
    for _ in 0..64 {
        let mut conn = connect(&cluster).await;
        let mut bytes = (90 * 1024 * 1024i32).to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0u8; 1024]);
        conn.send_raw(&bytes).await.expect("send");
        idle.push(conn);
    }
    assert_still_serving(&cluster).await;
}

/// A Produce v3 naming `entries` partitions of `topic`, all without records.
fn produce_entries(topic: &str, entries: i32) -> RequestKind {
    use franzy::kafka_protocol::messages::produce_request::{
        PartitionProduceData, TopicProduceData,
    };
    use franzy::kafka_protocol::messages::{ProduceRequest, TopicName};
    RequestKind::Produce(ProduceRequest::default().with_acks(1).with_topic_data(
        vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partition_data(
                    (0..entries)
                        .map(|i| PartitionProduceData::default().with_index(i))
                        .collect(),
                )],
    ))
}

#[tokio::test]
async fn two_hundred_thousand_partition_entries_are_all_answered_and_recorded_in_brief() {
    let cluster = cluster().await;
    cluster.create_topic("t", 3).expect("create");
    let mut conn = connect(&cluster).await;
    let (_, response) = conn
        .request(ApiKey::Produce, 3, &produce_entries("t", 200_000))
        .await
        .expect("answered");
    let ResponseKind::Produce(response) = response else {
        panic!("not a produce response")
    };
    let answers = &response.responses[0].partition_responses;
    assert_eq!(answers.len(), 200_000);
    let count = |code: ErrorCode| {
        answers
            .iter()
            .filter(|p| p.error_code == code.code())
            .count()
    };
    // The partitions that exist lack records; the rest of the first 10,000 do not exist;
    // past the cap, entries are refused unread.
    assert_eq!(count(ErrorCode::InvalidRecord), 3);
    assert_eq!(count(ErrorCode::UnknownTopicOrPartition), 10_000 - 3);
    assert_eq!(count(ErrorCode::InvalidRequest), 190_000);
    let recorded = cluster
        .requests()
        .into_iter()
        .find(|r| r.api_key == ApiKey::Produce)
        .expect("recorded");
    assert_eq!(recorded.partitions.len(), 1_000);
    assert_eq!(recorded.partition_count(), 200_000);
    assert!(recorded.partitions.iter().all(|(topic, _)| &**topic == "t"));
}

#[tokio::test]
async fn metadata_naming_twenty_thousand_new_topics_creates_a_thousand_and_reads_ten() {
    use franzy::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use franzy::kafka_protocol::messages::TopicName;
    let cluster = cluster().await;
    let topics = (0..20_000)
        .map(|i| {
            MetadataRequestTopic::default()
                .with_name(Some(TopicName(StrBytes::from_string(format!("new-{i}")))))
        })
        .collect();
    let request = RequestKind::Metadata(MetadataRequest::default().with_topics(Some(topics)));
    let mut conn = connect(&cluster).await;
    let (_, response) = conn
        .request(ApiKey::Metadata, 1, &request)
        .await
        .expect("answered");
    let ResponseKind::Metadata(response) = response else {
        panic!("not a metadata response")
    };
    assert_eq!(response.topics.len(), 20_000);
    // 1,000 created, 9,000 to be created by the next requests, 10,000 past the cap.
    let pending = ErrorCode::LeaderNotAvailable.code();
    let (first, past_cap) = response.topics.split_at(10_000);
    assert!(first.iter().all(|t| t.error_code == pending));
    assert!(past_cap
        .iter()
        .all(|t| t.error_code == ErrorCode::InvalidRequest.code()));
    assert_eq!(cluster.with_state(|s| s.topics().count()), 1_000);
    assert!(cluster.with_state(|s| s.topic("new-999").is_some() && s.topic("new-1000").is_none()));
}

#[tokio::test]
async fn a_frame_that_stops_arriving_is_closed_after_the_idle_timeout_with_a_warning() {
    let (events, _guard) = franzy_tests::capture_events();
    let cluster = Cluster::builder()
        .brokers(1)
        .connections_max_idle(Duration::from_millis(300))
        .build()
        .await
        .expect("cluster starts");
    let mut conn = connect(&cluster).await;
    let mut bytes = 1000i32.to_be_bytes().to_vec();
    bytes.extend_from_slice(&[0u8; 10]);
    conn.send_raw(&bytes).await.expect("send");
    conn.expect_closed(CLOSE_WAIT)
        .await
        .expect("broker closes the connection");
    let lines = events.lines();
    assert!(
        lines.iter().any(|l| l.starts_with("WARN")
            && l.contains("closing connection")
            && l.contains(
                "nothing received for 300ms in the middle of a frame (14 of 1004 bytes)"
            )),
        "{lines:#?}"
    );
    assert_still_serving(&cluster).await;
}
