//! NATS JetStream: one JetStream stream `EVENTS` over the subjects
//! `events.>`, file storage; an event stream `s` is the subject `events.s`
//! and the JetStream stream sequence is the global position. An append
//! carries `Nats-Expected-Last-Subject-Sequence`, the stream sequence of
//! the subject's last message (0: none yet), and the server refuses it
//! when another message came in between. The harness speaks in revisions,
//! so each connection remembers the sequence its own acks gave for each
//! event stream (every writer owns its streams). JetStream 2.9 has no
//! atomic batch: a 100-event append is 100 publishes, the first checked
//! and the rest not. A stream load is a chain of direct gets, each asking
//! for the subject's next message after the last one (a consumer per load
//! timed out among a million subjects); a catch-up is an ordered consumer
//! from a stream sequence.
//! Durability: nats-server 2.9 acknowledges before fsync.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;

use async_nats::jetstream::{self, consumer, context::PublishErrorKind, stream, stream::DirectGetErrorKind};
use async_trait::async_trait;
use futures_util::StreamExt;

use super::{Appended, Connection, Fill, Page, Peer, dir_bytes};

/// The JetStream stream holding every event.
const STREAM: &str = "EVENTS";

/// Subjects are `events.<stream>`.
const SUBJECT_PREFIX: &str = "events.";

/// Messages per catch-up page.
const PAGE_MESSAGES: usize = 10_000;

/// Publishes whose acks are awaited together in a fill (below the
/// client's 5,000 acks in flight).
const FILL_ACKS_IN_FLIGHT: usize = 1_024;

/// A running nats-server with JetStream.
pub struct Nats {
    /// `nats://host:port`.
    pub url: String,
    /// Its JetStream storage directory (`-sd`), for disk use.
    pub data_dir: PathBuf,
}

impl Nats {
    async fn client(&self) -> anyhow::Result<async_nats::Client> {
        Ok(async_nats::connect(self.url.as_str()).await?)
    }
}

#[async_trait]
impl Peer for Nats {
    fn name(&self) -> &'static str {
        "nats"
    }

    async fn describe(&self) -> anyhow::Result<String> {
        let client = self.client().await?;
        let version = client.server_info().version;
        let mut stream = jetstream::new(client).get_stream(STREAM).await?;
        let config = &stream.info().await?.config;
        Ok(format!(
            "nats-server {version}; stream {} subjects {:?} storage={:?} replicas={} retention={:?} \
             max_age={:?}; 100-event appends are 100 publishes, only the first checked (no atomic batch in 2.9)",
            config.name, config.subjects, config.storage, config.num_replicas, config.retention, config.max_age
        ))
    }

    fn durability(&self) -> &'static str {
        "not synced: JetStream 2.9 acks before fsync and fsyncs in the background every 2 min \
         (sync_interval arrived in 2.10)"
    }

    async fn prepare(&self) -> anyhow::Result<()> {
        let context = jetstream::new(self.client().await?);
        context
            .get_or_create_stream(stream::Config {
                name: STREAM.to_string(),
                subjects: vec![format!("{SUBJECT_PREFIX}>")],
                storage: stream::StorageType::File,
                allow_direct: true,
                ..Default::default()
            })
            .await?;
        Ok(())
    }

    async fn connect(&self) -> anyhow::Result<Box<dyn Connection>> {
        let context = jetstream::new(self.client().await?);
        let stream = context.get_stream(STREAM).await?;
        Ok(Box::new(NatsConnection { context, stream, last_sequences: HashMap::new() }))
    }

    async fn disk_bytes(&self) -> anyhow::Result<u64> {
        dir_bytes(&self.data_dir)
    }
}

struct NatsConnection {
    context: jetstream::Context,
    stream: stream::Stream,
    /// Event stream -> stream sequence of its last message, from this
    /// connection's own acks.
    last_sequences: HashMap<String, u64>,
}

