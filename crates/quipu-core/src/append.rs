//! What a client asks for when it appends ([`AppendRequest`]) and what it
//! gets back ([`AppendOutcome`]).
//!
//! One request is one atomic transaction: events for one or more streams,
//! each with an [`ExpectedRevision`], and optionally a DCB [`Condition`].
//! All of it is written or none of it. A failed condition is a typed
//! [`Conflict`] outcome, never an I/O error.

use crate::event::{EventId, EventType, ProposedEvent, StreamName, Tag};
use crate::position::{ExpectedRevision, Position, Revision};

/// Events for one stream within an append, with the stream's expected
/// state. A write with no events is a pure condition on that stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamWrite {
    /// Target stream.
    pub stream: StreamName,
    /// State the stream must be in for the append to succeed.
    pub expected: ExpectedRevision,
    /// Events to append, in order.
    pub events: Vec<ProposedEvent>,
}

/// One part of a [`Query`]: matches an event whose type is one of `types`
/// (any type when empty) and that carries every tag in `tags`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueryItem {
    /// Accepted event types; empty accepts every type.
    pub types: Vec<EventType>,
    /// Tags the event must all carry.
    pub tags: Vec<Tag>,
}

impl QueryItem {
    /// Whether an event with this type and these tags matches the item.
    #[must_use]
    pub fn matches(&self, event_type: &EventType, tags: &[Tag]) -> bool {
        (self.types.is_empty() || self.types.contains(event_type)) && self.tags.iter().all(|t| tags.contains(t))
    }
}

/// A DCB query: an event matches when it matches any of the items.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Query {
    /// Alternatives; an event matching one of them matches the query.
    pub items: Vec<QueryItem>,
}

impl Query {
    /// Whether an event with this type and these tags matches the query.
    #[must_use]
    pub fn matches(&self, event_type: &EventType, tags: &[Tag]) -> bool {
        self.items.iter().any(|item| item.matches(event_type, tags))
    }
}

/// DCB-style condition: the append fails if any event matching `query`
/// exists after `after` (or at all, when `after` is `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// Events that would invalidate the decision the client made.
    pub query: Query,
    /// The last position the client had seen when it decided.
    pub after: Option<Position>,
}

/// One atomic append.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AppendRequest {
    /// Per-stream writes; each stream may appear once.
    pub writes: Vec<StreamWrite>,
    /// Optional DCB condition checked together with the stream conditions.
    pub condition: Option<Condition>,
}

impl AppendRequest {
    /// An append of `events` to one stream.
    #[must_use]
    pub fn to_stream(stream: StreamName, expected: ExpectedRevision, events: Vec<ProposedEvent>) -> Self {
        AppendRequest { writes: vec![StreamWrite { stream, expected, events }], condition: None }
    }

    /// Adds a DCB condition.
    #[must_use]
    pub fn with_condition(mut self, condition: Condition) -> Self {
        self.condition = Some(condition);
        self
    }

    /// All event ids in order of the writes.
    pub fn event_ids(&self) -> impl Iterator<Item = EventId> + '_ {
        self.writes.iter().flat_map(|w| w.events.iter().map(|e| e.id))
    }

    /// Number of events over all writes.
    #[must_use]
    pub fn event_count(&self) -> usize {
        self.writes.iter().map(|w| w.events.len()).sum()
    }
}

/// Where one stream's events of a successful append landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamResult {
    /// The stream.
    pub stream: StreamName,
    /// Revision of its first appended event.
    pub first_revision: Revision,
    /// Revision of its last appended event: the expected revision for the
    /// next append.
    pub last_revision: Revision,
}

/// Result of a successful (or idempotently repeated) append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendResult {
    /// Position of the first event written.
    pub first_position: Position,
    /// Position of the last event written.
    pub last_position: Position,
    /// Per stream that received events, in request order.
    pub streams: Vec<StreamResult>,
    /// Commit timestamp, microseconds since the Unix epoch.
    pub recorded_at_us: u64,
}

/// A stream whose expected revision did not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamConflict {
    /// The stream.
    pub stream: StreamName,
    /// What the append expected.
    pub expected: ExpectedRevision,
    /// The stream's actual last revision; `None` when it has no events.
    pub actual: Option<Revision>,
}

/// Why an append was refused; nothing was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// Every stream whose expectation failed, in request order.
    pub streams: Vec<StreamConflict>,
    /// Position of the first event matching the DCB condition's query
    /// after its position, when the condition failed.
    pub condition_position: Option<Position>,
}

/// How an append ended, when the store could decide it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Written and durable (fdatasync'ed) before this was returned.
    Written(AppendResult),
    /// These event ids were already written by an earlier, identical
    /// append: nothing was written, this is the original result.
    AlreadyWritten(AppendResult),
    /// A condition failed; nothing was written.
    Conflict(Conflict),
}

impl AppendOutcome {
    /// The result when the events are in the store (written now or before).
    #[must_use]
    pub fn result(&self) -> Option<&AppendResult> {
        match self {
            AppendOutcome::Written(r) | AppendOutcome::AlreadyWritten(r) => Some(r),
            AppendOutcome::Conflict(_) => None,
        }
    }
}
