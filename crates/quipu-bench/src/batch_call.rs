//! The `server_append_batch_call` line of the `server` workload: one gRPC
//! connection sends single-event appends through `AppendBatch`, the
//! client-streaming call whose appends the server submits as they arrive,
//! so one connection fills group commits the way many writers do. Each
//! call carries [`APPENDS_PER_CALL`] appends, each to a new stream with
//! expected revision `NoStream` (checked, never conflicting); latency is
//! per call.

use std::time::{Duration, Instant};

use anyhow::Context;
use quipu_client::{Append, BatchOutcome, Client, ExpectedRevision, NewEvent, RetryPolicy};
use quipu_core::{Options, Store};

use super::Bench;
use super::payload::{EVENT_TYPE, data};
use super::report::{Measurement, latency_histogram};
use super::server::Server;

/// Appends per `AppendBatch` call.
pub const APPENDS_PER_CALL: u64 = 1000;

/// Runs the line on a fresh store and prints it, with its ratio to
/// `embedded_events_per_s` (the in-process single-event line with the most
/// writers).
///
/// # Errors
/// Store, server or client errors, or an append that was not written.
pub fn run(bench: &Bench, embedded_events_per_s: f64) -> anyhow::Result<()> {
    let workload = "server_append_batch_call";
    let dir = bench.store_dir(workload)?;
    let store = Store::open(&dir, Options::default()).context("opening the bench store")?;
    let server = Server::start(store)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("client runtime")?;
    let address = format!("http://{}", server.addresses().grpc);
    let measured = runtime.block_on(drive(address, Duration::from_secs(bench.seconds)));
    drop(runtime);
    let stopped = server.stop();
    let (appends, seconds, latency) = measured?;
    stopped?;
    let log_bytes = super::remote::log_bytes(&dir)?;
    let measurement = Measurement::new(workload, appends, log_bytes, seconds)
        .with("writers", 1)
        .with("protocol", "grpc")
        .with("events_per_append", 1)
        .with("appends_per_call", APPENDS_PER_CALL)
        .with("appends_per_s", (appends as f64 / seconds).round())
        .with("log_bytes", log_bytes)
        .with_latency(latency)
        .with_ratio_to_embedded(embedded_events_per_s);
    bench.emit(&measurement);
    bench.finish_store(&dir)
}

/// Sends calls for `duration`; returns appends written, seconds and the
/// per-call latency.
async fn drive(address: String, duration: Duration) -> anyhow::Result<(u64, f64, hdrhistogram::Histogram<u64>)> {
    let client = Client::connect(address).await?.with_retry(RetryPolicy::none());
    let mut latency = latency_histogram();
    let (start, mut appends, mut call) = (Instant::now(), 0, 0u64);
    while start.elapsed() < duration {
        let batch: Vec<Append> = (0..APPENDS_PER_CALL)
            .map(|n| {
                let event = NewEvent::new(EVENT_TYPE, data(n));
                Append::new().stream(format!("batchcall-{call}-{n}"), ExpectedRevision::NoStream, vec![event])
            })
            .collect();
        let begun = Instant::now();
        let outcomes = client.append_batch(&batch).await?;
        latency.saturating_record(begun.elapsed().as_micros() as u64);
        for outcome in outcomes {
            match outcome {
                BatchOutcome::Written(_) => appends += 1,
                BatchOutcome::Refused(error) => anyhow::bail!("an AppendBatch append was refused: {error}"),
            }
        }
        call += 1;
    }
    Ok((appends, start.elapsed().as_secs_f64(), latency))
}
