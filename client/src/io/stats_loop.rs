//! The statistics task: every `statistics.interval.ms` it takes a snapshot (built by the
//! client from its counters and engines, no IO) and hands it to the application's callback
//! and, with the `metrics` feature, to the `metrics` facade. It holds no strong reference to
//! the client: it ends once the snapshot function says the client is closed or gone.

use std::time::Duration;

use tokio::task::JoinHandle;

use crate::stats::{StatisticsCallback, Stats};

/// Starts the task when there is an interval and somewhere for snapshots to go: a callback,
/// or the `metrics` facade when that feature is on. `snapshot` answers `None` once the
/// client is closed or dropped, which ends the task.
pub(crate) fn spawn(
    runtime: &tokio::runtime::Handle,
    interval: Duration,
    callback: Option<StatisticsCallback>,
    snapshot: impl Fn() -> Option<Stats> + Send + 'static,
    span: tracing::Span,
) -> Option<JoinHandle<()>> {
    if interval.is_zero() || (callback.is_none() && !cfg!(feature = "metrics")) {
        return None;
    }
    let task = run(interval, callback, snapshot);
    Some(runtime.spawn(tracing::Instrument::instrument(task, span)))
}

async fn run(
    interval: Duration,
    callback: Option<StatisticsCallback>,
    snapshot: impl Fn() -> Option<Stats>,
) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    // A callback that ran long (or a stalled runtime) delays the next snapshot rather than
    // producing a burst of them.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(stats) = snapshot() else {
            return;
        };
        #[cfg(feature = "metrics")]
        stats.export_metrics();
        if let Some(callback) = &callback {
            callback(&stats);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::sync::Mutex;

    #[tokio::test(start_paused = true)]
    async fn snapshots_come_every_interval_until_the_client_is_gone() {
        let seen: Arc<Mutex<Vec<(Duration, u64)>>> = Arc::default();
        let started = tokio::time::Instant::now();
        let counter = Arc::new(AtomicU64::new(0));
        let (c, s) = (counter.clone(), seen.clone());
        let callback: StatisticsCallback = Arc::new(move |stats: &Stats| {
            s.lock()
                .expect("not poisoned")
                .push((started.elapsed(), stats.records));
        });
        let task = spawn(
            &tokio::runtime::Handle::current(),
            Duration::from_millis(100),
            Some(callback),
            move || {
                let n = c.fetch_add(1, Ordering::SeqCst);
                (n < 3).then(|| Stats {
                    records: n * 10,
                    ..Stats::default()
                })
            },
            tracing::Span::none(),
        )
        .expect("a task");
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("ends once the client is gone")
            .expect("no panic");
        let seen = seen.lock().expect("not poisoned").clone();
        assert_eq!(
            seen,
            vec![
                (Duration::from_millis(100), 0),
                (Duration::from_millis(200), 10),
                (Duration::from_millis(300), 20),
            ]
        );
    }

    #[tokio::test]
    async fn no_interval_no_task() {
        let callback: StatisticsCallback = Arc::new(|_: &Stats| {});
        let handle = tokio::runtime::Handle::current();
        assert!(spawn(
            &handle,
            Duration::ZERO,
            Some(callback),
            || None,
            tracing::Span::none()
        )
        .is_none());
    }
}
