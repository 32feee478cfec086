//! # quipu-http: Quipu's HTTP/JSON door
//!
//! The routes and handlers of the HTTP/JSON API over a [`Node`]'s
//! services ([`router`]), served by [`server::serve`]. Appends go through
//! the node's admission to the sequencer without blocking the runtime;
//! reads and subscriptions (Server-Sent Events, [`sse`]) take the node's
//! one read path. Errors answer as `{"code": "...", "message": "..."}`
//! with the status of their kind ([`error`], one exhaustive match).
//! Modules: one per service's routes, [`confluent`] (the Confluent
//! schema-registry routes), [`openapi`] (`/openapi.json`), [`wire`] (the
//! JSON shapes) and [`mirror`] (the shapes of JSON built elsewhere, for
//! the document). Every route is registered through an `OpenApiRouter`
//! with its handler's `#[utoipa::path]` annotation, so the OpenAPI
//! document describes each route the router serves.

pub mod automatic_answer;
pub mod body_budget;
pub mod confluent;
pub mod error;
pub mod group;
pub mod integration;
pub mod lifecycle;
pub mod mirror;
pub mod openapi;
pub mod projection;
pub mod request_path;
pub mod schema;
pub mod server;
pub mod snapshot;
pub mod sse;
pub mod upcast;
pub mod wire;

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::{Json, Router};
use quipu_core::{AppendOutcome, AppendRequest, Direction, EventType, Position, Store, StreamName, Tag};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ErrorBody, HttpError};
use crate::mirror::{Events, ReadDirection, StreamMetadata};
use crate::wire::{AppendBody, AppendJson, EventJson, MultiAppendBody, MultiAppendJson, expected_revision};
use quipu_node::feed::{Live, Source};
use quipu_node::integration::IntegrationTypes;
use quipu_node::lifecycle::Lifecycle;
use quipu_node::metrics::Metrics;
use quipu_node::submission::Admission;
use quipu_node::{ApiError, ErrorCode};
use quipu_node::{Node, ReadRequest, Reads, Shape};

/// Events a read returns when it names no limit.
const DEFAULT_READ_LIMIT: usize = 100;

type Shared = Arc<Store>;

/// The API's routes over `node`'s services; `/openapi.json` serves the
/// document of exactly these routes. Request bodies are buffered within
/// `bytes_in_flight`, a request waiting up to `budget_wait` for room (see
/// [`body_budget`]); paths are checked before any route sees them
/// ([`request_path`]).
pub fn router(
    node: &Node,
    bytes_in_flight: Arc<quipu_node::byte_budget::ByteBudget>,
    budget_wait: std::time::Duration,
) -> Router {
    // JSON costs more than the stored bytes: allow twice the append limit
    // plus room for the envelope; the engine checks the exact limits.
    let body_limit = node.store.options().append_bytes_max.saturating_mul(2).saturating_add(64 * 1024);
    let bodies =
        Arc::new(body_budget::BodyBudget { budget: bytes_in_flight, body_bytes_max: body_limit, wait: budget_wait });
    let counting = Arc::clone(&node.metrics);
    let (router, api) = routes(node).split_for_parts();
    router
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(bodies, body_budget::guard))
        .layer(axum::middleware::from_fn(request_path::check))
        .layer(axum::middleware::from_fn(move |request, next: axum::middleware::Next| {
            let counting = Arc::clone(&counting);
            async move {
                let response = next.run(request).await;
                counting.count_response(response.status().as_u16());
                response
            }
        }))
        .layer(Extension(Arc::clone(&node.metrics)))
        .layer(Extension(Arc::clone(&node.admission)))
        .layer(Extension(Arc::clone(&node.integration)))
        .layer(Extension(node.reads.clone()))
        .layer(Extension(Arc::clone(&node.lifecycle)))
        .layer(Extension(node.live.clone()))
        .layer(Extension(openapi::Document::new(api)))
}

/// Every route over `node`'s services, each registered with its
/// handler's description for the OpenAPI document.
fn routes(node: &Node) -> OpenApiRouter {
    OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(health))
        .routes(routes!(render_metrics))
        .routes(routes!(openapi::serve))
        .routes(routes!(read_stream, append_to_stream, delete_stream))
        .routes(routes!(append_multi))
        .routes(routes!(read_all))
        .routes(routes!(subscribe))
        .routes(routes!(read_category))
        .routes(routes!(read_event_type))
        .routes(routes!(read_tag))
        .routes(routes!(read_integration))
        .with_state(Arc::clone(&node.store))
        .merge(crate::group::router(Arc::clone(&node.groups)))
        .merge(crate::projection::router(Arc::clone(&node.projections)))
        .merge(crate::integration::router(Arc::clone(&node.integration)))
        .merge(crate::snapshot::router(Arc::clone(&node.snapshots)))
        .merge(crate::confluent::router(Arc::clone(&node.schemas)))
        .merge(crate::schema::router(Arc::clone(&node.schemas)))
        .merge(crate::upcast::router(Arc::clone(&node.upcasters)))
        .merge(crate::lifecycle::router(Arc::clone(&node.lifecycle)))
        .merge(crate::lifecycle::scavenge_router(Arc::clone(&node.scavenger)))
}

