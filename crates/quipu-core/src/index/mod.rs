//! Derived indexes over the log, kept in an embedded LSM store (fjall):
//!
//! | keyspace | key | value |
//! | --- | --- | --- |
//! | `streams` | stream name | last revision |
//! | `stream_events` | stream `\0` first revision of a run | [`RunEntry`] |
//! | `all` | first position of a record | [`RecordEntry`] |
//! | `categories`, `types`, `tags` | label `\0` first position of a run | [`RunEntry`] |
//! | `event_ids` | event id | position, [`EventPointer`] |
//! | `meta` | `checkpoint` | [`Checkpoint`] |
//! | `snapshots` | stream `\0` revision | a client's snapshot (see `crate::snapshot`) |
//!
//! A run is the consecutive events of one record that share the label, so
//! a 100-event append to one stream costs one entry per index, not 100;
//! only event ids are indexed one by one.
//!
//! The index never holds anything the log lacks: the sequencer writes it
//! only after the log is fsynced, one atomic batch per group commit with
//! the checkpoint saying how far it covers. It is not fsynced itself: after
//! a crash it may lag, and recovery replays the log from its checkpoint.
//! Deleting the directory rebuilds it from the whole log (snapshots,
//! which are derived data written by clients, are then gone: loads fold
//! from the first event until new ones are written). Memory is bounded
//! by the block cache and the write buffers, whatever the number of streams.

pub mod entry;

use std::path::Path;

use fjall::config::PinningPolicy;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use crate::error::Error;
use crate::event::{EventId, StreamName};
use crate::log::record::Commit;
use crate::position::{Position, Revision};
use crate::read::Direction;
use entry::{Checkpoint, EventPointer, RecordEntry, RunEntry};

const CHECKPOINT_KEY: &[u8] = b"checkpoint";
/// Write buffer of each keyspace (eight share the budget; only the
/// stream, event-id and `$all` keyspaces fill theirs quickly). 32 MiB
/// rather than 8: fewer, larger flushes mean less compaction of the
/// randomly ordered stream and event-id keys; filling 300,000 streams
/// went from 65,000 to 81,000 events/s and 100-event appends from 163,000
/// to 228,000 (`quipu-peers`, 300,000 load streams).
const MEMTABLE_BYTES: u64 = 32 * 1024 * 1024;

/// Most bytes of fjall's journal before it forces flushes: above the
/// write buffers' total. The journal is not synced (the log is the
/// truth); recovery replays the log from the index's checkpoint.
const JOURNAL_BYTES_MAX: u64 = 512 * 1024 * 1024;

/// Which secondary index a label read uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelKind {
    /// Stream category.
    Category,
    /// Event type.
    EventType,
    /// Tag.
    Tag,
}

/// A commit together with where its record is in the log.
#[derive(Debug)]
pub struct LocatedCommit {
    /// The commit.
    pub commit: Commit,
    /// Segment holding its record.
    pub segment: u32,
    /// Offset of its record's frame.
    pub offset: u64,
}

/// The open index.
pub struct Index {
    db: Database,
    streams: Keyspace,
    stream_events: Keyspace,
    all: Keyspace,
    categories: Keyspace,
    types: Keyspace,
    tags: Keyspace,
    event_ids: Keyspace,
    meta: Keyspace,
    snapshots: Keyspace,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Index")
    }
}

