//! [`Schemas`]: versioned JSON Schemas per subject (an event type), kept
//! in the system stream `$schemas`.
//!
//! What it promises:
//! - A subject's versions are numbered from 1. Registering a schema equal
//!   (as JSON) to one of the subject's versions returns that version and
//!   records nothing; a new one is checked against the earlier versions
//!   under the subject's compatibility mode (else the global one, BACKWARD
//!   by default) and refused, recording nothing, with every break named.
//! - Schema ids are global: the same schema under two subjects has one id.
//! - Everything outlives restarts: it is rebuilt from `$schemas` on open,
//!   and follows what other writers record there on
//!   [`Schemas::refresh`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use quipu_core::{EventType, Store};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::compatibility::{Mode, check_against};
use crate::folded_log::{Fold, FoldedLog};
use crate::{ApiError, ErrorCode};

/// The system stream holding the registry.
pub const SCHEMAS_STREAM: &str = "$schemas";

/// The mode used when neither the subject nor the global config sets one.
pub const DEFAULT_MODE: Mode = Mode::Backward;

/// Records of `$schemas`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Record {
    Registered { subject: String, version: u32, id: u32, schema: Canonical },
    ConfigSet { subject: Option<String>, compatibility: Mode },
    ValidationSet { scope: Scope, enabled: bool },
}

/// Where appends are validated against their event type's latest schema.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Events of this type, in any stream.
    EventType(String),
    /// Every event of streams in this category.
    Category(String),
}

impl crate::record_log::Record for Record {
    fn event_type(&self) -> &'static str {
        match self {
            Record::Registered { .. } => "SchemaRegistered",
            Record::ConfigSet { .. } => "CompatibilitySet",
            Record::ValidationSet { .. } => "ValidationSet",
        }
    }
}

/// A schema as a record holds it: canonical JSON text, parsed as the
/// record decodes (a record whose schema is not one does not decode).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
struct Canonical {
    text: String,
    parsed: Value,
}

impl TryFrom<String> for Canonical {
    type Error = String;

    fn try_from(text: String) -> Result<Canonical, String> {
        let parsed = parse(&text).map_err(|error| error.message)?;
        Ok(Canonical { text, parsed })
    }
}

impl From<Canonical> for String {
    fn from(schema: Canonical) -> String {
        schema.text
    }
}

/// One version of a subject's schema.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaVersion {
    /// The subject.
    pub subject: String,
    /// Its version, from 1.
    pub version: u32,
    /// Its global id.
    pub id: u32,
    /// The schema, as canonical JSON text (keys sorted).
    pub schema: String,
    /// The schema, parsed.
    pub parsed: Value,
}

/// Why a registration or a check was refused.
#[derive(Debug)]
pub enum SchemaError {
    /// The request is bad (API error with code and message).
    Api(ApiError),
    /// The schema breaks the mode; each entry names a break.
    Incompatible(Vec<String>),
}

impl From<ApiError> for SchemaError {
    fn from(error: ApiError) -> SchemaError {
        SchemaError::Api(error)
    }
}

#[derive(Default)]
struct State {
    subjects: BTreeMap<String, Vec<SchemaVersion>>,
    modes: BTreeMap<String, Mode>,
    global: Option<Mode>,
    ids: BTreeMap<u32, String>,
    /// Scopes whose appends are validated.
    validated: BTreeSet<Scope>,
    /// The latest version of each subject, compiled.
    validators: BTreeMap<String, (u32, Arc<jsonschema::Validator>)>,
}

impl Fold<Record> for State {
    fn fold(&mut self, record: Record) {
        match record {
            Record::Registered { subject, version, id, schema: Canonical { text: schema, parsed } } => {
                if let Ok(validator) = jsonschema::validator_for(&parsed) {
                    self.validators.insert(subject.clone(), (version, Arc::new(validator)));
                } else {
                    // Registered before it could compile; appends of the
                    // type then fail validation as having no schema.
                    self.validators.remove(&subject);
                }
                self.ids.insert(id, schema.clone());
                self.subjects.entry(subject.clone()).or_default().push(SchemaVersion {
                    subject,
                    version,
                    id,
                    schema,
                    parsed,
                });
            }
            Record::ConfigSet { subject: Some(subject), compatibility } => {
                self.modes.insert(subject, compatibility);
            }
            Record::ConfigSet { subject: None, compatibility } => self.global = Some(compatibility),
            Record::ValidationSet { scope, enabled: true } => {
                self.validated.insert(scope);
            }
            Record::ValidationSet { scope, enabled: false } => {
                self.validated.remove(&scope);
            }
        }
    }
}

