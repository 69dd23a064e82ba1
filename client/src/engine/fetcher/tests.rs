//! Unit tests of the fetch engine, with plain `Instant`s.

use super::*;
use crate::engine::metadata::Metadata;
use crate::proto::record_batch::{ControlRecord, ControlRecordKind, RecordBatchBuilder};
use crate::proto::ErrorCode;
use crate::record::Header;
use crate::record::{ConsumerEvent, Offset};
use kafka_protocol::messages::fetch_response::FetchableTopicResponse;
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataResponse};
use kafka_protocol::messages::{FetchResponse, ListOffsetsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

const T0: u128 = 0x70;

fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

fn topic_id(topic: &str) -> Uuid {
    Uuid::from_u128(T0 + topic.len() as u128)
}

/// Metadata where `topic` has partitions led by `leaders[i]` in epoch 5.
fn metadata(topics: &[(&str, &[i32])]) -> Metadata {
    let brokers = (0..3)
        .map(|id| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(id))
                .with_host(StrBytes::from_static_str("localhost"))
                .with_port(9092 + id)
        })
        .collect();
    let topics = topics
        .iter()
        .map(|(name, leaders)| {
            let partitions = leaders
                .iter()
                .enumerate()
                .map(|(i, leader)| {
                    MetadataResponsePartition::default()
                        .with_partition_index(i as i32)
                        .with_leader_id(BrokerId(*leader))
                        .with_leader_epoch(5)
                })
                .collect();
            MetadataResponseTopic::default()
                .with_name(Some(TopicName(StrBytes::from_string(name.to_string()))))
                .with_topic_id(topic_id(name))
                .with_partitions(partitions)
        })
        .collect();
    let response = MetadataResponse::default()
        .with_brokers(brokers)
        .with_topics(topics);
    let mut md = Metadata::new(Duration::from_secs(300));
    md.handle_response(&response, Instant::now());
    md
}

fn config() -> FetcherConfig {
    FetcherConfig::from_config(&Config::new("localhost:9092"))
}

fn fetcher(config: FetcherConfig, partitions: &[TopicPartition]) -> Fetcher {
    let mut f = Fetcher::new(config, 1);
    f.assign(partitions);
    for p in partitions {
        f.seek(p, Offset::At(0)).expect("assigned");
    }
    f
}

fn batch(base_offset: i64, values: &[&str]) -> Vec<u8> {
    let mut builder = RecordBatchBuilder::new().base_offset(base_offset);
    for (i, v) in values.iter().enumerate() {
        builder
            .append(
                1_000 + i as i64,
                Some(Bytes::from(format!("k{i}"))),
                Some(Bytes::from(v.to_string())),
                vec![Header::new("h", v.to_string())],
            )
            .expect("appends");
    }
    let mut batch = builder.build();
    batch.partition_leader_epoch = 5;
    batch.encode().expect("encodes").to_vec()
}

fn control_batch(base_offset: i64) -> Vec<u8> {
    let mut batch = RecordBatch::transaction_marker(
        ControlRecord::new(ControlRecordKind::Commit, 0),
        9,
        0,
        1_000,
    );
    batch.base_offset = base_offset;
    batch.encode().expect("encodes").to_vec()
}

/// A batch whose records were all compacted away: offsets `base..=base + delta`.
fn empty_batch(base_offset: i64, last_offset_delta: i32) -> Vec<u8> {
    let mut batch = RecordBatchBuilder::new().base_offset(base_offset).build();
    batch.last_offset_delta = last_offset_delta;
    batch.encode().expect("encodes").to_vec()
}

fn partition(
    index: i32,
    error: Option<ErrorCode>,
    high_watermark: i64,
    records: Vec<u8>,
) -> PartitionData {
    PartitionData::default()
        .with_partition_index(index)
        .with_error_code(error.map_or(0, |e| e.code()))
        .with_high_watermark(high_watermark)
        .with_last_stable_offset(high_watermark)
        .with_log_start_offset(0)
        .with_records(Some(Bytes::from(records)))
}

fn ok(index: i32, high_watermark: i64, records: Vec<u8>) -> PartitionData {
    partition(index, None, high_watermark, records)
}

/// A v13+ response for `topic`.
fn response(topic: &str, partitions: Vec<PartitionData>) -> FetchResponse {
    FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
        .with_topic_id(topic_id(topic))
        .with_partitions(partitions)])
}

fn drain(f: &mut Fetcher) -> Vec<Result<ConsumerEvent, Error>> {
    let mut out = Vec::new();
    while let Some(event) = f.poll_event() {
        out.push(event);
        assert!(out.len() < 10_000, "poll_event does not end");
    }
    out
}

fn record_offsets(events: &[Result<ConsumerEvent, Error>]) -> Vec<(i32, i64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Ok(ConsumerEvent::Record(r)) => Some((r.partition, r.offset)),
            _ => None,
        })
        .collect()
}

fn only_plan(f: &mut Fetcher, now: Instant, md: &Metadata) -> FetchPlan {
    let mut plans = f.poll_fetches(now, md);
    assert_eq!(plans.len(), 1, "{plans:?}");
    plans.remove(0)
}

#[test]
fn one_fetch_per_broker_built_for_the_negotiated_version() {
    let now = Instant::now();
    let md = metadata(&[("orders", &[0, 1, 0]), ("audit", &[1])]);
    let parts = [
        tp("orders", 0),
        tp("orders", 1),
        tp("orders", 2),
        tp("audit", 0),
    ];
    let mut f = fetcher(config(), &parts);
    let plans = f.poll_fetches(now, &md);
    assert_eq!(
        plans.iter().map(FetchPlan::broker).collect::<Vec<_>>(),
        vec![0, 1]
    );
    assert!(
        f.poll_fetches(now, &md).is_empty(),
        "one fetch in flight per broker"
    );

    let broker0 = &plans[0];
    let v13 = broker0.request(13).expect("builds");
    assert_eq!(v13.topics.len(), 1);
    assert_eq!(v13.topics[0].topic_id, topic_id("orders"));
    assert_eq!(v13.topics[0].topic.0.as_str(), "");
    let indexes: Vec<i32> = v13.topics[0]
        .partitions
        .iter()
        .map(|p| p.partition)
        .collect();
    assert_eq!(indexes.len(), 2);
    assert!(indexes.contains(&0) && indexes.contains(&2));
    let p = &v13.topics[0].partitions[0];
    assert_eq!(
        (
            p.current_leader_epoch,
            p.fetch_offset,
            p.partition_max_bytes
        ),
        (5, 0, 1 << 20)
    );
    assert_eq!(p.last_fetched_epoch, -1);
    assert_eq!((v13.session_id, v13.session_epoch), (0, -1));
    assert_eq!(
        (v13.min_bytes, v13.max_wait_ms, v13.max_bytes),
        (1, 500, 50 << 20)
    );
    assert_eq!((v13.replica_id.0, v13.isolation_level), (-1, 0));

    let v12 = plans[1].request(12).expect("builds");
    let names: Vec<&str> = v12.topics.iter().map(|t| t.topic.0.as_str()).collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&"orders") && names.contains(&"audit"));
    assert!(v12.topics.iter().all(|t| t.topic_id.is_nil()));

    let mut no_ids = metadata(&[]);
    let mut response =
        MetadataResponse::default().with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(BrokerId(0))
            .with_host(StrBytes::from_static_str("localhost"))
            .with_port(9092)]);
    response.topics.push(
        MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str("old"))))
            .with_partitions(vec![
                MetadataResponsePartition::default().with_leader_id(BrokerId(0))
            ]),
    );
    no_ids.handle_response(&response, now);
    let mut f = fetcher(config(), &[tp("old", 0)]);
    let plan = only_plan(&mut f, now, &no_ids);
    assert!(plan.request(12).is_ok());
    assert!(matches!(plan.request(13), Err(Error::Protocol { .. })));
}

