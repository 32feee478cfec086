//! Online scavenge: reclaims the disk space of events the caller says may
//! go (deleted, expired, tombstoned), while appends and reads go on.
//!
//! Only closed segments (before the one appends write) are rewritten, one
//! at a time. For each segment holding something to remove:
//!
//! 1. Its records are read in order; each write loses the leading events
//!    the caller dooms (a stream's removable events are always a prefix of
//!    it: deletes, truncation, max count and max age all cut from the
//!    front). A write keeps its stream, first revision and the number of
//!    events dropped, so positions, revisions and stream heads stay as
//!    they were. Records before the first change are copied as they are.
//!    The result is written to `NNNNNNNNNN.gGGGGG.qlog.tmp`, fsynced, and
//!    renamed to the next generation of the segment (directory fsynced).
//! 2. The index writes a table of where the new generation's records
//!    are (see `crate::index::Index::relocate`): index entries are not
//!    rewritten, those written before keep pointing into the old
//!    generation and are followed through this table to the record's new
//!    place, where the dropped events are gone.
//! 3. The index marks the new generation current, durably.
//! 4. Once no read holds a pin on the files, the old generation is
//!    removed.
//!
//! A SIGKILL at any step loses nothing: before 3, the new file is an
//! orphan the next open removes (with its records table); after 3, the
//! next open removes the old file. Without an index (a rebuild), the
//! newest complete generation is used.

use std::os::unix::fs::FileExt;

use crate::error::Error;
use crate::event::StreamName;
use crate::index::entry::GONE;
use crate::log::record::Commit;
use crate::log::recovery::{RecordScan, ScanEnd, file_len};
use crate::log::segment::{
    RecordAddress, SEGMENT_HEADER_BYTES, SegmentHeader, SegmentWriter, TEMP_SUFFIX, segment_file_path, sync_dir,
};
use crate::options::SyncMode;
use crate::position::Revision;
use crate::sequencer::Shared;

/// Bytes of a new generation buffered before they are written.
const WRITE_CHUNK_BYTES: usize = 4 * 1024 * 1024;
/// Bytes read between two progress reports.
const REPORT_EVERY_BYTES: u64 = 16 * 1024 * 1024;

/// Whether an event may go: its stream, revision and commit time
/// (microseconds since the Unix epoch).
pub type Doomed<'a> = &'a dyn Fn(&StreamName, Revision, u64) -> bool;

/// How far a scavenge has come. Every count only grows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScavengeProgress {
    /// Closed segments the scavenge covers.
    pub segments_total: u32,
    /// Segments done (rewritten, or found with nothing to remove).
    pub segments_done: u32,
    /// Segments rewritten.
    pub segments_rewritten: u32,
    /// Bytes of the segments it covers.
    pub bytes_total: u64,
    /// Bytes of them read so far.
    pub bytes_scanned: u64,
    /// Bytes freed so far: old generations' size less the new ones'.
    pub bytes_reclaimed: u64,
    /// Events removed so far.
    pub events_removed: u64,
}

/// Runs a scavenge over every closed segment; see the module docs.
/// `report` hears progress at least every 16 MiB read and after each
/// segment; `stop` is asked before each segment, and a scavenge told to
/// stop leaves every segment done so far done.
pub(crate) fn scavenge(
    shared: &Shared,
    doomed: Doomed<'_>,
    report: &mut dyn FnMut(&ScavengeProgress),
    stop: &dyn Fn() -> bool,
) -> Result<ScavengeProgress, Error> {
    let active = shared.index.checkpoint().map_or(0, |c| c.segment);
    let generations = shared.index.generations()?;
    let mut targets = Vec::new();
    let mut progress = ScavengeProgress::default();
    for number in 0..active {
        let generation = generations.get(&number).copied().unwrap_or(0);
        let len = file_len(&segment_file_path(&shared.log_dir, number, generation))?;
        progress.bytes_total += len;
        targets.push((number, generation));
    }
    progress.segments_total = u32::try_from(targets.len()).unwrap_or(u32::MAX);
    report(&progress);
    for (number, generation) in targets {
        if stop() {
            break;
        }
        rewrite(shared, RecordAddress { segment: number, generation, offset: 0 }, doomed, &mut progress, report)?;
        progress.segments_done += 1;
        report(&progress);
    }
    Ok(progress)
}

/// Finishes the scavenges an earlier version left between its intent and
/// its marker (its files are complete); called on open, once the index is
/// up to the log.
pub(crate) fn resume(shared: &Shared) -> Result<(), Error> {
    for (number, (old, new)) in shared.index.repointings()? {
        tracing::warn!(segment = number, old, new, "finishing a scavenge a crash interrupted");
        shared.index.build_records(&segment_file_path(&shared.log_dir, number, new), number, new)?;
        shared.index.set_generation(number, new)?;
        shared.reader.retire(number, old)?;
        shared.index.drop_records(number, old);
    }
    Ok(())
}

