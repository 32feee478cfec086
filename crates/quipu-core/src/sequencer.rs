//! The one writer. Appends from every caller queue in the
//! [`crate::intake::Intake`]; whoever commits hands the sequencer what has
//! queued (group commit), and it decides each append in order
//! against the state including the ones before it in the batch, writes the
//! accepted records with one write and one fdatasync, indexes them, moves
//! the head, and only then answers every append of the batch.
//!
//! Throughput comes from batching: while one fdatasync runs, the next
//! batch queues. The first failed write or fdatasync stops the store from
//! accepting appends (fail-stop): a retried fsync can report success with
//! the data gone, so there is no retry. The group it hit is cut back off
//! the log before its appends are answered "not written" (or, when even
//! the cut fails, "outcome unknown"); a new segment that cannot be made
//! fails only its group, and the store goes on.

use std::cell::RefCell;
use std::sync::{Arc, Mutex};

use crate::append::{AppendOutcome, AppendRequest};
use crate::engine::{Decision, decide};
use crate::error::Error;
use crate::head::Head;
use crate::head_cache::HeadCache;
use crate::index::entry::Checkpoint;
use crate::index::entry::Fingerprint;
use crate::index::{Index, LocatedCommit};
use crate::log::mark::{DurableEnd, Mark};
use crate::log::record::{Commit, Source};
use crate::log::segment::{RecordAddress, SegmentReader, SegmentWriter, segment_path};
use crate::options::{Options, SyncMode};
use crate::position::{Position, Revision};
use crate::state::{DecisionState, Pending};
use crate::stats::{CommitCounters, thread_cpu_ns};

/// Called once with the outcome of an append.
pub type Reply = Box<dyn FnOnce(Result<AppendOutcome, Error>) + Send>;

/// A validated append waiting for the sequencer.
pub struct Submission {
    /// The append.
    pub request: AppendRequest,
    /// Where its outcome goes.
    pub reply: Reply,
    /// Set when the append is applied from a cluster's shared log: its
    /// timestamp and source come from there, not from this store.
    pub applied: Option<Applied>,
}

/// What a request applied from a cluster's shared log brings besides the
/// request: every node applying it must record the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Its timestamp in the shared log, microseconds since the Unix epoch;
    /// recorded as is, or as the last commit's when that is later
    /// (timestamps never decrease).
    pub recorded_at_us: u64,
    /// Where it came from, recorded in its commit.
    pub source: Source,
}

/// What the sequencer shares with readers.
#[derive(Debug)]
pub struct Shared {
    /// The derived index.
    pub index: Index,
    /// Random-access record reads.
    pub reader: SegmentReader,
    /// Last readable position.
    pub head: Head,
    /// The first write failure, once there was one (fail-stop).
    pub failure: Mutex<Option<String>>,
    /// The store's options.
    pub options: Options,
    /// Directory of the segment files.
    pub log_dir: std::path::PathBuf,
    /// What committing has cost so far.
    pub commits: Arc<CommitCounters>,
    /// Where the log is durable up to, after the last group's fdatasync:
    /// what the durable mark records (see [`crate::log::mark`]).
    pub durable: Arc<DurableEnd>,
}

impl Shared {
    /// The fail-stop error, if the store has stopped accepting appends.
    pub fn failed(&self) -> Option<Error> {
        let failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        failure.as_ref().map(|reason| Error::StoreFailed { reason: reason.clone() })
    }

    /// Stops the store accepting appends; `what` says what failed, for
    /// the operator.
    fn fail(&self, what: &str, error: &Error) {
        let mut failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        if failure.is_none() {
            tracing::error!(%error, "{what}; the store stops accepting appends (reads go on; a restart recovers from the log)");
            *failure = Some(error.to_string());
        }
    }
}

