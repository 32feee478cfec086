//! Workload `snapshots`: loading an aggregate of a 10,000-event stream
//! through a `server` in this process, with and without a snapshot.
//!
//! 10,000 events (not scaled) go to one stream in 100-event appends.
//! Then, for `--seconds` each, one client loads and folds the aggregate
//! again and again: first from the first event (`Client::load`, line
//! `snapshot_load_none`), then from a snapshot at the last revision plus
//! no tail (`Client::load_snapshotted`, line `snapshot_load_snapshot`).
//! Events/s counts events folded; latency is per load.

use std::time::{Duration, Instant};

use anyhow::Context;
use quipu_client::{Aggregate, Append, Client, Event, ExpectedRevision, NewEvent, Snapshotted};
use serde::{Deserialize, Serialize};

use super::Bench;
use super::report::{Measurement, latency_histogram};

/// Events in the stream.
const EVENTS: u64 = 10_000;
/// The stream.
const STREAM: &str = "account-bench";

/// The folded state: a sum and a count.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Balance {
    total: i64,
    count: u64,
}

impl Aggregate for Balance {
    fn apply(&mut self, event: &Event) -> Result<(), quipu_client::Error> {
        let value: serde_json::Value = event.json()?;
        self.total += value.get("amount").and_then(serde_json::Value::as_i64).unwrap_or(0);
        self.count += 1;
        Ok(())
    }
}

impl Snapshotted for Balance {
    const SCHEMA_VERSION: u32 = 1;
}

/// Runs both loads; prints a line each.
///
/// # Errors
/// Store, server or client errors.
pub fn run(bench: &Bench) -> anyhow::Result<()> {
    super::server::with_server(bench, "snapshots", |address| measure(bench, address))
}

async fn measure(bench: &Bench, address: String) -> anyhow::Result<()> {
    let client = Client::connect(address).await?;
    let appends: Vec<Append> = (0..EVENTS / 100)
        .map(|n| {
            let events = (0..100)
                .map(|i| NewEvent::json("Deposited", &serde_json::json!({ "amount": (n * 100 + i) % 17 })))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Append::new().stream(STREAM, ExpectedRevision::Any, events))
        })
        .collect::<Result<_, quipu_client::Error>>()?;
    client.append_batch(&appends).await?;
    let seconds = Duration::from_secs(bench.seconds.max(1));
    let full = timed_loads(seconds, || async { client.load::<Balance>(STREAM).await.map(|l| l.state.count) }).await?;
    bench.emit(&full.measurement("snapshot_load_none"));
    let state = client.load::<Balance>(STREAM).await?;
    let last = state.last_revision.context("the stream has events")?;
    client.write_snapshot(STREAM, last, Balance::SCHEMA_VERSION, serde_json::to_vec(&state.state)?).await?;
    let from_snapshot = timed_loads(seconds, || async {
        client.load_snapshotted::<Balance>(STREAM, None).await.map(|l| l.state.count)
    })
    .await?;
    bench.emit(&from_snapshot.measurement("snapshot_load_snapshot"));
    Ok(())
}

/// Loads done in a timed run.
struct Loads {
    loads: u64,
    seconds: f64,
    latency: hdrhistogram::Histogram<u64>,
}

impl Loads {
    fn measurement(self, name: &str) -> Measurement {
        let events = self.loads * EVENTS;
        Measurement::new(name, events, 0, self.seconds).with_latency(self.latency).with("loads", self.loads)
    }
}

/// Runs `load` back to back for `duration`; each must fold every event.
async fn timed_loads<F, Fut>(duration: Duration, load: F) -> anyhow::Result<Loads>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<u64, quipu_client::Error>>,
{
    let mut latency = latency_histogram();
    let start = Instant::now();
    let mut loads = 0;
    while start.elapsed() < duration {
        let began = Instant::now();
        let folded = load().await?;
        anyhow::ensure!(folded == EVENTS, "a load folded {folded} of {EVENTS} events");
        latency.saturating_record(u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX));
        loads += 1;
    }
    Ok(Loads { loads, seconds: start.elapsed().as_secs_f64(), latency })
}
