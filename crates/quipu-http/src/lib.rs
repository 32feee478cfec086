//! # quipu-http: Quipu's HTTP/JSON door
//!
//! The routes and handlers of the HTTP/JSON API over a [`Node`]'s
//! services ([`router`]), served by [`server::serve`]. Appends go through
//! the node's admission to the sequencer without blocking the runtime;
//! reads and subscriptions (Server-Sent Events, [`sse`]) take the node's
//! one read path. Errors answer as `{"code": "...", "message": "..."}`
//! with the status of their kind ([`error`], one exhaustive match).
//! Modules: one per service's routes, [`confluent`] (the Confluent
//! schema-registry routes), [`openapi`] (`/openapi.json`) and [`wire`]
//! (the JSON shapes).

pub mod confluent;
pub mod error;
pub mod group;
pub mod integration;
pub mod lifecycle;
pub mod openapi;
pub mod projection;
pub mod schema;
pub mod server;
pub mod snapshot;
pub mod sse;
pub mod upcast;
pub mod wire;

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Extension, Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use quipu_core::{AppendOutcome, AppendRequest, Direction, EventType, Store, StreamName, Tag};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::HttpError;
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

/// The API's routes over `node`'s services.
pub fn router(node: &Node) -> Router {
    // JSON costs more than the stored bytes: allow twice the append limit
    // plus room for the envelope; the engine checks the exact limits.
    let body_limit = node.store.options().append_bytes_max.saturating_mul(2).saturating_add(64 * 1024);
    let counting = Arc::clone(&node.metrics);
    let gauged = node.live.clone();
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(move |state, metrics| render_metrics(state, metrics, gauged)))
        .route("/openapi.json", get(|| async { Json(crate::openapi::document()) }))
        .route("/v1/streams/{stream}", get(read_stream).post(append_to_stream).delete(delete_stream))
        .route("/v1/append", post(append_multi))
        .route("/v1/all", get(read_all))
        .route("/v1/subscribe", get(subscribe))
        .route("/v1/categories/{category}", get(read_category))
        .route("/v1/types/{event_type}", get(read_event_type))
        .route("/v1/tags/{tag}", get(read_tag))
        .route("/v1/integration", get(read_integration))
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
        .layer(DefaultBodyLimit::max(body_limit))
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
}

async fn render_metrics(
    State(store): State<Shared>,
    Extension(metrics): Extension<Arc<Metrics>>,
    live: Live,
) -> String {
    metrics.render(&store, &live)
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

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
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadQuery {
    from: Option<u64>,
    limit: Option<usize>,
    direction: Option<String>,
    to_revision: Option<u64>,
    to_position: Option<u64>,
    as_of_us: Option<u64>,
    /// Events as written, without upcasting.
    #[serde(default)]
    raw: bool,
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

async fn read_stream(
    Extension(reads): Extension<Reads>,
    Path(stream): Path<String>,
    query: Result<Query<ReadQuery>, QueryRejection>,
) -> Result<Json<Value>, HttpError> {
    let Query(query) = query?;
    let stream = StreamName::readable(stream)?;
    let (from, direction, limit, as_of) = (query.from, query.direction()?, query.limit(), query.as_of(true)?);
    read(&reads, ReadRequest { source: Source::Stream(stream), from, direction, limit, as_of, shape: query.shape() })
        .await
}

/// Query of a delete.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteQuery {
    #[serde(default)]
    tombstone: bool,
}

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
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscribeQuery {
    from: Option<u64>,
    stream: Option<String>,
    category: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    tag: Option<String>,
    #[serde(default)]
    integration: bool,
    /// Events as written, without upcasting.
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

async fn read_all(
    Extension(reads): Extension<Reads>,
    query: Result<Query<ReadQuery>, QueryRejection>,
) -> Result<Json<Value>, HttpError> {
    read_by_position(&reads, Source::All, query).await
}

async fn read_category(
    Extension(reads): Extension<Reads>,
    Path(category): Path<String>,
    query: Result<Query<ReadQuery>, QueryRejection>,
) -> Result<Json<Value>, HttpError> {
    read_by_position(&reads, Source::Category(category), query).await
}

async fn read_event_type(
    Extension(reads): Extension<Reads>,
    Path(event_type): Path<String>,
    query: Result<Query<ReadQuery>, QueryRejection>,
) -> Result<Json<Value>, HttpError> {
    read_by_position(&reads, Source::Type(EventType::new(event_type)?), query).await
}

async fn read_tag(
    Extension(reads): Extension<Reads>,
    Path(tag): Path<String>,
    query: Result<Query<ReadQuery>, QueryRejection>,
) -> Result<Json<Value>, HttpError> {
    read_by_position(&reads, Source::Tag(Tag::new(tag)?), query).await
}

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
    read(reads, ReadRequest { source, from, direction, limit, as_of, shape: query.shape() }).await
}

/// Runs `request` through the node's read path and answers
/// `{"events": [...]}`.
async fn read(reads: &Reads, request: ReadRequest) -> Result<Json<Value>, HttpError> {
    let events: Vec<EventJson> = reads.read(request).await?.into_iter().map(EventJson::from).collect();
    Ok(Json(json!({ "events": events })))
}
