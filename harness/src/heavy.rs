//! A small pool of threads of its own for the work proportional to a large request:
//! decoding, listing, validating (CRCs, decompression), building and encoding the answers of
//! requests over 64 KiB, so that a tokio worker busy with one of them does not stop polling
//! every other socket.
//!
//! Why not `tokio::task::spawn_blocking` for it: each blocking thread that allocates gets a
//! malloc arena of its own (glibc), and memory freed there stays in that arena. Heavy work
//! moving between many blocking threads left the process 64-115 MB larger after five 1.6 MB
//! requests whose live data was 13 MB. A fixed pool of one thread per core but one (at
//! least one) keeps the arenas few, and also bounds how many cores such work takes from the
//! connections.
//!
//! The pool's threads start with the first job. Jobs are still *awaited* through
//! `spawn_blocking`, whose thread only waits for the pool's answer (it allocates nothing):
//! under a paused tokio clock, tokio does not advance time while a blocking task runs, and a
//! job running on a thread tokio does not know of would otherwise let timers (a client's
//! request timeout, a fetch deadline) fire in the middle of it.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock};

type Job = Box<dyn FnOnce() + Send>;

/// A fixed number of threads running jobs in the order they were sent, or none at all
/// ([`HeavyPool::inline`]): then each job runs on the task that asks for it.
pub(crate) struct HeavyPool {
    threads: usize,
    inline: bool,
    jobs: OnceLock<Option<Sender<Job>>>,
}

impl std::fmt::Debug for HeavyPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeavyPool")
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

impl HeavyPool {
    /// A pool of `threads` threads (at least one), started on first use.
    pub(crate) fn new(threads: usize) -> Self {
        Self {
            threads: threads.max(1),
            inline: false,
            jobs: OnceLock::new(),
        }
    }

    /// No threads: every job runs at once on the task that asks for it. For runs that must
    /// be deterministic (the fault lab, `ClusterBuilder::heavy_work_inline`): work on other
    /// threads finishes whenever the machine lets it, and under a paused clock the
    /// `spawn_blocking` wait keeps tokio from advancing time meanwhile.
    pub(crate) fn inline() -> Self {
        Self {
            threads: 0,
            inline: true,
            jobs: OnceLock::new(),
        }
    }

    /// One thread per core but one, at least one.
    pub(crate) fn for_this_machine() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::new(cores.saturating_sub(1))
    }

    /// Runs `work` on the pool and waits for it, from a blocking thread that does nothing
    /// else (see the module doc). `None` if the work panicked (a bug; the caller closes the
    /// connection) or the pool could not start.
    pub(crate) async fn run<R: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce() -> R + Send + 'static,
    ) -> Option<R> {
        if self.inline {
            // A panicking job (a bug) loses its answer, as on the pool.
            return catch_unwind(AssertUnwindSafe(work)).ok();
        }
        let jobs = self.sender()?.clone();
        let (done, result) = mpsc::sync_channel(1);
        let job: Job = Box::new(move || {
            let _ = done.send(work());
        });
        tokio::task::spawn_blocking(move || {
            jobs.send(job).ok()?;
            // Dropped without an answer when the work panicked.
            result.recv().ok()
        })
        .await
        .ok()
        .flatten()
    }

    /// Where to send jobs, starting the threads the first time; `None` if not even one
    /// thread could start.
    fn sender(&self) -> Option<&Sender<Job>> {
        self.jobs
            .get_or_init(|| {
                let (sender, receiver) = mpsc::channel::<Job>();
                let receiver = Arc::new(Mutex::new(receiver));
                let mut started = 0;
                for index in 0..self.threads {
                    let receiver = receiver.clone();
                    let spawned = std::thread::Builder::new()
                        .name(format!("franzy-heavy-{index}"))
                        .spawn(move || work_on(&receiver));
                    match spawned {
                        Ok(_) => started += 1,
                        Err(error) => {
                            tracing::warn!(%error, "could not start a thread for large requests")
                        }
                    }
                }
                (started > 0).then_some(sender)
            })
            .as_ref()
    }
}

/// A pool thread: runs jobs until every sender is gone (the cluster is dropped).
fn work_on(jobs: &Mutex<Receiver<Job>>) {
    loop {
        let job = {
            let receiver = jobs.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            receiver.recv()
        };
        let Ok(job) = job else {
            return;
        };
        // A panicking job (a bug) loses its answer, not the thread.
        let _ = catch_unwind(AssertUnwindSafe(job));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[tokio::test]
    async fn jobs_run_on_the_pools_threads_and_panics_lose_only_their_answer() {
        let pool = Arc::new(HeavyPool::new(2));
        let mut names = HashSet::new();
        for i in 0..20 {
            let name = pool
                .run(move || (std::thread::current().name().map(str::to_string), i * 2))
                .await;
            let (name, doubled) = name.expect("ran");
            assert_eq!(doubled, i * 2);
            names.insert(name.unwrap_or_default());
        }
        assert!(
            names.iter().all(|n| n.starts_with("franzy-heavy-")),
            "{names:?}"
        );
        assert!(names.len() <= 2);
        let lost: Option<()> = pool.run(|| panic!("a bug")).await;
        assert!(lost.is_none());
        assert_eq!(pool.run(|| 7).await, Some(7), "the pool survives");
    }

    #[tokio::test]
    async fn an_inline_pool_runs_jobs_on_the_calling_thread() {
        let pool = Arc::new(HeavyPool::inline());
        let caller = std::thread::current().id();
        let ran_on = pool.run(move || std::thread::current().id()).await;
        assert_eq!(ran_on, Some(caller));
        let lost: Option<()> = pool.run(|| panic!("a bug")).await;
        assert!(lost.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn paused_time_does_not_jump_while_a_job_runs() {
        let pool = Arc::new(HeavyPool::new(1));
        let started = tokio::time::Instant::now();
        let timer = tokio::spawn(tokio::time::sleep(std::time::Duration::from_secs(30)));
        pool.run(|| std::thread::sleep(std::time::Duration::from_millis(50)))
            .await
            .expect("ran");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert!(!timer.is_finished());
        timer.abort();
    }
}
