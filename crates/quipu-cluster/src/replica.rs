//! This node as one replica of a cluster: it produces the appends it takes
//! to the shared topic as proposals, and applies every partition of the
//! topic, in the merged order, to its own store (see `docs/cluster.md`).
//!
//! An append is answered when this node's own apply reaches its proposal:
//! written, conflict or already written, exactly as every other node
//! decides it. The applier runs on a thread of its own: it polls the
//! topic, puts records in order ([`Merger`]) and hands each proposal to
//! the store ([`Store::submit_applied`]) in that order, so the store's
//! sequencer decides them in that order too. On start it resumes after the
//! store's last applied record ([`Store::last_source`]); it reads the
//! topic from its first offsets to rebuild the partitions' epochs, and
//! drops what was applied before.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use quipu_core::{AppendOutcome, AppendRequest, Applied, Store};
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{Notify, oneshot};

use crate::merger::{Entry, LaneStart, MergeKey, Merger};
use crate::partitioner::{PartitionError, PartitionKey, Partitioner};
use crate::proposal::{DecodeError, EncodeError, Proposal, Record, RequestId, Tick};
use crate::topic_settings::{TopicSettings, TopicSettingsError};

/// How long a metadata request may take on start.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the applier waits for records before it looks at its stop flag.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How long records may wait in the merge before this node ticks for them
/// although they are not its own (their node may have died before its
/// ticks).
const HELD_TICK_AFTER: Duration = Duration::from_millis(200);

/// Where the cluster is and who this node is.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// Kafka bootstrap servers, `host:port[,host:port]`.
    pub brokers: String,
    /// The topic every node of the cluster shares.
    pub topic: String,
    /// This node's name (in its proposals, for diagnostics).
    pub node: String,
    /// Which part of a stream's name picks its partition.
    pub partition_key: PartitionKey,
    /// How long a produce may take before the append fails.
    pub produce_timeout: Duration,
}

