//! [`Store`]: the public face of the engine. Opening recovers the log and
//! brings the index up to it; appends are validated here, at the edge,
//! then queued to the sequencer (see `crate::intake`); reads go straight to the index
//! and the segment files.
//!
//! Data directory layout:
//! ```text
//! quipu.meta   format version (temp file, fsync, rename, fsync dir)
//! LOCK         held (flock) while a store has the directory open
//! log/         segment files, the truth
//! index/       derived index; may be deleted, is rebuilt on open
//! ```

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::append::{AppendOutcome, AppendRequest};
use crate::engine::{Decision, decide};
use crate::error::Error;
use crate::event::{EVENT_TAGS_MAX, EventId, EventType, RecordedEvent, StreamName, Tag};
use crate::head::{Head, HeadListener};
use crate::index::{Index, IndexOptions, LabelKind};
use crate::intake::Intake;
use crate::log::mark::{Mark, MarkWriter, Marker};
use crate::log::record::Source;
use crate::log::segment::{SegmentReader, SegmentWriter, sync_dir};
use crate::options::Options;
use crate::position::{Position, Revision};
use crate::proposer::{Proposer, SyncReply};
use crate::read::{self, Direction, StreamInfo};
use crate::scavenge::{Doomed, ScavengeProgress};
use crate::sequencer::{Applied, Sequencer, Shared, Submission};
use crate::state::{DecisionState, Pending};
use crate::stats::{CommitMeter, CommitStats};
use crate::verify::{Verification, VerifyProgress};

/// Version of the data directory layout written by this build: 2 since
/// log records carry a directory of per-event checksums. A directory of
/// version 1 is opened and marked 2 before anything is written to it (its
/// old records stay as they are and are still read), so a build that
/// knows only version 1 refuses it from then on instead of misreading
/// the new records.
pub const STORE_FORMAT_VERSION: u32 = 2;
/// The oldest data directory version this build opens.
const STORE_FORMAT_VERSION_OLDEST: u32 = 1;
const META_FILE: &str = "quipu.meta";
const META_PREFIX: &str = "quipu-store-format ";

/// An open event store. Cheap to share behind an `Arc`; every method takes
/// `&self` and may be called from any thread.
pub struct Store {
    pub(crate) shared: Arc<Shared>,
    intake: Arc<Intake>,
    sequencer: Mutex<Option<JoinHandle<()>>>,
    /// Keeps the durable mark; `None` in the unsafe sync mode.
    marker: Mutex<Option<Marker>>,
    scavenging: Mutex<()>,
    /// Where appends go first when this store is a cluster's replica.
    proposer: OnceLock<Arc<dyn Proposer>>,
    dir: PathBuf,
    _lock: File,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("dir", &self.dir).field("head", &self.shared.head).finish()
    }
}

impl Store {
    /// Opens the store in `dir`, creating it if needed. Recovers the log
    /// (cutting a torn tail), replays what the index lacks, and starts the
    /// sequencer.
    ///
    /// # Errors
    /// [`Error::InvalidOptions`], [`Error::Locked`] when another store has
    /// `dir`, [`Error::UnsupportedFormat`], [`Error::Corrupt`] with the
    /// segment and offset, [`Error::IndexAheadOfLog`], I/O errors.
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<Store, Error> {
        options.validate()?;
        let dir = dir.as_ref().to_owned();
        std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
        let lock = lock_dir(&dir)?;
        check_format(&dir)?;
        let log_dir = dir.join("log");
        std::fs::create_dir_all(&log_dir).map_err(Error::io(format!("creating {}", log_dir.display())))?;
        sync_dir(&dir)?;
        let index_options = IndexOptions {
            meta_cache_bytes: options.index_cache_bytes,
            memtable_entries: options.index_memtable_entries,
            memtable_bytes: usize::try_from(options.index_memtable_bytes).unwrap_or(usize::MAX),
        };
        let index = Index::open(&dir.join("index"), index_options)?;
        let shared = Shared {
            index,
            reader: SegmentReader::new(&log_dir, options.segment_size_bytes + options.batch_bytes_max as u64),
            head: Head::new(None),
            failure: Mutex::new(None),
            options,
            log_dir,
            commits: Arc::default(),
            durable: Arc::default(),
        };
        let recovered = crate::replay::recover(&shared)?;
        crate::scavenge::resume(&shared)?;
        shared.reader.activate(recovered.segment.number(), recovered.segment.len_bytes());
        let marker = start_marker(&shared, &recovered.segment)?;
        let shared =
            Arc::new(Shared { head: Head::new(recovered.next_position.0.checked_sub(1).map(Position)), ..shared });
        let sequencer = Sequencer::new(
            Arc::clone(&shared),
            recovered.segment,
            recovered.next_position,
            recovered.last_recorded_at_us,
        );
        let intake = Arc::new(Intake::new(sequencer));
        let runner = Arc::clone(&intake);
        let thread = std::thread::Builder::new()
            .name("quipu-sequencer".into())
            .spawn(move || runner.run())
            .map_err(Error::io("starting the sequencer thread"))?;
        Ok(Store {
            shared,
            intake,
            sequencer: Mutex::new(Some(thread)),
            marker: Mutex::new(marker),
            scavenging: Mutex::new(()),
            proposer: OnceLock::new(),
            dir,
            _lock: lock,
        })
    }

