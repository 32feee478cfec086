//! Conversion between the client's types and the gRPC messages, and of
//! error statuses into [`Error`].

use prost::Message;
use quipu_proto::v1 as pb;
use quipu_types::EventId;
use uuid::Uuid;

use crate::error::{Conflict, StreamConflict};
use crate::event::{AppendResult, Event, ExpectedRevision, NewEvent, Position, Revision};
use crate::{AsOf, Error, Filter, Start};

pub(crate) fn expected(expected: ExpectedRevision) -> pb::ExpectedRevision {
    use pb::expected_revision::Kind;
    let kind = match expected {
        ExpectedRevision::Any => Kind::Any(pb::Empty {}),
        ExpectedRevision::NoStream => Kind::NoStream(pb::Empty {}),
        ExpectedRevision::Exists => Kind::Exists(pb::Empty {}),
        ExpectedRevision::Exact(revision) => Kind::Exact(revision.0),
    };
    pb::ExpectedRevision { kind: Some(kind) }
}

fn expected_from(expected: Option<pb::ExpectedRevision>) -> ExpectedRevision {
    use pb::expected_revision::Kind;
    match expected.and_then(|e| e.kind) {
        None | Some(Kind::Any(_)) => ExpectedRevision::Any,
        Some(Kind::NoStream(_)) => ExpectedRevision::NoStream,
        Some(Kind::Exists(_)) => ExpectedRevision::Exists,
        Some(Kind::Exact(revision)) => ExpectedRevision::Exact(Revision(revision)),
    }
}

pub(crate) fn proposed(event: NewEvent) -> pb::ProposedEvent {
    pb::ProposedEvent {
        id: event.id.to_string(),
        r#type: event.event_type,
        data: event.data,
        metadata: event.metadata,
        tags: event.tags,
    }
}

pub(crate) fn event(event: pb::RecordedEvent) -> Result<Event, Error> {
    let id = event_id(&event.id, &event.id_bytes).map_err(Error::Protocol)?;
    Ok(Event {
        id,
        stream: event.stream,
        event_type: event.r#type,
        data: event.data,
        metadata: event.metadata,
        tags: event.tags,
        revision: Revision(event.revision),
        position: Position(event.position),
        recorded_at_us: event.recorded_at_us,
    })
}

/// An event's id from its 16 bytes or, when they are absent, its text.
pub(crate) fn event_id(text: &str, bytes: &[u8]) -> Result<EventId, String> {
    if bytes.is_empty() {
        EventId::parse(text).map_err(|e| format!("event id {text:?} is not a UUID: {}", e.reason))
    } else {
        Uuid::from_slice(bytes).map(EventId).map_err(|e| format!("an event id of {} bytes: {e}", bytes.len()))
    }
}

pub(crate) fn events(response: pb::ReadResponse) -> Result<Vec<Event>, Error> {
    response.events.into_iter().map(event).collect()
}

pub(crate) fn append_result(response: pb::AppendResponse) -> AppendResult {
    AppendResult {
        first_position: Position(response.first_position),
        last_position: Position(response.last_position),
        streams: response
            .streams
            .into_iter()
            .map(|s| (s.stream, Revision(s.first_revision), Revision(s.last_revision)))
            .collect(),
        recorded_at_us: response.recorded_at_us,
        already_written: response.already_written,
    }
}

pub(crate) fn conflict(conflict: pb::Conflict) -> Conflict {
    Conflict {
        streams: conflict
            .streams
            .into_iter()
            .map(|s| StreamConflict {
                stream: s.stream,
                expected: expected_from(s.expected),
                actual: s.actual.map(Revision),
            })
            .collect(),
        condition_position: conflict.condition_position.map(Position),
    }
}

pub(crate) fn filter(filter: Filter) -> pb::Filter {
    use pb::filter::Kind;
    let kind = match filter {
        Filter::Category(category) => Kind::Category(category),
        Filter::EventType(event_type) => Kind::EventType(event_type),
        Filter::Tag(tag) => Kind::Tag(tag),
        Filter::Stream(stream) => Kind::Stream(stream),
        Filter::Integration => Kind::Integration(pb::Empty {}),
    };
    pb::Filter { kind: Some(kind) }
}

pub(crate) fn start(start: Start) -> pb::subscribe_request::Start {
    use pb::subscribe_request::Start as S;
    match start {
        Start::Position(position) => S::FromPosition(position.0),
        Start::Revision(revision) => S::FromRevision(revision.0),
        Start::End => S::FromEnd(pb::Empty {}),
    }
}

/// The error a status stands for; a conflict's details are decoded.
pub(crate) fn error(status: tonic::Status) -> Error {
    use tonic::Code;
    let message = status.message().to_string();
    match status.code() {
        Code::FailedPrecondition if message.starts_with("replay_in_progress:") => Error::ReplayInProgress(message),
        Code::FailedPrecondition if !status.details().is_empty() => match pb::Conflict::decode(status.details()) {
            Ok(details) => Error::Conflict { message, conflict: conflict(details) },
            Err(_) => Error::Server { code: Code::FailedPrecondition, message },
        },
        Code::NotFound => Error::NotFound(message),
        Code::InvalidArgument | Code::ResourceExhausted | Code::OutOfRange => Error::InvalidArgument(message),
        Code::Unavailable => Error::Unavailable(message),
        // A connection that broke mid-call (Unknown, Cancelled): the
        // status was made here from the transport's error, not sent by the
        // server, so it carries that error as its source.
        Code::Unknown | Code::Cancelled if std::error::Error::source(&status).is_some() => {
            Error::Unavailable(format!("{message} (the connection broke)"))
        }
        code => Error::Server { code, message },
    }
}

/// `(to_revision, to_position, as_of_us)` of a stream read.
pub(crate) fn as_of(as_of: Option<AsOf>) -> (Option<u64>, Option<u64>, Option<u64>) {
    match as_of {
        None => (None, None, None),
        Some(AsOf::Revision(revision)) => (Some(revision.0), None, None),
        Some(AsOf::Position(position)) => (None, Some(position.0), None),
        Some(AsOf::Time(time_us)) => (None, None, Some(time_us)),
    }
}

/// `(to_position, as_of_us)` of a read by position.
pub(crate) fn position_as_of(as_of: Option<AsOf>) -> Result<(Option<u64>, Option<u64>), Error> {
    match as_of {
        Some(AsOf::Revision(_)) => {
            Err(Error::InvalidArgument("a revision bounds a read of one stream; use a position or a time".into()))
        }
        other => {
            let (_, to_position, as_of_us) = self::as_of(other);
            Ok((to_position, as_of_us))
        }
    }
}
