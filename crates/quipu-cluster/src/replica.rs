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
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use quipu_core::{AppendOutcome, AppendRequest, Applied, Proposer, Reply, Store, SyncReply};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{Notify, oneshot};

use crate::cluster_mode::ClusterMode;
use crate::fenced_writer::{FencedCounts, Writers};
use crate::merge_state::{MergeState, MergeStateError};
use crate::merger::{Entry, LaneStart, MergeError, MergeKey, Merger};
use crate::partitioner::{PartitionError, PartitionKey, Partitioner};
use crate::proposal::{DecodeError, EncodeError, Proposal, Record, RequestId, Tick};
use crate::topic_settings::{TopicSettings, TopicSettingsError};

/// How long a metadata request may take on start.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// The first pause before a proposal found missing from the log is
/// produced again; it doubles up to [`PRODUCE_BACKOFF_MAX`].
const PRODUCE_BACKOFF_MIN: Duration = Duration::from_millis(20);
/// The longest pause between produces of one proposal.
const PRODUCE_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How often the merge's state is saved (see [`MergeState`]).
const SAVE_EVERY: Duration = Duration::from_secs(1);
/// How long a closing applier waits for the store to decide what it
/// handed over before it saves the merge state.
const FINISH_WAIT: Duration = Duration::from_secs(5);
/// How long the applier waits for records before it looks at its stop flag.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How often the applier counts as read what its consumer passed without
/// a record (see `Applier::note_positions`).
const POSITIONS_EVERY: Duration = Duration::from_millis(20);
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
    /// How long one produce may take before its outcome is looked up in
    /// the log.
    pub produce_timeout: Duration,
    /// How long an append may take in all (produces again after unknown
    /// outcomes included) before it is answered
    /// [`ClusterError::OutcomeUnknown`].
    pub append_timeout: Duration,
    /// How appends reach the topic; every node of a topic runs the same.
    pub mode: ClusterMode,
    /// Whether [`Replica::start`] reads the topic's configuration and
    /// refuses settings that could lose events ([`TopicSettings::check`]).
    /// `quipu serve` always checks; only a broker that cannot describe a
    /// topic's configuration, such as librdkafka's mock cluster in tests,
    /// is run with `false`.
    pub check_topic_settings: bool,
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
    /// This data directory cannot follow the topic as it is now: it
    /// applied another topic, or the topic lost records this node has not
    /// applied, or its partitions changed.
    #[error("this node cannot follow topic {topic}: {reason}")]
    CannotFollow {
        /// The topic.
        topic: String,
        /// Why.
        reason: String,
    },
    /// The saved merge state could not be read.
    #[error(transparent)]
    State(#[from] MergeStateError),
    /// The append cannot be one proposal.
    #[error(transparent)]
    Partition(#[from] PartitionError),
    /// The append does not fit a proposal's record.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The store refused the append or failed.
    #[error(transparent)]
    Store(#[from] quipu_core::Error),
    /// Whether the topic took the append could not be learned before the
    /// append's deadline: sending it again with the same event ids is safe.
    #[error("the append's outcome is unknown: {reason}")]
    OutcomeUnknown {
        /// The last failure.
        reason: String,
    },
    /// The applier stopped: this node no longer follows the topic.
    #[error("this node stopped applying the cluster topic: {reason}")]
    Stopped {
        /// Why.
        reason: String,
    },
}

impl ClusterError {
    /// The store's error for an append that met this (what the doors
    /// answer): a refusal of the input stays one, an unknown outcome says
    /// so, everything else is the cluster being unavailable.
    #[must_use]
    pub fn into_store_error(self) -> quipu_core::Error {
        match self {
            ClusterError::Store(error) => error,
            ClusterError::Partition(error) => quipu_core::Error::CrossPartition { reason: error.to_string() },
            ClusterError::OutcomeUnknown { reason } => quipu_core::Error::OutcomeUnknown { reason },
            other => quipu_core::Error::ClusterUnavailable { reason: other.to_string() },
        }
    }
}

/// How far the applier has read each partition, for proposers that must
/// know their proposal's epoch before they tick.
struct Consumed {
    /// Per partition, the last offset read (one before the resume offset
    /// until a record is read).
    offsets: Vec<AtomicI64>,
    /// Per partition, the last offset through which every record read has
    /// been handed to the store (none still waits in the merge).
    released: Vec<AtomicI64>,
    /// Woken whenever either moves.
    read: Notify,
}

impl Consumed {
    /// Nothing read yet, each partition resuming from its lane.
    fn new(lanes: &[LaneStart]) -> Consumed {
        let before = || lanes.iter().map(|lane| AtomicI64::new(lane.offset - 1)).collect();
        Consumed { offsets: before(), released: before(), read: Notify::new() }
    }

    /// Counts `offset` of `partition` read (and every one before it), and
    /// wakes whoever waits.
    fn note(&self, partition: u32, offset: i64) {
        Self::advance(&self.offsets, partition, offset, &self.read);
    }

    /// Counts every record of `partition` through `offset` handed to the
    /// store, and wakes whoever waits.
    fn release(&self, partition: u32, offset: i64) {
        Self::advance(&self.released, partition, offset, &self.read);
    }

    fn advance(counters: &[AtomicI64], partition: u32, offset: i64, moved: &Notify) {
        if let Some(counter) = counters.get(partition as usize)
            && counter.fetch_max(offset, Ordering::AcqRel) < offset
        {
            moved.notify_waiters();
        }
    }

    /// Waits until `offset` of `partition` has been read (or the applier
    /// stopped: `stopped` says so).
    async fn reached(&self, partition: u32, offset: i64, stopped: &AtomicBool) {
        self.wait(&self.offsets, partition, offset, stopped).await;
    }

    /// Waits until every record of `partition` through `offset` has been
    /// handed to the store (or the applier stopped).
    async fn handed_on(&self, partition: u32, offset: i64, stopped: &AtomicBool) {
        self.wait(&self.released, partition, offset, stopped).await;
    }

    async fn wait(&self, counters: &[AtomicI64], partition: u32, offset: i64, stopped: &AtomicBool) {
        let Some(read) = counters.get(partition as usize) else { return };
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

/// This node's idempotent producer, made anew when it fails for good. An
/// idempotent producer stops for good ("fatal") when the broker lost its
/// state (a broker restarted without it, a producer id expired); a new one
/// starts a new producer id. What the old one had in flight is looked up
/// in the log like any produce of unknown outcome.
struct ProducerSlot {
    config: ClientConfig,
    /// The producer and how many times it was made anew.
    current: Mutex<(FutureProducer, u64)>,
}

impl ProducerSlot {
    fn new(config: &ReplicaConfig) -> Result<ProducerSlot, KafkaError> {
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &config.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // The topic is made on purpose (docs/cluster.md), never by a
            // node asking for it with the broker's defaults.
            .set("allow.auto.create.topics", "false")
            .set("message.timeout.ms", config.produce_timeout.as_millis().to_string())
            .set("linger.ms", "0");
        let producer = client.create()?;
        Ok(ProducerSlot { config: client, current: Mutex::new((producer, 0)) })
    }

    /// The producer now, and its generation.
    fn get(&self) -> (FutureProducer, u64) {
        self.current.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// After `error` from the producer of `generation`: makes a new one
    /// when that one has failed for good (once, however many saw it fail).
    fn renew_if_fatal(&self, generation: u64, error: &KafkaError) {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if current.1 != generation {
            return;
        }
        let Some(fatal) = current.0.client().fatal_error() else { return };
        match self.config.create::<FutureProducer>() {
            Ok(producer) => {
                tracing::warn!(%error, reason = ?fatal, "the cluster producer failed for good; a new one takes over");
                *current = (producer, generation + 1);
            }
            Err(failed) => tracing::error!(%failed, "making a new cluster producer"),
        }
    }

    /// Sends `record`, making a new producer when this one failed for good.
    async fn send(&self, record: FutureRecord<'_, str, [u8]>, timeout: Duration) -> Result<i64, KafkaError> {
        let (producer, generation) = self.get();
        match producer.send(record, timeout).await {
            Ok(delivery) => Ok(delivery.offset),
            Err((error, _)) => {
                self.renew_if_fatal(generation, &error);
                Err(error)
            }
        }
    }
}

/// An append of this node waiting for its proposal's decision.
struct Waiter {
    /// Where the decision goes.
    reply: oneshot::Sender<Result<AppendOutcome, quipu_core::Error>>,
    /// Whether the applier has read a copy of the proposal from the topic
    /// (so a produce whose outcome was unknown did reach the log).
    seen: bool,
}

/// Answers this node waits for, by proposal.
type Waiters = Arc<Mutex<HashMap<RequestId, Waiter>>>;

fn lock(waiting: &Waiters) -> std::sync::MutexGuard<'_, HashMap<RequestId, Waiter>> {
    waiting.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Removes a waiter when its append is dropped before the answer (the
/// client went away): the proposal is still decided, nobody is told.
struct Forget<'a> {
    waiting: &'a Waiters,
    request_id: RequestId,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        lock(self.waiting).remove(&self.request_id);
    }
}

/// How many proposals the applier handed to the store, and how many the
/// store has decided.
#[derive(Default)]
struct Applies {
    handed: AtomicU64,
    decided: AtomicU64,
}

/// This node's part in a cluster: a cheap handle, shared with the store it
/// proposes for (see [`Replica::start`]).
#[derive(Clone)]
pub struct Replica {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: ReplicaConfig,
    /// The store this node applies to (it holds this replica).
    pub(crate) store: Weak<Store>,
    /// The partitions this node writes in the fenced-writer mode.
    writers: Writers,
    /// Partitions claimed as their fenced writer, and transactions that
    /// failed (fenced, or their outcome unknown), since the start.
    pub(crate) fenced: FencedCounts,
    producer: Arc<ProducerSlot>,
    partitioner: Partitioner,
    partitions: u32,
    /// The runtime proposals are sent from.
    pub(crate) runtime: tokio::runtime::Handle,
    waiting: Waiters,
    /// The newest epoch any partition has reached, as read here.
    newest_epoch: Arc<AtomicU64>,
    consumed: Arc<Consumed>,
    ticks: Arc<TicksDue>,
    applies: Arc<Applies>,
    /// Records waiting in the merge, as the applier last counted.
    held: Arc<AtomicU64>,
    /// Produces whose outcome was unknown and looked up in the log.
    looked_up: AtomicU64,
    stop: Arc<AtomicBool>,
    /// Why the applier stopped, once it has.
    failure: Arc<Mutex<Option<String>>>,
    applier: Mutex<Option<JoinHandle<Option<Unsaved>>>>,
}

impl Replica {
    /// Joins the cluster of `config.topic` with `store`: from now on every
    /// append the store takes ([`Store::submit`] and the like, so every
    /// service and door over it) is proposed to the topic and decided as
    /// this node applies it ([`Store::propose_through`]). The topic must
    /// exist and keep every record (see [`TopicSettings::check`]). Closing
    /// the store closes the replica. Must be called within a Tokio
    /// runtime, which then carries the proposals.
    ///
    /// # Errors
    /// [`ClusterError::NoTopic`]; [`ClusterError::Topic`] naming every
    /// setting of the topic that could lose events; Kafka client errors;
    /// the store's errors reading its last applied record, or refusing a
    /// second proposer.
    pub async fn start(store: Arc<Store>, config: ReplicaConfig) -> Result<Replica, ClusterError> {
        let slot = Arc::new(ProducerSlot::new(&config)?);
        let (producer, _) = slot.get();
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
        if config.check_topic_settings {
            let settings = read_settings(&config, u32::try_from(replicas).unwrap_or(u32::MAX)).await?;
            settings.check(u64::try_from(store.options().record_bytes_bound()).unwrap_or(u64::MAX))?;
        }
        let applied_through = store.last_source()?;
        let asked = tokio::time::timeout(METADATA_TIMEOUT, crate::topic_id::topic_id(&config.brokers, &config.topic));
        let topic_id = match asked.await {
            Ok(Ok(id)) => id,
            Ok(Err(error)) => {
                tracing::warn!(%error, "the topic's id is unknown; a topic deleted and created again is caught by its offsets only");
                None
            }
            Err(_) => {
                tracing::warn!(
                    "the brokers did not tell the topic's id in time; a topic deleted and created again is caught by its offsets only"
                );
                None
            }
        };
        let (lanes, topic_id) = resume_lanes(&store, &config.topic, topic_id, partitions, applied_through)?;
        check_offsets(&producer, &config.topic, &lanes, applied_through).await?;
        let consumer = assigned_consumer(&config, &lanes)?;
        let inner = Arc::new(Inner {
            partitioner: Partitioner::new(config.partition_key.clone(), partitions),
            config,
            store: Arc::downgrade(&store),
            writers: Writers::default(),
            fenced: FencedCounts::default(),
            producer: slot,
            partitions,
            runtime: tokio::runtime::Handle::current(),
            waiting: Arc::default(),
            newest_epoch: Arc::new(AtomicU64::new(lanes.iter().map(|l| l.epoch).max().unwrap_or(0))),
            consumed: Arc::new(Consumed::new(&lanes)),
            ticks: Arc::new(TicksDue::new(partitions)),
            applies: Arc::default(),
            held: Arc::default(),
            looked_up: AtomicU64::new(0),
            stop: Arc::default(),
            failure: Arc::default(),
            applier: Mutex::new(None),
        });
        let replica = Replica { inner };
        store.propose_through(Arc::new(replica.clone()))?;
        let applier = Applier {
            consumer,
            merger: Merger::resume(&lanes, applied_through),
            saving: Saving::new(store.dir(), &replica.inner.config.topic, topic_id),
            // Not a strong reference: the store holds this replica, and
            // closing the store closes it.
            store: Arc::downgrade(&store),
            waiting: Arc::clone(&replica.inner.waiting),
            newest_epoch: Arc::clone(&replica.inner.newest_epoch),
            consumed: Arc::clone(&replica.inner.consumed),
            applies: Arc::clone(&replica.inner.applies),
            held: Arc::clone(&replica.inner.held),
            stop: Arc::clone(&replica.inner.stop),
            failure: Arc::clone(&replica.inner.failure),
            positions_noted: std::time::Instant::now(),
        };
        let thread = std::thread::Builder::new()
            .name("quipu-cluster-applier".into())
            .spawn(move || applier.run())
            .map_err(|e| {
                // The store already proposes here: its appends must fail, not wait.
                let reason = format!("starting the applier thread: {e}");
                *replica.inner.failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(reason.clone());
                ClusterError::Stopped { reason }
            })?;
        *replica.inner.applier.lock().unwrap_or_else(PoisonError::into_inner) = Some(thread);
        if partitions > 1 {
            tokio::spawn(Ticker::of(&replica.inner).run());
        }
        Ok(replica)
    }

    /// How many partitions the topic has.
    #[must_use]
    pub fn partitions(&self) -> u32 {
        self.inner.partitions
    }

    /// Why this node stopped applying the topic, once it has (it then
    /// refuses appends with [`ClusterError::Stopped`]); `None` while it
    /// follows the topic.
    #[must_use]
    pub fn failure(&self) -> Option<String> {
        self.inner.failure.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// How many produces since the start had an unknown outcome (a
    /// timeout, a lost connection) and were looked up in the log.
    #[must_use]
    pub fn looked_up(&self) -> u64 {
        self.inner.looked_up.load(Ordering::Relaxed)
    }

    /// How many times since the start this node claimed a partition as its
    /// fenced writer (fencing the writer before it; the fenced-writer
    /// mode only).
    #[must_use]
    pub fn claims(&self) -> u64 {
        self.inner.fenced.claims.load(Ordering::Relaxed)
    }

    /// How many of this node's transactions failed since the start
    /// (fenced by another writer, or their outcome unknown) and were
    /// resolved by claiming the partition again (the fenced-writer mode
    /// only).
    #[must_use]
    pub fn failed_transactions(&self) -> u64 {
        self.inner.fenced.failed.load(Ordering::Relaxed)
    }

    /// Proposes `request` to the cluster and answers with its decision,
    /// once this node has applied it (so a read here right after sees it).
    /// A produce whose outcome is unknown is resolved by reading the
    /// partition up to its end: when the proposal is there, the answer is
    /// its decision; when it is not, it is produced again (a second copy
    /// of a written proposal is decided as a retry), until
    /// [`ReplicaConfig::append_timeout`].
    ///
    /// # Errors
    /// [`ClusterError::Partition`] for streams of several partitions (nothing
    /// is produced); the store's validation errors;
    /// [`ClusterError::OutcomeUnknown`] when the topic could not be read or
    /// written before the deadline; [`ClusterError::Stopped`].
    pub async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, ClusterError> {
        self.inner.append(request).await
    }

    /// Waits until this node has read the topic up to the end offsets its
    /// partitions have now, and decided what it read (records that still
    /// wait in the merge for other partitions are ticked for). A node
    /// starting waits for this before it serves, so its registries load
    /// what the cluster wrote; a reader may wait for it to see every
    /// append acknowledged anywhere before the call.
    ///
    /// # Errors
    /// Kafka errors reading the end offsets; [`ClusterError::Stopped`].
    pub async fn caught_up(&self) -> Result<(), ClusterError> {
        self.inner.caught_up().await
    }

    /// Stops applying the topic and waits for the applier to finish (what
    /// it handed to the store is still decided); appends still waiting get
    /// [`ClusterError::Stopped`], later ones too.
    pub fn close(&self) {
        self.inner.close(None);
    }
}

impl Inner {
    /// See [`Replica::caught_up`].
    pub(crate) async fn caught_up(&self) -> Result<(), ClusterError> {
        let ends = self.end_offsets(0..self.partitions).await?;
        for (partition, end) in (0u32..).zip(&ends) {
            if *end > 0 {
                self.consumed.reached(partition, end - 1, &self.stop).await;
            }
        }
        self.check_running()?;
        if self.held.load(Ordering::Acquire) > 0 && self.partitions > 1 {
            for (partition, end) in (0u32..).zip(&ends) {
                self.ticks.want(partition, end - 1);
            }
        }
        for (partition, end) in (0u32..).zip(&ends) {
            if *end > 0 {
                self.consumed.handed_on(partition, end - 1, &self.stop).await;
            }
        }
        self.check_running()?;
        let handed = self.applies.handed.load(Ordering::Acquire);
        while self.applies.decided.load(Ordering::Acquire) < handed {
            self.check_running()?;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(())
    }
}

impl Proposer for Replica {
    fn propose(&self, request: AppendRequest, reply: Reply) {
        let inner = Arc::clone(&self.inner);
        self.inner.runtime.spawn(async move {
            reply(inner.append(request).await.map_err(ClusterError::into_store_error));
        });
    }

    fn sync(&self, reply: SyncReply) {
        let replica = self.clone();
        self.inner.runtime.spawn(async move {
            reply(replica.caught_up().await.map_err(ClusterError::into_store_error));
        });
    }

    fn failure(&self) -> Option<String> {
        Replica::failure(self).map(|reason| format!("this node stopped applying the cluster topic: {reason}"))
    }

    fn close(&self, store: &Store) {
        self.inner.close(Some(store));
    }
}

impl Inner {
    async fn append(self: &Arc<Self>, request: AppendRequest) -> Result<AppendOutcome, ClusterError> {
        self.check_running()?;
        let partition = self.partitioner.partition_of_request(&request)?;
        match self.config.mode {
            ClusterMode::LogOrder => self.append_in_log_order(partition, request).await,
            ClusterMode::FencedWriter => self.writers.append(self, partition, request).await,
        }
    }

    /// Produces `request` as a proposal to `partition` and waits for its
    /// decision here (the log-order mode).
    async fn append_in_log_order(&self, partition: u32, request: AppendRequest) -> Result<AppendOutcome, ClusterError> {
        let (request_id, key, record) = self.proposal(request)?;
        let mut answer = self.expect(request_id);
        let _forget = Forget { waiting: &self.waiting, request_id };
        let deadline = tokio::time::Instant::now() + self.config.append_timeout;
        let mut backoff = PRODUCE_BACKOFF_MIN;
        loop {
            match self.produce(partition, Some(&key), &record).await {
                Ok(offset) => {
                    self.want_ticks(partition, offset);
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, partition, "producing a proposal; reading the log for it");
                    self.looked_up.fetch_add(1, Ordering::Relaxed);
                    if self.reached_log(partition, request_id, deadline).await? {
                        break;
                    }
                    if tokio::time::Instant::now() + backoff >= deadline {
                        return Err(ClusterError::OutcomeUnknown { reason: error.to_string() });
                    }
                    // Not in the log: produce again, after a pause that
                    // grows while the topic keeps failing.
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(PRODUCE_BACKOFF_MAX);
                }
            }
        }
        match tokio::time::timeout_at(deadline, &mut answer).await {
            Ok(Ok(outcome)) => Ok(outcome?),
            Ok(Err(_)) => Err(self.stopped()),
            Err(_) => Err(ClusterError::OutcomeUnknown {
                reason: format!(
                    "the proposal is in the log but was not decided here within {:?}",
                    self.config.append_timeout
                ),
            }),
        }
    }

    /// `request` as a proposal of this node: its request id, its record's
    /// key (its partition key) and the record.
    pub(crate) fn proposal(&self, request: AppendRequest) -> Result<(RequestId, String, Vec<u8>), ClusterError> {
        let key = request.writes.first().map(|w| self.partitioner.key_of(&w.stream).to_owned()).unwrap_or_default();
        let request_id = RequestId::random();
        let record = Record::Proposal(Proposal { request_id, node: self.config.node.clone(), request }).encode()?;
        Ok((request_id, key, record))
    }

    /// Where the decision of proposal `request_id` comes once this node
    /// applies it; [`Inner::forget`] when it is no longer awaited.
    pub(crate) fn expect(&self, request_id: RequestId) -> oneshot::Receiver<Result<AppendOutcome, quipu_core::Error>> {
        let (reply, answer) = oneshot::channel();
        lock(&self.waiting).insert(request_id, Waiter { reply, seen: false });
        answer
    }

    /// No longer waits for the decision of proposal `request_id`.
    pub(crate) fn forget(&self, request_id: RequestId) {
        lock(&self.waiting).remove(&request_id);
    }

    /// After a produce whose outcome is unknown: whether a copy of
    /// `request_id` is in `partition`, found by reading it up to its end
    /// offset (or `false` when that cannot be read before `deadline`).
    async fn reached_log(
        &self,
        partition: u32,
        request_id: RequestId,
        deadline: tokio::time::Instant,
    ) -> Result<bool, ClusterError> {
        while tokio::time::Instant::now() < deadline {
            self.check_running()?;
            let end = match self.end_offsets(partition..partition + 1).await {
                Ok(ends) => ends.first().copied().unwrap_or(0),
                Err(error) => {
                    tracing::warn!(%error, "reading the topic's end offsets");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            if end > 0
                && tokio::time::timeout_at(deadline, self.consumed.reached(partition, end - 1, &self.stop))
                    .await
                    .is_err()
            {
                return Ok(false);
            }
            let seen = lock(&self.waiting).get(&request_id).is_none_or(|w| w.seen);
            if seen {
                self.want_ticks(partition, end - 1);
            }
            return Ok(seen);
        }
        Ok(false)
    }

    /// Asks for a round of ticks once `offset` of `partition` is read, so
    /// a record there leaves the merge.
    pub(crate) fn want_ticks(&self, partition: u32, offset: i64) {
        if self.partitions > 1 {
            self.ticks.want(partition, offset);
        }
    }

    /// The end offset (the offset the next record gets) of each partition
    /// in `partitions`.
    async fn end_offsets(&self, partitions: std::ops::Range<u32>) -> Result<Vec<i64>, ClusterError> {
        let marks = watermarks(&self.producer.get().0, &self.config.topic, partitions).await?;
        Ok(marks.into_iter().map(|(_, high)| high).collect())
    }

    /// Produces `payload` to `partition`; gives the offset it landed at.
    async fn produce(&self, partition: u32, key: Option<&str>, payload: &[u8]) -> Result<i64, KafkaError> {
        let partition = i32::try_from(partition).unwrap_or(i32::MAX);
        let mut record = FutureRecord::<str, [u8]>::to(&self.config.topic).partition(partition).payload(payload);
        if let Some(key) = key {
            record = record.key(key);
        }
        self.producer.send(record, self.config.produce_timeout).await
    }

    pub(crate) fn check_running(&self) -> Result<(), ClusterError> {
        match self.failure.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
            Some(reason) => Err(ClusterError::Stopped { reason: reason.clone() }),
            None if self.stop.load(Ordering::Acquire) => Err(self.stopped()),
            None => Ok(()),
        }
    }

    pub(crate) fn stopped(&self) -> ClusterError {
        let reason = self.failure.lock().unwrap_or_else(PoisonError::into_inner).clone();
        ClusterError::Stopped { reason: reason.unwrap_or_else(|| "the replica closed".into()) }
    }

    /// Stops the applier; when `store` is given (it is closing), saves
    /// the merge state the applier could not reach it to save.
    fn close(&self, store: Option<&Store>) {
        self.stop.store(true, Ordering::Release);
        self.consumed.read.notify_waiters();
        self.ticks.due.notify_one();
        let thread = self.applier.lock().unwrap_or_else(PoisonError::into_inner).take();
        match thread.map(JoinHandle::join) {
            Some(Ok(Some(unsaved))) => match store {
                Some(store) => unsaved.save(store),
                None => tracing::warn!("the store closed before the merge state was saved; it stays older"),
            },
            Some(Err(_)) => tracing::error!("the cluster applier panicked"),
            Some(Ok(None)) | None => {}
        }
        // Appends still waiting will not be applied here: they get `Stopped`.
        lock(&self.waiting).clear();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.close(None);
    }
}

/// Sends rounds of ticks for this node's proposals: once each proposal
/// waiting is read back here (so its epoch is known), one tick one past the
/// newest epoch to every partition, at once. Appends that come meanwhile
/// share the next round. When records have waited in the merge for
/// [`HELD_TICK_AFTER`] with none of this node's own waiting, it ticks for
/// them too: their node may have died between its produce and its ticks.
struct Ticker {
    producer: Arc<ProducerSlot>,
    topic: String,
    partitions: u32,
    newest_epoch: Arc<AtomicU64>,
    consumed: Arc<Consumed>,
    ticks: Arc<TicksDue>,
    held: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Ticker {
    fn of(replica: &Inner) -> Ticker {
        Ticker {
            producer: Arc::clone(&replica.producer),
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
        let (producer, generation) = self.producer.get();
        let sent = Self::send_all(&producer, &self.topic, self.partitions, &tick).await;
        if let Err(error) = &sent {
            self.producer.renew_if_fatal(generation, error);
        }
        sent
    }

    /// `payload` to every partition, queued at once, the deliveries awaited
    /// together.
    async fn send_all(
        producer: &FutureProducer,
        topic: &str,
        partitions: u32,
        payload: &[u8],
    ) -> Result<(), KafkaError> {
        let mut sends = tokio::task::JoinSet::new();
        for partition in 0..partitions {
            let record = FutureRecord::<str, [u8]>::to(topic)
                .partition(i32::try_from(partition).unwrap_or(i32::MAX))
                .payload(payload);
            let delivery = producer.send_result(record).map_err(|(error, _)| error)?;
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

/// Creates `topic` on `brokers` as a cluster's log: `partitions`
/// partitions of `replication_factor` replicas each, configured by
/// [`TopicSettings::for_new_topic`] for proposals of up to
/// `record_bytes_max` bytes.
///
/// # Errors
/// Kafka client errors; the broker's refusal (an existing topic, too few
/// brokers for the replicas).
pub async fn create_topic(
    brokers: &str,
    topic: &str,
    partitions: i32,
    replication_factor: i32,
    record_bytes_max: u64,
) -> Result<(), ClusterError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", brokers).create()?;
    let configs = TopicSettings::for_new_topic(u32::try_from(replication_factor).unwrap_or(0), record_bytes_max);
    let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication_factor));
    for (name, value) in &configs {
        new = new.set(name, value);
    }
    let options = AdminOptions::new().operation_timeout(Some(METADATA_TIMEOUT));
    for result in admin.create_topics([&new], &options).await? {
        result.map_err(|(_, code)| ClusterError::Kafka(KafkaError::AdminOp(code)))?;
    }
    Ok(())
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

/// A consumer of every partition of the topic, each from its lane's
/// offset.
fn assigned_consumer(config: &ReplicaConfig, lanes: &[LaneStart]) -> Result<BaseConsumer, KafkaError> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .set("group.id", format!("quipu-replica-{}", config.node))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "5")
        // An offset the partition no longer has is an error, never a jump
        // to its start or end, which would skip or repeat records.
        .set("auto.offset.reset", "error")
        // Records of a fenced writer's aborted transactions are never read.
        .set("isolation.level", "read_committed")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    for (partition, lane) in (0i32..).zip(lanes) {
        assignment.add_partition_offset(&config.topic, partition, Offset::Offset(lane.offset))?;
    }
    consumer.assign(&assignment)?;
    Ok(consumer)
}

/// Where each partition resumes for `store`: from its saved merge state
/// when that is of this topic and not ahead of the store, else from the
/// first offsets; and the topic's id to record (`topic_id`, the one read
/// now, or else the one recorded).
///
/// # Errors
/// [`ClusterError::CannotFollow`] when the directory applied another
/// topic, or this topic under another id (deleted and created again), the
/// topic's partitions changed, or the store holds events written alone; a
/// saved state that does not read.
fn resume_lanes(
    store: &Store,
    topic: &str,
    topic_id: Option<uuid::Uuid>,
    partitions: u32,
    applied_through: Option<MergeKey>,
) -> Result<(Vec<LaneStart>, Option<uuid::Uuid>), ClusterError> {
    let cannot = |reason: String| ClusterError::CannotFollow { topic: topic.to_owned(), reason };
    if applied_through.is_none() && store.last_position().is_some() {
        return Err(cannot(format!(
            "{} holds events written alone; a node joins a cluster with an empty data directory or one of that cluster's",
            store.dir().display()
        )));
    }
    if let Some(applied) = applied_through
        && applied.partition >= partitions
    {
        return Err(cannot(format!(
            "this node applied partition {} but the topic has {partitions}: its partitions changed, which moves streams",
            applied.partition
        )));
    }
    let from_start = vec![LaneStart { offset: 0, epoch: 0 }; partitions as usize];
    let Some(saved) = MergeState::load(store.dir())? else { return Ok((from_start, topic_id)) };
    if saved.topic != topic {
        return Err(cannot(format!("{} followed topic {}", store.dir().display(), saved.topic)));
    }
    if let (Some(was), Some(is)) = (saved.topic_id, topic_id)
        && was != is
    {
        return Err(cannot(format!(
            "the topic was deleted and created again: its id was {was} and is {is} now; this node's data directory \
             holds the old topic's events (start it on an empty one to follow the new topic)"
        )));
    }
    // The id read now, or the one recorded when it could not be read.
    let topic_id = topic_id.or(saved.topic_id);
    if saved.lanes.len() != partitions as usize {
        return Err(cannot(format!(
            "this node applied {} partitions but the topic has {partitions}: its partitions changed, which moves streams",
            saved.lanes.len()
        )));
    }
    if saved.applied > applied_through {
        tracing::warn!(
            saved = ?saved.applied,
            store = ?applied_through,
            "the saved merge state is ahead of the store; reading the topic from its first offsets"
        );
        return Ok((from_start, topic_id));
    }
    Ok((saved.lanes, topic_id))
}

/// The (first, end) offsets of each partition in `partitions`, read off
/// the async workers (the requests block).
async fn watermarks(
    producer: &FutureProducer,
    topic: &str,
    partitions: std::ops::Range<u32>,
) -> Result<Vec<(i64, i64)>, ClusterError> {
    let (producer, topic) = (producer.clone(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        partitions
            .map(|p| producer.client().fetch_watermarks(&topic, i32::try_from(p).unwrap_or(i32::MAX), METADATA_TIMEOUT))
            .collect::<Result<Vec<(i64, i64)>, KafkaError>>()
    })
    .await
    .map_err(|e| ClusterError::Stopped { reason: format!("reading the topic's offsets: {e}") })?
    .map_err(ClusterError::Kafka)
}

/// Refuses a topic that no longer holds what this node must read: a
/// partition whose first offset is past the lane's (records deleted), or
/// whose end is before it or before the last applied record (a recreated
/// topic).
async fn check_offsets(
    producer: &FutureProducer,
    topic: &str,
    lanes: &[LaneStart],
    applied: Option<MergeKey>,
) -> Result<(), ClusterError> {
    let count = u32::try_from(lanes.len()).unwrap_or(u32::MAX);
    let watermarks = watermarks(producer, topic, 0..count).await?;
    let cannot = |reason: String| ClusterError::CannotFollow { topic: topic.to_owned(), reason };
    for ((partition, lane), (low, high)) in (0u32..).zip(lanes).zip(watermarks) {
        if lane.offset < low {
            return Err(cannot(format!(
                "partition {partition} starts at offset {low} but this node reads from {}: records it has not applied were deleted",
                lane.offset
            )));
        }
        let applied_here = applied.filter(|a| a.partition == partition).map_or(-1, |a| a.offset);
        if lane.offset > high || applied_here >= high {
            return Err(cannot(format!(
                "partition {partition} ends at offset {high}, before what this node applied: was the topic recreated?"
            )));
        }
    }
    Ok(())
}

/// Saves the merge's state now and then, once the store has decided
/// everything given out before it.
struct Saving {
    dir: std::path::PathBuf,
    topic: String,
    topic_id: Option<uuid::Uuid>,
    last: std::time::Instant,
    /// A state taken, waiting for the store to decide this many applies.
    pending: Option<(Vec<LaneStart>, u64)>,
}

impl Saving {
    fn new(dir: &std::path::Path, topic: &str, topic_id: Option<uuid::Uuid>) -> Saving {
        Saving {
            dir: dir.to_path_buf(),
            topic: topic.to_owned(),
            topic_id,
            last: std::time::Instant::now(),
            pending: None,
        }
    }

    /// Takes the merge's state when one is due, and saves the one taken
    /// once the store has decided what came before it.
    fn tick(&mut self, merger: &Merger<(Proposal, u64)>, applies: &Applies, store: &Store) {
        if self.pending.is_none() && self.last.elapsed() >= SAVE_EVERY {
            self.pending = Some((merger.lanes(), applies.handed.load(Ordering::Acquire)));
        }
        if let Some((_, handed)) = &self.pending
            && applies.decided.load(Ordering::Acquire) >= *handed
            && let Some((lanes, _)) = self.pending.take()
        {
            self.save(lanes, store);
        }
    }

    /// Saves the merge's state as it is, once the store has decided
    /// everything handed to it (waiting at most [`FINISH_WAIT`]).
    fn finish(&mut self, merger: &Merger<(Proposal, u64)>, applies: &Applies, store: &Store) {
        let (lanes, handed) = (merger.lanes(), applies.handed.load(Ordering::Acquire));
        let deadline = std::time::Instant::now() + FINISH_WAIT;
        while applies.decided.load(Ordering::Acquire) < handed {
            if std::time::Instant::now() > deadline {
                return tracing::warn!("the store did not decide what was handed to it; the merge state stays older");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        self.save(lanes, store);
    }

    fn save(&mut self, lanes: Vec<LaneStart>, store: &Store) {
        self.last = std::time::Instant::now();
        let applied = match store.last_source() {
            Ok(applied) => applied,
            Err(error) => return tracing::warn!(%error, "reading the last applied commit to save the merge state"),
        };
        let state = MergeState { topic: self.topic.clone(), topic_id: self.topic_id, lanes, applied };
        if let Err(error) = state.save(&self.dir) {
            tracing::warn!(%error, "saving the merge state");
        }
    }
}

/// The thread that applies the topic to the store.
/// The merge of an applier that stopped while its store was closing.
struct Unsaved {
    merger: Merger<(Proposal, u64)>,
    saving: Saving,
    applies: Arc<Applies>,
}

impl Unsaved {
    fn save(mut self, store: &Store) {
        self.saving.finish(&self.merger, &self.applies, store);
    }
}

struct Applier {
    consumer: BaseConsumer,
    merger: Merger<(Proposal, u64)>,
    saving: Saving,
    store: Weak<Store>,
    waiting: Waiters,
    newest_epoch: Arc<AtomicU64>,
    consumed: Arc<Consumed>,
    applies: Arc<Applies>,
    held: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    failure: Arc<Mutex<Option<String>>>,
    /// When [`Applier::note_positions`] last looked.
    positions_noted: std::time::Instant,
}

impl Applier {
    /// Follows the topic until told to stop, then saves the merge state;
    /// gives the merge back when the store is closing and so out of its
    /// reach (the closer saves it, see [`Inner::close`]).
    fn run(mut self) -> Option<Unsaved> {
        let followed = self.follow();
        let unsaved = match self.store.upgrade() {
            Some(store) => {
                self.saving.finish(&self.merger, &self.applies, &store);
                None
            }
            None => Some(Unsaved { merger: self.merger, saving: self.saving, applies: Arc::clone(&self.applies) }),
        };
        if let Err(reason) = followed {
            tracing::error!(%reason, "the cluster applier stopped");
            *self.failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(reason);
            self.stop.store(true, Ordering::Release);
            self.consumed.read.notify_waiters();
            // Appends still waiting get `Stopped` when their senders drop.
            lock(&self.waiting).clear();
        }
        unsaved
    }

    /// Applies records until told to stop; an error stops applying for
    /// good (the node must not decide past what it cannot read).
    fn follow(&mut self) -> Result<(), String> {
        while !self.stop.load(Ordering::Acquire) {
            // Before the poll: every record the position has passed is handed on.
            self.note_positions();
            let polled = self.consumer.poll(POLL_INTERVAL);
            let Some(store) = self.store.upgrade() else { return Ok(()) };
            self.saving.tick(&self.merger, &self.applies, &store);
            let message = match polled {
                None => continue,
                Some(Err(KafkaError::MessageConsumption(RDKafkaErrorCode::AutoOffsetReset))) => {
                    return Err("the topic no longer has the offset this node reads next: the broker lost records \
                                it had acknowledged, or the topic was rewritten; this node stops applying rather \
                                than skip records (restart it once the topic is sound)"
                        .to_owned());
                }
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
                Ok(Record::Proposal(proposal)) => {
                    if let Some(waiter) = lock(&self.waiting).get_mut(&proposal.request_id) {
                        waiter.seen = true;
                    }
                    Some(Entry::Data((proposal, recorded_at_us)))
                }
                Err(DecodeError::Malformed { reason }) => {
                    // Every node skips it alike: it is refused, never applied.
                    tracing::warn!(partition, offset, %reason, "skipping a malformed cluster record");
                    None
                }
                Err(error) => return Err(format!("partition {partition} offset {offset}: {error}")),
            };
            if let Some(entry) = entry {
                self.merger.push(partition, offset, entry).map_err(|error| match error {
                    MergeError::OffsetBehind { partition, offset, next } => format!(
                        "partition {partition} gave offset {offset} again after this node had read up to offset {}: \
                         the broker lost records it had acknowledged, or the topic was rewritten; this node stops \
                         applying rather than decide from another history (restart it once the topic is sound)",
                        next - 1
                    ),
                    other => other.to_string(),
                })?;
            }
            while let Some((key, (proposal, recorded_at_us))) = self.merger.pop() {
                self.apply(&store, key, proposal, recorded_at_us);
            }
            self.held.store(u64::try_from(self.merger.held()).unwrap_or(u64::MAX), Ordering::Release);
            // Counted read once handed on: whoever waits for the offset
            // then finds what it let out of the merge handed to the store.
            self.consumed.note(partition, offset);
            self.publish_released();
        }
        Ok(())
    }

    /// Counts, per partition, what the merge has handed on: everything
    /// read before the first record it still holds.
    fn publish_released(&self) {
        for (partition, read) in (0u32..).zip(&self.consumed.offsets) {
            let released = match self.merger.first_held(partition) {
                Some(held) => held - 1,
                None => read.load(Ordering::Acquire),
            };
            self.consumed.release(partition, released);
        }
    }

    /// Counts as read what the consumer has passed without a record to
    /// give (transaction markers, aborted records), every
    /// [`POSITIONS_EVERY`]: the offset before each partition's position.
    fn note_positions(&mut self) {
        if self.positions_noted.elapsed() < POSITIONS_EVERY {
            return;
        }
        self.positions_noted = std::time::Instant::now();
        let Ok(positions) = self.consumer.position() else { return };
        for element in positions.elements() {
            if let (Ok(partition), Offset::Offset(next)) = (u32::try_from(element.partition()), element.offset()) {
                self.consumed.note(partition, next - 1);
            }
        }
        self.publish_released();
    }

    /// Hands `proposal` to the store; its answer goes to the append that
    /// waits for it here, if any.
    fn apply(&self, store: &Store, key: MergeKey, proposal: Proposal, recorded_at_us: u64) {
        let applied = Applied { recorded_at_us, source: key };
        let (waiting, applies) = (Arc::clone(&self.waiting), Arc::clone(&self.applies));
        let request_id = proposal.request_id;
        self.applies.handed.fetch_add(1, Ordering::AcqRel);
        store.submit_applied(proposal.request, applied, move |outcome| {
            // Answered before counted: whoever sees the count sees the answer.
            if let Some(waiter) = lock(&waiting).remove(&request_id) {
                let _ = waiter.reply.send(outcome);
            }
            applies.decided.fetch_add(1, Ordering::AcqRel);
        });
    }
}