/// Prometheus text metrics.
#[utoipa::path(get, path = "/metrics", tag = "service",
    responses((status = 200, description = "The metrics, in Prometheus' text format.", body = String, content_type = "text/plain")))]
async fn render_metrics(
    State(store): State<Shared>,
    Extension(metrics): Extension<Arc<Metrics>>,
    Extension(live): Extension<Live>,
) -> String {
    metrics.render(&store, &live)
}

/// 404 for a path no route has, as JSON like every other error.
async fn route_not_found(method: axum::http::Method, uri: axum::http::Uri) -> HttpError {
    let path = uri.path();
    HttpError(ApiError::new(
        ErrorCode::RouteNotFound,
        format!("no route for {method} {path}: see /openapi.json for the API"),
    ))
}

/// 405 for a path that does not take the request's method, as JSON.
async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> HttpError {
    let path = uri.path();
    HttpError(ApiError::new(ErrorCode::MethodNotAllowed, format!("{path} does not take {method}: see /openapi.json")))
}

/// Answer of the health check: what the store can do now.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Health)]
struct Health {
    /// `ok` when the store takes appends and serves reads, `unavailable`
    /// when it takes no appends.
    status: &'static str,
    /// Whether reads are served (always, while the server answers).
    readable: bool,
    /// Whether appends are taken.
    writable: bool,
    /// Why appends are not taken (a failed write: restart the server once
    /// the cause is fixed; or, in a cluster, this node stopped applying
    /// the topic); absent when they are.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// The store's health: 200 when it takes appends, 503 when it does not
/// (a load balancer then sends clients elsewhere, an orchestrator may
/// restart it); reads go on either way.
#[utoipa::path(get, path = "/health", tag = "service",
    responses(
        (status = 200, description = "The store takes appends and serves reads.", body = Health),
        (status = 503, description = "The store takes no appends (`reason` says why); reads are still served.", body = Health)))]
async fn health(State(store): State<Shared>) -> (StatusCode, Json<Health>) {
    let reason = store.unwritable();
    let (code, status) = match reason {
        None => (StatusCode::OK, "ok"),
        Some(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
    };
    (code, Json(Health { status, readable: true, writable: reason.is_none(), reason }))
}

/// Append events to one stream.
#[utoipa::path(post, path = "/v1/streams/{stream}", tag = "streams",
    params(("stream" = String, Path, description = "The stream.")),
    request_body = AppendBody,
    responses(
        (status = 200, description = "Written (durable) or, for a retry with the same ids, already written.", body = AppendJson),
        (status = 400, description = "Malformed input: JSON, names, ids, expected revision.", body = ErrorBody),
        (status = 409, description = "The expected revision did not hold (`stream`, `expected`, `actual`, `streams`), ids were reused by another append, or the category is closed while a projection rebuilds. Nothing was written.", body = ErrorBody),
        (status = 410, description = "The stream is tombstoned.", body = ErrorBody),
        (status = 413, description = "An event or the append is too large.", body = ErrorBody),
        (status = 422, description = "An event does not match its type's schema.", body = ErrorBody)))]
async fn append_to_stream(
    State(store): State<Shared>,
    Extension(metrics): Extension<Arc<Metrics>>,
    Extension(admission): Extension<Arc<Admission>>,
    Path(stream): Path<String>,
    body: Result<Json<AppendBody>, JsonRejection>,
) -> Result<Json<AppendJson>, HttpError> {
    let Json(body) = body?;
    let stream = StreamName::new(stream)?;
    let expected = expected_revision(body.expected_revision.as_ref())?;
    let events = body.events.into_iter().map(|e| e.into_proposed()).collect::<Result<Vec<_>, _>>()?;
    let request = AppendRequest::to_stream(stream, expected, events);
    match quipu_node::submission::submit(&store, &metrics, &admission, request).await? {
        AppendOutcome::Written(result) => Ok(Json(AppendJson::new(&result, false))),
        AppendOutcome::AlreadyWritten(result) => Ok(Json(AppendJson::new(&result, true))),
        AppendOutcome::Conflict(conflict) => Err(quipu_node::conflict_error(&conflict).into()),
    }
}

