//! The transaction coordinator's work on the rest of the cluster: which broker coordinates
//! an id (the leader of its `__transaction_state` partition, `coordinator.rs`), the
//! markers an ended transaction writes to its partitions, the group offsets it commits or
//! drops, and the time-driven work (timeouts, markers put off, expiry) that
//! [`ClusterState::handle_timeout`] drives.
//!
//! Kafka's coordinator sends `WriteTxnMarkers` to each partition's leader, which appends
//! the marker; here the coordinator appends them to the shared logs directly
//! ([`ClusterState::append_marker`]), each once, whichever broker coordinates by then, then
//! completes the transaction (PrepareCommit → CompleteCommit, Kafka's
//! `TransactionMarkerChannelManager` then `prepareComplete`). The markers carry the
//! coordinator epoch: the leader epoch of the id's `__transaction_state` partition at the
//! time they are written. Offsets a transaction staged for groups
//! ([`super::offsets::OffsetStore::stage_transactional`]) are committed or dropped with its
//! markers, as Kafka's group coordinator replays the marker on `__consumer_offsets`.
//!
//! Time-driven work needs a coordinator: while an id's partition has no live leader (or
//! its new leader still loads), its markers and its timeout wait for the next check, as
//! Kafka's wait for a new coordinator to load the partition.

use std::sync::Arc;

use franzy::proto::ErrorCode;

use super::coordinator::{CoordinatorType, OFFSETS_TOPIC};
use super::transactions::{Now, Transactions};
use super::{ClusterState, Time, TransactionMarker};

impl ClusterState {
    /// The transaction coordinator's state: every transactional id.
    pub fn transactions(&self) -> &Transactions {
        &self.transactions
    }

    /// The transaction coordinator's state, to change (handlers; a change that prepares an
    /// end is followed by [`ClusterState::write_due_markers`]).
    pub(crate) fn transactions_mut(&mut self) -> &mut Transactions {
        &mut self.transactions
    }

    /// The coordinator's state with the producer id counter beside it, to run a transition
    /// that may take a new producer id.
    pub(crate) fn transactions_and_ids(
        &mut self,
    ) -> (
        &mut Transactions,
        impl FnMut() -> Result<i64, ErrorCode> + '_,
    ) {
        let next = &mut self.next_producer_id;
        let allocate = move || {
            let id = *next;
            *next = id.checked_add(1).ok_or(ErrorCode::UnknownServerError)?;
            Ok(id)
        };
        (&mut self.transactions, allocate)
    }

    /// Wall-clock milliseconds at cluster time `at` (the wall clock when the cluster
    /// started, advanced by cluster time).
    pub fn wall_ms(&self, at: Time) -> i64 {
        let elapsed = i64::try_from(at.since_start().as_millis()).unwrap_or(i64::MAX);
        self.wall_clock_start_ms.saturating_add(elapsed)
    }

    /// Sets the wall clock at the cluster's start, for the timestamps of work nobody asked
    /// for (markers of timed-out transactions). The builder sets it; 0 until then.
    pub fn set_wall_clock_start(&mut self, wall_ms: i64) {
        self.wall_clock_start_ms = wall_ms;
    }

    /// The moment `at`, with its wall-clock time.
    pub fn now_at(&self, at: Time) -> Now {
        Now {
            at,
            wall_ms: self.wall_ms(at),
        }
    }

    /// Whether `broker` coordinates `transactional_id` now, as a transaction request there
    /// needs: the coordinator epoch (the leader epoch of the id's `__transaction_state`
    /// partition), or NOT_COORDINATOR (another broker leads it, or the topic does not
    /// exist yet) or COORDINATOR_LOAD_IN_PROGRESS (just moved here).
    pub fn check_transaction_coordinator(
        &self,
        transactional_id: &str,
        broker: i32,
        now: Time,
    ) -> Result<i32, ErrorCode> {
        let partition =
            self.check_coordinator(CoordinatorType::Transaction, transactional_id, broker, now)?;
        self.partition(CoordinatorType::Transaction.topic(), partition)
            .map(|p| p.leader_epoch())
            .ok_or(ErrorCode::NotCoordinator)
    }

    /// The broker coordinating `transactional_id` and its coordinator epoch, if one can act
    /// now: its partition has a live leader that is not loading. A broker verifying a
    /// produce finds it this way (Kafka's `AddPartitionsToTxnManager`): COORDINATOR_NOT_
    /// AVAILABLE when there is none, COORDINATOR_LOAD_IN_PROGRESS while it loads.
    pub fn active_transaction_coordinator(
        &self,
        transactional_id: &str,
        now: Time,
    ) -> Result<(i32, i32), ErrorCode> {
        let kind = CoordinatorType::Transaction;
        let partition = self.coordinator_partition(kind, transactional_id);
        let leader = self
            .partition(kind.topic(), partition)
            .map_or(-1, |p| p.leader());
        if leader < 0 || !self.is_broker_up(leader) {
            return Err(ErrorCode::CoordinatorNotAvailable);
        }
        let epoch = self.check_transaction_coordinator(transactional_id, leader, now)?;
        Ok((leader, epoch))
    }

