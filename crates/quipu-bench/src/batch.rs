//! Workload 2, `batch`: durable appends of 100 events (100-byte JSON
//! each) to one stream at a time, from 1, 8 and 64 writer threads. The
//! log bytes written per second are given as a ratio to this disk's
//! sequential write bandwidth, the ceiling for batched appends.

use super::Bench;
use super::timed::{self, Drive, Plan};

/// Streams the writers share out.
const STREAMS: u64 = 100_000;
/// Events per append.
const EVENTS_PER_APPEND: u64 = 100;
/// Writer counts (unless `--writers` says otherwise).
const WRITERS: [u64; 3] = [1, 8, 64];

/// Runs every writer count and prints a line each.
///
/// # Errors
/// Store errors, or any conflict.
pub fn run(bench: &Bench) -> anyhow::Result<()> {
    let mut conflicts = 0;
    for writers in bench.writer_counts(&WRITERS) {
        let plan = Plan {
            workload: "batch",
            writers,
            streams: STREAMS,
            events_per_append: EVENTS_PER_APPEND,
            drive: Drive::Threads,
        };
        let (measurement, run_conflicts) = timed::run(bench, plan)?;
        let seq_mb_per_s = bench.disk.map(|d| d.seq_mb_per_s);
        let mb_per_s = measurement.mb_per_s();
        bench.emit(&measurement.with_ratio_to_disk(mb_per_s, seq_mb_per_s, "seq_write_mb_per_s"));
        conflicts += run_conflicts;
    }
    anyhow::ensure!(conflicts == 0, "{conflicts} batch appends with an exact expected revision conflicted");
    Ok(())
}
