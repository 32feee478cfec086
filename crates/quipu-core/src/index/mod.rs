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
//! | `meta` | `generation` segment (u32 BE) | the segment's current file generation (u16), when above 0 |
//! | `meta` | `repointing` segment (u32 BE) | old and new generation (u16 each) of a scavenge under way |
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
//! Entries point at records by segment, file generation and offset; a
//! scavenge repoints a segment's entries to its new generation in batches
//! ([`Index::repoint`]) between an intent and a marker (see `crate::scavenge`).
//! Deleting the directory rebuilds it from the whole log (snapshots,
//! which are derived data written by clients, are then gone: loads fold
//! from the first event until new ones are written). Memory is bounded
//! by the block cache and the write buffers, whatever the number of streams.

pub mod entry;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use fjall::config::PinningPolicy;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use crate::error::Error;
use crate::event::{EventId, StreamName};
use crate::log::record::Commit;
use crate::log::segment::RecordAddress;
use crate::position::{Position, Revision};
use crate::read::Direction;
use entry::{Checkpoint, EventPointer, RecordEntry, RunEntry};

const CHECKPOINT_KEY: &[u8] = b"checkpoint";
const GENERATION_PREFIX: &[u8] = b"generation";
const REPOINTING_PREFIX: &[u8] = b"repointing";
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    /// Where its record is.
    pub at: RecordAddress,
}

/// The keyspaces a commit's entries go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Space {
    Streams,
    StreamEvents,
    All,
    Label(LabelKind),
    EventIds,
}

/// One index entry a commit produces.
struct Entry {
    space: Space,
    key: Vec<u8>,
    value: Vec<u8>,
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

    /// Segments whose current file generation is above 0, with it.
    ///
    /// # Errors
    /// Errors of the index store; a marker that does not decode.
    pub fn generations(&self) -> Result<BTreeMap<u32, u16>, Error> {
        self.segment_markers(GENERATION_PREFIX, |value| Some(u16::from_le_bytes(value.try_into().ok()?)))
    }

    /// Records the current generation of each segment in `generations`.
    ///
    /// # Errors
    /// Errors of the index store.
    pub fn set_generations(&self, generations: &BTreeMap<u32, u16>) -> Result<(), Error> {
        let mut batch = self.db.batch();
        for (&number, &generation) in generations {
            batch.insert(&self.meta, marker_key(GENERATION_PREFIX, number), generation.to_le_bytes().to_vec());
        }
        batch.commit()?;
        Ok(())
    }

    /// Segments whose entries a scavenge was moving from one generation
    /// to another: segment to (old, new).
    ///
    /// # Errors
    /// Errors of the index store; a marker that does not decode.
    pub fn repointings(&self) -> Result<BTreeMap<u32, (u16, u16)>, Error> {
        self.segment_markers(REPOINTING_PREFIX, |value| {
            let old = u16::from_le_bytes(value.get(..2)?.try_into().ok()?);
            let new = u16::from_le_bytes(value.get(2..)?.try_into().ok()?);
            Some((old, new))
        })
    }

    /// Records that entries of segment `number` are about to move from
    /// generation `old` to `new`: until [`Index::finish_repointing`], they
    /// may point into either.
    ///
    /// # Errors
    /// Errors of the index store.
    pub fn start_repointing(&self, number: u32, old: u16, new: u16) -> Result<(), Error> {
        let mut value = old.to_le_bytes().to_vec();
        value.extend_from_slice(&new.to_le_bytes());
        self.meta.insert(marker_key(REPOINTING_PREFIX, number), value)?;
        Ok(())
    }

    /// Makes `generation` the current one of segment `number` and clears
    /// its repointing intent, then syncs the index to disk: after this the
    /// old generation's file may go.
    ///
    /// # Errors
    /// Errors of the index store.
    pub fn finish_repointing(&self, number: u32, generation: u16) -> Result<(), Error> {
        let mut batch = self.db.batch();
        batch.insert(&self.meta, marker_key(GENERATION_PREFIX, number), generation.to_le_bytes().to_vec());
        batch.remove(&self.meta, marker_key(REPOINTING_PREFIX, number));
        batch.commit()?;
        self.persist()
    }

