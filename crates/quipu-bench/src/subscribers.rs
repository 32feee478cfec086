//! Workload `subscribers`: what subscriptions to `$all` cost the appends,
//! the server's memory, threads and CPU: live subscribers following the
//! head, or (with `--catch-up`) many subscribers reading the log from the
//! start at once.
//!
//! Each cell starts a real `quipu serve` (this binary, as a child process,
//! so its memory and threads are its own) on a fresh data directory, with
//! its gRPC, HTTP, Kafka and KurrentDB doors on loopback ports. The fleet
//! of subscribers runs on a tokio runtime of this process, each subscriber
//! a task with its own connection, of one of four kinds, taken round-robin
//! (subscriber `i` is of kind `i % 4`; `--kinds` takes only those named):
//!
//! - `grpc`: `Subscribe` through [`quipu_client::Client`];
//! - `sse`: Server-Sent Events over HTTP/1.1 (`/v1/subscribe`);
//! - `kurrent`: a KurrentDB catch-up subscription to `$all`
//!   (`Streams.Read` with `subscription`, no filter) through the tonic
//!   client of `quipu-proto`; the door's commit position is the position
//!   plus one, and `created` (100 ns ticks) is the commit time;
//! - `kafka`: a consumer of topic `quipu.all` (offset = position, record
//!   timestamp = commit time in ms), a Fetch loop of its own over
//!   `kafka-protocol` on one TCP connection (long polls of 500 ms, at
//!   least one byte): librdkafka starts several threads per client, too
//!   many for a thousand consumers on two cores.
//!
//! Every subscriber checks that it gets every event in order (positions
//! are dense: nothing is scavenged) and notes each event's delivery lag
//! (now minus its commit time; the Kafka record's timestamp is in
//! milliseconds, so that kind's lag reads up to 1 ms high).
//!
//! Live cells, a line per subscriber count (`subscribers_<N>`): N
//! subscriptions from the end, then 16 gRPC writers append single events
//! for `--seconds`; once they stop, the cell waits until every subscriber
//! has seen the last event, closes them, and samples the server once more.
//! The line gives the appends (events/s and latency), `lag_p50_us` and
//! `lag_p99_us` over every delivery and `lag_p99_us_<kind>` per kind,
//! `drain_s` (from the last append to the last subscriber catching up),
//! the server's resident memory before the subscribers, with them idle,
//! at its peak and after they left (anonymous memory: heap and stacks, not
//! the log's mapped pages), its peak thread count, the CPU the server and
//! this process used from the first append to the drain (`server_cpu_s`,
//! `bench_cpu_s`), and how long the server took to exit on SIGTERM.
//!
//! The catch-up cell (`--catch-up`, per subscriber count, default 200):
//! 1,000,000 events (times `--scale`) written first in 100-event appends;
//! then one gRPC subscriber reads them from position 0 alone
//! (`catchup_1`); then the 16 writers append alone for `--seconds`
//! (`catchup_baseline`); then N gRPC subscribers open from position 0 at
//! once while the same writers append for `--seconds` (`catchup_<N>`).
//! The catch-up lines count the events delivered in all until the last
//! subscriber reached the end of the prefill, over that time (from the
//! first open), and give when the first and the last got there, the
//! ratio of the total rate to the single subscriber's, the appends/s
//! meanwhile against the baseline, the server's CPU per delivery, and its
//! peak memory and threads. Clients and server share the machine's cores,
//! as a fleet of services on one host would.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
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
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse, RequestHeader, ResponseHeader, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes, encode_request_header_into_buffer};
use kafka_protocol::records::RecordBatchDecoder;
use quipu_client::{Client, Direction, ExpectedRevision, NewEvent, RetryPolicy, Start, SubscriptionItem};
use quipu_proto::event_store::client as kurrent_shared;
use quipu_proto::event_store::client::streams as kurrent;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Runtime;

use super::Bench;
use super::clients;
use super::connection::Protocol;
use super::payload::{EVENT_TYPE, data};
use super::report::{Measurement, latency_histogram, round3};
use super::server::Addresses;
use super::writer::{Tally, Writer};

