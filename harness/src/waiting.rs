//! The server's side of requests that wait, and of time.
//!
//! - [`Core`]: the cluster state together with the answers owed to connections whose request
//!   waits in the state's purgatory (one mailbox per waiting connection), under one lock.
//!   Whoever changes the state under that lock calls [`Core::settle`] before letting go: the
//!   waiting requests the change made ready are looked at again, and those that answer are
//!   delivered to their connections.
//! - [`Clock`]: cluster time read from tokio's clock, so that under a paused test clock the
//!   cluster's deadlines move only when the test's time does.
//! - [`run_timer`]: one task per cluster that sleeps until the state's next deadline
//!   ([`ClusterState::poll_timeout`]), then drives it ([`ClusterState::handle_timeout`]) and
//!   settles. A change that brings a deadline forward wakes it.
//!
//! Connections wait for their answer on a oneshot channel; a connection that goes away
//! while its request waits takes the request out of the purgatory ([`WaitGuard`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::cluster::{ClusterState, RequestContext, Time, WaiterId};
use crate::handlers::{self, Park, Reply};
use crate::Shared;

/// Cluster time, read from tokio's clock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    started: tokio::time::Instant,
    started_wall_ms: i64,
}

impl Clock {
    /// A clock whose time zero is now, at wall-clock milliseconds `wall_ms` (the system
    /// clock when `None`; runs that must repeat byte for byte fix it).
    pub(crate) fn start(wall_ms: Option<i64>) -> Self {
        Self {
            started: tokio::time::Instant::now(),
            started_wall_ms: wall_ms.unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                    .unwrap_or(0)
            }),
        }
    }

    /// The cluster time now.
    pub(crate) fn now(&self) -> Time {
        Time::from_start(self.started.elapsed())
    }

    /// Wall-clock milliseconds at `time`: the wall clock at start, advanced by tokio time, so
    /// that under a paused clock timestamps move only when the test advances time.
    pub(crate) fn wall_ms(&self, time: Time) -> i64 {
        let elapsed = i64::try_from(time.since_start().as_millis()).unwrap_or(i64::MAX);
        self.started_wall_ms.saturating_add(elapsed)
    }

    /// How long the cluster has run.
    pub(crate) fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The tokio instant of cluster time `time`.
    fn instant(&self, time: Time) -> tokio::time::Instant {
        self.started
            .checked_add(time.since_start())
            .unwrap_or_else(|| self.started + Duration::from_secs(86_400 * 365 * 30))
    }
}

/// The cluster state and what the server keeps beside it under the same lock.
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) state: ClusterState,
    /// Where to deliver the answer of each waiting request, by waiter (connection).
    mailboxes: HashMap<WaiterId, oneshot::Sender<Reply>>,
    /// What the timer task sleeps until (`None`: until woken).
    timer_target: Option<Time>,
}

/// What became of a request whose handler wanted to wait.
// The answer is moved once, straight on: boxing it would buy nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Parking {
    /// It waits; its answer comes on this channel.
    Waiting(oneshot::Receiver<Reply>),
    /// It was answered at once (the purgatory was full).
    Answered(Reply),
}

impl Core {
    pub(crate) fn new(state: ClusterState) -> Self {
        Self {
            state,
            mailboxes: HashMap::new(),
            timer_target: None,
        }
    }

    /// Parks a request as its handler asked (see [`handlers::park`]), with a mailbox for
    /// its answer.
    pub(crate) fn park(&mut self, context: RequestContext, park: Park, bytes: usize) -> Parking {
        let waiter = context.waiter;
        match handlers::park(&mut self.state, context, park, bytes) {
            Some(reply) => Parking::Answered(reply),
            None => {
                let (sender, receiver) = oneshot::channel();
                self.mailboxes.insert(waiter, sender);
                Parking::Waiting(receiver)
            }
        }
    }

    /// Looks again at the waiting requests that became ready, and delivers the answers.
    /// Returns whether the timer task must be woken: the state now has a deadline earlier
    /// than the one it sleeps until.
    pub(crate) fn settle(&mut self) -> bool {
        for (waiter, reply) in handlers::complete_ready(&mut self.state) {
            // A waiter whose connection went away has no mailbox any more.
            if let Some(mailbox) = self.mailboxes.remove(&waiter) {
                let _ = mailbox.send(reply);
            }
        }
        match (self.state.poll_timeout(), self.timer_target) {
            (Some(next), Some(target)) => next < target,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    /// Forgets `waiter`'s request, waiting or answered but not yet received.
    fn cancel(&mut self, waiter: WaiterId) {
        self.state.unpark(waiter);
        self.mailboxes.remove(&waiter);
    }
}

/// While a connection waits for its parked request's answer: if the connection goes away
/// (its task dropped: broker stopped, cluster shut down), the request leaves the purgatory.
pub(crate) struct WaitGuard<'a> {
    shared: &'a Shared,
    waiter: WaiterId,
    armed: bool,
}

impl<'a> WaitGuard<'a> {
    pub(crate) fn new(shared: &'a Shared, waiter: WaiterId) -> Self {
        Self {
            shared,
            waiter,
            armed: true,
        }
    }

    /// The answer arrived: nothing to take out.
    pub(crate) fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.shared.lock_core().cancel(self.waiter);
        }
    }
}

/// Drives the cluster's deadlines until `cancel` fires: sleeps until the state's next one,
/// hands it the time, and delivers what that answered.
pub(crate) async fn run_timer(shared: Arc<Shared>, cancel: CancellationToken) {
    loop {
        let target = {
            let mut core = shared.lock_core();
            let target = core.state.poll_timeout();
            core.timer_target = target;
            target
        };
        let due = async {
            match target {
                Some(time) => tokio::time::sleep_until(shared.clock.instant(time)).await,
                None => std::future::pending().await,
            }
        };
        // Biased: a random branch order (tokio's default) would make runs differ.
        tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            () = shared.timer.notified() => continue,
            () = due => {}
        }
        let now = shared.clock.now();
        let mut core = shared.lock_core();
        core.state.handle_timeout(now);
        core.settle();
    }
}
