//! The consumer's driver: a tokio task around the sans-IO [`Fetcher`], in the call order its
//! module documents. It sends the Fetch, ListOffsets and Metadata requests the fetcher asks
//! for (the fetcher decides which, when, and how refreshes back off), feeds their answers
//! back, decodes fetched batches ahead outside the lock, and sleeps until the fetcher's next
//! deadline, an answer, or a wake-up from the consumer (assignment, seek, pause, space freed,
//! close).
//!
//! ```text
//! Consumer::recv ──lock──> Fetcher::poll_event            (records out)
//!        │ notify                 ^
//!        v                        │ handle_* (answers in)
//! driver task ──> poll_fetches / poll_list_offsets ──> ClusterClient::request_broker
//!             └─> poll_metadata_refresh ─────────────> ClusterClient::refresh_metadata
//!                                                      (one task per request)
//! ```
//!
//! The fetcher and the wakers of the tasks waiting in `recv` sit behind one mutex, held only
//! for engine calls, never across an await. Each request runs as its own task, so one
//! broker's long poll never holds back another's fetch; the fetcher keeps at most one Fetch
//! and one ListOffsets in flight per broker.

use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, warn, Instrument};

use super::broker::{RequestError, Response};
use super::cluster::ClusterClient;
use crate::engine::fetcher::{decode_ahead, FetchPlan, Fetcher, ListOffsetsPlan};
use crate::error::Error;
use crate::proto::{ApiKey, RequestKind, ResponseKind};

/// What the consumer handle and its drivers share.
pub(crate) struct Shared {
    state: Mutex<State>,
    /// Wakes the driver: the assignment changed, buffer space was freed, or the consumer
    /// is closing.
    driver_wake: Notify,
    /// Wakes the group's driver (`io/group_loop.rs`), when there is one.
    pub(crate) group_wake: Notify,
    pub(crate) cluster: Arc<ClusterClient>,
    /// The group's parts that live outside the state lock: the rebalance callback being
    /// run by `recv`, the listener, and the waiters of commits and lookups.
    pub(crate) group: crate::consumer::group::GroupShared,
}

/// The part behind the mutex.
pub(crate) struct State {
    /// The engine.
    pub(crate) fetcher: Fetcher,
    /// The tasks waiting in `recv` (several may: `recv` takes `&self`), all woken whenever
    /// an answer was applied.
    wakers: Wakers,
    /// Set by `close` or drop; the driver stops, `recv` returns `None`.
    pub(crate) closed: bool,
    /// The consumer group member, with a `group.id`.
    pub(crate) group: Option<crate::engine::group::GroupEngine>,
}

impl Shared {
    pub(crate) fn new(
        fetcher: Fetcher,
        group: Option<crate::engine::group::GroupEngine>,
        group_shared: crate::consumer::group::GroupShared,
        cluster: Arc<ClusterClient>,
    ) -> Self {
        Self {
            state: Mutex::new(State {
                fetcher,
                wakers: Wakers::default(),
                closed: false,
                group,
            }),
            driver_wake: Notify::new(),
            group_wake: Notify::new(),
            cluster,
            group: group_shared,
        }
    }

    /// Locks the state. Never hold the guard across an await.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tells the driver to look at the fetcher again.
    pub(crate) fn wake_driver(&self) {
        self.driver_wake.notify_one();
    }

    /// Stops the drivers and ends the waiting `recv`s.
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        wake_user(state);
        self.wake_driver();
        self.group_wake.notify_one();
    }
}

enum Completion {
    Fetch {
        id: u64,
        result: Result<Option<Response>, RequestError>,
    },
    ListOffsets {
        id: u64,
        result: Result<Option<Response>, RequestError>,
    },
    Metadata {
        sent_at: Instant,
        result: Result<(), Error>,
    },
}

