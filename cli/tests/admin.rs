//! `franzy topics`, `groups` and `configs` end to end: against a served cluster (`-b`), and
//! against the embedded harness when `-b` is absent.

mod common;
use common::serve;
use std::time::Duration;

use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(120);

/// Runs `franzy` with `args` and `stdin`; (success, stdout, stderr). Fails after [`LIMIT`].
fn run(args: &[&str], stdin: &[u8]) -> (bool, String, String) {
    common::run(args, Some(stdin), LIMIT)
}

fn json(args: &[&str]) -> Value {
    let (ok, stdout, stderr) = run(args, b"");
    assert!(ok, "franzy {args:?} failed: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{stdout:?} is not JSON: {e}"))
}

#[test]
fn topics_are_created_listed_described_and_deleted_with_per_topic_errors() {
    let (_server, b) = serve(&["--brokers", "3", "--topic", "orders:2", "--no-auto-create"]);
    let (ok, stdout, stderr) = run(
        &[
            "topics",
            "create",
            "-b",
            &b,
            "fresh",
            "orders",
            "-p",
            "3",
            "-c",
            "retention.ms=60000",
        ],
        b"",
    );
    assert!(!ok, "an existing topic fails the command");
    assert!(stdout.contains("created fresh (3 partitions"), "{stdout}");
    assert!(
        stderr.contains("orders") && stderr.contains("TopicAlreadyExists"),
        "{stderr}"
    );
    let listed = json(&["topics", "list", "-b", &b, "--json"]);
    let names: Vec<&str> = listed
        .as_array()
        .expect("an array")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, vec!["fresh", "orders"]);
    let described = json(&["topics", "describe", "fresh", "-b", &b, "--json"]);
    assert_eq!(described[0]["partitions"].as_array().map(Vec::len), Some(3));
    assert!(described[0]["id"].as_str().is_some_and(|id| id.len() == 36));
    let (ok, stdout, _) = run(&["topics", "describe", "-b", &b, "orders"], b"");
    assert!(
        ok && stdout.contains("Topic: orders\tPartition: 1\tLeader: "),
        "{stdout}"
    );
    let (ok, stdout, stderr) = run(&["topics", "delete", "-b", &b, "fresh"], b"");
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), "deleted fresh");
    let listed = json(&["topics", "list", "-b", &b, "--json"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
}

#[test]
fn configs_are_set_and_read_back() {
    let (_server, b) = serve(&["--brokers", "1", "--topic", "orders:1"]);
    let (ok, stdout, stderr) = run(
        &[
            "configs",
            "set",
            "-b",
            &b,
            "--topic",
            "orders",
            "retention.ms=1234",
            "cleanup.policy=compact",
        ],
        b"",
    );
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), "updated: topic orders");
    let changed = json(&[
        "configs",
        "get",
        "-b",
        &b,
        "--topic",
        "orders",
        "--changed",
        "--json",
    ]);
    let pairs: Vec<(String, String)> = changed
        .as_array()
        .expect("an array")
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap_or_default().to_string(),
                e["value"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert!(
        pairs.contains(&("retention.ms".into(), "1234".into())),
        "{pairs:?}"
    );
    assert!(
        pairs.contains(&("cleanup.policy".into(), "compact".into())),
        "{pairs:?}"
    );
    let (ok, _, stderr) = run(
        &[
            "configs",
            "set",
            "-b",
            &b,
            "--topic",
            "orders",
            "retention.ms=soon",
        ],
        b"",
    );
    assert!(!ok);
    assert!(stderr.contains("InvalidConfig"), "{stderr}");
    let broker = json(&["configs", "get", "-b", &b, "--broker", "0", "--json"]);
    assert!(broker
        .as_array()
        .expect("an array")
        .iter()
        .any(|e| e["name"] == "broker.id" && e["value"] == "0"));
    // Cluster-wide dynamic broker defaults.
    let (ok, _, stderr) = run(
        &[
            "configs",
            "set",
            "-b",
            &b,
            "--broker-defaults",
            "log.retention.ms=1000",
        ],
        b"",
    );
    assert!(ok, "{stderr}");
    let defaults = json(&["configs", "get", "-b", &b, "--broker-defaults", "--json"]);
    assert!(
        defaults
            .as_array()
            .expect("an array")
            .iter()
            .any(|e| e["name"] == "log.retention.ms" && e["value"] == "1000"),
        "{defaults}"
    );
}

#[test]
fn a_group_s_offsets_are_reset_and_its_lag_shown() {
    let (_server, b) = serve(&["--brokers", "3", "--topic", "orders:2"]);
    let input: String = (0..10).map(|i| format!("value-{i}\n")).collect();
    let (ok, _, stderr) = run(
        &["produce", "-b", &b, "-t", "orders", "-p", "0"],
        input.as_bytes(),
    );
    assert!(ok, "produce failed: {stderr}");
    // A dry run shows and commits nothing.
    let (ok, stdout, stderr) = run(
        &[
            "groups",
            "reset-offsets",
            "-b",
            &b,
            "readers",
            "-t",
            "orders",
            "--to-offset",
            "4",
        ],
        b"",
    );
    assert!(ok, "{stderr}");
    assert!(stdout.contains("dry run"), "{stdout}");
    let lag = json(&["groups", "lag", "-b", &b, "readers", "--json"]);
    assert_eq!(
        lag.as_array().map(Vec::len),
        Some(0),
        "nothing committed yet"
    );
    let reset = json(&[
        "groups",
        "reset-offsets",
        "-b",
        &b,
        "readers",
        "-t",
        "orders",
        "--to-offset",
        "4",
        "--execute",
        "--json",
    ]);
    assert_eq!(reset["executed"], true);
    let lag = json(&["groups", "lag", "-b", &b, "readers", "--json"]);
    let rows: Vec<(i64, Option<i64>, i64, Option<i64>)> = lag
        .as_array()
        .expect("an array")
        .iter()
        .map(|l| {
            (
                l["partition"].as_i64().unwrap_or(-1),
                l["committed"].as_i64(),
                l["end"].as_i64().unwrap_or(-1),
                l["lag"].as_i64(),
            )
        })
        .collect();
    // Partition 1 is empty: offset 4 is clamped to its end, 0.
    assert_eq!(
        rows,
        vec![(0, Some(4), 10, Some(6)), (1, Some(0), 0, Some(0))]
    );
    let (ok, stdout, _) = run(&["groups", "lag", "-b", &b, "readers"], b"");
    assert!(ok && stdout.contains("LOG-END-OFFSET"), "{stdout}");
    let groups = json(&["groups", "list", "-b", &b, "--json"]);
    assert!(
        groups
            .as_array()
            .expect("an array")
            .iter()
            .any(|g| g["group"] == "readers" && g["state"] == "Empty"),
        "{groups}"
    );
    let (ok, _, stderr) = run(&["groups", "reset-offsets", "-b", &b, "readers"], b"");
    assert!(!ok && stderr.contains("--to-earliest"), "{stderr}");
}

#[test]
fn without_b_the_commands_run_against_an_embedded_harness() {
    let (ok, stdout, stderr) = run(&["topics", "create", "scratch", "-p", "2"], b"");
    assert!(ok, "{stderr}");
    assert!(stderr.contains("embedded harness"), "{stderr}");
    assert!(stdout.contains("created scratch (2 partitions"), "{stdout}");
}
