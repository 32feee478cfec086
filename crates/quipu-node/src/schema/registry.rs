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
//! - Everything outlives restarts: it is rebuilt from `$schemas` on open.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use quipu_core::{EventType, Store};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Mutex;

use super::compatibility::{Mode, check_against};
use crate::record_log::RecordLog;
use crate::{ApiError, ErrorCode};

/// The system stream holding the registry.
pub const SCHEMAS_STREAM: &str = "$schemas";

/// The mode used when neither the subject nor the global config sets one.
pub const DEFAULT_MODE: Mode = Mode::Backward;

/// Records of `$schemas`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Record {
    Registered { subject: String, version: u32, id: u32, schema: String },
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

impl State {
    fn apply(&mut self, record: Record) -> Result<(), ApiError> {
        match record {
            Record::Registered { subject, version, id, schema } => {
                let parsed = parse(&schema)?;
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
        Ok(())
    }

    fn mode(&self, subject: &str) -> Mode {
        self.modes.get(subject).copied().or(self.global).unwrap_or(DEFAULT_MODE)
    }

    fn id_of(&self, schema: &str) -> Option<u32> {
        self.ids.iter().find(|(_, s)| s.as_str() == schema).map(|(id, _)| *id)
    }
}

/// The registry.
pub struct Schemas {
    log: Mutex<RecordLog<Record>>,
    state: std::sync::RwLock<State>,
}

impl Schemas {
    /// Loads the registry from `$schemas`.
    ///
    /// # Errors
    /// Read errors; a record that does not decode.
    pub fn open(store: Arc<Store>) -> Result<Schemas, ApiError> {
        let (log, records) = RecordLog::<Record>::open(store, SCHEMAS_STREAM)?;
        let mut state = State::default();
        for record in records {
            state.apply(record)?;
        }
        Ok(Schemas { log: Mutex::new(log), state: std::sync::RwLock::new(state) })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(std::sync::PoisonError::into_inner)
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
        let canonical = parsed.to_string();
        let mut log = self.log.lock().await;
        let (record, version) = {
            let state = self.read();
            let versions = state.subjects.get(subject).map(Vec::as_slice).unwrap_or_default();
            if let Some(existing) = versions.iter().find(|v| v.schema == canonical) {
                return Ok(existing.clone());
            }
            let earlier: Vec<(u32, Value)> = versions.iter().map(|v| (v.version, v.parsed.clone())).collect();
            let breaks = check_against(state.mode(subject), &parsed, &earlier);
            if !breaks.is_empty() {
                return Err(SchemaError::Incompatible(breaks));
            }
            let id = state.id_of(&canonical).unwrap_or_else(|| state.ids.keys().next_back().map_or(1, |id| id + 1));
            let version = versions.last().map_or(1, |v| v.version + 1);
            let record = Record::Registered { subject: subject.to_string(), version, id, schema: canonical.clone() };
            (record, SchemaVersion { subject: subject.to_string(), version, id, schema: canonical, parsed })
        };
        log.append(&record).await?;
        self.state.write().unwrap_or_else(std::sync::PoisonError::into_inner).apply(record)?;
        Ok(version)
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
        let mut log = self.log.lock().await;
        let record = Record::ValidationSet { scope, enabled };
        log.append(&record).await?;
        self.state.write().unwrap_or_else(std::sync::PoisonError::into_inner).apply(record)?;
        Ok(())
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
        let mut log = self.log.lock().await;
        let record = Record::ConfigSet { subject: subject.map(str::to_string), compatibility: mode };
        log.append(&record).await?;
        self.state.write().unwrap_or_else(std::sync::PoisonError::into_inner).apply(record)?;
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
