//! The `franzy` command line: a harness cluster for any Kafka client (`serve`), and a
//! kcat-like client (`produce`, `consume`) with a benchmark (`bench`), and the admin
//! commands (`topics`, `groups`, `configs`). Client commands run
//! against an embedded harness when no `-b` is given. Logs go to stderr (`RUST_LOG` sets the
//! level, default `info` for serve, `error` for consume, which reports the consumer's errors
//! itself as kcat does, and `warn` otherwise).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use cli::Failure;

mod cli;

#[derive(Parser, Debug)]
#[command(name = "franzy", version, about = "franzy: a pure-Rust Kafka toolkit")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start an in-process Kafka cluster, print its bootstrap address, serve until interrupted.
    Serve(Box<cli::serve::ServeArgs>),
    /// Produce records read from stdin, one a line.
    Produce(cli::produce::ProduceArgs),
    /// Consume records to stdout, one a line or as -f says, until interrupted (or -e, -c).
    Consume(cli::consume::ConsumeArgs),
    /// Fuzz a Kafka cluster: valid conversations, then mutated and generated requests over
    /// many connections; findings saved as replayable files.
    Fuzz(Box<cli::fuzz::FuzzArgs>),
    /// Measure produce or consume throughput.
    #[command(subcommand)]
    Bench(cli::bench::BenchCommand),
    /// List, create, delete and describe topics.
    Topics(cli::admin::TopicsArgs),
    /// List and describe consumer groups, show their lag, reset their offsets.
    Groups(cli::admin::GroupsArgs),
    /// Show and change topic and broker configs.
    Configs(cli::admin::ConfigsArgs),
    /// Run seeded fault schedules against franzy's clients in virtual time and check what
    /// they were told and read (exit 1 on an anomaly).
    Lab(cli::lab::LabArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // consume reports the consumer's errors itself, kcat style; its warnings would repeat them.
    let default_level = match cli.command {
        Command::Serve(_) => "info",
        // The lab's faults make the clients warn all the time; its findings are its output.
        Command::Consume(_) | Command::Lab(_) => "error",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .init();
    // The lab runs each seed on a current-thread runtime of its own, paused clock.
    let cli = match cli.command {
        Command::Lab(args) => return cli::lab::run(args),
        command => Cli { command },
    };
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
            Command::Serve(args) => cli::serve::run(*args).await.map_err(Failure::from),
            Command::Produce(args) => cli::produce::run(args).await.map_err(Failure::from),
            Command::Consume(args) => cli::consume::run(args).await,
            Command::Bench(command) => cli::bench::run(command).await.map_err(Failure::from),
            // Findings were reported; the summary line is printed; only the status is left.
            Command::Fuzz(args) => match cli::fuzz::run(*args).await {
                Ok(true) => Ok(()),
                Ok(false) => Err(Failure::Reported),
                Err(message) => Err(Failure::Message(message)),
            },
            Command::Topics(args) => cli::admin::topics(args).await,
            Command::Groups(args) => cli::admin::groups(args).await,
            Command::Configs(args) => cli::admin::configs(args).await,
            Command::Lab(_) => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Message(message)) => {
            eprintln!("franzy: {message}");
            ExitCode::FAILURE
        }
        Err(Failure::Reported) => ExitCode::FAILURE,
    }
}