impl Index {
    /// Opens (or creates) the index in `dir` with a block cache of
    /// `cache_bytes`.
    ///
    /// # Errors
    /// Errors of the index store.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Index, Error> {
        let db = Database::builder(dir).cache_size(cache_bytes).max_journaling_size(JOURNAL_BYTES_MAX).open()?;
        let open = |name: &str| -> Result<Keyspace, Error> {
            // Nothing pinned: filter and index blocks go through the block
            // cache like data blocks, so memory stays within the cache
            // size however many streams and events there are.
            let options = || {
                KeyspaceCreateOptions::default()
                    .max_memtable_size(MEMTABLE_BYTES)
                    .filter_block_pinning_policy(PinningPolicy::all(false))
                    .index_block_pinning_policy(PinningPolicy::all(false))
            };
            Ok(db.keyspace(name, options)?)
        };
        Ok(Index {
            streams: open("streams")?,
            stream_events: open("stream_events")?,
            all: open("all")?,
            categories: open("categories")?,
            types: open("types")?,
            tags: open("tags")?,
            event_ids: open("event_ids")?,
            meta: open("meta")?,
            snapshots: open("snapshots")?,
            db,
        })
    }

    /// How far the index covers the log; `None` for a new index.
    ///
    /// # Errors
    /// Errors of the index store; a checkpoint that does not decode.
    pub fn checkpoint(&self) -> Result<Option<Checkpoint>, Error> {
        let Some(value) = self.meta.get(CHECKPOINT_KEY)? else {
            return Ok(None);
        };
        Checkpoint::decode(&value).map(Some).ok_or_else(|| bad_entry("checkpoint"))
    }

    /// Last revision of `stream`; `None` when it has no events.
    ///
    /// # Errors
    /// Errors of the index store.
    pub fn stream_head(&self, stream: &StreamName) -> Result<Option<Revision>, Error> {
        let Some(value) = self.streams.get(stream.as_str())? else {
            return Ok(None);
        };
        entry::revision_from_value(&value).map(Some).ok_or_else(|| bad_entry("stream head"))
    }

    /// Stores `value` as the snapshot of `stream` at `revision` (replacing
    /// one there); not fsynced.
    ///
    /// # Errors
    /// Errors of the index store.
    pub fn put_snapshot(&self, stream: &StreamName, revision: Revision, value: Vec<u8>) -> Result<(), Error> {
        self.snapshots.insert(entry::label_key(stream.as_str(), revision.0), value)?;
        Ok(())
    }

    /// The newest snapshot of `stream` at or below `at_most` whose value
    /// `wanted` accepts, with its revision.
    ///
    /// # Errors
    /// Errors of the index store.
    pub fn find_snapshot(
        &self,
        stream: &StreamName,
        at_most: Revision,
        wanted: impl Fn(&[u8]) -> bool,
    ) -> Result<Option<(Revision, Vec<u8>)>, Error> {
        let range = entry::label_key(stream.as_str(), 0)..=entry::label_key(stream.as_str(), at_most.0);
        for guard in self.snapshots.range(range).rev() {
            let (key, value) = guard.into_inner()?;
            if wanted(&value) {
                let revision = entry::label_key_number(&key).ok_or_else(|| bad_entry("snapshot key"))?;
                return Ok(Some((Revision(revision), value.to_vec())));
            }
        }
        Ok(None)
    }

    /// Every snapshot of `stream`, oldest first.
    ///
    /// # Errors
    /// Errors of the index store.
    pub fn snapshots(&self, stream: &StreamName) -> Result<Vec<(Revision, Vec<u8>)>, Error> {
        let range = entry::label_key(stream.as_str(), 0)..=entry::label_key(stream.as_str(), u64::MAX);
        let mut found = Vec::new();
        for guard in self.snapshots.range(range) {
            let (key, value) = guard.into_inner()?;
            let revision = entry::label_key_number(&key).ok_or_else(|| bad_entry("snapshot key"))?;
            found.push((Revision(revision), value.to_vec()));
        }
        Ok(found)
    }

    /// Deletes every snapshot of `stream`; returns how many there were.
    ///
    /// # Errors
    /// Errors of the index store.
    pub fn delete_snapshots(&self, stream: &StreamName) -> Result<u64, Error> {
        let revisions: Vec<Revision> = self.snapshots(stream)?.into_iter().map(|(r, _)| r).collect();
        let mut batch = self.db.batch();
        for revision in &revisions {
            batch.remove(&self.snapshots, entry::label_key(stream.as_str(), revision.0));
        }
        batch.commit()?;
        Ok(revisions.len() as u64)
    }

    /// Where the event with `id` is; `None` when no such event was written.
    ///
    /// # Errors
    /// Errors of the index store.
    pub fn event_by_id(&self, id: &EventId) -> Result<Option<(Position, EventPointer)>, Error> {
        let Some(value) = self.event_ids.get(id.as_bytes())? else {
            return Ok(None);
        };
        entry::id_from_value(&value).map(Some).ok_or_else(|| bad_entry("event id"))
    }

    /// Writes the entries of `commits` and the new checkpoint as one
    /// atomic batch (not fsynced: the log is the durable copy).
    ///
    /// # Errors
    /// Errors of the index store.
    pub fn write(&self, commits: &[LocatedCommit], checkpoint: Checkpoint) -> Result<(), Error> {
        let mut batch = self.db.batch();
        for located in commits {
            self.add_commit(&mut batch, located);
        }
        batch.insert(&self.meta, CHECKPOINT_KEY, checkpoint.encode().to_vec());
        batch.commit()?;
        Ok(())
    }

    fn add_commit(&self, batch: &mut fjall::OwnedWriteBatch, located: &LocatedCommit) {
        let commit = &located.commit;
        let record = RecordEntry {
            segment: located.segment,
            offset: located.offset,
            event_count: u32::try_from(commit.event_count()).expect("bounded by append_events_max"),
            recorded_at_us: commit.recorded_at_us,
        };
        batch.insert(&self.all, entry::position_key(commit.first_position).to_vec(), record.encode().to_vec());
        let mut runs = Runs::new(located);
        for write in &commit.writes {
            let stream = write.stream.as_str();
            let first_index = runs.next_index;
            for event in &write.events {
                runs.add(LabelKind::Category, write.stream.category());
                runs.add(LabelKind::EventType, event.event_type.as_str());
                for tag in &event.tags {
                    runs.add(LabelKind::Tag, tag.as_str());
                }
                let position = Position(commit.first_position.0 + u64::from(runs.next_index));
                let pointer = EventPointer { segment: located.segment, offset: located.offset, index: runs.next_index };
                batch.insert(
                    &self.event_ids,
                    event.id.as_bytes().to_vec(),
                    entry::id_value(position, pointer).to_vec(),
                );
                runs.next_index += 1;
            }
            let count = runs.next_index - first_index;
            let run = RunEntry { segment: located.segment, offset: located.offset, index: first_index, count };
            batch.insert(&self.stream_events, entry::label_key(stream, write.first_revision.0), run.encode().to_vec());
            let last = Revision(write.first_revision.0 + u64::from(count) - 1);
            batch.insert(&self.streams, stream, entry::revision_value(last).to_vec());
        }
        runs.insert_into(self, batch);
    }

    /// Up to `limit` events of `stream` from revision `from` (inclusive;
    /// `None`: the start when going forwards, the end when backwards).
    ///
    /// # Errors
    /// Errors of the index store.
    pub fn stream_range(
        &self,
        stream: &StreamName,
        from: Option<Revision>,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<(Revision, EventPointer)>, Error> {
        let entries = label_range(&self.stream_events, stream.as_str(), from.map(|r| r.0), direction, limit)?;
        Ok(entries.into_iter().map(|(n, pointer)| (Revision(n), pointer)).collect())
    }

    /// Up to `limit` events with the label from position `from` (inclusive;
    /// `None` as in [`Index::stream_range`]).
    ///
    /// # Errors
    /// Errors of the index store.
    pub fn label_range(
        &self,
        kind: LabelKind,
        label: &str,
        from: Option<Position>,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<(Position, EventPointer)>, Error> {
        let entries = label_range(self.label_keyspace(kind), label, from.map(|p| p.0), direction, limit)?;
        Ok(entries.into_iter().map(|(n, pointer)| (Position(n), pointer)).collect())
    }

    /// The keyspace of a label index.
    fn label_keyspace(&self, kind: LabelKind) -> &Keyspace {
        match kind {
            LabelKind::Category => &self.categories,
            LabelKind::EventType => &self.types,
            LabelKind::Tag => &self.tags,
        }
    }

    /// Records of `$all` holding events from `from` on (forwards) or up to
    /// `from` (backwards), until they hold at least `events_min` events.
    ///
    /// # Errors
    /// Errors of the index store.
    pub fn record_range(
        &self,
        from: Option<Position>,
        direction: Direction,
        events_min: usize,
    ) -> Result<Vec<(Position, RecordEntry)>, Error> {
        let mut records = Vec::new();
        let mut events = 0usize;
        let mut visit = |guard: fjall::Guard| -> Result<bool, Error> {
            let (key, value) = guard.into_inner()?;
            let position = entry::position_from_key(&key).ok_or_else(|| bad_entry("$all key"))?;
            let record = RecordEntry::decode(&value).ok_or_else(|| bad_entry("$all record"))?;
            events += record.event_count as usize;
            records.push((position, record));
            Ok(events < events_min)
        };
        match (direction, from) {
            (Direction::Forwards, from) => {
                let start = match from {
                    Some(from) => self.record_containing(from)?.map_or(from, |(first, _)| first),
                    None => Position::START,
                };
                for guard in self.all.range(entry::position_key(start)..) {
                    if !visit(guard)? {
                        break;
                    }
                }
            }
            (Direction::Backwards, Some(from)) => {
                for guard in self.all.range(..=entry::position_key(from)).rev() {
                    if !visit(guard)? {
                        break;
                    }
                }
            }
            (Direction::Backwards, None) => {
                for guard in self.all.iter().rev() {
                    if !visit(guard)? {
                        break;
                    }
                }
            }
        }
        Ok(records)
    }

    /// The record whose events include `position`, if any.
    ///
    /// # Errors
    /// Errors of the index store.
    pub fn record_containing(&self, position: Position) -> Result<Option<(Position, RecordEntry)>, Error> {
        let Some(guard) = self.all.range(..=entry::position_key(position)).next_back() else {
            return Ok(None);
        };
        let (key, value) = guard.into_inner()?;
        let first = entry::position_from_key(&key).ok_or_else(|| bad_entry("$all key"))?;
        let record = RecordEntry::decode(&value).ok_or_else(|| bad_entry("$all record"))?;
        let contains = position.0 < first.0 + u64::from(record.event_count);
        Ok(contains.then_some((first, record)))
    }

    /// Flushes the index journal to disk, so the next open need not replay
    /// the log (called on close).
    ///
    /// # Errors
    /// Errors of the index store.
    pub fn persist(&self) -> Result<(), Error> {
        self.db.persist(PersistMode::SyncAll)?;
        Ok(())
    }

    /// Bytes the index takes on disk.
    ///
    /// # Errors
    /// Errors of the index store.
    pub fn disk_bytes(&self) -> Result<u64, Error> {
        Ok(self.db.disk_space()?)
    }
}

fn bad_entry(what: &str) -> Error {
    Error::Io {
        context: format!("reading the index: a {what} entry does not decode"),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "delete the index directory to rebuild it"),
    }
}

