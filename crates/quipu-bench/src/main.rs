//! `quipu-bench <workload>`: measures the storage engine on this machine,
//! next to this disk's own limits, and prints one result per line (a table
//! row, or a JSON object with `--json`). Every append is durable: the
//! store runs with its default fdatasync before acknowledging.
//!
//! Workloads: `disk` (this disk's fdatasync rate and sequential write
//! bandwidth; every other workload but `reopen` measures it first and
//! states its results as ratios to it), `append` (single-event appends
//! with an exact expected revision from 1, 8 and 64 writers), `batch`
//! (100-event appends), `load` (read one 20-event stream among a million
//! written interleaved, then scan `$all` on the same store), `scan` (only
//! the scan), `reopen` (memory as streams grow to ten million, then reopen
//! time with and without the index), `server` (appends and stream loads
//! through the server over gRPC and HTTP from 1, 16 and 64 connections,
//! each beside the same work done in-process, with the ratio of the two;
//! it does not measure the disk), `subscribers` (live subscriptions to
//! `$all` of four kinds against a `quipu serve` child process while
//! writers append, or with `--catch-up` many subscriptions reading the log
//! from the start; run alone, not by `all`), and `all`, which measures the
//! disk once and runs the others each in its own process, so memory
//! readings stay apart.
//!
//! Modules, one concept each: `disk` (the disk's limits), `writer` (a
//! writer's streams and revisions), `threads` and `driver` (two ways of
//! driving writers), `timed` (a timed append run on a fresh store),
//! `append` and `batch` (workloads 1 and 2), `interleaved` (the store the
//! reads use), `load` and `scan` (workloads 3 and 4), `reopen` (workload
//! 5), `remote`, `batch_call` and `remote_load` (workload 6, `server`) with what they
//! stand on: `server` (the store served in-process), `connection` (a gRPC
//! or HTTP client connection), `http_connection`, `clients` (connections
//! driven for a set time) and `readers` (stream loads, and in-process
//! readers); `subscribers` (its own cells and clients); then `page_cache`, `memory`, `payload` and `report`.

mod append;
mod batch;
mod batch_call;
mod clients;
mod cluster;
mod connection;
mod cpu;
mod disk;
mod driver;
mod groups;
mod http_connection;
mod interleaved;
mod kafka;
mod load;
mod memory;
mod page_cache;
mod payload;
mod readers;
mod remote;
mod remote_load;
mod reopen;
mod report;
mod scan;
mod scavenge;
mod server;
mod snapshots;
mod subscribers;
mod threads;
mod timed;
mod upcasting;
mod writer;

use std::path::{Path, PathBuf};

use anyhow::Context;

use disk::DiskLimits;
use report::Measurement;

/// mimalloc, as the `quipu` binary has it, so the engine measured in
/// process allocates as it does in the server.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Runs the workload; an error is printed as one line of causes and the
/// exit code is 1.
fn main() -> std::process::ExitCode {
    use clap::Parser;
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    match run(&BenchArgs::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Run a benchmark workload and print its numbers. Build it beside the
/// server: `cargo build --release -p quipu -p quipu-bench` (the
/// `subscribers` workload runs `quipu serve` from the same directory).
#[derive(clap::Parser, Debug, Clone)]
#[command(name = "quipu-bench", version)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(value_enum)]
    pub workload: Workload,
    /// Where the stores go; default: a new directory under the system temp
    /// directory, removed afterwards.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Print one JSON object per result instead of a table row.
    #[arg(long)]
    pub json: bool,
    /// Multiplies stream and event counts (e.g. 0.01 for a quick check).
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Duration of each timed run, in seconds.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Keep the stores (and the data directory) after each workload.
    #[arg(long)]
    pub keep: bool,
    /// Writer counts for `append` and `batch`, comma-separated (default:
    /// 1,8,64 as threads, and 8,64 submit-driven for `append`); for
    /// `server`, connection counts (default: 1,16,64); for `subscribers`,
    /// subscriber counts (default: 0,200,1000; 200 with `--catch-up`).
    #[arg(long, value_delimiter = ',')]
    pub writers: Vec<u64>,
    /// For `kafka`: also produce and consume the same events through this
    /// Kafka-protocol broker (host:port), with the same client, for
    /// comparison. Its topic `account` must exist with 4 partitions.
    /// `mock` starts librdkafka's in-memory mock cluster instead.
    #[arg(long, value_name = "ADDRESS")]
    pub kafka_peer: Option<String>,
    /// For `subscribers`: instead of the live cells, the catch-up cell:
    /// 1,000,000 events (times `--scale`) written first, then one and then
    /// `--writers` (default 200) gRPC subscribers reading them from
    /// position 0, the latter while 16 writers append.
    #[arg(long)]
    pub catch_up: bool,
    /// For `subscribers`' live cells: the kinds of subscribers, taken
    /// round-robin (default: all four).
    #[arg(long, value_delimiter = ',')]
    pub kinds: Vec<subscribers::Kind>,
    /// Disk limits measured by a parent `all` run (internal).
    #[arg(long, hide = true, num_args = 2, value_names = ["FDATASYNC_PER_S", "SEQ_MB_PER_S"])]
    pub disk_limits: Option<Vec<f64>>,
}

/// A benchmark workload.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// This disk's fdatasync/s, sequential write MB/s and sequential read MB/s.
    Disk,
    /// Single-event appends, exact expected revision, 1/8/64 writers.
    Append,
    /// 100-event appends.
    Batch,
    /// Load a 20-event stream among 1M interleaved streams; then scan.
    Load,
    /// Read `$all` from the start.
    Scan,
    /// Memory at 1M..10M streams; reopen time of 10M events.
    Reopen,
    /// Appends and stream loads over gRPC and HTTP, 1/16/64 connections,
    /// beside the same work in-process.
    Server,
    /// Consumer groups: delivery with 1 and 4 members, end-to-end lag.
    Groups,
    /// Loading a 10,000-event aggregate with and without a snapshot.
    Snapshots,
    /// Reading `$all` with upcasting on and off.
    Upcasting,
    /// The online scavenge: MB/s through the log, nothing vs half removed.
    Scavenge,
    /// The Kafka door with librdkafka: produce with and without OCC
    /// headers, consume `quipu.all` and a category.
    Kafka,
    /// Live subscribers to `$all` (gRPC, SSE, KurrentDB, Kafka) while 16
    /// writers append: append rate, delivery lag, the server's memory,
    /// threads and CPU; with `--catch-up`, subscribers reading a million
    /// events from the start at once.
    Subscribers,
    /// Single-event appends through cluster replicas on a Kafka-protocol
    /// broker (noida-db), 1 and 3 nodes, 1 to 16 partitions, beside one
    /// store alone; contention and a new node's catch-up.
    Cluster,
    /// Everything, each workload in its own process.
    All,
}

