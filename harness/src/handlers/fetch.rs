//! Fetch (key 1), v4-18: reads stored batches (KIP-74 byte limits, KIP-227 sessions,
//! KIP-320 leader epochs, KIP-392 follower fetching, KIP-516 topic ids in v13+, KIP-951
//! leader hints in v16+).
//!
//! Fetch sessions: this broker behaves like a Kafka broker whose session cache has no room
//! (`max.incremental.fetch.session.cache.slots=0`). Every full fetch (epoch -1 or 0) is
//! answered in full with session id 0, which tells the client that no session was created;
//! an incremental fetch (any other epoch) gets FETCH_SESSION_ID_NOT_FOUND, after which
//! clients fall back to full fetches.
//!
//! Reads follow Kafka's `ReplicaManager.readFromLog`: partitions in request order, each
//! limited by `partition_max_bytes` and what is left of `max_bytes`; bytes are cut at the
//! limit, possibly inside a batch, except that until some partition returned data the first
//! batch is returned whole whatever its size. Consumers (v11+) may fetch from followers,
//! which share the leader's log here. `min_bytes` not yet reached parks the request.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use franzy::proto::ErrorCode;
use kafka_protocol::messages::fetch_response::{
    EpochEndOffset, FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ResponseKind};

use uuid::Uuid;

use super::{text, Reply, RequestContext};
use crate::cluster::ClusterState;

/// Kafka's broker-side cap on a fetch response (`fetch.max.bytes`, 55 MiB).
pub const FETCH_MAX_BYTES: usize = 57_671_680;

