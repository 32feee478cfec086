//! Workload 3, stream loads: a million streams of twenty events each,
//! written interleaved (revision r of every stream before revision r + 1 of
//! any), so one stream's events lie far apart in the log, as an entity's
//! events do in a real store. Then whole streams chosen at random are read:
//! a first pass over a sample (cold for those keys: after dropping the
//! page cache where the kernel allows) and a second pass over the same
//! sample (warm). Workload 4 then reads `$all` from the start.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use hdrhistogram::Histogram;
use quipu_core::{
    AppendOutcome, AppendRequest, Direction, EventType, ExpectedRevision, Options, Revision, Store, StreamName,
    StreamWrite,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::Bench;
use super::payload::event;
use super::report::{Measurement, latency_histogram};

/// Streams in the interleaved store.
const STREAMS: u64 = 1_000_000;
/// Events per stream.
const EVENTS_PER_STREAM: u64 = 20;
/// Streams per multi-stream append while filling.
const STREAMS_PER_APPEND: u64 = 200;
/// Threads filling the store.
const FILL_WRITERS: u64 = 4;
/// Streams read per pass.
const SAMPLE: u64 = 100_000;
/// Events per `$all` page.
const SCAN_PAGE: usize = 10_000;

/// Fills the store, then measures stream loads (when `loads`) and a scan.
///
/// # Errors
/// Store errors, or a fill append that was not written.
pub fn run(bench: &Bench, loads: bool) -> anyhow::Result<()> {
    let dir = bench.store_dir("load")?;
    let store = Arc::new(Store::open(&dir, Options::default()).context("opening the bench store")?);
    let streams = bench.scaled(STREAMS, 1000);
    let fill = fill_interleaved(&store, streams)?;
    bench.emit(&fill);
    if loads {
        let sample = bench.scaled(SAMPLE, 1000).min(streams);
        let dropped = drop_page_cache();
        let cold = read_streams(&store, streams, sample, "load_cold")?.with("page_cache_dropped", dropped);
        bench.emit(&cold);
        bench.emit(&read_streams(&store, streams, sample, "load_warm")?);
    }
    bench.emit(&scan(&store)?);
    drop(store);
    std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    Ok(())
}

fn stream_name(n: u64) -> anyhow::Result<StreamName> {
    Ok(StreamName::new(format!("entity-{n}"))?)
}

/// Writes `EVENTS_PER_STREAM` rounds over `streams` streams.
fn fill_interleaved(store: &Arc<Store>, streams: u64) -> anyhow::Result<Measurement> {
    let start = Instant::now();
    for round in 0..EVENTS_PER_STREAM {
        let threads: Vec<_> = (0..FILL_WRITERS)
            .map(|w| {
                let store = Arc::clone(store);
                std::thread::spawn(move || fill_round(&store, round, w, streams))
            })
            .collect();
        for thread in threads {
            thread.join().map_err(|_| anyhow::anyhow!("a fill writer panicked"))??;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let (log_bytes, index_bytes) = store.disk_bytes()?;
    let events = streams * EVENTS_PER_STREAM;
    Ok(Measurement::new("load_fill", events, log_bytes, seconds)
        .with("streams", streams)
        .with("streams_per_append", STREAMS_PER_APPEND)
        .with("writers", FILL_WRITERS)
        .with("log_bytes", log_bytes)
        .with("index_bytes", index_bytes)
        .with("disk_bytes_per_event", ((log_bytes + index_bytes) as f64 / events as f64).round()))
}

/// Writer `w` appends revision `round` to its chunks of streams.
fn fill_round(store: &Store, round: u64, w: u64, streams: u64) -> anyhow::Result<()> {
    let event_type = EventType::new("Changed")?;
    let expected = if round == 0 { ExpectedRevision::NoStream } else { ExpectedRevision::Exact(Revision(round - 1)) };
    let chunks = streams.div_ceil(STREAMS_PER_APPEND);
    for chunk in (w..chunks).step_by(FILL_WRITERS as usize) {
        let first = chunk * STREAMS_PER_APPEND;
        let writes = (first..(first + STREAMS_PER_APPEND).min(streams))
            .map(|n| Ok(StreamWrite { stream: stream_name(n)?, expected, events: vec![event(&event_type, round)] }))
            .collect::<anyhow::Result<Vec<_>>>()?;
        match store.append(AppendRequest { writes, condition: None })? {
            AppendOutcome::Written(_) => {}
            other => anyhow::bail!("fill append of round {round} was not written: {other:?}"),
        }
    }
    Ok(())
}

/// Reads `sample` whole streams picked at random (the same ones for the
/// same `streams`), checking each has all its events.
fn read_streams(store: &Store, streams: u64, sample: u64, workload: &str) -> anyhow::Result<Measurement> {
    let mut rng = SmallRng::seed_from_u64(42);
    let mut latency: Histogram<u64> = latency_histogram();
    let mut events = 0u64;
    let mut bytes = 0u64;
    let start = Instant::now();
    for _ in 0..sample {
        let name = stream_name(rng.random_range(0..streams))?;
        let begun = Instant::now();
        let read = store.read_stream(&name, None, Direction::Forwards, EVENTS_PER_STREAM as usize)?;
        latency.saturating_record(begun.elapsed().as_micros() as u64);
        anyhow::ensure!(read.len() as u64 == EVENTS_PER_STREAM, "{name} has {} events", read.len());
        events += read.len() as u64;
        bytes += read.iter().map(|e| e.data.len() as u64).sum::<u64>();
    }
    let seconds = start.elapsed().as_secs_f64();
    let mut m = Measurement::new(workload, events, bytes, seconds)
        .with("streams", streams)
        .with("reads", sample)
        .with("events_per_read", EVENTS_PER_STREAM);
    m.latency = Some(latency);
    Ok(m)
}

/// Workload 4: reads `$all` from the start in pages.
fn scan(store: &Store) -> anyhow::Result<Measurement> {
    let start = Instant::now();
    let mut from = None;
    let mut events = 0u64;
    let mut payload_bytes = 0u64;
    loop {
        let page = store.read_all(from, Direction::Forwards, SCAN_PAGE)?;
        let Some(last) = page.last() else { break };
        from = Some(last.position.next());
        events += page.len() as u64;
        payload_bytes += page.iter().map(|e| e.data.len() as u64).sum::<u64>();
    }
    let seconds = start.elapsed().as_secs_f64();
    let (log_bytes, _) = store.disk_bytes()?;
    Ok(Measurement::new("scan", events, log_bytes, seconds)
        .with("page_events", SCAN_PAGE as u64)
        .with("payload_mb_per_s", (payload_bytes as f64 / 1e6 / seconds).round()))
}

/// Asks the kernel to drop clean page-cache pages (needs root); says
/// whether it did.
fn drop_page_cache() -> bool {
    // SAFETY-free: a plain write to a procfs file; failure just means the
    // cold pass is cold only for the engine's own caches.
    std::fs::write("/proc/sys/vm/drop_caches", "1\n").is_ok()
}
