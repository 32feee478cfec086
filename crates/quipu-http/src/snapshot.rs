//! Snapshots over HTTP/JSON:
//! - `PUT /v1/streams/{stream}/snapshots/{revision}` with
//!   `{"schema_version", "data"}` stores one (`data` is any JSON);
//! - `GET /v1/streams/{stream}/snapshots` lists them (without data);
//! - `DELETE /v1/streams/{stream}/snapshots` deletes them (events stay);
//! - `GET /v1/streams/{stream}/load?schema_version=&limit=&to_revision=&to_position=&as_of_us=`
//!   answers `{"snapshot", "events", "complete", "next_revision",
//!   "last_revision", "snapshot_due", "schema_version"}`;
//! - `GET /v1/snapshot-policies`, `PUT /v1/snapshot-policies/{category}`
//!   with `{"every", "schema_version"}`, `DELETE
//!   /v1/snapshot-policies/{category}`.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::HttpError;
use crate::wire::{EventJson, payload};
use quipu_node::as_of;
use quipu_node::snapshot::{LOAD_LIMIT_DEFAULT, Policy, Snapshots};

type Shared = Arc<Snapshots>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotBody {
    schema_version: u32,
    data: Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoadQuery {
    schema_version: Option<u32>,
    limit: Option<usize>,
    to_revision: Option<u64>,
    to_position: Option<u64>,
    as_of_us: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyBody {
    every: u64,
    schema_version: u32,
}

/// The snapshot routes.
pub fn router(snapshots: Shared) -> Router {
    Router::new()
        .route("/v1/streams/{stream}/snapshots", get(list).delete(delete))
        .route("/v1/streams/{stream}/snapshots/{revision}", put(write))
        .route("/v1/streams/{stream}/load", get(load))
        .route("/v1/snapshot-policies", get(policies))
        .route("/v1/snapshot-policies/{category}", put(set_policy).delete(delete_policy))
        .with_state(snapshots)
}

fn snapshot_json(snapshot: &quipu_core::Snapshot, with_data: bool) -> Value {
    let mut value = json!({
        "stream": snapshot.stream.as_str(),
        "revision": snapshot.revision.0,
        "schema_version": snapshot.schema_version,
        "written_at_us": snapshot.written_at_us,
    });
    if with_data && let Some(object) = value.as_object_mut() {
        object.insert("data".into(), payload(&snapshot.data));
    }
    value
}

async fn write(
    State(snapshots): State<Shared>,
    Path((stream, revision)): Path<(String, u64)>,
    body: Result<Json<SnapshotBody>, JsonRejection>,
) -> Result<Json<Value>, HttpError> {
    let Json(body) = body?;
    snapshots.write(&stream, revision, body.schema_version, body.data.to_string().into_bytes()).await?;
    Ok(Json(json!({"stream": stream, "revision": revision, "schema_version": body.schema_version})))
}

async fn list(State(snapshots): State<Shared>, Path(stream): Path<String>) -> Result<Json<Value>, HttpError> {
    let listed: Vec<Value> = snapshots.list(&stream).await?.iter().map(|s| snapshot_json(s, false)).collect();
    Ok(Json(json!({ "snapshots": listed })))
}

async fn delete(State(snapshots): State<Shared>, Path(stream): Path<String>) -> Result<Json<Value>, HttpError> {
    Ok(Json(json!({ "deleted": snapshots.delete(&stream).await? })))
}

async fn load(
    State(snapshots): State<Shared>,
    Path(stream): Path<String>,
    query: Result<Query<LoadQuery>, QueryRejection>,
) -> Result<Json<Value>, HttpError> {
    let Query(q) = query?;
    let as_of = as_of(q.to_revision, q.to_position, q.as_of_us, true)?;
    let loaded = snapshots.load(&stream, q.schema_version, as_of, q.limit.unwrap_or(LOAD_LIMIT_DEFAULT)).await?;
    let events: Vec<EventJson> = loaded.events.into_iter().map(EventJson::from).collect();
    Ok(Json(json!({
        "snapshot": loaded.snapshot.as_ref().map(|s| snapshot_json(s, true)),
        "events": events,
        "complete": loaded.complete,
        "next_revision": loaded.next_revision,
        "last_revision": loaded.last_revision,
        "snapshot_due": loaded.snapshot_due,
        "schema_version": loaded.schema_version,
    })))
}

async fn policies(State(snapshots): State<Shared>) -> Json<Value> {
    Json(json!({ "policies": snapshots.policies() }))
}

async fn set_policy(
    State(snapshots): State<Shared>,
    Path(category): Path<String>,
    body: Result<Json<PolicyBody>, JsonRejection>,
) -> Result<Json<Policy>, HttpError> {
    let Json(body) = body?;
    Ok(Json(snapshots.set_policy(Policy { category, every: body.every, schema_version: body.schema_version }).await?))
}

async fn delete_policy(
    State(snapshots): State<Shared>,
    Path(category): Path<String>,
) -> Result<Json<Value>, HttpError> {
    snapshots.delete_policy(&category).await?;
    Ok(Json(json!({ "deleted": category })))
}
