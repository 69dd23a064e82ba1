//! `franzy fuzz` end to end: against `franzy serve` (which must survive with no finding),
//! against a served cluster with planted bugs (which must be found, saved and replayed),
//! and refusing addresses it must not fuzz.

mod common;
use common::Server;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `franzy serve ARGS` and the first broker's address.
fn serve(args: &[&str]) -> (Server, String) {
    let (server, bootstrap) = common::serve(args);
    let first = bootstrap.split(',').next().unwrap_or_default().to_string();
    (server, first)
}

/// Runs `franzy` with `args`, failing the test after `limit`: (success, stdout, stderr).
fn run(args: &[&str], limit: Duration) -> (bool, String, String) {
    common::run(args, None, limit)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("franzy-fuzz-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The numbers of the summary line `requests=N responses=R closed=C hangs=H findings=K`.
fn summary(stdout: &str) -> Vec<(String, u64)> {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("requests="))
        .unwrap_or_else(|| panic!("no summary line in {stdout:?}"));
    line.split_whitespace()
        .map(|pair| {
            let (key, value) = pair.split_once('=').expect("key=value");
            (key.to_string(), value.parse().expect("a number"))
        })
        .collect()
}

fn count(summary: &[(String, u64)], key: &str) -> u64 {
    summary
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no {key} in {summary:?}"))
}

fn findings(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn the_harness_survives_the_fuzzer_with_no_finding() {
    let (_server, bootstrap) = serve(&["--brokers", "3"]);
    let dir = scratch("harness");
    let (ok, stdout, stderr) = run(
        &[
            "fuzz",
            "-b",
            &bootstrap,
            "--seed",
            "1",
            "--requests",
            "4000",
            "--findings",
            dir.to_str().expect("utf-8 path"),
        ],
        Duration::from_secs(300),
    );
    let files = findings(&dir);
    let texts: Vec<String> = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap_or_default())
        .collect();
    assert!(
        ok,
        "findings in the harness:\n{}\n{stdout}\n{stderr}",
        texts.join("\n")
    );
    let numbers = summary(&stdout);
    assert_eq!(count(&numbers, "requests"), 4000, "{stdout}");
    assert_eq!(count(&numbers, "findings"), 0, "{stdout}");
    assert!(count(&numbers, "responses") > 1000, "{stdout}\n{stderr}");
    // Every conversation of the corpus reached the harness.
    for api in [
        "Produce",
        "Fetch",
        "JoinGroup",
        "SyncGroup",
        "InitProducerId",
        "EndTxn",
    ] {
        assert!(
            stderr.contains(&format!("{api} v")),
            "no {api} in the corpus:\n{stderr}"
        );
    }
    assert!(files.is_empty());
}

#[test]
fn planted_bugs_are_found_saved_and_replayed() {
    let (_server, bootstrap) = serve(&["--brokers", "1", "--plant-fuzz-bugs"]);
    let dir = scratch("planted");
    let (ok, stdout, stderr) = run(
        &[
            "fuzz",
            "-b",
            &bootstrap,
            "--seed",
            "7",
            "--requests",
            "3000",
            "--connections",
            "4",
            "--deadline",
            "1s",
            "--apis",
            "Heartbeat,ListOffsets",
            "--findings",
            dir.to_str().expect("utf-8 path"),
        ],
        Duration::from_secs(300),
    );
    assert!(!ok, "planted bugs not reported:\n{stdout}\n{stderr}");
    assert!(
        count(&summary(&stdout), "findings") >= 2,
        "{stdout}\n{stderr}"
    );
    let files = findings(&dir);
    let named = |kind: &str, api: &str| {
        files
            .iter()
            .find(|f| {
                let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                name.contains(kind) && name.contains(api)
            })
            .unwrap_or_else(|| panic!("no {kind} finding on {api} in {files:?}\n{stderr}"))
            .clone()
    };
    let closed = named("closed-without-response", "Heartbeat");
    let hang = named("hang", "ListOffsets");
    for (file, kind) in [(&closed, "closed-without-response"), (&hang, "hang")] {
        let text = std::fs::read_to_string(file).expect("finding file");
        assert!(text.contains("minimised: yes"), "{text}");
        let (ok, stdout, stderr) = run(
            &[
                "fuzz",
                "--replay",
                file.to_str().expect("utf-8 path"),
                "-b",
                &bootstrap,
                "--deadline",
                "1s",
            ],
            Duration::from_secs(60),
        );
        assert!(!ok, "{stdout}\n{stderr}");
        assert!(
            stdout.contains(&format!("reproduced: {kind}")),
            "{stdout}\n{stderr}"
        );
    }
    // Against a cluster without the planted bugs, the findings do not reproduce.
    let (_clean, clean_bootstrap) = serve(&["--brokers", "1"]);
    let (ok, stdout, stderr) = run(
        &[
            "fuzz",
            "--replay",
            closed.to_str().expect("utf-8 path"),
            "-b",
            &clean_bootstrap,
        ],
        Duration::from_secs(60),
    );
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("not reproduced"), "{stdout}");
}

#[test]
fn addresses_outside_test_networks_are_refused_unless_owned() {
    let (ok, _, stderr) = run(
        &["fuzz", "-b", "8.8.8.8:9092", "--requests", "1"],
        Duration::from_secs(30),
    );
    assert!(!ok);
    assert!(stderr.contains("--i-own-this-cluster"), "{stderr}");
    // A bad replay file is an error, not a panic.
    let dir = scratch("bad-replay");
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let file = dir.join("x.finding");
    std::fs::write(&file, "kind: hang\nrequest: zz\n").expect("write");
    let (ok, _, stderr) = run(
        &[
            "fuzz",
            "--replay",
            file.to_str().expect("utf-8"),
            "-b",
            "127.0.0.1:1",
        ],
        Duration::from_secs(30),
    );
    assert!(!ok);
    assert!(stderr.contains("hex"), "{stderr}");
}
