//! Unit tests of the accumulator, with plain `Instant`s.

use super::size::{record_size, PARTITION_OVERHEAD, REQUEST_OVERHEAD, TOPIC_OVERHEAD};
use super::*;
use crate::engine::metadata::Metadata;
use crate::engine::partitioner::partition_for_key;
use crate::proto::batch_header::BATCH_HEADER_LEN;
use crate::proto::record_batch::{DecodeLimits, Header, RecordBatch, RecordBatchBuilder};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

const MS: Duration = Duration::from_millis(1);

/// Topic `t` with these partition leaders (-1: none), brokers 0..3.
fn metadata(leaders: &[i32]) -> Metadata {
    let brokers = (0..3)
        .map(|id| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(id))
                .with_host(StrBytes::from_static_str("h"))
                .with_port(9092 + id)
        })
        .collect();
    let partitions = leaders
        .iter()
        .enumerate()
        .map(|(i, leader)| {
            MetadataResponsePartition::default()
                .with_partition_index(i as i32)
                .with_leader_id(BrokerId(*leader))
                .with_leader_epoch(1)
        })
        .collect();
    let topic = MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_static_str("t"))))
        .with_topic_id(Uuid::from_u128(9))
        .with_partitions(partitions);
    let mut md = Metadata::new(Duration::from_secs(300));
    md.handle_response(
        &MetadataResponse::default()
            .with_brokers(brokers)
            .with_topics(vec![topic]),
        Instant::now(),
    );
    md
}

fn config() -> AccumulatorConfig {
    AccumulatorConfig {
        batch_size: 16 * 1024,
        linger: 50 * MS,
        max_request_size: 1024 * 1024,
        client_id_len: 6,
        compression: Compression::None,
        delivery_timeout: Duration::from_secs(120),
        retries: u32::MAX,
        retry_backoff: 100 * MS,
        retry_backoff_max: Duration::from_secs(1),
        max_in_flight: 5,
        partitioner: Partitioner::Murmur2Random,
        acks: Acks::All,
        request_timeout_ms: 30_000,
        idempotent: false,
        transactional: false,
    }
}

/// A record whose completion is its number.
fn record(n: u32, partition: Option<i32>, value_len: usize, at: Instant) -> NewRecord<u32> {
    let mut record = ProducerRecord::new("t")
        .with_key(format!("key-{n}"))
        .with_value(vec![b'v'; value_len]);
    record.partition = partition;
    NewRecord {
        reserved: record_size_upper_bound(&record),
        record,
        completion: n,
        sent_at: at,
        timestamp: 1_700_000_000_000 + i64::from(n),
    }
}

fn completions(acc: &mut Accumulator<u32>) -> Vec<(u32, Result<Delivered, Failure>)> {
    std::iter::from_fn(|| acc.poll_completion())
        .map(|c| (c.completion, c.result))
        .collect()
}

fn answer(plan: &ProduceRequestPlan, base_offset: i64) -> ProduceOutcome {
    ProduceOutcome::Answered(
        plan.batches
            .iter()
            .map(|b| PartitionResponse {
                topic: b.topic.to_string(),
                partition: b.partition,
                error: None,
                error_message: None,
                base_offset,
                log_append_time: -1,
            })
            .collect(),
    )
}

fn error_answer(plan: &ProduceRequestPlan, code: ErrorCode) -> ProduceOutcome {
    ProduceOutcome::Answered(
        plan.batches
            .iter()
            .map(|b| PartitionResponse {
                topic: b.topic.to_string(),
                partition: b.partition,
                error: Some(code),
                error_message: None,
                base_offset: -1,
                log_append_time: -1,
            })
            .collect(),
    )
}

fn decode(batch: &DrainedBatch) -> RecordBatch {
    RecordBatch::decode(&batch.records, &DecodeLimits::default()).expect("valid batch")
}

#[test]
fn sizes_match_the_encoder_exactly() {
    let records = [
        ProducerRecord::new("t"),
        ProducerRecord::new("t")
            .with_key("k")
            .with_value(vec![0u8; 300]),
        ProducerRecord::new("t")
            .with_value(vec![1u8; 70_000])
            .with_header("a", "b")
            .with_headers(vec![Header::null("x"), Header::new("y", vec![2u8; 200])]),
    ];
    let timestamps = [1_000i64, 900, 1_000_000_000];
    let mut builder = RecordBatchBuilder::new();
    let mut expected = BATCH_HEADER_LEN;
    for (i, (record, ts)) in records.iter().zip(timestamps).enumerate() {
        builder
            .append(
                ts,
                record.key.clone(),
                record.value.clone(),
                record.headers.clone(),
            )
            .expect("append");
        let size = record_size(record, i as i32, ts - timestamps[0]);
        assert!(size <= record_size_upper_bound(record));
        expected += size;
    }
    let encoded = builder.build().encode().expect("encode");
    assert_eq!(encoded.len(), expected);
}

