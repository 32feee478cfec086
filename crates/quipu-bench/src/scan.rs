//! Workload 4, `scan`: reads `$all` from the start to the end in pages of
//! 10,000 events, as a projection rebuilding from position 0 does. MB/s
//! counts log bytes covered (the whole log); `payload_mb_per_s` counts only
//! the events' data.

use std::time::Instant;

use quipu_core::{Direction, Store};

use super::report::Measurement;

/// Events per `read_all` page.
const PAGE_EVENTS: usize = 10_000;

/// Scans the whole of `$all` once, naming the result `workload`.
///
/// # Errors
/// Store errors.
pub fn run(store: &Store, workload: &str) -> anyhow::Result<Measurement> {
    let start = Instant::now();
    let mut from = None;
    let mut events = 0u64;
    let mut payload_bytes = 0u64;
    loop {
        let page = store.read_all(from, Direction::Forwards, PAGE_EVENTS)?;
        let Some(last) = page.last() else { break };
        from = Some(last.position.next());
        events += page.len() as u64;
        payload_bytes += page.iter().map(|e| e.data.len() as u64).sum::<u64>();
    }
    let seconds = start.elapsed().as_secs_f64();
    let expected = store.last_position().map_or(0, |p| p.0 + 1);
    anyhow::ensure!(events == expected, "the scan returned {events} events, the log holds {expected}");
    let (log_bytes, _) = store.disk_bytes()?;
    Ok(Measurement::new(workload, events, log_bytes, seconds)
        .with("page_events", PAGE_EVENTS as u64)
        .with("payload_mb_per_s", (payload_bytes as f64 / 1e6 / seconds).round()))
}