/// Why a replica could not start or take an append.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The Kafka client failed.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// The topic does not exist or has no partitions.
    #[error("topic {topic} was not found on {brokers} (create it first: see docs/cluster.md)")]
    NoTopic {
        /// The topic.
        topic: String,
        /// Where it was looked for.
        brokers: String,
    },
    /// The topic is configured so that it could lose events.
    #[error(transparent)]
    Topic(#[from] TopicSettingsError),
    /// The append cannot be one proposal.
    #[error(transparent)]
    Partition(#[from] PartitionError),
    /// The append does not fit a proposal's record.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The store refused the append or failed.
    #[error(transparent)]
    Store(#[from] quipu_core::Error),
    /// The applier stopped: this node no longer follows the topic.
    #[error("this node stopped applying the cluster topic: {reason}")]
    Stopped {
        /// Why.
        reason: String,
    },
}

/// How far the applier has read each partition, for proposers that must
/// know their proposal's epoch before they tick.
struct Consumed {
    /// Per partition, the last offset read (-1: none yet).
    offsets: Vec<AtomicI64>,
    /// Woken after every record read.
    read: Notify,
}

impl Consumed {
    fn new(partitions: u32) -> Consumed {
        Consumed { offsets: (0..partitions).map(|_| AtomicI64::new(-1)).collect(), read: Notify::new() }
    }

    /// Waits until `offset` of `partition` has been read (or the applier
    /// stopped: `stopped` says so).
    async fn reached(&self, partition: u32, offset: i64, stopped: &AtomicBool) {
        let Some(read) = self.offsets.get(partition as usize) else { return };
        loop {
            let woken = self.read.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if read.load(Ordering::Acquire) >= offset || stopped.load(Ordering::Acquire) {
                return;
            }
            woken.await;
        }
    }
}

/// Proposals of this node waiting for a tick: per partition, the highest
/// offset that must be read back before the next round of ticks.
struct TicksDue {
    offsets: Mutex<Vec<i64>>,
    due: Notify,
}

impl TicksDue {
    fn new(partitions: u32) -> TicksDue {
        TicksDue { offsets: Mutex::new(vec![-1; partitions as usize]), due: Notify::new() }
    }

    /// Asks for a round of ticks once `offset` of `partition` is read.
    fn want(&self, partition: u32, offset: i64) {
        if let Some(wanted) = self.offsets.lock().unwrap_or_else(PoisonError::into_inner).get_mut(partition as usize) {
            *wanted = (*wanted).max(offset);
        }
        self.due.notify_one();
    }

    /// What is wanted now, cleared.
    fn take(&self) -> Vec<i64> {
        let mut offsets = self.offsets.lock().unwrap_or_else(PoisonError::into_inner);
        let taken = offsets.clone();
        offsets.iter_mut().for_each(|o| *o = -1);
        taken
    }
}

/// Answers this node waits for, by proposal.
type Waiters = Arc<Mutex<HashMap<RequestId, oneshot::Sender<Result<AppendOutcome, quipu_core::Error>>>>>;

/// This node's part in a cluster.
pub struct Replica {
    config: ReplicaConfig,
    producer: FutureProducer,
    partitioner: Partitioner,
    partitions: u32,
    waiting: Waiters,
    /// The newest epoch any partition has reached, as read here.
    newest_epoch: Arc<AtomicU64>,
    consumed: Arc<Consumed>,
    ticks: Arc<TicksDue>,
    /// Records waiting in the merge, as the applier last counted.
    held: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    /// Why the applier stopped, once it has.
    failure: Arc<Mutex<Option<String>>>,
    applier: Option<JoinHandle<()>>,
}

impl Replica {
    /// Joins the cluster of `config.topic` with `store`, which from now on
    /// takes appends only through this replica. The topic must exist and
    /// keep every record (see [`TopicSettings::check`]).
    ///
    /// # Errors
    /// [`ClusterError::NoTopic`]; [`ClusterError::Topic`] naming every
    /// setting of the topic that could lose events; Kafka client errors;
    /// the store's errors reading its last applied record.
    pub async fn start(store: Arc<Store>, config: ReplicaConfig) -> Result<Replica, ClusterError> {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // The topic is made on purpose (docs/cluster.md), never by a
            // node asking for it with the broker's defaults.
            .set("allow.auto.create.topics", "false")
            .set("message.timeout.ms", config.produce_timeout.as_millis().to_string())
            .set("linger.ms", "0")
            .create()?;
        let metadata = {
            // A blocking request: off the async workers.
            let (producer, topic) = (producer.clone(), config.topic.clone());
            tokio::task::spawn_blocking(move || producer.client().fetch_metadata(Some(&topic), METADATA_TIMEOUT))
                .await
                .map_err(|e| ClusterError::Stopped { reason: format!("reading the topic's metadata: {e}") })??
        };
        let topic = metadata.topics().iter().find(|t| t.name() == config.topic && t.error().is_none());
        let partitions = u32::try_from(topic.map_or(0, |t| t.partitions().len())).unwrap_or(0);
        if partitions == 0 {
            return Err(ClusterError::NoTopic { topic: config.topic.clone(), brokers: config.brokers.clone() });
        }
        let replicas = topic.and_then(|t| t.partitions().first()).map_or(0, |p| p.replicas().len());
        let settings = read_settings(&config, u32::try_from(replicas).unwrap_or(u32::MAX)).await?;
        settings.check(u64::try_from(store.options().record_bytes_bound()).unwrap_or(u64::MAX))?;
        let consumer = assigned_consumer(&config, partitions)?;
        let lanes = vec![LaneStart { offset: 0, epoch: 0 }; partitions as usize];
        let applied_through = store.last_source()?;
        let mut replica = Replica {
            partitioner: Partitioner::new(config.partition_key.clone(), partitions),
            config,
            producer,
            partitions,
            waiting: Arc::default(),
            newest_epoch: Arc::default(),
            consumed: Arc::new(Consumed::new(partitions)),
            ticks: Arc::new(TicksDue::new(partitions)),
            held: Arc::default(),
            stop: Arc::default(),
            failure: Arc::default(),
            applier: None,
        };
        let applier = Applier {
            consumer,
            merger: Merger::resume(&lanes, applied_through),
            store,
            waiting: Arc::clone(&replica.waiting),
            newest_epoch: Arc::clone(&replica.newest_epoch),
            consumed: Arc::clone(&replica.consumed),
            held: Arc::clone(&replica.held),
            stop: Arc::clone(&replica.stop),
            failure: Arc::clone(&replica.failure),
        };
        let thread = std::thread::Builder::new()
            .name("quipu-cluster-applier".into())
            .spawn(move || applier.run())
            .map_err(|e| ClusterError::Stopped { reason: format!("starting the applier thread: {e}") })?;
        replica.applier = Some(thread);
        if partitions > 1 {
            tokio::spawn(Ticker::of(&replica).run());
        }
        Ok(replica)
    }

    /// How many partitions the topic has.
    #[must_use]
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// Proposes `request` to the cluster and answers with its decision,
    /// once this node has applied it (so a read here right after sees it).
    ///
    /// # Errors
    /// [`ClusterError::Partition`] for streams of several partitions (nothing
    /// is produced); the store's validation errors; Kafka errors producing
    /// (the outcome is then unknown: resend with the same event ids, which
    /// the cluster recognises as a retry); [`ClusterError::Stopped`].
    pub async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, ClusterError> {
        self.check_running()?;
        let partition = self.partitioner.partition_of_request(&request)?;
        let key = request.writes.first().map(|w| self.partitioner.key_of(&w.stream).to_owned()).unwrap_or_default();
        let request_id = RequestId::random();
        let record = Record::Proposal(Proposal { request_id, node: self.config.node.clone(), request }).encode()?;
        let (sender, answer) = oneshot::channel();
        self.lock_waiting().insert(request_id, sender);
        let offset = match self.produce(partition, Some(&key), &record).await {
            Ok(offset) => offset,
            Err(error) => {
                self.lock_waiting().remove(&request_id);
                return Err(error);
            }
        };
        if self.partitions > 1 {
            // A tick past the proposal's epoch lets it out of the merge; the
            // ticker sends one round for every proposal waiting.
            self.ticks.want(partition, offset);
        }
        match answer.await {
            Ok(outcome) => Ok(outcome?),
            Err(_) => Err(self.stopped()),
        }
    }

    /// Produces `payload` to `partition`; gives the offset it landed at.
    async fn produce(&self, partition: u32, key: Option<&str>, payload: &[u8]) -> Result<i64, ClusterError> {
        let partition = i32::try_from(partition).unwrap_or(i32::MAX);
        let mut record = FutureRecord::<str, [u8]>::to(&self.config.topic).partition(partition).payload(payload);
        if let Some(key) = key {
            record = record.key(key);
        }
        let delivery = self
            .producer
            .send(record, self.config.produce_timeout)
            .await
            .map_err(|(error, _)| ClusterError::Kafka(error))?;
        Ok(delivery.offset)
    }

    fn check_running(&self) -> Result<(), ClusterError> {
        match self.failure.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
            Some(reason) => Err(ClusterError::Stopped { reason: reason.clone() }),
            None => Ok(()),
        }
    }

    fn stopped(&self) -> ClusterError {
        let reason = self.failure.lock().unwrap_or_else(PoisonError::into_inner).clone();
        ClusterError::Stopped { reason: reason.unwrap_or_else(|| "the replica closed".into()) }
    }

    fn lock_waiting(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<RequestId, oneshot::Sender<Result<AppendOutcome, quipu_core::Error>>>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops applying the topic and waits for the applier to finish (what
    /// it handed to the store is still committed).
    pub fn close(mut self) {
        self.stop_applier();
    }

    fn stop_applier(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.consumed.read.notify_waiters();
        self.ticks.due.notify_one();
        if let Some(thread) = self.applier.take()
            && thread.join().is_err()
        {
            tracing::error!("the cluster applier panicked");
        }
        // Appends still waiting will not be applied here: they get `Stopped`.
        self.lock_waiting().clear();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.stop_applier();
    }
}

/// Sends rounds of ticks for this node's proposals: once each proposal
/// waiting is read back here (so its epoch is known), one tick one past the
/// newest epoch to every partition, at once. Appends that come meanwhile
/// share the next round. When records have waited in the merge for
/// [`HELD_TICK_AFTER`] with none of this node's own waiting, it ticks for
/// them too: their node may have died between its produce and its ticks.
struct Ticker {
    producer: FutureProducer,
    topic: String,
    partitions: u32,
    newest_epoch: Arc<AtomicU64>,
    consumed: Arc<Consumed>,
    ticks: Arc<TicksDue>,
    held: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Ticker {
    fn of(replica: &Replica) -> Ticker {
        Ticker {
            producer: replica.producer.clone(),
            topic: replica.config.topic.clone(),
            partitions: replica.partitions,
            newest_epoch: Arc::clone(&replica.newest_epoch),
            consumed: Arc::clone(&replica.consumed),
            ticks: Arc::clone(&replica.ticks),
            held: Arc::clone(&replica.held),
            stop: Arc::clone(&replica.stop),
        }
    }

    async fn run(self) {
        while !self.stop.load(Ordering::Acquire) {
            let wanted = self.ticks.take();
            if wanted.iter().all(|o| *o < 0) {
                let due = tokio::time::timeout(HELD_TICK_AFTER, self.ticks.due.notified()).await;
                if due.is_err() && self.held.load(Ordering::Acquire) > 0 {
                    // Nothing of ours waits, but records do: tick for them.
                    if let Err(error) = self.tick().await {
                        tracing::warn!(%error, "ticking for records held in the merge");
                    }
                }
                continue;
            }
            for (partition, offset) in (0u32..).zip(&wanted) {
                if *offset >= 0 {
                    self.consumed.reached(partition, *offset, &self.stop).await;
                }
            }
            if let Err(error) = self.tick().await {
                tracing::warn!(%error, "ticking the cluster topic; trying again");
                for (partition, offset) in (0u32..).zip(&wanted) {
                    self.ticks.want(partition, *offset);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// One tick one past the newest epoch read to every partition, sent
    /// together.
    async fn tick(&self) -> Result<(), KafkaError> {
        let tick = Tick { epoch: self.newest_epoch.load(Ordering::Acquire) + 1 }.encode();
        let mut sends = tokio::task::JoinSet::new();
        for partition in 0..self.partitions {
            let record = FutureRecord::<str, [u8]>::to(&self.topic)
                .partition(i32::try_from(partition).unwrap_or(i32::MAX))
                .payload(&tick);
            // Queued at once; the deliveries are awaited together below.
            let delivery = self.producer.send_result(record).map_err(|(error, _)| error)?;
            sends.spawn(delivery);
        }
        while let Some(sent) = sends.join_next().await {
            match sent {
                Ok(Ok(Ok(_))) => {}
                Ok(Ok(Err((error, _)))) => return Err(error),
                Ok(Err(_)) | Err(_) => return Err(KafkaError::Canceled),
            }
        }
        Ok(())
    }
}

/// What the broker says of the topic's configuration.
async fn read_settings(config: &ReplicaConfig, replication_factor: u32) -> Result<TopicSettings, ClusterError> {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &config.brokers).create()?;
    let options = AdminOptions::new().request_timeout(Some(METADATA_TIMEOUT));
    let results = admin.describe_configs([&ResourceSpecifier::Topic(&config.topic)], &options).await?;
    let mut configs = std::collections::BTreeMap::new();
    for result in results {
        let resource = result.map_err(|code| ClusterError::Kafka(KafkaError::AdminOp(code)))?;
        configs.extend(resource.entries.into_iter().filter_map(|e| Some((e.name, e.value?))));
    }
    Ok(TopicSettings { topic: config.topic.clone(), configs, replication_factor })
}

/// A consumer of every partition of the topic from its first offset.
fn assigned_consumer(config: &ReplicaConfig, partitions: u32) -> Result<BaseConsumer, KafkaError> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .set("group.id", format!("quipu-replica-{}", config.node))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "5")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment.add_partition_offset(
            &config.topic,
            i32::try_from(partition).unwrap_or(i32::MAX),
            Offset::Beginning,
        )?;
    }
    consumer.assign(&assignment)?;
    Ok(consumer)
}

/// The thread that applies the topic to the store.
struct Applier {
    consumer: BaseConsumer,
    merger: Merger<(Proposal, u64)>,
    store: Arc<Store>,
    waiting: Waiters,
    newest_epoch: Arc<AtomicU64>,
    consumed: Arc<Consumed>,
    held: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    failure: Arc<Mutex<Option<String>>>,
}

impl Applier {
    fn run(mut self) {
        if let Err(reason) = self.follow() {
            tracing::error!(%reason, "the cluster applier stopped");
            *self.failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(reason);
            self.stop.store(true, Ordering::Release);
            self.consumed.read.notify_waiters();
            // Appends still waiting get `Stopped` when their senders drop.
            self.waiting.lock().unwrap_or_else(PoisonError::into_inner).clear();
        }
    }

    /// Applies records until told to stop; an error stops applying for
    /// good (the node must not decide past what it cannot read).
    fn follow(&mut self) -> Result<(), String> {
        while !self.stop.load(Ordering::Acquire) {
            let message = match self.consumer.poll(POLL_INTERVAL) {
                None => continue,
                Some(Err(error)) => {
                    tracing::warn!(%error, "reading the cluster topic");
                    continue;
                }
                Some(Ok(message)) => message,
            };
            let partition = u32::try_from(message.partition()).map_err(|_| "a negative partition".to_owned())?;
            let offset = message.offset();
            let recorded_at_us =
                message.timestamp().to_millis().and_then(|ms| u64::try_from(ms).ok()).unwrap_or(0) * 1000;
            let entry = match Record::decode(message.payload().unwrap_or_default()) {
                Ok(Record::Tick(tick)) => {
                    self.newest_epoch.fetch_max(tick.epoch, Ordering::AcqRel);
                    Some(Entry::Tick(tick.epoch))
                }
                Ok(Record::Proposal(proposal)) => Some(Entry::Data((proposal, recorded_at_us))),
                Err(DecodeError::Malformed { reason }) => {
                    // Every node skips it alike: it is refused, never applied.
                    tracing::warn!(partition, offset, %reason, "skipping a malformed cluster record");
                    None
                }
                Err(error) => return Err(format!("partition {partition} offset {offset}: {error}")),
            };
            if let Some(entry) = entry {
                self.merger.push(partition, offset, entry).map_err(|e| e.to_string())?;
            }
            if let Some(read) = self.consumed.offsets.get(partition as usize) {
                read.store(offset, Ordering::Release);
            }
            self.consumed.read.notify_waiters();
            while let Some((key, (proposal, recorded_at_us))) = self.merger.pop() {
                self.apply(key, proposal, recorded_at_us);
            }
            self.held.store(u64::try_from(self.merger.held()).unwrap_or(u64::MAX), Ordering::Release);
        }
        Ok(())
    }

    /// Hands `proposal` to the store; its answer goes to the append that
    /// waits for it here, if any.
    fn apply(&self, key: MergeKey, proposal: Proposal, recorded_at_us: u64) {
        let applied = Applied { recorded_at_us, source: key };
        let waiting = Arc::clone(&self.waiting);
        let request_id = proposal.request_id;
        self.store.submit_applied(proposal.request, applied, move |outcome| {
            let waiter = waiting.lock().unwrap_or_else(PoisonError::into_inner).remove(&request_id);
            if let Some(waiter) = waiter {
                let _ = waiter.send(outcome);
            }
        });
    }
}