#[test]
fn appends_ask_for_a_wake_up_only_when_a_batch_opens_or_closes() {
    let t0 = Instant::now();
    let md = metadata(&[0, 1]);
    let mut config = config();
    config.batch_size = 400;
    config.max_in_flight = 1;
    let mut acc = Accumulator::new(config, 1);
    acc.append(record(1, Some(0), 100, t0), &md, t0);
    assert!(
        acc.take_wake(),
        "a new batch: the sender must arm its linger timer"
    );
    assert!(!acc.take_wake(), "once per cause");
    acc.append(record(2, Some(0), 100, t0), &md, t0);
    assert!(
        !acc.take_wake(),
        "an append to an open batch changes no deadline"
    );
    acc.append(record(3, Some(0), 100, t0), &md, t0);
    acc.append(record(4, Some(0), 100, t0), &md, t0);
    assert!(
        acc.take_wake(),
        "the batch filled up (closed, or a second one opened)"
    );
    acc.append(record(5, Some(1), 100, t0), &md, t0);
    assert!(acc.take_wake(), "another partition's first batch");
    acc.append(record(6, Some(7), 100, t0), &md, t0);
    assert!(
        acc.take_wake(),
        "a record failed at once: its completion is to deliver"
    );
    // Partition 0's ready batch goes out: while it is in flight, appends there are
    // the answer's business.
    let plans = acc.drain(t0, &md, false);
    let to_p0 = plans
        .iter()
        .find(|p| p.batches.iter().any(|b| b.partition == 0))
        .expect("partition 0 drained");
    for n in 10..20 {
        acc.append(record(n, Some(0), 100, t0), &md, t0);
        assert!(!acc.take_wake(), "record {n} behind a batch in flight");
    }
    acc.handle_response(to_p0.request_id, answer(to_p0, 0), t0);
    assert!(
        acc.drain(t0, &md, false)
            .iter()
            .any(|p| p.batches.iter().any(|b| b.partition == 0)),
        "the answer lets the next one go"
    );
    let mut acc = Accumulator::new(self::config(), 1);
    let unknown = Metadata::new(Duration::from_secs(300));
    acc.append(record(7, None, 10, t0), &unknown, t0);
    assert!(
        acc.take_wake(),
        "a record waits for metadata: the sender must refresh"
    );
    acc.append(record(8, None, 10, t0), &unknown, t0);
    assert!(acc.take_wake(), "behind it, too");
}

#[test]
fn linger_holds_a_batch_until_it_is_due() {
    let t0 = Instant::now();
    let md = metadata(&[0, 1]);
    let mut acc = Accumulator::new(config(), 1);
    assert_eq!(
        acc.append(record(1, Some(1), 10, t0), &md, t0),
        Placement::Partition(1)
    );
    assert!(acc.drain(t0, &md, false).is_empty());
    assert!(acc.drain(t0 + 49 * MS, &md, false).is_empty());
    assert_eq!(acc.poll_timeout(t0), Some(t0 + 50 * MS));
    let plans = acc.drain(t0 + 50 * MS, &md, false);
    assert_eq!(plans.len(), 1);
    assert_eq!(plans[0].broker, 1);
    assert_eq!(plans[0].batches[0].topic_id, Uuid::from_u128(9));
    // A waiting send, a flush or close make it sendable at once.
    let mut acc = Accumulator::new(config(), 1);
    acc.append(record(1, Some(0), 10, t0), &md, t0);
    assert_eq!(acc.drain(t0, &md, true).len(), 1);
    let mut acc = Accumulator::new(config(), 1);
    acc.append(record(1, Some(0), 10, t0), &md, t0);
    let token = acc.begin_flush();
    assert!(!acc.is_flushed(token));
    let plans = acc.drain(t0, &md, false);
    assert_eq!(plans.len(), 1);
    acc.handle_response(plans[0].request_id, answer(&plans[0], 0), t0);
    assert!(acc.is_flushed(token));
    assert!(!acc.is_idle(), "a completion is still to be delivered");
    assert_eq!(completions(&mut acc).len(), 1);
    assert!(acc.is_idle());
}

#[test]
fn batch_size_closes_a_batch_and_the_closed_one_goes_first() {
    let t0 = Instant::now();
    let md = metadata(&[0]);
    let mut acc = Accumulator::new(
        AccumulatorConfig {
            batch_size: 1000,
            ..config()
        },
        1,
    );
    for n in 0..5 {
        acc.append(record(n, Some(0), 300, t0), &md, t0);
    }
    // Three records of about 320 bytes fill a 1000-byte batch (with its 61-byte header)
    // only to 3 * 320 + 61 > 1000: two fit, the third opens a new batch.
    let plans = acc.drain(t0, &md, false);
    assert_eq!(plans.len(), 1);
    let first = decode(&plans[0].batches[0]);
    assert_eq!(first.records.len(), 2);
    assert!(plans[0].batches[0].records.len() <= 1000);
    acc.handle_response(plans[0].request_id, answer(&plans[0], 0), t0);
    let done = completions(&mut acc);
    assert_eq!(
        done.iter()
            .map(|(n, r)| (*n, r.as_ref().map(|d| d.offset).ok()))
            .collect::<Vec<_>>(),
        vec![(0, Some(0)), (1, Some(1))]
    );
    // The second batch (two records) is closed too; the third is open and lingers.
    let plans = acc.drain(t0, &md, false);
    assert_eq!(decode(&plans[0].batches[0]).records.len(), 2);
    acc.handle_response(plans[0].request_id, answer(&plans[0], 2), t0);
    assert!(acc.drain(t0, &md, false).is_empty());
    assert_eq!(acc.drain(t0 + 50 * MS, &md, false).len(), 1);
}

