//! Events: the [`ProposedEvent`] a client appends and the
//! [`RecordedEvent`] a read returns. The names and ids they carry
//! ([`EventId`], [`StreamName`], [`EventType`], [`Tag`]) are
//! `quipu-types`', validated where they are made.

pub use quipu_types::id::{EventId, EventIdError};
pub use quipu_types::name::{
    EVENT_TAGS_MAX, EventType, LABEL_BYTES_MAX, NameError, NameKind, STREAM_NAME_BYTES_MAX, StreamName, Tag,
};

use crate::position::{Position, Revision};

/// An event as a client proposes it, before it has a place in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposedEvent {
    /// Unique id, chosen by the client; the key of idempotency.
    pub id: EventId,
    /// The event's type.
    pub event_type: EventType,
    /// Payload, usually JSON.
    pub data: Vec<u8>,
    /// Metadata, usually JSON.
    pub metadata: Vec<u8>,
    /// Tags, at most [`EVENT_TAGS_MAX`], no duplicates.
    pub tags: Vec<Tag>,
}

impl ProposedEvent {
    /// An event with a random id, the given type and data, no metadata and
    /// no tags.
    #[must_use]
    pub fn new(event_type: EventType, data: impl Into<Vec<u8>>) -> ProposedEvent {
        ProposedEvent { id: EventId::random(), event_type, data: data.into(), metadata: Vec::new(), tags: Vec::new() }
    }

    /// Bytes this event counts against the event and append size limits:
    /// data, metadata, type, tags and the fixed-size id.
    #[must_use]
    pub fn size_bytes(&self) -> usize {
        16 + self.event_type.as_str().len()
            + self.data.len()
            + self.metadata.len()
            + self.tags.iter().map(|t| t.as_str().len()).sum::<usize>()
    }
}

/// An event as stored: the proposed event plus its place in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    /// The client-chosen id.
    pub id: EventId,
    /// Stream the event belongs to.
    pub stream: StreamName,
    /// Index of the event in its stream.
    pub revision: Revision,
    /// Place of the event in the global log.
    pub position: Position,
    /// The event's type.
    pub event_type: EventType,
    /// Payload.
    pub data: Vec<u8>,
    /// Metadata.
    pub metadata: Vec<u8>,
    /// Tags.
    pub tags: Vec<Tag>,
    /// When the append that wrote it was committed, in microseconds since
    /// the Unix epoch; never decreases along the log.
    pub recorded_at_us: u64,
}
