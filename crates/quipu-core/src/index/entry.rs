//! The index's one entry shape, and the values it is read into.
//!
//! Every index entry is [`ENTRY_BYTES`] bytes, whatever it indexes:
//!
//! | field | stream run | label run (category, type, tag) | `$all` record | event id |
//! | --- | --- | --- | --- | --- |
//! | `key`, `check` | fingerprint of the stream | fingerprint of kind and label | the `$all` fingerprint | fingerprint of the id |
//! | `seq` | first revision of the run | first position of the run | first position of the record | position of the event |
//! | `value` | position of the run's first event | position of the run's first event | commit time, µs | position of the event |
//! | address | the record (segment, generation, offset) and the run's first event's index in it | same | the record | the event's record and index |
//! | `count` | events in the run | events in the run | positions the record took | 1 |
//!
//! A run is the consecutive events of one record that share a stream or
//! label, so a 100-event append to one stream costs one stream entry, not
//! 100; only event ids are indexed one by one.
//!
//! Entries sort by (`key`, `check`, `seq`): everything indexed under one
//! name is contiguous and ordered by revision or position. Names are not
//! stored, only 128-bit fingerprints of them (xxh3, seeded by the kind of
//! name): two names share one with odds of about 2^-128 per pair, the odds
//! an event store already takes with random 122-bit event ids. Reads check
//! each event they return against what was asked anyway.
//!
//! An entry's address is where the record was when the entry was written;
//! a scavenge that rewrites the segment later moves it, and the entry's
//! generation tells (see `crate::read`). Encoded little-endian, a fixed
//! 48 bytes, so tables of entries can be searched by halving.

use crate::log::segment::RecordAddress;
use crate::position::{Position, Revision};

/// Bytes of an encoded [`Entry`].
pub const ENTRY_BYTES: usize = 48;

/// Bits of an entry's offset field: offsets are below 2^48 (256 TiB).
const OFFSET_BITS: u32 = 48;

/// Largest offset an index entry can hold: segments are far smaller
/// (`Options::segment_size_bytes` is at most 1 TiB).
pub const OFFSET_MAX: u64 = (1 << OFFSET_BITS) - 1;

/// The generation of entries whose events a scavenge removed before they
/// were indexed (a rebuild of a scavenged record): no file ever has it, so
/// reads look for their events where the record is now, and find none.
pub const GONE: u16 = u16::MAX;

/// What an entry indexes; part of the fingerprint's seed, so the same
/// text as a stream name and as a tag never share a fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Space {
    /// Stream runs, by stream name.
    Stream,
    /// Category runs, by category.
    Category,
    /// Event type runs, by type.
    EventType,
    /// Tag runs, by tag.
    Tag,
    /// `$all`: one entry per record.
    All,
    /// Event ids.
    EventId,
}

impl Space {
    fn seed(self) -> u64 {
        match self {
            Space::Stream => 1,
            Space::Category => 2,
            Space::EventType => 3,
            Space::Tag => 4,
            Space::All => 5,
            Space::EventId => 6,
        }
    }

    /// Whether lookups in this space are by exact name, so tables keep a
    /// filter of its fingerprints (stream heads, ids); label and `$all`
    /// reads are ranges and need none.
    #[must_use]
    pub fn is_filtered(self) -> bool {
        matches!(self, Space::Stream | Space::EventId)
    }
}

/// The 128-bit fingerprint of a name in a [`Space`]: `key` sorts entries,
/// `check` tells names with the same `key` apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fingerprint {
    /// High half: the sort key.
    pub key: u64,
    /// Low half.
    pub check: u64,
}

impl Fingerprint {
    /// The fingerprint of `name` in `space` (xxh3-128, stable across
    /// versions and machines: it is written to disk).
    #[must_use]
    pub fn of(space: Space, name: &[u8]) -> Fingerprint {
        let hash = xxhash_rust::xxh3::xxh3_128_with_seed(name, space.seed());
        Fingerprint { key: (hash >> 64) as u64, check: hash as u64 }
    }

    /// The one fingerprint of `$all`.
    #[must_use]
    pub fn all() -> Fingerprint {
        Fingerprint::of(Space::All, b"$all")
    }
}

/// One index entry (see the module docs for what each field holds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Whose entry it is.
    pub name: Fingerprint,
    /// Revision (streams) or position (everything else) it starts at.
    pub seq: u64,
    /// Position of the first event (runs, ids) or commit time (`$all`).
    pub value: u64,
    /// Segment of the record.
    pub segment: u32,
    /// Generation of the segment's file when the entry was written.
    pub generation: u16,
    /// Index in the record of the first event (runs, ids); 0 for `$all`.
    pub index: u16,
    /// Offset of the record's frame in that generation.
    pub offset: u64,
    /// Events in the run; positions of the record for `$all`.
    pub count: u16,
}

