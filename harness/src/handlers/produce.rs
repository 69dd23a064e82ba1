//! Produce (key 0), v3-13: appends one record batch per partition (KIP-98 framing; KIP-951
//! leader hints in v10+; topic ids in v13, KIP-516).
//!
//! First, for the whole request: transactional records (the first batch of some partition
//! has the transactional bit) without a transactional id fail every partition with
//! TRANSACTIONAL_ID_AUTHORIZATION_FAILED, as Kafka's `KafkaApis.handleProduceRequest`
//! answers; transactional batches of more than one producer id and epoch fail it with
//! INVALID_PRODUCER_ID_MAPPING (KIP-890, see [`verify_transaction`]).
//!
//! Then per partition, in Kafka's order: unknown topic (id) or partition, injected error, the
//! request-level record checks (exactly one magic-v2 batch; no zstd before v7), the
//! transaction coordinator's verification of a transactional batch that opens a transaction
//! on the partition (KIP-890 part 1; from v12 the produce adds the partition, part 2), acks,
//! leadership, `min.insync.replicas` for acks=-1, then the log's own checks, the producer's
//! epoch and sequence (idempotence, KIP-98: see `cluster::producer_state`), and the append.
//! A retried batch that is already in the log is answered with its original offsets.
//! Replication is instant, so acks=1 and acks=-1 answer the same. Produce never creates
//! topics (Kafka only auto-creates on Metadata). acks=0 gets no response at all; when a
//! partition of an acks=0 request fails, the connection is closed instead, as Kafka does.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use franzy::proto::batch_header::{BatchAttributes, BatchHeader, MAGIC_V2};
use franzy::proto::ErrorCode;
use kafka_protocol::messages::produce_response::{
    LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
use uuid::Uuid;

use super::{text, Reply, RequestContext};
use crate::cluster::log_validator::{self, InflateBudget, PrevalidatedBatch};
use crate::cluster::transactions::{Now, TransactionVersion};
use crate::cluster::{AppendLimits, ClusterConfig, ClusterError, ClusterState};

/// The work on a produce request that needs no cluster lock, done before the lock is taken
/// (see [`prepare`]): which partition entries are served, and the log-level validation of
/// their batches (CRC, record structure, decompression, timestamps) against the topics'
/// limits as [`TopicLimits`] read them.
#[derive(Debug)]
pub struct PreparedProduce {
    /// Per partition entry, in request order.
    fates: Vec<Fate>,
    /// Outcomes of the batches validated, by entry position, in request order.
    validated: Vec<(usize, PrevalidatedBatch)>,
    /// What is left of the request's decompression budget, for batches that must be
    /// validated under the lock after all (their topic changed in between).
    budget: InflateBudget,
}

/// What becomes of one partition entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Serve,
    /// A later entry of the same topic entry names the same partition: Kafka keys
    /// partitions in a map, so the last one wins and this one is neither written nor
    /// answered.
    Repeated,
    /// Past [`ClusterConfig::max_partitions_per_request`]: answered INVALID_REQUEST.
    OverCap,
}

/// The append limits of the topics a produce request names, read under the lock so that the
/// batches can be validated without it. By name (v3-12) and by id (v13).
#[derive(Debug, Default, Clone)]
pub struct TopicLimits {
    by_name: HashMap<String, AppendLimits>,
    by_id: HashMap<Uuid, (String, AppendLimits)>,
}

impl TopicLimits {
    /// The limits of every existing topic `req` names in its first `max_entries` partition
    /// entries (the others are not served).
    pub fn read(
        cluster: &ClusterState,
        req: &ProduceRequest,
        version: i16,
        max_entries: usize,
    ) -> Self {
        let mut limits = Self::default();
        let mut entries = 0usize;
        for topic in &req.topic_data {
            if entries >= max_entries {
                break;
            }
            entries = entries.saturating_add(topic.partition_data.len());
            if version >= 13 {
                if limits.by_id.contains_key(&topic.topic_id) {
                    continue;
                }
                if let Some(t) = cluster.topic_by_id(topic.topic_id) {
                    if let Some(l) = cluster.append_limits(t.name()) {
                        limits
                            .by_id
                            .insert(topic.topic_id, (t.name().to_string(), l));
                    }
                }
            } else {
                let name = topic.name.0.as_str();
                if limits.by_name.contains_key(name) {
                    continue;
                }
                if let Some(l) = cluster.append_limits(name) {
                    limits.by_name.insert(name.to_string(), l);
                }
            }
        }
        limits
    }

    fn of<'a>(
        &'a self,
        version: i16,
        name: &'a TopicName,
        id: Uuid,
    ) -> Option<(&'a str, &'a AppendLimits)> {
        if version >= 13 {
            self.by_id.get(&id).map(|(n, l)| (n.as_str(), l))
        } else {
            let name = name.0.as_str();
            self.by_name.get(name).map(|l| (name, l))
        }
    }
}

/// Whether validating `req` is cheap enough to do on the connection's task: at most 1,000
/// partition entries, and uncompressed batches of 64 KiB at most, all together. Anything
/// else is prepared on a blocking thread.
pub fn is_light(req: &ProduceRequest) -> bool {
    const LIGHT_BYTES: usize = 64 * 1024;
    const LIGHT_ENTRIES: usize = 1_000;
    const ATTRIBUTES: usize = 22;
    let mut total = 0usize;
    for (entry, records) in req
        .topic_data
        .iter()
        .flat_map(|t| &t.partition_data)
        .map(|p| p.records.as_deref())
        .enumerate()
    {
        if entry >= LIGHT_ENTRIES {
            return false;
        }
        let Some(records) = records else {
            continue;
        };
        total = total.saturating_add(records.len());
        let compressed = records.get(ATTRIBUTES).is_some_and(|a| a & 0x07 != 0);
        if total > LIGHT_BYTES || compressed {
            return false;
        }
    }
    true
}

/// Does the lock-free work of `req` (see [`PreparedProduce`]) at `ctx.now_ms`, within the
/// request caps of `config`. Batches are validated in request order, sharing
/// [`ClusterConfig::max_decompressed_bytes_per_request`]; entries that will be refused before
/// their records are looked at (repeated, over the cap, unknown topic, injected error, no
/// single batch, zstd before v7, a transactional request, bad acks) are not validated.
pub fn prepare(
    req: &ProduceRequest,
    ctx: &RequestContext,
    limits: &TopicLimits,
    config: &ClusterConfig,
) -> PreparedProduce {
    let fates = fates(req, config.max_partitions_per_request);
    let mut budget = InflateBudget::new(config.max_decompressed_bytes_per_request);
    let mut validated = Vec::new();
    if refused_as_transactional(req) || !matches!(req.acks, -1..=1) {
        return PreparedProduce {
            fates,
            validated,
            budget,
        };
    }
    let version = ctx.api_version;
    let mut position = 0usize;
    for topic in &req.topic_data {
        let topic_limits = limits.of(version, &topic.name, topic.topic_id);
        for data in &topic.partition_data {
            let here = position;
            position += 1;
            if fates.get(here) != Some(&Fate::Serve) {
                continue;
            }
            let Some((name, topic_limits)) = topic_limits else {
                continue;
            };
            if ctx.partition_error(name, data.index).is_some() {
                continue;
            }
            let Some(batch) = data
                .records
                .as_deref()
                .and_then(|r| log_validator::single_batch(r).ok())
            else {
                continue;
            };
            if zstd_before_v7(version, batch).is_some() {
                continue;
            }
            let outcome = log_validator::validate_for_append_within(
                batch,
                topic_limits,
                ctx.now_ms,
                &mut budget,
            )
            .map(|_| ());
            validated.push((
                here,
                PrevalidatedBatch {
                    limits: *topic_limits,
                    now_ms: ctx.now_ms,
                    outcome,
                },
            ));
        }
    }
    PreparedProduce {
        fates,
        validated,
        budget,
    }
}