/// Subscriber counts of the live cells, unless `--writers` says otherwise.
const SUBSCRIBERS: [u64; 3] = [0, 200, 1_000];
/// Subscriber counts of the catch-up cell, unless `--writers` says
/// otherwise.
const CATCH_UP_SUBSCRIBERS: [u64; 1] = [200];
/// Concurrent writers, each with its own connection.
const WRITERS: u64 = 16;
/// Streams the writers share out.
const STREAMS: u64 = 10_000;
/// Events written before the catch-up cell's subscribers open, before
/// `--scale`.
const CATCH_UP_EVENTS: u64 = 1_000_000;
/// Events in each append that fills the catch-up cell's log.
const PREFILL_EVENTS_PER_APPEND: u64 = 100;
/// Connections the prefill appends through at once.
const PREFILL_CONNECTIONS: u64 = 8;
/// How long the subscribers may take to see the last event once the
/// writers stop, before the cell fails.
const DRAIN_LIMIT: Duration = Duration::from_secs(120);
/// How long the subscribers of the catch-up cell may take to reach the
/// end of the prefill, before the cell fails.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(1_200);
/// How long the cell waits after the subscribers left before it samples
/// the server's memory: longer than the tail keeps an unfollowed ring.
const AFTER_WAIT: Duration = Duration::from_secs(4);
/// How long the server may take to exit on SIGTERM before it is killed.
const EXIT_LIMIT: Duration = Duration::from_secs(30);
/// Fetch version the Kafka subscribers speak: the door's lowest, without
/// flexible fields or fetch sessions.
const KAFKA_FETCH_VERSION: i16 = 4;
/// How long a Kafka fetch waits at the head for a record (long poll).
const KAFKA_FETCH_WAIT_MS: i32 = 500;
/// Most record bytes a Kafka fetch asks for.
const KAFKA_FETCH_BYTES_MAX: i32 = 1 << 20;
/// Largest answer frame a Kafka subscriber takes in.
const KAFKA_FRAME_BYTES_MAX: usize = 64 << 20;
/// The topic of `$all` on the Kafka door.
const KAFKA_ALL_TOPIC: &str = "quipu.all";
/// Ticks of `/proc/<pid>/stat`'s CPU times per second (Linux's USER_HZ).
const PROC_TICKS_PER_S: f64 = 100.0;

/// Runs a cell per subscriber count: the live cells, or with
/// `--catch-up` the catch-up cells; prints their lines.
///
/// # Errors
/// The server does not start, a subscriber misses or misorders an event,
/// a writer meets a conflict, or the subscribers do not catch up in time.
pub fn run(bench: &Bench) -> anyhow::Result<()> {
    if bench.catch_up {
        for subscribers in bench.writer_counts(&CATCH_UP_SUBSCRIBERS) {
            anyhow::ensure!(subscribers > 0, "--catch-up needs at least one subscriber; --writers 0 has none");
            let dir = bench.store_dir(&format!("subscribers-catch-up-{subscribers}"))?;
            catch_up_cell(bench, &dir, subscribers)?;
            bench.finish_store(&dir)?;
        }
        return Ok(());
    }
    for subscribers in bench.writer_counts(&SUBSCRIBERS) {
        let dir = bench.store_dir(&format!("subscribers-{subscribers}"))?;
        let measurement = cell(bench, &dir, subscribers)?;
        bench.emit(&measurement);
        bench.finish_store(&dir)?;
    }
    Ok(())
}

/// One live cell on a fresh server in `dir`.
fn cell(bench: &Bench, dir: &Path, subscribers: u64) -> anyhow::Result<Measurement> {
    let mut server = ServerProcess::start(dir)?;
    let result = measure(bench, &server, subscribers);
    let exit = server.stop();
    let measurement = result?;
    Ok(measurement.with("exit_ms", exit?.as_millis() as u64))
}

/// The live cell's measurement against a running server.
fn measure(bench: &Bench, server: &ServerProcess, subscribers: u64) -> anyhow::Result<Measurement> {
    let runtime = subscriber_runtime()?;
    let grpc = server.endpoints.addresses.grpc;
    let rss_start = server.rss_bytes();
    let head = runtime.block_on(last_position(grpc))?;
    let from = head.map_or(0, |last| last + 1);
    let kinds = if bench.kinds.is_empty() { Kind::ALL.to_vec() } else { bench.kinds.clone() };
    let fleet = runtime.block_on(Fleet::open(server.endpoints, subscribers, from, &kinds))?;
    let rss_subscribed = server.rss_bytes();
    let sampler = Sampler::start(server.pid());
    let cpu = CpuClock::start(server.pid());
    let writers = (0..WRITERS).map(|w| Writer::new(w, WRITERS, STREAMS, 1)).collect::<anyhow::Result<Vec<_>>>()?;
    let tally = clients::append(server.endpoints.addresses, Protocol::Grpc, writers, bench.seconds)?;
    anyhow::ensure!(tally.conflicts == 0, "{} appends met a conflict with exact expected revisions", tally.conflicts);
    let written_end = Instant::now();
    let last = runtime.block_on(last_position(grpc))?.context("nothing was written")?;
    let drained = fleet.wait_for(last + 1, written_end, DRAIN_LIMIT);
    let drain_s = written_end.elapsed().as_secs_f64();
    let (server_cpu_s, bench_cpu_s) = cpu.stop();
    let (rss_peak, threads_peak) = sampler.stop();
    let received = runtime.block_on(fleet.close())?;
    drained?;
    drop(runtime);
    // The server returns what the subscribers held once they are gone,
    // and the tail its ring once none has followed it for a while.
    std::thread::sleep(AFTER_WAIT);
    let rss_after = server.rss_bytes();
    let mut measurement = Measurement::new(&format!("subscribers_{subscribers}"), tally.appends, 0, tally.seconds)
        .with_latency(tally.latency)
        .with("subscribers", subscribers)
        .with("writers", WRITERS)
        .with("delivered", received.total.events)
        .with("lag_p50_us", received.total.lag.value_at_quantile(0.5))
        .with("lag_p99_us", received.total.lag.value_at_quantile(0.99));
    for (kind, delivered) in Kind::ALL.iter().zip(&received.by_kind) {
        if delivered.events > 0 {
            measurement =
                measurement.with(&format!("lag_p99_us_{}", kind.name()), delivered.lag.value_at_quantile(0.99));
        }
    }
    Ok(measurement
        .with("drain_s", round3(drain_s))
        .with("server_cpu_s", round3(server_cpu_s))
        .with("bench_cpu_s", round3(bench_cpu_s))
        .with("server_rss_start_mb", mb(rss_start))
        .with("server_rss_subscribed_mb", mb(rss_subscribed))
        .with("server_rss_peak_mb", mb(rss_peak))
        .with("server_rss_after_mb", mb(rss_after))
        .with("server_threads_peak", threads_peak))
}

