//! The delivery slab: how the outcome of each `send` gets from the sender task back to the
//! [`DeliveryFuture`] the caller awaits.
//!
//! ```text
//! send() ── Tickets::ticket ──▶ (DeliveryTicket ─ with the record ─▶ accumulator,
//!                                DeliveryFuture ─▶ caller)
//! sender task: completed batch ── resolve_all ──▶ slot of a DeliveryChunk ──▶ future woken
//! ```
//!
//! A [`DeliveryChunk`] holds the result slots of [`CHUNK_SLOTS`] consecutive sends: one
//! allocation and one reference count for many records, and one lock per run of a batch's
//! records when they resolve, where a oneshot channel per record cost an allocation and a
//! wake-up each (DESIGN.md, "`Producer::send` appends to the accumulator itself").
//!
//! Below the producer and the drivers, above the engines: it knows [`RecordMetadata`] and
//! [`ProduceError`], and nothing of how records are batched or sent.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use crate::error::{Error, Persisted, ProduceError};
use crate::record::{ProducerRecord, RecordMetadata};

/// How a delivery is reported back from the sender task.
pub(crate) type DeliveryResult = Result<RecordMetadata, ProduceError>;

/// A [`DeliveryResult`] as the sender hands it over and a chunk keeps it: the (large, rare)
/// error boxed, so that the common outcome moves as a small value.
pub(crate) type Outcome = Result<RecordMetadata, Box<ProduceError>>;

/// Resolves when the record has been acknowledged or has failed for good.
#[must_use = "a DeliveryFuture tells whether the record was written"]
pub struct DeliveryFuture {
    chunk: Arc<DeliveryChunk>,
    index: usize,
}

impl std::fmt::Debug for DeliveryFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryFuture")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl Future for DeliveryFuture {
    type Output = DeliveryResult;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.chunk.poll_slot(self.index, cx.waker())
    }
}

/// Records whose outcomes share one [`DeliveryChunk`].
pub(crate) const CHUNK_SLOTS: usize = 64;

/// The outcomes of up to [`CHUNK_SLOTS`] consecutive sends, each waiting for its
/// [`DeliveryFuture`]: one allocation and one reference count for many records, where a
/// channel per record would cost an allocation each. The sender task writes a slot through
/// the record's [`DeliveryTicket`]; the future takes it out.
pub(crate) struct DeliveryChunk {
    slots: Mutex<Vec<Slot>>,
}

impl std::fmt::Debug for DeliveryChunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryChunk").finish_non_exhaustive()
    }
}

enum Slot {
    /// No outcome yet; the waker of a future that asked.
    Pending(Option<Waker>),
    /// The outcome, not yet taken by the future.
    Done(Outcome),
    /// The future has returned the outcome.
    Taken,
}

