//! Derived indexes over the log: stream runs (a stream's events by
//! revision), `$all` (records by position), category, type and tag runs,
//! and event ids, all as fixed-size entries keyed by fingerprints of names
//! (see [`entry`]).
//!
//! Shaped like KurrentDB's index (a memtable and sorted tables of hashed
//! names) rather than a general-purpose LSM store, because the sequencer
//! pays for every entry on the append path:
//!
//! - the sequencer adds a group's entries to an in-memory memtable with
//!   one lock (a hash probe and a push each, see `memtable`); there is no
//!   second journal: the log is the write-ahead log, and recovery indexes
//!   the log again from the last table's checkpoint;
//! - a full memtable is frozen and written out as an immutable table by a
//!   background thread (`compactor`), and tables are merged in the
//!   background at a lower CPU priority; a manifest names the tables;
//! - lookups read the active memtable, frozen ones, then tables, each a
//!   contiguous stretch of the log (`layers`); tables keep a filter and
//!   sparse fences in memory and read 4 KiB blocks with `pread`.
//!
//! The index never holds anything the log lacks: it is written after the
//! log is fsynced. Deleting its directory rebuilds it from the whole log
//! (snapshots, which are client data kept beside it in `meta`, are then
//! gone: loads fold from the first event until new ones are written).
//! Memory is the memtables (bounded by `Options::index_memtable_entries`
//! and `Options::index_memtable_bytes`, at most `FROZEN_MAX` + 2 of them:
//! the active one, the frozen ones and a spare) plus about 1.6 bytes per
//! table entry of filters and fences.
//!
//! Entries point at records by segment, file generation and offset. A
//! scavenge rewrites a segment into a new generation and writes a table of
//! where its records now are (`records-*`); entries written before keep
//! their old generation and are found through that table
//! ([`Index::relocate`]). Nothing else is rewritten.

pub mod entry;

mod compactor;
mod filter;
mod layers;
mod manifest;
pub(crate) mod memtable;
mod meta;
mod runs;
mod table;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;

use entry::{Checkpoint, Entry, EventPointer, Fingerprint, RecordEntry, Space};
use layers::{Keyed, Layers, SharedMemtable};
use manifest::Manifest;
use memtable::Memtable;
use meta::Meta;
use table::{Coverage, Table, TableWriter};

use crate::error::Error;
use crate::event::{EventId, StreamName};
use crate::log::record::Commit;
use crate::log::recovery::{RecordScan, ScanEnd};
use crate::log::segment::{RecordAddress, SEGMENT_HEADER_BYTES};
use crate::position::{Position, Revision};
use crate::read::Direction;

/// Frozen memtables allowed to wait for the flusher before the sequencer
/// waits too (back-pressure, bounding memory).
const FROZEN_MAX: usize = 2;
/// Suffix of table files.
const TABLE_SUFFIX: &str = ".qidx";
/// Prefix of the tables of scavenged segments' records.
const RECORDS_PREFIX: &str = "records-";

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

impl LabelKind {
    fn space(self) -> Space {
        match self {
            LabelKind::Category => Space::Category,
            LabelKind::EventType => Space::EventType,
            LabelKind::Tag => Space::Tag,
        }
    }
}

/// A commit together with where its record is in the log.
#[derive(Debug)]
pub struct LocatedCommit {
    /// The commit.
    pub commit: Commit,
    /// Where its record is.
    pub at: RecordAddress,
}

/// Memory the index holds, bytes (see [`Index::memory`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IndexMemory {
    /// The memtables: the active one, the frozen ones waiting to be
    /// written out and the spare (bounded by the memtable options).
    pub memtables: usize,
    /// The tables' filters and fences (growing with the names indexed:
    /// about 1.3 bytes per distinct stream or event id).
    pub tables: usize,
}

impl IndexMemory {
    /// Everything.
    #[must_use]
    pub fn total(self) -> usize {
        self.memtables + self.tables
    }
}