#[test]
fn skips_records_before_the_position_control_and_compacted_batches_and_a_partial_tail() {
    let now = Instant::now();
    let md = metadata(&[("t", &[0])]);
    let p = tp("t", 0);
    let mut f = fetcher(config(), std::slice::from_ref(&p));
    f.seek(&p, Offset::At(3)).expect("seek");
    let plan = only_plan(&mut f, now, &md);
    let mut records = batch(0, &["a", "b", "c", "d", "e"]);
    records.extend(control_batch(5));
    records.extend(empty_batch(6, 2));
    records.extend(batch(9, &["j", "k"]));
    let tail = batch(11, &["l"]);
    records.extend(&tail[..tail.len() - 3]);
    f.handle_fetch_response(plan.id(), 18, response("t", vec![ok(0, 12, records)]), now);

    let plan = only_plan(&mut f, now, &md);
    assert_eq!(
        plan.partitions().collect::<Vec<_>>(),
        vec![(&p, 11)],
        "pipelined at the partial batch"
    );
    assert_eq!(f.position(&p), Some(3), "nothing consumed yet");
    let events = drain(&mut f);
    assert_eq!(
        record_offsets(&events),
        vec![(0, 3), (0, 4), (0, 9), (0, 10)]
    );
    let Some(Ok(ConsumerEvent::Record(r))) = events.first() else {
        panic!("{events:?}");
    };
    assert_eq!(r.value.as_deref(), Some(&b"d"[..]));
    assert_eq!(r.key.as_deref(), Some(&b"k3"[..]));
    assert_eq!(r.headers, vec![Header::new("h", "d")]);
    assert_eq!(
        (r.timestamp, r.leader_epoch, &*r.topic),
        (1_003, Some(5), "t")
    );
    assert_eq!(f.position(&p), Some(11));

    // Only control and compacted batches: the position still moves past them.
    f.handle_fetch_response(
        plan.id(),
        18,
        response(
            "t",
            vec![ok(
                0,
                15,
                [batch(11, &["l"]), control_batch(12), empty_batch(13, 1)].concat(),
            )],
        ),
        now,
    );
    assert_eq!(record_offsets(&drain(&mut f)), vec![(0, 11)]);
    assert_eq!(f.position(&p), Some(15));
}

#[test]
fn prefetching_is_bounded_per_partition_and_resumes_once_drained() {
    let now = Instant::now();
    let md = metadata(&[("t", &[0, 0])]);
    let mut small = config();
    small.partition_max_bytes = 150;
    let (p0, p1) = (tp("t", 0), tp("t", 1));
    let mut f = fetcher(small, &[p0.clone(), p1.clone()]);
    let plan = only_plan(&mut f, now, &md);
    let big = batch(0, &["x".repeat(200).as_str()]);
    let little = batch(0, &["y"]);
    assert!(big.len() > 150 && little.len() < 150);
    f.handle_fetch_response(
        plan.id(),
        18,
        response("t", vec![ok(0, 10, big), ok(1, 10, little)]),
        now,
    );
    let plan = only_plan(&mut f, now, &md);
    assert_eq!(
        plan.partitions().collect::<Vec<_>>(),
        vec![(&p1, 1)],
        "p0's buffer is full"
    );
    assert!(!f.poll_space_freed());
    let first = f.poll_event();
    assert!(matches!(&first, Some(Ok(ConsumerEvent::Record(r))) if r.partition == 0));
    assert!(f.poll_space_freed(), "p0's only batch is done");
    f.handle_fetch_response(
        plan.id(),
        18,
        response("t", vec![ok(1, 1, Vec::new())]),
        now,
    );
    let plan = only_plan(&mut f, now, &md);
    let mut fetched: Vec<_> = plan.partitions().collect();
    fetched.sort();
    assert_eq!(fetched, vec![(&p0, 1), (&p1, 1)]);
}

#[test]
fn a_partition_is_fetched_again_while_its_last_batches_wait() {
    let now = Instant::now();
    let md = metadata(&[("t", &[0])]);
    let mut small = config();
    let first = batch(0, &["x".repeat(60).as_str()]);
    let second = batch(1, &["y".repeat(60).as_str()]);
    small.partition_max_bytes = (first.len() + second.len() - 1) as i32;
    let p = tp("t", 0);
    let mut f = fetcher(small, std::slice::from_ref(&p));
    let plan = only_plan(&mut f, now, &md);
    let records = [first, second].concat();
    f.handle_fetch_response(plan.id(), 18, response("t", vec![ok(0, 2, records)]), now);
    assert!(
        f.poll_fetches(now, &md).is_empty(),
        "both batches fill the buffer"
    );
    assert!(matches!(f.poll_event(), Some(Ok(ConsumerEvent::Record(r))) if r.offset == 0));
    assert!(f.poll_space_freed(), "the first batch's bytes are released");
    assert_eq!(
        only_plan(&mut f, now, &md).partitions().collect::<Vec<_>>(),
        vec![(&p, 2)],
        "fetched again before the second batch is read"
    );
    assert!(matches!(f.poll_event(), Some(Ok(ConsumerEvent::Record(r))) if r.offset == 1));
}

#[test]
fn the_broker_bound_counts_only_unpaused_partitions() {
    let now = Instant::now();
    let md = metadata(&[("t", &[0, 0])]);
    let mut small = config();
    small.max_bytes = 100;
    let (p0, p1) = (tp("t", 0), tp("t", 1));
    let mut f = fetcher(small, &[p0.clone(), p1.clone()]);
    let plan = only_plan(&mut f, now, &md);
    f.handle_fetch_response(
        plan.id(),
        18,
        response("t", vec![ok(0, 10, batch(0, &["x".repeat(120).as_str()]))]),
        now,
    );
    assert!(
        f.poll_fetches(now, &md).is_empty(),
        "broker 0's buffers are full"
    );
    f.pause(std::slice::from_ref(&p0)).expect("pause");
    let plan = only_plan(&mut f, now, &md);
    assert_eq!(plan.partitions().collect::<Vec<_>>(), vec![(&p1, 0)]);
}

#[test]
fn answers_from_before_a_seek_are_ignored() {
    let now = Instant::now();
    let md = metadata(&[("t", &[0])]);
    let p = tp("t", 0);
    let mut f = fetcher(config(), std::slice::from_ref(&p));
    let old = only_plan(&mut f, now, &md);
    f.seek(&p, Offset::At(7)).expect("seek");
    assert!(
        f.poll_fetches(now, &md).is_empty(),
        "broker 0 still has the old fetch"
    );
    f.handle_fetch_response(
        old.id(),
        18,
        response("t", vec![ok(0, 10, batch(0, &["a", "b"]))]),
        now,
    );
    assert!(drain(&mut f).is_empty());
    let plan = only_plan(&mut f, now, &md);
    assert_eq!(plan.partitions().collect::<Vec<_>>(), vec![(&p, 7)]);
    // And an out-of-range answer to the old position does not reset the new one.
    f.seek(&p, Offset::At(8)).expect("seek");
    f.handle_fetch_response(
        plan.id(),
        18,
        response(
            "t",
            vec![partition(
                0,
                Some(ErrorCode::OffsetOutOfRange),
                -1,
                Vec::new(),
            )],
        ),
        now,
    );
    assert_eq!(f.position(&p), Some(8));
    assert!(drain(&mut f).is_empty());
}

