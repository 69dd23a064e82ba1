//! The `franzy` binary end to end: `serve` in one process, `produce` and `consume` in
//! others, as a user would run them.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_franzy");

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(args: &[&str]) -> (Server, String) {
    let mut child = Command::new(BIN)
        .arg("serve")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("franzy serve starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let server = Server(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("bootstrap line");
    let bootstrap = line.trim().to_string();
    assert!(
        bootstrap.split(',').all(|a| a.starts_with("127.0.0.1:")),
        "{bootstrap:?}"
    );
    (server, bootstrap)
}

/// Runs `franzy` with `args`, feeding `stdin`, failing the test after `limit`.
fn run(args: &[&str], stdin: &[u8], limit: Duration) -> (bool, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("franzy runs");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(stdin)
        .expect("write stdin");
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("franzy {args:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("output");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
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
