//! A Kafka-protocol broker (tansu), driven the way teams use Kafka as an
//! event log: one topic `events` of 8 partitions, the record key is the
//! event stream (so a stream stays in one partition, in order) and the
//! value the payload. The producer runs with `acks=all` and
//! `enable.idempotence=true`. Kafka has no per-stream concurrency check,
//! so an append cannot conflict, and no index by key, so a stream cannot
//! be loaded on its own. A catch-up reads every partition from the
//! beginning until each reports its end (`enable.partition.eof`: the
//! fetch reached the high watermark); it does not ask for the watermarks
//! first, since tansu 0.6's query for the latest offset needs PostgreSQL
//! 16 (an unaliased subquery).
//!
//! tansu stores in PostgreSQL (`synchronous_commit = on`: synced) or in
//! SQLite, which it opens in WAL mode with `synchronous = NORMAL`: a commit
//! is in the WAL file but not synced, the WAL is synced at checkpoints.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio_postgres::NoTls;

use super::{Appended, Connection, Fill, Page, Peer, dir_bytes};

/// The topic holding every event.
const TOPIC: &str = "events";

/// Partitions of [`TOPIC`].
const PARTITIONS: i32 = 8;

/// Messages per catch-up page.
const PAGE_MESSAGES: usize = 10_000;

/// How long admin and metadata requests may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the broker keeps its records.
pub enum Storage {
    /// A PostgreSQL database, by its libpq connection string.
    Postgres(String),
    /// A directory holding the broker's SQLite database and its WAL.
    Sqlite(PathBuf),
}

/// A running Kafka-protocol broker.
pub struct Kafka {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// Where it stores.
    pub storage: Storage,
}

impl Kafka {
    fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        config
    }

    /// An idempotent producer waiting for every replica, sending at once.
    fn producer(&self) -> anyhow::Result<FutureProducer> {
        let producer: FutureProducer = self
            .config()
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "0")
            .create()
            .context("creating a producer")?;
        // Connect and learn the partitions now, outside the timed runs.
        producer.client().fetch_metadata(Some(TOPIC), REQUEST_TIMEOUT).context("fetching the topic's metadata")?;
        Ok(producer)
    }

    async fn postgres(conninfo: &str) -> anyhow::Result<tokio_postgres::Client> {
        let (client, connection) = tokio_postgres::connect(conninfo, NoTls).await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                eprintln!("postgres connection ended: {error}");
            }
        });
        Ok(client)
    }
}

#[async_trait]
impl Peer for Kafka {
    fn name(&self) -> &'static str {
        "kafka"
    }

    async fn describe(&self) -> anyhow::Result<String> {
        let storage = match &self.storage {
            Storage::Postgres(conninfo) => {
                let client = Self::postgres(conninfo).await?;
                let version: String = client.query_one("SELECT version()", &[]).await?.get(0);
                let mut settings = Vec::new();
                for name in ["synchronous_commit", "fsync"] {
                    let value: String = client.query_one(&format!("SHOW {name}"), &[]).await?.get(0);
                    settings.push(format!("{name}={value}"));
                }
                format!("{version}; {}", settings.join(" "))
            }
            Storage::Sqlite(dir) => format!("SQLite in {} (journal_mode=WAL, synchronous=NORMAL)", dir.display()),
        };
        let (_, librdkafka) = rdkafka::util::get_rdkafka_version();
        Ok(format!(
            "tansu (Kafka protocol) storing in {storage}; topic {TOPIC} with {PARTITIONS} partitions, \
             key = stream; librdkafka {librdkafka}, acks=all, enable.idempotence=true"
        ))
    }

    fn durability(&self) -> &'static str {
        match self.storage {
            Storage::Postgres(_) => {
                "synced: the broker stores each produce in PostgreSQL with synchronous_commit=on, fsync=on \
                 (WAL flushed before the commit returns); producer acks=all"
            }
            Storage::Sqlite(_) => {
                "not synced: the broker stores each produce in SQLite in WAL mode with synchronous=NORMAL, \
                 which syncs the WAL at checkpoints, not at each commit; producer acks=all"
            }
        }
    }

    fn loads_streams(&self) -> bool {
        false
    }

    fn checks_revisions(&self) -> bool {
        false
    }

    async fn prepare(&self) -> anyhow::Result<()> {
        let admin: AdminClient<DefaultClientContext> = self.config().create()?;
        let topic = NewTopic::new(TOPIC, PARTITIONS, TopicReplication::Fixed(1));
        let options = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
        for result in admin.create_topics([&topic], &options).await? {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => anyhow::bail!("creating topic {topic}: {code}"),
            }
        }
        Ok(())
    }

    async fn connect(&self) -> anyhow::Result<Box<dyn Connection>> {
        let consumer: StreamConsumer = self
            .config()
            .set("group.id", "quipu-peers")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .create()
            .context("creating the consumer")?;
        Ok(Box::new(KafkaConnection { producer: self.producer()?, consumer, partitions_reading: None }))
    }

    /// The broker's whole database (records, indexes, its bookkeeping).
    async fn disk_bytes(&self) -> anyhow::Result<u64> {
        match &self.storage {
            Storage::Postgres(conninfo) => {
                let client = Self::postgres(conninfo).await?;
                let bytes: i64 = client.query_one("SELECT pg_database_size(current_database())", &[]).await?.get(0);
                Ok(u64::try_from(bytes)?)
            }
            Storage::Sqlite(dir) => dir_bytes(dir),
        }
    }
}