#[test]
fn with_one_in_flight_a_partition_is_muted_and_a_retry_goes_first() {
    let t0 = Instant::now();
    let md = metadata(&[0, 0]);
    let mut acc = Accumulator::new(
        AccumulatorConfig {
            batch_size: 200,
            max_in_flight: 1,
            ..config()
        },
        1,
    );
    for n in 0..3 {
        acc.append(record(n, Some(0), 100, t0), &md, t0);
    }
    acc.append(record(9, Some(1), 100, t0), &md, t0);
    let first = acc.drain(t0, &md, false);
    // Partition 0's first batch only; partition 1 lingers.
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].batches.len(), 1);
    let sent_bytes = first[0].batches[0].records.clone();
    assert!(
        acc.drain(t0, &md, false).is_empty(),
        "partition 0 is muted while its batch is in flight"
    );
    acc.handle_response(
        first[0].request_id,
        ProduceOutcome::Failed {
            error: Error::Disconnected {
                address: "h:9092".into(),
            },
            sent: true,
        },
        t0,
    );
    assert!(
        acc.take_metadata_refresh(),
        "a lost connection refreshes metadata"
    );
    assert!(completions(&mut acc).is_empty());
    // Partition 1 lingers 50 ms and goes alone: partition 0 backs off.
    assert_eq!(acc.poll_timeout(t0), Some(t0 + 50 * MS));
    let other = acc.drain(t0 + 50 * MS, &md, false);
    assert_eq!(other.len(), 1);
    assert_eq!(other[0].batches[0].partition, 1);
    acc.handle_response(other[0].request_id, answer(&other[0], 0), t0 + 50 * MS);
    let retry_at = acc.poll_timeout(t0 + 50 * MS).expect("backoff");
    let wait = retry_at - t0;
    assert!(wait >= 80 * MS && wait <= 120 * MS, "{wait:?}");
    assert!(acc.drain(retry_at - MS, &md, false).is_empty());
    let again = acc.drain(retry_at, &md, false);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].batches.len(), 1);
    assert_eq!(
        again[0].batches[0].records, sent_bytes,
        "a retry resends the same bytes"
    );
    acc.handle_response(again[0].request_id, answer(&again[0], 10), retry_at);
    let done = completions(&mut acc);
    let offsets: Vec<(u32, i64)> = done
        .iter()
        .map(|(n, r)| (*n, r.as_ref().map(|d| d.offset).unwrap_or(-2)))
        .collect();
    assert_eq!(offsets, vec![(9, 0), (0, 10)]);
    // The remaining batches of partition 0 follow, one at a time, in order.
    for (n, offset) in [(1, 11), (2, 12)] {
        let next = acc.drain(retry_at, &md, false);
        assert_eq!(next.len(), 1);
        assert!(acc.drain(retry_at, &md, false).is_empty());
        acc.handle_response(next[0].request_id, answer(&next[0], offset), retry_at);
        let done = completions(&mut acc);
        assert!(matches!(&done[..], [(m, Ok(d))] if *m == n && d.offset == offset));
    }
}

#[test]
fn keys_follow_murmur2_and_keyless_records_stick() {
    let t0 = Instant::now();
    let md = metadata(&[0, 1, 2, 0, 1, 2]);
    let mut acc = Accumulator::new(config(), 3);
    for n in 0..20 {
        let placement = acc.append(record(n, None, 10, t0), &md, t0);
        let key = format!("key-{n}");
        assert_eq!(
            placement,
            Placement::Partition(partition_for_key(key.as_bytes(), 6))
        );
    }
    let mut keyless = Vec::new();
    for n in 0..10 {
        let mut new = record(100 + n, None, 10, t0);
        new.record.key = None;
        keyless.push(acc.append(new, &md, t0));
    }
    assert!(keyless.windows(2).all(|w| w[0] == w[1]), "{keyless:?}");
}

#[test]
fn the_partitioner_setting_decides_for_keyless_and_keyed_records() {
    let t0 = Instant::now();
    let md = metadata(&[0, 1, 2, 0, 1, 2]);
    let keyless = |n| {
        let mut new = record(n, None, 10, t0);
        new.record.key = None;
        new
    };
    let mut acc = Accumulator::new(
        AccumulatorConfig {
            partitioner: Partitioner::Murmur2,
            ..config()
        },
        1,
    );
    let empty_key = Placement::Partition(partition_for_key(b"", 6));
    for n in 0..5 {
        assert_eq!(acc.append(keyless(n), &md, t0), empty_key);
    }
    // `random` ignores keys: every record sticks to one partition until the batch fills.
    let mut acc = Accumulator::new(
        AccumulatorConfig {
            partitioner: Partitioner::Random,
            ..config()
        },
        1,
    );
    let placements: Vec<Placement> = (0..10)
        .map(|n| acc.append(record(n, None, 10, t0), &md, t0))
        .collect();
    assert!(
        placements.windows(2).all(|w| w[0] == w[1]),
        "{placements:?}"
    );
    // Sticky choices only go to partitions with a leader.
    let md = metadata(&[-1, -1, 2, -1, -1, -1]);
    let mut acc = Accumulator::new(config(), 5);
    for n in 0..10 {
        assert_eq!(acc.append(keyless(n), &md, t0), Placement::Partition(2));
    }
}

#[test]
fn an_unknown_topic_waits_for_metadata_and_a_missing_partition_fails() {
    let t0 = Instant::now();
    let empty = Metadata::new(Duration::from_secs(300));
    let mut acc = Accumulator::new(config(), 1);
    assert_eq!(
        acc.append(record(1, None, 10, t0), &empty, t0),
        Placement::WaitingForMetadata
    );
    assert!(acc.take_metadata_refresh());
    assert_eq!(acc.wanted_topics().collect::<Vec<_>>(), vec!["t"]);
    // Order is kept: a later record joins the queue even once metadata is known.
    let md = metadata(&[0, 1]);
    assert_eq!(
        acc.append(record(2, Some(7), 10, t0), &md, t0),
        Placement::WaitingForMetadata
    );
    acc.handle_metadata(&md, t0);
    assert_eq!(acc.wanted_topics().count(), 0);
    let done = completions(&mut acc);
    assert_eq!(done.len(), 1);
    assert!(matches!(
        &done[0],
        (
            2,
            Err(Failure {
                error: Error::UnknownPartition { partition },
                persisted: Persisted::No
            })
        ) if partition.partition == 7
    ));
    assert_eq!(acc.drain(t0 + 50 * MS, &md, false).len(), 1);
    // Never known: the delivery timeout fails it, never sent.
    let mut acc = Accumulator::new(config(), 1);
    acc.append(record(3, None, 10, t0), &empty, t0);
    assert_eq!(acc.poll_timeout(t0), Some(t0 + Duration::from_secs(120)));
    acc.handle_timeout(t0 + Duration::from_secs(120), |_| true);
    assert!(matches!(
        &completions(&mut acc)[..],
        [(
            3,
            Err(Failure {
                error: Error::DeliveryTimeout(_),
                persisted: Persisted::No
            })
        )]
    ));
    assert_eq!(acc.buffered_bytes(), 0);
}