/// How the index is sized.
#[derive(Debug, Clone, Copy)]
pub struct IndexOptions {
    /// Block cache of the metadata store (snapshots), bytes.
    pub meta_cache_bytes: u64,
    /// Entries a memtable takes before it is written out as a table.
    pub memtable_entries: usize,
    /// Memory a memtable's maps may grow to before it is written out,
    /// bytes.
    pub memtable_bytes: usize,
}

/// What the background threads are told.
#[derive(Debug, Default)]
struct Work {
    stop: bool,
}

/// The index's state, shared with its background threads.
pub(crate) struct Inner {
    tables_dir: PathBuf,
    meta: Meta,
    layers: RwLock<Arc<Layers>>,
    work: Mutex<Work>,
    /// A memtable was frozen (or the index stops).
    flush_due: Condvar,
    /// Tables were published (or the index stops).
    merge_due: Condvar,
    /// Tables were published: frozen memtables went.
    published: Condvar,
    /// Held while tables are replaced.
    publishing: Mutex<()>,
    next_table: AtomicU64,
    failure: Mutex<Option<String>>,
    memtable_entries_max: usize,
    /// Memory a memtable's maps may grow to, bytes (one group may exceed it).
    memtable_bytes_max: usize,
    /// Current generation of each segment a scavenge rewrote.
    generations: RwLock<BTreeMap<u32, u16>>,
    /// Where the records of those generations are.
    records: RwLock<BTreeMap<(u32, u16), Arc<Table>>>,
    /// A flushed memtable, emptied, whose memory the next one reuses.
    spare: Mutex<Option<Memtable>>,
}

