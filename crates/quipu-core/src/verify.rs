//! Checking every byte of the log, and the index against it: what
//! `quipu verify` and `quipu serve --verify-on-open` run.
//!
//! Opening a store checks only what it must to start (the records after
//! the index checkpoint, the tail, the ends of closed segments); reads
//! check each record they touch. A verification reads every record of
//! every segment in order and checks, for each:
//! - its frame checksum and encoding (a bad record is reported with file
//!   and offset, and the rest of that segment cannot be read);
//! - that its positions continue the record before it;
//! - that the index's `$all` entry for it points at it;
//! - that the index finds each write's first kept event in its stream at
//!   its revision and position, and each event's id at or before it.
//!
//! and, at the end, that the index ends where the log ends. Problems are
//! collected, not stopped at, so one run lists them all.

use std::path::PathBuf;

use crate::error::Error;
use crate::index::entry::Checkpoint;
use crate::log::record::Commit;
use crate::log::recovery::{RecordScan, ScanEnd, file_len};
use crate::log::segment::{RecordAddress, SEGMENT_HEADER_BYTES, SegmentHeader, segment_file_path, segment_files};
use crate::position::Position;
use crate::read::Direction;
use crate::sequencer::Shared;

/// One thing found wrong, with where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The segment file.
    pub segment: PathBuf,
    /// Byte offset of the record in that file.
    pub offset: u64,
    /// What is wrong.
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at offset {}: {}", self.segment.display(), self.offset, self.what)
    }
}

/// What a verification read and found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verification {
    /// Segments read.
    pub segments: u32,
    /// Records read and checked.
    pub records: u64,
    /// Events in them.
    pub events: u64,
    /// Bytes of segment files read.
    pub bytes: u64,
    /// Everything found wrong; empty when the store is sound.
    pub problems: Vec<Problem>,
}

/// How far a verification has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyProgress {
    /// Bytes of segment files checked so far.
    pub bytes_done: u64,
    /// Bytes of segment files to check in all.
    pub bytes_total: u64,
}

/// Problems reported per verification at most: past that the store is
/// plainly damaged and the list would only grow.
const PROBLEMS_MAX: usize = 1000;

/// Verifies the log and the index of `shared` up to where the index ends
/// now (appends made meanwhile are not checked); calls `progress` after
/// each segment and every few MiB.
pub(crate) fn verify(shared: &Shared, progress: &mut dyn FnMut(VerifyProgress)) -> Result<Verification, Error> {
    let end = shared.index.checkpoint().unwrap_or(Checkpoint { offset: SEGMENT_HEADER_BYTES, ..Checkpoint::default() });
    let files: Vec<(u32, u16, PathBuf)> = segment_files(&shared.log_dir)?
        .keys()
        .filter(|&&number| number <= end.segment)
        .map(|&number| {
            let generation = shared.index.current_generation(number);
            (number, generation, segment_file_path(&shared.log_dir, number, generation))
        })
        .collect();
    let mut total = 0;
    for (number, _, path) in &files {
        total += if *number == end.segment { end.offset } else { file_len(path)? };
    }
    let mut run = Run { shared, found: Verification::default(), expected: Position::START, done: 0, total };
    for (number, generation, path) in &files {
        let limit = (*number == end.segment).then_some(end.offset);
        run.segment(
            RecordAddress { segment: *number, generation: *generation, offset: SEGMENT_HEADER_BYTES },
            path,
            limit,
            progress,
        )?;
    }
    if run.expected != end.next_position {
        let (segment, offset) = files.last().map_or((shared.log_dir.clone(), 0), |(_, _, p)| (p.clone(), end.offset));
        run.problem(
            segment,
            offset,
            format!("the log ends before position {}, and the index ends before {}", run.expected, end.next_position),
        );
    }
    Ok(run.found)
}

/// The state of one verification.
struct Run<'a> {
    shared: &'a Shared,
    found: Verification,
    /// Position the next record must start at.
    expected: Position,
    done: u64,
    total: u64,
}

