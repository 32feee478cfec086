//! The decision state the sequencer (and replay) hands to the engine: the
//! index, plus the [`Pending`] commits of the group being formed, which
//! are decided but not yet indexed. Every commit of a group must see the
//! ones before it, or two appends in one batch could both pass
//! `expected_revision = 3`.

use std::cell::RefCell;
use std::collections::HashMap;

use crate::append::Query;
use crate::engine::{Origin, StateView};
use crate::error::Error;
use crate::event::{EventId, StreamName};
use crate::head_cache::HeadCache;
use crate::index::{Index, LabelKind};
use crate::log::record::Commit;
use crate::log::segment::{RecordAddress, SegmentReader};
use crate::position::{Position, Revision};
use crate::read::Direction;

/// Tag-index entries examined per lookup while checking a DCB condition.
const TAG_SCAN_CHUNK: usize = 256;

/// Commits decided but not yet in the index.
#[derive(Debug)]
pub struct Pending {
    commits: Vec<Commit>,
    heads: HashMap<StreamName, Revision>,
    ids: HashMap<EventId, (usize, Position)>,
    next_position: Position,
}

impl Pending {
    /// No pending commits; the next one takes `next_position`.
    #[must_use]
    pub fn new(next_position: Position) -> Pending {
        Pending { commits: Vec::new(), heads: HashMap::new(), ids: HashMap::new(), next_position }
    }

    /// Adds a decided commit; it must start at the next position.
    pub fn push(&mut self, commit: Commit) {
        assert_eq!(commit.first_position, self.next_position, "commits are contiguous");
        let index = self.commits.len();
        let mut position = commit.first_position;
        for write in &commit.writes {
            position = Position(position.0 + u64::from(write.dropped));
            for event in &write.events {
                // The first event written with an id is the one that counts.
                self.ids.entry(event.id).or_insert((index, position));
                position = position.next();
            }
            self.heads.insert(write.stream.clone(), write.last_revision());
        }
        self.next_position = commit.next_position();
        debug_assert_eq!(position, self.next_position);
        self.commits.push(commit);
    }

    /// Position the next commit takes.
    #[must_use]
    pub fn next_position(&self) -> Position {
        self.next_position
    }

    /// Number of pending commits.
    #[must_use]
    pub fn len(&self) -> usize {
        self.commits.len()
    }

    /// Number of events in the pending commits.
    #[must_use]
    pub fn event_count(&self) -> usize {
        self.ids.len()
    }

    /// Whether nothing is pending.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.commits.is_empty()
    }

    /// Whether any pending commit was applied from a cluster's shared log
    /// (it has a source).
    #[must_use]
    pub fn any_applied(&self) -> bool {
        self.commits.iter().any(|commit| commit.source.is_some())
    }

    /// The last revision of each stream the pending commits write.
    pub fn heads(&self) -> impl Iterator<Item = (&StreamName, Revision)> {
        self.heads.iter().map(|(stream, revision)| (stream, *revision))
    }

    /// Takes the commits out, leaving the next position as it was.
    pub fn take(&mut self) -> Vec<Commit> {
        self.heads.clear();
        self.ids.clear();
        std::mem::take(&mut self.commits)
    }
}

/// Index plus pending commits, as the engine sees them. Whoever decides
/// with it holds a [`SegmentReader::pin`] meanwhile.
pub struct DecisionState<'a> {
    /// Committed and indexed.
    pub index: &'a Index,
    /// Reads records the index points at.
    pub reader: &'a SegmentReader,
    /// Decided, not yet indexed.
    pub pending: &'a Pending,
    /// Heads known without the index (the sequencer's; replay has none).
    pub heads: Option<&'a RefCell<HeadCache>>,
}

