//! The `franzy` binary end to end: `serve` in one process, `produce` and `consume` in
//! others, as a user would run them.

mod common;
use common::{serve, BIN};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Runs `franzy` with `args`, feeding `stdin`, failing the test after `limit`.
fn run(args: &[&str], stdin: &[u8], limit: Duration) -> (bool, String, String) {
    common::run(args, Some(stdin), limit)
}

#[test]
fn produce_then_consume_through_a_served_cluster() {
    let (_server, bootstrap) = serve(&["--brokers", "3", "--topic", "orders:6"]);
    let input: String = (0..500)
        .map(|i| format!("key-{}:value-{i}\n", i % 37))
        .collect();
    let limit = Duration::from_secs(60);
    let (ok, _, stderr) = run(
        &["produce", "-b", &bootstrap, "-t", "orders", "-K", ":"],
        input.as_bytes(),
        limit,
    );
    assert!(ok, "produce failed: {stderr}");
    assert!(
        stderr.contains("500 records delivered, 0 failed"),
        "{stderr}"
    );
    let (ok, stdout, stderr) = run(
        &["consume", "-b", &bootstrap, "-t", "orders", "-e", "-K", ":"],
        b"",
        limit,
    );
    assert!(ok, "consume failed: {stderr}");
    let mut got: Vec<&str> = stdout.lines().collect();
    let mut want: Vec<&str> = input.lines().collect();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want);
    // -p and -o: partition 0 from offset 1 is partition 0's records minus its first.
    let (ok, all_p0, _) = run(
        &["consume", "-b", &bootstrap, "-t", "orders", "-e", "-p", "0"],
        b"",
        limit,
    );
    assert!(ok);
    let (ok, from_1, _) = run(
        &[
            "consume", "-b", &bootstrap, "-t", "orders", "-e", "-p", "0", "-o", "1",
        ],
        b"",
        limit,
    );
    assert!(ok);
    assert_eq!(
        all_p0.lines().skip(1).collect::<Vec<_>>(),
        from_1.lines().collect::<Vec<_>>()
    );
}

