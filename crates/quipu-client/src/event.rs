//! Events as the client sees them: [`NewEvent`] to append (its id is
//! fixed at construction, so retrying an append is safe), [`Event`] as
//! read back, and [`ExpectedRevision`].

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;

/// The state a stream must be in for an append to succeed, the revisions
/// it names and the positions of `$all`: the types every part of Quipu
/// shares, distinct so a revision cannot stand where a position is meant.
pub use quipu_types::{ExpectedRevision, Position, Revision};

/// An event's id: the key of idempotency, the type every part of Quipu
/// shares.
pub use quipu_types::EventId;

/// An event to append. Its id is chosen when it is made and kept across
/// retries: the server writes an id once and answers a repeat with the
/// original result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// Idempotency key and the event's id once stored.
    pub id: EventId,
    /// Event type.
    pub event_type: String,
    /// Payload.
    pub data: Vec<u8>,
    /// Metadata.
    pub metadata: Vec<u8>,
    /// Tags (for reads by tag and DCB conditions).
    pub tags: Vec<String>,
}

impl NewEvent {
    /// An event with a fresh id and raw `data`.
    #[must_use]
    pub fn new(event_type: impl Into<String>, data: impl Into<Vec<u8>>) -> NewEvent {
        NewEvent {
            id: EventId::random(),
            event_type: event_type.into(),
            data: data.into(),
            metadata: Vec::new(),
            tags: Vec::new(),
        }
    }

    /// An event with a fresh id whose data is `value` as JSON.
    ///
    /// # Errors
    /// [`Error::Json`] when `value` does not serialise.
    pub fn json(event_type: impl Into<String>, value: &impl Serialize) -> Result<NewEvent, Error> {
        Ok(NewEvent::new(event_type, serde_json::to_vec(value)?))
    }

    /// The same event with `tags`.
    #[must_use]
    pub fn with_tags<T: Into<String>>(mut self, tags: impl IntoIterator<Item = T>) -> NewEvent {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// The same event with `metadata`.
    #[must_use]
    pub fn with_metadata(mut self, metadata: impl Into<Vec<u8>>) -> NewEvent {
        self.metadata = metadata.into();
        self
    }
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The id given at append.
    pub id: EventId,
    /// Its stream.
    pub stream: String,
    /// Event type.
    pub event_type: String,
    /// Payload.
    pub data: Vec<u8>,
    /// Metadata.
    pub metadata: Vec<u8>,
    /// Tags.
    pub tags: Vec<String>,
    /// Index in its stream, from 0.
    pub revision: Revision,
    /// Index in `$all`, from 0.
    pub position: Position,
    /// Commit time, microseconds since the Unix epoch.
    pub recorded_at_us: u64,
}

impl Event {
    /// The data parsed as JSON into `T`.
    ///
    /// # Errors
    /// [`Error::Json`] when the data is not a `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        Ok(serde_json::from_slice(&self.data)?)
    }
}

/// What is known about a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    /// The stream.
    pub stream: String,
    /// Revision of its last event; `None` when it has no events.
    pub last_revision: Option<Revision>,
}

/// Where an append's events landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendResult {
    /// Position of the first event.
    pub first_position: Position,
    /// Position of the last event.
    pub last_position: Position,
    /// Per stream that received events: (stream, first revision, last
    /// revision), in request order.
    pub streams: Vec<(String, Revision, Revision)>,
    /// Commit time, microseconds since the Unix epoch.
    pub recorded_at_us: u64,
    /// True when the events were written by an earlier call with the same
    /// ids (a retry) and nothing new was written.
    pub already_written: bool,
}

impl AppendResult {
    /// The last revision of the first stream written: the expected
    /// revision for its next append.
    #[must_use]
    pub fn next_expected_revision(&self) -> Option<Revision> {
        self.streams.first().map(|(_, _, last)| *last)
    }
}