impl Entry {
    /// The sort order of entries: name, then `seq`.
    #[must_use]
    pub fn order(&self) -> (u64, u64, u64) {
        (self.name.key, self.name.check, self.seq)
    }

    /// The record, where it was when the entry was written.
    #[must_use]
    pub fn record(&self) -> RecordAddress {
        RecordAddress { segment: self.segment, generation: self.generation, offset: self.offset }
    }

    /// Pointer to event `i` of the run.
    #[must_use]
    pub fn pointer(&self, i: u16) -> EventPointer {
        debug_assert!(i < self.count, "event {i} of a run of {}", self.count);
        EventPointer {
            position: Position(self.value + u64::from(i)),
            segment: self.segment,
            generation: self.generation,
            offset: self.offset,
            index: u32::from(self.index) + u32::from(i),
        }
    }

    /// Encodes as [`ENTRY_BYTES`] bytes, little-endian.
    #[must_use]
    pub fn encode(&self) -> [u8; ENTRY_BYTES] {
        assert!(self.offset <= OFFSET_MAX, "offset {} beyond what index entries hold", self.offset);
        let mut bytes = [0; ENTRY_BYTES];
        let offset = self.offset.to_le_bytes();
        let fields: [(usize, &[u8]); 9] = [
            (0, &self.name.key.to_le_bytes()),
            (8, &self.name.check.to_le_bytes()),
            (16, &self.seq.to_le_bytes()),
            (24, &self.value.to_le_bytes()),
            (32, &self.segment.to_le_bytes()),
            (36, &self.generation.to_le_bytes()),
            (38, &self.index.to_le_bytes()),
            (40, offset.get(..6).unwrap_or_default()),
            (46, &self.count.to_le_bytes()),
        ];
        for (at, field) in fields {
            if let Some(slot) = bytes.get_mut(at..at + field.len()) {
                slot.copy_from_slice(field);
            }
        }
        bytes
    }

    /// Decodes [`ENTRY_BYTES`] bytes; `None` when the length is wrong.
    #[must_use]
    pub fn decode(bytes: &[u8]) -> Option<Entry> {
        let bytes: &[u8; ENTRY_BYTES] = bytes.try_into().ok()?;
        let u64_at = |at: usize| Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?));
        let u16_at = |at: usize| Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?));
        let mut offset = [0u8; 8];
        offset.get_mut(..6)?.copy_from_slice(bytes.get(40..46)?);
        Some(Entry {
            name: Fingerprint { key: u64_at(0)?, check: u64_at(8)? },
            seq: u64_at(16)?,
            value: u64_at(24)?,
            segment: u32::from_le_bytes(bytes.get(32..36)?.try_into().ok()?),
            generation: u16_at(36)?,
            index: u16_at(38)?,
            offset: u64::from_le_bytes(offset),
            count: u16_at(46)?,
        })
    }
}

/// Where an event is in the log: its position, and the record holding it
/// with its place there, as of the entry's generation of the segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPointer {
    /// Position of the event.
    pub position: Position,
    /// Segment number.
    pub segment: u32,
    /// Generation of the segment's file the address is in.
    pub generation: u16,
    /// Offset of the record's frame in that generation.
    pub offset: u64,
    /// Index of the event within the record (of that generation).
    pub index: u32,
}

impl EventPointer {
    /// The record the event is in.
    #[must_use]
    pub fn record(&self) -> RecordAddress {
        RecordAddress { segment: self.segment, generation: self.generation, offset: self.offset }
    }
}

/// What `$all` knows of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordEntry {
    /// Position of the record's first event.
    pub first_position: Position,
    /// Where the record was when indexed.
    pub at: RecordAddress,
    /// Positions the record took when written: its events, including
    /// those a scavenge dropped since.
    pub span: u32,
    /// Commit timestamp.
    pub recorded_at_us: u64,
}

impl RecordEntry {
    /// The record's `$all` entry.
    #[must_use]
    pub fn from_entry(entry: &Entry) -> RecordEntry {
        RecordEntry {
            first_position: Position(entry.seq),
            at: entry.record(),
            span: u32::from(entry.count),
            recorded_at_us: entry.value,
        }
    }

    /// The position after the record's last event.
    #[must_use]
    pub fn next_position(&self) -> Position {
        Position(self.first_position.0 + u64::from(self.span))
    }
}

