//! Workload `kafka`: the Kafka door of a server in this process, driven
//! by librdkafka (the `rdkafka` crate), the client most Kafka tools use.
//!
//! 200,000 events (scaled) of 100 bytes go to 1,000 streams of category
//! `account` through the door, twice: without headers beyond the event
//! type (`kafka_produce`), then with a `quipu-expected-revision` header
//! giving each stream's exact revision (`kafka_produce_occ`; any conflict
//! fails the run). Then one consumer reads them back: the `quipu.all`
//! topic from offset 0 (`kafka_consume_all`), and the four partitions of
//! topic `account` (`kafka_consume_category`). Each line counts events
//! and their values' bytes.
//!
//! With `--kafka-peer ADDRESS`, the same producer and consumer then write
//! and read the same events through that Kafka-protocol broker, whose
//! topic `account` must have the same four partitions
//! (`kafka_peer_produce`, `kafka_peer_consume_category`). `--kafka-peer
//! mock` starts librdkafka's mock cluster (one in-memory broker) in this
//! process for it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};

use super::Bench;
use super::payload::data;
use super::report::Measurement;
use super::server::Addresses;

/// Streams written.
const STREAMS: u64 = 1_000;
/// Partitions of the category topic (the door's default).
const PARTITIONS: i32 = 4;

/// Runs the four measurements; prints a line each.
///
/// # Errors
/// Server or client errors; a refused record or a short read.
pub fn run(bench: &Bench) -> anyhow::Result<()> {
    super::server::with_addresses(bench, "kafka", |addresses| async move { measure(bench, addresses) })
}

fn measure(bench: &Bench, addresses: Addresses) -> anyhow::Result<()> {
    let broker = addresses.kafka.to_string();
    let events = bench.scaled(200_000, 5_000);
    bench.emit(&produce(&broker, events, false)?.measurement("kafka_produce"));
    bench.emit(&produce(&broker, events, true)?.measurement("kafka_produce_occ"));
    let mut all = TopicPartitionList::new();
    all.add_partition_offset("quipu.all", 0, Offset::Beginning)?;
    bench.emit(&consume(&broker, all, 2 * events)?.measurement("kafka_consume_all"));
    let mut category = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        category.add_partition_offset("account", partition, Offset::Beginning)?;
    }
    bench.emit(&consume(&broker, category.clone(), 2 * events)?.measurement("kafka_consume_category"));
    if let Some(peer) = &bench.kafka_peer {
        // `mock`: librdkafka's mock cluster, in this process as the door is.
        let mock = match peer.as_str() {
            "mock" => {
                let mock = rdkafka::mocking::MockCluster::new(1).context("starting the mock cluster")?;
                mock.create_topic("account", PARTITIONS, 1).context("creating topic account")?;
                Some(mock)
            }
            _ => None,
        };
        let peer = mock.as_ref().map_or_else(|| peer.clone(), rdkafka::mocking::MockCluster::bootstrap_servers);
        let peer = &peer;
        check_peer_topic(peer)?;
        bench.emit(&produce(peer, events, false)?.measurement("kafka_peer_produce").with("broker", peer.as_str()));
        let consumed = consume(peer, category, events)?;
        bench.emit(&consumed.measurement("kafka_peer_consume_category").with("broker", peer.as_str()));
    }
    Ok(())
}

/// Checks that the peer has topic `account` with [`PARTITIONS`]
/// partitions, and that it is empty (a second run would count old
/// records).
fn check_peer_topic(peer: &str) -> anyhow::Result<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", peer)
        .set("allow.auto.create.topics", "false")
        .create()
        .context("creating a client of the peer")?;
    let timeout = Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(Some("account"), timeout).context("reading the peer's metadata")?;
    let partitions = metadata.topics().iter().find(|t| t.name() == "account" && t.error().is_none());
    let count = partitions.map_or(0, |t| t.partitions().len());
    anyhow::ensure!(
        count == PARTITIONS as usize,
        "the peer {peer} should have topic account with {PARTITIONS} partitions (it has {count}); create it first"
    );
    for partition in 0..PARTITIONS {
        let (low, high) = consumer.fetch_watermarks("account", partition, timeout)?;
        anyhow::ensure!(high == low, "topic account of the peer {peer} is not empty; recreate it");
    }
    Ok(())
}