/// Serves a produce request, preparing it first (see [`prepare`]).
pub fn handle(cluster: &mut ClusterState, ctx: &RequestContext, req: ProduceRequest) -> Reply {
    let limits = TopicLimits::read(
        cluster,
        &req,
        ctx.api_version,
        cluster.config().max_partitions_per_request,
    );
    let prepared = prepare(&req, ctx, &limits, cluster.config());
    handle_prepared(cluster, ctx, req, prepared)
}

/// Serves a produce request whose lock-free work was done by [`prepare`]: [`apply`], then
/// [`finish`].
pub fn handle_prepared(
    cluster: &mut ClusterState,
    ctx: &RequestContext,
    req: ProduceRequest,
    prepared: PreparedProduce,
) -> Reply {
    finish(apply(cluster, ctx, req, prepared))
}

/// A produce request after [`apply`]: the answers of its served entries. The rest of its
/// answer needs no lock (see [`finish`]).
#[derive(Debug)]
pub struct AppliedProduce {
    req: ProduceRequest,
    version: i16,
    fates: Vec<Fate>,
    /// The answers of the served entries, in request order.
    answers: Vec<PartitionProduceResponse>,
    node_endpoints: Vec<NodeEndpoint>,
    max_entries: usize,
    /// The error that refused the whole request before any partition was looked at.
    refused: Option<ErrorCode>,
}

/// The part of a produce request that needs the cluster: the checks that depend on it
/// (topic, leadership, ISR, producer state) run here, in Kafka's order, taking each batch's
/// validation from `prepared` where it still applies, and the batches are appended. Only the
/// served entries are looked at; everything else is answered by [`finish`].
pub fn apply(
    cluster: &mut ClusterState,
    ctx: &RequestContext,
    req: ProduceRequest,
    prepared: PreparedProduce,
) -> AppliedProduce {
    let version = ctx.api_version;
    let PreparedProduce {
        fates,
        validated,
        mut budget,
    } = prepared;
    let mut applied = AppliedProduce {
        req,
        version,
        fates,
        answers: Vec::new(),
        node_endpoints: Vec::new(),
        max_entries: cluster.config().max_partitions_per_request,
        refused: None,
    };
    if refused_as_transactional(&applied.req) {
        // Kafka checks WRITE on the transactional id before looking at any partition, and
        // transactional records without one fail it.
        applied.refused = Some(ErrorCode::TransactionalIdAuthorizationFailed);
        return applied;
    }
    let verified = match verify_transaction(cluster, ctx, &applied.req, &applied.fates) {
        Ok(verified) => verified,
        Err(code) => {
            applied.refused = Some(code);
            return applied;
        }
    };
    let mut validated = validated.into_iter().peekable();
    let mut leaders: BTreeSet<i32> = BTreeSet::new();
    let mut position = 0usize;
    for topic in &applied.req.topic_data {
        let first = position;
        position += topic.partition_data.len();
        let fates = applied.fates.get(first..position).unwrap_or_default();
        if !fates.contains(&Fate::Serve) {
            continue;
        }
        let name = if version >= 13 {
            cluster
                .topic_by_id(topic.topic_id)
                .map(|t| t.name().to_string())
        } else {
            Some(topic.name.0.as_str().to_string())
        };
        for (offset, (data, fate)) in topic.partition_data.iter().zip(fates).enumerate() {
            if *fate != Fate::Serve {
                continue;
            }
            let here = first + offset;
            let prevalidated = match validated.peek() {
                Some((at, _)) if *at == here => validated.next().map(|(_, v)| v),
                _ => None,
            };
            let result = match &name {
                None => Err(ClusterError::code(ErrorCode::UnknownTopicId)),
                Some(name) => produce_partition(
                    cluster,
                    ctx,
                    applied.req.acks,
                    name,
                    data.index,
                    data.records.as_deref(),
                    prevalidated,
                    &mut budget,
                    verified.get(&(name.clone(), data.index)),
                ),
            };
            let answer = match result {
                Ok(p) => p,
                Err(e) => {
                    if let Some(detail) = &e.detail {
                        tracing::debug!(
                            topic = name.as_deref().unwrap_or_default(),
                            partition = data.index,
                            code = ?e.code,
                            "produce refused: {detail}"
                        );
                    }
                    let mut p = failed(data.index, &e, version);
                    if version >= 10 && e.code == ErrorCode::NotLeaderOrFollower {
                        if let Some(leader) = name
                            .as_deref()
                            .and_then(|n| cluster.partition(n, data.index))
                            .filter(|p| p.leader() >= 0)
                        {
                            leaders.insert(leader.leader());
                            p.current_leader = LeaderIdAndEpoch::default()
                                .with_leader_id(leader.leader().into())
                                .with_leader_epoch(leader.leader_epoch());
                        }
                    }
                    p
                }
            };
            applied.answers.push(answer);
        }
    }
    applied.node_endpoints = leaders
        .into_iter()
        .filter_map(|id| cluster.broker(id))
        .map(|b| {
            NodeEndpoint::default()
                .with_node_id(b.id.into())
                .with_host(text(&b.host))
                .with_port(b.port)
        })
        .collect();
    applied
}

/// The answer to a produce request after [`apply`], without the cluster: every entry in
/// request order, the served ones with their answers, repeated ones left out, the ones past
/// the cap refused. acks=0 is not answered, or closes the connection if anything failed.
pub fn finish(applied: AppliedProduce) -> Reply {
    let AppliedProduce {
        req,
        version,
        fates,
        answers,
        node_endpoints,
        max_entries,
        refused,
    } = applied;
    if let Some(code) = refused {
        if req.acks == 0 {
            return Reply::Close {
                reason: format!("acks=0 produce failed with error {}", code.code()),
            };
        }
        let response = error_response(&req, version, code);
        return Reply::Respond(franzy::proto::ResponseKind::Produce(response));
    }
    let over_cap = ClusterError::new(
        ErrorCode::InvalidRequest,
        format!("The request names more than {max_entries} partitions"),
    );
    // `apply` answered every served entry; a missing answer would be a bug, not a panic.
    let lost = ClusterError::code(ErrorCode::UnknownServerError);
    let mut answers = answers.into_iter();
    let mut fates = fates.into_iter();
    let mut responses = Vec::with_capacity(req.topic_data.len());
    for topic in req.topic_data {
        let mut partition_responses = Vec::with_capacity(topic.partition_data.len());
        for data in &topic.partition_data {
            match fates.next().unwrap_or(Fate::Serve) {
                Fate::Repeated => {}
                Fate::OverCap => partition_responses.push(failed(data.index, &over_cap, version)),
                Fate::Serve => partition_responses.push(
                    answers
                        .next()
                        .unwrap_or_else(|| failed(data.index, &lost, version)),
                ),
            }
        }
        let mut response =
            TopicProduceResponse::default().with_partition_responses(partition_responses);
        if version >= 13 {
            response.topic_id = topic.topic_id;
        } else {
            response.name = topic.name;
        }
        responses.push(response);
    }
    if req.acks == 0 {
        let failed = responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .find(|p| p.error_code != 0);
        return match failed {
            Some(p) => Reply::Close {
                reason: format!(
                    "acks=0 produce failed on partition {} with error {}",
                    p.index, p.error_code
                ),
            },
            None => Reply::NoResponse,
        };
    }
    let mut response = ProduceResponse::default().with_responses(responses);
    if version >= 10 {
        response.node_endpoints = node_endpoints;
    }
    Reply::Respond(franzy::proto::ResponseKind::Produce(response))
}

