//! The five workloads, run the same way against every peer:
//!
//! 1. `append`: single-event appends with the exact expected revision,
//!    from 1, 16 and 64 writers, each with its own connection and its own
//!    share of the streams, one append in flight each;
//! 2. `batch`: 100-event appends, the same way;
//! 3. `load`: fill streams of 20 events interleaved (revision r of every
//!    stream before revision r + 1 of any), then load whole streams picked
//!    at random;
//! 4. `catchup`: read everything written, from the start, in order (for
//!    at most a minute);
//! 5. `disk`: disk bytes per event written.
//!
//! A conflict in 1 or 2 would mean a lost or invented revision: each
//! writer owns its streams. It fails the run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};

use crate::payload::payload;
use crate::peer::{Appended, Fill, Peer};

/// Events per stream of the load store.
pub const EVENTS_PER_LOADED_STREAM: u64 = 20;
/// Streams per fill append.
const FILL_STREAMS_PER_APPEND: usize = 256;
/// Connections filling the load store.
const FILL_CONNECTIONS: usize = 8;

/// What one timed run measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Operations (appends or loads) done.
    pub operations: u64,
    /// Events written or read.
    pub events: u64,
    /// Wall time.
    pub seconds: f64,
    /// Latency per operation, µs.
    pub latency: Histogram<u64>,
}

impl Outcome {
    /// Events per second.
    #[must_use]
    pub fn events_per_s(&self) -> f64 {
        self.events as f64 / self.seconds
    }

    /// Operations per second.
    #[must_use]
    pub fn operations_per_s(&self) -> f64 {
        self.operations as f64 / self.seconds
    }
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 100 s at 3 significant figures: the bounds are constants.
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid histogram bounds")
}

/// Appends of `events_per_append` events from `writers` writers for
/// `duration`, over `streams` streams named `<prefix>-<n>`.
///
/// # Errors
/// A failed append or any conflict.
pub async fn appends(
    peer: Arc<dyn Peer>,
    prefix: &str,
    writers: u64,
    streams: u64,
    events_per_append: u64,
    duration: Duration,
) -> anyhow::Result<Outcome> {
    let connections = connect_all(&peer, writers).await?;
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = connections
        .into_iter()
        .enumerate()
        .map(|(writer, mut connection)| {
            let owned: Vec<String> =
                (writer as u64..streams).step_by(writers as usize).map(|n| format!("{prefix}-{n}")).collect();
            let checks = peer.checks_revisions();
            tokio::spawn(async move {
                // Each owned stream with the revision its last append left.
                let mut owned: Vec<(String, Option<u64>)> = owned.into_iter().map(|stream| (stream, None)).collect();
                let (mut latency, mut appends) = (histogram(), 0u64);
                let batch: Vec<Vec<u8>> = (0..events_per_append).map(payload).collect();
                'appending: while !owned.is_empty() {
                    for (stream, revision) in &mut owned {
                        if Instant::now() >= deadline {
                            break 'appending;
                        }
                        let begun = Instant::now();
                        let appended = connection.append(stream, *revision, &batch).await?;
                        latency.saturating_record(begun.elapsed().as_micros() as u64);
                        anyhow::ensure!(
                            appended == Appended::Written || !checks,
                            "a conflict on {stream}: a revision was lost or invented"
                        );
                        *revision = Some(revision.map_or(events_per_append - 1, |r| r + events_per_append));
                        appends += 1;
                    }
                }
                anyhow::Ok((appends, latency))
            })
        })
        .collect();
    merge(tasks, start, events_per_append).await
}

/// Writes `streams` streams `<prefix>-<n>` of 20 events, interleaved;
/// returns the fill's outcome.
///
/// # Errors
/// A failed write.
pub async fn fill(peer: Arc<dyn Peer>, prefix: &str, streams: u64) -> anyhow::Result<Outcome> {
    let mut connections = connect_all(&peer, FILL_CONNECTIONS as u64).await?;
    let chunks: Vec<Vec<u64>> =
        (0..streams).collect::<Vec<_>>().chunks(FILL_STREAMS_PER_APPEND).map(<[u64]>::to_vec).collect();
    let start = Instant::now();
    for revision in 0..EVENTS_PER_LOADED_STREAM {
        // Revision r of every stream before r + 1 of any: each round ends
        // before the next begins, and hands its connections back.
        let tasks: Vec<_> = connections
            .into_iter()
            .enumerate()
            .map(|(lane, mut connection)| {
                let mine: Vec<Vec<u64>> = chunks.iter().skip(lane).step_by(FILL_CONNECTIONS).cloned().collect();
                let prefix = prefix.to_string();
                tokio::spawn(async move {
                    for chunk in mine {
                        let writes: Vec<Fill> = chunk
                            .iter()
                            .map(|n| (format!("{prefix}-{n}"), revision, vec![payload(revision)]))
                            .collect();
                        connection.fill(&writes).await?;
                    }
                    anyhow::Ok(connection)
                })
            })
            .collect();
        connections = Vec::with_capacity(FILL_CONNECTIONS);
        for task in tasks {
            connections.push(task.await.context("a filler panicked")??);
        }
    }
    let events = streams * EVENTS_PER_LOADED_STREAM;
    Ok(Outcome { operations: events, events, seconds: start.elapsed().as_secs_f64(), latency: histogram() })
}

