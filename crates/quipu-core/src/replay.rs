//! Bringing the index up to the log on open. The index says how far it
//! covers the log (its checkpoint); every record after that is read back,
//! verified against the engine (it must be what deciding would have
//! produced), and indexed in chunks. A torn tail is cut; corruption stops
//! the open with the file and offset (see [`crate::log::recovery`]).
//! Deleting the index directory makes this a full rebuild.

use std::collections::BTreeMap;
use std::path::Path;

use crate::engine::verify_replay;
use crate::error::Error;
use crate::index::LocatedCommit;
use crate::index::entry::Checkpoint;
use crate::log::mark::Mark;
use crate::log::recovery::{ScanEnd, Tail, classify_tail, file_len, record_at, scan_segment, truncate_segment};
use crate::log::segment::{
    RecordAddress, SEGMENT_HEADER_BYTES, SegmentHeader, SegmentWriter, remove_temp_files, segment_file_path,
    segment_files, segment_path, sync_dir,
};
use crate::position::Position;
use crate::sequencer::Shared;
use crate::state::{DecisionState, Pending};

/// Commits indexed per batch while replaying.
const REPLAY_CHUNK_COMMITS: usize = 4096;
/// Events indexed per batch while replaying: bounds the memory of a
/// rebuild whatever the records' sizes.
const REPLAY_CHUNK_EVENTS: usize = 32 * 1024;

/// Where the log continues after recovery.
#[derive(Debug)]
pub struct Recovered {
    /// The segment appends continue in.
    pub segment: SegmentWriter,
    /// Position of the next commit.
    pub next_position: Position,
    /// Timestamp of the last commit (timestamps never decrease).
    pub last_recorded_at_us: u64,
}

/// Replays the log after the index checkpoint into the index and opens
/// the segment to append to.
///
/// # Errors
/// [`Error::Corrupt`] for a bad record before the tail or a record that
/// contradicts the log before it, [`Error::IndexAheadOfLog`] when the log
/// is shorter than the index says, I/O and index errors.
pub fn recover(shared: &Shared) -> Result<Recovered, Error> {
    let log_dir = &shared.log_dir;
    let options = &shared.options;
    let saved = shared.index.durable_checkpoint();
    let mut checkpoint = saved.unwrap_or(Checkpoint { offset: SEGMENT_HEADER_BYTES, ..Checkpoint::default() });
    remove_temp_files(log_dir)?;
    // Markers of scavenged segments live beside the tables: either says
    // the index was kept (a deleted index directory loses both).
    let indexed = saved.is_some() || !shared.index.generations()?.is_empty() || !shared.index.repointings()?.is_empty();
    let generations = settle_generations(shared, indexed)?;
    settle_records(shared, &generations)?;
    let mut segments: Vec<u32> = generations.keys().copied().collect();
    remove_unborn_segment(log_dir, &mut segments)?;
    check_segments(log_dir, &segments, &checkpoint, saved.is_some())?;
    let mark = crate::log::mark::read(log_dir)?;
    check_mark_segment(log_dir, &segments, mark)?;
    let Some(&last_segment) = segments.last() else {
        let segment = SegmentWriter::create(
            log_dir,
            0,
            options.batch_bytes_max as u64,
            options.sync,
            options.fault_plan.clone(),
        )?;
        return Ok(Recovered { segment, next_position: Position::START, last_recorded_at_us: 0 });
    };
    let first_unindexed = checkpoint.segment;
    for &number in segments.iter().filter(|&&n| n >= first_unindexed) {
        let start = if number == checkpoint.segment { checkpoint.offset } else { SEGMENT_HEADER_BYTES };
        let generation = generations.get(&number).copied().unwrap_or(0);
        let at = RecordAddress { segment: number, generation, offset: start };
        let is_last = number == last_segment;
        // Only the last segment's end can be in doubt.
        let acknowledged = mark.filter(|m| is_last && m.segment == number).map(|m| m.offset);
        checkpoint = replay_segment(shared, at, is_last, acknowledged, checkpoint)?;
    }
    assert_eq!(checkpoint.segment, last_segment, "replay ends in the last segment");
    check_sealed_segments(shared, &segments, &generations, checkpoint.next_position)?;
    let path = segment_path(log_dir, last_segment);
    let header = SegmentHeader::read(&path, last_segment)?;
    // The records end here; zeros written ahead may follow.
    let len = checkpoint.offset;
    let mut segment = SegmentWriter::reopen(&path, header, len, options.sync, options.fault_plan.clone())?;
    if header.torn_window_bytes < options.batch_bytes_max as u64 || len >= options.segment_size_bytes {
        segment.trim()?;
        segment = SegmentWriter::create(
            log_dir,
            last_segment + 1,
            options.batch_bytes_max as u64,
            options.sync,
            options.fault_plan.clone(),
        )?;
    }
    Ok(Recovered {
        segment,
        next_position: checkpoint.next_position,
        last_recorded_at_us: checkpoint.last_recorded_at_us,
    })
}

