//! Reads: a stream by revision, `$all` by position, a category, event
//! type or tag by position, one event by id, and stream info. Every read
//! goes through the index to the records it points at (no scans) and
//! checks what it returns: one event of a record by that event's own
//! checksum, a whole record by the record's; a corrupt record is an error
//! naming the segment and offset, never served. Reads do not take the
//! writer's locks; each holds a pin on the segment files (see
//! [`crate::log::segment::SegmentReader::pin`]) from its index lookup to
//! its last record, so a scavenge cannot remove a file under it.

use crate::error::Error;
use crate::event::{EventId, RecordedEvent, StreamName};
use crate::index::LabelKind;
use crate::index::entry::EventPointer;
use crate::position::{Position, Revision};
use crate::sequencer::Shared;

/// Which way a read goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// Increasing revisions or positions.
    #[default]
    Forwards,
    /// Decreasing revisions or positions.
    Backwards,
}

/// What is known about a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    /// The stream.
    pub stream: StreamName,
    /// Revision of its last event; `None` when the stream has no events
    /// (does not exist).
    pub last_revision: Option<Revision>,
}

impl StreamInfo {
    /// Whether the stream has at least one event.
    #[must_use]
    pub fn exists(&self) -> bool {
        self.last_revision.is_some()
    }
}

fn check_limit(shared: &Shared, limit: usize) -> Result<(), Error> {
    let limit_max = shared.options.read_events_max;
    if limit > limit_max {
        return Err(Error::ReadLimitTooLarge { limit, limit_max });
    }
    Ok(())
}

/// Fetches the events behind `pointers` that `wanted` accepts (a check
/// against fingerprint collisions: the index keys names by fingerprint).
/// A record that several consecutive pointers share is read and decoded
/// once; a record that gives one event is read and only that event
/// decoded. Pointers into a segment a scavenge rewrote since are followed
/// to the record's new place, where the event may be gone.
fn fetch(
    shared: &Shared,
    pointers: &[EventPointer],
    wanted: &dyn Fn(&RecordedEvent) -> bool,
) -> Result<Vec<RecordedEvent>, Error> {
    let mut buffer = Vec::new();
    let mut events = Vec::with_capacity(pointers.len());
    let same_record = |a: &EventPointer, b: &EventPointer| a.record() == b.record();
    for group in pointers.chunk_by(same_record) {
        let first = group.first().expect("chunk_by yields non-empty groups");
        if let Some(moved) = shared.index.relocate(first.record(), first.position)? {
            let commit = shared.reader.read_commit(moved, &mut buffer)?;
            let mut kept: Vec<RecordedEvent> = commit.into_recorded_events().collect();
            // In the pointers' order (a backwards read wants them reversed).
            for pointer in group {
                if let Some(at) = kept.iter().position(|e| e.position == pointer.position) {
                    let event = kept.swap_remove(at);
                    if wanted(&event) {
                        events.push(event);
                    }
                }
            }
            continue;
        }
        let [single] = group else {
            let commit = shared.reader.read_commit(first.record(), &mut buffer)?;
            for pointer in group {
                let event = commit.recorded_event(pointer.index).ok_or_else(|| {
                    let reason = format!("the index points at event {} of a record that has fewer", pointer.index);
                    shared.reader.corrupt(pointer.record(), reason)
                })?;
                push_checked(shared, pointer, event, wanted, &mut events)?;
            }
            continue;
        };
        let event = shared.reader.read_event(single.record(), single.index, &mut buffer)?;
        push_checked(shared, single, event, wanted, &mut events)?;
    }
    Ok(events)
}

/// Pushes `event` if `wanted`; an event at another position than the
/// index said is corruption.
fn push_checked(
    shared: &Shared,
    pointer: &EventPointer,
    event: RecordedEvent,
    wanted: &dyn Fn(&RecordedEvent) -> bool,
    events: &mut Vec<RecordedEvent>,
) -> Result<(), Error> {
    if event.position != pointer.position {
        let reason = format!("the index says position {}, the record holds {}", pointer.position, event.position);
        return Err(shared.reader.corrupt(pointer.record(), reason));
    }
    if wanted(&event) {
        events.push(event);
    }
    Ok(())
}

/// The number after `n` in `direction`; `None` past the ends.
fn step(n: u64, direction: Direction) -> Option<u64> {
    match direction {
        Direction::Forwards => n.checked_add(1),
        Direction::Backwards => n.checked_sub(1),
    }
}

/// Up to `limit` events of `stream` from revision `from` (inclusive;
/// `None`: from the start forwards, from the end backwards).
pub(crate) fn read_stream(
    shared: &Shared,
    stream: &StreamName,
    from: Option<Revision>,
    direction: Direction,
    limit: usize,
) -> Result<Vec<RecordedEvent>, Error> {
    check_limit(shared, limit)?;
    let _pin = shared.reader.pin();
    let mut events = Vec::new();
    let mut cursor = from;
    let wanted = |e: &RecordedEvent| e.stream == *stream;
    loop {
        let entries = shared.index.stream_range(stream, cursor, direction, limit - events.len())?;
        let Some(&(last, _)) = entries.last() else {
            if events.is_empty() && cursor == from && shared.index.stream_head(stream)?.is_none() {
                return Err(Error::StreamNotFound { stream: stream.clone() });
            }
            break;
        };
        let pointers: Vec<EventPointer> = entries.into_iter().map(|(_, pointer)| pointer).collect();
        events.extend(fetch(shared, &pointers, &wanted)?);
        // Fewer than asked: a scavenge removed some; ask past them.
        match step(last.0, direction) {
            Some(next) if events.len() < limit => cursor = Some(Revision(next)),
            _ => break,
        }
    }
    debug_assert_read(stream.as_str(), &events, limit, direction, from.map(|r| r.0), |e| e.revision.0, &wanted);
    Ok(events)
}

