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

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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

/// The body of an error in Confluent's shape.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ConfluentError)]
struct ConfluentErrorBody {
    /// 40401 subject, 40402 version, 40403 schema not found; 409
    /// incompatible; 42201 invalid schema, 42202 invalid version, 42203
    /// invalid compatibility level; else the HTTP status times 100.
    error_code: u32,
    /// What failed.
    message: String,
}

impl IntoResponse for ConfluentError {
    fn into_response(self) -> Response {
        (self.status, Json(ConfluentErrorBody { error_code: self.code, message: self.message })).into_response()
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
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = SchemaRequest)]
struct SchemaBody {
    /// A JSON Schema, as JSON text.
    schema: String,
    /// `JSON` (when absent too); `AVRO` and `PROTOBUF` are refused.
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

/// A compatibility mode to set.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = ConfigRequest)]
struct ConfigBody {
    /// `NONE`, `BACKWARD`, `BACKWARD_TRANSITIVE`, `FORWARD`,
    /// `FORWARD_TRANSITIVE`, `FULL` or `FULL_TRANSITIVE`.
    compatibility: String,
}

/// Query of a compatibility check. Clients send `verbose=true`,
/// `verbose=True` or `verbose=1`, and other flags (`normalize`) that do not
/// change the verdict here.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct VerboseQuery {
    /// `true` (or `1`): the answer lists the breaks.
    verbose: Option<String>,
}

/// A registered schema version.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = SchemaVersion)]
struct VersionJson {
    /// The schema's global id.
    id: u32,
    /// The JSON Schema, as JSON text.
    schema: String,
    /// Always `JSON`.
    #[serde(rename = "schemaType")]
    schema_type: &'static str,
    /// The subject (an event type).
    subject: String,
    /// Its version under the subject.
    version: u32,
}

/// Answer of a registration.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = SchemaId)]
struct Registered {
    /// The schema's global id.
    id: u32,
}

/// A schema by its global id.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = SchemaById)]
struct ById {
    /// The JSON Schema, as JSON text.
    schema: String,
    /// Always `JSON`.
    #[serde(rename = "schemaType")]
    schema_type: &'static str,
}

/// Answer of a compatibility check.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = CompatibilityCheck)]
struct Compatibility {
    /// Whether the schema is compatible.
    is_compatible: bool,
    /// With `verbose=true`: every break.
    #[serde(skip_serializing_if = "Option::is_none")]
    messages: Option<Vec<String>>,
}

/// A compatibility mode, as read.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ConfigLevel)]
struct ConfigLevel {
    /// The mode.
    #[serde(rename = "compatibilityLevel")]
    compatibility_level: String,
}

/// A compatibility mode, as set.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ConfigSet)]
struct ConfigSet {
    /// The mode.
    compatibility: String,
}

impl VerboseQuery {
    fn verbose(&self) -> bool {
        self.verbose.as_deref().is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
    }
}

/// The Confluent-compatible routes, each described in the OpenAPI
/// document.
pub fn router(schemas: Shared) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(subjects))
        .routes(routes!(lookup))
        .routes(routes!(versions, register))
        .routes(routes!(version))
        .routes(routes!(by_id))
        .routes(routes!(compatibility))
        .routes(routes!(global_config, set_global_config))
        .routes(routes!(subject_config, set_subject_config))
        .with_state(schemas)
}

fn version_json(version: &SchemaVersion) -> VersionJson {
    VersionJson {
        id: version.id,
        schema: version.schema.clone(),
        schema_type: "JSON",
        subject: version.subject.clone(),
        version: version.version,
    }
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

/// Subjects (event types) with schemas.
#[utoipa::path(get, path = "/subjects", tag = "schema registry", operation_id = "list_subjects",
    responses((status = 200, description = "The subjects.", body = Vec<String>, content_type = "application/json")))]
async fn subjects(State(schemas): State<Shared>) -> Json<Vec<String>> {
    Json(schemas.subjects())
}

