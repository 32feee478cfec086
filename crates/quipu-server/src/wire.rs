//! The JSON shapes of the HTTP API, and their conversion to and from the
//! engine's types. Event `data` and `metadata` are JSON values stored as
//! their JSON text; a stored payload that is not JSON reads back as a
//! string.

use quipu_core::{AppendResult, EventId, EventType, ExpectedRevision, ProposedEvent, RecordedEvent, Revision, Tag};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ApiError;

/// Body of `POST /v1/streams/{stream}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppendBody {
    /// `"any"`, `"no_stream"`, `"exists"` or a revision number; `"any"`
    /// when absent.
    #[serde(default)]
    pub expected_revision: Option<Value>,
    /// The events, in order.
    pub events: Vec<EventBody>,
}

/// One proposed event.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventBody {
    /// Client-chosen UUID; a retry with the same ids is a no-op. A new one
    /// is made when absent (the append is then not safe to retry).
    #[serde(default)]
    pub id: Option<String>,
    /// Event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Payload (any JSON).
    #[serde(default)]
    pub data: Value,
    /// Metadata (any JSON).
    #[serde(default)]
    pub metadata: Value,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// Parses an expected revision.
///
/// # Errors
/// [`ApiError`] 400 naming the value that is not one.
pub fn expected_revision(value: Option<&Value>) -> Result<ExpectedRevision, ApiError> {
    match value {
        None => Ok(ExpectedRevision::Any),
        Some(Value::String(word)) => match word.as_str() {
            "any" => Ok(ExpectedRevision::Any),
            "no_stream" => Ok(ExpectedRevision::NoStream),
            "exists" => Ok(ExpectedRevision::Exists),
            other => Err(ApiError::bad_request(
                "invalid_expected_revision",
                format!(
                    "unknown expected revision {other:?}; use \"any\", \"no_stream\", \"exists\" or a revision number"
                ),
            )),
        },
        Some(Value::Number(n)) => n.as_u64().map(|r| ExpectedRevision::Exact(Revision(r))).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_expected_revision",
                format!("expected revision {n} is not a revision number"),
            )
        }),
        Some(other) => Err(ApiError::bad_request(
            "invalid_expected_revision",
            format!("expected revision must be a word or a number, got {other}"),
        )),
    }
}

impl EventBody {
    /// The engine's event.
    ///
    /// # Errors
    /// [`ApiError`] 400 for a bad id, type or tag.
    pub fn into_proposed(self) -> Result<ProposedEvent, ApiError> {
        let mut event = ProposedEvent::new(EventType::new(self.event_type)?, self.data.to_string());
        if let Some(id) = self.id {
            event.id = EventId::parse(&id)?;
        }
        if !self.metadata.is_null() {
            event.metadata = self.metadata.to_string().into_bytes();
        }
        event.tags = self.tags.into_iter().map(Tag::new).collect::<Result<_, _>>()?;
        Ok(event)
    }
}

/// A stored event as the API shows it.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct EventJson {
    /// Event id.
    pub id: String,
    /// Stream.
    pub stream: String,
    /// Event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Payload.
    pub data: Value,
    /// Metadata (`null` when empty).
    pub metadata: Value,
    /// Tags.
    pub tags: Vec<String>,
    /// Revision in its stream.
    pub revision: u64,
    /// Position in `$all`.
    pub position: u64,
    /// Commit time, microseconds since the Unix epoch.
    pub recorded_at: u64,
}

fn payload(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

impl From<RecordedEvent> for EventJson {
    fn from(e: RecordedEvent) -> EventJson {
        EventJson {
            id: e.id.to_string(),
            stream: e.stream.to_string(),
            event_type: e.event_type.to_string(),
            data: payload(&e.data),
            metadata: payload(&e.metadata),
            tags: e.tags.iter().map(ToString::to_string).collect(),
            revision: e.revision.0,
            position: e.position.0,
            recorded_at: e.recorded_at_us,
        }
    }
}

/// Answer to a successful (or repeated) append to one stream.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct AppendJson {
    /// Position of the first event.
    pub first_position: u64,
    /// Position of the last event.
    pub last_position: u64,
    /// The stream's revision after the append: the expected revision for
    /// the next one.
    pub next_expected_revision: u64,
    /// True when these event ids were written before and nothing new was.
    pub already_written: bool,
}

impl AppendJson {
    /// From the engine's result.
    #[must_use]
    pub fn new(result: &AppendResult, already_written: bool) -> AppendJson {
        AppendJson {
            first_position: result.first_position.0,
            last_position: result.last_position.0,
            next_expected_revision: result.streams.first().map_or(0, |s| s.last_revision.0),
            already_written,
        }
    }
}