/// One catch-up cell with `subscribers` subscribers on a fresh server in
/// `dir`; prints its three lines as they are measured.
fn catch_up_cell(bench: &Bench, dir: &Path, subscribers: u64) -> anyhow::Result<()> {
    let mut server = ServerProcess::start(dir)?;
    let result = measure_catch_up(bench, &server, subscribers);
    let exit = server.stop();
    result?;
    exit.map(|_| ())
}

/// The catch-up cell against a running server: the prefill, one
/// subscriber alone, the writers alone, then `subscribers` subscribers
/// with the writers.
fn measure_catch_up(bench: &Bench, server: &ServerProcess, subscribers: u64) -> anyhow::Result<()> {
    let runtime = subscriber_runtime()?;
    let grpc = server.endpoints.addresses.grpc;
    let events = bench.scaled(CATCH_UP_EVENTS, PREFILL_EVENTS_PER_APPEND);
    let begun = Instant::now();
    runtime.block_on(prefill(grpc, events))?;
    let prefill_s = begun.elapsed().as_secs_f64();
    let end = runtime.block_on(last_position(grpc))?.map_or(0, |last| last + 1);
    anyhow::ensure!(end == events, "the prefill wrote {events} events but $all ends at position {end}");
    let rss_start = server.rss_bytes();

    let single = catch_up(&runtime, server, 1, end, None)?;
    bench.emit(
        &single
            .measurement("catchup_1", 1, end)
            .with("prefill_s", round3(prefill_s))
            .with("server_rss_start_mb", mb(rss_start)),
    );

    // Two disjoint halves of the streams, so the second run's exact
    // expected revisions hold without the first run's writers.
    let writers = |half: u64| -> anyhow::Result<Vec<Writer>> {
        (0..WRITERS).map(|w| Writer::new(w + half * WRITERS, 2 * WRITERS, 2 * STREAMS, 1)).collect()
    };
    let baseline = clients::append(server.endpoints.addresses, Protocol::Grpc, writers(0)?, bench.seconds)?;
    anyhow::ensure!(baseline.conflicts == 0, "{} appends met a conflict", baseline.conflicts);
    let baseline_appends_per_s = per_s(baseline.appends, baseline.seconds);
    bench.emit(
        &Measurement::new("catchup_baseline", baseline.appends, 0, baseline.seconds)
            .with_latency(baseline.latency)
            .with("subscribers", 0)
            .with("writers", WRITERS),
    );

    let many = catch_up(&runtime, server, subscribers, end, Some((writers(1)?, bench.seconds)))?;
    let tally = many.tally.as_ref().context("the writers' tally")?;
    anyhow::ensure!(tally.conflicts == 0, "{} appends met a conflict", tally.conflicts);
    let appends_per_s = per_s(tally.appends, tally.seconds);
    let single_per_s = per_s(single.delivered, single.reached.last.as_secs_f64());
    let many_per_s = per_s(many.delivered, many.reached.last.as_secs_f64());
    let ratio = |value: f64, basis: f64| if basis > 0.0 { round3(value / basis) } else { 0.0 };
    bench.emit(
        &many
            .measurement(&format!("catchup_{subscribers}"), subscribers, end)
            .with("ratio_to_single", ratio(many_per_s, single_per_s))
            .with("appends_per_s", appends_per_s.round())
            .with("append_p99_us", tally.latency.value_at_quantile(0.99))
            .with("baseline_appends_per_s", baseline_appends_per_s.round())
            .with("appends_ratio_to_baseline", ratio(appends_per_s, baseline_appends_per_s)),
    );
    Ok(())
}

/// What one catch-up run saw.
struct CatchUp {
    /// When the first and the last subscriber reached the end, from the
    /// first open.
    reached: Reached,
    /// Events delivered in all until the last one reached it.
    delivered: u64,
    /// The writers' appends meanwhile, when there were writers.
    tally: Option<Tally>,
    /// CPU seconds of the server until then.
    server_cpu_s: f64,
    /// CPU seconds of this process (subscribers and writers) until then.
    bench_cpu_s: f64,
    /// Peak anonymous resident bytes of the server.
    rss_peak: u64,
    /// Peak thread count of the server.
    threads_peak: u64,
}

