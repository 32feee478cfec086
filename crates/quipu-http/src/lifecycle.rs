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

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};

use crate::error::HttpError;
use quipu_node::lifecycle::scavenger::{ScavengeStatus, Scavenger};
use quipu_node::lifecycle::{Lifecycle, Metadata};

type Shared = Arc<Lifecycle>;

/// The metadata routes.
pub fn router(lifecycle: Shared) -> Router {
    Router::new().route("/v1/streams/{stream}/metadata", get(read).put(write)).with_state(lifecycle)
}

async fn read(State(lifecycle): State<Shared>, Path(stream): Path<String>) -> Json<Metadata> {
    Json(lifecycle.metadata(&stream))
}

async fn write(
    State(lifecycle): State<Shared>,
    Path(stream): Path<String>,
    body: Result<Json<Metadata>, JsonRejection>,
) -> Result<Json<Metadata>, HttpError> {
    let Json(metadata) = body?;
    Ok(Json(lifecycle.set(&stream, metadata).await?))
}

/// The scavenge routes.
pub fn scavenge_router(scavenger: Arc<Scavenger>) -> Router {
    Router::new()
        .route("/v1/scavenge", get(scavenge_status).post(start_scavenge).delete(stop_scavenge))
        .with_state(scavenger)
}

async fn start_scavenge(
    State(scavenger): State<Arc<Scavenger>>,
) -> Result<(StatusCode, Json<ScavengeStatus>), HttpError> {
    Ok((StatusCode::ACCEPTED, Json(scavenger.start()?)))
}

async fn scavenge_status(State(scavenger): State<Arc<Scavenger>>) -> Result<Json<ScavengeStatus>, HttpError> {
    Ok(Json(scavenger.status()?))
}

async fn stop_scavenge(State(scavenger): State<Arc<Scavenger>>) -> Result<Json<ScavengeStatus>, HttpError> {
    Ok(Json(scavenger.stop()?))
}
