//! The `server` workload's stream loads: a store of 100,000 streams of 20
//! events written interleaved (`interleaved`), then whole streams picked
//! at random and loaded for `--seconds` by 1, 16 and 64 readers: first as
//! threads in-process (`readers`), then, with the store handed to a
//! `server`, through as many gRPC and as many HTTP connections
//! (`clients`). The fill has just written the log, so every pass reads
//! from a warm page cache. Server lines carry `ratio_to_embedded` against
//! the in-process line with the same number of readers.

use super::connection::Protocol;
use super::interleaved::{self, EVENTS_PER_STREAM};
use super::payload::EVENT_DATA_BYTES;
use super::readers::{self, LoadTally};
use super::report::Measurement;
use super::server::Server;
use super::{Bench, clients};

/// Streams in the store (before scaling).
const STREAMS: u64 = 100_000;

/// Fills the store, loads in-process, then through the server; prints a
/// line each.
///
/// # Errors
/// Store, server or client errors, or a stream read back wrong.
pub fn run(bench: &Bench, counts: &[u64]) -> anyhow::Result<()> {
    let dir = bench.store_dir("server_load")?;
    let filled = interleaved::fill(bench, &dir, STREAMS, "server_load_fill")?;
    let streams = filled.streams;
    let mut embedded = Vec::with_capacity(counts.len());
    for &readers in counts {
        let tally = readers::run(&filled.store, readers, streams, bench.seconds)?;
        let measurement = measurement("server_load_embedded", tally, readers, streams);
        embedded.push(measurement.events_per_s());
        bench.emit(&measurement);
    }
    let server = Server::start(filled.store)?;
    let served = run_served(bench, &server, counts, &embedded, streams);
    // Stopped whatever the clients did, so a failed run leaves no server.
    let stopped = server.stop();
    served?;
    stopped?;
    bench.finish_store(&dir)
}

/// Loads through `server` over each protocol from each count of
/// connections; `embedded` holds the in-process events/s of each count.
fn run_served(bench: &Bench, server: &Server, counts: &[u64], embedded: &[f64], streams: u64) -> anyhow::Result<()> {
    for protocol in Protocol::ALL {
        let workload = format!("server_load_{}", protocol.name());
        for (&connections, &embedded_events_per_s) in counts.iter().zip(embedded) {
            let tally = clients::load(server.addresses(), protocol, connections, streams, bench.seconds)?;
            let measurement = measurement(&workload, tally, connections, streams).with("protocol", protocol.name());
            bench.emit(&measurement.with_ratio_to_embedded(embedded_events_per_s));
        }
    }
    Ok(())
}

/// The result line of one timed load run.
fn measurement(workload: &str, tally: LoadTally, readers: u64, streams: u64) -> Measurement {
    let events = tally.loads * EVENTS_PER_STREAM;
    Measurement::new(workload, events, events * EVENT_DATA_BYTES as u64, tally.seconds)
        .with("readers", readers)
        .with("streams", streams)
        .with("events_per_load", EVENTS_PER_STREAM)
        .with("loads_per_s", (tally.loads as f64 / tally.seconds).round())
        .with_latency(tally.latency)
}