    /// Writes the markers of `transactional_id`'s prepared end if they are due at `now`
    /// and a coordinator can write them (else puts them off to the next check), then
    /// completes the transaction. Returns whether it completed.
    pub fn write_due_markers(&mut self, transactional_id: &str, now: Time) -> bool {
        let due = self
            .transactions
            .get(transactional_id)
            .and_then(|txn| txn.markers_due());
        if due.is_none_or(|due| due > now) {
            return false;
        }
        let coordinator_epoch = match self.active_transaction_coordinator(transactional_id, now) {
            Ok((_, epoch)) => epoch,
            Err(code) => {
                tracing::debug!(
                    transactional_id,
                    ?code,
                    "no coordinator to write the transaction markers: put off"
                );
                let retry = now + self.transactions.config().abort_interval;
                self.transactions.delay_markers(transactional_id, retry);
                return false;
            }
        };
        let Some(job) = self.transactions.marker_job(transactional_id) else {
            return false;
        };
        let now_ms = self.wall_ms(now);
        let marker = TransactionMarker {
            producer_id: job.producer_id,
            producer_epoch: job.producer_epoch,
            commit: job.commit,
            coordinator_epoch,
        };
        for (topic, partition) in &job.partitions {
            if let Err(error) = self.append_marker(topic, *partition, &marker, now_ms) {
                // A deleted topic has nothing to mark; any other refusal means the
                // partition knows a newer producer epoch or coordinator: Kafka's marker
                // channel drops the partition too.
                tracing::debug!(
                    transactional_id,
                    topic = topic.as_str(),
                    partition,
                    code = ?error.code,
                    "transaction marker not written"
                );
            }
        }
        if job
            .partitions
            .iter()
            .any(|(topic, _)| topic == OFFSETS_TOPIC)
        {
            self.offsets_mut()
                .complete_transaction(job.producer_id, job.commit);
        }
        let now = self.now_at(now);
        self.transactions.complete(transactional_id, now).is_ok()
    }

    /// The coordinator's work due at `now`: markers due, open transactions past their
    /// timeout (aborted with a bumped epoch, which fences their producer, Kafka's
    /// `abortTimedOutTransactions`), and idle ids past `transactional.id.expiration.ms`.
    pub(crate) fn drive_transactions(&mut self, now: Time) {
        if self.transactions.is_empty() {
            return;
        }
        for id in self.transactions.due_markers(now) {
            self.write_due_markers(&id, now);
        }
        for id in self.transactions.timed_out(now) {
            self.abort_timed_out(&id, now);
        }
        for id in self.transactions.expired(now) {
            tracing::debug!(transactional_id = &*id, "transactional id expired");
            self.transactions.expire(&id);
        }
    }

    fn abort_timed_out(&mut self, id: &Arc<str>, now: Time) {
        if self.active_transaction_coordinator(id, now).is_err() {
            let retry = now + self.transactions.config().abort_interval;
            self.transactions.delay_timeout(id, retry);
            return;
        }
        let at = self.now_at(now);
        match self.transactions.abort_timed_out(id, at) {
            Ok(()) => {
                tracing::debug!(transactional_id = &**id, "transaction timed out: aborting");
                self.write_due_markers(id, now);
            }
            Err(code) => {
                tracing::warn!(
                    transactional_id = &**id,
                    ?code,
                    "could not abort a timed-out transaction"
                );
                // Never again at this check: put off, so that the timer does not spin.
                let retry = now + self.transactions.config().abort_interval;
                self.transactions.delay_timeout(id, retry);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::cluster::{Time, TransactionState};
    use crate::handlers::test_support::{
        add_txn_partitions, cluster_with, end_txn, init_txn, produce_txn, txn_records,
    };

    #[test]
    fn a_transaction_past_its_timeout_is_aborted_and_its_producer_fenced() {
        let mut c = cluster_with(1);
        let (_, id, epoch) = init_txn(&mut c, "txn", 4);
        add_txn_partitions(&mut c, "txn", (id, epoch), &[0]);
        let produced = produce_txn(&mut c, Some("txn"), 0, txn_records((id, epoch), 0), 9);
        assert_eq!(produced.error_code, 0);
        // 60 s timeout from 0, checks every second: aborted at the check at 61 s.
        let check = Time::from_start(Duration::from_secs(61));
        assert_eq!(c.poll_timeout(), Some(check));
        c.handle_timeout(Time::from_start(Duration::from_secs(60)));
        assert_eq!(
            c.transactions().get("txn").map(|t| t.state()),
            Some(TransactionState::Ongoing)
        );
        c.handle_timeout(check);
        let txn = c.transactions().get("txn").cloned().expect("txn");
        assert_eq!(txn.state(), TransactionState::CompleteAbort);
        assert_eq!(txn.producer_epoch(), epoch + 1);
        let log = c.partition_log("t", 0).expect("log");
        assert_eq!(log.last_stable_offset(), log.high_watermark());
        assert_eq!(log.aborted_index().len(), 1);
        let marker = log.batches().last().expect("marker");
        assert_eq!(marker.header().producer_epoch, epoch + 1);
        // The marker's timestamp is the wall clock of the check.
        assert_eq!(marker.header().max_timestamp, c.wall_ms(check));
        // The zombie: its commit and its next record are fenced.
        let fenced = franzy::proto::ErrorCode::ProducerFenced.code();
        assert_eq!(end_txn(&mut c, "txn", (id, epoch), true, 3).0, fenced);
        let zombie = produce_txn(&mut c, Some("txn"), 0, txn_records((id, epoch), 1), 9);
        assert_eq!(
            zombie.error_code,
            franzy::proto::ErrorCode::InvalidProducerEpoch.code()
        );
    }

    #[test]
    fn idle_ids_expire_and_start_over_with_a_new_producer_id() {
        let mut c = cluster_with(1);
        let (_, id, _) = init_txn(&mut c, "txn", 4);
        let week = Duration::from_secs(7 * 24 * 3600);
        // Checks every hour: the first at or after a week.
        c.handle_timeout(Time::from_start(week + Duration::from_secs(3600)));
        assert!(c.transactions().get("txn").is_none());
        let (_, new_id, epoch) = init_txn(&mut c, "txn", 4);
        assert_eq!((new_id, epoch), (id + 1, 0));
    }
}
