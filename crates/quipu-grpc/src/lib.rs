//! # quipu-grpc: Quipu's gRPC door
//!
//! The `quipu.v1` services over a node ([`serve`]): `Streams` (see
//! `proto/quipu/v1/streams.proto`), `Groups`, `Projections`, `Schemas`
//! and `Snapshots`, over HTTP/2 and over [`native`], the framed transport
//! the Rust client speaks at `quipu://` addresses, on one port. Appends go
//! to the sequencer without blocking the runtime; reads take the node's
//! one read path; subscriptions are [`Feed`]s. Service errors become gRPC
//! statuses in one exhaustive match ([`wire::status`]).
//!
//! [`opening`] holds the accept rules every HTTP/2 port shares (a preface
//! within the header timeout, TCP keepalive, accepts that survive
//! failures), with their [`ConnectionLimits`]; the KurrentDB door uses
//! them too. [`message_limit`] holds every call's messages to the size
//! limit, answering `RESOURCE_EXHAUSTED` past it.

pub mod group;
pub mod message_limit;
pub mod native;
pub mod opening;
pub mod projection;
pub mod schema;
pub mod snapshot;
pub mod wire;

use std::pin::Pin;
use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use quipu_core::{AppendOutcome, Position, RecordedEvent, Store, StreamName};
use quipu_proto::v1 as pb;
use quipu_proto::v1::streams_server::Streams;
use tonic::{Request, Response, Status, Streaming};

use quipu_node::feed::{Feed, Item, Source};
use quipu_node::integration::IntegrationTypes;
use quipu_node::lifecycle::scavenger::{ScavengeState, ScavengeStatus, Scavenger};
use quipu_node::lifecycle::{Lifecycle, Metadata};
use quipu_node::metrics::Metrics;
use quipu_node::{ApiError, ErrorCode};
use wire::status;

use quipu_node::as_of;
use quipu_node::submission::{Admission, submit, submit_queued};
use quipu_node::{ReadRequest, Reads, Shape};

/// Limits on the doors' connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// How long an HTTP request's headers may take to arrive, which is
    /// also how long a kept-alive HTTP connection may sit idle between
    /// requests; then the connection is closed. A connection to the gRPC
    /// port or the KurrentDB port has as long to send its preface (the
    /// Kafka door has its own settings).
    pub http_header_timeout: std::time::Duration,
    /// Connections to the gRPC and KurrentDB ports idle this long get TCP
    /// keepalive probes, this far apart, and are closed after three go
    /// unanswered: a peer that vanished without closing holds nothing for
    /// good. The peer's kernel answers the probes, so a client too busy
    /// to read for a while is not cut (HTTP/2 pings, which its process
    /// must answer, cut 3 of 200 subscribers catching up on two cores).
    pub keepalive: std::time::Duration,
    /// Connections each door (HTTP, gRPC, KurrentDB) holds open at once;
    /// one more is refused at once (see
    /// [`quipu_node::connection_cap`]).
    pub connections_max: usize,
    /// Bytes of requests each door buffers at once: HTTP bodies (see
    /// `quipu_http::body_budget`), gRPC messages (see [`message_limit`]).
    pub request_bytes_in_flight_max: usize,
}

/// Connections a door holds open at once unless told otherwise.
pub const CONNECTIONS_MAX_DEFAULT: usize = 10_000;

/// Bytes of request bodies a door buffers at once unless told otherwise.
pub const REQUEST_BYTES_IN_FLIGHT_MAX_DEFAULT: usize = 128 * 1024 * 1024;

impl Default for ConnectionLimits {
    fn default() -> ConnectionLimits {
        ConnectionLimits {
            http_header_timeout: std::time::Duration::from_secs(30),
            keepalive: std::time::Duration::from_secs(10),
            connections_max: CONNECTIONS_MAX_DEFAULT,
            request_bytes_in_flight_max: REQUEST_BYTES_IN_FLIGHT_MAX_DEFAULT,
        }
    }
}

