//! Stream heads the sequencer knows without asking the index: the last
//! revision of streams it wrote or looked up recently, so that deciding
//! an append to a busy stream costs a hash probe, not an index lookup
//! (which, for a stream last written before the newest table, reads a
//! block from disk).
//!
//! Only the sequencer uses it, and it is the only writer of heads, so a
//! cached head is always the stream's head: entries are added after the
//! group that moved them is durable and indexed, and a failed group
//! leaves the cache as it was. It holds at most `Options::head_cache_streams`
//! heads in two generations: a lookup finds a head in either and keeps it
//! in the newer one; when the newer one is full, the older one is dropped
//! (an approximation of least-recently-used eviction with no list to keep
//! up). A store opens with an empty cache.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use crate::event::StreamName;
use crate::index::entry::{Fingerprint, Space};
use crate::index::memtable::FingerprintHasher;
use crate::position::Revision;

type Heads = HashMap<Fingerprint, Revision, BuildHasherDefault<FingerprintHasher>>;

/// Recently used stream heads.
#[derive(Debug, Default)]
pub struct HeadCache {
    newer: Heads,
    older: Heads,
    /// Heads the newer generation takes before it becomes the older one.
    generation_max: usize,
}

impl HeadCache {
    /// A cache of at most `capacity` heads (0: none kept).
    #[must_use]
    pub fn new(capacity: usize) -> HeadCache {
        HeadCache { newer: Heads::default(), older: Heads::default(), generation_max: capacity / 2 }
    }

    /// The key of `stream`.
    #[must_use]
    pub fn key(stream: &StreamName) -> Fingerprint {
        Fingerprint::of(Space::Stream, stream.as_str().as_bytes())
    }

    /// The cached head of the stream with `key`.
    pub fn get(&mut self, key: &Fingerprint) -> Option<Revision> {
        if let Some(revision) = self.newer.get(key) {
            return Some(*revision);
        }
        let revision = self.older.remove(key)?;
        self.put(*key, revision);
        Some(revision)
    }

    /// Records that the stream with `key` ends at `revision`.
    pub fn put(&mut self, key: Fingerprint, revision: Revision) {
        if self.generation_max == 0 {
            return;
        }
        if self.newer.len() >= self.generation_max && !self.newer.contains_key(&key) {
            // The older generation's table, emptied, takes the new heads:
            // no allocation, and no second table growing beside two full ones.
            std::mem::swap(&mut self.newer, &mut self.older);
            self.newer.clear();
        }
        self.newer.insert(key, revision);
    }

    /// Heads held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.newer.len() + self.older.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn key(n: usize) -> Fingerprint {
        HeadCache::key(&StreamName::new(format!("s-{n}")).unwrap())
    }

    #[test]
    fn a_cache_never_answers_wrong_and_stays_within_its_capacity() {
        let mut cache = HeadCache::new(8);
        let mut model = BTreeMap::new();
        for step in 0..1000usize {
            let stream = (step * 7919) % 23;
            if step % 3 == 0 {
                let revision = Revision(step as u64);
                cache.put(key(stream), revision);
                model.insert(stream, revision);
            } else if let Some(revision) = cache.get(&key(stream)) {
                assert_eq!(Some(&revision), model.get(&stream), "a cached head is the last one put");
            }
            assert!(cache.len() <= 8, "at most the capacity");
        }
        let mut recent = HeadCache::new(8);
        recent.put(key(1), Revision(5));
        for n in 2..6 {
            recent.put(key(n), Revision(0));
        }
        assert_eq!(recent.get(&key(1)), Some(Revision(5)), "a head used recently survives a generation");
        assert!(HeadCache::new(0).get(&key(1)).is_none());
    }
}