/// Runs until the consumer is closed or dropped: a loop over the fetcher's call order (see
/// [`Fetcher`]), doing the IO it asks for and nothing else.
pub(crate) async fn run(shared: Arc<Shared>) {
    let bootstrap = shared.cluster.config().bootstrap_servers.join(",");
    let mut tasks: JoinSet<Completion> = JoinSet::new();
    loop {
        let now = Instant::now();
        let (fetches, lookups, refresh, deadline) = {
            let mut state = shared.lock();
            if state.closed {
                break;
            }
            let mut metadata = shared.cluster.metadata();
            let lookups = state.fetcher.poll_list_offsets(now.into_std(), &metadata);
            let fetches = state.fetcher.poll_fetches(now.into_std(), &metadata);
            let refresh = state
                .fetcher
                .poll_metadata_refresh(now.into_std(), &mut metadata);
            let deadline = state
                .fetcher
                .poll_timeout(now.into_std(), &metadata)
                .map(Instant::from_std);
            (fetches, lookups, refresh, deadline)
        };
        for plan in lookups {
            spawn_list_offsets(&mut tasks, &shared.cluster, plan);
        }
        for plan in fetches {
            spawn_fetch(&mut tasks, &shared.cluster, plan);
        }
        if refresh {
            let cluster = shared.cluster.clone();
            tasks.spawn(async move {
                let result = cluster.refresh_metadata().await;
                Completion::Metadata {
                    sent_at: now,
                    result,
                }
            });
        }
        tokio::select! {
            // Biased: a random branch order would make runs with the same seed differ.
            biased;
            done = tasks.join_next(), if !tasks.is_empty() => {
                let Some(Ok(done)) = done else { continue };
                let now = Instant::now();
                match done {
                    Completion::Metadata { sent_at, result } => {
                        let mut state = shared.lock();
                        let metadata = shared.cluster.metadata();
                        match result {
                            Ok(()) => {
                                state.fetcher.handle_metadata_response(now.into_std(), &metadata);
                            }
                            Err(error) => {
                                let wait = state.fetcher.handle_metadata_failure(
                                    &error,
                                    sent_at.into_std(),
                                    now.into_std(),
                                    &metadata,
                                );
                                warn!(
                                    %bootstrap,
                                    %error,
                                    retry_in = ?wait,
                                    "metadata refresh failed: no broker answered"
                                );
                            }
                        }
                        drop(metadata);
                        wake_user(state);
                    }
                    Completion::Fetch { id, result } => {
                        let mut state = shared.lock();
                        match into_body(result, ApiKey::Fetch) {
                            Ok((version, ResponseKind::Fetch(body))) => {
                                state.fetcher.handle_fetch_response(id, version, body, now.into_std());
                            }
                            Ok(_) => {
                                let error = unexpected_body(ApiKey::Fetch);
                                state.fetcher.handle_fetch_failure(id, &error, now.into_std());
                            }
                            Err(error) => state.fetcher.handle_fetch_failure(id, &error, now.into_std()),
                        }
                        let undecoded = state.fetcher.take_undecoded();
                        let limits = state.fetcher.decode_limits();
                        wake_user(state);
                        // Decoded here, outside the lock, while the user reads what came
                        // before: the user's thread then only hands records out. One batch
                        // at a time, each handed back at once, and only while `recv` has not
                        // reached it: decoding a whole response before handing any of it back
                        // let `recv` decode the batches it got to first a second time (40% of
                        // the batches of a 120,000-record read under callgrind).
                        let mut decoded = Vec::new();
                        let mut undecoded = undecoded.into_iter();
                        loop {
                            let next = {
                                let mut state = shared.lock();
                                if !decoded.is_empty() {
                                    state.fetcher.handle_decoded(std::mem::take(&mut decoded));
                                }
                                undecoded
                                    .by_ref()
                                    .find(|(tp, bytes)| state.fetcher.is_undecoded(tp, bytes))
                            };
                            let Some(batch) = next else {
                                break;
                            };
                            decoded = decode_ahead(vec![batch], &limits);
                        }
                    }
                    Completion::ListOffsets { id, result } => {
                        let mut state = shared.lock();
                        match into_body(result, ApiKey::ListOffsets) {
                            Ok((_, ResponseKind::ListOffsets(body))) => {
                                state.fetcher.handle_list_offsets_response(id, &body, now.into_std());
                            }
                            Ok(_) => {
                                let error = unexpected_body(ApiKey::ListOffsets);
                                state.fetcher.handle_list_offsets_failure(id, &error, now.into_std());
                            }
                            Err(error) => {
                                state.fetcher.handle_list_offsets_failure(id, &error, now.into_std());
                            }
                        }
                        wake_user(state);
                    }
                }
            }
            () = shared.driver_wake.notified() => {}
            () = sleep_until_opt(deadline) => {}
        }
    }
    tasks.abort_all();
    debug!("consumer driver stopped");
}