impl NatsConnection {
    /// An ordered (ephemeral, unacknowledged) consumer and how many
    /// messages it has to deliver.
    async fn ordered(
        &self,
        filter_subject: String,
        deliver_policy: consumer::DeliverPolicy,
    ) -> anyhow::Result<(consumer::Consumer<consumer::pull::OrderedConfig>, u64)> {
        let consumer = self
            .stream
            .create_consumer(consumer::pull::OrderedConfig { filter_subject, deliver_policy, ..Default::default() })
            .await?;
        let pending = consumer.cached_info().num_pending;
        Ok((consumer, pending))
    }
}

#[async_trait]
impl Connection for NatsConnection {
    async fn append(&mut self, stream: &str, expected: Option<u64>, events: &[Vec<u8>]) -> anyhow::Result<Appended> {
        let subject = format!("{SUBJECT_PREFIX}{stream}");
        let sequence_expected = match expected {
            None => 0,
            Some(revision) => *self
                .last_sequences
                .get(stream)
                .ok_or_else(|| anyhow::anyhow!("{stream} at revision {revision} was not written by this connection"))?,
        };
        let mut last = sequence_expected;
        for (n, event) in events.iter().enumerate() {
            let mut publish = jetstream::message::PublishMessage::build().payload(event.clone().into());
            if n == 0 {
                publish = publish.expected_last_subject_sequence(sequence_expected);
            }
            let acked = match self.context.send_publish(subject.clone(), publish).await {
                Ok(ack) => ack.await,
                Err(error) => Err(error),
            };
            match acked {
                Ok(ack) => last = ack.sequence,
                Err(error) if n == 0 && error.kind() == PublishErrorKind::WrongLastSequence => {
                    return Ok(Appended::Conflict);
                }
                Err(error) => return Err(error.into()),
            }
        }
        self.last_sequences.insert(stream.to_string(), last);
        Ok(Appended::Written)
    }

    async fn fill(&mut self, writes: &[Fill]) -> anyhow::Result<()> {
        let mut acks = VecDeque::with_capacity(FILL_ACKS_IN_FLIGHT);
        for (stream, _, events) in writes {
            for event in events {
                if acks.len() == FILL_ACKS_IN_FLIGHT {
                    let ack: jetstream::context::PublishAckFuture = acks.pop_front().expect("the window is full");
                    ack.await?;
                }
                acks.push_back(self.context.publish(format!("{SUBJECT_PREFIX}{stream}"), event.clone().into()).await?);
            }
        }
        for ack in acks {
            ack.await?;
        }
        Ok(())
    }

    async fn load(&mut self, stream: &str) -> anyhow::Result<usize> {
        let subject = format!("{SUBJECT_PREFIX}{stream}");
        let (mut count, mut sequence) = (0, 1);
        loop {
            match self.stream.direct_get_next_for_subject(subject.as_str(), Some(sequence)).await {
                Ok(message) => {
                    count += 1;
                    sequence = message.sequence + 1;
                }
                Err(error) if error.kind() == DirectGetErrorKind::NotFound => return Ok(count),
                Err(error) => return Err(error.into()),
            }
        }
    }

    async fn read_all(&mut self, from: Option<String>) -> anyhow::Result<Page> {
        let start_sequence: u64 = from.map(|f| f.parse()).transpose()?.unwrap_or(1);
        let (consumer, pending) =
            self.ordered(String::new(), consumer::DeliverPolicy::ByStartSequence { start_sequence }).await?;
        if pending == 0 {
            return Ok(Page { events: 0, next: None });
        }
        let mut messages = consumer.messages().await?;
        let (mut events, mut next) = (0, None);
        while let Some(message) = messages.next().await {
            let message = message?;
            let info = message.info().map_err(|e| anyhow::anyhow!("{e}"))?;
            events += 1;
            if info.pending == 0 {
                next = None;
                break;
            }
            if events == PAGE_MESSAGES {
                next = Some((info.stream_sequence + 1).to_string());
                break;
            }
        }
        Ok(Page { events, next })
    }
}