impl State {
    fn mode(&self, subject: &str) -> Mode {
        self.modes.get(subject).copied().or(self.global).unwrap_or(DEFAULT_MODE)
    }

    fn id_of(&self, schema: &str) -> Option<u32> {
        self.ids.iter().find(|(_, s)| s.as_str() == schema).map(|(id, _)| *id)
    }
}

/// The registry.
pub struct Schemas {
    folded: FoldedLog<Record, State>,
}

impl Schemas {
    /// Loads the registry from `$schemas`.
    ///
    /// # Errors
    /// Read errors; a record that does not decode.
    pub fn open(store: Arc<Store>) -> Result<Schemas, ApiError> {
        Ok(Schemas { folded: FoldedLog::open(store, SCHEMAS_STREAM)? })
    }

    /// Takes in the registrations and settings other writers recorded
    /// since.
    ///
    /// # Errors
    /// As [`Schemas::open`]; the registry is then unchanged.
    pub async fn refresh(&self) -> Result<(), ApiError> {
        self.folded.refresh().await
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.folded.state()
    }

    /// Registers `schema` (JSON text) under `subject`; returns its
    /// version (existing or new).
    ///
    /// # Errors
    /// [`SchemaError::Api`] for a bad subject or schema (422
    /// `invalid_schema`), [`SchemaError::Incompatible`] with the breaks.
    pub async fn register(&self, subject: &str, schema: &str) -> Result<SchemaVersion, SchemaError> {
        check_subject(subject)?;
        let parsed = parse(schema)?;
        if let Err(error) = jsonschema::validator_for(&parsed) {
            return Err(SchemaError::Api(ApiError::new(
                ErrorCode::InvalidSchema,
                format!("the schema is not a valid JSON Schema: {error}"),
            )));
        }
        let canonical = Canonical { text: parsed.to_string(), parsed };
        let mut writer = self.folded.writer().await?;
        let record = {
            let state = writer.state();
            let versions = state.subjects.get(subject).map(Vec::as_slice).unwrap_or_default();
            if let Some(existing) = versions.iter().find(|v| v.schema == canonical.text) {
                return Ok(existing.clone());
            }
            let earlier: Vec<(u32, Value)> = versions.iter().map(|v| (v.version, v.parsed.clone())).collect();
            let breaks = check_against(state.mode(subject), &canonical.parsed, &earlier);
            if !breaks.is_empty() {
                return Err(SchemaError::Incompatible(breaks));
            }
            let id =
                state.id_of(&canonical.text).unwrap_or_else(|| state.ids.keys().next_back().map_or(1, |id| id + 1));
            let version = versions.last().map_or(1, |v| v.version + 1);
            Record::Registered { subject: subject.to_string(), version, id, schema: canonical }
        };
        writer.append(record).await?;
        let state = writer.state();
        let registered = state.subjects.get(subject).and_then(|versions| versions.last());
        Ok(registered.cloned().expect("the version just folded is the subject's last"))
    }

    /// Whether `schema` could be registered under `subject`, checked
    /// against `version` (`None`: the latest) and, for transitive modes,
    /// the versions before it; the breaks, empty when it could.
    ///
    /// # Errors
    /// 404 for an unknown subject or version, 422 for a bad schema.
    pub fn check(&self, subject: &str, version: Option<u32>, schema: &str) -> Result<Vec<String>, ApiError> {
        let parsed = parse(schema)?;
        let state = self.read();
        let versions = state.subjects.get(subject).ok_or_else(|| subject_not_found(subject))?;
        let upto = match version {
            None => versions.len(),
            Some(v) => versions.iter().position(|s| s.version == v).ok_or_else(|| version_not_found(subject, v))? + 1,
        };
        let earlier: Vec<(u32, Value)> = versions.iter().take(upto).map(|v| (v.version, v.parsed.clone())).collect();
        Ok(check_against(state.mode(subject), &parsed, &earlier))
    }

