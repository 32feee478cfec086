//! A blocked Bloom filter over the names (fingerprints) a table holds,
//! kept in memory, so a lookup of a stream head or an event id skips the
//! tables that cannot hold it without reading them. Each name sets
//! [`PROBES`] bits in one 512-bit block (one cache line), so a lookup
//! touches one line: about 1% false positives at [`BITS_PER_NAME`] bits
//! per name, and never a false negative.

use super::entry::Fingerprint;

/// Bits of filter per name.
pub const BITS_PER_NAME: usize = 10;
/// Bits set per name, all in one block.
const PROBES: u32 = 7;
/// Words of a block: 512 bits.
const BLOCK_WORDS: usize = 8;

/// The filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    words: Vec<u64>,
}

impl Filter {
    /// An empty filter sized for `names` names.
    #[must_use]
    pub fn with_capacity(names: usize) -> Filter {
        let blocks = (names.max(1) * BITS_PER_NAME).div_ceil(BLOCK_WORDS * 64);
        Filter { words: vec![0; blocks * BLOCK_WORDS] }
    }

    /// Adds `name`.
    pub fn insert(&mut self, name: &Fingerprint) {
        let (block, mut bits) = self.locate(name);
        for _ in 0..PROBES {
            let bit = (bits & 511) as usize;
            if let Some(word) = self.words.get_mut(block + bit / 64) {
                *word |= 1 << (bit % 64);
            }
            bits >>= 9;
        }
    }

    /// Whether `name` may have been added (false: it surely was not).
    #[must_use]
    pub fn may_contain(&self, name: &Fingerprint) -> bool {
        let (block, mut bits) = self.locate(name);
        for _ in 0..PROBES {
            let bit = (bits & 511) as usize;
            let set = self.words.get(block + bit / 64).is_some_and(|word| word & (1 << (bit % 64)) != 0);
            if !set {
                return false;
            }
            bits >>= 9;
        }
        true
    }

    /// The first word of the name's block, and bits to pick probes from.
    fn locate(&self, name: &Fingerprint) -> (usize, u64) {
        let blocks = (self.words.len() / BLOCK_WORDS).max(1) as u64;
        let block = (name.key % blocks) as usize * BLOCK_WORDS;
        (block, name.check)
    }

    /// The filter's bytes (little-endian words).
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        self.words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    /// A filter from [`Filter::encode`]'s bytes; `None` when they cannot
    /// be one.
    #[must_use]
    pub fn decode(bytes: &[u8]) -> Option<Filter> {
        if bytes.is_empty() || !bytes.len().is_multiple_of(BLOCK_WORDS * 8) {
            return None;
        }
        let words = bytes.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect();
        Some(Filter { words })
    }

    /// Bytes it takes in memory.
    #[must_use]
    pub fn size_bytes(&self) -> usize {
        self.words.len() * 8
    }

    /// Most names it holds at its false-positive rate: at least the
    /// `names` it was made for.
    #[must_use]
    pub fn names_capacity(&self) -> usize {
        self.words.len() * 64 / BITS_PER_NAME
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::entry::Space;

    #[test]
    fn added_names_are_always_found_and_others_rarely() {
        let names: Vec<Fingerprint> =
            (0..10_000).map(|n| Fingerprint::of(Space::Stream, format!("s-{n}").as_bytes())).collect();
        let mut filter = Filter::with_capacity(names.len());
        for name in &names {
            filter.insert(name);
        }
        assert!(names.iter().all(|n| filter.may_contain(n)), "no false negatives");
        let strangers =
            (0..10_000).filter(|n| filter.may_contain(&Fingerprint::of(Space::Tag, format!("t-{n}").as_bytes())));
        assert!(strangers.count() < 300, "false positives stay near 1%");
        assert!(filter.names_capacity() >= names.len(), "a filter holds the names it was made for");
        assert_eq!(Filter::decode(&filter.encode()), Some(filter));
        assert_eq!(Filter::decode(&[1, 2, 3]), None);
    }
}
