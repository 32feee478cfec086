//! Stream metadata over HTTP/JSON: `GET` and `PUT
//! /v1/streams/{stream}/metadata` (`{"max_count", "max_age_s",
//! "truncate_before", "custom"}`, all optional). Deletes are `DELETE
//! /v1/streams/{stream}` (soft) and `DELETE
//! /v1/streams/{stream}?tombstone=true` (for good), routed with the
//! stream's other methods.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};

use super::{Lifecycle, Metadata};
use crate::ApiError;

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
) -> Result<Json<Metadata>, ApiError> {
    let Json(metadata) = body?;
    Ok(Json(lifecycle.set(&stream, metadata).await?))
}
