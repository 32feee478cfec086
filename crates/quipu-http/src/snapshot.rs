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

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ErrorBody, HttpError};
use crate::mirror::{Loaded, Policy as PolicySchema, PolicyList, SnapshotList};
use crate::wire::{EventJson, payload};
use quipu_node::as_of;
use quipu_node::snapshot::{LOAD_LIMIT_DEFAULT, Policy, Snapshots};

type Shared = Arc<Snapshots>;

/// Body of a snapshot's write.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SnapshotWrite)]
struct SnapshotBody {
    /// The version of the data's shape.
    schema_version: u32,
    /// The stream's state (any JSON).
    data: Value,
}

/// Query of a load: the wanted version, and the moment to load as of
/// (at most one of `to_revision`, `to_position` and `as_of_us`).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct LoadQuery {
    /// The snapshot version wanted (the category's policy's when absent).
    schema_version: Option<u32>,
    /// Events at most after the snapshot.
    #[param(default = 1000)]
    limit: Option<usize>,
    /// Load as the stream stood just after this revision.
    to_revision: Option<u64>,
    /// Load as things stood just after this position of `$all`.
    to_position: Option<u64>,
    /// Load as things stood after the last commit at or before this time
    /// (µs since the Unix epoch).
    as_of_us: Option<u64>,
}

/// Body of a policy.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PolicyWrite)]
struct PolicyBody {
    /// A snapshot is due when this many events lie after the newest one.
    #[schema(minimum = 1)]
    every: u64,
    /// The version new snapshots have, and the one loads use.
    schema_version: u32,
}

/// Answer of a snapshot's write.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = SnapshotStored)]
struct Stored {
    /// The revision whose state it holds.
    revision: u64,
    /// The version of its data's shape.
    schema_version: u32,
    /// The stream.
    stream: String,
}

/// Answer of a delete of a stream's snapshots.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = SnapshotsDeleted)]
struct Deleted {
    /// Snapshots deleted.
    deleted: u64,
}

/// Answer of a policy's delete.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = PolicyDeleted)]
struct PolicyDeleted {
    /// The category whose policy was removed.
    deleted: String,
}

/// The snapshot routes, each described in the OpenAPI document.
pub fn router(snapshots: Shared) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(list, delete))
        .routes(routes!(write))
        .routes(routes!(load))
        .routes(routes!(policies))
        .routes(routes!(set_policy, delete_policy))
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

/// Store a stream's state after a revision.
#[utoipa::path(put, path = "/v1/streams/{stream}/snapshots/{revision}", tag = "snapshots", operation_id = "write_snapshot",
    params(("stream" = String, Path, description = "The stream."), ("revision" = u64, Path, description = "The revision whose state it is.")),
    request_body = SnapshotBody,
    responses(
        (status = 200, description = "Stored.", body = Stored),
        (status = 400, description = "A revision the stream does not have, or a bad body.", body = ErrorBody),
        (status = 413, description = "Too large.", body = ErrorBody)))]
async fn write(
    State(snapshots): State<Shared>,
    Path((stream, revision)): Path<(String, u64)>,
    body: Result<Json<SnapshotBody>, JsonRejection>,
) -> Result<Json<Stored>, HttpError> {
    let Json(body) = body?;
    snapshots.write(&stream, revision, body.schema_version, body.data.to_string().into_bytes()).await?;
    Ok(Json(Stored { revision, schema_version: body.schema_version, stream }))
}

/// A stream's snapshots, oldest first, without data.
#[utoipa::path(get, path = "/v1/streams/{stream}/snapshots", tag = "snapshots", operation_id = "list_snapshots",
    params(("stream" = String, Path, description = "The stream.")),
    responses(
        (status = 200, description = "The snapshots.", body = SnapshotList),
        (status = 400, description = "A bad stream name.", body = ErrorBody)))]
async fn list(State(snapshots): State<Shared>, Path(stream): Path<String>) -> Result<Json<Value>, HttpError> {
    let listed: Vec<Value> = snapshots.list(&stream).await?.iter().map(|s| snapshot_json(s, false)).collect();
    Ok(Json(json!({ "snapshots": listed })))
}

/// Delete a stream's snapshots; its events stay.
#[utoipa::path(delete, path = "/v1/streams/{stream}/snapshots", tag = "snapshots", operation_id = "delete_snapshots",
    params(("stream" = String, Path, description = "The stream.")),
    responses(
        (status = 200, description = "Deleted.", body = Deleted),
        (status = 400, description = "A bad stream name.", body = ErrorBody)))]
async fn delete(State(snapshots): State<Shared>, Path(stream): Path<String>) -> Result<Json<Deleted>, HttpError> {
    Ok(Json(Deleted { deleted: snapshots.delete(&stream).await? }))
}

/// The newest snapshot of the wanted version at or below the moment, and
/// the events after it.
#[utoipa::path(get, path = "/v1/streams/{stream}/load", tag = "snapshots", operation_id = "load_stream",
    params(("stream" = String, Path, description = "The stream."), LoadQuery),
    responses(
        (status = 200, description = "The snapshot and the events after it.", body = Loaded),
        (status = 400, description = "Bad parameters.", body = ErrorBody),
        (status = 404, description = "The stream had no events then.", body = ErrorBody)))]
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

/// Per-category snapshot policies.
#[utoipa::path(get, path = "/v1/snapshot-policies", tag = "snapshots", operation_id = "list_snapshot_policies",
    responses((status = 200, description = "The policies.", body = PolicyList)))]
async fn policies(State(snapshots): State<Shared>) -> Json<Value> {
    Json(json!({ "policies": snapshots.policies() }))
}

/// Set a category's policy: a snapshot is due when `every` events lie
/// after the newest.
#[utoipa::path(put, path = "/v1/snapshot-policies/{category}", tag = "snapshots", operation_id = "set_snapshot_policy",
    params(("category" = String, Path, description = "The category.")),
    request_body = PolicyBody,
    responses(
        (status = 200, description = "The policy.", body = PolicySchema),
        (status = 400, description = "A bad category or `every` 0.", body = ErrorBody)))]
async fn set_policy(
    State(snapshots): State<Shared>,
    Path(category): Path<String>,
    body: Result<Json<PolicyBody>, JsonRejection>,
) -> Result<Json<Policy>, HttpError> {
    let Json(body) = body?;
    Ok(Json(snapshots.set_policy(Policy { category, every: body.every, schema_version: body.schema_version }).await?))
}

/// Remove a category's policy.
#[utoipa::path(delete, path = "/v1/snapshot-policies/{category}", tag = "snapshots", operation_id = "delete_snapshot_policy",
    params(("category" = String, Path, description = "The category.")),
    responses(
        (status = 200, description = "Removed.", body = PolicyDeleted),
        (status = 404, description = "No policy.", body = ErrorBody)))]
async fn delete_policy(
    State(snapshots): State<Shared>,
    Path(category): Path<String>,
) -> Result<Json<PolicyDeleted>, HttpError> {
    snapshots.delete_policy(&category).await?;
    Ok(Json(PolicyDeleted { deleted: category }))
}