#[test]
fn paused_partitions_are_not_fetched_and_keep_their_records() {
    let now = Instant::now();
    let md = metadata(&[("t", &[0, 0])]);
    let (p0, p1) = (tp("t", 0), tp("t", 1));
    let mut f = fetcher(config(), &[p0.clone(), p1.clone()]);
    let plan = only_plan(&mut f, now, &md);
    f.handle_fetch_response(
        plan.id(),
        18,
        response(
            "t",
            vec![
                ok(0, 2, batch(0, &["a", "b"])),
                ok(1, 2, batch(0, &["c", "d"])),
            ],
        ),
        now,
    );
    f.pause(std::slice::from_ref(&p1)).expect("pause");
    assert_eq!(f.paused(), vec![p1.clone()]);
    assert_eq!(record_offsets(&drain(&mut f)), vec![(0, 0), (0, 1)]);
    let plan = only_plan(&mut f, now, &md);
    assert_eq!(plan.partitions().collect::<Vec<_>>(), vec![(&p0, 2)]);
    f.resume(std::slice::from_ref(&p1)).expect("resume");
    assert_eq!(record_offsets(&drain(&mut f)), vec![(1, 0), (1, 1)]);
    assert!(f.pause(&[tp("t", 5)]).is_err());
    assert_eq!(f.paused(), Vec::<TopicPartition>::new());
}

#[test]
fn out_of_range_resets_by_policy() {
    let now = Instant::now();
    let md = metadata(&[("t", &[0])]);
    let p = tp("t", 0);
    for (policy, lookup) in [
        (OffsetReset::Earliest, Some(EARLIEST_TIMESTAMP)),
        (OffsetReset::Latest, Some(LATEST_TIMESTAMP)),
        (OffsetReset::None, None),
    ] {
        let mut c = config();
        c.auto_offset_reset = policy;
        let mut f = fetcher(c, std::slice::from_ref(&p));
        f.seek(&p, Offset::At(3)).expect("seek");
        let plan = only_plan(&mut f, now, &md);
        f.handle_fetch_response(
            plan.id(),
            18,
            response(
                "t",
                vec![partition(
                    0,
                    Some(ErrorCode::OffsetOutOfRange),
                    -1,
                    Vec::new(),
                )],
            ),
            now,
        );
        assert!(f.poll_fetches(now, &md).is_empty());
        let lookups = f.poll_list_offsets(now, &md);
        match lookup {
            Some(timestamp) => {
                assert_eq!(lookups.len(), 1);
                let request = lookups[0].request(9);
                assert_eq!(request.replica_id.0, -1);
                assert_eq!(request.topics[0].partitions[0].timestamp, timestamp);
                assert_eq!(request.topics[0].partitions[0].current_leader_epoch, 5);
                assert_eq!(f.position(&p), None);
                let answer = ListOffsetsResponse::default().with_topics(vec![
                    ListOffsetsTopicResponse::default()
                        .with_name(TopicName(StrBytes::from_static_str("t")))
                        .with_partitions(vec![
                            ListOffsetsPartitionResponse::default().with_offset(9)
                        ]),
                ]);
                f.handle_list_offsets_response(lookups[0].id(), &answer, now);
                assert_eq!(f.position(&p), Some(9));
                assert_eq!(
                    only_plan(&mut f, now, &md).partitions().collect::<Vec<_>>(),
                    vec![(&p, 9)]
                );
            }
            None => {
                assert!(lookups.is_empty());
                let events = drain(&mut f);
                assert!(
                    matches!(
                        events.as_slice(),
                        [Err(Error::OffsetOutOfRange { offset: 3, .. })]
                    ),
                    "{events:?}"
                );
                assert!(f.poll_fetches(now, &md).is_empty(), "stopped until a seek");
                f.seek(&p, Offset::At(0)).expect("seek");
                assert_eq!(only_plan(&mut f, now, &md).partitions().count(), 1);
            }
        }
    }
}

#[test]
fn without_a_position_none_is_an_error_until_a_seek() {
    let now = Instant::now();
    let md = metadata(&[("t", &[0])]);
    let mut c = config();
    c.auto_offset_reset = OffsetReset::None;
    let p = tp("t", 0);
    let mut f = Fetcher::new(c.clone(), 1);
    f.assign(std::slice::from_ref(&p));
    assert!(f.poll_list_offsets(now, &md).is_empty());
    assert!(matches!(
        drain(&mut f).as_slice(),
        [Err(Error::OffsetOutOfRange { offset: -1, .. })]
    ));
    // A seek right after assign pre-empts the error.
    let mut f = Fetcher::new(c, 1);
    f.assign(std::slice::from_ref(&p));
    f.seek(&p, Offset::Beginning).expect("seek");
    assert!(drain(&mut f).is_empty());
    assert_eq!(f.poll_list_offsets(now, &md).len(), 1);
}

#[test]
fn leadership_errors_refresh_metadata_and_back_off() {
    let now = Instant::now();
    let md = metadata(&[("t", &[0])]);
    let p = tp("t", 0);
    let mut f = fetcher(config(), std::slice::from_ref(&p));
    for (round, code) in [
        ErrorCode::NotLeaderOrFollower,
        ErrorCode::FencedLeaderEpoch,
        ErrorCode::UnknownLeaderEpoch,
    ]
    .into_iter()
    .enumerate()
    {
        let plan = only_plan(&mut f, now, &md);
        f.handle_fetch_response(
            plan.id(),
            18,
            response("t", vec![partition(0, Some(code), -1, Vec::new())]),
            now,
        );
        assert_eq!(
            f.wants_metadata_refresh(),
            code != ErrorCode::UnknownLeaderEpoch,
            "{code:?}"
        );
        assert!(f.poll_fetches(now, &md).is_empty(), "backing off");
        let at = f.poll_timeout(now, &md).expect("a backoff deadline");
        assert!(at > now && at <= now + Duration::from_millis(1200));
        let plan = only_plan(&mut f, at, &md);
        assert_eq!(
            plan.partitions().collect::<Vec<_>>(),
            vec![(&p, 0)],
            "the same offset again"
        );
        f.handle_fetch_response(plan.id(), 18, response("t", vec![ok(0, 0, Vec::new())]), at);
        // The refresh asked for goes out (the cache is fresh, but a broker said otherwise).
        let mut fresh = metadata(&[("t", &[0])]);
        let refresh_at = now + Duration::from_secs(10 * (round as u64 + 1));
        if f.wants_metadata_refresh() {
            assert!(f.poll_metadata_refresh(refresh_at, &mut fresh));
            f.handle_metadata_response(refresh_at, &metadata(&[("t", &[0])]));
        }
        assert!(!f.wants_metadata_refresh());
    }
    // A failed request backs off the broker.
    let plan = only_plan(&mut f, now, &md);
    f.handle_fetch_failure(
        plan.id(),
        &Error::Disconnected {
            address: "b0".into(),
        },
        now,
    );
    assert!(f.wants_metadata_refresh());
    assert!(f.poll_fetches(now, &md).is_empty());
    let at = f.poll_timeout(now, &md).expect("broker backoff");
    assert_eq!(
        only_plan(&mut f, at, &md).partitions().collect::<Vec<_>>(),
        vec![(&p, 0)]
    );
}

#[test]
fn unknown_leaders_ask_for_metadata() {
    let now = Instant::now();
    let md = metadata(&[("t", &[0])]);
    let mut f = fetcher(config(), &[tp("missing", 0), tp("t", 3)]);
    assert!(f.poll_fetches(now, &md).is_empty());
    assert!(f.wants_metadata_refresh());
    let mut md = md;
    assert!(
        f.poll_metadata_refresh(now, &mut md),
        "the refresh goes out at once"
    );
    assert!(!f.wants_metadata_refresh());
    assert!(!f.poll_metadata_refresh(now, &mut md), "one at a time");
    assert_eq!(f.topics(), vec!["missing".to_string(), "t".to_string()]);
}

