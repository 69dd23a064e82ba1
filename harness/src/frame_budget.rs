//! The bytes of request frames being received, across every connection of a cluster:
//! Kafka's `queued.max.request.bytes`. A connection that would go over it stops reading until
//! others give bytes back, so that many large frames arriving at once cannot take all the
//! memory there is.
//!
//! Bytes are counted as they are received, never from the length a frame announces, and
//! given back when the request they belong to has been handled. Each connection may hold a
//! small allowance without drawing on the budget (see `server.rs`), so small requests are
//! never stuck behind large ones.
//!
//! Frames that wait for each other could wait forever: with the budget held by partial
//! frames whose connections all wait for more, nobody would give anything back. So when
//! every connection that holds part of the budget is waiting for more, one of them is let
//! past the limit to finish its frame (the *overdraft*; one at a time). A frame larger than
//! the whole budget gets through the same way once it is alone. Connections that hold part
//! of the budget but are waiting on their peer are not waiting on the budget: they give
//! their share back when their frame completes or when the idle timeout closes them.
//!
//! Memory is therefore bounded by the budget, plus one frame finishing in overdraft, plus
//! the allowance of each connection.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// The budget of one cluster, shared by its connections.
#[derive(Debug)]
pub(crate) struct FrameBudget {
    limit: usize,
    state: Mutex<State>,
    /// Woken whenever bytes are given back or the overdraft ends.
    freed: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// Bytes held by all shares.
    used: usize,
    /// Shares holding any bytes.
    holders: usize,
    /// Of those, how many are waiting for more.
    waiting_holders: usize,
    /// The share let past the limit to finish its frame.
    overdraft: Option<u64>,
    next_id: u64,
}

