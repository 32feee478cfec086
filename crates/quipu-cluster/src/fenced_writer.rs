//! The fenced-writer mode ([`ClusterMode::FencedWriter`]): per partition,
//! one node at a time writes, through a Kafka transactional producer whose
//! transactional id names the topic and the partition.
//!
//! A node that takes an append for a partition it does not write yet
//! *claims* it: it starts a transactional producer with the partition's id
//! (the broker then fences the previous writer, whatever node it is on,
//! and ends its open transaction), and applies the topic up to its end, so
//! its store holds everything ever committed to the partition. From then
//! on it alone writes there, so its store is the partition's state: it
//! checks each append against it ([`Store::check`]) and answers refusals
//! (conflicts, retries, reused ids) itself; what it accepts it produces in
//! one transaction per batch, and answers once its own apply has decided
//! it, as in the log-order mode. Readers read committed, so a fenced
//! writer's unfinished transaction is never read.
//!
//! A batch holds appends that cannot depend on each other: each checked
//! against the store alone, so none touches a stream, or an event id, of
//! another one in the batch, and an append with a DCB condition comes
//! only first; the rest wait for the next batch. Batches committed but not
//! yet applied here are in flight: the next batch goes meanwhile, without
//! the appends that touch their streams or ids, and without conditions.
//!
//! A transaction that fails before its commit is aborted when the
//! producer still can, and its appends are checked again. When the
//! producer cannot go on (fenced by another node's claim) or the commit's
//! outcome is unknown, the node pauses, claims the partition again, which
//! ends the transaction on the broker one way or the other, and catches
//! up: an append of the batch that its apply then decided gets that
//! answer, the others are checked again. Nothing is guessed.
//!
//! [`ClusterMode::FencedWriter`]: crate::ClusterMode::FencedWriter

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use quipu_core::{AppendOutcome, AppendRequest, Decision, EventId, Store, StreamName};
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio::sync::{mpsc, oneshot};

use crate::proposal::RequestId;
use crate::replica::{ClusterError, Inner};

/// The most appends one transaction carries.
const BATCH_MAX: usize = 256;
/// How many times (0.1 ms apart) a writer looks whether librdkafka let
/// go of the records it acknowledged before it commits.
const RELEASE_CHECKS: u32 = 50;
/// How long claiming a partition (fencing the writer before) may take.
const CLAIM_TIMEOUT: Duration = Duration::from_secs(10);
/// The first pause before a failed claim is tried again; it doubles up to
/// [`CLAIM_BACKOFF_MAX`].
const CLAIM_BACKOFF_MIN: Duration = Duration::from_millis(20);
/// The longest pause between claims.
const CLAIM_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How long a writer whose transaction failed (most often: another node
/// claimed the partition) waits before it claims the partition back, at
/// least; a random part up to as much again is added, so nodes that take
/// appends for one partition let each other write a batch instead of
/// fencing each other without end.
const FENCED_PAUSE: Duration = Duration::from_millis(50);

/// A client's answer.
type Answer = oneshot::Sender<Result<AppendOutcome, ClusterError>>;

/// An append waiting for its partition's writer.
struct Queued {
    request: AppendRequest,
    answer: Answer,
}

/// What the fenced writers of a node have done, for tests and metrics.
#[derive(Default)]
pub(crate) struct FencedCounts {
    /// Partitions claimed.
    pub(crate) claims: AtomicU64,
    /// Transactions that failed and were resolved by claiming again.
    pub(crate) failed: AtomicU64,
}

/// The partitions this node writes: one task per partition it has taken
/// appends for, fed through a queue.
#[derive(Default)]
pub(crate) struct Writers {
    queues: Mutex<HashMap<u32, mpsc::UnboundedSender<Queued>>>,
}

impl Writers {
    /// Has `partition`'s writer decide `request`: answered by the writer
    /// for a refusal, by this node's apply once written.
    pub(crate) async fn append(
        &self,
        inner: &Arc<Inner>,
        partition: u32,
        request: AppendRequest,
    ) -> Result<AppendOutcome, ClusterError> {
        let (answer, answered) = oneshot::channel();
        self.queue(inner, partition).send(Queued { request, answer }).map_err(|_| inner.stopped())?;
        match tokio::time::timeout(inner.config.append_timeout, answered).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(inner.stopped()),
            Err(_) => Err(ClusterError::OutcomeUnknown {
                reason: format!(
                    "partition {partition}'s writer did not decide the append within {:?}",
                    inner.config.append_timeout
                ),
            }),
        }
    }

    /// The queue of `partition`'s writer, started on first use.
    fn queue(&self, inner: &Arc<Inner>, partition: u32) -> mpsc::UnboundedSender<Queued> {
        let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        let queue = queues.entry(partition).or_insert_with(|| {
            let (queue, queued) = mpsc::unbounded_channel();
            let writer = Writer {
                inner: Arc::downgrade(inner),
                partition,
                producer: None,
                carried: VecDeque::new(),
                in_flight: Vec::new(),
                stale: Arc::default(),
            };
            inner.runtime.spawn(writer.run(queued));
            queue
        });
        queue.clone()
    }
}

