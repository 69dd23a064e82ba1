//! When to refresh the metadata, for every role: one policy, written once.
//!
//! A refresh is due when the cache is stale or `metadata.max.age.ms` old
//! ([`Metadata::refresh_due`]), or when something asked for one ([`MetadataRefresh::request`]:
//! an unknown topic, a partition without a leader, an error that means the leader moved, a
//! failed request). At most one refresh is in flight. Refreshes are `retry.backoff.ms` apart
//! at least, as in Kafka's clients, and back off exponentially (up to
//! `retry.backoff.max.ms`, jittered) while they fail or leave the cache stale (an unknown
//! topic, a leaderless partition): without that, a topic that does not exist yet would be
//! asked for in a tight loop. A reason that comes while a refresh is in flight may predate
//! its answer, so it is kept for the next refresh.
//!
//! Call order (time is an argument): [`MetadataRefresh::request`] whenever a reason comes;
//! [`MetadataRefresh::poll_refresh`] in each step, and when it says so send a Metadata
//! request ([`Metadata::request`]); feed its outcome, once the response has been
//! applied to the cache, to [`MetadataRefresh::handle_refresh`]; sleep no later than
//! [`MetadataRefresh::poll_timeout`].

use std::time::{Duration, Instant};

use super::backoff::{Backoff, Rng};
use super::metadata::Metadata;

/// The metadata refresh policy of one client role.
#[derive(Debug, Clone)]
pub struct MetadataRefresh {
    /// `retry.backoff.ms`: the least time between two refreshes.
    spacing: Duration,
    backoff: Backoff,
    /// When the refresh in flight was sent.
    in_flight: Option<Instant>,
    /// Something asked for fresh metadata since the last refresh was sent.
    wanted: bool,
    /// No refresh before this.
    not_before: Option<Instant>,
}

impl MetadataRefresh {
    /// Refreshes at least `retry_backoff` apart, backing off up to `retry_backoff_max`.
    pub fn new(retry_backoff: Duration, retry_backoff_max: Duration) -> Self {
        Self {
            spacing: retry_backoff,
            backoff: Backoff::new(retry_backoff, retry_backoff_max),
            in_flight: None,
            wanted: false,
            not_before: None,
        }
    }

    /// Something needs fresh metadata: the next refresh happens as soon as the spacing and
    /// backoff allow, even if the cache looks fresh.
    pub fn request(&mut self) {
        self.wanted = true;
    }

    /// Whether something asked for fresh metadata that no refresh has been sent for yet.
    pub fn is_requested(&self) -> bool {
        self.wanted
    }

    /// Whether a refresh is in flight, and since when.
    pub fn in_flight(&self) -> Option<Instant> {
        self.in_flight
    }

    /// Whether to send a Metadata request now. `active` says whether the role needs metadata
    /// at all (a producer that has been given a topic, a consumer with an assignment): an
    /// idle client asks nothing. A `true` marks the refresh in flight; its outcome must come
    /// back through [`MetadataRefresh::handle_refresh`].
    pub fn poll_refresh(&mut self, now: Instant, metadata: &mut Metadata, active: bool) -> bool {
        if !active || self.in_flight.is_some() || self.not_before.is_some_and(|at| at > now) {
            return false;
        }
        if std::mem::take(&mut self.wanted) {
            metadata.invalidate();
        }
        if metadata.refresh_due(now) > now {
            return false;
        }
        self.in_flight = Some(now);
        true
    }

    /// The refresh in flight ended at `now`: `answered` if some broker answered it (and the
    /// answer was applied to `metadata`). Returns the wait before the next refresh:
    /// `retry.backoff.ms` once the cache is complete, a growing backoff while refreshes fail
    /// or leave it stale.
    pub fn handle_refresh(
        &mut self,
        answered: bool,
        now: Instant,
        metadata: &Metadata,
        rng: &mut Rng,
    ) -> Duration {
        self.in_flight = None;
        let settled = answered && metadata.refresh_due(now) > now;
        let wait = if settled {
            self.backoff.reset();
            self.spacing
        } else {
            self.backoff.next_delay(rng)
        };
        self.not_before = Some(now + wait);
        wait
    }

    /// When the next refresh will be due, if that is after `now` and nothing is in flight
    /// (an answer wakes the driver by itself).
    pub fn poll_timeout(&self, now: Instant, metadata: &Metadata, active: bool) -> Option<Instant> {
        if !active || self.in_flight.is_some() {
            return None;
        }
        let due = if self.wanted {
            now
        } else {
            metadata.refresh_due(now)
        };
        let due = self.not_before.map_or(due, |at| at.max(due));
        (due > now).then_some(due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::{BrokerId, MetadataResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;

    const MS: Duration = Duration::from_millis(1);

    /// A response in which topic `t` has one partition, led by broker 0 or by nobody.
    fn response(leader: i32) -> MetadataResponse {
        let broker = MetadataResponseBroker::default()
            .with_node_id(BrokerId(0))
            .with_host(StrBytes::from_static_str("b0"))
            .with_port(9092);
        let partition = MetadataResponsePartition::default()
            .with_partition_index(0)
            .with_leader_id(BrokerId(leader));
        let topic = MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str("t"))))
            .with_partitions(vec![partition]);
        MetadataResponse::default()
            .with_brokers(vec![broker])
            .with_topics(vec![topic])
    }

