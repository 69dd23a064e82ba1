//! The fault lab end to end: a seed replays byte for byte, the checker catches every
//! planted bug, and a few seeds of random faults find nothing wrong with franzy's clients.
//! Each run builds its own current-thread runtime with a paused clock (`run_blocking`), so
//! these are plain `#[test]`s. `FRANZY_SEED` adds a seed to the determinism test.

use franzy_harness::lab::{self, LabOptions, Schedule, Workload};
use franzy_harness::PlantedBug;

/// Records per run: enough for every fault kind to land, few enough for a debug build.
const RECORDS: usize = 800;

fn run(options: &LabOptions) -> lab::LabReport {
    lab::run_blocking(options).unwrap_or_else(|e| panic!("the lab ran: {e}"))
}

#[test]
fn the_same_seed_gives_the_same_trace_and_findings() {
    let mut seeds = vec![1, 2, 3];
    if let Some(seed) = std::env::var("FRANZY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        seeds.push(seed);
    }
    for seed in seeds {
        let options = LabOptions::seeded(seed, RECORDS, Workload::Idempotent);
        let first = run(&options);
        let second = run(&options);
        assert_eq!(
            first.to_string(),
            second.to_string(),
            "seed {seed}:\n{}",
            first.schedule
        );
        assert_eq!(first.trace, second.trace, "seed {seed}");
        assert_eq!(first.history, second.history, "seed {seed}");
        assert!(
            first.trace.1 > 100,
            "the trace covers the run: {:?}",
            first.trace
        );
    }
    let a = run(&LabOptions::seeded(1, RECORDS, Workload::Idempotent));
    let b = run(&LabOptions::seeded(2, RECORDS, Workload::Idempotent));
    assert_ne!(a.trace, b.trace, "different seeds, different runs");
}

#[test]
fn a_printed_schedule_replays_the_same_run() {
    let options = LabOptions::seeded(4, RECORDS, Workload::Idempotent);
    let report = run(&options);
    let replayed = LabOptions {
        schedule: Schedule::parse(&report.schedule.to_string()).expect("parses"),
        plant: None,
    };
    assert_eq!(run(&replayed).to_string(), report.to_string());
}

#[test]
fn random_faults_find_no_anomaly_in_the_idempotent_workload() {
    for seed in 10..14 {
        let report = run(&LabOptions::seeded(seed, RECORDS, Workload::Idempotent));
        assert!(
            !report.failed(),
            "{report}\n{}\n{:#?}\n{}",
            report.findings.summary(),
            report.findings.notes,
            report.schedule
        );
        assert!(report.acked > RECORDS / 2, "{report}");
    }
}

/// A lab that cannot fail proves nothing: each planted bug is caught, as its own class.
#[test]
fn the_checker_catches_every_planted_bug() {
    let quiet = Schedule {
        seed: 5,
        records: RECORDS,
        workload: Workload::Idempotent,
        faults: Vec::new(),
    };
    let clean = run(&LabOptions {
        schedule: quiet.clone(),
        plant: None,
    });
    assert!(!clean.failed(), "{clean}");
    assert_eq!(clean.acked, RECORDS);
    for bug in PlantedBug::ALL {
        let report = run(&LabOptions {
            schedule: quiet.clone(),
            plant: Some(bug),
        });
        let findings = &report.findings;
        let fired = report.plant.map_or(0, |(_, fired)| fired);
        assert!(fired > 0, "{bug} acted");
        let caught = match bug {
            PlantedBug::DuplicateAppend => findings.duplicated,
            PlantedBug::DropAcked => findings.lost,
            PlantedBug::Reorder => findings.reordered.min(findings.misplaced),
            _ => 0,
        };
        assert!(
            caught > 0 && report.failed(),
            "{bug}: {report} ({})",
            findings.summary()
        );
    }
    // Under faults too.
    let report = run(&LabOptions {
        plant: Some(PlantedBug::DropAcked),
        ..LabOptions::seeded(6, RECORDS, Workload::Idempotent)
    });
    assert!(report.findings.lost > 0, "{report}");
}

#[test]
fn workloads_without_their_features_say_so() {
    for workload in [Workload::Transactional, Workload::Group] {
        if workload.available() {
            continue;
        }
        let error =
            lab::run_blocking(&LabOptions::seeded(1, 10, workload)).expect_err("not available yet");
        assert!(error.to_string().contains("not available yet"), "{error}");
    }
}

/// A real bug the lab found: an epoch bump numbers afresh a batch whose earlier attempt is
/// already in the log, and the broker writes it again (tests/lab/epoch-bump-duplicate.schedule
/// says how). Un-ignore once the producer resolves or fails such batches before a bump.
#[test]
#[ignore = "known bug in the idempotent producer's epoch bump (DESIGN.md, fault lab)"]
fn an_epoch_bump_does_not_write_a_batch_of_unknown_outcome_twice() {
    let text = include_str!("../../lab/epoch-bump-duplicate.schedule");
    let schedule = Schedule::parse(text).expect("the saved schedule parses");
    let report = run(&LabOptions {
        schedule,
        plant: None,
    });
    assert!(
        !report.failed(),
        "{report} ({})\n{:#?}",
        report.findings.summary(),
        report.findings.notes
    );
}
