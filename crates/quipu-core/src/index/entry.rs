//! Byte encodings of index keys and values. Keys are big-endian where they
//! must sort numerically; values are little-endian. Labels (stream names,
//! categories, types, tags) never contain NUL, so `label ++ 0x00 ++ n` keys
//! of one label are contiguous and sort by `n`.

use crate::log::segment::RecordAddress;
use crate::position::{Position, Revision};

/// Bits of an encoded offset field that hold the offset; the 16 above
/// hold the segment's generation (see [`pack_offset`]).
const OFFSET_BITS: u32 = 48;

/// Largest offset an index entry can hold (256 TiB): segments are far
/// smaller (`Options::segment_size_bytes` is at most 1 TiB).
pub const OFFSET_MAX: u64 = (1 << OFFSET_BITS) - 1;

/// Packs a segment generation and an offset into one `u64`: generation in
/// the top 16 bits. Entries written before scavenges existed decode as
/// generation 0, which is what their files are.
#[must_use]
pub fn pack_offset(generation: u16, offset: u64) -> u64 {
    assert!(offset <= OFFSET_MAX, "offset {offset} beyond what index entries hold");
    (u64::from(generation) << OFFSET_BITS) | offset
}

/// The generation and offset of a [`pack_offset`] value.
#[must_use]
pub fn unpack_offset(packed: u64) -> (u16, u64) {
    let generation = u16::try_from(packed >> OFFSET_BITS).unwrap_or(u16::MAX);
    (generation, packed & OFFSET_MAX)
}

/// Where an event is in the log: the record holding it and its place in
/// the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPointer {
    /// Segment number.
    pub segment: u32,
    /// Generation of the segment's file (0 until a scavenge rewrites it).
    pub generation: u16,
    /// Offset of the record's frame in the segment.
    pub offset: u64,
    /// Index of the event within the record, in log order.
    pub index: u32,
}

/// Bytes of an encoded [`EventPointer`].
pub const EVENT_POINTER_BYTES: usize = 16;

impl EventPointer {
    /// Encodes as 16 bytes.
    #[must_use]
    pub fn encode(&self) -> [u8; EVENT_POINTER_BYTES] {
        let mut bytes = [0; EVENT_POINTER_BYTES];
        bytes[..4].copy_from_slice(&self.segment.to_le_bytes());
        bytes[4..12].copy_from_slice(&pack_offset(self.generation, self.offset).to_le_bytes());
        bytes[12..].copy_from_slice(&self.index.to_le_bytes());
        bytes
    }

    /// The record the event is in.
    #[must_use]
    pub fn record(&self) -> RecordAddress {
        RecordAddress { segment: self.segment, generation: self.generation, offset: self.offset }
    }

    /// Decodes 16 bytes; `None` when the length is wrong.
    #[must_use]
    pub fn decode(bytes: &[u8]) -> Option<EventPointer> {
        let bytes: &[u8; EVENT_POINTER_BYTES] = bytes.try_into().ok()?;
        let (generation, offset) = unpack_offset(u64::from_le_bytes(bytes[4..12].try_into().ok()?));
        Some(EventPointer {
            segment: u32::from_le_bytes(bytes[..4].try_into().ok()?),
            generation,
            offset,
            index: u32::from_le_bytes(bytes[12..].try_into().ok()?),
        })
    }
}

/// A run of consecutive events of one record that share a label (a
/// stream, category, type or tag): the label's entry is keyed by the
/// run's first number (revision or position), and event `i` of the run has
/// number `first + i` and sits at index `index + i` of the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunEntry {
    /// Segment number.
    pub segment: u32,
    /// Generation of the segment's file.
    pub generation: u16,
    /// Offset of the record's frame in the segment.
    pub offset: u64,
    /// Index of the run's first event within the record.
    pub index: u32,
    /// Events in the run (at least 1).
    pub count: u32,
}

/// Bytes of an encoded [`RunEntry`].
pub const RUN_ENTRY_BYTES: usize = 20;