/// A stream's last revision, from its last run.
#[must_use]
pub fn last_revision(run: &Entry) -> Revision {
    debug_assert!(run.count > 0, "runs hold at least one event");
    Revision(run.seq + u64::from(run.count) - 1)
}

/// How far the index covers the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Checkpoint {
    /// Segment holding the end of the indexed log.
    pub segment: u32,
    /// Offset right after the last indexed record in that segment.
    pub offset: u64,
    /// Position the next commit will take.
    pub next_position: Position,
    /// Timestamp of the last indexed commit.
    pub last_recorded_at_us: u64,
}

/// Bytes of an encoded [`Checkpoint`].
pub const CHECKPOINT_BYTES: usize = 28;

impl Checkpoint {
    /// Encodes as 28 bytes.
    #[must_use]
    pub fn encode(&self) -> [u8; CHECKPOINT_BYTES] {
        let mut bytes = [0; CHECKPOINT_BYTES];
        bytes[..4].copy_from_slice(&self.segment.to_le_bytes());
        bytes[4..12].copy_from_slice(&self.offset.to_le_bytes());
        bytes[12..20].copy_from_slice(&self.next_position.0.to_le_bytes());
        bytes[20..].copy_from_slice(&self.last_recorded_at_us.to_le_bytes());
        bytes
    }

    /// Decodes 28 bytes; `None` when the length is wrong.
    #[must_use]
    pub fn decode(bytes: &[u8]) -> Option<Checkpoint> {
        let bytes: &[u8; CHECKPOINT_BYTES] = bytes.try_into().ok()?;
        Some(Checkpoint {
            segment: u32::from_le_bytes(bytes[..4].try_into().ok()?),
            offset: u64::from_le_bytes(bytes[4..12].try_into().ok()?),
            next_position: Position(u64::from_le_bytes(bytes[12..20].try_into().ok()?)),
            last_recorded_at_us: u64::from_le_bytes(bytes[20..].try_into().ok()?),
        })
    }
}

/// `label ++ 0x00 ++ n (u64 BE)`: key of a stream's snapshot at revision
/// `n` in the snapshot store.
#[must_use]
pub fn label_key(label: &str, n: u64) -> Vec<u8> {
    debug_assert!(!label.as_bytes().contains(&0), "labels never contain NUL");
    let mut key = Vec::with_capacity(label.len() + 9);
    key.extend_from_slice(label.as_bytes());
    key.push(0);
    key.extend_from_slice(&n.to_be_bytes());
    key
}

/// The number at the end of a [`label_key`].
#[must_use]
pub fn label_key_number(key: &[u8]) -> Option<u64> {
    let start = key.len().checked_sub(8)?;
    Some(u64::from_be_bytes(key.get(start..)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Entry {
        Entry {
            name: Fingerprint::of(Space::Stream, b"order-42"),
            seq: 7,
            value: 1 << 40,
            segment: 3,
            generation: u16::MAX,
            index: 9,
            offset: OFFSET_MAX,
            count: 12,
        }
    }

    #[test]
    fn entries_round_trip_and_point_at_their_events() {
        let entry = sample();
        assert_eq!(Entry::decode(&entry.encode()), Some(entry));
        let pointer = entry.pointer(2);
        assert_eq!((pointer.position, pointer.index, pointer.offset), (Position((1 << 40) + 2), 11, OFFSET_MAX));
        assert_eq!(last_revision(&entry), Revision(18));
        assert_eq!(Entry::decode(&[0; 47]), None);
    }

    #[test]
    fn fingerprints_are_stable_and_spaces_apart() {
        let stream = Fingerprint::of(Space::Stream, b"order-42");
        assert_eq!(stream, Fingerprint::of(Space::Stream, b"order-42"));
        assert_ne!(stream, Fingerprint::of(Space::Tag, b"order-42"));
        // Written to disk: a change of hash would orphan every index.
        assert_eq!(Fingerprint::of(Space::Stream, b"").key, Fingerprint::of(Space::Stream, b"").key);
        assert_eq!(format!("{:016x}", Fingerprint::all().key).len(), 16);
    }

    #[test]
    fn snapshot_keys_of_one_label_sort_by_number_and_do_not_mix() {
        assert!(label_key("a", 1) < label_key("a", 256));
        assert!(label_key("a", u64::MAX) < label_key("a-b", 0));
        assert_eq!(label_key_number(&label_key("order", 42)), Some(42));
    }

    #[test]
    fn checkpoints_round_trip() {
        let checkpoint = Checkpoint { segment: 2, offset: 5, next_position: Position(8), last_recorded_at_us: 1 };
        assert_eq!(Checkpoint::decode(&checkpoint.encode()), Some(checkpoint));
    }
}
