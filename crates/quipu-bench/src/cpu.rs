//! CPU spent during a timed run: by the commit path (the sequencer's
//! work: deciding, encoding, indexing, the write and fdatasync calls, on
//! whichever thread committed) and by the whole process (clients included
//! when they run in it). Printed per append and per event beside events/s,
//! so each change to the engine or the server shows what it bought.

use quipu_core::{CommitMeter, CommitStats, process_cpu_ns};

use super::report::Measurement;

/// Readings taken when a run starts.
#[derive(Debug, Clone)]
pub struct CpuMeter {
    commits: CommitMeter,
    commits_start: CommitStats,
    process_start_ns: u64,
}

impl CpuMeter {
    /// Starts measuring; `commits` is the store's commit meter.
    #[must_use]
    pub fn start(commits: CommitMeter) -> CpuMeter {
        let commits_start = commits.read();
        CpuMeter { commits, commits_start, process_start_ns: process_cpu_ns() }
    }

    /// What was spent since [`CpuMeter::start`].
    #[must_use]
    pub fn stop(&self) -> CpuUse {
        CpuUse {
            commits: self.commits.read().since(&self.commits_start),
            process_ns: process_cpu_ns().saturating_sub(self.process_start_ns),
        }
    }
}

/// CPU spent in a run.
#[derive(Debug, Clone, Copy)]
pub struct CpuUse {
    /// The commit path's counts and CPU time.
    pub commits: CommitStats,
    /// CPU time of the whole process.
    pub process_ns: u64,
}

impl Measurement {
    /// Adds `commit_cpu_us_per_append`, `commit_cpu_us_per_event`,
    /// `process_cpu_us_per_append`, `process_cpu_us_per_event` and
    /// `appends_per_group` (what one group commit took in).
    #[must_use]
    pub fn with_cpu(self, cpu: &CpuUse) -> Measurement {
        let per = |ns: u64, count: u64| if count == 0 { 0.0 } else { round2(ns as f64 / 1000.0 / count as f64) };
        let commits = &cpu.commits;
        let appends_per_group =
            if commits.groups == 0 { 0.0 } else { round2(commits.appends as f64 / commits.groups as f64) };
        self.with("commit_cpu_us_per_append", per(commits.cpu_ns, commits.appends))
            .with("commit_cpu_us_per_event", per(commits.cpu_ns, commits.events))
            .with("process_cpu_us_per_append", per(cpu.process_ns, commits.appends))
            .with("process_cpu_us_per_event", per(cpu.process_ns, commits.events))
            .with("appends_per_group", appends_per_group)
    }
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}
