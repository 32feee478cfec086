//! Workload `subscribers`: what live subscriptions cost the appends, and
//! what they cost the server's memory and threads.
//!
//! Each cell starts a real `quipu serve` (this binary, as a child process,
//! so its memory and threads are its own) on a fresh data directory,
//! opens N live subscriptions to `$all` from the end (half gRPC
//! `Subscribe` through [`quipu_client::Client`], half Server-Sent Events
//! over HTTP/1.1, each its own connection), then appends single events
//! from 16 gRPC writers for `--seconds`. Every subscriber checks that it
//! gets every event in order (positions are dense: nothing is scavenged)
//! and notes each event's delivery lag (now minus its commit time). Once
//! the writers stop, the cell waits until every subscriber has seen the
//! last event, closes them, and samples the server once more.
//!
//! A line per subscriber count (`subscribers_<N>`): the appends (events/s
//! and latency), `lag_p50_us`/`lag_p99_us` over every delivery,
//! `drain_s` (from the last append to the last subscriber catching up),
//! the server's resident memory before the subscribers, with them idle,
//! at its peak and after they left (anonymous memory: heap and stacks,
//! not the log's mapped pages), its peak thread count, and how long it
//! took to exit on SIGTERM. Clients and server share the machine's
//! cores, as a fleet of services on one host would.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::header::HOST;
use hyper_util::rt::TokioIo;
use quipu_client::{Client, Direction, RetryPolicy, Start, SubscriptionItem};
use serde::Deserialize;

use super::Bench;
use super::clients;
use super::connection::Protocol;
use super::report::{Measurement, latency_histogram};
use super::server::Addresses;
use super::writer::Writer;

/// Subscriber counts, unless `--writers` says otherwise.
const SUBSCRIBERS: [u64; 3] = [0, 200, 1_000];
/// Concurrent writers, each with its own connection.
const WRITERS: u64 = 16;
/// Streams the writers share out.
const STREAMS: u64 = 10_000;
/// How long the subscribers may take to see the last event once the
/// writers stop, before the cell fails.
const DRAIN_LIMIT: Duration = Duration::from_secs(120);
/// How long the cell waits after the subscribers left before it samples
/// the server's memory: longer than the tail keeps an unfollowed ring.
const AFTER_WAIT: Duration = Duration::from_secs(4);
/// How long the server may take to exit on SIGTERM before it is killed.
const EXIT_LIMIT: Duration = Duration::from_secs(30);

/// Runs a cell per subscriber count; prints a line each.
///
/// # Errors
/// The server does not start, a subscriber misses or misorders an event,
/// a writer meets a conflict, or the subscribers do not catch up in time.
pub fn run(bench: &Bench) -> anyhow::Result<()> {
    for subscribers in bench.writer_counts(&SUBSCRIBERS) {
        let dir = bench.store_dir(&format!("subscribers-{subscribers}"))?;
        let measurement = cell(bench, &dir, subscribers)?;
        bench.emit(&measurement);
        bench.finish_store(&dir)?;
    }
    Ok(())
}

/// One cell on a fresh server in `dir`.
fn cell(bench: &Bench, dir: &Path, subscribers: u64) -> anyhow::Result<Measurement> {
    let mut server = ServerProcess::start(dir)?;
    let result = measure(bench, &server, subscribers);
    let exit = server.stop();
    let measurement = result?;
    Ok(measurement.with("exit_ms", exit?.as_millis() as u64))
}