    /// Appends atomically and waits until the outcome is known; a
    /// [`AppendOutcome::Written`] outcome is durable.
    ///
    /// # Errors
    /// Validation errors (nothing is written), [`Error::EventIdReused`],
    /// [`Error::StoreFailed`] after a failed write, [`Error::Closed`].
    pub fn append(&self, request: AppendRequest) -> Result<AppendOutcome, Error> {
        let (sender, receiver) = std::sync::mpsc::channel();
        self.submit_inline(request, move |outcome| {
            // The caller waits on the receiver; it cannot be gone.
            let _ = sender.send(outcome);
        });
        receiver.recv().unwrap_or(Err(Error::Closed))
    }

    /// Queues an append and returns at once (waiting only while the queue
    /// is full); `reply` is called exactly once with the outcome, from the
    /// thread that commits it or, for invalid input, from this one. On a
    /// cluster's replica the append goes to the [`Proposer`] instead, and
    /// `reply` is called once this store has applied it from the shared
    /// log. A
    /// caller can queue many appends this way and they share group
    /// commits. `reply` must not block.
    pub fn submit(&self, request: AppendRequest, reply: impl FnOnce(Result<AppendOutcome, Error>) + Send + 'static) {
        self.enqueue(request, Box::new(reply), false, None);
    }

    /// As [`Store::submit`], for a caller that will wait for this one
    /// outcome: when no other append is being committed, this thread
    /// commits it before returning (one write and one fdatasync), and
    /// `reply` has been called when `submit_inline` returns. That saves
    /// two thread wake-ups on the latency of an idle store; under load it
    /// queues like [`Store::submit`] and returns at once.
    pub fn submit_inline(
        &self,
        request: AppendRequest,
        reply: impl FnOnce(Result<AppendOutcome, Error>) + Send + 'static,
    ) {
        self.enqueue(request, Box::new(reply), true, None);
    }

    /// Queues an append applied from a cluster's shared log, as
    /// [`Store::submit`] does: it is decided in the order of such calls,
    /// recorded with the log's timestamp (or the last commit's, when that is
    /// later) and, when written, with its [`Source`] in its commit (see
    /// [`Store::last_source`]). Every node that applies the same requests
    /// in the same order decides and records the same, so the caller must
    /// be the store's only appender.
    pub fn submit_applied(
        &self,
        request: AppendRequest,
        applied: Applied,
        reply: impl FnOnce(Result<AppendOutcome, Error>) + Send + 'static,
    ) {
        self.enqueue(request, Box::new(reply), false, Some(applied));
    }

