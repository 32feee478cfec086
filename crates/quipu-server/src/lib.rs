//! # quipu-server: Quipu's doors, run together
//!
//! Serves a [`quipu_core::Store`] over gRPC (`quipu.v1.Streams`, see
//! `proto/quipu/v1/streams.proto`), HTTP/JSON with Server-Sent Events and
//! the KurrentDB client protocol. What it promises:
//!
//! - **Same guarantees as the engine.** A successful append answer means
//!   the events are durable; a conflict (HTTP `409`, gRPC
//!   `FAILED_PRECONDITION`) means nothing was written and carries each
//!   stream's actual revision.
//! - **Bad input is a clear client error, never an internal one**: HTTP
//!   error bodies are `{"code": "...", "message": "..."}` (`400` malformed,
//!   `404` missing stream, `409` conflict, `413` too large); gRPC statuses
//!   are `INVALID_ARGUMENT`, `NOT_FOUND`, `FAILED_PRECONDITION` and
//!   `RESOURCE_EXHAUSTED` with the same code and message.
//! - **Subscriptions** (SSE and gRPC) send every matching event once, in
//!   order, across the switch from catch-up to live, without a thread per
//!   subscriber.
//! - **Graceful shutdown**: when the shutdown future resolves, the
//!   listeners stop accepting, subscriptions end, in-flight requests
//!   finish, and the store is closed (every acknowledged append is already
//!   durable).
//!
//! The services are [`quipu_node`]'s and each door is a crate of its own
//! over them: [`quipu_http`] (routes, SSE, the Confluent schema routes,
//! `/openapi.json`), [`quipu_grpc`] (the `quipu.v1` services and the framed
//! transport of `quipu://`) and [`quipu_kurrent`] (the KurrentDB client
//! protocol). This crate only runs them: [`serve_node`] serves them, and
//! the doors the binary adds (the Kafka door), over one [`Node`] until
//! shutdown.

use std::future::Future;

use quipu_core::Store;
pub use quipu_node::Node;
use tokio::net::TcpListener;

