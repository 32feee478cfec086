//! Upcasters over HTTP/JSON: `GET /v1/upcasters` answers `{"set_version",
//! "upcasters": [{"event_type", "from_version", "steps"}]}`; `POST
//! /v1/upcasters` with one declaration answers `{"set_version"}`, or 400
//! `invalid_upcaster` saying what is wrong.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ErrorBody, HttpError};
use crate::mirror::{Upcaster as UpcasterSchema, UpcasterList};
use quipu_node::upcast::{Upcaster, Upcasters};

type Shared = Arc<Upcasters>;

/// Answer of a declaration.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = UpcasterSetVersion)]
struct SetVersion {
    /// Declarations so far, this one included.
    set_version: u64,
}

/// The upcaster routes, each described in the OpenAPI document.
pub fn router(upcasters: Shared) -> OpenApiRouter {
    OpenApiRouter::new().routes(routes!(list, declare)).with_state(upcasters)
}

/// The upcaster set's version and every declaration.
#[utoipa::path(get, path = "/v1/upcasters", tag = "upcasting", operation_id = "list_upcasters",
    responses((status = 200, description = "The declarations.", body = UpcasterList)))]
async fn list(State(upcasters): State<Shared>) -> Json<Value> {
    let (set_version, declared) = upcasters.list();
    Json(json!({ "set_version": set_version, "upcasters": declared }))
}

/// Declare how an event type's data goes from `from_version` to the next
/// (steps: rename, add, remove, move, map).
#[utoipa::path(post, path = "/v1/upcasters", tag = "upcasting", operation_id = "declare_upcaster",
    request_body = UpcasterSchema,
    responses(
        (status = 200, description = "Declared.", body = SetVersion),
        (status = 400, description = "A bad type, version or step, or a gap in the chain.", body = ErrorBody)))]
async fn declare(
    State(upcasters): State<Shared>,
    body: Result<Json<Upcaster>, JsonRejection>,
) -> Result<Json<SetVersion>, HttpError> {
    let Json(upcaster) = body?;
    Ok(Json(SetVersion { set_version: upcasters.declare(upcaster).await? }))
}
