//! Consumer groups over HTTP/JSON: `POST /v1/groups` creates one,
//! `GET /v1/groups` lists them, `GET`, `PATCH` and `DELETE
//! /v1/groups/{name}` read, tune and delete one, and `POST
//! /v1/groups/{name}/replay-parked` delivers its parked events again.
//! A create body is `{"name", "filter": {"category", "event_types",
//! "tag", "stream_prefix"}, "start", "tuning": {"max_retries",
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

use super::registry::{GroupInfo, Groups};
use super::settings::{Filter, StartFrom, TuningRequest};
use crate::ApiError;

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
}

fn beginning() -> StartFrom {
    StartFrom::Beginning
}

/// The group routes over `groups`.
pub fn router(groups: Arc<Groups>) -> Router {
    Router::new()
        .route("/v1/groups", get(list).post(create))
        .route("/v1/groups/{name}", get(info).patch(update).delete(delete))
        .route("/v1/groups/{name}/replay-parked", post(replay_parked))
        .with_state(groups)
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
        "checkpoint": info.status.checkpoint.0,
        "head": info.head.0,
        "lag": info.lag(),
        "in_flight": info.status.in_flight,
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
    State(groups): State<Arc<Groups>>,
    body: Result<Json<CreateBody>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(body) = body?;
    groups.create(&body.name, body.filter, body.start, &body.tuning).await?;
    let info = groups.info(&body.name).await?;
    Ok((StatusCode::CREATED, Json(info_json(&info))))
}

async fn list(State(groups): State<Arc<Groups>>) -> Json<Value> {
    let infos: Vec<Value> = groups.list().await.iter().map(info_json).collect();
    Json(json!({ "groups": infos }))
}

async fn info(State(groups): State<Arc<Groups>>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(info_json(&groups.info(&name).await?)))
}

async fn update(
    State(groups): State<Arc<Groups>>,
    Path(name): Path<String>,
    body: Result<Json<TuningRequest>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(tuning) = body?;
    groups.update(&name, &tuning).await?;
    Ok(Json(info_json(&groups.info(&name).await?)))
}

async fn delete(State(groups): State<Arc<Groups>>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    groups.delete(&name).await?;
    Ok(Json(json!({ "deleted": name })))
}

async fn replay_parked(State(groups): State<Arc<Groups>>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let scheduled = groups.replay_parked(&name).await?;
    Ok(Json(json!({ "group": name, "scheduled": scheduled })))
}
