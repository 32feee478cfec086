//! How Quipu's events, ids, positions and errors look in the KurrentDB
//! client protocol.
//!
//! - A commit (and prepare) position is Quipu's position plus one: the
//!   clients take 0 for "the start", so the first event is at 1.
//! - `created` is 100 ns ticks since the Unix epoch, as text.
//! - `content-type` is `application/json` when the data is JSON, else
//!   `application/octet-stream` (Quipu does not keep the client's).
//! - Errors are gRPC statuses with an `exception` trailer and its
//!   companions, as the clients map them.

use quipu_core::{EventId, EventType, ExpectedRevision, ProposedEvent, RecordedEvent, Revision, StreamName};
use quipu_proto::event_store::client as shared;
use quipu_proto::event_store::client::streams as pb;
use tonic::{Code, Status};

use quipu_node::{ApiError, ErrorCode, ErrorKind};

/// The clients' commit position of Quipu position `position`.
#[must_use]
pub fn commit_position(position: u64) -> u64 {
    position.saturating_add(1)
}

/// Quipu's position of commit position `commit` (0 and 1 are the start).
#[must_use]
pub fn quipu_position(commit: u64) -> u64 {
    commit.saturating_sub(1)
}

/// `id` as text or as its two big-endian halves.
#[must_use]
pub fn uuid(id: EventId, structured: bool) -> shared::Uuid {
    use shared::uuid::Value;
    let value = if structured {
        let bytes = id.as_bytes();
        let half = |range: std::ops::Range<usize>| {
            let mut word = [0u8; 8];
            word.copy_from_slice(bytes.get(range).unwrap_or(&[0; 8]));
            i64::from_be_bytes(word)
        };
        Value::Structured(shared::uuid::Structured {
            most_significant_bits: half(0..8),
            least_significant_bits: half(8..16),
        })
    } else {
        Value::String(id.to_string())
    };
    shared::Uuid { value: Some(value) }
}

/// The event id a client sent, in either form.
///
/// # Errors
/// INVALID_ARGUMENT for a missing or malformed id.
pub fn event_id(id: Option<&shared::Uuid>) -> Result<EventId, Status> {
    use shared::uuid::Value;
    match id.and_then(|id| id.value.as_ref()) {
        Some(Value::String(text)) => EventId::parse(text).map_err(|e| Status::invalid_argument(e.to_string())),
        Some(Value::Structured(halves)) => {
            let mut bytes = [0u8; 16];
            bytes[..8].copy_from_slice(&halves.most_significant_bits.to_be_bytes());
            bytes[8..].copy_from_slice(&halves.least_significant_bits.to_be_bytes());
            Ok(EventId(uuid::Uuid::from_bytes(bytes)))
        }
        None => Err(Status::invalid_argument("an event has no id")),
    }
}

/// The stream a request names.
///
/// # Errors
/// INVALID_ARGUMENT for a missing, non-UTF-8 or invalid name.
pub fn stream_name(identifier: Option<&shared::StreamIdentifier>) -> Result<StreamName, Status> {
    let bytes = identifier.map(|i| i.stream_name.as_slice()).unwrap_or_default();
    let text = std::str::from_utf8(bytes).map_err(|_| Status::invalid_argument("the stream name is not UTF-8"))?;
    StreamName::new(text).map_err(|e| Status::invalid_argument(e.to_string()))
}

/// The identifier of `stream`.
#[must_use]
pub fn identifier(stream: &str) -> shared::StreamIdentifier {
    shared::StreamIdentifier { stream_name: stream.as_bytes().to_vec() }
}

/// An event to append, from a proposed message's parts.
///
/// # Errors
/// INVALID_ARGUMENT when the id is bad or `type` is missing or invalid.
pub fn proposed_event(
    id: Option<&shared::Uuid>,
    metadata: &std::collections::HashMap<String, String>,
    custom_metadata: Vec<u8>,
    data: Vec<u8>,
) -> Result<ProposedEvent, Status> {
    let id = event_id(id)?;
    let Some(event_type) = metadata.get("type") else {
        return Err(missing_metadata("type"));
    };
    if !metadata.contains_key("content-type") {
        return Err(missing_metadata("content-type"));
    }
    let event_type = EventType::new(event_type.as_str()).map_err(|e| Status::invalid_argument(e.to_string()))?;
    Ok(ProposedEvent { id, event_type, data, metadata: custom_metadata, tags: Vec::new() })
}

fn missing_metadata(key: &str) -> Status {
    let mut status = Status::invalid_argument(format!("Required Metadata Property '{key}' is missing"));
    trailer(&mut status, "exception", "missing-required-metadata-property");
    trailer(&mut status, "required-metadata-properties", "type,content-type");
    status
}

/// What every event message of the protocol carries, in its shapes.
pub struct EventParts {
    /// The event's id.
    pub id: shared::Uuid,
    /// Its stream.
    pub stream_identifier: shared::StreamIdentifier,
    /// Its revision in the stream.
    pub revision: u64,
    /// Its commit (and prepare) position.
    pub commit: u64,
    /// `type`, `created` and `content-type`.
    pub metadata: std::collections::HashMap<String, String>,
    /// The client's metadata, as written.
    pub custom_metadata: Vec<u8>,
    /// The data, as written.
    pub data: Vec<u8>,
}

