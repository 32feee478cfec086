//! Projections over HTTP/JSON: `GET /v1/projections` lists them, `GET
//! /v1/projections/{name}` shows one with its rebuild's progress, `POST
//! /v1/projections/{name}/rebuild` with `{"block_categories": [...]}`
//! (optional) asks for a rebuild and answers 202, `DELETE
//! /v1/projections/{name}/rebuild` cancels it, and `POST
//! /v1/projections/{name}/report` is a runner's report: `{"runner",
//! "position", "rebuild": {"id", "running_done" | "done" | "failed"}}`
//! answered with `{"rebuild": {"id", "block_categories"} | null}`.
//! Errors are the API's usual `{"code", "message"}` bodies: 400
//! `invalid_projection`, `invalid_category` or `invalid_runner`, 404
//! `projection_not_found` or `no_rebuild`, 409 `rebuild_in_progress`.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::HttpError;
use quipu_node::projection::{ProjectionInfo, Projections, RebuildReport, Report};
use quipu_node::{ApiError, ErrorCode};

type Shared = Arc<Projections>;

/// Body of a rebuild request.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RebuildBody {
    #[serde(default)]
    block_categories: Vec<String>,
}

/// A runner's rebuild progress.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProgressBody {
    id: u64,
    running_done: Option<u64>,
    done: Option<u64>,
    failed: Option<String>,
}

/// Body of a report.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportBody {
    runner: String,
    position: Option<u64>,
    rebuild: Option<ProgressBody>,
}

/// The projection routes.
pub fn router(projections: Shared) -> Router {
    Router::new()
        .route("/v1/projections", get(list))
        .route("/v1/projections/{name}", get(info))
        .route("/v1/projections/{name}/rebuild", post(rebuild).delete(cancel))
        .route("/v1/projections/{name}/report", post(report))
        .with_state(projections)
}

async fn list(State(projections): State<Shared>) -> Json<Value> {
    Json(json!({"projections": projections.list().await}))
}

async fn info(State(projections): State<Shared>, Path(name): Path<String>) -> Result<Json<ProjectionInfo>, HttpError> {
    Ok(Json(projections.info(&name).await?))
}

async fn rebuild(
    State(projections): State<Shared>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<ProjectionInfo>), HttpError> {
    // The body is optional: no body asks for a rebuild that blocks nothing.
    let body: RebuildBody = if body.is_empty() {
        RebuildBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::new(ErrorCode::InvalidJson, format!("the rebuild body: {e}")))?
    };
    let info = projections.request_rebuild(&name, &body.block_categories).await?;
    Ok((StatusCode::ACCEPTED, Json(info)))
}

async fn cancel(
    State(projections): State<Shared>,
    Path(name): Path<String>,
) -> Result<Json<ProjectionInfo>, HttpError> {
    Ok(Json(projections.cancel_rebuild(&name).await?))
}

async fn report(
    State(projections): State<Shared>,
    Path(name): Path<String>,
    body: Result<Json<ReportBody>, JsonRejection>,
) -> Result<Json<Value>, HttpError> {
    let Json(body) = body?;
    let rebuild = body.rebuild.map(progress).transpose()?;
    let report = Report { runner: body.runner, position: body.position, rebuild };
    let assignment = projections.report(&name, report).await?;
    let rebuild = assignment.map(|a| json!({"id": a.id, "block_categories": a.block_categories}));
    Ok(Json(json!({ "rebuild": rebuild })))
}

fn progress(body: ProgressBody) -> Result<(u64, RebuildReport), ApiError> {
    let outcome = match (body.running_done, body.done, body.failed) {
        (Some(done), None, None) => RebuildReport::Running { done },
        (None, Some(done), None) => RebuildReport::Done { done },
        (None, None, Some(message)) => RebuildReport::Failed { message },
        _ => {
            return Err(ApiError::new(
                ErrorCode::InvalidReport,
                "a rebuild report has exactly one of running_done, done and failed",
            ));
        }
    };
    Ok((body.id, outcome))
}
