//! A timed append run on a fresh store: `writers` writers (see `writer`),
//! driven as threads or from one submit loop, append for the configured
//! time; the result counts events, log bytes and per-append latency. The
//! store is closed and deleted afterwards, so runs do not share a cache or
//! a disk image.

use std::sync::Arc;

use anyhow::Context;
use quipu_core::{Options, Store};

use super::cpu::CpuMeter;
use super::report::Measurement;
use super::writer::Writer;
use super::{Bench, driver, threads};

/// How writers reach the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drive {
    /// One thread per writer calling [`Store::append`].
    Threads,
    /// One thread submitting for all writers with [`Store::submit`].
    Submit,
}

impl Drive {
    fn name(self) -> &'static str {
        match self {
            Drive::Threads => "threads",
            Drive::Submit => "submit",
        }
    }
}

/// What to run.
#[derive(Debug, Clone, Copy)]
pub struct Plan<'a> {
    /// Workload name on the result line.
    pub workload: &'a str,
    /// Concurrent writers.
    pub writers: u64,
    /// Streams shared out among the writers (before scaling).
    pub streams: u64,
    /// Events in each append.
    pub events_per_append: u64,
    /// How writers reach the store.
    pub drive: Drive,
}

/// Runs `plan` on a fresh store for `bench.seconds`; returns the result
/// and the number of conflicts.
///
/// # Errors
/// Store and I/O errors, or an outcome a writer cannot take in.
/// Conflicts are counted, not errors: the caller checks them.
pub fn run(bench: &Bench, plan: Plan<'_>) -> anyhow::Result<(Measurement, u64)> {
    let dir = bench.store_dir(&format!("{}-{}-{}", plan.workload, plan.drive.name(), plan.writers))?;
    let store = Arc::new(Store::open(&dir, Options::default()).context("opening the bench store")?);
    let streams = bench.scaled(plan.streams, plan.writers);
    let writers = (0..plan.writers)
        .map(|w| Writer::new(w, plan.writers, streams, plan.events_per_append))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let cpu = CpuMeter::start(store.commit_meter());
    let tally = match plan.drive {
        Drive::Threads => threads::run(&store, writers, bench.seconds)?,
        Drive::Submit => driver::run(&store, writers, bench.seconds)?,
    };
    let cpu = cpu.stop();
    let (log_bytes, index_bytes) = store.disk_bytes()?;
    // Made while the store is open, so `rss_bytes` is the running figure.
    let measurement = Measurement::new(plan.workload, tally.appends * plan.events_per_append, log_bytes, tally.seconds)
        .with("writers", plan.writers)
        .with("drive", plan.drive.name())
        .with("events_per_append", plan.events_per_append)
        .with("streams", streams)
        .with("appends_per_s", (tally.appends as f64 / tally.seconds).round())
        .with("conflicts", tally.conflicts)
        .with("log_bytes", log_bytes)
        .with("index_bytes", index_bytes)
        .with("index_memory_bytes", store.index_memory().total())
        .with("index_table_memory_bytes", store.index_memory().tables)
        .with_cpu(&cpu)
        .with_latency(tally.latency);
    let store = Arc::into_inner(store).context("a writer still holds the store")?;
    store.close()?;
    bench.finish_store(&dir)?;
    Ok((measurement, tally.conflicts))
}