pub use quipu_node::{ApiError, ErrorCode, ErrorKind};

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The HTTP listener failed.
    #[error("serving HTTP: {0}")]
    Io(#[from] std::io::Error),
    /// The gRPC server failed.
    #[error("serving gRPC: {0}")]
    Grpc(#[from] tonic::transport::Error),
    /// A service of the node did not open.
    #[error(transparent)]
    Open(#[from] quipu_node::OpenError),
    /// The KurrentDB door could not start.
    #[error(transparent)]
    Kurrent(#[from] quipu_kurrent::DoorError),
}

/// A door served beside this crate's, wired by the binary (the Kafka
/// door): it runs until the node's stop signal, within
/// [`SHUTDOWN_GRACE`] like the others.
pub struct OtherDoor {
    /// The door's name, for logs.
    pub name: &'static str,
    /// The door serving; it ends soon after the node's
    /// [`Node::stopping`] turns true.
    pub serving: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl std::fmt::Debug for OtherDoor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtherDoor").field("name", &self.name).finish_non_exhaustive()
    }
}

pub use quipu_grpc::{CONNECTIONS_MAX_DEFAULT, ConnectionLimits, REQUEST_BYTES_IN_FLIGHT_MAX_DEFAULT};
pub use quipu_kurrent::{Listener as KurrentListener, Tls as KurrentTls};

/// The sockets the server answers on.
#[derive(Debug)]
pub struct Listeners {
    /// gRPC (`quipu.v1.Streams` and the other services), over HTTP/2 and
    /// over Quipu's framed transport (what the Rust client speaks at
    /// `quipu://` addresses), told apart by how a connection opens.
    pub grpc: TcpListener,
    /// HTTP/JSON and SSE.
    pub http: TcpListener,
    /// The KurrentDB client protocol (off when `None`).
    pub kurrent: Option<KurrentListener>,
}

/// Serves `store` on `listeners` until `shutdown` resolves, then drains
/// in-flight requests and closes the store: [`serve_node`] over the
/// store's [`Node`], with the default limits and no other door.
///
/// # Errors
/// As [`serve_node`]; [`ServerError::Open`] when a service does not open.
pub async fn serve(
    store: Store,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    serve_node(Node::open(store)?, listeners, shutdown, ConnectionLimits::default(), Vec::new()).await
}

/// Serves `node` on `listeners`, their connections held to `limits`, and
/// runs `others` beside them, until `shutdown` resolves; then stops the
/// node, drains in-flight requests (for at most [`SHUTDOWN_GRACE`]) and
/// closes the store.
///
/// # Errors
/// [`ServerError`] when a listener fails or the store does not close
/// cleanly.
pub async fn serve_node(
    node: Node,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: ConnectionLimits,
    others: Vec<OtherDoor>,
) -> Result<(), ServerError> {
    let stopping = node.stopping();
    // A request waits for room among the bodies in flight as long as
    // its headers may take to arrive.
    let bodies = quipu_node::byte_budget::ByteBudget::new(limits.request_bytes_in_flight_max);
    let router = quipu_http::router(&node, bodies, limits.http_header_timeout);
    let http_stopping = stopping.clone();
    let http_cap = quipu_node::connection_cap::ConnectionCap::new("HTTP", limits.connections_max);
    let http = async move {
        quipu_http::server::serve(listeners.http, router, limits.http_header_timeout, http_cap, http_stopping).await;
        Ok::<(), std::io::Error>(())
    };
    // Appends may be as large as the engine allows, with room for framing.
    let message_max = node.store.options().append_bytes_max.saturating_mul(2).saturating_add(64 * 1024);
    let kurrent = match listeners.kurrent {
        Some(listener) => Some(quipu_kurrent::serve(&node, listener, message_max, limits, stopping.clone())?),
        None => None,
    };
    let grpc = quipu_grpc::serve(&node, listeners.grpc, message_max, limits, stopping.clone());
    let signal = async {
        shutdown.await;
        // Live subscriptions end, groups write their checkpoints, a
        // scavenge ends after the segment in hand.
        node.stop().await;
    };
    let kurrent = async move {
        match kurrent {
            Some(server) => server.await,
            None => Ok(()),
        }
    };
    let others = futures_util::future::join_all(others.into_iter().map(|door| {
        let serving = async move {
            door.serving.await;
            Ok::<(), std::convert::Infallible>(())
        };
        within_grace(door.name, serving, stopping.clone())
    }));
    let (http, grpc, kurrent, others, ()) = tokio::join!(
        within_grace("HTTP", http, stopping.clone()),
        within_grace("gRPC", grpc, stopping.clone()),
        within_grace("KurrentDB", kurrent, stopping.clone()),
        others,
        signal
    );
    http?;
    grpc?;
    kurrent?;
    // Other doors end without an error to give.
    drop(others);
    // The log is durable whatever closing meets (a full disk, a store
    // that stopped after a failed write): the index it could not flush is
    // rebuilt from the log at the next open, so the server still stops
    // cleanly.
    if let Err(error) = node.close().await {
        tracing::warn!(%error, "the index could not be saved at close; the next open indexes the log again (nothing acknowledged is lost)");
    }
    Ok(())
}

/// How long the doors may take, once the stop signal came, to finish what
/// their connections are doing (in-flight appends are answered, live
/// subscriptions end); then the server stops waiting for them: a
/// connection that never finishes its request, never sends a protocol
/// preface or never reads is cut when the store closes.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// `serving` (one door), or `Ok` once [`SHUTDOWN_GRACE`] has passed
/// since the stop signal, whichever comes first.
async fn within_grace<E>(
    door: &'static str,
    serving: impl Future<Output = Result<(), E>>,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) -> Result<(), E> {
    let grace_over = async move {
        let _ = stopping.wait_for(|stop| *stop).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        served = serving => served,
        () = grace_over => {
            tracing::warn!(door, "connections still open {SHUTDOWN_GRACE:?} after the stop signal; cutting them");
            Ok(())
        }
    }
}
