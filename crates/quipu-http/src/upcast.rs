//! Upcasters over HTTP/JSON: `GET /v1/upcasters` answers `{"set_version",
//! "upcasters": [{"event_type", "from_version", "steps"}]}`; `POST
//! /v1/upcasters` with one declaration answers `{"set_version"}`, or 400
//! `invalid_upcaster` saying what is wrong.

use std::sync::Arc;

use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::error::HttpError;
use quipu_node::upcast::{Upcaster, Upcasters};

type Shared = Arc<Upcasters>;

/// The upcaster routes.
pub fn router(upcasters: Shared) -> Router {
    Router::new().route("/v1/upcasters", get(list).post(declare)).with_state(upcasters)
}

async fn list(State(upcasters): State<Shared>) -> Json<Value> {
    let (set_version, declared) = upcasters.list();
    Json(json!({ "set_version": set_version, "upcasters": declared }))
}

async fn declare(
    State(upcasters): State<Shared>,
    body: Result<Json<Upcaster>, JsonRejection>,
) -> Result<Json<Value>, HttpError> {
    let Json(upcaster) = body?;
    Ok(Json(json!({ "set_version": upcasters.declare(upcaster).await? })))
}