struct KafkaConnection {
    producer: FutureProducer,
    consumer: StreamConsumer,
    /// In a catch-up: the partitions that have not reported their end.
    partitions_reading: Option<HashSet<i32>>,
}

impl KafkaConnection {
    /// Assigns every partition from its beginning.
    fn start_catch_up(&self) -> anyhow::Result<HashSet<i32>> {
        let mut assignment = TopicPartitionList::new();
        for partition in 0..PARTITIONS {
            assignment.add_partition_offset(TOPIC, partition, Offset::Beginning)?;
        }
        self.consumer.assign(&assignment)?;
        Ok((0..PARTITIONS).collect())
    }
}

#[async_trait]
impl Connection for KafkaConnection {
    async fn append(&mut self, stream: &str, _expected: Option<u64>, events: &[Vec<u8>]) -> anyhow::Result<Appended> {
        let mut deliveries = Vec::with_capacity(events.len());
        for event in events {
            let record = FutureRecord::to(TOPIC).key(stream).payload(event.as_slice());
            deliveries.push(self.producer.send_result(record).map_err(|(error, _)| error)?);
        }
        for delivery in deliveries {
            delivery.await?.map_err(|(error, _)| error)?;
        }
        Ok(Appended::Written)
    }

    async fn fill(&mut self, writes: &[Fill]) -> anyhow::Result<()> {
        let mut deliveries = Vec::new();
        for (stream, _, events) in writes {
            for event in events {
                let record = FutureRecord::to(TOPIC).key(stream.as_str()).payload(event.as_slice());
                deliveries.push(self.producer.send_result(record).map_err(|(error, _)| error)?);
            }
        }
        for delivery in deliveries {
            delivery.await?.map_err(|(error, _)| error)?;
        }
        Ok(())
    }

    async fn load(&mut self, stream: &str) -> anyhow::Result<usize> {
        anyhow::bail!("a Kafka topic cannot load one stream ({stream}): a key is not an index")
    }

    async fn read_all(&mut self, from: Option<String>) -> anyhow::Result<Page> {
        if from.is_none() || self.partitions_reading.is_none() {
            self.partitions_reading = Some(self.start_catch_up()?);
        }
        let reading = self.partitions_reading.as_mut().expect("set above");
        let mut events = 0;
        while events < PAGE_MESSAGES && !reading.is_empty() {
            match self.consumer.recv().await {
                Ok(_) => events += 1,
                Err(KafkaError::PartitionEOF(partition)) => {
                    reading.remove(&partition);
                }
                Err(error) => return Err(error.into()),
            }
        }
        let next = (!reading.is_empty()).then(|| events.to_string());
        Ok(Page { events, next })
    }
}