    /// Decides `request` against what the store holds now, writing
    /// nothing: what appending it would decide if nothing else came
    /// first. A cluster's fenced writer checks a request with it before it
    /// puts it in the shared log. An accepted commit's timestamp is 0.
    ///
    /// # Errors
    /// The append's validation errors (as [`Store::append`]),
    /// [`Error::EventIdReused`], index or log read errors.
    pub fn check(&self, request: &AppendRequest) -> Result<Decision, Error> {
        self.validate(request)?;
        let pending = Pending::new(self.shared.head.last().map_or(Position::START, Position::next));
        let state =
            DecisionState { index: &self.shared.index, reader: &self.shared.reader, pending: &pending, heads: None };
        let pin = self.shared.reader.pin();
        let decision = decide(&state, request.clone(), 0);
        drop(pin);
        decision
    }

    /// Makes every later append that is not applied from a shared log
    /// ([`Store::submit`], [`Store::submit_inline`], [`Store::append`]) go
    /// to `proposer` once validated, instead of to the sequencer: this
    /// store becomes a cluster's replica, and decides appends only as it
    /// applies them ([`Store::submit_applied`]). [`Store::close`] closes the
    /// proposer first.
    ///
    /// # Errors
    /// [`Error::InvalidOptions`] when the store already has a proposer.
    pub fn propose_through(&self, proposer: Arc<dyn Proposer>) -> Result<(), Error> {
        self.proposer
            .set(proposer)
            .map_err(|_| Error::InvalidOptions { reason: "the store already proposes through a cluster".into() })
    }

    /// Calls `reply` once this store holds every append acknowledged
    /// before the call anywhere: at once for a store alone, after applying
    /// the shared log up to its end as of the call for a cluster's replica
    /// (see [`Proposer::sync`]).
    pub fn sync(&self, reply: SyncReply) {
        match self.proposer.get() {
            Some(proposer) => proposer.sync(reply),
            None => reply(Ok(())),
        }
    }

    /// Why this store takes no appends, when it takes none: a write or
    /// fdatasync failed (fail-stop until a restart), or, for a cluster's
    /// replica, its proposer stopped applying the shared log. `None` while
    /// it takes appends. Reads go on either way.
    #[must_use]
    pub fn unwritable(&self) -> Option<String> {
        if let Some(error) = self.shared.failed() {
            return Some(error.to_string());
        }
        self.proposer.get().and_then(|proposer| proposer.failure())
    }

    /// Whether this store is a cluster's replica (see
    /// [`Store::propose_through`]).
    #[must_use]
    pub fn is_replica(&self) -> bool {
        self.proposer.get().is_some()
    }

    /// The source of the log's last commit, if it was applied from a
    /// cluster's shared log: where applying the shared log resumes (every
    /// request after it, and none before).
    ///
    /// # Errors
    /// Index or log read errors.
    pub fn last_source(&self) -> Result<Option<Source>, Error> {
        let Some(last) = self.shared.head.last() else { return Ok(None) };
        let record = self
            .shared
            .index
            .record_containing(last)?
            .expect("the head advances only after the index holds the group's records");
        let at = self.shared.index.relocate(record.at, record.first_position)?.unwrap_or(record.at);
        Ok(self.shared.reader.read_commit(at, &mut Vec::new())?.source)
    }

    fn enqueue(&self, request: AppendRequest, reply: crate::sequencer::Reply, inline: bool, applied: Option<Applied>) {
        if let Err(error) = self.validate(&request) {
            return reply(Err(error));
        }
        if let Some(error) = self.shared.failed() {
            return reply(Err(error));
        }
        if applied.is_none()
            && let Some(proposer) = self.proposer.get()
        {
            return proposer.propose(request, reply);
        }
        self.intake.submit(Submission { request, reply, applied }, inline);
    }

    /// What committing has cost since the store opened: group commits,
    /// appends, events and CPU time (see [`CommitStats`]).
    #[must_use]
    pub fn commit_stats(&self) -> CommitStats {
        self.shared.commits.read()
    }

    /// A handle that reads [`Store::commit_stats`] for as long as the
    /// store is open, wherever the store goes.
    #[must_use]
    pub fn commit_meter(&self) -> CommitMeter {
        CommitMeter(Arc::clone(&self.shared.commits))
    }

