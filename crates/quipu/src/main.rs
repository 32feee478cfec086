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

/// mimalloc's `mi_option_purge_delay`, as numbered in its
/// `include/mimalloc.h` (the sys crate names the options on either side,
/// 14 and 16, not this one).
const PURGE_DELAY_OPTION: libmimalloc_sys::mi_option_t = 15;

/// Makes the allocator give freed memory back to the system as it is
/// freed, not a second later at the freeing thread's next allocation: a
/// thread that goes idle (a runtime worker once subscribers leave, a
/// store reader) otherwise keeps what it freed for good. Appends, loads,
/// fills and catch-up measured the same either way (docs/benchmarks.md,
/// "Live subscribers").
fn release_freed_memory_at_once() {
    // SAFETY: sets one of mimalloc's integer options, which it reads
    // atomically; 0 is a documented value (purge at once).
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY_OPTION, 0) }
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
        Command::Serve(args) => {
            release_freed_memory_at_once();
            serve::run(&args)
        }
        Command::Demo { data_dir } => demo::run(&data_dir),
        Command::Bench(args) => bench::run(&args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        // SAFETY: reads and sets mimalloc's integer options.
        let (default, set) = unsafe {
            let default = libmimalloc_sys::mi_option_get(PURGE_DELAY_OPTION);
            release_freed_memory_at_once();
            let set = libmimalloc_sys::mi_option_get(PURGE_DELAY_OPTION);
            libmimalloc_sys::mi_option_set(PURGE_DELAY_OPTION, default);
            (default, set)
        };
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(default, 1000, "option 15 is mimalloc's purge delay, 1000 ms by default (v3)");
        }
        assert_eq!(set, 0);
    }
}
