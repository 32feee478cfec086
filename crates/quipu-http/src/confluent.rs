//! The subset of the Confluent Schema Registry REST API that Kafka tooling
//! uses, at its root paths on the HTTP port, over [`Schemas`]:
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /subjects` | `["subject", ...]` |
//! | `GET /subjects/{s}/versions` | `[1, 2, ...]` |
//! | `POST /subjects/{s}/versions` `{"schema", "schemaType"}` | `{"id"}` |
//! | `POST /subjects/{s}` `{"schema"}` | the version it is registered as |
//! | `GET /subjects/{s}/versions/{v}` (`v` a number or `latest`) | `{"subject", "version", "id", "schemaType", "schema"}` |
//! | `GET /schemas/ids/{id}` | `{"schema", "schemaType"}` |
//! | `POST /compatibility/subjects/{s}/versions/{v}` | `{"is_compatible", "messages"}` |
//! | `GET`/`PUT /config`, `/config/{s}` | `{"compatibilityLevel"}` / `{"compatibility"}` |
//!
//! Only JSON Schema: a `schemaType` of `AVRO` or `PROTOBUF` is refused
//! (422, error code 42201); an absent one is taken as JSON. Errors have
//! Confluent's shape, `{"error_code", "message"}`: 40401 subject not
//! found, 40402 version not found, 40403 schema not found, 409
//! incompatible (the message lists every break), 42201 invalid schema,
//! 42202 invalid version, 42203 invalid compatibility level.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use quipu_node::schema::compatibility::Mode;
use quipu_node::schema::registry::{SchemaError, SchemaVersion, Schemas};
use quipu_node::{ApiError, ErrorCode, ErrorKind};

type Shared = Arc<Schemas>;

/// An error in Confluent's shape.
struct ConfluentError {
    status: StatusCode,
    code: u32,
    message: String,
}

impl IntoResponse for ConfluentError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"error_code": self.code, "message": self.message}))).into_response()
    }
}

impl From<ApiError> for ConfluentError {
    fn from(error: ApiError) -> ConfluentError {
        // Confluent answers bad input with 422 and its own codes; what it
        // has no code for gets the HTTP status times 100.
        let status = match error.code.kind() {
            ErrorKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
            kind => crate::error::http_status(kind),
        };
        let code = match error.code {
            ErrorCode::SubjectNotFound => 40401,
            ErrorCode::VersionNotFound => 40402,
            ErrorCode::SchemaNotFound => 40403,
            ErrorCode::InvalidCompatibility => 42203,
            _ if status == StatusCode::UNPROCESSABLE_ENTITY => 42201,
            _ => u32::from(status.as_u16()) * 100,
        };
        ConfluentError { status, code, message: error.message }
    }
}

impl From<JsonRejection> for ConfluentError {
    fn from(rejection: JsonRejection) -> ConfluentError {
        ConfluentError::from(crate::error::HttpError::from(rejection).0)
    }
}

impl From<SchemaError> for ConfluentError {
    fn from(error: SchemaError) -> ConfluentError {
        match error {
            SchemaError::Api(error) => error.into(),
            SchemaError::Incompatible(breaks) => ConfluentError {
                status: StatusCode::CONFLICT,
                code: 409,
                message: format!(
                    "Schema being registered is incompatible with an earlier schema: {}",
                    breaks.join("; ")
                ),
            },
        }
    }
}

/// A schema in a request.
#[derive(Debug, Deserialize)]
struct SchemaBody {
    schema: String,
    #[serde(rename = "schemaType")]
    schema_type: Option<String>,
    /// Sent by some clients; ignored.
    #[serde(default)]
    #[allow(dead_code)]
    references: Vec<Value>,
}

impl SchemaBody {
    fn json_schema(&self) -> Result<&str, ConfluentError> {
        match self.schema_type.as_deref() {
            None | Some("JSON") => Ok(&self.schema),
            Some(other) => Err(ConfluentError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: 42201,
                message: format!("schemaType {other:?} is not supported here; register JSON Schemas (schemaType JSON)"),
            }),
        }
    }
}

#[derive(Debug, Deserialize)]
struct ConfigBody {
    compatibility: String,
}

/// Query of a compatibility check. Clients send `verbose=true`,
/// `verbose=True` or `verbose=1`, and other flags (`normalize`) that do not
/// change the verdict here.
#[derive(Debug, Deserialize)]
struct VerboseQuery {
    verbose: Option<String>,
}

impl VerboseQuery {
    fn verbose(&self) -> bool {
        self.verbose.as_deref().is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
    }
}

/// The Confluent-compatible routes.
pub fn router(schemas: Shared) -> Router {
    Router::new()
        .route("/subjects", get(subjects))
        .route("/subjects/{subject}", post(lookup))
        .route("/subjects/{subject}/versions", get(versions).post(register))
        .route("/subjects/{subject}/versions/{version}", get(version))
        .route("/schemas/ids/{id}", get(by_id))
        .route("/compatibility/subjects/{subject}/versions/{version}", post(compatibility))
        .route("/config", get(global_config).put(set_global_config))
        .route("/config/{subject}", get(subject_config).put(set_subject_config))
        .with_state(schemas)
}

fn version_json(version: &SchemaVersion) -> Value {
    json!({
        "subject": version.subject,
        "version": version.version,
        "id": version.id,
        "schemaType": "JSON",
        "schema": version.schema,
    })
}

/// `latest` or a version number.
fn version_ref(text: &str) -> Result<Option<u32>, ConfluentError> {
    if text == "latest" || text == "-1" {
        return Ok(None);
    }
    text.parse::<u32>().ok().filter(|v| *v > 0).map(Some).ok_or_else(|| ConfluentError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        code: 42202,
        message: format!("version {text:?} is neither a positive number nor \"latest\""),
    })
}

async fn subjects(State(schemas): State<Shared>) -> Json<Vec<String>> {
    Json(schemas.subjects())
}

async fn versions(
    State(schemas): State<Shared>,
    Path(subject): Path<String>,
) -> Result<Json<Vec<u32>>, ConfluentError> {
    Ok(Json(schemas.versions(&subject)?.iter().map(|v| v.version).collect()))
}

async fn register(
    State(schemas): State<Shared>,
    Path(subject): Path<String>,
    body: Result<Json<SchemaBody>, JsonRejection>,
) -> Result<Json<Value>, ConfluentError> {
    let Json(body) = body?;
    let registered = schemas.register(&subject, body.json_schema()?).await?;
    Ok(Json(json!({ "id": registered.id })))
}

async fn lookup(
    State(schemas): State<Shared>,
    Path(subject): Path<String>,
    body: Result<Json<SchemaBody>, JsonRejection>,
) -> Result<Json<Value>, ConfluentError> {
    let Json(body) = body?;
    let wanted: Value = serde_json::from_str(body.json_schema()?).map_err(|e| ConfluentError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        code: 42201,
        message: format!("the schema is not JSON: {e}"),
    })?;
    let versions = schemas.versions(&subject)?;
    let found = versions.iter().find(|v| v.parsed == wanted).ok_or_else(|| ConfluentError {
        status: StatusCode::NOT_FOUND,
        code: 40403,
        message: format!("this schema is not registered under subject {subject:?}"),
    })?;
    Ok(Json(version_json(found)))
}

async fn version(
    State(schemas): State<Shared>,
    Path((subject, version)): Path<(String, String)>,
) -> Result<Json<Value>, ConfluentError> {
    Ok(Json(version_json(&schemas.version(&subject, version_ref(&version)?)?)))
}

async fn by_id(State(schemas): State<Shared>, Path(id): Path<u32>) -> Result<Json<Value>, ConfluentError> {
    Ok(Json(json!({ "schema": schemas.by_id(id)?, "schemaType": "JSON" })))
}

async fn compatibility(
    State(schemas): State<Shared>,
    Path((subject, version)): Path<(String, String)>,
    query: Result<Query<VerboseQuery>, QueryRejection>,
    body: Result<Json<SchemaBody>, JsonRejection>,
) -> Result<Json<Value>, ConfluentError> {
    let Query(query) = query.map_err(|r| crate::error::HttpError::from(r).0)?;
    let Json(body) = body?;
    let breaks = schemas.check(&subject, version_ref(&version)?, body.json_schema()?)?;
    let mut answer = json!({ "is_compatible": breaks.is_empty() });
    if query.verbose()
        && let Some(object) = answer.as_object_mut()
    {
        object.insert("messages".into(), json!(breaks));
    }
    Ok(Json(answer))
}

fn mode(text: &str) -> Result<Mode, ConfluentError> {
    Mode::parse(text).map_err(|message| ConfluentError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        code: 42203,
        message,
    })
}

async fn global_config(State(schemas): State<Shared>) -> Json<Value> {
    Json(json!({ "compatibilityLevel": schemas.mode(None).name() }))
}

async fn subject_config(State(schemas): State<Shared>, Path(subject): Path<String>) -> Json<Value> {
    Json(json!({ "compatibilityLevel": schemas.mode(Some(&subject)).name() }))
}

async fn set_global_config(
    State(schemas): State<Shared>,
    body: Result<Json<ConfigBody>, JsonRejection>,
) -> Result<Json<Value>, ConfluentError> {
    let Json(body) = body?;
    let set = schemas.set_mode(None, mode(&body.compatibility)?).await?;
    Ok(Json(json!({ "compatibility": set.name() })))
}

async fn set_subject_config(
    State(schemas): State<Shared>,
    Path(subject): Path<String>,
    body: Result<Json<ConfigBody>, JsonRejection>,
) -> Result<Json<Value>, ConfluentError> {
    let Json(body) = body?;
    let set = schemas.set_mode(Some(&subject), mode(&body.compatibility)?).await?;
    Ok(Json(json!({ "compatibility": set.name() })))
}
