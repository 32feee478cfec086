//! The `quipu` binary: `quipu serve` serves a data directory over
//! HTTP/JSON, `quipu demo` shows the engine at work on `./quipu-data`, and
//! `quipu bench <workload>` measures it.

mod bench;
mod demo;
mod serve;

use clap::{Parser, Subcommand};

/// Quipu: an event store with the guarantees of an event store at the
/// speed of a log.
#[derive(Parser)]
#[command(name = "quipu", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a data directory over HTTP/JSON until SIGTERM or Ctrl-C.
    Serve(serve::ServeArgs),
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

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve(args) => serve::run(&args),
        Command::Demo { data_dir } => demo::run(&data_dir),
        Command::Bench(args) => bench::run(&args),
    }
}
