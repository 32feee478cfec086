//! # quipu-server: Quipu's doors over the network
//!
//! Serves a [`quipu_core::Store`] over gRPC (`quipu.v1.Streams`, see
//! `proto/quipu/v1/streams.proto`) and HTTP/JSON with Server-Sent Events.
//! What it promises:
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
//! - **Graceful shutdown**: when the shutdown future resolves, both
//!   listeners stop accepting, subscriptions end, in-flight requests
//!   finish, and the store is closed (every acknowledged append is already
//!   durable).
//!
//! The services are [`quipu_node`]'s; this crate holds the doors over
//! them. Modules: `http` (routes, SSE, the Confluent schema routes,
//! `/openapi.json`, errors as HTTP answers), `grpc` (`quipu.v1` services,
//! their messages, and `native`, the framed transport of `quipu://`),
//! `kurrent` (the KurrentDB client protocol), `kafka` (the Kafka door's
//! hooks into the services), [`wire`] (the JSON shapes), `opening` (the
//! accept loops' preface and keepalive rules), and [`serve`].

mod grpc;
mod http;
mod kafka;
mod kurrent;
mod opening;
pub mod wire;

use std::future::Future;
use std::sync::Arc;

use quipu_core::Store;
use quipu_node::{
    feed, group, integration, lifecycle, metrics, projection, schema, snapshot, submission, tail, upcast,
};
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
    /// Closing the store failed (its log is durable regardless).
    #[error("closing the store: {0}")]
    Close(#[from] quipu_core::Error),
    /// The consumer groups could not be loaded from `$groups`.
    #[error("loading consumer groups: {}", .0.message)]
    Groups(ApiError),
    /// The integration types could not be loaded from
    /// `$integration-types`.
    #[error("loading integration types: {}", .0.message)]
    Integration(ApiError),
    /// The schema registry could not be loaded from `$schemas`.
    #[error("loading the schema registry: {}", .0.message)]
    Schemas(ApiError),
    /// Stream metadata could not be loaded from `$stream-metadata`.
    #[error("loading stream metadata: {}", .0.message)]
    Lifecycle(ApiError),
    /// The upcasters could not be loaded from `$upcasters`.
    #[error("loading upcasters: {}", .0.message)]
    Upcasters(ApiError),
    /// The snapshot policies could not be loaded.
    #[error("loading snapshot policies: {}", .0.message)]
    Snapshots(ApiError),
    /// The projections' rebuilds could not be loaded from `$projections`.
    #[error("loading projection rebuilds: {}", .0.message)]
    Projections(ApiError),
    /// The Kafka door could not start or failed.
    #[error(transparent)]
    Kafka(#[from] quipu_kafka::DoorError),
}

/// The Kafka door's socket and settings.
#[derive(Debug)]
pub struct KafkaListener {
    /// Where Kafka clients connect.
    pub listener: TcpListener,
    /// Partitions per category topic, and the rest.
    pub config: quipu_kafka::DoorConfig,
}

pub use kurrent::door::{Listener as KurrentListener, Tls as KurrentTls};

/// The sockets the server answers on.
#[derive(Debug)]
pub struct Listeners {
    /// gRPC (`quipu.v1.Streams` and the other services), over HTTP/2 and
    /// over Quipu's framed transport (what the Rust client speaks at
    /// `quipu://` addresses), told apart by how a connection opens.
    pub grpc: TcpListener,
    /// HTTP/JSON and SSE.
    pub http: TcpListener,
    /// The Kafka wire protocol (off when `None`).
    pub kafka: Option<KafkaListener>,
    /// The KurrentDB client protocol (off when `None`).
    pub kurrent: Option<KurrentListener>,
}

/// Limits on the doors' connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// How long an HTTP request's headers may take to arrive, which is
    /// also how long a kept-alive HTTP connection may sit idle between
    /// requests; then the connection is closed. A connection to the gRPC
    /// port or the KurrentDB port has as long to send its preface (a
    /// Kafka door's request as long to finish is set in its own
    /// [`quipu_kafka::DoorConfig`]).
    pub http_header_timeout: std::time::Duration,
    /// Connections to the gRPC and KurrentDB ports idle this long get TCP
    /// keepalive probes, this far apart, and are closed after three go
    /// unanswered: a peer that vanished without closing holds nothing for
    /// good. The peer's kernel answers the probes, so a client too busy
    /// to read for a while is not cut (HTTP/2 pings, which its process
    /// must answer, cut 3 of 200 subscribers catching up on two cores).
    pub keepalive: std::time::Duration,
}