/// A subject's versions.
#[utoipa::path(get, path = "/subjects/{subject}/versions", tag = "schema registry", operation_id = "list_versions",
    params(("subject" = String, Path, description = "The subject (an event type).")),
    responses(
        (status = 200, description = "Its versions.", body = Vec<u32>, content_type = "application/json"),
        (status = 404, description = "40401.", body = ConfluentErrorBody)))]
async fn versions(
    State(schemas): State<Shared>,
    Path(subject): Path<String>,
) -> Result<Json<Vec<u32>>, ConfluentError> {
    Ok(Json(schemas.versions(&subject)?.iter().map(|v| v.version).collect()))
}

/// Register a JSON Schema, checked under the subject's compatibility mode.
#[utoipa::path(post, path = "/subjects/{subject}/versions", tag = "schema registry", operation_id = "register_schema",
    params(("subject" = String, Path, description = "The subject (an event type).")),
    request_body(content((SchemaBody = "application/vnd.schemaregistry.v1+json"), (SchemaBody = "application/json"))),
    responses(
        (status = 200, description = "Registered (or registered before).", body = Registered),
        (status = 409, description = "Incompatible: every break named.", body = ConfluentErrorBody),
        (status = 422, description = "42201 invalid schema.", body = ConfluentErrorBody)))]
async fn register(
    State(schemas): State<Shared>,
    Path(subject): Path<String>,
    body: Result<Json<SchemaBody>, JsonRejection>,
) -> Result<Json<Registered>, ConfluentError> {
    let Json(body) = body?;
    let registered = schemas.register(&subject, body.json_schema()?).await?;
    Ok(Json(Registered { id: registered.id }))
}

/// The version a schema is registered as.
#[utoipa::path(post, path = "/subjects/{subject}", tag = "schema registry", operation_id = "lookup_schema",
    params(("subject" = String, Path, description = "The subject (an event type).")),
    request_body(content((SchemaBody = "application/vnd.schemaregistry.v1+json"), (SchemaBody = "application/json"))),
    responses(
        (status = 200, description = "The version.", body = VersionJson),
        (status = 404, description = "40401 subject, 40403 schema not found.", body = ConfluentErrorBody),
        (status = 422, description = "42201 invalid schema.", body = ConfluentErrorBody)))]
async fn lookup(
    State(schemas): State<Shared>,
    Path(subject): Path<String>,
    body: Result<Json<SchemaBody>, JsonRejection>,
) -> Result<Json<VersionJson>, ConfluentError> {
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

/// One version.
#[utoipa::path(get, path = "/subjects/{subject}/versions/{version}", tag = "schema registry", operation_id = "get_version",
    params(
        ("subject" = String, Path, description = "The subject (an event type)."),
        ("version" = String, Path, description = "A version number or `latest`.")),
    responses(
        (status = 200, description = "The version.", body = VersionJson),
        (status = 404, description = "40401, 40402.", body = ConfluentErrorBody),
        (status = 422, description = "42202 bad version.", body = ConfluentErrorBody)))]
async fn version(
    State(schemas): State<Shared>,
    Path((subject, version)): Path<(String, String)>,
) -> Result<Json<VersionJson>, ConfluentError> {
    Ok(Json(version_json(&schemas.version(&subject, version_ref(&version)?)?)))
}

/// A schema by global id.
#[utoipa::path(get, path = "/schemas/ids/{id}", tag = "schema registry", operation_id = "get_schema_by_id",
    params(("id" = u32, Path, description = "The schema's global id.")),
    responses(
        (status = 200, description = "The schema.", body = ById),
        (status = 404, description = "40403.", body = ConfluentErrorBody)))]
async fn by_id(State(schemas): State<Shared>, Path(id): Path<u32>) -> Result<Json<ById>, ConfluentError> {
    Ok(Json(ById { schema: schemas.by_id(id)?, schema_type: "JSON" }))
}

