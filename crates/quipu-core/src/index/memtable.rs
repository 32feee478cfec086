//! The index's newest entries, in memory: everything indexed since the
//! last flush. The sequencer adds a group's entries with one lock; once
//! the memtable holds `Options::index_memtable_entries`, it is frozen and
//! the compactor writes it out as a table (see `super::table`), while a
//! fresh one takes new entries.
//!
//! Adding an entry is a hash-map probe and a push, a few tens of
//! nanoseconds: no ordering is kept but per name, where entries arrive
//! in log order anyway. Nothing here is written to disk: after a crash,
//! the log from the last table's checkpoint on is indexed again, so the
//! log is the only journal.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::entry::{Checkpoint, Entry, Fingerprint, Space};
use crate::position::Position;

/// Hashes a [`Fingerprint`] by its bits: it is a hash already.
#[derive(Debug, Default, Clone, Copy)]
pub struct FingerprintHasher(u64);

impl Hasher for FingerprintHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = self.0.rotate_left(29) ^ value;
    }
}

type ByName<V> = HashMap<Fingerprint, V, BuildHasherDefault<FingerprintHasher>>;

/// Entries in memory, by name.
#[derive(Debug, Default)]
pub struct Memtable {
    /// Stream, label and `$all` entries, each name's in ascending `seq`.
    runs: ByName<Vec<Entry>>,
    /// The first entry of each event id.
    ids: ByName<Entry>,
    /// Entries of ids already in `ids` (an id a later append used again).
    repeated_ids: Vec<Entry>,
    entries: usize,
    /// First position indexed here.
    first_position: Option<Position>,
    /// How far the log indexed here goes.
    checkpoint: Option<Checkpoint>,
}

impl Memtable {
    /// Adds one entry of `space`. Entries of one name come in ascending
    /// `seq` (log order).
    pub fn insert(&mut self, space: Space, entry: Entry) {
        self.entries += 1;
        if space == Space::EventId {
            if let Some(first) = self.ids.get(&entry.name) {
                debug_assert!(first.seq < entry.seq, "ids arrive in log order");
                self.repeated_ids.push(entry);
            } else {
                self.ids.insert(entry.name, entry);
            }
            return;
        }
        let runs = self.runs.entry(entry.name).or_default();
        debug_assert!(runs.last().is_none_or(|last| last.seq < entry.seq), "runs arrive in log order");
        runs.push(entry);
    }

    /// Records that the log up to `checkpoint` is indexed here, starting
    /// at `first_position` if nothing was before.
    pub fn cover(&mut self, first_position: Position, checkpoint: Checkpoint) {
        self.first_position.get_or_insert(first_position);
        self.checkpoint = Some(checkpoint);
    }

    /// Entries held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries
    }

    /// Whether nothing was indexed here.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// First position indexed here, if any.
    #[must_use]
    pub fn first_position(&self) -> Option<Position> {
        self.first_position
    }

    /// How far the log indexed here goes.
    #[must_use]
    pub fn checkpoint(&self) -> Option<Checkpoint> {
        self.checkpoint
    }

    /// Every entry of `name` (not ids), ascending.
    #[must_use]
    pub fn runs(&self, name: &Fingerprint) -> &[Entry] {
        self.runs.get(name).map_or(&[], Vec::as_slice)
    }

    /// Every entry of event id `name`, in log order.
    pub fn ids<'a>(&'a self, name: &'a Fingerprint) -> impl Iterator<Item = Entry> + 'a {
        let first = self.ids.get(name).copied();
        let repeats = first.into_iter().flat_map(move |_| self.repeated_ids.iter().filter(move |e| e.name == *name));
        first.into_iter().chain(repeats.copied())
    }

    /// Every entry, sorted as tables hold them (name, then `seq`), in
    /// `all` (cleared first; its memory is reused from flush to flush).
    pub fn sorted_into(&self, all: &mut Vec<Entry>) {
        all.clear();
        all.reserve(self.entries);
        all.extend(self.runs.values().flatten().copied());
        all.extend(self.ids.values().copied());
        all.extend(self.repeated_ids.iter().copied());
        all.sort_unstable_by_key(Entry::order);
        debug_assert_eq!(all.len(), self.entries);
    }

    /// Empties the memtable, keeping the memory of its maps for the next
    /// one (fresh memory costs page faults on every flush).
    pub fn clear(&mut self) {
        self.runs.clear();
        self.ids.clear();
        self.repeated_ids.clear();
        self.entries = 0;
        self.first_position = None;
        self.checkpoint = None;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn entry(space: Space, name: &str, seq: u64) -> Entry {
        Entry {
            name: Fingerprint::of(space, name.as_bytes()),
            seq,
            value: seq,
            segment: 0,
            generation: 0,
            index: 0,
            offset: 32,
            count: 1,
        }
    }

    #[test]
    fn entries_come_back_by_name_in_log_order_and_sorted_for_a_table() {
        let mut memtable = Memtable::default();
        for seq in 0..5 {
            memtable.insert(Space::Stream, entry(Space::Stream, "order-1", seq));
            memtable.insert(Space::Tag, entry(Space::Tag, "vip", seq * 2));
            memtable.insert(Space::EventId, entry(Space::EventId, &format!("id-{seq}"), seq));
        }
        memtable.insert(Space::EventId, entry(Space::EventId, "id-3", 9));
        assert_eq!(memtable.len(), 16);
        let order = Fingerprint::of(Space::Stream, b"order-1");
        assert_eq!(memtable.runs(&order).iter().map(|e| e.seq).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
        let id = Fingerprint::of(Space::EventId, b"id-3");
        assert_eq!(memtable.ids(&id).map(|e| e.seq).collect::<Vec<_>>(), [3, 9], "a reused id keeps both");
        assert!(memtable.runs(&Fingerprint::of(Space::Stream, b"order-2")).is_empty());
        let mut sorted = Vec::new();
        memtable.sorted_into(&mut sorted);
        assert_eq!(sorted.len(), 16);
        assert!(sorted.windows(2).all(|w| w[0].order() <= w[1].order()));
    }
}