impl Inner {
    fn layers(&self) -> Arc<Layers> {
        Arc::clone(&self.layers.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    fn lock_work(&self) -> MutexGuard<'_, Work> {
        self.work.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn fail(&self, error: &Error) {
        tracing::error!(%error, "the index cannot be written; the store stops accepting appends");
        let mut failure = self.failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        failure.get_or_insert_with(|| error.to_string());
        drop(failure);
        self.notify(&self.published);
    }

    /// Wakes whoever waits on `condvar`: under the work lock, which
    /// waiters hold while they look at what they wait for, so no wake-up
    /// falls between their look and their wait.
    fn notify(&self, condvar: &Condvar) {
        let _work = self.lock_work();
        condvar.notify_all();
    }

    fn failed(&self) -> Option<Error> {
        let failure = self.failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        failure.as_ref().map(|reason| Error::Io {
            context: format!("writing the index: {reason}"),
            source: std::io::Error::other("the index stopped"),
        })
    }
}

/// The open index.
pub struct Index {
    inner: Arc<Inner>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Index")
    }
}

/// File name of table `number`.
fn table_file_name(number: u64) -> String {
    format!("{number:012}{TABLE_SUFFIX}")
}

/// File name of the records table of a segment generation.
fn records_file_name(number: u32, generation: u16) -> String {
    format!("{RECORDS_PREFIX}{number:010}-{generation:05}{TABLE_SUFFIX}")
}

/// The segment and generation of a [`records_file_name`].
fn parse_records_file_name(name: &str) -> Option<(u32, u16)> {
    let stem = name.strip_prefix(RECORDS_PREFIX)?.strip_suffix(TABLE_SUFFIX)?;
    let (number, generation) = stem.split_once('-')?;
    Some((number.parse().ok()?, generation.parse().ok()?))
}

impl Index {
    /// Opens (or creates) the index in `dir`.
    ///
    /// # Errors
    /// I/O errors; tables or a manifest that do not check.
    pub fn open(dir: &Path, options: IndexOptions) -> Result<Index, Error> {
        std::fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
        let meta = Meta::open(dir, options.meta_cache_bytes)?;
        let tables_dir = dir.join("tables");
        std::fs::create_dir_all(&tables_dir).map_err(Error::io(format!("creating {}", tables_dir.display())))?;
        let manifest = Manifest::read(&tables_dir)?;
        let next_table = remove_unlisted_tables(&tables_dir, &manifest)?;
        let tables = manifest
            .tables
            .iter()
            .map(|name| Table::open(&tables_dir.join(name)).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        let generations = meta.generations()?;
        let layers = Layers { tables, frozen: Vec::new(), active: SharedMemtable::default() };
        let inner = Arc::new(Inner {
            tables_dir,
            meta,
            layers: RwLock::new(Arc::new(layers)),
            work: Mutex::new(Work::default()),
            flush_due: Condvar::new(),
            merge_due: Condvar::new(),
            published: Condvar::new(),
            publishing: Mutex::new(()),
            next_table: AtomicU64::new(next_table),
            failure: Mutex::new(None),
            memtable_entries_max: options.memtable_entries.max(1),
            memtable_bytes_max: options.memtable_bytes,
            generations: RwLock::new(generations),
            records: RwLock::new(BTreeMap::new()),
            spare: Mutex::new(None),
        });
        let threads = vec![
            spawn("quipu-index-flush", &inner, compactor::run_flusher)?,
            spawn("quipu-index-merge", &inner, compactor::run_merger)?,
        ];
        Ok(Index { inner, threads: Mutex::new(threads) })
    }

    fn layers(&self) -> Arc<Layers> {
        self.inner.layers()
    }

    /// How far the tables on disk cover the log: where recovery starts
    /// indexing it again; `None` when no table was written yet.
    #[must_use]
    pub fn durable_checkpoint(&self) -> Option<Checkpoint> {
        self.layers().tables.last().map(|t| t.coverage().checkpoint)
    }

    /// How far the index covers the log, memtables included.
    #[must_use]
    pub fn checkpoint(&self) -> Option<Checkpoint> {
        let layers = self.layers();
        let mut memtables = std::iter::once(&layers.active).chain(layers.frozen.iter().rev());
        memtables
            .find_map(|m| layers::read(m).checkpoint())
            .or_else(|| layers.tables.last().map(|t| t.coverage().checkpoint))
    }

    /// Adds the entries of `commits` (in log order, after everything
    /// indexed so far) and records that the log is indexed up to
    /// `checkpoint`. Not fsynced: the log is the durable copy. Waits when
    /// the flusher is behind.
    ///
    /// # Errors
    /// The error that stopped the index's background work.
    pub fn write(&self, commits: &[LocatedCommit], checkpoint: Checkpoint) -> Result<(), Error> {
        if let Some(error) = self.inner.failed() {
            return Err(error);
        }
        let Some(first) = commits.first() else { return Ok(()) };
        let names_max = commits.iter().map(|located| runs::entries_max(&located.commit)).sum();
        let mut layers = self.layers();
        let takes = {
            let active = layers::read(&layers.active);
            active.is_empty() || active.takes(names_max, self.inner.memtable_bytes_max)
        };
        if !takes {
            self.freeze(&layers.active)?;
            layers = self.layers();
        }
        let full = {
            let mut active = layers.active.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            for located in commits {
                runs::for_each_entry(&located.commit, located.at, &mut |space, entry| active.insert(space, entry));
            }
            active.cover(first.commit.first_position, checkpoint);
            active.len() >= self.inner.memtable_entries_max
        };
        if full {
            self.freeze(&layers.active)?;
        }
        Ok(())
    }

    /// Moves `active` to the frozen memtables (if it still is the active
    /// one) and starts a new one; waits while too many are frozen.
    fn freeze(&self, active: &SharedMemtable) -> Result<(), Error> {
        {
            let mut layers = self.inner.layers.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            if !Arc::ptr_eq(&layers.active, active) || layers::read(active).is_empty() {
                return Ok(());
            }
            let mut next = (**layers).clone();
            next.frozen.push(Arc::clone(&next.active));
            let spare = self.inner.spare.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
            next.active = Arc::new(RwLock::new(spare.unwrap_or_default()));
            *layers = Arc::new(next);
        }
        self.inner.notify(&self.inner.flush_due);
        self.wait_for_flushes(FROZEN_MAX)
    }

    /// Waits until at most `frozen_max` memtables wait for the flusher.
    fn wait_for_flushes(&self, frozen_max: usize) -> Result<(), Error> {
        let mut work = self.inner.lock_work();
        loop {
            if let Some(error) = self.inner.failed() {
                return Err(error);
            }
            if self.layers().frozen.len() <= frozen_max {
                return Ok(());
            }
            work = self.inner.published.wait(work).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// Writes every memtable out as a table and syncs the metadata, so
    /// the next open need not index the log again (called on close).
    ///
    /// # Errors
    /// Errors writing the tables or the metadata.
    pub fn persist(&self) -> Result<(), Error> {
        let active = Arc::clone(&self.layers().active);
        self.freeze(&active)?;
        self.wait_for_flushes(0)?;
        self.inner.meta.persist()
    }

    /// Last revision of `stream`; `None` when it has no events.
    ///
    /// # Errors
    /// Errors reading a table.
    pub fn stream_head(&self, stream: &StreamName) -> Result<Option<Revision>, Error> {
        let name = Fingerprint::of(Space::Stream, stream.as_str().as_bytes());
        Ok(self.layers().last_of(&name)?.map(|run| entry::last_revision(&run)))
    }

    /// Where the first event written with `id` is; `None` when no event
    /// has that id.
    ///
    /// # Errors
    /// Errors reading a table.
    pub fn event_by_id(&self, id: &EventId) -> Result<Option<EventPointer>, Error> {
        let name = Fingerprint::of(Space::EventId, id.as_bytes());
        Ok(self.layers().ids_of(&name, 1)?.first().map(|e| e.pointer(0)))
    }

    /// Up to `limit` events of `stream` from revision `from` (inclusive;
    /// `None`: the start when going forwards, the end when backwards).
    ///
    /// # Errors
    /// Errors reading a table.
    pub fn stream_range(
        &self,
        stream: &StreamName,
        from: Option<Revision>,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<(Revision, EventPointer)>, Error> {
        let name = Fingerprint::of(Space::Stream, stream.as_str().as_bytes());
        let from = from.map(|r| r.0);
        let events = expand(&self.layers(), &name, Keyed::ByRevision, from, direction, limit)?;
        Ok(events.into_iter().map(|(revision, pointer)| (Revision(revision), pointer)).collect())
    }

    /// Up to `limit` events with the label from position `from` (inclusive;
    /// `None` as in [`Index::stream_range`]).
    ///
    /// # Errors
    /// Errors reading a table.
    pub fn label_range(
        &self,
        kind: LabelKind,
        label: &str,
        from: Option<Position>,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<(Position, EventPointer)>, Error> {
        let name = Fingerprint::of(kind.space(), label.as_bytes());
        let events = expand(&self.layers(), &name, Keyed::ByPosition, from.map(|p| p.0), direction, limit)?;
        Ok(events.into_iter().map(|(position, pointer)| (Position(position), pointer)).collect())
    }

    /// Records of `$all` holding events from `from` on (forwards) or up to
    /// `from` (backwards), until they hold at least `events_min` events on
    /// `from`'s side, or the log ends. The tables are asked for a few
    /// records first, then for about as many more as the records seen so
    /// far say are needed: a page of large records looks up tens of
    /// entries, not `events_min`.
    ///
    /// # Errors
    /// Errors reading a table.
    pub fn record_range(
        &self,
        from: Option<Position>,
        direction: Direction,
        events_min: usize,
    ) -> Result<Vec<RecordEntry>, Error> {
        let layers = self.layers();
        let name = Fingerprint::all();
        let start = match direction {
            Direction::Forwards => from.map_or(0, |p| p.0),
            Direction::Backwards => from.map_or(u64::MAX, |p| p.0),
        };
        let mut records = Vec::new();
        let mut events = 0usize;
        let mut cursor = start;
        while events < events_min {
            let ask = records_to_ask(events_min - events, events, records.len());
            let batch = layers.entries_of(&name, Keyed::ByPosition, cursor, direction, ask)?;
            let before = records.len();
            for entry in batch {
                let record = RecordEntry::from_entry(&entry);
                let wanted = match direction {
                    Direction::Forwards => {
                        record.next_position().0 > start
                            && records.last().is_none_or(|r: &RecordEntry| r.first_position < record.first_position)
                    }
                    Direction::Backwards => {
                        records.last().is_none_or(|r: &RecordEntry| r.first_position > record.first_position)
                    }
                };
                if wanted {
                    events += events_on_the_side_of(&record, start, direction);
                    records.push(record);
                }
            }
            let Some(last) = records.last().filter(|_| records.len() > before) else { break };
            cursor = match direction {
                Direction::Forwards => last.next_position().0,
                Direction::Backwards => match last.first_position.0.checked_sub(1) {
                    Some(before) => before,
                    None => break,
                },
            };
        }
        Ok(records)
    }

    /// The record whose events include `position`, if any.
    ///
    /// # Errors
    /// Errors reading a table.
    pub fn record_containing(&self, position: Position) -> Result<Option<RecordEntry>, Error> {
        let found =
            self.layers().entries_of(&Fingerprint::all(), Keyed::ByPosition, position.0, Direction::Backwards, 1)?;
        Ok(found.first().map(RecordEntry::from_entry).filter(|r| position < r.next_position()))
    }

    /// Where the record at `at` (which holds `position`) is now: `None`
    /// when it has not moved; its new address when a scavenge rewrote its
    /// segment since `at` was taken.
    ///
    /// # Errors
    /// [`Error::Corrupt`]-like I/O errors when the segment's records table
    /// does not know the position.
    pub fn relocate(&self, at: RecordAddress, position: Position) -> Result<Option<RecordAddress>, Error> {
        let current = self.current_generation(at.segment);
        if current == at.generation {
            return Ok(None);
        }
        let table = self
            .inner
            .records
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&(at.segment, current))
            .cloned();
        let lost = || Error::Io {
            context: format!("segment {} generation {current} has no record at position {position}", at.segment),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "delete the index directory to rebuild it"),
        };
        let table = table.ok_or_else(lost)?;
        let mut found = Vec::new();
        table.entries_of(&Fingerprint::all(), position.0, Direction::Backwards, 1, &mut found)?;
        let record =
            found.first().map(RecordEntry::from_entry).filter(|r| position < r.next_position()).ok_or_else(lost)?;
        Ok(Some(record.at))
    }

    /// The current file generation of segment `number`.
    #[must_use]
    pub fn current_generation(&self, number: u32) -> u16 {
        self.inner
            .generations
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&number)
            .copied()
            .unwrap_or(0)
    }

    /// Segments whose current file generation is above 0, with it, as
    /// the metadata store has them.
    ///
    /// # Errors
    /// Errors of the metadata store.
    pub fn generations(&self) -> Result<BTreeMap<u32, u16>, Error> {
        self.inner.meta.generations()
    }

    /// Records the current generation of each segment in `generations`
    /// (a rebuild's choice of files).
    ///
    /// # Errors
    /// Errors of the metadata store.
    pub fn set_generations(&self, generations: &BTreeMap<u32, u16>) -> Result<(), Error> {
        self.inner.meta.set_generations(generations)?;
        self.inner.generations.write().unwrap_or_else(std::sync::PoisonError::into_inner).extend(generations);
        Ok(())
    }

    /// Scavenges an earlier version left between intent and marker.
    ///
    /// # Errors
    /// Errors of the metadata store.
    pub fn repointings(&self) -> Result<BTreeMap<u32, (u16, u16)>, Error> {
        self.inner.meta.repointings()
    }

    /// Makes `generation` of segment `number` current, durably, once its
    /// records table exists ([`Index::build_records`]); entries of older
    /// generations are then found through it.
    ///
    /// # Errors
    /// Errors of the metadata store.
    pub fn set_generation(&self, number: u32, generation: u16) -> Result<(), Error> {
        self.inner.meta.set_generation(number, generation)?;
        self.inner.generations.write().unwrap_or_else(std::sync::PoisonError::into_inner).insert(number, generation);
        Ok(())
    }

    /// Makes sure a records table exists for `generation` of segment
    /// `number`, whose file is at `path`: opens it, or reads the segment
    /// and writes it.
    ///
    /// # Errors
    /// I/O errors; [`Error::Corrupt`] for a segment that does not scan.
    pub fn build_records(&self, path: &Path, number: u32, generation: u16) -> Result<(), Error> {
        let file = self.inner.tables_dir.join(records_file_name(number, generation));
        let table = match Table::open(&file) {
            Ok(table) => table,
            Err(_) => {
                let _ = std::fs::remove_file(&file);
                write_records_table(path, &file, number, generation)?
            }
        };
        self.inner
            .records
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert((number, generation), Arc::new(table));
        Ok(())
    }

    /// Forgets the records table of `generation` of segment `number` and
    /// removes its file (once a newer generation is current).
    pub fn drop_records(&self, number: u32, generation: u16) {
        self.inner.records.write().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&(number, generation));
        let path = self.inner.tables_dir.join(records_file_name(number, generation));
        if let Err(error) = std::fs::remove_file(&path)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(%error, file = %path.display(), "removing a records table");
        }
    }