impl RunEntry {
    /// Encodes as 20 bytes.
    #[must_use]
    pub fn encode(&self) -> [u8; RUN_ENTRY_BYTES] {
        let mut bytes = [0; RUN_ENTRY_BYTES];
        bytes[..4].copy_from_slice(&self.segment.to_le_bytes());
        bytes[4..12].copy_from_slice(&pack_offset(self.generation, self.offset).to_le_bytes());
        bytes[12..16].copy_from_slice(&self.index.to_le_bytes());
        bytes[16..].copy_from_slice(&self.count.to_le_bytes());
        bytes
    }

    /// Decodes 20 bytes; `None` when the length is wrong or the run is
    /// empty.
    #[must_use]
    pub fn decode(bytes: &[u8]) -> Option<RunEntry> {
        let bytes: &[u8; RUN_ENTRY_BYTES] = bytes.try_into().ok()?;
        let (generation, offset) = unpack_offset(u64::from_le_bytes(bytes[4..12].try_into().ok()?));
        let run = RunEntry {
            segment: u32::from_le_bytes(bytes[..4].try_into().ok()?),
            generation,
            offset,
            index: u32::from_le_bytes(bytes[12..16].try_into().ok()?),
            count: u32::from_le_bytes(bytes[16..].try_into().ok()?),
        };
        (run.count > 0).then_some(run)
    }

    /// Pointer to event `i` of the run.
    #[must_use]
    pub fn pointer(&self, i: u32) -> EventPointer {
        debug_assert!(i < self.count, "event {i} of a run of {}", self.count);
        EventPointer { segment: self.segment, generation: self.generation, offset: self.offset, index: self.index + i }
    }
}

/// Index entry of one record in `$all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordEntry {
    /// Segment number.
    pub segment: u32,
    /// Generation of the segment's file.
    pub generation: u16,
    /// Offset of the record's frame.
    pub offset: u64,
    /// Positions the record took when written: its events, including
    /// those a scavenge dropped since.
    pub span: u32,
    /// Commit timestamp.
    pub recorded_at_us: u64,
}

impl RecordEntry {
    /// The record.
    #[must_use]
    pub fn record(&self) -> RecordAddress {
        RecordAddress { segment: self.segment, generation: self.generation, offset: self.offset }
    }

    /// Encodes as 24 bytes.
    #[must_use]
    pub fn encode(&self) -> [u8; 24] {
        let mut bytes = [0; 24];
        bytes[..4].copy_from_slice(&self.segment.to_le_bytes());
        bytes[4..12].copy_from_slice(&pack_offset(self.generation, self.offset).to_le_bytes());
        bytes[12..16].copy_from_slice(&self.span.to_le_bytes());
        bytes[16..].copy_from_slice(&self.recorded_at_us.to_le_bytes());
        bytes
    }

    /// Decodes 24 bytes; `None` when the length is wrong.
    #[must_use]
    pub fn decode(bytes: &[u8]) -> Option<RecordEntry> {
        let bytes: &[u8; 24] = bytes.try_into().ok()?;
        let (generation, offset) = unpack_offset(u64::from_le_bytes(bytes[4..12].try_into().ok()?));
        Some(RecordEntry {
            segment: u32::from_le_bytes(bytes[..4].try_into().ok()?),
            generation,
            offset,
            span: u32::from_le_bytes(bytes[12..16].try_into().ok()?),
            recorded_at_us: u64::from_le_bytes(bytes[16..].try_into().ok()?),
        })
    }
}

/// How far the index covers the log, stored with every index batch.
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

impl Checkpoint {
    /// Encodes as 28 bytes.
    #[must_use]
    pub fn encode(&self) -> [u8; 28] {
        let mut bytes = [0; 28];
        bytes[..4].copy_from_slice(&self.segment.to_le_bytes());
        bytes[4..12].copy_from_slice(&self.offset.to_le_bytes());
        bytes[12..20].copy_from_slice(&self.next_position.0.to_le_bytes());
        bytes[20..].copy_from_slice(&self.last_recorded_at_us.to_le_bytes());
        bytes
    }