impl State {
    /// Wakes `waker` when there is something to receive (unless it is registered already).
    pub(crate) fn register(&mut self, waker: &Waker) {
        let wakers = &mut self.wakers;
        match &wakers.first {
            None => wakers.first = Some(waker.clone()),
            Some(first) if first.will_wake(waker) => {}
            Some(_) => {
                if !wakers.more.iter().any(|known| known.will_wake(waker)) {
                    wakers.more.push(waker.clone());
                }
            }
        }
    }
}

/// The tasks waiting in `recv`: nearly always one, kept without an allocation.
#[derive(Default)]
struct Wakers {
    first: Option<Waker>,
    more: Vec<Waker>,
}

/// Releases the lock, then wakes every task waiting in `recv`.
pub(crate) fn wake_user(mut state: MutexGuard<'_, State>) {
    let first = state.wakers.first.take();
    let more = if state.wakers.more.is_empty() {
        Vec::new()
    } else {
        std::mem::take(&mut state.wakers.more)
    };
    drop(state);
    if let Some(waker) = first {
        waker.wake();
    }
    for waker in more {
        waker.wake();
    }
}

fn into_body(
    result: Result<Option<Response>, RequestError>,
    api: ApiKey,
) -> Result<(i16, ResponseKind), Error> {
    match result {
        Ok(Some(response)) => Ok((response.version, *response.body)),
        Ok(None) => Err(Error::Protocol {
            peer: "broker".into(),
            reason: format!("no response to {api:?}"),
        }),
        Err(RequestError { error, .. }) => Err(error),
    }
}

fn unexpected_body(api: ApiKey) -> Error {
    Error::Protocol {
        peer: "broker".into(),
        reason: format!("{api:?} answered with another API"),
    }
}

fn spawn_fetch(tasks: &mut JoinSet<Completion>, cluster: &Arc<ClusterClient>, plan: FetchPlan) {
    let cluster = cluster.clone();
    let id = plan.id();
    let broker = plan.broker();
    let span = tracing::debug_span!("fetch", broker, id);
    tasks.spawn(
        async move {
            let build =
                Box::new(move |version: i16| Ok(RequestKind::Fetch(plan.request(version)?)));
            let result = cluster
                .request_broker(broker, ApiKey::Fetch, build, true)
                .await;
            Completion::Fetch { id, result }
        }
        .instrument(span),
    );
}

fn spawn_list_offsets(
    tasks: &mut JoinSet<Completion>,
    cluster: &Arc<ClusterClient>,
    plan: ListOffsetsPlan,
) {
    let cluster = cluster.clone();
    let id = plan.id();
    let broker = plan.broker();
    let span = tracing::debug_span!("list_offsets", broker, id);
    tasks.spawn(
        async move {
            let build =
                Box::new(move |version: i16| Ok(RequestKind::ListOffsets(plan.request(version))));
            let result = cluster
                .request_broker(broker, ApiKey::ListOffsets, build, true)
                .await;
            Completion::ListOffsets { id, result }
        }
        .instrument(span),
    );
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// How long `close` waits for the driver to stop.
pub(crate) const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
