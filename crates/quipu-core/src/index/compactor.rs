//! The index's background work, on two threads of its own:
//!
//! - the **flusher** writes each frozen memtable out as a level-0 table,
//!   publishes it (manifest first, then the in-memory layers) and drops
//!   the memtable;
//! - the **merger**, at a lower CPU priority so appends and reads come
//!   first on a busy machine, merges the oldest [`MERGE_FAN_IN`] tables of
//!   the lowest level that has that many into one table of the next
//!   level. Tables stay contiguous stretches of the log, levels never rise
//!   from older to newer, and there are at most `MERGE_FAN_IN - 1` tables
//!   per level: a lookup reads a handful of tables, and each entry is
//!   rewritten about `log4(entries / memtable)` times in all.
//!
//! Merges never decide anything: entries of adjacent stretches of the log
//! interleave by name, and no two share a name and a `seq`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::Inner;
use super::entry::Entry;
use super::layers::{Layers, SharedMemtable, read};
use super::manifest::Manifest;
use super::table::{Coverage, Table, TableScan, TableWriter};
use crate::error::Error;

/// Tables of one level merged at once.
pub const MERGE_FAN_IN: usize = 4;
/// Entries merged between two looks at the stop flag.
const MERGE_STOP_EVERY: u64 = 64 * 1024;
/// Nice value of the merger thread (the sequencer runs at 0).
const MERGER_NICENESS: i32 = 10;

/// Runs the flusher until the index stops.
pub fn run_flusher(inner: &Inner) {
    let mut sorted = Vec::new();
    while let Some(memtable) = next_frozen(inner) {
        if let Err(error) = flush(inner, &memtable, &mut sorted) {
            inner.fail(&error);
            return;
        }
        recycle(inner, memtable);
    }
}

/// Keeps the memory of a flushed memtable for the next one, unless a
/// lookup still holds it.
fn recycle(inner: &Inner, memtable: SharedMemtable) {
    let Ok(memtable) = Arc::try_unwrap(memtable) else { return };
    let mut memtable = memtable.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    memtable.clear();
    *inner.spare.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(memtable);
}

/// The oldest frozen memtable once there is one; `None` once stopping
/// with none left.
fn next_frozen(inner: &Inner) -> Option<SharedMemtable> {
    let mut work = inner.lock_work();
    loop {
        if let Some(memtable) = inner.layers().frozen.first() {
            return Some(Arc::clone(memtable));
        }
        if work.stop {
            return None;
        }
        work = inner.flush_due.wait(work).unwrap_or_else(std::sync::PoisonError::into_inner);
    }
}

fn flush(inner: &Inner, memtable: &SharedMemtable, sorted: &mut Vec<Entry>) -> Result<(), Error> {
    let coverage = {
        let memtable = read(memtable);
        let checkpoint = memtable.checkpoint().expect("a frozen memtable covers some of the log");
        let first_position = memtable.first_position().unwrap_or(checkpoint.next_position);
        memtable.sorted_into(sorted);
        Coverage { first_position, checkpoint }
    };
    let names_max = distinct_names(sorted);
    let table = write_table(inner, sorted.iter().copied().map(Ok), names_max, 0, coverage)?;
    publish(inner, |tables| tables.push(table), Some(memtable))
}

/// Distinct names of `sorted` (entries in order, so a name's entries are
/// side by side): what a table's filter is sized by. A stream with many
/// runs, or a category, type or `$all` with an entry per record, takes one
/// name; sizing by entries made filters two to ten times too large.
fn distinct_names(sorted: &[Entry]) -> usize {
    let changes = sorted.windows(2).filter(|pair| pair.first().map(|e| e.name) != pair.last().map(|e| e.name)).count();
    changes + usize::from(!sorted.is_empty())
}

/// Writes `entries` (in order) as a new table file.
fn write_table(
    inner: &Inner,
    entries: impl Iterator<Item = Result<Entry, Error>>,
    names_max: usize,
    level: u32,
    coverage: Coverage,
) -> Result<Arc<Table>, Error> {
    let number = inner.next_table.fetch_add(1, Ordering::Relaxed);
    let path = inner.tables_dir.join(super::table_file_name(number));
    let mut writer = TableWriter::create(&path, names_max)?;
    for (count, entry) in entries.enumerate() {
        if count as u64 % MERGE_STOP_EVERY == MERGE_STOP_EVERY - 1 && inner.lock_work().stop && level > 0 {
            drop(writer);
            remove(&path);
            return Err(Error::Closed);
        }
        writer.push(&entry?)?;
    }
    Ok(Arc::new(writer.finish(level, coverage)?))
}

fn remove(path: &std::path::Path) {
    if let Err(error) = std::fs::remove_file(path) {
        tracing::warn!(%error, file = %path.display(), "removing an index table");
    }
}

/// Applies `change` to the tables, drops the `flushed` memtable, writes
/// the manifest of the result, then makes it what lookups see. Only the
/// flusher and the merger change tables, one at a time; the sequencer may
/// freeze a memtable meanwhile, which is kept.
fn publish(
    inner: &Inner,
    change: impl FnOnce(&mut Vec<Arc<Table>>),
    flushed: Option<&SharedMemtable>,
) -> Result<(), Error> {
    let _publishing = inner.publishing.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut tables = inner.layers().tables.clone();
    change(&mut tables);
    let names: Vec<String> = tables.iter().map(|t| file_name(t.path())).collect();
    Manifest { tables: names }.write(&inner.tables_dir)?;
    let mut layers = inner.layers.write().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut next: Layers = (**layers).clone();
    next.tables = tables;
    if let Some(flushed) = flushed {
        next.frozen.retain(|m| !Arc::ptr_eq(m, flushed));
    }
    *layers = Arc::new(next);
    drop(layers);
    inner.notify(&inner.published);
    inner.notify(&inner.merge_due);
    Ok(())
}