#[test]
fn delivery_timeout_says_whether_an_attempt_may_have_landed() {
    let t0 = Instant::now();
    let timeout = Duration::from_secs(120);
    let mut acc = Accumulator::new(config(), 1);
    let md = metadata(&[0, 0, 0, 0]);
    for n in 0..4 {
        acc.append(record(n, Some(n as i32), 10, t0), &md, t0);
    }
    // Partition 0 never has a leader. Partition 1 is sent first; its answer is lost
    // after the request was written.
    let plans = acc.drain(t0 + 50 * MS, &metadata(&[-1, 0, -1, -1]), false);
    assert_eq!(plans[0].batches.len(), 1);
    acc.handle_response(
        plans[0].request_id,
        ProduceOutcome::Failed {
            error: Error::RequestTimeout(Duration::from_secs(30)),
            sent: true,
        },
        t0 + 50 * MS,
    );
    // Then partitions 2 and 3 go out; at the deadline 2 is still queued in the
    // connection (never written), 3 was written.
    let plans = acc.drain(t0 + 5000 * MS, &metadata(&[-1, -1, 0, 0]), false);
    let id = |p: i32| {
        plans[0]
            .batches
            .iter()
            .find(|b| b.partition == p)
            .map(|b| b.batch_id)
            .expect("drained")
    };
    let written = id(3);
    let _ = id(2);
    acc.handle_timeout(t0 + timeout, |batch| batch == written);
    let mut done = completions(&mut acc);
    done.sort_by_key(|(n, _)| *n);
    let persisted: Vec<(u32, Persisted)> = done
        .iter()
        .map(|(n, r)| match r {
            Err(Failure {
                error: Error::DeliveryTimeout(t),
                persisted,
            }) if *t == timeout => (*n, *persisted),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        persisted,
        vec![
            (0, Persisted::No),
            (1, Persisted::Possibly),
            (2, Persisted::No),
            (3, Persisted::Possibly)
        ]
    );
    // The late answer unmutes the partitions and completes nothing twice.
    acc.handle_response(plans[0].request_id, answer(&plans[0], 0), t0 + timeout);
    assert!(completions(&mut acc).is_empty());
    assert!(acc.is_idle());
    assert_eq!(acc.buffered_bytes(), 0);
}

#[test]
fn an_in_flight_batch_never_written_expires_as_not_persisted() {
    let t0 = Instant::now();
    let md = metadata(&[0]);
    let mut acc = Accumulator::new(config(), 1);
    acc.append(record(0, Some(0), 10, t0), &md, t0);
    let plans = acc.drain(t0 + 50 * MS, &md, false);
    let expired_at = t0 + Duration::from_secs(120);
    assert_eq!(acc.poll_timeout(t0 + 50 * MS), Some(expired_at));
    acc.handle_timeout(expired_at, |_| false);
    assert!(matches!(
        &completions(&mut acc)[..],
        [(
            0,
            Err(Failure {
                error: Error::DeliveryTimeout(_),
                persisted: Persisted::No
            })
        )]
    ));
    acc.handle_response(
        plans[0].request_id,
        ProduceOutcome::Failed {
            error: Error::DeliveryTimeout(Duration::ZERO),
            sent: false,
        },
        expired_at,
    );
    assert!(acc.is_idle());
}

#[test]
fn message_too_large_splits_the_batch_in_order() {
    let t0 = Instant::now();
    let md = metadata(&[0]);
    let mut acc = Accumulator::new(config(), 1);
    for n in 0..5 {
        acc.append(record(n, Some(0), 100, t0), &md, t0);
    }
    let plans = acc.drain(t0 + 50 * MS, &md, false);
    acc.handle_response(
        plans[0].request_id,
        error_answer(&plans[0], ErrorCode::MessageTooLarge),
        t0 + 50 * MS,
    );
    assert!(completions(&mut acc).is_empty());
    let mut order = Vec::new();
    let mut offset = 0;
    for _ in 0..4 {
        let plans = acc.drain(t0 + 50 * MS, &md, false);
        let Some(plan) = plans.first() else { break };
        let records = decode(&plan.batches[0]).records.len();
        order.push(records);
        acc.handle_response(plan.request_id, answer(plan, offset), t0 + 50 * MS);
        offset += records as i64;
    }
    assert_eq!(order, vec![2, 3]);
    let done: Vec<(u32, i64)> = completions(&mut acc)
        .into_iter()
        .map(|(n, r)| (n, r.map(|d| d.offset).unwrap_or(-2)))
        .collect();
    assert_eq!(done, (0..5).map(|n| (n, i64::from(n))).collect::<Vec<_>>());
    // A single record that is too large fails.
    acc.append(record(9, Some(0), 100, t0), &md, t0);
    let plans = acc.drain(t0 + 50 * MS, &md, false);
    acc.handle_response(
        plans[0].request_id,
        error_answer(&plans[0], ErrorCode::MessageTooLarge),
        t0 + 50 * MS,
    );
    assert!(matches!(
        &completions(&mut acc)[..],
        [(
            9,
            Err(Failure {
                error: Error::Partition {
                    code: ErrorCode::MessageTooLarge,
                    ..
                },
                persisted: Persisted::No
            })
        )]
    ));
}

#[test]
fn requests_stay_within_max_request_size() {
    let t0 = Instant::now();
    let md = metadata(&[0, 0, 0, 0, 0, 0]);
    let max_request_size = 4096;
    let mut acc = Accumulator::new(
        AccumulatorConfig {
            max_request_size,
            batch_size: 4096,
            ..config()
        },
        1,
    );
    for n in 0..60 {
        acc.append(record(n, Some((n % 6) as i32), 150, t0), &md, t0);
    }
    let mut sent = 0;
    for _ in 0..20 {
        let plans = acc.drain(t0 + 50 * MS, &md, false);
        if plans.is_empty() {
            break;
        }
        for plan in plans {
            let size = REQUEST_OVERHEAD
                + 6
                + TOPIC_OVERHEAD
                + 1
                + plan
                    .batches
                    .iter()
                    .map(|b| PARTITION_OVERHEAD + b.records.len())
                    .sum::<usize>();
            assert!(size <= max_request_size, "{size}");
            sent += plan.batches.iter().map(|b| b.record_count).sum::<usize>();
            acc.handle_response(plan.request_id, answer(&plan, 0), t0);
        }
    }
    assert_eq!(sent, 60);
    // A record that cannot fit a request is refused by size.
    let limit = max_batch_bytes(max_request_size, 6, "t");
    let big = record(99, Some(0), limit, t0);
    assert!(single_record_batch_bytes(record_size_upper_bound(&big.record)) > limit);
}

#[test]
fn compressed_batches_that_grow_past_the_limit_are_split() {
    let t0 = Instant::now();
    let md = metadata(&[0]);
    let max_request_size = 2048;
    let mut acc = Accumulator::new(
        AccumulatorConfig {
            max_request_size,
            batch_size: 4096,
            compression: Compression::Gzip,
            ..config()
        },
        1,
    );
    // Incompressible values fill the batch to its limit; gzip's framing pushes the
    // encoded batch past it.
    let mut state = 0x1234_5678u32;
    for n in 0..6 {
        let mut new = record(n, Some(0), 0, t0);
        let value: Vec<u8> = (0..300)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state as u8
            })
            .collect();
        new.record.value = Some(value.into());
        acc.append(new, &md, t0);
    }
    let limit = max_batch_bytes(max_request_size, 6, "t");
    let mut records = 0;
    for _ in 0..10 {
        let plans = acc.drain(t0 + 50 * MS, &md, false);
        let Some(plan) = plans.first() else { break };
        for batch in &plan.batches {
            assert!(batch.records.len() <= limit);
            assert_eq!(decode(batch).compression, Compression::Gzip);
            records += batch.record_count;
        }
        acc.handle_response(plan.request_id, answer(plan, 0), t0);
    }
    assert_eq!(records, 6);
}