/// Serves a fetch request, or parks it until `min_bytes` can be met.
pub fn handle(cluster: &ClusterState, ctx: &RequestContext, req: FetchRequest) -> Reply {
    let version = ctx.api_version;
    if version >= 7 && !matches!(req.session_epoch, -1 | 0) {
        return Reply::Respond(ResponseKind::Fetch(
            FetchResponse::default().with_error_code(ErrorCode::FetchSessionIdNotFound.code()),
        ));
    }
    let replica_id = if version >= 15 {
        req.replica_state.replica_id.0
    } else {
        req.replica_id.0
    };
    let from_consumer = replica_id < 0;
    let only_leader = !from_consumer || version < 11;
    let read_committed = req.isolation_level == 1;
    let mut remaining = usize::try_from(req.max_bytes)
        .unwrap_or(0)
        .min(FETCH_MAX_BYTES);
    let mut min_one_batch = true;
    let mut total_bytes: usize = 0;
    // Errors and diverging epochs answer at once, as in Kafka's `DelayedFetch`.
    let mut any_error = false;
    let mut any_partition = false;
    let mut leaders = BTreeSet::new();
    let mut responses = Vec::with_capacity(req.topics.len());
    // Partition entries past the cap are refused, not read.
    let max_entries = cluster.config().max_partitions_per_request;
    let mut entries = 0usize;
    // Where the cap cut the request: the entries from there on are answered by `finish`,
    // after the cluster lock.
    let mut cut = None;
    'topics: for (topic_index, topic) in req.topics.iter().enumerate() {
        let name = if version >= 13 {
            cluster
                .topic_by_id(topic.topic_id)
                .map(|t| t.name().to_string())
        } else {
            Some(topic.topic.0.as_str().to_string())
        };
        let mut partitions = Vec::with_capacity(topic.partitions.len().min(max_entries));
        for (partition_index, fp) in topic.partitions.iter().enumerate() {
            any_partition = true;
            entries += 1;
            if entries > max_entries {
                any_error = true;
                cut = Some((topic_index, partition_index));
                let mut response = FetchableTopicResponse::default().with_partitions(partitions);
                if version >= 13 {
                    response.topic_id = topic.topic_id;
                } else {
                    response.topic = topic.topic.clone();
                }
                responses.push(response);
                break 'topics;
            }
            let Some(name) = name.as_deref() else {
                any_error = true;
                partitions.push(failed(fp.partition, ErrorCode::UnknownTopicId));
                continue;
            };
            if let Some(code) = ctx.partition_error(name, fp.partition) {
                any_error = true;
                partitions.push(failed(fp.partition, code));
                continue;
            }
            let current_epoch = if version >= 9 {
                fp.current_leader_epoch
            } else {
                -1
            };
            let p = match cluster.client_partition(
                name,
                fp.partition,
                ctx.broker_id,
                current_epoch,
                only_leader,
            ) {
                Ok(p) => p,
                Err(code) => {
                    any_error = true;
                    let mut data = failed(fp.partition, code);
                    if version >= 16
                        && matches!(
                            code,
                            ErrorCode::NotLeaderOrFollower | ErrorCode::FencedLeaderEpoch
                        )
                    {
                        if let Some(p) = cluster.partition(name, fp.partition) {
                            if p.leader() >= 0 {
                                leaders.insert(p.leader());
                                data.current_leader = LeaderIdAndEpoch::default()
                                    .with_leader_id(p.leader().into())
                                    .with_leader_epoch(p.leader_epoch());
                            }
                        }
                    }
                    partitions.push(data);
                    continue;
                }
            };
            let log = p.log();
            let mut data = PartitionData::default()
                .with_partition_index(fp.partition)
                .with_high_watermark(log.high_watermark())
                .with_last_stable_offset(log.last_stable_offset())
                .with_log_start_offset(log.log_start_offset())
                .with_aborted_transactions(read_committed.then(Vec::new))
                .with_records(Some(Bytes::new()));
            if version >= 12 && fp.last_fetched_epoch >= 0 {
                let (epoch, end_offset) = log
                    .leader_epochs()
                    .end_offset_for(fp.last_fetched_epoch, log.log_end_offset());
                if epoch < fp.last_fetched_epoch || end_offset < fp.fetch_offset {
                    // KIP-595/KIP-320: tell the fetcher where its history diverged.
                    data.diverging_epoch = EpochEndOffset::default()
                        .with_epoch(epoch)
                        .with_end_offset(end_offset);
                    any_error = true;
                    partitions.push(data);
                    continue;
                }
            }
            let limit = usize::try_from(fp.partition_max_bytes)
                .unwrap_or(0)
                .min(remaining);
            match log.read(fp.fetch_offset, limit, min_one_batch) {
                Ok(records) => {
                    if !records.is_empty() {
                        min_one_batch = false;
                    }
                    remaining = remaining.saturating_sub(records.len());
                    total_bytes = total_bytes.saturating_add(records.len());
                    data.records = Some(records);
                    partitions.push(data);
                }
                Err(code) => {
                    any_error = true;
                    partitions.push(failed(fp.partition, code));
                }
            }
        }
        let mut response = FetchableTopicResponse::default().with_partitions(partitions);
        if version >= 13 {
            response.topic_id = topic.topic_id;
        } else {
            response.topic = topic.topic.clone();
        }
        responses.push(response);
    }
    let min_bytes = usize::try_from(req.min_bytes).unwrap_or(0);
    if !ctx.deadline_reached
        && req.max_wait_ms > 0
        && any_partition
        && !any_error
        && total_bytes < min_bytes
    {
        return Reply::Park {
            max_wait: Duration::from_millis(u64::try_from(req.max_wait_ms).unwrap_or(0)),
        };
    }
    let mut response = FetchResponse::default().with_responses(responses);
    if version >= 16 {
        response.node_endpoints = leaders
            .into_iter()
            .filter_map(|id| cluster.broker(id))
            .map(|b| {
                NodeEndpoint::default()
                    .with_node_id(b.id.into())
                    .with_host(text(&b.host))
                    .with_port(b.port)
            })
            .collect();
    }
    match cut {
        Some(from) => Reply::Finish(super::Unfinished::Fetch(FetchPastCap {
            response,
            req,
            from,
            version,
        })),
        None => Reply::Respond(ResponseKind::Fetch(response)),
    }
}

/// A fetch that named more partitions than the cap: the answer so far, and where the entries
/// answered INVALID_REQUEST by [`finish`] begin (topic, partition within it).
#[derive(Debug)]
pub struct FetchPastCap {
    response: FetchResponse,
    req: FetchRequest,
    from: (usize, usize),
    version: i16,
}

/// Completes the answer of a fetch past the cap, without the cluster lock.
pub fn finish(past_cap: FetchPastCap) -> Reply {
    let FetchPastCap {
        mut response,
        req,
        from: (first_topic, first_partition),
        version,
    } = past_cap;
    for (topic_index, topic) in req.topics.into_iter().enumerate().skip(first_topic) {
        let skip = if topic_index == first_topic {
            first_partition
        } else {
            0
        };
        let refused = topic
            .partitions
            .iter()
            .skip(skip)
            .map(|p| failed(p.partition, ErrorCode::InvalidRequest));
        match response.responses.get_mut(topic_index) {
            Some(answered) if topic_index == first_topic => answered.partitions.extend(refused),
            _ => {
                let mut answer =
                    FetchableTopicResponse::default().with_partitions(refused.collect());
                if version >= 13 {
                    answer.topic_id = topic.topic_id;
                } else {
                    answer.topic = topic.topic;
                }
                response.responses.push(answer);
            }
        }
    }
    Reply::Respond(ResponseKind::Fetch(response))
}