/// Why a group was not committed, which decides what its appends are
/// told.
enum GroupFailure {
    /// Nothing of the group reached the log, and the store goes on: a new
    /// segment could not be made (for appends of its own: a replica's
    /// group, applied from the shared log, stops the store instead). Told
    /// [`Error::NotWritten`].
    NotWritten(Error),
    /// Nothing of the group is in the log (it never got there, or its
    /// failed write was cut back off), and the store stops accepting
    /// appends. Told [`Error::StoreFailed`], saying it was not written.
    Stopped(Error),
    /// Its write or fdatasync failed and the cut failed too: it may be in
    /// the log, now or after a restart. Told [`Error::OutcomeUnknown`]
    /// (sending it again with the same ids learns the outcome); the store
    /// stops accepting appends.
    Unknown(Error),
    /// It is durable in the log but the index failed: written, and told
    /// so; the store stops accepting appends and rebuilds the index from
    /// the log when it opens again.
    Unindexed(Error),
}

/// What each append of a group that is not in the log is told, with the
/// failure's text.
enum Told {
    NotWritten(String),
    StoreFailed(String),
    OutcomeUnknown(String),
}

impl Told {
    fn error(&self) -> Error {
        match self {
            Told::NotWritten(reason) => Error::NotWritten { reason: reason.clone() },
            Told::StoreFailed(reason) => Error::StoreFailed { reason: reason.clone() },
            Told::OutcomeUnknown(reason) => Error::OutcomeUnknown { reason: reason.clone() },
        }
    }
}

/// Appends decided into the current group, with their answers.
struct Group {
    pending: Pending,
    /// Offset of each pending commit's record in the batch buffer.
    record_offsets: Vec<usize>,
    answers: Vec<(Reply, Result<AppendOutcome, Error>)>,
}

/// The writer thread's state.
pub struct Sequencer {
    shared: Arc<Shared>,
    segment: SegmentWriter,
    next_position: Position,
    last_recorded_at_us: u64,
    buffer: Vec<u8>,
    /// Group commits written since the store opened.
    groups_written: u64,
    /// Events written since the store opened.
    events_written: u64,
    /// Heads of streams written or looked up recently.
    heads: RefCell<HeadCache>,
}

impl Sequencer {
    /// A sequencer writing to `segment`, continuing the log at
    /// `next_position`.
    #[must_use]
    pub fn new(shared: Arc<Shared>, segment: SegmentWriter, next_position: Position, last_recorded_at_us: u64) -> Self {
        let heads = RefCell::new(HeadCache::new(shared.options.head_cache_streams));
        Sequencer {
            shared,
            segment,
            next_position,
            last_recorded_at_us,
            buffer: Vec::new(),
            groups_written: 0,
            events_written: 0,
            heads,
        }
    }

    /// The store's options.
    #[must_use]
    pub fn options(&self) -> &Options {
        &self.shared.options
    }

    /// Makes everything written durable before the store closes (it
    /// matters in the unsafe sync mode).
    pub fn finish(&self) {
        if let Err(error) = self.segment.sync_all() {
            tracing::error!(%error, "final sync of the log failed");
        }
    }

    fn new_group(&self) -> Group {
        Group { pending: Pending::new(self.next_position), record_offsets: Vec::new(), answers: Vec::new() }
    }

    /// Decides every submission in order, commits them in groups that fit
    /// `batch_bytes_max`, and answers each; counts the CPU time it took.
    pub fn process(&mut self, batch: Vec<Submission>) {
        let cpu_start_ns = thread_cpu_ns();
        let appends = batch.len() as u64;
        let (groups_before, events_before) = (self.groups_written, self.events_written);
        self.decide_and_commit(batch);
        let cpu_ns = thread_cpu_ns().saturating_sub(cpu_start_ns);
        let (groups, events) = (self.groups_written - groups_before, self.events_written - events_before);
        self.shared.commits.add(groups, appends, events, cpu_ns);
    }

    /// [`Sequencer::process`] without the accounting.
    fn decide_and_commit(&mut self, batch: Vec<Submission>) {
        // One timestamp from the clock for the group's own appends, taken
        // only if it has any: applied ones bring theirs.
        let mut clock_at: Option<u64> = None;
        let mut group = self.new_group();
        for submission in batch {
            let answer = match self.shared.failed() {
                Some(error) => Err(error),
                None => {
                    let (recorded_at_us, source) = match submission.applied {
                        None => (*clock_at.get_or_insert_with(|| self.shared.options.clock.now_us()), None),
                        Some(applied) => (applied.recorded_at_us, Some(applied.source)),
                    };
                    let recorded_at_us = recorded_at_us.max(self.last_recorded_at_us);
                    self.last_recorded_at_us = recorded_at_us;
                    self.decide_into(&mut group, submission.request, recorded_at_us, source)
                }
            };
            group.answers.push((submission.reply, answer));
        }
        self.commit_group(group);
    }

