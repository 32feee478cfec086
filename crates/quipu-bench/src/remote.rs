//! Workload 6, `server`: what the network layer costs. Every cell runs the
//! same durable appends three ways, each on a fresh store for `--seconds`:
//! in-process (writer threads calling [`quipu_core::Store::append`], as
//! `append` and `batch` do), then through a `server` over gRPC (a
//! [`quipu_client::Client`] with its own HTTP/2 connection per writer) and
//! over HTTP/JSON (a keep-alive HTTP/1.1 connection per writer). Writers
//! are those of `writer`: each its own share of 100,000 streams, one
//! append in flight with the exact expected revision. Cells: single events
//! and 100-event appends, from 1, 16 and 64 writers. Each server line
//! carries `ratio_to_embedded`, its events/s over the in-process line just
//! above it. Stream loads follow (`remote_load`).
//!
//! Clients and server share this machine and its cores, so the clients'
//! work (encoding requests, decoding answers, their side of TCP) is part
//! of the cost shown, as it is for an application on the same host.

use anyhow::Context;
use quipu_core::{Options, Store};

use super::connection::Protocol;
use super::cpu::CpuMeter;
use super::report::Measurement;
use super::server::Server;
use super::timed::{self, Drive, Plan};
use super::writer::Writer;
use super::{Bench, batch_call, clients, remote_load};

/// Streams the writers share out (before scaling).
const STREAMS: u64 = 100_000;
/// Connection (and writer) counts, unless `--writers` says otherwise.
const CONNECTIONS: [u64; 3] = [1, 16, 64];
/// Events per append of the two kinds of cell: single events, batches.
const EVENTS_PER_APPEND: [u64; 2] = [1, 100];

/// One cell: how many writers append how many events at a time.
#[derive(Debug, Clone, Copy)]
struct Cell {
    /// Concurrent writers, each with its own connection when served.
    writers: u64,
    /// Events in each append.
    events_per_append: u64,
}

impl Cell {
    /// `server_append_<how>` for single events, `server_batch_<how>` for
    /// batches.
    fn workload(self, how: &str) -> String {
        let kind = if self.events_per_append == 1 { "append" } else { "batch" };
        format!("server_{kind}_{how}")
    }
}

/// Runs every append cell, then the stream loads; prints a line each.
///
/// # Errors
/// Store, server or client errors, or any conflict (the writers know
/// every revision, so a conflict means a revision was lost).
pub fn run(bench: &Bench) -> anyhow::Result<()> {
    let counts = bench.writer_counts(&CONNECTIONS);
    let (mut conflicts, mut single_event_embedded) = (0, 0.0);
    for events_per_append in EVENTS_PER_APPEND {
        for &writers in &counts {
            let (cell_conflicts, embedded_events_per_s) = run_cell(bench, Cell { writers, events_per_append })?;
            conflicts += cell_conflicts;
            if events_per_append == 1 {
                single_event_embedded = embedded_events_per_s;
            }
        }
    }
    anyhow::ensure!(conflicts == 0, "{conflicts} appends with an exact expected revision conflicted");
    batch_call::run(bench, single_event_embedded)?;
    remote_load::run(bench, &counts)
}

/// Runs `cell` in-process, then over each protocol; returns the conflicts
/// and the in-process events/s.
fn run_cell(bench: &Bench, cell: Cell) -> anyhow::Result<(u64, f64)> {
    let workload = cell.workload("embedded");
    let plan = Plan {
        workload: &workload,
        writers: cell.writers,
        streams: STREAMS,
        events_per_append: cell.events_per_append,
        drive: Drive::Threads,
    };
    let (embedded, mut conflicts) = timed::run(bench, plan)?;
    let embedded_events_per_s = embedded.events_per_s();
    bench.emit(&embedded);
    for protocol in Protocol::ALL {
        let (served, served_conflicts) = run_served(bench, cell, protocol)?;
        bench.emit(&served.with_ratio_to_embedded(embedded_events_per_s));
        conflicts += served_conflicts;
    }
    Ok((conflicts, embedded_events_per_s))
}

/// Runs `cell` through a server on a fresh store over `protocol`; returns
/// the result and the number of conflicts.
fn run_served(bench: &Bench, cell: Cell, protocol: Protocol) -> anyhow::Result<(Measurement, u64)> {
    let workload = cell.workload(protocol.name());
    let dir = bench.store_dir(&format!("{workload}-{}", cell.writers))?;
    let streams = bench.scaled(STREAMS, cell.writers);
    let writers = (0..cell.writers)
        .map(|w| Writer::new(w, cell.writers, streams, cell.events_per_append))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let store = Store::open(&dir, Options::default()).context("opening the bench store")?;
    let cpu = CpuMeter::start(store.commit_meter());
    let server = Server::start(store)?;
    let tally = clients::append(server.addresses(), protocol, writers, bench.seconds);
    let cpu = cpu.stop();
    // Stopped whatever the clients did, so a failed run leaves no server.
    let stopped = server.stop();
    let tally = tally?;
    stopped?;
    let log_bytes = log_bytes(&dir)?;
    let measurement = Measurement::new(&workload, tally.appends * cell.events_per_append, log_bytes, tally.seconds)
        .with("writers", cell.writers)
        .with("protocol", protocol.name())
        .with("events_per_append", cell.events_per_append)
        .with("streams", streams)
        .with("appends_per_s", (tally.appends as f64 / tally.seconds).round())
        .with("conflicts", tally.conflicts)
        .with("log_bytes", log_bytes)
        .with_cpu(&cpu)
        .with_latency(tally.latency);
    bench.finish_store(&dir)?;
    Ok((measurement, tally.conflicts))
}

/// Log bytes of the closed store in `dir`: the server owned it, so it is
/// opened again to ask. (Its index bytes are left out: closing flushed
/// the index, so they would not compare with the open store's of the
/// in-process line.)
pub fn log_bytes(dir: &std::path::Path) -> anyhow::Result<u64> {
    let store = Store::open(dir, Options::default()).context("reopening the served store")?;
    let (log_bytes, _) = store.disk_bytes()?;
    store.close()?;
    Ok(log_bytes)
}
