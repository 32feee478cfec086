//! Validation of appends over HTTP/JSON: `GET /v1/schema-validation`
//! answers `{"event_types": [...], "categories": [...]}`; `PUT` and
//! `DELETE /v1/schema-validation/types/{type}` and
//! `.../categories/{category}` turn it on and off.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::error::HttpError;
use quipu_node::schema::registry::{Schemas, Scope};

type Shared = Arc<Schemas>;

/// The validation routes.
pub fn router(schemas: Shared) -> Router {
    Router::new()
        .route("/v1/schema-validation", get(list))
        .route("/v1/schema-validation/types/{event_type}", put(on_type).delete(off_type))
        .route("/v1/schema-validation/categories/{category}", put(on_category).delete(off_category))
        .with_state(schemas)
}

async fn list(State(schemas): State<Shared>) -> Json<Value> {
    let (mut types, mut categories) = (Vec::new(), Vec::new());
    for scope in schemas.validated() {
        match scope {
            Scope::EventType(t) => types.push(t),
            Scope::Category(c) => categories.push(c),
        }
    }
    Json(json!({"event_types": types, "categories": categories}))
}

async fn set(schemas: &Shared, scope: Scope, enabled: bool) -> Result<Json<Value>, HttpError> {
    schemas.set_validation(scope, enabled).await?;
    Ok(list(State(Arc::clone(schemas))).await)
}

async fn on_type(State(schemas): State<Shared>, Path(event_type): Path<String>) -> Result<Json<Value>, HttpError> {
    set(&schemas, Scope::EventType(event_type), true).await
}

async fn off_type(State(schemas): State<Shared>, Path(event_type): Path<String>) -> Result<Json<Value>, HttpError> {
    set(&schemas, Scope::EventType(event_type), false).await
}

async fn on_category(State(schemas): State<Shared>, Path(category): Path<String>) -> Result<Json<Value>, HttpError> {
    set(&schemas, Scope::Category(category), true).await
}

async fn off_category(State(schemas): State<Shared>, Path(category): Path<String>) -> Result<Json<Value>, HttpError> {
    set(&schemas, Scope::Category(category), false).await
}
