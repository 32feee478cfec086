//! A service's error: an [`ErrorCode`], a message for people and details
//! for programs; and as an HTTP response, the status its code's kind maps
//! to and a JSON body `{"code": "...", "message": "..."}` (plus details for
//! conflicts). Bad input maps to 4xx; only failures of the store itself
//! are 5xx.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use quipu_core::{Conflict, Revision};
use serde_json::{Map, Value, json};

use crate::error_code::{ErrorCode, ErrorKind};

/// An error answer of the API.
#[derive(Debug)]
pub struct ApiError {
    /// What went wrong, e.g. [`ErrorCode::WrongExpectedRevision`].
    pub code: ErrorCode,
    /// What went wrong, for people.
    pub message: String,
    /// More fields of the body (e.g. `expected`, `actual`).
    pub details: Map<String, Value>,
}

impl ApiError {
    /// An error with `code` and `message`.
    #[must_use]
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError { code, message: message.into(), details: Map::new() }
    }

    /// Adds a field to the body.
    #[must_use]
    pub fn with(mut self, key: &str, value: Value) -> ApiError {
        self.details.insert(key.to_string(), value);
        self
    }
}

/// The HTTP status of a kind of failure.
#[must_use]
pub fn http_status(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::Invalid => StatusCode::BAD_REQUEST,
        ErrorKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Gone => StatusCode::GONE,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = Map::new();
        body.insert("code".into(), json!(self.code.as_str()));
        body.insert("message".into(), json!(self.message));
        body.extend(self.details);
        (http_status(self.code.kind()), Json(Value::Object(body))).into_response()
    }
}

impl From<quipu_core::Error> for ApiError {
    fn from(error: quipu_core::Error) -> ApiError {
        use quipu_core::Error as E;
        let message = error.to_string();
        let code = match &error {
            E::InvalidName { .. } => ErrorCode::InvalidName,
            E::InvalidEventId { .. } => ErrorCode::InvalidEventId,
            E::InvalidTags { .. } => ErrorCode::InvalidTags,
            E::EmptyAppend => ErrorCode::EmptyAppend,
            E::EmptyQuery => ErrorCode::EmptyQuery,
            E::DuplicateStream { .. } => ErrorCode::DuplicateStream,
            E::DuplicateEventId { .. } => ErrorCode::DuplicateEventId,
            E::ReadLimitTooLarge { .. } => ErrorCode::LimitTooLarge,
            E::EventTooLarge { .. } => ErrorCode::EventTooLarge,
            E::AppendTooLarge { .. } => ErrorCode::AppendTooLarge,
            E::TooManyEvents { .. } => ErrorCode::TooManyEvents,
            E::TooManyStreams { .. } => ErrorCode::TooManyStreams,
            E::EventIdReused { .. } => ErrorCode::EventIdReused,
            E::ScavengeRunning => ErrorCode::ScavengeRunning,
            E::SnapshotBeyondStream { .. } => ErrorCode::InvalidSnapshot,
            E::SnapshotTooLarge { .. } => ErrorCode::SnapshotTooLarge,
            E::StreamNotFound { .. } => ErrorCode::StreamNotFound,
            E::StoreFailed { .. } | E::Closed => ErrorCode::StoreUnavailable,
            _ => ErrorCode::Internal,
        };
        if matches!(code.kind(), ErrorKind::Unavailable | ErrorKind::Internal) {
            tracing::error!(%error, "request failed in the store");
        }
        ApiError::new(code, message)
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> ApiError {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::new(ErrorCode::BodyTooLarge, rejection.body_text());
        }
        ApiError::new(ErrorCode::InvalidJson, rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> ApiError {
        ApiError::new(ErrorCode::InvalidQuery, rejection.body_text())
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
            ErrorCode::WrongExpectedRevision,
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
            ErrorCode::ConditionFailed,
            "an event matching the append's condition exists after its position; nothing was written",
        ),
    };
    error = error.with("streams", Value::Array(streams));
    if let Some(position) = conflict.condition_position {
        error = error.with("condition_position", json!(position.0));
    }
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_stores_and_the_servers_failures_are_5xx() {
        for code in ErrorCode::ALL {
            let status = http_status(code.kind());
            let server_side =
                matches!(code, ErrorCode::StoreUnavailable | ErrorCode::Internal | ErrorCode::CorruptRecord);
            assert_eq!(status.is_server_error(), server_side, "{code}: {status}");
            assert!(status.is_client_error() || status.is_server_error(), "{code}: {status}");
        }
    }

    #[test]
    fn the_answers_clients_tell_apart_keep_their_statuses() {
        let cases = [
            (ErrorCode::WrongExpectedRevision, 409),
            (ErrorCode::StreamNotFound, 404),
            (ErrorCode::StreamDeleted, 410),
            (ErrorCode::EventTooLarge, 413),
            (ErrorCode::InvalidSchema, 422),
            (ErrorCode::InvalidJson, 400),
            (ErrorCode::StoreUnavailable, 503),
        ];
        for (code, status) in cases {
            assert_eq!(http_status(code.kind()).as_u16(), status, "{code}");
        }
    }
}
