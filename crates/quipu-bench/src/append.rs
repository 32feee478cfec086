//! Workload 1, `append`: durable single-event appends, each with the exact
//! expected revision of its stream, over 100,000 streams from 1, 8 and 64
//! concurrent writers (threads calling [`quipu_core::Store::append`]), and
//! then 8 and 64 writers driven from one submit loop. Each result is also
//! given as a ratio to this disk's fdatasync/s: above 1 means several
//! appends shared one fdatasync (group commit).

use super::Bench;
use super::timed::{self, Drive, Plan};

/// Streams the writers share out.
const STREAMS: u64 = 100_000;
/// Writer counts run as threads (unless `--writers` says otherwise).
const THREAD_WRITERS: [u64; 3] = [1, 8, 64];
/// Writer counts run from one submit loop (unless `--writers` says
/// otherwise).
const SUBMIT_WRITERS: [u64; 2] = [8, 64];

/// Runs every writer count and prints a line each.
///
/// # Errors
/// Store errors, or any conflict (the writers know every revision, so a
/// conflict means the store lost one).
pub fn run(bench: &Bench) -> anyhow::Result<()> {
    let threads = bench.writer_counts(&THREAD_WRITERS).into_iter().map(|writers| (writers, Drive::Threads));
    let submits = bench.writer_counts(&SUBMIT_WRITERS).into_iter().map(|writers| (writers, Drive::Submit));
    let mut conflicts = 0;
    for (writers, drive) in threads.into_iter().chain(submits) {
        let plan = Plan { workload: "append", writers, streams: STREAMS, events_per_append: 1, drive };
        let (measurement, run_conflicts) = timed::run(bench, plan)?;
        let fdatasync_per_s = bench.disk.map(|d| d.fdatasync_per_s);
        let events_per_s = measurement.events_per_s();
        bench.emit(&measurement.with_ratio_to_disk(events_per_s, fdatasync_per_s, "fdatasync_per_s"));
        conflicts += run_conflicts;
    }
    anyhow::ensure!(conflicts == 0, "{conflicts} appends with an exact expected revision conflicted");
    Ok(())
}