#[test]
fn partition_eof_is_queued_once_per_end_offset_after_the_records() {
    let now = Instant::now();
    let md = metadata(&[("t", &[0])]);
    let mut c = config();
    c.partition_eof = true;
    let p = tp("t", 0);
    let mut f = fetcher(c, std::slice::from_ref(&p));
    let plan = only_plan(&mut f, now, &md);
    f.handle_fetch_response(
        plan.id(),
        18,
        response("t", vec![ok(0, 2, batch(0, &["a", "b"]))]),
        now,
    );
    for _ in 0..2 {
        let plan = only_plan(&mut f, now, &md);
        f.handle_fetch_response(
            plan.id(),
            18,
            response("t", vec![ok(0, 2, Vec::new())]),
            now,
        );
    }
    let events = drain(&mut f);
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(matches!(
        &events[2],
        Ok(ConsumerEvent::PartitionEof {
            partition,
            offset: 2,
        }) if *partition == tp("t", 0)
    ));
    let plan = only_plan(&mut f, now, &md);
    f.handle_fetch_response(
        plan.id(),
        18,
        response("t", vec![ok(0, 3, batch(2, &["c"]))]),
        now,
    );
    let plan = only_plan(&mut f, now, &md);
    f.handle_fetch_response(
        plan.id(),
        18,
        response("t", vec![ok(0, 3, Vec::new())]),
        now,
    );
    let events = drain(&mut f);
    assert_eq!(record_offsets(&events), vec![(0, 2)]);
    assert!(matches!(
        &events[1],
        Ok(ConsumerEvent::PartitionEof { offset: 3, .. })
    ));
}

#[test]
fn read_committed_is_sent_where_the_version_has_it() {
    let now = Instant::now();
    let md = metadata(&[("t", &[0])]);
    let p = tp("t", 0);
    let mut c = config();
    c.isolation_level = IsolationLevel::ReadCommitted;
    let mut f = Fetcher::new(c, 1);
    f.assign(std::slice::from_ref(&p));
    let lookups = f.poll_list_offsets(now, &md);
    assert_eq!(lookups[0].request(1).isolation_level, 0);
    assert_eq!(lookups[0].request(2).isolation_level, 1);
    assert_eq!(lookups[0].request(10).timeout_ms, 30_000);
    f.seek(&p, Offset::At(0)).expect("seek");
    let plan = only_plan(&mut f, now, &md);
    assert_eq!(plan.request(4).expect("builds").isolation_level, 1);
}

#[test]
fn a_timestamp_without_a_record_looks_up_the_end() {
    let now = Instant::now();
    let md = metadata(&[("t", &[0])]);
    let p = tp("t", 0);
    let mut f = fetcher(config(), std::slice::from_ref(&p));
    f.seek(&p, Offset::Timestamp(5_000)).expect("seek");
    let lookups = f.poll_list_offsets(now, &md);
    assert_eq!(
        lookups[0].request(9).topics[0].partitions[0].timestamp,
        5_000
    );
    let none =
        ListOffsetsResponse::default().with_topics(vec![ListOffsetsTopicResponse::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(vec![ListOffsetsPartitionResponse::default()
                .with_offset(-1)
                .with_timestamp(-1)])]);
    f.handle_list_offsets_response(lookups[0].id(), &none, now);
    let lookups = f.poll_list_offsets(now, &md);
    assert_eq!(
        lookups[0].request(9).topics[0].partitions[0].timestamp,
        LATEST_TIMESTAMP
    );
}

#[test]
fn a_corrupt_batch_is_an_error_after_the_good_records_and_stops_the_partition() {
    let now = Instant::now();
    let md = metadata(&[("t", &[0])]);
    let p = tp("t", 0);
    let mut f = fetcher(config(), std::slice::from_ref(&p));
    let plan = only_plan(&mut f, now, &md);
    let mut bad = batch(2, &["c"]);
    let last = bad.len() - 1;
    bad[last] ^= 0x55;
    let records = [batch(0, &["a", "b"]), bad, batch(3, &["d"])].concat();
    f.handle_fetch_response(plan.id(), 18, response("t", vec![ok(0, 4, records)]), now);
    let events = drain(&mut f);
    assert_eq!(record_offsets(&events), vec![(0, 0), (0, 1)]);
    assert!(
        matches!(
            events.last(),
            Some(Err(Error::CorruptRecord { partition, .. })) if partition.partition == 0
        ),
        "{events:?}"
    );
    assert_eq!(events.len(), 3);
    assert_eq!(f.position(&p), Some(2));
    assert!(f.poll_fetches(now, &md).is_empty());
    f.seek(&p, Offset::At(3)).expect("seek");
    assert_eq!(
        only_plan(&mut f, now, &md).partitions().collect::<Vec<_>>(),
        vec![(&p, 3)]
    );
}

#[test]
fn batches_decoded_ahead_replace_their_raw_form_and_a_corrupt_one_stays_in_place() {
    let now = Instant::now();
    let md = metadata(&[("t", &[0])]);
    let p = tp("t", 0);
    let mut f = fetcher(config(), std::slice::from_ref(&p));
    let plan = only_plan(&mut f, now, &md);
    let mut bad = batch(2, &["c"]);
    let last = bad.len() - 1;
    bad[last] ^= 0x55;
    let records = [batch(0, &["a", "b"]), bad, batch(3, &["d"])].concat();
    f.handle_fetch_response(plan.id(), 18, response("t", vec![ok(0, 4, records)]), now);
    let undecoded = f.take_undecoded();
    assert_eq!(undecoded.len(), 3);
    assert!(f.take_undecoded().is_empty(), "taken once");
    let decoded = decode_ahead(undecoded, &f.decode_limits());
    assert_eq!(decoded.len(), 2, "the corrupt batch is left out");
    // The user already took the first record (decoding batch 0 itself): handing the
    // decoded batches back must not repeat it.
    let first = f.poll_event();
    assert!(matches!(&first, Some(Ok(ConsumerEvent::Record(r))) if r.offset == 0));
    f.handle_decoded(decoded);
    let events = drain(&mut f);
    assert_eq!(record_offsets(&events), vec![(0, 1)]);
    assert!(matches!(
        events.last(),
        Some(Err(Error::CorruptRecord { partition, .. })) if partition.partition == 0
    ));
    // Batches decoded for a buffer a seek emptied are dropped.
    f.seek(&p, Offset::At(3)).expect("seek");
    let plan = only_plan(&mut f, now, &md);
    f.handle_fetch_response(
        plan.id(),
        18,
        response("t", vec![ok(0, 4, batch(3, &["d"]))]),
        now,
    );
    let decoded = decode_ahead(f.take_undecoded(), &f.decode_limits());
    f.seek(&p, Offset::At(3)).expect("seek again");
    f.handle_decoded(decoded);
    assert!(drain(&mut f).is_empty());
}

#[test]
fn a_batch_the_user_reached_first_is_no_longer_undecoded() {
    let now = Instant::now();
    let md = metadata(&[("t", &[0])]);
    let p = tp("t", 0);
    let mut f = fetcher(config(), std::slice::from_ref(&p));
    let plan = only_plan(&mut f, now, &md);
    let records = [batch(0, &["a", "b"]), batch(2, &["c"])].concat();
    f.handle_fetch_response(plan.id(), 18, response("t", vec![ok(0, 3, records)]), now);
    let undecoded = f.take_undecoded();
    assert_eq!(undecoded.len(), 2);
    assert!(undecoded
        .iter()
        .all(|(tp, bytes)| f.is_undecoded(tp, bytes)));
    // `recv` decodes the first batch itself: the driver need not decode it again.
    assert!(matches!(f.poll_event(), Some(Ok(ConsumerEvent::Record(r))) if r.offset == 0));
    assert!(!f.is_undecoded(&undecoded[0].0, &undecoded[0].1));
    assert!(f.is_undecoded(&undecoded[1].0, &undecoded[1].1));
    // Handed back one by one, they are read once each.
    let second = decode_ahead(vec![undecoded[1].clone()], &f.decode_limits());
    f.handle_decoded(second);
    assert!(!f.is_undecoded(&undecoded[1].0, &undecoded[1].1));
    assert_eq!(record_offsets(&drain(&mut f)), vec![(0, 1), (0, 2)]);
}

