//! Client connections driven for a set time: one task per connection
//! (see `connection`), each with one request in flight, on a tokio
//! runtime of the clients' own. Every connection is open before the clock
//! starts. This is the server's counterpart of `threads` for appends and
//! of `readers` for stream loads, and tallies the same way.

use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use rand::Rng;
use tokio::runtime::Runtime;

use super::connection::{Connection, Protocol};
use super::interleaved;
use super::readers::{self, LoadTally};
use super::report::latency_histogram;
use super::server::Addresses;
use super::writer::{Tally, Writer};

/// Appends through one connection per writer, for `seconds`.
///
/// # Errors
/// A connection that fails to open or to append, an answer a writer
/// cannot take in, or a client task that panicked.
pub fn append(addresses: Addresses, protocol: Protocol, writers: Vec<Writer>, seconds: u64) -> anyhow::Result<Tally> {
    client_runtime()?.block_on(async move {
        let connections = open(protocol, addresses, writers.len() as u64).await?;
        let start = Instant::now();
        let deadline = start + Duration::from_secs(seconds);
        let tasks: Vec<_> = connections
            .into_iter()
            .zip(writers)
            .map(|(connection, writer)| tokio::spawn(append_until(connection, writer, deadline)))
            .collect();
        let mut tally = Tally { appends: 0, conflicts: 0, latency: latency_histogram(), seconds: 0.0 };
        for task in tasks {
            let (writer, latency) = task.await.context("a client task panicked")??;
            tally.appends += writer.appends;
            tally.conflicts += writer.conflicts;
            tally.latency.add(&latency).context("merging latency histograms")?;
        }
        tally.seconds = start.elapsed().as_secs_f64();
        Ok(tally)
    })
}

/// Loads random streams among the first `streams` of the interleaved
/// store through `connections` connections, for `seconds`.
///
/// # Errors
/// A connection that fails to open or to read, a stream read back wrong,
/// or a client task that panicked.
pub fn load(
    addresses: Addresses,
    protocol: Protocol,
    connections: u64,
    streams: u64,
    seconds: u64,
) -> anyhow::Result<LoadTally> {
    client_runtime()?.block_on(async move {
        let opened = open(protocol, addresses, connections).await?;
        let start = Instant::now();
        let deadline = start + Duration::from_secs(seconds);
        let tasks: Vec<_> = (0..connections)
            .zip(opened)
            .map(|(reader, connection)| tokio::spawn(load_until(connection, reader, streams, deadline)))
            .collect();
        let mut tally = LoadTally { loads: 0, latency: latency_histogram(), seconds: 0.0 };
        for task in tasks {
            let (loads, latency) = task.await.context("a client task panicked")??;
            tally.loads += loads;
            tally.latency.add(&latency).context("merging latency histograms")?;
        }
        tally.seconds = start.elapsed().as_secs_f64();
        Ok(tally)
    })
}

/// The clients' runtime: as many workers as cores, like the server's.
fn client_runtime() -> anyhow::Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("bench-client")
        .build()
        .context("starting the client runtime")
}

/// Opens `count` connections of `protocol`, one after another.
async fn open(protocol: Protocol, addresses: Addresses, count: u64) -> anyhow::Result<Vec<Connection>> {
    let mut connections = Vec::new();
    for _ in 0..count {
        connections.push(Connection::open(protocol, addresses).await?);
    }
    Ok(connections)
}

/// One connection's append loop: the writer afterwards, and the latency
/// of its appends.
async fn append_until(
    mut connection: Connection,
    mut writer: Writer,
    deadline: Instant,
) -> anyhow::Result<(Writer, Histogram<u64>)> {
    let mut latency = latency_histogram();
    while Instant::now() < deadline {
        let (stream, last) = writer.next_stream();
        let request = connection.request(stream, last, writer.events_per_append());
        let begun = Instant::now();
        let ack = connection.append(request).await?;
        latency.saturating_record(begun.elapsed().as_micros() as u64);
        writer.take(ack);
    }
    Ok((writer, latency))
}

/// One connection's load loop as reader `reader`: its loads and their
/// latency.
async fn load_until(
    mut connection: Connection,
    reader: u64,
    streams: u64,
    deadline: Instant,
) -> anyhow::Result<(u64, Histogram<u64>)> {
    let mut rng = readers::picker(reader);
    let mut latency = latency_histogram();
    let mut loads = 0;
    while Instant::now() < deadline {
        let name = interleaved::stream_name(rng.random_range(0..streams))?;
        let begun = Instant::now();
        connection.load(name.as_str()).await?;
        latency.saturating_record(begun.elapsed().as_micros() as u64);
        loads += 1;
    }
    Ok((loads, latency))
}