/// The cell's measurement against a running server.
fn measure(bench: &Bench, server: &ServerProcess, subscribers: u64) -> anyhow::Result<Measurement> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("bench-subscriber")
        .build()
        .context("starting the subscribers' runtime")?;
    let rss_start = server.rss_bytes();
    let head = runtime.block_on(last_position(server.addresses.grpc))?;
    let from = head.map_or(0, |last| last + 1);
    let fleet = runtime.block_on(Fleet::open(server.addresses, subscribers, from))?;
    let rss_subscribed = server.rss_bytes();
    let sampler = Sampler::start(server.pid());
    let writers = (0..WRITERS).map(|w| Writer::new(w, WRITERS, STREAMS, 1)).collect::<anyhow::Result<Vec<_>>>()?;
    let tally = clients::append(server.addresses, Protocol::Grpc, writers, bench.seconds)?;
    anyhow::ensure!(tally.conflicts == 0, "{} appends met a conflict with exact expected revisions", tally.conflicts);
    let written_end = Instant::now();
    let last = runtime.block_on(last_position(server.addresses.grpc))?.context("nothing was written")?;
    let drained = fleet.wait_for(last + 1, DRAIN_LIMIT);
    let drain_s = written_end.elapsed().as_secs_f64();
    let (rss_peak, threads_peak) = sampler.stop();
    let delivered = runtime.block_on(fleet.close())?;
    drained?;
    drop(runtime);
    // The server returns what the subscribers held once they are gone,
    // and the tail its ring once none has followed it for a while.
    std::thread::sleep(AFTER_WAIT);
    let rss_after = server.rss_bytes();
    let mb = |bytes: u64| bytes / (1 << 20);
    Ok(Measurement::new(&format!("subscribers_{subscribers}"), tally.appends, 0, tally.seconds)
        .with_latency(tally.latency)
        .with("subscribers", subscribers)
        .with("writers", WRITERS)
        .with("delivered", delivered.events)
        .with("lag_p50_us", delivered.lag.value_at_quantile(0.5))
        .with("lag_p99_us", delivered.lag.value_at_quantile(0.99))
        .with("drain_s", (drain_s * 1000.0).round() / 1000.0)
        .with("server_rss_start_mb", mb(rss_start))
        .with("server_rss_subscribed_mb", mb(rss_subscribed))
        .with("server_rss_peak_mb", mb(rss_peak))
        .with("server_rss_after_mb", mb(rss_after))
        .with("server_threads_peak", threads_peak))
}

/// The last position of `$all` (`None`: nothing written yet).
async fn last_position(grpc: SocketAddr) -> anyhow::Result<Option<u64>> {
    let client = Client::connect(format!("http://{grpc}")).await?;
    let last = client.read_all(None, Direction::Backwards, 1).await?;
    Ok(last.first().map(|event| event.position))
}

/// `quipu serve` as a child process on loopback ports.
struct ServerProcess {
    child: Child,
    addresses: Addresses,
}

impl ServerProcess {
    /// Starts this binary's `serve` on `dir` and waits for the line that
    /// says where it listens.
    fn start(dir: &Path) -> anyhow::Result<ServerProcess> {
        let exe = std::env::current_exe().context("finding this executable")?;
        let mut child = Command::new(exe)
            .arg("serve")
            .arg("--data-dir")
            .arg(dir)
            .args(["--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--kafka-listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting quipu serve")?;
        let stdout = child.stdout.take().context("the server's stdout")?;
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line).context("reading the server's first line")?;
        let address = |key: &str| -> anyhow::Result<SocketAddr> {
            let value = line
                .split_whitespace()
                .find_map(|word| word.strip_prefix(key))
                .with_context(|| format!("no {key} in the server's line {line:?}"))?;
            value.parse().with_context(|| format!("{key}{value} is not an address"))
        };
        let addresses = Addresses { grpc: address("grpc=")?, http: address("http=")?, kafka: address("kafka=")? };
        Ok(ServerProcess { child, addresses })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's anonymous resident memory now (0 when it cannot be
    /// read).
    fn rss_bytes(&self) -> u64 {
        process_status(self.pid()).0
    }

    /// SIGTERM, then waits for the exit: how long it took. A server
    /// still running after [`EXIT_LIMIT`] is killed and the cell fails.
    fn stop(&mut self) -> anyhow::Result<Duration> {
        let asked = Instant::now();
        let sent = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status().context("running kill")?;
        anyhow::ensure!(sent.success(), "kill -TERM {} failed", self.pid());
        while asked.elapsed() < EXIT_LIMIT {
            if let Some(status) = self.child.try_wait().context("waiting for the server")? {
                anyhow::ensure!(status.success(), "the server exited with {status} on SIGTERM");
                return Ok(asked.elapsed());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        anyhow::bail!("the server did not exit within {EXIT_LIMIT:?} of SIGTERM")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Anonymous resident bytes (heap and stacks: not the pages of the
/// log's mapped segments, which are the page cache's) and thread count
/// of process `pid` (zeros when `/proc` cannot be read).
fn process_status(pid: u32) -> (u64, u64) {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return (0, 0) };
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|value| value.parse().ok())
            .unwrap_or(0)
    };
    (field("RssAnon:") * 1024, field("Threads:"))
}

/// Samples a process's resident memory and threads every 100 ms on a
/// thread of its own; [`Sampler::stop`] gives the peaks.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(u64, u64)>,
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut peak = (0, 0);
            while !stopped.load(Ordering::Relaxed) {
                let (rss, threads) = process_status(pid);
                peak = (peak.0.max(rss), peak.1.max(threads));
                std::thread::sleep(Duration::from_millis(100));
            }
            peak
        });
        Sampler { stop, thread }
    }

    /// Peak anonymous resident bytes and peak thread count while it ran.
    fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or((0, 0))
    }
}

