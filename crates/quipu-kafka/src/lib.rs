//! # quipu-kafka: the Kafka door
//!
//! Serves the Kafka wire protocol over a Quipu store, so Kafka tools
//! (kcat, librdkafka and Java clients, Connect, Flink) read `$all`, a
//! category or an event type as a topic ([`topic`] has the mapping).
//!
//! What it promises now:
//! - **ApiVersions** (0 to 3; an unsupported version gets the v0 answer
//!   with `UNSUPPORTED_VERSION`, as Kafka does), **Metadata** (1 to 12),
//!   **ListOffsets** (1 to 7: earliest, latest, by timestamp) and **Fetch**
//!   (4 to 12, with long polling and byte limits), **Produce** (3 to 9,
//!   acks 0, 1 and all; see [`produce`] for what a record must carry),
//!   **InitProducerId** for idempotent producers ([`idempotence`]),
//!   **CreateTopics** and **DescribeConfigs** for admin tools (every topic
//!   exists already; settings are read-only),
//!   and consumer groups: **FindCoordinator**, **JoinGroup**,
//!   **SyncGroup**, **Heartbeat**, **LeaveGroup**, **OffsetCommit** and
//!   **OffsetFetch** (see [`coordinator`]; committed offsets are durable,
//!   [`offset_store`]).
//! - One broker, node 0, at the address the client reached; every
//!   partition is led by it.
//! - A record is one event: offset = its position in `$all`, timestamp =
//!   its commit time (ms), key = its stream, value = its data, headers
//!   `quipu-event-id`, `quipu-event-type`, `quipu-stream-revision` and,
//!   when it has metadata, `quipu-metadata`. Events are read through the
//!   node's read path, as on every door: at their types' current versions
//!   (upcast).
//! - Bad requests get Kafka's error codes per topic and partition
//!   (`INVALID_TOPIC_EXCEPTION`, `UNKNOWN_TOPIC_OR_PARTITION`,
//!   `OFFSET_OUT_OF_RANGE`); a frame that does not decode, or an API this
//!   door does not offer, closes the connection, as a Kafka broker does.
//!
//! Requests on one connection are answered one at a time, in order.

pub mod topic;

mod admin;
mod api;
mod batches;
mod connection;
pub mod coordinator;
mod fetch;
mod groups;
pub mod idempotence;
mod metadata;
pub mod offset_store;
mod offsets;
pub mod produce;
pub mod record;

use std::future::Future;
use std::sync::Arc;

use quipu_core::Store;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Settings of the door.
#[derive(Debug, Clone)]
pub struct DoorConfig {
    /// Partitions of every category topic (default 4).
    pub category_partitions: i32,
    /// A connection that sends no request for this long is closed
    /// (Kafka's `connections.max.idle.ms`, 10 minutes by default; clients
    /// reconnect when they need to).
    pub idle_timeout: std::time::Duration,
    /// Once a request's first byte arrived, the rest must arrive within
    /// this, or the connection is closed (30 s by default): a client that
    /// sends half a request holds nothing for long.
    pub request_timeout: std::time::Duration,
    /// Connections the door holds open at once (10,000 by default, as
    /// the other doors); one more is closed as soon as it is accepted
    /// (Kafka's `max.connections`).
    pub connections_max: usize,
    /// Bytes of request frames the door buffers at once, across its
    /// connections (128 MiB by default): a frame's bytes are reserved
    /// before they are read, waiting up to `request_timeout` for room; a
    /// frame larger than this, or than Kafka's `socket.request.max.bytes`
    /// (100 MiB), closes its connection before anything is allocated.
    pub request_bytes_in_flight_max: usize,
}

impl Default for DoorConfig {
    fn default() -> DoorConfig {
        DoorConfig {
            category_partitions: 4,
            idle_timeout: std::time::Duration::from_secs(600),
            request_timeout: std::time::Duration::from_secs(30),
            connections_max: 10_000,
            request_bytes_in_flight_max: 128 * 1024 * 1024,
        }
    }
}