#[test]
fn retries_stop_at_the_limit_and_fatal_errors_at_once() {
    let t0 = Instant::now();
    let md = metadata(&[0]);
    let mut acc = Accumulator::new(
        AccumulatorConfig {
            retries: 1,
            ..config()
        },
        1,
    );
    acc.append(record(0, Some(0), 10, t0), &md, t0);
    let mut now = t0 + 50 * MS;
    for attempt in 0..2 {
        let plans = acc.drain(now, &md, false);
        assert_eq!(plans.len(), 1, "attempt {attempt}");
        acc.handle_response(
            plans[0].request_id,
            error_answer(&plans[0], ErrorCode::NotLeaderOrFollower),
            now,
        );
        assert!(acc.take_metadata_refresh());
        // The first failure is retried (and counted), the second is the last.
        assert_eq!(acc.retries(), 1, "attempt {attempt}");
        now += Duration::from_secs(2);
    }
    assert!(matches!(
        &completions(&mut acc)[..],
        [(
            0,
            Err(Failure {
                error: Error::Partition {
                    code: ErrorCode::NotLeaderOrFollower,
                    ..
                },
                persisted: Persisted::No
            })
        )]
    ));
    acc.append(record(1, Some(0), 10, t0), &md, now);
    let plans = acc.drain(now + 50 * MS, &md, false);
    acc.handle_response(
        plans[0].request_id,
        error_answer(&plans[0], ErrorCode::TopicAuthorizationFailed),
        now,
    );
    assert_eq!(acc.retries(), 1, "a fatal error is not retried");
    assert!(matches!(
        &completions(&mut acc)[..],
        [(
            1,
            Err(Failure {
                error: Error::Partition {
                    code: ErrorCode::TopicAuthorizationFailed,
                    ..
                },
                persisted: Persisted::No
            })
        )]
    ));
}

#[test]
fn acks_zero_completes_with_offset_minus_one_and_gives_the_buffer_back() {
    let t0 = Instant::now();
    let md = metadata(&[0]);
    let mut acc = Accumulator::new(
        AccumulatorConfig {
            acks: Acks::None,
            ..config()
        },
        1,
    );
    let new = record(0, Some(0), 10, t0);
    let reserved = new.reserved;
    acc.append(new, &md, t0);
    assert_eq!(acc.buffered_bytes(), reserved);
    assert_eq!(acc.outstanding_records(), 1);
    let plans = acc.drain(t0 + 50 * MS, &md, false);
    assert_eq!(plans[0].acks, Acks::None);
    acc.handle_response(plans[0].request_id, ProduceOutcome::Written, t0);
    let done: Vec<_> = std::iter::from_fn(|| acc.poll_completion()).collect();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].reserved, reserved);
    assert_eq!(
        done[0]
            .result
            .as_ref()
            .map(|d| (d.offset, d.timestamp))
            .ok(),
        Some((-1, 1_700_000_000_000))
    );
    assert_eq!(acc.buffered_bytes(), 0);
}

#[test]
fn sequences_are_assigned_at_the_first_drain_when_idempotent() {
    let t0 = Instant::now();
    let md = metadata(&[0]);
    let mut acc = Accumulator::new(
        AccumulatorConfig {
            batch_size: 200,
            ..config()
        },
        1,
    );
    acc.set_producer_id(ProducerId::new(42, 3));
    for n in 0..4 {
        acc.append(record(n, Some(0), 100, t0), &md, t0);
    }
    let mut sequences = Vec::new();
    for _ in 0..4 {
        let plans = acc.drain(t0 + 50 * MS, &md, false);
        let Some(plan) = plans.first() else { break };
        let batch = decode(&plan.batches[0]);
        assert_eq!((batch.producer_id, batch.producer_epoch), (42, 3));
        sequences.push((batch.base_sequence, batch.records.len()));
        acc.handle_response(plan.request_id, answer(plan, 0), t0);
    }
    assert_eq!(sequences, vec![(0, 1), (1, 1), (2, 1), (3, 1)]);
}

