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

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ErrorBody, HttpError};
use crate::mirror::{ProjectionInfo as ProjectionInfoSchema, ProjectionList};
use quipu_node::projection::{ProjectionInfo, Projections, RebuildReport, Report};
use quipu_node::{ApiError, ErrorCode};

type Shared = Arc<Projections>;

/// Body of a rebuild request (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RebuildRequest)]
struct RebuildBody {
    /// Categories closed to appends until the rebuild ends.
    #[serde(default)]
    block_categories: Vec<String>,
}

/// A runner's rebuild progress: exactly one of `running_done`, `done`
/// and `failed`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RebuildProgress)]
struct ProgressBody {
    /// The rebuild's id.
    id: u64,
    /// Still building; every event before this position is applied.
    running_done: Option<u64>,
    /// Swapped in at this position.
    done: Option<u64>,
    /// Gave up, for this reason.
    failed: Option<String>,
}

/// Body of a report.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RunnerReport)]
struct ReportBody {
    /// Who reports (e.g. host and process id).
    runner: String,
    /// The live model's position (its next position to read), when known.
    position: Option<u64>,
    /// The rebuild this runner runs.
    rebuild: Option<ProgressBody>,
}

/// A rebuild given to a runner.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = RebuildAssignment)]
struct Assignment {
    /// Categories closed to appends while it runs.
    block_categories: Vec<String>,
    /// The rebuild's id.
    id: u64,
}

/// Answer of a report: the rebuild the runner should run, or `null`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ReportAnswer)]
struct ReportAnswer {
    /// The rebuild to run.
    rebuild: Option<Assignment>,
}

/// The projection routes, each described in the OpenAPI document.
pub fn router(projections: Shared) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(info))
        .routes(routes!(rebuild, cancel))
        .routes(routes!(report))
        .with_state(projections)
}

/// Projections whose runners reported since the server started, or that
/// had a rebuild.
#[utoipa::path(get, path = "/v1/projections", tag = "projections", operation_id = "list_projections",
    responses((status = 200, description = "The projections.", body = ProjectionList)))]
async fn list(State(projections): State<Shared>) -> Json<Value> {
    Json(json!({"projections": projections.list().await}))
}

/// One projection, with its rebuild's progress (done/total positions,
/// rate, ETA).
#[utoipa::path(get, path = "/v1/projections/{name}", tag = "projections", operation_id = "get_projection",
    params(("name" = String, Path, description = "The projection.")),
    responses(
        (status = 200, description = "The projection.", body = ProjectionInfoSchema),
        (status = 404, description = "The server knows no such projection.", body = ErrorBody)))]
async fn info(State(projections): State<Shared>, Path(name): Path<String>) -> Result<Json<ProjectionInfo>, HttpError> {
    Ok(Json(projections.info(&name).await?))
}

/// Ask the projection's runners to rebuild it beside the live model and
/// swap it in. With `block_categories`, appends to those categories are
/// refused (409 `replay_in_progress`) until it ends.
#[utoipa::path(post, path = "/v1/projections/{name}/rebuild", tag = "projections", operation_id = "rebuild_projection",
    params(("name" = String, Path, description = "The projection.")),
    request_body = Option<RebuildBody>,
    responses(
        (status = 202, description = "Recorded in `$projections`.", body = ProjectionInfoSchema),
        (status = 400, description = "A bad name or category.", body = ErrorBody),
        (status = 409, description = "A rebuild is pending or running.", body = ErrorBody)))]
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

/// Cancel the pending or running rebuild; the live model stays.
#[utoipa::path(delete, path = "/v1/projections/{name}/rebuild", tag = "projections", operation_id = "cancel_rebuild",
    params(("name" = String, Path, description = "The projection.")),
    responses(
        (status = 200, description = "Cancelled.", body = ProjectionInfoSchema),
        (status = 404, description = "No rebuild is pending or running.", body = ErrorBody)))]
async fn cancel(
    State(projections): State<Shared>,
    Path(name): Path<String>,
) -> Result<Json<ProjectionInfo>, HttpError> {
    Ok(Json(projections.cancel_rebuild(&name).await?))
}

/// A runner's report (see quipu-projection's Supervisor); answers the
/// rebuild it should run.
#[utoipa::path(post, path = "/v1/projections/{name}/report", tag = "projections", operation_id = "report_projection",
    params(("name" = String, Path, description = "The projection.")),
    request_body = ReportBody,
    responses(
        (status = 200, description = "The rebuild to run, or `null`.", body = ReportAnswer),
        (status = 400, description = "A bad name, runner or report.", body = ErrorBody)))]
async fn report(
    State(projections): State<Shared>,
    Path(name): Path<String>,
    body: Result<Json<ReportBody>, JsonRejection>,
) -> Result<Json<ReportAnswer>, HttpError> {
    let Json(body) = body?;
    let rebuild = body.rebuild.map(progress).transpose()?;
    let report = Report { runner: body.runner, position: body.position, rebuild };
    let assignment = projections.report(&name, report).await?;
    let rebuild = assignment.map(|a| Assignment { block_categories: a.block_categories, id: a.id });
    Ok(Json(ReportAnswer { rebuild }))
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
