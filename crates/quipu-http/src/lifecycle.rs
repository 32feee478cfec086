//! Stream metadata over HTTP/JSON: `GET` and `PUT
//! /v1/streams/{stream}/metadata` (`{"max_count", "max_age_s",
//! "truncate_before", "custom"}`, all optional). Deletes are `DELETE
//! /v1/streams/{stream}` (soft) and `DELETE
//! /v1/streams/{stream}?tombstone=true` (for good), routed with the
//! stream's other methods.
//!
//! The scavenge: `POST /v1/scavenge` starts one (202 with its status, 409
//! `scavenge_running` when one runs), `GET /v1/scavenge` answers the
//! running or last one (404 `no_scavenge`), `DELETE /v1/scavenge` stops
//! it after the segment in hand.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ErrorBody, HttpError};
use crate::mirror::{ScavengeStatus as ScavengeStatusSchema, StreamMetadata};
use quipu_node::lifecycle::scavenger::{ScavengeStatus, Scavenger};
use quipu_node::lifecycle::{Lifecycle, Metadata};

type Shared = Arc<Lifecycle>;

/// The metadata routes, each described in the OpenAPI document.
pub fn router(lifecycle: Shared) -> OpenApiRouter {
    OpenApiRouter::new().routes(routes!(read, write)).with_state(lifecycle)
}

/// A stream's metadata.
#[utoipa::path(get, path = "/v1/streams/{stream}/metadata", tag = "streams", operation_id = "get_stream_metadata",
    params(("stream" = String, Path, description = "The stream.")),
    responses((status = 200, description = "The metadata.", body = StreamMetadata)))]
async fn read(State(lifecycle): State<Shared>, Path(stream): Path<String>) -> Json<Metadata> {
    Json(lifecycle.metadata(&stream))
}

/// Replace a stream's metadata; reads of the stream return only visible
/// events.
#[utoipa::path(put, path = "/v1/streams/{stream}/metadata", tag = "streams", operation_id = "set_stream_metadata",
    params(("stream" = String, Path, description = "The stream.")),
    request_body = StreamMetadata,
    responses(
        (status = 200, description = "The metadata.", body = StreamMetadata),
        (status = 400, description = "A bad value.", body = ErrorBody),
        (status = 410, description = "The stream is tombstoned.", body = ErrorBody)))]
async fn write(
    State(lifecycle): State<Shared>,
    Path(stream): Path<String>,
    body: Result<Json<Metadata>, JsonRejection>,
) -> Result<Json<Metadata>, HttpError> {
    let Json(metadata) = body?;
    Ok(Json(lifecycle.set(&stream, metadata).await?))
}

/// The scavenge routes, each described in the OpenAPI document.
pub fn scavenge_router(scavenger: Arc<Scavenger>) -> OpenApiRouter {
    OpenApiRouter::new().routes(routes!(scavenge_status, start_scavenge, stop_scavenge)).with_state(scavenger)
}

/// Start an online scavenge: remove from closed log segments every event
/// stream metadata hides, while appends and reads go on.
#[utoipa::path(post, path = "/v1/scavenge", tag = "scavenge",
    responses(
        (status = 202, description = "Started: its status.", body = ScavengeStatusSchema),
        (status = 409, description = "`scavenge_running`: one runs.", body = ErrorBody)))]
async fn start_scavenge(
    State(scavenger): State<Arc<Scavenger>>,
) -> Result<(StatusCode, Json<ScavengeStatus>), HttpError> {
    Ok((StatusCode::ACCEPTED, Json(scavenger.start()?)))
}

/// The running or last scavenge (state `running`, `done`, `stopped` or
/// `failed`).
#[utoipa::path(get, path = "/v1/scavenge", tag = "scavenge",
    responses(
        (status = 200, description = "The status.", body = ScavengeStatusSchema),
        (status = 404, description = "`no_scavenge`: none ran since the server started.", body = ErrorBody)))]
async fn scavenge_status(State(scavenger): State<Arc<Scavenger>>) -> Result<Json<ScavengeStatus>, HttpError> {
    Ok(Json(scavenger.status()?))
}

/// Stop the running scavenge after the segment in hand; what is done
/// stays done.
#[utoipa::path(delete, path = "/v1/scavenge", tag = "scavenge",
    responses(
        (status = 200, description = "The status.", body = ScavengeStatusSchema),
        (status = 404, description = "`no_scavenge`.", body = ErrorBody),
        (status = 409, description = "`scavenge_not_running`.", body = ErrorBody)))]
async fn stop_scavenge(State(scavenger): State<Arc<Scavenger>>) -> Result<Json<ScavengeStatus>, HttpError> {
    Ok(Json(scavenger.stop()?))
}