    /// Removes the records tables of every generation but the current
    /// ones in `current` (left by scavenges a crash interrupted).
    pub fn drop_records_except(&self, current: &BTreeMap<u32, u16>) {
        let Ok(entries) = std::fs::read_dir(&self.inner.tables_dir) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((number, generation)) = parse_records_file_name(&name) else { continue };
            if current.get(&number) != Some(&generation) {
                self.drop_records(number, generation);
            }
        }
    }

    /// Stores `value` as the snapshot of `stream` at `revision`.
    ///
    /// # Errors
    /// Errors of the metadata store.
    pub fn put_snapshot(&self, stream: &StreamName, revision: Revision, value: Vec<u8>) -> Result<(), Error> {
        self.inner.meta.put_snapshot(stream, revision, value)
    }

    /// The newest snapshot of `stream` at or below `at_most` that `wanted`
    /// accepts.
    ///
    /// # Errors
    /// Errors of the metadata store.
    pub fn find_snapshot(
        &self,
        stream: &StreamName,
        at_most: Revision,
        wanted: impl Fn(&[u8]) -> bool,
    ) -> Result<Option<(Revision, Vec<u8>)>, Error> {
        self.inner.meta.find_snapshot(stream, at_most, wanted)
    }

    /// Every snapshot of `stream`, oldest first.
    ///
    /// # Errors
    /// Errors of the metadata store.
    pub fn snapshots(&self, stream: &StreamName) -> Result<Vec<(Revision, Vec<u8>)>, Error> {
        self.inner.meta.snapshots(stream)
    }