    /// Every subject, sorted.
    #[must_use]
    pub fn subjects(&self) -> Vec<String> {
        self.read().subjects.keys().cloned().collect()
    }

    /// A subject's versions, oldest first.
    ///
    /// # Errors
    /// 404 for an unknown subject.
    pub fn versions(&self, subject: &str) -> Result<Vec<SchemaVersion>, ApiError> {
        self.read().subjects.get(subject).cloned().ok_or_else(|| subject_not_found(subject))
    }

    /// One version (`None`: the latest).
    ///
    /// # Errors
    /// 404 for an unknown subject or version.
    pub fn version(&self, subject: &str, version: Option<u32>) -> Result<SchemaVersion, ApiError> {
        let versions = self.versions(subject)?;
        let found = match version {
            None => versions.last(),
            Some(v) => versions.iter().find(|s| s.version == v),
        };
        found.cloned().ok_or_else(|| version_not_found(subject, version.unwrap_or(0)))
    }

    /// The schema with global id `id`.
    ///
    /// # Errors
    /// 404 `schema_not_found`.
    pub fn by_id(&self, id: u32) -> Result<String, ApiError> {
        self.read()
            .ids
            .get(&id)
            .cloned()
            .ok_or_else(|| ApiError::new(ErrorCode::SchemaNotFound, format!("no schema has id {id}")))
    }

    /// The mode of `subject` (`None`: the global one).
    #[must_use]
    pub fn mode(&self, subject: Option<&str>) -> Mode {
        let state = self.read();
        match subject {
            Some(subject) => state.mode(subject),
            None => state.global.unwrap_or(DEFAULT_MODE),
        }
    }

    /// Turns validation of appends on or off for `scope`.
    ///
    /// # Errors
    /// 400 for a bad event type or category, store errors.
    pub async fn set_validation(&self, scope: Scope, enabled: bool) -> Result<(), ApiError> {
        match &scope {
            Scope::EventType(event_type) => check_subject(event_type)?,
            Scope::Category(category) => crate::category::check_category(category)?,
        }
        self.folded.writer().await?.append(Record::ValidationSet { scope, enabled }).await
    }

    /// The scopes whose appends are validated.
    #[must_use]
    pub fn validated(&self) -> Vec<Scope> {
        self.read().validated.iter().cloned().collect()
    }

    /// Checks every event of `request` in a validated scope against its
    /// type's latest schema.
    ///
    /// # Errors
    /// 400 `invalid_event` naming the event, the schema version and what
    /// does not match (or that its data is not JSON); 400
    /// `schema_missing` when its type has no schema.
    pub fn validate(&self, request: &quipu_core::AppendRequest) -> Result<(), ApiError> {
        let state = self.read();
        if state.validated.is_empty() {
            return Ok(());
        }
        for write in &request.writes {
            let by_category = state.validated.contains(&Scope::Category(write.stream.category().to_string()));
            for event in &write.events {
                let event_type = event.event_type.as_str();
                if !by_category && !state.validated.contains(&Scope::EventType(event_type.to_string())) {
                    continue;
                }
                let Some((version, validator)) = state.validators.get(event_type) else {
                    return Err(ApiError::new(
                        ErrorCode::SchemaMissing,
                        format!(
                            "event {} of type {event_type:?} in {} is validated, but the type has no schema; register one or turn validation off",
                            event.id, write.stream
                        ),
                    ));
                };
                let invalid = |what: String| {
                    ApiError::new(
                        ErrorCode::InvalidEvent,
                        format!(
                            "event {} ({event_type}) in {} does not match schema version {version}: {what}; nothing was written",
                            event.id, write.stream
                        ),
                    )
                };
                let data: Value =
                    serde_json::from_slice(&event.data).map_err(|e| invalid(format!("its data is not JSON ({e})")))?;
                if let Some(error) = validator.iter_errors(&data).next() {
                    let path = error.instance_path().to_string();
                    return Err(invalid(format!("at {:?}: {error}", if path.is_empty() { "/" } else { &path })));
                }
            }
        }
        Ok(())
    }

