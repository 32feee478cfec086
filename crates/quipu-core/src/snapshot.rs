//! Snapshots: a client's folded state of a stream at a revision, kept
//! apart from the log so a long stream loads from its newest snapshot plus
//! the events after it.
//!
//! What it promises:
//! - A snapshot is derived data: it lives in the index (keyspace
//!   `snapshots`), not in the log, is not fsynced, and deleting it (or the
//!   whole index) loses no event; a load then folds from the first event.
//! - [`Store::read_snapshot`] returns the newest snapshot at or below the
//!   wanted revision whose schema version is the wanted one: a snapshot
//!   written with another version of the state's shape is ignored.
//! - A snapshot can only be written at a revision the stream has, and at
//!   most `Options::append_bytes_max` bytes.

use crate::error::Error;
use crate::event::StreamName;
use crate::position::Revision;
use crate::store::Store;

/// Bytes before the data: schema version (u32 LE), write time (u64 LE).
const HEADER_BYTES: usize = 12;

/// A stream's state at a revision, as a client folded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The stream.
    pub stream: StreamName,
    /// The revision of the last event folded into it.
    pub revision: Revision,
    /// The version of the state's shape it was written with.
    pub schema_version: u32,
    /// The state, in the client's encoding.
    pub data: Vec<u8>,
    /// When it was written, µs since the Unix epoch.
    pub written_at_us: u64,
}

impl Snapshot {
    fn encode(&self) -> Vec<u8> {
        let mut value = Vec::with_capacity(HEADER_BYTES + self.data.len());
        value.extend_from_slice(&self.schema_version.to_le_bytes());
        value.extend_from_slice(&self.written_at_us.to_le_bytes());
        value.extend_from_slice(&self.data);
        value
    }

    fn decode(stream: &StreamName, revision: Revision, value: &[u8]) -> Result<Snapshot, Error> {
        let corrupt = || Error::Io {
            context: format!("reading the snapshot of {stream} at revision {}", revision.0),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "it is cut short; delete it and write another",
            ),
        };
        let version = value.get(..4).and_then(|b| b.try_into().ok()).ok_or_else(corrupt)?;
        let written = value.get(4..HEADER_BYTES).and_then(|b| b.try_into().ok()).ok_or_else(corrupt)?;
        Ok(Snapshot {
            stream: stream.clone(),
            revision,
            schema_version: u32::from_le_bytes(version),
            written_at_us: u64::from_le_bytes(written),
            data: value.get(HEADER_BYTES..).unwrap_or_default().to_vec(),
        })
    }
}

fn version_of(value: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(value.get(..4)?.try_into().ok()?))
}

impl Store {
    /// Stores `snapshot`, replacing one at the same revision.
    ///
    /// # Errors
    /// [`Error::SnapshotBeyondStream`] for a revision the stream does not
    /// have, [`Error::SnapshotTooLarge`], index errors.
    pub fn write_snapshot(&self, snapshot: &Snapshot) -> Result<(), Error> {
        let max = self.options().append_bytes_max;
        if snapshot.data.len() > max {
            return Err(Error::SnapshotTooLarge { bytes: snapshot.data.len(), max });
        }
        let last = self.stream_info(&snapshot.stream)?.last_revision;
        if last.is_none_or(|last| snapshot.revision > last) {
            return Err(Error::SnapshotBeyondStream {
                stream: snapshot.stream.clone(),
                revision: snapshot.revision,
                last,
            });
        }
        self.shared.index.put_snapshot(&snapshot.stream, snapshot.revision, snapshot.encode())
    }

    /// The newest snapshot of `stream` at or below `at_most` (`None`: any)
    /// written with `schema_version` (`None`: any version).
    ///
    /// # Errors
    /// Index errors; a stored snapshot cut short.
    pub fn read_snapshot(
        &self,
        stream: &StreamName,
        at_most: Option<Revision>,
        schema_version: Option<u32>,
    ) -> Result<Option<Snapshot>, Error> {
        let wanted = |value: &[u8]| schema_version.is_none_or(|v| version_of(value) == Some(v));
        let found = self.shared.index.find_snapshot(stream, at_most.unwrap_or(Revision(u64::MAX)), wanted)?;
        found.map(|(revision, value)| Snapshot::decode(stream, revision, &value)).transpose()
    }

    /// Every snapshot of `stream`, oldest first.
    ///
    /// # Errors
    /// Index errors; a stored snapshot cut short.
    pub fn list_snapshots(&self, stream: &StreamName) -> Result<Vec<Snapshot>, Error> {
        let stored = self.shared.index.snapshots(stream)?;
        stored.into_iter().map(|(revision, value)| Snapshot::decode(stream, revision, &value)).collect()
    }

