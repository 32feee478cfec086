//! What a lookup consults, oldest first: the tables, the frozen memtables
//! being written out, and the active memtable. Each covers a stretch of
//! the log after the one before it, so one name's entries, read layer by
//! layer, come in ascending revision or position with no merging. A
//! [`Layers`] is a snapshot: flushes and merges publish a new one, and a
//! lookup keeps the one it started with.

use std::sync::{Arc, RwLock, RwLockReadGuard};

use super::entry::{Entry, Fingerprint};
use super::memtable::Memtable;
use super::table::Table;
use crate::error::Error;
use crate::position::Position;
use crate::read::Direction;

/// A memtable behind the lock the sequencer takes to add a group.
pub type SharedMemtable = Arc<RwLock<Memtable>>;

/// Reads a memtable; a writer that panicked left nothing half-added that
/// matters (the log is the truth, and the store stops on such errors).
pub fn read(memtable: &SharedMemtable) -> RwLockReadGuard<'_, Memtable> {
    memtable.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The layers of the index at one moment.
#[derive(Debug, Clone)]
pub struct Layers {
    /// Tables, oldest first.
    pub tables: Vec<Arc<Table>>,
    /// Memtables frozen and being written out, oldest first.
    pub frozen: Vec<SharedMemtable>,
    /// The memtable taking new entries.
    pub active: SharedMemtable,
}

/// How to narrow a lookup by the stretch of the log each table covers:
/// names keyed by position (labels, `$all`, ids) can skip tables wholly
/// before or after the position asked for; stream runs are keyed by
/// revision and cannot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyed {
    /// `seq` is a revision.
    ByRevision,
    /// `seq` is a position.
    ByPosition,
}

impl Layers {
    /// Memtables, oldest first.
    pub fn memtables(&self) -> impl DoubleEndedIterator<Item = &SharedMemtable> {
        self.frozen.iter().chain(std::iter::once(&self.active))
    }

    /// Whether `table` can hold entries that matter to a read from `from`
    /// in `direction`.
    fn worth_reading(table: &Table, keyed: Keyed, from: u64, direction: Direction) -> bool {
        let coverage = table.coverage();
        match (keyed, direction) {
            (Keyed::ByRevision, _) => true,
            (Keyed::ByPosition, Direction::Forwards) => coverage.checkpoint.next_position > Position(from),
            (Keyed::ByPosition, Direction::Backwards) => coverage.first_position <= Position(from),
        }
    }

    /// Entries of `name`: going forwards, the one holding `from` (its
    /// `seq` at or before `from`) and those after, ascending, stopping
    /// once `max` of them reach past `from`; going backwards, those with
    /// `seq` at or before `from`, descending, at most `max`.
    ///
    /// # Errors
    /// Errors reading a table.
    pub fn entries_of(
        &self,
        name: &Fingerprint,
        keyed: Keyed,
        from: u64,
        direction: Direction,
        max: usize,
    ) -> Result<Vec<Entry>, Error> {
        let mut out = Vec::new();
        match direction {
            Direction::Forwards => {
                let reaching = |out: &[Entry]| out.iter().filter(|e| e.seq + u64::from(e.count) > from).count();
                for table in self.tables.iter().filter(|t| Self::worth_reading(t, keyed, from, direction)) {
                    let wanted = max.saturating_sub(reaching(&out));
                    if wanted == 0 {
                        return Ok(out);
                    }
                    // One more: a layer's first entry may end before `from`.
                    table.entries_of(name, from, direction, wanted + 1, &mut out)?;
                }
                for memtable in self.memtables() {
                    let wanted = max.saturating_sub(reaching(&out));
                    if wanted == 0 {
                        break;
                    }
                    let memtable = read(memtable);
                    let runs = memtable.runs(name);
                    let start = runs.partition_point(|e| e.seq <= from).saturating_sub(1);
                    out.extend(runs.get(start..).unwrap_or_default().iter().take(wanted + 1));
                }
            }
            Direction::Backwards => {
                for memtable in self.memtables().rev() {
                    let memtable = read(memtable);
                    let runs = memtable.runs(name);
                    let end = runs.partition_point(|e| e.seq <= from);
                    out.extend(runs.get(..end).unwrap_or_default().iter().rev().take(max - out.len()));
                    if out.len() >= max {
                        return Ok(out);
                    }
                }
                for table in self.tables.iter().rev().filter(|t| Self::worth_reading(t, keyed, from, direction)) {
                    table.entries_of(name, from, direction, max - out.len(), &mut out)?;
                    if out.len() >= max {
                        break;
                    }
                }
            }
        }
        Ok(out)
    }

    /// The newest entry of `name` (a stream's last run).
    ///
    /// # Errors
    /// Errors reading a table.
    pub fn last_of(&self, name: &Fingerprint) -> Result<Option<Entry>, Error> {
        Ok(self.entries_of(name, Keyed::ByRevision, u64::MAX, Direction::Backwards, 1)?.pop())
    }

    /// Every entry of event id `name`, oldest first, at most `max`.
    ///
    /// # Errors
    /// Errors reading a table.
    pub fn ids_of(&self, name: &Fingerprint, max: usize) -> Result<Vec<Entry>, Error> {
        let mut out = Vec::new();
        for table in &self.tables {
            table.entries_of(name, 0, Direction::Forwards, max - out.len(), &mut out)?;
            if out.len() >= max {
                return Ok(out);
            }
        }
        for memtable in self.memtables() {
            out.extend(read(memtable).ids(name).take(max - out.len()));
        }
        Ok(out)
    }
}
