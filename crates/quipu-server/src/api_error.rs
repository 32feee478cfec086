//! Errors as HTTP responses: a status and a JSON body
//! `{"code": "...", "message": "..."}` (plus details for conflicts).
//! Bad input maps to 4xx; only failures of the store itself are 5xx.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use quipu_core::{Conflict, Revision};
use serde_json::{Map, Value, json};

/// An error answer of the API.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable code, e.g. `wrong_expected_revision`.
    pub code: &'static str,
    /// What went wrong, for people.
    pub message: String,
    /// More fields of the body (e.g. `expected`, `actual`).
    pub details: Map<String, Value>,
}

impl ApiError {
    /// An error with `status`, `code` and `message`.
    #[must_use]
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), details: Map::new() }
    }

    /// A 400 Bad Request.
    #[must_use]
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// Adds a field to the body.
    #[must_use]
    pub fn with(mut self, key: &str, value: Value) -> ApiError {
        self.details.insert(key.to_string(), value);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = Map::new();
        body.insert("code".into(), json!(self.code));
        body.insert("message".into(), json!(self.message));
        body.extend(self.details);
        (self.status, Json(Value::Object(body))).into_response()
    }
}

impl From<quipu_core::Error> for ApiError {
    fn from(error: quipu_core::Error) -> ApiError {
        use quipu_core::Error as E;
        let message = error.to_string();
        let (status, code) = match &error {
            E::InvalidName { .. } => (StatusCode::BAD_REQUEST, "invalid_name"),
            E::InvalidEventId { .. } => (StatusCode::BAD_REQUEST, "invalid_event_id"),
            E::InvalidTags { .. } => (StatusCode::BAD_REQUEST, "invalid_tags"),
            E::EmptyAppend => (StatusCode::BAD_REQUEST, "empty_append"),
            E::EmptyQuery => (StatusCode::BAD_REQUEST, "empty_query"),
            E::DuplicateStream { .. } => (StatusCode::BAD_REQUEST, "duplicate_stream"),
            E::DuplicateEventId { .. } => (StatusCode::BAD_REQUEST, "duplicate_event_id"),
            E::ReadLimitTooLarge { .. } => (StatusCode::BAD_REQUEST, "limit_too_large"),
            E::EventTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "event_too_large"),
            E::AppendTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "append_too_large"),
            E::TooManyEvents { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_many_events"),
            E::TooManyStreams { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_many_streams"),
            E::EventIdReused { .. } => (StatusCode::CONFLICT, "event_id_reused"),
            E::ScavengeRunning => (StatusCode::CONFLICT, "scavenge_running"),
            E::SnapshotBeyondStream { .. } => (StatusCode::BAD_REQUEST, "invalid_snapshot"),
            E::SnapshotTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "snapshot_too_large"),
            E::StreamNotFound { .. } => (StatusCode::NOT_FOUND, "stream_not_found"),
            E::StoreFailed { .. } | E::Closed => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        if status.is_server_error() {
            tracing::error!(%error, "request failed in the store");
        }
        ApiError::new(status, code, message)
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> ApiError {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::new(status, "body_too_large", rejection.body_text());
        }
        ApiError::bad_request("invalid_json", rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> ApiError {
        ApiError::bad_request("invalid_query", rejection.body_text())
    }
}

/// A 409 naming every failed stream with its actual revision, and the
/// conflicting position of a failed DCB condition. The first failed
/// stream's fields are also at the top level, for single-stream clients.
pub fn conflict_error(conflict: &Conflict) -> ApiError {
    let revision = |r: Option<Revision>| r.map_or(Value::Null, |r| json!(r.0));
    let streams: Vec<Value> = conflict
        .streams
        .iter()
        .map(|c| json!({"stream": c.stream.as_str(), "expected": c.expected.to_string(), "actual": revision(c.actual)}))
        .collect();
    let mut error = match conflict.streams.first() {
        Some(first) => ApiError::new(
            StatusCode::CONFLICT,
            "wrong_expected_revision",
            format!(
                "stream {} is at revision {}, the append expected {}; nothing was written",
                first.stream,
                first.actual.map_or_else(|| "none (no stream)".to_string(), |r| r.0.to_string()),
                first.expected
            ),
        )
        .with("stream", json!(first.stream.as_str()))
        .with("expected", json!(first.expected.to_string()))
        .with("actual", revision(first.actual)),
        None => ApiError::new(
            StatusCode::CONFLICT,
            "condition_failed",
            "an event matching the append's condition exists after its position; nothing was written",
        ),
    };
    error = error.with("streams", Value::Array(streams));
    if let Some(position) = conflict.condition_position {
        error = error.with("condition_position", json!(position.0));
    }
    error
}