    /// Deletes every snapshot of `stream`; how many there were.
    ///
    /// # Errors
    /// Errors of the metadata store.
    pub fn delete_snapshots(&self, stream: &StreamName) -> Result<u64, Error> {
        self.inner.meta.delete_snapshots(stream)
    }

    /// Bytes the index holds in memory: its memtables (active, frozen and
    /// the spare) and its tables' filters and fences.
    #[must_use]
    pub fn memory(&self) -> IndexMemory {
        let layers = self.layers();
        let memtables: usize = layers.memtables().map(|m| layers::read(m).bytes()).sum();
        let spare = self
            .inner
            .spare
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map_or(0, Memtable::bytes);
        let tables: usize = layers.tables.iter().map(|t| t.memory_bytes()).sum();
        IndexMemory { memtables: memtables + spare, tables }
    }

    /// Bytes the index takes on disk: the blocks its files have allocated
    /// (a sparse file, such as a journal the metadata store preallocates,
    /// counts what it holds, not its length).
    ///
    /// # Errors
    /// I/O errors listing the index directory.
    pub fn disk_bytes(&self) -> Result<u64, Error> {
        let root = self.inner.tables_dir.parent().unwrap_or(&self.inner.tables_dir);
        allocated_bytes_under(root)
    }
}

/// Bytes allocated on disk to the files under `dir`, recursively. Files
/// removed meanwhile (a merge) are skipped.
fn allocated_bytes_under(dir: &Path) -> Result<u64, Error> {
    use std::os::unix::fs::MetadataExt;
    let mut bytes = 0;
    for entry in std::fs::read_dir(dir).map_err(Error::io(format!("listing {}", dir.display())))? {
        let Some(metadata) = entry.ok().and_then(|e| e.metadata().ok().map(|m| (e.path(), m))) else { continue };
        let (path, metadata) = metadata;
        bytes += if metadata.is_dir() { allocated_bytes_under(&path)? } else { metadata.blocks() * 512 };
    }
    Ok(bytes)
}