impl Workload {
    /// The name on the command line.
    fn name(self) -> &'static str {
        match self {
            Workload::Disk => "disk",
            Workload::Append => "append",
            Workload::Batch => "batch",
            Workload::Load => "load",
            Workload::Scan => "scan",
            Workload::Reopen => "reopen",
            Workload::Server => "server",
            Workload::Groups => "groups",
            Workload::Snapshots => "snapshots",
            Workload::Upcasting => "upcasting",
            Workload::Scavenge => "scavenge",
            Workload::Kafka => "kafka",
            Workload::Subscribers => "subscribers",
            Workload::Cluster => "cluster",
            Workload::All => "all",
        }
    }
}

/// What `all` runs after the disk, in order; `load` includes the scan.
const ALL_WORKLOADS: [Workload; 10] = [
    Workload::Append,
    Workload::Batch,
    Workload::Load,
    Workload::Reopen,
    Workload::Server,
    Workload::Groups,
    Workload::Snapshots,
    Workload::Upcasting,
    Workload::Scavenge,
    Workload::Kafka,
];

/// Settings shared by the workloads of one run.
#[derive(Debug)]
pub struct Bench {
    /// Directory for this run's stores.
    pub root: PathBuf,
    /// Print JSON lines.
    pub json: bool,
    /// Count multiplier.
    pub scale: f64,
    /// Duration of timed runs, seconds.
    pub seconds: u64,
    /// Keep stores after use.
    pub keep: bool,
    /// Writer counts asked for on the command line; empty: the defaults.
    pub writers: Vec<u64>,
    /// This disk's limits, for ratios.
    pub disk: Option<DiskLimits>,
    /// A Kafka-protocol broker to compare the Kafka door with.
    pub kafka_peer: Option<String>,
    /// `subscribers` runs its catch-up cell instead of the live cells.
    pub catch_up: bool,
    /// Kinds of live subscribers asked for; empty: every kind.
    pub kinds: Vec<subscribers::Kind>,
}

impl Bench {
    /// The writer counts to run: those asked for, or `defaults`.
    #[must_use]
    pub fn writer_counts(&self, defaults: &[u64]) -> Vec<u64> {
        if self.writers.is_empty() { defaults.to_vec() } else { self.writers.clone() }
    }

    /// `count` times the scale, at least `floor`.
    #[must_use]
    pub fn scaled(&self, count: u64, floor: u64) -> u64 {
        ((count as f64 * self.scale) as u64).max(floor)
    }

    /// A fresh (emptied) directory path for one store.
    ///
    /// # Errors
    /// I/O errors clearing an old one.
    pub fn store_dir(&self, name: &str) -> anyhow::Result<PathBuf> {
        let dir = self.root.join(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
        }
        Ok(dir)
    }