/// `event` in the protocol's shapes, its id in the form asked for.
#[must_use]
pub fn event_parts(event: RecordedEvent, structured_ids: bool) -> EventParts {
    let content_type = if serde_json::from_slice::<serde::de::IgnoredAny>(&event.data).is_ok() {
        "application/json"
    } else {
        "application/octet-stream"
    };
    let metadata = [
        ("type".to_string(), event.event_type.as_str().to_string()),
        ("created".to_string(), event.recorded_at_us.saturating_mul(10).to_string()),
        ("content-type".to_string(), content_type.to_string()),
    ]
    .into_iter()
    .collect();
    EventParts {
        id: uuid(event.id, structured_ids),
        stream_identifier: identifier(event.stream.as_str()),
        revision: event.revision.0,
        commit: commit_position(event.position.0),
        metadata,
        custom_metadata: event.metadata,
        data: event.data,
    }
}

/// A protocol `RecordedEvent` of type `$kind` from [`EventParts`]: the
/// streams and persistent-subscription packages each have one, with the
/// same fields.
macro_rules! recorded_event {
    ($kind:path, $parts:expr) => {{
        let parts: $crate::wire::EventParts = $parts;
        $kind {
            id: Some(parts.id),
            stream_identifier: Some(parts.stream_identifier),
            stream_revision: parts.revision,
            prepare_position: parts.commit,
            commit_position: parts.commit,
            metadata: parts.metadata,
            custom_metadata: parts.custom_metadata,
            data: parts.data,
        }
    }};
}
pub(crate) use recorded_event;

/// A stored event as the clients read it.
#[must_use]
pub fn read_event(event: RecordedEvent, structured_ids: bool) -> pb::ReadResp {
    let parts = event_parts(event, structured_ids);
    let commit = parts.commit;
    let recorded = recorded_event!(pb::read_resp::read_event::RecordedEvent, parts);
    let event = pb::read_resp::ReadEvent {
        event: Some(recorded),
        link: None,
        position: Some(pb::read_resp::read_event::Position::CommitPosition(commit)),
    };
    pb::ReadResp { content: Some(pb::read_resp::Content::Event(event)) }
}

/// An expected revision as the protocol's options give it (`None`: the
/// oneof was not set, which means any).
#[must_use]
pub fn expected(revision: Option<u64>, no_stream: bool, stream_exists: bool) -> ExpectedRevision {
    match (revision, no_stream, stream_exists) {
        (Some(revision), _, _) => ExpectedRevision::Exact(Revision(revision)),
        (None, true, _) => ExpectedRevision::NoStream,
        (None, false, true) => ExpectedRevision::Exists,
        (None, false, false) => ExpectedRevision::Any,
    }
}

/// The protocol's number for an expected revision (-1 no stream, -2
/// any, -4 exists).
#[must_use]
pub fn expected_number(expected: ExpectedRevision) -> i64 {
    match expected {
        ExpectedRevision::Exact(revision) => i64::try_from(revision.0).unwrap_or(i64::MAX),
        ExpectedRevision::NoStream => -1,
        ExpectedRevision::Any => -2,
        ExpectedRevision::Exists => -4,
    }
}

/// The gRPC status of an API error about `stream`, with the trailers the
/// clients map: a tombstoned stream is FAILED_PRECONDITION
/// `stream-deleted`.
#[must_use]
pub fn status(error: &ApiError, stream: &str) -> Status {
    match error.code {
        ErrorCode::StreamDeleted => deleted(stream),
        ErrorCode::StreamNotFound => Status::not_found(error.message.clone()),
        _ => other_status(error),
    }
}

/// The status of an error the door has no KurrentDB exception for: the
/// clients raise their generic errors, INVALID_ARGUMENT for what the
/// request got wrong and INTERNAL for the server's failures.
#[must_use]
pub fn other_status(error: &ApiError) -> Status {
    let code = match error.code.kind() {
        ErrorKind::Invalid
        | ErrorKind::Unprocessable
        | ErrorKind::NotFound
        | ErrorKind::MethodNotAllowed
        | ErrorKind::Conflict
        | ErrorKind::Gone
        | ErrorKind::TooLarge => Code::InvalidArgument,
        ErrorKind::Unavailable | ErrorKind::Internal => Code::Internal,
    };
    Status::new(code, error.message.clone())
}

/// FAILED_PRECONDITION for a tombstoned stream.
#[must_use]
pub fn deleted(stream: &str) -> Status {
    let mut status = Status::failed_precondition(format!("Event stream '{stream}' is deleted."));
    trailer(&mut status, "exception", "stream-deleted");
    trailer(&mut status, "stream-name", stream);
    status
}

/// Adds a trailer; a value that is not ASCII is left out.
pub fn trailer(status: &mut Status, key: &'static str, value: &str) {
    if let Ok(value) = value.parse() {
        status.metadata_mut().insert(key, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_in_both_forms() {
        let id = EventId::parse("3f2504e0-4f89-11d3-9a0c-0305e82c3301").expect("uuid");
        for structured in [false, true] {
            assert_eq!(event_id(Some(&uuid(id, structured))).expect("parses"), id);
        }
        let shared::uuid::Value::Structured(halves) = uuid(id, true).value.expect("set") else { panic!("structured") };
        assert_eq!(halves.most_significant_bits, 0x3f25_04e0_4f89_11d3);
        assert!(event_id(None).is_err());
    }

    #[test]
    fn positions_start_at_one() {
        assert_eq!(commit_position(0), 1);
        assert_eq!(quipu_position(commit_position(41)), 41);
        assert_eq!(quipu_position(0), 0);
    }
}
