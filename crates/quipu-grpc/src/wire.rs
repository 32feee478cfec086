//! The gRPC messages (`quipu.v1`) and their conversion to and from the
//! engine's types, and errors as gRPC statuses. Bad input is
//! `INVALID_ARGUMENT` (or the status its HTTP twin maps to), never
//! `INTERNAL`.

use std::sync::Arc;

use prost::Message;
use quipu_core::{
    AppendRequest, AppendResult, Conflict, Direction, EventId, EventType, ExpectedRevision, Position, ProposedEvent,
    RecordedEvent, Revision, StreamName, StreamWrite, Tag,
};
use quipu_proto::v1 as pb;
use tonic::{Code, Status};

use quipu_node::feed::{Source, Start};
use quipu_node::integration::IntegrationTypes;
use quipu_node::{ApiError, ErrorCode, ErrorKind};

/// Events a read returns when its limit is 0.
pub const DEFAULT_READ_LIMIT: usize = 100;

/// The gRPC status of an API error, with its machine code first in the
/// message (`invalid_name: ...`).
#[must_use]
pub fn status(error: ApiError) -> Status {
    Status::new(grpc_code(error.code.kind()), format!("{}: {}", error.code, error.message))
}

/// The gRPC code of a kind of failure.
#[must_use]
pub fn grpc_code(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::Invalid | ErrorKind::Unprocessable => Code::InvalidArgument,
        ErrorKind::NotFound | ErrorKind::Gone => Code::NotFound,
        ErrorKind::MethodNotAllowed => Code::Unimplemented,
        ErrorKind::Conflict => Code::FailedPrecondition,
        ErrorKind::TooLarge => Code::ResourceExhausted,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::Internal => Code::Internal,
    }
}

/// `FAILED_PRECONDITION` for a refused append: the message says which
/// stream is at which revision; the details are the encoded
/// [`pb::Conflict`].
#[must_use]
pub fn conflict_status(conflict: &Conflict) -> Status {
    let error = quipu_node::conflict_error(conflict);
    let message = format!("{}: {}", error.code, error.message);
    Status::with_details(Code::FailedPrecondition, message, conflict_message(conflict).encode_to_vec().into())
}

/// A conflict as a message.
#[must_use]
pub fn conflict_message(conflict: &Conflict) -> pb::Conflict {
    pb::Conflict {
        streams: conflict
            .streams
            .iter()
            .map(|c| pb::StreamConflict {
                stream: c.stream.to_string(),
                expected: Some(expected_message(c.expected)),
                actual: c.actual.map(|r| r.0),
            })
            .collect(),
        condition_position: conflict.condition_position.map(|p| p.0),
    }
}

fn expected_message(expected: ExpectedRevision) -> pb::ExpectedRevision {
    use pb::expected_revision::Kind;
    let kind = match expected {
        ExpectedRevision::Any => Kind::Any(pb::Empty {}),
        ExpectedRevision::NoStream => Kind::NoStream(pb::Empty {}),
        ExpectedRevision::Exists => Kind::Exists(pb::Empty {}),
        ExpectedRevision::Exact(revision) => Kind::Exact(revision.0),
    };
    pb::ExpectedRevision { kind: Some(kind) }
}

fn expected_revision(expected: Option<pb::ExpectedRevision>) -> ExpectedRevision {
    use pb::expected_revision::Kind;
    match expected.and_then(|e| e.kind) {
        None | Some(Kind::Any(_)) => ExpectedRevision::Any,
        Some(Kind::NoStream(_)) => ExpectedRevision::NoStream,
        Some(Kind::Exists(_)) => ExpectedRevision::Exists,
        Some(Kind::Exact(revision)) => ExpectedRevision::Exact(Revision(revision)),
    }
}

