//! The entries one record adds to the index: its `$all` entry, a run per
//! stream write, category, type and tag runs, and one entry per event id
//! (see `super::entry`). A label's run grows while its events stay
//! consecutive in the record and in positions (a scavenged write's
//! dropped events break a run), so a 100-event append of one type to one
//! stream adds four entries and 100 ids.

use super::entry::{Entry, Fingerprint, GONE, Space};
use crate::log::record::Commit;
use crate::log::segment::RecordAddress;

/// Calls `add` with every entry of `commit`, whose record is `at`; the
/// entries of one name come in ascending order.
pub fn for_each_entry(commit: &Commit, at: RecordAddress, add: &mut impl FnMut(Space, Entry)) {
    let span = u16::try_from(commit.span()).expect("records hold at most 65,535 positions (append_events_max)");
    let base = Entry {
        name: Fingerprint::all(),
        seq: commit.first_position.0,
        value: commit.recorded_at_us,
        segment: at.segment,
        generation: at.generation,
        index: 0,
        offset: at.offset,
        count: span,
    };
    add(Space::All, base);
    let mut runs = Runs { base, next_index: 0, open: Vec::new(), closed: Vec::new() };
    let mut position = commit.first_position.0;
    for write in &commit.writes {
        if write.events.is_empty() {
            // Every event of the write was scavenged: the stream's head
            // still counts them. An entry of the gone generation says so;
            // reads follow it to the record and find nothing.
            let name = Fingerprint::of(Space::Stream, write.stream.as_str().as_bytes());
            let count = u16::try_from(write.dropped).expect("records hold at most 65,535 positions");
            let gone = Entry { name, seq: write.first_revision.0, value: position, count, generation: GONE, ..base };
            add(Space::Stream, gone);
        }
        position += u64::from(write.dropped);
        let first_index = runs.next_index;
        for event in &write.events {
            runs.add(Space::Category, write.stream.category(), position);
            runs.add(Space::EventType, event.event_type.as_str(), position);
            for tag in &event.tags {
                runs.add(Space::Tag, tag.as_str(), position);
            }
            let name = Fingerprint::of(Space::EventId, event.id.as_bytes());
            add(Space::EventId, Entry { name, seq: position, value: position, count: 1, ..runs.at(runs.next_index) });
            runs.next_index += 1;
            position += 1;
        }
        let count = runs.next_index - first_index;
        if count > 0 {
            let name = Fingerprint::of(Space::Stream, write.stream.as_str().as_bytes());
            let first_position = position - u64::from(count);
            let seq = write.first_kept_revision().0;
            add(Space::Stream, Entry { name, seq, value: first_position, count, ..runs.at(first_index) });
        }
    }
    debug_assert_eq!(position, commit.next_position().0);
    for (space, label, first, index, count) in runs.closed.into_iter().chain(runs.open) {
        let name = Fingerprint::of(space, label.as_bytes());
        add(space, Entry { name, seq: first, value: first, count, ..base_at(&base, index) });
    }
}

/// At most how many entries `for_each_entry` adds for `commit`: its `$all`
/// entry, a run per write, and per event its id, a category and a type
/// run and a run per tag (runs that grow share an entry, so fewer come).
#[must_use]
pub fn entries_max(commit: &Commit) -> usize {
    let per_write = |write: &crate::log::record::CommitWrite| {
        1 + write.events.iter().map(|event| 3 + event.tags.len()).sum::<usize>()
    };
    1 + commit.writes.iter().map(per_write).sum::<usize>()
}

/// `base` (the record) pointing at its event `index`.
fn base_at(base: &Entry, index: u16) -> Entry {
    Entry { index, ..*base }
}

/// The label runs of the record being indexed.
struct Runs<'a> {
    base: Entry,
    /// Index in the record of the next event.
    next_index: u16,
    /// Runs that may still grow: (space, label, first position, first
    /// index, count).
    open: Vec<(Space, &'a str, u64, u16, u16)>,
    /// Runs that ended before the record did.
    closed: Vec<(Space, &'a str, u64, u16, u16)>,
}

impl<'a> Runs<'a> {
    /// The record's entry pointing at its event `index`.
    fn at(&self, index: u16) -> Entry {
        base_at(&self.base, index)
    }

    /// Counts the event at `next_index`, at `position`, into the run of
    /// `label`.
    fn add(&mut self, space: Space, label: &'a str, position: u64) {
        let index = self.next_index;
        match self.open.iter_mut().find(|(s, l, ..)| *s == space && *l == label) {
            Some((_, _, first, start, count)) if *start + *count == index && *first + u64::from(*count) == position => {
                *count += 1;
            }
            Some(slot) => self.closed.push(std::mem::replace(slot, (space, label, position, index, 1))),
            None => self.open.push((space, label, position, index, 1)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::log::record::CommitWrite;
    use crate::{EventType, Position, ProposedEvent, Revision, StreamName, Tag};

    fn event(event_type: &str, tags: &[&str]) -> ProposedEvent {
        let mut event = ProposedEvent::new(EventType::new(event_type).unwrap(), b"{}".to_vec());
        event.tags = tags.iter().map(|t| Tag::new(*t).unwrap()).collect();
        event
    }

    #[test]
    fn a_record_adds_one_run_per_stream_and_label_stretch_and_one_entry_per_id() {
        let order = StreamName::new("order-1").unwrap();
        let payment = StreamName::new("payment-1").unwrap();
        let commit = Commit {
            first_position: Position(10),
            recorded_at_us: 77,
            source: None,
            writes: vec![
                CommitWrite::new(
                    order.clone(),
                    Revision(4),
                    vec![event("A", &["vip"]), event("A", &[]), event("B", &["vip"])],
                ),
                CommitWrite::new(payment, Revision(0), vec![event("A", &[])]),
            ],
        };
        let at = RecordAddress { segment: 2, generation: 1, offset: 512 };
        let mut entries = Vec::new();
        for_each_entry(&commit, at, &mut |space, entry| entries.push((space, entry)));
        let of = |space: Space, name: &str| -> Vec<(u64, u64, u16, u16)> {
            let fingerprint =
                if space == Space::All { Fingerprint::all() } else { Fingerprint::of(space, name.as_bytes()) };
            entries
                .iter()
                .filter(|(s, e)| *s == space && e.name == fingerprint)
                .map(|(_, e)| (e.seq, e.value, e.index, e.count))
                .collect()
        };
        assert_eq!(of(Space::All, ""), [(10, 77, 0, 4)]);
        assert_eq!(of(Space::Stream, "order-1"), [(4, 10, 0, 3)]);
        assert_eq!(of(Space::Stream, "payment-1"), [(0, 13, 3, 1)]);
        assert_eq!(of(Space::EventType, "A"), [(10, 10, 0, 2), (13, 13, 3, 1)]);
        assert_eq!(of(Space::EventType, "B"), [(12, 12, 2, 1)]);
        assert_eq!(of(Space::Tag, "vip"), [(10, 10, 0, 1), (12, 12, 2, 1)]);
        assert_eq!(of(Space::Category, "order"), [(10, 10, 0, 3)]);
        assert_eq!(of(Space::Category, "payment"), [(13, 13, 3, 1)]);
        let ids: Vec<u64> = entries.iter().filter(|(s, _)| *s == Space::EventId).map(|(_, e)| e.seq).collect();
        assert_eq!(ids, [10, 11, 12, 13]);
        assert!(entries.iter().all(|(_, e)| e.record() == at));
        assert!(entries.len() <= entries_max(&commit), "{} entries, at most {}", entries.len(), entries_max(&commit));
    }
}
