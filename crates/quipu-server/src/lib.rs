//! # quipu-server: Quipu over the network
//!
//! Serves a [`quipu_core::Store`] over HTTP/JSON (gRPC follows). What it
//! promises:
//!
//! - **Same guarantees as the engine.** A `200` for an append means the
//!   events are durable; a `409` means nothing was written and the body
//!   carries the stream's actual revision.
//! - **Bad input is a clear 4xx, never a 500**: every error body is
//!   `{"code": "...", "message": "..."}` with a machine code and a human
//!   message (`400` malformed, `404` missing stream, `409` conflict, `413`
//!   too large).
//! - **Graceful shutdown**: when the shutdown future resolves, the server
//!   stops accepting, finishes in-flight requests, and the store is closed
//!   (every acknowledged append is already durable).
//!
//! Modules: [`wire`] (the JSON shapes), `api_error` (errors as HTTP
//! responses), `http` (routes and handlers), `subscription` (SSE catch-up
//! then live), `metrics` (`/metrics`),
//! `openapi` (`/openapi.json`), and [`serve`].

#![deny(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]

mod api_error;
mod http;
mod metrics;
mod openapi;
mod subscription;
pub mod wire;

use std::future::Future;
use std::sync::Arc;

use quipu_core::Store;

pub use api_error::ApiError;

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listener failed.
    #[error("serving HTTP: {0}")]
    Io(#[from] std::io::Error),
    /// Closing the store failed (its log is durable regardless).
    #[error("closing the store: {0}")]
    Close(#[from] quipu_core::Error),
}

/// Serves `store` over HTTP on `listener` until `shutdown` resolves, then
/// drains in-flight requests and closes the store.
///
/// # Errors
/// [`ServerError`] when the listener fails or the store does not close
/// cleanly.
pub async fn serve(
    store: Store,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let store = Arc::new(store);
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let router = http::router(Arc::clone(&store), stopping);
    let shutdown = async move {
        shutdown.await;
        // Live subscriptions never finish on their own; tell them to end.
        let _ = stop.send(true);
    };
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await?;
    match Arc::try_unwrap(store) {
        Ok(store) => store.close()?,
        Err(_) => tracing::warn!("requests still hold the store; it closes when they finish"),
    }
    Ok(())
}
