//! [`Append`]: one atomic append over one or more streams, with an
//! optional DCB condition, built up before it is sent.

use crate::event::{ExpectedRevision, NewEvent, Position};

/// One alternative of a DCB query: an event of one of `types` (any type
/// when empty) carrying every tag in `tags`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueryItem {
    /// Accepted event types; empty accepts every type.
    pub types: Vec<String>,
    /// Tags the event must all carry.
    pub tags: Vec<String>,
}

/// One atomic append: every stream's expected revision and the condition
/// hold and all events are written, or nothing is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Append {
    pub(crate) writes: Vec<(String, ExpectedRevision, Vec<NewEvent>)>,
    pub(crate) condition: Option<(Vec<QueryItem>, Option<Position>)>,
}

impl Append {
    /// An empty append; add streams with [`Append::stream`].
    #[must_use]
    pub fn new() -> Append {
        Append::default()
    }

    /// Adds `events` for `stream`, which must be at `expected`. No events
    /// makes the stream a pure condition.
    #[must_use]
    pub fn stream(mut self, stream: impl Into<String>, expected: ExpectedRevision, events: Vec<NewEvent>) -> Append {
        self.writes.push((stream.into(), expected, events));
        self
    }

    /// Fails the append when an event matching any of `items` exists after
    /// position `after` (anywhere, when `None`).
    #[must_use]
    pub fn condition(mut self, items: Vec<QueryItem>, after: Option<Position>) -> Append {
        self.condition = Some((items, after));
        self
    }

    /// Number of events over all streams.
    #[must_use]
    pub fn event_count(&self) -> usize {
        self.writes.iter().map(|(_, _, events)| events.len()).sum()
    }

    pub(crate) fn to_message(&self) -> quipu_proto::v1::AppendRequest {
        use quipu_proto::v1 as pb;
        pb::AppendRequest {
            writes: self
                .writes
                .iter()
                .map(|(stream, expected, events)| pb::StreamWrite {
                    stream: stream.clone(),
                    expected: Some(crate::wire::expected(*expected)),
                    events: events.iter().cloned().map(crate::wire::proposed).collect(),
                })
                .collect(),
            condition: self.condition.as_ref().map(|(items, after)| pb::Condition {
                items: items.iter().map(|i| pb::QueryItem { types: i.types.clone(), tags: i.tags.clone() }).collect(),
                after: after.map(|after| after.0),
            }),
        }
    }
}