/// Whether a schema is compatible (with `?verbose=true`, the breaks).
#[utoipa::path(post, path = "/compatibility/subjects/{subject}/versions/{version}", tag = "schema registry", operation_id = "check_compatibility",
    params(
        ("subject" = String, Path, description = "The subject (an event type)."),
        ("version" = String, Path, description = "A version number or `latest`."),
        VerboseQuery),
    request_body(content((SchemaBody = "application/vnd.schemaregistry.v1+json"), (SchemaBody = "application/json"))),
    responses(
        (status = 200, description = "The verdict.", body = Compatibility),
        (status = 404, description = "40401, 40402.", body = ConfluentErrorBody),
        (status = 422, description = "42201 invalid schema, 42202 bad version.", body = ConfluentErrorBody)))]
async fn compatibility(
    State(schemas): State<Shared>,
    Path((subject, version)): Path<(String, String)>,
    query: Result<Query<VerboseQuery>, QueryRejection>,
    body: Result<Json<SchemaBody>, JsonRejection>,
) -> Result<Json<Compatibility>, ConfluentError> {
    let Query(query) = query.map_err(|r| crate::error::HttpError::from(r).0)?;
    let Json(body) = body?;
    let breaks = schemas.check(&subject, version_ref(&version)?, body.json_schema()?)?;
    let is_compatible = breaks.is_empty();
    let messages = query.verbose().then_some(breaks);
    Ok(Json(Compatibility { is_compatible, messages }))
}

fn mode(text: &str) -> Result<Mode, ConfluentError> {
    Mode::parse(text).map_err(|message| ConfluentError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        code: 42203,
        message,
    })
}

/// The global compatibility mode (BACKWARD by default).
#[utoipa::path(get, path = "/config", tag = "schema registry", operation_id = "get_global_config",
    responses((status = 200, description = "The mode.", body = ConfigLevel)))]
async fn global_config(State(schemas): State<Shared>) -> Json<ConfigLevel> {
    Json(ConfigLevel { compatibility_level: schemas.mode(None).name() })
}

/// A subject's mode.
#[utoipa::path(get, path = "/config/{subject}", tag = "schema registry", operation_id = "get_subject_config",
    params(("subject" = String, Path, description = "The subject (an event type).")),
    responses((status = 200, description = "The mode.", body = ConfigLevel)))]
async fn subject_config(State(schemas): State<Shared>, Path(subject): Path<String>) -> Json<ConfigLevel> {
    Json(ConfigLevel { compatibility_level: schemas.mode(Some(&subject)).name() })
}

/// Set the global mode.
#[utoipa::path(put, path = "/config", tag = "schema registry", operation_id = "set_global_config",
    request_body(content((ConfigBody = "application/vnd.schemaregistry.v1+json"), (ConfigBody = "application/json"))),
    responses(
        (status = 200, description = "The mode set.", body = ConfigSet),
        (status = 422, description = "42203.", body = ConfluentErrorBody)))]
async fn set_global_config(
    State(schemas): State<Shared>,
    body: Result<Json<ConfigBody>, JsonRejection>,
) -> Result<Json<ConfigSet>, ConfluentError> {
    let Json(body) = body?;
    let set = schemas.set_mode(None, mode(&body.compatibility)?).await?;
    Ok(Json(ConfigSet { compatibility: set.name() }))
}

/// Set a subject's mode.
#[utoipa::path(put, path = "/config/{subject}", tag = "schema registry", operation_id = "set_subject_config",
    params(("subject" = String, Path, description = "The subject (an event type).")),
    request_body(content((ConfigBody = "application/vnd.schemaregistry.v1+json"), (ConfigBody = "application/json"))),
    responses(
        (status = 200, description = "The mode set.", body = ConfigSet),
        (status = 422, description = "42203.", body = ConfluentErrorBody)))]
async fn set_subject_config(
    State(schemas): State<Shared>,
    Path(subject): Path<String>,
    body: Result<Json<ConfigBody>, JsonRejection>,
) -> Result<Json<ConfigSet>, ConfluentError> {
    let Json(body) = body?;
    let set = schemas.set_mode(Some(&subject), mode(&body.compatibility)?).await?;
    Ok(Json(ConfigSet { compatibility: set.name() }))
}