impl Run<'_> {
    fn problem(&mut self, segment: PathBuf, offset: u64, what: String) {
        if self.found.problems.len() < PROBLEMS_MAX {
            self.found.problems.push(Problem { segment, offset, what });
        }
    }

    /// Checks the records of one segment, up to `limit` (the index's end,
    /// in the segment appends go to).
    fn segment(
        &mut self,
        start: RecordAddress,
        path: &std::path::Path,
        limit: Option<u64>,
        progress: &mut dyn FnMut(VerifyProgress),
    ) -> Result<(), Error> {
        self.found.segments += 1;
        let base = self.done;
        if let Err(error) = SegmentHeader::read(path, start.segment) {
            self.problem(path.to_owned(), 0, error.to_string());
            return Ok(());
        }
        let mut scan = RecordScan::open(path, SEGMENT_HEADER_BYTES)?;
        let mut last_report = 0;
        let mut reached_limit = false;
        while let Some((offset, len, commit)) = scan.next_record()? {
            if limit.is_some_and(|limit| offset >= limit) {
                reached_limit = true;
                break;
            }
            self.record(RecordAddress { offset, ..start }, path, &commit)?;
            self.done = base + offset + len as u64;
            self.found.bytes = self.done;
            if self.done - last_report >= 8 << 20 {
                last_report = self.done;
                progress(VerifyProgress { bytes_done: self.done, bytes_total: self.total });
            }
        }
        // Open cut any torn tail, and a closed segment ends with its
        // records: a bad record before the limit (the index's end, in
        // the segment appends go to) is damage.
        if !reached_limit
            && let ScanEnd::Bad { offset, reason } = scan.end()
            && limit.is_none_or(|limit| offset < limit)
        {
            self.problem(path.to_owned(), offset, reason);
        }
        self.done = base + limit.map_or_else(|| file_len(path), Ok)?;
        self.found.bytes = self.done;
        progress(VerifyProgress { bytes_done: self.done, bytes_total: self.total });
        Ok(())
    }

    /// Checks one record against the log before it and the index.
    fn record(&mut self, at: RecordAddress, path: &std::path::Path, commit: &Commit) -> Result<(), Error> {
        self.found.records += 1;
        self.found.events += commit.event_count() as u64;
        let here = |what: String| (path.to_owned(), at.offset, what);
        let mut problems = Vec::new();
        if commit.first_position != self.expected {
            problems.push(here(format!(
                "the record starts at position {}, and the log before it ends before {}",
                commit.first_position, self.expected
            )));
        }
        self.expected = commit.next_position().max(self.expected);
        let index = &self.shared.index;
        match index.record_containing(commit.first_position)? {
            Some(entry) if entry.first_position == commit.first_position => {
                let indexed = index.relocate(entry.at, commit.first_position)?.unwrap_or(entry.at);
                if indexed != at {
                    problems.push(here(format!(
                        "the index puts the record of position {} at {indexed:?}",
                        commit.first_position
                    )));
                }
            }
            _ => problems.push(here(format!("the index has no $all entry for position {}", commit.first_position))),
        }
        let mut position = commit.first_position;
        for write in &commit.writes {
            let first_kept = position.0 + write.span() - write.events.len() as u64;
            if !write.events.is_empty() {
                let revision = write.first_kept_revision();
                let found = index.stream_range(&write.stream, Some(revision), Direction::Forwards, 1)?;
                if found.first().is_none_or(|(r, p)| *r != revision || p.position.0 != first_kept) {
                    problems.push(here(format!(
                        "the index does not find revision {revision} of stream {} at position {first_kept}",
                        write.stream
                    )));
                }
            }
            for (n, event) in write.events.iter().enumerate() {
                let event_position = first_kept + n as u64;
                if index.event_by_id(&event.id)?.is_none_or(|p| p.position.0 > event_position) {
                    problems.push(here(format!(
                        "the index does not find event id {} (position {event_position})",
                        event.id
                    )));
                }
            }
            position = Position(position.0 + write.span());
        }
        for (segment, offset, what) in problems {
            self.problem(segment, offset, what);
        }
        Ok(())
    }
}
