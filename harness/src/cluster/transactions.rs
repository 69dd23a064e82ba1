//! The transaction coordinator's state (KIP-98, KIP-360, KIP-588, KIP-664, KIP-890): per
//! transactional id, its producer id and epoch, the state of its transaction and the
//! partitions in it, as Kafka's `TransactionCoordinator`, `TransactionMetadata` and
//! `TransactionStateManager` keep them. Pure state: time comes in ([`Now`]), producer ids
//! come from the caller (the cluster-wide counter), and the work on the logs (markers, the
//! group offsets of a transaction) is the caller's, in `transactions_markers.rs`.
//!
//! States and transitions (Kafka's `TransactionState`):
//!
//! ```text
//!            InitProducerId               AddPartitions / AddOffsets / (Produce v12+)
//!   (new) ──────────────────▶ Empty ─────────────────────────────────▶ Ongoing ◀─┐
//!                              ▲  │ EndTxn abort (v5)                    │  │     │ more
//!                              │  ▼                                      │  └─────┘
//!   InitProducerId ─── Complete{Commit,Abort} ◀── markers ── Prepare{Commit,Abort}
//!                                                  written        ▲ EndTxn, or a fence
//!                                                                 │ (InitProducerId on an
//!                                                                 │ open transaction, timeout)
//! ```
//!
//! Kafka writes each transition to `__transaction_state` first; here a transition happens
//! at once, so Kafka's "pending transition" window (CONCURRENT_TRANSACTIONS while the log
//! append is in flight) does not exist, and PrepareEpochFence is never a visible state: a
//! fence bumps the epoch and moves straight to PrepareAbort. PrepareCommit and PrepareAbort
//! last until the markers are written (`markers_due`), which the cluster does at once unless
//! told to wait ([`TransactionConfig::marker_delay`]) or no broker can coordinate.
//!
//! Transaction versions (KIP-890): requests say which they speak. EndTxn v5 is transaction
//! version 2, whose every end bumps the producer epoch (and rotates the producer id when the
//! epoch is exhausted); lower versions are version 1, whose end keeps the epoch. The
//! coordinator's own aborts (fencing, timeouts) follow version 1, as a Kafka cluster whose
//! `transaction.version` feature is below 2 (the harness advertises no feature level).
//!
//! Bounds: at most [`TransactionConfig::max_transactional_ids`] ids (an idle one is dropped
//! early to make room, else CONCURRENT_TRANSACTIONS) and
//! [`TransactionConfig::max_partitions_per_transaction`] partitions per transaction
//! (POLICY_VIOLATION past it). Time-driven work is found through sorted indexes (by
//! deadline), never by scanning every id.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use franzy::proto::ErrorCode;

use super::clock::Time;

/// Kafka's `RecordBatch.NO_PRODUCER_ID`.
pub const NO_PRODUCER_ID: i64 = -1;
/// Kafka's `RecordBatch.NO_PRODUCER_EPOCH`.
pub const NO_PRODUCER_EPOCH: i16 = -1;

/// Default of [`TransactionConfig::max_timeout`]: 15 minutes (`transaction.max.timeout.ms`).
pub const DEFAULT_TRANSACTION_MAX_TIMEOUT: Duration = Duration::from_secs(900);
/// Default of [`TransactionConfig::abort_interval`]: 1 second (Kafka's
/// `transaction.abort.timed.out.transaction.cleanup.interval.ms` is 10 seconds).
pub const DEFAULT_TRANSACTION_ABORT_INTERVAL: Duration = Duration::from_secs(1);
/// Default of [`TransactionConfig::id_expiration`]: 7 days (`transactional.id.expiration.ms`).
pub const DEFAULT_TRANSACTIONAL_ID_EXPIRATION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default of [`TransactionConfig::id_expiration_interval`]: 1 hour
/// (`transaction.remove.expired.transaction.cleanup.interval.ms`).
pub const DEFAULT_TRANSACTIONAL_ID_EXPIRATION_INTERVAL: Duration = Duration::from_secs(3600);
/// Default of [`TransactionConfig::max_transactional_ids`]: 100,000.
pub const DEFAULT_MAX_TRANSACTIONAL_IDS: usize = 100_000;
/// Default of [`TransactionConfig::max_partitions_per_transaction`]: 10,000.
pub const DEFAULT_MAX_PARTITIONS_PER_TRANSACTION: usize = 10_000;

/// The transaction coordinator's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransactionConfig {
    /// Longest `transaction.timeout.ms` a producer may ask for (`transaction.max.timeout.ms`);
    /// longer is INVALID_TRANSACTION_TIMEOUT.
    pub max_timeout: Duration,
    /// How often open transactions are checked for their timeout (Kafka's
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`): a transaction open
    /// longer than its timeout is aborted at the first check after, its epoch bumped.
    pub abort_interval: Duration,
    /// How long an id without an open transaction is kept after its last change
    /// (`transactional.id.expiration.ms`); then it is forgotten, and its next
    /// InitProducerId gets a new producer id.
    pub id_expiration: Duration,
    /// How often ids are checked for expiration
    /// (`transaction.remove.expired.transaction.cleanup.interval.ms`).
    pub id_expiration_interval: Duration,
    /// How long after an EndTxn (or an abort of the coordinator's) the markers are written;
    /// until then the transaction is PrepareCommit or PrepareAbort and the coordinator
    /// answers CONCURRENT_TRANSACTIONS, as Kafka does while its markers are in flight.
    /// Zero (the default) writes them while handling the EndTxn.
    pub marker_delay: Duration,
    /// Most transactional ids known at once.
    pub max_transactional_ids: usize,
    /// Most partitions (and group offset partitions) in one transaction.
    pub max_partitions_per_transaction: usize,
}

impl Default for TransactionConfig {
    fn default() -> Self {
        Self {
            max_timeout: DEFAULT_TRANSACTION_MAX_TIMEOUT,
            abort_interval: DEFAULT_TRANSACTION_ABORT_INTERVAL,
            id_expiration: DEFAULT_TRANSACTIONAL_ID_EXPIRATION,
            id_expiration_interval: DEFAULT_TRANSACTIONAL_ID_EXPIRATION_INTERVAL,
            marker_delay: Duration::ZERO,
            max_transactional_ids: DEFAULT_MAX_TRANSACTIONAL_IDS,
            max_partitions_per_transaction: DEFAULT_MAX_PARTITIONS_PER_TRANSACTION,
        }
    }
}

/// The moment of a call: cluster time for deadlines, wall-clock milliseconds for the
/// timestamps DescribeTransactions reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Cluster time.
    pub at: Time,
    /// Wall-clock milliseconds since the Unix epoch.
    pub wall_ms: i64,
}

impl Now {
    /// The moment a request was handled.
    pub fn of(ctx: &super::RequestContext) -> Self {
        Self {
            at: ctx.now,
            wall_ms: ctx.now_ms,
        }
    }
}

/// A transaction's state, as DescribeTransactions and ListTransactions name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TransactionState {
    /// No transaction open (after InitProducerId).
    Empty,
    /// Partitions were added; records may be written.
    Ongoing,
    /// EndTxn asked to commit; the markers are being written.
    PrepareCommit,
    /// EndTxn (or the coordinator) asked to abort; the markers are being written.
    PrepareAbort,
    /// The commit markers are written.
    CompleteCommit,
    /// The abort markers are written.
    CompleteAbort,
    /// The id is being forgotten (expired).
    Dead,
    /// The epoch is being bumped to fence an older producer.
    PrepareEpochFence,
}

impl TransactionState {
    /// Every state, in Kafka's id order.
    pub const ALL: [TransactionState; 8] = [
        Self::Empty,
        Self::Ongoing,
        Self::PrepareCommit,
        Self::PrepareAbort,
        Self::CompleteCommit,
        Self::CompleteAbort,
        Self::Dead,
        Self::PrepareEpochFence,
    ];

    /// Kafka's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::Ongoing => "Ongoing",
            Self::PrepareCommit => "PrepareCommit",
            Self::PrepareAbort => "PrepareAbort",
            Self::CompleteCommit => "CompleteCommit",
            Self::CompleteAbort => "CompleteAbort",
            Self::Dead => "Dead",
            Self::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    /// The state named `name` (exactly as [`TransactionState::name`] writes it).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether an id in this state may expire (no transaction in flight).
    pub fn is_expiration_allowed(self) -> bool {
        matches!(
            self,
            Self::Empty | Self::CompleteCommit | Self::CompleteAbort
        )
    }
}

/// Which transaction protocol a request speaks (KIP-890): version 2 bumps the producer
/// epoch at the end of every transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransactionVersion {
    /// Kafka's TV_0/TV_1: the epoch stays for the producer's life.
    V1,
    /// Kafka's TV_2: every EndTxn bumps the epoch.
    V2,
}

impl TransactionVersion {
    /// Whether every end of a transaction bumps the epoch.
    pub fn supports_epoch_bump(self) -> bool {
        self == Self::V2
    }
}

/// A partition in a transaction: topic name and index.
pub type TransactionPartition = (String, i32);

/// One transactional id's state (Kafka's `TransactionMetadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionMetadata {
    transactional_id: Arc<str>,
    producer_id: i64,
    previous_producer_id: i64,
    next_producer_id: i64,
    producer_epoch: i16,
    last_producer_epoch: i16,
    timeout_ms: i32,
    state: TransactionState,
    partitions: BTreeSet<TransactionPartition>,
    start_ms: i64,
    last_update_ms: i64,
    version: TransactionVersion,
    /// The timeout check that aborts the open transaction (the first after it began
    /// `timeout_ms` ago), while it is open.
    timeout_check: Option<Time>,
    /// When the state last changed (cluster time), for expiration.
    last_update: Time,
    /// When the markers of a prepared end are to be written.
    markers_due: Option<Time>,
}

