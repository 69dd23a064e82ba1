//! The transactional producer's state machine, without IO: the Java client's
//! `TransactionManager` (KIP-98 transactions, KIP-360 epoch bumps on re-initialisation,
//! KIP-447 offsets with the consumer group's generation, KIP-588 recovery from
//! INVALID_PRODUCER_EPOCH, KIP-890 part 1's TRANSACTION_ABORTABLE).
//!
//! ```text
//!                 init_transactions
//!  Uninitialized ──────────────────▶ Initializing ──InitProducerId──▶ Ready ◀───────────┐
//!                                        ▲                             │ begin        │
//!                         epoch bump ────┘                             ▼              │
//!                 (after an abort that left a hole,          InTransaction ──commit──▶ Committing
//!                  or a commit of unknown outcome)             │      │                 │   │
//!                                                      abort   │      │ abortable error │   │ EndTxn ok
//!                                                              ▼      ▼                 ▼   └───▶ Ready
//!                                         Ready ◀── Aborting ◀── AbortableError ◀──────┘
//!                                      (or a bump)          abort
//!  any state ── fenced, not authorized, broker without transactions, ... ──▶ FatalError
//! ```
//!
//! One transactional request is in flight at a time, chosen in Java's priority order:
//! FindCoordinator, InitProducerId, AddPartitionsToTxn / AddOffsetsToTxn / TxnOffsetCommit,
//! EndTxn (only once every record of the transaction completed), then an epoch-bumping
//! InitProducerId. Requests go to the transaction coordinator (found with FindCoordinator
//! TRANSACTION), TxnOffsetCommit to the group's coordinator (FindCoordinator GROUP), and
//! FindCoordinator to any broker. Partitions join the transaction before their first
//! batch: new partitions gather while a request is in flight and go together in the next
//! AddPartitionsToTxn (v0-v3, the client flow of brokers without KIP-890 part 2).
//!
//! Each answer is classified per request type as Java's handlers classify it (DESIGN.md has
//! the table): retriable answers are retried here (COORDINATOR_NOT_AVAILABLE and
//! NOT_COORDINATOR after finding the coordinator again; CONCURRENT_TRANSACTIONS on the first
//! AddPartitionsToTxn of a transaction after 20 ms, as Java does, others after
//! `retry.backoff.ms` doubling to `retry.backoff.max.ms`); abortable ones move to
//! AbortableError, where every operation but `abort` fails with [`Error::Abortable`]; fatal
//! ones to FatalError.
//!
//! **Torn commits.** A commit is only reported as done when an EndTxn answer says so. An
//! EndTxn that may have reached the coordinator (its bytes were sent, and no answer came)
//! makes the commit's outcome uncertain until an answer comes: a retry of a commit the
//! coordinator completed answers success, one of a transaction it aborted answers
//! INVALID_TXN_STATE, and while it completes CONCURRENT_TRANSACTIONS. If no answer comes
//! within `transaction.timeout.ms` of when the EndTxn could first go, or a retry is
//! answered with a fencing error (a newer producer may have found the transaction
//! committed), the commit ends with [`Error::TransactionOutcomeUnknown`]. The producer then
//! settles the transaction in the background, as Java does before any epoch bump: EndTxn(abort),
//! retried until answered (NONE: it is aborted; INVALID_TXN_STATE: the commit had arrived and
//! it committed), then re-initialises with its current producer id and epoch (InitProducerId
//! v3+, KIP-360), so that the epoch is never used again; `begin_transaction` waits for both.
//! (A re-initialisation while the transaction is still open would be fenced, and so is every
//! request of a producer whose transaction the coordinator aborted on its timeout: that
//! producer ends fatally, as a Java one does.) An abort that cannot reach the coordinator by
//! its deadline is reported done (nothing can commit the transaction any more) and settled
//! the same way.
//!
//! # Call order
//!
//! Time is an argument. The user's calls ([`TransactionManager::init_transactions`],
//! [`TransactionManager::begin_transaction`], [`TransactionManager::check_send`],
//! [`TransactionManager::send_offsets`], [`TransactionManager::commit`],
//! [`TransactionManager::abort`]) change the state at once or return an operation id whose
//! outcome [`TransactionManager::poll_completion`] hands out later. The producer's engine
//! feeds in what its accumulator saw ([`TransactionManager::add_partitions`],
//! [`TransactionManager::handle_record_failure`], [`TransactionManager::handle_sequence_hole`])
//! and takes out what the accumulator must do ([`TransactionManager::take_producer_id`],
//! [`TransactionManager::take_added_partitions`], [`TransactionManager::take_flush`],
//! [`TransactionManager::take_transaction_ended`], [`TransactionManager::abort_error`],
//! [`TransactionManager::fatal_error`]). The driver sends what
//! [`TransactionManager::poll_request`] returns (built for the negotiated version, at most
//! [`TransactionRequest::max_version`], by [`TransactionRequest::build`]) and feeds the
//! answer or failure to [`TransactionManager::handle_response`]; it sleeps no later than
//! [`TransactionManager::poll_timeout`].

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::time::{Duration, Instant};

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, EndTxnRequest, FindCoordinatorRequest,
    GroupId, InitProducerIdRequest, TopicName, TransactionalId, TxnOffsetCommitRequest,
};
use kafka_protocol::protocol::StrBytes;
use tracing::{debug, info, warn};

use super::backoff::{Backoff, Rng};
use super::idempotence::ProducerId;
use crate::error::Error;
use crate::group_metadata::ConsumerGroupMetadata;
use crate::proto::{ApiKey, ErrorCode, RequestKind, ResponseKind};
use crate::topic_partition::TopicPartition;

/// The backoff of an AddPartitionsToTxn answered CONCURRENT_TRANSACTIONS while nothing of
/// the transaction was added yet: the previous transaction is still completing, and will
/// be done soon (Java's `ADD_PARTITIONS_RETRY_BACKOFF_MS`).
const ADD_PARTITIONS_RETRY_BACKOFF: Duration = Duration::from_millis(20);

/// Highest versions a transactional producer uses. Produce v12+, EndTxn v5+ and
/// TxnOffsetCommit v5+ belong to KIP-890 part 2 (transaction.version 2: partitions added by
/// Produce, an epoch bump per transaction), which franzy does not speak; Java 4.x caps them
/// the same way when the cluster's transaction.version is below 2. AddPartitionsToTxn v4+ is
/// broker-to-broker. InitProducerId above 5 is past what the codec encodes.
pub const MAX_PRODUCE_VERSION: i16 = 11;
const MAX_END_TXN_VERSION: i16 = 4;
const MAX_TXN_OFFSET_COMMIT_VERSION: i16 = 4;
const MAX_ADD_PARTITIONS_VERSION: i16 = 3;
const MAX_INIT_PRODUCER_ID_VERSION: i16 = 5;

/// The settings of the transaction manager.
#[derive(Debug, Clone)]
pub struct TransactionConfig {
    /// `transactional.id`.
    pub transactional_id: String,
    /// `transaction.timeout.ms`: sent with InitProducerId (the coordinator aborts a
    /// transaction open longer), and how long EndTxn is retried before a commit's outcome
    /// is reported unknown.
    pub transaction_timeout: Duration,
    /// `retry.backoff.ms`.
    pub retry_backoff: Duration,
    /// `retry.backoff.max.ms`.
    pub retry_backoff_max: Duration,
}

/// Where a transactional producer is (Java's `TransactionManager.State`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransactionState {
    /// `init_transactions` was not called yet.
    Uninitialized,
    /// Getting a producer id from the transaction coordinator (first, or bumping the epoch).
    Initializing,
    /// Ready to begin a transaction.
    Ready,
    /// A transaction is open: records may be sent.
    InTransaction,
    /// Sending what is left, then EndTxn(commit).
    CommittingTransaction,
    /// Failing what is unsent, waiting for what is in flight, then EndTxn(abort).
    AbortingTransaction,
    /// The transaction cannot commit: only `abort_transaction` goes on.
    AbortableError,
    /// The producer cannot go on.
    FatalError,
}

/// Identifies a user operation whose outcome comes later.
pub type OperationId = u64;

/// Where a transactional request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// Any broker (FindCoordinator).
    AnyBroker,
    /// A coordinator, by node id and `host:port`.
    Broker {
        /// Node id.
        node_id: i32,
        /// `host:port`.
        address: String,
    },
}

/// A transactional request to send: see [`TransactionManager::poll_request`].
#[derive(Debug, Clone)]
pub struct TransactionRequest {
    /// Pass back to [`TransactionManager::handle_response`].
    pub id: u64,
    /// Where it goes.
    pub destination: Destination,
    /// Its API.
    pub api: ApiKey,
    /// The highest version to use, if lower than the highest both sides speak.
    pub max_version: Option<i16>,
    body: Body,
}

#[derive(Debug, Clone)]
enum Body {
    FindCoordinator { key_type: i8, key: String },
    InitProducerId(InitProducerIdRequest),
    AddPartitions(AddPartitionsToTxnRequest),
    AddOffsets(AddOffsetsToTxnRequest),
    TxnOffsetCommit(TxnOffsetCommitRequest),
    EndTxn(EndTxnRequest),
}

impl TransactionRequest {
    /// The request body for `version` (FindCoordinator changed shape at v4; TxnOffsetCommit
    /// below v3 cannot carry the group member's generation, KIP-447).
    pub fn build(&self, version: i16) -> Result<RequestKind, Error> {
        Ok(match &self.body {
            Body::FindCoordinator { key_type, key } => {
                let key = StrBytes::from_string(key.clone());
                let mut request = FindCoordinatorRequest::default().with_key_type(*key_type);
                if version >= 4 {
                    request.coordinator_keys = vec![key];
                } else {
                    request.key = key;
                }
                RequestKind::FindCoordinator(request)
            }
            Body::InitProducerId(request) => RequestKind::InitProducerId(request.clone()),
            Body::AddPartitions(request) => RequestKind::AddPartitionsToTxn(request.clone()),
            Body::AddOffsets(request) => RequestKind::AddOffsetsToTxn(request.clone()),
            Body::TxnOffsetCommit(request) => {
                let member_set = request.generation_id != -1
                    || !request.member_id.is_empty()
                    || request.group_instance_id.is_some();
                if version < 3 && member_set {
                    return Err(Error::Fatal(Box::new(Error::Protocol {
                        peer: "transaction coordinator".into(),
                        reason: format!(
                            "TxnOffsetCommit v{version} cannot carry the consumer group's \
                             member id and generation (the broker needs v3, KIP-447)"
                        ),
                    })));
                }
                RequestKind::TxnOffsetCommit(request.clone())
            }
            Body::EndTxn(request) => RequestKind::EndTxn(request.clone()),
        })
    }
}

/// The transaction coordinator or a group coordinator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum CoordinatorType {
    Transaction,
    Group,
}

