//! The marked set over HTTP/JSON: `GET /v1/integration-types` lists it,
//! `PUT /v1/integration-types/{type}` marks a type (again: no change),
//! `DELETE /v1/integration-types/{type}` unmarks one (404
//! `type_not_marked` when it is not marked). Each answers `{"types":
//! [...]}`. Reading the events is `GET /v1/integration` and `GET
//! /v1/subscribe?integration=true` (see the main routes).

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use quipu_core::EventType;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ErrorBody, HttpError};
use quipu_node::integration::IntegrationTypes;

type Shared = Arc<IntegrationTypes>;

/// The marked types: `{"types": [...]}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = IntegrationTypes)]
pub struct TypesJson {
    /// The marked types, sorted.
    pub types: Vec<String>,
}

/// The routes managing the marked set, each described in the OpenAPI
/// document.
pub fn router(integration: Shared) -> OpenApiRouter {
    OpenApiRouter::new().routes(routes!(list)).routes(routes!(mark, unmark)).with_state(integration)
}

/// `{"types": [...]}`.
#[must_use]
pub fn types_json(types: &BTreeSet<EventType>) -> TypesJson {
    TypesJson { types: types.iter().map(|t| t.as_str().to_string()).collect() }
}

/// The event types marked as integration events.
#[utoipa::path(get, path = "/v1/integration-types", tag = "integration", operation_id = "list_integration_types",
    responses((status = 200, description = "The marked types, sorted.", body = TypesJson)))]
async fn list(State(integration): State<Shared>) -> Json<TypesJson> {
    Json(types_json(&integration.snapshot()))
}

/// Mark a type as integration events (again: no change).
#[utoipa::path(put, path = "/v1/integration-types/{event_type}", tag = "integration", operation_id = "mark_integration_type",
    params(("event_type" = String, Path, description = "The event type.")),
    responses(
        (status = 200, description = "The marked types, sorted.", body = TypesJson),
        (status = 400, description = "An invalid type.", body = ErrorBody)))]
async fn mark(State(integration): State<Shared>, Path(event_type): Path<String>) -> Result<Json<TypesJson>, HttpError> {
    let types = integration.mark(&[event_type]).await?;
    Ok(Json(types_json(&types)))
}

/// Unmark a type.
#[utoipa::path(delete, path = "/v1/integration-types/{event_type}", tag = "integration", operation_id = "unmark_integration_type",
    params(("event_type" = String, Path, description = "The event type.")),
    responses(
        (status = 200, description = "The marked types, sorted.", body = TypesJson),
        (status = 404, description = "The type is not marked.", body = ErrorBody)))]
async fn unmark(
    State(integration): State<Shared>,
    Path(event_type): Path<String>,
) -> Result<Json<TypesJson>, HttpError> {
    let types = integration.unmark(&[event_type]).await?;
    Ok(Json(types_json(&types)))
}
