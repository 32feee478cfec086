//! The `quipu` binary: `quipu serve` serves a data directory over gRPC
//! and HTTP/JSON; `quipu append|read|subscribe|info` talk to a running
//! server; `quipu demo` shows the engine at work on `./quipu-data`; and
//! `quipu bench <workload>` measures it.

mod bench;
mod cli;
mod config;
mod demo;
mod publishing;
mod serve;

use clap::{Parser, Subcommand};

/// mimalloc instead of the system allocator: the sequencer and the
/// fjall workers allocate and free many small buffers per commit, and
/// glibc's malloc spent about 14% of the sequencer's time on them (perf,
/// filling a million streams); see docs/benchmarks.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Quipu: an event store with the guarantees of an event store at the
/// speed of a log.
#[derive(Parser)]
#[command(name = "quipu", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    connection: cli::Connection,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a data directory over gRPC and HTTP/JSON until SIGTERM or
    /// Ctrl-C.
    Serve(serve::ServeArgs),
    #[command(flatten)]
    Client(cli::ClientCommand),
    /// Append and read a few order events in a data directory, showing
    /// optimistic concurrency, idempotent retries and reads.
    Demo {
        /// Data directory.
        #[arg(long, default_value = "./quipu-data")]
        data_dir: std::path::PathBuf,
    },
    /// Run a benchmark workload and print its numbers.
    Bench(bench::BenchArgs),
}

/// Runs the command; an error is printed as one line of causes (no
/// backtrace) and the exit code is 1.
fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Client(command) => cli::run(&cli.connection, command),
        Command::Serve(args) => serve::run(&args),
        Command::Demo { data_dir } => demo::run(&data_dir),
        Command::Bench(args) => bench::run(&args),
    }
}
