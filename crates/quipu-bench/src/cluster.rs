//! Workload `cluster`: single-event appends through cluster replicas
//! (`quipu-cluster`) on a Kafka-protocol broker on this machine, beside the
//! same appends to one store alone.
//!
//! The broker is noida-db (`NOIDA_DB`, or the binary of the `noida_db`
//! Python package: `python3 -m pip install noida-db==0.2.3`), started here
//! on a free port. Lines:
//! - `cluster_alone`: 16 threads appending to one store, each to its own
//!   stream with the exact expected revision;
//! - `cluster_append`: the same 16 writers spread over 1 or 3 nodes, on a
//!   topic of 1, 4 or 16 partitions (`nodes`, `partitions`);
//! - `cluster_fenced_append`: the same 16 writers on 1 node in the
//!   fenced-writer mode (`--cluster-mode fenced-writer`), on 1, 4 or 16
//!   partitions (one node: nodes racing for a partition make noida-db
//!   mishandle the aborted transactions, see docs/cluster.md);
//! - `cluster_contention`: 16 writers over 3 nodes on 4 shared streams,
//!   each expecting the last revision it knows (`conflict_rate`);
//! - `cluster_catch_up`: a new node applying the topic of the 3-node,
//!   4-partition cell from its start (events/s).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use quipu_cluster::{ClusterMode, LocalBroker, PartitionKey, Replica, ReplicaConfig};
use quipu_core::{
    AppendOutcome, AppendRequest, EventType, ExpectedRevision, Options, ProposedEvent, Revision, Store, StreamName,
};

use super::Bench;
use super::report::{Measurement, latency_histogram};

/// Writers in every cell.
const WRITERS: usize = 16;
/// (nodes, partitions) of the append cells.
const CELLS: [(usize, i32); 5] = [(1, 1), (1, 4), (1, 16), (3, 4), (3, 16)];
/// Partitions of the fenced-writer cells (one node each).
const FENCED_CELLS: [i32; 3] = [1, 4, 16];
/// Streams the contention cell's writers share.
const SHARED_STREAMS: usize = 4;

fn start_broker(bench: &Bench) -> anyhow::Result<LocalBroker> {
    Ok(LocalBroker::start(&bench.store_dir("cluster-broker")?)?)
}

/// Runs every cell; prints a line each.
///
/// # Errors
/// Broker, store and replica errors.
pub fn run(bench: &Bench) -> anyhow::Result<()> {
    let broker = start_broker(bench)?;
    alone(bench)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        for (nodes, partitions) in CELLS {
            let topic = format!("bench-{nodes}-{partitions}");
            broker.create_topic(&topic, partitions, &[]).await?;
            let replicas = start_nodes(bench, &broker.address, &topic, nodes, "append", ClusterMode::LogOrder).await?;
            let (appends, conflicts, seconds, latency) =
                drive(&replicas, Duration::from_secs(bench.seconds), false).await;
            anyhow::ensure!(conflicts == 0, "{conflicts} appends to a writer's own stream conflicted");
            bench.emit(
                &Measurement::new("cluster_append", appends, 0, seconds)
                    .with("nodes", nodes)
                    .with("partitions", partitions)
                    .with("writers", WRITERS)
                    .with_latency(latency),
            );
            close(replicas);
        }
        for partitions in FENCED_CELLS {
            let topic = format!("bench-fenced-{partitions}");
            broker.create_topic(&topic, partitions, &[]).await?;
            let replicas = start_nodes(bench, &broker.address, &topic, 1, "fenced", ClusterMode::FencedWriter).await?;
            let (appends, conflicts, seconds, latency) =
                drive(&replicas, Duration::from_secs(bench.seconds), false).await;
            anyhow::ensure!(conflicts == 0, "{conflicts} appends to a writer's own stream conflicted");
            bench.emit(
                &Measurement::new("cluster_fenced_append", appends, 0, seconds)
                    .with("nodes", 1)
                    .with("partitions", partitions)
                    .with("writers", WRITERS)
                    .with_latency(latency),
            );
            close(replicas);
        }
        contention_and_catch_up(bench, &broker).await
    })
}