/// Events a read of `$all` makes room for before it finds them.
const READ_RESERVE_MAX: usize = 32;

/// Up to `limit` events of `$all` from `from` (inclusive; `None` as above).
pub(crate) fn read_all(
    shared: &Shared,
    from: Option<Position>,
    direction: Direction,
    limit: usize,
) -> Result<Vec<RecordedEvent>, Error> {
    check_limit(shared, limit)?;
    let _pin = shared.reader.pin();
    // Records a scavenge emptied give fewer events than their span, so
    // ask again from where the last batch ended until `limit` is met.
    let mut buffer = Vec::new();
    // Room for a short read only: a read at the head (a live tail's) finds
    // a few events, and a list sized for `limit` would be a large
    // allocation, fresh from the system (and zeroed) each time.
    let mut events = Vec::with_capacity(limit.min(READ_RESERVE_MAX));
    let mut cursor = from;
    while events.len() < limit {
        let records = shared.index.record_range(cursor, direction, limit - events.len())?;
        let Some(&last) = records.last() else {
            break;
        };
        for record in records {
            let at = shared.index.relocate(record.at, record.first_position)?.unwrap_or(record.at);
            let room = limit - events.len();
            match direction {
                Direction::Forwards => {
                    let from = from.unwrap_or(Position(0));
                    shared.reader.read_events(at, record.first_position, from, room, &mut buffer, &mut events)?;
                }
                Direction::Backwards => {
                    let commit = shared.reader.read_commit(at, &mut buffer)?;
                    let in_range = |e: &RecordedEvent| from.is_none_or(|from| e.position <= from);
                    let mut backwards: Vec<RecordedEvent> = commit.into_recorded_events().filter(in_range).collect();
                    backwards.reverse();
                    events.extend(backwards.into_iter().take(room));
                }
            }
            if events.len() == limit {
                break;
            }
        }
        cursor = match direction {
            Direction::Forwards => Some(last.next_position()),
            Direction::Backwards => match last.first_position.0.checked_sub(1) {
                Some(before) => Some(Position(before)),
                None => break,
            },
        };
    }
    debug_assert_read("$all", &events, limit, direction, from.map(|p| p.0), |e| e.position.0, &|_| true);
    Ok(events)
}

/// What every read promises, asserted in debug builds (every test run):
/// at most `limit` events, each one the read asked for (`wanted`), in
/// strict order of `key` (position, or revision in a stream) along
/// `direction`, none on the near side of `from`.
fn debug_assert_read(
    read: &str,
    events: &[RecordedEvent],
    limit: usize,
    direction: Direction,
    from: Option<u64>,
    key: impl Fn(&RecordedEvent) -> u64,
    wanted: &dyn Fn(&RecordedEvent) -> bool,
) {
    if !cfg!(debug_assertions) {
        return;
    }
    assert!(events.len() <= limit, "a read of {read} gives at most its limit");
    assert!(events.iter().all(wanted), "a read of {read} gives only its own events");
    let in_order = |a: &RecordedEvent, b: &RecordedEvent| match direction {
        Direction::Forwards => key(a) < key(b),
        Direction::Backwards => key(a) > key(b),
    };
    assert!(
        events.windows(2).all(|pair| matches!(pair, [a, b] if in_order(a, b))),
        "a read of {read} gives events in strict order"
    );
    let after_start = |e: &RecordedEvent| {
        from.is_none_or(|from| match direction {
            Direction::Forwards => key(e) >= from,
            Direction::Backwards => key(e) <= from,
        })
    };
    assert!(events.iter().all(after_start), "a read of {read} starts where it was asked to");
}

/// Up to `limit` events carrying `label` in the `kind` index.
pub(crate) fn read_label(
    shared: &Shared,
    kind: LabelKind,
    label: &str,
    from: Option<Position>,
    direction: Direction,
    limit: usize,
) -> Result<Vec<RecordedEvent>, Error> {
    check_limit(shared, limit)?;
    let _pin = shared.reader.pin();
    let wanted = |e: &RecordedEvent| match kind {
        LabelKind::Category => e.stream.category() == label,
        LabelKind::EventType => e.event_type.as_str() == label,
        LabelKind::Tag => e.tags.iter().any(|t| t.as_str() == label),
    };
    let mut events = Vec::new();
    let mut cursor = from;
    loop {
        let entries = shared.index.label_range(kind, label, cursor, direction, limit - events.len())?;
        let Some(&(last, _)) = entries.last() else { break };
        let pointers: Vec<EventPointer> = entries.into_iter().map(|(_, pointer)| pointer).collect();
        events.extend(fetch(shared, &pointers, &wanted)?);
        match step(last.0, direction) {
            Some(next) if events.len() < limit => cursor = Some(Position(next)),
            _ => break,
        }
    }
    debug_assert_read(label, &events, limit, direction, from.map(|p| p.0), |e| e.position.0, &wanted);
    Ok(events)
}

/// The first event written with `id`, if one was and is still there.
pub(crate) fn read_event(shared: &Shared, id: &EventId) -> Result<Option<RecordedEvent>, Error> {
    let _pin = shared.reader.pin();
    let Some(pointer) = shared.index.event_by_id(id)? else {
        return Ok(None);
    };
    Ok(fetch(shared, &[pointer], &|e| e.id == *id)?.pop())
}

/// What is known about `stream`.
pub(crate) fn stream_info(shared: &Shared, stream: &StreamName) -> Result<StreamInfo, Error> {
    Ok(StreamInfo { stream: stream.clone(), last_revision: shared.index.stream_head(stream)? })
}