/// `batch` with its base offset rewritten (outside the CRC, as a broker may).
fn at_base_offset(mut batch: Vec<u8>, base_offset: i64) -> Vec<u8> {
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
    batch
}

/// The one corrupt-data error among `events`: (offset, broker).
fn corrupt_at(events: &[Result<ConsumerEvent, Error>]) -> (Option<i64>, Option<i32>) {
    let found: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Err(Error::CorruptRecord { offset, broker, .. }) => Some((*offset, *broker)),
            _ => None,
        })
        .collect();
    assert_eq!(found.len(), 1, "{events:?}");
    found[0]
}

#[test]
fn a_batch_at_the_end_of_int64_is_corrupt_data_not_a_panic_or_a_loop() {
    let now = Instant::now();
    let md = metadata(&[("t", &[0])]);
    let p = tp("t", 0);
    let mut f = fetcher(config(), std::slice::from_ref(&p));
    let plan = only_plan(&mut f, now, &md);
    let records = [batch(0, &["a"]), at_base_offset(batch(0, &["b"]), i64::MAX)].concat();
    f.handle_fetch_response(plan.id(), 18, response("t", vec![ok(0, 5, records)]), now);
    let events = drain(&mut f);
    assert_eq!(record_offsets(&events), vec![(0, 0)]);
    assert_eq!(corrupt_at(&events), (Some(i64::MAX), Some(0)));
    assert_eq!(f.position(&p), Some(1), "stays before the bad batch");
    assert!(f.poll_fetches(now, &md).is_empty(), "stopped until a seek");
    // The last offset a log can hold is fine: the position ends at i64::MAX.
    f.seek(&p, Offset::At(i64::MAX - 1)).expect("seek");
    let plan = only_plan(&mut f, now, &md);
    let last = at_base_offset(batch(0, &["z"]), i64::MAX - 1);
    f.handle_fetch_response(
        plan.id(),
        18,
        response("t", vec![ok(0, i64::MAX, last)]),
        now,
    );
    let events = drain(&mut f);
    assert_eq!(record_offsets(&events), vec![(0, i64::MAX - 1)]);
    assert_eq!(f.position(&p), Some(i64::MAX));
    assert_eq!(
        only_plan(&mut f, now, &md).partitions().collect::<Vec<_>>(),
        vec![(&p, i64::MAX)]
    );
}

#[test]
fn a_batch_at_a_negative_offset_is_corrupt_data() {
    let now = Instant::now();
    let md = metadata(&[("t", &[0])]);
    let p = tp("t", 0);
    let mut f = fetcher(config(), std::slice::from_ref(&p));
    f.seek(&p, Offset::At(7)).expect("seek");
    let plan = only_plan(&mut f, now, &md);
    let records = at_base_offset(batch(0, &["a", "b"]), i64::MIN);
    f.handle_fetch_response(plan.id(), 18, response("t", vec![ok(0, 9, records)]), now);
    let events = drain(&mut f);
    assert_eq!(corrupt_at(&events), (Some(i64::MIN), Some(0)));
    assert!(events[0]
        .as_ref()
        .err()
        .is_some_and(|e| e.to_string().contains("from broker 0")));
    assert_eq!(f.position(&p), Some(7));
    assert!(f.poll_fetches(now, &md).is_empty());
    assert!(
        f.poll_timeout(now, &md)
            .is_none_or(|at| at >= now + Duration::from_secs(299)),
        "nothing to retry before the metadata is due for a refresh"
    );
}

/// Fetches `p` (led by broker 0) over and over, answering each with `answer`, for
/// `span` of virtual time; returns how many fetches went out.
fn fetches_within(
    f: &mut Fetcher,
    md: &Metadata,
    start: Instant,
    span: Duration,
    answer: impl Fn() -> FetchResponse,
) -> usize {
    let mut now = start;
    let mut sent = 0;
    while now < start + span {
        for plan in f.poll_fetches(now, md) {
            sent += 1;
            assert!(sent < 10_000, "a tight loop");
            f.handle_fetch_response(plan.id(), 18, answer(), now);
        }
        let _ = drain(f);
        match f.poll_timeout(now, md) {
            Some(at) => now = at,
            None => now += Duration::from_millis(1),
        }
    }
    sent
}

#[test]
fn answers_that_claim_data_but_bring_none_back_the_partition_off() {
    let start = Instant::now();
    let md = metadata(&[("t", &[0])]);
    let p = tp("t", 0);
    // A high watermark far ahead, and nothing.
    let mut f = fetcher(config(), std::slice::from_ref(&p));
    let claims = || response("t", vec![ok(0, i64::MAX, Vec::new())]);
    let sent = fetches_within(&mut f, &md, start, Duration::from_secs(10), claims);
    assert!((5..=25).contains(&sent), "{sent} fetches in 10 s");
    // Batches wholly below the fetch offset, again and again.
    let mut f = fetcher(config(), std::slice::from_ref(&p));
    f.seek(&p, Offset::At(50)).expect("seek");
    let stale = || response("t", vec![ok(0, 60, batch(3, &["old", "older"]))]);
    let sent = fetches_within(&mut f, &md, start, Duration::from_secs(10), stale);
    assert!((5..=25).contains(&sent), "{sent} fetches in 10 s");
    assert_eq!(f.position(&p), Some(50));
    // An answer at the end of the log is the long poll's business: no backoff.
    let mut f = fetcher(config(), std::slice::from_ref(&p));
    let plan = only_plan(&mut f, start, &md);
    f.handle_fetch_response(
        plan.id(),
        18,
        response("t", vec![ok(0, 0, Vec::new())]),
        start,
    );
    assert_eq!(only_plan(&mut f, start, &md).partitions().count(), 1);
}

#[test]
fn a_partition_left_out_of_an_answer_that_brought_data_is_fetched_again_at_once() {
    let now = Instant::now();
    let md = metadata(&[("t", &[0, 0])]);
    let (p0, p1) = (tp("t", 0), tp("t", 1));
    let mut f = fetcher(config(), &[p0.clone(), p1.clone()]);
    let plan = only_plan(&mut f, now, &md);
    // p1 has data but `fetch.max.bytes` was used up by p0.
    f.handle_fetch_response(
        plan.id(),
        18,
        response("t", vec![ok(0, 1, batch(0, &["a"])), ok(1, 9, Vec::new())]),
        now,
    );
    let plan = only_plan(&mut f, now, &md);
    let mut fetched: Vec<_> = plan.partitions().collect();
    fetched.sort();
    assert_eq!(fetched, vec![(&p0, 1), (&p1, 0)]);
}

#[test]
fn a_looked_up_offset_below_minus_one_is_corrupt_data() {
    let now = Instant::now();
    let md = metadata(&[("t", &[0])]);
    let p = tp("t", 0);
    let mut f = Fetcher::new(config(), 1);
    f.assign(std::slice::from_ref(&p));
    f.seek(&p, Offset::Beginning).expect("seek");
    let lookups = f.poll_list_offsets(now, &md);
    let answer =
        ListOffsetsResponse::default().with_topics(vec![ListOffsetsTopicResponse::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(vec![
                ListOffsetsPartitionResponse::default().with_offset(i64::MIN)
            ])]);
    f.handle_list_offsets_response(lookups[0].id(), &answer, now);
    assert_eq!(corrupt_at(&drain(&mut f)), (Some(i64::MIN), Some(0)));
    assert!(
        f.poll_list_offsets(now, &md).is_empty(),
        "stopped until a seek"
    );
    assert!(f.poll_fetches(now, &md).is_empty());
    f.seek(&p, Offset::Beginning).expect("seek");
    assert_eq!(f.poll_list_offsets(now, &md).len(), 1);
}

