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
//! which share the leader's log here.
//!
//! Isolation (KIP-98): a read_committed fetch (`isolation_level` 1) reads only batches below
//! the partition's last stable offset and lists the aborted transactions that overlap what
//! it returns (producer id and first offset, as Kafka's `TransactionIndex.collectAbortedTxns`
//! finds them: marker at or after the fetch offset, first offset before the end of the
//! returned batches), an empty list when it returns nothing; read_uncommitted reads up to
//! the high watermark and gets no list. Every answer carries the last stable offset. Since
//! only what is below the last stable offset is read, a read_committed long poll counts only
//! those bytes towards `min_bytes`, and a marker (an append) wakes it.
//!
//! A fetch short of `min_bytes` (with `max_wait_ms` > 0) parks in the purgatory on the
//! partitions it reads ([`crate::cluster::WaitKey::Partition`]), as Kafka's `DelayedFetch`:
//! an append, a leader or ISR change, DeleteRecords or the topic's deletion makes it look
//! again ([`complete`]); it answers once it has `min_bytes`, once some partition fails or
//! its history diverged, or at `max_wait_ms` with whatever there is.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use franzy::proto::ErrorCode;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, EpochEndOffset, FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint,
    PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse, RequestKind, ResponseKind};
use uuid::Uuid;

use super::{text, Completion, Park, Reply};
use crate::cluster::{ClusterState, Parked, RequestContext, Resolution, WaitKey, Wake};

/// Kafka's broker-side cap on a fetch response (`fetch.max.bytes`, 55 MiB).
pub const FETCH_MAX_BYTES: usize = 57_671_680;

/// Serves a fetch request, or parks it (with the partitions it reads as keys) until
/// `min_bytes` can be met or `max_wait_ms` has passed.
pub fn handle(cluster: &ClusterState, ctx: &RequestContext, req: FetchRequest) -> Reply {
    match read(cluster, ctx, &req, Look::First) {
        Read::Short(keys) => Reply::Park(Park {
            keys,
            deadline: ctx.now + Duration::from_millis(u64::try_from(req.max_wait_ms).unwrap_or(0)),
            request: RequestKind::Fetch(req),
        }),
        Read::Done(done) => answer(*done, req, ctx.api_version),
    }
}

/// Looks again at a fetch that waited: answers once `min_bytes` can be met, a partition
/// fails or moves, or the wait is over; else it waits on.
pub fn complete(cluster: &mut ClusterState, parked: Parked, wake: Wake) -> Completion {
    let Parked {
        request: RequestKind::Fetch(req),
        context,
    } = parked
    else {
        return super::mismatched_parked(parked);
    };
    let look = match wake {
        Wake::Touched => Look::Again,
        Wake::Due => Look::Last,
        Wake::Resolved(Resolution::Error(code)) => {
            let response = error_response(&req, context.api_version, code);
            return Completion::Done(Reply::Respond(ResponseKind::Fetch(response)));
        }
    };
    match read(cluster, &context, &req, look) {
        Read::Short(_) => Completion::Wait(Parked {
            request: RequestKind::Fetch(req),
            context,
        }),
        Read::Done(done) => Completion::Done(answer(*done, req, context.api_version)),
    }
}

/// Which look at the log this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Look {
    /// When the request arrives: it may wait, and then names its keys.
    First,
    /// After a key was touched: it may wait on.
    Again,
    /// At the deadline: whatever there is.
    Last,
}

enum Read {
    /// Fewer than `min_bytes` and nothing that answers at once: wait (on these keys, on
    /// the first look).
    Short(Vec<WaitKey>),
    Done(Box<Done>),
}

struct Done {
    response: FetchResponse,
    /// Where the cap cut the request (topic, partition within it).
    cut: Option<(usize, usize)>,
}

