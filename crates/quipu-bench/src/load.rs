//! Workload 3, `load`: loads whole streams (all 20 events) chosen at
//! random among the million streams of the interleaved store, timing each
//! `read_stream`. A first pass over the sample runs after the page cache
//! is dropped (cold for the log and the index files, where the kernel
//! allows); a second pass over the same streams is warm. The `$all` scan
//! (workload 4) then runs on the same store, cold and warm, so the 20
//! million events are written once.

use std::time::Instant;

use quipu_core::{Direction, Store};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::interleaved::{self, EVENTS_PER_STREAM};
use super::report::{Measurement, latency_histogram};
use super::{Bench, page_cache, scan};

/// Stream loads per pass (before scaling).
const SAMPLE: u64 = 100_000;

/// Fills the store, measures loads (when `loads`) and scans.
///
/// # Errors
/// Store errors, or a stream that does not hold its events.
pub fn run(bench: &Bench, loads: bool) -> anyhow::Result<()> {
    let dir = bench.store_dir("load")?;
    let filled = interleaved::fill(bench, &dir, interleaved::STREAMS, "load_fill")?;
    if loads {
        let sample = bench.scaled(SAMPLE, 1000).min(filled.streams);
        let dropped = page_cache::drop_all();
        let cold = read_streams(&filled.store, filled.streams, sample, "load_cold")?;
        bench.emit(&cold.with("page_cache_dropped", dropped));
        bench.emit(&read_streams(&filled.store, filled.streams, sample, "load_warm")?);
    }
    let dropped = page_cache::drop_all();
    bench.emit(&scan::run(&filled.store, "scan_cold")?.with("page_cache_dropped", dropped));
    bench.emit(&scan::run(&filled.store, "scan_warm")?);
    filled.store.close()?;
    bench.finish_store(&dir)?;
    Ok(())
}

/// Reads `sample` whole streams picked at random (the same ones on every
/// pass), checking each holds all its events in order.
fn read_streams(store: &Store, streams: u64, sample: u64, workload: &str) -> anyhow::Result<Measurement> {
    let mut rng = SmallRng::seed_from_u64(42);
    let mut latency = latency_histogram();
    let (mut events, mut bytes) = (0u64, 0u64);
    let start = Instant::now();
    for _ in 0..sample {
        let name = interleaved::stream_name(rng.random_range(0..streams))?;
        let begun = Instant::now();
        let read = store.read_stream(&name, None, Direction::Forwards, EVENTS_PER_STREAM as usize)?;
        latency.saturating_record(begun.elapsed().as_micros() as u64);
        let in_order = read.iter().enumerate().all(|(r, e)| e.revision.0 == r as u64 && e.stream == name);
        anyhow::ensure!(read.len() as u64 == EVENTS_PER_STREAM && in_order, "{name} read back wrong");
        events += read.len() as u64;
        bytes += read.iter().map(|e| e.data.len() as u64).sum::<u64>();
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(Measurement::new(workload, events, bytes, seconds)
        .with("streams", streams)
        .with("reads", sample)
        .with("reads_per_s", (sample as f64 / seconds).round())
        .with("events_per_read", EVENTS_PER_STREAM)
        .with_latency(latency))
}