#[test]
fn bad_arguments_are_errors_not_panics() {
    let limit = Duration::from_secs(30);
    let (ok, _, stderr) = run(&["serve", "--topic", "orders"], b"", limit);
    assert!(!ok && stderr.contains("NAME:PARTITIONS"), "{stderr}");
    let (ok, _, stderr) = run(
        &[
            "produce",
            "-b",
            "127.0.0.1:1",
            "-t",
            "t",
            "-X",
            "linger.ms=soon",
        ],
        b"",
        limit,
    );
    assert!(!ok && stderr.contains("linger.ms"), "{stderr}");
    let (ok, _, stderr) = run(
        &["consume", "-b", "127.0.0.1:1", "-t", "t", "-o", "middle"],
        b"",
        limit,
    );
    assert!(!ok && stderr.contains("middle"), "{stderr}");
    // Consume shares produce's -X, and a bad format is refused before connecting.
    let (ok, _, stderr) = run(
        &[
            "consume",
            "-b",
            "127.0.0.1:1",
            "-t",
            "t",
            "-X",
            "fetch.max.wait.ms=soon",
        ],
        b"",
        limit,
    );
    assert!(!ok && stderr.contains("fetch.max.wait.ms"), "{stderr}");
    for (format, names) in [("%x", "%x"), ("%s %", "lone %"), ("\\x", "\\x")] {
        let (ok, _, stderr) = run(
            &["consume", "-b", "127.0.0.1:1", "-t", "t", "-f", format],
            b"",
            limit,
        );
        assert!(!ok && stderr.contains(names), "{format}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let (ok, _, stderr) = run(
        &["produce", "-b", "127.0.0.1:1", "-t", "t", "-H", "=v"],
        b"",
        limit,
    );
    assert!(!ok && stderr.contains("NAME=VALUE"), "{stderr}");
    // Transactions: --txn-records needs a transactional id, and a transactional id needs
    // idempotence; both are refused before connecting.
    let (ok, _, stderr) = run(
        &[
            "produce",
            "-b",
            "127.0.0.1:1",
            "-t",
            "t",
            "--txn-records",
            "5",
        ],
        b"",
        limit,
    );
    assert!(!ok && stderr.contains("transactional.id"), "{stderr}");
    let (ok, _, stderr) = run(
        &[
            "produce",
            "-b",
            "127.0.0.1:1",
            "-t",
            "t",
            "-X",
            "transactional.id=tx",
            "-X",
            "enable.idempotence=false",
        ],
        b"",
        limit,
    );
    assert!(!ok && stderr.contains("transactional.id"), "{stderr}");
    // With -G the group assigns partitions and committed offsets decide where to start.
    for (args, names) in [
        (
            &["-t", "t", "-G", "g", "-o", "17"][..],
            "-o takes beginning or end",
        ),
        (&["-t", "t", "-G", "g", "-p", "0"][..], "-p and -G"),
        (
            // As Java: the KIP-848 protocol refuses the classic keys set explicitly.
            &[
                "-t",
                "t",
                "-G",
                "g",
                "-X",
                "group.protocol=consumer",
                "-X",
                "session.timeout.ms=6000",
            ][..],
            "session.timeout.ms cannot be set when group.protocol=CONSUMER",
        ),
        (&["-t", "^(", "-G", "g"][..], "bad topic pattern"),
    ] {
        let mut argv = vec!["consume", "-b", "127.0.0.1:1"];
        argv.extend_from_slice(args);
        let (ok, _, stderr) = run(&argv, b"", limit);
        assert!(!ok && stderr.contains(names), "{args:?}: {stderr}");
    }
}

#[test]
fn bench_runs_against_the_embedded_harness() {
    let limit = Duration::from_secs(120);
    let (ok, stdout, stderr) = run(
        &[
            "bench", "produce", "-t", "b", "--count", "2000", "--size", "10",
        ],
        b"",
        limit,
    );
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("produce: 2000 records of 10 bytes") && stdout.contains("p99"),
        "{stdout}"
    );
    // The summary of the client's own statistics.
    assert!(
        stdout.contains("client stats: ") && stdout.contains(" retries, 0 errors"),
        "{stdout}"
    );
    let (ok, stdout, stderr) = run(
        &[
            "bench",
            "produce",
            "-t",
            "b",
            "--count",
            "2000",
            "--size",
            "10",
            "--stats-interval-ms",
            "1",
        ],
        b"",
        limit,
    );
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("snapshots to the statistics callback"),
        "{stdout}"
    );
    let (ok, stdout, stderr) = run(
        &[
            "bench", "consume", "-t", "b", "--count", "2000", "--size", "10",
        ],
        b"",
        limit,
    );
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("consume: 2000 records (20000 value bytes)"),
        "{stdout}"
    );
}

#[test]
fn consume_formats_records_as_kcat_does() {
    let (_server, bootstrap) = serve(&["--topic", "fmt:1"]);
    let limit = Duration::from_secs(60);
    let (ok, _, stderr) = run(
        &[
            "produce",
            "-b",
            &bootstrap,
            "-t",
            "fmt",
            "-K",
            ":",
            "-H",
            "trace=abc",
            "-H",
            "gone",
        ],
        b"k1:v1\nk2:\nnokey\n",
        limit,
    );
    assert!(ok, "produce failed: {stderr}");
    let (ok, stdout, stderr) = run(
        &[
            "consume",
            "-b",
            &bootstrap,
            "-t",
            "fmt",
            "-e",
            "-X",
            "fetch.max.wait.ms=50",
            "-f",
            "%t/%p@%o %k=%s %h\\n",
        ],
        b"",
        limit,
    );
    assert!(ok, "consume failed: {stderr}");
    assert_eq!(
        stdout,
        "fmt/0@0 k1=v1 trace=abc,gone=NULL\n\
         fmt/0@1 k2= trace=abc,gone=NULL\n\
         fmt/0@2 =nokey trace=abc,gone=NULL\n"
    );
    assert!(
        stderr.contains("% Reached end of topic fmt [0] at offset 3: exiting"),
        "{stderr}"
    );
    // Lengths (-1 for null), timestamps, -Z, %% and the %v alias.
    let (ok, stdout, stderr) = run(
        &[
            "consume",
            "-b",
            &bootstrap,
            "-t",
            "fmt",
            "-e",
            "-Z",
            "-f",
            "%k|%K|%v|%S|100%%|%T\\n",
        ],
        b"",
        limit,
    );
    assert!(ok, "consume failed: {stderr}");
    let lines: Vec<Vec<&str>> = stdout.lines().map(|l| l.split('|').collect()).collect();
    let fields: Vec<&[&str]> = lines.iter().map(|l| &l[..5]).collect();
    assert_eq!(
        fields,
        [
            &["k1", "2", "v1", "2", "100%"][..],
            &["k2", "2", "", "0", "100%"][..],
            &["NULL", "-1", "nokey", "5", "100%"][..],
        ],
        "{stdout}"
    );
    for line in &lines {
        let timestamp: i64 = line[5].parse().expect("a timestamp in ms");
        assert!(timestamp > 1_600_000_000_000, "{stdout}");
    }
}

