//! Consumer groups over HTTP/JSON: `POST /v1/groups` creates one,
//! `GET /v1/groups` lists them, `GET`, `PATCH` and `DELETE
//! /v1/groups/{name}` read, tune and delete one, `POST
//! /v1/groups/{name}/replay-parked` delivers its parked events again, and
//! `POST /v1/groups/{name}/move` with `{"to": node}` moves it to another
//! cluster node.
//!
//! Members consume over HTTP too (see [`quipu_node::group::session`]): `POST
//! /v1/groups/{name}/members/{member}/poll` with `{"max", "wait_ms"}`
//! answers `{"events": [{"event", "retries"}]}`; `.../ack` takes
//! `{"positions"}`, `.../nack` takes `{"positions", "action": "retry" |
//! "park" | "skip", "reason"}`; `DELETE .../members/{member}` leaves.
//! A create body is `{"name", "filter": {"category", "event_types",
//! "tag", "stream_prefix", "integration"}, "start", "tuning": {"max_retries",
//! "message_timeout_ms", "max_in_flight", "backoff_base_ms",
//! "backoff_max_ms"}}`, everything but the name optional; a `PATCH` body
//! is a tuning object. Errors are the API's usual `{"code", "message"}` bodies: 400
//! `invalid_group` naming the field, 404 `group_not_found`, 409
//! `group_exists`.

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
use crate::mirror::{
    Deliveries, GroupFilter, GroupInfo as GroupInfoSchema, GroupList, GroupStart, GroupStrategy, GroupTuning,
};
use crate::wire::EventJson;
use quipu_node::group::dispatcher::{NackAction, Strategy};
use quipu_node::group::session::Sessions;
use quipu_node::group::settings::{Filter, StartFrom, TuningRequest};
use quipu_node::group::{GroupInfo, Groups};

/// What the group routes share.
#[derive(Clone)]
struct Shared {
    groups: Arc<Groups>,
    sessions: Arc<Sessions>,
}

/// Body of a poll.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Poll)]
struct PollBody {
    /// Most events to return.
    #[serde(default = "poll_max")]
    #[schema(minimum = 1, maximum = 1000, default = 100)]
    max: usize,
    /// Longest wait for the first event, ms (0: answer at once).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 30_000, default = 0)]
    wait_ms: u64,
}

fn poll_max() -> usize {
    100
}

/// Body of an ack.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Ack)]
struct AckBody {
    /// Positions of the handled events.
    positions: Vec<u64>,
}

/// What a nack asks for: retry (after a backoff; parked when retries run
/// out), park or skip.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = NackAction)]
enum NackActionJson {
    Retry,
    Park,
    Skip,
}

/// Body of a nack.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Nack)]
struct NackBody {
    /// Positions of the events that could not be handled.
    positions: Vec<u64>,
    /// What to do with them.
    action: NackActionJson,
    /// Why, kept with a parked event.
    #[serde(default)]
    reason: String,
}

/// Body of `POST /v1/groups`: everything but the name is optional.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = GroupCreate)]
struct CreateBody {
    /// The group's name.
    name: String,
    /// Which events it takes (all when absent).
    #[serde(default)]
    #[schema(value_type = GroupFilter)]
    filter: Filter,
    /// `"beginning"` (default), `"end"` or `{"position": n}`.
    #[serde(default = "beginning")]
    #[schema(value_type = GroupStart, default = "beginning")]
    start: StartFrom,
    /// Retry and flow settings.
    #[serde(default)]
    #[schema(value_type = GroupTuning)]
    tuning: TuningRequest,
    /// `"per_stream"` (default), `"round_robin"`, `"dispatch_to_single"`
    /// or `"pinned"`.
    #[serde(default)]
    #[schema(value_type = GroupStrategy)]
    strategy: Strategy,
}

/// Answer of a group's delete.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = GroupDeleted)]
struct Deleted {
    /// The group deleted.
    deleted: String,
}

/// Body of a group's move.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = GroupMove)]
struct MoveBody {
    /// The cluster node the group runs on from now on.
    to: String,
}

/// Answer of a replay of parked events.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ReplayScheduled)]
struct Replayed {
    /// The group.
    group: String,
    /// Parked events scheduled for delivery.
    scheduled: u64,
}

/// Answer of an ack.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Acked)]
struct Acked {
    /// Positions acknowledged.
    acked: usize,
}

/// Answer of a nack.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Nacked)]
struct Nacked {
    /// Positions nacked.
    nacked: usize,
}

/// Answer of a member's leave.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Left)]
struct Left {
    /// The member that left.
    left: String,
}

fn beginning() -> StartFrom {
    StartFrom::Beginning
}

/// The group routes over `groups`, each described in the OpenAPI
/// document.
pub fn router(groups: Arc<Groups>) -> OpenApiRouter {
    let sessions = Sessions::new(Arc::clone(&groups));
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(info, update, delete))
        .routes(routes!(replay_parked))
        .routes(routes!(move_home))
        .routes(routes!(leave))
        .routes(routes!(poll))
        .routes(routes!(ack))
        .routes(routes!(nack))
        .with_state(Shared { groups, sessions })
}