    /// Sets the mode of `subject` (`None`: the global one).
    ///
    /// # Errors
    /// 400 for a bad subject, store errors.
    pub async fn set_mode(&self, subject: Option<&str>, mode: Mode) -> Result<Mode, ApiError> {
        if let Some(subject) = subject {
            check_subject(subject)?;
        }
        let record = Record::ConfigSet { subject: subject.map(str::to_string), compatibility: mode };
        self.folded.writer().await?.append(record).await?;
        Ok(mode)
    }
}

/// Parses a schema: JSON text holding an object or a boolean.
fn parse(schema: &str) -> Result<Value, ApiError> {
    let invalid = |reason: String| ApiError::new(ErrorCode::InvalidSchema, reason);
    let parsed: Value = serde_json::from_str(schema).map_err(|e| invalid(format!("the schema is not JSON: {e}")))?;
    if !(parsed.is_object() || parsed.is_boolean()) {
        return Err(invalid("a JSON Schema is an object or a boolean".into()));
    }
    Ok(parsed)
}

/// A subject is an event type name.
fn check_subject(subject: &str) -> Result<(), ApiError> {
    EventType::new(subject)
        .map(|_| ())
        .map_err(|e| ApiError::new(ErrorCode::InvalidSubject, format!("subject {subject:?} (an event type): {e}")))
}

fn subject_not_found(subject: &str) -> ApiError {
    ApiError::new(ErrorCode::SubjectNotFound, format!("subject {subject:?} has no schema"))
}

fn version_not_found(subject: &str, version: u32) -> ApiError {
    ApiError::new(ErrorCode::VersionNotFound, format!("subject {subject:?} has no version {version}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDER_V1: &str = r#"{"type": "object", "properties": {"id": {"type": "string"}}}"#;
    /// Adds a required field: not BACKWARD compatible with v1.
    const ORDER_V2: &str = r#"{"type": "object", "required": ["total"], "properties": {"total": {"type": "number"}}}"#;

    fn registered(schemas: &Schemas, subject: &str) -> Vec<(u32, u32)> {
        schemas.versions(subject).map_or_else(|_| Vec::new(), |v| v.iter().map(|v| (v.version, v.id)).collect())
    }

    /// Two registries over one store (two nodes of a cluster): each takes
    /// in the other's registrations and modes on refresh, and a
    /// registration through either refreshes first, so it is numbered and
    /// checked after the other's.
    #[tokio::test]
    async fn registrations_another_writer_records_are_taken_in_on_refresh_and_changes_follow_them() {
        let (_dir, _store, one, two) = crate::record_log::two_over_one_store(Schemas::open);
        let first = one.register("OrderPlaced", ORDER_V1).await.expect("register");
        assert_eq!((first.version, first.id), (1, 1));
        assert!(two.subjects().is_empty(), "not before a refresh");
        two.refresh().await.expect("refresh");
        assert_eq!(registered(&two, "OrderPlaced"), [(1, 1)]);
        assert_eq!(two.by_id(1).expect("known"), first.schema);

        let refused = two.register("OrderPlaced", ORDER_V2).await;
        assert!(matches!(refused, Err(SchemaError::Incompatible(_))), "BACKWARD refuses v2: {refused:?}");
        one.set_mode(Some("OrderPlaced"), Mode::None).await.expect("set mode");
        let second = two.register("OrderPlaced", ORDER_V2).await.expect("two checks under one's mode");
        assert_eq!((second.version, second.id), (2, 2));
        assert_eq!(two.mode(Some("OrderPlaced")), Mode::None);

        assert_eq!(registered(&one, "OrderPlaced"), [(1, 1)], "not before a refresh");
        one.refresh().await.expect("refresh");
        assert_eq!(registered(&one, "OrderPlaced"), [(1, 1), (2, 2)]);
        assert_eq!(one.version("OrderPlaced", None).expect("latest"), second);
        one.set_validation(Scope::EventType("OrderPlaced".into()), true).await.expect("one writes after two");
        two.refresh().await.expect("refresh");
        assert_eq!(two.validated(), [Scope::EventType("OrderPlaced".into())]);
    }
}