#[test]
fn consume_errors_are_reported_and_a_stopped_partition_ends_exit_at_end() {
    let (_server, bootstrap) = serve(&["--topic", "short:2"]);
    let limit = Duration::from_secs(60);
    let (ok, _, stderr) = run(
        &["produce", "-b", &bootstrap, "-t", "short", "-p", "0"],
        b"a\nb\n",
        limit,
    );
    assert!(ok, "produce failed: {stderr}");
    // Offset 1000 is past both partitions' ends: each one fails once, is reported, and
    // counts as done for -e instead of leaving the command waiting forever.
    let (ok, stdout, stderr) = run(
        &[
            "consume",
            "-b",
            &bootstrap,
            "-t",
            "short",
            "-e",
            "-o",
            "1000",
            "-X",
            "auto.offset.reset=none",
        ],
        b"",
        limit,
    );
    assert!(!ok, "{stderr}");
    assert_eq!(stdout, "");
    for partition in 0..2 {
        assert!(
            stderr.contains(&format!(
                "% ERROR: offset 1000 out of range for short/{partition}"
            )),
            "{stderr}"
        );
    }
    assert!(stderr.contains("stopped on errors"), "{stderr}");
}

/// A running `franzy consume` whose stdout lines arrive on a channel as it prints them.
struct Consume {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
}

