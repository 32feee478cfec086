//! Writers as threads: each of `writers` threads calls [`Store::append`]
//! with its next request, waits for the acknowledgement, and goes again,
//! until the time is up. This is how an embedding application with a
//! thread per request uses the engine; the submit-driven alternative is in
//! `driver`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use quipu_core::Store;

use super::report::latency_histogram;
use super::writer::{Tally, Writer};

/// Runs one thread per writer against `store` for `seconds`.
///
/// # Errors
/// Store errors, or a writer thread that panicked.
pub fn run(store: &Arc<Store>, writers: Vec<Writer>, seconds: u64) -> anyhow::Result<Tally> {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let threads: Vec<_> = writers
        .into_iter()
        .map(|writer| {
            let (store, stop) = (Arc::clone(store), Arc::clone(&stop));
            std::thread::spawn(move || write_until_stopped(&store, writer, &stop))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    let mut tally = Tally { appends: 0, conflicts: 0, latency: latency_histogram(), seconds: 0.0 };
    for thread in threads {
        let (writer, latency) = thread.join().map_err(|_| anyhow::anyhow!("a writer thread panicked"))??;
        tally.appends += writer.appends;
        tally.conflicts += writer.conflicts;
        tally.latency.add(&latency).context("merging latency histograms")?;
    }
    tally.seconds = start.elapsed().as_secs_f64();
    Ok(tally)
}

/// One writer thread's loop.
fn write_until_stopped(
    store: &Store,
    mut writer: Writer,
    stop: &AtomicBool,
) -> anyhow::Result<(Writer, hdrhistogram::Histogram<u64>)> {
    let mut latency = latency_histogram();
    while !stop.load(Ordering::Relaxed) {
        let request = writer.next_request()?;
        let begun = Instant::now();
        let outcome = store.append(request)?;
        latency.saturating_record(begun.elapsed().as_micros() as u64);
        writer.acknowledge(outcome)?;
    }
    Ok((writer, latency))
}
