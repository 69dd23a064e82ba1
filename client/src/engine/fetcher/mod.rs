//! The consumer's fetch engine, without IO: per-partition positions, which Fetch and
//! ListOffsets requests to send to which broker, and a bounded buffer of fetched batches
//! from which records are handed out in offset order (protocol guide, "Fetch API" and
//! "ListOffsets"; KIP-74 byte limits, KIP-320 leader epochs, KIP-516 topic ids).
//!
//! Behaviour follows Apache Kafka's Java consumer (`AbstractFetch`, `FetchCollector`,
//! `SubscriptionState`) and librdkafka where the Java client has no equivalent
//! (`enable.partition.eof`, prefetching).
//!
//! # Call order
//!
//! 1. Change the assignment with [`Fetcher::assign`], [`Fetcher::seek`],
//!    [`Fetcher::pause`], [`Fetcher::resume`] at any time.
//! 2. The driver loops: [`Fetcher::poll_list_offsets`] and [`Fetcher::poll_fetches`] (given
//!    the metadata cache) say which requests to send; [`FetchPlan::request`] /
//!    [`ListOffsetsPlan::request`] build them for the negotiated version. Feed each answer
//!    to [`Fetcher::handle_fetch_response`] / [`Fetcher::handle_list_offsets_response`], or
//!    its failure to [`Fetcher::handle_fetch_failure`] / [`Fetcher::handle_list_offsets_failure`].
//!    When [`Fetcher::poll_metadata_refresh`] says so (the refresh policy, spacing and
//!    backoff included, is the engine's), refresh the metadata, and report the outcome with
//!    [`Fetcher::handle_metadata_response`] / [`Fetcher::handle_metadata_failure`]. Take the
//!    raw batches of each answer with [`Fetcher::take_undecoded`], decode them outside the
//!    lock the user's `recv` needs with [`decode_ahead`], and hand them back with
//!    [`Fetcher::handle_decoded`] (one at a time, skipping those [`Fetcher::is_undecoded`]
//!    says `recv` reached first). Sleep until [`Fetcher::poll_timeout`] or the next
//!    answer.
//! 3. The user drains [`Fetcher::poll_event`]: outages first (once per failure episode),
//!    then records, end-of-partition events and per-partition errors, in offset order
//!    within each partition.
//!
//! # Peers that fail or lie
//!
//! Offsets, deltas and watermarks from a broker are checked before any arithmetic: offsets
//! no log can have are [`Error::CorruptRecord`] for the partition. An answer that moves no
//! partition on while one claims more backs the claimants off. A request that fails as a
//! whole backs its broker off (`reconnect.backoff.ms`), and a broker failing for
//! `reconnect.backoff.max.ms` is reported once ([`Error::BrokerUnreachable`],
//! [`Error::AllBrokersDown`]). DESIGN.md explains each choice.
//!
//! # Positions
//!
//! Each partition has two offsets: the *position*, the next offset to hand to the user, and
//! the *fetch offset*, the next offset to ask the broker for. Fetched batches wait in the
//! partition's buffer between the two, so the next fetch can be on its way while the user is
//! still reading the last one (librdkafka's prefetching). A partition is fetched while its
//! buffer holds less than `max.partition.fetch.bytes`, and a broker is sent a fetch (one at a
//! time) while the unpaused partitions it leads hold less than `fetch.max.bytes`.
//!
//! Every seek, reset or reassignment bumps the partition's *generation*; answers to
//! requests sent for an older generation are ignored, so nothing from before a seek can leak
//! into what follows it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use indexmap::IndexMap;

use super::backoff::{Backoff, Rng};
use super::metadata::Metadata;
use super::refresh::MetadataRefresh;
use crate::config::{Config, IsolationLevel, OffsetReset};
use crate::error::Error;
use crate::proto::record_batch::{DecodeLimits, Record, RecordBatch};
use crate::topic_partition::TopicPartition;

mod aborted;
mod buffer;
mod health;
mod plan;
mod positions;
mod response;
#[cfg(test)]
mod tests;

pub use buffer::decode_ahead;
pub use plan::{FetchPlan, ListOffsetsPlan};
use plan::{PlannedFetch, PlannedLookup};

/// ListOffsets timestamp for the log start offset.
const EARLIEST_TIMESTAMP: i64 = -2;
/// ListOffsets timestamp for the end of the log (high watermark, or LSO for read_committed).
const LATEST_TIMESTAMP: i64 = -1;

