//! The consumer group's driver: a tokio task of its own around the sans-IO
//! [`GroupEngine`], so that heartbeats go out on time whatever the application does
//! between two `recv` calls. It sends what the engine asks for (FindCoordinator to any
//! broker; everything else to the coordinator over a connection of its own), feeds the
//! answers back, refreshes the metadata the leader and a pattern subscription need, starts
//! automatic commits of the consumed positions, hands committed offsets to the fetcher and
//! commit outcomes to their waiters, and sleeps until the engine's next deadline.
//!
//! ```text
//! Consumer::recv ──lock──> GroupEngine::poll_event (rebalance steps, callbacks in recv)
//! group task ──> poll_requests ──> coordinator connection / any broker
//!            <── handle_response / handle_failure
//!            ──> poll_start_positions ──> Fetcher::start_at_committed
//! ```

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, Instrument};

use super::broker::{RequestError, Response};
use super::cluster::ClusterClient;
use super::fetch_loop::{wake_user, Shared};
use crate::engine::backoff::Rng;
use crate::engine::group::{GroupRequest, Target};
use crate::engine::refresh::MetadataRefresh;
use crate::error::Error;

enum Completion {
    Group {
        id: u64,
        result: Result<Option<Response>, RequestError>,
    },
    Metadata {
        answered: bool,
    },
}

/// Runs until the consumer is closed (and a LeaveGroup it asked for went out) or dropped.
pub(crate) async fn run(shared: Arc<Shared>, seed: u64) {
    let config = shared.cluster.config().clone();
    let mut refresh = MetadataRefresh::new(config.retry_backoff, config.retry_backoff_max);
    let mut rng = Rng::new(seed ^ 0x0067_726f_7570);
    let coordinator_timeout = config
        .request_timeout
        .max(config.max_poll_interval + Duration::from_secs(5));
    let mut tasks: JoinSet<Completion> = JoinSet::new();
    loop {
        let now = Instant::now();
        let (requests, refresh_now, deadline) = {
            let mut state = shared.lock();
            let state = &mut *state;
            let Some(group) = state.group.as_mut() else {
                return;
            };
            if state.closed && !group.is_leaving() && !group.has_pending_work() {
                break;
            }
            // Automatic commits of what was handed out.
            if group.poll_auto_commit(now.into_std()) {
                let offsets = group.auto_commit_offsets(state.fetcher.consumed_positions());
                if !offsets.is_empty() {
                    group.commit(offsets, None);
                }
            }
            let mut metadata = shared.cluster.metadata();
            group.handle_metadata(&metadata, now.into_std());
            for topic in group.poll_leader_topics() {
                metadata.want(&topic);
            }
            metadata.want_all_topics(group.wants_all_topics());
            if group.poll_metadata_refresh(now.into_std()) {
                // KIP-848: an assignment names a topic id the cache does not know yet.
                metadata.invalidate();
            }
            let active = group.is_subscribed();
            let refresh_now = refresh.poll_refresh(now.into_std(), &mut metadata, active);
            drop(metadata);
            let requests = group.poll_requests(now.into_std());
            for (tp, offset) in group.poll_start_positions() {
                state.fetcher.start_at_committed(&tp, offset);
            }
            let commits = group.poll_commit_results();
            let lookups = group.poll_lookup_results();
            let deadline = [
                group.poll_timeout(now.into_std()),
                refresh.poll_timeout(now.into_std(), &shared.cluster.metadata(), active),
            ]
            .into_iter()
            .flatten()
            .min()
            .map(Instant::from_std);
            shared.group.deliver(commits, lookups);
            (requests, refresh_now, deadline)
        };
        // Events, errors and start positions are for `recv` and the fetcher.
        wake_user(shared.lock());
        shared.wake_driver();
        for request in requests {
            spawn_request(&mut tasks, &shared.cluster, request, coordinator_timeout);
        }
        if refresh_now {
            let cluster = shared.cluster.clone();
            tasks.spawn(async move {
                Completion::Metadata {
                    answered: cluster.refresh_metadata().await.is_ok(),
                }
            });
        }
        tokio::select! {
            done = tasks.join_next(), if !tasks.is_empty() => {
                let Some(Ok(done)) = done else { continue };
                let now = Instant::now().into_std();
                let mut state = shared.lock();
                match done {
                    Completion::Metadata { answered } => {
                        let metadata = shared.cluster.metadata();
                        refresh.handle_refresh(answered, now, &metadata, &mut rng);
                    }
                    Completion::Group { id, result } => {
                        let Some(group) = state.group.as_mut() else { return };
                        match result {
                            Ok(Some(response)) => group.handle_response(id, response.version, *response.body, now),
                            Ok(None) => group.handle_failure(id, &Error::Protocol {
                                peer: "coordinator".into(),
                                reason: "no response".into(),
                            }, now),
                            Err(RequestError { error, .. }) => group.handle_failure(id, &error, now),
                        }
                    }
                }
            }
            () = shared.group_wake.notified() => {}
            () = sleep_until_opt(deadline) => {}
        }
    }
    tasks.abort_all();
    debug!("group driver stopped");
}

fn spawn_request(
    tasks: &mut JoinSet<Completion>,
    cluster: &Arc<ClusterClient>,
    request: GroupRequest,
    coordinator_timeout: Duration,
) {
    let cluster = cluster.clone();
    let id = request.id;
    let api = request.api();
    let span = tracing::debug_span!("group_request", ?api, id);
    tasks.spawn(
        async move {
            let request = Arc::new(request);
            let result = match request.target.clone() {
                Target::AnyBroker => {
                    let request = request.clone();
                    cluster
                        .request_any(api, move |version| request.build(version))
                        .await
                        .map(Some)
                        .map_err(RequestError::from)
                }
                Target::Coordinator { address, .. } => {
                    match cluster
                        .dedicated_connection("group-coordinator", &address, coordinator_timeout)
                        .await
                    {
                        Ok(connection) => {
                            let build = Box::new(move |version: i16| request.build(version));
                            connection.request(api, build, true).await
                        }
                        Err(error) => Err(error.into()),
                    }
                }
            };
            Completion::Group { id, result }
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
