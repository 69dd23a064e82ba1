//! Requests that wait: Kafka's `DelayedOperationPurgatory`, without threads or timers.
//!
//! A handler that cannot answer yet (a fetch short of `min_bytes`; later a JoinGroup until
//! its rebalance completes, an EndTxn until its markers are written) parks its request here
//! with the [`WaitKey`]s whose changes may let it answer and a deadline. The request is
//! moved in, never copied, and comes out in one of three ways:
//!
//! - **touched**: a state change on one of its keys ([`Purgatory::touch`]: an append to a
//!   partition, a leader change, a group's rebalance completing) makes it *ready*; its
//!   handler looks again and either answers or parks it again, on the same keys and with the
//!   same deadline;
//! - **resolved**: the state that owns the outcome hands it over directly
//!   ([`Purgatory::resolve`]), as Kafka's group coordinator calls each member's
//!   `awaitingJoinCallback` with the result it computed;
//! - **due**: its deadline passed ([`Purgatory::expire`]); its handler answers with
//!   whatever there is.
//!
//! Ready requests queue in the order they became ready, and [`Purgatory::take_ready`] hands
//! them out one at a time: the state is pure, so whoever holds it (the server, under the
//! cluster lock) runs the handlers and delivers the answers.
//!
//! A waiter is known by a [`WaiterId`], which the server gives each connection: a
//! connection answers in order, so at most one of its requests waits at a time, and a
//! connection that goes away takes its waiter with it ([`Purgatory::remove`]). The
//! purgatory is bounded in waiters and in bytes ([`WaitLimits`]); a request that would go
//! over is not parked, and its handler answers at once as at its deadline.
//!
//! Costs: parking, touching, expiring and removing are logarithmic or linear in the keys
//! and waiters they concern, never in everything that waits.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use franzy::proto::ErrorCode;
use uuid::Uuid;

use super::clock::Time;

/// Who waits: one per connection, given by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WaiterId(pub u64);

/// What a waiting request waits on: a change to any of its keys makes it look again.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WaitKey {
    /// A partition, by topic id (a topic deleted and created again is another topic):
    /// touched by appends, leader and ISR changes, DeleteRecords, and topic deletion.
    Partition(Uuid, i32),
    /// A consumer group: touched by the group coordinator when a join or sync phase ends.
    Group(Arc<str>),
    /// A transactional id: touched by the transaction coordinator when a transaction ends.
    TransactionalId(Arc<str>),
}

/// Why a parked request is handed back to its handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wake {
    /// One of its keys was touched: look again; answer, or wait on.
    Touched,
    /// Its deadline passed, or it could not be parked (the purgatory was full): answer now
    /// with whatever there is.
    Due,
    /// The state decided its outcome (see [`Resolution`]): answer with it.
    Resolved(Resolution),
}

/// An outcome decided for a waiting request by the state that owns it, rather than found by
/// its handler looking again. Coordinators add their results here (a JoinGroup's
/// generation, leader and members; a SyncGroup's assignment).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Resolution {
    /// Answer with this error (the coordinator moved, the member was fenced, ...).
    Error(ErrorCode),
}

/// Bounds of a [`Purgatory`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitLimits {
    /// Most requests waiting at once.
    pub waiters: usize,
    /// Most bytes of waiting requests (as their parkers count them) at once.
    pub bytes: usize,
}

/// Default of [`WaitLimits::waiters`]: 100,000 (a waiter per connection; the harness
/// serves fewer connections than this).
pub const DEFAULT_MAX_WAITERS: usize = 100_000;
/// Default of [`WaitLimits::bytes`]: 128 MiB.
pub const DEFAULT_MAX_WAITING_BYTES: usize = 128 * 1024 * 1024;

impl Default for WaitLimits {
    fn default() -> Self {
        Self {
            waiters: DEFAULT_MAX_WAITERS,
            bytes: DEFAULT_MAX_WAITING_BYTES,
        }
    }
}

/// A request to park: what waits, on what, until when.
#[derive(Debug)]
pub struct Wait<W> {
    /// The keys whose changes may let it answer (may be empty: then only its deadline or a
    /// [`Resolution`] ends the wait).
    pub keys: Vec<WaitKey>,
    /// When it answers whatever happens.
    pub deadline: Time,
    /// What it holds, in bytes, counted against [`WaitLimits::bytes`].
    pub bytes: usize,
    /// The request itself.
    pub request: W,
}

/// A parked request handed back to its handler.
#[derive(Debug)]
pub struct Ready<W> {
    /// Whose it is.
    pub waiter: WaiterId,
    /// Why it is back.
    pub wake: Wake,
    /// The request, with its keys and deadline, to answer or to park again.
    pub wait: Wait<W>,
}

