//! Health: whether each broker (and "any broker", for metadata) answers, broker backoff
//! after failed requests, and the outage errors ([`Error::BrokerUnreachable`],
//! [`Error::AllBrokersDown`]) reported once per failure episode.

use std::time::{Duration, Instant};

use tracing::warn;

use super::{FailureEpisode, FetchState, Fetcher, Peer, RetryState};
use crate::engine::metadata::Metadata;
use crate::error::Error;

impl Fetcher {
    /// A metadata refresh was answered (and the answer applied to `metadata`). Returns the
    /// wait before the next refresh.
    pub fn handle_metadata_response(&mut self, now: Instant, metadata: &Metadata) -> Duration {
        self.record_success(Peer::AnyBroker, now);
        self.refresh
            .handle_refresh(true, now, metadata, &mut self.rng)
    }

    /// A metadata refresh sent at `sent_at` failed: no broker, bootstrap servers included,
    /// answered it. Counts towards [`Error::AllBrokersDown`] while some assigned partition
    /// has no known leader (the consumer cannot fetch it before a refresh succeeds); with
    /// every leader known, fetch failures say more, and tell the user which broker fails.
    /// Returns the wait before the next refresh (backing off).
    pub fn handle_metadata_failure(
        &mut self,
        error: &Error,
        sent_at: Instant,
        now: Instant,
        metadata: &Metadata,
    ) -> Duration {
        let leaderless = self.partitions.iter().any(|(tp, state)| {
            state.state != FetchState::Halted && metadata.leader(&tp.topic, tp.partition).is_none()
        });
        if leaderless {
            self.record_failure(Peer::AnyBroker, error, sent_at, now);
        }
        self.refresh
            .handle_refresh(false, now, metadata, &mut self.rng)
    }

    /// Backs off from `broker` and asks for fresh metadata; returns the wait.
    pub(super) fn fail_broker(&mut self, broker: i32, now: Instant) -> Duration {
        self.refresh.request();
        let retry = self
            .broker_backoff
            .entry(broker)
            .or_insert_with(|| RetryState::reconnect(&self.config));
        retry.fail(&mut self.rng, now)
    }

    /// `broker` answered a request: it is reachable, and so is some broker.
    pub(super) fn handle_answer(&mut self, broker: i32, now: Instant) {
        self.record_success(Peer::Broker(broker), now);
        self.record_success(Peer::AnyBroker, now);
    }

    pub(super) fn handle_request_failure(
        &mut self,
        broker: i32,
        error: &Error,
        sent_at: Instant,
        now: Instant,
    ) {
        self.record_failure(Peer::Broker(broker), error, sent_at, now);
    }

    pub(super) fn record_success(&mut self, peer: Peer, now: Instant) {
        let health = self.health.entry(peer).or_default();
        health.last_success = Some(now);
        health.episode = None;
    }

    /// A request to `peer` sent at `sent_at` failed at `now`. Once the peer's requests have
    /// failed for `reconnect.backoff.max.ms` with nothing answered in between, the user is
    /// told, once per episode; at the first failure when its cause is fatal
    /// (authentication, TLS trust). A failure after a pause longer than two backoffs (nothing
    /// was asked of the peer meanwhile) starts a new episode.
    pub(super) fn record_failure(
        &mut self,
        peer: Peer,
        error: &Error,
        sent_at: Instant,
        now: Instant,
    ) {
        let threshold = self.config.reconnect_backoff_max;
        let pause = threshold
            .max(self.config.retry_backoff_max)
            .saturating_mul(2);
        let health = self.health.entry(peer).or_default();
        let since = health.last_success.map_or(sent_at, |at| at.max(sent_at));
        let episode = match &mut health.episode {
            Some(episode) if sent_at.saturating_duration_since(episode.last_failure) <= pause => {
                episode
            }
            slot => slot.insert(FailureEpisode {
                since,
                last_failure: now,
                reported: false,
            }),
        };
        episode.last_failure = now;
        let failing_for = now.saturating_duration_since(episode.since);
        // A fatal cause (the broker refused our credentials, an untrusted certificate) will
        // not pass by waiting: told at once rather than after the threshold.
        if episode.reported || (failing_for < threshold && !error.is_fatal()) {
            return;
        }
        episode.reported = true;
        let cause = Box::new(error.clone());
        let outage = match peer {
            Peer::Broker(broker) => Error::BrokerUnreachable {
                broker,
                failing_for,
                cause,
            },
            Peer::AnyBroker => Error::AllBrokersDown { failing_for, cause },
        };
        warn!(%outage, %error, "reporting to the consumer; still retrying");
        // One per peer: a newer episode replaces one the user has not seen yet.
        self.outage_errors.retain(|(p, _)| *p != peer);
        self.outage_errors.push_back((peer, outage));
    }
}
