//! [`Publisher`]: follows the selected events of `$all` from its
//! checkpoint and produces them to one topic of an external
//! Kafka-protocol broker.
//!
//! What it promises:
//! - **Order per stream.** The record key is the stream and its partition
//!   is `murmur2(stream) % partitions` (Kafka's default partitioner), and
//!   events are produced in `$all` order by one producer that keeps order
//!   per partition.
//! - **Nothing lost, nothing twice** (see [`Delivery`] for what each mode
//!   needs from the broker). A batch is produced, acknowledged (committed,
//!   in exactly-once mode), and only then checkpointed in Quipu. A restart
//!   reads the checkpoint, aborts the crashed transaction (exactly-once
//!   mode), reads what landed past the checkpoint ([`Landed`]) and sends
//!   only the rest.
//! - **One publisher per name.** Each checkpoint expects the revision the
//!   publisher last saw; in exactly-once mode the transactional id is
//!   derived from the name too, so a newer publisher fences an older one.

use std::future::Future;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use quipu_client::{Client, Event, Position, Start, Subscription, SubscriptionItem};
use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use tokio::sync::watch;

use crate::checkpoint::{Checkpoint, CheckpointStream};
use crate::{Delivery, Error, Landed, Selection, record};

/// Events per batch (one transaction in exactly-once mode) at most, by
/// default.
pub const BATCH_MAX_DEFAULT: usize = 1_000;

/// How long a call to the broker may take, by default.
pub const TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);

/// Positions passed over without sending anything before the checkpoint
/// is written anyway (when few events of `$all` are selected).
const SKIPPED_CHECKPOINT_EVERY: u64 = 10_000;

/// Longest publisher name.
const NAME_CHARS_MAX: usize = 100;

/// What a publisher is told to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Names the checkpoint stream (`publisher-<name>`) and the
    /// transactional id (`quipu-publisher-<name>`).
    pub name: String,
    /// Bootstrap servers of the broker, `host:port[,host:port...]`.
    pub brokers: String,
    /// The topic; it must exist.
    pub topic: String,
    /// Which events go.
    pub selection: Selection,
    /// How they go.
    pub delivery: Delivery,
    /// Events per batch at most.
    pub batch_max: usize,
    /// More client properties (security settings, say), given to the
    /// producer and to the reader of the topic's end.
    pub properties: Vec<(String, String)>,
    /// How long one call to the broker may take.
    pub timeout: Duration,
}

impl Settings {
    /// Settings with the defaults: the marked integration types,
    /// exactly-once delivery.
    #[must_use]
    pub fn new(name: impl Into<String>, brokers: impl Into<String>, topic: impl Into<String>) -> Settings {
        Settings {
            name: name.into(),
            brokers: brokers.into(),
            topic: topic.into(),
            selection: Selection::Integration,
            delivery: Delivery::ExactlyOnce,
            batch_max: BATCH_MAX_DEFAULT,
            properties: Vec::new(),
            timeout: TIMEOUT_DEFAULT,
        }
    }

    /// Checks every setting.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the first setting that is wrong.
    pub fn validate(&self) -> Result<(), Error> {
        if self.brokers.trim().is_empty() {
            return Err(Error::Invalid("no brokers given".into()));
        }
        quipu_types::topic::check_name(&self.topic)
            .map_err(|reason| Error::Invalid(format!("topic {:?}: {reason}", self.topic)))?;
        let name_ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if self.name.is_empty() || self.name.chars().count() > NAME_CHARS_MAX || !self.name.chars().all(name_ok) {
            return Err(Error::Invalid(format!(
                "publisher name {:?} must be 1 to {NAME_CHARS_MAX} of A-Z a-z 0-9 . _ -",
                self.name
            )));
        }
        if self.batch_max == 0 {
            return Err(Error::Invalid("batch size must be at least 1".into()));
        }
        Ok(())
    }