impl CoordinatorType {
    fn key_type(self) -> i8 {
        match self {
            Self::Transaction => 1,
            Self::Group => 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    node_id: i32,
    address: String,
}

/// What the request in flight was.
#[derive(Debug, Clone)]
enum Sent {
    FindCoordinator(CoordinatorType),
    InitProducerId,
    AddPartitions(BTreeSet<TopicPartition>),
    AddOffsets,
    TxnOffsetCommit,
    EndTxn,
}

/// An InitProducerId to send (the first, or one bumping the epoch).
#[derive(Debug, Clone)]
struct PendingInit {
    op: OperationId,
    /// Carries the current producer id and epoch (KIP-360): the coordinator bumps the
    /// epoch of this producer, and fences us if another instance took over.
    bump: bool,
    /// The last step of ending a transaction (`op` is the commit's or abort's): sent after
    /// everything else, as Java's EPOCH_BUMP priority.
    ends_transaction: bool,
}

/// Offsets sent to the transaction: AddOffsetsToTxn, then TxnOffsetCommit.
#[derive(Debug, Clone)]
struct PendingOffsets {
    op: OperationId,
    group: ConsumerGroupMetadata,
    /// Offsets not yet committed, next offset to consume per partition.
    offsets: BTreeMap<TopicPartition, i64>,
    /// AddOffsetsToTxn succeeded.
    added: bool,
}

/// EndTxn to send once the transaction's records completed.
#[derive(Debug, Clone)]
struct PendingEnd {
    op: OperationId,
    commit: bool,
    /// No caller waits any more: the transaction is being settled after its commit's or
    /// abort's deadline passed (EndTxn(abort), retried without a deadline, then the epoch
    /// bump); `begin_transaction` waits for it.
    background: bool,
    /// Give up retrying at this time (set when the first EndTxn is sent).
    deadline: Option<Instant>,
    /// An EndTxn was sent and no answer came: the coordinator may have acted on it.
    possibly_delivered: bool,
    /// The failure of the last attempt.
    last_failure: Option<Error>,
}

/// The transactional producer's state: see the [module](self) documentation.
#[derive(Debug)]
pub struct TransactionManager {
    config: TransactionConfig,
    state: TransactionState,
    last_error: Option<Error>,
    producer: Option<ProducerId>,
    /// A producer id and epoch the accumulator has not taken yet.
    new_producer: Option<ProducerId>,
    transaction_coordinator: Option<Node>,
    group_coordinator: Option<(String, Node)>,
    find_transaction_coordinator: bool,
    find_group_coordinator: bool,
    init: Option<PendingInit>,
    /// Partitions to add in the next AddPartitionsToTxn.
    new_partitions: BTreeSet<TopicPartition>,
    /// Partitions in the AddPartitionsToTxn in flight.
    pending_partitions: BTreeSet<TopicPartition>,
    /// Partitions in the transaction.
    partitions: HashSet<TopicPartition>,
    /// Partitions added since the accumulator last asked.
    added: Vec<TopicPartition>,
    offsets: VecDeque<PendingOffsets>,
    end: Option<PendingEnd>,
    /// A partition or offsets were added: EndTxn is needed to end the transaction.
    transaction_started: bool,
    /// The epoch must be bumped (KIP-360) when the transaction ends: a record of it failed
    /// after it was numbered, leaving a hole in its partition's sequences.
    bump_required: bool,
    /// The accumulator must send everything now (a commit began).
    flush: bool,
    /// The transaction ended: the accumulator forgets which partitions were added.
    ended: bool,
    closing: bool,
    in_flight: Option<(u64, Sent)>,
    next_request_id: u64,
    /// No request before this (backing off after a retriable failure).
    not_before: Option<Instant>,
    backoff: Backoff,
    /// A shorter backoff for the next retry (CONCURRENT_TRANSACTIONS on the first add).
    short_backoff: bool,
    next_op: OperationId,
    completions: VecDeque<(OperationId, Result<(), Error>)>,
}

impl TransactionManager {
    /// A manager for `config`, in [`TransactionState::Uninitialized`].
    pub fn new(config: TransactionConfig) -> Self {
        let backoff = Backoff::new(config.retry_backoff, config.retry_backoff_max);
        Self {
            config,
            state: TransactionState::Uninitialized,
            last_error: None,
            producer: None,
            new_producer: None,
            transaction_coordinator: None,
            group_coordinator: None,
            find_transaction_coordinator: false,
            find_group_coordinator: false,
            init: None,
            new_partitions: BTreeSet::new(),
            pending_partitions: BTreeSet::new(),
            partitions: HashSet::new(),
            added: Vec::new(),
            offsets: VecDeque::new(),
            end: None,
            transaction_started: false,
            bump_required: false,
            flush: false,
            ended: false,
            closing: false,
            in_flight: None,
            next_request_id: 0,
            not_before: None,
            backoff,
            short_backoff: false,
            next_op: 0,
            completions: VecDeque::new(),
        }
    }

    /// The state.
    pub fn state(&self) -> TransactionState {
        self.state
    }

    /// The `transactional.id`.
    pub fn transactional_id(&self) -> &str {
        &self.config.transactional_id
    }

    /// The producer id and epoch, once InitProducerId gave them.
    pub fn producer_id(&self) -> Option<ProducerId> {
        self.producer
    }

    // ----- the user's calls -----

    /// `init_transactions`: gets a producer id from the transaction coordinator, which
    /// fences older instances with the same transactional id and aborts (or completes)
    /// their open transaction. While initialising, returns the same operation.
    pub fn init_transactions(&mut self) -> Result<OperationId, Error> {
        self.fail_if_fatal()?;
        match self.state {
            TransactionState::Uninitialized => {
                let op = self.next_op();
                self.state = TransactionState::Initializing;
                self.init = Some(PendingInit {
                    op,
                    bump: false,
                    ends_transaction: false,
                });
                info!(transactional_id = %self.config.transactional_id, "initialising transactions");
                Ok(op)
            }
            TransactionState::Initializing => self
                .init
                .as_ref()
                .map(|init| init.op)
                .ok_or_else(|| invalid("initialising without an InitProducerId")),
            state => Err(invalid(format!(
                "init_transactions was already called (the producer is {state:?})"
            ))),
        }
    }

    /// `begin_transaction`: local. `Ok(None)` when the transaction began; `Ok(Some(op))`
    /// while the producer re-initialises after the last transaction (call again once `op`
    /// completed).
    pub fn begin_transaction(&mut self) -> Result<Option<OperationId>, Error> {
        self.fail_with_error()?;
        match self.state {
            TransactionState::Ready => {
                self.state = TransactionState::InTransaction;
                Ok(None)
            }
            TransactionState::Initializing if self.init.is_some() => {
                self.init_transactions().map(Some)
            }
            // Settling the last transaction before re-initialising.
            TransactionState::Initializing if self.end.as_ref().is_some_and(|e| e.background) => {
                Ok(self.end.as_ref().map(|end| end.op))
            }
            TransactionState::Uninitialized => Err(invalid(
                "cannot begin a transaction before init_transactions",
            )),
            TransactionState::InTransaction => Err(invalid("a transaction is already open")),
            state => Err(invalid(format!(
                "cannot begin a transaction while the producer is {state:?}"
            ))),
        }
    }

    /// Whether a record may be sent now: only inside a transaction.
    pub fn check_send(&self) -> Result<(), Error> {
        self.fail_with_error()?;
        match self.state {
            TransactionState::InTransaction => Ok(()),
            TransactionState::Uninitialized => Err(invalid(
                "cannot send a record before init_transactions and begin_transaction",
            )),
            TransactionState::Ready | TransactionState::Initializing => Err(invalid(
                "cannot send a record outside a transaction: call begin_transaction first",
            )),
            state => Err(invalid(format!(
                "cannot send a record while the producer is {state:?}"
            ))),
        }
    }

    /// `send_offsets_to_transaction`: the consumer group's offsets (next offset to consume
    /// per partition) are committed with the transaction. `Ok(None)` when there are none.
    pub fn send_offsets(
        &mut self,
        offsets: BTreeMap<TopicPartition, i64>,
        group: &ConsumerGroupMetadata,
    ) -> Result<Option<OperationId>, Error> {
        self.fail_with_error()?;
        if self.state != TransactionState::InTransaction {
            return Err(invalid(format!(
                "cannot send offsets when no transaction is open (the producer is {:?})",
                self.state
            )));
        }
        if let Some((tp, offset)) = offsets.iter().find(|(_, offset)| **offset < 0) {
            return Err(Error::InvalidArgument(format!(
                "offset {offset} for {tp} is not an offset"
            )));
        }
        if offsets.is_empty() {
            return Ok(None);
        }
        let op = self.next_op();
        debug!(group = %group.group_id, partitions = offsets.len(), "adding offsets to the transaction");
        self.offsets.push_back(PendingOffsets {
            op,
            group: group.clone(),
            offsets,
            added: false,
        });
        Ok(Some(op))
    }

    /// `commit_transaction`: everything sent so far is flushed, then EndTxn(commit) goes
    /// once each record completed. While committing, returns the same operation.
    pub fn commit(&mut self) -> Result<OperationId, Error> {
        self.fail_with_error()?;
        match self.state {
            TransactionState::InTransaction => {
                let op = self.next_op();
                self.state = TransactionState::CommittingTransaction;
                self.flush = true;
                self.end = Some(PendingEnd {
                    op,
                    commit: true,
                    background: false,
                    deadline: None,
                    possibly_delivered: false,
                    last_failure: None,
                });
                Ok(op)
            }
            TransactionState::CommittingTransaction => self
                .end
                .as_ref()
                .map(|end| end.op)
                .ok_or_else(|| invalid("committing without an EndTxn")),
            state => Err(invalid(format!(
                "cannot commit when no transaction is open (the producer is {state:?})"
            ))),
        }
    }

    /// `abort_transaction`: records not sent yet fail ([`Error::TransactionAborted`], or
    /// the error that made the transaction abortable), those in flight are waited for,
    /// then EndTxn(abort) goes (and, after a hole in the sequences, an epoch bump). While
    /// aborting, returns the same operation.
    pub fn abort(&mut self) -> Result<OperationId, Error> {
        self.fail_if_fatal()?;
        match self.state {
            TransactionState::InTransaction | TransactionState::AbortableError => {
                let op = self.next_op();
                self.state = TransactionState::AbortingTransaction;
                // Nothing more joins a transaction being aborted.
                self.new_partitions.clear();
                let error = Error::Abortable(Box::new(Error::TransactionAborted));
                for offsets in std::mem::take(&mut self.offsets) {
                    self.completions.push_back((offsets.op, Err(error.clone())));
                }
                self.end = Some(PendingEnd {
                    op,
                    commit: false,
                    background: false,
                    deadline: None,
                    possibly_delivered: false,
                    last_failure: None,
                });
                Ok(op)
            }
            TransactionState::AbortingTransaction => self
                .end
                .as_ref()
                .map(|end| end.op)
                .or(self
                    .init
                    .as_ref()
                    .filter(|i| i.ends_transaction)
                    .map(|i| i.op))
                .ok_or_else(|| invalid("aborting without an EndTxn")),
            state => Err(invalid(format!(
                "cannot abort when no transaction is open (the producer is {state:?})"
            ))),
        }
    }

    /// The producer is closing: an open transaction is aborted (as Java's sender does on a
    /// graceful close), no epoch bump or first InitProducerId is started any more, and
    /// operations that wait for one fail with [`Error::Closed`].
    pub fn close(&mut self) {
        self.closing = true;
        if matches!(
            self.state,
            TransactionState::InTransaction | TransactionState::AbortableError
        ) {
            info!("aborting the open transaction: the producer closes");
            let _ = self.abort();
        }
        if let Some(init) = self
            .init
            .take_if(|_| !matches!(self.in_flight, Some((_, Sent::InitProducerId))))
        {
            self.complete(init.op, Err(Error::Closed));
        }
        // Settling a transaction in the background is moot once the producer closes: the
        // coordinator aborts it on its timeout.
        if let Some(end) = self.end.take_if(|end| end.background) {
            self.complete(end.op, Err(Error::Closed));
            self.end_transaction();
            self.state = TransactionState::Ready;
        }
    }

    /// Nothing left to do or to wait for: no request in flight, no commit, abort or
    /// offsets pending. A producer that closes stops once this holds.
    pub fn is_idle(&self) -> bool {
        self.in_flight.is_none() && self.end.is_none() && self.offsets.is_empty()
    }

    // ----- what the accumulator saw -----

    /// Partitions that got their first batch of the transaction: they join it in the next
    /// AddPartitionsToTxn.
    pub fn add_partitions(&mut self, partitions: impl IntoIterator<Item = TopicPartition>) {
        if !matches!(
            self.state,
            TransactionState::InTransaction | TransactionState::CommittingTransaction
        ) {
            return;
        }
        for tp in partitions {
            if !self.partitions.contains(&tp) && !self.pending_partitions.contains(&tp) {
                self.new_partitions.insert(tp);
            }
        }
    }

    /// A record of the transaction failed with `error`: the transaction cannot commit
    /// (Java's `maybeTransitionToErrorState`), or, for a fencing or authorization error,
    /// the producer cannot go on.
    pub fn handle_record_failure(&mut self, error: &Error) {
        if error.is_fatal() {
            self.fatal(error.clone());
        } else {
            self.abortable(error.clone(), false);
        }
    }

    /// A numbered batch failed: its partition's sequences have a hole, which only a new
    /// epoch closes (bumped through the coordinator when the transaction ends, KIP-360).
    pub fn handle_sequence_hole(&mut self) {
        if self.state != TransactionState::FatalError {
            self.bump_required = true;
        }
    }

    // ----- what the accumulator must do -----

    /// The producer id and epoch to number batches with, once after each InitProducerId.
    pub fn take_producer_id(&mut self) -> Option<ProducerId> {
        self.new_producer.take()
    }

    /// Partitions that joined the transaction since the last call: their batches may go.
    pub fn take_added_partitions(&mut self) -> Vec<TopicPartition> {
        std::mem::take(&mut self.added)
    }

    /// True once after a commit began: every batch is sendable at once.
    pub fn take_flush(&mut self) -> bool {
        std::mem::take(&mut self.flush)
    }

    /// True once after a transaction ended: no partition is in a transaction any more.
    pub fn take_transaction_ended(&mut self) -> bool {
        std::mem::take(&mut self.ended)
    }

    /// While the transaction is being aborted (or must be), the error its unsent records
    /// fail with: the one that made it abortable, or [`Error::TransactionAborted`].
    pub fn abort_error(&self) -> Option<Error> {
        match self.state {
            TransactionState::AbortableError => Some(Error::Abortable(Box::new(
                self.last_error.clone().unwrap_or(Error::TransactionAborted),
            ))),
            // Not once EndTxn succeeded (the epoch bump that may follow is no abort).
            TransactionState::AbortingTransaction if self.end.is_some() => {
                Some(match &self.last_error {
                    Some(error) => Error::Abortable(Box::new(error.clone())),
                    None => Error::TransactionAborted,
                })
            }
            _ => None,
        }
    }

    /// The error that ended the producer, if any.
    pub fn fatal_error(&self) -> Option<&Error> {
        match self.state {
            TransactionState::FatalError => self.last_error.as_ref(),
            _ => None,
        }
    }

    /// The next operation that completed, with its outcome.
    pub fn poll_completion(&mut self) -> Option<(OperationId, Result<(), Error>)> {
        self.completions.pop_front()
    }

    // ----- the driver -----

    /// The request to send now, if any: one at a time, none while backing off, EndTxn only
    /// once `records_incomplete` is false (every record of the transaction completed).
    pub fn poll_request(
        &mut self,
        now: Instant,
        records_incomplete: bool,
    ) -> Option<TransactionRequest> {
        if self.in_flight.is_some() || self.state == TransactionState::FatalError {
            return None;
        }
        if self.not_before.is_some_and(|at| at > now) {
            return None;
        }
        self.not_before = None;
        if let Some(end) = &mut self.end {
            // The commit's or abort's deadline runs from when its EndTxn could first go.
            if !records_incomplete && end.deadline.is_none() {
                end.deadline = Some(now + self.config.transaction_timeout);
            }
        }
        self.check_end_deadline(now);
        self.finish_end_without_request(records_incomplete);
        let (sent, destination, api, max_version, body) = self.next_request(records_incomplete)?;
        let id = self.next_request_id;
        self.next_request_id += 1;
        debug!(?api, ?destination, "transactional request");
        self.in_flight = Some((id, sent));
        Some(TransactionRequest {
            id,
            destination,
            api,
            max_version,
            body,
        })
    }

    /// When a backoff ends, if there is something to send after it.
    pub fn poll_timeout(&self, now: Instant) -> Option<Instant> {
        if self.in_flight.is_some() {
            return None;
        }
        self.not_before.filter(|at| *at > now)
    }

    /// The answer to request `id` (its body), or why none came (`sent`: the request may
    /// have reached the broker).
    pub fn handle_response(
        &mut self,
        id: u64,
        version: i16,
        result: Result<ResponseKind, (Error, bool)>,
        now: Instant,
        rng: &mut Rng,
    ) {
        let Some(sent) = self
            .in_flight
            .take_if(|(in_flight, _)| *in_flight == id)
            .map(|(_, sent)| sent)
        else {
            return;
        };
        let outcome = match result {
            Ok(body) => self.handle_answer(&sent, version, body),
            Err((error, was_sent)) => self.handle_failure(&sent, error, was_sent),
        };
        match outcome {
            Next::Done => {
                self.backoff.reset();
            }
            Next::Retry => {
                let wait = if std::mem::take(&mut self.short_backoff) {
                    ADD_PARTITIONS_RETRY_BACKOFF.min(self.config.retry_backoff)
                } else {
                    self.backoff.next_delay(rng)
                };
                self.not_before = Some(now + wait);
            }
        }
    }

    // ----- inside -----

    fn next_op(&mut self) -> OperationId {
        self.next_op += 1;
        self.next_op
    }

    fn complete(&mut self, op: OperationId, result: Result<(), Error>) {
        self.completions.push_back((op, result));
    }

    fn fail_if_fatal(&self) -> Result<(), Error> {
        match self.fatal_error() {
            Some(error) => Err(error.clone()),
            None if self.state == TransactionState::FatalError => Err(Error::Closed),
            None => Ok(()),
        }
    }

    /// Fails with the producer's fatal error, or the error that made the transaction
    /// abortable (Java's `maybeFailWithError`).
    fn fail_with_error(&self) -> Result<(), Error> {
        self.fail_if_fatal()?;
        match (self.state, &self.last_error) {
            (TransactionState::AbortableError, Some(error)) => {
                Err(Error::Abortable(Box::new(error.clone())))
            }
            _ => Ok(()),
        }
    }

    /// The transaction cannot commit because of `error`; with `bump`, its epoch must be
    /// bumped when it ends.
    fn abortable(&mut self, error: Error, bump: bool) {
        self.bump_required |= bump;
        match self.state {
            TransactionState::FatalError | TransactionState::AbortableError => return,
            TransactionState::AbortingTransaction => {
                debug!(%error, "already aborting");
                return;
            }
            TransactionState::InTransaction | TransactionState::CommittingTransaction => {}
            // Nothing to abort: no transaction is open.
            _ => return self.fatal(error),
        }
        warn!(%error, "the transaction must be aborted");
        let wrapped = Error::Abortable(Box::new(error.clone()));
        self.state = TransactionState::AbortableError;
        self.last_error = Some(error);
        self.new_partitions.clear();
        if let Some(end) = self.end.take() {
            self.complete(end.op, Err(wrapped.clone()));
        }
        for offsets in std::mem::take(&mut self.offsets) {
            self.complete(offsets.op, Err(wrapped.clone()));
        }
    }

    /// The producer cannot go on: every operation fails with `error`.
    fn fatal(&mut self, error: Error) {
        if self.state == TransactionState::FatalError {
            return;
        }
        let error = if error.is_fatal() {
            error
        } else {
            Error::Fatal(Box::new(error))
        };
        warn!(%error, "transactional producer failed fatally");
        self.state = TransactionState::FatalError;
        self.last_error = Some(error.clone());
        if let Some(init) = self.init.take() {
            self.complete(init.op, Err(error.clone()));
        }
        if let Some(end) = self.end.take() {
            self.complete(end.op, Err(error.clone()));
        }
        for offsets in std::mem::take(&mut self.offsets) {
            self.complete(offsets.op, Err(error.clone()));
        }
        self.new_partitions.clear();
    }

    /// Gives up on an EndTxn past its deadline (see the module doc, "Torn commits").
    fn check_end_deadline(&mut self, now: Instant) {
        let Some(end) = self.end.as_ref() else {
            return;
        };
        if end.background || end.deadline.is_none_or(|at| now < at) {
            return;
        }
        let Some(end) = self.end.take() else {
            return;
        };
        let cause = end
            .last_failure
            .clone()
            .unwrap_or(Error::RequestTimeout(self.config.transaction_timeout));
        if end.commit && !end.possibly_delivered {
            // The coordinator never saw the commit: the transaction did not commit. Abort it.
            warn!(%cause, "EndTxn(commit) never reached the coordinator within transaction.timeout.ms");
            self.complete(end.op, Err(Error::Abortable(Box::new(cause.clone()))));
            self.abortable(cause, true);
            return;
        }
        if end.commit {
            warn!(%cause, "no answer to EndTxn(commit) within transaction.timeout.ms: outcome unknown");
            let unknown = Error::TransactionOutcomeUnknown {
                cause: Box::new(cause),
            };
            self.complete(end.op, Err(unknown));
        } else {
            warn!(%cause, "EndTxn(abort) got no answer within transaction.timeout.ms: the \
                transaction cannot commit; aborting it in the background");
            self.complete(end.op, Ok(()));
        }
        if self.closing {
            self.end_transaction();
            self.state = TransactionState::Ready;
            return;
        }
        // Settle the transaction before re-initialising: an InitProducerId while it is still
        // open at the coordinator would be fenced (Kafka fences the epoch it aborts with), so
        // as Java does before any epoch bump, EndTxn(abort) first, retried until answered.
        // It finds the transaction aborted (now or by the coordinator's timeout) or, for a
        // commit that did arrive, committed (INVALID_TXN_STATE); either way the bump follows,
        // so that no late request of this epoch can act on a later transaction.
        let op = self.next_op();
        self.state = TransactionState::Initializing;
        self.bump_required = true;
        self.end = Some(PendingEnd {
            op,
            commit: false,
            background: true,
            deadline: None,
            possibly_delivered: false,
            last_failure: None,
        });
    }

    /// Ends a transaction that needs no EndTxn: nothing was added to it.
    fn finish_end_without_request(&mut self, records_incomplete: bool) {
        let ready = self.end.is_some()
            && !self.transaction_started
            && self.in_flight.is_none()
            && self.new_partitions.is_empty()
            && self.pending_partitions.is_empty()
            && self.offsets.is_empty()
            && !records_incomplete;
        if !ready {
            return;
        }
        let Some(end) = self.end.take() else {
            return;
        };
        debug!(
            commit = end.commit,
            "nothing was added to the transaction: no EndTxn needed"
        );
        self.transaction_done(end.op);
    }

    /// EndTxn succeeded (or was not needed): the transaction is over.
    fn transaction_done(&mut self, op: OperationId) {
        self.end_transaction();
        if self.bump_required && !self.closing {
            self.start_bump(Some(op));
        } else {
            self.state = TransactionState::Ready;
            self.complete(op, Ok(()));
        }
    }

    /// Forgets the transaction's partitions and offsets.
    fn end_transaction(&mut self) {
        self.partitions.clear();
        self.new_partitions.clear();
        self.pending_partitions.clear();
        self.offsets.clear();
        self.transaction_started = false;
        self.last_error = None;
        self.ended = true;
    }

    /// Re-initialises with the current producer id and epoch (KIP-360); with `ends`, as
    /// the last step of ending a transaction, whose operation `ends` completes with it.
    fn start_bump(&mut self, ends: Option<OperationId>) {
        if self.closing {
            if let Some(op) = ends {
                self.complete(op, Ok(()));
            }
            self.state = TransactionState::Ready;
            return;
        }
        self.bump_required = false;
        let op = match ends {
            Some(op) => op,
            None => {
                self.state = TransactionState::Initializing;
                self.next_op()
            }
        };
        info!(producer = ?self.producer, "re-initialising: bumping the producer epoch");
        self.init = Some(PendingInit {
            op,
            bump: true,
            ends_transaction: ends.is_some(),
        });
    }

    fn coordinator(&self) -> Option<Destination> {
        self.transaction_coordinator
            .as_ref()
            .map(|node| Destination::Broker {
                node_id: node.node_id,
                address: node.address.clone(),
            })
    }

    fn wire_transactional_id(&self) -> TransactionalId {
        TransactionalId(StrBytes::from_string(self.config.transactional_id.clone()))
    }

    fn wire_producer(&self) -> (i64, i16) {
        self.producer.map_or((-1, -1), |p| (p.id, p.epoch))
    }

    /// The next request in Java's priority order, with what it is.
    #[allow(clippy::type_complexity)]
    fn next_request(
        &mut self,
        records_incomplete: bool,
    ) -> Option<(Sent, Destination, ApiKey, Option<i16>, Body)> {
        let abortable = self.state == TransactionState::AbortableError;
        let wants_transaction_coordinator = self.init.is_some()
            || (!abortable && !self.new_partitions.is_empty())
            || (!abortable && self.offsets.front().is_some_and(|o| !o.added))
            || self.end.is_some();
        if self.transaction_coordinator.is_none() {
            self.find_transaction_coordinator = true;
        }
        // Only when something needs it: an AbortableError state waits for the abort.
        if self.find_transaction_coordinator && wants_transaction_coordinator {
            return Some(self.find_coordinator(
                CoordinatorType::Transaction,
                self.config.transactional_id.clone(),
            ));
        }
        if let Some(front) = self.offsets.front().filter(|o| o.added && !abortable) {
            let group = front.group.group_id.clone();
            if self.find_group_coordinator
                || self
                    .group_coordinator
                    .as_ref()
                    .is_none_or(|(g, _)| *g != group)
            {
                return Some(self.find_coordinator(CoordinatorType::Group, group));
            }
        }
        let coordinator = self.coordinator()?;
        let (producer_id, producer_epoch) = self.wire_producer();
        if let Some(init) = self.init.as_ref().filter(|i| !i.ends_transaction) {
            let (id, epoch) = if init.bump {
                (producer_id, producer_epoch)
            } else {
                (-1, -1)
            };
            return Some(self.init_producer_id(coordinator, id, epoch));
        }
        if abortable {
            return None;
        }
        if !self.new_partitions.is_empty() {
            self.pending_partitions.append(&mut self.new_partitions);
            let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
            for tp in &self.pending_partitions {
                topics.entry(&tp.topic).or_default().push(tp.partition);
            }
            let topics = topics
                .into_iter()
                .map(|(name, partitions)| {
                    AddPartitionsToTxnTopic::default()
                        .with_name(TopicName(StrBytes::from_string(name.to_string())))
                        .with_partitions(partitions)
                })
                .collect();
            let request = AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(self.wire_transactional_id())
                .with_v3_and_below_producer_id(producer_id.into())
                .with_v3_and_below_producer_epoch(producer_epoch)
                .with_v3_and_below_topics(topics);
            return Some((
                Sent::AddPartitions(self.pending_partitions.clone()),
                coordinator,
                ApiKey::AddPartitionsToTxn,
                Some(MAX_ADD_PARTITIONS_VERSION),
                Body::AddPartitions(request),
            ));
        }
        if let Some(front) = self.offsets.front() {
            if !front.added {
                let request = AddOffsetsToTxnRequest::default()
                    .with_transactional_id(self.wire_transactional_id())
                    .with_producer_id(producer_id.into())
                    .with_producer_epoch(producer_epoch)
                    .with_group_id(GroupId(StrBytes::from_string(front.group.group_id.clone())));
                return Some((
                    Sent::AddOffsets,
                    coordinator,
                    ApiKey::AddOffsetsToTxn,
                    None,
                    Body::AddOffsets(request),
                ));
            }
            let (_, group_node) = self.group_coordinator.as_ref()?;
            let mut topics: BTreeMap<&str, Vec<TxnOffsetCommitRequestPartition>> = BTreeMap::new();
            for (tp, offset) in &front.offsets {
                topics.entry(&tp.topic).or_default().push(
                    TxnOffsetCommitRequestPartition::default()
                        .with_partition_index(tp.partition)
                        .with_committed_offset(*offset)
                        .with_committed_leader_epoch(-1)
                        .with_committed_metadata(Some(StrBytes::default())),
                );
            }
            let group = &front.group;
            let request = TxnOffsetCommitRequest::default()
                .with_transactional_id(self.wire_transactional_id())
                .with_group_id(GroupId(StrBytes::from_string(group.group_id.clone())))
                .with_producer_id(producer_id.into())
                .with_producer_epoch(producer_epoch)
                .with_generation_id(group.generation_id)
                .with_member_id(StrBytes::from_string(group.member_id.clone()))
                .with_group_instance_id(group.group_instance_id.clone().map(StrBytes::from_string))
                .with_topics(
                    topics
                        .into_iter()
                        .map(|(name, partitions)| {
                            TxnOffsetCommitRequestTopic::default()
                                .with_name(TopicName(StrBytes::from_string(name.to_string())))
                                .with_partitions(partitions)
                        })
                        .collect(),
                );
            let destination = Destination::Broker {
                node_id: group_node.node_id,
                address: group_node.address.clone(),
            };
            return Some((
                Sent::TxnOffsetCommit,
                destination,
                ApiKey::TxnOffsetCommit,
                Some(MAX_TXN_OFFSET_COMMIT_VERSION),
                Body::TxnOffsetCommit(request),
            ));
        }
        if let Some(end) = &self.end {
            if records_incomplete || !self.pending_partitions.is_empty() {
                return None;
            }
            let request = EndTxnRequest::default()
                .with_transactional_id(self.wire_transactional_id())
                .with_producer_id(producer_id.into())
                .with_producer_epoch(producer_epoch)
                .with_committed(end.commit);
            return Some((
                Sent::EndTxn,
                coordinator,
                ApiKey::EndTxn,
                Some(MAX_END_TXN_VERSION),
                Body::EndTxn(request),
            ));
        }
        if self.init.as_ref().is_some_and(|i| i.ends_transaction) {
            return Some(self.init_producer_id(coordinator, producer_id, producer_epoch));
        }
        None
    }

    fn find_coordinator(
        &self,
        kind: CoordinatorType,
        key: String,
    ) -> (Sent, Destination, ApiKey, Option<i16>, Body) {
        (
            Sent::FindCoordinator(kind),
            Destination::AnyBroker,
            ApiKey::FindCoordinator,
            None,
            Body::FindCoordinator {
                key_type: kind.key_type(),
                key,
            },
        )
    }

    fn init_producer_id(
        &self,
        coordinator: Destination,
        producer_id: i64,
        producer_epoch: i16,
    ) -> (Sent, Destination, ApiKey, Option<i16>, Body) {
        let timeout =
            i32::try_from(self.config.transaction_timeout.as_millis()).unwrap_or(i32::MAX);
        let request = InitProducerIdRequest::default()
            .with_transactional_id(Some(self.wire_transactional_id()))
            .with_transaction_timeout_ms(timeout)
            .with_producer_id(producer_id.into())
            .with_producer_epoch(producer_epoch);
        (
            Sent::InitProducerId,
            coordinator,
            ApiKey::InitProducerId,
            Some(MAX_INIT_PRODUCER_ID_VERSION),
            Body::InitProducerId(request),
        )
    }

    /// A request got no answer: find the coordinator again and retry, unless the failure
    /// cannot go away (no version in common, a request we could not build).
    fn handle_failure(&mut self, sent: &Sent, error: Error, was_sent: bool) -> Next {
        if !error.is_retriable() {
            let torn = matches!(sent, Sent::EndTxn)
                && self
                    .end
                    .as_ref()
                    .is_some_and(|end| end.commit && (end.possibly_delivered || was_sent));
            if torn {
                if let Some(end) = self.end.take() {
                    let unknown = Error::TransactionOutcomeUnknown {
                        cause: Box::new(error.clone()),
                    };
                    self.complete(end.op, Err(unknown));
                }
            }
            self.fatal(error);
            return Next::Done;
        }
        debug!(?sent, %error, was_sent, "transactional request failed; retrying");
        match sent {
            Sent::FindCoordinator(_) => {}
            Sent::TxnOffsetCommit => self.find_group_coordinator = true,
            _ => self.find_transaction_coordinator = true,
        }
        if matches!(sent, Sent::EndTxn) {
            if let Some(end) = &mut self.end {
                end.possibly_delivered |= was_sent;
                end.last_failure = Some(error);
            }
        }
        if let Sent::AddPartitions(partitions) = sent {
            self.retry_partitions(partitions);
        }
        Next::Retry
    }

    fn retry_partitions(&mut self, partitions: &BTreeSet<TopicPartition>) {
        for tp in partitions {
            self.pending_partitions.remove(tp);
            if matches!(
                self.state,
                TransactionState::InTransaction | TransactionState::CommittingTransaction
            ) {
                self.new_partitions.insert(tp.clone());
            }
        }
    }

    fn handle_answer(&mut self, sent: &Sent, version: i16, body: ResponseKind) -> Next {
        match (sent, body) {
            (Sent::FindCoordinator(kind), ResponseKind::FindCoordinator(body)) => {
                self.handle_find_coordinator(*kind, version, &body)
            }
            (Sent::InitProducerId, ResponseKind::InitProducerId(body)) => {
                let code = ErrorCode::try_from_code(body.error_code);
                self.handle_init_producer_id(code, body.producer_id.0, body.producer_epoch)
            }
            (Sent::AddPartitions(partitions), ResponseKind::AddPartitionsToTxn(body)) => {
                let mut answers = BTreeMap::new();
                for topic in &body.results_by_topic_v3_and_below {
                    for result in &topic.results_by_partition {
                        answers.insert(
                            TopicPartition::new(topic.name.0.as_str(), result.partition_index),
                            ErrorCode::try_from_code(result.partition_error_code),
                        );
                    }
                }
                self.handle_add_partitions(partitions, &answers)
            }
            (Sent::AddOffsets, ResponseKind::AddOffsetsToTxn(body)) => {
                self.handle_add_offsets(ErrorCode::try_from_code(body.error_code))
            }
            (Sent::TxnOffsetCommit, ResponseKind::TxnOffsetCommit(body)) => {
                let mut answers = BTreeMap::new();
                for topic in &body.topics {
                    for partition in &topic.partitions {
                        answers.insert(
                            TopicPartition::new(topic.name.0.as_str(), partition.partition_index),
                            ErrorCode::try_from_code(partition.error_code),
                        );
                    }
                }
                self.handle_txn_offset_commit(&answers)
            }
            (Sent::EndTxn, ResponseKind::EndTxn(body)) => {
                self.handle_end_txn(ErrorCode::try_from_code(body.error_code))
            }
            (sent, _) => {
                let error = Error::Protocol {
                    peer: "broker".into(),
                    reason: format!("{sent:?} answered with another API"),
                };
                self.handle_failure(sent, error, true)
            }
        }
    }

    fn handle_find_coordinator(
        &mut self,
        kind: CoordinatorType,
        version: i16,
        body: &kafka_protocol::messages::FindCoordinatorResponse,
    ) -> Next {
        let (code, node_id, host, port) = if version >= 4 {
            match body.coordinators.as_slice() {
                [one] => (
                    ErrorCode::try_from_code(one.error_code),
                    one.node_id.0,
                    one.host.as_str(),
                    one.port,
                ),
                other => {
                    let error = Error::Protocol {
                        peer: "broker".into(),
                        reason: format!(
                            "FindCoordinator answered {} coordinators for one key",
                            other.len()
                        ),
                    };
                    self.fatal(error);
                    return Next::Done;
                }
            }
        } else {
            (
                ErrorCode::try_from_code(body.error_code),
                body.node_id.0,
                body.host.as_str(),
                body.port,
            )
        };
        match code {
            None => {
                // Numbers from a peer: a coordinator must be a node at a port.
                let Some(port) = u16::try_from(port)
                    .ok()
                    .filter(|_| node_id >= 0 && !host.is_empty())
                else {
                    debug!(
                        node_id,
                        host, port, "FindCoordinator named no usable coordinator; retrying"
                    );
                    return Next::Retry;
                };
                let node = Node {
                    node_id,
                    address: format!("{host}:{port}"),
                };
                debug!(?kind, node_id, address = %node.address, "found the coordinator");
                match kind {
                    CoordinatorType::Transaction => {
                        self.transaction_coordinator = Some(node);
                        self.find_transaction_coordinator = false;
                    }
                    CoordinatorType::Group => {
                        if let Some(front) = self.offsets.front() {
                            self.group_coordinator = Some((front.group.group_id.clone(), node));
                        }
                        self.find_group_coordinator = false;
                    }
                }
                Next::Done
            }
            Some(code) if retriable(code) => Next::Retry,
            Some(
                code @ (ErrorCode::GroupAuthorizationFailed | ErrorCode::TransactionAbortable),
            ) => {
                self.abortable(coordinator_error(code), false);
                Next::Done
            }
            Some(code) => {
                // TRANSACTIONAL_ID_AUTHORIZATION_FAILED and anything unexpected.
                self.fatal(coordinator_error(code));
                Next::Done
            }
        }
    }

    fn handle_init_producer_id(&mut self, code: Option<ErrorCode>, id: i64, epoch: i16) -> Next {
        let context = || Some("InitProducerId".to_string());
        match code {
            None if id >= 0 && epoch >= 0 => {
                let producer = ProducerId::new(id, epoch);
                let Some(init) = self.init.take() else {
                    return Next::Done;
                };
                info!(
                    producer_id = id,
                    epoch,
                    bump = init.bump,
                    "got a producer id"
                );
                self.producer = Some(producer);
                self.new_producer = Some(producer);
                self.state = TransactionState::Ready;
                self.last_error = None;
                self.complete(init.op, Ok(()));
                Next::Done
            }
            None => {
                self.fatal(Error::Protocol {
                    peer: "transaction coordinator".into(),
                    reason: format!("InitProducerId gave producer id {id} epoch {epoch}"),
                });
                Next::Done
            }
            Some(ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable) => {
                self.find_transaction_coordinator = true;
                Next::Retry
            }
            Some(code) if retriable(code) => Next::Retry,
            Some(ErrorCode::InvalidProducerEpoch | ErrorCode::ProducerFenced) => {
                self.fatal(fenced(context()));
                Next::Done
            }
            Some(ErrorCode::TransactionAbortable)
                if self.producer.is_some()
                    && self
                        .init
                        .as_ref()
                        .is_some_and(|i| i.bump && !i.ends_transaction) =>
            {
                // A re-initialisation after the last transaction, which the coordinator
                // still aborts: abort, then re-initialise again.
                self.state = TransactionState::InTransaction;
                if let Some(init) = self.init.take() {
                    self.complete(
                        init.op,
                        Err(Error::Abortable(Box::new(Error::Broker {
                            code: ErrorCode::TransactionAbortable,
                            context: context(),
                        }))),
                    );
                }
                self.abortable(
                    Error::Broker {
                        code: ErrorCode::TransactionAbortable,
                        context: context(),
                    },
                    true,
                );
                Next::Done
            }
            Some(code) => {
                // Not authorized, a broker without transactions (UNSUPPORTED_VERSION,
                // INVALID_TRANSACTION_TIMEOUT, ...): the producer cannot go on. (Java 3.x
                // lets authorization errors be retried by a new init_transactions.)
                self.fatal(Error::Broker {
                    code,
                    context: context(),
                });
                Next::Done
            }
        }
    }

    fn handle_add_partitions(
        &mut self,
        partitions: &BTreeSet<TopicPartition>,
        answers: &BTreeMap<TopicPartition, Option<ErrorCode>>,
    ) -> Next {
        let context = || Some("AddPartitionsToTxn".to_string());
        let mut failed: Vec<(TopicPartition, ErrorCode)> = Vec::new();
        let mut unauthorized = false;
        for (tp, code) in answers {
            if !partitions.contains(tp) {
                continue;
            }
            let Some(code) = *code else {
                continue;
            };
            match code {
                ErrorCode::CoordinatorNotAvailable | ErrorCode::NotCoordinator => {
                    self.find_transaction_coordinator = true;
                    self.retry_partitions(partitions);
                    return Next::Retry;
                }
                ErrorCode::ConcurrentTransactions => {
                    // The previous transaction is still completing: soon done.
                    self.short_backoff = self.partitions.is_empty();
                    self.retry_partitions(partitions);
                    return Next::Retry;
                }
                code if retriable(code) => {
                    self.retry_partitions(partitions);
                    return Next::Retry;
                }
                ErrorCode::InvalidProducerEpoch | ErrorCode::ProducerFenced => {
                    self.fatal(fenced(context()));
                    return Next::Done;
                }
                ErrorCode::TransactionalIdAuthorizationFailed | ErrorCode::InvalidTxnState => {
                    self.fatal(Error::Broker {
                        code,
                        context: context(),
                    });
                    return Next::Done;
                }
                ErrorCode::UnknownProducerId | ErrorCode::InvalidProducerIdMapping => {
                    self.abortable(
                        Error::Broker {
                            code,
                            context: context(),
                        },
                        true,
                    );
                    return Next::Done;
                }
                ErrorCode::TransactionAbortable => {
                    self.abortable(
                        Error::Broker {
                            code,
                            context: context(),
                        },
                        false,
                    );
                    return Next::Done;
                }
                ErrorCode::TopicAuthorizationFailed => {
                    unauthorized = true;
                    failed.push((tp.clone(), code));
                }
                // OPERATION_NOT_ATTEMPTED (another partition of the request failed), and
                // anything unexpected.
                code => failed.push((tp.clone(), code)),
            }
        }
        // Partitions the answer left out are asked again.
        let missing: BTreeSet<TopicPartition> = partitions
            .iter()
            .filter(|tp| !answers.contains_key(*tp))
            .cloned()
            .collect();
        for tp in partitions {
            self.pending_partitions.remove(tp);
        }
        if !failed.is_empty() {
            let (partition, code) = failed
                .iter()
                .find(|(_, code)| !unauthorized || *code == ErrorCode::TopicAuthorizationFailed)
                .cloned()
                .unwrap_or_else(|| failed[0].clone());
            self.abortable(
                Error::Partition {
                    partition,
                    code,
                    message: Some(format!(
                        "AddPartitionsToTxn failed for {} partition(s)",
                        failed.len()
                    )),
                },
                false,
            );
            return Next::Done;
        }
        let added: Vec<TopicPartition> = partitions
            .iter()
            .filter(|tp| !missing.contains(*tp))
            .cloned()
            .collect();
        if !added.is_empty() {
            debug!(
                partitions = added.len(),
                "partitions added to the transaction"
            );
            self.transaction_started = true;
            for tp in &added {
                self.partitions.insert(tp.clone());
            }
            if matches!(
                self.state,
                TransactionState::InTransaction | TransactionState::CommittingTransaction
            ) {
                self.added.extend(added);
            }
        }
        if missing.is_empty() {
            Next::Done
        } else {
            debug!(
                missing = missing.len(),
                "AddPartitionsToTxn left partitions out; asking again"
            );
            self.retry_partitions(&missing);
            Next::Retry
        }
    }

    fn handle_add_offsets(&mut self, code: Option<ErrorCode>) -> Next {
        let context = || Some("AddOffsetsToTxn".to_string());
        match code {
            None => {
                if let Some(front) = self.offsets.front_mut() {
                    front.added = true;
                }
                self.transaction_started = true;
                Next::Done
            }
            Some(ErrorCode::CoordinatorNotAvailable | ErrorCode::NotCoordinator) => {
                self.find_transaction_coordinator = true;
                Next::Retry
            }
            Some(code) if retriable(code) => Next::Retry,
            Some(code @ (ErrorCode::UnknownProducerId | ErrorCode::InvalidProducerIdMapping)) => {
                self.abortable(
                    Error::Broker {
                        code,
                        context: context(),
                    },
                    true,
                );
                Next::Done
            }
            Some(ErrorCode::InvalidProducerEpoch | ErrorCode::ProducerFenced) => {
                self.fatal(fenced(context()));
                Next::Done
            }
            Some(
                code @ (ErrorCode::GroupAuthorizationFailed | ErrorCode::TransactionAbortable),
            ) => {
                self.abortable(
                    Error::Broker {
                        code,
                        context: context(),
                    },
                    false,
                );
                Next::Done
            }
            Some(code) => {
                // TRANSACTIONAL_ID_AUTHORIZATION_FAILED, INVALID_TXN_STATE, anything else.
                self.fatal(Error::Broker {
                    code,
                    context: context(),
                });
                Next::Done
            }
        }
    }

    fn handle_txn_offset_commit(
        &mut self,
        answers: &BTreeMap<TopicPartition, Option<ErrorCode>>,
    ) -> Next {
        let context = || Some("TxnOffsetCommit".to_string());
        for (tp, code) in answers {
            match code {
                None => {
                    if let Some(front) = self.offsets.front_mut() {
                        front.offsets.remove(tp);
                    }
                }
                Some(
                    ErrorCode::CoordinatorNotAvailable
                    | ErrorCode::NotCoordinator
                    | ErrorCode::RequestTimedOut,
                ) => {
                    self.find_group_coordinator = true;
                }
                Some(code) if retriable(*code) => {}
                Some(ErrorCode::InvalidProducerEpoch | ErrorCode::ProducerFenced) => {
                    self.fatal(fenced(context()));
                    return Next::Done;
                }
                Some(
                    code @ (ErrorCode::GroupAuthorizationFailed
                    | ErrorCode::FencedInstanceId
                    | ErrorCode::TransactionAbortable
                    | ErrorCode::UnknownMemberId
                    | ErrorCode::IllegalGeneration),
                ) => {
                    // The last two: the group moved on since the consumer's generation
                    // (Java's CommitFailedException).
                    self.abortable(
                        Error::Partition {
                            partition: tp.clone(),
                            code: *code,
                            message: context(),
                        },
                        false,
                    );
                    return Next::Done;
                }
                Some(code) => {
                    // TRANSACTIONAL_ID_AUTHORIZATION_FAILED, UNSUPPORTED_FOR_MESSAGE_FORMAT,
                    // anything unexpected.
                    self.fatal(Error::Partition {
                        partition: tp.clone(),
                        code: *code,
                        message: context(),
                    });
                    return Next::Done;
                }
            }
        }
        let done = self
            .offsets
            .front()
            .is_some_and(|front| front.offsets.is_empty());
        if done {
            if let Some(front) = self.offsets.pop_front() {
                debug!(group = %front.group.group_id, "offsets added to the transaction");
                self.complete(front.op, Ok(()));
            }
            Next::Done
        } else {
            // Retriable errors, or partitions the answer left out: the rest again.
            Next::Retry
        }
    }

    fn handle_end_txn(&mut self, code: Option<ErrorCode>) -> Next {
        let context = || Some("EndTxn".to_string());
        let (commit, possibly_delivered, background) = match &self.end {
            Some(end) => (end.commit, end.possibly_delivered, end.background),
            None => return Next::Done,
        };
        match code {
            Some(ErrorCode::InvalidTxnState) if background => {
                // Settling a transaction whose commit's outcome was reported unknown: the
                // commit had reached the coordinator after all. Now bump the epoch.
                info!("the transaction whose commit was reported unknown committed");
                if let Some(end) = self.end.take() {
                    self.transaction_done(end.op);
                }
                Next::Done
            }
            None => {
                if let Some(end) = self.end.take() {
                    if background {
                        info!("the transaction whose commit or abort timed out is aborted");
                    } else {
                        info!(commit, "transaction ended");
                    }
                    self.transaction_done(end.op);
                }
                Next::Done
            }
            Some(ErrorCode::CoordinatorNotAvailable | ErrorCode::NotCoordinator) => {
                self.find_transaction_coordinator = true;
                self.note_end_failure(code);
                Next::Retry
            }
            Some(code) if retriable(code) => {
                self.note_end_failure(Some(code));
                Next::Retry
            }
            Some(code @ (ErrorCode::InvalidProducerEpoch | ErrorCode::ProducerFenced))
                if commit && possibly_delivered =>
            {
                // A newer instance fenced us after our first EndTxn may have reached the
                // coordinator: it may have found our transaction committed, or aborted it.
                let cause = fenced(Some(format!("EndTxn ({code} on a retry)")));
                if let Some(end) = self.end.take() {
                    self.complete(
                        end.op,
                        Err(Error::TransactionOutcomeUnknown {
                            cause: Box::new(cause.clone()),
                        }),
                    );
                }
                self.fatal(cause);
                Next::Done
            }
            Some(ErrorCode::InvalidProducerEpoch | ErrorCode::ProducerFenced) => {
                self.fatal(fenced(context()));
                Next::Done
            }
            Some(code @ (ErrorCode::UnknownProducerId | ErrorCode::InvalidProducerIdMapping)) => {
                self.abortable_end(
                    Error::Broker {
                        code,
                        context: context(),
                    },
                    true,
                );
                Next::Done
            }
            Some(ErrorCode::TransactionAbortable) => {
                self.abortable_end(
                    Error::Broker {
                        code: ErrorCode::TransactionAbortable,
                        context: context(),
                    },
                    false,
                );
                Next::Done
            }
            Some(code) => {
                // TRANSACTIONAL_ID_AUTHORIZATION_FAILED, INVALID_TXN_STATE (a commit of a
                // transaction the coordinator aborted, or the reverse), anything else.
                self.fatal(Error::Broker {
                    code,
                    context: context(),
                });
                Next::Done
            }
        }
    }

    /// An EndTxn answer that makes the transaction abortable: a commit fails with it; an
    /// abort that cannot go on is fatal (nothing is left to abort with).
    fn abortable_end(&mut self, error: Error, bump: bool) {
        if self.state == TransactionState::CommittingTransaction {
            self.abortable(error, bump);
        } else {
            self.fatal(error);
        }
    }

    fn note_end_failure(&mut self, code: Option<ErrorCode>) {
        if let (Some(end), Some(code)) = (&mut self.end, code) {
            end.last_failure = Some(Error::Broker {
                code,
                context: Some("EndTxn".into()),
            });
        }
    }
}

/// What to do after an answer.
enum Next {
    Done,
    Retry,
}

/// Whether a coordinator's answer is worth asking again: Kafka's `RetriableException`s.
/// (kafka-protocol's table marks CONCURRENT_TRANSACTIONS non-retriable; Java's
/// `ConcurrentTransactionsException` is a `RetriableException`.)
fn retriable(code: ErrorCode) -> bool {
    code.is_retriable() || code == ErrorCode::ConcurrentTransactions
}

fn invalid(reason: impl Into<String>) -> Error {
    Error::InvalidTransactionState(reason.into())
}

fn fenced(context: Option<String>) -> Error {
    Error::Broker {
        code: ErrorCode::ProducerFenced,
        context,
    }
}

fn coordinator_error(code: ErrorCode) -> Error {
    Error::Broker {
        code,
        context: Some("FindCoordinator".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::add_partitions_to_txn_response::{
        AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
    };
    use kafka_protocol::messages::find_coordinator_response::Coordinator;
    use kafka_protocol::messages::txn_offset_commit_response::{
        TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
    };
    use kafka_protocol::messages::{
        AddOffsetsToTxnResponse, AddPartitionsToTxnResponse, BrokerId, EndTxnResponse,
        FindCoordinatorResponse, InitProducerIdResponse, TxnOffsetCommitResponse,
    };

    const MS: Duration = Duration::from_millis(1);
    const TIMEOUT: Duration = Duration::from_secs(60);

    /// A manager driven by hand, with a clock of its own.
    struct Driver {
        tm: TransactionManager,
        rng: Rng,
        now: Instant,
        incomplete: bool,
    }

    impl Driver {
        fn new() -> Self {
            Self {
                tm: TransactionManager::new(TransactionConfig {
                    transactional_id: "tx".into(),
                    transaction_timeout: TIMEOUT,
                    retry_backoff: 100 * MS,
                    retry_backoff_max: Duration::from_secs(1),
                }),
                rng: Rng::new(7),
                now: Instant::now(),
                incomplete: false,
            }
        }

        /// The next request, after any backoff (moving the clock to its end).
        fn next(&mut self) -> Option<TransactionRequest> {
            if let Some(at) = self.tm.poll_timeout(self.now) {
                self.now = at;
            }
            self.tm.poll_request(self.now, self.incomplete)
        }

        fn expect(&mut self, api: ApiKey) -> TransactionRequest {
            match self.next() {
                Some(request) if request.api == api => request,
                other => panic!("expected {api:?}, got {other:?} in {:?}", self.tm.state()),
            }
        }

        fn answer(&mut self, request: &TransactionRequest, version: i16, body: ResponseKind) {
            self.tm
                .handle_response(request.id, version, Ok(body), self.now, &mut self.rng);
        }

        fn fail(&mut self, request: &TransactionRequest, error: Error, sent: bool) {
            self.tm
                .handle_response(request.id, 0, Err((error, sent)), self.now, &mut self.rng);
        }

        /// Answers a FindCoordinator with node `node`.
        fn find(&mut self, node: i32) {
            let request = self.expect(ApiKey::FindCoordinator);
            assert_eq!(request.destination, Destination::AnyBroker);
            self.answer(&request, 3, coordinator(node));
        }

        /// The next request must be `api` answered with `code` (InitProducerId: id 1000 at
        /// epoch `epoch`).
        fn round(&mut self, api: ApiKey, code: Option<ErrorCode>) -> TransactionRequest {
            let request = self.expect(api);
            let body = answer_for(&request, code);
            self.answer(&request, 3, body);
            request
        }

        fn completions(&mut self) -> Vec<(OperationId, Result<(), Error>)> {
            std::iter::from_fn(|| self.tm.poll_completion()).collect()
        }

        /// Initialised (coordinator 1, producer 1000 epoch 0), a transaction begun.
        fn in_transaction() -> Self {
            let mut d = Self::new();
            let op = d.tm.init_transactions().expect("uninitialized");
            d.find(1);
            d.round(ApiKey::InitProducerId, None);
            assert!(matches!(&d.completions()[..], [(o, Ok(()))] if *o == op));
            assert_eq!(d.tm.take_producer_id(), Some(ProducerId::new(1000, 0)));
            assert_eq!(d.tm.begin_transaction().ok(), Some(None));
            d
        }

        /// Adds partition t/`p` and answers its AddPartitionsToTxn.
        fn add(&mut self, p: i32) {
            self.tm.add_partitions([TopicPartition::new("t", p)]);
            self.round(ApiKey::AddPartitionsToTxn, None);
            assert_eq!(
                self.tm.take_added_partitions(),
                vec![TopicPartition::new("t", p)]
            );
        }
    }

    fn coordinator(node: i32) -> ResponseKind {
        ResponseKind::FindCoordinator(
            FindCoordinatorResponse::default()
                .with_node_id(BrokerId(node))
                .with_host(StrBytes::from_static_str("b"))
                .with_port(9092 + node),
        )
    }

    /// An answer to `request` with `code` everywhere it has an error code.
    fn answer_for(request: &TransactionRequest, code: Option<ErrorCode>) -> ResponseKind {
        let error_code = code.map_or(0, |c| c.code());
        match request.build(3).expect("builds") {
            RequestKind::InitProducerId(_) => ResponseKind::InitProducerId(
                InitProducerIdResponse::default()
                    .with_error_code(error_code)
                    .with_producer_id(if code.is_some() { -1 } else { 1000 }.into())
                    .with_producer_epoch(if code.is_some() { -1 } else { 0 }),
            ),
            RequestKind::AddPartitionsToTxn(req) => ResponseKind::AddPartitionsToTxn(
                AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(
                    req.v3_and_below_topics
                        .iter()
                        .map(|t| {
                            AddPartitionsToTxnTopicResult::default()
                                .with_name(t.name.clone())
                                .with_results_by_partition(
                                    t.partitions
                                        .iter()
                                        .map(|p| {
                                            AddPartitionsToTxnPartitionResult::default()
                                                .with_partition_index(*p)
                                                .with_partition_error_code(error_code)
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                ),
            ),
            RequestKind::AddOffsetsToTxn(_) => ResponseKind::AddOffsetsToTxn(
                AddOffsetsToTxnResponse::default().with_error_code(error_code),
            ),
            RequestKind::TxnOffsetCommit(req) => ResponseKind::TxnOffsetCommit(
                TxnOffsetCommitResponse::default().with_topics(
                    req.topics
                        .iter()
                        .map(|t| {
                            TxnOffsetCommitResponseTopic::default()
                                .with_name(t.name.clone())
                                .with_partitions(
                                    t.partitions
                                        .iter()
                                        .map(|p| {
                                            TxnOffsetCommitResponsePartition::default()
                                                .with_partition_index(p.partition_index)
                                                .with_error_code(error_code)
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                ),
            ),
            RequestKind::EndTxn(_) => {
                ResponseKind::EndTxn(EndTxnResponse::default().with_error_code(error_code))
            }
            RequestKind::FindCoordinator(_) => ResponseKind::FindCoordinator(
                FindCoordinatorResponse::default()
                    .with_error_code(error_code)
                    .with_node_id(BrokerId(1))
                    .with_host(StrBytes::from_static_str("b"))
                    .with_port(9093),
            ),
            other => panic!("not a transactional request: {other:?}"),
        }
    }

    #[test]
    fn init_finds_the_coordinator_and_gets_a_producer_id_with_the_transactional_id() {
        let mut d = Driver::new();
        assert!(matches!(
            d.tm.check_send(),
            Err(Error::InvalidTransactionState(_))
        ));
        assert!(matches!(
            d.tm.begin_transaction(),
            Err(Error::InvalidTransactionState(_))
        ));
        assert!(d.next().is_none(), "nothing before init_transactions");
        let op = d.tm.init_transactions().expect("first");
        assert_eq!(
            d.tm.init_transactions().ok(),
            Some(op),
            "the same operation"
        );
        let find = d.expect(ApiKey::FindCoordinator);
        let RequestKind::FindCoordinator(v3) = find.build(3).expect("builds") else {
            panic!()
        };
        assert_eq!((v3.key.as_str(), v3.key_type), ("tx", 1));
        let RequestKind::FindCoordinator(v4) = find.build(4).expect("builds") else {
            panic!()
        };
        assert_eq!(v4.coordinator_keys, vec![StrBytes::from_static_str("tx")]);
        assert!(d.next().is_none(), "one request at a time");
        d.answer(&find, 3, coordinator(2));
        let init = d.expect(ApiKey::InitProducerId);
        assert_eq!(
            init.destination,
            Destination::Broker {
                node_id: 2,
                address: "b:9094".into()
            }
        );
        assert_eq!(init.max_version, Some(MAX_INIT_PRODUCER_ID_VERSION));
        let RequestKind::InitProducerId(body) = init.build(5).expect("builds") else {
            panic!()
        };
        assert_eq!(
            body.transactional_id.as_ref().map(|t| t.0.as_str()),
            Some("tx")
        );
        assert_eq!(body.transaction_timeout_ms, 60_000);
        assert_eq!((body.producer_id.0, body.producer_epoch), (-1, -1));
        d.answer(&init, 3, answer_for(&init, None));
        assert_eq!(d.tm.state(), TransactionState::Ready);
        assert!(matches!(&d.completions()[..], [(o, Ok(()))] if *o == op));
        assert_eq!(d.tm.take_producer_id(), Some(ProducerId::new(1000, 0)));
        assert!(matches!(
            d.tm.check_send(),
            Err(Error::InvalidTransactionState(m)) if m.contains("begin_transaction")
        ));
        assert_eq!(d.tm.begin_transaction().ok(), Some(None));
        assert!(d.tm.check_send().is_ok());
        assert!(matches!(
            d.tm.begin_transaction(),
            Err(Error::InvalidTransactionState(_))
        ));
        assert!(d.tm.init_transactions().is_err());
    }

    #[test]
    fn new_partitions_join_in_batches_before_their_records_may_go() {
        let mut d = Driver::in_transaction();
        d.tm.add_partitions([TopicPartition::new("t", 0), TopicPartition::new("u", 3)]);
        d.tm.add_partitions([TopicPartition::new("t", 1)]);
        let first = d.expect(ApiKey::AddPartitionsToTxn);
        assert_eq!(first.max_version, Some(3));
        let RequestKind::AddPartitionsToTxn(body) = first.build(3).expect("builds") else {
            panic!()
        };
        let topics: Vec<(&str, Vec<i32>)> = body
            .v3_and_below_topics
            .iter()
            .map(|t| (t.name.0.as_str(), t.partitions.clone()))
            .collect();
        assert_eq!(topics, vec![("t", vec![0, 1]), ("u", vec![3])]);
        assert_eq!(body.v3_and_below_transactional_id.0.as_str(), "tx");
        assert_eq!(
            (
                body.v3_and_below_producer_id.0,
                body.v3_and_below_producer_epoch
            ),
            (1000, 0)
        );
        // Added while the first is in flight: the next request; already added ones never.
        d.tm.add_partitions([TopicPartition::new("t", 2), TopicPartition::new("t", 0)]);
        assert!(
            d.tm.take_added_partitions().is_empty(),
            "not before the answer"
        );
        d.answer(&first, 3, answer_for(&first, None));
        assert_eq!(d.tm.take_added_partitions().len(), 3);
        let second = d.round(ApiKey::AddPartitionsToTxn, None);
        let RequestKind::AddPartitionsToTxn(body) = second.build(3).expect("builds") else {
            panic!()
        };
        assert_eq!(body.v3_and_below_topics[0].partitions, vec![2]);
        assert_eq!(
            d.tm.take_added_partitions(),
            vec![TopicPartition::new("t", 2)]
        );
        d.tm.add_partitions([TopicPartition::new("t", 1)]);
        assert!(d.next().is_none(), "already in the transaction");
    }

    #[test]
    fn commit_flushes_then_ends_the_transaction_once_every_record_completed() {
        let mut d = Driver::in_transaction();
        d.add(0);
        let op = d.tm.commit().expect("in a transaction");
        assert_eq!(d.tm.commit().ok(), Some(op), "the same operation");
        assert!(d.tm.take_flush());
        assert!(matches!(
            d.tm.check_send(),
            Err(Error::InvalidTransactionState(_))
        ));
        d.incomplete = true;
        assert!(d.next().is_none(), "records still in flight");
        d.incomplete = false;
        let end = d.expect(ApiKey::EndTxn);
        assert_eq!(end.max_version, Some(4));
        let RequestKind::EndTxn(body) = end.build(4).expect("builds") else {
            panic!()
        };
        assert!(body.committed);
        assert_eq!((body.producer_id.0, body.producer_epoch), (1000, 0));
        d.answer(&end, 3, answer_for(&end, None));
        assert!(matches!(&d.completions()[..], [(o, Ok(()))] if *o == op));
        assert_eq!(d.tm.state(), TransactionState::Ready);
        assert!(d.tm.take_transaction_ended());
        // A transaction to which nothing was added ends without an EndTxn.
        assert_eq!(d.tm.begin_transaction().ok(), Some(None));
        let op = d.tm.commit().expect("in a transaction");
        assert!(d.next().is_none());
        assert!(matches!(&d.completions()[..], [(o, Ok(()))] if *o == op));
        assert_eq!(d.tm.state(), TransactionState::Ready);
    }

    /// What an answer led to.
    #[derive(Debug, PartialEq, Eq)]
    enum Row {
        /// The same request again (after a backoff).
        Retry,
        /// FindCoordinator first, then the same request.
        Refind,
        /// The transaction must be aborted.
        Abortable,
        /// The producer is gone.
        Fatal,
    }

    /// Answers the next `api` request with `code` and says what followed.
    fn outcome(d: &mut Driver, api: ApiKey, code: ErrorCode) -> Row {
        d.round(api, Some(code));
        match d.tm.state() {
            TransactionState::FatalError => return Row::Fatal,
            TransactionState::AbortableError => return Row::Abortable,
            _ => {}
        }
        match d.next() {
            Some(r) if r.api == ApiKey::FindCoordinator => Row::Refind,
            Some(r) if r.api == api => Row::Retry,
            other => panic!("{api:?} {code:?}: {other:?} in {:?}", d.tm.state()),
        }
    }

    /// A driver about to send `api`.
    fn before(api: ApiKey) -> Driver {
        match api {
            ApiKey::InitProducerId => {
                let mut d = Driver::new();
                d.tm.init_transactions().expect("first");
                d.find(1);
                d
            }
            ApiKey::AddPartitionsToTxn => {
                let mut d = Driver::in_transaction();
                d.tm.add_partitions([TopicPartition::new("t", 0)]);
                d
            }
            ApiKey::AddOffsetsToTxn => {
                let mut d = Driver::in_transaction();
                let offsets = BTreeMap::from([(TopicPartition::new("in", 0), 5)]);
                let group = ConsumerGroupMetadata::member("g", 3, "m", None);
                d.tm.send_offsets(offsets, &group)
                    .expect("in a transaction");
                d
            }
            ApiKey::TxnOffsetCommit => {
                let mut d = before(ApiKey::AddOffsetsToTxn);
                d.round(ApiKey::AddOffsetsToTxn, None);
                d.find(2);
                d
            }
            ApiKey::EndTxn => {
                let mut d = Driver::in_transaction();
                d.add(0);
                d.tm.commit().expect("in a transaction");
                d
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn answers_are_classified_per_request_as_javas_transaction_manager_does() {
        use ErrorCode as E;
        use Row::*;
        let table: &[(ApiKey, &[(ErrorCode, Row)])] = &[
            (
                ApiKey::InitProducerId,
                &[
                    (E::NotCoordinator, Refind),
                    (E::CoordinatorNotAvailable, Refind),
                    (E::CoordinatorLoadInProgress, Retry),
                    (E::ConcurrentTransactions, Retry),
                    (E::ProducerFenced, Fatal),
                    (E::InvalidProducerEpoch, Fatal),
                    (E::TransactionalIdAuthorizationFailed, Fatal),
                    (E::ClusterAuthorizationFailed, Fatal),
                    (E::UnsupportedVersion, Fatal),
                    (E::InvalidTransactionTimeout, Fatal),
                    (E::TransactionAbortable, Fatal),
                ],
            ),
            (
                ApiKey::AddPartitionsToTxn,
                &[
                    (E::NotCoordinator, Refind),
                    (E::CoordinatorNotAvailable, Refind),
                    (E::ConcurrentTransactions, Retry),
                    (E::CoordinatorLoadInProgress, Retry),
                    (E::UnknownTopicOrPartition, Retry),
                    (E::ProducerFenced, Fatal),
                    (E::InvalidProducerEpoch, Fatal),
                    (E::TransactionalIdAuthorizationFailed, Fatal),
                    (E::InvalidTxnState, Fatal),
                    (E::TopicAuthorizationFailed, Abortable),
                    (E::OperationNotAttempted, Abortable),
                    (E::UnknownProducerId, Abortable),
                    (E::InvalidProducerIdMapping, Abortable),
                    (E::TransactionAbortable, Abortable),
                    (E::InvalidRecord, Abortable),
                ],
            ),
            (
                ApiKey::AddOffsetsToTxn,
                &[
                    (E::NotCoordinator, Refind),
                    (E::CoordinatorNotAvailable, Refind),
                    (E::ConcurrentTransactions, Retry),
                    (E::CoordinatorLoadInProgress, Retry),
                    (E::UnknownProducerId, Abortable),
                    (E::InvalidProducerIdMapping, Abortable),
                    (E::ProducerFenced, Fatal),
                    (E::InvalidProducerEpoch, Fatal),
                    (E::TransactionalIdAuthorizationFailed, Fatal),
                    (E::InvalidTxnState, Fatal),
                    (E::GroupAuthorizationFailed, Abortable),
                    (E::TransactionAbortable, Abortable),
                    (E::InvalidRecord, Fatal),
                ],
            ),
            (
                ApiKey::TxnOffsetCommit,
                &[
                    (E::NotCoordinator, Refind),
                    (E::CoordinatorNotAvailable, Refind),
                    (E::RequestTimedOut, Refind),
                    (E::CoordinatorLoadInProgress, Retry),
                    (E::UnknownTopicOrPartition, Retry),
                    (E::GroupAuthorizationFailed, Abortable),
                    (E::FencedInstanceId, Abortable),
                    (E::TransactionAbortable, Abortable),
                    (E::UnknownMemberId, Abortable),
                    (E::IllegalGeneration, Abortable),
                    (E::ProducerFenced, Fatal),
                    (E::InvalidProducerEpoch, Fatal),
                    (E::TransactionalIdAuthorizationFailed, Fatal),
                    (E::UnsupportedForMessageFormat, Fatal),
                    (E::InvalidRecord, Fatal),
                ],
            ),
            (
                ApiKey::EndTxn,
                &[
                    (E::NotCoordinator, Refind),
                    (E::CoordinatorNotAvailable, Refind),
                    (E::ConcurrentTransactions, Retry),
                    (E::CoordinatorLoadInProgress, Retry),
                    (E::ProducerFenced, Fatal),
                    (E::InvalidProducerEpoch, Fatal),
                    (E::TransactionalIdAuthorizationFailed, Fatal),
                    (E::InvalidTxnState, Fatal),
                    (E::UnknownProducerId, Abortable),
                    (E::InvalidProducerIdMapping, Abortable),
                    (E::TransactionAbortable, Abortable),
                    (E::InvalidRecord, Fatal),
                ],
            ),
        ];
        for (api, rows) in table {
            for (code, expected) in rows.iter() {
                let mut d = before(*api);
                let row = outcome(&mut d, *api, *code);
                assert_eq!(&row, expected, "{api:?} answered {code:?}");
                let completions = d.completions();
                match row {
                    Fatal => {
                        let error = d.tm.fatal_error().cloned().expect("fatal");
                        assert!(error.is_fatal(), "{api:?} {code:?}: {error}");
                        assert!(d.tm.check_send().is_err() && d.tm.abort().is_err());
                        assert!(
                            completions.iter().all(|(_, r)| r.is_err()),
                            "{completions:?}"
                        );
                        if matches!(code, E::ProducerFenced | E::InvalidProducerEpoch) {
                            assert_eq!(error.code(), Some(E::ProducerFenced), "{api:?}");
                        }
                    }
                    Abortable => {
                        let error = d.tm.check_send().expect_err("abortable");
                        assert!(error.requires_abort(), "{api:?} {code:?}: {error}");
                        assert!(matches!(d.tm.commit(), Err(Error::Abortable(_))));
                        assert!(
                            completions
                                .iter()
                                .all(|(_, r)| matches!(r, Err(Error::Abortable(_)))),
                            "{api:?} {code:?}: {completions:?}"
                        );
                        assert!(d.tm.abort().is_ok(), "{api:?} {code:?}");
                    }
                    Retry | Refind => assert!(completions.is_empty(), "{completions:?}"),
                }
            }
        }
    }

    #[test]
    fn find_coordinator_answers_are_classified_and_checked() {
        use ErrorCode as E;
        for (code, fatal) in [
            (E::CoordinatorNotAvailable, false),
            (E::CoordinatorLoadInProgress, false),
            (E::TransactionalIdAuthorizationFailed, true),
            (E::InvalidRequest, true),
        ] {
            let mut d = Driver::new();
            d.tm.init_transactions().expect("first");
            d.round(ApiKey::FindCoordinator, Some(code));
            assert_eq!(
                d.tm.state() == TransactionState::FatalError,
                fatal,
                "{code:?}"
            );
            if !fatal {
                assert_eq!(d.next().map(|r| r.api), Some(ApiKey::FindCoordinator));
            }
        }
        // Numbers a broker invented: asked again, never a panic.
        for (node, port) in [(-1, 9092), (1, -1), (1, 70_000)] {
            let mut d = Driver::new();
            d.tm.init_transactions().expect("first");
            let find = d.expect(ApiKey::FindCoordinator);
            let body = FindCoordinatorResponse::default()
                .with_node_id(BrokerId(node))
                .with_host(StrBytes::from_static_str("b"))
                .with_port(port);
            d.answer(&find, 3, ResponseKind::FindCoordinator(body));
            assert_eq!(
                d.next().map(|r| r.api),
                Some(ApiKey::FindCoordinator),
                "{node} {port}"
            );
        }
        // v4+: one coordinator per key asked, no more, no less.
        let mut d = Driver::new();
        d.tm.init_transactions().expect("first");
        let find = d.expect(ApiKey::FindCoordinator);
        let two = FindCoordinatorResponse::default()
            .with_coordinators(vec![Coordinator::default(), Coordinator::default()]);
        d.answer(&find, 4, ResponseKind::FindCoordinator(two));
        assert_eq!(d.tm.state(), TransactionState::FatalError);
        let mut d = Driver::new();
        d.tm.init_transactions().expect("first");
        let find = d.expect(ApiKey::FindCoordinator);
        let one =
            FindCoordinatorResponse::default().with_coordinators(vec![Coordinator::default()
                .with_key(StrBytes::from_static_str("tx"))
                .with_node_id(BrokerId(4))
                .with_host(StrBytes::from_static_str("c"))
                .with_port(1)]);
        d.answer(&find, 4, ResponseKind::FindCoordinator(one));
        let init = d.expect(ApiKey::InitProducerId);
        assert_eq!(
            init.destination,
            Destination::Broker {
                node_id: 4,
                address: "c:1".into()
            }
        );
    }

    #[test]
    fn concurrent_transactions_on_the_first_add_is_retried_after_20_ms() {
        let mut d = Driver::in_transaction();
        d.tm.add_partitions([TopicPartition::new("t", 0)]);
        d.round(
            ApiKey::AddPartitionsToTxn,
            Some(ErrorCode::ConcurrentTransactions),
        );
        let start = d.now;
        assert_eq!(d.tm.poll_timeout(d.now), Some(start + 20 * MS));
        d.round(ApiKey::AddPartitionsToTxn, None);
        // Once the transaction has partitions, the usual backoff.
        d.tm.add_partitions([TopicPartition::new("t", 1)]);
        d.round(
            ApiKey::AddPartitionsToTxn,
            Some(ErrorCode::ConcurrentTransactions),
        );
        let wait = d.tm.poll_timeout(d.now).expect("backing off") - d.now;
        assert!(wait >= 80 * MS, "{wait:?}");
    }

    #[test]
    fn failed_requests_find_the_coordinator_again_and_are_retried() {
        let mut d = before(ApiKey::AddPartitionsToTxn);
        let add = d.expect(ApiKey::AddPartitionsToTxn);
        d.fail(
            &add,
            Error::Disconnected {
                address: "b:9093".into(),
            },
            true,
        );
        d.find(2);
        let again = d.expect(ApiKey::AddPartitionsToTxn);
        assert_eq!(
            again.destination,
            Destination::Broker {
                node_id: 2,
                address: "b:9094".into()
            }
        );
        // A request that cannot be sent at all (no version in common) is fatal.
        d.fail(
            &again,
            Error::UnsupportedVersion {
                address: "b:9094".into(),
                api: ApiKey::AddPartitionsToTxn,
            },
            false,
        );
        assert_eq!(d.tm.state(), TransactionState::FatalError);
    }

    /// A commit whose EndTxn is in flight (sent once): the driver and that request.
    fn committing() -> (Driver, OperationId, TransactionRequest) {
        let mut d = Driver::in_transaction();
        d.add(0);
        let op = d.tm.commit().expect("in a transaction");
        let end = d.expect(ApiKey::EndTxn);
        (d, op, end)
    }

    #[test]
    fn a_commit_whose_answer_is_lost_is_retried_and_reported_as_the_retry_says() {
        // The retry finds the commit done: committed, truthfully.
        let (mut d, op, end) = committing();
        d.fail(&end, Error::RequestTimeout(30_000 * MS), true);
        d.find(1);
        d.round(ApiKey::EndTxn, Some(ErrorCode::ConcurrentTransactions));
        d.round(ApiKey::EndTxn, None);
        assert!(matches!(&d.completions()[..], [(o, Ok(()))] if *o == op));
        assert_eq!(d.tm.state(), TransactionState::Ready);

        // The retry finds the transaction aborted: the commit failed (fatal, as Java).
        let (mut d, op, end) = committing();
        d.fail(&end, Error::RequestTimeout(30_000 * MS), true);
        d.find(1);
        d.round(ApiKey::EndTxn, Some(ErrorCode::InvalidTxnState));
        let done = d.completions();
        assert!(
            matches!(&done[..], [(o, Err(e))] if *o == op && e.code() == Some(ErrorCode::InvalidTxnState)),
            "{done:?}"
        );

        // The retry is fenced: a newer instance may have found it committed. Unknown.
        let (mut d, op, end) = committing();
        d.fail(
            &end,
            Error::Disconnected {
                address: "b:9093".into(),
            },
            true,
        );
        d.find(1);
        d.round(ApiKey::EndTxn, Some(ErrorCode::ProducerFenced));
        let done = d.completions();
        let [(o, Err(error))] = &done[..] else {
            panic!("{done:?}")
        };
        assert_eq!(*o, op);
        assert!(
            matches!(error, Error::TransactionOutcomeUnknown { .. }) && error.is_fatal(),
            "{error}"
        );
        assert_eq!(d.tm.state(), TransactionState::FatalError);

        // Fenced at the first attempt: the commit failed for sure.
        let (mut d, op, end) = committing();
        d.answer(&end, 3, answer_for(&end, Some(ErrorCode::ProducerFenced)));
        let done = d.completions();
        assert!(
            matches!(&done[..], [(o, Err(e))] if *o == op && e.code() == Some(ErrorCode::ProducerFenced)),
            "{done:?}"
        );
    }

    #[test]
    fn a_commit_without_an_answer_until_the_deadline_is_unknown_and_the_epoch_is_never_reused() {
        for commit_had_arrived in [false, true] {
            let (mut d, op, mut end) = committing();
            let started = d.now;
            let mut attempts = 0;
            let done = loop {
                attempts += 1;
                assert!(attempts < 1_000, "the commit never gives up");
                d.fail(&end, Error::RequestTimeout(30_000 * MS), true);
                let mut next = d.next().expect("something to send");
                let done = d.completions();
                if next.api == ApiKey::FindCoordinator {
                    d.answer(&next, 3, coordinator(1));
                    next = d.expect(ApiKey::EndTxn);
                }
                end = next;
                if !done.is_empty() {
                    break done;
                }
            };
            assert!(
                d.now >= started + TIMEOUT,
                "gave up at {:?}",
                d.now - started
            );
            let [(o, Err(error))] = &done[..] else {
                panic!("{done:?}")
            };
            assert_eq!(*o, op);
            assert!(
                matches!(error, Error::TransactionOutcomeUnknown { .. }),
                "{error}"
            );
            assert!(!error.is_fatal() && !error.is_retriable() && !error.requires_abort());
            // The transaction is settled first (EndTxn(abort): an InitProducerId while it is
            // open would be fenced), then the epoch bumped (KIP-360), before anything else.
            assert_eq!(d.tm.state(), TransactionState::Initializing);
            let RequestKind::EndTxn(body) = end.build(3).expect("builds") else {
                panic!("{end:?}")
            };
            assert!(!body.committed, "settled by an abort");
            let waiting =
                d.tm.begin_transaction()
                    .expect("waits")
                    .expect("an operation");
            assert!(d.tm.check_send().is_err(), "no transaction yet");
            // The abort finds the transaction aborted, or committed after all.
            let settled = commit_had_arrived.then_some(ErrorCode::InvalidTxnState);
            d.answer(&end, 3, answer_for(&end, settled));
            let bump = d.expect(ApiKey::InitProducerId);
            let RequestKind::InitProducerId(body) = bump.build(3).expect("builds") else {
                panic!()
            };
            assert_eq!((body.producer_id.0, body.producer_epoch), (1000, 0));
            let body = ResponseKind::InitProducerId(
                InitProducerIdResponse::default()
                    .with_producer_id(1000.into())
                    .with_producer_epoch(1),
            );
            d.answer(&bump, 3, body);
            assert!(matches!(&d.completions()[..], [(o, Ok(()))] if *o == waiting));
            assert_eq!(d.tm.take_producer_id(), Some(ProducerId::new(1000, 1)));
            assert_eq!(d.tm.begin_transaction().ok(), Some(None));
        }
    }

    #[test]
    fn a_commit_that_never_reached_the_coordinator_must_be_aborted() {
        let (mut d, op, end) = committing();
        d.fail(
            &end,
            Error::Connect {
                address: "b:9093".into(),
                source: std::sync::Arc::new(std::io::Error::other("refused")),
            },
            false,
        );
        // The coordinator stays unreachable past the deadline.
        let mut attempts = 0;
        while let Some(r) = d.next() {
            attempts += 1;
            assert!(attempts < 1_000, "the commit never gives up");
            d.fail(&r, Error::RequestTimeout(MS), false);
        }
        let done = d.completions();
        assert!(
            matches!(&done[..], [(o, Err(Error::Abortable(_)))] if *o == op),
            "{done:?}"
        );
        assert_eq!(d.tm.state(), TransactionState::AbortableError);
        let abort = d.tm.abort().expect("abortable");
        d.find(1);
        d.round(ApiKey::EndTxn, None);
        // The failed attempts may have left the epoch's sequences unknown: bumped.
        let bump = d.round(ApiKey::InitProducerId, None);
        let RequestKind::InitProducerId(body) = bump.build(3).expect("builds") else {
            panic!()
        };
        assert_eq!((body.producer_id.0, body.producer_epoch), (1000, 0));
        assert!(matches!(&d.completions()[..], [(o, Ok(()))] if *o == abort));
        assert_eq!(d.tm.state(), TransactionState::Ready);
    }

    #[test]
    fn an_abort_fails_unsent_records_waits_for_the_rest_and_bumps_after_a_hole() {
        let mut d = Driver::in_transaction();
        d.add(0);
        d.tm.handle_record_failure(&Error::Partition {
            partition: TopicPartition::new("t", 0),
            code: ErrorCode::InvalidRecord,
            message: None,
        });
        d.tm.handle_sequence_hole();
        assert_eq!(d.tm.state(), TransactionState::AbortableError);
        assert!(matches!(d.tm.abort_error(), Some(Error::Abortable(_))));
        let error = d.tm.check_send().expect_err("abortable");
        assert_eq!(error.code(), Some(ErrorCode::InvalidRecord));
        assert!(d.next().is_none(), "nothing is sent in AbortableError");
        let op = d.tm.abort().expect("abortable");
        assert_eq!(d.tm.abort().ok(), Some(op), "the same operation");
        assert!(d.tm.abort_error().is_some(), "unsent records fail");
        d.incomplete = true;
        assert!(d.next().is_none(), "in-flight records are waited for");
        d.incomplete = false;
        let end = d.round(ApiKey::EndTxn, None);
        let RequestKind::EndTxn(body) = end.build(3).expect("builds") else {
            panic!()
        };
        assert!(!body.committed);
        assert!(d.completions().is_empty(), "the abort ends with the bump");
        assert_eq!(d.tm.abort().ok(), Some(op), "still the same operation");
        d.round(ApiKey::InitProducerId, None);
        assert!(matches!(&d.completions()[..], [(o, Ok(()))] if *o == op));
        assert_eq!(d.tm.state(), TransactionState::Ready);
        assert!(d.tm.take_transaction_ended());
        // Without a hole, an abort is EndTxn alone; a user abort fails records as aborted.
        assert_eq!(d.tm.begin_transaction().ok(), Some(None));
        d.add(1);
        let op = d.tm.abort().expect("in a transaction");
        assert!(matches!(
            d.tm.abort_error(),
            Some(Error::TransactionAborted)
        ));
        d.round(ApiKey::EndTxn, None);
        assert!(matches!(&d.completions()[..], [(o, Ok(()))] if *o == op));
        assert_eq!(d.tm.state(), TransactionState::Ready);
    }

    #[test]
    fn offsets_go_to_the_transaction_then_to_the_group_coordinator_with_the_member() {
        let mut d = before(ApiKey::AddOffsetsToTxn);
        let add = d.round(ApiKey::AddOffsetsToTxn, None);
        let RequestKind::AddOffsetsToTxn(body) = add.build(3).expect("builds") else {
            panic!()
        };
        assert_eq!(body.group_id.0.as_str(), "g");
        let find = d.expect(ApiKey::FindCoordinator);
        let RequestKind::FindCoordinator(body) = find.build(3).expect("builds") else {
            panic!()
        };
        assert_eq!((body.key.as_str(), body.key_type), ("g", 0));
        d.answer(&find, 3, coordinator(2));
        let commit = d.expect(ApiKey::TxnOffsetCommit);
        assert_eq!(
            commit.destination,
            Destination::Broker {
                node_id: 2,
                address: "b:9094".into()
            }
        );
        assert_eq!(commit.max_version, Some(4));
        let RequestKind::TxnOffsetCommit(body) = commit.build(3).expect("builds") else {
            panic!()
        };
        assert_eq!(
            (body.generation_id, body.member_id.as_str()),
            (3, "m"),
            "KIP-447: fenced as the member's own commits"
        );
        assert_eq!(body.topics[0].partitions[0].committed_offset, 5);
        assert!(
            matches!(commit.build(2), Err(e) if e.is_fatal()),
            "v2 cannot carry the generation"
        );
        d.answer(&commit, 3, answer_for(&commit, None));
        let done = d.completions();
        assert!(matches!(&done[..], [(_, Ok(()))]), "{done:?}");
        // Group-only metadata works with any version.
        let mut d = Driver::in_transaction();
        d.tm.send_offsets(
            BTreeMap::from([(TopicPartition::new("in", 0), 1)]),
            &ConsumerGroupMetadata::new("g"),
        )
        .expect("in a transaction");
        d.round(ApiKey::AddOffsetsToTxn, None);
        d.find(2);
        let commit = d.expect(ApiKey::TxnOffsetCommit);
        assert!(commit.build(0).is_ok());
        // Nothing to send, or not in a transaction.
        assert_eq!(
            d.tm.send_offsets(BTreeMap::new(), &ConsumerGroupMetadata::new("g"))
                .ok(),
            Some(None)
        );
        assert!(matches!(
            d.tm.send_offsets(
                BTreeMap::from([(TopicPartition::new("in", 0), -3)]),
                &ConsumerGroupMetadata::new("g")
            ),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn a_fencing_record_failure_is_fatal_and_close_aborts_an_open_transaction() {
        let mut d = Driver::in_transaction();
        d.tm.handle_record_failure(&Error::Partition {
            partition: TopicPartition::new("t", 0),
            code: ErrorCode::ProducerFenced,
            message: None,
        });
        assert_eq!(d.tm.state(), TransactionState::FatalError);
        assert!(d.tm.fatal_error().is_some_and(Error::is_fatal));
        assert!(d.tm.init_transactions().is_err() && d.tm.begin_transaction().is_err());

        let mut d = Driver::in_transaction();
        d.add(0);
        d.tm.close();
        assert_eq!(d.tm.state(), TransactionState::AbortingTransaction);
        assert!(!d.tm.is_idle());
        d.round(ApiKey::EndTxn, None);
        assert!(d.tm.is_idle());
        assert_eq!(d.tm.state(), TransactionState::Ready);
    }
}