/// Picks the current file generation of every segment and removes the
/// others, which a crash in the middle of a scavenge can leave (see
/// `crate::scavenge`). With an index, the current generation is the one
/// its marker names (0 without one): a newer file is a scavenge whose
/// index batch never landed, an older one a scavenge that had not yet
/// removed it. Without an index, the newest complete file wins, and the
/// markers are written before the rebuild starts. A segment whose entries
/// were being repointed keeps both files until the scavenge resumes.
fn settle_generations(shared: &Shared, indexed: bool) -> Result<BTreeMap<u32, u16>, Error> {
    let log_dir = &shared.log_dir;
    let markers = if indexed { shared.index.generations()? } else { BTreeMap::new() };
    let repointing = if indexed { shared.index.repointings()? } else { BTreeMap::new() };
    let mut current = BTreeMap::new();
    let mut removed = false;
    for (number, generations) in segment_files(log_dir)? {
        let newest = generations.last().copied().unwrap_or(0);
        let wanted = if indexed { markers.get(&number).copied().unwrap_or(0) } else { newest };
        let moving_to = repointing.get(&number).map(|&(_, new)| new);
        for needed in std::iter::once(wanted).chain(moving_to) {
            if !generations.contains(&needed) {
                return Err(Error::Corrupt {
                    segment: segment_file_path(log_dir, number, needed),
                    offset: 0,
                    reason: "the index points into this generation of the segment, and the file is missing".into(),
                });
            }
        }
        for &generation in generations.iter().filter(|&&g| g != wanted && Some(g) != moving_to) {
            let path = segment_file_path(log_dir, number, generation);
            tracing::warn!(file = %path.display(), "removing a segment generation an interrupted scavenge left");
            std::fs::remove_file(&path).map_err(Error::io(format!("removing {}", path.display())))?;
            removed = true;
        }
        current.insert(number, wanted);
    }
    if removed {
        sync_dir(log_dir)?;
    }
    if !indexed {
        shared.index.set_generations(&current.iter().filter(|(_, g)| **g > 0).map(|(n, g)| (*n, *g)).collect())?;
    }
    Ok(current)
}

/// Makes sure every segment generation a scavenge made has its records
/// table, and no other generation does (see `crate::index::Index::relocate`).
fn settle_records(shared: &Shared, generations: &BTreeMap<u32, u16>) -> Result<(), Error> {
    for (&number, &generation) in generations.iter().filter(|(_, g)| **g > 0) {
        let path = segment_file_path(&shared.log_dir, number, generation);
        shared.index.build_records(&path, number, generation)?;
    }
    shared.index.drop_records_except(generations);
    Ok(())
}

/// A crash while a new segment was being created can leave it shorter
/// than its header; nothing was ever written to it, so it is removed.
fn remove_unborn_segment(log_dir: &Path, segments: &mut Vec<u32>) -> Result<(), Error> {
    let Some(&last) = segments.last() else {
        return Ok(());
    };
    let path = segment_path(log_dir, last);
    if file_len(&path)? >= SEGMENT_HEADER_BYTES {
        return Ok(());
    }
    tracing::warn!(segment = %path.display(), "removing a segment whose creation was cut short by a crash");
    std::fs::remove_file(&path).map_err(Error::io(format!("removing {}", path.display())))?;
    crate::log::segment::sync_dir(log_dir)?;
    segments.pop();
    Ok(())
}