/// Each partition entry's fate, in request order: the last of repeated entries in a topic
/// entry is served, and entries past `max_entries` are not.
fn fates(req: &ProduceRequest, max_entries: usize) -> Vec<Fate> {
    let total = req
        .topic_data
        .iter()
        .fold(0usize, |n, t| n.saturating_add(t.partition_data.len()));
    let mut fates = Vec::with_capacity(total);
    let mut last: HashMap<i32, usize> = HashMap::new();
    for topic in &req.topic_data {
        last.clear();
        for (i, p) in topic.partition_data.iter().enumerate() {
            last.insert(p.index, i);
        }
        for (i, p) in topic.partition_data.iter().enumerate() {
            let fate = if last.get(&p.index) != Some(&i) {
                Fate::Repeated
            } else if fates.len() >= max_entries {
                Fate::OverCap
            } else {
                Fate::Serve
            };
            fates.push(fate);
        }
    }
    fates
}

/// The answer that fails every partition of `req` with `code`.
pub fn error_response(req: &ProduceRequest, version: i16, code: ErrorCode) -> ProduceResponse {
    let error = ClusterError::code(code);
    let responses = req
        .topic_data
        .iter()
        .map(|topic| {
            let partitions = topic
                .partition_data
                .iter()
                .map(|p| failed(p.index, &error, version))
                .collect();
            let mut response = TopicProduceResponse::default().with_partition_responses(partitions);
            if version >= 13 {
                response.topic_id = topic.topic_id;
            } else {
                response.name = topic.name.clone();
            }
            response
        })
        .collect();
    ProduceResponse::default().with_responses(responses)
}

/// The (topic, partition) pairs of `req`, topic ids resolved by `resolve`.
pub fn partitions(
    resolve: &dyn Fn(Uuid) -> Option<Arc<str>>,
    req: &ProduceRequest,
    version: i16,
) -> Vec<(Arc<str>, i32)> {
    let mut out = Vec::new();
    for topic in &req.topic_data {
        let name: Arc<str> = if version >= 13 {
            match resolve(topic.topic_id) {
                Some(name) => name,
                None => continue,
            }
        } else {
            Arc::from(topic.name.0.as_str())
        };
        out.extend(topic.partition_data.iter().map(|p| (name.clone(), p.index)));
    }
    out
}

/// Whether the request is refused before any partition for carrying transactional records
/// without a transactional id (Kafka's TRANSACTIONAL_ID_AUTHORIZATION_FAILED).
fn refused_as_transactional(req: &ProduceRequest) -> bool {
    req.transactional_id.is_none() && has_transactional_records(req)
}

/// What the transaction coordinator said of a partition a transactional batch opens a
/// transaction on: verified, or the error the partition is answered.
type Verification = Result<(), ClusterError>;

/// KIP-890's check of a transactional produce, as Kafka's `ReplicaManager.
/// handleProduceAppend` makes it before appending: the transactional batches must all be
/// of one producer id and epoch (else INVALID_PRODUCER_ID_MAPPING for the whole request);
/// each partition where that producer has no transaction open yet is checked with the
/// transaction coordinator of the request's transactional id, which must know the
/// partition is in the transaction (Produce v3-11), or adds it (v12+, transaction version
/// 2, Kafka's `ADD_PARTITION`). The answers per partition, mapped as Kafka maps them:
/// not in the transaction is INVALID_TXN_STATE ("Partition was not added to the
/// transaction") before v11 and TRANSACTION_ABORTABLE from v11; PRODUCER_FENCED is
/// INVALID_PRODUCER_EPOCH; a coordinator that cannot answer (none, loading, another end in
/// flight: CONCURRENT_TRANSACTIONS) is NOT_ENOUGH_REPLICAS, retriable for every client;
/// INVALID_PRODUCER_ID_MAPPING and the others as they are.
fn verify_transaction(
    cluster: &mut ClusterState,
    ctx: &RequestContext,
    req: &ProduceRequest,
    fates: &[Fate],
) -> Result<HashMap<(String, i32), Verification>, ErrorCode> {
    let Some(transactional_id) = req.transactional_id.as_deref() else {
        return Ok(HashMap::new());
    };
    let version = ctx.api_version;
    let mut producers: BTreeSet<(i64, i16)> = BTreeSet::new();
    let mut unverified: Vec<(String, i32)> = Vec::new();
    let mut position = 0usize;
    for topic in &req.topic_data {
        let name = if version >= 13 {
            cluster
                .topic_by_id(topic.topic_id)
                .map(|t| t.name().to_string())
        } else {
            Some(topic.name.0.as_str().to_string())
        };
        for data in &topic.partition_data {
            let here = position;
            position += 1;
            if fates.get(here) != Some(&Fate::Serve) {
                continue;
            }
            let Some(name) = name.as_deref() else {
                continue;
            };
            let Some(partition) = cluster.partition(name, data.index) else {
                continue;
            };
            if ctx.partition_error(name, data.index).is_some() {
                continue;
            }
            let Some(header) = data
                .records
                .as_deref()
                .and_then(|r| log_validator::single_batch(r).ok())
                .filter(|batch| zstd_before_v7(version, batch).is_none())
                .and_then(|batch| BatchHeader::parse(batch).ok())
            else {
                continue;
            };
            if header.producer_id < 0 || !header.attributes.is_transactional() {
                continue;
            }
            producers.insert((header.producer_id, header.producer_epoch));
            if !partition
                .log()
                .producer_states()
                .has_ongoing_transaction(header.producer_id)
            {
                unverified.push((name.to_string(), data.index));
            }
        }
    }
    if producers.len() > 1 {
        return Err(ErrorCode::InvalidProducerIdMapping);
    }
    let Some(&(producer_id, producer_epoch)) = producers.first() else {
        return Ok(HashMap::new());
    };
    if unverified.is_empty() {
        return Ok(HashMap::new());
    }
    let answers: Vec<Option<ErrorCode>> = match ask_coordinator(
        cluster,
        ctx,
        transactional_id,
        (producer_id, producer_epoch),
        &unverified,
    ) {
        Ok(answers) => answers,
        Err(code) => vec![Some(code); unverified.len()],
    };
    Ok(unverified
        .into_iter()
        .zip(answers)
        .map(|(partition, answer)| {
            let verification = match answer {
                None => Ok(()),
                Some(code) => Err(verification_error(code, version)),
            };
            (partition, verification)
        })
        .collect())
}