impl TransactionMetadata {
    fn new(id: Arc<str>, producer_id: i64, timeout_ms: i32, now: Now) -> Self {
        Self {
            transactional_id: id,
            producer_id,
            previous_producer_id: NO_PRODUCER_ID,
            next_producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            timeout_ms,
            state: TransactionState::Empty,
            partitions: BTreeSet::new(),
            start_ms: -1,
            last_update_ms: now.wall_ms,
            version: TransactionVersion::V1,
            timeout_check: None,
            last_update: now.at,
            markers_due: None,
        }
    }

    /// The transactional id.
    pub fn transactional_id(&self) -> &str {
        &self.transactional_id
    }
    /// The current producer id.
    pub fn producer_id(&self) -> i64 {
        self.producer_id
    }
    /// The producer id before the last change of producer id (or the current one).
    pub fn previous_producer_id(&self) -> i64 {
        self.previous_producer_id
    }
    /// The producer id the next completion moves to (KIP-890 epoch overflow), or -1.
    pub fn next_producer_id(&self) -> i64 {
        self.next_producer_id
    }
    /// The current producer epoch.
    pub fn producer_epoch(&self) -> i16 {
        self.producer_epoch
    }
    /// The epoch before the last bump that a retry may still present (KIP-360), or -1.
    pub fn last_producer_epoch(&self) -> i16 {
        self.last_producer_epoch
    }
    /// The transaction timeout the producer asked for.
    pub fn timeout_ms(&self) -> i32 {
        self.timeout_ms
    }
    /// The state.
    pub fn state(&self) -> TransactionState {
        self.state
    }
    /// The partitions in the transaction (group offsets as their `__consumer_offsets`
    /// partition), sorted.
    pub fn partitions(&self) -> &BTreeSet<TransactionPartition> {
        &self.partitions
    }
    /// When the transaction began (wall-clock ms), or -1.
    pub fn start_ms(&self) -> i64 {
        self.start_ms
    }
    /// When the state last changed (wall-clock ms).
    pub fn last_update_ms(&self) -> i64 {
        self.last_update_ms
    }
    /// The transaction version of the last transition.
    pub fn version(&self) -> TransactionVersion {
        self.version
    }
    /// When the markers of a prepared end are due, if they are.
    pub fn markers_due(&self) -> Option<Time> {
        self.markers_due
    }

    /// Whether the epoch may not be bumped by a client any more (Kafka keeps `i16::MAX`
    /// for fencing).
    pub fn is_producer_epoch_exhausted(&self) -> bool {
        is_epoch_exhausted(self.producer_epoch)
    }

    /// Moves to `state`: every transition remembers the producer id it leaves as the
    /// previous one and takes the update time, as Kafka's `completeTransitionTo` does.
    fn transition(&mut self, state: TransactionState, now: Now) {
        self.previous_producer_id = self.producer_id;
        self.state = state;
        self.last_update_ms = now.wall_ms;
        self.last_update = now.at;
    }
}

/// Kafka's `TransactionMetadata.isEpochExhausted`: clients may not use `i16::MAX - 1` on.
pub fn is_epoch_exhausted(epoch: i16) -> bool {
    epoch >= i16::MAX - 1
}

/// What InitProducerId with a transactional id came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitOutcome {
    /// The producer's id and epoch.
    Initialized {
        /// Producer id.
        producer_id: i64,
        /// Producer epoch.
        producer_epoch: i16,
    },
    /// A transaction of the previous epoch was open: it is being aborted with a bumped
    /// epoch, and the client is answered CONCURRENT_TRANSACTIONS, to retry (Kafka's
    /// PrepareEpochFence). The caller writes the abort markers.
    Fencing,
}

/// What EndTxn came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndOutcome {
    /// The transaction is prepared to end; its markers are due (the caller writes them).
    /// The producer id and epoch are those EndTxn v5 returns.
    Prepared {
        /// Producer id for the next transaction.
        producer_id: i64,
        /// Producer epoch for the next transaction.
        producer_epoch: i16,
    },
    /// A retry of an end that already happened: success, nothing changes.
    AlreadyEnded {
        /// The current producer id.
        producer_id: i64,
        /// The current producer epoch.
        producer_epoch: i16,
    },
}

/// The markers a prepared end needs: for `producer_id` at `producer_epoch`, commit or
/// abort, on each partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerJob {
    /// The transactional id.
    pub transactional_id: Arc<str>,
    /// The producer whose transaction ends.
    pub producer_id: i64,
    /// The epoch the markers carry.
    pub producer_epoch: i16,
    /// Commit (true) or abort.
    pub commit: bool,
    /// Where to write them.
    pub partitions: Vec<TransactionPartition>,
}

/// A transaction as ListTransactions lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedTransaction {
    /// The transactional id.
    pub transactional_id: Arc<str>,
    /// Its producer id.
    pub producer_id: i64,
    /// Its state.
    pub state: TransactionState,
}

/// Every transactional id's state, with the indexes time-driven work needs.
#[derive(Debug, Clone, Default)]
pub struct Transactions {
    config: TransactionConfig,
    by_id: HashMap<Arc<str>, TransactionMetadata>,
    /// Open transactions by the moment they time out.
    timeouts: BTreeSet<(Time, Arc<str>)>,
    /// Prepared ends by the moment their markers are due.
    markers: BTreeSet<(Time, Arc<str>)>,
    /// Ids that may expire, by their last change.
    idle: BTreeSet<(Time, Arc<str>)>,
}

/// The index entries one id's metadata gives.
struct IndexKeys {
    timeout: Option<Time>,
    markers: Option<Time>,
    idle: Option<Time>,
}

impl Transactions {
    /// No ids yet.
    pub fn new(config: TransactionConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// The settings.
    pub fn config(&self) -> &TransactionConfig {
        &self.config
    }

    /// How many ids are known.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether no id is known.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The state of `transactional_id`, if known.
    pub fn get(&self, transactional_id: &str) -> Option<&TransactionMetadata> {
        self.by_id.get(transactional_id)
    }

    /// Every known id's state, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &TransactionMetadata> {
        self.by_id.values()
    }

    fn keys_of(&self, txn: &TransactionMetadata) -> IndexKeys {
        IndexKeys {
            timeout: txn.timeout_check,
            markers: txn.markers_due,
            idle: txn.state.is_expiration_allowed().then_some(txn.last_update),
        }
    }

    fn unindex(&mut self, id: &Arc<str>) {
        let Some(txn) = self.by_id.get(id) else {
            return;
        };
        let keys = self.keys_of(txn);
        if let Some(at) = keys.timeout {
            self.timeouts.remove(&(at, id.clone()));
        }
        if let Some(at) = keys.markers {
            self.markers.remove(&(at, id.clone()));
        }
        if let Some(at) = keys.idle {
            self.idle.remove(&(at, id.clone()));
        }
    }

    fn index(&mut self, id: &Arc<str>) {
        let Some(txn) = self.by_id.get(id) else {
            return;
        };
        let keys = self.keys_of(txn);
        if let Some(at) = keys.timeout {
            self.timeouts.insert((at, id.clone()));
        }
        if let Some(at) = keys.markers {
            self.markers.insert((at, id.clone()));
        }
        if let Some(at) = keys.idle {
            self.idle.insert((at, id.clone()));
        }
    }

    /// Runs `change` on the metadata of `id` with the indexes kept in step.
    fn update<R>(
        &mut self,
        id: &Arc<str>,
        change: impl FnOnce(&mut TransactionMetadata, &TransactionConfig) -> R,
    ) -> Option<R> {
        self.unindex(id);
        let config = self.config;
        let result = self.by_id.get_mut(id).map(|txn| change(txn, &config));
        self.index(id);
        result
    }

    fn key_of(&self, id: &str) -> Option<Arc<str>> {
        self.by_id.get_key_value(id).map(|(key, _)| key.clone())
    }

    /// Whether `timeout_ms` is a transaction timeout producers may ask for (Kafka's
    /// `validateTransactionTimeoutMs`: above zero, at most the maximum).
    pub fn is_valid_timeout(&self, timeout_ms: i32) -> bool {
        timeout_ms > 0
            && u128::try_from(timeout_ms).unwrap_or(0) <= self.config.max_timeout.as_millis()
    }