/// Segments must be contiguous and must reach the checkpoint.
fn check_segments(log_dir: &Path, segments: &[u32], checkpoint: &Checkpoint, indexed: bool) -> Result<(), Error> {
    for pair in segments.windows(2) {
        if let [a, b] = pair
            && b - a != 1
        {
            return Err(Error::Corrupt {
                segment: segment_path(log_dir, a + 1),
                offset: 0,
                reason: format!("segment is missing between {a} and {b}"),
            });
        }
    }
    let last = segments.last().copied();
    let reaches =
        last.is_some_and(|l| l >= checkpoint.segment) && segments.first().is_some_and(|&f| f <= checkpoint.segment);
    if indexed && !reaches {
        return Err(Error::IndexAheadOfLog {
            index_segment: checkpoint.segment,
            index_offset: checkpoint.offset,
            log_segment: last.unwrap_or(0),
            log_offset: 0,
        });
    }
    Ok(())
}

/// Every segment before the last must end exactly where its last record
/// ends, and that record must be whole and valid: a segment behind the
/// index checkpoint is not scanned on open, and this is how a file cut
/// short (or grown) after it was closed is noticed before anything is
/// served from it. Its last record is the one holding the position before
/// the next segment's first, found through the index: two small reads and
/// one lookup per segment. Bit rot inside a closed segment is found by
/// reads (every record is checked) and by `quipu verify`.
fn check_sealed_segments(
    shared: &Shared,
    segments: &[u32],
    generations: &BTreeMap<u32, u16>,
    next_position: Position,
) -> Result<(), Error> {
    // `segments`, not every generation settled: a last segment whose
    // creation a crash cut short is gone from it.
    let files: Vec<(u32, std::path::PathBuf)> = segments
        .iter()
        .map(|&number| {
            let generation = generations.get(&number).copied().unwrap_or(0);
            (number, segment_file_path(&shared.log_dir, number, generation))
        })
        .collect();
    for pair in files.windows(2) {
        let [(number, path), (_, next_path)] = pair else { continue };
        let after = match record_at(next_path, SEGMENT_HEADER_BYTES)? {
            Some((first, _)) => first.first_position,
            None => next_position,
        };
        check_sealed(shared, *number, path, after)?;
    }
    Ok(())
}

/// Checks that closed segment `number` (at `path`) ends with the record
/// holding the position before `after`.
fn check_sealed(shared: &Shared, number: u32, path: &Path, after: Position) -> Result<(), Error> {
    let len = file_len(path)?;
    let cut = |offset: u64, reason: String| Error::Corrupt { segment: path.to_owned(), offset, reason };
    let Some(last) = after.0.checked_sub(1).map(Position) else {
        return Err(cut(SEGMENT_HEADER_BYTES, "a closed segment holds no record".into()));
    };
    let Some(record) = shared.index.record_containing(last)? else {
        return Err(cut(len, format!("the index knows no record holding position {last}, the segment's last")));
    };
    let at = shared.index.relocate(record.at, last)?.unwrap_or(record.at);
    if at.segment != number {
        return Err(cut(
            SEGMENT_HEADER_BYTES,
            format!("position {last} should end this segment, and it is in segment {}", at.segment),
        ));
    }
    let end = match record_at(path, at.offset)? {
        Some((_, end)) => end,
        None => {
            return Err(cut(
                len,
                format!(
                    "the file ends before its last record (position {last}) at offset {}: it was cut after it was closed",
                    at.offset
                ),
            ));
        }
    };
    if end != len {
        return Err(cut(
            end,
            format!(
                "{} bytes follow the segment's last record (position {last}): a closed segment ends with its records",
                len - end
            ),
        ));
    }
    Ok(())
}

/// The durable mark must not name a segment the log lacks: its records
/// were acknowledged.
fn check_mark_segment(log_dir: &Path, segments: &[u32], mark: Option<Mark>) -> Result<(), Error> {
    let Some(mark) = mark else {
        return Ok(());
    };
    let has_records = mark.offset > SEGMENT_HEADER_BYTES;
    if has_records && segments.last().is_none_or(|&last| last < mark.segment) {
        return Err(Error::Corrupt {
            segment: segment_path(log_dir, mark.segment),
            offset: 0,
            reason: format!(
                "the segment is missing, and records up to offset {} of it were acknowledged ({})",
                mark.offset,
                crate::log::mark::MARK_FILE
            ),
        });
    }
    Ok(())
}

