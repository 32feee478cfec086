//! `quipu-peers`: drives Quipu and the systems users would pick instead
//! through the same event-sourcing workloads, with the same client code
//! path and concurrency for each, and prints a table of every figure with
//! the ratio Quipu/peer. `bench/peers/run` installs and starts the peers
//! and calls this with their addresses; see `docs/benchmarks.md`.
//!
//! Modules: `peer` (one per system, behind one trait), `workload` (the
//! five workloads), `payload` (the 100-byte events), `report` (rows and
//! the table), `chart` (the SVG).

mod chart;
mod payload;
mod peer;
mod report;
mod workload;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use peer::Peer;
use report::Row;

/// mimalloc, as in `quipu serve`: the clients of every peer run in this
/// process on the same cores as the servers, and glibc's malloc took
/// about 4% of the machine's CPU in their request and answer buffers
/// (perf, 64 writers), time the servers then lacked.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Command line.
#[derive(Parser, Debug)]
#[command(name = "quipu-peers", about = "Quipu beside other event stores and logs, on the same workloads")]
struct Args {
    /// Tiny sizes and 1-second runs: proves the harness works.
    #[arg(long)]
    smoke: bool,
    /// Print one JSON object per result.
    #[arg(long)]
    json: bool,
    /// Seconds per timed run (default 5; 1 with --smoke).
    #[arg(long)]
    seconds: Option<u64>,
    /// Writer counts for single-event appends (default 1,16,64; 1,4 with --smoke).
    #[arg(long, value_delimiter = ',')]
    writers: Vec<u64>,
    /// Writers for 100-event appends (default 16; 4 with --smoke).
    #[arg(long)]
    batch_writers: Option<u64>,
    /// Streams the appends go to (default 100,000; 1,000 with --smoke).
    #[arg(long)]
    streams: Option<u64>,
    /// Streams of 20 events in the load store (default 1,000,000; 1,000 with --smoke).
    #[arg(long)]
    load_streams: Option<u64>,
    /// Write the Markdown table here too.
    #[arg(long)]
    table: Option<PathBuf>,
    /// Write the chart (SVG) here.
    #[arg(long)]
    chart: Option<PathBuf>,
    /// Quipu's gRPC address.
    #[arg(long)]
    quipu: Option<String>,
    /// Quipu's data directory.
    #[arg(long)]
    quipu_dir: Option<PathBuf>,
    /// NATS URL of a JetStream server (built with `--features nats`).
    #[cfg(feature = "nats")]
    #[arg(long)]
    nats: Option<String>,
    /// NATS JetStream storage directory.
    #[cfg(feature = "nats")]
    #[arg(long)]
    nats_dir: Option<PathBuf>,
    /// Kafka bootstrap servers (built with `--features kafka`).
    #[cfg(feature = "kafka")]
    #[arg(long)]
    kafka: Option<String>,
    /// Connection string of the PostgreSQL database the Kafka broker
    /// stores in, for its settings and disk use.
    #[cfg(feature = "kafka")]
    #[arg(long, conflicts_with = "kafka_sqlite_dir")]
    kafka_postgres: Option<String>,
    /// Directory of the SQLite database the Kafka broker stores in, for
    /// disk use.
    #[cfg(feature = "kafka")]
    #[arg(long)]
    kafka_sqlite_dir: Option<PathBuf>,
    /// PostgreSQL connection string.
    #[arg(long)]
    postgres: Option<String>,
    /// Redis URL.
    #[arg(long)]
    redis: Option<String>,
    /// Redis data directory.
    #[arg(long)]
    redis_dir: Option<PathBuf>,
    /// UmaDB's gRPC address (built with `--features umadb`).
    #[cfg(feature = "umadb")]
    #[arg(long)]
    umadb: Option<String>,
    /// UmaDB's database directory.
    #[cfg(feature = "umadb")]
    #[arg(long)]
    umadb_dir: Option<PathBuf>,
    /// What `umadb --version` printed.
    #[cfg(feature = "umadb")]
    #[arg(long, default_value = "umadb")]
    umadb_version: String,
    /// A peer that could not be run here, as `name=reason`; its row stays
    /// in the table with the reason.
    #[arg(long = "unavailable", value_parser = parse_unavailable)]
    unavailable: Vec<(String, String)>,
}

