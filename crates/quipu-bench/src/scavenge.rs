//! Workload `scavenge`: how fast the online scavenge goes through the log,
//! in the engine (no server), on segments of 64 MiB (scaled, at least
//! 1 MiB, so a scaled-down run still closes segments).
//!
//! 1,000,000 events (scaled) of 100 bytes go to 1,000 streams in 100-event
//! appends, round-robin. Then three scavenges run one after another:
//! - `scavenge_scan`: nothing to remove, so every closed segment is read
//!   and none rewritten (the cost of a scavenge that finds nothing);
//! - `scavenge_half`: every other stream is removed whole (half of the
//!   events, spread through every segment), so every segment is rewritten;
//! - `scavenge_again`: the same predicate again, over the rewritten
//!   segments (nothing left to remove).
//!
//! MB/s counts bytes of closed segments read per second;
//! `ratio_to_disk` is that over the disk's sequential write MB/s. Each
//! line also gives the bytes freed and the events removed. A check reads
//! `$all` back: the removed streams are gone and every other event is there.

use std::time::Instant;

use anyhow::Context;
use quipu_core::{
    AppendRequest, Direction, EventType, ExpectedRevision, Options, Revision, ScavengeProgress, Store, StreamName,
};

use super::Bench;
use super::payload::{EVENT_TYPE, event};
use super::report::Measurement;

/// Streams written.
const STREAMS: u64 = 1_000;
/// Events per append.
const APPEND_EVENTS: u64 = 100;
/// Segment size of the store at scale 1.
const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// Fills a store and runs the three scavenges; prints a line each.
///
/// # Errors
/// Store errors, or a store that reads back wrong after the scavenge.
pub fn run(bench: &Bench) -> anyhow::Result<()> {
    let dir = bench.store_dir("scavenge")?;
    let segment_size_bytes = bench.scaled(SEGMENT_BYTES, 1024 * 1024);
    let store = Store::open(&dir, Options { segment_size_bytes, ..Options::default() })?;
    let events = bench.scaled(1_000_000, 20_000) / APPEND_EVENTS * APPEND_EVENTS;
    fill(&store, events)?;
    let odd = |stream: &StreamName, _: Revision, _: u64| stream_number(stream).is_some_and(|n| n % 2 == 1);
    let nothing = |_: &StreamName, _: Revision, _: u64| false;
    bench.emit(&measure(bench, &store, "scavenge_scan", &nothing)?);
    let half = measure(bench, &store, "scavenge_half", &odd)?;
    let removed = half.extra.get("events_removed").and_then(serde_json::Value::as_u64).unwrap_or(0);
    bench.emit(&half);
    bench.emit(&measure(bench, &store, "scavenge_again", &odd)?);
    check(&store, events, removed)?;
    drop(store);
    bench.finish_store(&dir)
}

fn stream_number(stream: &StreamName) -> Option<u64> {
    stream.as_str().strip_prefix("account-")?.parse().ok()
}

fn fill(store: &Store, events: u64) -> anyhow::Result<()> {
    let event_type = EventType::new(EVENT_TYPE)?;
    for append in 0..events / APPEND_EVENTS {
        let stream = StreamName::new(format!("account-{}", append % STREAMS))?;
        let batch = (0..APPEND_EVENTS).map(|i| event(&event_type, append * APPEND_EVENTS + i)).collect();
        store.append(AppendRequest::to_stream(stream, ExpectedRevision::Any, batch))?;
    }
    Ok(())
}

/// Runs one scavenge with `doomed`; its line.
fn measure(
    bench: &Bench,
    store: &Store,
    name: &str,
    doomed: &dyn Fn(&StreamName, Revision, u64) -> bool,
) -> anyhow::Result<Measurement> {
    let (log_before, _) = store.disk_bytes()?;
    let started = Instant::now();
    let progress: ScavengeProgress = store.scavenge(doomed, &mut |_| {}, &|| false)?;
    let seconds = started.elapsed().as_secs_f64();
    let (log_after, _) = store.disk_bytes()?;
    let measurement = Measurement::new(name, progress.events_removed, progress.bytes_scanned, seconds);
    let mb_per_s = measurement.mb_per_s();
    Ok(measurement
        .with_ratio_to_disk(mb_per_s, bench.disk.map(|d| d.seq_mb_per_s), "sequential write MB/s")
        .with("segments", progress.segments_total)
        .with("segments_rewritten", progress.segments_rewritten)
        .with("events_removed", progress.events_removed)
        .with("bytes_reclaimed", progress.bytes_reclaimed)
        .with("log_bytes_before", log_before)
        .with("log_bytes_after", log_after))
}

/// `$all` holds no event of an odd stream from the scavenged segments,
/// and every event of the even ones.
fn check(store: &Store, events: u64, removed: u64) -> anyhow::Result<()> {
    let mut from = None;
    let mut read = 0u64;
    let mut even = 0u64;
    loop {
        let page = store.read_all(from, Direction::Forwards, 10_000)?;
        let Some(last) = page.last() else { break };
        from = Some(last.position.next());
        read += page.len() as u64;
        even += page.iter().filter(|e| stream_number(&e.stream).is_some_and(|n| n % 2 == 0)).count() as u64;
    }
    let appends_to = |parity: u64| (0..events / APPEND_EVENTS).filter(|a| a % STREAMS % 2 == parity).count() as u64;
    let written_even = appends_to(0) * APPEND_EVENTS;
    anyhow::ensure!(even == written_even, "{even} events of even streams read back, {written_even} written");
    anyhow::ensure!(read + removed == events, "{read} events read back and {removed} removed of {events}");
    let stream = StreamName::new("account-1")?;
    let head = store.stream_info(&stream)?.last_revision.context("account-1 keeps its head")?;
    let written = (0..events / APPEND_EVENTS).filter(|a| a % STREAMS == 1).count() as u64 * APPEND_EVENTS;
    anyhow::ensure!(head.0 + 1 == written, "account-1's head moved to {head}, {written} events were written");
    Ok(())
}