/// One partition's writer on this node.
struct Writer {
    /// Not a strong reference: the writer ends with the replica.
    inner: Weak<Inner>,
    partition: u32,
    /// The transactional producer, while this node holds the partition.
    producer: Option<FutureProducer>,
    /// Appends taken from the queue and not yet answered, in order.
    carried: VecDeque<Queued>,
    /// Committed batches whose decisions are awaited: an append that
    /// touches one of their streams or ids waits until they are applied.
    in_flight: Vec<InFlight>,
    /// Set when a committed append was not applied here in time: the
    /// writer catches up (claims again) before it checks anything more.
    stale: Arc<AtomicBool>,
}

/// A committed batch whose decisions are being awaited and passed on.
struct InFlight {
    /// Its streams and event ids.
    taken: Taken,
    answering: tokio::task::JoinHandle<()>,
}

/// An append of the batch being written, with where its decision comes.
struct Sent {
    queued: Queued,
    request_id: RequestId,
    decided: oneshot::Receiver<Result<AppendOutcome, quipu_core::Error>>,
}

impl Writer {
    async fn run(mut self, mut queue: mpsc::UnboundedReceiver<Queued>) {
        loop {
            self.in_flight.retain(|batch| !batch.answering.is_finished());
            if self.carried.is_empty() {
                match queue.recv().await {
                    Some(queued) => self.carried.push_back(queued),
                    None => return,
                }
            }
            while self.carried.len() < BATCH_MAX {
                match queue.try_recv() {
                    Ok(queued) => self.carried.push_back(queued),
                    Err(_) => break,
                }
            }
            let Some(inner) = self.inner.upgrade() else { return };
            if !self.round(&inner).await
                && let Some(oldest) = self.in_flight.first_mut()
            {
                // What is carried waits for batches in flight.
                let _ = (&mut oldest.answering).await;
            }
        }
    }

    /// Writes one batch of what is carried (claiming the partition first
    /// when this node does not hold it); `false` when nothing could go.
    async fn round(&mut self, inner: &Arc<Inner>) -> bool {
        // An append whose client is gone is not written (its outcome was
        // answered unknown, or nobody waits).
        self.carried.retain(|queued| !queued.answer.is_closed());
        if let Err(error) = inner.check_running() {
            self.refuse_all(&error.to_string());
            return true;
        }
        if self.stale.swap(false, Ordering::AcqRel) {
            self.producer = None;
        }
        if self.producer.is_none() && !self.claim_patiently(inner).await {
            return true;
        }
        let Some(store) = inner.store.upgrade() else {
            self.refuse_all("the store closed");
            return true;
        };
        let mut busy = Taken::default();
        for batch in &self.in_flight {
            busy.absorb(&batch.taken);
        }
        let batch = select(&store, &mut self.carried, &busy);
        if batch.is_empty() {
            return false;
        }
        let mut taken = Taken::default();
        for queued in &batch {
            taken.take(&queued.request);
        }
        let mut records = Vec::with_capacity(batch.len());
        let mut sent = Vec::with_capacity(batch.len());
        for queued in batch {
            match inner.proposal(queued.request.clone()) {
                Ok((request_id, key, record)) => {
                    records.push((key, record));
                    sent.push(Sent { decided: inner.expect(request_id), request_id, queued });
                }
                Err(error) => {
                    let _ = queued.answer.send(Err(error));
                }
            }
        }
        self.write_and_answer(inner, &records, sent, taken).await;
        true
    }

