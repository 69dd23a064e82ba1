//! What the CLI's end-to-end tests share: the binary, a served cluster that stops with the
//! test, and a bounded run of `franzy`.

#![allow(dead_code)] // each test binary uses its own part

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `franzy` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_franzy");

/// A `franzy serve` process, killed when dropped.
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `franzy serve ARGS`; returns it with the bootstrap list it printed (checked to be
/// loopback addresses).
pub fn serve(args: &[&str]) -> (Server, String) {
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
        !bootstrap.is_empty() && bootstrap.split(',').all(|a| a.starts_with("127.0.0.1:")),
        "{bootstrap:?}"
    );
    (server, bootstrap)
}

/// Runs `franzy ARGS`, feeding `stdin` (none: stdin closed), failing the test after `limit`:
/// (success, stdout, stderr).
pub fn run(args: &[&str], stdin: Option<&[u8]>, limit: Duration) -> (bool, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("franzy runs");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(input)
            .expect("write stdin");
    }
    let start = Instant::now();
    while child.try_wait().expect("wait").is_none() {
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