    /// Decides `request` on top of `group`. An accepted record that does
    /// not fit the batch commits the group first and goes first into the
    /// next one: the decision stands, since the group it was decided on
    /// top of is then in the index (or the store failed, and the append
    /// gets the failure).
    fn decide_into(
        &mut self,
        group: &mut Group,
        request: AppendRequest,
        recorded_at_us: u64,
        source: Option<Source>,
    ) -> Result<AppendOutcome, Error> {
        let state = DecisionState {
            index: &self.shared.index,
            reader: &self.shared.reader,
            pending: &group.pending,
            heads: Some(&self.heads),
        };
        let pin = self.shared.reader.pin();
        let decision = decide(&state, request, recorded_at_us);
        drop(pin);
        let commit = match decision? {
            Decision::Accept(commit) => Commit { source, ..commit },
            Decision::Duplicate(result) => return Ok(AppendOutcome::AlreadyWritten(result)),
            Decision::Reject(conflict) => return Ok(AppendOutcome::Conflict(conflict)),
        };
        let mut start = self.buffer.len();
        commit.encode_framed(&mut self.buffer);
        if self.buffer.len() > self.shared.options.batch_bytes_max && start > 0 {
            self.buffer.truncate(start);
            let full = std::mem::replace(group, self.new_group());
            let written = self.commit_group(full);
            *group = self.new_group();
            if let Some(error) = self.shared.failed() {
                return Err(error);
            }
            if !written {
                // Decided on top of a group that is not in the log.
                return Err(Error::NotWritten { reason: "the appends before it could not be written".into() });
            }
            debug_assert!(self.buffer.is_empty(), "a committed group leaves the buffer empty");
            debug_assert_eq!(
                commit.first_position,
                group.pending.next_position(),
                "the next group starts where it was decided"
            );
            start = 0;
            commit.encode_framed(&mut self.buffer);
        }
        group.record_offsets.push(start);
        let result = commit.result();
        group.pending.push(commit);
        Ok(AppendOutcome::Written(result))
    }

    /// Writes, syncs and indexes the group's records, then answers every
    /// append in it; answers whether the group is in the log. On failure
    /// each append is told what became of it (see [`GroupFailure`]), never
    /// a guess.
    fn commit_group(&mut self, mut group: Group) -> bool {
        let result = if group.pending.is_empty() { Ok(()) } else { self.write_group(&mut group) };
        self.buffer.clear();
        let told = match result {
            Ok(()) => None,
            Err(GroupFailure::Unindexed(error)) => {
                // Durable in the log: written, as answered. The index is
                // rebuilt from the log when the store opens again.
                self.shared.fail("indexing a group durable in the log failed", &error);
                None
            }
            Err(GroupFailure::NotWritten(error)) => {
                tracing::warn!(%error, "an append group could not be written; the store goes on");
                Some(Told::NotWritten(error.to_string()))
            }
            Err(GroupFailure::Stopped(error)) => {
                self.shared.fail("writing a group to the log failed", &error);
                Some(Told::StoreFailed(match error {
                    Error::StoreFailed { reason } => reason,
                    other => other.to_string(),
                }))
            }
            Err(GroupFailure::Unknown(error)) => {
                self.shared.fail("writing a group to the log failed, and so did cutting it back", &error);
                Some(Told::OutcomeUnknown(error.to_string()))
            }
        };
        for (reply, answer) in group.answers {
            reply(match &told {
                Some(told) => Err(told.error()),
                None => answer,
            });
        }
        told.is_none()
    }