/// Serves the gRPC services of `node` on `listener` (HTTP/2, and the
/// framed transport of `quipu://` on the same port), taking messages up
/// to `message_max` bytes (larger ones are RESOURCE_EXHAUSTED) and at
/// most `limits.connections_max` connections at once, until `stopping`
/// turns true.
pub async fn serve(
    node: &quipu_node::Node,
    listener: tokio::net::TcpListener,
    message_max: usize,
    limits: ConnectionLimits,
    stopping: tokio::sync::watch::Receiver<bool>,
) -> Result<(), tonic::transport::Error> {
    let streams = Arc::new(StreamsService {
        store: Arc::clone(&node.store),
        reads: node.reads.clone(),
        metrics: Arc::clone(&node.metrics),
        admission: Arc::clone(&node.admission),
        integration: Arc::clone(&node.integration),
        lifecycle: Arc::clone(&node.lifecycle),
        scavenger: Arc::clone(&node.scavenger),
    });
    let unary = native::unary::Unary::new(Arc::clone(&streams), message_max);
    let service =
        quipu_proto::v1::streams_server::StreamsServer::from_arc(streams).max_decoding_message_size(message_max);
    let groups = quipu_proto::v1::groups_server::GroupsServer::new(group::GroupsService::new(Arc::clone(&node.groups)))
        .max_decoding_message_size(message_max);
    let projections = quipu_proto::v1::projections_server::ProjectionsServer::new(projection::ProjectionsService::new(
        Arc::clone(&node.projections),
    ))
    .max_decoding_message_size(message_max);
    let snapshots = quipu_proto::v1::snapshots_server::SnapshotsServer::new(snapshot::SnapshotsService::new(
        Arc::clone(&node.snapshots),
    ))
    .max_decoding_message_size(message_max);
    let schemas = quipu_proto::v1::schemas_server::SchemasServer::new(schema::SchemasService::new(
        Arc::clone(&node.schemas),
        Arc::clone(&node.upcasters),
    ))
    .max_decoding_message_size(message_max);
    let routes = tonic::service::Routes::new(service)
        .add_service(groups)
        .add_service(projections)
        .add_service(snapshots)
        .add_service(schemas);
    let budget = quipu_node::byte_budget::ByteBudget::new(limits.request_bytes_in_flight_max);
    let routes = message_limit::limited(routes, message_max, budget);
    let cap = quipu_node::connection_cap::ConnectionCap::new("gRPC", limits.connections_max);
    let incoming = native::accept(listener, routes.clone(), unary, stopping.clone(), limits, cap);
    let mut stopped = stopping;
    tonic::transport::Server::builder()
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        })
        .await
}

/// Requests one `AppendBatch` call may carry: each holds a pending
/// outcome until the call ends.
pub const APPEND_BATCH_REQUESTS_MAX: usize = 10_000;

/// The service over one store; built from its parts.
pub struct StreamsService {
    /// The store.
    pub store: Arc<Store>,
    /// The one read path: lifecycle and upcasting.
    pub reads: Reads,
    /// Request counters.
    pub metrics: Arc<Metrics>,
    /// What appends must pass.
    pub admission: Arc<Admission>,
    /// The event types marked as integration events.
    pub integration: Arc<IntegrationTypes>,
    /// Stream metadata and deletes.
    pub lifecycle: Arc<Lifecycle>,
    /// The online scavenge.
    pub scavenger: Arc<Scavenger>,
}

impl StreamsService {
    /// The events `request` asks for, through the node's read path.
    async fn read(&self, request: ReadRequest) -> Result<Response<pb::ReadResponse>, Status> {
        let events = self.reads.read(request).await.map_err(status)?;
        Ok(Response::new(pb::ReadResponse { events: events.into_iter().map(wire::recorded_event).collect() }))
    }
}

/// The stream of a subscription.
type SubscribeStream = Pin<Box<dyn Stream<Item = Result<pb::SubscribeResponse, Status>> + Send>>;

/// Event bytes (data and metadata) past which a subscription's batch
/// message takes no more events.
const BATCH_BYTES: usize = 1024 * 1024;

