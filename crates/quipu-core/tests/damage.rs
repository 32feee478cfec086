//! Random damage to a closed store's last segment (a flipped bit, a cut, a
//! tail of garbage, with or without the index): the open either refuses,
//! naming the damaged file, or serves exactly what was acknowledged;
//! nothing acknowledged is dropped as if it were a torn write, nothing
//! damaged is served, and nothing panics. A proptest harness with a
//! bounded number of cases, so it runs with the suite (set
//! `PROPTEST_CASES` for a longer run).

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "a test: a panic is a failed test, with its message")]

mod common;

use common::{event, segment_paths, small_segments, write};
use proptest::prelude::*;
use quipu_core::{Direction, Error, ExpectedRevision, Options, RecordedEvent, Store};

/// What is done to the last segment.
#[derive(Debug, Clone)]
enum Damage {
    /// Flip one bit at this fraction of the file.
    Flip(f64, u8),
    /// Cut the file at this fraction of it.
    Cut(f64),
    /// Write these bytes right after the records (where zeros are).
    Garbage(Vec<u8>),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (0.0..1.0f64, 0..8u8).prop_map(|(at, bit)| Damage::Flip(at, bit)),
        (0.0..1.0f64).prop_map(Damage::Cut),
        proptest::collection::vec(any::<u8>(), 1..200).prop_map(Damage::Garbage),
    ]
}

/// End of the records of a segment file: the last byte other than zero,
/// plus the zeros of the last record's `u32` event count (1 to 3 events
/// per append here, so three zeros).
fn records_end(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|&b| b != 0).map_or(bytes.len(), |at| at + 4).min(bytes.len())
}

fn apply(path: &std::path::Path, damage: &Damage) {
    let mut bytes = std::fs::read(path).unwrap();
    let header = 32;
    match damage {
        Damage::Flip(at, bit) => {
            let at = (header + ((bytes.len() - header) as f64 * at) as usize).min(bytes.len() - 1);
            bytes[at] ^= 1 << bit;
        }
        Damage::Cut(at) => bytes.truncate(header + ((bytes.len() - header) as f64 * at) as usize),
        Damage::Garbage(garbage) => {
            let end = records_end(&bytes);
            bytes.resize(bytes.len().max(end + garbage.len()), 0);
            bytes[end..end + garbage.len()].copy_from_slice(garbage);
        }
    }
    std::fs::write(path, bytes).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn damage_is_refused_or_nothing_acknowledged_changes(
        appends in 1..40usize,
        preallocate in any::<bool>(),
        keep_index in any::<bool>(),
        damage in damage(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let options = Options { preallocate_bytes: if preallocate { 64 * 1024 } else { 0 }, ..small_segments() };
        let store = Store::open(dir.path(), options.clone()).unwrap();
        for n in 0..appends {
            let events = (0..1 + n % 3).map(|j| event("Changed", &format!("{{\"n\":{n},\"j\":{j}}}"), &[])).collect();
            write(&store, &format!("order-{}", n % 4), ExpectedRevision::Any, events);
        }
        let written: Vec<RecordedEvent> = store.read_all(None, Direction::Forwards, 10_000).unwrap();
        store.close().unwrap();
        if !keep_index {
            std::fs::remove_dir_all(dir.path().join("index")).unwrap();
        }
        let last = segment_paths(dir.path()).pop().unwrap();
        apply(&last, &damage);

        match Store::open(dir.path(), options) {
            Ok(store) => match store.read_all(None, Direction::Forwards, 10_000) {
                // Served: exactly what was acknowledged.
                Ok(read) => prop_assert_eq!(read, written, "{:?}", damage),
                // Behind the index checkpoint, damage is found by reads.
                Err(Error::Corrupt { segment, .. }) => prop_assert_eq!(segment, last),
                Err(other) => return Err(TestCaseError::fail(format!("{damage:?}: {other}"))),
            },
            Err(Error::Corrupt { segment, .. }) => prop_assert_eq!(segment, last, "{:?}", damage),
            Err(Error::IndexAheadOfLog { .. }) => prop_assert!(keep_index, "{:?}", damage),
            Err(other) => return Err(TestCaseError::fail(format!("{damage:?}: {other}"))),
        }
    }
}
