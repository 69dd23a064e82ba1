//! Cluster time: how long the cluster has been running.
//!
//! The state never reads a clock. The server reads tokio's (so a test under a paused tokio
//! clock moves the cluster's time exactly as far as it moves its own) and hands the reading
//! in: to handlers as [`crate::cluster::RequestContext::now`], to
//! [`crate::cluster::ClusterState::handle_timeout`] when a deadline is due. Deadlines are
//! [`Time`]s too, so "what is due" is a comparison, the same every run.

use std::ops::Add;
use std::time::Duration;

/// A moment of the cluster's life: the time since it started. Ordered, saturating, and
/// independent of the wall clock (timestamps come from [`crate::cluster::RequestContext::now_ms`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(Duration);

impl Time {
    /// The cluster's start.
    pub const ZERO: Time = Time(Duration::ZERO);

    /// The moment `elapsed` after the start.
    pub const fn from_start(elapsed: Duration) -> Self {
        Self(elapsed)
    }

    /// How long after the start this moment is.
    pub const fn since_start(self) -> Duration {
        self.0
    }

    /// `self + duration`, or the latest representable moment.
    pub fn saturating_add(self, duration: Duration) -> Self {
        Self(self.0.saturating_add(duration))
    }

    /// How long after `earlier` this moment is; zero if it is not after it.
    pub fn saturating_duration_since(self, earlier: Time) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

impl Add<Duration> for Time {
    type Output = Time;

    /// Saturating: a deadline far in the future stays far in the future.
    fn add(self, duration: Duration) -> Time {
        self.saturating_add(duration)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_orders_and_saturates() {
        let start = Time::ZERO;
        let later = start + Duration::from_millis(500);
        assert!(later > start);
        assert_eq!(later.since_start(), Duration::from_millis(500));
        assert_eq!(
            later.saturating_duration_since(start),
            Duration::from_millis(500)
        );
        assert_eq!(start.saturating_duration_since(later), Duration::ZERO);
        let end = Time::from_start(Duration::MAX);
        assert_eq!(end + Duration::from_secs(1), end);
    }
}