/// An idempotent accumulator with producer id 42 at epoch 0, one record per batch.
fn numbering_accumulator() -> Accumulator<u32> {
    let mut acc = Accumulator::new(
        AccumulatorConfig {
            batch_size: 200,
            idempotent: true,
            ..config()
        },
        1,
    );
    acc.set_producer_id(ProducerId::new(42, 0));
    acc
}

/// An idempotent accumulator with its producer id, one record per batch, whose first
/// batch to partition 0 (record 99, sequence 0) was acknowledged.
fn idempotent_accumulator() -> Accumulator<u32> {
    let t0 = Instant::now();
    let md = metadata(&[0]);
    let mut acc = numbering_accumulator();
    acc.append(record(99, Some(0), 100, t0), &md, t0);
    let first = acc.drain(t0, &md, true);
    assert_eq!(numbering(&first), vec![(0, 0)]);
    acc.handle_response(first[0].request_id, answer(&first[0], 99), t0);
    assert!(matches!(&completions(&mut acc)[..], [(99, Ok(_))]));
    acc
}

#[test]
fn the_first_batch_of_a_partition_goes_alone() {
    let t0 = Instant::now();
    let md = metadata(&[0]);
    let mut acc = numbering_accumulator();
    for n in 0..3 {
        acc.append(record(n, Some(0), 100, t0), &md, t0);
    }
    let first = acc.drain(t0, &md, false);
    assert_eq!(numbering(&first), vec![(0, 0)]);
    assert!(
        acc.drain(t0, &md, false).is_empty(),
        "a broker without state for the producer accepts any sequence: nothing may \
         overtake the first batch"
    );
    acc.handle_response(first[0].request_id, answer(&first[0], 0), t0);
    let rest: Vec<_> = (0..3).flat_map(|_| acc.drain(t0, &md, true)).collect();
    assert_eq!(
        numbering(&rest),
        vec![(1, 0), (2, 0)],
        "then several at once"
    );
}

/// (sequence, epoch) of each batch of `plans`.
fn numbering(plans: &[ProduceRequestPlan]) -> Vec<(i32, i16)> {
    plans
        .iter()
        .flat_map(|p| &p.batches)
        .map(|b| {
            let batch = decode(b);
            (batch.base_sequence, batch.producer_epoch)
        })
        .collect()
}

#[test]
fn nothing_is_drained_before_the_producer_id() {
    let t0 = Instant::now();
    let md = metadata(&[0]);
    let mut acc = Accumulator::new(
        AccumulatorConfig {
            idempotent: true,
            ..config()
        },
        1,
    );
    assert!(!acc.needs_producer_id(), "nothing to send yet");
    acc.append(record(0, Some(0), 10, t0), &md, t0);
    assert!(acc.needs_producer_id());
    assert!(acc.drain(t0 + 50 * MS, &md, true).is_empty());
    acc.set_producer_id(ProducerId::new(7, 2));
    assert!(!acc.needs_producer_id());
    let plans = acc.drain(t0 + 50 * MS, &md, false);
    assert_eq!(numbering(&plans), vec![(0, 2)]);
    assert_eq!(acc.producer_id(), Some(ProducerId::new(7, 2)));
}

#[test]
fn five_batches_of_a_partition_fly_and_retries_go_back_in_sequence_order() {
    let t0 = Instant::now();
    let md = metadata(&[0]);
    let mut acc = idempotent_accumulator();
    for n in 0..7 {
        acc.append(record(n, Some(0), 100, t0), &md, t0);
    }
    let mut plans = Vec::new();
    for _ in 0..6 {
        plans.extend(acc.drain(t0, &md, false));
    }
    assert_eq!(
        numbering(&plans),
        (1..6).map(|s| (s, 0)).collect::<Vec<_>>(),
        "max.in.flight batches of one partition, numbered in order"
    );
    // The first is refused (leader moved); the broker then refuses the next ones as out
    // of order. Their answers come back last first.
    for plan in plans[1..].iter().rev() {
        let refused = error_answer(plan, ErrorCode::OutOfOrderSequenceNumber);
        acc.handle_response(plan.request_id, refused, t0);
    }
    acc.handle_response(
        plans[0].request_id,
        error_answer(&plans[0], ErrorCode::NotLeaderOrFollower),
        t0,
    );
    assert!(completions(&mut acc).is_empty(), "nothing failed");
    let retry_at = acc.poll_timeout(t0).expect("backoff of the first batch");
    assert!(acc.drain(retry_at - MS, &md, false).is_empty());
    // Resent one at a time, in sequence order, with the bytes of the first attempt; the
    // fresh batches follow with the next sequences.
    let first = acc.drain(retry_at, &md, false);
    assert_eq!(numbering(&first), vec![(1, 0)]);
    assert!(
        acc.drain(retry_at, &md, false).is_empty(),
        "a resent batch goes alone"
    );
    let mut sent = vec![(1, 0)];
    acc.handle_response(first[0].request_id, answer(&first[0], 100), retry_at);
    let mut offset = 101;
    for _ in 0..10 {
        for plan in acc.drain(retry_at, &md, false) {
            sent.extend(numbering(std::slice::from_ref(&plan)));
            acc.handle_response(plan.request_id, answer(&plan, offset), retry_at);
            offset += 1;
        }
    }
    assert_eq!(sent, (1..8).map(|s| (s, 0)).collect::<Vec<_>>());
    let done: Vec<(u32, i64)> = completions(&mut acc)
        .into_iter()
        .map(|(n, r)| (n, r.map(|d| d.offset).unwrap_or(-2)))
        .collect();
    assert_eq!(
        done,
        (0..7).map(|n| (n, 100 + i64::from(n))).collect::<Vec<_>>()
    );
}