/// The contention cell, then a new node catching up on its topic.
async fn contention_and_catch_up(bench: &Bench, broker: &LocalBroker) -> anyhow::Result<()> {
    let (brokers, topic) = (broker.address.as_str(), "bench-contention");
    broker.create_topic(topic, 4, &[]).await?;
    let replicas = start_nodes(bench, brokers, topic, 3, "contention", ClusterMode::LogOrder).await?;
    let (appends, conflicts, seconds, latency) = drive(&replicas, Duration::from_secs(bench.seconds), true).await;
    let written = appends - conflicts;
    bench.emit(
        &Measurement::new("cluster_contention", written, 0, seconds)
            .with("nodes", 3)
            .with("partitions", 4)
            .with("writers", WRITERS)
            .with("streams", SHARED_STREAMS)
            .with("conflicts", conflicts)
            .with("conflict_rate", (conflicts as f64 / appends.max(1) as f64 * 1000.0).round() / 1000.0)
            .with_latency(latency),
    );
    let (reference, _) = replicas.first().context("three nodes")?;
    let target = reference.last_source()?;
    let dir = bench.store_dir("cluster-contention-new")?;
    let store = Arc::new(Store::open(&dir, Options::default())?);
    let began = Instant::now();
    let newcomer = Replica::start(Arc::clone(&store), config(brokers, topic, "new", ClusterMode::LogOrder)).await?;
    while store.last_source()? != target {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let seconds = began.elapsed().as_secs_f64();
    bench.emit(&Measurement::new("cluster_catch_up", written, 0, seconds).with("nodes", 1).with("partitions", 4));
    newcomer.close();
    close(replicas);
    Ok(())
}

/// The 16 writers on one store, for the same appends without a cluster.
fn alone(bench: &Bench) -> anyhow::Result<()> {
    let dir = bench.store_dir("cluster-alone")?;
    let store = Store::open(&dir, Options::default())?;
    let until = Instant::now() + Duration::from_secs(bench.seconds);
    let began = Instant::now();
    let results: Vec<anyhow::Result<(u64, Histogram<u64>)>> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..WRITERS)
            .map(|w| {
                let store = &store;
                scope.spawn(move || {
                    let (mut count, mut latency, mut last) = (0u64, latency_histogram(), None);
                    while Instant::now() < until {
                        let sent = Instant::now();
                        let outcome =
                            store.append(request(&format!("alone-{w}"), ExpectedRevision::from_last(last)))?;
                        latency.saturating_record(u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX));
                        let AppendOutcome::Written(result) = outcome else {
                            anyhow::bail!("a writer's own stream conflicted")
                        };
                        last = result.streams.first().map(|s| s.last_revision);
                        count += 1;
                    }
                    Ok((count, latency))
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a writer panicked")))).collect()
    });
    let seconds = began.elapsed().as_secs_f64();
    let (mut appends, mut latency) = (0, latency_histogram());
    for result in results {
        let (count, histogram) = result?;
        appends += count;
        latency.add(histogram)?;
    }
    bench.emit(&Measurement::new("cluster_alone", appends, 0, seconds).with("writers", WRITERS).with_latency(latency));
    store.close()?;
    bench.finish_store(&dir)
}

fn config(brokers: &str, topic: &str, node: &str, mode: ClusterMode) -> ReplicaConfig {
    ReplicaConfig {
        brokers: brokers.to_owned(),
        topic: topic.to_owned(),
        node: node.to_owned(),
        partition_key: PartitionKey::Stream,
        produce_timeout: Duration::from_secs(30),
        append_timeout: Duration::from_secs(60),
        mode,
        check_topic_settings: true,
    }
}

/// `nodes` replicas, each on a store of its own.
async fn start_nodes(
    bench: &Bench,
    brokers: &str,
    topic: &str,
    nodes: usize,
    cell: &str,
    mode: ClusterMode,
) -> anyhow::Result<Vec<(Arc<Store>, Arc<Replica>)>> {
    let mut replicas = Vec::new();
    for node in 0..nodes {
        let dir = bench.store_dir(&format!("cluster-{topic}-{cell}-{node}"))?;
        let store = Arc::new(Store::open(&dir, Options::default())?);
        let replica = Replica::start(Arc::clone(&store), config(brokers, topic, &format!("node-{node}"), mode)).await?;
        replicas.push((store, Arc::new(replica)));
    }
    Ok(replicas)
}

fn close(replicas: Vec<(Arc<Store>, Arc<Replica>)>) {
    for (_, replica) in replicas {
        if let Some(replica) = Arc::into_inner(replica) {
            replica.close();
        }
    }
}

fn request(stream: &str, expected: ExpectedRevision) -> AppendRequest {
    let event = ProposedEvent::new(EventType::new("Deposited").expect("a valid type"), b"{\"amount\":1}".to_vec());
    AppendRequest::to_stream(StreamName::new(stream).expect("a valid name"), expected, vec![event])
}

/// The writers, spread round-robin over the nodes, for `duration`; each
/// on its own stream, or on one of [`SHARED_STREAMS`] when `shared`.
/// Gives appends, conflicts, seconds and the latency of every append.
async fn drive(
    replicas: &[(Arc<Store>, Arc<Replica>)],
    duration: Duration,
    shared: bool,
) -> (u64, u64, f64, Histogram<u64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let (appends, conflicts) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let began = Instant::now();
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..WRITERS {
        let Some((_, replica)) = replicas.get(w % replicas.len().max(1)) else { continue };
        let (replica, stop, appends, conflicts) =
            (Arc::clone(replica), Arc::clone(&stop), Arc::clone(&appends), Arc::clone(&conflicts));
        let stream = if shared { format!("shared-{}", w % SHARED_STREAMS) } else { format!("own-{w}") };
        writers.spawn(async move {
            let (mut latency, mut last): (Histogram<u64>, Option<Revision>) = (latency_histogram(), None);
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let outcome = replica.append(request(&stream, ExpectedRevision::from_last(last))).await;
                latency.saturating_record(u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX));
                appends.fetch_add(1, Ordering::Relaxed);
                match outcome {
                    Ok(AppendOutcome::Written(result)) => last = result.streams.first().map(|s| s.last_revision),
                    Ok(AppendOutcome::Conflict(conflict)) => {
                        conflicts.fetch_add(1, Ordering::Relaxed);
                        last = conflict.streams.first().and_then(|s| s.actual);
                    }
                    Ok(AppendOutcome::AlreadyWritten(_)) => {}
                    Err(error) => {
                        tracing::error!(%error, "a cluster append failed");
                        break;
                    }
                }
            }
            latency
        });
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut latency = latency_histogram();
    while let Some(Ok(histogram)) = writers.join_next().await {
        let _ = latency.add(histogram);
    }
    (appends.load(Ordering::Relaxed), conflicts.load(Ordering::Relaxed), began.elapsed().as_secs_f64(), latency)
}