impl Drop for Index {
    fn drop(&mut self) {
        self.inner.lock_work().stop = true;
        self.inner.flush_due.notify_all();
        self.inner.merge_due.notify_all();
        for thread in self.threads.lock().unwrap_or_else(std::sync::PoisonError::into_inner).drain(..) {
            if thread.join().is_err() {
                tracing::error!("an index thread panicked");
            }
        }
    }
}

fn spawn(name: &str, inner: &Arc<Inner>, run: fn(&Inner)) -> Result<JoinHandle<()>, Error> {
    let inner = Arc::clone(inner);
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || run(&inner))
        .map_err(Error::io(format!("starting the {name} thread")))
}

/// Removes table files the manifest does not name (a flush or merge that
/// did not finish) and temp files; returns the next free table number.
fn remove_unlisted_tables(dir: &Path, manifest: &Manifest) -> Result<u64, Error> {
    let mut next = 1;
    let entries = std::fs::read_dir(dir).map_err(Error::io(format!("listing {}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(Error::io(format!("listing {}", dir.display())))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(RECORDS_PREFIX) || name == "MANIFEST" {
            continue;
        }
        if let Some(number) = name.strip_suffix(TABLE_SUFFIX).and_then(|n| n.parse::<u64>().ok()) {
            next = next.max(number + 1);
            if manifest.tables.contains(&name) {
                continue;
            }
        }
        tracing::info!(file = %entry.path().display(), "removing an index file no table list names");
        std::fs::remove_file(entry.path()).map_err(Error::io(format!("removing {}", entry.path().display())))?;
    }
    Ok(next)
}

/// Scans the segment at `path` and writes the table of its records
/// (`$all` entries of this generation) at `file`.
fn write_records_table(path: &Path, file: &Path, number: u32, generation: u16) -> Result<Table, Error> {
    let mut writer = TableWriter::create(file, 1)?;
    let mut scan = RecordScan::open(path, SEGMENT_HEADER_BYTES)?;
    let mut first_position = None;
    let mut checkpoint = Checkpoint::default();
    while let Some((offset, len, commit)) = scan.next_record()? {
        let span = u16::try_from(commit.span()).unwrap_or(u16::MAX);
        let entry = Entry {
            name: Fingerprint::all(),
            seq: commit.first_position.0,
            value: commit.recorded_at_us,
            segment: number,
            generation,
            index: 0,
            offset,
            count: span,
        };
        writer.push(&entry)?;
        first_position.get_or_insert(commit.first_position);
        checkpoint = Checkpoint {
            segment: number,
            offset: offset + len as u64,
            next_position: commit.next_position(),
            last_recorded_at_us: commit.recorded_at_us,
        };
    }
    if let ScanEnd::Bad { offset, reason } = scan.end() {
        return Err(Error::Corrupt { segment: path.to_owned(), offset, reason });
    }
    let coverage = Coverage { first_position: first_position.unwrap_or(checkpoint.next_position), checkpoint };
    writer.finish(0, coverage)
}

/// Events of `name` from `from` in `direction`, at most `limit`, as
/// (revision or position, pointer), expanded from the name's runs.
fn expand(
    layers: &Layers,
    name: &Fingerprint,
    keyed: Keyed,
    from: Option<u64>,
    direction: Direction,
    limit: usize,
) -> Result<Vec<(u64, EventPointer)>, Error> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let start = match direction {
        Direction::Forwards => from.unwrap_or(0),
        Direction::Backwards => from.unwrap_or(u64::MAX),
    };
    let runs = layers.entries_of(name, keyed, start, direction, limit)?;
    let mut events = Vec::with_capacity(limit);
    for run in runs {
        let numbered = (0..run.count).map(|i| (run.seq + u64::from(i), run.pointer(i)));
        let room = limit - events.len();
        match direction {
            Direction::Forwards => events.extend(numbered.filter(|(n, _)| *n >= start).take(room)),
            Direction::Backwards => events.extend(numbered.rev().filter(|(n, _)| *n <= start).take(room)),
        }
        if events.len() == limit {
            break;
        }
    }
    Ok(events)
}