    fn policy() -> (MetadataRefresh, Metadata, Rng) {
        let mut metadata = Metadata::new(Duration::from_secs(300));
        metadata.want("t");
        (
            MetadataRefresh::new(100 * MS, 1000 * MS),
            metadata,
            Rng::new(7),
        )
    }

    #[test]
    fn an_idle_client_asks_nothing_and_one_refresh_flies_at_a_time() {
        let (mut refresh, mut md, mut rng) = policy();
        let now = Instant::now();
        assert!(
            !refresh.poll_refresh(now, &mut md, false),
            "nothing to ask for"
        );
        assert_eq!(refresh.poll_timeout(now, &md, false), None);
        assert!(
            refresh.poll_refresh(now, &mut md, true),
            "never refreshed: due now"
        );
        assert_eq!(refresh.in_flight(), Some(now));
        assert!(!refresh.poll_refresh(now, &mut md, true), "one in flight");
        assert_eq!(
            refresh.poll_timeout(now, &md, true),
            None,
            "the answer wakes"
        );
        md.handle_response(&response(0), now + 5 * MS);
        let wait = refresh.handle_refresh(true, now + 5 * MS, &md, &mut rng);
        assert_eq!(wait, 100 * MS, "complete: only retry.backoff.ms apart");
        // Complete and fresh: the next refresh is metadata.max.age.ms away.
        assert_eq!(
            refresh.poll_timeout(now + 5 * MS, &md, true),
            Some(now + 5 * MS + Duration::from_secs(300))
        );
    }

    #[test]
    fn a_request_is_served_after_the_spacing_even_with_a_fresh_cache() {
        let (mut refresh, mut md, mut rng) = policy();
        let now = Instant::now();
        assert!(refresh.poll_refresh(now, &mut md, true));
        md.handle_response(&response(0), now);
        refresh.handle_refresh(true, now, &md, &mut rng);
        refresh.request();
        assert!(
            !refresh.poll_refresh(now + 50 * MS, &mut md, true),
            "too soon"
        );
        assert_eq!(
            refresh.poll_timeout(now + 50 * MS, &md, true),
            Some(now + 100 * MS)
        );
        assert!(refresh.poll_refresh(now + 100 * MS, &mut md, true));
    }

    #[test]
    fn failures_and_stale_answers_back_off_exponentially_and_a_success_resets() {
        let (mut refresh, mut md, mut rng) = policy();
        let mut now = Instant::now();
        let mut waits = Vec::new();
        for _ in 0..5 {
            assert!(refresh.poll_refresh(now, &mut md, true));
            // No broker answered.
            let wait = refresh.handle_refresh(false, now, &md, &mut rng);
            assert!(!refresh.poll_refresh(now + wait - MS, &mut md, true));
            assert_eq!(refresh.poll_timeout(now, &md, true), Some(now + wait));
            waits.push(wait);
            now += wait;
        }
        for (wait, base) in waits.iter().zip([100u64, 200, 400, 800, 1000]) {
            let ms = wait.as_millis() as u64;
            assert!(ms >= base * 8 / 10 && ms <= base * 12 / 10, "{waits:?}");
        }
        // An answer with a leaderless partition leaves the cache stale: still backing off.
        assert!(refresh.poll_refresh(now, &mut md, true));
        md.handle_response(&response(-1), now);
        let stale = refresh.handle_refresh(true, now, &md, &mut rng);
        assert!(stale >= 800 * MS, "{stale:?}");
        now += stale;
        // A complete answer resets the backoff.
        assert!(refresh.poll_refresh(now, &mut md, true));
        md.handle_response(&response(0), now);
        assert_eq!(refresh.handle_refresh(true, now, &md, &mut rng), 100 * MS);
        now += 100 * MS;
        refresh.request();
        assert!(refresh.poll_refresh(now, &mut md, true));
        let first = refresh.handle_refresh(false, now, &md, &mut rng);
        assert!(first <= 120 * MS, "{first:?}");
    }

    #[test]
    fn a_reason_that_comes_during_a_refresh_is_kept_for_the_next() {
        let (mut refresh, mut md, mut rng) = policy();
        let now = Instant::now();
        assert!(refresh.poll_refresh(now, &mut md, true));
        refresh.request();
        md.handle_response(&response(0), now + MS);
        refresh.handle_refresh(true, now + MS, &md, &mut rng);
        assert_eq!(
            refresh.poll_timeout(now + MS, &md, true),
            Some(now + 101 * MS),
            "the answer may predate the reason: ask again"
        );
        assert!(refresh.poll_refresh(now + 101 * MS, &mut md, true));
    }
}