/// The outage errors among `events`.
fn outages(events: &[Result<ConsumerEvent, Error>]) -> Vec<&Error> {
    events
        .iter()
        .filter_map(|e| match e {
            Err(e @ (Error::BrokerUnreachable { .. } | Error::AllBrokersDown { .. })) => Some(e),
            _ => None,
        })
        .collect()
}

#[test]
fn failed_fetches_back_off_and_are_reported_once_per_episode() {
    let start = Instant::now();
    let md = metadata(&[("t", &[0])]);
    let p = tp("t", 0);
    let mut f = fetcher(config(), std::slice::from_ref(&p));
    let lost = Error::Disconnected {
        address: "localhost:9092".into(),
    };
    let mut now = start;
    let mut sent = Vec::new();
    let mut reported = Vec::new();
    while now < start + Duration::from_secs(10) {
        for plan in f.poll_fetches(now, &md) {
            sent.push(now);
            f.handle_fetch_failure(plan.id(), &lost, now);
        }
        for event in drain(&mut f) {
            reported.push((now, event));
        }
        now = f.poll_timeout(now, &md).expect("a backoff deadline");
    }
    // reconnect.backoff.ms (50 ms) doubling to reconnect.backoff.max.ms (1 s), jittered.
    let first_wait = sent[1] - sent[0];
    assert!(
        first_wait >= Duration::from_millis(40) && first_wait <= Duration::from_millis(60),
        "{first_wait:?}"
    );
    assert!((10..=20).contains(&sent.len()), "{} fetches", sent.len());
    assert_eq!(reported.len(), 1, "{reported:?}");
    let (at, event) = &reported[0];
    assert!(*at >= start + Duration::from_secs(1) && *at <= start + Duration::from_secs(3));
    match event {
        Err(
            error @ Error::BrokerUnreachable {
                broker: 0,
                failing_for,
                cause,
            },
        ) => {
            assert!(*failing_for >= Duration::from_secs(1));
            assert!(matches!(**cause, Error::Disconnected { .. }));
            assert!(error.is_retriable() && !error.is_fatal());
        }
        other => panic!("{other:?}"),
    }
    // An answer ends the episode; one more failure is not news, a long run again is.
    let plan = only_plan(&mut f, now, &md);
    f.handle_fetch_response(
        plan.id(),
        18,
        response("t", vec![ok(0, 0, Vec::new())]),
        now,
    );
    let plan = only_plan(&mut f, now, &md);
    f.handle_fetch_failure(plan.id(), &lost, now);
    assert!(drain(&mut f).is_empty());
    let again = now + Duration::from_secs(5);
    while now < again {
        now = f.poll_timeout(now, &md).expect("a backoff deadline");
        for plan in f.poll_fetches(now, &md) {
            f.handle_fetch_failure(plan.id(), &lost, now);
        }
    }
    assert_eq!(outages(&drain(&mut f)).len(), 1, "a second episode");
}

#[test]
fn a_request_that_timed_out_is_an_outage_at_once_and_a_pause_starts_afresh() {
    let start = Instant::now();
    let md = metadata(&[("t", &[0])]);
    let p = tp("t", 0);
    let mut f = fetcher(config(), std::slice::from_ref(&p));
    // Never answered: it fails at request.timeout.ms, 30 s after it was sent.
    let plan = only_plan(&mut f, start, &md);
    let timeout = Error::RequestTimeout(Duration::from_secs(30));
    let failed_at = start + Duration::from_secs(30);
    f.handle_fetch_failure(plan.id(), &timeout, failed_at);
    let events = drain(&mut f);
    assert!(
        matches!(outages(&events)[..], [Error::BrokerUnreachable { broker: 0, failing_for, .. }] if *failing_for == Duration::from_secs(30)),
        "{events:?}"
    );
    // Nothing asked of the broker for an hour: its next failure starts a new episode.
    f.pause(std::slice::from_ref(&p)).expect("pause");
    let later = failed_at + Duration::from_secs(3600);
    f.resume(std::slice::from_ref(&p)).expect("resume");
    let plan = only_plan(&mut f, later, &md);
    f.handle_fetch_failure(
        plan.id(),
        &Error::Disconnected {
            address: "b0".into(),
        },
        later,
    );
    assert!(drain(&mut f).is_empty());
}

#[test]
fn failed_lookups_back_off_the_broker_and_count_towards_an_outage() {
    let start = Instant::now();
    let md = metadata(&[("t", &[0])]);
    let p = tp("t", 0);
    let mut f = Fetcher::new(config(), 1);
    f.assign(std::slice::from_ref(&p));
    let lost = Error::Disconnected {
        address: "b0".into(),
    };
    let mut now = start;
    let mut sent = 0;
    while now < start + Duration::from_secs(5) {
        for plan in f.poll_list_offsets(now, &md) {
            sent += 1;
            f.handle_list_offsets_failure(plan.id(), &lost, now);
        }
        now = f.poll_timeout(now, &md).expect("a backoff deadline");
    }
    assert!((4..=15).contains(&sent), "{sent} lookups");
    let events = drain(&mut f);
    assert!(
        matches!(
            outages(&events)[..],
            [Error::BrokerUnreachable { broker: 0, .. }]
        ),
        "{events:?}"
    );
}

#[test]
fn metadata_failures_are_an_outage_only_while_a_leader_is_missing() {
    let start = Instant::now();
    let md = metadata(&[("t", &[0])]);
    let lost = Error::Disconnected {
        address: "bootstrap:9092".into(),
    };
    let later = start + Duration::from_secs(2);
    // Every leader known: fetch failures tell which broker fails.
    let mut f = fetcher(config(), &[tp("t", 0)]);
    f.handle_metadata_failure(&lost, start, later, &md);
    assert!(drain(&mut f).is_empty());
    // A partition without a leader cannot be fetched until a refresh succeeds.
    let mut f = fetcher(config(), &[tp("t", 0), tp("unknown", 0)]);
    f.handle_metadata_failure(&lost, start, start, &md);
    assert!(drain(&mut f).is_empty(), "not for long yet");
    f.handle_metadata_failure(&lost, later, later, &md);
    let events = drain(&mut f);
    match outages(&events)[..] {
        [Error::AllBrokersDown { failing_for, cause }] => {
            assert_eq!(*failing_for, Duration::from_secs(2));
            assert_eq!(cause.to_string(), "connection to bootstrap:9092 lost");
        }
        _ => panic!("{events:?}"),
    }
    f.handle_metadata_failure(&lost, later, later + Duration::from_secs(1), &md);
    assert!(drain(&mut f).is_empty(), "once per episode");
    // An answer from any broker ends it.
    f.handle_metadata_response(later + Duration::from_secs(2), &md);
    let again = later + Duration::from_secs(3);
    f.handle_metadata_failure(&lost, again, again, &md);
    assert!(drain(&mut f).is_empty());
}

#[test]
fn a_fatal_cause_is_an_outage_at_its_first_failure() {
    let start = Instant::now();
    let md = metadata(&[("t", &[0])]);
    let refused = Error::Authentication {
        broker: "bootstrap:9092".into(),
        reason: "invalid credentials".into(),
    };
    let mut f = fetcher(config(), &[tp("t", 0), tp("unknown", 0)]);
    f.handle_metadata_failure(&refused, start, start, &md);
    let events = drain(&mut f);
    match outages(&events)[..] {
        [error @ Error::AllBrokersDown { cause, .. }] => {
            assert!(error.is_fatal(), "{error}");
            assert!(matches!(**cause, Error::Authentication { .. }));
        }
        _ => panic!("told at once: {events:?}"),
    }
    f.handle_metadata_failure(&refused, start, start + Duration::from_millis(100), &md);
    assert!(drain(&mut f).is_empty(), "once per episode");
}