    /// Checks an append against the naming rules already enforced by its
    /// types and against the configured limits.
    fn validate(&self, request: &AppendRequest) -> Result<(), Error> {
        let options = &self.shared.options;
        let count = request.event_count();
        if count == 0 {
            return Err(Error::EmptyAppend);
        }
        if count > options.append_events_max {
            return Err(Error::TooManyEvents { count, limit: options.append_events_max });
        }
        if request.writes.len() > options.append_streams_max {
            return Err(Error::TooManyStreams { count: request.writes.len(), limit: options.append_streams_max });
        }
        let mut streams = HashSet::with_capacity(request.writes.len());
        let mut ids = HashSet::with_capacity(count);
        let mut size_bytes = 0usize;
        for write in &request.writes {
            if !streams.insert(&write.stream) {
                return Err(Error::DuplicateStream { stream: write.stream.clone() });
            }
            for event in &write.events {
                if event.id.0.is_nil() {
                    return Err(Error::InvalidEventId {
                        text: event.id.to_text(),
                        reason: "the nil UUID is not an event id; give each event an id of its own".into(),
                    });
                }
                if !ids.insert(event.id) {
                    return Err(Error::DuplicateEventId { event_id: event.id });
                }
                check_event(event, options)?;
                size_bytes += event.size_bytes();
            }
        }
        if size_bytes > options.append_bytes_max {
            return Err(Error::AppendTooLarge { size_bytes, limit_bytes: options.append_bytes_max });
        }
        if request.condition.as_ref().is_some_and(|c| c.query.items.is_empty()) {
            return Err(Error::EmptyQuery);
        }
        Ok(())
    }

