//! This disk's own limits, measured in the same run as the engine so every
//! engine number can be read as a share of what the hardware allows:
//! small appending writes each followed by fdatasync (what a durable
//! append costs without batching: the log's segments grow the same way),
//! the same writes over a file written beforehand (what preallocated
//! segments would cost, for comparison), large sequential writes (the
//! ceiling for batched appends), and the same bytes read back from the
//! disk (the ceiling for a catch-up that is not served from the page
//! cache).

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::Bench;
use super::page_cache;
use super::report::{Measurement, latency_histogram};

/// Bytes of each small synced write: about one 100-byte event in a record.
const SMALL_WRITE_BYTES: usize = 200;
/// Bytes of each sequential write.
const SEQUENTIAL_WRITE_BYTES: usize = 1 << 20;
/// Sequential bytes between fdatasyncs.
const SEQUENTIAL_SYNC_BYTES: u64 = 8 << 20;
/// Most bytes the sequential test writes.
const SEQUENTIAL_BYTES_MAX: u64 = 8 << 30;
/// Size of the file written beforehand for in-place synced writes.
const PREWRITTEN_BYTES: u64 = 64 << 20;
/// Longest each synced-write test runs.
const SYNC_TEST_SECONDS_MAX: u64 = 5;

/// What this disk can do.
#[derive(Debug, Clone, Copy)]
pub struct DiskLimits {
    /// Small appending writes with an fdatasync each, per second.
    pub fdatasync_per_s: f64,
    /// Sequential write bandwidth with periodic fdatasync, MB/s.
    pub seq_mb_per_s: f64,
}

/// Measures and prints both limits.
///
/// # Errors
/// I/O errors on the scratch file.
pub fn measure(bench: &Bench) -> anyhow::Result<DiskLimits> {
    let dir = bench.store_dir("disk")?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let syncs = synced_small_writes(bench, &dir.join("syncs"))?;
    let in_place = synced_writes_in_place(bench, &dir.join("in-place"))?;
    let sequential = sequential_writes(bench, &dir.join("sequential"))?;
    let read_back = sequential_reads(&dir.join("sequential"))?;
    std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    let limits = DiskLimits { fdatasync_per_s: syncs.events_per_s(), seq_mb_per_s: sequential.mb_per_s() };
    bench.emit(&syncs);
    bench.emit(&in_place);
    bench.emit(&sequential);
    bench.emit(&read_back);
    Ok(limits)
}

fn synced_small_writes(bench: &Bench, path: &std::path::Path) -> anyhow::Result<Measurement> {
    let mut file = OpenOptions::new().create(true).append(true).open(path).context("creating the sync test file")?;
    let block = vec![b'q'; SMALL_WRITE_BYTES];
    let mut latency = latency_histogram();
    let limit = Duration::from_secs(bench.seconds.min(SYNC_TEST_SECONDS_MAX));
    let start = Instant::now();
    let mut writes = 0u64;
    while start.elapsed() < limit {
        let begun = Instant::now();
        file.write_all(&block).context("writing")?;
        file.sync_data().context("fdatasync")?;
        latency.saturating_record(begun.elapsed().as_micros() as u64);
        writes += 1;
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(Measurement::new("disk_fdatasync", writes, writes * SMALL_WRITE_BYTES as u64, seconds)
        .with("write_bytes", SMALL_WRITE_BYTES as u64)
        .with("file", "appended")
        .with_latency(latency))
}

/// Small writes each followed by fdatasync over a file already written
/// and synced, so no write changes the file's size or allocation.
fn synced_writes_in_place(bench: &Bench, path: &std::path::Path) -> anyhow::Result<Measurement> {
    let file = OpenOptions::new().create(true).write(true).truncate(true).open(path).context("creating the file")?;
    let zeros = vec![0u8; SEQUENTIAL_WRITE_BYTES];
    for chunk in 0..PREWRITTEN_BYTES / SEQUENTIAL_WRITE_BYTES as u64 {
        file.write_all_at(&zeros, chunk * SEQUENTIAL_WRITE_BYTES as u64).context("writing")?;
    }
    file.sync_all().context("fsync")?;
    let block = vec![b'q'; SMALL_WRITE_BYTES];
    let mut latency = latency_histogram();
    let limit = Duration::from_secs(bench.seconds.min(SYNC_TEST_SECONDS_MAX));
    let start = Instant::now();
    let mut writes = 0u64;
    let mut offset = 0u64;
    while start.elapsed() < limit && offset + SMALL_WRITE_BYTES as u64 <= PREWRITTEN_BYTES {
        let begun = Instant::now();
        file.write_all_at(&block, offset).context("writing")?;
        file.sync_data().context("fdatasync")?;
        latency.saturating_record(begun.elapsed().as_micros() as u64);
        offset += SMALL_WRITE_BYTES as u64;
        writes += 1;
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(Measurement::new("disk_fdatasync_overwrite", writes, writes * SMALL_WRITE_BYTES as u64, seconds)
        .with("write_bytes", SMALL_WRITE_BYTES as u64)
        .with("file", "written beforehand")
        .with_latency(latency))
}

/// 1 MiB writes with an fdatasync every 8 MiB for the run's duration (at
/// most `SEQUENTIAL_BYTES_MAX`): long enough that a write-back cache in
/// front of the disk cannot absorb it all.
fn sequential_writes(bench: &Bench, path: &std::path::Path) -> anyhow::Result<Measurement> {
    let mut file =
        OpenOptions::new().create(true).write(true).truncate(true).open(path).context("creating the file")?;
    let block = vec![b'q'; SEQUENTIAL_WRITE_BYTES];
    let limit = Duration::from_secs(bench.seconds);
    let start = Instant::now();
    let mut written = 0u64;
    while start.elapsed() < limit && written < SEQUENTIAL_BYTES_MAX {
        file.write_all(&block).context("writing")?;
        written += SEQUENTIAL_WRITE_BYTES as u64;
        if written.is_multiple_of(SEQUENTIAL_SYNC_BYTES) {
            file.sync_data().context("fdatasync")?;
        }
    }
    file.sync_data().context("fdatasync")?;
    let seconds = start.elapsed().as_secs_f64();
    Ok(Measurement::new("disk_seq_write", 0, written, seconds)
        .with("write_bytes", SEQUENTIAL_WRITE_BYTES as u64)
        .with("sync_every_bytes", SEQUENTIAL_SYNC_BYTES))
}

/// The file [`sequential_writes`] wrote, read back in 1 MiB reads from
/// the disk: the page cache is dropped first (where the kernel allows it;
/// the line says whether it did, as a read from the cache is no disk
/// figure).
fn sequential_reads(path: &std::path::Path) -> anyhow::Result<Measurement> {
    let dropped = page_cache::drop_all();
    let mut file = OpenOptions::new().read(true).open(path).context("opening the sequential file")?;
    let mut block = vec![0u8; SEQUENTIAL_WRITE_BYTES];
    let start = Instant::now();
    let mut read = 0u64;
    loop {
        let n = file.read(&mut block).context("reading")?;
        if n == 0 {
            break;
        }
        read += n as u64;
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(Measurement::new("disk_seq_read", 0, read, seconds)
        .with("read_bytes", SEQUENTIAL_WRITE_BYTES as u64)
        .with("page_cache_dropped", dropped))
}