fn proposed(event: pb::ProposedEvent) -> Result<ProposedEvent, ApiError> {
    // An id the client left out is made here: a random id costs more than
    // parsing one, so none is made for an event that brings its own.
    let id = if event.id.is_empty() { EventId::random() } else { EventId::parse(&event.id)? };
    Ok(ProposedEvent {
        id,
        event_type: EventType::new(event.r#type)?,
        data: event.data,
        metadata: event.metadata,
        tags: event.tags.into_iter().map(Tag::new).collect::<Result<_, _>>()?,
    })
}

/// The engine's request.
///
/// # Errors
/// [`ApiError`] 400 for any bad name, id or tag.
pub fn append_request(request: pb::AppendRequest) -> Result<AppendRequest, ApiError> {
    let writes = request
        .writes
        .into_iter()
        .map(|w| {
            Ok(StreamWrite {
                stream: StreamName::new(w.stream)?,
                expected: expected_revision(w.expected),
                events: w.events.into_iter().map(proposed).collect::<Result<_, ApiError>>()?,
            })
        })
        .collect::<Result<_, ApiError>>()?;
    let condition = request
        .condition
        .map(|c| quipu_node::submission::condition(c.items.into_iter().map(|i| (i.types, i.tags)), c.after))
        .transpose()?;
    Ok(AppendRequest { writes, condition })
}

/// A successful (or repeated) append as a message.
#[must_use]
pub fn append_response(result: &AppendResult, already_written: bool) -> pb::AppendResponse {
    pb::AppendResponse {
        first_position: result.first_position.0,
        last_position: result.last_position.0,
        streams: result
            .streams
            .iter()
            .map(|s| pb::StreamResult {
                stream: s.stream.to_string(),
                first_revision: s.first_revision.0,
                last_revision: s.last_revision.0,
            })
            .collect(),
        recorded_at_us: result.recorded_at_us,
        already_written,
    }
}

/// A stored event as a message, its id as text.
#[must_use]
pub fn recorded_event(event: RecordedEvent) -> pb::RecordedEvent {
    let id = event.id.to_text();
    pb::RecordedEvent { id, ..recorded_event_binary_id(event) }
}

/// A stored event as a message, its id as its 16 bytes (`id_bytes`).
#[must_use]
pub fn recorded_event_binary_id(event: RecordedEvent) -> pb::RecordedEvent {
    pb::RecordedEvent {
        id: String::new(),
        id_bytes: event.id.as_bytes().to_vec(),
        stream: event.stream.into_string(),
        r#type: event.event_type.into_string(),
        data: event.data,
        metadata: event.metadata,
        tags: event.tags.into_iter().map(Tag::into_string).collect(),
        revision: event.revision.0,
        position: event.position.0,
        recorded_at_us: event.recorded_at_us,
    }
}

/// The direction of a read.
///
/// # Errors
/// [`ApiError`] 400 for a number that is not a direction.
pub fn direction(direction: i32) -> Result<Direction, ApiError> {
    match pb::Direction::try_from(direction) {
        Ok(pb::Direction::Forwards) => Ok(Direction::Forwards),
        Ok(pb::Direction::Backwards) => Ok(Direction::Backwards),
        Err(_) => Err(ApiError::new(ErrorCode::InvalidDirection, format!("unknown direction {direction}"))),
    }
}

/// The limit of a read: 0 means [`DEFAULT_READ_LIMIT`]; the engine checks
/// the maximum.
#[must_use]
pub fn limit(limit: u32) -> usize {
    if limit == 0 { DEFAULT_READ_LIMIT } else { limit as usize }
}

/// What a filter selects (absent: everything).
///
/// # Errors
/// [`ApiError`] 400 for a bad name, or a filter with no kind set.
pub fn source(filter: Option<pb::Filter>, integration: &Arc<IntegrationTypes>) -> Result<Source, ApiError> {
    use pb::filter::Kind;
    let Some(filter) = filter else { return Ok(Source::All) };
    match filter.kind {
        None => Err(ApiError::new(
            ErrorCode::InvalidFilter,
            "the filter names no category, type, tag, stream or integration",
        )),
        Some(Kind::Category(category)) => Ok(Source::Category(StreamName::readable(category)?.to_string())),
        Some(Kind::EventType(event_type)) => Ok(Source::Type(EventType::new(event_type)?)),
        Some(Kind::Tag(tag)) => Ok(Source::Tag(Tag::new(tag)?)),
        Some(Kind::Stream(stream)) => Ok(Source::Stream(StreamName::readable(stream)?)),
        Some(Kind::Integration(_)) => Ok(Source::Integration(Arc::clone(integration))),
    }
}

/// Where a subscription starts (absent: the beginning).
#[must_use]
pub fn start(start: Option<pb::subscribe_request::Start>, source: &Source) -> Start {
    use pb::subscribe_request::Start as S;
    match start {
        Some(S::FromPosition(position)) => Start::Position(Position(position)),
        Some(S::FromRevision(revision)) => Start::Revision(Revision(revision)),
        Some(S::FromEnd(_)) => Start::End,
        None if matches!(source, Source::Stream(_)) => Start::Revision(Revision(0)),
        None => Start::Position(Position(0)),
    }
}