impl CatchUp {
    /// The line of this run, named `workload`.
    fn measurement(&self, workload: &str, subscribers: u64, end: u64) -> Measurement {
        let per_delivery_us =
            |cpu_s: f64| if self.delivered == 0 { 0.0 } else { round3(cpu_s * 1e6 / self.delivered as f64) };
        Measurement::new(workload, self.delivered, 0, self.reached.last.as_secs_f64())
            .with("subscribers", subscribers)
            .with("prefill_events", end)
            .with("first_caught_up_s", round3(self.reached.first.as_secs_f64()))
            .with("caught_up_s", round3(self.reached.last.as_secs_f64()))
            .with("server_cpu_us_per_delivery", per_delivery_us(self.server_cpu_s))
            .with("bench_cpu_us_per_delivery", per_delivery_us(self.bench_cpu_s))
            .with("server_rss_peak_mb", mb(self.rss_peak))
            .with("server_threads_peak", self.threads_peak)
    }
}

/// Opens `subscribers` gRPC subscriptions from position 0 and waits until
/// every one has seen position `end - 1`; with `writers`, they append for
/// the given seconds meanwhile, from the moment all are open.
fn catch_up(
    runtime: &Runtime,
    server: &ServerProcess,
    subscribers: u64,
    end: u64,
    writers: Option<(Vec<Writer>, u64)>,
) -> anyhow::Result<CatchUp> {
    let cpu = CpuClock::start(server.pid());
    let begun = Instant::now();
    let fleet = runtime.block_on(Fleet::open(server.endpoints, subscribers, 0, &[Kind::Grpc]))?;
    let sampler = Sampler::start(server.pid());
    let addresses = server.endpoints.addresses;
    let writing = writers.map(|(writers, seconds)| {
        std::thread::spawn(move || clients::append(addresses, Protocol::Grpc, writers, seconds))
    });
    let reached = fleet.wait_for(end, begun, CATCH_UP_LIMIT);
    let delivered = fleet.delivered_since(0);
    let (server_cpu_s, bench_cpu_s) = cpu.stop();
    let tally = match writing {
        Some(thread) => Some(thread.join().map_err(|_| anyhow::anyhow!("the writers' thread panicked"))??),
        None => None,
    };
    let (rss_peak, threads_peak) = sampler.stop();
    runtime.block_on(fleet.close())?;
    Ok(CatchUp { reached: reached?, delivered, tally, server_cpu_s, bench_cpu_s, rss_peak, threads_peak })
}