/// Counts of what the purgatory did, for tests and diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WaitStats {
    /// Requests parked (again after a look counts again).
    pub parked: u64,
    /// Requests handed back because a key was touched.
    pub touched: u64,
    /// Requests handed back at their deadline.
    pub due: u64,
    /// Requests handed back with a resolution.
    pub resolved: u64,
    /// Requests removed unanswered (their connection went away).
    pub removed: u64,
    /// Requests not parked because the purgatory was full.
    pub refused: u64,
}

/// Waiting requests of type `W`, by waiter, key and deadline.
#[derive(Debug)]
pub struct Purgatory<W> {
    limits: WaitLimits,
    entries: BTreeMap<WaiterId, Entry<W>>,
    /// Who waits on each key. Only waiters still waiting are listed.
    watchers: HashMap<WaitKey, BTreeSet<WaiterId>>,
    /// Waiting (not ready) entries by deadline.
    deadlines: BTreeSet<(Time, WaiterId)>,
    /// Ready entries, in the order they became ready.
    ready: VecDeque<WaiterId>,
    bytes: usize,
    stats: WaitStats,
}

#[derive(Debug)]
struct Entry<W> {
    wait: Wait<W>,
    /// Why it is ready, once it is.
    wake: Option<Wake>,
}

impl<W> Default for Purgatory<W> {
    fn default() -> Self {
        Self::new(WaitLimits::default())
    }
}

impl<W> Purgatory<W> {
    /// An empty purgatory bounded by `limits`.
    pub fn new(limits: WaitLimits) -> Self {
        Self {
            limits,
            entries: BTreeMap::new(),
            watchers: HashMap::new(),
            deadlines: BTreeSet::new(),
            ready: VecDeque::new(),
            bytes: 0,
            stats: WaitStats::default(),
        }
    }

    /// Parks `wait` for `waiter`. Refused (and handed back) when the waiter already has a
    /// request here, or when it would take the purgatory past its limits: the caller then
    /// answers it at once, as at its deadline.
    // The request comes back whole, moved once: boxing it would buy nothing.
    #[allow(clippy::result_large_err)]
    pub fn park(&mut self, waiter: WaiterId, wait: Wait<W>) -> Result<(), Wait<W>> {
        let bytes = self.bytes.saturating_add(wait.bytes);
        if self.entries.contains_key(&waiter)
            || self.entries.len() >= self.limits.waiters
            || bytes > self.limits.bytes
        {
            self.stats.refused += 1;
            return Err(wait);
        }
        self.bytes = bytes;
        for key in &wait.keys {
            self.watchers.entry(key.clone()).or_default().insert(waiter);
        }
        self.deadlines.insert((wait.deadline, waiter));
        self.entries.insert(waiter, Entry { wait, wake: None });
        self.stats.parked += 1;
        Ok(())
    }

    /// A change on `key`: every request waiting on it becomes ready ([`Wake::Touched`]).
    /// Costs nothing when nobody waits on it.
    pub fn touch(&mut self, key: &WaitKey) {
        if self.watchers.is_empty() {
            return;
        }
        let Some(waiters) = self.watchers.remove(key) else {
            return;
        };
        for waiter in waiters {
            self.make_ready(waiter, Wake::Touched);
        }
    }

    /// Whether anyone waits on `key`.
    pub fn is_watched(&self, key: &WaitKey) -> bool {
        self.watchers.contains_key(key)
    }

    /// Hands `waiter`'s request its outcome ([`Wake::Resolved`]). A request already ready
    /// because a key was touched gets the resolution instead. Returns false if the waiter
    /// has no request here.
    pub fn resolve(&mut self, waiter: WaiterId, resolution: Resolution) -> bool {
        let Some(entry) = self.entries.get_mut(&waiter) else {
            return false;
        };
        if entry.wake.is_some() {
            entry.wake = Some(Wake::Resolved(resolution));
            return true;
        }
        self.make_ready(waiter, Wake::Resolved(resolution));
        true
    }

    /// Every request whose deadline is `now` or earlier becomes ready ([`Wake::Due`]).
    pub fn expire(&mut self, now: Time) {
        while let Some(&(deadline, waiter)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.make_ready(waiter, Wake::Due);
        }
    }

    /// The next ready request, oldest first, out of the purgatory.
    pub fn take_ready(&mut self) -> Option<Ready<W>> {
        while let Some(waiter) = self.ready.pop_front() {
            let Some(entry) = self.entries.remove(&waiter) else {
                continue;
            };
            self.bytes = self.bytes.saturating_sub(entry.wait.bytes);
            let wake = entry.wake.unwrap_or(Wake::Due);
            match &wake {
                Wake::Touched => self.stats.touched += 1,
                Wake::Due => self.stats.due += 1,
                Wake::Resolved(_) => self.stats.resolved += 1,
            }
            return Some(Ready {
                waiter,
                wake,
                wait: entry.wait,
            });
        }
        None
    }