/// Events of `label` with numbers from `from` in `direction`, at most
/// `limit`, expanded from the label's runs.
fn label_range(
    keyspace: &Keyspace,
    label: &str,
    from: Option<u64>,
    direction: Direction,
    limit: usize,
) -> Result<Vec<(u64, EventPointer)>, Error> {
    let mut events = Vec::new();
    let mut take_run = |guard: fjall::Guard| -> Result<bool, Error> {
        let (key, value) = guard.into_inner()?;
        let first = entry::label_key_number(&key).ok_or_else(|| bad_entry("label key"))?;
        let run = RunEntry::decode(&value).ok_or_else(|| bad_entry("run"))?;
        let numbers = (0..run.count).map(|i| (first + u64::from(i), i));
        match direction {
            Direction::Forwards => {
                let wanted = numbers.filter(|(n, _)| from.is_none_or(|f| *n >= f));
                events.extend(wanted.take(limit - events.len()).map(|(n, i)| (n, run.pointer(i))));
            }
            Direction::Backwards => {
                let wanted = numbers.rev().filter(|(n, _)| from.is_none_or(|f| *n <= f));
                events.extend(wanted.take(limit - events.len()).map(|(n, i)| (n, run.pointer(i))));
            }
        }
        Ok(events.len() < limit)
    };
    if limit == 0 {
        return Ok(events);
    }
    match direction {
        Direction::Forwards => {
            // The run holding `from` may start before it.
            let mut start = from.unwrap_or(0);
            if let Some(guard) = keyspace.range(entry::label_key(label, 0)..=entry::label_key(label, start)).next_back()
            {
                let (key, value) = guard.into_inner()?;
                let first = entry::label_key_number(&key).ok_or_else(|| bad_entry("label key"))?;
                let run = RunEntry::decode(&value).ok_or_else(|| bad_entry("run"))?;
                if first + u64::from(run.count) > start {
                    start = first;
                }
            }
            for guard in keyspace.range(entry::label_key(label, start)..=entry::label_key(label, u64::MAX)) {
                if !take_run(guard)? {
                    break;
                }
            }
        }
        Direction::Backwards => {
            let high = entry::label_key(label, from.unwrap_or(u64::MAX));
            for guard in keyspace.range(entry::label_key(label, 0)..=high).rev() {
                if !take_run(guard)? {
                    break;
                }
            }
        }
    }
    Ok(events)
}