/// The messages of a subscription following `feed`: with `batched`, an
/// event and those ready behind it go in one message; with `binary_ids`,
/// ids go as their 16 bytes.
fn subscription(feed: Feed, batched: bool, binary_ids: bool) -> SubscribeStream {
    use pb::subscribe_response::Message;
    let message_of: fn(RecordedEvent) -> pb::RecordedEvent =
        if binary_ids { wire::recorded_event_binary_id } else { wire::recorded_event };
    let stream = futures_util::stream::unfold(feed, move |mut feed| async move {
        let message = match feed.next_item().await? {
            Item::Event(event) if batched => {
                let mut events = vec![message_of(*event)];
                feed.take_ready_into(BATCH_BYTES, message_of, &mut events);
                Message::Events(pb::EventBatch { events })
            }
            Item::Event(event) => Message::Event(message_of(*event)),
            Item::CaughtUp(head) => Message::CaughtUp(pb::CaughtUp { last_position: head.map(|p| p.0) }),
        };
        Some((Ok(pb::SubscribeResponse { message: Some(message) }), feed))
    });
    Box::pin(stream)
}

/// An append's outcome as a message of a batch reply.
fn batch_outcome(outcome: Result<AppendOutcome, ApiError>) -> pb::AppendOutcome {
    use pb::append_outcome::Result as R;
    let result = match outcome {
        Ok(AppendOutcome::Written(result)) => R::Written(wire::append_response(&result, false)),
        Ok(AppendOutcome::AlreadyWritten(result)) => R::Written(wire::append_response(&result, true)),
        Ok(AppendOutcome::Conflict(conflict)) => R::Conflict(wire::conflict_message(&conflict)),
        Err(error) => {
            let status = status(error);
            R::Error(pb::Error { code: status.code() as i32, message: status.message().to_string() })
        }
    };
    pb::AppendOutcome { result: Some(result) }
}

#[tonic::async_trait]
impl Streams for StreamsService {
    async fn append(&self, request: Request<pb::AppendRequest>) -> Result<Response<pb::AppendResponse>, Status> {
        let request = wire::append_request(request.into_inner()).map_err(status)?;
        match submit(&self.store, &self.metrics, &self.admission, request).await.map_err(status)? {
            AppendOutcome::Written(result) => Ok(Response::new(wire::append_response(&result, false))),
            AppendOutcome::AlreadyWritten(result) => Ok(Response::new(wire::append_response(&result, true))),
            AppendOutcome::Conflict(conflict) => Err(wire::conflict_status(&conflict)),
        }
    }

    async fn append_batch(
        &self,
        request: Request<Streaming<pb::AppendRequest>>,
    ) -> Result<Response<pb::AppendBatchResponse>, Status> {
        let mut requests = request.into_inner();
        // Submit each request as it arrives so they share group commits;
        // collect the outcomes in order.
        let mut pending = Vec::new();
        while let Some(request) = requests.next().await {
            let request = request?;
            if pending.len() == APPEND_BATCH_REQUESTS_MAX {
                // Appends already submitted stand; the client learns which
                // by retrying with the same ids.
                return Err(Status::resource_exhausted(format!(
                    "too_many_requests: an AppendBatch call takes at most {APPEND_BATCH_REQUESTS_MAX} requests; \
                     the first {APPEND_BATCH_REQUESTS_MAX} were submitted, retry the rest in another call"
                )));
            }
            pending.push(match wire::append_request(request) {
                Ok(request) => {
                    let queued = submit_queued(&self.store, &self.metrics, &self.admission, request).await;
                    futures_util::future::Either::Left(queued)
                }
                Err(error) => futures_util::future::Either::Right(std::future::ready(Err(error))),
            });
        }
        let mut outcomes = Vec::with_capacity(pending.len());
        for outcome in pending {
            outcomes.push(batch_outcome(outcome.await));
        }
        Ok(Response::new(pb::AppendBatchResponse { outcomes }))
    }