/// The answer that fails the whole fetch with `code`: the top-level error (v7+) and, before
/// v13, the same error on every partition, as Kafka's `FetchRequest.getErrorResponse`.
pub fn error_response(req: &FetchRequest, version: i16, code: ErrorCode) -> FetchResponse {
    let responses = if version < 13 {
        req.topics
            .iter()
            .map(|topic| {
                FetchableTopicResponse::default()
                    .with_topic(topic.topic.clone())
                    .with_partitions(
                        topic
                            .partitions
                            .iter()
                            .map(|p| failed(p.partition, code))
                            .collect(),
                    )
            })
            .collect()
    } else {
        Vec::new()
    };
    FetchResponse::default()
        .with_error_code(code.code())
        .with_responses(responses)
}

/// The (topic, partition) pairs of `req`, topic ids (v13+) resolved by `resolve`.
pub fn partitions(
    resolve: &dyn Fn(Uuid) -> Option<Arc<str>>,
    req: &FetchRequest,
    version: i16,
) -> Vec<(Arc<str>, i32)> {
    let mut out = Vec::new();
    for topic in &req.topics {
        let name: Arc<str> = if version >= 13 {
            match resolve(topic.topic_id) {
                Some(name) => name,
                None => continue,
            }
        } else {
            Arc::from(topic.topic.0.as_str())
        };
        out.extend(topic.partitions.iter().map(|p| (name.clone(), p.partition)));
    }
    out
}