impl StateView for DecisionState<'_> {
    fn stream_head(&self, stream: &StreamName) -> Result<Option<Revision>, Error> {
        if let Some(revision) = self.pending.heads.get(stream) {
            return Ok(Some(*revision));
        }
        let Some(heads) = self.heads else {
            return self.index.stream_head(stream);
        };
        let key = HeadCache::key(stream);
        if let Some(revision) = heads.borrow_mut().get(&key) {
            return Ok(Some(revision));
        }
        let revision = self.index.stream_head(stream)?;
        if let Some(revision) = revision {
            heads.borrow_mut().put(key, revision);
        }
        Ok(revision)
    }

    fn origin(&self, id: &EventId) -> Result<Option<Origin>, Error> {
        // The first event written with the id: indexed ones came first.
        if let Some(pointer) = self.index.event_by_id(id)? {
            let commit = self.read_commit(pointer.record(), pointer.position, &mut Vec::new())?;
            return Ok(Some(Origin { position: pointer.position, commit }));
        }
        let Some(&(index, position)) = self.pending.ids.get(id) else {
            return Ok(None);
        };
        let commit = self.pending.commits.get(index).cloned().expect("ids point at pending commits");
        Ok(Some(Origin { position, commit }))
    }

    fn first_match_after(&self, query: &Query, after: Option<Position>) -> Result<Option<Position>, Error> {
        let from = after.map_or(Position::START, Position::next);
        let mut first: Option<Position> = None;
        for item in &query.items {
            let found = self.first_indexed_match(item, from)?;
            first = match (first, found) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        if first.is_some() {
            return Ok(first);
        }
        // Pending commits come after everything indexed.
        Ok(self
            .pending
            .commits
            .iter()
            .flat_map(Commit::recorded_events)
            .find(|e| e.position >= from && query.matches(&e.event_type, &e.tags))
            .map(|e| e.position))
    }

    fn next_position(&self) -> Position {
        self.pending.next_position
    }
}

impl DecisionState<'_> {
    /// The commit of the record an index entry put at `at`, holding
    /// `position`, wherever a scavenge moved it since.
    fn read_commit(&self, at: RecordAddress, position: Position, buffer: &mut Vec<u8>) -> Result<Commit, Error> {
        let at = self.index.relocate(at, position)?.unwrap_or(at);
        self.reader.read_commit(at, buffer)
    }

    /// First indexed event at or after `from` matching `item`.
    fn first_indexed_match(&self, item: &crate::append::QueryItem, from: Position) -> Result<Option<Position>, Error> {
        if let Some(tag) = item.tags.first() {
            return self.first_tagged_match(item, tag.as_str(), from);
        }
        if item.types.is_empty() {
            let records = self.index.record_range(Some(from), Direction::Forwards, 1)?;
            return Ok(records.first().map(|record| record.first_position.max(from)));
        }
        let mut first: Option<Position> = None;
        for event_type in &item.types {
            let hit = self.index.label_range(
                LabelKind::EventType,
                event_type.as_str(),
                Some(from),
                Direction::Forwards,
                1,
            )?;
            if let Some((position, _)) = hit.first() {
                first = Some(first.map_or(*position, |f| f.min(*position)));
            }
        }
        Ok(first)
    }

    /// Walks the index of the item's first tag, checking the other tags and
    /// the type on the events themselves.
    fn first_tagged_match(
        &self,
        item: &crate::append::QueryItem,
        tag: &str,
        from: Position,
    ) -> Result<Option<Position>, Error> {
        let mut cursor = from;
        let mut buffer = Vec::new();
        loop {
            let hits =
                self.index.label_range(LabelKind::Tag, tag, Some(cursor), Direction::Forwards, TAG_SCAN_CHUNK)?;
            for (position, pointer) in &hits {
                if item.tags.len() == 1 && item.types.is_empty() {
                    return Ok(Some(*position));
                }
                let commit = self.read_commit(pointer.record(), pointer.position, &mut buffer)?;
                let event = commit.recorded_events().find(|e| e.position == pointer.position);
                if event.is_some_and(|e| item.matches(&e.event_type, &e.tags)) {
                    return Ok(Some(*position));
                }
            }
            match hits.last() {
                Some((last, _)) if hits.len() == TAG_SCAN_CHUNK => cursor = last.next(),
                _ => return Ok(None),
            }
        }
    }
}