/// The transaction coordinator's answer for `partitions` (None: in the transaction).
fn ask_coordinator(
    cluster: &mut ClusterState,
    ctx: &RequestContext,
    transactional_id: &str,
    (producer_id, producer_epoch): (i64, i16),
    partitions: &[(String, i32)],
) -> Result<Vec<Option<ErrorCode>>, ErrorCode> {
    cluster.active_transaction_coordinator(transactional_id, ctx.now)?;
    if ctx.api_version >= FIRST_ADD_PARTITION_VERSION {
        let now = Now::of(ctx);
        cluster.transactions_mut().add_partitions(
            transactional_id,
            producer_id,
            producer_epoch,
            partitions,
            TransactionVersion::V2,
            now,
        )?;
        return Ok(vec![None; partitions.len()]);
    }
    cluster.transactions().verify_partitions(
        transactional_id,
        producer_id,
        producer_epoch,
        partitions,
    )
}

/// A verification failure as the produce answers it (Kafka's `AddPartitionsToTxnManager`
/// and `ReplicaManager.handleProduceAppend` mappings).
fn verification_error(code: ErrorCode, version: i16) -> ClusterError {
    match code {
        ErrorCode::ProducerFenced => ClusterError::code(ErrorCode::InvalidProducerEpoch),
        ErrorCode::TransactionAbortable if version >= FIRST_ABORTABLE_VERSION => {
            ClusterError::code(ErrorCode::TransactionAbortable)
        }
        ErrorCode::TransactionAbortable | ErrorCode::InvalidTxnState => ClusterError::new(
            ErrorCode::InvalidTxnState,
            "Partition was not added to the transaction",
        ),
        ErrorCode::ConcurrentTransactions
        | ErrorCode::NetworkException
        | ErrorCode::CoordinatorLoadInProgress
        | ErrorCode::CoordinatorNotAvailable
        | ErrorCode::NotCoordinator => ClusterError::new(
            ErrorCode::NotEnoughReplicas,
            format!(
                "Unable to verify the partition has been added to the transaction. Underlying error: {}",
                java_error_name(code)
            ),
        ),
        code => ClusterError::code(code),
    }
}

/// Java's `Errors` name of the codes a verification can end with.
fn java_error_name(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::ConcurrentTransactions => "CONCURRENT_TRANSACTIONS",
        ErrorCode::NetworkException => "NETWORK_EXCEPTION",
        ErrorCode::CoordinatorLoadInProgress => "COORDINATOR_LOAD_IN_PROGRESS",
        ErrorCode::CoordinatorNotAvailable => "COORDINATOR_NOT_AVAILABLE",
        ErrorCode::NotCoordinator => "NOT_COORDINATOR",
        _ => "UNKNOWN_SERVER_ERROR",
    }
}

/// The first Produce version whose clients know TRANSACTION_ABORTABLE (Kafka's
/// `GENERIC_ERROR_SUPPORTED`).
const FIRST_ABORTABLE_VERSION: i16 = 11;
/// The first Produce version of transaction version 2: the partition is added to the
/// transaction by the produce itself (Kafka's `ADD_PARTITION`).
const FIRST_ADD_PARTITION_VERSION: i16 = 12;

/// Whether the first batch of some partition is transactional, as Kafka's
/// `RequestUtils.hasTransactionalRecords` decides: a batch that is not all there, or whose
/// framing is unreadable, counts as not transactional (the partition checks refuse it).
fn has_transactional_records(req: &ProduceRequest) -> bool {
    const ATTRIBUTES: usize = 21;
    let first_batch = |records: &[u8]| -> Option<BatchAttributes> {
        let size = records.get(8..12)?;
        let size = i32::from_be_bytes([size[0], size[1], size[2], size[3]]);
        let total = usize::try_from(size).ok()?.checked_add(12)?;
        let batch = records.get(..total)?;
        if batch.get(16).map(|m| *m as i8) != Some(MAGIC_V2) {
            return None;
        }
        let a = batch.get(ATTRIBUTES..ATTRIBUTES + 2)?;
        Some(BatchAttributes(i16::from_be_bytes([a[0], a[1]])))
    };
    req.topic_data
        .iter()
        .flat_map(|t| &t.partition_data)
        .filter_map(|p| p.records.as_deref())
        .any(|records| first_batch(records).is_some_and(BatchAttributes::is_transactional))
}

// One partition entry: its arguments are the entry's parts and what `prepare` found.
#[allow(clippy::too_many_arguments)]
fn produce_partition(
    cluster: &mut ClusterState,
    ctx: &RequestContext,
    acks: i16,
    topic: &str,
    partition: i32,
    records: Option<&[u8]>,
    prevalidated: Option<PrevalidatedBatch>,
    budget: &mut InflateBudget,
    verification: Option<&Verification>,
) -> Result<PartitionProduceResponse, ClusterError> {
    if cluster.partition(topic, partition).is_none() {
        return Err(ClusterError::code(ErrorCode::UnknownTopicOrPartition));
    }
    if let Some(code) = ctx.partition_error(topic, partition) {
        return Err(ClusterError::code(code));
    }
    let batch = log_validator::single_batch(records.unwrap_or_default())?;
    if let Some(error) = zstd_before_v7(ctx.api_version, batch) {
        return Err(error);
    }
    // KIP-890: the coordinator's verdict comes before the append's own checks.
    let verified = match verification {
        Some(Err(error)) => return Err(error.clone()),
        Some(Ok(())) => true,
        None => false,
    };
    if !matches!(acks, -1..=1) {
        return Err(ClusterError::code(ErrorCode::InvalidRequiredAcks));
    }
    let p = cluster.client_partition(topic, partition, ctx.broker_id, -1, true)?;
    if acks == -1 {
        let min_isr = cluster
            .topic(topic)
            .and_then(|t| t.config("min.insync.replicas"))
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(1);
        if p.isr().len() < min_isr {
            return Err(ClusterError::new(
                ErrorCode::NotEnoughReplicas,
                format!(
                    "The size of the current ISR {} is insufficient to satisfy the min.isr requirement of {min_isr} for partition {topic}-{partition}",
                    p.isr().len()
                ),
            ));
        }
    }
    let info = cluster.append_batch(
        topic,
        partition,
        batch,
        ctx.now_ms,
        prevalidated,
        budget,
        verified,
    )?;
    if info.duplicate {
        tracing::debug!(
            topic,
            partition,
            base_offset = info.base_offset,
            "produce: duplicate batch answered with its original offsets"
        );
    }
    Ok(PartitionProduceResponse::default()
        .with_index(partition)
        .with_base_offset(info.base_offset)
        .with_log_append_time_ms(info.log_append_time_ms)
        .with_log_start_offset(info.log_start_offset))
}

/// UNSUPPORTED_COMPRESSION_TYPE for a zstd batch in a request older than v7.
fn zstd_before_v7(version: i16, batch: &[u8]) -> Option<ClusterError> {
    if version >= 7 {
        return None;
    }
    let header = BatchHeader::parse(batch).ok()?;
    (header.attributes.compression_id() == 4).then(|| {
        ClusterError::new(
            ErrorCode::UnsupportedCompressionType,
            "Produce requests with version below 7 are not allowed to use ZStandard compression",
        )
    })
}