/// What one run moved.
struct Moved {
    events: u64,
    bytes: u64,
    seconds: f64,
}

impl Moved {
    fn measurement(&self, name: &str) -> Measurement {
        Measurement::new(name, self.events, self.bytes, self.seconds).with("client", "librdkafka")
    }
}

/// Counts deliveries and failures, and keeps the first failure's reason.
#[derive(Default)]
struct Deliveries {
    delivered: AtomicU64,
    failed: AtomicU64,
    first_failure: std::sync::OnceLock<String>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, (): ()) {
        let counter = match result {
            Ok(_) => &self.delivered,
            Err((error, _)) => {
                let _ = self.first_failure.set(error.to_string());
                &self.failed
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Produces `events` to `account`, round-robin over the streams; with
/// `occ`, each record says its stream's exact expected revision.
fn produce(broker: &str, events: u64, occ: bool) -> anyhow::Result<Moved> {
    let producer: BaseProducer<Deliveries> = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create_with_context(Deliveries::default())
        .context("creating the producer")?;
    // The run with headers comes second: each stream then has
    // events / STREAMS events, so its next revision is known.
    let per_stream = events / STREAMS;
    let started = Instant::now();
    let mut bytes = 0u64;
    for n in 0..events {
        let stream = format!("account-{}", n % STREAMS);
        let value = data(n);
        bytes += value.len() as u64;
        let mut headers = OwnedHeaders::new().insert(Header { key: "quipu-event-type", value: Some("Deposited") });
        let expected = (per_stream + n / STREAMS).checked_sub(1).map(|r| r.to_string());
        if occ && let Some(expected) = &expected {
            headers = headers.insert(Header { key: "quipu-expected-revision", value: Some(expected.as_str()) });
        }
        let mut record = BaseRecord::to("account").key(stream.as_str()).payload(value.as_str()).headers(headers);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    back,
                )) => {
                    record = back;
                    producer.poll(Duration::from_millis(5));
                }
                Err((error, _)) => return Err(error).context("producing"),
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(120)).context("flushing the producer")?;
    let seconds = started.elapsed().as_secs_f64();
    let context = producer.context();
    let (delivered, failed) = (context.delivered.load(Ordering::Relaxed), context.failed.load(Ordering::Relaxed));
    let reason = context.first_failure.get().map_or("", String::as_str);
    anyhow::ensure!(
        failed == 0 && delivered == events,
        "{delivered} of {events} delivered, {failed} refused (first: {reason})"
    );
    Ok(Moved { events, bytes, seconds })
}

/// Reads `partitions` from their start until `wanted` events of the
/// `account` streams came.
fn consume(broker: &str, partitions: TopicPartitionList, wanted: u64) -> anyhow::Result<Moved> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("group.id", "bench")
        .set("enable.auto.commit", "false")
        .create()
        .context("creating the consumer")?;
    consumer.assign(&partitions)?;
    let started = Instant::now();
    let (mut events, mut bytes) = (0u64, 0u64);
    let mut last_offsets = std::collections::HashMap::new();
    while events < wanted {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(300), "read {events} of {wanted} events in 300 s");
        let Some(message) = consumer.poll(Duration::from_millis(100)) else { continue };
        let message = message.context("consuming")?;
        let last = last_offsets.insert(message.partition(), message.offset());
        anyhow::ensure!(
            last.is_none_or(|l| l < message.offset()),
            "offset {} came twice or backwards",
            message.offset()
        );
        if message.key().is_some_and(|k| k.starts_with(b"account-")) {
            events += 1;
            bytes += message.payload().map_or(0, <[u8]>::len) as u64;
        }
    }
    Ok(Moved { events, bytes, seconds: started.elapsed().as_secs_f64() })
}
