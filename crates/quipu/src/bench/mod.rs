//! `quipu bench <workload>`: measures the storage engine on this machine,
//! next to this disk's own limits, and prints one result per line (a table
//! row, or a JSON object with `--json`). Every append is durable: the
//! store runs with its default fdatasync-before-ack.
//!
//! Workloads: `disk` (this disk's fdatasync rate and sequential write
//! bandwidth), `append` (single-event appends with an exact expected
//! revision from 1, 8 and 64 writers), `batch` (100-event appends),
//! `load` (read one 20-event stream among a million written interleaved,
//! then scan `$all`), `scan` (only the scan), `reopen` (reopen time of ten
//! million events and memory at one and ten million streams), and `all`,
//! which runs each in its own process so memory readings stay apart.

mod append;
mod disk;
mod load;
mod payload;
mod reopen;
mod report;

use std::path::{Path, PathBuf};

use anyhow::Context;

pub use disk::DiskLimits;
pub use report::Measurement;

/// Arguments of `quipu bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(value_enum)]
    pub workload: Workload,
    /// Where the stores go (created and removed by the bench); default: a
    /// new directory under the system temp directory.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Print one JSON object per result instead of a table row.
    #[arg(long)]
    pub json: bool,
    /// Multiplies stream and event counts (e.g. 0.01 for a quick check).
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Duration of each timed run.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Keep the stores after the run.
    #[arg(long)]
    pub keep: bool,
    /// Disk limits measured by a parent `all` run (internal).
    #[arg(long, hide = true, num_args = 2, value_names = ["SYNCS_PER_S", "MB_PER_S"])]
    pub disk_limits: Option<Vec<f64>>,
}

/// A benchmark workload.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// This disk's fdatasync/s and sequential write MB/s.
    Disk,
    /// Single-event appends, exact expected revision, 1/8/64 writers.
    Append,
    /// 100-event appends.
    Batch,
    /// Load a 20-event stream among 1M interleaved streams; then scan.
    Load,
    /// Read `$all` from the start.
    Scan,
    /// Reopen time of 10M events; memory at 1M and 10M streams.
    Reopen,
    /// Everything, each workload in its own process.
    All,
}

/// Settings shared by the workloads of one run.
#[derive(Debug)]
pub struct Bench {
    /// Directory for this run's stores.
    pub root: PathBuf,
    /// Print JSON lines.
    pub json: bool,
    /// Count multiplier.
    pub scale: f64,
    /// Duration of timed runs.
    pub seconds: u64,
    /// This disk's limits, for ratios.
    pub disk: Option<DiskLimits>,
}

impl Bench {
    /// `count` times the scale, at least `floor`.
    #[must_use]
    pub fn scaled(&self, count: u64, floor: u64) -> u64 {
        ((count as f64 * self.scale) as u64).max(floor)
    }

    /// A fresh directory for one store.
    ///
    /// # Errors
    /// I/O errors.
    pub fn store_dir(&self, name: &str) -> anyhow::Result<PathBuf> {
        let dir = self.root.join(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
        }
        Ok(dir)
    }

    /// Prints one result.
    pub fn emit(&self, measurement: &Measurement) {
        measurement.print(self.json);
    }
}

/// Runs the workload `args` names.
///
/// # Errors
/// Store and I/O errors, or a workload that could not run.
pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.scale > 0.0 && args.scale.is_finite(),
        "--scale must be a positive number, got {}",
        args.scale
    );
    anyhow::ensure!(args.seconds > 0, "--seconds must be at least 1");
    let root = args
        .data_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("quipu-bench-{}", std::process::id())));
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let disk = match args.disk_limits.as_deref() {
        Some(&[fdatasync_per_s, seq_mb_per_s]) => Some(DiskLimits { fdatasync_per_s, seq_mb_per_s }),
        _ => None,
    };
    let mut bench = Bench { root: root.clone(), json: args.json, scale: args.scale, seconds: args.seconds, disk };
    let result = run_workload(&mut bench, args);
    if !args.keep && args.data_dir.is_none() {
        remove_quietly(&root);
    }
    result
}

fn run_workload(bench: &mut Bench, args: &BenchArgs) -> anyhow::Result<()> {
    if args.workload != Workload::Reopen && bench.disk.is_none() {
        let limits = disk::measure(bench)?;
        bench.disk = Some(limits);
    }
    match args.workload {
        Workload::Disk => Ok(()),
        Workload::Append => append::run_single(bench),
        Workload::Batch => append::run_batches(bench),
        Workload::Load => load::run(bench, true),
        Workload::Scan => load::run(bench, false),
        Workload::Reopen => reopen::run(bench),
        Workload::All => run_all(bench, args),
    }
}

/// Runs every workload in a child process of this binary, passing the disk
/// limits measured once here.
fn run_all(bench: &Bench, args: &BenchArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("finding this executable")?;
    let disk = bench.disk.context("disk limits are measured first")?;
    for workload in ["append", "batch", "load", "reopen"] {
        let mut command = std::process::Command::new(&exe);
        command
            .args(["bench", workload, "--scale", &args.scale.to_string(), "--seconds", &args.seconds.to_string()])
            .args(["--data-dir", &bench.root.join(workload).to_string_lossy()])
            .args(["--disk-limits", &disk.fdatasync_per_s.to_string(), &disk.seq_mb_per_s.to_string()]);
        if args.json {
            command.arg("--json");
        }
        let status = command.status().with_context(|| format!("running bench {workload}"))?;
        anyhow::ensure!(status.success(), "bench {workload} failed: {status}");
        remove_quietly(&bench.root.join(workload));
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