fn failed(index: i32, error: &ClusterError, version: i16) -> PartitionProduceResponse {
    let mut p = PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(error.code.code())
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(error.log_start_offset.unwrap_or(-1));
    if version >= 8 {
        p.error_message = error.message.as_deref().map(text);
        if let Some(index) = error.record_index {
            p.record_errors = vec![
                kafka_protocol::messages::produce_response::BatchIndexAndErrorMessage::default()
                    .with_batch_index(index)
                    .with_batch_index_error_message(error.message.as_deref().map(text)),
            ];
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::test_batches::BatchBuilder;
    use crate::handlers::test_support::{
        assert_encodes, cluster_configured, cluster_with, ctx, NOW,
    };
    use bytes::Bytes;
    use franzy::proto::ResponseKind;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use std::collections::BTreeMap;

    fn request(acks: i16, topic: &str, id: Uuid, partition: i32, records: Bytes) -> ProduceRequest {
        ProduceRequest::default()
            .with_acks(acks)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(super::super::topic_name(topic))
                .with_topic_id(id)
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(records))])])
    }

    fn produce_at(
        cluster: &mut ClusterState,
        broker: i32,
        version: i16,
        acks: i16,
        partition: i32,
        records: Bytes,
    ) -> ProduceResponse {
        let id = cluster.topic("t").map_or(Uuid::nil(), |t| t.id());
        let req = request(acks, "t", id, partition, records);
        match handle(cluster, &ctx(broker, version), req) {
            Reply::Respond(r) => {
                assert_encodes(&r, version);
                match r {
                    ResponseKind::Produce(r) => r,
                    other => panic!("unexpected {other:?}"),
                }
            }
            other => panic!("expected a response, got {other:?}"),
        }
    }

    fn first(r: &ProduceResponse) -> &PartitionProduceResponse {
        &r.responses[0].partition_responses[0]
    }

    fn first_error(r: &ProduceResponse) -> i16 {
        first(r).error_code
    }

    #[test]
    fn offsets_are_assigned_across_batches_at_every_version() {
        let mut c = cluster_with(1);
        let mut expected = 0;
        for version in 3..=13 {
            let r = produce_at(
                &mut c,
                0,
                version,
                -1,
                0,
                BatchBuilder::new(NOW).records(2, 3).bytes(),
            );
            let p = first(&r);
            assert_eq!((p.error_code, p.base_offset), (0, expected), "v{version}");
            assert_eq!((p.log_append_time_ms, p.log_start_offset), (-1, 0));
            expected += 2;
        }
        assert_eq!(
            c.partition_log("t", 0).map(|l| l.high_watermark()),
            Some(expected)
        );
    }

    #[test]
    fn stored_bytes_are_the_producers_except_offset_and_epoch() {
        let mut c = cluster_with(1);
        let batch = BatchBuilder::new(NOW).records(3, 10).build();
        produce_at(&mut c, 0, 9, 1, 0, Bytes::from(batch.clone()));
        let stored = c.partition_log("t", 0).expect("log").batches()[0]
            .bytes()
            .clone();
        assert_eq!(stored.len(), batch.len());
        assert_eq!(stored[16..], batch[16..]);
        assert_eq!(stored[8..12], batch[8..12]);
        assert_eq!(stored[12..16], 0i32.to_be_bytes());
    }

    #[test]
    fn log_append_time_topics_stamp_the_batch() {
        let mut c = cluster_with(1);
        let configs = BTreeMap::from([("message.timestamp.type".into(), "LogAppendTime".into())]);
        c.create_topic("lat", 1, configs).expect("create");
        let req = request(
            1,
            "lat",
            Uuid::nil(),
            0,
            BatchBuilder::new(5).record(b"x").bytes(),
        );
        let leader = c.partition("lat", 0).map_or(-1, |p| p.leader());
        let Reply::Respond(ResponseKind::Produce(r)) = handle(&mut c, &ctx(leader, 9), req) else {
            panic!("expected a produce response");
        };
        assert_eq!(first(&r).log_append_time_ms, NOW);
    }

    #[test]
    fn corrupt_oversized_and_malformed_batches_are_refused() {
        let mut c = cluster_with(1);
        let mut bad = BatchBuilder::new(NOW).records(2, 3).build();
        let last = bad.len() - 1;
        bad[last] ^= 0x55;
        let r = produce_at(&mut c, 0, 9, 1, 0, Bytes::from(bad));
        assert_eq!(first(&r).error_code, ErrorCode::CorruptMessage.code());
        assert_eq!(
            (first(&r).base_offset, first(&r).log_start_offset),
            (-1, -1)
        );
        assert!(first(&r).error_message.is_some());

        let big = BatchBuilder::new(NOW).records(2, 600_000).bytes();
        let r = produce_at(&mut c, 0, 9, 1, 0, big);
        assert_eq!(first(&r).error_code, ErrorCode::MessageTooLarge.code());

        let configs = BTreeMap::from([("max.message.bytes".into(), "100".into())]);
        c.create_topic("small", 1, configs).expect("create");
        let req = request(
            1,
            "small",
            Uuid::nil(),
            0,
            BatchBuilder::new(NOW).records(3, 30).bytes(),
        );
        let leader = c.partition("small", 0).map_or(-1, |p| p.leader());
        let Reply::Respond(ResponseKind::Produce(r)) = handle(&mut c, &ctx(leader, 9), req) else {
            panic!("expected a produce response");
        };
        assert_eq!(first(&r).error_code, ErrorCode::MessageTooLarge.code());

        let mut v1 = BatchBuilder::new(NOW).record(b"x").build();
        v1[16] = 1;
        let r = produce_at(&mut c, 0, 9, 1, 0, Bytes::from(v1));
        assert_eq!(first(&r).error_code, ErrorCode::InvalidRecord.code());

        let zstd = BatchBuilder::new(NOW)
            .record(b"x")
            .compression_id(4)
            .bytes();
        let r = produce_at(&mut c, 0, 6, 1, 0, zstd.clone());
        assert_eq!(
            first(&r).error_code,
            ErrorCode::UnsupportedCompressionType.code()
        );
        let r = produce_at(&mut c, 0, 7, 1, 0, zstd);
        assert_eq!(first(&r).error_code, 0);

        let r = produce_at(&mut c, 0, 9, 1, 0, Bytes::new());
        assert_eq!(first(&r).error_code, ErrorCode::InvalidRecord.code());
        assert_eq!(c.partition_log("t", 0).map(|l| l.log_end_offset()), Some(1));
    }

    #[test]
    fn a_follower_refuses_and_names_the_leader_from_v10() {
        let mut c = cluster_with(1);
        let r = produce_at(
            &mut c,
            1,
            9,
            1,
            0,
            BatchBuilder::new(NOW).record(b"x").bytes(),
        );
        assert_eq!(first(&r).error_code, ErrorCode::NotLeaderOrFollower.code());
        assert_eq!(first(&r).current_leader, LeaderIdAndEpoch::default());
        let r = produce_at(
            &mut c,
            1,
            10,
            1,
            0,
            BatchBuilder::new(NOW).record(b"x").bytes(),
        );
        assert_eq!(first(&r).current_leader.leader_id, 0);
        assert_eq!(r.node_endpoints.len(), 1);
        assert_eq!(
            (r.node_endpoints[0].node_id.0, r.node_endpoints[0].port),
            (0, 9092)
        );
    }

    #[test]
    fn unknown_topics_ids_partitions_and_bad_acks() {
        let mut c = cluster_with(1);
        let r = produce_at(
            &mut c,
            0,
            9,
            1,
            3,
            BatchBuilder::new(NOW).record(b"x").bytes(),
        );
        assert_eq!(
            first(&r).error_code,
            ErrorCode::UnknownTopicOrPartition.code()
        );
        let req = request(
            1,
            "nope",
            Uuid::nil(),
            0,
            BatchBuilder::new(NOW).record(b"x").bytes(),
        );
        let Reply::Respond(ResponseKind::Produce(r)) = handle(&mut c, &ctx(0, 9), req) else {
            panic!("expected a produce response");
        };
        assert_eq!(
            first(&r).error_code,
            ErrorCode::UnknownTopicOrPartition.code()
        );
        assert!(c.topic("nope").is_none(), "produce never creates topics");
        let req = request(
            1,
            "",
            Uuid::from_u128(42),
            0,
            BatchBuilder::new(NOW).record(b"x").bytes(),
        );
        let Reply::Respond(ResponseKind::Produce(r)) = handle(&mut c, &ctx(0, 13), req) else {
            panic!("expected a produce response");
        };
        assert_eq!(first(&r).error_code, ErrorCode::UnknownTopicId.code());
        assert_eq!(r.responses[0].topic_id, Uuid::from_u128(42));
        let r = produce_at(
            &mut c,
            0,
            9,
            2,
            0,
            BatchBuilder::new(NOW).record(b"x").bytes(),
        );
        assert_eq!(first(&r).error_code, ErrorCode::InvalidRequiredAcks.code());
    }

    #[test]
    fn acks_zero_is_never_answered_and_injected_errors_win() {
        let mut c = cluster_with(1);
        let req = request(
            0,
            "t",
            Uuid::nil(),
            0,
            BatchBuilder::new(NOW).record(b"x").bytes(),
        );
        assert!(matches!(handle(&mut c, &ctx(0, 9), req), Reply::NoResponse));
        assert_eq!(c.partition_log("t", 0).map(|l| l.log_end_offset()), Some(1));
        // A failing acks=0 produce closes the connection: the only signal the client gets.
        let req = request(
            0,
            "t",
            Uuid::nil(),
            5,
            BatchBuilder::new(NOW).record(b"x").bytes(),
        );
        assert!(matches!(
            handle(&mut c, &ctx(0, 9), req),
            Reply::Close { .. }
        ));
        let mut context = ctx(0, 9);
        context
            .partition_errors
            .insert(("t".into(), 0), ErrorCode::NotEnoughReplicas);
        let req = request(
            1,
            "t",
            Uuid::nil(),
            0,
            BatchBuilder::new(NOW).record(b"x").bytes(),
        );
        let Reply::Respond(ResponseKind::Produce(r)) = handle(&mut c, &context, req) else {
            panic!("expected a produce response");
        };
        assert_eq!(first(&r).error_code, ErrorCode::NotEnoughReplicas.code());
        assert_eq!(c.partition_log("t", 0).map(|l| l.log_end_offset()), Some(1));
    }

    #[test]
    fn min_insync_replicas_applies_to_acks_all_only() {
        let mut c = cluster_with(1);
        let configs = BTreeMap::from([("min.insync.replicas".into(), "3".into())]);
        c.create_topic("strict", 1, configs).expect("create");
        c.set_broker_up(2, false);
        let leader = c.partition("strict", 0).map_or(-1, |p| p.leader());
        for (acks, code) in [(-1, ErrorCode::NotEnoughReplicas.code()), (1, 0)] {
            let req = request(
                acks,
                "strict",
                Uuid::nil(),
                0,
                BatchBuilder::new(NOW).record(b"x").bytes(),
            );
            let Reply::Respond(ResponseKind::Produce(r)) = handle(&mut c, &ctx(leader, 9), req)
            else {
                panic!("expected a produce response");
            };
            assert_eq!(first(&r).error_code, code, "acks={acks}");
        }
    }

    fn idempotent(producer_id: i64, epoch: i16, sequence: i32, records: usize) -> Bytes {
        BatchBuilder::new(NOW)
            .records(records, 3)
            .producer(producer_id, epoch, sequence)
            .bytes()
    }

    #[test]
    fn a_retried_batch_is_answered_with_its_original_offsets() {
        let mut c = cluster_with(1);
        let pid = c.allocate_producer_id().expect("id");
        produce_at(
            &mut c,
            0,
            9,
            -1,
            0,
            BatchBuilder::new(NOW).record(b"x").bytes(),
        );
        let original = idempotent(pid, 0, 0, 3);
        let r = produce_at(&mut c, 0, 9, -1, 0, original.clone());
        assert_eq!((first_error(&r), first(&r).base_offset), (0, 1));
        assert_eq!(first(&r).log_append_time_ms, -1);
        let r = produce_at(&mut c, 0, 9, -1, 0, idempotent(pid, 0, 3, 2));
        assert_eq!(first(&r).base_offset, 4);
        // The first batch again (its response was lost): not appended, same offsets. Kafka
        // reports the original's max timestamp as the log-append time, even on a
        // create-time topic.
        let r = produce_at(&mut c, 0, 9, -1, 0, original);
        assert_eq!((first_error(&r), first(&r).base_offset), (0, 1));
        assert_eq!(first(&r).log_append_time_ms, NOW);
        assert_eq!(c.partition_log("t", 0).map(|l| l.log_end_offset()), Some(6));
        let state = c.producer_state("t", 0).and_then(|s| s.entry(pid));
        assert_eq!(state.map(|e| (e.epoch(), e.last_sequence())), Some((0, 4)));
    }

    #[test]
    fn a_duplicate_on_a_log_append_time_topic_gets_the_original_time() {
        let mut c = cluster_with(1);
        let configs = BTreeMap::from([("message.timestamp.type".into(), "LogAppendTime".into())]);
        c.create_topic("lat", 1, configs).expect("create");
        let leader = c.partition("lat", 0).map_or(-1, |p| p.leader());
        let batch = idempotent(1000, 0, 0, 2);
        let mut context = ctx(leader, 9);
        let mut answers = Vec::new();
        for now in [NOW, NOW + 5000] {
            context.now_ms = now;
            let req = request(-1, "lat", Uuid::nil(), 0, batch.clone());
            let Reply::Respond(ResponseKind::Produce(r)) = handle(&mut c, &context, req) else {
                panic!("expected a produce response");
            };
            answers.push((first(&r).base_offset, first(&r).log_append_time_ms));
        }
        assert_eq!(answers, vec![(0, NOW), (0, NOW)]);
    }

    #[test]
    fn sequence_and_epoch_errors_carry_the_log_start_offset_and_no_message() {
        let mut c = cluster_with(1);
        let pid = 1000;
        produce_at(&mut c, 0, 9, -1, 0, idempotent(pid, 1, 0, 4));
        assert_eq!(c.delete_records("t", 0, 2), Ok(2));
        for version in [3, 8, 9, 13] {
            let gap = produce_at(&mut c, 0, version, -1, 0, idempotent(pid, 1, 5, 1));
            let p = first(&gap);
            assert_eq!(p.error_code, ErrorCode::OutOfOrderSequenceNumber.code());
            assert_eq!((p.base_offset, p.log_start_offset), (-1, 2), "v{version}");
            assert_eq!((p.error_message.clone(), p.record_errors.len()), (None, 0));
        }
        let stale = produce_at(&mut c, 0, 9, -1, 0, idempotent(pid, 0, 4, 1));
        assert_eq!(first_error(&stale), ErrorCode::InvalidProducerEpoch.code());
        assert_eq!(first(&stale).log_start_offset, 2);
        let new_epoch_mid_sequence = produce_at(&mut c, 0, 9, -1, 0, idempotent(pid, 2, 4, 1));
        assert_eq!(
            first_error(&new_epoch_mid_sequence),
            ErrorCode::OutOfOrderSequenceNumber.code()
        );
        let no_sequence = produce_at(&mut c, 0, 9, -1, 0, idempotent(pid, 1, -1, 1));
        assert_eq!(first_error(&no_sequence), ErrorCode::InvalidRecord.code());
        assert_eq!(c.partition_log("t", 0).map(|l| l.log_end_offset()), Some(4));
        // The producer continues where it was.
        let next = produce_at(&mut c, 0, 9, -1, 0, idempotent(pid, 1, 4, 1));
        assert_eq!((first_error(&next), first(&next).base_offset), (0, 4));
    }

    #[test]
    fn producer_state_survives_a_leader_change() {
        let mut c = cluster_with(1);
        let batch = idempotent(1000, 0, 0, 2);
        produce_at(&mut c, 0, 9, -1, 0, batch.clone());
        c.set_broker_up(0, false);
        let leader = c.partition("t", 0).map_or(-1, |p| p.leader());
        assert_ne!(leader, 0);
        let r = produce_at(&mut c, leader, 9, -1, 0, batch);
        assert_eq!((first_error(&r), first(&r).base_offset), (0, 0));
        let r = produce_at(&mut c, leader, 9, -1, 0, idempotent(1000, 0, 3, 1));
        assert_eq!(first_error(&r), ErrorCode::OutOfOrderSequenceNumber.code());
        c.set_broker_up(0, true);
        let r = produce_at(&mut c, leader, 9, -1, 0, idempotent(1000, 0, 2, 1));
        assert_eq!((first_error(&r), first(&r).base_offset), (0, 2));
    }

    #[test]
    fn transactional_records_without_a_transactional_id_fail_the_whole_request() {
        let mut c = cluster_with(2);
        let txn = BatchBuilder::new(NOW)
            .record(b"x")
            .producer(1000, 0, 0)
            .transactional()
            .bytes();
        let mut req = request(
            -1,
            "t",
            Uuid::nil(),
            0,
            BatchBuilder::new(NOW).record(b"y").bytes(),
        );
        req.topic_data[0].partition_data.push(
            PartitionProduceData::default()
                .with_index(1)
                .with_records(Some(txn.clone())),
        );
        let Reply::Respond(ResponseKind::Produce(r)) = handle(&mut c, &ctx(0, 9), req) else {
            panic!("expected a produce response");
        };
        let codes: Vec<i16> = r.responses[0]
            .partition_responses
            .iter()
            .map(|p| p.error_code)
            .collect();
        let refused = ErrorCode::TransactionalIdAuthorizationFailed.code();
        assert_eq!(codes, vec![refused, refused]);
        assert!(!ErrorCode::TransactionalIdAuthorizationFailed.is_retriable());
        assert_eq!(c.partition_log("t", 0).map(|l| l.log_end_offset()), Some(0));
        let req = request(0, "t", Uuid::nil(), 1, txn);
        assert!(matches!(
            handle(&mut c, &ctx(1, 9), req),
            Reply::Close { .. }
        ));
        // A cut-off transactional batch is not "transactional records": the partition
        // checks refuse it.
        let cut = BatchBuilder::new(NOW)
            .record(b"x")
            .producer(1000, 0, 0)
            .transactional()
            .bytes()
            .slice(..50);
        let r = produce_at(&mut c, 0, 9, -1, 0, cut);
        assert_eq!(first_error(&r), ErrorCode::InvalidRecord.code());
    }

    #[test]
    fn transactional_batches_are_verified_with_the_coordinator_by_version() {
        use crate::handlers::test_support::{
            add_txn_partitions, init_txn, produce_txn, txn_records,
        };
        let mut c = cluster_with(3);
        let (_, id, epoch) = init_txn(&mut c, "txn", 4);
        let producer = (id, epoch);
        // Not added: INVALID_TXN_STATE with Kafka's message before v11.
        let p = produce_txn(&mut c, Some("txn"), 0, txn_records(producer, 0), 9);
        assert_eq!(p.error_code, ErrorCode::InvalidTxnState.code());
        assert_eq!(
            p.error_message.as_deref(),
            Some("Partition was not added to the transaction")
        );
        // TRANSACTION_ABORTABLE, without a message, from v11.
        let p = produce_txn(&mut c, Some("txn"), 0, txn_records(producer, 0), 11);
        assert_eq!(p.error_code, ErrorCode::TransactionAbortable.code());
        assert_eq!(p.error_message, None);
        assert_eq!(c.partition_log("t", 0).map(|l| l.log_end_offset()), Some(0));
        // Added, it is written; the open transaction holds the last stable offset.
        assert_eq!(add_txn_partitions(&mut c, "txn", producer, &[0]), vec![0]);
        let p = produce_txn(&mut c, Some("txn"), 0, txn_records(producer, 0), 9);
        assert_eq!((p.error_code, p.base_offset), (0, 0));
        let p = produce_txn(&mut c, Some("txn"), 0, txn_records(producer, 1), 9);
        assert_eq!((p.error_code, p.base_offset), (0, 1));
        assert_eq!(
            c.partition_log("t", 0).map(|l| l.last_stable_offset()),
            Some(0)
        );
        // Other producers: an unknown id, a stale epoch.
        let p = produce_txn(&mut c, Some("nobody"), 1, txn_records(producer, 0), 9);
        assert_eq!(p.error_code, ErrorCode::InvalidProducerIdMapping.code());
        let p = produce_txn(&mut c, Some("txn"), 1, txn_records((id, epoch + 1), 0), 9);
        assert_eq!(p.error_code, ErrorCode::InvalidProducerEpoch.code());
        // From v12 the produce adds the partition itself (transaction version 2).
        let p = produce_txn(&mut c, Some("txn"), 2, txn_records(producer, 0), 12);
        assert_eq!(p.error_code, 0);
        let partitions = c.transactions().get("txn").map(|t| t.partitions().len());
        assert_eq!(partitions, Some(2));
    }

    #[test]
    fn a_busy_coordinator_is_not_enough_replicas_and_mixed_producers_are_refused() {
        use crate::handlers::test_support::{
            add_txn_partitions, end_txn, init_txn, produce_txn, txn_coordinator, txn_records,
        };
        let config = ClusterConfig {
            transactions: crate::cluster::TransactionConfig {
                marker_delay: std::time::Duration::from_secs(1),
                ..Default::default()
            },
            ..ClusterConfig::default()
        };
        let mut c = cluster_configured(2, config);
        let (_, id, epoch) = init_txn(&mut c, "txn", 4);
        add_txn_partitions(&mut c, "txn", (id, epoch), &[0]);
        assert_eq!(end_txn(&mut c, "txn", (id, epoch), true, 3).0, 0);
        let p = produce_txn(&mut c, Some("txn"), 1, txn_records((id, epoch), 0), 9);
        assert_eq!(p.error_code, ErrorCode::NotEnoughReplicas.code());
        assert_eq!(
            p.error_message.as_deref(),
            Some("Unable to verify the partition has been added to the transaction. Underlying error: CONCURRENT_TRANSACTIONS")
        );
        // Two producers' transactional batches in one request: every partition refused.
        txn_coordinator(&mut c, "txn");
        let leader = c.partition("t", 0).map_or(0, |p| p.leader());
        let mut req = request(-1, "t", Uuid::nil(), 0, txn_records((id, epoch), 0));
        req.transactional_id = Some(kafka_protocol::messages::TransactionalId(
            crate::handlers::text("txn"),
        ));
        req.topic_data[0].partition_data.push(
            PartitionProduceData::default()
                .with_index(1)
                .with_records(Some(txn_records((id + 1, 0), 0))),
        );
        let Reply::Respond(ResponseKind::Produce(r)) = handle(&mut c, &ctx(leader, 9), req) else {
            panic!("expected a produce response");
        };
        let codes: Vec<i16> = r.responses[0]
            .partition_responses
            .iter()
            .map(|p| p.error_code)
            .collect();
        let mapping = ErrorCode::InvalidProducerIdMapping.code();
        assert_eq!(codes, vec![mapping, mapping]);
    }

    #[test]
    fn whole_request_errors_cover_every_partition() {
        let req = request(1, "t", Uuid::nil(), 0, Bytes::new());
        let r = error_response(&req, 9, ErrorCode::ClusterAuthorizationFailed);
        assert_eq!(
            first(&r).error_code,
            ErrorCode::ClusterAuthorizationFailed.code()
        );
        assert_encodes(&ResponseKind::Produce(r), 9);
    }

    fn request_of(acks: i16, topic_entries: Vec<Vec<(i32, Option<Bytes>)>>) -> ProduceRequest {
        let topic_data = topic_entries
            .into_iter()
            .map(|entries| {
                TopicProduceData::default()
                    .with_name(super::super::topic_name("t"))
                    .with_partition_data(
                        entries
                            .into_iter()
                            .map(|(index, records)| {
                                PartitionProduceData::default()
                                    .with_index(index)
                                    .with_records(records)
                            })
                            .collect(),
                    )
            })
            .collect();
        ProduceRequest::default()
            .with_acks(acks)
            .with_topic_data(topic_data)
    }

    fn respond(c: &mut ClusterState, version: i16, req: ProduceRequest) -> ProduceResponse {
        match handle(c, &ctx(0, version), req) {
            Reply::Respond(ResponseKind::Produce(r)) => r,
            other => panic!("expected a produce response, got {other:?}"),
        }
    }

    fn codes(r: &ProduceResponse) -> Vec<i16> {
        r.responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .map(|p| p.error_code)
            .collect()
    }

    #[test]
    fn two_hundred_thousand_entries_are_all_answered_and_a_repeat_wins() {
        let config = ClusterConfig {
            max_partitions_per_request: usize::MAX,
            ..ClusterConfig::default()
        };
        let mut c = cluster_configured(3, config);
        let first = BatchBuilder::new(NOW).record(b"first").bytes();
        let last = BatchBuilder::new(NOW).records(2, 1).bytes();
        let mut entries = vec![(0, Some(first))];
        entries.extend((1..200_000).map(|i| (i, None)));
        entries.push((0, Some(last)));
        entries.push((7, None));
        let r = respond(&mut c, 9, request_of(1, vec![entries]));
        let answers = &r.responses[0].partition_responses;
        // Each partition once, where its last entry was.
        let mut expected: Vec<i32> = (1..200_000).filter(|&i| i != 7).collect();
        expected.extend([0, 7]);
        let indices: Vec<i32> = answers.iter().map(|p| p.index).collect();
        assert_eq!(indices, expected);
        let code_of = |index: i32| {
            answers
                .iter()
                .find(|p| p.index == index)
                .map(|p| p.error_code)
        };
        assert_eq!(code_of(0), Some(0));
        // Partition 1 exists: its missing records are refused before leadership is checked.
        assert_eq!(code_of(1), Some(ErrorCode::InvalidRecord.code()));
        assert_eq!(code_of(7), Some(ErrorCode::UnknownTopicOrPartition.code()));
        let unknown = ErrorCode::UnknownTopicOrPartition.code();
        assert_eq!(
            answers.iter().filter(|p| p.error_code == unknown).count(),
            200_000 - 3
        );
        // Only the last batch for partition 0 was written.
        assert_eq!(c.partition_log("t", 0).map(|l| l.log_end_offset()), Some(2));
    }

    #[test]
    fn entries_past_the_cap_are_refused_as_invalid_requests() {
        let config = ClusterConfig {
            max_partitions_per_request: 2,
            ..ClusterConfig::default()
        };
        let mut c = cluster_configured(1, config);
        let batch = || Some(BatchBuilder::new(NOW).record(b"x").bytes());
        let req = request_of(
            1,
            vec![
                vec![(0, batch())],
                vec![(0, batch()), (0, batch()), (5, None)],
            ],
        );
        let r = respond(&mut c, 9, req);
        // The second topic entry's first 0 is a repeat (not answered); the cap counts it.
        let invalid = ErrorCode::InvalidRequest.code();
        assert_eq!(codes(&r), vec![0, invalid, invalid]);
        let refused = &r.responses[1].partition_responses[0];
        assert!(refused
            .error_message
            .as_ref()
            .is_some_and(|m| m.contains("more than 2 partitions")));
        assert_eq!(c.partition_log("t", 0).map(|l| l.log_end_offset()), Some(1));
    }

    #[test]
    fn compressed_batches_share_the_request_decompression_budget() {
        let config = ClusterConfig {
            max_decompressed_bytes_per_request: 1_000_000,
            ..ClusterConfig::default()
        };
        let mut c = cluster_configured(1, config);
        // About 400 KB once inflated, a few KB as sent.
        let gzip = BatchBuilder::new(NOW)
            .records(100, 4000)
            .compression_id(1)
            .bytes();
        assert!(gzip.len() < 20_000);
        let plain = BatchBuilder::new(NOW).records(100, 4000).bytes();
        let req = request_of(
            1,
            vec![
                vec![(0, Some(gzip.clone()))],
                vec![(0, Some(gzip.clone()))],
                vec![(0, Some(gzip.clone()))],
                vec![(0, Some(gzip))],
                vec![(0, Some(plain))],
            ],
        );
        let r = respond(&mut c, 9, req);
        let refused = ErrorCode::PolicyViolation.code();
        assert_eq!(codes(&r), vec![0, 0, refused, refused, 0]);
        let message = r.responses[2].partition_responses[0].error_message.clone();
        assert!(
            message
                .as_ref()
                .is_some_and(|m| m.contains("1000000 bytes")),
            "{message:?}"
        );
        assert_eq!(
            c.partition_log("t", 0).map(|l| l.log_end_offset()),
            Some(300)
        );
    }

    #[test]
    fn a_batch_validated_before_its_topic_changed_is_validated_again() {
        let mut c = cluster_with(1);
        let req = request_of(
            1,
            vec![vec![(
                0,
                Some(BatchBuilder::new(NOW).records(3, 50).bytes()),
            )]],
        );
        let context = ctx(0, 9);
        let limits = TopicLimits::read(&c, &req, 9, usize::MAX);
        let prepared = prepare(&req, &context, &limits, c.config());
        // Between the two locks, the topic is recreated with a smaller max.message.bytes.
        c.delete_topic("t").expect("delete");
        let small = BTreeMap::from([("max.message.bytes".to_string(), "100".to_string())]);
        c.create_topic("t", 1, small).expect("create");
        let leader = c.partition("t", 0).map_or(-1, |p| p.leader());
        let Reply::Respond(ResponseKind::Produce(r)) =
            handle_prepared(&mut c, &ctx(leader, 9), req, prepared)
        else {
            panic!("expected a produce response");
        };
        assert_eq!(codes(&r), vec![ErrorCode::MessageTooLarge.code()]);
    }
}
