//! The `franzy` command line.
//!
//! `franzy serve --brokers 3 --topic orders:6` starts an in-process cluster on loopback,
//! prints its bootstrap address on stdout (one line, nothing else) and serves until
//! interrupted. Logs go to stderr (`RUST_LOG` sets the level, default `info`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use franzy_harness::Cluster;

#[derive(Parser, Debug)]
#[command(name = "franzy", version, about = "franzy: a pure-Rust Kafka toolkit")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start an in-process Kafka cluster and serve until interrupted.
    Serve(ServeArgs),
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Number of brokers.
    #[arg(long, default_value_t = 3)]
    brokers: i32,
    /// A topic to create, as NAME:PARTITIONS (repeatable).
    #[arg(long = "topic", value_parser = parse_topic)]
    topics: Vec<(String, i32)>,
    /// Address to bind and advertise.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port of the first broker; broker i listens on PORT+i. 0 picks free ports.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Do not create unknown topics on Metadata requests.
    #[arg(long)]
    no_auto_create: bool,
    /// Partitions of auto-created topics.
    #[arg(long, default_value_t = 1)]
    default_partitions: i32,
    /// Seed for the cluster's fault-injection randomness.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn parse_topic(spec: &str) -> Result<(String, i32), String> {
    let (name, partitions) = spec
        .rsplit_once(':')
        .ok_or_else(|| format!("topic {spec:?} is not NAME:PARTITIONS"))?;
    let partitions: i32 = partitions
        .parse()
        .map_err(|_| format!("partition count {partitions:?} of topic {name:?} is not a number"))?;
    if name.is_empty() || partitions < 1 {
        return Err(format!(
            "topic {spec:?} needs a name and at least one partition"
        ));
    }
    Ok((name.to_string(), partitions))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("franzy: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("franzy: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    let mut builder = Cluster::builder()
        .brokers(args.brokers)
        .tcp(args.host, args.port)
        .auto_create_topics(!args.no_auto_create)
        .default_partitions(args.default_partitions)
        .seed(args.seed);
    for (name, partitions) in args.topics {
        builder = builder.topic(name, partitions);
    }
    let cluster = builder.build().await.map_err(|e| e.to_string())?;
    println!("{}", cluster.bootstrap());
    tracing::info!(bootstrap = %cluster.bootstrap(), "cluster up; interrupt to stop");
    wait_for_interrupt().await?;
    cluster.shutdown().await;
    Ok(())
}

async fn wait_for_interrupt() -> Result<(), String> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("cannot watch SIGTERM: {e}"))?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.map_err(|e| format!("cannot watch SIGINT: {e}")),
        _ = terminate.recv() => Ok(()),
    }
}
