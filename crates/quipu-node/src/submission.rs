//! Appends from async handlers: the request goes to the engine's
//! sequencer at once ([`Store::submit`] with a one-shot reply), and the
//! handler awaits the outcome without blocking the runtime. Submitting
//! before awaiting lets one connection pipeline many appends into the
//! same group commit. Appends to categories a blocking rebuild closed, and
//! events that fail schema validation, are refused here, before the
//! sequencer, so every door honours both.

use std::future::Future;
use std::sync::Arc;

use quipu_core::{AppendOutcome, AppendRequest, Store};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::ApiError;
use crate::metrics::Metrics;
use crate::projection::Blocks;

/// What an append must pass before it reaches the sequencer.
pub struct Admission {
    /// Categories closed by blocking rebuilds.
    pub blocks: Arc<Blocks>,
    /// Validation of events against their types' schemas.
    pub schemas: Arc<crate::schema::Schemas>,
    /// Tombstoned streams.
    pub lifecycle: Arc<crate::lifecycle::Lifecycle>,
    /// The store's limit on one event (`Options::event_bytes_max`): an
    /// event over it is refused before a schema parses it.
    pub event_bytes_max: usize,
    /// Room in the sequencer's queue for the doors' appends: one permit
    /// per append handed over and not yet answered. Fewer than the
    /// queue's own bound (`Options::queue_appends_max`), which leaves room
    /// for the server's own appends (registries, checkpoints), so handing
    /// an append over never waits inside the engine.
    pub slots: Arc<Semaphore>,
}

impl Admission {
    /// Refuses `request` when it writes to a closed category or a
    /// tombstoned stream, or holds an event that fails validation.
    ///
    /// # Errors
    /// The refusal, as an API error.
    pub fn check(&self, request: &AppendRequest) -> Result<(), ApiError> {
        self.blocks.check(request)?;
        self.lifecycle.check(request)?;
        self.check_sizes(request)?;
        self.schemas.validate(request)
    }

    /// Refuses an event over the store's limit as the store would, so that
    /// no schema parses megabytes the store refuses anyway.
    fn check_sizes(&self, request: &AppendRequest) -> Result<(), ApiError> {
        let events = request.writes.iter().flat_map(|write| &write.events);
        match events.map(|e| (e, e.size_bytes())).find(|(_, size)| *size > self.event_bytes_max) {
            Some((event, size_bytes)) => Err(ApiError::from(quipu_core::Error::EventTooLarge {
                event_id: event.id,
                size_bytes,
                limit_bytes: self.event_bytes_max,
            })),
            None => Ok(()),
        }
    }
}

/// Hands `request` to the sequencer, unless `admission` refuses it; the
/// returned future resolves to its outcome. It is handed over at once
/// when the sequencer's queue has room for it (see [`Admission::slots`]),
/// else once it has, which the future awaits: a full queue never blocks a
/// runtime thread. For a handler that awaits this one append: when the
/// store is idle, the append is committed on this thread before this
/// returns (see [`Store::submit_inline`]), which spares two thread
/// wake-ups. Dropping the future once the append is handed over does not
/// cancel it.
pub fn submit(
    store: &Arc<Store>,
    metrics: &Arc<Metrics>,
    admission: &Arc<Admission>,
    request: AppendRequest,
) -> impl Future<Output = Result<AppendOutcome, ApiError>> + use<> {
    if let Ok(slot) = Arc::clone(&admission.slots).try_acquire_owned() {
        return futures_util::future::Either::Left(hand_over(store, metrics, admission, request, true, slot));
    }
    let (store, metrics, admission) = (Arc::clone(store), Arc::clone(metrics), Arc::clone(admission));
    futures_util::future::Either::Right(async move {
        let slot = Arc::clone(&admission.slots).acquire_owned().await.map_err(|_| closed())?;
        hand_over(&store, &metrics, &admission, request, true, slot).await
    })
}

/// As [`submit`], for a handler that queues many appends before awaiting
/// them: awaiting this hands `request` over (at once unless the queue is
/// full), in the order of the calls, and gives the future of its outcome;
/// the appends share group commits.
pub async fn submit_queued(
    store: &Store,
    metrics: &Arc<Metrics>,
    admission: &Admission,
    request: AppendRequest,
) -> impl Future<Output = Result<AppendOutcome, ApiError>> + use<> {
    match Arc::clone(&admission.slots).acquire_owned().await {
        Ok(slot) => futures_util::future::Either::Left(hand_over(store, metrics, admission, request, false, slot)),
        Err(_) => futures_util::future::Either::Right(std::future::ready(Err(closed()))),
    }
}