/// Replays one segment from `start.offset`; returns the checkpoint after
/// it. `acknowledged`, for the last segment, is where the durable mark
/// says its acknowledged records end: a bad record or an end of records
/// before it is damage, not a torn write.
fn replay_segment(
    shared: &Shared,
    start_at: RecordAddress,
    is_last: bool,
    acknowledged: Option<u64>,
    checkpoint: Checkpoint,
) -> Result<Checkpoint, Error> {
    let RecordAddress { segment: number, generation, offset: start } = start_at;
    let path = segment_file_path(&shared.log_dir, number, generation);
    let header = SegmentHeader::read(&path, number)?;
    let len = file_len(&path)?;
    if start > len {
        return Err(Error::IndexAheadOfLog {
            index_segment: number,
            index_offset: start,
            log_segment: number,
            log_offset: len,
        });
    }
    let mut pending = Pending::new(checkpoint.next_position);
    let mut located_offsets: Vec<u64> = Vec::new();
    let mut checkpoint = Checkpoint { segment: number, offset: start, ..checkpoint };
    let mut visit = |offset: u64, frame_len: usize, commit: crate::log::record::Commit| -> Result<(), Error> {
        let state = DecisionState { index: &shared.index, reader: &shared.reader, pending: &pending, heads: None };
        if let Err(reason) = verify_replay(&state, &commit)? {
            return Err(Error::Corrupt {
                segment: path.clone(),
                offset,
                reason: format!("record contradicts the log before it: {reason}"),
            });
        }
        checkpoint.last_recorded_at_us = checkpoint.last_recorded_at_us.max(commit.recorded_at_us);
        pending.push(commit);
        located_offsets.push(offset);
        checkpoint.offset = offset + frame_len as u64;
        if pending.len() >= REPLAY_CHUNK_COMMITS || pending.event_count() >= REPLAY_CHUNK_EVENTS {
            flush(shared, generation, &mut pending, &mut located_offsets, &mut checkpoint)?;
        }
        Ok(())
    };
    let end = scan_segment(&path, start, &mut visit)?;
    flush(shared, generation, &mut pending, &mut located_offsets, &mut checkpoint)?;
    if let ScanEnd::Bad { offset, reason } = end {
        if let Some(acknowledged) = acknowledged.filter(|&a| offset < a) {
            return Err(Error::Corrupt {
                segment: path,
                offset,
                reason: format!(
                    "{reason}; records up to offset {acknowledged} were acknowledged ({}), so this is damage, not a torn write",
                    crate::log::mark::MARK_FILE
                ),
            });
        }
        match classify_tail(&path, is_last, len, offset, header.torn_window_bytes)? {
            Tail::Zeros => {}
            Tail::Torn => {
                tracing::warn!(segment = %path.display(), offset, len, %reason, "cutting a torn tail left by a crash");
                truncate_segment(&path, offset)?;
            }
            Tail::Corrupt => return Err(Error::Corrupt { segment: path, offset, reason }),
        }
    }
    if let Some(acknowledged) = acknowledged.filter(|&a| checkpoint.offset < a) {
        return Err(Error::Corrupt {
            segment: path,
            offset: checkpoint.offset,
            reason: format!(
                "the records end here, and records up to offset {acknowledged} were acknowledged ({}): the file lost data",
                crate::log::mark::MARK_FILE
            ),
        });
    }
    Ok(checkpoint)
}

fn flush(
    shared: &Shared,
    generation: u16,
    pending: &mut Pending,
    offsets: &mut Vec<u64>,
    checkpoint: &mut Checkpoint,
) -> Result<(), Error> {
    checkpoint.next_position = pending.next_position();
    let commits: Vec<LocatedCommit> = pending
        .take()
        .into_iter()
        .zip(offsets.drain(..))
        .map(|(commit, offset)| LocatedCommit {
            commit,
            at: RecordAddress { segment: checkpoint.segment, generation, offset },
        })
        .collect();
    shared.index.write(&commits, *checkpoint)
}