/// Rewrites one segment (`at.segment`, generation `at.generation`) if any
/// of its events are doomed.
fn rewrite(
    shared: &Shared,
    at: RecordAddress,
    doomed: Doomed<'_>,
    progress: &mut ScavengeProgress,
    report: &mut dyn FnMut(&ScavengeProgress),
) -> Result<(), Error> {
    let RecordAddress { segment: number, generation, .. } = at;
    let old_path = segment_file_path(&shared.log_dir, number, generation);
    let Some(new_generation) = generation.checked_add(1).filter(|g| *g != GONE) else {
        tracing::warn!(segment = number, "segment was scavenged 65,534 times already; leaving it");
        return Ok(());
    };
    let new_path = segment_file_path(&shared.log_dir, number, new_generation);
    let mut temp_path = new_path.clone().into_os_string();
    temp_path.push(TEMP_SUFFIX);
    let temp_path = std::path::PathBuf::from(temp_path);
    let old_len = file_len(&old_path)?;
    let mut scan = RecordScan::open(&old_path, SEGMENT_HEADER_BYTES)?;
    let mut writer: Option<SegmentWriter> = None;
    let mut buffer = Vec::new();
    let mut removed = 0u64;
    let mut unreported = 0u64;
    while let Some((offset, len, commit)) = scan.next_record()? {
        let (compacted, dropped) = compact(commit, doomed);
        if dropped > 0 && writer.is_none() {
            writer = Some(start_generation(&old_path, &temp_path, number, offset)?);
        }
        if let Some(writer) = writer.as_mut() {
            compacted.encode_framed(&mut buffer);
            if buffer.len() >= WRITE_CHUNK_BYTES {
                writer.write_unsynced(&buffer)?;
                buffer.clear();
            }
        }
        removed += dropped;
        progress.bytes_scanned += len as u64;
        unreported += len as u64;
        if unreported >= REPORT_EVERY_BYTES {
            unreported = 0;
            report(progress);
        }
    }
    if let ScanEnd::Bad { offset, reason } = scan.end() {
        return Err(Error::Corrupt { segment: old_path, offset, reason });
    }
    let Some(mut writer) = writer else {
        return Ok(());
    };
    writer.write_unsynced(&buffer)?;
    writer.sync_all()?;
    let new_len = writer.len_bytes();
    drop(writer);
    std::fs::rename(&temp_path, &new_path).map_err(Error::io(format!("renaming {}", temp_path.display())))?;
    sync_dir(&shared.log_dir)?;
    crash_point(Step::Renamed)?;
    shared.index.build_records(&new_path, number, new_generation)?;
    shared.index.set_generation(number, new_generation)?;
    crash_point(Step::Marked)?;
    shared.reader.retire(number, generation)?;
    shared.index.drop_records(number, generation);
    progress.segments_rewritten += 1;
    progress.events_removed += removed;
    progress.bytes_reclaimed += old_len.saturating_sub(new_len);
    Ok(())
}

/// `commit` without the leading doomed events of each write, and how many
/// events that removes.
fn compact(mut commit: Commit, doomed: Doomed<'_>) -> (Commit, u64) {
    let mut removed = 0u64;
    for write in &mut commit.writes {
        let first = write.first_kept_revision().0;
        let recorded_at_us = commit.recorded_at_us;
        let cut = (0..write.events.len())
            .take_while(|&i| doomed(&write.stream, Revision(first + i as u64), recorded_at_us))
            .count();
        if cut > 0 {
            write.events.drain(..cut);
            write.dropped += u32::try_from(cut).expect("bounded by append_events_max");
            removed += cut as u64;
        }
        debug_assert!(write.span() > 0, "a write keeps or drops at least one event");
    }
    (commit, removed)
}

/// Creates the temp file of a new generation holding the old file's
/// bytes up to `until` (the records before the first change, which keep
/// their offsets).
fn start_generation(
    old_path: &std::path::Path,
    temp_path: &std::path::Path,
    number: u32,
    until: u64,
) -> Result<SegmentWriter, Error> {
    let header = SegmentHeader::read(old_path, number)?;
    // A leftover of an earlier attempt that died before its rename.
    if temp_path.exists() {
        std::fs::remove_file(temp_path).map_err(Error::io(format!("removing {}", temp_path.display())))?;
    }
    let mut writer = SegmentWriter::create_at(temp_path, number, header.torn_window_bytes, SyncMode::Fsync, None)?;
    let old = std::fs::File::open(old_path).map_err(Error::io(format!("opening {}", old_path.display())))?;
    let mut chunk = vec![0u8; WRITE_CHUNK_BYTES];
    let mut offset = SEGMENT_HEADER_BYTES;
    while offset < until {
        let len = usize::try_from(until - offset).unwrap_or(usize::MAX).min(WRITE_CHUNK_BYTES);
        let part = chunk.get_mut(..len).unwrap_or_default();
        old.read_exact_at(part, offset).map_err(Error::io(format!("reading {}", old_path.display())))?;
        writer.write_unsynced(part)?;
        offset += len as u64;
    }
    Ok(writer)
}