fn failed(partition: i32, code: ErrorCode) -> PartitionData {
    PartitionData::default()
        .with_partition_index(partition)
        .with_error_code(code.code())
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_aborted_transactions(None)
        .with_records(Some(Bytes::new()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::test_batches::BatchBuilder;
    use crate::handlers::test_support::{assert_encodes, cluster_with, ctx, NOW};
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use uuid::Uuid;

    fn fetch_req(
        topic_id: Uuid,
        parts: &[(i32, i64, i32)],
        max_bytes: i32,
        min_bytes: i32,
    ) -> FetchRequest {
        let partitions = parts
            .iter()
            .map(|&(p, offset, max)| {
                FetchPartition::default()
                    .with_partition(p)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(max)
            })
            .collect();
        FetchRequest::default()
            .with_replica_id((-1).into())
            .with_max_wait_ms(500)
            .with_min_bytes(min_bytes)
            .with_max_bytes(max_bytes)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic(super::super::topic_name("t"))
                .with_topic_id(topic_id)
                .with_partitions(partitions)])
    }

    fn respond(
        cluster: &ClusterState,
        context: &RequestContext,
        req: FetchRequest,
    ) -> FetchResponse {
        match handle(cluster, context, req) {
            Reply::Respond(r) => {
                assert_encodes(&r, context.api_version);
                match r {
                    ResponseKind::Fetch(r) => r,
                    other => panic!("unexpected {other:?}"),
                }
            }
            other => panic!("expected a response, got {other:?}"),
        }
    }

    fn seeded() -> (ClusterState, Vec<usize>) {
        let mut c = cluster_with(2);
        let mut sizes = Vec::new();
        for size in [100, 2000, 100] {
            let batch = BatchBuilder::new(NOW).records(1, size).build();
            sizes.push(batch.len());
            c.append_records("t", 0, &batch, NOW).expect("append p0");
        }
        c.append_records("t", 1, &BatchBuilder::new(NOW).records(1, 10).build(), NOW)
            .expect("append p1");
        (c, sizes)
    }

    #[test]
    fn every_version_fetches_and_encodes() {
        let (c, sizes) = seeded();
        let id = c.topic("t").map_or(Uuid::nil(), |t| t.id());
        for version in 4..=18 {
            let r = respond(
                &c,
                &ctx(0, version),
                fetch_req(id, &[(0, 0, 1 << 20)], 1 << 20, 1),
            );
            let p = &r.responses[0].partitions[0];
            assert_eq!(p.error_code, 0, "v{version}");
            assert_eq!(
                (p.high_watermark, p.last_stable_offset, p.log_start_offset),
                (3, 3, 0)
            );
            assert_eq!(p.records.as_ref().map(Bytes::len), Some(sizes.iter().sum()));
            assert_eq!(p.aborted_transactions, None);
            assert_eq!(r.session_id, 0);
        }
    }

    #[test]
    fn limits_cut_batches_but_the_first_batch_comes_whole() {
        let (c, sizes) = seeded();
        // Starting at the 2000-byte batch with a 500-byte budget: KIP-74 returns it whole,
        // and the next partition gets nothing since the budget is spent.
        let r = respond(
            &c,
            &ctx(0, 12),
            fetch_req(Uuid::nil(), &[(0, 1, 500), (1, 0, 500)], 500, 1),
        );
        let records = |i: usize| {
            r.responses[0].partitions[i]
                .records
                .as_ref()
                .map_or(0, Bytes::len)
        };
        assert_eq!((records(0), records(1)), (sizes[1], 0));
        // A partition limit inside the second batch cuts it there.
        let cut = sizes[0] + 50;
        let r = respond(
            &c,
            &ctx(0, 12),
            fetch_req(Uuid::nil(), &[(0, 0, cut as i32)], 1 << 20, 1),
        );
        assert_eq!(
            r.responses[0].partitions[0]
                .records
                .as_ref()
                .map(Bytes::len),
            Some(cut)
        );
        // Once a partition returned data, later partitions are held to the budget left.
        let p1_len = c
            .partition_log("t", 1)
            .map_or(0, |l| l.batches()[0].bytes().len());
        let budget = sizes[2] + 20;
        let r = respond(
            &c,
            &ctx(0, 12),
            fetch_req(Uuid::nil(), &[(0, 2, 1000), (1, 0, 1000)], budget as i32, 1),
        );
        let got: Vec<usize> = r.responses[0]
            .partitions
            .iter()
            .map(|p| p.records.as_ref().map_or(0, Bytes::len))
            .collect();
        assert_eq!(got, vec![sizes[2], 20.min(p1_len)]);
    }

    #[test]
    fn out_of_range_offsets_are_refused() {
        let (c, _) = seeded();
        for offset in [-1, 4] {
            let r = respond(
                &c,
                &ctx(0, 12),
                fetch_req(Uuid::nil(), &[(0, offset, 1000)], 1000, 0),
            );
            let p = &r.responses[0].partitions[0];
            assert_eq!(p.error_code, ErrorCode::OffsetOutOfRange.code());
            assert_eq!((p.high_watermark, p.log_start_offset), (-1, -1));
        }
        // The high watermark itself is a valid, empty position.
        let r = respond(
            &c,
            &ctx(0, 12),
            fetch_req(Uuid::nil(), &[(0, 3, 1000)], 1000, 0),
        );
        assert_eq!(r.responses[0].partitions[0].error_code, 0);
    }

    #[test]
    fn followers_serve_consumers_from_v11_only() {
        let (c, _) = seeded();
        let r = respond(
            &c,
            &ctx(1, 10),
            fetch_req(Uuid::nil(), &[(0, 0, 1000)], 1000, 0),
        );
        assert_eq!(
            r.responses[0].partitions[0].error_code,
            ErrorCode::NotLeaderOrFollower.code()
        );
        let r = respond(
            &c,
            &ctx(1, 11),
            fetch_req(Uuid::nil(), &[(0, 0, 1000)], 1000, 0),
        );
        assert_eq!(r.responses[0].partitions[0].error_code, 0);
        // A replica fetching (replica_id >= 0) must ask the leader.
        let req = fetch_req(Uuid::nil(), &[(0, 0, 1000)], 1000, 0).with_replica_id(2.into());
        let r = respond(&c, &ctx(1, 12), req);
        assert_eq!(
            r.responses[0].partitions[0].error_code,
            ErrorCode::NotLeaderOrFollower.code()
        );
    }

    #[test]
    fn stale_epochs_are_fenced_and_v16_names_the_leader() {
        let (mut c, _) = seeded();
        c.set_leader("t", 0, 2).expect("move leader");
        let mut req = fetch_req(Uuid::nil(), &[(0, 0, 1000)], 1000, 0);
        req.topics[0].partitions[0].current_leader_epoch = 0;
        let r = respond(&c, &ctx(2, 12), req.clone());
        assert_eq!(
            r.responses[0].partitions[0].error_code,
            ErrorCode::FencedLeaderEpoch.code()
        );
        req.topics[0].partitions[0].current_leader_epoch = 1;
        let id = c.topic("t").map_or(Uuid::nil(), |t| t.id());
        req.topics[0].topic_id = id;
        // A follower serves consumers (KIP-392), so ask as a replica would.
        req.replica_state.replica_id = 1.into();
        let r = respond(&c, &ctx(0, 16), req);
        let p = &r.responses[0].partitions[0];
        assert_eq!(p.error_code, ErrorCode::NotLeaderOrFollower.code());
        assert_eq!(
            (p.current_leader.leader_id.0, p.current_leader.leader_epoch),
            (2, 1)
        );
        assert_eq!(
            r.node_endpoints
                .iter()
                .map(|n| n.node_id.0)
                .collect::<Vec<_>>(),
            vec![2]
        );
    }

    #[test]
    fn topic_ids_resolve_from_v13() {
        let (c, _) = seeded();
        let id = c.topic("t").map_or(Uuid::nil(), |t| t.id());
        let r = respond(&c, &ctx(0, 13), fetch_req(id, &[(0, 0, 1000)], 1000, 0));
        assert_eq!(r.responses[0].topic_id, id);
        assert_eq!(r.responses[0].partitions[0].error_code, 0);
        let r = respond(
            &c,
            &ctx(0, 13),
            fetch_req(Uuid::from_u128(7), &[(0, 0, 1000)], 1000, 0),
        );
        assert_eq!(
            r.responses[0].partitions[0].error_code,
            ErrorCode::UnknownTopicId.code()
        );
        assert_eq!(
            partitions(
                &|id| c.topic_by_id(id).map(|t| Arc::from(t.name())),
                &fetch_req(id, &[(1, 0, 1)], 1, 0),
                13
            ),
            vec![("t".into(), 1)]
        );
    }

    #[test]
    fn waits_for_min_bytes_until_data_or_deadline() {
        let (mut c, _) = seeded();
        let req = fetch_req(Uuid::nil(), &[(0, 3, 1000)], 1000, 1);
        assert!(matches!(
            handle(&c, &ctx(0, 12), req.clone()),
            Reply::Park { max_wait } if max_wait == Duration::from_millis(500)
        ));
        let mut last_call = ctx(0, 12);
        last_call.deadline_reached = true;
        let r = respond(&c, &last_call, req.clone());
        assert_eq!(
            r.responses[0].partitions[0]
                .records
                .as_ref()
                .map(Bytes::len),
            Some(0)
        );
        c.append_records("t", 0, &BatchBuilder::new(NOW).record(b"x").build(), NOW)
            .expect("append");
        let r = respond(&c, &ctx(0, 12), req);
        assert!(r.responses[0].partitions[0]
            .records
            .as_ref()
            .is_some_and(|b| !b.is_empty()));
        // An error answers at once.
        let req = fetch_req(Uuid::nil(), &[(0, 99, 1000)], 1000, 1);
        assert!(matches!(handle(&c, &ctx(0, 12), req), Reply::Respond(_)));
    }

    #[test]
    fn incremental_sessions_are_not_found_and_read_committed_lists_no_aborts() {
        let (c, _) = seeded();
        let req = fetch_req(Uuid::nil(), &[(0, 0, 1000)], 1000, 0)
            .with_session_id(12)
            .with_session_epoch(3);
        let r = respond(&c, &ctx(0, 12), req);
        assert_eq!(r.error_code, ErrorCode::FetchSessionIdNotFound.code());
        assert!(r.responses.is_empty());
        let req = fetch_req(Uuid::nil(), &[(0, 0, 1000)], 1000, 0)
            .with_session_epoch(0)
            .with_isolation_level(1);
        let r = respond(&c, &ctx(0, 12), req);
        assert_eq!(r.session_id, 0);
        assert_eq!(
            r.responses[0].partitions[0].aborted_transactions,
            Some(Vec::new())
        );
    }

    #[test]
    fn absurd_limits_do_not_panic() {
        let (c, sizes) = seeded();
        let r = respond(
            &c,
            &ctx(0, 12),
            fetch_req(Uuid::nil(), &[(0, 0, -5), (0, 0, i32::MAX)], i32::MIN, 0),
        );
        // Negative budgets count as zero; the first batch still comes whole.
        assert_eq!(
            r.responses[0].partitions[0]
                .records
                .as_ref()
                .map(Bytes::len),
            Some(sizes[0])
        );
        let r = error_response(
            &fetch_req(Uuid::nil(), &[(0, 0, 1)], 1, 0),
            12,
            ErrorCode::NotController,
        );
        assert_eq!(
            r.responses[0].partitions[0].error_code,
            ErrorCode::NotController.code()
        );
        assert_encodes(&ResponseKind::Fetch(r), 12);
    }
}