fn answer(done: Done, req: FetchRequest, version: i16) -> Reply {
    let Done { response, cut } = done;
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

/// Reads what `req` asks for, as Kafka's `ReplicaManager.readFromLog` would.
fn read(cluster: &ClusterState, ctx: &RequestContext, req: &FetchRequest, look: Look) -> Read {
    let version = ctx.api_version;
    if version >= 7 && !matches!(req.session_epoch, -1 | 0) {
        return Read::Done(Box::new(Done {
            response: FetchResponse::default()
                .with_error_code(ErrorCode::FetchSessionIdNotFound.code()),
            cut: None,
        }));
    }
    let replica_id = if version >= 15 {
        req.replica_state.replica_id.0
    } else {
        req.replica_id.0
    };
    let from_consumer = replica_id < 0;
    let only_leader = !from_consumer || version < 11;
    let read_committed = req.isolation_level == 1;
    let min_bytes = usize::try_from(req.min_bytes).unwrap_or(0);
    let may_wait = look != Look::Last && req.max_wait_ms > 0 && min_bytes > 0;
    let mut keys = Vec::new();
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
        let found = if version >= 13 {
            cluster.topic_by_id(topic.topic_id)
        } else {
            cluster.topic(topic.topic.0.as_str())
        };
        let name = if version >= 13 {
            found.map(|t| t.name())
        } else {
            Some(topic.topic.0.as_str())
        };
        let topic_id = found.map(|t| t.id());
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
            let Some(name) = name else {
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
            if look == Look::First && may_wait {
                if let Some(id) = topic_id {
                    keys.push(WaitKey::Partition(id, fp.partition));
                }
            }
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
            // read_committed reads up to the last stable offset, and reports the aborted
            // transactions that overlap what it returns (Kafka's `collectAbortedTxns`).
            let max_offset = if read_committed {
                log.last_stable_offset()
            } else {
                log.high_watermark()
            };
            match log.read_to(fp.fetch_offset, limit, min_one_batch, max_offset) {
                Ok(read) => {
                    let records = read.records;
                    if !records.is_empty() {
                        min_one_batch = false;
                        if read_committed {
                            data.aborted_transactions = Some(
                                log.aborted_transactions(fp.fetch_offset, read.upper_bound_offset)
                                    .into_iter()
                                    .map(|a| {
                                        AbortedTransaction::default()
                                            .with_producer_id(a.producer_id.into())
                                            .with_first_offset(a.first_offset)
                                    })
                                    .collect(),
                            );
                        }
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
    if may_wait && any_partition && !any_error && total_bytes < min_bytes {
        return Read::Short(keys);
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
    Read::Done(Box::new(Done { response, cut }))
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
    use crate::cluster::{Time, WaiterId};
    use crate::handlers::test_support::{api_ctx, assert_encodes, cluster_with, ctx, NOW};
    use franzy::proto::ApiKey;
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

    /// Parks `req` (v12) as its handler asks, as waiter `waiter`.
    fn park_fetch(c: &mut ClusterState, req: FetchRequest, waiter: u64) -> Vec<WaitKey> {
        park_fetch_at(c, req, waiter, 12)
    }

    fn park_fetch_at(
        c: &mut ClusterState,
        req: FetchRequest,
        waiter: u64,
        version: i16,
    ) -> Vec<WaitKey> {
        let mut context = api_ctx(ApiKey::Fetch, 0, version);
        context.waiter = WaiterId(waiter);
        let Reply::Park(park) = handle(c, &context, req) else {
            panic!("the fetch waits");
        };
        let keys = park.keys.clone();
        assert!(crate::handlers::park(c, context, park, 100).is_none());
        keys
    }

    fn answered(c: &mut ClusterState) -> Vec<(u64, FetchResponse)> {
        crate::handlers::complete_ready(c)
            .into_iter()
            .map(|(waiter, reply)| match reply {
                Reply::Respond(ResponseKind::Fetch(r)) => (waiter.0, r),
                other => panic!("expected a fetch response, got {other:?}"),
            })
            .collect()
    }

    fn bytes_of(r: &FetchResponse) -> usize {
        r.responses[0].partitions[0]
            .records
            .as_ref()
            .map_or(0, Bytes::len)
    }

    #[test]
    fn a_fetch_short_of_min_bytes_waits_on_its_partitions_until_data_or_deadline() {
        let (mut c, _) = seeded();
        let id = c.topic("t").map_or(Uuid::nil(), |t| t.id());
        let req = fetch_req(Uuid::nil(), &[(0, 3, 1000)], 1000, 1);
        let Reply::Park(park) = handle(&c, &api_ctx(ApiKey::Fetch, 0, 12), req.clone()) else {
            panic!("the fetch waits");
        };
        assert_eq!(park.keys, vec![WaitKey::Partition(id, 0)]);
        assert_eq!(park.deadline, Time::from_start(Duration::from_millis(500)));
        park_fetch(&mut c, req.clone(), 1);
        assert!(answered(&mut c).is_empty());
        // An append elsewhere does not wake it; time short of the deadline does not either.
        c.append_records("t", 1, &BatchBuilder::new(NOW).record(b"y").build(), NOW)
            .expect("append");
        c.handle_timeout(Time::from_start(Duration::from_millis(499)));
        assert!(answered(&mut c).is_empty());
        assert_eq!(c.waiting().stats().touched, 0);
        // An append to its partition answers it, with the record.
        c.append_records("t", 0, &BatchBuilder::new(NOW).record(b"x").build(), NOW)
            .expect("append");
        let answers = answered(&mut c);
        assert_eq!(answers.len(), 1);
        assert!(bytes_of(&answers[0].1) > 0);
        assert!(c.waiting().is_empty());
        // At the end of the log again: the deadline answers with nothing.
        let req = fetch_req(Uuid::nil(), &[(0, 4, 1000)], 1000, 1);
        park_fetch(&mut c, req, 2);
        assert_eq!(
            c.poll_timeout(),
            Some(Time::from_start(Duration::from_millis(500)))
        );
        c.handle_timeout(Time::from_start(Duration::from_millis(500)));
        let answers = answered(&mut c);
        assert_eq!((answers[0].0, bytes_of(&answers[0].1)), (2, 0));
        assert_eq!(answers[0].1.responses[0].partitions[0].error_code, 0);
        assert_eq!(c.poll_timeout(), None);
        // An error answers at once, without waiting.
        let req = fetch_req(Uuid::nil(), &[(0, 99, 1000)], 1000, 1);
        assert!(matches!(handle(&c, &ctx(0, 12), req), Reply::Respond(_)));
    }

    #[test]
    fn a_waiting_fetch_answers_when_its_leader_moves_or_its_topic_goes() {
        let (mut c, _) = seeded();
        // Before v11 only the leader serves (from v11 a follower serves consumers, and the
        // fetch would wait on).
        park_fetch_at(
            &mut c,
            fetch_req(Uuid::nil(), &[(0, 3, 1000)], 1000, 1),
            1,
            10,
        );
        c.set_leader("t", 0, 1).expect("moves");
        let answers = answered(&mut c);
        assert_eq!(
            answers[0].1.responses[0].partitions[0].error_code,
            ErrorCode::NotLeaderOrFollower.code()
        );
        c.set_leader("t", 0, 0).expect("moves back");
        park_fetch(&mut c, fetch_req(Uuid::nil(), &[(0, 3, 1000)], 1000, 1), 2);
        c.delete_topic("t").expect("deleted");
        let answers = answered(&mut c);
        assert_eq!(
            answers[0].1.responses[0].partitions[0].error_code,
            ErrorCode::UnknownTopicOrPartition.code()
        );
        // DeleteRecords makes it look again; at the log end it still has nothing, and waits.
        let (mut c, _) = seeded();
        park_fetch(&mut c, fetch_req(Uuid::nil(), &[(0, 3, 1000)], 1000, 1), 3);
        c.delete_records("t", 0, -1).expect("truncated to the end");
        assert!(answered(&mut c).is_empty());
        assert_eq!((c.waiting().stats().touched, c.waiting().len()), (1, 1));
    }

    #[test]
    fn many_fetches_waiting_on_one_partition_answer_together_and_once() {
        let (mut c, _) = seeded();
        for waiter in 1..=50 {
            park_fetch(
                &mut c,
                fetch_req(Uuid::nil(), &[(0, 3, 1000)], 1000, 1),
                waiter,
            );
        }
        c.append_records("t", 0, &BatchBuilder::new(NOW).record(b"x").build(), NOW)
            .expect("append");
        let waiters: Vec<u64> = answered(&mut c).into_iter().map(|(w, _)| w).collect();
        assert_eq!(waiters, (1..=50).collect::<Vec<_>>());
        let stats = c.waiting().stats();
        assert_eq!((stats.parked, stats.touched, stats.due), (50, 50, 0));
    }

    #[test]
    fn a_touched_fetch_still_short_waits_on_with_its_deadline() {
        let (mut c, _) = seeded();
        // Wants 10 KB: a small record is not enough.
        park_fetch(
            &mut c,
            fetch_req(Uuid::nil(), &[(0, 3, 100_000)], 100_000, 10_000),
            1,
        );
        c.append_records("t", 0, &BatchBuilder::new(NOW).record(b"x").build(), NOW)
            .expect("append");
        assert!(answered(&mut c).is_empty());
        assert_eq!(c.waiting().len(), 1);
        assert_eq!(
            c.poll_timeout(),
            Some(Time::from_start(Duration::from_millis(500)))
        );
        c.handle_timeout(Time::from_start(Duration::from_secs(1)));
        let answers = answered(&mut c);
        assert!(bytes_of(&answers[0].1) > 0, "what there is at the deadline");
        let stats = c.waiting().stats();
        assert_eq!((stats.parked, stats.touched, stats.due), (2, 1, 1));
    }

    #[test]
    fn a_full_purgatory_answers_at_once() {
        let config = crate::cluster::ClusterConfig {
            wait_limits: crate::cluster::WaitLimits {
                waiters: 0,
                bytes: 1 << 20,
            },
            ..Default::default()
        };
        let mut c = crate::handlers::test_support::cluster_configured(2, config);
        let context = api_ctx(ApiKey::Fetch, 0, 12);
        let Reply::Park(park) = handle(
            &c,
            &context,
            fetch_req(Uuid::nil(), &[(0, 0, 1000)], 1000, 1),
        ) else {
            panic!("the fetch would wait");
        };
        let reply = crate::handlers::park(&mut c, context, park, 100);
        assert!(
            matches!(reply, Some(Reply::Respond(ResponseKind::Fetch(_)))),
            "{reply:?}"
        );
        assert_eq!(c.waiting().stats().refused, 1);
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

    /// Appends a transactional batch of `producer` to t/0 as a verified produce would.
    fn append_txn(c: &mut ClusterState, producer: i64, sequence: i32) {
        let batch = BatchBuilder::new(NOW)
            .record(b"t")
            .producer(producer, 0, sequence)
            .transactional()
            .build();
        let mut budget = crate::cluster::InflateBudget::per_batch_only();
        c.append_batch("t", 0, &batch, NOW, None, &mut budget, true)
            .expect("verified transactional append");
    }

    fn end_txn(c: &mut ClusterState, producer: i64, commit: bool) {
        let marker = crate::cluster::TransactionMarker {
            producer_id: producer,
            producer_epoch: 0,
            commit,
            coordinator_epoch: 0,
        };
        c.append_marker("t", 0, &marker, NOW).expect("marker");
    }

    #[test]
    fn read_committed_stops_at_the_last_stable_offset_and_lists_overlapping_aborts() {
        let (mut c, _) = seeded();
        // 0-2 plain; p7 at 3 aborted (marker 4); p8 at 5, still open; plain at 6.
        append_txn(&mut c, 7, 0);
        end_txn(&mut c, 7, false);
        append_txn(&mut c, 8, 0);
        c.append_records("t", 0, &BatchBuilder::new(NOW).record(b"p").build(), NOW)
            .expect("plain");
        let fetch = |c: &ClusterState, offset: i64, isolation: i8| {
            let req = fetch_req(Uuid::nil(), &[(0, offset, 1 << 20)], 1 << 20, 0)
                .with_isolation_level(isolation);
            respond(c, &ctx(0, 12), req).responses[0].partitions[0].clone()
        };
        let uncommitted = fetch(&c, 0, 0);
        assert_eq!(
            (uncommitted.high_watermark, uncommitted.last_stable_offset),
            (7, 5)
        );
        assert_eq!(uncommitted.aborted_transactions, None);
        let all = c.partition_log("t", 0).map_or(0, |l| {
            l.batches().iter().map(|b| b.bytes().len()).sum::<usize>()
        });
        assert_eq!(uncommitted.records.as_ref().map(Bytes::len), Some(all));
        let committed = fetch(&c, 0, 1);
        assert_eq!(committed.last_stable_offset, 5);
        let below_lso = c.partition_log("t", 0).map_or(0, |l| {
            l.batches()
                .iter()
                .filter(|b| b.base_offset() < 5)
                .map(|b| b.bytes().len())
                .sum::<usize>()
        });
        assert_eq!(committed.records.as_ref().map(Bytes::len), Some(below_lso));
        let aborted = committed.aborted_transactions.unwrap_or_default();
        assert_eq!(
            aborted
                .iter()
                .map(|a| (a.producer_id.0, a.first_offset))
                .collect::<Vec<_>>(),
            vec![(7, 3)]
        );
        // From past the abort marker: nothing aborted overlaps.
        let later = fetch(&c, 5, 1);
        assert_eq!(later.records.as_ref().map(Bytes::len), Some(0));
        assert_eq!(later.aborted_transactions, Some(Vec::new()));
        // ListOffsets' latest with read_committed is the last stable offset too.
        use kafka_protocol::messages::list_offsets_request::{
            ListOffsetsPartition, ListOffsetsTopic,
        };
        let list = |isolation: i8| {
            let req = kafka_protocol::messages::ListOffsetsRequest::default()
                .with_replica_id((-1).into())
                .with_isolation_level(isolation)
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(super::super::topic_name("t"))
                    .with_partitions(vec![ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(-1)])]);
            crate::handlers::list_offsets::handle(&c, &api_ctx(ApiKey::ListOffsets, 0, 9), req)
                .topics[0]
                .partitions[0]
                .offset
        };
        assert_eq!((list(0), list(1)), (7, 5));
    }

    #[test]
    fn a_read_committed_long_poll_counts_only_stable_bytes_and_wakes_on_the_marker() {
        let (mut c, _) = seeded();
        append_txn(&mut c, 7, 0);
        // At offset 3 with read_committed there is nothing stable: it waits, though the
        // open transaction's batch is there.
        let req = fetch_req(Uuid::nil(), &[(0, 3, 1000)], 1000, 1).with_isolation_level(1);
        park_fetch(&mut c, req, 1);
        append_txn(&mut c, 7, 1);
        assert!(answered(&mut c).is_empty(), "still nothing stable");
        end_txn(&mut c, 7, true);
        let answers = answered(&mut c);
        assert_eq!(answers.len(), 1);
        let p = &answers[0].1.responses[0].partitions[0];
        assert_eq!(p.last_stable_offset, 6);
        assert!(bytes_of(&answers[0].1) > 0);
        assert_eq!(p.aborted_transactions, Some(Vec::new()));
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
