//! The store the read workloads use: a million streams of twenty events
//! (`load`; the `server` workload's loads use 100,000), written
//! interleaved (revision r of every stream before revision r + 1 of any),
//! so one stream's events lie far apart in the log, as an entity's events
//! do in a long-lived store. It is written fast with
//! multi-stream appends (256 streams each, the default limit) from several
//! threads; each round ends before the next begins.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use quipu_core::{
    AppendOutcome, AppendRequest, EventType, ExpectedRevision, Options, Revision, Store, StreamName, StreamWrite,
};

use super::Bench;
use super::payload::event;
use super::report::Measurement;

/// Streams written by one fill append (the engine's limit was 256 when
/// the fill's numbers were first taken; it is kept so they compare).
pub const FILL_STREAMS_PER_APPEND: u64 = 256;

/// Streams in the store (before scaling).
pub const STREAMS: u64 = 1_000_000;
/// Events per stream.
pub const EVENTS_PER_STREAM: u64 = 20;
/// Threads writing each round.
const WRITERS: u64 = 8;

/// The filled store and its shape.
pub struct Filled {
    /// The open store.
    pub store: Store,
    /// Streams in it, named by [`stream_name`].
    pub streams: u64,
}

/// Name of stream `n`.
///
/// # Errors
/// Never for these names; kept fallible to avoid an unwrap.
pub fn stream_name(n: u64) -> anyhow::Result<StreamName> {
    Ok(StreamName::new(format!("entity-{n}"))?)
}

/// Creates the store in `dir` and fills `streams` streams (before
/// scaling, at least 1000), prints the fill's numbers as `workload`, and
/// returns the open store.
///
/// # Errors
/// Store errors, or a fill append that was not written.
pub fn fill(bench: &Bench, dir: &std::path::Path, streams: u64, workload: &str) -> anyhow::Result<Filled> {
    let options = Options::default();
    let streams_per_append = FILL_STREAMS_PER_APPEND;
    let store = Arc::new(Store::open(dir, options).context("opening the bench store")?);
    let streams = bench.scaled(streams, 1000);
    let start = Instant::now();
    for round in 0..EVENTS_PER_STREAM {
        let threads: Vec<_> = (0..WRITERS)
            .map(|w| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || fill_round(&store, round, w, streams, streams_per_append))
            })
            .collect();
        for thread in threads {
            thread.join().map_err(|_| anyhow::anyhow!("a fill writer panicked"))??;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let (log_bytes, index_bytes) = store.disk_bytes()?;
    let events = streams * EVENTS_PER_STREAM;
    bench.emit(
        &Measurement::new(workload, events, log_bytes, seconds)
            .with("streams", streams)
            .with("streams_per_append", streams_per_append)
            .with("writers", WRITERS)
            .with("log_bytes", log_bytes)
            .with("index_bytes", index_bytes)
            .with("disk_bytes_per_event", ((log_bytes + index_bytes) as f64 / events as f64).round()),
    );
    let store = Arc::into_inner(store).context("a fill writer still holds the store")?;
    Ok(Filled { store, streams })
}

/// Writer `w` appends revision `round` to its chunks of streams.
fn fill_round(store: &Store, round: u64, w: u64, streams: u64, streams_per_append: u64) -> anyhow::Result<()> {
    let event_type = EventType::new("Changed")?;
    let expected = match round {
        0 => ExpectedRevision::NoStream,
        _ => ExpectedRevision::Exact(Revision(round - 1)),
    };
    let chunks = streams.div_ceil(streams_per_append);
    for chunk in (w..chunks).step_by(WRITERS as usize) {
        let first = chunk * streams_per_append;
        let writes = (first..(first + streams_per_append).min(streams))
            .map(|n| Ok(StreamWrite { stream: stream_name(n)?, expected, events: vec![event(&event_type, round)] }))
            .collect::<anyhow::Result<Vec<_>>>()?;
        match store.append(AppendRequest { writes, condition: None })? {
            AppendOutcome::Written(_) => {}
            other => anyhow::bail!("fill append of round {round} was not written: {other:?}"),
        }
    }
    Ok(())
}