impl FrameBudget {
    /// A budget of `limit` bytes.
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            state: Mutex::new(State::default()),
            freed: Notify::new(),
        }
    }

    /// A connection's share, holding nothing yet.
    pub(crate) fn share(self: &Arc<Self>) -> Share {
        let mut state = self.lock();
        let id = state.next_id;
        state.next_id = state.next_id.wrapping_add(1);
        Share {
            budget: self.clone(),
            id,
            held: 0,
            overdraft: false,
        }
    }

    /// Bytes held by all connections.
    #[cfg(test)]
    pub(crate) fn used(&self) -> usize {
        self.lock().used
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One connection's part of the budget; dropping it gives everything back.
#[derive(Debug)]
pub(crate) struct Share {
    budget: Arc<FrameBudget>,
    id: u64,
    held: usize,
    overdraft: bool,
}

impl Share {
    /// Bytes this share holds.
    pub(crate) fn held(&self) -> usize {
        self.held
    }

    /// Grows the share towards `target` bytes, waiting while the budget has no room, and
    /// returns what it holds then: more than before, at most `target` (all of it in
    /// overdraft). Returns at once when it holds `target` already.
    pub(crate) async fn grow_to(&mut self, target: usize) -> usize {
        loop {
            if self.held >= target {
                return self.held;
            }
            let budget = self.budget.clone();
            let freed = budget.freed.notified();
            tokio::pin!(freed);
            // Registered before looking, so a release between the look and the wait counts.
            freed.as_mut().enable();
            let _waiting = {
                let mut state = budget.lock();
                let want = target - self.held;
                let free = budget.limit.saturating_sub(state.used);
                if self.overdraft {
                    self.grant(&mut state, want);
                    return self.held;
                }
                if free > 0 {
                    self.grant(&mut state, want.min(free));
                    return self.held;
                }
                if self.held > 0
                    && state.overdraft.is_none()
                    && state.waiting_holders + 1 >= state.holders
                {
                    // Every other holder waits for the budget too: nobody would give bytes
                    // back. This frame finishes past the limit.
                    state.overdraft = Some(self.id);
                    self.overdraft = true;
                    tracing::debug!(
                        held = self.held,
                        "frame budget: overdraft to finish a frame"
                    );
                    self.grant(&mut state, want);
                    return self.held;
                }
                (self.held > 0).then(|| {
                    state.waiting_holders += 1;
                    Waiting(&budget)
                })
            };
            freed.await;
        }
    }

    /// Gives back what this share holds beyond `target` bytes.
    pub(crate) fn shrink_to(&mut self, target: usize) {
        if target >= self.held {
            return;
        }
        let mut state = self.budget.lock();
        state.used = state.used.saturating_sub(self.held - target);
        self.held = target;
        if target == 0 {
            state.holders = state.holders.saturating_sub(1);
        }
        drop(state);
        self.budget.freed.notify_waiters();
    }

    /// The frame this share was let past the limit for is complete: the overdraft goes.
    pub(crate) fn end_overdraft(&mut self) {
        if !self.overdraft {
            return;
        }
        self.overdraft = false;
        let mut state = self.budget.lock();
        if state.overdraft == Some(self.id) {
            state.overdraft = None;
        }
        drop(state);
        self.budget.freed.notify_waiters();
    }

    fn grant(&mut self, state: &mut State, bytes: usize) {
        if bytes == 0 {
            return;
        }
        if self.held == 0 {
            state.holders += 1;
        }
        state.used = state.used.saturating_add(bytes);
        self.held += bytes;
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        self.shrink_to(0);
        self.end_overdraft();
    }
}

/// A holder counted as waiting for the budget until dropped.
struct Waiting<'a>(&'a FrameBudget);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.waiting_holders = state.waiting_holders.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Whether `f` completes without waiting (a few scheduler turns).
    async fn ready<F: std::future::Future>(f: F) -> Option<F::Output> {
        tokio::time::timeout(Duration::from_millis(50), f)
            .await
            .ok()
    }

    #[tokio::test(start_paused = true)]
    async fn shares_wait_for_room_and_get_it_back_when_others_shrink() {
        let budget = Arc::new(FrameBudget::new(100));
        let mut a = budget.share();
        let mut b = budget.share();
        assert_eq!(ready(a.grow_to(70)).await, Some(70));
        assert_eq!(ready(b.grow_to(50)).await, Some(30), "what is left");
        assert_eq!(budget.used(), 100);
        // `a` is not waiting on the budget (its peer is slow, say): `b` waits.
        let mut c = budget.share();
        assert_eq!(
            ready(c.grow_to(10)).await,
            None,
            "nothing left, no partial frame"
        );
        let waiter = tokio::spawn(async move {
            let got = b.grow_to(50).await;
            (b, got)
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        a.shrink_to(0);
        let (b, got) = waiter.await.expect("joins");
        assert_eq!((got, b.held()), (50, 50));
        drop((a, b, c));
        assert_eq!(budget.used(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn when_every_holder_waits_one_finishes_its_frame_past_the_limit() {
        let budget = Arc::new(FrameBudget::new(100));
        let mut a = budget.share();
        let mut b = budget.share();
        assert_eq!(ready(a.grow_to(50)).await, Some(50));
        assert_eq!(ready(b.grow_to(50)).await, Some(50));
        let first = tokio::spawn(async move {
            let got = a.grow_to(80).await;
            (a, got)
        });
        tokio::task::yield_now().await;
        assert!(!first.is_finished(), "b could still give bytes back");
        // b wants more too: now every holder waits, and b goes past the limit.
        assert_eq!(ready(b.grow_to(90)).await, Some(90));
        assert_eq!(budget.used(), 140);
        // Only one overdraft at a time: a waits until b's frame is done.
        tokio::task::yield_now().await;
        assert!(!first.is_finished());
        b.end_overdraft();
        b.shrink_to(0);
        let (a, got) = first.await.expect("joins");
        assert_eq!((got, a.held()), (80, 80));
    }

    #[tokio::test(start_paused = true)]
    async fn a_frame_larger_than_the_budget_gets_through_alone() {
        let budget = Arc::new(FrameBudget::new(100));
        let mut a = budget.share();
        assert_eq!(ready(a.grow_to(100)).await, Some(100));
        assert_eq!(ready(a.grow_to(250)).await, Some(250));
        a.end_overdraft();
        a.shrink_to(0);
        assert_eq!(ready(a.grow_to(150)).await, Some(100), "no overdraft left");
    }
}