impl Default for ConnectionLimits {
    fn default() -> ConnectionLimits {
        ConnectionLimits {
            http_header_timeout: std::time::Duration::from_secs(30),
            keepalive: std::time::Duration::from_secs(10),
        }
    }
}

/// Serves `store` on `listeners` until `shutdown` resolves, then drains
/// in-flight requests and closes the store; [`serve_with`] with the
/// default limits.
///
/// # Errors
/// As [`serve_with`].
pub async fn serve(
    store: Store,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    serve_with(store, listeners, shutdown, ConnectionLimits::default()).await
}

/// Serves `store` on `listeners`, their connections held to `limits`,
/// until `shutdown` resolves, then drains in-flight requests (for at most
/// [`SHUTDOWN_GRACE`]) and closes the store.
///
/// # Errors
/// [`ServerError`] when a listener fails or the store does not close
/// cleanly.
pub async fn serve_with(
    store: Store,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: ConnectionLimits,
) -> Result<(), ServerError> {
    let store = Arc::new(store);
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let kafka_stopping = stopping.clone();
    let live = feed::Live::follow(&store, stopping.clone(), tail::TailOptions::default());
    let blocks = Arc::new(projection::Blocks::default());
    let projections = Arc::new(
        projection::Projections::open(Arc::clone(&store), Arc::clone(&blocks)).map_err(ServerError::Projections)?,
    );
    let integration =
        Arc::new(integration::IntegrationTypes::open(Arc::clone(&store)).map_err(ServerError::Integration)?);
    let upcasters = Arc::new(upcast::Upcasters::open(Arc::clone(&store)).map_err(ServerError::Upcasters)?);
    let groups = Arc::new(
        group::Groups::open(group::Feeds {
            store: Arc::clone(&store),
            live: live.clone(),
            integration: Arc::clone(&integration),
            upcasters: Arc::clone(&upcasters),
        })
        .map_err(ServerError::Groups)?,
    );
    let lifecycle = Arc::new(lifecycle::Lifecycle::open(Arc::clone(&store)).map_err(ServerError::Lifecycle)?);
    let snapshots = Arc::new(
        snapshot::Snapshots::open(Arc::clone(&store), Arc::clone(&lifecycle)).map_err(ServerError::Snapshots)?,
    );
    let schemas = Arc::new(schema::Schemas::open(Arc::clone(&store)).map_err(ServerError::Schemas)?);
    let admission = Arc::new(submission::Admission {
        blocks,
        schemas: Arc::clone(&schemas),
        lifecycle: Arc::clone(&lifecycle),
        event_bytes_max: store.options().event_bytes_max,
        slots: Arc::new(tokio::sync::Semaphore::new((store.options().queue_appends_max / 2).max(1))),
    });
    let scavenger = Arc::new(lifecycle::scavenger::Scavenger::new(Arc::clone(&store), Arc::clone(&lifecycle)));
    let metrics = Arc::new(metrics::Metrics::default());
    // Built here, where it clones what it needs: a clone kept for later
    // would hold the store open past `close`.
    let door = match listeners.kafka {
        Some(KafkaListener { listener, config }) => {
            let appends = Arc::new(kafka::KafkaAppends {
                store: Arc::clone(&store),
                metrics: Arc::clone(&metrics),
                admission: Arc::clone(&admission),
            });
            let door =
                quipu_kafka::Door::new(Arc::clone(&store), appends, config)?.with_reads(Arc::new(kafka::KafkaReads));
            Some((Arc::new(door), listener))
        }
        None => None,
    };
    let stopped = |mut stopping: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopping.wait_for(|stop| *stop).await;
    };
    let router = http::router(http::Services {
        store: Arc::clone(&store),
        live: live.clone(),
        metrics: Arc::clone(&metrics),
        groups: Arc::clone(&groups),
        projections: Arc::clone(&projections),
        admission: Arc::clone(&admission),
        integration: Arc::clone(&integration),
        snapshots: Arc::clone(&snapshots),
        schemas: Arc::clone(&schemas),
        upcasters: Arc::clone(&upcasters),
        lifecycle: Arc::clone(&lifecycle),
        scavenger: Arc::clone(&scavenger),
    });
    let http_stopping = stopping.clone();
    let http = async move {
        http::server::serve(listeners.http, router, limits.http_header_timeout, http_stopping).await;
        Ok::<(), std::io::Error>(())
    };
    // Appends may be as large as the engine allows, with room for framing.
    let message_max = store.options().append_bytes_max.saturating_mul(2).saturating_add(64 * 1024);
    let kurrent = match listeners.kurrent {
        Some(listener) => {
            let door = kurrent::door::Door {
                streams: kurrent::streams::StreamsService {
                    store: Arc::clone(&store),
                    lifecycle: Arc::clone(&lifecycle),
                    live: live.clone(),
                    admission: Arc::clone(&admission),
                    metrics: Arc::clone(&metrics),
                },
                groups: Arc::clone(&groups),
                message_max,
            };
            Some(door.serve(listener, stopping.clone(), limits)?)
        }
        None => None,
    };
    let streams = Arc::new(grpc::StreamsService {
        store: Arc::clone(&store),
        live,
        metrics,
        admission,
        integration,
        upcasters: Arc::clone(&upcasters),
        lifecycle,
        scavenger: Arc::clone(&scavenger),
    });
    let unary = grpc::native::unary::Unary::new(Arc::clone(&streams), message_max);
    let service =
        quipu_proto::v1::streams_server::StreamsServer::from_arc(streams).max_decoding_message_size(message_max);
    let groups_service =
        quipu_proto::v1::groups_server::GroupsServer::new(grpc::group::GroupsService::new(Arc::clone(&groups)));
    let projections_service = quipu_proto::v1::projections_server::ProjectionsServer::new(
        grpc::projection::ProjectionsService::new(projections),
    );
    let snapshots_service =
        quipu_proto::v1::snapshots_server::SnapshotsServer::new(grpc::snapshot::SnapshotsService::new(snapshots))
            .max_decoding_message_size(message_max);
    // The last use moves each registry: one left here would hold the store
    // open past `close`.
    let schemas_service =
        quipu_proto::v1::schemas_server::SchemasServer::new(grpc::schema::SchemasService::new(schemas, upcasters));
    let routes = tonic::service::Routes::new(service)
        .add_service(groups_service)
        .add_service(projections_service)
        .add_service(snapshots_service)
        .add_service(schemas_service);
    let incoming = grpc::native::accept(
        listeners.grpc,
        routes.clone(),
        unary,
        stopping.clone(),
        limits.http_header_timeout,
        limits.keepalive,
    );
    let grpc = tonic::transport::Server::builder()
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, stopped(stopping.clone()));
    let kafka = async move {
        match door {
            Some((door, listener)) => {
                quipu_kafka::serve(door, listener, kafka_stopping).await;
                Ok::<(), ServerError>(())
            }
            None => Ok(()),
        }
    };
    let (stopping_http, stopping_grpc, stopping_kafka, stopping_kurrent) =
        (stopping.clone(), stopping.clone(), stopping.clone(), stopping);
    let stopping_groups = Arc::clone(&groups);
    let signal = async move {
        shutdown.await;
        // Live subscriptions never finish on their own; tell them to end.
        let _ = stop.send(true);
        // Groups write their checkpoints; their members' streams end.
        stopping_groups.shutdown().await;
        // A scavenge ends after the segment in hand.
        scavenger.shutdown();
    };
    let kurrent = async move {
        match kurrent {
            Some(server) => server.await,
            None => Ok(()),
        }
    };
    let (http, grpc, kafka, kurrent, ()) = tokio::join!(
        within_grace("HTTP", http, stopping_http),
        within_grace("gRPC", grpc, stopping_grpc),
        within_grace("Kafka", kafka, stopping_kafka),
        within_grace("KurrentDB", kurrent, stopping_kurrent),
        signal
    );
    drop(groups);
    http?;
    grpc?;
    kafka?;
    kurrent?;
    close(store).await
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

/// How long [`close`] waits for reads still running on the blocking pool.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Closes the store once the last request that holds it has finished.
async fn close(mut store: Arc<Store>) -> Result<(), ServerError> {
    let deadline = tokio::time::Instant::now() + CLOSE_WAIT;
    loop {
        match Arc::try_unwrap(store) {
            Ok(store) => return Ok(store.close()?),
            Err(shared) if tokio::time::Instant::now() < deadline => {
                store = shared;
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            Err(_) => {
                // Every acknowledged append is durable already.
                tracing::warn!("requests still hold the store after {CLOSE_WAIT:?}; it closes when they finish");
                return Ok(());
            }
        }
    }
}
