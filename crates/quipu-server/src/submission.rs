//! Appends from async handlers: the request goes to the engine's
//! sequencer at once ([`Store::submit`] with a one-shot reply), and the
//! handler awaits the outcome without blocking the runtime. Submitting
//! before awaiting lets one connection pipeline many appends into the
//! same group commit. Appends to categories a blocking rebuild closed are
//! refused here, before the sequencer, so every door honours the block.

use std::future::Future;
use std::sync::Arc;

use quipu_core::{AppendOutcome, AppendRequest, Store};

use crate::ApiError;
use crate::metrics::Metrics;
use crate::projection::Blocks;

/// Hands `request` to the sequencer now, unless it writes to a category
/// that `blocks` closed; the returned future resolves to its outcome.
/// Dropping the future does not cancel the append.
pub fn submit(
    store: &Store,
    metrics: &Arc<Metrics>,
    blocks: &Blocks,
    request: AppendRequest,
) -> impl Future<Output = Result<AppendOutcome, ApiError>> + use<> {
    let refused = blocks.check(&request).err();
    let (reply, outcome) = tokio::sync::oneshot::channel();
    if let Some(error) = refused {
        return futures_util::future::Either::Left(std::future::ready(Err(error)));
    }
    let metrics = Arc::clone(metrics);
    store.submit(request, move |result| {
        metrics.count_append(&result);
        // The handler may have gone (client hung up); the append stands.
        let _ = reply.send(result);
    });
    futures_util::future::Either::Right(async move {
        Ok(outcome.await.map_err(|_| ApiError::from(quipu_core::Error::Closed))??)
    })
}
