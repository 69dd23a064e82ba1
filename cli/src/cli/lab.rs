//! `franzy lab`: the fault lab (`franzy_harness::lab`) from the command line. One seed, a
//! range of seeds, or a saved schedule; one line per run:
//!
//! ```text
//! seed=7 records=5000 acked=5000 lost=0 duplicated=0 reordered=0 aborted_reads=0 anomalies=0 trace=5c1d0e7f00a3b2c4
//! ```
//!
//! A failing run prints the schedule it ran (replay it with `--replay FILE`), and with
//! `--shrink` the smallest schedule that still fails. Exit status: 0 when no run found an
//! anomaly, 1 when one did, 2 for a workload franzy cannot run yet or bad arguments.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use franzy_harness::lab::{self, LabOptions, LabReport, Schedule, Workload};
use franzy_harness::PlantedBug;

/// Options of `franzy lab`.
#[derive(clap::Args, Debug)]
pub struct LabArgs {
    /// The seed of the run: its fault schedule, the clients' and the cluster's randomness.
    #[arg(long, conflicts_with_all = ["seeds", "replay"])]
    pub seed: Option<u64>,
    /// A range of seeds, A..B (B excluded): one line per failing seed and a summary.
    #[arg(long, value_parser = parse_range, value_name = "A..B", conflicts_with = "replay")]
    pub seeds: Option<(u64, u64)>,
    /// Run the schedule in FILE (as printed by a failing run, or written by hand).
    #[arg(long, value_name = "FILE")]
    pub replay: Option<PathBuf>,
    /// Records each run writes.
    #[arg(long, default_value_t = 5000)]
    pub records: usize,
    /// What the clients do: idempotent, transactional, group, or all.
    #[arg(long, default_value = "idempotent")]
    pub workload: String,
    /// Plant a bug in the cluster, to check that the checker catches it:
    /// duplicate-append, drop-acked or reorder.
    #[arg(long, value_name = "BUG")]
    pub plant: Option<PlantedBug>,
    /// Print every run's schedule, not only failing ones'.
    #[arg(long)]
    pub print_schedule: bool,
    /// Shrink a failing schedule: drop faults one at a time while the run still fails.
    #[arg(long)]
    pub shrink: bool,
    /// Runs at once in a sweep (each on a thread and a runtime of its own; the results do
    /// not depend on it) [default: the cores].
    #[arg(long)]
    pub jobs: Option<usize>,
}

fn parse_range(text: &str) -> Result<(u64, u64), String> {
    let (a, b) = text
        .split_once("..")
        .ok_or_else(|| format!("{text:?} is not A..B"))?;
    let a: u64 = a.parse().map_err(|_| format!("{a:?} is not a seed"))?;
    let b: u64 = b.parse().map_err(|_| format!("{b:?} is not a seed"))?;
    if b <= a {
        return Err(format!("the range {text:?} is empty"));
    }
    Ok((a, b))
}

/// Runs the lab; prints its lines on stdout; returns the exit status.
pub fn run(args: LabArgs) -> ExitCode {
    let workloads: Vec<Workload> = if args.workload == "all" {
        Workload::ALL.to_vec()
    } else {
        match args.workload.parse() {
            Ok(workload) => vec![workload],
            Err(error) => {
                eprintln!("franzy lab: {error}");
                return ExitCode::from(2);
            }
        }
    };
    let (runnable, missing): (Vec<Workload>, Vec<Workload>) =
        workloads.into_iter().partition(|w| w.available());
    for workload in &missing {
        eprintln!(
            "franzy lab: workload {workload} is not available yet: {}",
            workload.missing().unwrap_or("")
        );
    }
    if runnable.is_empty() {
        return ExitCode::from(2);
    }
    let mut failed = false;
    if let Some(path) = &args.replay {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) => {
                eprintln!("franzy lab: cannot read {}: {error}", path.display());
                return ExitCode::from(2);
            }
        };
        let schedule = match Schedule::parse(&text) {
            Ok(schedule) => schedule,
            Err(error) => {
                eprintln!("franzy lab: {}: {error}", path.display());
                return ExitCode::from(2);
            }
        };
        if !schedule.workload.available() {
            eprintln!(
                "franzy lab: workload {} is not available yet",
                schedule.workload
            );
            return ExitCode::from(2);
        }
        let options = LabOptions {
            schedule,
            plant: args.plant,
        };
        match one(&options, &args) {
            Ok(bad) => failed |= bad,
            Err(status) => return status,
        }
        return status_of(failed);
    }
    for workload in runnable {
        match args.seeds {
            Some((from, to)) => match sweep(from, to, workload, &args) {
                Ok(bad) => failed |= bad,
                Err(status) => return status,
            },
            None => {
                let options = LabOptions {
                    plant: args.plant,
                    ..LabOptions::seeded(args.seed.unwrap_or(0), args.records, workload)
                };
                match one(&options, &args) {
                    Ok(bad) => failed |= bad,
                    Err(status) => return status,
                }
            }
        }
    }
    status_of(failed)
}