/// Append atomically to several streams, with an optional DCB condition.
#[utoipa::path(post, path = "/v1/append", tag = "streams",
    request_body = MultiAppendBody,
    responses(
        (status = 200, description = "Written (durable) or, for a retry with the same ids, already written.", body = MultiAppendJson),
        (status = 400, description = "Malformed input: JSON, names, ids, expected revisions, condition.", body = ErrorBody),
        (status = 409, description = "A condition failed (`streams`, `condition_position`), ids were reused by another append, or a category is closed while a projection rebuilds. Nothing was written.", body = ErrorBody),
        (status = 410, description = "A stream is tombstoned.", body = ErrorBody),
        (status = 413, description = "An event or the append is too large.", body = ErrorBody),
        (status = 422, description = "An event does not match its type's schema.", body = ErrorBody)))]
async fn append_multi(
    State(store): State<Shared>,
    Extension(metrics): Extension<Arc<Metrics>>,
    Extension(admission): Extension<Arc<Admission>>,
    body: Result<Json<MultiAppendBody>, JsonRejection>,
) -> Result<Json<MultiAppendJson>, HttpError> {
    let Json(body) = body?;
    match quipu_node::submission::submit(&store, &metrics, &admission, body.into_request()?).await? {
        AppendOutcome::Written(result) => Ok(Json(MultiAppendJson::new(&result, false))),
        AppendOutcome::AlreadyWritten(result) => Ok(Json(MultiAppendJson::new(&result, true))),
        AppendOutcome::Conflict(conflict) => Err(quipu_node::conflict_error(&conflict).into()),
    }
}

/// Query of a read: `from` is a revision for streams and a position for
/// everything else, inclusive; `direction` is `forwards` (default) or
/// `backwards`; `limit` defaults to 100. At most one of `to_revision`
/// (streams), `to_position` and `as_of_us` reads as things stood then.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ReadQuery {
    /// First revision of a stream, first position of anything else
    /// (inclusive); the start forwards, the end backwards when absent.
    from: Option<u64>,
    /// Events at most (the server's maximum is 10000 by default).
    #[param(default = 100)]
    limit: Option<usize>,
    /// `forwards` (the default) or `backwards`.
    #[param(value_type = Option<ReadDirection>, inline)]
    direction: Option<String>,
    /// Streams only: read as the stream stood just after this revision.
    to_revision: Option<u64>,
    /// Read as things stood just after this position of `$all`.
    to_position: Option<u64>,
    /// Read as things stood after the last commit at or before this time
    /// (µs since the Unix epoch).
    as_of_us: Option<u64>,
    /// Events as written, without upcasting to their types' current
    /// versions.
    #[serde(default)]
    raw: bool,
    /// Answer only once this node holds this position (an append's
    /// `last_position`, from any node of a cluster), waiting up to 10 s;
    /// 503 `position_not_reached` after that.
    wait_for_position: Option<u64>,
    /// Answer only once this node holds every append acknowledged on any
    /// node before the read came (in cluster mode it first applies the
    /// cluster's log to its end; alone it holds them already), waiting up
    /// to 10 s; 503 `position_not_reached` after that.
    #[serde(default)]
    caught_up: bool,
}

impl ReadQuery {
    /// Upcast, or as written for a raw read.
    fn shape(&self) -> Shape {
        Shape::raw_if(self.raw)
    }

    fn as_of(&self, stream: bool) -> Result<Option<quipu_core::AsOf>, ApiError> {
        quipu_node::as_of(self.to_revision, self.to_position, self.as_of_us, stream)
    }

    fn limit(&self) -> usize {
        self.limit.unwrap_or(DEFAULT_READ_LIMIT)
    }

    fn direction(&self) -> Result<Direction, ApiError> {
        match self.direction.as_deref() {
            None | Some("forwards") => Ok(Direction::Forwards),
            Some("backwards") => Ok(Direction::Backwards),
            Some(other) => Err(ApiError::new(
                ErrorCode::InvalidDirection,
                format!("unknown direction {other:?}; use \"forwards\" or \"backwards\""),
            )),
        }
    }
}

/// Read a stream (its visible events, see its metadata).
#[utoipa::path(get, path = "/v1/streams/{stream}", tag = "streams",
    params(("stream" = String, Path, description = "The stream."), ReadQuery),
    responses(
        (status = 200, description = "Events in order.", body = Events),
        (status = 400, description = "Bad parameters.", body = ErrorBody),
        (status = 404, description = "No such stream, or nothing visible.", body = ErrorBody),
        (status = 410, description = "Tombstoned.", body = ErrorBody)))]