/// The subscribers of a cell, each a task on the caller's runtime.
struct Fleet {
    /// Next position each subscriber expects.
    next: Arc<[AtomicU64]>,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<Delivered>>>,
}

/// What subscribers received.
struct Delivered {
    events: u64,
    /// Commit to receipt, microseconds.
    lag: Histogram<u64>,
}

impl Fleet {
    /// Opens `count` subscriptions to `$all` from `from`, alternating
    /// gRPC and SSE; returns once every one is open.
    async fn open(addresses: Addresses, count: u64, from: u64) -> anyhow::Result<Fleet> {
        let next: Arc<[AtomicU64]> = (0..count).map(|_| AtomicU64::new(from)).collect();
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        for index in 0..count {
            let progress = Progress { next: Arc::clone(&next), index: index as usize };
            let stopping = stopping.clone();
            let task = if index % 2 == 0 {
                let subscription = grpc_subscription(addresses.grpc, from).await?;
                tokio::spawn(follow_grpc(subscription, progress, stopping))
            } else {
                let body = sse_subscription(addresses.http, from).await?;
                tokio::spawn(follow_sse(body, progress, stopping))
            };
            tasks.push(task);
        }
        Ok(Fleet { next, stop, tasks })
    }

    /// Waits until every subscriber expects `end` or beyond (has seen
    /// everything before it), for up to `limit`.
    fn wait_for(&self, end: u64, limit: Duration) -> anyhow::Result<()> {
        let begun = Instant::now();
        loop {
            let behind = self.next.iter().filter(|next| next.load(Ordering::Acquire) < end).count();
            if behind == 0 {
                return Ok(());
            }
            anyhow::ensure!(
                begun.elapsed() < limit,
                "{behind} of {} subscribers had not seen position {} after {limit:?}",
                self.next.len(),
                end - 1
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Closes every subscription; what they received together.
    async fn close(self) -> anyhow::Result<Delivered> {
        let _ = self.stop.send(true);
        let mut total = Delivered { events: 0, lag: latency_histogram() };
        for task in self.tasks {
            let delivered = task.await.context("a subscriber panicked")??;
            total.events += delivered.events;
            total.lag.add(&delivered.lag).context("merging lag histograms")?;
        }
        Ok(total)
    }
}

/// One subscriber's slot in the fleet's progress.
struct Progress {
    next: Arc<[AtomicU64]>,
    index: usize,
}

impl Progress {
    /// Takes in the event at `position`, committed at `recorded_at_us`.
    ///
    /// # Errors
    /// When it is not the next position: an event missed or misordered.
    fn take(&self, position: u64, recorded_at_us: u64, delivered: &mut Delivered) -> anyhow::Result<()> {
        let slot = self.next.get(self.index).context("a subscriber without a slot")?;
        let expected = slot.load(Ordering::Relaxed);
        anyhow::ensure!(
            position == expected,
            "subscriber {} got position {position} where {expected} was next",
            self.index
        );
        delivered.events += 1;
        delivered.lag.saturating_record(now_us().saturating_sub(recorded_at_us));
        slot.store(position + 1, Ordering::Release);
        Ok(())
    }
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_micros() as u64)
}

/// A gRPC subscription to `$all` from `from`, open.
async fn grpc_subscription(grpc: SocketAddr, from: u64) -> anyhow::Result<quipu_client::Subscription> {
    let client = Client::connect(format!("http://{grpc}")).await?.with_retry(RetryPolicy::none());
    Ok(client.subscribe(None, Start::Position(from)).await?)
}

async fn follow_grpc(
    mut subscription: quipu_client::Subscription,
    progress: Progress,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Delivered> {
    let mut delivered = Delivered { events: 0, lag: latency_histogram() };
    // One wait for the stop, not one per event.
    let stop = stopping.wait_for(|stop| *stop);
    tokio::pin!(stop);
    loop {
        let item = tokio::select! {
            biased;
            item = subscription.next() => item,
            _ = &mut stop => return Ok(delivered),
        };
        match item.context("the gRPC subscription ended")?? {
            SubscriptionItem::Event(event) => progress.take(event.position, event.recorded_at_us, &mut delivered)?,
            SubscriptionItem::CaughtUp { .. } => {}
        }
    }
}

/// The body of an SSE subscription to `$all` from `from`, its headers
/// received.
async fn sse_subscription(http: SocketAddr, from: u64) -> anyhow::Result<hyper::body::Incoming> {
    let stream = tokio::net::TcpStream::connect(http).await.with_context(|| format!("connecting to {http}"))?;
    stream.set_nodelay(true).context("setting TCP_NODELAY")?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.context("HTTP/1.1 handshake")?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "bench SSE connection ended");
        }
    });
    let request = hyper::Request::get(format!("/v1/subscribe?from={from}"))
        .header(HOST, http.to_string())
        .body(Empty::<Bytes>::new())
        .context("building the SSE request")?;
    let response = sender.send_request(request).await.context("opening the SSE subscription")?;
    anyhow::ensure!(response.status().is_success(), "the SSE subscription answered {}", response.status());
    Ok(response.into_body())
}

