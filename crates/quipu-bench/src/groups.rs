//! Workload `groups`: consumer groups through a `server` in this process.
//!
//! 1. Delivery rate: 200,000 events (scaled) over 1,000 streams are
//!    written first; a group from the beginning is then drained by 1 and
//!    by 4 members over gRPC, each acknowledging every event as it comes
//!    (one group per member count). Lines `groups_deliver_x<N>`.
//! 2. End-to-end lag under a steady load: one writer appends single events
//!    at 1,000 events/s for `--seconds` to a group from the end; one member
//!    notes, for each delivery, the time since the event's commit
//!    (`recorded_at`) and acknowledges it. Line `groups_lag`, latency is
//!    that lag (p50/p99/p99.9).
//!
//! Clients and server share the machine's cores.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use quipu_client::{Append, Client, ExpectedRevision, GroupFilter, GroupStart, GroupTuning, NewEvent};

use super::Bench;
use super::payload::EVENT_DATA_BYTES;
use super::report::{Measurement, latency_histogram};

/// Events written before the delivery runs (before scaling).
const EVENTS: u64 = 200_000;
/// Streams they go to.
const STREAMS: u64 = 1_000;
/// Events per append of the fill.
const FILL_EVENTS_PER_APPEND: u64 = 100;
/// Member counts of the delivery runs.
const MEMBERS: [u64; 2] = [1, 4];
/// Events each member may hold.
const MAX_IN_FLIGHT: u32 = 1_000;
/// Appends per second of the lag run.
const LAG_RATE: u64 = 1_000;

/// Runs both parts; prints a line each.
///
/// # Errors
/// Store, server or client errors.
pub fn run(bench: &Bench) -> anyhow::Result<()> {
    super::server::with_server(bench, "groups", |address| measure(bench, address))
}

async fn measure(bench: &Bench, address: String) -> anyhow::Result<()> {
    let client = Client::connect(address).await?;
    let events = bench.scaled(EVENTS, 10_000);
    fill(&client, events).await?;
    for members in MEMBERS {
        let seconds = deliver(&client, events, members).await?;
        let measurement =
            Measurement::new(&format!("groups_deliver_x{members}"), events, events * EVENT_DATA_BYTES as u64, seconds)
                .with("members", members);
        bench.emit(&measurement);
    }
    let (delivered, seconds, latency) = lag(&client, bench.seconds).await?;
    bench.emit(&Measurement::new("groups_lag", delivered, 0, seconds).with_latency(latency).with("rate", LAG_RATE));
    Ok(())
}

fn payload(n: u64) -> NewEvent {
    NewEvent::new("Happened", super::payload::data(n).into_bytes())
}

/// Writes `events` in 100-event appends spread over [`STREAMS`] streams.
async fn fill(client: &Client, events: u64) -> anyhow::Result<()> {
    let appends: Vec<Append> = (0..events / FILL_EVENTS_PER_APPEND)
        .map(|n| {
            let batch = (0..FILL_EVENTS_PER_APPEND).map(|i| payload(n * FILL_EVENTS_PER_APPEND + i)).collect();
            Append::new().stream(format!("group-{}", n % STREAMS), ExpectedRevision::Any, batch)
        })
        .collect();
    for chunk in appends.chunks(100) {
        for outcome in client.append_batch(chunk).await? {
            if let quipu_client::BatchOutcome::Refused(error) = outcome {
                anyhow::bail!("a fill append was refused: {error}");
            }
        }
    }
    Ok(())
}

/// Seconds for `members` members to take and acknowledge `events`.
async fn deliver(client: &Client, events: u64, members: u64) -> anyhow::Result<f64> {
    let name = format!("bench-x{members}");
    let tuning = GroupTuning { max_in_flight: Some(MAX_IN_FLIGHT), ..GroupTuning::default() };
    let filter = GroupFilter { category: Some("group".into()), ..GroupFilter::default() };
    client.create_group(&name, filter, GroupStart::Beginning, tuning).await?;
    let done = Arc::new(AtomicU64::new(0));
    // Nanoseconds from the start to the last acknowledgement: members
    // notice the end only at their next wake-up, which is not counted.
    let finished = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..members)
        .map(|member| {
            let (client, name, done, finished) =
                (client.clone(), name.clone(), Arc::clone(&done), Arc::clone(&finished));
            tokio::spawn(async move {
                let mut consumer = client.consume_group(&name, &format!("m{member}"), MAX_IN_FLIGHT).await?;
                while done.load(Ordering::Relaxed) < events {
                    let next = tokio::time::timeout(Duration::from_millis(200), consumer.next()).await;
                    let Ok(Some(delivery)) = next else { continue };
                    consumer.ack(delivery?.event.position);
                    if done.fetch_add(1, Ordering::Relaxed) + 1 == events {
                        finished.store(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
                    }
                }
                consumer.leave().await;
                anyhow::Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await.context("a member panicked")??;
    }
    Ok(finished.load(Ordering::Relaxed) as f64 / 1e9)
}

/// Delivered events, seconds and the commit-to-handler lag (µs) of a
/// steady load.
async fn lag(client: &Client, seconds: u64) -> anyhow::Result<(u64, f64, hdrhistogram::Histogram<u64>)> {
    let filter = GroupFilter { category: Some("lag".into()), ..GroupFilter::default() };
    client.create_group("bench-lag", filter, GroupStart::End, GroupTuning::default()).await?;
    let mut consumer = client.consume_group("bench-lag", "m", 0).await?;
    let total = seconds * LAG_RATE;
    let writer = {
        let client = client.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_micros(1_000_000 / LAG_RATE));
            for n in 0..total {
                ticks.tick().await;
                client.append(format!("lag-{}", n % 100), ExpectedRevision::Any, vec![payload(n)]).await?;
            }
            anyhow::Ok(())
        })
    };
    let start = Instant::now();
    let mut latency = latency_histogram();
    let mut delivered = 0;
    while delivered < total {
        let delivery = tokio::time::timeout(Duration::from_secs(30), consumer.next())
            .await
            .context("no delivery for 30 s")?
            .context("the group ended")??;
        let now_us = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64);
        latency.saturating_record(now_us.saturating_sub(delivery.event.recorded_at_us));
        consumer.ack(delivery.event.position);
        delivered += 1;
    }
    writer.await.context("the writer panicked")??;
    consumer.leave().await;
    Ok((delivered, start.elapsed().as_secs_f64(), latency))
}