    /// InitProducerId with a (non-empty) transactional id, as Kafka's
    /// `TransactionCoordinator.handleInitProducerId` decides: a new id gets a producer id
    /// (from `allocate`) at epoch 0; a known one gets its epoch bumped (a new producer id
    /// once the epoch is exhausted), or PRODUCER_FENCED when `expected` (KIP-360, v3+) names
    /// an older producer; with a transaction open, that transaction is aborted with a
    /// bumped epoch first ([`InitOutcome::Fencing`]); while an end is being written,
    /// CONCURRENT_TRANSACTIONS. INVALID_TRANSACTION_TIMEOUT for a timeout out of range.
    pub fn init_producer_id(
        &mut self,
        transactional_id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        now: Now,
        allocate: &mut dyn FnMut() -> Result<i64, ErrorCode>,
    ) -> Result<InitOutcome, ErrorCode> {
        if transactional_id.is_empty() {
            return Err(ErrorCode::InvalidRequest);
        }
        if !self.is_valid_timeout(timeout_ms) {
            return Err(ErrorCode::InvalidTransactionTimeout);
        }
        let id = match self.key_of(transactional_id) {
            Some(id) => id,
            None => {
                self.make_room()?;
                let producer_id = allocate()?;
                let id: Arc<str> = Arc::from(transactional_id);
                self.by_id.insert(
                    id.clone(),
                    TransactionMetadata::new(id.clone(), producer_id, timeout_ms, now),
                );
                self.index(&id);
                id
            }
        };
        let txn = self.by_id.get(&id).ok_or(ErrorCode::UnknownServerError)?;
        // Kafka's `isValidProducerId`: a new id, the current producer id, or the previous
        // one with an exhausted epoch (a retry after a rotation it never heard of).
        let valid_producer = |(producer_id, epoch): (i64, i16)| {
            txn.producer_epoch == NO_PRODUCER_EPOCH
                || producer_id == txn.producer_id
                || (producer_id == txn.previous_producer_id && is_epoch_exhausted(epoch))
        };
        if !expected.is_none_or(valid_producer) {
            return Err(ErrorCode::ProducerFenced);
        }
        match txn.state {
            TransactionState::PrepareAbort | TransactionState::PrepareCommit => {
                Err(ErrorCode::ConcurrentTransactions)
            }
            TransactionState::Empty
            | TransactionState::CompleteAbort
            | TransactionState::CompleteCommit => {
                if txn.is_producer_epoch_exhausted()
                    && expected.is_none_or(|(_, epoch)| epoch == txn.producer_epoch)
                {
                    let new_producer_id = allocate()?;
                    let record_last_epoch = expected.is_some();
                    self.update(&id, |txn, _| {
                        txn.last_producer_epoch = if record_last_epoch {
                            txn.producer_epoch
                        } else {
                            NO_PRODUCER_EPOCH
                        };
                        txn.transition(TransactionState::Empty, now);
                        txn.producer_id = new_producer_id;
                        txn.producer_epoch = 0;
                        txn.timeout_ms = timeout_ms;
                        txn.partitions.clear();
                        txn.start_ms = -1;
                        txn.timeout_check = None;
                        InitOutcome::Initialized {
                            producer_id: new_producer_id,
                            producer_epoch: 0,
                        }
                    })
                    .ok_or(ErrorCode::UnknownServerError)
                } else {
                    let (epoch, last_epoch) = next_epochs(txn, expected.map(|(_, e)| e))?;
                    self.update(&id, |txn, _| {
                        txn.transition(TransactionState::Empty, now);
                        txn.producer_epoch = epoch;
                        txn.last_producer_epoch = last_epoch;
                        txn.timeout_ms = timeout_ms;
                        txn.partitions.clear();
                        txn.start_ms = -1;
                        txn.timeout_check = None;
                        InitOutcome::Initialized {
                            producer_id: txn.producer_id,
                            producer_epoch: epoch,
                        }
                    })
                    .ok_or(ErrorCode::UnknownServerError)
                }
            }
            TransactionState::Ongoing => {
                self.fence_and_abort(&id, now)?;
                Ok(InitOutcome::Fencing)
            }
            TransactionState::Dead | TransactionState::PrepareEpochFence => {
                Err(ErrorCode::UnknownServerError)
            }
        }
    }

    /// Makes room for one more id: past the cap, the id idle longest is forgotten early;
    /// if every id has a transaction in flight, CONCURRENT_TRANSACTIONS (one will end, at
    /// the latest at its timeout).
    fn make_room(&mut self) -> Result<(), ErrorCode> {
        if self.by_id.len() < self.config.max_transactional_ids {
            return Ok(());
        }
        let Some((_, oldest)) = self.idle.first().cloned() else {
            return Err(ErrorCode::ConcurrentTransactions);
        };
        self.remove(&oldest);
        Ok(())
    }

    fn remove(&mut self, id: &Arc<str>) {
        self.unindex(id);
        self.by_id.remove(id);
    }