    /// Removes a store a workload is done with, unless `--keep`.
    ///
    /// # Errors
    /// I/O errors removing it.
    pub fn finish_store(&self, dir: &Path) -> anyhow::Result<()> {
        if self.keep {
            return Ok(());
        }
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))
    }

    /// Prints one result.
    pub fn emit(&self, measurement: &Measurement) {
        measurement.print(self.json);
    }
}

/// Runs the workload `args` names.
///
/// # Errors
/// Invalid arguments, store and I/O errors, or a workload that failed its
/// checks (a conflict, a stream read back wrong).
pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.scale > 0.0 && args.scale.is_finite(),
        "--scale must be a positive number, got {}",
        args.scale
    );
    anyhow::ensure!(args.seconds > 0, "--seconds must be at least 1");
    // A subscriber count of 0 is the cell without subscribers.
    anyhow::ensure!(
        args.workload == Workload::Subscribers || !args.writers.contains(&0),
        "--writers must be at least 1"
    );
    anyhow::ensure!(
        !args.catch_up || args.workload == Workload::Subscribers,
        "--catch-up is an option of the subscribers workload"
    );
    anyhow::ensure!(
        args.kinds.is_empty() || (args.workload == Workload::Subscribers && !args.catch_up),
        "--kinds is an option of the subscribers workload's live cells"
    );
    let root = args
        .data_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("quipu-bench-{}", std::process::id())));
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let disk = match args.disk_limits.as_deref() {
        Some(&[fdatasync_per_s, seq_mb_per_s]) => Some(DiskLimits { fdatasync_per_s, seq_mb_per_s }),
        _ => None,
    };
    let mut bench = Bench {
        root: root.clone(),
        json: args.json,
        scale: args.scale,
        seconds: args.seconds,
        keep: args.keep,
        writers: args.writers.clone(),
        disk,
        kafka_peer: args.kafka_peer.clone(),
        catch_up: args.catch_up,
        kinds: args.kinds.clone(),
    };
    let result = run_workload(&mut bench, args);
    if !args.keep && args.data_dir.is_none() {
        remove_quietly(&root);
    }
    result
}

fn run_workload(bench: &mut Bench, args: &BenchArgs) -> anyhow::Result<()> {
    // Neither states ratios to the disk: `server` compares with the engine.
    if !matches!(
        args.workload,
        Workload::Reopen
            | Workload::Server
            | Workload::Groups
            | Workload::Snapshots
            | Workload::Upcasting
            | Workload::Kafka
            | Workload::Subscribers
            | Workload::Cluster
    ) && bench.disk.is_none()
    {
        bench.disk = Some(disk::measure(bench)?);
    }
    match args.workload {
        Workload::Disk => Ok(()),
        Workload::Append => append::run(bench),
        Workload::Batch => batch::run(bench),
        Workload::Load => load::run(bench, true),
        Workload::Scan => load::run(bench, false),
        Workload::Reopen => reopen::run(bench),
        Workload::Server => remote::run(bench),
        Workload::Groups => groups::run(bench),
        Workload::Snapshots => snapshots::run(bench),
        Workload::Upcasting => upcasting::run(bench),
        Workload::Scavenge => scavenge::run(bench),
        Workload::Kafka => kafka::run(bench),
        Workload::Subscribers => subscribers::run(bench),
        Workload::Cluster => cluster::run(bench),
        Workload::All => run_all(bench, args),
    }
}

/// Runs every workload in a child process of this binary, passing the disk
/// limits measured once here; stops at the first that fails.
fn run_all(bench: &Bench, args: &BenchArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("finding this executable")?;
    let disk = bench.disk.context("disk limits are measured first")?;
    for workload in ALL_WORKLOADS.map(Workload::name) {
        let dir = bench.root.join(workload);
        let mut command = std::process::Command::new(&exe);
        command
            .args([workload, "--scale", &args.scale.to_string(), "--seconds", &args.seconds.to_string()])
            .arg("--data-dir")
            .arg(&dir)
            .args(["--disk-limits", &disk.fdatasync_per_s.to_string(), &disk.seq_mb_per_s.to_string()]);
        if args.json {
            command.arg("--json");
        }
        if args.keep {
            command.arg("--keep");
        }
        if !args.writers.is_empty() {
            let counts: Vec<String> = args.writers.iter().map(u64::to_string).collect();
            command.args(["--writers", &counts.join(",")]);
        }
        let status = command.status().with_context(|| format!("running bench {workload}"))?;
        anyhow::ensure!(status.success(), "bench {workload} failed: {status}");
        if !args.keep {
            remove_quietly(&dir);
        }
    }
    Ok(())
}

fn remove_quietly(dir: &Path) {
    if let Err(error) = std::fs::remove_dir_all(dir)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %dir.display(), %error, "could not remove bench data");
    }
}