    async fn read_stream(&self, request: Request<pb::ReadStreamRequest>) -> Result<Response<pb::ReadResponse>, Status> {
        let request = request.into_inner();
        let stream = StreamName::readable(request.stream).map_err(|e| status(e.into()))?;
        let direction = wire::direction(request.direction).map_err(status)?;
        let as_of = as_of(request.to_revision, request.to_position, request.as_of_us, true).map_err(status)?;
        let (from, limit) = (request.from_revision, wire::limit(request.limit));
        let (shape, wait_for, caught_up) =
            (Shape::raw_if(request.raw), request.wait_for_position.map(Position), request.caught_up);
        let source = Source::Stream(stream);
        self.read(ReadRequest { source, from, direction, limit, as_of, shape, wait_for, caught_up }).await
    }

    async fn read_all(&self, request: Request<pb::ReadAllRequest>) -> Result<Response<pb::ReadResponse>, Status> {
        let request = request.into_inner();
        let direction = wire::direction(request.direction).map_err(status)?;
        let as_of = as_of(None, request.to_position, request.as_of_us, false).map_err(status)?;
        let (from, limit) = (request.from_position, wire::limit(request.limit));
        let (shape, wait_for, caught_up) =
            (Shape::raw_if(request.raw), request.wait_for_position.map(Position), request.caught_up);
        self.read(ReadRequest { source: Source::All, from, direction, limit, as_of, shape, wait_for, caught_up }).await
    }

    async fn read_filtered(
        &self,
        request: Request<pb::ReadFilteredRequest>,
    ) -> Result<Response<pb::ReadResponse>, Status> {
        let request = request.into_inner();
        let source = wire::source(request.filter, &self.integration).map_err(status)?;
        if matches!(source, Source::All | Source::Stream(_)) {
            return Err(status(ApiError::new(
                ErrorCode::InvalidFilter,
                "ReadFiltered reads a category, an event type, a tag or the integration events; use ReadAll or ReadStream",
            )));
        }
        let direction = wire::direction(request.direction).map_err(status)?;
        let as_of = as_of(None, request.to_position, request.as_of_us, false).map_err(status)?;
        let (from, limit) = (request.from_position, wire::limit(request.limit));
        let (shape, wait_for, caught_up) =
            (Shape::raw_if(request.raw), request.wait_for_position.map(Position), request.caught_up);
        self.read(ReadRequest { source, from, direction, limit, as_of, shape, wait_for, caught_up }).await
    }

    type SubscribeStream = SubscribeStream;

    async fn subscribe(&self, request: Request<pb::SubscribeRequest>) -> Result<Response<SubscribeStream>, Status> {
        let request = request.into_inner();
        let source = wire::source(request.filter, &self.integration).map_err(status)?;
        let start = wire::start(request.start, &source);
        let feed = self.reads.subscribe(source, start, Shape::raw_if(request.raw)).map_err(status)?;
        Ok(Response::new(subscription(feed, request.batched, request.binary_ids)))
    }

    async fn get_stream_metadata(
        &self,
        request: Request<pb::StreamInfoRequest>,
    ) -> Result<Response<pb::StreamMetadata>, Status> {
        Ok(Response::new(metadata_message(&self.lifecycle.metadata(&request.into_inner().stream))))
    }

    async fn set_stream_metadata(
        &self,
        request: Request<pb::SetStreamMetadataRequest>,
    ) -> Result<Response<pb::StreamMetadata>, Status> {
        let r = request.into_inner();
        let m = r.metadata.unwrap_or_default();
        let custom = if m.custom_json.is_empty() {
            None
        } else {
            Some(serde_json::from_str(&m.custom_json).map_err(|e| {
                status(ApiError::new(ErrorCode::InvalidMetadata, format!("custom_json is not JSON: {e}")))
            })?)
        };
        let metadata = Metadata {
            max_count: m.max_count,
            max_age_s: m.max_age_s,
            truncate_before: m.truncate_before,
            custom,
            tombstoned: m.tombstoned,
        };
        let set = self.lifecycle.set(&r.stream, metadata).await.map_err(status)?;
        Ok(Response::new(metadata_message(&set)))
    }