/// What an append gets when the store closed before it was handed over.
fn closed() -> ApiError {
    ApiError::from(quipu_core::Error::Closed)
}

/// Admits `request` and hands it to the sequencer, holding `slot` until
/// its outcome comes back.
fn hand_over(
    store: &Store,
    metrics: &Arc<Metrics>,
    admission: &Admission,
    request: AppendRequest,
    inline: bool,
    slot: OwnedSemaphorePermit,
) -> impl Future<Output = Result<AppendOutcome, ApiError>> + use<> {
    let (reply, outcome) = tokio::sync::oneshot::channel();
    {
        // Admitted and handed over under the gate: a tombstone cannot slip
        // between the check and the queue.
        let _admitting = admission.lifecycle.admitting();
        if let Err(error) = admission.check(&request) {
            return futures_util::future::Either::Left(std::future::ready(Err(error)));
        }
        let metrics = Arc::clone(metrics);
        let reply = move |result: Result<AppendOutcome, quipu_core::Error>| {
            drop(slot);
            metrics.count_append(&result);
            // The handler may have gone (client hung up); the append stands.
            let _ = reply.send(result);
        };
        if inline {
            store.submit_inline(request, reply);
        } else {
            store.submit(request, reply);
        }
    }
    futures_util::future::Either::Right(async move { Ok(outcome.await.map_err(|_| closed())??) })
}

/// A DCB condition from its items as (types, tags) name lists and the
/// position it was decided at; every door that takes DCB conditions
/// builds them here.
///
/// # Errors
/// [`ApiError`] for a bad type or tag name.
pub fn condition(
    items: impl Iterator<Item = (Vec<String>, Vec<String>)>,
    after: Option<u64>,
) -> Result<quipu_core::Condition, ApiError> {
    let items = items
        .map(|(types, tags)| {
            Ok(quipu_core::QueryItem {
                types: types.into_iter().map(quipu_core::EventType::new).collect::<Result<_, _>>()?,
                tags: tags.into_iter().map(quipu_core::Tag::new).collect::<Result<_, _>>()?,
            })
        })
        .collect::<Result<_, ApiError>>()?;
    Ok(quipu_core::Condition { query: quipu_core::Query { items }, after: after.map(quipu_core::Position) })
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;
    use quipu_core::{EventType, ExpectedRevision, Options, ProposedEvent, StreamName};

    use super::*;

    fn admission(store: &Arc<Store>, slots: usize) -> Arc<Admission> {
        Arc::new(Admission {
            blocks: Arc::new(Blocks::default()),
            schemas: Arc::new(crate::schema::Schemas::open(Arc::clone(store)).expect("schemas")),
            lifecycle: Arc::new(crate::lifecycle::Lifecycle::open(Arc::clone(store)).expect("lifecycle")),
            event_bytes_max: store.options().event_bytes_max,
            slots: Arc::new(Semaphore::new(slots)),
        })
    }

    fn append(n: u8) -> AppendRequest {
        let event = ProposedEvent::new(EventType::new("Noted").expect("valid"), vec![n]);
        AppendRequest::to_stream(StreamName::new("note-1").expect("valid"), ExpectedRevision::Any, vec![event])
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_makes_an_append_wait_without_blocking_and_keeps_the_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(dir.path(), Options::default()).expect("open"));
        let (metrics, admission) = (Arc::new(Metrics::default()), admission(&store, 1));
        let taken = Arc::clone(&admission.slots).try_acquire_owned().expect("the one slot");

        let mut waiting = Box::pin(submit(&store, &metrics, &admission, append(1)));
        assert!(waiting.as_mut().now_or_never().is_none(), "no room: the append waits, the thread goes on");
        assert_eq!(store.last_position(), None, "nothing was handed over");

        drop(taken);
        assert!(matches!(waiting.await, Ok(AppendOutcome::Written(_))));
        assert_eq!(admission.slots.available_permits(), 1, "the slot is back once the append is answered");

        // Queued appends are handed over in the order of the calls, each
        // once the one before it has left a slot.
        let first = submit_queued(&store, &metrics, &admission, append(2)).await;
        let second = submit_queued(&store, &metrics, &admission, append(3)).await;
        assert!(matches!(first.await, Ok(AppendOutcome::Written(_))));
        assert!(matches!(second.await, Ok(AppendOutcome::Written(_))));
        let data: Vec<Vec<u8>> = store
            .read_all(None, quipu_core::Direction::Forwards, 10)
            .expect("read")
            .into_iter()
            .map(|e| e.data)
            .collect();
        assert_eq!(data, [vec![1], vec![2], vec![3]]);
    }
}
