//! Routes and handlers of the HTTP/JSON API. Appends go to the engine's
//! sequencer without blocking the runtime ([`Store::submit`] with a
//! one-shot reply); reads run on the blocking pool.

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

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Extension, Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use quipu_core::{AppendOutcome, AppendRequest, Direction, EventType, RecordedEvent, Store, StreamName, Tag};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::http::error::HttpError;
use crate::wire::{AppendBody, AppendJson, EventJson, MultiAppendBody, MultiAppendJson, expected_revision};
use quipu_node::feed::{Live, Source};
use quipu_node::integration::IntegrationTypes;
use quipu_node::lifecycle::Lifecycle;
use quipu_node::metrics::Metrics;
use quipu_node::submission::Admission;
use quipu_node::upcast::Upcasters;
use quipu_node::{ApiError, ErrorCode};

/// Events a read returns when it names no limit.
const DEFAULT_READ_LIMIT: usize = 100;

type Shared = Arc<Store>;

/// What the HTTP API serves.
pub struct Services {
    /// The store.
    pub store: Shared,
    /// The head of the log, for subscriptions.
    pub live: Live,
    /// Request counters.
    pub metrics: Arc<Metrics>,
    /// Consumer groups.
    pub groups: Arc<quipu_node::group::Groups>,
    /// Projections and their rebuilds.
    pub projections: Arc<quipu_node::projection::Projections>,
    /// What appends must pass.
    pub admission: Arc<Admission>,
    /// The event types marked as integration events.
    pub integration: Arc<IntegrationTypes>,
    /// Snapshots and their policies.
    pub snapshots: Arc<quipu_node::snapshot::Snapshots>,
    /// The schema registry.
    pub schemas: Arc<quipu_node::schema::Schemas>,
    /// Upcasting on read.
    pub upcasters: Arc<Upcasters>,
    /// Stream metadata and deletes.
    pub lifecycle: Arc<Lifecycle>,
    /// The online scavenge.
    pub scavenger: Arc<quipu_node::lifecycle::scavenger::Scavenger>,
}

/// The API's routes.
pub fn router(services: Services) -> Router {
    let Services {
        store,
        live,
        metrics,
        groups,
        projections,
        admission,
        integration,
        snapshots,
        schemas,
        upcasters,
        lifecycle,
        scavenger,
    } = services;
    // JSON costs more than the stored bytes: allow twice the append limit
    // plus room for the envelope; the engine checks the exact limits.
    let body_limit = store.options().append_bytes_max.saturating_mul(2).saturating_add(64 * 1024);
    let counting = Arc::clone(&metrics);
    let gauged = live.clone();
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(move |state, metrics| render_metrics(state, metrics, gauged)))
        .route("/openapi.json", get(|| async { Json(crate::http::openapi::document()) }))
        .route("/v1/streams/{stream}", get(read_stream).post(append_to_stream).delete(delete_stream))
        .route("/v1/append", post(append_multi))
        .route("/v1/all", get(read_all))
        .route(
            "/v1/subscribe",
            get(move |state, integration, upcasters, lifecycle, headers, query| {
                subscribe(state, integration, upcasters, lifecycle, live, headers, query)
            }),
        )
        .route("/v1/categories/{category}", get(read_category))
        .route("/v1/types/{event_type}", get(read_event_type))
        .route("/v1/tags/{tag}", get(read_tag))
        .route("/v1/integration", get(read_integration))
        .with_state(store)
        .merge(crate::http::group::router(groups))
        .merge(crate::http::projection::router(projections))
        .merge(crate::http::integration::router(Arc::clone(&integration)))
        .merge(crate::http::snapshot::router(snapshots))
        .merge(crate::http::confluent::router(Arc::clone(&schemas)))
        .merge(crate::http::schema::router(schemas))
        .merge(crate::http::upcast::router(Arc::clone(&upcasters)))
        .merge(crate::http::lifecycle::router(Arc::clone(&lifecycle)))
        .merge(crate::http::lifecycle::scavenge_router(scavenger))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(move |request, next: axum::middleware::Next| {
            let counting = Arc::clone(&counting);
            async move {
                let response = next.run(request).await;
                counting.count_response(response.status().as_u16());
                response
            }
        }))
        .layer(Extension(metrics))
        .layer(Extension(admission))
        .layer(Extension(integration))
        .layer(Extension(upcasters))
        .layer(Extension(lifecycle))
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
    /// The upcasters to apply: none for a raw read.
    fn upcasting(&self, upcasters: Arc<Upcasters>) -> Option<Arc<Upcasters>> {
        (!self.raw).then_some(upcasters)
    }

    fn as_of(&self, stream: bool) -> Result<Option<quipu_core::AsOf>, ApiError> {
        crate::wire::as_of(self.to_revision, self.to_position, self.as_of_us, stream)
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
    Extension(upcasters): Extension<Arc<Upcasters>>,
    Extension(lifecycle): Extension<Arc<Lifecycle>>,
    Path(stream): Path<String>,
    query: Result<Query<ReadQuery>, QueryRejection>,
) -> Result<Json<Value>, HttpError> {
    let Query(query) = query?;
    let stream = StreamName::readable(stream)?;
    let (from, direction, limit, as_of) = (query.from, query.direction()?, query.limit(), query.as_of(true)?);
    let upcasting = query.upcasting(upcasters);
    read(upcasting, move || lifecycle.read(&stream, from, direction, limit, as_of)).await
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
    State(store): State<Shared>,
    Extension(integration): Extension<Arc<IntegrationTypes>>,
    Extension(upcasters): Extension<Arc<Upcasters>>,
    Extension(lifecycle): Extension<Arc<Lifecycle>>,
    live: Live,
    headers: axum::http::HeaderMap,
    query: Result<Query<SubscribeQuery>, QueryRejection>,
) -> Result<axum::response::Response, HttpError> {
    let Query(query) = query?;
    let (from, raw) = (query.from, query.raw);
    let source = query.source(integration)?;
    let last_event_id = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    let start = crate::http::sse::start(from, last_event_id, matches!(source, Source::Stream(_)))?;
    let start = match &source {
        Source::Stream(stream) => lifecycle.subscription_start(stream, start)?,
        _ => start,
    };
    let mut feed = live.feed(store, source, start)?;
    if !raw {
        feed = feed.upcasting(upcasters);
    }
    Ok(axum::response::IntoResponse::into_response(crate::http::sse::events(feed)))
}

