//! Stream loads: what one must return (every event of the stream, in
//! order), what a timed run of them counts, and readers as threads calling
//! [`Store::read_stream`] in-process, the baseline the server's loads
//! (`clients`) are compared with. Reader `r` picks its streams with the
//! same seeded generator whichever way it reads, so every run loads the
//! same sequence of streams.

use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use quipu_core::{Direction, Store};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::interleaved::{self, EVENTS_PER_STREAM};
use super::report::latency_histogram;

/// What the readers of one timed run did together.
pub struct LoadTally {
    /// Whole streams loaded.
    pub loads: u64,
    /// Latency of every load, microseconds.
    pub latency: Histogram<u64>,
    /// Wall time from the first load to the last answer.
    pub seconds: f64,
}

/// The stream picker of reader `reader`.
#[must_use]
pub fn picker(reader: u64) -> SmallRng {
    SmallRng::seed_from_u64(reader)
}

/// Checks that a load of `stream` returned its `EVENTS_PER_STREAM` events,
/// given as (stream, revision), in order.
///
/// # Errors
/// An event is missing, out of order or of another stream.
pub fn ensure_whole<'a>(stream: &str, events: impl ExactSizeIterator<Item = (&'a str, u64)>) -> anyhow::Result<()> {
    let count = events.len() as u64;
    let mut in_order = true;
    for (expected_revision, (name, revision)) in events.enumerate() {
        in_order &= name == stream && revision == expected_revision as u64;
    }
    anyhow::ensure!(count == EVENTS_PER_STREAM && in_order, "{stream} read back wrong ({count} events)");
    Ok(())
}

/// Runs `readers` threads loading random streams among the first
/// `streams` of the interleaved store for `seconds`.
///
/// # Errors
/// Store errors, a stream read back wrong, or a reader thread that
/// panicked.
pub fn run(store: &Store, readers: u64, streams: u64, seconds: u64) -> anyhow::Result<LoadTally> {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let results: Vec<anyhow::Result<(u64, Histogram<u64>)>> = std::thread::scope(|scope| {
        let threads: Vec<_> =
            (0..readers).map(|r| scope.spawn(move || load_until(store, r, streams, deadline))).collect();
        threads.into_iter().map(|t| t.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a reader panicked")))).collect()
    });
    let mut tally = LoadTally { loads: 0, latency: latency_histogram(), seconds: 0.0 };
    for result in results {
        let (loads, latency) = result?;
        tally.loads += loads;
        tally.latency.add(&latency).context("merging latency histograms")?;
    }
    tally.seconds = start.elapsed().as_secs_f64();
    Ok(tally)
}

/// One reader thread's loop: its loads and their latency.
fn load_until(store: &Store, reader: u64, streams: u64, deadline: Instant) -> anyhow::Result<(u64, Histogram<u64>)> {
    let mut rng = picker(reader);
    let mut latency = latency_histogram();
    let mut loads = 0;
    while Instant::now() < deadline {
        let name = interleaved::stream_name(rng.random_range(0..streams))?;
        let begun = Instant::now();
        let events = store.read_stream(&name, None, Direction::Forwards, EVENTS_PER_STREAM as usize)?;
        latency.saturating_record(begun.elapsed().as_micros() as u64);
        ensure_whole(name.as_str(), events.iter().map(|e| (e.stream.as_str(), e.revision.0)))?;
        loads += 1;
    }
    Ok((loads, latency))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_load_must_be_whole_and_in_order() {
        let whole: Vec<(&str, u64)> = (0..EVENTS_PER_STREAM).map(|r| ("entity-1", r)).collect();
        assert!(ensure_whole("entity-1", whole.iter().copied()).is_ok());
        assert!(ensure_whole("entity-2", whole.iter().copied()).is_err());
        assert!(ensure_whole("entity-1", whole.iter().copied().skip(1)).is_err());
        let mut swapped = whole.clone();
        swapped.swap(0, 1);
        assert!(ensure_whole("entity-1", swapped.into_iter()).is_err());
    }
}