    /// Produces `records` in one transaction, then answers each append of
    /// `sent` with its decision here, as it comes (the batch is in flight
    /// meanwhile); on failure, claims again and answers what the log
    /// holds, carrying the rest to the next batch.
    async fn write_and_answer(
        &mut self,
        inner: &Arc<Inner>,
        records: &[(String, Vec<u8>)],
        sent: Vec<Sent>,
        taken: Taken,
    ) {
        let Some(producer) = self.producer.clone() else { return };
        let written =
            transact(&producer, &inner.config.topic, self.partition, records, inner.config.produce_timeout).await;
        match written {
            Ok(last_offset) => {
                inner.want_ticks(self.partition, last_offset);
                let answering = tokio::spawn(answer_when_decided(Arc::clone(inner), sent, Arc::clone(&self.stale)));
                self.in_flight.push(InFlight { taken, answering });
            }
            Err(TxnFailure::Aborted(error)) => {
                // Still the writer, and nothing of the batch is in the log:
                // check it again (after a pause, should the broker refuse on).
                tracing::warn!(%error, partition = self.partition, "a fenced writer aborted its transaction; writing again");
                inner.fenced.failed.fetch_add(1, Ordering::Relaxed);
                for sent in sent.into_iter().rev() {
                    inner.forget(sent.request_id);
                    self.carried.push_front(sent.queued);
                }
                tokio::time::sleep(CLAIM_BACKOFF_MIN).await;
            }
            Err(TxnFailure::Lost(error)) => {
                tracing::warn!(%error, partition = self.partition, "a fenced writer's transaction failed; claiming the partition again");
                inner.fenced.failed.fetch_add(1, Ordering::Relaxed);
                self.producer = None;
                tokio::time::sleep(FENCED_PAUSE + jitter(FENCED_PAUSE)).await;
                if !self.claim_patiently(inner).await {
                    // Stopped: every append is refused, decided or not.
                    for sent in sent {
                        inner.forget(sent.request_id);
                        let _ = sent.queued.answer.send(Err(inner.stopped()));
                    }
                    return;
                }
                // Caught up: what the log holds has been decided here.
                for mut sent in sent.into_iter().rev() {
                    inner.forget(sent.request_id);
                    match sent.decided.try_recv() {
                        Ok(outcome) => {
                            let _ = sent.queued.answer.send(outcome.map_err(ClusterError::Store));
                        }
                        Err(_) => self.carried.push_front(sent.queued),
                    }
                }
            }
        }
    }

    /// Claims the partition, trying again after growing pauses while it
    /// fails (appends whose clients gave up are dropped meanwhile);
    /// `false` when the replica stopped (every carried append is refused
    /// then).
    async fn claim_patiently(&mut self, inner: &Inner) -> bool {
        let mut backoff = CLAIM_BACKOFF_MIN;
        loop {
            if let Err(error) = inner.check_running() {
                self.refuse_all(&error.to_string());
                return false;
            }
            match claim(inner, self.partition).await {
                Ok(producer) => {
                    self.producer = Some(producer);
                    return true;
                }
                Err(error) => {
                    tracing::warn!(%error, partition = self.partition, "claiming a partition as its fenced writer");
                    self.carried.retain(|queued| !queued.answer.is_closed());
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(CLAIM_BACKOFF_MAX);
                }
            }
        }
    }

    fn refuse_all(&mut self, reason: &str) {
        for queued in self.carried.drain(..) {
            let _ = queued.answer.send(Err(ClusterError::Stopped { reason: reason.to_owned() }));
        }
    }
}

