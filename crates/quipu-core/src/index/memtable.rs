//! The index's newest entries, in memory: everything indexed since the
//! last flush. The sequencer adds a group's entries with one lock; once
//! the memtable holds `Options::index_memtable_entries`, or its maps
//! would grow past `Options::index_memtable_bytes`, it is frozen and the
//! compactor writes it out as a table (see `super::table`), while a fresh
//! one takes new entries.
//!
//! Adding an entry is a hash-map probe and a push, a few tens of
//! nanoseconds: no ordering is kept but per name, where entries arrive
//! in log order anyway. Most names of a memtable have one entry (a new
//! stream, an event id), so such a name keeps its entry inline, with no
//! allocation of its own: a run moves to a vector only when it grows.
//! Nothing here is written to disk: after a crash, the log from the last
//! table's checkpoint on is indexed again, so the log is the only journal.

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

/// Bytes of a map from fingerprints to `V` able to hold `capacity` items,
/// laid out as the standard map does: a power-of-two number of buckets at
/// most seven eighths full, each a slot and a control byte.
fn map_bytes<V>(capacity: usize) -> usize {
    let buckets = match capacity {
        0 => 0,
        1..4 => 4,
        4..8 => 8,
        _ => (capacity.saturating_mul(8) / 7).next_power_of_two(),
    };
    buckets * (std::mem::size_of::<(Fingerprint, V)>() + 1)
}

/// The entries of one name, in ascending `seq`: inline while there is
/// one (a vector of one would cost four entries' room and an allocation).
#[derive(Debug, Clone)]
enum Run {
    One(Entry),
    Many(Vec<Entry>),
}

// A name's slot stays one entry and a tag wide.
const _: () = assert!(std::mem::size_of::<Run>() <= std::mem::size_of::<Entry>() + 8);

impl Run {
    fn push(&mut self, entry: Entry) {
        debug_assert!(self.as_slice().last().is_none_or(|last| last.seq < entry.seq), "runs arrive in log order");
        match self {
            Run::One(first) => *self = Run::Many(vec![*first, entry]),
            Run::Many(entries) => entries.push(entry),
        }
    }

    /// Bytes it holds outside its slot.
    fn heap_bytes(&self) -> usize {
        match self {
            Run::One(_) => 0,
            Run::Many(entries) => entries.capacity() * std::mem::size_of::<Entry>(),
        }
    }

    fn as_slice(&self) -> &[Entry] {
        match self {
            Run::One(entry) => std::slice::from_ref(entry),
            Run::Many(entries) => entries,
        }
    }
}

/// Entries in memory, by name.
#[derive(Debug, Default)]
pub struct Memtable {
    /// Stream, label and `$all` entries, by name.
    runs: ByName<Run>,
    /// The first entry of each event id.
    ids: ByName<Entry>,
    /// Entries of ids already in `ids` (an id a later append used again).
    repeated_ids: Vec<Entry>,
    entries: usize,
    /// Bytes the runs of more than one entry hold.
    run_vector_bytes: usize,
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
        match self.runs.entry(entry.name) {
            std::collections::hash_map::Entry::Occupied(mut run) => {
                let before = run.get().heap_bytes();
                run.get_mut().push(entry);
                self.run_vector_bytes += run.get().heap_bytes() - before;
            }
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(Run::One(entry));
            }
        }
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

    /// Memory it holds, bytes: its maps' tables (estimated from their
    /// capacity the way the standard map lays them out) and vectors.
    #[must_use]
    pub fn bytes(&self) -> usize {
        self.bytes_with(self.runs.capacity(), self.ids.capacity())
    }

    /// Whether `names` more names (an upper bound: new stream runs,
    /// labels and event ids alike) can be added without the memory of
    /// its maps growing past `budget` bytes. A map that must grow doubles,
    /// so this is what keeps a memtable from doubling for its last few
    /// entries.
    #[must_use]
    pub fn takes(&self, names: usize, budget: usize) -> bool {
        let grown = |len: usize, capacity: usize| {
            if len + names <= capacity { capacity } else { (len + names).max(capacity + 1) }
        };
        let runs = grown(self.runs.len(), self.runs.capacity());
        let ids = grown(self.ids.len(), self.ids.capacity());
        self.bytes_with(runs, ids) <= budget
    }

    /// [`Memtable::bytes`] were its maps able to hold `runs` and `ids` names.
    fn bytes_with(&self, runs: usize, ids: usize) -> usize {
        map_bytes::<Run>(runs)
            + map_bytes::<Entry>(ids)
            + self.run_vector_bytes
            + self.repeated_ids.capacity() * std::mem::size_of::<Entry>()
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
        self.runs.get(name).map_or(&[], Run::as_slice)
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
        // Exactly: this buffer lives as long as the index, and a doubling
        // would keep twice a memtable's entries for good.
        all.reserve_exact(self.entries);
        all.extend(self.runs.values().flat_map(Run::as_slice).copied());
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
        self.run_vector_bytes = 0;
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
        memtable.insert(Space::Stream, entry(Space::Stream, "payment-1", 7));
        assert_eq!(memtable.len(), 17);
        let payment = Fingerprint::of(Space::Stream, b"payment-1");
        assert_eq!(memtable.runs(&payment).iter().map(|e| e.seq).collect::<Vec<_>>(), [7], "a name of one entry");
        let order = Fingerprint::of(Space::Stream, b"order-1");
        assert_eq!(memtable.runs(&order).iter().map(|e| e.seq).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
        let id = Fingerprint::of(Space::EventId, b"id-3");
        assert_eq!(memtable.ids(&id).map(|e| e.seq).collect::<Vec<_>>(), [3, 9], "a reused id keeps both");
        assert!(memtable.runs(&Fingerprint::of(Space::Stream, b"order-2")).is_empty());
        let mut sorted = Vec::new();
        memtable.sorted_into(&mut sorted);
        assert_eq!(sorted.len(), 17);
        assert!(sorted.windows(2).all(|w| w[0].order() <= w[1].order()));
    }

    #[test]
    fn a_memtable_takes_names_while_its_maps_fit_the_budget_and_refuses_a_doubling_past_it() {
        let mut memtable = Memtable::default();
        for n in 0..1000u64 {
            memtable.insert(Space::Stream, entry(Space::Stream, &format!("s-{n}"), 0));
            memtable.insert(Space::EventId, entry(Space::EventId, &format!("id-{n}"), n));
        }
        let bytes = memtable.bytes();
        let slots = std::mem::size_of::<(Fingerprint, Run)>() + std::mem::size_of::<(Fingerprint, Entry)>() + 2;
        assert!(bytes >= 1000 * slots, "{bytes} bytes hold 1000 names of each kind");
        assert!(memtable.takes(0, bytes), "nothing more fits what it holds");
        let room = memtable.runs.capacity().min(memtable.ids.capacity()) - 1000;
        assert!(memtable.takes(room, bytes), "names up to the maps' capacity need no more memory");
        assert!(!memtable.takes(room + 1, bytes), "one more name doubles a map");
        assert!(memtable.takes(room + 1, 2 * bytes + 1), "a budget for the doubling takes it");

        let name = Fingerprint::of(Space::Stream, b"s-0");
        memtable.insert(Space::Stream, entry(Space::Stream, "s-0", 1));
        assert_eq!(memtable.runs(&name).len(), 2);
        assert!(memtable.bytes() >= bytes + 2 * std::mem::size_of::<Entry>(), "a run of two counts its vector");
        memtable.clear();
        assert_eq!(memtable.bytes(), bytes, "an emptied memtable keeps its maps, not its runs' vectors");
    }
}
