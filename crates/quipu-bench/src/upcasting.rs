//! Workload `upcasting`: reading `$all` over gRPC through a `server` in
//! this process, with upcasting on and off.
//!
//! 100,000 events (scaled) of one type are written at version 1; an
//! upcaster chain of two versions (a rename, then an added default and a
//! move) is declared. One client then reads the whole log in pages of
//! 1,000 for `--seconds` each way: raw (line `upcast_read_raw`, events as
//! written) and upcast (line `upcast_read_v3`, every event taken through
//! both steps). Events/s counts events read.

use std::time::{Duration, Instant};

use quipu_client::{Append, Client, Direction, ExpectedRevision, NewEvent, Position, Upcaster};

use super::Bench;
use super::report::Measurement;

/// Events written (before scaling).
const EVENTS: u64 = 100_000;
/// Events per read.
const PAGE: u32 = 1_000;

/// Runs both reads; prints a line each.
///
/// # Errors
/// Store, server or client errors.
pub fn run(bench: &Bench) -> anyhow::Result<()> {
    super::server::with_server(bench, "upcasting", |address| measure(bench, address))
}

async fn measure(bench: &Bench, address: String) -> anyhow::Result<()> {
    let client = Client::connect(address).await?;
    let events = bench.scaled(EVENTS, 10_000);
    let appends: Vec<Append> = (0..events.div_ceil(100))
        .map(|n| {
            let batch = (0..100)
                .map(|i| {
                    let data =
                        serde_json::json!({"name": format!("customer {}", n * 100 + i), "town": "London", "n": i});
                    NewEvent::json("CustomerRegistered", &data)
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Append::new().stream(format!("customer-{}", n % 1000), ExpectedRevision::Any, batch))
        })
        .collect::<Result<_, quipu_client::Error>>()?;
    for chunk in appends.chunks(100) {
        client.append_batch(chunk).await?;
    }
    let declare = |from_version, steps| Upcaster { event_type: "CustomerRegistered".into(), from_version, steps };
    client.declare_upcaster(&declare(1, serde_json::json!([{"rename": {"path": "name", "to": "full_name"}}]))).await?;
    let steps = serde_json::json!([{"add": {"path": "tier", "value": "basic"}}, {"move": {"from": "town", "to": "address.city"}}]);
    client.declare_upcaster(&declare(2, steps)).await?;
    let seconds = Duration::from_secs(bench.seconds.max(1));
    for (name, raw) in [("upcast_read_raw", true), ("upcast_read_v3", false)] {
        let reader = client.clone().raw_reads(raw);
        let start = Instant::now();
        let mut read = 0u64;
        while start.elapsed() < seconds {
            read += read_all(&reader, raw).await?;
        }
        bench.emit(&Measurement::new(name, read, 0, start.elapsed().as_secs_f64()).with("raw", raw));
    }
    Ok(())
}

/// Reads the whole log once; checks each event's shape; returns how many.
async fn read_all(client: &Client, raw: bool) -> anyhow::Result<u64> {
    let (mut from, mut read) = (Position::START, 0);
    loop {
        let page = client.read_all(Some(from), Direction::Forwards, PAGE).await?;
        let Some(last) = page.last() else { return Ok(read) };
        from = last.position.next();
        for event in page.iter().filter(|e| e.event_type == "CustomerRegistered") {
            let upcast = event.json::<serde_json::Value>()?.get("full_name").is_some();
            anyhow::ensure!(upcast != raw, "event {} came {}", event.position, if upcast { "upcast" } else { "raw" });
            read += 1;
        }
    }
}
