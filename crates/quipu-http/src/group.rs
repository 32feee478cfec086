//! Consumer groups over HTTP/JSON: `POST /v1/groups` creates one,
//! `GET /v1/groups` lists them, `GET`, `PATCH` and `DELETE
//! /v1/groups/{name}` read, tune and delete one, and `POST
//! /v1/groups/{name}/replay-parked` delivers its parked events again.
//!
//! Members consume over HTTP too (see [`quipu_node::group::session`]): `POST
//! /v1/groups/{name}/members/{member}/poll` with `{"max", "wait_ms"}`
//! answers `{"events": [{"event", "retries"}]}`; `.../ack` takes
//! `{"positions"}`, `.../nack` takes `{"positions", "action": "retry" |
//! "park" | "skip", "reason"}`; `DELETE .../members/{member}` leaves.
//! A create body is `{"name", "filter": {"category", "event_types",
//! "tag", "stream_prefix", "integration"}, "start", "tuning": {"max_retries",
//! "message_timeout_ms", "max_in_flight", "backoff_base_ms",
//! "backoff_max_ms"}}`, everything but the name optional; a `PATCH` body
//! is a tuning object. Errors are the API's usual `{"code", "message"}` bodies: 400
//! `invalid_group` naming the field, 404 `group_not_found`, 409
//! `group_exists`.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::HttpError;
use crate::wire::EventJson;
use quipu_node::group::dispatcher::{NackAction, Strategy};
use quipu_node::group::session::Sessions;
use quipu_node::group::settings::{Filter, StartFrom, TuningRequest};
use quipu_node::group::{GroupInfo, Groups};

/// What the group routes share.
#[derive(Clone)]
struct Shared {
    groups: Arc<Groups>,
    sessions: Arc<Sessions>,
}

/// Body of a poll.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PollBody {
    /// Most events to return (default 100).
    #[serde(default = "poll_max")]
    max: usize,
    /// Longest wait for the first event, ms (default 0: answer at once).
    #[serde(default)]
    wait_ms: u64,
}

fn poll_max() -> usize {
    100
}

/// Body of an ack.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AckBody {
    positions: Vec<u64>,
}

/// What a nack asks for.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum NackActionJson {
    Retry,
    Park,
    Skip,
}

/// Body of a nack.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NackBody {
    positions: Vec<u64>,
    action: NackActionJson,
    #[serde(default)]
    reason: String,
}

/// Body of `POST /v1/groups`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    #[serde(default)]
    filter: Filter,
    /// `"beginning"` (default), `"end"` or `{"position": n}`.
    #[serde(default = "beginning")]
    start: StartFrom,
    #[serde(default)]
    tuning: TuningRequest,
    /// `"per_stream"` (default), `"round_robin"`, `"dispatch_to_single"`
    /// or `"pinned"`.
    #[serde(default)]
    strategy: Strategy,
}

fn beginning() -> StartFrom {
    StartFrom::Beginning
}

/// The group routes over `groups`.
pub fn router(groups: Arc<Groups>) -> Router {
    let sessions = Sessions::new(Arc::clone(&groups));
    Router::new()
        .route("/v1/groups", get(list).post(create))
        .route("/v1/groups/{name}", get(info).patch(update).delete(delete))
        .route("/v1/groups/{name}/replay-parked", post(replay_parked))
        .route("/v1/groups/{name}/members/{member}", axum::routing::delete(leave))
        .route("/v1/groups/{name}/members/{member}/poll", post(poll))
        .route("/v1/groups/{name}/members/{member}/ack", post(ack))
        .route("/v1/groups/{name}/members/{member}/nack", post(nack))
        .with_state(Shared { groups, sessions })
}

/// A group's info as JSON.
#[must_use]
pub fn info_json(info: &GroupInfo) -> Value {
    let s = &info.settings;
    json!({
        "name": s.name,
        "filter": s.filter,
        "start": s.start,
        "max_retries": s.max_retries,
        "message_timeout_ms": s.message_timeout_ms,
        "max_in_flight": s.max_in_flight,
        "backoff_base_ms": s.backoff_base_ms,
        "backoff_max_ms": s.backoff_max_ms,
        "strategy": s.strategy,
        "checkpoint": info.status.checkpoint.0,
        "head": info.head.0,
        "lag": info.lag(),
        "in_flight": info.status.in_flight,
        "parking": info.status.parking,
        "retrying": info.status.retrying,
        "buffered": info.status.buffered,
        "parked": info.status.parked,
        "parked_stream": s.parked_stream(),
        "checkpoint_stream": s.checkpoint_stream(),
        "members": info.status.members.iter().map(|m| json!({
            "name": m.name,
            "in_flight": m.in_flight,
            "max_in_flight": m.max_in_flight,
            "queued": m.queued,
            "delivered": m.delivered,
            "acked": m.acked,
            "failed": m.failed,
        })).collect::<Vec<_>>(),
    })
}

