//! The `quipu` binary: `quipu serve` serves a data directory over gRPC
//! and HTTP/JSON (alone, or as a node of a cluster); `quipu
//! append|read|subscribe|info` talk to a running server; `quipu cluster
//! create-topic` makes a cluster's topic; and `quipu demo` shows the
//! engine at work on `./quipu-data`.
//! The benchmarks are a binary of their own, `quipu-bench`.

mod cli;
mod cluster;
mod config;
mod demo;
mod descriptors;
mod publishing;
mod serve;
mod verify;

use clap::{Parser, Subcommand};

/// mimalloc instead of the system allocator: the sequencer and the
/// fjall workers allocate and free many small buffers per commit, and
/// glibc's malloc spent about 14% of the sequencer's time on them (perf,
/// filling a million streams); see docs/benchmarks.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How often an otherwise idle process hands freed memory back.
const PURGE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Starts a thread that asks the allocator, once per [`PURGE_INTERVAL`],
/// to give back to the system the memory freed more than its purge delay
/// ago. The allocator purges only when some thread allocates or frees
/// again, so a server gone quiet (every subscriber left) kept its peak
/// for good. Purging as memory is freed (a purge delay of 0) also
/// returned it, but makes memory freed and soon reused fault in afresh;
/// this leaves memory in use alone.
#[expect(unsafe_code, reason = "mimalloc's purge is a C call; see SAFETY")]
fn start_purging() {
    let started = std::thread::Builder::new().name("quipu-purge".into()).spawn(|| {
        loop {
            std::thread::sleep(PURGE_INTERVAL);
            // SAFETY: a plain call into the allocator, which is
            // thread-safe; it frees nothing a caller still holds.
            unsafe { libmimalloc_sys::mi_collect(false) }
        }
    });
    if let Err(error) = started {
        tracing::warn!(%error, "cannot start the allocator's purging thread; freed memory is returned later");
    }
}

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
    Serve(Box<serve::ServeArgs>),
    #[command(flatten)]
    Client(cli::ClientCommand),
    /// Commands about a cluster's Kafka topic (see docs/cluster.md).
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Check every record of a stopped store's log, and its index against
    /// it, with a progress bar; exits 1 naming file and offset of every
    /// problem found.
    Verify {
        /// Data directory of the store (not open in a server).
        #[arg(long, default_value = "./quipu-data")]
        data_dir: std::path::PathBuf,
    },
    /// Append and read a few order events in a data directory, showing
    /// optimistic concurrency, idempotent retries and reads.
    Demo {
        /// Data directory.
        #[arg(long, default_value = "./quipu-data")]
        data_dir: std::path::PathBuf,
    },
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
        Command::Serve(args) => {
            start_purging();
            serve::run(&args)
        }
        Command::Demo { data_dir } => demo::run(&data_dir),
        Command::Verify { data_dir } => verify::run(&data_dir),
        Command::Cluster(command) => cluster::run(command),
    }
}