/// Passes on the decision of each append of `sent` once this node has
/// applied it; one not applied within the append timeout is answered
/// unknown, and `stale` tells the writer to catch up before it checks more.
async fn answer_when_decided(inner: Arc<Inner>, sent: Vec<Sent>, stale: Arc<AtomicBool>) {
    let deadline = tokio::time::Instant::now() + inner.config.append_timeout;
    for Sent { queued, request_id, decided } in sent {
        match tokio::time::timeout_at(deadline, decided).await {
            Ok(Ok(outcome)) => {
                let _ = queued.answer.send(outcome.map_err(ClusterError::Store));
            }
            Ok(Err(_)) => {
                let _ = queued.answer.send(Err(inner.stopped()));
            }
            Err(_) => {
                inner.forget(request_id);
                stale.store(true, Ordering::Release);
                let _ = queued.answer.send(Err(ClusterError::OutcomeUnknown {
                    reason: format!(
                        "committed to the topic but not applied here within {:?}",
                        inner.config.append_timeout
                    ),
                }));
            }
        }
    }
}

/// A random pause of up to `most`.
fn jitter(most: Duration) -> Duration {
    let nanos = u64::try_from(most.as_nanos()).unwrap_or(u64::MAX).max(1);
    let random = u64::try_from(uuid::Uuid::new_v4().as_u128() & u128::from(u64::MAX)).unwrap_or(0);
    Duration::from_nanos(random % nanos)
}

/// The transactional id of `partition`'s writer: one per partition of the
/// topic, shared by every node, so a new writer fences the old one.
fn transactional_id(topic: &str, partition: u32) -> String {
    format!("quipu.{topic}.{partition}")
}

/// Makes this node `partition`'s writer: a transactional producer that
/// fenced the writer before it (ending its open transaction), then applies
/// the topic up to its end.
async fn claim(inner: &Inner, partition: u32) -> Result<FutureProducer, ClusterError> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &inner.config.brokers)
        .set("transactional.id", transactional_id(&inner.config.topic, partition))
        .set("allow.auto.create.topics", "false")
        .set("message.timeout.ms", inner.config.produce_timeout.as_millis().to_string())
        .set("linger.ms", "0")
        .create()?;
    let init = producer.clone();
    tokio::task::spawn_blocking(move || init.init_transactions(CLAIM_TIMEOUT))
        .await
        .map_err(|e| ClusterError::Stopped { reason: format!("claiming partition {partition}: {e}") })??;
    inner.fenced.claims.fetch_add(1, Ordering::Relaxed);
    inner.caught_up().await?;
    tracing::debug!(partition, "claimed the partition as its fenced writer, and caught up");
    Ok(producer)
}

/// Why a transaction did not commit.
#[derive(Debug)]
enum TxnFailure {
    /// Aborted by this writer: none of its records is in the log, and the
    /// producer can go on.
    Aborted(KafkaError),
    /// The producer can no longer write (fenced, failed for good), or
    /// whether the commit happened is unknown: claim again and read.
    Lost(KafkaError),
}

/// Produces `records` (key, payload) to `partition` in one transaction;
/// gives the offset of the last one. A transaction that fails before its
/// commit is aborted when the producer still can; a commit that fails
/// for a while is tried again until `timeout`.
async fn transact(
    producer: &FutureProducer,
    topic: &str,
    partition: u32,
    records: &[(String, Vec<u8>)],
    timeout: Duration,
) -> Result<i64, TxnFailure> {
    producer.begin_transaction().map_err(TxnFailure::Lost)?;
    let last = match send_all(producer, topic, partition, records).await {
        Ok(last) => last,
        Err(error) => return Err(abort(producer, error, timeout).await),
    };
    released(producer).await;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let commit = producer.clone();
        let committed = tokio::task::spawn_blocking(move || commit.commit_transaction(timeout))
            .await
            .unwrap_or(Err(KafkaError::Canceled));
        match committed {
            Ok(()) => return Ok(last),
            Err(KafkaError::Transaction(error)) if error.is_retriable() && tokio::time::Instant::now() < deadline => {
                tracing::debug!(%error, "committing a fenced writer's transaction again");
            }
            Err(KafkaError::Transaction(error)) if error.txn_requires_abort() => {
                return Err(abort(producer, KafkaError::Transaction(error), timeout).await);
            }
            Err(error) => return Err(TxnFailure::Lost(error)),
        }
    }
}