    /// Decodes 28 bytes; `None` when the length is wrong.
    #[must_use]
    pub fn decode(bytes: &[u8]) -> Option<Checkpoint> {
        let bytes: &[u8; 28] = bytes.try_into().ok()?;
        Some(Checkpoint {
            segment: u32::from_le_bytes(bytes[..4].try_into().ok()?),
            offset: u64::from_le_bytes(bytes[4..12].try_into().ok()?),
            next_position: Position(u64::from_le_bytes(bytes[12..20].try_into().ok()?)),
            last_recorded_at_us: u64::from_le_bytes(bytes[20..].try_into().ok()?),
        })
    }
}

/// `label ++ 0x00 ++ n (u64 BE)`: key of a stream's revision or of a
/// category/type/tag position.
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

/// Key of a position in `$all`.
#[must_use]
pub fn position_key(position: Position) -> [u8; 8] {
    position.0.to_be_bytes()
}

/// The position of a [`position_key`].
#[must_use]
pub fn position_from_key(key: &[u8]) -> Option<Position> {
    Some(Position(u64::from_be_bytes(key.try_into().ok()?)))
}

/// Value of a stream head: its last revision.
#[must_use]
pub fn revision_value(revision: Revision) -> [u8; 8] {
    revision.0.to_le_bytes()
}

/// The revision of a [`revision_value`].
#[must_use]
pub fn revision_from_value(value: &[u8]) -> Option<Revision> {
    Some(Revision(u64::from_le_bytes(value.try_into().ok()?)))
}

/// Value of an event id entry: its position and pointer.
#[must_use]
pub fn id_value(position: Position, pointer: EventPointer) -> [u8; 24] {
    let mut bytes = [0; 24];
    bytes[..8].copy_from_slice(&position.0.to_le_bytes());
    bytes[8..].copy_from_slice(&pointer.encode());
    bytes
}

/// The position and pointer of an [`id_value`].
#[must_use]
pub fn id_from_value(value: &[u8]) -> Option<(Position, EventPointer)> {
    let position = Position(u64::from_le_bytes(value.get(..8)?.try_into().ok()?));
    Some((position, EventPointer::decode(value.get(8..)?)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_keys_of_one_label_sort_by_number_and_do_not_mix() {
        assert!(label_key("a", 1) < label_key("a", 256));
        assert!(label_key("a", u64::MAX) < label_key("a-b", 0));
        assert_eq!(label_key_number(&label_key("order", 42)), Some(42));
    }

    #[test]
    fn values_round_trip() {
        let pointer = EventPointer { segment: 3, generation: 2, offset: 1 << 40, index: 7 };
        assert_eq!(EventPointer::decode(&pointer.encode()), Some(pointer));
        let run = RunEntry { segment: 3, generation: u16::MAX, offset: OFFSET_MAX, index: 4, count: 12 };
        assert_eq!(RunEntry::decode(&run.encode()), Some(run));
        assert_eq!(run.pointer(2), EventPointer { segment: 3, generation: u16::MAX, offset: OFFSET_MAX, index: 6 });
        assert_eq!(RunEntry::decode(&RunEntry { count: 0, ..run }.encode()), None);
        let record = RecordEntry { segment: 1, generation: 1, offset: 32, span: 100, recorded_at_us: 9 };
        assert_eq!(RecordEntry::decode(&record.encode()), Some(record));
        let checkpoint = Checkpoint { segment: 2, offset: 5, next_position: Position(8), last_recorded_at_us: 1 };
        assert_eq!(Checkpoint::decode(&checkpoint.encode()), Some(checkpoint));
        assert_eq!(id_from_value(&id_value(Position(4), pointer)), Some((Position(4), pointer)));
    }

    #[test]
    fn entries_written_before_generations_decode_as_generation_0() {
        let mut old = [0u8; EVENT_POINTER_BYTES];
        old[..4].copy_from_slice(&5u32.to_le_bytes());
        old[4..12].copy_from_slice(&(1u64 << 33).to_le_bytes());
        let pointer = EventPointer::decode(&old).expect("16 bytes decode");
        assert_eq!((pointer.generation, pointer.offset), (0, 1 << 33));
    }
}
