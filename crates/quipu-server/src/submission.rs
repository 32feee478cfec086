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

/// Hands `request` to the sequencer now, unless `admission` refuses it;
/// the returned future resolves to its outcome. For a handler that awaits
/// this one append: when the store is idle, the append is committed on
/// this thread before this returns (see [`Store::submit_inline`]), which
/// spares two thread wake-ups. Dropping the future does not cancel the
/// append.
pub fn submit(
    store: &Store,
    metrics: &Arc<Metrics>,
    admission: &Admission,
    request: AppendRequest,
) -> impl Future<Output = Result<AppendOutcome, ApiError>> + use<> {
    hand_over(store, metrics, admission, request, true)
}

/// As [`submit`], for a handler that queues many appends before awaiting
/// them: it returns at once, and the appends share group commits.
pub fn submit_queued(
    store: &Store,
    metrics: &Arc<Metrics>,
    admission: &Admission,
    request: AppendRequest,
) -> impl Future<Output = Result<AppendOutcome, ApiError>> + use<> {
    hand_over(store, metrics, admission, request, false)
}

fn hand_over(
    store: &Store,
    metrics: &Arc<Metrics>,
    admission: &Admission,
    request: AppendRequest,
    inline: bool,
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
    futures_util::future::Either::Right(async move {
        Ok(outcome.await.map_err(|_| ApiError::from(quipu_core::Error::Closed))??)
    })
}

/// Appends of the Kafka door, admitted as every door's are.
pub struct KafkaAppends {
    /// The store.
    pub store: Arc<Store>,
    /// Append counters.
    pub metrics: Arc<Metrics>,
    /// What appends must pass.
    pub admission: Arc<Admission>,
}

impl quipu_kafka::Appends for KafkaAppends {
    fn submit(&self, request: AppendRequest) -> quipu_kafka::Submitted {
        let outcome = submit(&self.store, &self.metrics, &self.admission, request);
        Box::pin(async move {
            outcome.await.map_err(|error| quipu_kafka::Refusal { code: error.code.as_str(), message: error.message })
        })
    }
}