impl DeliveryChunk {
    pub(crate) fn new() -> Arc<Self> {
        let slots = std::iter::repeat_with(|| Slot::Pending(None))
            .take(CHUNK_SLOTS)
            .collect();
        Arc::new(Self {
            slots: Mutex::new(slots),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the outcome of slot `index` (once: later writes are ignored) and wakes its
    /// future.
    fn complete(&self, index: usize, result: Outcome) {
        let waker = fill(&mut self.lock(), index, result);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn poll_slot(&self, index: usize, waker: &Waker) -> Poll<DeliveryResult> {
        let mut slots = self.lock();
        let Some(slot) = slots.get_mut(index) else {
            return Poll::Ready(Err(polled_again()));
        };
        match slot {
            Slot::Pending(Some(known)) if known.will_wake(waker) => Poll::Pending,
            Slot::Pending(stored) => {
                *stored = Some(waker.clone());
                Poll::Pending
            }
            Slot::Done(_) => match std::mem::replace(slot, Slot::Taken) {
                Slot::Done(result) => Poll::Ready(result.map_err(|error| *error)),
                _ => Poll::Ready(Err(polled_again())),
            },
            Slot::Taken => Poll::Ready(Err(polled_again())),
        }
    }
}

/// Writes slot `index` if it has no outcome yet; returns the waker to wake.
fn fill(slots: &mut [Slot], index: usize, result: Outcome) -> Option<Waker> {
    let slot = slots.get_mut(index)?;
    match slot {
        Slot::Pending(waker) => {
            let waker = waker.take();
            *slot = Slot::Done(result);
            waker
        }
        Slot::Done(_) | Slot::Taken => None,
    }
}

/// Resolves each ticket's future with its result. The outcomes of consecutive tickets of
/// one chunk (a batch's records mostly are) are written under one lock, and their futures
/// woken once it is released.
pub(crate) fn resolve_all(items: impl Iterator<Item = (DeliveryTicket, Outcome)>) {
    let mut items = items.peekable();
    let mut wakers = Vec::new();
    while let Some((mut ticket, result)) = items.next() {
        let Some(chunk) = ticket.chunk.take() else {
            continue;
        };
        {
            let mut slots = chunk.lock();
            wakers.extend(fill(&mut slots, ticket.index, result));
            while items.peek().is_some_and(|(next, _)| {
                next.chunk.as_ref().is_some_and(|c| Arc::ptr_eq(c, &chunk))
            }) {
                let Some((mut next, result)) = items.next() else {
                    break;
                };
                next.chunk = None;
                wakers.extend(fill(&mut slots, next.index, result));
            }
        }
        for waker in wakers.drain(..) {
            waker.wake();
        }
    }
}

/// What a future polled after it completed returns (futures need not support that; this
/// one answers rather than panics).
fn polled_again() -> ProduceError {
    ProduceError::new(
        Error::Closed,
        Persisted::Possibly,
        ProducerRecord::default(),
    )
}

/// The sender task's end of one record's [`DeliveryFuture`]: the accumulator carries it
/// with the record and hands it back with the outcome.
pub(crate) struct DeliveryTicket {
    chunk: Option<Arc<DeliveryChunk>>,
    index: usize,
}

impl std::fmt::Debug for DeliveryTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryTicket")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl DeliveryTicket {
    /// A ticket for slot `index` of `chunk` and the future that waits on it.
    pub(crate) fn new(chunk: &Arc<DeliveryChunk>, index: usize) -> (Self, DeliveryFuture) {
        let ticket = Self {
            chunk: Some(chunk.clone()),
            index,
        };
        let future = DeliveryFuture {
            chunk: chunk.clone(),
            index,
        };
        (ticket, future)
    }

    /// Resolves the record's future (the sender resolves through a [`DeliveryBatcher`]).
    #[cfg(test)]
    pub(crate) fn complete(mut self, result: Outcome) {
        if let Some(chunk) = self.chunk.take() {
            chunk.complete(self.index, result);
        }
    }
}

impl Drop for DeliveryTicket {
    fn drop(&mut self) {
        // The sender answers every record it accepted, also on close; only a panic in it
        // drops a ticket unanswered, and then the record is gone with it.
        if let Some(chunk) = self.chunk.take() {
            chunk.complete(
                self.index,
                Err(Box::new(ProduceError::new(
                    Error::Closed,
                    Persisted::Possibly,
                    ProducerRecord::default(),
                ))),
            );
        }
    }
}

/// Hands out a ticket and its future per record, filling one [`DeliveryChunk`] before
/// starting the next.
#[derive(Debug)]
pub(crate) struct Tickets {
    chunk: Arc<DeliveryChunk>,
    next_slot: usize,
}

impl Tickets {
    pub(crate) fn new() -> Self {
        Self {
            chunk: DeliveryChunk::new(),
            next_slot: 0,
        }
    }

    /// The next record's ticket and future, in the current chunk or a new one.
    pub(crate) fn ticket(&mut self) -> (DeliveryTicket, DeliveryFuture) {
        if self.next_slot == CHUNK_SLOTS {
            self.chunk = DeliveryChunk::new();
            self.next_slot = 0;
        }
        let index = self.next_slot;
        self.next_slot += 1;
        DeliveryTicket::new(&self.chunk, index)
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Context;

    use super::*;

    fn noop_waker() -> Waker {
        struct Noop;
        impl std::task::Wake for Noop {
            fn wake(self: Arc<Self>) {}
        }
        Waker::from(Arc::new(Noop))
    }

    /// Counts its wake-ups.
    struct CountingWaker(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn metadata(partition: i32, offset: i64) -> Outcome {
        Ok(RecordMetadata {
            topic: "t".into(),
            partition,
            offset,
            timestamp: 5,
        })
    }

    #[test]
    fn chunk_slots_resolve_their_own_futures_in_any_order() {
        let chunk = DeliveryChunk::new();
        let (first_ticket, mut first) = DeliveryTicket::new(&chunk, 0);
        let (second_ticket, mut second) = DeliveryTicket::new(&chunk, 1);
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut first).poll(&mut cx).is_pending());
        second_ticket.complete(metadata(1, 7));
        assert_eq!(
            counter.0.load(Ordering::SeqCst),
            0,
            "only a slot's own waker wakes"
        );
        first_ticket.complete(metadata(0, 3));
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        match Pin::new(&mut first).poll(&mut cx) {
            Poll::Ready(Ok(m)) => assert_eq!((m.partition, m.offset), (0, 3)),
            other => panic!("expected the first record's metadata, got {other:?}"),
        }
        let noop = noop_waker();
        let mut cx = Context::from_waker(&noop);
        match Pin::new(&mut second).poll(&mut cx) {
            Poll::Ready(Ok(m)) => assert_eq!((m.partition, m.offset), (1, 7)),
            other => panic!("expected the second record's metadata, got {other:?}"),
        }
        // Polled again after it completed: an error, not a panic or a hang.
        assert!(matches!(
            Pin::new(&mut second).poll(&mut cx),
            Poll::Ready(Err(_))
        ));
    }

    #[test]
    fn runs_of_a_chunk_resolve_together_and_every_chunk_is_resolved() {
        let chunks = [DeliveryChunk::new(), DeliveryChunk::new()];
        let mut tickets = Vec::new();
        let mut futures = Vec::new();
        for (c, i) in [(0, 0), (0, 1), (1, 0), (0, 2)] {
            let (ticket, future) = DeliveryTicket::new(&chunks[c], i);
            tickets.push(ticket);
            futures.push(future);
        }
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        for future in &mut futures {
            assert!(Pin::new(future).poll(&mut cx).is_pending());
        }
        resolve_all(
            tickets
                .into_iter()
                .enumerate()
                .map(|(n, ticket)| (ticket, metadata(0, n as i64))),
        );
        assert_eq!(counter.0.load(Ordering::SeqCst), 4);
        for (n, future) in futures.iter_mut().enumerate() {
            match Pin::new(future).poll(&mut cx) {
                Poll::Ready(Ok(m)) => assert_eq!(m.offset, n as i64),
                other => panic!("record {n}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_ticket_dropped_unanswered_fails_its_future_as_possibly_persisted() {
        let chunk = DeliveryChunk::new();
        let (ticket, mut future) = DeliveryTicket::new(&chunk, CHUNK_SLOTS - 1);
        drop(ticket);
        let noop = noop_waker();
        let mut cx = Context::from_waker(&noop);
        match Pin::new(&mut future).poll(&mut cx) {
            Poll::Ready(Err(error)) => {
                assert!(matches!(error.error, Error::Closed));
                assert_eq!(error.persisted, Persisted::Possibly);
            }
            other => panic!("expected Closed, got {other:?}"),
        }
        // A ticket answered normally is not answered again when dropped.
        let (ticket, mut future) = DeliveryTicket::new(&chunk, 0);
        ticket.complete(metadata(2, 9));
        assert!(matches!(
            Pin::new(&mut future).poll(&mut cx),
            Poll::Ready(Ok(_))
        ));
    }

    #[test]
    fn tickets_fill_a_chunk_before_starting_the_next() {
        let mut tickets = Tickets::new();
        let issued: Vec<_> = (0..CHUNK_SLOTS + 1).map(|_| tickets.ticket()).collect();
        let first = &issued[0].0;
        let last_of_first = &issued[CHUNK_SLOTS - 1].0;
        let next = &issued[CHUNK_SLOTS].0;
        let same = |a: &DeliveryTicket, b: &DeliveryTicket| match (&a.chunk, &b.chunk) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        assert!(same(first, last_of_first));
        assert!(!same(first, next));
        assert_eq!(next.index, 0);
    }
}