async fn read_stream(
    Extension(reads): Extension<Reads>,
    Path(stream): Path<String>,
    query: Result<Query<ReadQuery>, QueryRejection>,
) -> Result<Json<Value>, HttpError> {
    let Query(query) = query?;
    let stream = StreamName::readable(stream)?;
    let (from, direction, limit, as_of) = (query.from, query.direction()?, query.limit(), query.as_of(true)?);
    let (shape, wait_for, caught_up) = (query.shape(), query.wait_for_position.map(Position), query.caught_up);
    let source = Source::Stream(stream);
    read(&reads, ReadRequest { source, from, direction, limit, as_of, shape, wait_for, caught_up }).await
}

/// Query of a delete.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct DeleteQuery {
    /// Delete for good: the stream can never be written again.
    #[serde(default)]
    tombstone: bool,
}

/// Soft delete (reads as not found until new events come), or with
/// `tombstone=true` delete for good.
#[utoipa::path(delete, path = "/v1/streams/{stream}", tag = "streams",
    params(("stream" = String, Path, description = "The stream."), DeleteQuery),
    responses(
        (status = 200, description = "The stream's metadata.", body = StreamMetadata),
        (status = 400, description = "Bad parameters.", body = ErrorBody),
        (status = 404, description = "No such stream.", body = ErrorBody),
        (status = 410, description = "Already tombstoned.", body = ErrorBody)))]
async fn delete_stream(
    Extension(lifecycle): Extension<Arc<Lifecycle>>,
    Path(stream): Path<String>,
    query: Result<Query<DeleteQuery>, QueryRejection>,
) -> Result<Json<quipu_node::lifecycle::Metadata>, HttpError> {
    let Query(query) = query?;
    let metadata =
        if query.tombstone { lifecycle.tombstone(&stream).await? } else { lifecycle.delete(&stream).await? };
    Ok(Json(metadata))
}

/// Query of a subscription: at most one of `stream`, `category`, `type`,
/// `tag` and `integration=true` (none: `$all`); `from` is a revision for a
/// stream and a position otherwise.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct SubscribeQuery {
    /// A revision with `stream`, else a position (inclusive); the
    /// beginning when absent and no `Last-Event-ID` is sent.
    from: Option<u64>,
    /// The events of this stream.
    stream: Option<String>,
    /// The events of this category's streams.
    category: Option<String>,
    /// The events of this type.
    #[serde(rename = "type")]
    event_type: Option<String>,
    /// The events carrying this tag.
    tag: Option<String>,
    /// The integration events.
    #[serde(default)]
    integration: bool,
    /// Events as written, without upcasting to their types' current
    /// versions.
    #[serde(default)]
    raw: bool,
}

impl SubscribeQuery {
    fn source(self, integration: Arc<IntegrationTypes>) -> Result<Source, ApiError> {
        let filters = [&self.stream, &self.category, &self.event_type, &self.tag];
        if filters.iter().filter(|f| f.is_some()).count() + usize::from(self.integration) > 1 {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                "a subscription takes at most one of stream, category, type, tag and integration",
            ));
        }
        if self.integration {
            return Ok(Source::Integration(integration));
        }
        Ok(match (self.stream, self.category, self.event_type, self.tag) {
            (Some(stream), ..) => Source::Stream(StreamName::readable(stream)?),
            (_, Some(category), ..) => Source::Category(StreamName::readable(category)?.to_string()),
            (_, _, Some(event_type), _) => Source::Type(EventType::new(event_type)?),
            (.., Some(tag)) => Source::Tag(Tag::new(tag)?),
            _ => Source::All,
        })
    }
}

/// Server-Sent Events: catch-up from `from` (or `Last-Event-ID` + 1), then
/// live; `$all`, or at most one of `stream`, `category`, `type`, `tag`,
/// `integration=true`. Each message: `event: event`, `id: <position>`
/// (`<revision>` with `stream`), data: an Event.
#[utoipa::path(get, path = "/v1/subscribe", tag = "streams",
    params(SubscribeQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "The id of the last message a reconnecting client got; the subscription goes on after it.")),
    responses(
        (status = 200, description = "The events, as Server-Sent Events whose data is an Event.", body = String, content_type = "text/event-stream"),
        (status = 400, description = "Bad parameters.", body = ErrorBody)))]