#[test]
fn reassigning_keeps_the_state_of_partitions_that_stay() {
    let p0 = tp("t", 0);
    let mut f = fetcher(config(), std::slice::from_ref(&p0));
    f.seek(&p0, Offset::At(42)).expect("seek");
    f.assign(&[tp("t", 1), p0.clone(), p0.clone()]);
    assert_eq!(f.assignment(), vec![tp("t", 1), p0.clone()]);
    assert_eq!(f.position(&p0), Some(42));
    assert_eq!(f.position(&tp("t", 1)), None);
    f.assign(&[]);
    assert!(f.assignment().is_empty());
    assert!(matches!(
        f.seek(&p0, Offset::At(1)),
        Err(Error::UnknownPartition { .. })
    ));
    assert!(matches!(
        f.seek(&p0, Offset::At(-5)),
        Err(Error::InvalidArgument(_))
    ));
}

/// A transactional batch of producer `producer_id` at `base_offset`, one record per value.
fn txn_batch(base_offset: i64, producer_id: i64, values: &[&str]) -> Vec<u8> {
    let mut builder = RecordBatchBuilder::new()
        .base_offset(base_offset)
        .producer(producer_id, 0, 0)
        .transactional(true);
    for (i, v) in values.iter().enumerate() {
        builder
            .append(
                1_000 + i as i64,
                None,
                Some(Bytes::from(v.to_string())),
                vec![],
            )
            .expect("appends");
    }
    builder.build().encode().expect("encodes").to_vec()
}

/// The marker that ends producer `producer_id`'s transaction, at `offset`.
fn marker(offset: i64, producer_id: i64, kind: ControlRecordKind) -> Vec<u8> {
    let mut batch = RecordBatch::transaction_marker(ControlRecord::new(kind, 0), producer_id, 0, 1);
    batch.base_offset = offset;
    batch.encode().expect("encodes").to_vec()
}

fn aborted_txn(producer_id: i64, first_offset: i64) -> AbortedTransaction {
    AbortedTransaction::default()
        .with_producer_id(kafka_protocol::messages::ProducerId(producer_id))
        .with_first_offset(first_offset)
}

fn read_committed() -> FetcherConfig {
    FetcherConfig::from_config(
        &Config::new("localhost:9092").isolation_level(IsolationLevel::ReadCommitted),
    )
}

fn values(events: &[Result<ConsumerEvent, Error>]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Ok(ConsumerEvent::Record(r)) => r
                .value
                .as_deref()
                .map(|v| String::from_utf8_lossy(v).into_owned()),
            _ => None,
        })
        .collect()
}

use kafka_protocol::messages::fetch_response::AbortedTransaction;

/// Producers 7 (aborted) and 8 (committed) interleaved with a plain batch:
/// 0-1 p7 "a1 a2", 2 p8 "c1", 3 plain "n", 4 p7 "a3", 5 ABORT p7, 6 p8 "c2", 7 COMMIT p8.
fn interleaved() -> (Vec<u8>, Vec<AbortedTransaction>) {
    let records = [
        txn_batch(0, 7, &["a1", "a2"]),
        txn_batch(2, 8, &["c1"]),
        batch(3, &["n"]),
        txn_batch(4, 7, &["a3"]),
        marker(5, 7, ControlRecordKind::Abort),
        txn_batch(6, 8, &["c2"]),
        marker(7, 8, ControlRecordKind::Commit),
    ]
    .concat();
    (records, vec![aborted_txn(7, 0)])
}

#[test]
fn read_committed_drops_aborted_transactions_and_never_hands_out_markers() {
    let now = Instant::now();
    let md = metadata(&[("t", &[0])]);
    let p = tp("t", 0);
    let (records, aborted) = interleaved();
    let mut f = fetcher(read_committed(), std::slice::from_ref(&p));
    let plan = only_plan(&mut f, now, &md);
    let mut data = ok(0, 8, records.clone());
    data.aborted_transactions = Some(aborted.clone());
    f.handle_fetch_response(plan.id(), 18, response("t", vec![data]), now);
    let events = drain(&mut f);
    assert_eq!(values(&events), vec!["c1", "n", "c2"]);
    assert_eq!(record_offsets(&events), vec![(0, 2), (0, 3), (0, 6)]);
    assert_eq!(f.position(&p), Some(8), "past the trailing COMMIT marker");

    // read_uncommitted hands out everything but the markers, whatever the answer lists.
    let mut f = fetcher(config(), std::slice::from_ref(&p));
    let plan = only_plan(&mut f, now, &md);
    let mut data = ok(0, 8, records);
    data.aborted_transactions = Some(aborted);
    f.handle_fetch_response(plan.id(), 18, response("t", vec![data]), now);
    let events = drain(&mut f);
    assert_eq!(values(&events), vec!["a1", "a2", "c1", "n", "a3", "c2"]);
    assert_eq!(f.position(&p), Some(8));
}

#[test]
fn the_position_moves_past_markers_and_aborted_batches_without_a_record() {
    let now = Instant::now();
    let md = metadata(&[("t", &[0])]);
    let p = tp("t", 0);
    let mut f = fetcher(read_committed(), std::slice::from_ref(&p));
    let plan = only_plan(&mut f, now, &md);
    // Only an aborted transaction and its marker: nothing for the user, yet the position
    // reaches the LSO at once, without a recv.
    let records = [
        txn_batch(0, 7, &["x", "y"]),
        marker(2, 7, ControlRecordKind::Abort),
    ]
    .concat();
    let mut data = ok(0, 3, records);
    data.aborted_transactions = Some(vec![aborted_txn(7, 0)]);
    f.handle_fetch_response(plan.id(), 18, response("t", vec![data]), now);
    assert_eq!(f.position(&p), Some(3));
    assert!(drain(&mut f).is_empty());
    let plan = only_plan(&mut f, now, &md);
    assert_eq!(plan.partitions().collect::<Vec<_>>(), vec![(&p, 3)]);

    // Records, then a marker: the last recv leaves the position at the LSO.
    let records = [
        txn_batch(3, 8, &["c1", "c2"]),
        marker(5, 8, ControlRecordKind::Commit),
    ]
    .concat();
    f.handle_fetch_response(plan.id(), 18, response("t", vec![ok(0, 6, records)]), now);
    assert_eq!(f.position(&p), Some(3));
    assert!(matches!(f.poll_event(), Some(Ok(ConsumerEvent::Record(r))) if r.offset == 3));
    assert_eq!(f.position(&p), Some(4));
    assert!(matches!(f.poll_event(), Some(Ok(ConsumerEvent::Record(r))) if r.offset == 4));
    assert_eq!(
        f.position(&p),
        Some(6),
        "the marker behind the last record is stepped over"
    );
    assert!(f.poll_event().is_none());
}

#[test]
fn a_corrupt_marker_is_reported_at_its_place() {
    let now = Instant::now();
    let md = metadata(&[("t", &[0])]);
    let p = tp("t", 0);
    let mut f = fetcher(read_committed(), std::slice::from_ref(&p));
    let plan = only_plan(&mut f, now, &md);
    let mut bad = marker(1, 7, ControlRecordKind::Abort);
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    let records = [txn_batch(0, 7, &["a"]), bad].concat();
    let mut data = ok(0, 2, records);
    data.aborted_transactions = Some(vec![aborted_txn(7, 0)]);
    f.handle_fetch_response(plan.id(), 18, response("t", vec![data]), now);
    let events = drain(&mut f);
    assert!(values(&events).is_empty(), "{events:?}");
    assert_eq!(corrupt_at(&events), (Some(1), Some(0)));
}