    async fn delete_stream(
        &self,
        request: Request<pb::DeleteStreamRequest>,
    ) -> Result<Response<pb::StreamMetadata>, Status> {
        let r = request.into_inner();
        let set = if r.tombstone {
            self.lifecycle.tombstone(&r.stream).await
        } else {
            self.lifecycle.delete(&r.stream).await
        };
        Ok(Response::new(metadata_message(&set.map_err(status)?)))
    }

    async fn list_integration_types(
        &self,
        _request: Request<pb::Empty>,
    ) -> Result<Response<pb::IntegrationTypes>, Status> {
        Ok(Response::new(integration_types(&self.integration.snapshot())))
    }

    async fn mark_integration_types(
        &self,
        request: Request<pb::IntegrationTypes>,
    ) -> Result<Response<pb::IntegrationTypes>, Status> {
        let marked = self.integration.mark(&request.into_inner().types).await.map_err(status)?;
        Ok(Response::new(integration_types(&marked)))
    }

    async fn unmark_integration_types(
        &self,
        request: Request<pb::IntegrationTypes>,
    ) -> Result<Response<pb::IntegrationTypes>, Status> {
        let marked = self.integration.unmark(&request.into_inner().types).await.map_err(status)?;
        Ok(Response::new(integration_types(&marked)))
    }

    async fn start_scavenge(&self, _request: Request<pb::Empty>) -> Result<Response<pb::ScavengeStatus>, Status> {
        Ok(Response::new(scavenge_message(self.scavenger.start().map_err(status)?)))
    }

    async fn get_scavenge(&self, _request: Request<pb::Empty>) -> Result<Response<pb::ScavengeStatus>, Status> {
        Ok(Response::new(scavenge_message(self.scavenger.status().map_err(status)?)))
    }

    async fn stop_scavenge(&self, _request: Request<pb::Empty>) -> Result<Response<pb::ScavengeStatus>, Status> {
        Ok(Response::new(scavenge_message(self.scavenger.stop().map_err(status)?)))
    }

    async fn stream_info(
        &self,
        request: Request<pb::StreamInfoRequest>,
    ) -> Result<Response<pb::StreamInfoResponse>, Status> {
        let stream = StreamName::readable(request.into_inner().stream).map_err(|e| status(e.into()))?;
        let store = Arc::clone(&self.store);
        let info = quipu_node::blocking::read(move || store.stream_info(&stream))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| status(e.into()))?;
        Ok(Response::new(pb::StreamInfoResponse {
            stream: info.stream.to_string(),
            exists: info.exists(),
            last_revision: info.last_revision.map(|r| r.0),
        }))
    }
}

fn integration_types(types: &std::collections::BTreeSet<quipu_core::EventType>) -> pb::IntegrationTypes {
    pb::IntegrationTypes { types: types.iter().map(|t| t.as_str().to_string()).collect() }
}

fn metadata_message(metadata: &Metadata) -> pb::StreamMetadata {
    pb::StreamMetadata {
        max_count: metadata.max_count,
        max_age_s: metadata.max_age_s,
        truncate_before: metadata.truncate_before,
        custom_json: metadata.custom.as_ref().map(ToString::to_string).unwrap_or_default(),
        tombstoned: metadata.tombstoned,
    }
}

fn scavenge_message(status: ScavengeStatus) -> pb::ScavengeStatus {
    let state = match status.state {
        ScavengeState::Running => pb::ScavengeState::Running,
        ScavengeState::Done => pb::ScavengeState::Done,
        ScavengeState::Stopped => pb::ScavengeState::Stopped,
        ScavengeState::Failed => pb::ScavengeState::Failed,
    };
    let progress = status.progress;
    pb::ScavengeStatus {
        started_at_us: status.started_at_us,
        finished_at_us: status.finished_at_us,
        state: state.into(),
        streams: status.streams as u64,
        segments_total: progress.segments_total,
        segments_done: progress.segments_done,
        segments_rewritten: progress.segments_rewritten,
        bytes_total: progress.bytes_total,
        bytes_scanned: progress.bytes_scanned,
        bytes_reclaimed: progress.bytes_reclaimed,
        events_removed: progress.events_removed,
        bytes_per_second: status.bytes_per_second,
        message: status.message,
    }
}
