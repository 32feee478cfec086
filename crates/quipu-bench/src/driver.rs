//! Writers as logical clients, the way a server's connections are: one
//! driver thread hands each writer's request to [`Store::submit`], and when
//! an acknowledgement comes back, records its latency and submits that
//! writer's next request. Each writer has one append in flight, as with
//! threads, but no operating-system thread blocks per writer; comparing
//! the two shows what dozens of blocked threads cost on this machine.

use std::sync::mpsc::{Sender, channel};
use std::time::{Duration, Instant};

use anyhow::Context;
use quipu_core::{AppendOutcome, Store};

use super::report::latency_histogram;
use super::writer::{Tally, Writer};

/// An acknowledgement: writer index, submit time, outcome.
type Ack = (usize, Instant, Result<AppendOutcome, quipu_core::Error>);

/// Drives `writers` against `store` for `seconds` from this thread.
///
/// # Errors
/// Store errors, or an outcome a writer cannot take in.
pub fn run(store: &Store, mut writers: Vec<Writer>, seconds: u64) -> anyhow::Result<Tally> {
    let (acks, ack_queue) = channel::<Ack>();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    for (index, writer) in writers.iter_mut().enumerate() {
        submit_next(store, writer, index, &acks)?;
    }
    let mut latency = latency_histogram();
    let mut in_flight = writers.len();
    while in_flight > 0 {
        let (index, begun, outcome) = ack_queue.recv().context("the store dropped an acknowledgement")?;
        latency.saturating_record(begun.elapsed().as_micros() as u64);
        let writer = writers.get_mut(index).context("acknowledgement for an unknown writer")?;
        writer.acknowledge(outcome?)?;
        if Instant::now() < deadline {
            submit_next(store, writer, index, &acks)?;
        } else {
            in_flight -= 1;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let appends = writers.iter().map(|w| w.appends).sum();
    let conflicts = writers.iter().map(|w| w.conflicts).sum();
    Ok(Tally { appends, conflicts, latency, seconds })
}

/// Submits writer `index`'s next request; its acknowledgement goes to
/// `acks`.
fn submit_next(store: &Store, writer: &mut Writer, index: usize, acks: &Sender<Ack>) -> anyhow::Result<()> {
    let request = writer.next_request()?;
    let acks = acks.clone();
    let begun = Instant::now();
    store.submit(request, move |outcome| {
        // The driver waits for every acknowledgement; it is never gone first.
        let _ = acks.send((index, begun, outcome));
    });
    Ok(())
}