/// Writes `events` events to new streams in appends of
/// [`PREFILL_EVENTS_PER_APPEND`], through [`PREFILL_CONNECTIONS`]
/// connections at once.
async fn prefill(grpc: SocketAddr, events: u64) -> anyhow::Result<()> {
    let appends = events.div_ceil(PREFILL_EVENTS_PER_APPEND);
    let mut tasks = Vec::new();
    for connection in 0..PREFILL_CONNECTIONS {
        let client = Client::connect(format!("http://{grpc}")).await?.with_retry(RetryPolicy::none());
        tasks.push(tokio::spawn(async move {
            for append in (connection..appends).step_by(PREFILL_CONNECTIONS as usize) {
                let first = append * PREFILL_EVENTS_PER_APPEND;
                let last = (first + PREFILL_EVENTS_PER_APPEND).min(events);
                let batch = (first..last).map(|n| NewEvent::new(EVENT_TYPE, data(n))).collect();
                client.append(format!("prefill-{append}"), ExpectedRevision::NoStream, batch).await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await.context("a prefill task panicked")??;
    }
    Ok(())
}

/// The subscribers' runtime: as many workers as cores, like the
/// server's.
fn subscriber_runtime() -> anyhow::Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("bench-subscriber")
        .build()
        .context("starting the subscribers' runtime")
}

/// The last position of `$all` (`None`: nothing written yet).
async fn last_position(grpc: SocketAddr) -> anyhow::Result<Option<u64>> {
    let client = Client::connect(format!("http://{grpc}")).await?;
    let last = client.read_all(None, Direction::Backwards, 1).await?;
    Ok(last.first().map(|event| event.position.0))
}

/// `count` per second over `seconds` (0 for no time).
fn per_s(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 { count as f64 / seconds } else { 0.0 }
}

/// Bytes in whole MiB.
fn mb(bytes: u64) -> u64 {
    bytes / (1 << 20)
}

/// Where the server's doors answer.
#[derive(Debug, Clone, Copy)]
struct Endpoints {
    /// gRPC, HTTP and Kafka.
    addresses: Addresses,
    /// The KurrentDB door.
    kurrent: SocketAddr,
}

/// The `quipu` binary in this binary's directory (cargo builds both into
/// the same one).
fn quipu_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("finding this executable")?;
    let quipu = exe.with_file_name(format!("quipu{}", std::env::consts::EXE_SUFFIX));
    anyhow::ensure!(
        quipu.is_file(),
        "{} is missing: build the server beside the benchmarks (cargo build --release -p quipu -p quipu-bench)",
        quipu.display()
    );
    Ok(quipu)
}

/// `quipu serve` as a child process on loopback ports.
struct ServerProcess {
    child: Child,
    endpoints: Endpoints,
}

impl ServerProcess {
    /// Starts `quipu serve` (the `quipu` binary beside this one) on `dir`
    /// with every door and waits for the line that says where they
    /// listen.
    fn start(dir: &Path) -> anyhow::Result<ServerProcess> {
        let exe = quipu_binary()?;
        let mut child = Command::new(exe)
            .arg("serve")
            .arg("--data-dir")
            .arg(dir)
            .args(["--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
            .args(["--kafka-listen", "127.0.0.1:0", "--kurrent-listen", "127.0.0.1:0"])
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
        let endpoints = Endpoints { addresses, kurrent: address("kurrent=")? };
        Ok(ServerProcess { child, endpoints })
    }

    /// The server's process id.
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

/// CPU seconds process `pid` has used, user and system, every thread it
/// ever had (0 when `/proc` cannot be read; 10 ms resolution).
fn process_cpu_s(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    // The command name (field 2) is in parentheses and may hold spaces;
    // after it come field 3 (state) on, so utime and stime (fields 14
    // and 15) are the 12th and 13th words.
    let Some((_, fields)) = stat.rsplit_once(')') else { return 0.0 };
    let ticks: u64 = fields.split_whitespace().skip(11).take(2).filter_map(|word| word.parse::<u64>().ok()).sum();
    ticks as f64 / PROC_TICKS_PER_S
}

/// CPU time of the server and of this process between
/// [`CpuClock::start`] and [`CpuClock::stop`].
struct CpuClock {
    server_pid: u32,
    server_start_s: f64,
    bench_start_ns: u64,
}

impl CpuClock {
    /// Starts measuring the server `server_pid` and this process.
    fn start(server_pid: u32) -> CpuClock {
        CpuClock { server_pid, server_start_s: process_cpu_s(server_pid), bench_start_ns: quipu_core::process_cpu_ns() }
    }

    /// CPU seconds the server and this process used since the start.
    fn stop(&self) -> (f64, f64) {
        let server = (process_cpu_s(self.server_pid) - self.server_start_s).max(0.0);
        let bench = quipu_core::process_cpu_ns().saturating_sub(self.bench_start_ns) as f64 / 1e9;
        (server, bench)
    }
}

/// Samples a process's resident memory and threads every 100 ms on a
/// thread of its own; [`Sampler::stop`] gives the peaks.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(u64, u64)>,
}

impl Sampler {
    /// Starts sampling process `pid`.
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

/// How a subscriber reaches the server.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `quipu.v1.Streams/Subscribe` through [`quipu_client::Client`].
    Grpc,
    /// Server-Sent Events over HTTP/1.1.
    Sse,
    /// A KurrentDB catch-up subscription to `$all`.
    Kurrent,
    /// Kafka fetches of topic `quipu.all`.
    Kafka,
}

impl Kind {
    /// Every kind, in the order the live fleet takes them round-robin.
    const ALL: [Kind; 4] = [Kind::Grpc, Kind::Sse, Kind::Kurrent, Kind::Kafka];

    /// The name in per-kind fields.
    fn name(self) -> &'static str {
        match self {
            Kind::Grpc => "grpc",
            Kind::Sse => "sse",
            Kind::Kurrent => "kurrent",
            Kind::Kafka => "kafka",
        }
    }
}

/// The subscribers of a cell, each a task on the caller's runtime.
struct Fleet {
    /// Next position each subscriber expects.
    next: Arc<[AtomicU64]>,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<(Kind, tokio::task::JoinHandle<anyhow::Result<Delivered>>)>,
}

/// What subscribers received.
struct Delivered {
    /// Events taken in.
    events: u64,
    /// Commit to receipt, microseconds.
    lag: Histogram<u64>,
}

impl Delivered {
    /// Nothing yet.
    fn none() -> Delivered {
        Delivered { events: 0, lag: latency_histogram() }
    }

    /// Adds what `other` received.
    fn add(&mut self, other: &Delivered) -> anyhow::Result<()> {
        self.events += other.events;
        self.lag.add(&other.lag).context("merging lag histograms")
    }
}

/// What a closed fleet received: in all, and per kind in the order of
/// [`Kind::ALL`].
struct Received {
    total: Delivered,
    by_kind: [Delivered; 4],
}

/// When the first and the last subscriber reached a position.
struct Reached {
    first: Duration,
    last: Duration,
}

impl Fleet {
    /// Opens `count` subscriptions to `$all` from `from`, subscriber `i`
    /// of kind `kinds[i % kinds.len()]`; once every one is open, starts
    /// following them all.
    async fn open(endpoints: Endpoints, count: u64, from: u64, kinds: &[Kind]) -> anyhow::Result<Fleet> {
        let mut opened = Vec::new();
        for (_, &kind) in (0..count).zip(kinds.iter().cycle()) {
            opened.push((kind, Subscription::open(kind, endpoints, from).await?));
        }
        let next: Arc<[AtomicU64]> = opened.iter().map(|_| AtomicU64::new(from)).collect();
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let tasks = opened
            .into_iter()
            .enumerate()
            .map(|(index, (kind, subscription))| {
                let progress = Progress { next: Arc::clone(&next), index };
                (kind, tokio::spawn(follow(kind, subscription, progress, stopping.clone())))
            })
            .collect();
        Ok(Fleet { next, stop, tasks })
    }

    /// Waits until every subscriber expects `end` or beyond (has seen
    /// everything before it), for up to `limit` after `since`; when the
    /// first and the last got there, from `since`.
    ///
    /// # Errors
    /// Time is up, or a subscriber stopped (its error comes from
    /// [`Fleet::close`]).
    fn wait_for(&self, end: u64, since: Instant, limit: Duration) -> anyhow::Result<Reached> {
        let mut first = None;
        loop {
            if let Some(stopped) = self.tasks.iter().position(|(_, task)| task.is_finished()) {
                anyhow::bail!("subscriber {stopped} stopped before it saw position {}", end - 1);
            }
            let behind = self.next.iter().filter(|next| next.load(Ordering::Acquire) < end).count();
            if behind < self.next.len() && first.is_none() {
                first = Some(since.elapsed());
            }
            if behind == 0 {
                let last = since.elapsed();
                return Ok(Reached { first: first.unwrap_or(last), last });
            }
            anyhow::ensure!(
                since.elapsed() < limit,
                "{behind} of {} subscribers had not seen position {} after {limit:?}",
                self.next.len(),
                end - 1
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Events the subscribers have taken in all, each from `from`.
    fn delivered_since(&self, from: u64) -> u64 {
        self.next.iter().map(|next| next.load(Ordering::Acquire).saturating_sub(from)).sum()
    }

    /// Closes every subscription; what they received.
    async fn close(self) -> anyhow::Result<Received> {
        let _ = self.stop.send(true);
        let mut received = Received { total: Delivered::none(), by_kind: std::array::from_fn(|_| Delivered::none()) };
        for (kind, task) in self.tasks {
            let delivered = task.await.context("a subscriber panicked")??;
            received.total.add(&delivered)?;
            let slot = Kind::ALL.iter().position(|k| *k == kind).and_then(|i| received.by_kind.get_mut(i));
            slot.context("a subscriber of no kind")?.add(&delivered)?;
        }
        Ok(received)
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

/// Microseconds since the Unix epoch, the unit of commit times.
fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_micros() as u64)
}

/// Follows `subscription` (of `kind`) until the fleet stops: what it
/// received.
///
/// # Errors
/// The subscription fails or ends, or an event is missed or misordered.
async fn follow(
    kind: Kind,
    mut subscription: Subscription,
    progress: Progress,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Delivered> {
    let mut delivered = Delivered::none();
    // One wait for the stop, not one per step.
    let stop = stopping.wait_for(|stop| *stop);
    tokio::pin!(stop);
    loop {
        let stopped = tokio::select! {
            biased;
            step = subscription.step(&progress, &mut delivered) => {
                step.with_context(|| format!("{} subscriber {}", kind.name(), progress.index))?;
                false
            }
            _ = &mut stop => true,
        };
        if stopped {
            return Ok(delivered);
        }
    }
}

/// One subscriber's open subscription.
enum Subscription {
    /// [`Kind::Grpc`].
    Grpc(Box<quipu_client::Subscription>),
    /// [`Kind::Sse`].
    Sse(SseSubscription),
    /// [`Kind::Kurrent`].
    Kurrent(Box<KurrentSubscription>),
    /// [`Kind::Kafka`].
    Kafka(KafkaSubscription),
}

impl Subscription {
    /// Opens a subscription of `kind` to `$all` from `from`.
    async fn open(kind: Kind, endpoints: Endpoints, from: u64) -> anyhow::Result<Subscription> {
        Ok(match kind {
            Kind::Grpc => Subscription::Grpc(Box::new(grpc_subscription(endpoints.addresses.grpc, from).await?)),
            Kind::Sse => Subscription::Sse(SseSubscription::open(endpoints.addresses.http, from).await?),
            Kind::Kurrent => Subscription::Kurrent(Box::new(KurrentSubscription::open(endpoints.kurrent, from).await?)),
            Kind::Kafka => Subscription::Kafka(KafkaSubscription::open(endpoints.addresses.kafka, from).await?),
        })
    }

    /// Waits for what comes next and takes in the events in it.
    ///
    /// # Errors
    /// The subscription fails or ends, or an event is missed or
    /// misordered.
    async fn step(&mut self, progress: &Progress, delivered: &mut Delivered) -> anyhow::Result<()> {
        match self {
            Subscription::Grpc(subscription) => step_grpc(subscription, progress, delivered).await,
            Subscription::Sse(subscription) => subscription.step(progress, delivered).await,
            Subscription::Kurrent(subscription) => subscription.step(progress, delivered).await,
            Subscription::Kafka(subscription) => subscription.step(progress, delivered).await,
        }
    }
}

/// A gRPC subscription to `$all` from `from`, open.
async fn grpc_subscription(grpc: SocketAddr, from: u64) -> anyhow::Result<quipu_client::Subscription> {
    let client = Client::connect(format!("http://{grpc}")).await?.with_retry(RetryPolicy::none());
    Ok(client.subscribe(None, Start::Position(quipu_client::Position(from))).await?)
}

/// Takes in the next item of a gRPC subscription.
async fn step_grpc(
    subscription: &mut quipu_client::Subscription,
    progress: &Progress,
    delivered: &mut Delivered,
) -> anyhow::Result<()> {
    match subscription.next().await.context("the gRPC subscription ended")?? {
        SubscriptionItem::Event(event) => progress.take(event.position.0, event.recorded_at_us, delivered),
        SubscriptionItem::CaughtUp { .. } => Ok(()),
    }
}

/// An SSE subscription: the response body, and the bytes of a message
/// not yet complete.
struct SseSubscription {
    body: hyper::body::Incoming,
    pending: Vec<u8>,
}

/// The fields of an SSE event's JSON that the check needs.
#[derive(Deserialize)]
struct SseEvent {
    position: u64,
    recorded_at: u64,
}

impl SseSubscription {
    /// An SSE subscription to `$all` from `from`, its headers received.
    async fn open(http: SocketAddr, from: u64) -> anyhow::Result<SseSubscription> {
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
        Ok(SseSubscription { body: response.into_body(), pending: Vec::new() })
    }

    /// Takes in the events of the next body frame.
    async fn step(&mut self, progress: &Progress, delivered: &mut Delivered) -> anyhow::Result<()> {
        let frame = self.body.frame().await.context("the SSE subscription ended")?.context("reading the SSE body")?;
        let Ok(data) = frame.into_data() else { return Ok(()) };
        self.pending.extend_from_slice(&data);
        let mut taken = 0;
        while let Some(rest) = self.pending.get(taken..)
            && let Some(end) = find(rest, b"\n\n")
        {
            let (message, _) = rest.split_at(end);
            taken += end + 2;
            for line in message.split(|&byte| byte == b'\n') {
                if let Some(json) = line.strip_prefix(b"data:") {
                    let event: SseEvent = serde_json::from_slice(json).context("an SSE event that is not JSON")?;
                    progress.take(event.position, event.recorded_at, delivered)?;
                }
            }
        }
        self.pending.drain(..taken);
        Ok(())
    }
}

/// Where `needle` first starts in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

/// A KurrentDB catch-up subscription to `$all`: the answers of its
/// `Streams.Read`, and the client whose connection carries them.
struct KurrentSubscription {
    _client: kurrent::streams_client::StreamsClient<tonic::transport::Channel>,
    reads: tonic::Streaming<kurrent::ReadResp>,
}

impl KurrentSubscription {
    /// Subscribes to `$all` from position `from` and waits for the
    /// confirmation. The door starts after the commit position it is
    /// given, and commit position `c` is position `c - 1`, so it is given
    /// `from` itself.
    async fn open(address: SocketAddr, from: u64) -> anyhow::Result<KurrentSubscription> {
        use kurrent::read_req::options::{
            AllOptions, CountOption, FilterOption, Position, ReadDirection, StreamOption, SubscriptionOptions,
            UuidOption, all_options::AllOption, uuid_option,
        };
        let mut client = kurrent::streams_client::StreamsClient::connect(format!("http://{address}"))
            .await
            .with_context(|| format!("connecting to the KurrentDB door at {address}"))?;
        let start = AllOption::Position(Position { commit_position: from, prepare_position: from });
        let options = kurrent::read_req::Options {
            stream_option: Some(StreamOption::All(AllOptions { all_option: Some(start) })),
            read_direction: ReadDirection::Forwards as i32,
            resolve_links: false,
            count_option: Some(CountOption::Subscription(SubscriptionOptions {})),
            filter_option: Some(FilterOption::NoFilter(kurrent_shared::Empty {})),
            uuid_option: Some(UuidOption { content: Some(uuid_option::Content::Structured(kurrent_shared::Empty {})) }),
            control_option: None,
        };
        let request = kurrent::ReadReq { options: Some(options) };
        let mut reads = client.read(request).await.context("opening the KurrentDB subscription")?.into_inner();
        let first = reads.message().await.context("reading the KurrentDB confirmation")?;
        match first.and_then(|answer| answer.content) {
            Some(kurrent::read_resp::Content::Confirmation(_)) => Ok(KurrentSubscription { _client: client, reads }),
            other => anyhow::bail!("the KurrentDB subscription began with {other:?}, not its confirmation"),
        }
    }

    /// Takes in the next answer: an event at commit position
    /// `position + 1`, created `created` ticks of 100 ns after the epoch;
    /// the switch to live and checkpoints carry no event.
    async fn step(&mut self, progress: &Progress, delivered: &mut Delivered) -> anyhow::Result<()> {
        use kurrent::read_resp::Content;
        let answer = self.reads.message().await.context("reading the KurrentDB subscription")?;
        match answer.context("the KurrentDB subscription ended")?.content {
            Some(Content::Event(read)) => {
                let event = read.event.context("a KurrentDB read without its event")?;
                let position = event.commit_position.checked_sub(1).context("a KurrentDB event at commit 0")?;
                let created = event.metadata.get("created").context("a KurrentDB event without `created`")?;
                let created: u64 = created.parse().with_context(|| format!("`created` {created:?} is not ticks"))?;
                progress.take(position, created / 10, delivered)
            }
            Some(Content::CaughtUp(_) | Content::Checkpoint(_) | Content::FellBehind(_)) => Ok(()),
            other => anyhow::bail!("the KurrentDB subscription sent {other:?}"),
        }
    }
}

/// A Kafka consumer of `quipu.all` without a group: Fetch requests from
/// its next offset (offset = position), one at a time on one connection.
struct KafkaSubscription {
    socket: tokio::net::TcpStream,
    /// Offset of the next record, which is its position in `$all`.
    offset: i64,
    correlation_id: i32,
    /// The request being written, its buffer reused.
    request: Vec<u8>,
}

impl KafkaSubscription {
    /// Connects to the Kafka door, to fetch from position `from`.
    async fn open(kafka: SocketAddr, from: u64) -> anyhow::Result<KafkaSubscription> {
        let socket =
            tokio::net::TcpStream::connect(kafka).await.with_context(|| format!("connecting to Kafka at {kafka}"))?;
        socket.set_nodelay(true).context("setting TCP_NODELAY")?;
        let offset = i64::try_from(from).context("a position beyond Kafka's offsets")?;
        Ok(KafkaSubscription { socket, offset, correlation_id: 0, request: Vec::new() })
    }

    /// Fetches from the next offset and takes in the records.
    async fn step(&mut self, progress: &Progress, delivered: &mut Delivered) -> anyhow::Result<()> {
        let mut records = self.fetch().await?;
        let batches = RecordBatchDecoder::decode_all(&mut records).context("decoding Kafka record batches")?;
        for batch in batches {
            // Only a gap in the offsets gets a batch without records, and
            // `$all` has none here.
            anyhow::ensure!(!batch.records.is_empty(), "a Kafka batch without records at offset {}", self.offset);
            for record in batch.records {
                let position = u64::try_from(record.offset).context("a negative Kafka offset")?;
                let timestamp_ms = u64::try_from(record.timestamp).context("a negative Kafka timestamp")?;
                progress.take(position, timestamp_ms.saturating_mul(1000), delivered)?;
                self.offset = record.offset + 1;
            }
        }
        Ok(())
    }

    /// One Fetch of `quipu.all` from the next offset: the record bytes of
    /// the answer (none when the long poll ended with nothing new).
    async fn fetch(&mut self) -> anyhow::Result<Bytes> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(ApiKey::Fetch as i16)
            .with_request_api_version(KAFKA_FETCH_VERSION)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("quipu-bench")));
        let partition = FetchPartition::default()
            .with_partition(0)
            .with_fetch_offset(self.offset)
            .with_partition_max_bytes(KAFKA_FETCH_BYTES_MAX);
        let topic = FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str(KAFKA_ALL_TOPIC)))
            .with_partitions(vec![partition]);
        let request = FetchRequest::default()
            .with_max_wait_ms(KAFKA_FETCH_WAIT_MS)
            .with_min_bytes(1)
            .with_max_bytes(KAFKA_FETCH_BYTES_MAX)
            .with_topics(vec![topic]);
        self.request.clear();
        self.request.extend_from_slice(&[0; 4]);
        encode_request_header_into_buffer(&mut self.request, &header).context("encoding a Kafka header")?;
        request.encode(&mut self.request, KAFKA_FETCH_VERSION).context("encoding a Fetch")?;
        let length = i32::try_from(self.request.len() - 4).context("a Fetch over 2 GiB")?;
        if let Some(prefix) = self.request.get_mut(..4) {
            prefix.copy_from_slice(&length.to_be_bytes());
        }
        self.socket.write_all(&self.request).await.context("sending a Fetch")?;
        let length = self.socket.read_i32().await.context("reading a Fetch answer's length")?;
        let length = usize::try_from(length)
            .ok()
            .filter(|length| *length <= KAFKA_FRAME_BYTES_MAX)
            .with_context(|| format!("a Kafka answer of {length} bytes"))?;
        let mut frame = vec![0; length];
        self.socket.read_exact(&mut frame).await.context("reading a Fetch answer")?;
        let mut frame = Bytes::from(frame);
        let version = FetchResponse::header_version(KAFKA_FETCH_VERSION);
        let header = ResponseHeader::decode(&mut frame, version).context("decoding a Kafka answer's header")?;
        anyhow::ensure!(header.correlation_id == self.correlation_id, "a Kafka answer to another request");
        let response = FetchResponse::decode(&mut frame, KAFKA_FETCH_VERSION).context("decoding a Fetch answer")?;
        anyhow::ensure!(response.error_code == 0, "the Fetch failed with Kafka error {}", response.error_code);
        let partition = response.responses.into_iter().flat_map(|topic| topic.partitions).next();
        let partition = partition.context("a Fetch answer without the partition")?;
        anyhow::ensure!(
            partition.error_code == 0,
            "the Fetch of {KAFKA_ALL_TOPIC} at offset {} failed with Kafka error {}",
            self.offset,
            partition.error_code
        );
        Ok(partition.records.unwrap_or_default())
    }
}