    /// Client configuration common to the producer and the tail reader.
    fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        // Asking for a missing topic's metadata must not create it.
        config.set("bootstrap.servers", &self.brokers).set("allow.auto.create.topics", "false");
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }

    /// The transactional id in exactly-once mode.
    #[must_use]
    pub fn transactional_id(&self) -> String {
        format!("quipu-publisher-{}", self.name)
    }
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Every selected event before this position is in the topic.
    pub next_position: u64,
    /// Events produced by this run.
    pub published: u64,
    /// Selected events found already in the topic at the start of this
    /// run, and not sent again.
    pub already_there: u64,
    /// Batches acknowledged by this run.
    pub batches: u64,
}

/// A publisher connected to Quipu and to the broker.
pub struct Publisher {
    quipu: Client,
    settings: Settings,
    producer: FutureProducer,
    /// Partitions of the topic now.
    partitions: i32,
    /// What a previous run left in the topic past the checkpoint.
    landed: Landed,
    /// Partitions of the topic when `landed` was sent.
    landed_partitions: i32,
    checkpoint: CheckpointStream,
    /// Position of the last checkpoint written.
    saved: u64,
    progress: watch::Sender<Progress>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl Publisher {
    /// Connects to the broker, reads the checkpoint, takes over the
    /// publisher's name (aborting a crashed transaction, fencing an older
    /// publisher) and reads what landed past the checkpoint.
    ///
    /// # Errors
    /// [`Error::Invalid`] for bad settings, [`Error::UnknownTopic`],
    /// [`Error::TopicChanged`], or a broker or Quipu that cannot be reached.
    pub async fn start(quipu: Client, settings: Settings) -> Result<Publisher, Error> {
        settings.validate()?;
        let mut attempt = 1;
        loop {
            match Publisher::claim(quipu.clone(), settings.clone()).await {
                // The checkpoint moved between reading and claiming it: a
                // run killed a moment ago may still have a checkpoint in
                // flight, or an older run checkpointed. The newest run
                // takes the name, so read it again and claim once more.
                Err(Error::Fenced { .. }) if attempt < CLAIM_ATTEMPTS => attempt += 1,
                claimed => return claimed,
            }
        }
    }

    /// One attempt of [`Publisher::start`]: reads the checkpoint, connects,
    /// and claims the name by writing the checkpoint back.
    async fn claim(quipu: Client, settings: Settings) -> Result<Publisher, Error> {
        let (checkpoint, stored) = CheckpointStream::load(quipu.clone(), &settings.name).await?;
        if let Some(stored) = &stored
            && stored.topic != settings.topic
        {
            return Err(Error::TopicChanged {
                name: settings.name.clone(),
                recorded: stored.topic.clone(),
                asked: settings.topic.clone(),
            });
        }
        let connecting = settings.clone();
        let (producer, partitions, landed) = tokio::task::spawn_blocking(move || connect(&connecting)).await??;
        let next = stored.as_ref().map_or(0, |c| c.next_position);
        let landed_partitions = stored.as_ref().map_or(partitions, |c| c.partitions);
        tracing::info!(
            publisher = %settings.name, topic = %settings.topic, next, partitions, landed = ?landed.last(),
            delivery = %settings.delivery, "publisher starting"
        );
        let mut publisher = Publisher {
            quipu,
            settings,
            producer,
            partitions,
            landed,
            landed_partitions,
            checkpoint,
            saved: next,
            progress: watch::Sender::new(Progress { next_position: next, ..Progress::default() }),
        };
        // Writing the checkpoint claims the name: an older publisher of
        // the same name is refused at its next one.
        let claim = publisher.checkpoint_at(next);
        publisher.checkpoint.save(&claim).await?;
        Ok(publisher)
    }

    /// Progress of this run, updated after each batch.
    #[must_use]
    pub fn progress(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    /// Publishes until every event written so far is in the topic.
    ///
    /// # Errors
    /// See [`Error`]; what was acknowledged before stays, and the next run
    /// resumes after it.
    pub async fn catch_up(&mut self) -> Result<Progress, Error> {
        self.drive(true, std::future::pending()).await
    }

    /// Publishes events as they are written until `stop` resolves.
    ///
    /// # Errors
    /// See [`Error`]; what was acknowledged before stays, and the next run
    /// resumes after it.
    pub async fn run(&mut self, stop: impl Future<Output = ()>) -> Result<Progress, Error> {
        self.drive(false, stop).await
    }

    async fn drive(&mut self, until_caught_up: bool, stop: impl Future<Output = ()>) -> Result<Progress, Error> {
        let start = Start::Position(Position(self.progress.borrow().next_position));
        let mut subscription = self.quipu.subscribe(self.settings.selection.filter(), start).await?;
        let mut stop = std::pin::pin!(stop);
        loop {
            let first = tokio::select! {
                item = subscription.next() => item,
                () = &mut stop => return Ok(*self.progress.borrow()),
            };
            let Some(first) = first else {
                return Err(Error::Quipu(quipu_client::Error::Unavailable("the subscription ended".into())));
            };
            let (events, caught_up) = self.gather(first?, &mut subscription)?;
            if let Some(last) = events.last() {
                let next = last.position.next().0;
                self.publish(&events, next).await?;
            }
            if caught_up && until_caught_up {
                return Ok(*self.progress.borrow());
            }
        }
    }

    /// The events that have arrived, up to the batch size; whether the
    /// subscription caught up on the way.
    fn gather(&self, first: SubscriptionItem, subscription: &mut Subscription) -> Result<(Vec<Event>, bool), Error> {
        let mut events = Vec::new();
        let mut item = first;
        loop {
            match item {
                SubscriptionItem::Event(event) => events.push(event),
                SubscriptionItem::CaughtUp { .. } => return Ok((events, true)),
            }
            if events.len() >= self.settings.batch_max {
                return Ok((events, false));
            }
            item = match subscription.next().now_or_never() {
                Some(Some(next)) => next?,
                Some(None) | None => return Ok((events, false)),
            };
        }
    }

    /// Produces the selected `events` not yet in the topic as one batch,
    /// then checkpoints `next`.
    async fn publish(&mut self, events: &[Event], next: u64) -> Result<(), Error> {
        let mut sending = Vec::with_capacity(events.len());
        let mut already_there = 0;
        for event in events.iter().filter(|e| self.settings.selection.contains(&e.event_type)) {
            let (partition, landed) = self.destination(event);
            if landed {
                already_there += 1;
            } else {
                sending.push((partition, event));
            }
        }
        if sending.is_empty() && next - self.saved < SKIPPED_CHECKPOINT_EVERY {
            self.progress.send_modify(|p| p.already_there += already_there);
            return Ok(());
        }
        if !sending.is_empty() {
            self.produce(&sending).await?;
        }
        let checkpoint = self.checkpoint_at(next);
        self.checkpoint.save(&checkpoint).await?;
        self.saved = next;
        self.progress.send_modify(|p| {
            p.next_position = next;
            p.published += sending.len() as u64;
            p.already_there += already_there;
            p.batches += u64::from(!sending.is_empty());
        });
        Ok(())
    }

    /// The partition `event` goes to, and whether it is there already.
    /// Events a previous run may have sent go where that run sent them.
    fn destination(&self, event: &Event) -> (i32, bool) {
        let key = event.stream.as_bytes();
        if self.landed.last().is_some_and(|last| event.position.0 <= last) {
            let partition = quipu_types::topic::partition_of(key, self.landed_partitions);
            (partition, self.landed.contains(partition, event.position.0))
        } else {
            (quipu_types::topic::partition_of(key, self.partitions), false)
        }
    }

    /// The checkpoint after every selected event before `next`.
    fn checkpoint_at(&self, next: u64) -> Checkpoint {
        // Until the run is past what a previous run left, a new crash
        // must judge those events by the partitions they went to.
        let partitions =
            if self.landed.last().is_some_and(|last| next <= last) { self.landed_partitions } else { self.partitions };
        Checkpoint { topic: self.settings.topic.clone(), next_position: next, partitions }
    }

    /// Sends `records` (partition, event) and waits until the broker has
    /// them all (committed, in exactly-once mode).
    async fn produce(&self, records: &[(i32, &Event)]) -> Result<(), Error> {
        let exactly_once = self.settings.delivery == Delivery::ExactlyOnce;
        if exactly_once {
            self.producer.begin_transaction()?;
        }
        let mut deliveries = Vec::with_capacity(records.len());
        for &(partition, event) in records {
            deliveries.push(self.send(partition, event).await?);
        }
        for delivery in deliveries {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((error, _))) => return Err(error.into()),
                Err(_) => return Err(KafkaError::Canceled.into()),
            }
        }
        if exactly_once {
            let producer = self.producer.clone();
            let timeout = self.settings.timeout;
            tokio::task::spawn_blocking(move || producer.commit_transaction(timeout)).await??;
        }
        Ok(())
    }

