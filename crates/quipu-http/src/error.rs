//! A service's [`ApiError`] as an HTTP response: the status its code's
//! kind maps to and a JSON body `{"code": "...", "message": "..."}` (plus
//! the error's details, e.g. a conflict's revisions). Bad input maps to
//! 4xx; only failures of the store itself are 5xx.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use quipu_node::{ApiError, ErrorCode, ErrorKind};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

/// An HTTP handler's failure: a service's error, or the request's body or
/// query refused before any service saw it.
#[derive(Debug)]
pub struct HttpError(pub ApiError);

// Describes, for the OpenAPI document, the body `HttpError` answers
// with; never built.
/// An error: what failed, as a code programs match and a message for
/// people, and for some codes details beside them.
#[derive(Debug, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// What failed, one of a closed list (`wrong_expected_revision`,
    /// `stream_not_found`, `invalid_group`...).
    pub code: String,
    /// What failed, for people.
    pub message: String,
    /// With `invalid_group`: the field that is wrong.
    pub field: Option<String>,
    /// With `wrong_expected_revision`: the first stream whose condition
    /// failed.
    pub stream: Option<String>,
    /// With `wrong_expected_revision`: what that stream was expected at.
    pub expected: Option<String>,
    /// With `wrong_expected_revision`: the revision it is at (`null`: no
    /// stream).
    pub actual: Option<u64>,
    /// With a failed append: each stream whose condition failed, as
    /// `{stream, expected, actual}`.
    #[schema(value_type = Option<Vec<Object>>)]
    pub streams: Option<Vec<Value>>,
    /// With `condition_failed`: the position of an event that matched the
    /// condition.
    pub condition_position: Option<u64>,
    /// With `replay_in_progress`: the category closed to appends.
    pub category: Option<String>,
    /// With `replay_in_progress`: the projection being rebuilt.
    pub projection: Option<String>,
}

impl From<ApiError> for HttpError {
    fn from(error: ApiError) -> HttpError {
        HttpError(error)
    }
}

impl From<quipu_core::Error> for HttpError {
    fn from(error: quipu_core::Error) -> HttpError {
        HttpError(error.into())
    }
}

impl From<quipu_core::NameError> for HttpError {
    fn from(error: quipu_core::NameError) -> HttpError {
        HttpError(error.into())
    }
}

/// The HTTP status of a kind of failure.
#[must_use]
pub fn http_status(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::Invalid => StatusCode::BAD_REQUEST,
        ErrorKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Gone => StatusCode::GONE,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let HttpError(error) = self;
        let mut body = Map::new();
        body.insert("code".into(), json!(error.code.as_str()));
        body.insert("message".into(), json!(error.message));
        body.extend(error.details);
        (http_status(error.code.kind()), Json(Value::Object(body))).into_response()
    }
}

impl From<JsonRejection> for HttpError {
    fn from(rejection: JsonRejection) -> HttpError {
        let code = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ErrorCode::BodyTooLarge
        } else {
            ErrorCode::InvalidJson
        };
        HttpError(ApiError::new(code, rejection.body_text()))
    }
}

impl From<QueryRejection> for HttpError {
    fn from(rejection: QueryRejection) -> HttpError {
        HttpError(ApiError::new(ErrorCode::InvalidQuery, rejection.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_stores_and_the_servers_failures_are_5xx() {
        for code in ErrorCode::ALL {
            let status = http_status(code.kind());
            let server_side = matches!(
                code,
                ErrorCode::StoreUnavailable
                    | ErrorCode::OutcomeUnknown
                    | ErrorCode::PositionNotReached
                    | ErrorCode::ServerBusy
                    | ErrorCode::Internal
                    | ErrorCode::CorruptRecord
            );
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
