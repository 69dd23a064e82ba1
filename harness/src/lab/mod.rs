//! The fault lab: a seeded fault schedule run against franzy's own clients on an in-process
//! cluster, in virtual time, and an independent check of what the clients were told and
//! what they read. The same seed gives the same run, byte for byte, on any machine
//! (`trace=` is a digest of every frame the cluster saw), so a failing seed is a
//! reproduction.
//!
//! | module | what |
//! |---|---|
//! | [`schedule`] | faults and when: drawn from a seed, printed, parsed back, shrunk |
//! | [`history`] | what the producers were told and what the readers received |
//! | [`checker`] | the rules a history must follow, and what broke them |
//! | `workload` | the clients: writes, a reader during the faults, a reader after them |
//!
//! ```text
//!  seed ──▶ Schedule ──▶ nemesis (stops, leader moves, interceptors) ──▶ Cluster (in memory,
//!                                                                          paused clock)
//!  seed ──▶ Producer ──records, 1 per ms──▶ Cluster ──▶ Consumers        │ trace digest
//!               │ acked / failed                            │ records      ▼
//!               └──────────────▶ History ◀──────────────────┘          LabReport
//!                                   │                                   ▲
//!                                   └──▶ checker ──▶ Findings ──────────┘
//! ```
//!
//! Determinism takes all of: a current-thread runtime with a paused clock
//! ([`run_blocking`] builds one), the in-memory transport, seeded clients and cluster,
//! heavy work inline ([`crate::ClusterBuilder::heavy_work_inline`]), a fixed wall clock
//! for the cluster ([`crate::ClusterBuilder::wall_clock_start_ms`]) and explicit record
//! timestamps, and `biased` selects in the client and the server (tokio picks a random
//! branch first otherwise). DESIGN.md lists each source of nondeterminism that was removed.

pub mod checker;
pub mod history;
pub mod schedule;
mod workload;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

pub use checker::{check, Findings};
pub use history::History;
pub use schedule::{Fault, FaultAction, Schedule, Timed};

use crate::cluster::PlantedBug;
use crate::{Cluster, HarnessError};

/// The lab's topic.
pub const TOPIC: &str = "lab";
/// Its partitions.
pub const PARTITIONS: i32 = 6;
/// Time between two sends of the workload.
pub const RECORD_INTERVAL: Duration = Duration::from_millis(1);
/// The wall clock the lab's cluster starts at, and the first record's timestamp
/// (2023-11-14T22:13:20Z): fixed, so that no byte depends on when the run happened.
pub const WALL_CLOCK_START_MS: i64 = 1_700_000_000_000;

/// How long the workload writes `records` records.
pub fn write_window(records: usize) -> Duration {
    RECORD_INTERVAL.saturating_mul(u32::try_from(records).unwrap_or(u32::MAX))
}

/// What the clients do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Workload {
    /// An idempotent producer (acks=all) writes; consumers read everything back.
    Idempotent,
    /// Transactions committed and aborted; a read_committed reader (needs transactions).
    Transactional,
    /// Consumption by a consumer group (needs groups).
    Group,
}

impl Workload {
    /// Every workload.
    pub const ALL: [Workload; 3] = [Self::Idempotent, Self::Transactional, Self::Group];

    /// Whether franzy has what this workload needs yet.
    pub fn available(self) -> bool {
        matches!(self, Self::Idempotent)
    }

    /// Why it is not available, when it is not.
    pub fn missing(self) -> Option<&'static str> {
        match self {
            Self::Idempotent => None,
            Self::Transactional => {
                Some("franzy's transactional producer is not on main yet (the harness's transaction coordinator is)")
            }
            Self::Group => {
                Some("franzy's group consumer is not on main yet")
            }
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Idempotent => "idempotent",
            Self::Transactional => "transactional",
            Self::Group => "group",
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Workload {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|w| w.name() == name)
            .ok_or_else(|| format!("unknown workload {name:?} (idempotent, transactional, group)"))
    }
}

/// One lab run: a schedule, and optionally a planted bug (to test the checker).
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// The schedule (its seed seeds the clients and the cluster too).
    pub schedule: Schedule,
    /// A deliberate bug in the cluster.
    pub plant: Option<PlantedBug>,
}

impl LabOptions {
    /// A run of `records` records with the schedule drawn from `seed`.
    pub fn seeded(seed: u64, records: usize, workload: Workload) -> Self {
        Self {
            schedule: Schedule::generate(seed, records, workload),
            plant: None,
        }
    }
}