    fn write_group(&mut self, group: &mut Group) -> Result<(), GroupFailure> {
        if let Some(error) = self.shared.failed() {
            return Err(GroupFailure::Stopped(error));
        }
        if let Err(failure) = self.roll_segment_if_full() {
            return Err(match failure {
                // A replica must not apply past a record it could not
                // write: every node writes every applied record.
                GroupFailure::NotWritten(error) if group.pending.any_applied() => GroupFailure::Stopped(error),
                other => other,
            });
        }
        let before = self.segment.len_bytes();
        let base = match self.segment.append(&self.buffer) {
            Ok(base) => base,
            // Maybe partly on disk, and a later fdatasync could make it
            // durable: cut it off, durably, before anyone is answered.
            Err(error) => {
                return Err(match self.segment.cut_back(before) {
                    Ok(()) => GroupFailure::Stopped(error),
                    Err(cut) => {
                        tracing::error!(%cut, "cutting a failed group back off the log failed");
                        GroupFailure::Unknown(error)
                    }
                });
            }
        };
        self.shared.reader.extend_active(self.segment.len_bytes());
        self.shared.durable.set(Mark { segment: self.segment.number(), offset: self.segment.len_bytes() });
        self.groups_written += 1;
        self.events_written += group.pending.event_count() as u64;
        let next_position = group.pending.next_position();
        let heads: Vec<(Fingerprint, Revision)> =
            group.pending.heads().map(|(stream, revision)| (HeadCache::key(stream), revision)).collect();
        let segment = self.segment.number();
        let located: Vec<LocatedCommit> = group
            .pending
            .take()
            .into_iter()
            .zip(&group.record_offsets)
            .map(|(commit, relative)| LocatedCommit {
                commit,
                at: RecordAddress { segment, generation: 0, offset: base + *relative as u64 },
            })
            .collect();
        let checkpoint = Checkpoint {
            segment,
            offset: self.segment.len_bytes(),
            next_position,
            last_recorded_at_us: self.last_recorded_at_us,
        };
        self.shared.index.write(&located, checkpoint).map_err(GroupFailure::Unindexed)?;
        let mut cache = self.heads.borrow_mut();
        for (key, revision) in heads {
            cache.put(key, revision);
        }
        drop(cache);
        assert!(next_position > self.next_position, "a written group advances the log");
        self.next_position = next_position;
        self.shared.head.advance(Position(next_position.0 - 1));
        Ok(())
    }

    /// Whether the segment has less than half of `preallocate_bytes` of
    /// zeros left ahead of its end (and the store still writes).
    #[must_use]
    pub fn wants_zeros(&self) -> bool {
        let options = &self.shared.options;
        options.preallocate_bytes > 0
            && options.sync == SyncMode::Fsync
            && self.segment.headroom_bytes() < options.preallocate_bytes / 2
            && self.segment.len_bytes() < options.segment_size_bytes
            && self.shared.failed().is_none()
    }

    /// Writes zeros ahead of the segment's end, up to `preallocate_bytes`
    /// (not past where the segment will roll). A failure is a failed log
    /// write: the store stops accepting appends.
    pub fn write_zeros_ahead(&mut self) {
        let options = &self.shared.options;
        let to = (self.segment.len_bytes() + options.preallocate_bytes).min(options.segment_size_bytes);
        if let Err(error) = self.segment.extend_zeroed(to) {
            self.shared.fail("writing zeros ahead of the log's end failed", &error);
        }
    }

    /// Starts the next segment when this one is full. Nothing of the
    /// group is written yet: a new file that cannot be made (too many open
    /// files, a full disk) leaves the store on the full segment, to try
    /// again with the next group.
    fn roll_segment_if_full(&mut self) -> Result<(), GroupFailure> {
        if self.segment.len_bytes() < self.shared.options.segment_size_bytes {
            return Ok(());
        }
        self.segment.trim().map_err(GroupFailure::Stopped)?;
        let options = &self.shared.options;
        let number = self.segment.number() + 1;
        let created = SegmentWriter::create(
            &self.shared.log_dir,
            number,
            options.batch_bytes_max as u64,
            options.sync,
            options.fault_plan.clone(),
        );
        match created {
            Ok(segment) => self.segment = segment,
            Err(error) => {
                // What a failed creation left holds a header at most.
                let path = segment_path(&self.shared.log_dir, number);
                if let Err(removed) = std::fs::remove_file(&path)
                    && removed.kind() != std::io::ErrorKind::NotFound
                {
                    tracing::warn!(path = %path.display(), %removed, "removing a segment file that failed to be made");
                }
                return Err(GroupFailure::NotWritten(error));
            }
        }
        self.shared.reader.activate(self.segment.number(), self.segment.len_bytes());
        Ok(())
    }
}
