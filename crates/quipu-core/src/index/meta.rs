//! What the index keeps that is not a table of entries, in an embedded
//! LSM store (fjall), small and rarely written:
//!
//! | keyspace | key | value |
//! | --- | --- | --- |
//! | `meta` | `generation` segment (u32 BE) | the segment's current file generation (u16), when above 0 |
//! | `meta` | `repointing` segment (u32 BE) | old and new generation of a scavenge left by an earlier version |
//! | `snapshots` | stream `\0` revision | a client's snapshot (see `crate::snapshot`) |
//!
//! Stores written before the index tables existed kept every entry here;
//! those keyspaces are dropped on open (the tables are rebuilt from the
//! log), and snapshots and markers are kept.

use std::collections::BTreeMap;
use std::path::Path;

use fjall::config::PinningPolicy;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::entry::{label_key, label_key_number};
use crate::error::Error;
use crate::event::StreamName;
use crate::position::Revision;

const GENERATION_PREFIX: &[u8] = b"generation";
const REPOINTING_PREFIX: &[u8] = b"repointing";
/// Keyspaces of the index before tables: entries now in tables.
const LEGACY_KEYSPACES: [&str; 7] = ["streams", "stream_events", "all", "categories", "types", "tags", "event_ids"];
/// The legacy coverage checkpoint, dropped with them.
const LEGACY_CHECKPOINT_KEY: &[u8] = b"checkpoint";

/// The metadata store.
pub struct Meta {
    db: Database,
    meta: Keyspace,
    snapshots: Keyspace,
}

impl std::fmt::Debug for Meta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Meta")
    }
}

fn bad_entry(what: &str) -> Error {
    Error::Io {
        context: format!("reading the index: a {what} entry does not decode"),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "delete the index directory to rebuild it"),
    }
}

