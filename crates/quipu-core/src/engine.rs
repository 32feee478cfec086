//! The deterministic heart: [`decide`] turns an append request into a
//! [`Decision`] from the state built by the commits before it, and nothing
//! else: no clock (the timestamp is an input), no randomness, no I/O order.
//! Two engines fed the same requests in the same order decide the same,
//! which is what lets cluster mode run this code on every node of a Kafka
//! partition.
//!
//! [`verify_replay`] is the same logic applied to a commit read back from
//! the log: it must be exactly what deciding would have produced.

use crate::append::{AppendRequest, AppendResult, Conflict, Query, StreamConflict};
use crate::error::Error;
use crate::event::{EventId, StreamName};
use crate::log::record::{Commit, CommitWrite};
use crate::position::{Position, Revision};

/// Where an already-written event id came from.
#[derive(Debug, Clone)]
pub struct Origin {
    /// Position of the event.
    pub position: Position,
    /// The commit that wrote it.
    pub commit: Commit,
}

/// The state a decision reads: everything committed before the request.
pub trait StateView {
    /// Last revision of `stream`; `None` when it has no events.
    ///
    /// # Errors
    /// Index or log read errors.
    fn stream_head(&self, stream: &StreamName) -> Result<Option<Revision>, Error>;

    /// The commit that first wrote an event with `id`, if any did.
    ///
    /// # Errors
    /// Index or log read errors.
    fn origin(&self, id: &EventId) -> Result<Option<Origin>, Error>;

    /// Position of the first event matching `query` after `after` (from
    /// the start when `None`).
    ///
    /// # Errors
    /// Index or log read errors.
    fn first_match_after(&self, query: &Query, after: Option<Position>) -> Result<Option<Position>, Error>;

    /// Position the next commit takes.
    fn next_position(&self) -> Position;
}

/// What the engine decided for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Conditions hold: write this commit.
    Accept(Commit),
    /// The same events were written before: answer with the first result.
    Duplicate(AppendResult),
    /// A condition failed: write nothing.
    Reject(Conflict),
}

/// Decides `request` against `state`; the commit, if accepted, carries
/// `recorded_at_us` and the request's events, moved, not copied.
///
/// # Errors
/// [`Error::EventIdReused`] when the request's first event id was written
/// by another append; read errors of the state.
pub fn decide(state: &dyn StateView, request: AppendRequest, recorded_at_us: u64) -> Result<Decision, Error> {
    if let Some(result) = check_idempotency(state, &request)? {
        return Ok(Decision::Duplicate(result));
    }
    let mut conflict = Conflict { streams: Vec::new(), condition_position: None };
    let mut writes = Vec::with_capacity(request.writes.len());
    for write in request.writes {
        let actual = state.stream_head(&write.stream)?;
        if !write.expected.is_met_by(actual) {
            conflict.streams.push(StreamConflict { stream: write.stream, expected: write.expected, actual });
            continue;
        }
        if !write.events.is_empty() {
            let first_revision = actual.map_or(Revision(0), Revision::next);
            writes.push(CommitWrite::new(write.stream, first_revision, write.events));
        }
    }
    if let Some(condition) = &request.condition {
        conflict.condition_position = state.first_match_after(&condition.query, condition.after)?;
    }
    if !conflict.streams.is_empty() || conflict.condition_position.is_some() {
        return Ok(Decision::Reject(conflict));
    }
    assert!(!writes.is_empty(), "validation guarantees at least one event");
    Ok(Decision::Accept(Commit { first_position: state.next_position(), recorded_at_us, source: None, writes }))
}

/// `Some(original result)` when `request` was written before; `None` when
/// it is new.
///
/// An append is known by its first event id: the ids of an append are
/// written all together or not at all, so a retry carries the first id
/// of what was written. It is a retry when that commit holds exactly the
/// request's events, stream by stream; an id first used by another
/// append is [`Error::EventIdReused`]. The other ids are not looked up,
/// which keeps the check to one lookup per append however many events it
/// holds: an id reused in another place than first is written again, and
/// a read by id finds the first event written with it.
fn check_idempotency(state: &dyn StateView, request: &AppendRequest) -> Result<Option<AppendResult>, Error> {
    let Some(id) = request.event_ids().next() else {
        return Ok(None);
    };
    let Some(origin) = state.origin(&id)? else {
        return Ok(None);
    };
    if !same_events(&origin.commit, request) {
        return Err(Error::EventIdReused { event_id: id, position: origin.position });
    }
    Ok(Some(origin.commit.result()))
}

/// Whether `commit` holds exactly the request's events, stream by stream.
fn same_events(commit: &Commit, request: &AppendRequest) -> bool {
    let mut requested = request.writes.iter().filter(|w| !w.events.is_empty());
    let mut committed = commit.writes.iter();
    loop {
        match (requested.next(), committed.next()) {
            (None, None) => return true,
            (Some(want), Some(have)) => {
                let same_ids = want.events.iter().map(|e| e.id).eq(have.events.iter().map(|e| e.id));
                if want.stream != have.stream || !same_ids {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

/// Checks that `commit`, read back from the log, is what the engine would
/// have decided on `state`: it starts at the next position and every
/// stream continues at its next revision.
///
/// # Errors
/// A description of the first mismatch; read errors of the state.
pub fn verify_replay(state: &dyn StateView, commit: &Commit) -> Result<Result<(), String>, Error> {
    if commit.first_position != state.next_position() {
        return Ok(Err(format!(
            "commit starts at position {}, the log's next position is {}",
            commit.first_position,
            state.next_position()
        )));
    }
    for write in &commit.writes {
        let expected = state.stream_head(&write.stream)?.map_or(Revision(0), Revision::next);
        if write.span() == 0 {
            return Ok(Err(format!("commit writes nothing to {}", write.stream)));
        }
        if write.first_revision != expected {
            return Ok(Err(format!(
                "commit writes {} from revision {}, the stream's next revision is {expected}",
                write.stream, write.first_revision
            )));
        }
    }
    Ok(Ok(()))
}