/// The label runs of one record being indexed: for each label, the open
/// run, extended while the label's events stay consecutive.
struct Runs<'a> {
    located: &'a LocatedCommit,
    /// Index in the record of the next event.
    next_index: u32,
    /// Runs that may still grow: (kind, label, first position, run).
    open: Vec<(LabelKind, &'a str, u64, RunEntry)>,
    /// Runs that ended before the record did.
    closed: Vec<(LabelKind, &'a str, u64, RunEntry)>,
}

impl<'a> Runs<'a> {
    fn new(located: &'a LocatedCommit) -> Runs<'a> {
        Runs { located, next_index: 0, open: Vec::new(), closed: Vec::new() }
    }

    /// Counts the event at `next_index` into the run of `label`.
    fn add(&mut self, kind: LabelKind, label: &'a str) {
        let index = self.next_index;
        let position = self.located.commit.first_position.0 + u64::from(index);
        let fresh = RunEntry { segment: self.located.segment, offset: self.located.offset, index, count: 1 };
        match self.open.iter_mut().find(|(k, l, _, _)| *k == kind && *l == label) {
            Some((_, _, _, run)) if run.index + run.count == index => run.count += 1,
            Some(slot) => self.closed.push(std::mem::replace(slot, (kind, label, position, fresh))),
            None => self.open.push((kind, label, position, fresh)),
        }
    }

    fn insert_into(self, index: &Index, batch: &mut fjall::OwnedWriteBatch) {
        for (kind, label, first, run) in self.closed.into_iter().chain(self.open) {
            batch.insert(index.label_keyspace(kind), entry::label_key(label, first), run.encode().to_vec());
        }
    }
}