    /// Whether a request is ready.
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Takes `waiter`'s request out unanswered, ready or not (its connection went away).
    pub fn remove(&mut self, waiter: WaiterId) -> Option<W> {
        let entry = self.entries.remove(&waiter)?;
        self.bytes = self.bytes.saturating_sub(entry.wait.bytes);
        if entry.wake.is_none() {
            self.unwatch(waiter, &entry.wait);
        }
        // A ready entry's id stays queued and is skipped by `take_ready`.
        self.stats.removed += 1;
        Some(entry.wait.request)
    }

    /// The earliest deadline of a waiting request.
    pub fn next_deadline(&self) -> Option<Time> {
        self.deadlines.first().map(|(deadline, _)| *deadline)
    }

    /// Requests here, waiting or ready.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of the requests here, as their parkers counted them.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// What the purgatory did so far.
    pub fn stats(&self) -> WaitStats {
        self.stats
    }

    fn make_ready(&mut self, waiter: WaiterId, wake: Wake) {
        let Some(entry) = self.entries.get_mut(&waiter) else {
            return;
        };
        if entry.wake.is_some() {
            return;
        }
        entry.wake = Some(wake);
        let Self {
            entries,
            watchers,
            deadlines,
            ready,
            ..
        } = self;
        if let Some(entry) = entries.get(&waiter) {
            unwatch(watchers, deadlines, waiter, &entry.wait);
        }
        ready.push_back(waiter);
    }

    fn unwatch(&mut self, waiter: WaiterId, wait: &Wait<W>) {
        unwatch(&mut self.watchers, &mut self.deadlines, waiter, wait);
    }
}