fn file_name(path: &std::path::Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Runs the merger until the index stops.
pub fn run_merger(inner: &Inner) {
    if let Err(error) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), MERGER_NICENESS) {
        tracing::debug!(%error, "could not lower the index merger's priority");
    }
    while let Some(inputs) = next_merge(inner) {
        match merge(inner, &inputs) {
            Ok(()) => {}
            Err(Error::Closed) => return,
            Err(error) => {
                inner.fail(&error);
                return;
            }
        }
    }
}

/// The tables of the next merge once one is due; `None` once stopping.
fn next_merge(inner: &Inner) -> Option<Vec<Arc<Table>>> {
    let mut work = inner.lock_work();
    loop {
        if work.stop {
            return None;
        }
        if let Some(inputs) = merge_candidates(&inner.layers().tables) {
            return Some(inputs);
        }
        work = inner.merge_due.wait(work).unwrap_or_else(std::sync::PoisonError::into_inner);
    }
}

/// The oldest `MERGE_FAN_IN` tables of the lowest level that has as many
/// side by side.
fn merge_candidates(tables: &[Arc<Table>]) -> Option<Vec<Arc<Table>>> {
    let levels: Vec<u32> = tables.iter().map(|t| t.level()).collect();
    let start = merge_start(&levels)?;
    Some(tables.get(start..start + MERGE_FAN_IN)?.to_vec())
}

/// Where, in tables of these levels (oldest first), the next merge
/// starts.
fn merge_start(levels: &[u32]) -> Option<usize> {
    let mut best: Option<(u32, usize)> = None;
    let mut start = 0;
    while let Some(&level) = levels.get(start) {
        let run = levels.get(start..).unwrap_or_default().iter().take_while(|l| **l == level).count();
        if run >= MERGE_FAN_IN && best.is_none_or(|(lowest, _)| level < lowest) {
            best = Some((level, start));
        }
        start += run;
    }
    best.map(|(_, start)| start)
}

fn merge(inner: &Inner, inputs: &[Arc<Table>]) -> Result<(), Error> {
    let (first, last) = (inputs.first().expect("a merge has inputs"), inputs.last().expect("a merge has inputs"));
    let coverage = Coverage { first_position: first.coverage().first_position, checkpoint: last.coverage().checkpoint };
    let level = first.level() + 1;
    let entries = usize::try_from(inputs.iter().map(|t| t.entries()).sum::<u64>()).unwrap_or(usize::MAX);
    let names_max = inputs.iter().map(|t| t.names_capacity()).sum::<usize>().min(entries);
    let merged = KWayMerge::new(inputs.iter().map(|t| t.scan()).collect())?;
    let table = write_table(inner, merged, names_max, level, coverage)?;
    let paths: Vec<PathBuf> = inputs.iter().map(|t| t.path().to_owned()).collect();
    publish(
        inner,
        |tables| {
            let at = tables.iter().position(|t| Arc::ptr_eq(t, first)).expect("merged tables are published");
            tables.splice(at..at + inputs.len(), [table]);
        },
        None,
    )?;
    // Lookups holding the old tables keep their open files.
    for path in &paths {
        remove(path);
    }
    Ok(())
}

/// The entries of several tables in order.
struct KWayMerge<'a> {
    scans: Vec<TableScan<'a>>,
    heads: Vec<Option<Entry>>,
}

impl<'a> KWayMerge<'a> {
    fn new(mut scans: Vec<TableScan<'a>>) -> Result<KWayMerge<'a>, Error> {
        let heads = scans.iter_mut().map(TableScan::next_entry).collect::<Result<Vec<_>, _>>()?;
        Ok(KWayMerge { scans, heads })
    }

    fn advance(&mut self) -> Result<Option<Entry>, Error> {
        let smallest =
            self.heads.iter().enumerate().filter_map(|(i, head)| head.map(|e| (e.order(), i))).min().map(|(_, i)| i);
        let Some(i) = smallest else { return Ok(None) };
        let next = match self.scans.get_mut(i) {
            Some(scan) => scan.next_entry()?,
            None => None,
        };
        let slot = self.heads.get_mut(i).expect("heads and scans pair up");
        Ok(std::mem::replace(slot, next))
    }
}

impl Iterator for KWayMerge<'_> {
    type Item = Result<Entry, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        self.advance().transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::entry::{Fingerprint, Space};

    #[test]
    fn a_merge_takes_the_oldest_four_of_the_lowest_level_that_has_four() {
        assert_eq!(merge_start(&[2, 2, 1, 1, 1, 1, 0, 0, 0, 0, 0]), Some(6));
        assert_eq!(merge_start(&[1, 1, 1, 1, 0, 0]), Some(0));
        assert_eq!(merge_start(&[1, 1, 1, 0, 0, 0]), None);
        assert_eq!(merge_start(&[]), None);
    }

    #[test]
    fn filters_are_sized_by_names_not_entries() {
        let entry = |name: &str, seq: u64| Entry {
            name: Fingerprint::of(Space::Stream, name.as_bytes()),
            seq,
            value: seq,
            segment: 0,
            generation: 0,
            index: 0,
            offset: 0,
            count: 1,
        };
        let mut sorted: Vec<Entry> = ["a", "b", "c"].iter().flat_map(|n| (0..4).map(move |s| entry(n, s))).collect();
        sorted.sort_by_key(Entry::order);
        assert_eq!(distinct_names(&sorted), 3);
        assert_eq!(distinct_names(&sorted[..1]), 1);
        assert_eq!(distinct_names(&[]), 0);
    }
}