#[test]
fn a_failed_numbered_batch_bumps_the_epoch_and_the_queue_is_renumbered() {
    let t0 = Instant::now();
    let md = metadata(&[0]);
    let mut acc = idempotent_accumulator();
    for n in 0..4 {
        acc.append(record(n, Some(0), 100, t0), &md, t0);
    }
    let plans: Vec<_> = (0..3).flat_map(|_| acc.drain(t0, &md, false)).collect();
    assert_eq!(numbering(&plans), vec![(1, 0), (2, 0), (3, 0)]);
    acc.handle_response(
        plans[0].request_id,
        error_answer(&plans[0], ErrorCode::InvalidRecord),
        t0,
    );
    let failed = completions(&mut acc);
    assert!(matches!(&failed[..], [(0, Err(f))] if f.persisted == Persisted::No));
    assert!(
        acc.drain(t0, &md, true).is_empty(),
        "no new batch while the epoch waits to be bumped"
    );
    for plan in &plans[1..] {
        let refused = error_answer(plan, ErrorCode::OutOfOrderSequenceNumber);
        acc.handle_response(plan.request_id, refused, t0);
    }
    let mut sent = Vec::new();
    for offset in 0..3 {
        let plans = acc.drain(t0, &md, true);
        assert_eq!(plans.len(), 1, "one at a time while resending");
        sent.extend(numbering(&plans));
        acc.handle_response(plans[0].request_id, answer(&plans[0], offset), t0);
    }
    assert_eq!(sent, vec![(0, 1), (1, 1), (2, 1)], "epoch 1 numbers from 0");
    assert_eq!(acc.producer_id(), Some(ProducerId::new(42, 1)));
    let done: Vec<u32> = completions(&mut acc)
        .into_iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(n, _)| n)
        .collect();
    assert_eq!(done, vec![1, 2, 3]);
}

#[test]
fn an_expired_numbered_batch_bumps_the_epoch() {
    let t0 = Instant::now();
    let md = metadata(&[0]);
    let mut acc = idempotent_accumulator();
    acc.append(record(0, Some(0), 100, t0), &md, t0);
    let plans = acc.drain(t0, &md, true);
    let expiry = t0 + Duration::from_secs(120);
    acc.handle_timeout(expiry, |_| true);
    let expired = completions(&mut acc);
    assert!(matches!(&expired[..], [(0, Err(f))] if f.persisted == Persisted::Possibly));
    acc.append(record(1, Some(0), 100, expiry), &md, expiry);
    assert!(
        acc.drain(expiry, &md, true).is_empty(),
        "waits for the answer"
    );
    acc.handle_response(
        plans[0].request_id,
        ProduceOutcome::Failed {
            error: Error::RequestTimeout(Duration::from_secs(30)),
            sent: true,
        },
        expiry,
    );
    let plans = acc.drain(expiry, &md, true);
    assert_eq!(numbering(&plans), vec![(0, 1)]);
}

/// Partition 0's batch got no answer (it may be in the log) while partition 1's failed
/// for good: the epoch bump waits until partition 0's batch is resolved under the epoch and
/// sequence it may have been written with (the lab's epoch-bump duplicate).
fn a_possibly_persisted_batch_and_a_pending_bump(
) -> (Accumulator<u32>, Metadata, Instant, Vec<ProduceRequestPlan>) {
    let t0 = Instant::now();
    let md = metadata(&[0, 0]);
    let mut acc = idempotent_accumulator();
    acc.append(record(0, Some(0), 100, t0), &md, t0);
    let plans = acc.drain(t0, &md, true);
    assert_eq!(numbering(&plans), vec![(1, 0)]);
    let timed_out = ProduceOutcome::Failed {
        error: Error::RequestTimeout(Duration::from_secs(30)),
        sent: true,
    };
    acc.handle_response(plans[0].request_id, timed_out, t0);
    // Partition 1's first batch goes while partition 0's backs off, and fails for good.
    acc.append(record(1, Some(1), 100, t0), &md, t0);
    let plans = acc.drain(t0, &md, true);
    assert_eq!(numbering(&plans), vec![(0, 0)], "partition 1 alone");
    let refused = error_answer(&plans[0], ErrorCode::InvalidRecord);
    acc.handle_response(plans[0].request_id, refused, t0);
    assert!(matches!(&completions(&mut acc)[..], [(1, Err(f))] if f.persisted == Persisted::No));
    let t1 = t0 + Duration::from_millis(10);
    acc.append(record(2, Some(1), 100, t1), &md, t1);
    let t2 = t1 + Duration::from_secs(2);
    let plans = acc.drain(t2, &md, true);
    assert_eq!(
        numbering(&plans),
        vec![(1, 0)],
        "only the batch of unknown outcome goes, with its old epoch and sequence"
    );
    assert_eq!(
        acc.producer_id(),
        Some(ProducerId::new(42, 0)),
        "not bumped yet"
    );
    (acc, md, t2, plans)
}

#[test]
fn an_epoch_bump_waits_for_a_batch_of_unknown_outcome_the_broker_has() {
    let (mut acc, md, t2, plans) = a_possibly_persisted_batch_and_a_pending_bump();
    let duplicate = error_answer(&plans[0], ErrorCode::DuplicateSequenceNumber);
    acc.handle_response(plans[0].request_id, duplicate, t2);
    assert!(matches!(&completions(&mut acc)[..], [(0, Ok(_))]));
    let plans = acc.drain(t2, &md, true);
    assert_eq!(acc.producer_id(), Some(ProducerId::new(42, 1)));
    assert_eq!(
        numbering(&plans),
        vec![(0, 1)],
        "partition 1's next batch, epoch 1"
    );
}

#[test]
fn an_epoch_bump_fails_a_batch_of_unknown_outcome_it_cannot_resolve_as_possibly_persisted() {
    let (mut acc, md, t2, plans) = a_possibly_persisted_batch_and_a_pending_bump();
    // The broker wants a sequence before it that will never come.
    let refused = error_answer(&plans[0], ErrorCode::OutOfOrderSequenceNumber);
    acc.handle_response(plans[0].request_id, refused, t2);
    assert!(
        matches!(&completions(&mut acc)[..], [(0, Err(f))] if f.persisted == Persisted::Possibly),
        "never renumbered, never reported as not persisted"
    );
    let plans = acc.drain(t2, &md, true);
    assert_eq!(acc.producer_id(), Some(ProducerId::new(42, 1)));
    assert_eq!(numbering(&plans), vec![(0, 1)]);
}

