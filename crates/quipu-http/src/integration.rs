//! The marked set over HTTP/JSON: `GET /v1/integration-types` lists it,
//! `PUT /v1/integration-types/{type}` marks a type (again: no change),
//! `DELETE /v1/integration-types/{type}` unmarks one (404
//! `type_not_marked` when it is not marked). Each answers `{"types":
//! [...]}`. Reading the events is `GET /v1/integration` and `GET
//! /v1/subscribe?integration=true` (see the main routes).

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::{get, put};
use axum::{Json, Router};
use quipu_core::EventType;
use serde_json::{Value, json};

use crate::error::HttpError;
use quipu_node::integration::IntegrationTypes;

type Shared = Arc<IntegrationTypes>;

/// The routes managing the marked set.
pub fn router(integration: Shared) -> Router {
    Router::new()
        .route("/v1/integration-types", get(list))
        .route("/v1/integration-types/{event_type}", put(mark).delete(unmark))
        .with_state(integration)
}

/// `{"types": [...]}`.
#[must_use]
pub fn types_json(types: &BTreeSet<EventType>) -> Value {
    json!({ "types": types.iter().map(EventType::as_str).collect::<Vec<_>>() })
}

async fn list(State(integration): State<Shared>) -> Json<Value> {
    Json(types_json(&integration.snapshot()))
}

async fn mark(State(integration): State<Shared>, Path(event_type): Path<String>) -> Result<Json<Value>, HttpError> {
    let types = integration.mark(&[event_type]).await?;
    Ok(Json(types_json(&types)))
}

async fn unmark(State(integration): State<Shared>, Path(event_type): Path<String>) -> Result<Json<Value>, HttpError> {
    let types = integration.unmark(&[event_type]).await?;
    Ok(Json(types_json(&types)))
}