    /// Deletes every snapshot of `stream` (its events stay); returns how
    /// many there were.
    ///
    /// # Errors
    /// Index errors.
    pub fn delete_snapshots(&self, stream: &StreamName) -> Result<u64, Error> {
        self.shared.index.delete_snapshots(stream)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::{AppendRequest, Direction, EventType, ExpectedRevision, Options, ProposedEvent};

    fn stream() -> StreamName {
        StreamName::new("account-1").expect("valid")
    }

    /// Sum of the events' amounts (one byte each) up to `revision`.
    fn fold(amounts: &[u8], revision: u64) -> u64 {
        amounts.iter().take(usize::try_from(revision + 1).expect("small")).map(|a| u64::from(*a)).sum()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// The newest matching snapshot plus the events after it folds to
        /// what the whole stream folds to, at every revision.
        #[test]
        fn snapshot_plus_tail_equals_the_full_fold(
            amounts in prop::collection::vec(any::<u8>(), 1..80),
            snapshots in prop::collection::vec((any::<prop::sample::Index>(), 1u32..3), 0..6),
            wanted_version in 1u32..3,
        ) {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = Store::open(dir.path(), Options::default()).expect("open");
            for amount in &amounts {
                let event = ProposedEvent::new(EventType::new("Deposited").expect("valid"), vec![*amount]);
                store.append(AppendRequest::to_stream(stream(), ExpectedRevision::Any, vec![event])).expect("append");
            }
            for (at, version) in &snapshots {
                let revision = at.index(amounts.len()) as u64;
                // A snapshot of another version holds a wrong state: it must never be used.
                let state = if *version == wanted_version { fold(&amounts, revision) } else { u64::MAX };
                let snapshot = Snapshot {
                    stream: stream(),
                    revision: Revision(revision),
                    schema_version: *version,
                    data: state.to_le_bytes().to_vec(),
                    written_at_us: 0,
                };
                store.write_snapshot(&snapshot).expect("write");
            }
            for revision in 0..amounts.len() as u64 {
                let found = store.read_snapshot(&stream(), Some(Revision(revision)), Some(wanted_version)).expect("read");
                let (mut state, from) = match &found {
                    Some(s) => (u64::from_le_bytes(s.data.as_slice().try_into().expect("8 bytes")), s.revision.0 + 1),
                    None => (0, 0),
                };
                if from <= revision {
                    let tail = store
                        .read_stream(&stream(), Some(Revision(from)), Direction::Forwards, 1000)
                        .expect("tail");
                    state += tail.iter().filter(|e| e.revision.0 <= revision).map(|e| e.data.iter().map(|b| u64::from(*b)).sum::<u64>()).sum::<u64>();
                }
                prop_assert_eq!(state, fold(&amounts, revision), "at revision {}", revision);
            }
        }
    }

    #[test]
    fn snapshots_beyond_the_stream_or_too_large_are_refused_and_deletes_keep_events() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), Options::default()).expect("open");
        let snapshot = |revision: u64, data: Vec<u8>| Snapshot {
            stream: stream(),
            revision: Revision(revision),
            schema_version: 1,
            data,
            written_at_us: 7,
        };
        assert!(matches!(
            store.write_snapshot(&snapshot(0, vec![1])),
            Err(Error::SnapshotBeyondStream { last: None, .. })
        ));
        let event = ProposedEvent::new(EventType::new("Deposited").expect("valid"), vec![5]);
        store.append(AppendRequest::to_stream(stream(), ExpectedRevision::Any, vec![event])).expect("append");
        assert!(matches!(store.write_snapshot(&snapshot(1, vec![1])), Err(Error::SnapshotBeyondStream { .. })));
        let huge = vec![0; store.options().append_bytes_max + 1];
        assert!(matches!(store.write_snapshot(&snapshot(0, huge)), Err(Error::SnapshotTooLarge { .. })));
        store.write_snapshot(&snapshot(0, vec![5])).expect("write");
        assert_eq!(store.list_snapshots(&stream()).expect("list"), vec![snapshot(0, vec![5])]);
        assert_eq!(store.delete_snapshots(&stream()).expect("delete"), 1);
        assert_eq!(store.read_snapshot(&stream(), None, None).expect("read"), None);
        assert_eq!(store.stream_info(&stream()).expect("info").last_revision, Some(Revision(0)), "the events stay");
    }
}