/// Takes `waiter` off the watch lists of `wait`'s keys and off the deadlines.
fn unwatch<W>(
    watchers: &mut HashMap<WaitKey, BTreeSet<WaiterId>>,
    deadlines: &mut BTreeSet<(Time, WaiterId)>,
    waiter: WaiterId,
    wait: &Wait<W>,
) {
    for key in &wait.keys {
        if let Some(set) = watchers.get_mut(key) {
            set.remove(&waiter);
            if set.is_empty() {
                watchers.remove(key);
            }
        }
    }
    deadlines.remove(&(wait.deadline, waiter));
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(ms: u64) -> Time {
        Time::from_start(Duration::from_millis(ms))
    }

    fn partition(p: i32) -> WaitKey {
        WaitKey::Partition(Uuid::from_u128(1), p)
    }

    fn wait(keys: Vec<WaitKey>, deadline_ms: u64, request: &'static str) -> Wait<&'static str> {
        Wait {
            keys,
            deadline: at(deadline_ms),
            bytes: 10,
            request,
        }
    }

    fn drain(p: &mut Purgatory<&'static str>) -> Vec<(u64, Wake, &'static str)> {
        std::iter::from_fn(|| p.take_ready())
            .map(|r| (r.waiter.0, r.wake, r.wait.request))
            .collect()
    }

    #[test]
    fn a_touched_key_completes_its_waiters_and_no_others() {
        let mut p = Purgatory::default();
        p.park(
            WaiterId(1),
            wait(vec![partition(0), partition(1)], 500, "a"),
        )
        .expect("parks");
        p.park(WaiterId(2), wait(vec![partition(2)], 500, "b"))
            .expect("parks");
        p.touch(&partition(3));
        assert!(!p.has_ready());
        p.touch(&partition(1));
        assert_eq!(drain(&mut p), vec![(1, Wake::Touched, "a")]);
        // Its other key no longer lists it; the other waiter still waits.
        assert!(!p.is_watched(&partition(0)));
        p.touch(&partition(0));
        assert!(drain(&mut p).is_empty());
        assert_eq!((p.len(), p.bytes()), (1, 10));
        assert_eq!(p.next_deadline(), Some(at(500)));
    }

    #[test]
    fn deadlines_complete_in_order_and_only_when_due() {
        let mut p = Purgatory::default();
        p.park(WaiterId(1), wait(vec![partition(0)], 300, "late"))
            .expect("parks");
        p.park(WaiterId(2), wait(vec![], 100, "early"))
            .expect("parks");
        assert_eq!(p.next_deadline(), Some(at(100)));
        p.expire(at(99));
        assert!(!p.has_ready());
        p.expire(at(100));
        assert_eq!(drain(&mut p), vec![(2, Wake::Due, "early")]);
        assert_eq!(p.next_deadline(), Some(at(300)));
        p.expire(at(1000));
        assert_eq!(drain(&mut p), vec![(1, Wake::Due, "late")]);
        assert_eq!(p.next_deadline(), None);
        assert!(p.is_empty());
        assert!(!p.is_watched(&partition(0)));
        let stats = p.stats();
        assert_eq!((stats.parked, stats.due, stats.touched), (2, 2, 0));
    }

    #[test]
    fn many_waiters_on_one_key_all_complete_once_in_id_order() {
        let mut p = Purgatory::default();
        for id in (0..1000).rev() {
            p.park(WaiterId(id), wait(vec![partition(0)], 500, "w"))
                .expect("parks");
        }
        p.touch(&partition(0));
        // A second touch and the deadline find nothing left to wake.
        p.touch(&partition(0));
        p.expire(at(10_000));
        let woken: Vec<u64> = drain(&mut p).into_iter().map(|(id, _, _)| id).collect();
        assert_eq!(woken, (0..1000).collect::<Vec<_>>());
        assert!(p.is_empty());
        assert_eq!(p.bytes(), 0);
    }

    #[test]
    fn a_waiter_parked_again_keeps_waiting_on_its_keys() {
        let mut p = Purgatory::default();
        p.park(WaiterId(1), wait(vec![partition(0)], 500, "fetch"))
            .expect("parks");
        p.touch(&partition(0));
        let ready = p.take_ready().expect("ready");
        assert_eq!(ready.wake, Wake::Touched);
        // Not enough yet: back on the same keys and deadline.
        p.park(ready.waiter, ready.wait).expect("parks again");
        assert!(p.is_watched(&partition(0)));
        p.touch(&partition(0));
        assert_eq!(drain(&mut p), vec![(1, Wake::Touched, "fetch")]);
    }

    #[test]
    fn a_removed_waiter_leaves_nothing_behind() {
        let mut p = Purgatory::default();
        p.park(
            WaiterId(1),
            wait(vec![partition(0), partition(1)], 500, "gone"),
        )
        .expect("parks");
        p.park(WaiterId(2), wait(vec![partition(0)], 600, "stays"))
            .expect("parks");
        assert_eq!(p.remove(WaiterId(1)), Some("gone"));
        assert!(!p.is_watched(&partition(1)));
        assert_eq!(p.next_deadline(), Some(at(600)));
        assert_eq!((p.len(), p.bytes()), (1, 10));
        // Removed after it became ready: its queued turn is skipped.
        p.touch(&partition(0));
        assert_eq!(p.remove(WaiterId(2)), Some("stays"));
        assert!(p.take_ready().is_none());
        assert!(p.is_empty());
        assert!(p.watchers.is_empty() && p.deadlines.is_empty());
        assert_eq!(p.stats().removed, 2);
    }

    #[test]
    fn the_purgatory_is_bounded_in_waiters_and_bytes() {
        let mut p = Purgatory::new(WaitLimits {
            waiters: 2,
            bytes: 25,
        });
        p.park(WaiterId(1), wait(vec![], 500, "1")).expect("parks");
        // One request per waiter.
        assert!(p.park(WaiterId(1), wait(vec![], 500, "again")).is_err());
        let mut big = wait(vec![], 500, "big");
        big.bytes = 16;
        let refused = p.park(WaiterId(2), big).expect_err("over the bytes");
        assert_eq!(refused.request, "big");
        p.park(WaiterId(2), wait(vec![], 500, "2")).expect("parks");
        assert!(p.park(WaiterId(3), wait(vec![], 500, "3")).is_err());
        assert_eq!(p.stats().refused, 3);
        p.expire(at(500));
        assert_eq!(drain(&mut p).len(), 2);
        p.park(WaiterId(3), wait(vec![], 900, "3"))
            .expect("room again");
    }

    #[test]
    fn a_resolution_is_handed_over_even_to_a_touched_waiter() {
        let mut p = Purgatory::default();
        let group = WaitKey::Group(Arc::from("g"));
        p.park(WaiterId(1), wait(vec![group.clone()], 500, "join 1"))
            .expect("parks");
        p.park(WaiterId(2), wait(vec![group.clone()], 500, "join 2"))
            .expect("parks");
        let done = Resolution::Error(ErrorCode::RebalanceInProgress);
        assert!(p.resolve(WaiterId(2), done.clone()));
        p.touch(&group);
        assert!(p.resolve(WaiterId(1), done.clone()));
        assert!(!p.resolve(WaiterId(9), done.clone()));
        assert_eq!(
            drain(&mut p),
            vec![
                (2, Wake::Resolved(done.clone()), "join 2"),
                (1, Wake::Resolved(done), "join 1"),
            ]
        );
    }
}