    fn segment_markers<T>(
        &self,
        prefix: &[u8],
        decode: impl Fn(&[u8]) -> Option<T>,
    ) -> Result<BTreeMap<u32, T>, Error> {
        let mut markers = BTreeMap::new();
        for guard in self.meta.prefix(prefix) {
            let (key, value) = guard.into_inner()?;
            let number = key.get(prefix.len()..).and_then(|b| <[u8; 4]>::try_from(b).ok());
            let (Some(number), Some(marker)) = (number, decode(&value)) else {
                return Err(bad_entry("segment marker"));
            };
            markers.insert(u32::from_be_bytes(number), marker);
        }
        Ok(markers)
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
            for entry in commit_entries(located) {
                batch.insert(self.keyspace(entry.space), entry.key, entry.value);
            }
        }
        batch.insert(&self.meta, CHECKPOINT_KEY, checkpoint.encode().to_vec());
        batch.commit()?;
        Ok(())
    }

    /// Points the entries of some records of a rewritten segment at its
    /// new generation, in one atomic batch: the entries of `old` (record
    /// by record the same commits as `new`, plus the events a scavenge
    /// dropped) are replaced by those of `new`, and entries of dropped
    /// events are removed. Doing it twice does no harm. Stream heads are
    /// left alone: later segments may have moved them on. Not fsynced.
    ///
    /// # Errors
    /// Errors of the index store.
    pub fn repoint(&self, old: &[LocatedCommit], new: &[LocatedCommit]) -> Result<(), Error> {
        assert_eq!(old.len(), new.len(), "records pair up one to one");
        let mut batch = self.db.batch();
        for (old, new) in old.iter().zip(new) {
            assert_eq!(old.commit.first_position, new.commit.first_position, "records keep their positions");
            let new_entries: Vec<Entry> =
                commit_entries(new).into_iter().filter(|e| e.space != Space::Streams).collect();
            let kept: HashSet<(Space, &[u8])> = new_entries.iter().map(|e| (e.space, e.key.as_slice())).collect();
            for entry in commit_entries(old) {
                if entry.space != Space::Streams && !kept.contains(&(entry.space, entry.key.as_slice())) {
                    batch.remove(self.keyspace(entry.space), entry.key);
                }
            }
            for entry in new_entries {
                batch.insert(self.keyspace(entry.space), entry.key, entry.value);
            }
        }
        batch.commit()?;
        Ok(())
    }

    fn keyspace(&self, space: Space) -> &Keyspace {
        match space {
            Space::Streams => &self.streams,
            Space::StreamEvents => &self.stream_events,
            Space::All => &self.all,
            Space::Label(kind) => self.label_keyspace(kind),
            Space::EventIds => &self.event_ids,
        }
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
            events += record.span as usize;
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
        let contains = position.0 < first.0 + u64::from(record.span);
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

/// Key of a segment's marker.
fn marker_key(prefix: &[u8], number: u32) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(&number.to_be_bytes());
    key
}

/// Every index entry of one record: its `$all` entry, stream head and
/// run per write, category, type and tag runs, and one entry per event id.
fn commit_entries(located: &LocatedCommit) -> Vec<Entry> {
    let commit = &located.commit;
    let at = located.at;
    let record = RecordEntry {
        segment: at.segment,
        generation: at.generation,
        offset: at.offset,
        span: u32::try_from(commit.span()).expect("bounded by append_events_max"),
        recorded_at_us: commit.recorded_at_us,
    };
    let mut entries = vec![Entry {
        space: Space::All,
        key: entry::position_key(commit.first_position).to_vec(),
        value: record.encode().to_vec(),
    }];
    let mut runs = Runs::new(at);
    let mut position = commit.first_position.0;
    for write in &commit.writes {
        position += u64::from(write.dropped);
        let first_index = runs.next_index;
        for event in &write.events {
            runs.add(LabelKind::Category, write.stream.category(), position);
            runs.add(LabelKind::EventType, event.event_type.as_str(), position);
            for tag in &event.tags {
                runs.add(LabelKind::Tag, tag.as_str(), position);
            }
            let pointer = runs.pointer(runs.next_index);
            let value = entry::id_value(Position(position), pointer).to_vec();
            entries.push(Entry { space: Space::EventIds, key: event.id.as_bytes().to_vec(), value });
            runs.next_index += 1;
            position += 1;
        }
        let stream = write.stream.as_str();
        let count = runs.next_index - first_index;
        if count > 0 {
            let run = RunEntry { index: first_index, count, ..runs.fresh(first_index) };
            let key = entry::label_key(stream, write.first_kept_revision().0);
            entries.push(Entry { space: Space::StreamEvents, key, value: run.encode().to_vec() });
        }
        let head = entry::revision_value(write.last_revision()).to_vec();
        entries.push(Entry { space: Space::Streams, key: stream.as_bytes().to_vec(), value: head });
    }
    debug_assert_eq!(position, commit.next_position().0);
    entries.extend(runs.into_entries());
    entries
}

/// The label runs of one record being indexed: for each label, the open
/// run, extended while the label's events stay consecutive in the record
/// and in positions (a scavenged write's dropped events break a run).
struct Runs<'a> {
    at: RecordAddress,
    /// Index in the record of the next event.
    next_index: u32,
    /// Runs that may still grow: (kind, label, first position, run).
    open: Vec<(LabelKind, &'a str, u64, RunEntry)>,
    /// Runs that ended before the record did.
    closed: Vec<(LabelKind, &'a str, u64, RunEntry)>,
}

impl<'a> Runs<'a> {
    fn new(at: RecordAddress) -> Runs<'a> {
        Runs { at, next_index: 0, open: Vec::new(), closed: Vec::new() }
    }

    /// A one-event run of the record starting at `index`.
    fn fresh(&self, index: u32) -> RunEntry {
        RunEntry { segment: self.at.segment, generation: self.at.generation, offset: self.at.offset, index, count: 1 }
    }

    /// Pointer to the record's event at `index`.
    fn pointer(&self, index: u32) -> EventPointer {
        self.fresh(index).pointer(0)
    }

    /// Counts the event at `next_index`, at `position`, into the run of
    /// `label`.
    fn add(&mut self, kind: LabelKind, label: &'a str, position: u64) {
        let index = self.next_index;
        let fresh = self.fresh(index);
        match self.open.iter_mut().find(|(k, l, _, _)| *k == kind && *l == label) {
            Some((_, _, first, run)) if run.index + run.count == index && *first + u64::from(run.count) == position => {
                run.count += 1;
            }
            Some(slot) => self.closed.push(std::mem::replace(slot, (kind, label, position, fresh))),
            None => self.open.push((kind, label, position, fresh)),
        }
    }

    fn into_entries(self) -> impl Iterator<Item = Entry> + 'a {
        self.closed.into_iter().chain(self.open).map(|(kind, label, first, run)| Entry {
            space: Space::Label(kind),
            key: entry::label_key(label, first),
            value: run.encode().to_vec(),
        })
    }
}