    /// Up to `limit` events of `stream` from revision `from` (inclusive;
    /// `None`: the start forwards, the end backwards).
    ///
    /// # Errors
    /// [`Error::StreamNotFound`], [`Error::ReadLimitTooLarge`],
    /// [`Error::Corrupt`], I/O errors.
    pub fn read_stream(
        &self,
        stream: &StreamName,
        from: Option<Revision>,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, Error> {
        read::read_stream(&self.shared, stream, from, direction, limit)
    }

    /// Up to `limit` events of `$all` from position `from` (inclusive;
    /// `None`: the start forwards, the end backwards).
    ///
    /// # Errors
    /// [`Error::ReadLimitTooLarge`], [`Error::Corrupt`], I/O errors.
    pub fn read_all(
        &self,
        from: Option<Position>,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, Error> {
        read::read_all(&self.shared, from, direction, limit)
    }

    /// Up to `limit` events of streams in `category` (see
    /// [`StreamName::category`]), by position.
    ///
    /// # Errors
    /// [`Error::InvalidName`] for a category no stream can have, and as
    /// [`Store::read_all`].
    pub fn read_category(
        &self,
        category: &str,
        from: Option<Position>,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, Error> {
        let category = StreamName::new(category)?;
        read::read_label(&self.shared, LabelKind::Category, category.as_str(), from, direction, limit)
    }

    /// Up to `limit` events of type `event_type`, by position.
    ///
    /// # Errors
    /// As [`Store::read_all`].
    pub fn read_event_type(
        &self,
        event_type: &EventType,
        from: Option<Position>,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, Error> {
        read::read_label(&self.shared, LabelKind::EventType, event_type.as_str(), from, direction, limit)
    }

    /// Up to `limit` events carrying `tag`, by position.
    ///
    /// # Errors
    /// As [`Store::read_all`].
    pub fn read_tag(
        &self,
        tag: &Tag,
        from: Option<Position>,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, Error> {
        read::read_label(&self.shared, LabelKind::Tag, tag.as_str(), from, direction, limit)
    }

    /// The event with `id`; `None` when no such event was written.
    ///
    /// # Errors
    /// [`Error::Corrupt`], I/O errors.
    pub fn read_event(&self, id: &EventId) -> Result<Option<RecordedEvent>, Error> {
        read::read_event(&self.shared, id)
    }

    /// Whether `stream` exists and its last revision.
    ///
    /// # Errors
    /// Index errors.
    pub fn stream_info(&self, stream: &StreamName) -> Result<StreamInfo, Error> {
        read::stream_info(&self.shared, stream)
    }

    /// Position of the last durable, readable event; `None` while empty.
    #[must_use]
    pub fn last_position(&self) -> Option<Position> {
        self.shared.head.last()
    }

    /// Waits until an event beyond `after` is readable (any event when
    /// `None`) or `timeout` passes; returns the last position then. The
    /// building block of live subscriptions.
    #[must_use]
    pub fn wait_beyond(&self, after: Option<Position>, timeout: Duration) -> Option<Position> {
        self.shared.head.wait_beyond(after, timeout)
    }

    /// Calls `listener` with the new last position after every group
    /// commit. It runs on the sequencer thread: it must not block.
    pub fn on_advance(&self, listener: HeadListener) {
        self.shared.head.listen(listener);
    }

    /// Bytes the index holds in memory (memtables, filters and fences of
    /// its tables); the stream-head cache and the page cache are not
    /// counted.
    #[must_use]
    pub fn index_memory(&self) -> crate::index::IndexMemory {
        self.shared.index.memory()
    }

    /// Bytes on disk: (log segments, index).
    ///
    /// # Errors
    /// I/O and index errors.
    pub fn disk_bytes(&self) -> Result<(u64, u64), Error> {
        use crate::log::segment::{segment_file_path, segment_files};
        let mut log_bytes = 0;
        for (number, generations) in segment_files(&self.shared.log_dir)? {
            for generation in generations {
                let path = segment_file_path(&self.shared.log_dir, number, generation);
                // A scavenge may remove an old generation meanwhile.
                log_bytes += std::fs::metadata(path).map_or(0, |m| m.len());
            }
        }
        Ok((log_bytes, self.shared.index.disk_bytes()?))
    }

    /// Removes from the log every event `doomed` says may go, while
    /// appends and reads go on, and returns what it did. Only closed
    /// segments are rewritten (not the one appends write to); positions,
    /// revisions and stream heads are kept, and removed events vanish from
    /// every read, including `$all`, categories, types, tags and ids.
    /// `doomed(stream, revision, recorded_at_us)` must be monotone per
    /// stream: once it spares an event, it spares the later ones of that
    /// stream in the same record (only a leading run of each write goes).
    /// `report` hears progress at least every 16 MiB and after each
    /// segment; `stop` is asked before each segment. A crash at any point
    /// loses nothing: the next open finishes or undoes the segment in
    /// hand.
    ///
    /// # Errors
    /// [`Error::ScavengeRunning`] when one already runs; I/O, index and
    /// [`Error::Corrupt`] errors (segments done before stay done).
    pub fn scavenge(
        &self,
        doomed: Doomed<'_>,
        report: &mut dyn FnMut(&ScavengeProgress),
        stop: &dyn Fn() -> bool,
    ) -> Result<ScavengeProgress, Error> {
        let _only_one = match self.scavenging.try_lock() {
            Ok(guard) => guard,
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Err(Error::ScavengeRunning),
        };
        crate::scavenge::scavenge(&self.shared, doomed, report, stop)
    }

    /// The options the store was opened with (its limits).
    #[must_use]
    pub fn options(&self) -> &Options {
        &self.shared.options
    }

    /// The data directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads every record of the log and checks it, and the index against
    /// it, up to where the index ends when called (see `verify.rs`):
    /// what `quipu verify` runs. Problems are listed in the answer, not
    /// returned as an error; `progress` is called as it goes. Meant for a
    /// store no one appends to; a scavenge waits for it.
    ///
    /// # Errors
    /// I/O errors, and errors reading the index.
    pub fn verify(&self, progress: &mut dyn FnMut(VerifyProgress)) -> Result<Verification, Error> {
        let _scavenging = self.scavenging.lock().unwrap_or_else(|p| p.into_inner());
        let _pin = self.shared.reader.pin();
        crate::verify::verify(&self.shared, progress)
    }

    /// Stops accepting appends, finishes the queued ones, and flushes the
    /// index so the next open starts fast.
    ///
    /// # Errors
    /// Errors flushing the index (the log is durable regardless).
    pub fn close(self) -> Result<(), Error> {
        self.shutdown()
    }

    fn shutdown(&self) -> Result<(), Error> {
        if let Some(proposer) = self.proposer.get() {
            // What it applied is queued before the sequencer stops.
            proposer.close(self);
        }
        self.intake.close();
        if let Some(thread) = self.sequencer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            if thread.join().is_err() {
                tracing::error!("the sequencer thread panicked");
            }
            if let Some(marker) = self.marker.lock().unwrap_or_else(|p| p.into_inner()).as_mut()
                && let Err(error) = marker.finish()
            {
                tracing::warn!(%error, "writing the durable mark at close");
            }
            return self.shared.index.persist();
        }
        Ok(())
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Err(error) = self.shutdown() {
            tracing::warn!(%error, "closing the store");
        }
    }
}

/// Starts keeping the durable mark (see [`crate::log::mark`]), from the
/// end of the records recovery found, once they are fsynced (a crash can
/// leave records in the page cache only). Not in the unsafe sync mode,
/// where nothing acknowledged is known to be durable.
fn start_marker(shared: &Shared, segment: &SegmentWriter) -> Result<Option<Marker>, Error> {
    if shared.options.sync != crate::options::SyncMode::Fsync {
        return Ok(None);
    }
    segment.sync_all()?;
    shared.durable.set(Mark { segment: segment.number(), offset: segment.len_bytes() });
    let writer = MarkWriter::open(&shared.log_dir)?;
    Marker::start(writer, Arc::clone(&shared.durable)).map(Some)
}

fn check_event(event: &crate::event::ProposedEvent, options: &Options) -> Result<(), Error> {
    let size_bytes = event.size_bytes();
    if size_bytes > options.event_bytes_max {
        return Err(Error::EventTooLarge { event_id: event.id, size_bytes, limit_bytes: options.event_bytes_max });
    }
    if event.tags.len() > EVENT_TAGS_MAX {
        let reason = format!("{} tags, at most {EVENT_TAGS_MAX} are allowed", event.tags.len());
        return Err(Error::InvalidTags { event_id: event.id, reason });
    }
    let mut seen = HashSet::with_capacity(event.tags.len());
    if let Some(tag) = event.tags.iter().find(|t| !seen.insert(*t)) {
        return Err(Error::InvalidTags { event_id: event.id, reason: format!("tag {tag} appears twice") });
    }
    Ok(())
}

/// Takes the directory's lock file, so two stores never write one log.
fn lock_dir(dir: &Path) -> Result<File, Error> {
    let path = dir.join("LOCK");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(Error::io(format!("opening {}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Locked { path: dir.to_owned() }),
        Err(std::fs::TryLockError::Error(source)) => {
            Err(Error::Io { context: format!("locking {}", path.display()), source })
        }
    }
}

/// Writes the format file of a new directory, or checks an existing one.
fn check_format(dir: &Path) -> Result<(), Error> {
    let path = dir.join(META_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let found = text.trim().strip_prefix(META_PREFIX).and_then(|v| v.parse::<u32>().ok()).unwrap_or(0);
            if !(STORE_FORMAT_VERSION_OLDEST..=STORE_FORMAT_VERSION).contains(&found) {
                return Err(Error::UnsupportedFormat { path, found, supported: STORE_FORMAT_VERSION });
            }
            if found < STORE_FORMAT_VERSION {
                write_durably(dir, META_FILE, format!("{META_PREFIX}{STORE_FORMAT_VERSION}\n").as_bytes())?;
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            write_durably(dir, META_FILE, format!("{META_PREFIX}{STORE_FORMAT_VERSION}\n").as_bytes())
        }
        Err(source) => Err(Error::Io { context: format!("reading {}", path.display()), source }),
    }
}

/// Replaces `dir/name` with `bytes`, whole or not at all, durably: temp
/// file, fsync, rename, fsync of the directory. After a crash the file
/// holds the old bytes or the new ones.
///
/// # Errors
/// [`Error::Io`] naming the file.
pub fn write_durably(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), Error> {
    let temp = dir.join(format!("{name}.tmp"));
    let target = dir.join(name);
    let context = || format!("writing {}", target.display());
    let mut file = File::create(&temp).map_err(Error::io(context()))?;
    file.write_all(bytes).map_err(Error::io(context()))?;
    file.sync_all().map_err(Error::io(context()))?;
    std::fs::rename(&temp, &target).map_err(Error::io(context()))?;
    sync_dir(dir)
}