    /// Aborts the open transaction of `id` with a bumped epoch, as the coordinator does
    /// before InitProducerId bumps the epoch again and when a transaction times out
    /// (Kafka's `prepareFenceProducerEpoch`, then an abort not from the client, in
    /// transaction version 1): the markers carry the bumped epoch, which fences the old
    /// producer on every partition of the transaction.
    fn fence_and_abort(&mut self, id: &Arc<str>, now: Now) -> Result<(), ErrorCode> {
        let txn = self.by_id.get(id).ok_or(ErrorCode::UnknownServerError)?;
        if txn.state != TransactionState::Ongoing {
            return Err(ErrorCode::InvalidTxnState);
        }
        // An epoch of i16::MAX cannot be fenced (Kafka throws); clients never reach it,
        // since an exhausted epoch gets a new producer id.
        let bumped = txn
            .producer_epoch
            .checked_add(1)
            .ok_or(ErrorCode::UnknownServerError)?;
        self.update(id, |txn, config| {
            txn.producer_epoch = bumped;
            txn.last_producer_epoch = NO_PRODUCER_EPOCH;
            txn.transition(TransactionState::PrepareAbort, now);
            txn.version = TransactionVersion::V1;
            txn.next_producer_id = NO_PRODUCER_ID;
            txn.timeout_check = None;
            txn.markers_due = Some(now.at + config.marker_delay);
        })
        .ok_or(ErrorCode::UnknownServerError)
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn, and the partitions a Produce v12+ or a
    /// TxnOffsetCommit v5 adds), as Kafka's `handleAddPartitionsToTransaction` decides:
    /// INVALID_PRODUCER_ID_MAPPING for an unknown id or another producer id,
    /// PRODUCER_FENCED for another epoch, CONCURRENT_TRANSACTIONS while an end is being
    /// written; partitions already in the open transaction succeed at once; otherwise they
    /// join it (opening it).
    pub fn add_partitions(
        &mut self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[TransactionPartition],
        version: TransactionVersion,
        now: Now,
    ) -> Result<(), ErrorCode> {
        if transactional_id.is_empty() {
            return Err(ErrorCode::InvalidRequest);
        }
        let id = self
            .key_of(transactional_id)
            .ok_or(ErrorCode::InvalidProducerIdMapping)?;
        let txn = self.by_id.get(&id).ok_or(ErrorCode::UnknownServerError)?;
        if txn.producer_id != producer_id {
            return Err(ErrorCode::InvalidProducerIdMapping);
        }
        if txn.producer_epoch != producer_epoch {
            return Err(ErrorCode::ProducerFenced);
        }
        match txn.state {
            TransactionState::PrepareCommit | TransactionState::PrepareAbort => {
                return Err(ErrorCode::ConcurrentTransactions)
            }
            TransactionState::Ongoing if partitions.iter().all(|p| txn.partitions.contains(p)) => {
                return Ok(());
            }
            _ => {}
        }
        let added = partitions
            .iter()
            .filter(|p| !txn.partitions.contains(*p))
            .collect::<BTreeSet<_>>()
            .len();
        if txn.partitions.len().saturating_add(added) > self.config.max_partitions_per_transaction {
            return Err(ErrorCode::PolicyViolation);
        }
        self.update(&id, |txn, config| {
            if txn.state != TransactionState::Ongoing {
                txn.start_ms = now.wall_ms;
                let timeout = Duration::from_millis(u64::try_from(txn.timeout_ms).unwrap_or(0));
                txn.timeout_check = Some(tick_after(now.at + timeout, config.abort_interval));
            }
            txn.transition(TransactionState::Ongoing, now);
            txn.version = version;
            txn.partitions.extend(partitions.iter().cloned());
        })
        .ok_or(ErrorCode::UnknownServerError)
    }

    /// Whether `partitions` are in the producer's open transaction (AddPartitionsToTxn
    /// v4+ with `verify_only`, and a produce's check, KIP-890 part 1), as Kafka's
    /// `handleVerifyPartitionsInTransaction`: the whole answer fails with
    /// INVALID_PRODUCER_ID_MAPPING, PRODUCER_FENCED or CONCURRENT_TRANSACTIONS, or each
    /// partition is fine (`None`) or TRANSACTION_ABORTABLE (not added).
    pub fn verify_partitions(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[TransactionPartition],
    ) -> Result<Vec<Option<ErrorCode>>, ErrorCode> {
        if transactional_id.is_empty() {
            return Err(ErrorCode::InvalidRequest);
        }
        let txn = self
            .by_id
            .get(transactional_id)
            .ok_or(ErrorCode::InvalidProducerIdMapping)?;
        if txn.producer_id != producer_id {
            return Err(ErrorCode::InvalidProducerIdMapping);
        }
        if txn.producer_epoch != producer_epoch {
            return Err(ErrorCode::ProducerFenced);
        }
        if matches!(
            txn.state,
            TransactionState::PrepareCommit | TransactionState::PrepareAbort
        ) {
            return Err(ErrorCode::ConcurrentTransactions);
        }
        Ok(partitions
            .iter()
            .map(|p| (!txn.partitions.contains(p)).then_some(ErrorCode::TransactionAbortable))
            .collect())
    }

    /// EndTxn from a client, as Kafka's `TransactionCoordinator.endTransaction` decides for
    /// the request's transaction `version` (see the module doc): on success the transaction
    /// is PrepareCommit or PrepareAbort with its markers due ([`EndOutcome::Prepared`]), or
    /// it had already ended that way (a retry, [`EndOutcome::AlreadyEnded`]). Errors:
    /// INVALID_REQUEST (empty id), INVALID_PRODUCER_ID_MAPPING, PRODUCER_FENCED,
    /// CONCURRENT_TRANSACTIONS (the same end is being written), INVALID_TXN_STATE.
    pub fn end_transaction(
        &mut self,
        transactional_id: &str,
        (producer_id, producer_epoch): (i64, i16),
        commit: bool,
        version: TransactionVersion,
        now: Now,
        allocate: &mut dyn FnMut() -> Result<i64, ErrorCode>,
    ) -> Result<EndOutcome, ErrorCode> {
        if transactional_id.is_empty() {
            return Err(ErrorCode::InvalidRequest);
        }
        let id = self
            .key_of(transactional_id)
            .ok_or(ErrorCode::InvalidProducerIdMapping)?;
        let txn = self.by_id.get(&id).ok_or(ErrorCode::UnknownServerError)?;
        match version {
            TransactionVersion::V1 => {
                if txn.producer_id != producer_id {
                    return Err(ErrorCode::InvalidProducerIdMapping);
                }
                // Clients may not bump the epoch themselves in version 1.
                if producer_epoch != txn.producer_epoch {
                    return Err(ErrorCode::ProducerFenced);
                }
                let state = txn.state;
                let current = (txn.producer_id, txn.producer_epoch);
                self.end_in_state(&id, state, commit, false, version, current, now, allocate)
            }
            TransactionVersion::V2 => {
                let retry_on_overflow = txn.previous_producer_id == producer_id
                    && producer_epoch == i16::MAX - 1
                    && txn.producer_epoch == 0;
                let retry_on_epoch_bump =
                    i32::from(txn.producer_epoch) == i32::from(producer_epoch) + 1;
                let valid_epoch = match txn.state {
                    TransactionState::PrepareCommit | TransactionState::PrepareAbort => {
                        retry_on_epoch_bump
                    }
                    TransactionState::CompleteCommit | TransactionState::CompleteAbort => {
                        retry_on_epoch_bump
                            || retry_on_overflow
                            || producer_epoch == txn.producer_epoch
                    }
                    _ => producer_epoch == txn.producer_epoch,
                };
                if txn.producer_id != producer_id && !retry_on_overflow {
                    return Err(ErrorCode::InvalidProducerIdMapping);
                }
                if !valid_epoch {
                    return Err(ErrorCode::ProducerFenced);
                }
                let retry = retry_on_epoch_bump || retry_on_overflow;
                let state = txn.state;
                let current = (txn.producer_id, txn.producer_epoch);
                self.end_in_state(&id, state, commit, retry, version, current, now, allocate)
            }
        }
    }

    /// The state-by-state rules of an end (Kafka's table in `TransactionCoordinator`).
    // The end's inputs, as Kafka's `endTransaction` takes them.
    #[allow(clippy::too_many_arguments)]
    fn end_in_state(
        &mut self,
        id: &Arc<str>,
        state: TransactionState,
        commit: bool,
        retry: bool,
        version: TransactionVersion,
        current: (i64, i16),
        now: Now,
        allocate: &mut dyn FnMut() -> Result<i64, ErrorCode>,
    ) -> Result<EndOutcome, ErrorCode> {
        use TransactionState as S;
        let already = Ok(EndOutcome::AlreadyEnded {
            producer_id: current.0,
            producer_epoch: current.1,
        });
        let v2 = version.supports_epoch_bump();
        match (state, commit) {
            (S::Ongoing, _) => self.prepare_end(id, commit, version, false, now, allocate),
            (S::CompleteCommit, true) if !v2 || retry => already,
            (S::CompleteAbort, false) if !v2 || retry => already,
            // Version 2 may abort with nothing open (after a commit, an abort, or none).
            (S::CompleteCommit | S::CompleteAbort | S::Empty, false) if v2 && !retry => {
                self.prepare_end(id, false, version, true, now, allocate)
            }
            (S::PrepareCommit, true) | (S::PrepareAbort, false) => {
                Err(ErrorCode::ConcurrentTransactions)
            }
            (S::Dead | S::PrepareEpochFence, _) => Err(ErrorCode::UnknownServerError),
            _ => Err(ErrorCode::InvalidTxnState),
        }
    }

    /// Kafka's `prepareAbortOrCommit`: version 2 bumps the epoch (and, when exhausted,
    /// takes a new producer id for after the markers).
    fn prepare_end(
        &mut self,
        id: &Arc<str>,
        commit: bool,
        version: TransactionVersion,
        nothing_added: bool,
        now: Now,
        allocate: &mut dyn FnMut() -> Result<i64, ErrorCode>,
    ) -> Result<EndOutcome, ErrorCode> {
        let txn = self.by_id.get(id).ok_or(ErrorCode::UnknownServerError)?;
        let v2 = version.supports_epoch_bump();
        let next_producer_id = if v2 && txn.is_producer_epoch_exhausted() {
            allocate()?
        } else {
            NO_PRODUCER_ID
        };
        let (epoch, last_epoch) = if v2 {
            (
                txn.producer_epoch
                    .checked_add(1)
                    .ok_or(ErrorCode::UnknownServerError)?,
                txn.producer_epoch,
            )
        } else {
            (txn.producer_epoch, txn.last_producer_epoch)
        };
        self.update(id, |txn, config| {
            txn.transition(
                if commit {
                    TransactionState::PrepareCommit
                } else {
                    TransactionState::PrepareAbort
                },
                now,
            );
            txn.producer_epoch = epoch;
            txn.last_producer_epoch = last_epoch;
            txn.next_producer_id = next_producer_id;
            txn.version = version;
            if nothing_added {
                txn.start_ms = now.wall_ms;
            }
            txn.timeout_check = None;
            txn.markers_due = Some(now.at + config.marker_delay);
            // EndTxn v5 answers with what the next transaction uses: after an overflow, the
            // new producer id at epoch 0 (KIP-890).
            if next_producer_id != NO_PRODUCER_ID {
                EndOutcome::Prepared {
                    producer_id: next_producer_id,
                    producer_epoch: 0,
                }
            } else {
                EndOutcome::Prepared {
                    producer_id: txn.producer_id,
                    producer_epoch: epoch,
                }
            }
        })
        .ok_or(ErrorCode::UnknownServerError)
    }

    /// The markers the prepared end of `transactional_id` needs, if it is prepared.
    pub fn marker_job(&self, transactional_id: &str) -> Option<MarkerJob> {
        let txn = self.by_id.get(transactional_id)?;
        let commit = match txn.state {
            TransactionState::PrepareCommit => true,
            TransactionState::PrepareAbort => false,
            _ => return None,
        };
        Some(MarkerJob {
            transactional_id: txn.transactional_id.clone(),
            producer_id: txn.producer_id,
            producer_epoch: txn.producer_epoch,
            commit,
            partitions: txn.partitions.iter().cloned().collect(),
        })
    }

    /// The markers of `transactional_id` are written: PrepareCommit becomes
    /// CompleteCommit, PrepareAbort CompleteAbort (Kafka's `prepareComplete`); after a
    /// version-2 epoch overflow the next producer id takes over at epoch 0.
    pub fn complete(&mut self, transactional_id: &str, now: Now) -> Result<(), ErrorCode> {
        let id = self
            .key_of(transactional_id)
            .ok_or(ErrorCode::InvalidProducerIdMapping)?;
        self.update(&id, |txn, _| {
            let completed = match txn.state {
                TransactionState::PrepareCommit => TransactionState::CompleteCommit,
                TransactionState::PrepareAbort => TransactionState::CompleteAbort,
                _ => return Err(ErrorCode::InvalidTxnState),
            };
            txn.transition(completed, now);
            if txn.version.supports_epoch_bump() && txn.next_producer_id != NO_PRODUCER_ID {
                txn.producer_id = txn.next_producer_id;
                txn.producer_epoch = 0;
            }
            txn.next_producer_id = NO_PRODUCER_ID;
            txn.partitions.clear();
            txn.markers_due = None;
            Ok(())
        })
        .unwrap_or(Err(ErrorCode::UnknownServerError))
    }

    /// Puts off the markers of `transactional_id` until `at` (no broker could coordinate).
    pub fn delay_markers(&mut self, transactional_id: &str, at: Time) {
        if let Some(id) = self.key_of(transactional_id) {
            self.update(&id, |txn, _| {
                if txn.markers_due.is_some() {
                    txn.markers_due = Some(at);
                }
            });
        }
    }

    /// The ids whose markers are due at `now`, earliest first.
    pub fn due_markers(&self, now: Time) -> Vec<Arc<str>> {
        self.markers
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, id)| id.clone())
            .collect()
    }

    /// The ids whose open transaction has timed out by the check at `now`: began more than
    /// its timeout before a check (Kafka's `timedOutTransactions`), earliest first.
    pub fn timed_out(&self, now: Time) -> Vec<Arc<str>> {
        self.timeouts
            .iter()
            .take_while(|(check, _)| *check <= now)
            .map(|(_, id)| id.clone())
            .collect()
    }

    /// Aborts the timed-out transaction of `transactional_id` with a bumped epoch, fencing
    /// its producer (Kafka's `abortTimedOutTransactions`); its markers become due.
    pub fn abort_timed_out(&mut self, transactional_id: &str, now: Now) -> Result<(), ErrorCode> {
        let id = self
            .key_of(transactional_id)
            .ok_or(ErrorCode::InvalidProducerIdMapping)?;
        self.fence_and_abort(&id, now)
    }

    /// Puts off the timeout of `transactional_id`'s open transaction to the check at `at`
    /// (no broker could coordinate at the check).
    pub fn delay_timeout(&mut self, transactional_id: &str, at: Time) {
        if let Some(id) = self.key_of(transactional_id) {
            self.update(&id, |txn, _| {
                if txn.timeout_check.is_some() {
                    txn.timeout_check = Some(at);
                }
            });
        }
    }

    /// The ids that have expired by the last expiration check at or before `now` (every
    /// [`TransactionConfig::id_expiration_interval`] from the start): no transaction in
    /// flight and unchanged for [`TransactionConfig::id_expiration`] at that check.
    pub fn expired(&self, now: Time) -> Vec<Arc<str>> {
        let expiration = self.config.id_expiration;
        let check = tick_at_or_before(now, self.config.id_expiration_interval);
        self.idle
            .iter()
            .take_while(|(last_update, _)| *last_update + expiration <= check)
            .map(|(_, id)| id.clone())
            .collect()
    }

    /// Forgets `transactional_id` (expired): its next InitProducerId gets a new producer id.
    pub fn expire(&mut self, transactional_id: &str) {
        if let Some(id) = self.key_of(transactional_id) {
            self.remove(&id);
        }
    }

    /// When [`Transactions::due_markers`], [`Transactions::timed_out`] or
    /// [`Transactions::expired`] next have something: markers at their due time, timeouts
    /// at the first check (every [`TransactionConfig::abort_interval`] from the start)
    /// after their deadline, expirations at the first expiration check at or after it.
    pub fn next_deadline(&self) -> Option<Time> {
        let markers = self.markers.first().map(|(at, _)| *at);
        let timeout = self.timeouts.first().map(|(check, _)| *check);
        let expiry = self.idle.first().map(|(last_update, _)| {
            tick_at_or_after(
                *last_update + self.config.id_expiration,
                self.config.id_expiration_interval,
            )
        });
        [markers, timeout, expiry].into_iter().flatten().min()
    }

    /// The transactions ListTransactions shows (Kafka's `listTransactionStates`): not
    /// Dead, of a listed producer id and state when those filters are given, open longer
    /// than `duration_filter_ms` when it is not negative, and for which `owned` says this
    /// coordinator answers; sorted by id. Also the state filters that name no state.
    pub fn list(
        &self,
        states: &[String],
        producer_ids: &[i64],
        duration_filter_ms: i64,
        now: Now,
        owned: &mut dyn FnMut(&str) -> bool,
    ) -> (Vec<ListedTransaction>, Vec<String>) {
        let mut wanted_states = BTreeSet::new();
        let mut unknown = Vec::new();
        for name in states {
            match TransactionState::from_name(name) {
                Some(state) => {
                    wanted_states.insert(state);
                }
                None => unknown.push(name.clone()),
            }
        }
        let producers: BTreeSet<i64> = producer_ids.iter().copied().collect();
        let mut listed: Vec<ListedTransaction> = self
            .by_id
            .values()
            .filter(|txn| txn.state != TransactionState::Dead)
            .filter(|txn| producers.is_empty() || producers.contains(&txn.producer_id))
            .filter(|txn| states.is_empty() || wanted_states.contains(&txn.state))
            .filter(|txn| {
                duration_filter_ms < 0
                    || now.wall_ms.saturating_sub(txn.start_ms) > duration_filter_ms
            })
            .filter(|txn| owned(&txn.transactional_id))
            .map(|txn| ListedTransaction {
                transactional_id: txn.transactional_id.clone(),
                producer_id: txn.producer_id,
                state: txn.state,
            })
            .collect();
        listed.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        (listed, unknown)
    }
}