/// Loads whole streams `<prefix>-<n>` picked at random among `streams`,
/// from `readers` readers for `duration`.
///
/// # Errors
/// A failed read, or a stream that does not have its 20 events.
pub async fn loads(
    peer: Arc<dyn Peer>,
    prefix: &str,
    streams: u64,
    readers: u64,
    duration: Duration,
) -> anyhow::Result<Outcome> {
    let connections = connect_all(&peer, readers).await?;
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = connections
        .into_iter()
        .enumerate()
        .map(|(reader, mut connection)| {
            let prefix = prefix.to_string();
            tokio::spawn(async move {
                let mut random = rand::rngs::SmallRng::seed_from_u64(reader as u64);
                let (mut latency, mut loads) = (histogram(), 0u64);
                while Instant::now() < deadline {
                    let stream = format!("{prefix}-{}", random.random_range(0..streams));
                    let begun = Instant::now();
                    let events = connection.load(&stream).await?;
                    latency.saturating_record(begun.elapsed().as_micros() as u64);
                    anyhow::ensure!(
                        events as u64 == EVENTS_PER_LOADED_STREAM,
                        "{stream} loaded {events} events, not {EVENTS_PER_LOADED_STREAM}"
                    );
                    loads += 1;
                }
                anyhow::Ok((loads, latency))
            })
        })
        .collect();
    merge(tasks, start, EVENTS_PER_LOADED_STREAM).await
}

/// `count` new connections to `peer`, opened before any clock starts.
async fn connect_all(peer: &Arc<dyn Peer>, count: u64) -> anyhow::Result<Vec<Box<dyn crate::peer::Connection>>> {
    let mut connections = Vec::new();
    for _ in 0..count {
        connections.push(peer.connect().await?);
    }
    Ok(connections)
}

/// A task of a timed run: its operations and their latencies.
type Task = tokio::task::JoinHandle<anyhow::Result<(u64, Histogram<u64>)>>;

/// Waits for every task begun at `start` and sums them up, each operation
/// counting `events_per_operation` events.
async fn merge(tasks: Vec<Task>, start: Instant, events_per_operation: u64) -> anyhow::Result<Outcome> {
    let mut outcome = Outcome { operations: 0, events: 0, seconds: 0.0, latency: histogram() };
    for task in tasks {
        let (operations, latency) = task.await.context("a task of the run panicked")??;
        outcome.operations += operations;
        outcome.latency.add(latency).context("merging latencies")?;
    }
    outcome.seconds = start.elapsed().as_secs_f64();
    outcome.events = outcome.operations * events_per_operation;
    Ok(outcome)
}

/// Reads everything from the start, page by page, on one connection, for
/// at most `limit` (a slow reader of twenty million events would take the
/// whole run; the rate is what is measured).
///
/// # Errors
/// A failed read.
pub async fn catch_up(peer: Arc<dyn Peer>, limit: Duration) -> anyhow::Result<Outcome> {
    let mut connection = peer.connect().await?;
    let start = Instant::now();
    let deadline = start + limit;
    let (mut events, mut pages, mut from, mut latency) = (0u64, 0u64, None, histogram());
    loop {
        let begun = Instant::now();
        let page = connection.read_all(from).await?;
        latency.saturating_record(begun.elapsed().as_micros() as u64);
        events += page.events as u64;
        pages += 1;
        match page.next {
            Some(next) if Instant::now() < deadline => from = Some(next),
            _ => break,
        }
    }
    Ok(Outcome { operations: pages, events, seconds: start.elapsed().as_secs_f64(), latency })
}