/// Sends `records` to `partition` within the open transaction; gives the
/// offset of the last one.
async fn send_all(
    producer: &FutureProducer,
    topic: &str,
    partition: u32,
    records: &[(String, Vec<u8>)],
) -> Result<i64, KafkaError> {
    let partition = i32::try_from(partition).unwrap_or(i32::MAX);
    let mut deliveries = Vec::with_capacity(records.len());
    for (key, payload) in records {
        let record = FutureRecord::<str, [u8]>::to(topic).partition(partition).key(key).payload(payload);
        deliveries.push(producer.send_result(record).map_err(|(error, _)| error)?);
    }
    let mut last = -1;
    for delivery in deliveries {
        match delivery.await {
            Ok(Ok(delivery)) => last = last.max(delivery.offset),
            Ok(Err((error, _))) => return Err(error),
            Err(_) => return Err(KafkaError::Canceled),
        }
    }
    Ok(last)
}

/// Waits (a few ms at most) until librdkafka has let go of the records it
/// acknowledged: a commit that starts before then waits for them in
/// 100 ms steps (about one commit in ten did, measured on noida-db).
async fn released(producer: &FutureProducer) {
    for _ in 0..RELEASE_CHECKS {
        if producer.in_flight_count() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_micros(100)).await;
    }
}

/// Aborts the open transaction after `error`: [`TxnFailure::Aborted`]
/// when that worked, [`TxnFailure::Lost`] when the producer cannot.
async fn abort(producer: &FutureProducer, error: KafkaError, timeout: Duration) -> TxnFailure {
    if producer.client().fatal_error().is_some() {
        return TxnFailure::Lost(error);
    }
    let aborting = producer.clone();
    match tokio::task::spawn_blocking(move || aborting.abort_transaction(timeout)).await {
        Ok(Ok(())) => TxnFailure::Aborted(error),
        Ok(Err(_)) | Err(_) => TxnFailure::Lost(error),
    }
}

/// Takes from `carried` the next batch: appends the store accepts now and
/// that cannot depend on each other, nor on the batches in flight (`busy`:
/// committed, not yet applied here). Refusals are answered here; appends
/// that must wait stay in `carried`, in order.
fn select(store: &Store, carried: &mut VecDeque<Queued>, busy: &Taken) -> Vec<Queued> {
    let mut batch = Vec::new();
    let mut taken = Taken::default();
    let mut waiting = VecDeque::new();
    while let Some(queued) = carried.pop_front() {
        let first = batch.is_empty() && busy.is_empty();
        if batch.len() >= BATCH_MAX || taken.depends(&queued.request, first) || busy.depends(&queued.request, first) {
            taken.take(&queued.request);
            waiting.push_back(queued);
            continue;
        }
        match store.check(&queued.request) {
            Ok(Decision::Accept(_)) => {
                taken.take(&queued.request);
                batch.push(queued);
            }
            Ok(Decision::Duplicate(result)) => {
                let _ = queued.answer.send(Ok(AppendOutcome::AlreadyWritten(result)));
            }
            Ok(Decision::Reject(conflict)) => {
                let _ = queued.answer.send(Ok(AppendOutcome::Conflict(conflict)));
            }
            Err(error) => {
                let _ = queued.answer.send(Err(ClusterError::Store(error)));
            }
        }
    }
    *carried = waiting;
    batch
}

/// The streams and event ids of the appends before the one being
/// selected: in the batch, or waiting (an append on them waits too, so
/// their order stays).
#[derive(Default)]
struct Taken {
    streams: HashSet<StreamName>,
    ids: HashSet<EventId>,
}

impl Taken {
    fn is_empty(&self) -> bool {
        self.streams.is_empty() && self.ids.is_empty()
    }

    fn absorb(&mut self, other: &Taken) {
        self.streams.extend(other.streams.iter().cloned());
        self.ids.extend(other.ids.iter().copied());
    }

    fn take(&mut self, request: &AppendRequest) {
        self.streams.extend(request.writes.iter().map(|w| w.stream.clone()));
        self.ids.extend(request.event_ids());
    }

    /// Whether `request` could be decided otherwise after the appends
    /// before it than against the store alone: it writes a stream or uses
    /// an event id one of them does, or it has a DCB condition and would
    /// not be `first` in its batch.
    fn depends(&self, request: &AppendRequest, first: bool) -> bool {
        (request.condition.is_some() && !first)
            || request.writes.iter().any(|w| self.streams.contains(&w.stream))
            || request.event_ids().any(|id| self.ids.contains(&id))
    }
}

