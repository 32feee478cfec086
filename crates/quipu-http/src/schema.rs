//! Validation of appends over HTTP/JSON: `GET /v1/schema-validation`
//! answers `{"event_types": [...], "categories": [...]}`; `PUT` and
//! `DELETE /v1/schema-validation/types/{type}` and
//! `.../categories/{category}` turn it on and off.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ErrorBody, HttpError};
use quipu_node::schema::registry::{Schemas, Scope};

type Shared = Arc<Schemas>;

/// What appends are validated: `{"categories": [...], "event_types":
/// [...]}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = SchemaValidation)]
struct Validated {
    /// Categories whose streams' appended events are validated.
    categories: Vec<String>,
    /// Event types whose appended events are validated.
    event_types: Vec<String>,
}

/// The validation routes, each described in the OpenAPI document.
pub fn router(schemas: Shared) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(on_type, off_type))
        .routes(routes!(on_category, off_category))
        .with_state(schemas)
}

/// Event types and categories whose appends are validated against their
/// type's latest schema.
#[utoipa::path(get, path = "/v1/schema-validation", tag = "schema validation", operation_id = "list_validation",
    responses((status = 200, description = "What is validated.", body = Validated)))]
async fn list(State(schemas): State<Shared>) -> Json<Validated> {
    let (mut event_types, mut categories) = (Vec::new(), Vec::new());
    for scope in schemas.validated() {
        match scope {
            Scope::EventType(t) => event_types.push(t),
            Scope::Category(c) => categories.push(c),
        }
    }
    Json(Validated { categories, event_types })
}

async fn set(schemas: &Shared, scope: Scope, enabled: bool) -> Result<Json<Validated>, HttpError> {
    schemas.set_validation(scope, enabled).await?;
    Ok(list(State(Arc::clone(schemas))).await)
}

/// Validate appended events of this type.
#[utoipa::path(put, path = "/v1/schema-validation/types/{event_type}", tag = "schema validation", operation_id = "validate_type",
    params(("event_type" = String, Path, description = "The event type.")),
    responses(
        (status = 200, description = "What is validated.", body = Validated),
        (status = 400, description = "A bad type.", body = ErrorBody)))]
async fn on_type(State(schemas): State<Shared>, Path(event_type): Path<String>) -> Result<Json<Validated>, HttpError> {
    set(&schemas, Scope::EventType(event_type), true).await
}

/// Stop validating this type.
#[utoipa::path(delete, path = "/v1/schema-validation/types/{event_type}", tag = "schema validation", operation_id = "stop_validating_type",
    params(("event_type" = String, Path, description = "The event type.")),
    responses((status = 200, description = "What is validated.", body = Validated)))]
async fn off_type(State(schemas): State<Shared>, Path(event_type): Path<String>) -> Result<Json<Validated>, HttpError> {
    set(&schemas, Scope::EventType(event_type), false).await
}

/// Validate every appended event of this category's streams.
#[utoipa::path(put, path = "/v1/schema-validation/categories/{category}", tag = "schema validation", operation_id = "validate_category",
    params(("category" = String, Path, description = "The category.")),
    responses(
        (status = 200, description = "What is validated.", body = Validated),
        (status = 400, description = "A bad category.", body = ErrorBody)))]
async fn on_category(
    State(schemas): State<Shared>,
    Path(category): Path<String>,
) -> Result<Json<Validated>, HttpError> {
    set(&schemas, Scope::Category(category), true).await
}

/// Stop validating this category.
#[utoipa::path(delete, path = "/v1/schema-validation/categories/{category}", tag = "schema validation", operation_id = "stop_validating_category",
    params(("category" = String, Path, description = "The category.")),
    responses((status = 200, description = "What is validated.", body = Validated)))]
async fn off_category(
    State(schemas): State<Shared>,
    Path(category): Path<String>,
) -> Result<Json<Validated>, HttpError> {
    set(&schemas, Scope::Category(category), false).await
}