    /// Queues one record, waiting while the producer's queue is full.
    async fn send(&self, partition: i32, event: &Event) -> Result<DeliveryFuture, Error> {
        let timestamp = i64::try_from(event.recorded_at_us / 1_000).unwrap_or(i64::MAX);
        let mut record = FutureRecord::to(&self.settings.topic)
            .key(event.stream.as_str())
            .payload(event.data.as_slice())
            .partition(partition)
            .timestamp(timestamp)
            .headers(record::headers(event, &self.settings.name));
        loop {
            match self.producer.send_result(record) {
                Ok(delivery) => return Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((error, _)) => return Err(error.into()),
            }
        }
    }
}

/// Times a starting publisher reads and claims its checkpoint before it
/// gives up to another run of the same name that keeps moving it.
const CLAIM_ATTEMPTS: u32 = 5;

/// Creates the producer (and, in exactly-once mode, takes over the
/// transactional id, aborting what a crashed run left open), reads the
/// topic's partitions and what already landed. Blocks the thread.
fn connect(settings: &Settings) -> Result<(FutureProducer, i32, Landed), Error> {
    let base = settings.client_config();
    let mut config = base.clone();
    config.set("acks", "all").set("linger.ms", "5");
    for (key, value) in settings.delivery.producer_properties(&settings.transactional_id()) {
        config.set(key, value);
    }
    let producer: FutureProducer = config.create()?;
    let partitions = partition_count(producer.client(), &settings.brokers, &settings.topic, settings.timeout)?;
    if settings.delivery == Delivery::ExactlyOnce {
        producer.init_transactions(settings.timeout)?;
    }
    let landed =
        Landed::read(&base, &settings.topic, &settings.name, settings.delivery.isolation_level(), settings.timeout)?;
    Ok((producer, partitions, landed))
}