async fn subscribe(
    Extension(integration): Extension<Arc<IntegrationTypes>>,
    Extension(reads): Extension<Reads>,
    headers: axum::http::HeaderMap,
    query: Result<Query<SubscribeQuery>, QueryRejection>,
) -> Result<axum::response::Response, HttpError> {
    let Query(query) = query?;
    let (from, raw) = (query.from, query.raw);
    let source = query.source(integration)?;
    let last_event_id = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    let start = crate::sse::start(from, last_event_id, matches!(source, Source::Stream(_)))?;
    let feed = reads.subscribe(source, start, Shape::raw_if(raw))?;
    Ok(axum::response::IntoResponse::into_response(crate::sse::events(feed)))
}

/// Read `$all`.
#[utoipa::path(get, path = "/v1/all", tag = "streams", params(ReadQuery),
    responses(
        (status = 200, description = "Events in order.", body = Events),
        (status = 400, description = "Bad parameters.", body = ErrorBody)))]
async fn read_all(
    Extension(reads): Extension<Reads>,
    query: Result<Query<ReadQuery>, QueryRejection>,
) -> Result<Json<Value>, HttpError> {
    read_by_position(&reads, Source::All, query).await
}

/// Read the events of a category (stream name before the first `-`).
#[utoipa::path(get, path = "/v1/categories/{category}", tag = "streams",
    params(("category" = String, Path, description = "The category."), ReadQuery),
    responses(
        (status = 200, description = "Events in order.", body = Events),
        (status = 400, description = "Bad parameters.", body = ErrorBody)))]
async fn read_category(
    Extension(reads): Extension<Reads>,
    Path(category): Path<String>,
    query: Result<Query<ReadQuery>, QueryRejection>,
) -> Result<Json<Value>, HttpError> {
    read_by_position(&reads, Source::Category(category), query).await
}

/// Read the events of one type.
#[utoipa::path(get, path = "/v1/types/{event_type}", tag = "streams",
    params(("event_type" = String, Path, description = "The event type."), ReadQuery),
    responses(
        (status = 200, description = "Events in order.", body = Events),
        (status = 400, description = "Bad parameters.", body = ErrorBody)))]
async fn read_event_type(
    Extension(reads): Extension<Reads>,
    Path(event_type): Path<String>,
    query: Result<Query<ReadQuery>, QueryRejection>,
) -> Result<Json<Value>, HttpError> {
    read_by_position(&reads, Source::Type(EventType::new(event_type)?), query).await
}

/// Read the events carrying a tag.
#[utoipa::path(get, path = "/v1/tags/{tag}", tag = "streams",
    params(("tag" = String, Path, description = "The tag."), ReadQuery),
    responses(
        (status = 200, description = "Events in order.", body = Events),
        (status = 400, description = "Bad parameters.", body = ErrorBody)))]
async fn read_tag(
    Extension(reads): Extension<Reads>,
    Path(tag): Path<String>,
    query: Result<Query<ReadQuery>, QueryRejection>,
) -> Result<Json<Value>, HttpError> {
    read_by_position(&reads, Source::Tag(Tag::new(tag)?), query).await
}

/// Read the integration events: events whose type is marked when the read
/// runs.
#[utoipa::path(get, path = "/v1/integration", tag = "integration",
    params(ReadQuery),
    responses(
        (status = 200, description = "Events in order.", body = Events),
        (status = 400, description = "Bad parameters.", body = ErrorBody)))]
async fn read_integration(
    Extension(reads): Extension<Reads>,
    Extension(integration): Extension<Arc<IntegrationTypes>>,
    query: Result<Query<ReadQuery>, QueryRejection>,
) -> Result<Json<Value>, HttpError> {
    read_by_position(&reads, Source::Integration(integration), query).await
}

/// A read of `$all`, a category, a type, a tag or the integration events
/// from a position.
async fn read_by_position(
    reads: &Reads,
    source: Source,
    query: Result<Query<ReadQuery>, QueryRejection>,
) -> Result<Json<Value>, HttpError> {
    debug_assert!(!matches!(source, Source::Stream(_)), "streams are read by revision");
    let Query(query) = query?;
    let (from, direction, limit, as_of) = (query.from, query.direction()?, query.limit(), query.as_of(false)?);
    let (shape, wait_for, caught_up) = (query.shape(), query.wait_for_position.map(Position), query.caught_up);
    read(reads, ReadRequest { source, from, direction, limit, as_of, shape, wait_for, caught_up }).await
}

/// Runs `request` through the node's read path and answers
/// `{"events": [...]}`.
async fn read(reads: &Reads, request: ReadRequest) -> Result<Json<Value>, HttpError> {
    let events: Vec<EventJson> = reads.read(request).await?.into_iter().map(EventJson::from).collect();
    Ok(Json(json!({ "events": events })))
}