#[test]
fn duplicates_complete_and_fencing_is_fatal() {
    let t0 = Instant::now();
    let md = metadata(&[0]);
    let mut acc = idempotent_accumulator();
    for n in 0..3 {
        acc.append(record(n, Some(0), 100, t0), &md, t0);
    }
    let plans: Vec<_> = (0..2).flat_map(|_| acc.drain(t0, &md, false)).collect();
    acc.handle_response(
        plans[0].request_id,
        error_answer(&plans[0], ErrorCode::DuplicateSequenceNumber),
        t0,
    );
    let done = completions(&mut acc);
    assert!(matches!(&done[..], [(0, Ok(d))] if d.offset == -1));
    acc.handle_response(
        plans[1].request_id,
        error_answer(&plans[1], ErrorCode::ProducerFenced),
        t0,
    );
    let failed = completions(&mut acc);
    assert_eq!(
        failed.len(),
        2,
        "the fenced batch and the one queued behind it"
    );
    assert!(failed
        .iter()
        .all(|(_, r)| matches!(r, Err(f) if f.error.is_fatal())));
    assert_eq!(
        acc.append(record(3, Some(0), 100, t0), &md, t0),
        Placement::Failed
    );
    assert!(matches!(&completions(&mut acc)[..], [(3, Err(f))] if f.error.is_fatal()));
    assert!(acc.drain(t0, &md, true).is_empty());
    assert!(acc.is_idle());
}

#[test]
fn encode_jobs_are_send_and_touch_nothing_but_themselves() {
    fn assert_send<J: Send + 'static>() {}
    assert_send::<EncodeJob<u32>>();
}

#[test]
fn appends_go_on_while_a_batch_is_encoded_outside_and_order_holds() {
    let t0 = Instant::now();
    let md = metadata(&[0, 1]);
    let mut acc = Accumulator::new(
        AccumulatorConfig {
            compression: Compression::Gzip,
            ..config()
        },
        1,
    );
    acc.append(record(1, Some(0), 100, t0), &md, t0);
    acc.append(record(2, Some(0), 100, t0), &md, t0);
    let mut jobs = acc.poll_encode(t0, &md, true);
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].record_count(), 2);
    // While the batch is out (encoded where `send`'s lock is not held), appends go on: to
    // a new batch of the same partition, and to other partitions.
    assert_eq!(
        acc.append(record(3, Some(0), 100, t0), &md, t0),
        Placement::Partition(0)
    );
    acc.append(record(4, Some(1), 100, t0), &md, t0);
    assert!(
        acc.poll_requests(t0, &md, true)
            .iter()
            .all(|plan| plan.batches.iter().all(|b| b.partition != 0)),
        "nothing of partition 0 goes before the batch out being encoded"
    );
    for job in &mut jobs {
        job.encode();
    }
    assert!(!acc.handle_encoded(jobs), "nothing split or failed");
    let plans = acc.drain(t0, &md, true);
    let partition_0: Vec<Vec<i32>> = plans
        .iter()
        .flat_map(|p| &p.batches)
        .filter(|b| b.partition == 0)
        .map(|b| decode(b).records.iter().map(|r| r.offset_delta).collect())
        .collect();
    assert_eq!(
        partition_0,
        vec![vec![0, 1]],
        "the encoded batch first, alone"
    );
    let plan = plans
        .iter()
        .find(|p| p.batches.iter().any(|b| b.partition == 0))
        .expect("a request for partition 0");
    let batch = plan
        .batches
        .iter()
        .find(|b| b.partition == 0)
        .expect("batch");
    assert_eq!(decode(batch).compression, Compression::Gzip);
    let id = plan.request_id;
    let outcome = answer(plan, 10);
    acc.handle_response(id, outcome, t0);
    // Record 3 follows in the next batch of the partition.
    let next: Vec<u32> = acc
        .drain(t0, &md, true)
        .iter()
        .flat_map(|p| &p.batches)
        .filter(|b| b.partition == 0)
        .map(|b| decode(b).records.len() as u32)
        .collect();
    assert_eq!(next, vec![1]);
}

#[test]
fn a_batch_renumbered_while_it_was_encoded_is_encoded_again() {
    let t0 = Instant::now();
    let md = metadata(&[0]);
    let mut acc = numbering_accumulator();
    acc.append(record(1, Some(0), 100, t0), &md, t0);
    let mut jobs = acc.poll_encode(t0, &md, true);
    assert_eq!(jobs.len(), 1);
    for job in &mut jobs {
        job.encode();
    }
    // A new producer id arrives meanwhile: the sequences start again, and the bytes
    // encoded under the old id must not be sent.
    acc.set_producer_id(ProducerId::new(43, 0));
    assert!(acc.handle_encoded(jobs), "encode again");
    let plans = acc.drain(t0, &md, true);
    let batch = decode(&plans[0].batches[0]);
    assert_eq!(
        (batch.producer_id, batch.producer_epoch, batch.base_sequence),
        (43, 0, 0)
    );
}

#[test]
fn a_batch_out_when_the_producer_fails_fatally_fails_with_it() {
    let t0 = Instant::now();
    let md = metadata(&[0]);
    let mut acc = numbering_accumulator();
    acc.append(record(1, Some(0), 100, t0), &md, t0);
    let jobs = acc.poll_encode(t0, &md, true);
    acc.set_fatal(Error::broker(ErrorCode::ProducerFenced));
    acc.handle_encoded(jobs);
    let done = completions(&mut acc);
    assert!(
        matches!(&done[..], [(1, Err(failure))] if failure.error.is_fatal()),
        "{done:?}"
    );
    assert!(acc.is_idle());
}