async fn read_all(
    State(store): State<Shared>,
    Extension(upcasters): Extension<Arc<Upcasters>>,
    query: Result<Query<ReadQuery>, QueryRejection>,
) -> Result<Json<Value>, HttpError> {
    read_by_position(store, upcasters, Source::All, query).await
}

async fn read_category(
    State(store): State<Shared>,
    Extension(upcasters): Extension<Arc<Upcasters>>,
    Path(category): Path<String>,
    query: Result<Query<ReadQuery>, QueryRejection>,
) -> Result<Json<Value>, HttpError> {
    read_by_position(store, upcasters, Source::Category(category), query).await
}

async fn read_event_type(
    State(store): State<Shared>,
    Extension(upcasters): Extension<Arc<Upcasters>>,
    Path(event_type): Path<String>,
    query: Result<Query<ReadQuery>, QueryRejection>,
) -> Result<Json<Value>, HttpError> {
    read_by_position(store, upcasters, Source::Type(EventType::new(event_type)?), query).await
}

async fn read_tag(
    State(store): State<Shared>,
    Extension(upcasters): Extension<Arc<Upcasters>>,
    Path(tag): Path<String>,
    query: Result<Query<ReadQuery>, QueryRejection>,
) -> Result<Json<Value>, HttpError> {
    read_by_position(store, upcasters, Source::Tag(Tag::new(tag)?), query).await
}

async fn read_integration(
    State(store): State<Shared>,
    Extension(upcasters): Extension<Arc<Upcasters>>,
    Extension(integration): Extension<Arc<IntegrationTypes>>,
    query: Result<Query<ReadQuery>, QueryRejection>,
) -> Result<Json<Value>, HttpError> {
    read_by_position(store, upcasters, Source::Integration(integration), query).await
}

/// A read of `$all`, a category, a type, a tag or the integration events
/// from a position.
async fn read_by_position(
    store: Shared,
    upcasters: Arc<Upcasters>,
    source: Source,
    query: Result<Query<ReadQuery>, QueryRejection>,
) -> Result<Json<Value>, HttpError> {
    debug_assert!(!matches!(source, Source::Stream(_)), "streams are read by revision");
    let Query(query) = query?;
    let (from, direction, limit, as_of) = (query.from, query.direction()?, query.limit(), query.as_of(false)?);
    let upcasting = query.upcasting(upcasters);
    read(upcasting, move || source.read_as_of(&store, from, direction, limit, as_of)).await
}

/// Runs a read (see [`quipu_node::blocking`]) and answers `{"events": [...]}`, at
/// their types' current versions when `upcasting`.
async fn read<E: Into<ApiError> + Send + 'static>(
    upcasting: Option<Arc<Upcasters>>,
    read: impl FnOnce() -> Result<Vec<RecordedEvent>, E> + Send + 'static,
) -> Result<Json<Value>, HttpError> {
    let mut events = quipu_node::blocking::read(read)
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?
        .map_err(Into::into)?;
    if let Some(upcasters) = upcasting {
        upcasters.apply(&mut events);
    }
    let events: Vec<EventJson> = events.into_iter().map(EventJson::from).collect();
    Ok(Json(json!({ "events": events })))
}