impl Consume {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .arg("consume")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("franzy consume starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");
        // A small channel: while the test does not take lines, the reader stops reading and
        // the pipe fills, so the test can signal a consume that is blocked writing.
        let (line_tx, lines) = mpsc::sync_channel(16);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (stderr_tx, stderr_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            let _ = stderr_tx.send(text);
        });
        Self {
            child,
            lines,
            stderr: stderr_rx,
        }
    }

    /// The next `n` lines, failing the test if they do not all come by `deadline`.
    fn lines(&mut self, n: usize, deadline: Instant) -> Vec<String> {
        let mut got = Vec::with_capacity(n);
        while got.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => got.push(line),
                Err(_) => {
                    let _ = self.child.kill();
                    panic!(
                        "consume printed {} of {n} lines before the deadline (or exited); \
                         stderr: {}",
                        got.len(),
                        self.stderr_text()
                    );
                }
            }
        }
        got
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args(["-s", name, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -s {name} failed");
    }

    /// Waits for the exit, taking the lines printed meanwhile (so that a full pipe does not
    /// block it), and returns its status and every line left; fails the test at `deadline`.
    fn exit(&mut self, deadline: Instant) -> (ExitStatus, Vec<String>) {
        let mut rest = Vec::new();
        loop {
            rest.extend(self.lines.try_iter());
            if let Some(status) = self.child.try_wait().expect("wait") {
                rest.extend(self.lines.iter());
                return (status, rest);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("consume did not exit; stderr: {}", self.stderr_text());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn stderr_text(&self) -> String {
        self.stderr
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_default()
    }
}

impl Drop for Consume {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Without -e, records are printed as they arrive, not when the command ends; a signal
/// ends the command with status 0 and nothing received is lost.
fn consume_streams_until(signal: &str) {
    let topic = format!("live-{}", signal.to_lowercase());
    let (_server, bootstrap) = serve(&["--topic", &format!("{topic}:3")]);
    let limit = Duration::from_secs(60);
    let produce = |from: usize, to: usize| {
        let input: String = (from..to).map(|i| format!("k{i}:v{i}\n")).collect();
        let (ok, _, stderr) = run(
            &["produce", "-b", &bootstrap, "-t", &topic, "-K", ":"],
            input.as_bytes(),
            limit,
        );
        assert!(ok, "produce failed: {stderr}");
    };
    produce(0, 100);
    let mut consume = Consume::start(&["-b", &bootstrap, "-t", &topic, "-K", ":"]);
    let mut got = consume.lines(100, Instant::now() + limit);
    assert!(
        consume.child.try_wait().expect("wait").is_none(),
        "consume exited without -e"
    );
    // Records produced while it runs show up while it runs.
    produce(100, 150);
    got.extend(consume.lines(50, Instant::now() + limit));
    assert!(consume.child.try_wait().expect("wait").is_none());
    // Signalled while a larger run is flowing (its stdout pipe full, as the test takes no
    // lines meanwhile): it stops between records and flushes, so what it printed is whole
    // lines, each once.
    produce(150, 20_150);
    got.extend(consume.lines(1, Instant::now() + limit));
    consume.signal(signal);
    let (status, rest) = consume.exit(Instant::now() + limit);
    assert_eq!(
        status.code(),
        Some(0),
        "exit after SIG{signal}; stderr: {}",
        consume.stderr_text()
    );
    got.extend(rest);
    let mut seen = std::collections::HashSet::new();
    for line in &got {
        let (key, value) = line.split_once(':').expect("key:value");
        assert_eq!(key.strip_prefix('k'), value.strip_prefix('v'), "{line:?}");
        assert!(seen.insert(line.clone()), "{line:?} printed twice");
    }
    for i in 0..150 {
        assert!(seen.contains(&format!("k{i}:v{i}")), "k{i} missing");
    }
}

#[cfg(unix)]
#[test]
fn consume_streams_and_stops_cleanly_on_sigterm() {
    consume_streams_until("TERM");
}

#[cfg(unix)]
#[test]
fn consume_streams_and_stops_cleanly_on_sigint() {
    consume_streams_until("INT");
}

/// `consume -G`: a signal commits what was printed and leaves the group, so that the next
/// member of the group starts at once (not after the first one's session timeout, a minute
/// here) and reads only what came after.
#[cfg(unix)]
#[test]
fn consume_in_a_group_commits_and_leaves_on_sigint() {
    let (_server, bootstrap) = serve(&["--topic", "grouped:3"]);
    let limit = Duration::from_secs(60);
    let produce = |from: usize, to: usize| {
        let input: String = (from..to).map(|i| format!("k{i}:v{i}\n")).collect();
        let (ok, _, stderr) = run(
            &["produce", "-b", &bootstrap, "-t", "grouped", "-K", ":"],
            input.as_bytes(),
            limit,
        );
        assert!(ok, "produce failed: {stderr}");
    };
    produce(0, 100);
    let member = [
        "-b",
        &bootstrap,
        "-t",
        "grouped",
        "-G",
        "cli-group",
        "-K",
        ":",
        "-X",
        "session.timeout.ms=60000",
    ];
    let mut first = Consume::start(&member);
    let mut got = first.lines(100, Instant::now() + limit);
    first.signal("INT");
    let (status, rest) = first.exit(Instant::now() + limit);
    assert_eq!(
        status.code(),
        Some(0),
        "exit after SIGINT; stderr: {}",
        first.stderr_text()
    );
    got.extend(rest);
    got.sort();
    let mut expected: Vec<String> = (0..100).map(|i| format!("k{i}:v{i}")).collect();
    expected.sort();
    assert_eq!(got, expected);
    produce(100, 110);
    // Had the first member not left, this join would wait for its session to end (60 s,
    // past this run's bound); had it not committed, this member would read from 0.
    let mut args = vec!["consume", "-e"];
    args.extend(member);
    let (ok, stdout, stderr) = run(&args, b"", Duration::from_secs(40));
    assert!(ok, "the second member: {stderr}");
    let mut second: Vec<&str> = stdout.lines().collect();
    second.sort_unstable();
    let mut after: Vec<String> = (100..110).map(|i| format!("k{i}:v{i}")).collect();
    after.sort();
    assert_eq!(second, after, "stderr: {stderr}");
}

#[test]
fn serve_takes_the_harness_limits_as_flags() {
    use std::net::TcpStream;
    let (_server, bootstrap) = serve(&[
        "--brokers",
        "1",
        "--max-frame-size",
        "4KiB",
        "--queued-max-request-bytes",
        "1MiB",
        "--idle-timeout",
        "1s",
        "--max-waiting-requests",
        "10",
        "--record-limit",
        "100",
    ]);
    let address = bootstrap.split(',').next().expect("one broker");
    // A frame announced past --max-frame-size closes the connection at once.
    let mut big = TcpStream::connect(address).expect("connect");
    big.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    big.write_all(&8192i32.to_be_bytes()).expect("write");
    let mut rest = [0u8; 16];
    assert_eq!(big.read(&mut rest).map_err(|e| e.kind()), Ok(0));
    // Half a frame is dropped after --idle-timeout.
    let mut half = TcpStream::connect(address).expect("connect");
    half.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    half.write_all(&100i32.to_be_bytes()).expect("write");
    half.write_all(&[0; 10]).expect("write");
    let started = Instant::now();
    assert_eq!(half.read(&mut rest).map_err(|e| e.kind()), Ok(0));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(15),
        "{waited:?}"
    );
    // And a bad value is an error, not a panic.
    let (ok, _, stderr) = run(
        &["serve", "--idle-timeout", "30"],
        b"",
        Duration::from_secs(30),
    );
    assert!(!ok && stderr.contains("needs a unit"), "{stderr}");
}

#[test]
fn produce_in_transactions_commits_at_the_end_or_every_n_records_and_aborts_on_sigint() {
    let (_server, bootstrap) = serve(&["--brokers", "3", "--topic", "ledger:2"]);
    let limit = Duration::from_secs(60);
    let produce = |id: &str, extra: &[&str], input: &str| {
        let id_property = format!("transactional.id={id}");
        let mut args = vec![
            "produce",
            "-b",
            &bootstrap,
            "-t",
            "ledger",
            "-X",
            &id_property,
        ];
        args.extend_from_slice(extra);
        run(&args, input.as_bytes(), limit)
    };
    // The whole input in one transaction.
    let (ok, _, stderr) = produce("cli-1", &[], "a\nb\nc\n");
    assert!(ok, "produce failed: {stderr}");
    assert!(
        stderr.contains("3 records committed in 1 transactions"),
        "{stderr}"
    );
    // One transaction every 2 records, the rest at the end.
    let (ok, _, stderr) = produce("cli-2", &["--txn-records", "2"], "d\ne\nf\ng\nh\n");
    assert!(ok, "produce failed: {stderr}");
    assert!(
        stderr.contains("5 records committed in 3 transactions"),
        "{stderr}"
    );
    // Interrupted with the input still open: the transaction is aborted, the exit non-zero.
    let mut interrupted = Command::new(BIN)
        .args([
            "produce",
            "-b",
            &bootstrap,
            "-t",
            "ledger",
            "-X",
            "transactional.id=cli-3",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("franzy produce starts");
    let mut stdin = interrupted.stdin.take().expect("piped stdin");
    stdin.write_all(b"x\ny\n").expect("write stdin");
    stdin.flush().expect("flush stdin");
    std::thread::sleep(Duration::from_secs(1));
    let status = Command::new("kill")
        .args(["-s", "INT", &interrupted.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let start = Instant::now();
    let exit = loop {
        if let Some(status) = interrupted.try_wait().expect("wait") {
            break status;
        }
        assert!(start.elapsed() < limit, "produce did not exit on SIGINT");
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(stdin);
    let mut stderr = String::new();
    let _ = interrupted
        .stderr
        .take()
        .expect("piped stderr")
        .read_to_string(&mut stderr);
    assert!(!exit.success(), "an interrupted transaction exits non-zero");
    assert!(stderr.contains("interrupted"), "{stderr}");
    // read_committed: exactly the committed lines, never the aborted ones.
    let (ok, stdout, stderr) = run(
        &[
            "consume",
            "-b",
            &bootstrap,
            "-t",
            "ledger",
            "-e",
            "-X",
            "isolation.level=read_committed",
        ],
        b"",
        limit,
    );
    assert!(ok, "consume failed: {stderr}");
    let mut got: Vec<&str> = stdout.lines().collect();
    got.sort_unstable();
    assert_eq!(got, vec!["a", "b", "c", "d", "e", "f", "g", "h"]);
}