/// The settings the fetcher uses, taken from [`Config`].
#[derive(Debug, Clone)]
pub struct FetcherConfig {
    /// `fetch.min.bytes`.
    pub min_bytes: i32,
    /// `fetch.max.wait.ms`.
    pub max_wait: Duration,
    /// `fetch.max.bytes`: per request, and the prefetch bound per broker.
    pub max_bytes: i32,
    /// `max.partition.fetch.bytes`: per partition and request, and the prefetch bound per
    /// partition.
    pub partition_max_bytes: i32,
    /// `isolation.level`.
    pub isolation_level: IsolationLevel,
    /// `auto.offset.reset`.
    pub auto_offset_reset: OffsetReset,
    /// `enable.partition.eof`.
    pub partition_eof: bool,
    /// `retry.backoff.ms`: first wait after a failed fetch or lookup.
    pub retry_backoff: Duration,
    /// `retry.backoff.max.ms`: cap of that wait.
    pub retry_backoff_max: Duration,
    /// `reconnect.backoff.ms`: first wait before asking a broker again after a request to
    /// it failed as a whole (no answer, a broken connection, a protocol violation).
    pub reconnect_backoff: Duration,
    /// `reconnect.backoff.max.ms`: cap of that wait, and how long a broker's requests must
    /// have failed, with nothing answered in between, before the user is told
    /// ([`Error::BrokerUnreachable`], [`Error::AllBrokersDown`]).
    pub reconnect_backoff_max: Duration,
    /// `request.timeout.ms`, sent as ListOffsets' `timeout_ms`.
    pub request_timeout: Duration,
    /// Bounds on decompression.
    pub decode_limits: DecodeLimits,
}

impl FetcherConfig {
    /// The fetch settings of `config`. Decompressed batches may reach
    /// `max(64 MiB, 16 * max.partition.fetch.bytes)`.
    pub fn from_config(config: &Config) -> Self {
        let partition_bytes = usize::try_from(config.max_partition_fetch_bytes).unwrap_or(0);
        let decode_limits = DecodeLimits::new(
            DecodeLimits::default()
                .max_decompressed_bytes
                .max(partition_bytes.saturating_mul(16)),
        );
        Self {
            min_bytes: config.fetch_min_bytes,
            max_wait: config.fetch_max_wait,
            max_bytes: config.fetch_max_bytes,
            partition_max_bytes: config.max_partition_fetch_bytes,
            isolation_level: config.isolation_level,
            auto_offset_reset: config.auto_offset_reset,
            partition_eof: config.enable_partition_eof,
            retry_backoff: config.retry_backoff,
            retry_backoff_max: config.retry_backoff_max,
            reconnect_backoff: config.reconnect_backoff,
            reconnect_backoff_max: config.reconnect_backoff_max,
            request_timeout: config.request_timeout,
            decode_limits,
        }
    }
}

/// The consumer's fetch state: see the module documentation.
#[derive(Debug)]
pub struct Fetcher {
    config: FetcherConfig,
    partitions: IndexMap<TopicPartition, PartitionState>,
    rng: Rng,
    next_request_id: u64,
    fetches: HashMap<u64, InFlightFetch>,
    lookups: HashMap<u64, InFlightLookup>,
    brokers_fetching: HashSet<i32>,
    brokers_looking_up: HashSet<i32>,
    broker_backoff: HashMap<i32, RetryState>,
    /// When to refresh the metadata: the policy every role shares.
    refresh: MetadataRefresh,
    /// Index of the partition records are being drained from.
    drain_cursor: usize,
    /// Where the next fetch starts its partition list, so that every partition gets to be
    /// first (KIP-74 returns the first partition's first batch whole).
    fetch_rotation: usize,
    space_freed: bool,
    /// Raw batches buffered since the last [`Fetcher::take_undecoded`].
    undecoded: Vec<(TopicPartition, Bytes)>,
    /// Whether requests to each broker (and metadata requests to any broker) answer.
    health: HashMap<Peer, Health>,
    /// Outage errors for the user, at most one per peer, returned before anything else.
    outage_errors: VecDeque<(Peer, Error)>,
}

#[derive(Debug)]
struct InFlightFetch {
    broker: i32,
    sent_at: Instant,
    partitions: Vec<PlannedFetch>,
}

#[derive(Debug)]
struct InFlightLookup {
    broker: i32,
    sent_at: Instant,
    partitions: Vec<PlannedLookup>,
}

/// Who a request went to, for failure episodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Peer {
    /// A broker, by node id (Fetch and ListOffsets).
    Broker(i32),
    /// Whichever broker answers metadata requests, bootstrap servers included.
    AnyBroker,
}

/// Answers and failures of one [`Peer`].
#[derive(Debug, Default)]
struct Health {
    last_success: Option<Instant>,
    episode: Option<FailureEpisode>,
}