fn status_of(failed: bool) -> ExitCode {
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// One run: its line, and its schedule when it failed (or was asked for).
fn one(options: &LabOptions, args: &LabArgs) -> Result<bool, ExitCode> {
    let report = lab::run_blocking(options).map_err(|error| {
        eprintln!("franzy lab: {error}");
        ExitCode::from(2)
    })?;
    println!("{report}");
    if report.failed() || args.print_schedule {
        explain(&report);
    }
    if report.failed() && args.shrink {
        shrink(options);
    }
    Ok(report.failed())
}

/// What a failing run found, and the schedule that made it.
fn explain(report: &LabReport) {
    if report.failed() {
        println!("# found: {}", report.findings.summary());
        if report.stalled {
            println!("# the reader after the faults could not read every partition to its end");
        }
        for note in &report.findings.notes {
            println!("#   {note}");
        }
    }
    if let Some((bug, fired)) = report.plant {
        println!("# planted bug {bug} acted {fired} times");
    }
    print!("{}", report.schedule);
}

fn shrink(options: &LabOptions) {
    println!("# shrinking: dropping faults while the run still fails");
    match lab::shrink(options, 64, LabReport::failed) {
        Ok((schedule, Some(report))) => {
            println!("# smallest failing schedule found ({report}):");
            print!("{schedule}");
        }
        Ok((_, None)) => println!("# no fault could be dropped"),
        Err(error) => eprintln!("franzy lab: shrinking failed: {error}"),
    }
}

/// Seeds `from..to`: a line per failing seed (and its schedule), then a summary line.
fn sweep(from: u64, to: u64, workload: Workload, args: &LabArgs) -> Result<bool, ExitCode> {
    let started = Instant::now();
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, 64);
    let next = AtomicU64::new(from);
    let (results, received) = mpsc::channel::<(u64, Result<LabReport, String>)>();
    let mut reports: BTreeMap<u64, Result<LabReport, String>> = BTreeMap::new();
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            let results = results.clone();
            let next = &next;
            scope.spawn(move || loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= to {
                    return;
                }
                let options = LabOptions {
                    plant: args.plant,
                    ..LabOptions::seeded(seed, args.records, workload)
                };
                let report = lab::run_blocking(&options).map_err(|e| e.to_string());
                if results.send((seed, report)).is_err() {
                    return;
                }
            });
        }
        drop(results);
        // Lines in seed order, each as soon as every seed before it is done.
        let mut printed = from;
        for (seed, report) in received {
            reports.insert(seed, report);
            while let Some(report) = reports.get(&printed) {
                match report {
                    Ok(report) if report.failed() => {
                        println!("{report}");
                        explain(report);
                    }
                    Ok(report) if args.print_schedule => {
                        println!("{report}");
                        explain(report);
                    }
                    Ok(_) => {}
                    Err(error) => eprintln!("franzy lab: seed {printed}: {error}"),
                }
                printed += 1;
            }
        }
    });
    let mut failing = 0u64;
    let mut anomalies = 0usize;
    let mut acked = 0usize;
    let mut errors = 0u64;
    for report in reports.values() {
        match report {
            Ok(report) => {
                failing += u64::from(report.failed());
                anomalies += report.anomalies();
                acked += report.acked;
            }
            Err(_) => errors += 1,
        }
    }
    println!(
        "seeds={from}..{to} workload={workload} records={} runs={} failing={failing} acked={acked} anomalies={anomalies} seconds={:.1}",
        args.records,
        to - from,
        started.elapsed().as_secs_f64()
    );
    if errors > 0 {
        return Err(ExitCode::from(2));
    }
    Ok(failing > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_half_open_and_not_empty() {
        assert_eq!(parse_range("0..50"), Ok((0, 50)));
        assert!(parse_range("5..5").is_err());
        assert!(parse_range("5").is_err());
        assert!(parse_range("a..b").is_err());
    }
}
