//! Workload 5, `reopen`: one event to each of ten million new streams,
//! sampling this process's resident memory as the stream count grows (it
//! should level off: the index lives on disk behind a bounded cache), then
//! the time to reopen the store (`Store::close`, `Store::open`) with its
//! index, and again after deleting the index so it is rebuilt from the log.

use std::time::Instant;

use anyhow::Context;
use quipu_core::{AppendOutcome, AppendRequest, EventType, ExpectedRevision, Options, Store, StreamName, StreamWrite};

use super::Bench;
use super::memory;
use super::payload::event;
use super::report::{Measurement, round3};

/// Streams (and events) written, before scaling.
const STREAMS: u64 = 10_000_000;
/// Stream counts, as fractions of the total, where memory is sampled.
const SAMPLES: [f64; 5] = [0.1, 0.25, 0.5, 0.75, 1.0];
/// Threads filling.
const WRITERS: u64 = 4;

/// Fills while sampling memory, then reopens twice.
///
/// # Errors
/// Store errors, or a fill append that was not written.
pub fn run(bench: &Bench) -> anyhow::Result<()> {
    let dir = bench.store_dir("reopen")?;
    let streams = bench.scaled(STREAMS, 10_000);
    let store = Store::open(&dir, Options::default()).context("opening the bench store")?;
    let start = Instant::now();
    let mut written = 0;
    for fraction in SAMPLES {
        let target = ((streams as f64 * fraction) as u64).clamp(written, streams);
        fill(&store, written, target)?;
        written = target;
        bench.emit(&memory_sample(&store, written, start.elapsed().as_secs_f64()));
    }
    let (log_bytes, index_bytes) = store.disk_bytes()?;
    bench.emit(
        &Measurement::new("streams_fill", streams, log_bytes, start.elapsed().as_secs_f64())
            .with("streams", streams)
            .with("writers", WRITERS)
            .with("log_bytes", log_bytes)
            .with("index_bytes", index_bytes)
            .with("peak_rss_bytes", memory::peak_rss_bytes())
            .with("anon_rss_bytes", memory::anon_rss_bytes()),
    );
    store.close()?;
    let (seconds, rss_open) = timed_open(&dir)?;
    bench.emit(&reopen_result("reopen", streams, seconds, rss_open).with("index", "kept"));
    std::fs::remove_dir_all(dir.join("index")).context("deleting the index")?;
    let (seconds, rss_open) = timed_open(&dir)?;
    bench.emit(&reopen_result("reopen_rebuild", streams, seconds, rss_open).with("index", "rebuilt from the log"));
    bench.finish_store(&dir)?;
    Ok(())
}

/// Memory after `streams` streams were written in `seconds`.
fn memory_sample(store: &Store, streams: u64, seconds: f64) -> Measurement {
    Measurement::new("memory", streams, 0, seconds)
        .with("streams", streams)
        .with("index_memory_bytes", store.index_memory().total())
        .with("index_table_memory_bytes", store.index_memory().tables)
        .with("peak_rss_bytes", memory::peak_rss_bytes())
        .with("anon_rss_bytes", memory::anon_rss_bytes())
}

fn reopen_result(workload: &str, events: u64, seconds: f64, (rss_open, anon_open): (u64, u64)) -> Measurement {
    Measurement::new(workload, events, 0, seconds)
        .with("rss_bytes_open", rss_open)
        .with("anon_rss_bytes_open", anon_open)
        .with("seconds_per_million_events", round3(seconds / (events as f64 / 1e6)))
}

/// Opens and closes the store; returns the seconds the open took and the
/// resident memory with the store open (all of it, and the anonymous part).
fn timed_open(dir: &std::path::Path) -> anyhow::Result<(f64, (u64, u64))> {
    let start = Instant::now();
    let store = Store::open(dir, Options::default()).context("reopening")?;
    let seconds = start.elapsed().as_secs_f64();
    let rss = (memory::rss_bytes(), memory::anon_rss_bytes());
    store.close()?;
    Ok((seconds, rss))
}

/// Appends one event to each stream in `from..to`, from `WRITERS` threads.
fn fill(store: &Store, from: u64, to: u64) -> anyhow::Result<()> {
    let streams_per_append = super::interleaved::FILL_STREAMS_PER_APPEND;
    let chunks: Vec<u64> = (from..to).step_by(streams_per_append as usize).collect();
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..WRITERS as usize)
            .map(|w| {
                let mut mine = chunks.iter().skip(w).step_by(WRITERS as usize);
                scope.spawn(move || {
                    mine.try_for_each(|&first| append_chunk(store, first, (first + streams_per_append).min(to)))
                })
            })
            .collect();
        threads.into_iter().try_for_each(|t| t.join().map_err(|_| anyhow::anyhow!("a fill writer panicked"))?)
    })
}

/// Appends one event to each new stream in `first..last`, atomically.
fn append_chunk(store: &Store, first: u64, last: u64) -> anyhow::Result<()> {
    let event_type = EventType::new("Created")?;
    let writes = (first..last)
        .map(|n| {
            let stream = StreamName::new(format!("stream-{n}"))?;
            Ok(StreamWrite { stream, expected: ExpectedRevision::NoStream, events: vec![event(&event_type, n)] })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    match store.append(AppendRequest { writes, condition: None })? {
        AppendOutcome::Written(_) => Ok(()),
        other => anyhow::bail!("fill append at stream {first} was not written: {other:?}"),
    }
}