#[cfg(test)]
mod tests {
    use quipu_core::{Condition, EventType, ExpectedRevision, Options, ProposedEvent, Query, QueryItem};

    use super::*;

    fn opened(stream: &str) -> AppendRequest {
        let event = ProposedEvent::new(EventType::new("Opened").unwrap(), b"{}".to_vec());
        AppendRequest::to_stream(StreamName::new(stream).unwrap(), ExpectedRevision::NoStream, vec![event])
    }

    fn queued(request: AppendRequest) -> (Queued, oneshot::Receiver<Result<AppendOutcome, ClusterError>>) {
        let (answer, answered) = oneshot::channel();
        (Queued { request, answer }, answered)
    }

    #[test]
    fn a_batch_holds_appends_that_cannot_depend_on_each_other_and_answers_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Options::default()).unwrap();
        let written = opened("acct-0");
        assert!(matches!(store.append(written.clone()).unwrap(), AppendOutcome::Written(_)));

        let mut conditioned = opened("acct-4");
        conditioned.condition = Some(Condition {
            query: Query { items: vec![QueryItem { types: vec![EventType::new("Closed").unwrap()], tags: vec![] }] },
            after: None,
        });
        let mut same_id = opened("acct-5");
        same_id.writes[0].events[0].id = opened_id(&conditioned);
        let (a, _) = queued(opened("acct-1"));
        let (retry, mut retry_answer) = queued(written.clone());
        let (conflict, mut conflict_answer) = queued(opened("acct-0"));
        let (b, _) = queued(opened("acct-2"));
        let (again_b, _) = queued(opened("acct-2"));
        let (c, _) = queued(conditioned);
        let (d, _) = queued(same_id);
        let mut carried: VecDeque<Queued> = [a, retry, conflict, b, again_b, c, d].into_iter().collect();

        let none = Taken::default();
        let batch = select(&store, &mut carried, &none);
        let streams = |queued: &[&Queued]| -> Vec<String> {
            queued.iter().map(|q| q.request.writes[0].stream.as_str().to_owned()).collect()
        };
        assert_eq!(streams(&batch.iter().collect::<Vec<_>>()), ["acct-1", "acct-2"]);
        assert_eq!(
            streams(&carried.iter().collect::<Vec<_>>()),
            ["acct-2", "acct-4", "acct-5"],
            "a second append to a stream of the batch, a DCB condition and a shared id wait"
        );
        assert!(matches!(retry_answer.try_recv(), Ok(Ok(AppendOutcome::AlreadyWritten(_)))));
        assert!(matches!(conflict_answer.try_recv(), Ok(Ok(AppendOutcome::Conflict(_)))));

        let next = select(&store, &mut carried, &none);
        assert_eq!(streams(&next.iter().collect::<Vec<_>>()), ["acct-2"]);
        assert_eq!(
            streams(&carried.iter().collect::<Vec<_>>()),
            ["acct-4", "acct-5"],
            "an append sharing an id with one that waits waits behind it"
        );
        let last = select(&store, &mut carried, &none);
        assert_eq!(streams(&last.iter().collect::<Vec<_>>()), ["acct-4"], "a condition goes first");
        assert_eq!(streams(&carried.iter().collect::<Vec<_>>()), ["acct-5"]);

        // A batch in flight (committed, not yet applied here) holds back
        // appends on its streams and any with a condition.
        let mut busy = Taken::default();
        busy.take(&opened("acct-7"));
        let mut conditioned = opened("acct-9");
        conditioned.condition = Some(Condition { query: Query { items: vec![] }, after: None });
        let mut carried: VecDeque<Queued> =
            [opened("acct-7"), opened("acct-8"), conditioned].into_iter().map(|r| queued(r).0).collect();
        let batch = select(&store, &mut carried, &busy);
        assert_eq!(streams(&batch.iter().collect::<Vec<_>>()), ["acct-8"]);
        assert_eq!(streams(&carried.iter().collect::<Vec<_>>()), ["acct-7", "acct-9"]);
    }

    fn opened_id(request: &AppendRequest) -> EventId {
        request.event_ids().next().unwrap()
    }
}