/// Records to ask the tables for when `missing` events are still wanted
/// and `seen_records` records held `seen_events`: a few at first, then
/// as many as records of the size seen so far need, and never more than
/// `missing` (a record holds at least one event).
fn records_to_ask(missing: usize, seen_events: usize, seen_records: usize) -> usize {
    const FIRST_ASK: usize = 16;
    let needed = match seen_records {
        0 => FIRST_ASK,
        _ => missing.div_ceil((seen_events / seen_records).max(1)) + 1,
    };
    needed.clamp(1, missing.max(1))
}

/// Events of `record` at or after `start` (forwards), at or before it
/// (backwards): those a read from `start` returns.
fn events_on_the_side_of(record: &RecordEntry, start: u64, direction: Direction) -> usize {
    let (first, next) = (record.first_position.0, record.next_position().0);
    let held = match direction {
        Direction::Forwards => next.saturating_sub(first.max(start)),
        Direction::Backwards => start.min(next.saturating_sub(1)).saturating_sub(first).saturating_add(1),
    };
    usize::try_from(held).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::segment::RecordAddress;

    #[test]
    fn disk_bytes_count_what_files_hold_not_their_sparse_length() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("tables")).expect("dir");
        std::fs::write(dir.path().join("tables").join("t"), vec![7u8; 8192]).expect("write");
        let sparse = std::fs::File::create(dir.path().join("journal")).expect("create");
        sparse.set_len(1 << 30).expect("a sparse GiB");
        let bytes = allocated_bytes_under(dir.path()).expect("listing");
        assert!((8192..1 << 20).contains(&bytes), "{bytes}");
    }

    fn record(first: u64, span: u32) -> RecordEntry {
        let at = RecordAddress { segment: 0, generation: 0, offset: 32 };
        RecordEntry { first_position: Position(first), at, span, recorded_at_us: 0 }
    }

    #[test]
    fn a_record_counts_only_the_events_a_read_from_start_returns() {
        let r = record(10, 5); // positions 10..=14
        assert_eq!(events_on_the_side_of(&r, 0, Direction::Forwards), 5);
        assert_eq!(events_on_the_side_of(&r, 12, Direction::Forwards), 3);
        assert_eq!(events_on_the_side_of(&r, 14, Direction::Forwards), 1);
        assert_eq!(events_on_the_side_of(&r, u64::MAX, Direction::Backwards), 5);
        assert_eq!(events_on_the_side_of(&r, 12, Direction::Backwards), 3);
        assert_eq!(events_on_the_side_of(&r, 10, Direction::Backwards), 1);
    }

    #[test]
    fn few_records_are_asked_first_then_as_many_as_their_size_needs() {
        assert_eq!(records_to_ask(1000, 0, 0), 16);
        assert_eq!(records_to_ask(5, 0, 0), 5, "never more records than events missing");
        assert_eq!(records_to_ask(1000, 16 * 256, 16), 5, "large records: a few more");
        assert_eq!(records_to_ask(984, 16, 16), 984, "one-event records: one per event");
        assert_eq!(records_to_ask(0, 10, 1), 1);
    }
}