mod read_committed_model {
    //! The aborted-transaction filter against a model: random interleavings of
    //! transactional batches of several producers, commits, aborts and non-transactional
    //! batches, fetched in random slices with the aborted list a broker would send for each
    //! slice; what comes out must be the committed and non-transactional records, in
    //! offset order.

    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// One step of the log's writers.
    #[derive(Debug, Clone)]
    enum Step {
        /// Producer `p` writes a batch of `n` records in its open transaction (opening one).
        Write { p: u8, n: u8 },
        /// A non-transactional batch of `n` records.
        Plain { n: u8 },
        /// Producer `p` ends its open transaction (if any).
        End { p: u8, commit: bool },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (0u8..4, 1u8..4).prop_map(|(p, n)| Step::Write { p, n }),
            1 => (1u8..3).prop_map(|n| Step::Plain { n }),
            2 => (0u8..4, any::<bool>()).prop_map(|(p, commit)| Step::End { p, commit }),
        ]
    }

    /// A log built from the steps (every transaction ended at the end, by abort), the
    /// aborted transactions as (producer, first offset, marker offset), and the values the
    /// model says a read_committed reader sees.
    struct Log {
        batches: Vec<(i64, Vec<u8>)>,
        aborted: Vec<(i64, i64, i64)>,
        committed: Vec<String>,
        end: i64,
    }

    #[derive(Default)]
    struct Builder {
        offset: i64,
        batches: Vec<(i64, Vec<u8>)>,
        aborted: Vec<(i64, i64, i64)>,
        /// Per producer: the open transaction's first offset and records.
        open: BTreeMap<u8, (i64, Vec<(i64, String)>)>,
        visible: Vec<(i64, String)>,
    }

    impl Builder {
        fn end(&mut self, p: u8, commit: bool) {
            let Some((first, values)) = self.open.remove(&p) else {
                return;
            };
            let pid = 1000 + i64::from(p);
            let kind = if commit {
                ControlRecordKind::Commit
            } else {
                ControlRecordKind::Abort
            };
            self.batches
                .push((self.offset, marker(self.offset, pid, kind)));
            if commit {
                self.visible.extend(values);
            } else {
                self.aborted.push((pid, first, self.offset));
            }
            self.offset += 1;
        }

        fn write(&mut self, producer: Option<u8>, n: u8) -> Vec<(i64, String)> {
            let offset = self.offset;
            let name = producer.map_or("plain".to_string(), |p| format!("p{p}"));
            let values: Vec<String> = (0..n)
                .map(|i| format!("{name}@{}", offset + i64::from(i)))
                .collect();
            let refs: Vec<&str> = values.iter().map(String::as_str).collect();
            let bytes = match producer {
                Some(p) => txn_batch(offset, 1000 + i64::from(p), &refs),
                None => batch(offset, &refs),
            };
            self.batches.push((offset, bytes));
            self.offset += i64::from(n);
            values
                .into_iter()
                .enumerate()
                .map(|(i, v)| (offset + i as i64, v))
                .collect()
        }
    }

    fn build(steps: &[Step]) -> Log {
        let mut log = Builder::default();
        for step in steps {
            match step {
                Step::Write { p, n } => {
                    let first = log.offset;
                    let records = log.write(Some(*p), *n);
                    log.open
                        .entry(*p)
                        .or_insert((first, Vec::new()))
                        .1
                        .extend(records);
                }
                Step::Plain { n } => {
                    let records = log.write(None, *n);
                    log.visible.extend(records);
                }
                Step::End { p, commit } => log.end(*p, *commit),
            }
        }
        let producers: Vec<u8> = log.open.keys().copied().collect();
        for p in producers {
            log.end(p, false);
        }
        log.visible.sort();
        Log {
            batches: log.batches,
            aborted: log.aborted,
            committed: log.visible.into_iter().map(|(_, v)| v).collect(),
            end: log.offset,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn the_filter_hands_out_exactly_the_committed_records_in_order(
            steps in proptest::collection::vec(step(), 0..40),
            cuts in proptest::collection::vec(any::<u16>(), 0..4),
        ) {
            let log = build(&steps);
            let now = Instant::now();
            let md = metadata(&[("t", &[0])]);
            let p = tp("t", 0);
            let mut f = fetcher(read_committed(), std::slice::from_ref(&p));
            // Slice the log into fetches at batch boundaries, as fetch.max.bytes might.
            let mut bounds: Vec<usize> = cuts
                .iter()
                .map(|c| usize::from(*c) % (log.batches.len() + 1))
                .collect();
            bounds.push(log.batches.len());
            bounds.sort_unstable();
            let mut seen = Vec::new();
            let mut from = 0usize;
            for to in bounds {
                if to <= from {
                    continue;
                }
                let slice = &log.batches[from..to];
                let (low, high) = (slice[0].0, if to < log.batches.len() { log.batches[to].0 } else { log.end });
                // A broker lists the aborted transactions that overlap the fetched range.
                let listed: Vec<AbortedTransaction> = log
                    .aborted
                    .iter()
                    .filter(|(_, first, last)| *first < high && *last >= low)
                    .map(|(pid, first, _)| aborted_txn(*pid, *first))
                    .collect();
                let plan = only_plan(&mut f, now, &md);
                let mut data = ok(0, log.end, slice.iter().flat_map(|(_, b)| b.clone()).collect());
                data.aborted_transactions = Some(listed);
                f.handle_fetch_response(plan.id(), 18, response("t", vec![data]), now);
                let events = drain(&mut f);
                prop_assert!(events.iter().all(Result::is_ok), "{:?}", events);
                seen.extend(values(&events));
                prop_assert_eq!(f.position(&p), Some(high));
                from = to;
            }
            prop_assert_eq!(seen, log.committed);
        }
    }
}

#[test]
fn group_partitions_wait_for_their_committed_offset_and_revoked_ones_are_held() {
    let now = Instant::now();
    let md = metadata(&[("t", &[0, 0])]);
    let (p0, p1) = (tp("t", 0), tp("t", 1));
    let mut f = Fetcher::new(config(), 1);
    f.assign_from_group(&[p0.clone(), p1.clone()]);
    assert_eq!(f.awaiting_committed(), vec![p0.clone(), p1.clone()]);
    assert!(
        f.poll_fetches(now, &md).is_empty(),
        "nothing before the offsets"
    );
    assert!(f.poll_list_offsets(now, &md).is_empty());
    assert_eq!(f.position(&p0), None);
    assert!(f.consumed_positions().is_empty());
    // p0 has a committed offset; p1 has none and resets by policy (latest: a lookup).
    f.start_at_committed(&p0, Some(3));
    f.start_at_committed(&p1, None);
    assert!(f.awaiting_committed().is_empty());
    assert_eq!(f.position(&p0), Some(3));
    assert_eq!(f.poll_list_offsets(now, &md).len(), 1);
    let plan = only_plan(&mut f, now, &md);
    assert_eq!(plan.partitions().collect::<Vec<_>>(), vec![(&p0, 3)]);
    f.handle_fetch_response(
        plan.id(),
        18,
        response("t", vec![ok(0, 10, batch(3, &["a", "b", "c"]))]),
        now,
    );
    let first = f.poll_event();
    assert!(matches!(&first, Some(Ok(ConsumerEvent::Record(r))) if r.offset == 3));
    assert_eq!(
        f.consumed_positions(),
        vec![(p0.clone(), 4)],
        "what was handed out"
    );
    assert_eq!(f.lag(&p0), Some(6), "high watermark 10, position 4");
    // Revoked: the rest of the batch is dropped, the position stays at what was handed out.
    f.hold(std::slice::from_ref(&p0));
    assert!(f.poll_event().is_none(), "no record of a held partition");
    assert_eq!(f.position(&p0), Some(4));
    assert_eq!(f.consumed_positions(), vec![(p0.clone(), 4)]);
    assert!(f
        .poll_fetches(now, &md)
        .iter()
        .all(|plan| plan.partitions().all(|(tp, _)| *tp != p0)));
    // A start position that comes late, after a seek, changes nothing.
    f.assign_from_group(std::slice::from_ref(&p1));
    f.assign_from_group(&[p0.clone(), p1.clone()]);
    f.seek(&p0, Offset::At(8)).expect("assigned");
    f.start_at_committed(&p0, Some(1));
    assert_eq!(f.position(&p0), Some(8));
}