/// The fields of an SSE event's JSON that the check needs.
#[derive(Deserialize)]
struct SseEvent {
    position: u64,
    recorded_at: u64,
}

async fn follow_sse(
    mut body: hyper::body::Incoming,
    progress: Progress,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Delivered> {
    let mut delivered = Delivered { events: 0, lag: latency_histogram() };
    let mut pending = Vec::new();
    let stop = stopping.wait_for(|stop| *stop);
    tokio::pin!(stop);
    loop {
        let frame = tokio::select! {
            biased;
            frame = body.frame() => frame,
            _ = &mut stop => return Ok(delivered),
        };
        let frame = frame.context("the SSE subscription ended")?.context("reading the SSE body")?;
        let Ok(data) = frame.into_data() else { continue };
        pending.extend_from_slice(&data);
        let mut taken = 0;
        while let Some(end) = find(&pending[taken..], b"\n\n") {
            let message = &pending[taken..taken + end];
            taken += end + 2;
            for line in message.split(|&byte| byte == b'\n') {
                if let Some(json) = line.strip_prefix(b"data:") {
                    let event: SseEvent = serde_json::from_slice(json).context("an SSE event that is not JSON")?;
                    progress.take(event.position, event.recorded_at, &mut delivered)?;
                }
            }
        }
        pending.drain(..taken);
    }
}

/// Where `needle` first starts in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}