fn parse_unavailable(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(name, reason)| (name.to_string(), reason.to_string()))
        .ok_or_else(|| format!("{text:?} is not name=reason"))
}

/// Longest a catch-up reads.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(60);

/// Sizes of one run.
#[derive(Debug, Clone)]
struct Sizes {
    duration: Duration,
    writers: Vec<u64>,
    batch_writers: u64,
    streams: u64,
    load_streams: u64,
}

impl Args {
    fn sizes(&self) -> Sizes {
        let smoke = self.smoke;
        Sizes {
            duration: Duration::from_secs(self.seconds.unwrap_or(if smoke { 1 } else { 5 })),
            writers: if !self.writers.is_empty() {
                self.writers.clone()
            } else if smoke {
                vec![1, 4]
            } else {
                vec![1, 16, 64]
            },
            batch_writers: self.batch_writers.unwrap_or(if smoke { 4 } else { 16 }),
            streams: self.streams.unwrap_or(if smoke { 1_000 } else { 100_000 }),
            load_streams: self.load_streams.unwrap_or(if smoke { 1_000 } else { 1_000_000 }),
        }
    }

    /// The peers whose addresses were given, Quipu first.
    fn peers(&self) -> anyhow::Result<Vec<Arc<dyn Peer>>> {
        let mut peers: Vec<Arc<dyn Peer>> = Vec::new();
        if let Some(address) = &self.quipu {
            let data_dir = self.quipu_dir.clone().context("--quipu needs --quipu-dir")?;
            peers.push(Arc::new(peer::quipu::Quipu { address: address.clone(), data_dir }));
        }
        if let Some(conninfo) = &self.postgres {
            peers.push(Arc::new(peer::postgres::Postgres { conninfo: conninfo.clone() }));
        }
        #[cfg(feature = "nats")]
        if let Some(url) = &self.nats {
            let data_dir = self.nats_dir.clone().context("--nats needs --nats-dir")?;
            peers.push(Arc::new(peer::nats::Nats { url: url.clone(), data_dir }));
        }
        #[cfg(feature = "kafka")]
        if let Some(brokers) = &self.kafka {
            let storage = match (&self.kafka_postgres, &self.kafka_sqlite_dir) {
                (Some(conninfo), _) => peer::kafka::Storage::Postgres(conninfo.clone()),
                (None, Some(dir)) => peer::kafka::Storage::Sqlite(dir.clone()),
                (None, None) => anyhow::bail!("--kafka needs --kafka-postgres or --kafka-sqlite-dir"),
            };
            peers.push(Arc::new(peer::kafka::Kafka { brokers: brokers.clone(), storage }));
        }
        if let Some(url) = &self.redis {
            let data_dir = self.redis_dir.clone().context("--redis needs --redis-dir")?;
            peers.push(Arc::new(peer::redis::Redis { url: url.clone(), data_dir }));
        }
        #[cfg(feature = "umadb")]
        if let Some(url) = &self.umadb {
            let data_dir = self.umadb_dir.clone().context("--umadb needs --umadb-dir")?;
            peers.push(Arc::new(peer::umadb::UmaDb {
                url: url.clone(),
                data_dir,
                version: self.umadb_version.clone(),
            }));
        }
        Ok(peers)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let sizes = args.sizes();
    let peers = args.peers()?;
    anyhow::ensure!(!peers.is_empty() || !args.unavailable.is_empty(), "no peer given; see --help");
    println!("sizes: {sizes:?}");
    let mut rows = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for peer in &peers {
        names.push(peer.name().to_string());
        rows.extend(run_peer(Arc::clone(peer), &sizes, args.json).await?);
    }
    let measured: Vec<(String, &'static str)> = rows.iter().map(|r| (r.workload.clone(), r.unit)).collect();
    for (name, reason) in &args.unavailable {
        names.push(name.clone());
        println!("== {name}: not run: {reason}");
        let mut workloads: Vec<(String, &'static str)> = Vec::new();
        for (workload, unit) in &measured {
            if !workloads.iter().any(|(w, _)| w == workload) {
                workloads.push((workload.clone(), unit));
            }
        }
        for (workload, unit) in workloads {
            rows.push(Row::skipped(name, workload, unit, "not run here, see above"));
        }
    }
    let table = report::table(&rows, &names);
    println!("\n{table}");
    if let Some(path) = &args.table {
        std::fs::write(path, &table).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.chart {
        chart::draw(&rows, &names, path)?;
    }
    Ok(())
}

/// Every workload against one peer.
async fn run_peer(peer: Arc<dyn Peer>, sizes: &Sizes, json: bool) -> anyhow::Result<Vec<Row>> {
    let name = peer.name();
    peer.prepare().await.with_context(|| format!("preparing {name}"))?;
    println!("== {name}: {}", peer.describe().await?);
    println!("   durability: {}", peer.durability());
    let mut rows = Vec::new();
    let mut written = 0;
    let emit = |row: Row, rows: &mut Vec<Row>| {
        row.print(json);
        rows.push(row);
    };
    let revision_note = (!peer.checks_revisions()).then(|| "no per-stream concurrency check".to_string());
    for &writers in &sizes.writers {
        let outcome =
            workload::appends(Arc::clone(&peer), &format!("a{writers}"), writers, sizes.streams, 1, sizes.duration)
                .await
                .with_context(|| format!("{name}: single-event appends from {writers} writers"))?;
        written += outcome.events;
        let mut row = Row::throughput(name, format!("append x{writers}"), &outcome);
        row.note.clone_from(&revision_note);
        emit(row, &mut rows);
    }
    let writers = sizes.batch_writers;
    let outcome = workload::appends(Arc::clone(&peer), "b", writers, sizes.streams, 100, sizes.duration)
        .await
        .with_context(|| format!("{name}: 100-event appends"))?;
    written += outcome.events;
    let mut row = Row::throughput(name, format!("batch100 x{writers}"), &outcome);
    row.note.clone_from(&revision_note);
    emit(row, &mut rows);

    // The load store exists for stream loads; a peer that cannot load
    // one stream is not filled (tansu fills at about 18,000 events/s: 20
    // million events would take the whole run), and its catch-up reads
    // what the appends above wrote.
    if peer.loads_streams() {
        let fill = workload::fill(Arc::clone(&peer), "l", sizes.load_streams)
            .await
            .with_context(|| format!("{name}: filling the load store"))?;
        written += fill.events;
        emit(Row::throughput(name, "fill".into(), &fill), &mut rows);
        // From here a failure (a peer that cannot do the work at this
        // size) becomes the cell's note; the run goes on with the others.
        match workload::loads(Arc::clone(&peer), "l", sizes.load_streams, 1, sizes.duration).await {
            Ok(loads) => {
                let mut row = Row::throughput(name, "load20 x1".into(), &loads);
                row.value = Some((loads.operations_per_s() * 10.0).round() / 10.0);
                row.unit = "loads/s";
                emit(row, &mut rows);
            }
            Err(error) => {
                emit(Row::skipped(name, "load20 x1".into(), "loads/s", format!("failed: {error:#}")), &mut rows)
            }
        }
    } else {
        emit(Row::skipped(name, "fill".into(), "events/s", "not filled: it cannot load one stream"), &mut rows);
        emit(Row::skipped(name, "load20 x1".into(), "loads/s", "cannot load one stream"), &mut rows);
    }

    match workload::catch_up(Arc::clone(&peer), CATCH_UP_LIMIT).await {
        Ok(catch_up) => {
            let mut row = Row::throughput(name, "catchup".into(), &catch_up);
            row.latency_us = None;
            if catch_up.events < written {
                row.note = Some(format!("read {} of {written} events", catch_up.events));
            } else if !peer.loads_streams() {
                row.note = Some(format!("{} events, those of the appends", catch_up.events));
            }
            emit(row, &mut rows);
        }
        Err(error) => emit(Row::skipped(name, "catchup".into(), "events/s", format!("failed: {error:#}")), &mut rows),
    }

    let bytes = peer.disk_bytes().await.with_context(|| format!("{name}: disk bytes"))?;
    let per_event = bytes as f64 / written.max(1) as f64;
    emit(
        Row {
            peer: name.to_string(),
            workload: "disk".into(),
            value: Some((per_event * 10.0).round() / 10.0),
            unit: "bytes/event",
            higher_is_better: false,
            latency_us: None,
            note: None,
        },
        &mut rows,
    );
    Ok(rows)
}