/// Kafka's `prepareIncrementProducerEpoch`: the epoch and last epoch after an
/// InitProducerId that `expected` (v3+) may name.
fn next_epochs(txn: &TransactionMetadata, expected: Option<i16>) -> Result<(i16, i16), ErrorCode> {
    // Kafka throws here (an exhausted epoch whose producer did not name it); a broker
    // answers that with UNKNOWN_SERVER_ERROR.
    if txn.is_producer_epoch_exhausted() {
        return Err(ErrorCode::UnknownServerError);
    }
    let bumped = txn.producer_epoch.saturating_add(1);
    match expected {
        None => Ok((bumped, NO_PRODUCER_EPOCH)),
        Some(epoch) if txn.producer_epoch == NO_PRODUCER_EPOCH || epoch == txn.producer_epoch => {
            Ok((bumped, txn.producer_epoch))
        }
        // A retry of a bump that succeeded: the current epoch again, no new bump.
        Some(epoch) if epoch == txn.last_producer_epoch => {
            Ok((txn.producer_epoch, txn.last_producer_epoch))
        }
        Some(_) => Err(ErrorCode::ProducerFenced),
    }
}

/// The first check strictly after `deadline`, checks every `interval` from the start.
fn tick_after(deadline: Time, interval: Duration) -> Time {
    let interval_ns = interval.as_nanos().max(1);
    let since = deadline.since_start().as_nanos();
    let ticks = since / interval_ns + 1;
    from_nanos(ticks.saturating_mul(interval_ns))
}

/// The last check at or before `at`, checks every `interval` from the start.
fn tick_at_or_before(at: Time, interval: Duration) -> Time {
    let interval_ns = interval.as_nanos().max(1);
    let since = at.since_start().as_nanos();
    from_nanos((since / interval_ns).saturating_mul(interval_ns))
}

/// The first check at or after `at`, checks every `interval` from the start.
fn tick_at_or_after(at: Time, interval: Duration) -> Time {
    let interval_ns = interval.as_nanos().max(1);
    let since = at.since_start().as_nanos();
    from_nanos(since.div_ceil(interval_ns).saturating_mul(interval_ns))
}