async fn create(
    State(Shared { groups, .. }): State<Shared>,
    body: Result<Json<CreateBody>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), HttpError> {
    let Json(body) = body?;
    groups.create_sharing(&body.name, body.filter, body.start, &body.tuning, body.strategy, None).await?;
    let info = groups.info(&body.name).await?;
    Ok((StatusCode::CREATED, Json(info_json(&info))))
}

async fn list(State(Shared { groups, .. }): State<Shared>) -> Json<Value> {
    let infos: Vec<Value> = groups.list().await.iter().map(info_json).collect();
    Json(json!({ "groups": infos }))
}

async fn info(State(Shared { groups, .. }): State<Shared>, Path(name): Path<String>) -> Result<Json<Value>, HttpError> {
    Ok(Json(info_json(&groups.info(&name).await?)))
}

async fn update(
    State(Shared { groups, .. }): State<Shared>,
    Path(name): Path<String>,
    body: Result<Json<TuningRequest>, JsonRejection>,
) -> Result<Json<Value>, HttpError> {
    let Json(tuning) = body?;
    groups.update(&name, &tuning).await?;
    Ok(Json(info_json(&groups.info(&name).await?)))
}

async fn delete(
    State(Shared { groups, .. }): State<Shared>,
    Path(name): Path<String>,
) -> Result<Json<Value>, HttpError> {
    groups.delete(&name).await?;
    Ok(Json(json!({ "deleted": name })))
}

async fn replay_parked(
    State(Shared { groups, .. }): State<Shared>,
    Path(name): Path<String>,
) -> Result<Json<Value>, HttpError> {
    let scheduled = groups.replay_parked(&name).await?;
    Ok(Json(json!({ "group": name, "scheduled": scheduled })))
}

async fn poll(
    State(Shared { sessions, .. }): State<Shared>,
    Path((name, member)): Path<(String, String)>,
    body: Result<Json<PollBody>, JsonRejection>,
) -> Result<Json<Value>, HttpError> {
    let Json(body) = body?;
    let deliveries = sessions.poll(&name, &member, body.max, std::time::Duration::from_millis(body.wait_ms)).await?;
    let events: Vec<Value> = deliveries
        .into_iter()
        .map(|d| json!({ "event": EventJson::from((*d.event).clone()), "retries": d.retries }))
        .collect();
    Ok(Json(json!({ "events": events })))
}

async fn ack(
    State(Shared { sessions, .. }): State<Shared>,
    Path((name, member)): Path<(String, String)>,
    body: Result<Json<AckBody>, JsonRejection>,
) -> Result<Json<Value>, HttpError> {
    let Json(body) = body?;
    let count = body.positions.len();
    sessions.ack(&name, &member, body.positions.into_iter().map(quipu_core::Position).collect()).await?;
    Ok(Json(json!({ "acked": count })))
}

async fn nack(
    State(Shared { sessions, .. }): State<Shared>,
    Path((name, member)): Path<(String, String)>,
    body: Result<Json<NackBody>, JsonRejection>,
) -> Result<Json<Value>, HttpError> {
    let Json(body) = body?;
    let action = match body.action {
        NackActionJson::Retry => NackAction::Retry,
        NackActionJson::Park => NackAction::Park,
        NackActionJson::Skip => NackAction::Skip,
    };
    let count = body.positions.len();
    sessions
        .nack(&name, &member, body.positions.into_iter().map(quipu_core::Position).collect(), action, body.reason)
        .await?;
    Ok(Json(json!({ "nacked": count })))
}

async fn leave(
    State(Shared { sessions, .. }): State<Shared>,
    Path((name, member)): Path<(String, String)>,
) -> Result<Json<Value>, HttpError> {
    sessions.leave(&name, &member)?;
    Ok(Json(json!({ "left": member })))
}