/// What can stop the door.
#[derive(Debug, thiserror::Error)]
pub enum DoorError {
    /// The settings cannot work.
    #[error("invalid Kafka door settings: {0}")]
    InvalidConfig(String),
    /// The committed offsets could not be read.
    #[error("reading Kafka consumer offsets: {0}")]
    Offsets(#[from] offset_store::OffsetError),
}

/// Bytes of record batches the door keeps for fetches asking the same.
const BATCHES_BYTES: usize = 16 * 1024 * 1024;

/// The door over one store.
pub struct Door {
    store: Arc<Store>,
    /// The node's one read path (upcasting).
    reads: quipu_node::Reads,
    /// What appends must pass, as on every door.
    admission: Arc<quipu_node::submission::Admission>,
    /// Append counters.
    metrics: Arc<quipu_node::metrics::Metrics>,
    /// The store's last readable position, moved by its head listener:
    /// long polls wait on it without a thread.
    head: tokio::sync::watch::Receiver<Option<quipu_core::Position>>,
    /// Fetches waiting for new events now: wakes are spaced by their
    /// number (see [`fetch`]).
    waiting: std::sync::atomic::AtomicUsize,
    config: DoorConfig,
    /// The connections open now, at most `config.connections_max`.
    connections: Arc<quipu_node::connection_cap::ConnectionCap>,
    /// The bytes of request frames being read now.
    frames: Arc<quipu_node::byte_budget::ByteBudget>,
    /// Batches lately answered, for fetches asking the same.
    batches: batches::Batches,
    coordinator: Arc<coordinator::Coordinator>,
    offsets: offset_store::OffsetStore,
    producers: idempotence::Producers,
}

impl std::fmt::Debug for Door {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Door").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Door {
    /// A door over `node`'s services: it appends through the node's
    /// admission and reads through its read path.
    ///
    /// # Errors
    /// [`DoorError::InvalidConfig`] for fewer than 1 or more than 1,000
    /// partitions per category, a timeout of 0, or a cap of 0 connections
    /// or bytes; [`DoorError::Offsets`]
    /// when the committed offsets do not read.
    pub fn new(node: &quipu_node::Node, config: DoorConfig) -> Result<Door, DoorError> {
        let store = Arc::clone(&node.store);
        if config.idle_timeout.is_zero() || config.request_timeout.is_zero() {
            return Err(DoorError::InvalidConfig("idle_timeout and request_timeout must be more than 0".into()));
        }
        if config.connections_max == 0 || config.request_bytes_in_flight_max == 0 {
            return Err(DoorError::InvalidConfig(
                "connections_max and request_bytes_in_flight_max must be more than 0".into(),
            ));
        }
        if !(1..=1000).contains(&config.category_partitions) {
            return Err(DoorError::InvalidConfig(format!(
                "category_partitions must be 1 to 1000, not {}",
                config.category_partitions
            )));
        }
        let offsets = offset_store::OffsetStore::open(Arc::clone(&store))?;
        let now_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        let producers = idempotence::Producers::new(now_us);
        let (sender, head) = tokio::sync::watch::channel(store.last_position());
        // An advance before this line is in the channel's first value.
        store.on_advance(Arc::new(move |last| {
            sender.send_replace(Some(last));
        }));
        Ok(Door {
            store,
            reads: node.reads.clone(),
            admission: Arc::clone(&node.admission),
            metrics: Arc::clone(&node.metrics),
            head,
            waiting: std::sync::atomic::AtomicUsize::new(0),
            connections: quipu_node::connection_cap::ConnectionCap::new("Kafka", config.connections_max),
            frames: quipu_node::byte_budget::ByteBudget::new(config.request_bytes_in_flight_max),
            config,
            batches: batches::Batches::new(BATCHES_BYTES),
            coordinator: coordinator::Coordinator::new(),
            offsets,
            producers,
        })
    }

    /// The result of `read`, run on the node's reader pool (see
    /// [`quipu_node::blocking::follow`]): a thousand consumers' fetches
    /// cost no thread each. `None` when it did not run to the end (it
    /// panicked).
    async fn read<T: Send + 'static>(&self, read: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        match quipu_node::blocking::follow(read).await {
            Ok(value) => Some(value),
            Err(error) => {
                tracing::error!(%error, "a Kafka door read failed");
                None
            }
        }
    }

    /// Submits `request` through the node's admission: at once when the
    /// sequencer's queue has room (so one connection's appends queue in
    /// order), else once it has, which the future awaits.
    fn submit(
        &self,
        request: quipu_core::AppendRequest,
    ) -> impl Future<Output = Result<quipu_core::AppendOutcome, quipu_node::ApiError>> + Send + use<> {
        quipu_node::submission::submit(&self.store, &self.metrics, &self.admission, request)
    }

    /// Partitions of `topic`.
    fn partitions(&self, topic: &topic::Topic) -> i32 {
        match topic {
            topic::Topic::Category(_) => self.config.category_partitions,
            topic::Topic::All | topic::Topic::EventType(_) => 1,
        }
    }
}

/// How long the door waits after a failed accept (out of file
/// descriptors, say) before it accepts again.
const ACCEPT_RETRY: std::time::Duration = std::time::Duration::from_millis(50);

/// Serves Kafka clients on `listener` until `stopping` turns true; each
/// connection runs as its own task and ends with the door, at most
/// [`DoorConfig::connections_max`] at once (one more is closed at once).
/// A failed accept is logged and retried: the door stays up.
pub async fn serve(door: Arc<Door>, listener: TcpListener, stopping: watch::Receiver<bool>) {
    let mut connections = tokio::task::JoinSet::new();
    let coordinator = Arc::clone(&door.coordinator);
    connections.spawn(async move {
        let mut ticks = tokio::time::interval(coordinator::TICK);
        loop {
            ticks.tick().await;
            coordinator.tick().await;
        }
    });
    let mut stop = stopping.clone();
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|stop| *stop) => break,
            accepted = listener.accept() => accepted,
        };
        let (socket, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accepting a Kafka connection");
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        let Some(permit) = door.connections.admit() else {
            drop(socket);
            continue;
        };
        if let Err(error) = socket.set_nodelay(true) {
            tracing::warn!(%error, "cannot set TCP_NODELAY on a Kafka connection");
        }
        let door = Arc::clone(&door);
        let stopping = stopping.clone();
        connections.spawn(async move {
            if let Err(error) = connection::run(door, socket, stopping).await {
                tracing::debug!(%peer, %error, "Kafka connection closed");
            }
            drop(permit);
        });
    }
    connections.shutdown().await;
}