fn from_nanos(nanos: u128) -> Time {
    let secs = u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX);
    // Below a billion: fits a u32.
    let rest = u32::try_from(nanos % 1_000_000_000).unwrap_or(0);
    Time::from_start(Duration::new(secs, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn at(ms: u64) -> Now {
        Now {
            at: Time::from_start(Duration::from_millis(ms)),
            wall_ms: 1_700_000_000_000 + i64::try_from(ms).unwrap_or(0),
        }
    }

    /// A counter of producer ids from 1000, as the cluster's.
    struct Ids(i64);

    impl Ids {
        fn next(&mut self) -> Result<i64, ErrorCode> {
            let id = self.0;
            self.0 += 1;
            Ok(id)
        }
    }

    struct Fixture {
        txns: Transactions,
        ids: Ids,
    }

    impl Fixture {
        fn new() -> Self {
            Self::with(TransactionConfig::default())
        }

        fn with(config: TransactionConfig) -> Self {
            Self {
                txns: Transactions::new(config),
                ids: Ids(1000),
            }
        }

        fn init(
            &mut self,
            id: &str,
            expected: Option<(i64, i16)>,
        ) -> Result<(i64, i16), ErrorCode> {
            self.init_at(id, expected, at(0))
        }

        fn init_at(
            &mut self,
            id: &str,
            expected: Option<(i64, i16)>,
            now: Now,
        ) -> Result<(i64, i16), ErrorCode> {
            let ids = &mut self.ids;
            match self
                .txns
                .init_producer_id(id, 60_000, expected, now, &mut || ids.next())?
            {
                InitOutcome::Initialized {
                    producer_id,
                    producer_epoch,
                } => Ok((producer_id, producer_epoch)),
                InitOutcome::Fencing => Err(ErrorCode::ConcurrentTransactions),
            }
        }

        fn add(
            &mut self,
            id: &str,
            (pid, epoch): (i64, i16),
            partitions: &[i32],
        ) -> Result<(), ErrorCode> {
            let partitions: Vec<TransactionPartition> =
                partitions.iter().map(|p| ("t".to_string(), *p)).collect();
            self.txns
                .add_partitions(id, pid, epoch, &partitions, TransactionVersion::V1, at(0))
        }

        fn end(
            &mut self,
            id: &str,
            (pid, epoch): (i64, i16),
            commit: bool,
            version: TransactionVersion,
        ) -> Result<EndOutcome, ErrorCode> {
            let ids = &mut self.ids;
            self.txns
                .end_transaction(id, (pid, epoch), commit, version, at(0), &mut || ids.next())
        }

        fn state(&self, id: &str) -> TransactionState {
            self.txns
                .get(id)
                .map_or(TransactionState::Dead, |t| t.state())
        }

        fn epoch(&self, id: &str) -> (i64, i16) {
            self.txns
                .get(id)
                .map_or((-1, -1), |t| (t.producer_id(), t.producer_epoch()))
        }
    }

    #[test]
    fn init_producer_id_checks_the_id_and_the_timeout_first() {
        let mut f = Fixture::new();
        assert_eq!(f.init("", None), Err(ErrorCode::InvalidRequest));
        let ids = &mut f.ids;
        for timeout in [0, -1, 900_001] {
            assert_eq!(
                f.txns
                    .init_producer_id("a", timeout, None, at(0), &mut || ids.next()),
                Err(ErrorCode::InvalidTransactionTimeout),
                "{timeout}"
            );
        }
        assert!(f.txns.is_empty(), "nothing was created");
        assert!(f
            .txns
            .init_producer_id("a", 900_000, None, at(0), &mut || ids.next())
            .is_ok());
    }

    #[test]
    fn a_new_id_gets_a_producer_id_and_a_known_one_a_bumped_epoch() {
        let mut f = Fixture::new();
        assert_eq!(f.init("a", None), Ok((1000, 0)));
        assert_eq!(f.init("b", None), Ok((1001, 0)));
        assert_eq!(f.init("a", None), Ok((1000, 1)));
        let a = f.txns.get("a").cloned().expect("a");
        assert_eq!(
            (a.state(), a.last_producer_epoch()),
            (TransactionState::Empty, -1)
        );
        // KIP-360: the producer names its id and epoch; the bump remembers the old epoch,
        // so a retry of it gets the same epoch again.
        assert_eq!(f.init("a", Some((1000, 1))), Ok((1000, 2)));
        assert_eq!(f.init("a", Some((1000, 1))), Ok((1000, 2)));
        // Another producer id, or an epoch neither current nor last: fenced.
        assert_eq!(f.init("a", Some((1001, 2))), Err(ErrorCode::ProducerFenced));
        assert_eq!(f.init("a", Some((1000, 0))), Err(ErrorCode::ProducerFenced));
        // A new id accepts any producer the client names (recovering from
        // UNKNOWN_PRODUCER_ID): it has no epoch yet.
        assert_eq!(f.init("c", Some((77, 5))), Ok((1002, 0)));
    }

    #[test]
    fn an_exhausted_epoch_gets_a_new_producer_id() {
        let mut f = Fixture::new();
        f.init("a", None).expect("first");
        let mut last = (1000, 0);
        while !is_epoch_exhausted(last.1) {
            last = f.init("a", None).expect("bump");
        }
        assert_eq!(last, (1000, i16::MAX - 1));
        // Named by the producer: the last epoch is recorded, so a retry from the old
        // producer id (which never heard of the rotation) is let through.
        assert_eq!(f.init("a", Some(last)), Ok((1001, 0)));
        let a = f.txns.get("a").cloned().expect("a");
        assert_eq!(
            (a.previous_producer_id(), a.last_producer_epoch()),
            (1000, i16::MAX - 1)
        );
        assert_eq!(f.init("a", Some(last)), Ok((1001, 0)));
        // Not named: a new id too, no last epoch.
        let mut f = Fixture::new();
        f.init("a", None).expect("first");
        while !is_epoch_exhausted(f.epoch("a").1) {
            f.init("a", None).expect("bump");
        }
        assert_eq!(f.init("a", None), Ok((1001, 0)));
        assert_eq!(f.txns.get("a").map(|t| t.last_producer_epoch()), Some(-1));
    }

    #[test]
    fn init_producer_id_on_an_open_transaction_aborts_it_with_a_bumped_epoch_first() {
        let mut f = Fixture::new();
        let producer = f.init("a", None).expect("init");
        f.add("a", producer, &[0, 1]).expect("add");
        // The open transaction is aborted at epoch 1, and the client is told to retry.
        assert_eq!(f.init("a", None), Err(ErrorCode::ConcurrentTransactions));
        assert_eq!(f.state("a"), TransactionState::PrepareAbort);
        let job = f.txns.marker_job("a").expect("markers");
        assert_eq!(
            (job.producer_id, job.producer_epoch, job.commit),
            (1000, 1, false)
        );
        assert_eq!(
            job.partitions,
            vec![("t".to_string(), 0), ("t".to_string(), 1)]
        );
        // While the markers are written, the retry waits.
        assert_eq!(f.init("a", None), Err(ErrorCode::ConcurrentTransactions));
        f.txns.complete("a", at(5)).expect("markers written");
        assert_eq!(f.state("a"), TransactionState::CompleteAbort);
        assert_eq!(f.init("a", None), Ok((1000, 2)));
        // The zombie at epoch 0 is fenced everywhere.
        assert_eq!(f.add("a", producer, &[0]), Err(ErrorCode::ProducerFenced));
        assert_eq!(
            f.end("a", producer, true, TransactionVersion::V1),
            Err(ErrorCode::ProducerFenced)
        );
    }

    #[test]
    fn add_partitions_checks_the_producer_then_the_state() {
        let mut f = Fixture::with(TransactionConfig {
            max_partitions_per_transaction: 3,
            ..TransactionConfig::default()
        });
        assert_eq!(
            f.add("a", (1000, 0), &[0]),
            Err(ErrorCode::InvalidProducerIdMapping)
        );
        let producer = f.init("a", None).expect("init");
        assert_eq!(f.add("", producer, &[0]), Err(ErrorCode::InvalidRequest));
        assert_eq!(
            f.add("a", (999, 0), &[0]),
            Err(ErrorCode::InvalidProducerIdMapping)
        );
        assert_eq!(f.add("a", (1000, 1), &[0]), Err(ErrorCode::ProducerFenced));
        f.add("a", producer, &[0]).expect("opens");
        let opened = f.txns.get("a").cloned().expect("a");
        assert_eq!(opened.state(), TransactionState::Ongoing);
        assert_eq!(opened.start_ms(), at(0).wall_ms);
        // Already in: success, nothing changes.
        f.add("a", producer, &[0]).expect("again");
        f.add("a", producer, &[1, 2]).expect("more");
        assert_eq!(f.add("a", producer, &[3]), Err(ErrorCode::PolicyViolation));
        assert_eq!(f.txns.get("a").map(|t| t.partitions().len()), Some(3));
        f.end("a", producer, true, TransactionVersion::V1)
            .expect("end");
        assert_eq!(
            f.add("a", producer, &[0]),
            Err(ErrorCode::ConcurrentTransactions)
        );
        f.txns.complete("a", at(1)).expect("complete");
        // A completed transaction's producer opens the next one.
        f.add("a", producer, &[3]).expect("next transaction");
        assert_eq!(f.txns.get("a").map(|t| t.partitions().len()), Some(1));
    }

    #[test]
    fn verification_answers_per_partition_or_for_the_whole_transaction() {
        let mut f = Fixture::new();
        let parts = [("t".to_string(), 0), ("t".to_string(), 1)];
        assert_eq!(
            f.txns.verify_partitions("a", 1000, 0, &parts),
            Err(ErrorCode::InvalidProducerIdMapping)
        );
        let producer = f.init("a", None).expect("init");
        f.add("a", producer, &[0]).expect("add");
        assert_eq!(
            f.txns.verify_partitions("a", 1000, 0, &parts),
            Ok(vec![None, Some(ErrorCode::TransactionAbortable)])
        );
        assert_eq!(
            f.txns.verify_partitions("a", 1001, 0, &parts),
            Err(ErrorCode::InvalidProducerIdMapping)
        );
        assert_eq!(
            f.txns.verify_partitions("a", 1000, 1, &parts),
            Err(ErrorCode::ProducerFenced)
        );
        f.end("a", producer, false, TransactionVersion::V1)
            .expect("abort");
        assert_eq!(
            f.txns.verify_partitions("a", 1000, 0, &parts),
            Err(ErrorCode::ConcurrentTransactions)
        );
    }

    #[test]
    fn end_transaction_in_version_1_follows_kafkas_table() {
        use TransactionVersion::V1;
        let mut f = Fixture::new();
        assert_eq!(
            f.end("a", (1000, 0), true, V1),
            Err(ErrorCode::InvalidProducerIdMapping)
        );
        let producer = f.init("a", None).expect("init");
        assert_eq!(
            f.end("", producer, true, V1),
            Err(ErrorCode::InvalidRequest)
        );
        // Empty: nothing to end.
        assert_eq!(
            f.end("a", producer, true, V1),
            Err(ErrorCode::InvalidTxnState)
        );
        assert_eq!(
            f.end("a", producer, false, V1),
            Err(ErrorCode::InvalidTxnState)
        );
        f.add("a", producer, &[0]).expect("add");
        assert_eq!(
            f.end("a", (1001, 0), true, V1),
            Err(ErrorCode::InvalidProducerIdMapping)
        );
        assert_eq!(
            f.end("a", (1000, 1), true, V1),
            Err(ErrorCode::ProducerFenced)
        );
        assert_eq!(
            f.end("a", producer, true, V1),
            Ok(EndOutcome::Prepared {
                producer_id: 1000,
                producer_epoch: 0
            })
        );
        assert_eq!(f.state("a"), TransactionState::PrepareCommit);
        // While the markers are written: the same end waits, the other is invalid.
        assert_eq!(
            f.end("a", producer, true, V1),
            Err(ErrorCode::ConcurrentTransactions)
        );
        assert_eq!(
            f.end("a", producer, false, V1),
            Err(ErrorCode::InvalidTxnState)
        );
        f.txns.complete("a", at(1)).expect("complete");
        // A retry of the commit succeeds; an abort of it is invalid.
        assert_eq!(
            f.end("a", producer, true, V1),
            Ok(EndOutcome::AlreadyEnded {
                producer_id: 1000,
                producer_epoch: 0
            })
        );
        assert_eq!(
            f.end("a", producer, false, V1),
            Err(ErrorCode::InvalidTxnState)
        );
        assert_eq!(f.epoch("a"), (1000, 0), "version 1 keeps the epoch");
        // The same for an abort.
        f.add("a", producer, &[0]).expect("add");
        f.end("a", producer, false, V1).expect("abort");
        assert_eq!(
            f.end("a", producer, false, V1),
            Err(ErrorCode::ConcurrentTransactions)
        );
        assert_eq!(
            f.end("a", producer, true, V1),
            Err(ErrorCode::InvalidTxnState)
        );
        f.txns.complete("a", at(1)).expect("complete");
        assert_eq!(f.state("a"), TransactionState::CompleteAbort);
        assert!(matches!(
            f.end("a", producer, false, V1),
            Ok(EndOutcome::AlreadyEnded { .. })
        ));
        assert_eq!(
            f.end("a", producer, true, V1),
            Err(ErrorCode::InvalidTxnState)
        );
    }

    #[test]
    fn end_transaction_in_version_2_bumps_the_epoch_and_knows_retries() {
        use TransactionVersion::V2;
        let mut f = Fixture::new();
        let producer = f.init("a", None).expect("init");
        // Empty: abort bumps the epoch (nothing to write), commit is invalid.
        assert_eq!(
            f.end("a", producer, true, V2),
            Err(ErrorCode::InvalidTxnState)
        );
        assert_eq!(
            f.end("a", producer, false, V2),
            Ok(EndOutcome::Prepared {
                producer_id: 1000,
                producer_epoch: 1
            })
        );
        assert_eq!(f.txns.marker_job("a").map(|j| j.partitions.len()), Some(0));
        f.txns.complete("a", at(1)).expect("complete");
        f.add("a", (1000, 1), &[0]).expect("add at the new epoch");
        assert_eq!(
            f.end("a", (1000, 1), true, V2),
            Ok(EndOutcome::Prepared {
                producer_id: 1000,
                producer_epoch: 2
            })
        );
        // The retry (old epoch) while the markers are written waits; the markers carry the
        // bumped epoch.
        assert_eq!(
            f.end("a", (1000, 1), true, V2),
            Err(ErrorCode::ConcurrentTransactions)
        );
        assert_eq!(
            f.end("a", (1000, 2), true, V2),
            Err(ErrorCode::ProducerFenced)
        );
        assert_eq!(f.txns.marker_job("a").map(|j| j.producer_epoch), Some(2));
        f.txns.complete("a", at(1)).expect("complete");
        // CompleteCommit: the retry of the commit succeeds with the new epoch; its abort is
        // invalid; a commit at the current epoch is invalid; an abort at it bumps again.
        assert_eq!(
            f.end("a", (1000, 1), true, V2),
            Ok(EndOutcome::AlreadyEnded {
                producer_id: 1000,
                producer_epoch: 2
            })
        );
        assert_eq!(
            f.end("a", (1000, 1), false, V2),
            Err(ErrorCode::InvalidTxnState)
        );
        assert_eq!(
            f.end("a", (1000, 2), true, V2),
            Err(ErrorCode::InvalidTxnState)
        );
        assert_eq!(
            f.end("a", (1000, 0), true, V2),
            Err(ErrorCode::ProducerFenced)
        );
        assert!(matches!(
            f.end("a", (1000, 2), false, V2),
            Ok(EndOutcome::Prepared {
                producer_epoch: 3,
                ..
            })
        ));
        f.txns.complete("a", at(1)).expect("complete");
        // CompleteAbort: the retry succeeds, a commit is invalid.
        assert!(matches!(
            f.end("a", (1000, 2), false, V2),
            Ok(EndOutcome::AlreadyEnded { .. })
        ));
        assert_eq!(
            f.end("a", (1000, 2), true, V2),
            Err(ErrorCode::InvalidTxnState)
        );
    }

    #[test]
    fn an_exhausted_epoch_in_version_2_moves_to_a_new_producer_id_after_the_markers() {
        use TransactionVersion::V2;
        let mut f = Fixture::new();
        f.init("a", None).expect("init");
        while !is_epoch_exhausted(f.epoch("a").1) {
            f.init("a", None).expect("bump");
        }
        let exhausted = f.epoch("a");
        f.add("a", exhausted, &[0]).expect("add");
        assert_eq!(
            f.end("a", exhausted, true, V2),
            Ok(EndOutcome::Prepared {
                producer_id: 1001,
                producer_epoch: 0
            })
        );
        // The markers go out for the old producer id at the last epoch.
        let job = f.txns.marker_job("a").expect("job");
        assert_eq!((job.producer_id, job.producer_epoch), (1000, i16::MAX));
        f.txns.complete("a", at(1)).expect("complete");
        assert_eq!(f.epoch("a"), (1001, 0));
        // A retry from the old producer id is recognised.
        assert_eq!(
            f.end("a", exhausted, true, V2),
            Ok(EndOutcome::AlreadyEnded {
                producer_id: 1001,
                producer_epoch: 0
            })
        );
    }

    #[test]
    fn open_transactions_time_out_at_the_first_check_after_their_timeout() {
        let mut f = Fixture::new();
        let ids = &mut f.ids;
        f.txns
            .init_producer_id("a", 1_000, None, at(0), &mut || ids.next())
            .expect("init");
        f.txns
            .add_partitions(
                "a",
                1000,
                0,
                &[("t".into(), 0)],
                TransactionVersion::V1,
                at(300),
            )
            .expect("add");
        // Began at 0.3 s with a 1 s timeout: still open at the check at 1 s, aborted at 2 s.
        assert_eq!(f.txns.next_deadline(), Some(Time::from_start(2 * SECOND)));
        assert!(f.txns.timed_out(Time::from_start(SECOND)).is_empty());
        let due = f.txns.timed_out(Time::from_start(2 * SECOND));
        assert_eq!(due, vec![Arc::from("a")]);
        f.txns.abort_timed_out("a", at(2_000)).expect("abort");
        assert_eq!(f.state("a"), TransactionState::PrepareAbort);
        assert_eq!(
            f.epoch("a"),
            (1000, 1),
            "the epoch is bumped to fence the producer"
        );
        assert_eq!(
            f.txns.due_markers(Time::from_start(2 * SECOND)),
            vec![Arc::from("a")]
        );
        assert!(f.txns.timed_out(Time::from_start(10 * SECOND)).is_empty());
        f.txns.complete("a", at(2_000)).expect("complete");
        // The zombie is fenced at the coordinator.
        assert_eq!(
            f.end("a", (1000, 0), true, TransactionVersion::V1),
            Err(ErrorCode::ProducerFenced)
        );
        assert_eq!(f.add("a", (1000, 0), &[0]), Err(ErrorCode::ProducerFenced));
        // A check that could not run (no coordinator) is put off.
        f.add("a", (1000, 1), &[0]).expect("reopen");
        let check = f.txns.next_deadline().expect("a check");
        f.txns.delay_timeout("a", check + 5 * SECOND);
        assert!(f.txns.timed_out(check).is_empty());
        assert_eq!(f.txns.next_deadline(), Some(check + 5 * SECOND));
    }

    #[test]
    fn markers_are_due_after_the_configured_delay() {
        let mut f = Fixture::with(TransactionConfig {
            marker_delay: Duration::from_millis(50),
            ..TransactionConfig::default()
        });
        let producer = f.init("a", None).expect("init");
        f.add("a", producer, &[0]).expect("add");
        f.end("a", producer, true, TransactionVersion::V1)
            .expect("end");
        let due = Time::from_start(Duration::from_millis(50));
        assert_eq!(f.txns.next_deadline(), Some(due));
        assert!(f
            .txns
            .due_markers(Time::from_start(Duration::from_millis(49)))
            .is_empty());
        assert_eq!(f.txns.due_markers(due), vec![Arc::from("a")]);
        f.txns.delay_markers("a", due + SECOND);
        assert_eq!(f.txns.next_deadline(), Some(due + SECOND));
        f.txns.complete("a", at(1_050)).expect("complete");
        assert_eq!(f.txns.marker_job("a"), None);
        assert!(f.txns.due_markers(Time::from_start(10 * SECOND)).is_empty());
        assert_eq!(
            f.txns.complete("a", at(1_050)),
            Err(ErrorCode::InvalidTxnState)
        );
    }

    #[test]
    fn idle_ids_expire_at_the_check_after_the_expiration() {
        let mut f = Fixture::with(TransactionConfig {
            id_expiration: 10 * SECOND,
            id_expiration_interval: 3 * SECOND,
            ..TransactionConfig::default()
        });
        f.init("a", None).expect("init");
        let producer = f.init_at("b", None, at(0)).expect("init");
        f.add("b", producer, &[0])
            .expect("b is open: never expires");
        // The expiration check at 12 s is the first after a's 10 s.
        assert_eq!(f.txns.next_deadline(), Some(Time::from_start(12 * SECOND)));
        assert!(f.txns.expired(Time::from_start(11 * SECOND)).is_empty());
        assert_eq!(
            f.txns.expired(Time::from_start(12 * SECOND)),
            vec![Arc::from("a")]
        );
        f.txns.expire("a");
        assert_eq!(f.init("a", None), Ok((1002, 0)), "a new producer id");
    }

    #[test]
    fn the_id_cap_drops_the_longest_idle_id_or_refuses() {
        let mut f = Fixture::with(TransactionConfig {
            max_transactional_ids: 2,
            ..TransactionConfig::default()
        });
        let a = f.init_at("a", None, at(0)).expect("a");
        let b = f.init_at("b", None, at(10)).expect("b");
        assert_eq!(f.init_at("c", None, at(20)), Ok((1002, 0)));
        assert!(f.txns.get("a").is_none(), "a, idle longest, made room");
        assert_eq!(f.txns.len(), 2);
        f.add("b", b, &[0]).expect("b open");
        f.add("c", (1002, 0), &[0]).expect("c open");
        assert_eq!(f.init("d", None), Err(ErrorCode::ConcurrentTransactions));
        let _ = a;
    }

    #[test]
    fn list_filters_by_state_producer_duration_and_owner() {
        let mut f = Fixture::new();
        let a = f.init("a", None).expect("a");
        f.init("b", None).expect("b");
        f.init("c", None).expect("c");
        f.add("a", a, &[0]).expect("open a");
        let mut all = |_: &str| true;
        let names = |listed: Vec<ListedTransaction>| -> Vec<String> {
            listed
                .iter()
                .map(|l| l.transactional_id.to_string())
                .collect()
        };
        let (listed, unknown) = f.txns.list(&[], &[], -1, at(0), &mut all);
        assert_eq!(names(listed), vec!["a", "b", "c"]);
        assert!(unknown.is_empty());
        let (listed, unknown) = f.txns.list(
            &["Ongoing".into(), "Bogus".into()],
            &[],
            -1,
            at(0),
            &mut all,
        );
        assert_eq!(names(listed), vec!["a"]);
        assert_eq!(unknown, vec!["Bogus".to_string()]);
        let (listed, _) = f.txns.list(&[], &[1001, 5], -1, at(0), &mut all);
        assert_eq!(names(listed), vec!["b"]);
        // Open longer than 500 ms (an Empty id counts from -1, as in Kafka).
        let (listed, _) = f
            .txns
            .list(&["Ongoing".into()], &[], 500, at(400), &mut all);
        assert!(listed.is_empty());
        let (listed, _) = f
            .txns
            .list(&["Ongoing".into()], &[], 500, at(600), &mut all);
        assert_eq!(names(listed), vec!["a"]);
        let (listed, _) = f.txns.list(&[], &[], -1, at(0), &mut |id: &str| id != "b");
        assert_eq!(names(listed), vec!["a", "c"]);
    }

    /// A fixture whose id "a" is in `state` (markers never written by themselves here),
    /// with its producer.
    fn in_state(state: TransactionState) -> (Fixture, (i64, i16)) {
        use TransactionState as S;
        let mut f = Fixture::new();
        let producer = f.init("a", None).expect("init");
        match state {
            S::Empty => {}
            S::Ongoing => f.add("a", producer, &[0]).expect("add"),
            S::PrepareCommit | S::PrepareAbort | S::CompleteCommit | S::CompleteAbort => {
                f.add("a", producer, &[0]).expect("add");
                let commit = matches!(state, S::PrepareCommit | S::CompleteCommit);
                f.end("a", producer, commit, TransactionVersion::V1)
                    .expect("end");
                if matches!(state, S::CompleteCommit | S::CompleteAbort) {
                    f.txns.complete("a", at(1)).expect("complete");
                }
            }
            S::Dead | S::PrepareEpochFence => unreachable!("never a resting state"),
        }
        assert_eq!(f.state("a"), state);
        (f, producer)
    }

    /// Kafka's answers, state by state, for the producer itself (transaction version 1):
    /// InitProducerId, AddPartitions of a new partition, verification of partition 0, EndTxn
    /// commit and abort. `Ok` is success; "retry" is CONCURRENT_TRANSACTIONS.
    #[test]
    fn every_request_in_every_state_answers_as_kafka() {
        use ErrorCode::{ConcurrentTransactions as Busy, InvalidTxnState as Invalid};
        use TransactionState as S;
        type Row = (
            TransactionState,
            Result<(), ErrorCode>,
            Result<(), ErrorCode>,
            Result<Option<ErrorCode>, ErrorCode>,
            Result<(), ErrorCode>,
            Result<(), ErrorCode>,
        );
        let abortable = Ok(Some(ErrorCode::TransactionAbortable));
        let rows: [Row; 6] = [
            (
                S::Empty,
                Ok(()),
                Ok(()),
                abortable,
                Err(Invalid),
                Err(Invalid),
            ),
            // InitProducerId on an open transaction fences it: the client retries.
            (S::Ongoing, Err(Busy), Ok(()), Ok(None), Ok(()), Ok(())),
            (
                S::PrepareCommit,
                Err(Busy),
                Err(Busy),
                Err(Busy),
                Err(Busy),
                Err(Invalid),
            ),
            (
                S::PrepareAbort,
                Err(Busy),
                Err(Busy),
                Err(Busy),
                Err(Invalid),
                Err(Busy),
            ),
            (
                S::CompleteCommit,
                Ok(()),
                Ok(()),
                abortable,
                Ok(()),
                Err(Invalid),
            ),
            (
                S::CompleteAbort,
                Ok(()),
                Ok(()),
                abortable,
                Err(Invalid),
                Ok(()),
            ),
        ];
        let part0 = [("t".to_string(), 0)];
        for (state, init, add, verify, commit, abort) in rows {
            let (mut f, _) = in_state(state);
            assert_eq!(f.init("a", None).map(|_| ()), init, "{state:?} init");
            let (mut f, producer) = in_state(state);
            assert_eq!(f.add("a", producer, &[1]), add, "{state:?} add");
            let (f, producer) = in_state(state);
            let verified = f
                .txns
                .verify_partitions("a", producer.0, producer.1, &part0)
                .map(|codes| codes[0]);
            assert_eq!(verified, verify, "{state:?} verify");
            for (commit_it, want) in [(true, commit), (false, abort)] {
                let (mut f, producer) = in_state(state);
                let ended = f
                    .end("a", producer, commit_it, TransactionVersion::V1)
                    .map(|_| ());
                assert_eq!(ended, want, "{state:?} end commit={commit_it}");
            }
            // Another epoch is fenced, another producer id unknown, in every state.
            let (mut f, (id, epoch)) = in_state(state);
            let stale = (id, epoch + 1);
            assert_eq!(
                f.add("a", stale, &[1]),
                Err(ErrorCode::ProducerFenced),
                "{state:?}"
            );
            assert_eq!(
                f.end("a", stale, true, TransactionVersion::V1),
                Err(ErrorCode::ProducerFenced),
                "{state:?}"
            );
            assert_eq!(
                f.txns.verify_partitions("a", id, epoch + 1, &part0),
                Err(ErrorCode::ProducerFenced),
                "{state:?}"
            );
            let other = (id + 1, epoch);
            assert_eq!(
                f.add("a", other, &[1]),
                Err(ErrorCode::InvalidProducerIdMapping),
                "{state:?}"
            );
            assert_eq!(
                f.end("a", other, false, TransactionVersion::V1),
                Err(ErrorCode::InvalidProducerIdMapping),
                "{state:?}"
            );
        }
    }

    #[test]
    fn state_names_are_kafkas() {
        for state in TransactionState::ALL {
            assert_eq!(TransactionState::from_name(state.name()), Some(state));
        }
        assert_eq!(
            TransactionState::PrepareEpochFence.name(),
            "PrepareEpochFence"
        );
        assert_eq!(TransactionState::from_name("ongoing"), None);
    }
}