/// What a run did and found.
#[derive(Debug, Clone)]
pub struct LabReport {
    /// The schedule that ran.
    pub schedule: Schedule,
    /// The planted bug, if any, and how often it acted.
    pub plant: Option<(PlantedBug, u64)>,
    /// Records acknowledged to the producer.
    pub acked: usize,
    /// What the checker found.
    pub findings: Findings,
    /// The reader after the faults could not read every partition to its end (within
    /// [`FINAL_READ_BOUND`] of virtual time on a healed cluster): itself an anomaly.
    pub stalled: bool,
    /// The digest of every frame the cluster saw, and how many events it covers.
    pub trace: (u64, u64),
    /// Virtual time the run took.
    pub elapsed: Duration,
    /// The history the checker read.
    pub history: History,
}

/// How long, in virtual time, the final reader may take to read everything back.
pub const FINAL_READ_BOUND: Duration = Duration::from_secs(120);

impl LabReport {
    /// Every anomaly: the checker's, and a final reader that could not finish.
    pub fn anomalies(&self) -> usize {
        self.findings.anomalies() + usize::from(self.stalled)
    }

    /// Whether the run found anything wrong.
    pub fn failed(&self) -> bool {
        self.anomalies() > 0
    }
}

impl fmt::Display for LabReport {
    /// `seed=N records=R acked=A lost=L duplicated=D reordered=O aborted_reads=X
    /// anomalies=K trace=HEX`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let findings = &self.findings;
        write!(
            f,
            "seed={} records={} acked={} lost={} duplicated={} reordered={} aborted_reads={} anomalies={} trace={:016x}",
            self.schedule.seed,
            self.schedule.records,
            self.acked,
            findings.lost,
            findings.duplicated,
            findings.reordered,
            findings.aborted_reads,
            self.anomalies(),
            self.trace.0
        )
    }
}

/// Why a run could not happen (not an anomaly: the lab itself failed).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabError {
    /// The workload needs what franzy does not have yet.
    #[error("workload {workload} is not available yet: {why}")]
    Unavailable {
        /// The workload.
        workload: Workload,
        /// What it needs.
        why: &'static str,
    },
    /// The cluster did not start.
    #[error("the lab cluster did not start")]
    Cluster(#[from] HarnessError),
    /// A client did not start.
    #[error("a lab client did not start")]
    Client(#[from] franzy::Error),
    /// The runtime did not start.
    #[error("the lab's runtime did not start")]
    Runtime(#[source] std::io::Error),
}

/// Runs `options` on a runtime of its own: current-thread, paused clock. Blocks.
pub fn run_blocking(options: &LabOptions) -> Result<LabReport, LabError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .map_err(LabError::Runtime)?;
    runtime.block_on(run(options))
}

/// Runs `options`. Only deterministic on a current-thread runtime with a paused clock
/// ([`run_blocking`]).
pub async fn run(options: &LabOptions) -> Result<LabReport, LabError> {
    let schedule = &options.schedule;
    if let Some(why) = schedule.workload.missing() {
        return Err(LabError::Unavailable {
            workload: schedule.workload,
            why,
        });
    }
    let started = tokio::time::Instant::now();
    let mut builder = Cluster::builder()
        .brokers(schedule::BROKERS)
        .topic(TOPIC, PARTITIONS)
        .in_memory()
        .seed(schedule.seed)
        .heavy_work_inline(true)
        .wall_clock_start_ms(WALL_CLOCK_START_MS)
        .trace(true);
    if let Some(bug) = options.plant {
        builder = builder.plant(bug);
    }
    let cluster = builder.build().await?;
    let outcome = workload::idempotent(&cluster, schedule).await?;
    let trace = cluster.trace_digest().unwrap_or_default();
    let fired = cluster.with_state(|s| s.planted_fired());
    cluster.shutdown().await;
    let findings = check(&outcome.history);
    let acked = outcome
        .history
        .sends
        .iter()
        .filter(|s| matches!(s.outcome, history::SendOutcome::Acked { .. }))
        .count();
    Ok(LabReport {
        schedule: schedule.clone(),
        plant: options.plant.map(|bug| (bug, fired)),
        acked,
        findings,
        stalled: outcome.stalled,
        trace,
        elapsed: started.elapsed(),
        history: outcome.history,
    })
}

/// Shrinks a failing schedule: drops one fault at a time, keeping each drop after which
/// `fails` still holds for a run (at most `max_runs` runs). Returns the smallest schedule
/// found and its report.
pub fn shrink(
    options: &LabOptions,
    max_runs: usize,
    fails: impl Fn(&LabReport) -> bool,
) -> Result<(Schedule, Option<LabReport>), LabError> {
    let mut current = options.schedule.clone();
    let mut last = None;
    let mut runs = 0;
    let mut index = 0;
    while index < current.faults.len() && runs < max_runs {
        let candidate = LabOptions {
            schedule: current.without(index),
            plant: options.plant,
        };
        runs += 1;
        let report = run_blocking(&candidate)?;
        if fails(&report) {
            current = candidate.schedule;
            last = Some(report);
        } else {
            index += 1;
        }
    }
    Ok((current, last))
}

/// SplitMix64: the lab's one generator, seeded, never global.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (0 when `n` is 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}