/// A group's info as JSON.
#[must_use]
pub fn info_json(info: &GroupInfo) -> Value {
    let s = &info.settings;
    let mut json = json!({
        "name": s.name,
        "filter": s.filter,
        "start": s.start,
        "max_retries": s.max_retries,
        "message_timeout_ms": s.message_timeout_ms,
        "max_in_flight": s.max_in_flight,
        "backoff_base_ms": s.backoff_base_ms,
        "backoff_max_ms": s.backoff_max_ms,
        "strategy": s.strategy,
        "checkpoint": info.status.checkpoint.0,
        "head": info.head.0,
        "lag": info.lag(),
        "in_flight": info.status.in_flight,
        "parking": info.status.parking,
        "retrying": info.status.retrying,
        "buffered": info.status.buffered,
        "parked": info.status.parked,
        "parked_stream": s.parked_stream(),
        "checkpoint_stream": s.checkpoint_stream(),
        "members": info.status.members.iter().map(|m| json!({
            "name": m.name,
            "in_flight": m.in_flight,
            "max_in_flight": m.max_in_flight,
            "queued": m.queued,
            "delivered": m.delivered,
            "acked": m.acked,
            "failed": m.failed,
        })).collect::<Vec<_>>(),
        "running_here": info.running_here,
    });
    if let (Some(home), Some(fields)) = (&s.home, json.as_object_mut()) {
        fields.insert("home".into(), json!(home));
    }
    json
}

/// Create a consumer group.
#[utoipa::path(post, path = "/v1/groups", tag = "groups", operation_id = "create_group",
    request_body = CreateBody,
    responses(
        (status = 201, description = "The group.", body = GroupInfoSchema),
        (status = 400, description = "A bad name or setting; `field` names it.", body = ErrorBody),
        (status = 409, description = "A group of that name exists.", body = ErrorBody)))]
async fn create(
    State(Shared { groups, .. }): State<Shared>,
    body: Result<Json<CreateBody>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), HttpError> {
    let Json(body) = body?;
    groups.create_sharing(&body.name, body.filter, body.start, &body.tuning, body.strategy, None).await?;
    let info = groups.info(&body.name).await?;
    Ok((StatusCode::CREATED, Json(info_json(&info))))
}

/// List consumer groups with their checkpoint, lag and members.
#[utoipa::path(get, path = "/v1/groups", tag = "groups", operation_id = "list_groups",
    responses((status = 200, description = "Every group.", body = GroupList)))]
async fn list(State(Shared { groups, .. }): State<Shared>) -> Json<Value> {
    let infos: Vec<Value> = groups.list().await.iter().map(info_json).collect();
    Json(json!({ "groups": infos }))
}

/// A group's settings, state and members.
#[utoipa::path(get, path = "/v1/groups/{name}", tag = "groups", operation_id = "get_group",
    params(("name" = String, Path, description = "The group.")),
    responses(
        (status = 200, description = "The group.", body = GroupInfoSchema),
        (status = 404, description = "No such group.", body = ErrorBody)))]
async fn info(State(Shared { groups, .. }): State<Shared>, Path(name): Path<String>) -> Result<Json<Value>, HttpError> {
    Ok(Json(info_json(&groups.info(&name).await?)))
}

/// Change a group's retry and flow settings.
#[utoipa::path(patch, path = "/v1/groups/{name}", tag = "groups", operation_id = "tune_group",
    params(("name" = String, Path, description = "The group.")),
    request_body = GroupTuning,
    responses(
        (status = 200, description = "The group.", body = GroupInfoSchema),
        (status = 400, description = "A bad setting.", body = ErrorBody),
        (status = 404, description = "No such group.", body = ErrorBody)))]
async fn update(
    State(Shared { groups, .. }): State<Shared>,
    Path(name): Path<String>,
    body: Result<Json<TuningRequest>, JsonRejection>,
) -> Result<Json<Value>, HttpError> {
    let Json(tuning) = body?;
    groups.update(&name, &tuning).await?;
    Ok(Json(info_json(&groups.info(&name).await?)))
}

/// Delete a group; its checkpoint and parked streams stay.
#[utoipa::path(delete, path = "/v1/groups/{name}", tag = "groups", operation_id = "delete_group",
    params(("name" = String, Path, description = "The group.")),
    responses(
        (status = 200, description = "Deleted.", body = Deleted),
        (status = 404, description = "No such group.", body = ErrorBody)))]
async fn delete(
    State(Shared { groups, .. }): State<Shared>,
    Path(name): Path<String>,
) -> Result<Json<Deleted>, HttpError> {
    groups.delete(&name).await?;
    Ok(Json(Deleted { deleted: name }))
}

/// Deliver again every parked event not replayed yet.
#[utoipa::path(post, path = "/v1/groups/{name}/replay-parked", tag = "groups",
    params(("name" = String, Path, description = "The group.")),
    responses(
        (status = 200, description = "Scheduled.", body = Replayed),
        (status = 404, description = "No such group.", body = ErrorBody)))]
