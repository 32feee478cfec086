//! Temporal reads: where the log, or one stream, stood at a past moment.
//!
//! What it promises: [`Store::position_at`] is the last position committed
//! at or before a time (commit times never go back along the log: the
//! sequencer takes the later of the clock and the last commit time), and
//! [`Store::revision_as_of`] the last revision a stream had at a position,
//! a time, or a revision. Both search by halving: `O(log n)` one-event
//! reads, whatever the size of the log or the stream.

use crate::error::Error;
use crate::event::{RecordedEvent, StreamName};
use crate::position::{Position, Revision};
use crate::read::Direction;
use crate::store::Store;

/// A past moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    /// After the event at this revision of the stream (streams only).
    Revision(Revision),
    /// After the event at this position of `$all`.
    Position(Position),
    /// After the last commit at or before this time, µs since the Unix
    /// epoch.
    Time(u64),
}

impl Store {
    /// The last position committed at or before `time_us`; `None` when
    /// nothing was.
    ///
    /// # Errors
    /// Read errors.
    pub fn position_at(&self, time_us: u64) -> Result<Option<Position>, Error> {
        let Some(last) = self.last_position() else { return Ok(None) };
        last_position_where(self, last, |e| e.recorded_at_us <= time_us)
    }

    /// The last revision `stream` had as of `as_of`; `None` when it had no
    /// event then (or has none at all).
    ///
    /// # Errors
    /// Read errors.
    pub fn revision_as_of(&self, stream: &StreamName, as_of: AsOf) -> Result<Option<Revision>, Error> {
        let Some(last) = self.stream_info(stream)?.last_revision else { return Ok(None) };
        let bound = match as_of {
            AsOf::Revision(revision) => return Ok(Some(revision.min(last))),
            AsOf::Position(position) => position,
            AsOf::Time(time_us) => match self.position_at(time_us)? {
                Some(position) => position,
                None => return Ok(None),
            },
        };
        search_revision(self, stream, last, bound)
    }
}

/// The last revision of `stream` (at most `last`) whose event is at or
/// before `bound`.
fn search_revision(
    store: &Store,
    stream: &StreamName,
    last: Revision,
    bound: Position,
) -> Result<Option<Revision>, Error> {
    let (mut low, mut high, mut found) = (0u64, last.0, None);
    while low <= high {
        let middle = low + (high - low) / 2;
        let event = store.read_stream(stream, Some(Revision(middle)), Direction::Forwards, 1)?;
        match event.first() {
            Some(event) if event.position <= bound => {
                found = Some(Revision(middle));
                low = middle + 1;
            }
            _ if middle == 0 => break,
            _ => high = middle - 1,
        }
    }
    Ok(found)
}

/// The last position (at most `last`) whose event is within `keep`,
/// which holds for a prefix of the log only. Positions may have gaps: each
/// probe reads the first event at or after a position.
fn last_position_where(
    store: &Store,
    last: Position,
    keep: impl Fn(&RecordedEvent) -> bool,
) -> Result<Option<Position>, Error> {
    let (mut low, mut high, mut found) = (0u64, last.0, None);
    while low <= high {
        let middle = low + (high - low) / 2;
        let event = store.read_all(Some(Position(middle)), Direction::Forwards, 1)?;
        match event.first() {
            Some(event) if event.position.0 <= high && keep(event) => {
                found = Some(event.position);
                low = event.position.0 + 1;
            }
            _ if middle == 0 => break,
            _ => high = middle - 1,
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::{AppendRequest, Clock, EventType, ExpectedRevision, Options, ProposedEvent};

    /// Appends `streams[i]` one event at a time (each its own commit, a
    /// clock step of 10 µs apart); returns every event as read back.
    fn store_with(dir: &std::path::Path, streams: &[u8]) -> (Store, Vec<RecordedEvent>) {
        let options = Options { clock: Clock::stepping(1_000, 10), ..Options::default() };
        let store = Store::open(dir, options).expect("open");
        for (n, stream) in streams.iter().enumerate() {
            let event = ProposedEvent::new(EventType::new("Happened").expect("valid"), n.to_le_bytes().to_vec());
            let stream = StreamName::new(format!("s-{stream}")).expect("valid");
            store.append(AppendRequest::to_stream(stream, ExpectedRevision::Any, vec![event])).expect("append");
        }
        let all = store.read_all(None, Direction::Forwards, 10_000).expect("read $all");
        (store, all)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Every answer equals a replay of `$all` cut at the moment.
        #[test]
        fn answers_equal_a_replay_cut_at_the_moment(
            streams in prop::collection::vec(0u8..4, 1..60),
            moments in prop::collection::vec(0u64..800, 1..8),
        ) {
            let dir = tempfile::tempdir().expect("tempdir");
            let (store, all) = store_with(dir.path(), &streams);
            for moment in moments {
                let time_us = 1_000 + moment;
                let cut: Vec<&RecordedEvent> = all.iter().filter(|e| e.recorded_at_us <= time_us).collect();
                prop_assert_eq!(store.position_at(time_us).expect("search"), cut.last().map(|e| e.position));
                let position = Position(moment / 10);
                for s in 0u8..4 {
                    let stream = StreamName::new(format!("s-{s}")).expect("valid");
                    let last_by = |keep: &dyn Fn(&RecordedEvent) -> bool| {
                        all.iter().filter(|e| e.stream == stream && keep(e)).map(|e| e.revision).last()
                    };
                    let at_time = store.revision_as_of(&stream, AsOf::Time(time_us)).expect("search");
                    prop_assert_eq!(at_time, last_by(&|e| e.recorded_at_us <= time_us));
                    let at_position = store.revision_as_of(&stream, AsOf::Position(position)).expect("search");
                    prop_assert_eq!(at_position, last_by(&|e| e.position <= position));
                }
            }
        }
    }

    #[test]
    fn an_empty_log_and_a_missing_stream_have_no_past() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), Options::default()).expect("open");
        assert_eq!(store.position_at(u64::MAX).expect("search"), None);
        let missing = StreamName::new("nope").expect("valid");
        assert_eq!(store.revision_as_of(&missing, AsOf::Time(u64::MAX)).expect("search"), None);
        drop(store);
        let (store, _) = store_with(dir.path(), &[0, 0, 1]);
        let stream = StreamName::new("s-0").expect("valid");
        assert_eq!(store.revision_as_of(&stream, AsOf::Revision(Revision(9))).expect("cap"), Some(Revision(1)));
        assert_eq!(store.position_at(0).expect("before everything"), None);
    }
}