impl Meta {
    /// Opens (or creates) the store in `dir` with a block cache of
    /// `cache_bytes`, dropping the keyspaces of the index before tables.
    ///
    /// # Errors
    /// Errors of the store.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Meta, Error> {
        let db = Database::builder(dir).cache_size(cache_bytes).open()?;
        for name in LEGACY_KEYSPACES {
            if db.keyspace_exists(name) {
                tracing::info!(keyspace = name, "dropping an index keyspace of an earlier version (rebuilt as tables)");
                let keyspace = db.keyspace(name, KeyspaceCreateOptions::default)?;
                db.delete_keyspace(keyspace)?;
            }
        }
        let open = |name: &str| -> Result<Keyspace, Error> {
            let options = || {
                KeyspaceCreateOptions::default()
                    .filter_block_pinning_policy(PinningPolicy::all(false))
                    .index_block_pinning_policy(PinningPolicy::all(false))
            };
            Ok(db.keyspace(name, options)?)
        };
        let meta = open("meta")?;
        meta.remove(LEGACY_CHECKPOINT_KEY)?;
        Ok(Meta { snapshots: open("snapshots")?, meta, db })
    }

    /// Segments whose current file generation is above 0, with it.
    ///
    /// # Errors
    /// Errors of the store; a marker that does not decode.
    pub fn generations(&self) -> Result<BTreeMap<u32, u16>, Error> {
        self.segment_markers(GENERATION_PREFIX, |value| Some(u16::from_le_bytes(value.try_into().ok()?)))
    }

    /// Records the current generation of each segment in `generations`.
    ///
    /// # Errors
    /// Errors of the store.
    pub fn set_generations(&self, generations: &BTreeMap<u32, u16>) -> Result<(), Error> {
        let mut batch = self.db.batch();
        for (&number, &generation) in generations {
            batch.insert(&self.meta, marker_key(GENERATION_PREFIX, number), generation.to_le_bytes().to_vec());
        }
        batch.commit()?;
        Ok(())
    }

    /// Scavenges an earlier version left between its intent and its
    /// marker: segment to (old, new generation).
    ///
    /// # Errors
    /// Errors of the store; a marker that does not decode.
    pub fn repointings(&self) -> Result<BTreeMap<u32, (u16, u16)>, Error> {
        self.segment_markers(REPOINTING_PREFIX, |value| {
            let old = u16::from_le_bytes(value.get(..2)?.try_into().ok()?);
            let new = u16::from_le_bytes(value.get(2..)?.try_into().ok()?);
            Some((old, new))
        })
    }

    /// Makes `generation` the current one of segment `number` (clearing
    /// an earlier version's intent) and syncs the store: after this the
    /// old generation's file may go.
    ///
    /// # Errors
    /// Errors of the store.
    pub fn set_generation(&self, number: u32, generation: u16) -> Result<(), Error> {
        let mut batch = self.db.batch();
        batch.insert(&self.meta, marker_key(GENERATION_PREFIX, number), generation.to_le_bytes().to_vec());
        batch.remove(&self.meta, marker_key(REPOINTING_PREFIX, number));
        batch.commit()?;
        self.persist()
    }

    fn segment_markers<T>(
        &self,
        prefix: &[u8],
        decode: impl Fn(&[u8]) -> Option<T>,
    ) -> Result<BTreeMap<u32, T>, Error> {
        let mut markers = BTreeMap::new();
        for guard in self.meta.prefix(prefix) {
            let (key, value) = guard.into_inner()?;
            let number = key.get(prefix.len()..).and_then(|b| <[u8; 4]>::try_from(b).ok());
            let (Some(number), Some(marker)) = (number, decode(&value)) else {
                return Err(bad_entry("segment marker"));
            };
            markers.insert(u32::from_be_bytes(number), marker);
        }
        Ok(markers)
    }

    /// Stores `value` as the snapshot of `stream` at `revision` (replacing
    /// one there); not fsynced.
    ///
    /// # Errors
    /// Errors of the store.
    pub fn put_snapshot(&self, stream: &StreamName, revision: Revision, value: Vec<u8>) -> Result<(), Error> {
        self.snapshots.insert(label_key(stream.as_str(), revision.0), value)?;
        Ok(())
    }

    /// The newest snapshot of `stream` at or below `at_most` whose value
    /// `wanted` accepts, with its revision.
    ///
    /// # Errors
    /// Errors of the store.
    pub fn find_snapshot(
        &self,
        stream: &StreamName,
        at_most: Revision,
        wanted: impl Fn(&[u8]) -> bool,
    ) -> Result<Option<(Revision, Vec<u8>)>, Error> {
        let range = label_key(stream.as_str(), 0)..=label_key(stream.as_str(), at_most.0);
        for guard in self.snapshots.range(range).rev() {
            let (key, value) = guard.into_inner()?;
            if wanted(&value) {
                let revision = label_key_number(&key).ok_or_else(|| bad_entry("snapshot key"))?;
                return Ok(Some((Revision(revision), value.to_vec())));
            }
        }
        Ok(None)
    }

    /// Every snapshot of `stream`, oldest first.
    ///
    /// # Errors
    /// Errors of the store.
    pub fn snapshots(&self, stream: &StreamName) -> Result<Vec<(Revision, Vec<u8>)>, Error> {
        let range = label_key(stream.as_str(), 0)..=label_key(stream.as_str(), u64::MAX);
        let mut found = Vec::new();
        for guard in self.snapshots.range(range) {
            let (key, value) = guard.into_inner()?;
            let revision = label_key_number(&key).ok_or_else(|| bad_entry("snapshot key"))?;
            found.push((Revision(revision), value.to_vec()));
        }
        Ok(found)
    }

    /// Deletes every snapshot of `stream`; returns how many there were.
    ///
    /// # Errors
    /// Errors of the store.
    pub fn delete_snapshots(&self, stream: &StreamName) -> Result<u64, Error> {
        let revisions: Vec<Revision> = self.snapshots(stream)?.into_iter().map(|(r, _)| r).collect();
        let mut batch = self.db.batch();
        for revision in &revisions {
            batch.remove(&self.snapshots, label_key(stream.as_str(), revision.0));
        }
        batch.commit()?;
        Ok(revisions.len() as u64)
    }

    /// Flushes the store's journal to disk.
    ///
    /// # Errors
    /// Errors of the store.
    pub fn persist(&self) -> Result<(), Error> {
        self.db.persist(PersistMode::SyncAll)?;
        Ok(())
    }
}

/// Key of a segment's marker.
fn marker_key(prefix: &[u8], number: u32) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(&number.to_be_bytes());
    key
}