async fn replay_parked(
    State(Shared { groups, .. }): State<Shared>,
    Path(name): Path<String>,
) -> Result<Json<Replayed>, HttpError> {
    let scheduled = groups.replay_parked(&name).await?;
    Ok(Json(Replayed { group: name, scheduled }))
}

/// In cluster mode, move a group to another node: its home stops it
/// (writing its checkpoint) and the new home starts it from there. Events
/// out to members at the move may be delivered again.
#[utoipa::path(post, path = "/v1/groups/{name}/move", tag = "groups", operation_id = "move_group",
    params(("name" = String, Path, description = "The group.")),
    request_body = MoveBody,
    responses(
        (status = 200, description = "The group, with its new home.", body = GroupInfoSchema),
        (status = 400, description = "An empty node name, or a node that stands alone.", body = ErrorBody),
        (status = 404, description = "No such group.", body = ErrorBody)))]
async fn move_home(
    State(Shared { groups, .. }): State<Shared>,
    Path(name): Path<String>,
    body: Result<Json<MoveBody>, JsonRejection>,
) -> Result<Json<Value>, HttpError> {
    let Json(body) = body?;
    groups.move_home(&name, &body.to).await?;
    Ok(Json(info_json(&groups.info(&name).await?)))
}

/// Take deliveries; the first poll joins the group. A session idle longer
/// than the group's message timeout leaves as failed.
#[utoipa::path(post, path = "/v1/groups/{name}/members/{member}/poll", tag = "groups",
    params(("name" = String, Path, description = "The group."), ("member" = String, Path, description = "The member session.")),
    request_body = PollBody,
    responses(
        (status = 200, description = "The deliveries, in order.", body = Deliveries),
        (status = 400, description = "Bad limits.", body = ErrorBody),
        (status = 404, description = "No such group.", body = ErrorBody)))]
async fn poll(
    State(Shared { sessions, .. }): State<Shared>,
    Path((name, member)): Path<(String, String)>,
    body: Result<Json<PollBody>, JsonRejection>,
) -> Result<Json<Value>, HttpError> {
    let Json(body) = body?;
    let deliveries = sessions.poll(&name, &member, body.max, std::time::Duration::from_millis(body.wait_ms)).await?;
    let events: Vec<Value> = deliveries
        .into_iter()
        .map(|d| json!({ "event": EventJson::from((*d.event).clone()), "retries": d.retries }))
        .collect();
    Ok(Json(json!({ "events": events })))
}

/// Acknowledge handled events.
#[utoipa::path(post, path = "/v1/groups/{name}/members/{member}/ack", tag = "groups",
    params(("name" = String, Path, description = "The group."), ("member" = String, Path, description = "The member session.")),
    request_body = AckBody,
    responses(
        (status = 200, description = "Acknowledged.", body = Acked),
        (status = 404, description = "No such member session.", body = ErrorBody)))]
async fn ack(
    State(Shared { sessions, .. }): State<Shared>,
    Path((name, member)): Path<(String, String)>,
    body: Result<Json<AckBody>, JsonRejection>,
) -> Result<Json<Acked>, HttpError> {
    let Json(body) = body?;
    let acked = body.positions.len();
    sessions.ack(&name, &member, body.positions.into_iter().map(quipu_core::Position).collect()).await?;
    Ok(Json(Acked { acked }))
}

/// Events that could not be handled: retry (after a backoff; parked when
/// retries run out), park or skip.
#[utoipa::path(post, path = "/v1/groups/{name}/members/{member}/nack", tag = "groups",
    params(("name" = String, Path, description = "The group."), ("member" = String, Path, description = "The member session.")),
    request_body = NackBody,
    responses(
        (status = 200, description = "Nacked.", body = Nacked),
        (status = 400, description = "Bad body.", body = ErrorBody),
        (status = 404, description = "No such member session.", body = ErrorBody)))]
async fn nack(
    State(Shared { sessions, .. }): State<Shared>,
    Path((name, member)): Path<(String, String)>,
    body: Result<Json<NackBody>, JsonRejection>,
) -> Result<Json<Nacked>, HttpError> {
    let Json(body) = body?;
    let action = match body.action {
        NackActionJson::Retry => NackAction::Retry,
        NackActionJson::Park => NackAction::Park,
        NackActionJson::Skip => NackAction::Skip,
    };
    let nacked = body.positions.len();
    sessions
        .nack(&name, &member, body.positions.into_iter().map(quipu_core::Position).collect(), action, body.reason)
        .await?;
    Ok(Json(Nacked { nacked }))
}

/// Leave the group cleanly: events held go to other members without
/// counting as failures.
#[utoipa::path(delete, path = "/v1/groups/{name}/members/{member}", tag = "groups",
    params(("name" = String, Path, description = "The group."), ("member" = String, Path, description = "The member session.")),
    responses(
        (status = 200, description = "Left.", body = Left),
        (status = 404, description = "No such member session.", body = ErrorBody)))]
async fn leave(
    State(Shared { sessions, .. }): State<Shared>,
    Path((name, member)): Path<(String, String)>,
) -> Result<Json<Left>, HttpError> {
    sessions.leave(&name, &member)?;
    Ok(Json(Left { left: member }))
}