/// Requests to a peer failing one after the other, with nothing answered in between.
#[derive(Debug)]
struct FailureEpisode {
    /// When the first failed request was sent (or the last answer came, if later).
    since: Instant,
    last_failure: Instant,
    /// The user was told (once per episode).
    reported: bool,
}

/// What one partition of a fetch answer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Applied {
    /// The fetch offset moved on.
    Progress,
    /// Nothing new, and the broker said there is nothing: the end of the log.
    Idle,
    /// Nothing new although the broker said there is more (a high watermark above the fetch
    /// offset, or bytes without a batch past the fetch offset).
    Stalled,
    /// Stale, an error, or the partition stopped: nothing to say about progress.
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LookupTarget {
    Earliest,
    Latest,
    Timestamp(i64),
}

impl LookupTarget {
    fn timestamp(self) -> i64 {
        match self {
            Self::Earliest => EARLIEST_TIMESTAMP,
            Self::Latest => LATEST_TIMESTAMP,
            Self::Timestamp(t) => t,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FetchState {
    /// The position must be looked up with ListOffsets first.
    Lookup {
        target: LookupTarget,
        in_flight: bool,
    },
    /// Has a position and is fetched (unless paused or backing off).
    Fetching,
    /// Stopped by an error the user is (or was) told about; a seek restarts it.
    Halted,
    /// Assigned by the group coordinator: waits for its committed offset (OffsetFetch)
    /// before it is fetched, or reset by `auto.offset.reset` when there is none.
    AwaitingPosition,
}

#[derive(Debug)]
struct RetryState {
    backoff: Backoff,
    retry_at: Option<Instant>,
}

impl RetryState {
    fn new(config: &FetcherConfig) -> Self {
        Self {
            backoff: Backoff::new(config.retry_backoff, config.retry_backoff_max),
            retry_at: None,
        }
    }

    /// A broker's: `reconnect.backoff.ms` up to `reconnect.backoff.max.ms`.
    fn reconnect(config: &FetcherConfig) -> Self {
        Self {
            backoff: Backoff::new(config.reconnect_backoff, config.reconnect_backoff_max),
            retry_at: None,
        }
    }

    /// Waits before the next try; returns how long.
    fn fail(&mut self, rng: &mut Rng, now: Instant) -> Duration {
        let delay = self.backoff.next_delay(rng);
        self.retry_at = Some(now + delay);
        delay
    }

    fn succeed(&mut self) {
        self.backoff.reset();
        self.retry_at = None;
    }

    /// Ready to try; clears a wait that has passed.
    fn ready(&mut self, now: Instant) -> bool {
        match self.retry_at {
            Some(at) if at > now => false,
            _ => {
                self.retry_at = None;
                true
            }
        }
    }

    fn pending(&self, now: Instant) -> Option<Instant> {
        self.retry_at.filter(|at| *at > now)
    }
}

#[derive(Debug)]
struct PartitionState {
    topic: Arc<str>,
    /// Next offset to hand to the user; `None` until looked up.
    position: Option<i64>,
    /// Next offset to fetch; `position` plus what is buffered.
    fetch_offset: i64,
    state: FetchState,
    generation: u64,
    paused: bool,
    buffer: VecDeque<Buffered>,
    buffered_bytes: usize,
    /// The fetch request this partition is part of.
    fetch_in_flight: Option<u64>,
    retry: RetryState,
    /// End offset at which the last end-of-partition event was queued.
    eof_offset: Option<i64>,
    high_watermark: i64,
    last_stable_offset: i64,
    log_start_offset: i64,
}

#[derive(Debug)]
enum Buffered {
    /// A batch as fetched, not decoded yet: the driver applies a response under the lock
    /// `recv` needs, so decoding there would make the user wait for a whole response's
    /// records. The driver decodes it after releasing the lock ([`decode_ahead`],
    /// [`Fetcher::handle_decoded`]); if `poll_event` reaches it first, it decodes it.
    Raw(RawBatch),
    Batch(BufferedBatch),
    /// Offsets with nothing for the user: a control batch (transaction marker), or with
    /// `read_committed` a batch of an aborted transaction. Consuming it moves the position
    /// to `next_offset` and releases its bytes.
    Skip {
        next_offset: i64,
        response_bytes: usize,
    },
    Eof(i64),
    Error(Error),
}

impl Buffered {
    /// A decoded batch, ready for `poll_event`.
    fn decoded(mut batch: RecordBatch, response_bytes: usize) -> Self {
        let records = if batch.is_control {
            // Transaction markers are never for the user. (The fetcher queues them as
            // `Skip`; one reaches here only if it failed to decode then and decodes now.)
            Vec::new()
        } else {
            std::mem::take(&mut batch.records)
        };
        Self::Batch(BufferedBatch {
            batch,
            records: records.into_iter(),
            bytes: response_bytes,
        })
    }
}

#[derive(Debug)]
struct RawBatch {
    /// The batch's bytes, a slice of the fetch response.
    bytes: Bytes,
    /// The broker that sent it.
    broker: i32,
    /// Fetch response bytes released when this batch is done.
    response_bytes: usize,
}

#[derive(Debug)]
struct BufferedBatch {
    /// The batch without its records (they are in `records`), for offsets and timestamps.
    batch: RecordBatch,
    records: std::vec::IntoIter<Record>,
    /// Fetch response bytes released when this batch is done.
    bytes: usize,
}

impl PartitionState {
    fn new(topic: &str, config: &FetcherConfig) -> Self {
        Self {
            topic: topic.into(),
            position: None,
            fetch_offset: 0,
            state: FetchState::Halted,
            generation: 0,
            paused: false,
            buffer: VecDeque::new(),
            buffered_bytes: 0,
            fetch_in_flight: None,
            retry: RetryState::new(config),
            eof_offset: None,
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
        }
    }

    /// Forgets everything fetched and everything in flight: a new generation.
    fn restart(&mut self) {
        self.generation += 1;
        self.buffer.clear();
        self.buffered_bytes = 0;
        self.fetch_in_flight = None;
        self.retry.succeed();
        self.eof_offset = None;
    }

    fn set_position(&mut self, offset: i64) {
        self.position = Some(offset);
        self.fetch_offset = offset;
        self.state = FetchState::Fetching;
    }

    fn look_up(&mut self, target: LookupTarget) {
        self.position = None;
        self.state = FetchState::Lookup {
            target,
            in_flight: false,
        };
    }
}

impl Fetcher {
    /// A fetcher with nothing assigned; `seed` drives backoff jitter.
    pub fn new(config: FetcherConfig, seed: u64) -> Self {
        let refresh = MetadataRefresh::new(config.retry_backoff, config.retry_backoff_max);
        Self {
            config,
            partitions: IndexMap::new(),
            rng: Rng::new(seed),
            next_request_id: 0,
            fetches: HashMap::new(),
            lookups: HashMap::new(),
            brokers_fetching: HashSet::new(),
            brokers_looking_up: HashSet::new(),
            broker_backoff: HashMap::new(),
            refresh,
            drain_cursor: 0,
            fetch_rotation: 0,
            space_freed: false,
            undecoded: Vec::new(),
            health: HashMap::new(),
            outage_errors: VecDeque::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &FetcherConfig {
        &self.config
    }

    /// True once since buffered data was consumed: the driver may be able to fetch again.
    pub fn poll_space_freed(&mut self) -> bool {
        std::mem::take(&mut self.space_freed)
    }

    /// Whether to send a Metadata request ([`Metadata::request`]) now: a leader was missing
    /// or a broker said the metadata is stale, or the cache is stale or `metadata.max.age.ms`
    /// old; only while something is assigned, and spaced and backed off by
    /// [`MetadataRefresh`] (`retry.backoff.ms` doubling to `retry.backoff.max.ms` while the
    /// cache stays incomplete). A `true` must be answered with
    /// [`Fetcher::handle_metadata_response`] or [`Fetcher::handle_metadata_failure`].
    pub fn poll_metadata_refresh(&mut self, now: Instant, metadata: &mut Metadata) -> bool {
        let active = self.has_assignment();
        self.refresh.poll_refresh(now, metadata, active)
    }

    /// Whether something asked for fresh metadata that no refresh has been sent for yet.
    pub fn wants_metadata_refresh(&self) -> bool {
        self.refresh.is_requested()
    }

    /// The earliest future time at which a backoff ends or a metadata refresh is due;
    /// `None` when nothing waits.
    pub fn poll_timeout(&self, now: Instant, metadata: &Metadata) -> Option<Instant> {
        let partitions = self
            .partitions
            .values()
            .filter_map(|s| s.retry.pending(now));
        let brokers = self.broker_backoff.values().filter_map(|r| r.pending(now));
        let refresh = self
            .refresh
            .poll_timeout(now, metadata, self.has_assignment());
        partitions.chain(brokers).chain(refresh).min()
    }

    pub(super) fn next_id(&mut self) -> u64 {
        self.next_request_id += 1;
        self.next_request_id
    }
}

fn unknown_partition(tp: &TopicPartition) -> Error {
    Error::UnknownPartition {
        partition: tp.clone(),
    }
}

fn millis_i32(duration: Duration) -> i32 {
    i32::try_from(duration.as_millis()).unwrap_or(i32::MAX)
}
