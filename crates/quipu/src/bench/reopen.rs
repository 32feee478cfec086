//! Workload 5: how long a store of ten million events takes to reopen
//! (with its index, and with the index deleted so it is rebuilt from the
//! log), and resident memory as streams grow from one to ten million:
//! every event goes to a new stream, so memory flat in the number of
//! streams shows the index stays on disk.

use std::time::Instant;

use anyhow::Context;
use quipu_core::{AppendOutcome, AppendRequest, EventType, ExpectedRevision, Options, Store, StreamName, StreamWrite};

use super::Bench;
use super::payload::event;
use super::report::{Measurement, round3};

/// Streams (and events) written.
const STREAMS: u64 = 10_000_000;
/// Where memory is sampled on the way.
const FIRST_SAMPLE: u64 = 1_000_000;
/// Streams per multi-stream append while filling.
const STREAMS_PER_APPEND: u64 = 200;

/// Fills, samples memory, reopens twice.
///
/// # Errors
/// Store errors, or a fill append that was not written.
pub fn run(bench: &Bench) -> anyhow::Result<()> {
    let dir = bench.store_dir("reopen")?;
    let streams = bench.scaled(STREAMS, 10_000);
    let first_sample = bench.scaled(FIRST_SAMPLE, 1_000).min(streams);
    let store = Store::open(&dir, Options::default()).context("opening the bench store")?;
    let start = Instant::now();
    fill(&store, 0, first_sample)?;
    let rss_first = memory("VmRSS");
    fill(&store, first_sample, streams)?;
    let rss_last = memory("VmRSS");
    let fill_seconds = start.elapsed().as_secs_f64();
    let (log_bytes, index_bytes) = store.disk_bytes()?;
    bench.emit(
        &Measurement::new("streams_fill", streams, log_bytes, fill_seconds)
            .with("rss_bytes_at_first", rss_first)
            .with("streams_at_first", first_sample)
            .with("rss_bytes_at_last", rss_last)
            .with("streams_at_last", streams)
            .with("peak_rss_bytes", memory("VmHWM"))
            .with("log_bytes", log_bytes)
            .with("index_bytes", index_bytes),
    );
    store.close()?;

    let reopened = timed_open(&dir)?;
    bench.emit(
        &Measurement::new("reopen", streams, 0, reopened).with("index", "kept").with("rss_bytes", memory("VmRSS")),
    );
    std::fs::remove_dir_all(dir.join("index")).context("deleting the index")?;
    let rebuilt = timed_open(&dir)?;
    bench.emit(
        &Measurement::new("reopen_rebuild", streams, log_bytes, rebuilt)
            .with("index", "rebuilt from the log")
            .with("rss_bytes", memory("VmRSS"))
            .with("seconds_per_million_events", round3(rebuilt / (streams as f64 / 1e6))),
    );
    std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    Ok(())
}

/// Opens and closes the store; returns the seconds the open took.
fn timed_open(dir: &std::path::Path) -> anyhow::Result<f64> {
    let start = Instant::now();
    let store = Store::open(dir, Options::default()).context("reopening")?;
    let seconds = start.elapsed().as_secs_f64();
    store.close()?;
    Ok(seconds)
}

/// Appends one event to each stream in `from..to`.
fn fill(store: &Store, from: u64, to: u64) -> anyhow::Result<()> {
    let event_type = EventType::new("Created")?;
    let mut first = from;
    while first < to {
        let last = (first + STREAMS_PER_APPEND).min(to);
        let writes = (first..last)
            .map(|n| {
                let stream = StreamName::new(format!("stream-{n}"))?;
                Ok(StreamWrite { stream, expected: ExpectedRevision::NoStream, events: vec![event(&event_type, n)] })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        match store.append(AppendRequest { writes, condition: None })? {
            AppendOutcome::Written(_) => {}
            other => anyhow::bail!("fill append at stream {first} was not written: {other:?}"),
        }
        first = last;
    }
    Ok(())
}

/// A memory figure of this process from `/proc/self/status`, in bytes (0
/// where the file is not available).
fn memory(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}