/// Partitions of `topic`, from the broker's metadata. Blocks the thread.
///
/// # Errors
/// [`Error::UnknownTopic`] when the broker does not have the topic,
/// [`Error::Kafka`] when it cannot be asked.
pub(crate) fn partition_count<C: ClientContext>(
    client: &rdkafka::client::Client<C>,
    brokers: &str,
    topic: &str,
    timeout: Duration,
) -> Result<i32, Error> {
    let metadata = client.fetch_metadata(Some(topic), timeout)?;
    let found = metadata.topics().iter().find(|t| t.name() == topic);
    match found {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
            Ok(i32::try_from(t.partitions().len()).unwrap_or(i32::MAX))
        }
        _ => Err(Error::UnknownTopic { topic: topic.to_string(), brokers: brokers.to_string() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_one_by_one() {
        let good = Settings::new("shipping", "127.0.0.1:9092", "integration");
        good.validate().expect("valid");
        let refused = |change: fn(&mut Settings), needle: &str| {
            let mut settings = good.clone();
            change(&mut settings);
            let error = settings.validate().expect_err("invalid").to_string();
            assert!(error.contains(needle), "{error:?} should mention {needle:?}");
        };
        refused(|s| s.name = String::new(), "publisher name");
        refused(|s| s.name = "a b".into(), "publisher name \"a b\"");
        refused(|s| s.name = "x".repeat(101), "1 to 100");
        refused(|s| s.brokers = " ".into(), "no brokers");
        refused(|s| s.topic = "bad topic".into(), "topic");
        refused(|s| s.batch_max = 0, "batch size");
    }
}
