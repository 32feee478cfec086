//! Durable appends under load: `writers` threads, each owning a disjoint
//! share of the streams, append `events_per_append` events at a time to a
//! random stream of their share with the exact expected revision they
//! know, for a fixed time. Every append must be written: a conflict would
//! mean the store lost track of a revision, and fails the run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use quipu_core::{AppendOutcome, AppendRequest, EventType, ExpectedRevision, Options, Revision, Store, StreamName};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::Bench;
use super::payload::event;
use super::report::{Measurement, latency_histogram, round3};

/// Streams the append workloads spread over.
const STREAMS: u64 = 100_000;

/// Workload 1: single-event appends from 1, 8 and 64 writers.
///
/// # Errors
/// Store errors, or a conflict.
pub fn run_single(bench: &Bench) -> anyhow::Result<()> {
    for writers in [1, 8, 64] {
        let m = timed_appends(bench, "append", writers, 1)?;
        bench.emit(&with_sync_ratio(bench, m));
    }
    Ok(())
}

/// Workload 2: 100-event appends from 1 and 8 writers.
///
/// # Errors
/// Store errors, or a conflict.
pub fn run_batches(bench: &Bench) -> anyhow::Result<()> {
    for writers in [1, 8] {
        let m = timed_appends(bench, "batch", writers, 100)?;
        let m = match bench.disk {
            Some(disk) => m.clone().with("ratio_to_seq_write", round3(m.mb_per_s() / disk.seq_mb_per_s)),
            None => m,
        };
        bench.emit(&m);
    }
    Ok(())
}

fn with_sync_ratio(bench: &Bench, m: Measurement) -> Measurement {
    match bench.disk {
        Some(disk) => {
            let ratio = round3(m.events_per_s() / disk.fdatasync_per_s);
            m.with("ratio_to_fdatasync", ratio)
        }
        None => m,
    }
}

/// What one writer did.
struct WriterTally {
    appends: u64,
    latency: Histogram<u64>,
}

/// Runs `writers` threads appending for `bench.seconds` to a fresh store
/// and measures events/s, log MB/s and per-append latency.
fn timed_appends(bench: &Bench, workload: &str, writers: u64, events_per_append: u64) -> anyhow::Result<Measurement> {
    let dir = bench.store_dir(&format!("{workload}-{writers}"))?;
    let store = Arc::new(Store::open(&dir, Options::default()).context("opening the bench store")?);
    let streams = bench.scaled(STREAMS, writers);
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..writers)
        .map(|w| {
            let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
            std::thread::spawn(move || writer(&store, &stop, w, writers, streams, events_per_append))
        })
        .collect();
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(bench.seconds));
    stop.store(true, Ordering::Relaxed);
    let mut latency = latency_histogram();
    let mut appends = 0;
    for thread in threads {
        let tally = thread.join().map_err(|_| anyhow::anyhow!("a writer panicked"))??;
        appends += tally.appends;
        latency.add(&tally.latency).context("merging histograms")?;
    }
    let seconds = start.elapsed().as_secs_f64();
    let (log_bytes, index_bytes) = store.disk_bytes()?;
    drop(store);
    std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    let mut m = Measurement::new(workload, appends * events_per_append, log_bytes, seconds)
        .with("writers", writers)
        .with("events_per_append", events_per_append)
        .with("streams", streams)
        .with("appends_per_s", (appends as f64 / seconds).round())
        .with("index_bytes", index_bytes);
    m.latency = Some(latency);
    Ok(m)
}

/// One writer: streams `w`, `w + writers`, ... are its own.
fn writer(
    store: &Store,
    stop: &AtomicBool,
    w: u64,
    writers: u64,
    streams: u64,
    events_per_append: u64,
) -> anyhow::Result<WriterTally> {
    let event_type = EventType::new("Deposited")?;
    let mine: Vec<u64> = (w..streams).step_by(writers as usize).collect();
    let mut revisions: Vec<Option<u64>> = vec![None; mine.len()];
    let mut rng = SmallRng::seed_from_u64(w);
    let mut tally = WriterTally { appends: 0, latency: latency_histogram() };
    while !stop.load(Ordering::Relaxed) {
        let slot = rng.random_range(0..mine.len());
        let stream = StreamName::new(format!("account-{}", mine[slot]))?;
        let expected = revisions[slot].map_or(ExpectedRevision::NoStream, |r| ExpectedRevision::Exact(Revision(r)));
        let events = (0..events_per_append).map(|n| event(&event_type, n)).collect();
        let begun = Instant::now();
        let outcome = store.append(AppendRequest::to_stream(stream, expected, events))?;
        tally.latency.saturating_record(begun.elapsed().as_micros() as u64);
        match outcome {
            AppendOutcome::Written(result) => {
                revisions[slot] = result.streams.first().map(|s| s.last_revision.0);
                tally.appends += 1;
            }
            other => anyhow::bail!("writer {w}: expected the append to be written, got {other:?}"),
        }
    }
    Ok(tally)
}