/// The points between the steps of a segment's rewrite where unit tests
/// stop a scavenge as a crash would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// The new generation is in place, the index knows nothing of it.
    Renamed,
    /// The marker is set, the old file not yet removed.
    Marked,
}

#[cfg(test)]
thread_local! {
    static CRASH_AT: std::cell::Cell<Option<Step>> = const { std::cell::Cell::new(None) };
}

/// In unit tests, fails at the chosen step (once), leaving the files and
/// the index as a crash there would; in builds, does nothing.
#[allow(clippy::unnecessary_wraps)]
fn crash_point(step: Step) -> Result<(), Error> {
    #[cfg(test)]
    if CRASH_AT.with(|at| at.get() == Some(step)) {
        CRASH_AT.with(|at| at.set(None));
        return Err(Error::Io { context: format!("crash at {step:?}"), source: std::io::ErrorKind::Other.into() });
    }
    let _ = step;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::{AppendRequest, Direction, EventType, ExpectedRevision, Options, ProposedEvent, RecordedEvent, Store};

    fn options() -> Options {
        Options {
            segment_size_bytes: 4096,
            batch_bytes_max: 4096,
            event_bytes_max: 512,
            append_bytes_max: 1024,
            append_events_max: 16,
            append_streams_max: 4,
            ..Options::default()
        }
    }

    fn all(store: &Store) -> Vec<RecordedEvent> {
        let mut events = Vec::new();
        loop {
            let from = events.last().map(|e: &RecordedEvent| e.position.next());
            let page = store.read_all(from, Direction::Forwards, 100).expect("read $all");
            if page.is_empty() {
                return events;
            }
            events.extend(page);
        }
    }

    fn fill(store: &Store) {
        for round in 0..60 {
            for name in ["gone-1", "kept-1"] {
                let events = (0..3)
                    .map(|i| ProposedEvent::new(EventType::new("E").unwrap(), format!("{round}.{i}").into_bytes()))
                    .collect();
                let stream = crate::StreamName::new(name).unwrap();
                store.append(AppendRequest::to_stream(stream, ExpectedRevision::Any, events)).expect("append");
            }
        }
    }

    fn doomed(stream: &StreamName, _: Revision, _: u64) -> bool {
        stream.as_str() == "gone-1"
    }

    /// Segment files on disk, as (number, generation).
    fn files(dir: &std::path::Path) -> Vec<(u32, u16)> {
        let files = crate::log::segment::segment_files(&dir.join("log")).expect("list");
        files.into_iter().flat_map(|(n, gens)| gens.into_iter().map(move |g| (n, g))).collect()
    }

    #[test]
    fn a_crash_between_any_two_steps_loses_nothing_and_the_next_open_settles() {
        for step in [Step::Renamed, Step::Marked] {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path(), options()).unwrap();
            fill(&store);
            let model = all(&store);
            CRASH_AT.with(|at| at.set(Some(step)));
            let crashed = store.scavenge(&doomed, &mut |_| {}, &|| false);
            assert!(crashed.is_err(), "{step:?}: the scavenge stopped");
            let segment_0 = files(dir.path()).into_iter().filter(|(n, _)| *n == 0).count();
            assert_eq!(segment_0, 2, "{step:?}: both generations of segment 0 on disk");
            drop(store);

            let store = Store::open(dir.path(), options()).unwrap();
            let mut numbers: Vec<u32> = files(dir.path()).into_iter().map(|(n, _)| n).collect();
            let count = numbers.len();
            numbers.dedup();
            assert_eq!(numbers.len(), count, "{step:?}: one generation per segment after the open");
            let after_open = all(&store);
            let live: Vec<_> = model.iter().filter(|e| !doomed(&e.stream, e.revision, 0)).cloned().collect();
            let kept_live: Vec<_> = after_open.iter().filter(|e| !doomed(&e.stream, e.revision, 0)).cloned().collect();
            assert_eq!(kept_live, live, "{step:?}: every live event is intact");
            let segment_0_done = after_open.len() < model.len();
            assert_eq!(segment_0_done, step != Step::Renamed, "{step:?}: rolled back only before the intent");
            for event in &model {
                let by_id = store.read_event(&event.id).expect("read by id");
                assert!(by_id.is_none() || by_id.as_ref() == Some(event), "{step:?}: id reads agree");
            }

            store.scavenge(&doomed, &mut |_| {}, &|| false).expect("a later scavenge finishes the job");
            let done = all(&store);
            let (removed, left): (Vec<_>, Vec<_>) = model.iter().partition(|e| !done.contains(e));
            assert!(removed.iter().all(|e| doomed(&e.stream, e.revision, 0)), "{step:?}: only doomed events go");
            let last_removed = removed.last().map(|e| e.position).expect("something went");
            let doomed_left = left.iter().filter(|e| doomed(&e.stream, e.revision, 0));
            assert!(
                doomed_left.clone().all(|e| e.position > last_removed),
                "{step:?}: only the open segment keeps them"
            );
            assert!(done.len() < after_open.len() || step != Step::Renamed, "{step:?}: the rolled-back segment went");
        }
    }
}
