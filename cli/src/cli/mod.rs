//! The `franzy` subcommands. Each one that talks to a cluster takes `-b BOOTSTRAP`; without
//! it, it starts an embedded harness (3 brokers on loopback) and runs against that.

pub mod admin;
pub mod bench;
pub mod consume;
pub mod format;
pub mod fuzz;
pub mod lab;
pub mod produce;
pub mod serve;

use franzy::Config;
use franzy_harness::Cluster;

/// Options shared by the client subcommands.
#[derive(clap::Args, Debug, Clone)]
pub struct ClientArgs {
    /// Bootstrap servers (host:port,...). Without it, an embedded 3-broker harness is used.
    #[arg(short = 'b', long = "bootstrap")]
    pub bootstrap: Option<String>,
    /// The topic.
    #[arg(short = 't', long)]
    pub topic: String,
    /// A Kafka client property, as key=value (repeatable), e.g. -X linger.ms=5.
    #[arg(short = 'X', value_name = "KEY=VALUE")]
    pub properties: Vec<String>,
}

/// How a subcommand failed.
#[derive(Debug)]
pub enum Failure {
    /// Print this as `franzy: MESSAGE`.
    Message(String),
    /// Already reported on stderr (kcat style, `% ERROR: ...`); only the exit status is left.
    Reported,
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Self::Message(message)
    }
}

/// SIGINT (Ctrl-C) and SIGTERM, watched from creation on: a signal that arrives before
/// [`Interrupt::recv`] is awaited is not lost, and neither signal kills the process any more.
pub struct Interrupt {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(not(unix))]
    ctrl_c: std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<()>> + Send>>,
}

impl Interrupt {
    /// Starts watching. Must be called within a tokio runtime.
    pub fn watch() -> Result<Self, String> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt())
                    .map_err(|e| format!("cannot watch SIGINT: {e}"))?,
                terminate: signal(SignalKind::terminate())
                    .map_err(|e| format!("cannot watch SIGTERM: {e}"))?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {
                ctrl_c: Box::pin(tokio::signal::ctrl_c()),
            })
        }
    }

    /// Waits for the next signal. Cancel-safe.
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => {}
                _ = self.terminate.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = self.ctrl_c.as_mut().await;
            self.ctrl_c = Box::pin(tokio::signal::ctrl_c());
        }
    }
}

/// A cluster to talk to: the one named by `-b`, or an embedded harness kept alive as long
/// as this value.
pub struct Target {
    /// What to put in `bootstrap.servers`.
    pub bootstrap: String,
    /// The embedded harness, when there is one.
    pub embedded: Option<Cluster>,
}

impl Target {
    /// Resolves `-b`, starting an embedded harness with `topic` (`partitions` partitions)
    /// when it is absent.
    pub async fn resolve(args: &ClientArgs, partitions: i32) -> Result<Self, String> {
        match &args.bootstrap {
            Some(bootstrap) => Ok(Self {
                bootstrap: bootstrap.clone(),
                embedded: None,
            }),
            None => {
                let cluster = Cluster::builder()
                    .brokers(3)
                    .topic(args.topic.clone(), partitions)
                    .build()
                    .await
                    .map_err(|e| format!("cannot start the embedded harness: {e}"))?;
                eprintln!(
                    "franzy: no -b given; using an embedded harness at {}",
                    cluster.bootstrap()
                );
                Ok(Self {
                    bootstrap: cluster.bootstrap(),
                    embedded: Some(cluster),
                })
            }
        }
    }

    /// A client configuration for this target with the `-X` properties applied.
    pub fn config(&self, args: &ClientArgs) -> Result<Config, String> {
        let mut config = Config::new(&self.bootstrap).client_id("franzy-cli".to_string());
        for property in &args.properties {
            let (key, value) = property
                .split_once('=')
                .ok_or_else(|| format!("-X {property:?} is not KEY=VALUE"))?;
            config = config.set(key, value).map_err(|e| e.to_string())?;
        }
        Ok(config)
    }

    /// Stops the embedded harness, if any.
    pub async fn shutdown(self) {
        if let Some(cluster) = self.embedded {
            cluster.shutdown().await;
        }
    }
}

/// Parses a kcat-style delimiter: `\t`, `\n`, `\r`, `\xNN` or literal text.
pub fn parse_delimiter(spec: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let bytes = spec.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 1 < bytes.len() {
            match bytes[i + 1] {
                b't' => out.push(b'\t'),
                b'n' => out.push(b'\n'),
                b'r' => out.push(b'\r'),
                b'\\' => out.push(b'\\'),
                b'x' => {
                    let hex = spec
                        .get(i + 2..i + 4)
                        .ok_or_else(|| format!("bad delimiter {spec:?}"))?;
                    out.push(
                        u8::from_str_radix(hex, 16)
                            .map_err(|_| format!("bad delimiter {spec:?}"))?,
                    );
                    i += 2;
                }
                other => out.extend_from_slice(&[b'\\', other]),
            }
            i += 2;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    if out.is_empty() {
        return Err("empty delimiter".into());
    }
    Ok(out)
}

/// Splits `line` at the first occurrence of `delimiter`.
pub fn split_once<'a>(line: &'a [u8], delimiter: &[u8]) -> Option<(&'a [u8], &'a [u8])> {
    line.windows(delimiter.len())
        .position(|w| w == delimiter)
        .map(|at| (&line[..at], &line[at + delimiter.len()..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delimiters_follow_kcat() {
        assert_eq!(parse_delimiter(":").expect("ok"), b":");
        assert_eq!(parse_delimiter("\\t").expect("ok"), b"\t");
        assert_eq!(parse_delimiter("\\x1f").expect("ok"), vec![0x1f]);
        assert!(parse_delimiter("").is_err());
        assert_eq!(split_once(b"k:v:w", b":"), Some((&b"k"[..], &b"v:w"[..])));
        assert_eq!(split_once(b"kv", b":"), None);
    }
}
