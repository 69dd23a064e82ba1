//! What the labs share: how a lab ends (`ok`, or its failure and a non-zero status) and the
//! bound on each of its steps.

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

/// Longest a step of a lab may take before the lab fails.
pub const STEP: Duration = Duration::from_secs(120);

/// Prints `ok` and succeeds, or prints why the lab `name` failed and fails.
pub fn finish(name: &str, result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => {
            println!("ok");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("{name} lab failed: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `future`, or an error naming `what` once it has taken longer than [`STEP`].
pub async fn within<F: Future>(what: &str, future: F) -> Result<F::Output, String> {
    tokio::time::timeout(STEP, future)
        .await
        .map_err(|_| format!("{what} took longer than {STEP:?}"))
}
