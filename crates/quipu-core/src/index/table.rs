//! A table: an immutable run of index entries on disk, sorted by name and
//! `seq` (see `super::entry`), covering one contiguous stretch of the log.
//! A frozen memtable becomes a table; tables are merged into larger ones
//! (see `super::compactor`); the manifest says which tables make up the
//! index (see `super::manifest`).
//!
//! File layout (little-endian):
//! ```text
//! header, 128 bytes: b"QUIPUIDX", u32 format version, u32 level,
//!   u64 entries, u32 blocks, u64 first position covered, checkpoint (28 bytes),
//!   u64 fences offset, u64 filter offset, u64 filter bytes, u32 fences crc,
//!   u32 filter crc, zeros, u32 crc32c of the first 124 bytes
//! blocks, 4096 bytes each: up to 85 entries of 48 bytes, zeros,
//!   u32 entries in the block, u32 crc32c of the block's first 4092 bytes
//! fences: the (key, check, seq) of each block's first entry, 24 bytes each
//! filter: see `super::filter`
//! ```
//! The fences and the filter stay in memory (about 1.6 bytes per entry);
//! blocks are read with `pread` when a lookup needs them, and checked
//! against their CRC. A table that does not check is reported with the
//! advice to delete the index directory, which is rebuilt from the log.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::entry::{CHECKPOINT_BYTES, Checkpoint, ENTRY_BYTES, Entry, Fingerprint};
use super::filter::Filter;
use crate::error::Error;
use crate::position::Position;
use crate::read::Direction;

/// Version of the table file format written by this build.
pub const TABLE_FORMAT_VERSION: u32 = 1;
const MAGIC: &[u8; 8] = b"QUIPUIDX";
const HEADER_BYTES: usize = 128;
/// Bytes of a block.
const BLOCK_BYTES: usize = 4096;
/// Entries a block holds.
const BLOCK_ENTRIES: usize = (BLOCK_BYTES - 8) / ENTRY_BYTES;
/// Blocks buffered per write while a table is written.
const WRITE_BLOCKS: usize = 256;
/// Blocks read at a time by a full scan.
const SCAN_BLOCKS: usize = 256;

/// The sort order of entries, as stored in fences.
type Order = (u64, u64, u64);

/// The stretch of the log a table (or memtable) indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coverage {
    /// Position of the first event of the stretch.
    pub first_position: Position,
    /// Where the stretch ends.
    pub checkpoint: Checkpoint,
}

/// An open table.
#[derive(Debug)]
pub struct Table {
    path: PathBuf,
    file: File,
    level: u32,
    entries: u64,
    coverage: Coverage,
    fences: Vec<Order>,
    filter: Filter,
}

fn corrupt(path: &Path, what: &str) -> Error {
    Error::Io {
        context: format!("reading index table {}: {what}", path.display()),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "delete the index directory to rebuild it"),
    }
}

fn read_at(file: &File, path: &Path, buffer: &mut [u8], offset: u64) -> Result<(), Error> {
    file.read_exact_at(buffer, offset).map_err(Error::io(format!("reading index table {}", path.display())))
}

impl Table {
    /// Opens the table at `path`, reading its header, fences and filter.
    ///
    /// # Errors
    /// I/O errors; a file that is not a whole table of this format.
    pub fn open(path: &Path) -> Result<Table, Error> {
        let file = File::open(path).map_err(Error::io(format!("opening index table {}", path.display())))?;
        let mut header = [0u8; HEADER_BYTES];
        read_at(&file, path, &mut header, 0)?;
        let field = |at: usize, len: usize| header.get(at..at + len).unwrap_or_default();
        let u32_at = |at: usize| u32::from_le_bytes(field(at, 4).try_into().unwrap_or([0; 4]));
        let u64_at = |at: usize| u64::from_le_bytes(field(at, 8).try_into().unwrap_or([0; 8]));
        if field(0, 8) != MAGIC || crc32c::crc32c(field(0, 124)) != u32_at(124) {
            return Err(corrupt(path, "bad header"));
        }
        if u32_at(8) != TABLE_FORMAT_VERSION {
            return Err(corrupt(path, &format!("unknown format version {}", u32_at(8))));
        }
        let blocks = u32_at(24) as usize;
        let checkpoint = Checkpoint::decode(field(36, CHECKPOINT_BYTES)).ok_or_else(|| corrupt(path, "bad header"))?;
        let coverage = Coverage { first_position: Position(u64_at(28)), checkpoint };
        let mut fence_bytes = vec![0u8; blocks * 24];
        read_at(&file, path, &mut fence_bytes, u64_at(64))?;
        if crc32c::crc32c(&fence_bytes) != u32_at(88) {
            return Err(corrupt(path, "bad fences"));
        }
        let fences = fence_bytes.chunks_exact(24).map(decode_order).collect();
        let mut filter_bytes = vec![0u8; usize::try_from(u64_at(80)).unwrap_or(0)];
        read_at(&file, path, &mut filter_bytes, u64_at(72))?;
        if crc32c::crc32c(&filter_bytes) != u32_at(92) {
            return Err(corrupt(path, "bad filter"));
        }
        let filter = Filter::decode(&filter_bytes).ok_or_else(|| corrupt(path, "bad filter"))?;
        let (level, entries) = (u32_at(12), u64_at(16));
        Ok(Table { path: path.to_owned(), file, level, entries, coverage, fences, filter })
    }

    /// The file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Merge level: 0 for a flushed memtable, one more for each merge.
    #[must_use]
    pub fn level(&self) -> u32 {
        self.level
    }

    /// Entries held.
    #[must_use]
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// The stretch of the log it indexes.
    #[must_use]
    pub fn coverage(&self) -> Coverage {
        self.coverage
    }

    /// Most distinct names its filter holds at its false-positive rate (at
    /// least the names it holds): what a merge of it sizes its filter by.
    #[must_use]
    pub fn names_capacity(&self) -> usize {
        self.filter.names_capacity()
    }

    /// Bytes its fences and filter take in memory.
    #[must_use]
    pub fn memory_bytes(&self) -> usize {
        self.fences.len() * std::mem::size_of::<Order>() + self.filter.size_bytes()
    }

    /// Whether `name` may have entries here (false: surely not).
    #[must_use]
    pub fn may_contain(&self, name: &Fingerprint) -> bool {
        self.filter.may_contain(name)
    }

    /// The entries of block `block`.
    fn block(&self, block: usize) -> Result<Vec<Entry>, Error> {
        let mut bytes = vec![0u8; BLOCK_BYTES];
        read_at(&self.file, &self.path, &mut bytes, (HEADER_BYTES + block * BLOCK_BYTES) as u64)?;
        decode_block(&bytes).ok_or_else(|| corrupt(&self.path, &format!("block {block} fails its checksum")))
    }

    /// The block holding the last entry at or before `target`, and that
    /// entry's index in it (`None`: every entry is after `target`).
    fn floor(&self, target: Order) -> Result<Option<(usize, Vec<Entry>, usize)>, Error> {
        let after = self.fences.partition_point(|fence| *fence <= target);
        let Some(block) = after.checked_sub(1) else {
            return Ok(None);
        };
        let entries = self.block(block)?;
        let at = entries.partition_point(|e| e.order() <= target);
        debug_assert!(at > 0, "the block's first entry is its fence");
        Ok(at.checked_sub(1).map(|i| (block, entries, i)))
    }

    /// Up to `max` entries of `name`: going forwards, the one holding
    /// `from` (the last at or before it) and those after; going
    /// backwards, those at or before `from`, newest first.
    ///
    /// # Errors
    /// I/O errors; a block that fails its checksum.
    pub fn entries_of(
        &self,
        name: &Fingerprint,
        from: u64,
        direction: Direction,
        max: usize,
        out: &mut Vec<Entry>,
    ) -> Result<(), Error> {
        if max == 0 || !self.may_contain(name) {
            return Ok(());
        }
        let target = (name.key, name.check, from);
        let Some((mut block, mut entries, floor)) = self.floor(target)? else {
            return match direction {
                Direction::Forwards => self.collect_forwards(name, 0, Vec::new(), 0, max, out),
                Direction::Backwards => Ok(()),
            };
        };
        match direction {
            Direction::Forwards => {
                let start = if entries.get(floor).is_some_and(|e| e.name == *name) { floor } else { floor + 1 };
                self.collect_forwards(name, block, entries, start, max, out)
            }
            Direction::Backwards => {
                let mut at = Some(floor);
                let taken = out.len() + max;
                loop {
                    while let Some(i) = at {
                        match entries.get(i) {
                            Some(entry) if entry.name == *name && out.len() < taken => out.push(*entry),
                            _ => return Ok(()),
                        }
                        at = i.checked_sub(1);
                    }
                    let Some(previous) = block.checked_sub(1) else { return Ok(()) };
                    block = previous;
                    entries = self.block(block)?;
                    at = entries.len().checked_sub(1);
                }
            }
        }
    }

    /// Pushes entries of `name` from `start` in `entries` (block `block`)
    /// on, across blocks, until another name or `max` of them.
    fn collect_forwards(
        &self,
        name: &Fingerprint,
        mut block: usize,
        mut entries: Vec<Entry>,
        mut start: usize,
        max: usize,
        out: &mut Vec<Entry>,
    ) -> Result<(), Error> {
        if entries.is_empty() {
            entries = self.block(block)?;
        }
        let taken = out.len() + max;
        loop {
            for entry in entries.get(start..).unwrap_or_default() {
                if entry.name != *name || out.len() >= taken {
                    return Ok(());
                }
                out.push(*entry);
            }
            block += 1;
            if block >= self.fences.len() {
                return Ok(());
            }
            entries = self.block(block)?;
            start = 0;
        }
    }

    /// Every entry, in order, read a few hundred blocks at a time.
    #[must_use]
    pub fn scan(&self) -> TableScan<'_> {
        TableScan { table: self, next_block: 0, buffered: Vec::new(), at: 0 }
    }
}

/// A sequential read of a whole table (for merges).
#[derive(Debug)]
pub struct TableScan<'a> {
    table: &'a Table,
    next_block: usize,
    buffered: Vec<Entry>,
    at: usize,
}

impl TableScan<'_> {
    /// The next entry; `None` at the end.
    ///
    /// # Errors
    /// I/O errors; a block that fails its checksum.
    pub fn next_entry(&mut self) -> Result<Option<Entry>, Error> {
        if self.at >= self.buffered.len() {
            self.refill()?;
        }
        let entry = self.buffered.get(self.at).copied();
        self.at += 1;
        Ok(entry)
    }

    fn refill(&mut self) -> Result<(), Error> {
        self.buffered.clear();
        self.at = 0;
        let blocks = (self.table.fences.len() - self.next_block.min(self.table.fences.len())).min(SCAN_BLOCKS);
        if blocks == 0 {
            return Ok(());
        }
        let mut bytes = vec![0u8; blocks * BLOCK_BYTES];
        let offset = (HEADER_BYTES + self.next_block * BLOCK_BYTES) as u64;
        read_at(&self.table.file, &self.table.path, &mut bytes, offset)?;
        for (i, block) in bytes.chunks_exact(BLOCK_BYTES).enumerate() {
            let entries = decode_block(block).ok_or_else(|| {
                corrupt(&self.table.path, &format!("block {} fails its checksum", self.next_block + i))
            })?;
            self.buffered.extend(entries);
        }
        self.next_block += blocks;
        Ok(())
    }
}

/// Writes a table from entries given in order.
#[derive(Debug)]
pub struct TableWriter {
    path: PathBuf,
    file: File,
    /// Whole blocks not yet written.
    pending: Vec<u8>,
    /// The block being filled.
    block: Vec<u8>,
    in_block: usize,
    blocks: usize,
    fences: Vec<Order>,
    filter: Filter,
    entries: u64,
    last: Option<Entry>,
}

impl TableWriter {
    /// Starts a table at `path` (which must not exist) for at most
    /// `names_max` distinct names.
    ///
    /// # Errors
    /// I/O errors creating the file.
    pub fn create(path: &Path, names_max: usize) -> Result<TableWriter, Error> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(Error::io(format!("creating index table {}", path.display())))?;
        Ok(TableWriter {
            path: path.to_owned(),
            file,
            pending: Vec::with_capacity(WRITE_BLOCKS * BLOCK_BYTES),
            block: vec![0; BLOCK_BYTES],
            in_block: 0,
            blocks: 0,
            fences: Vec::new(),
            filter: Filter::with_capacity(names_max),
            entries: 0,
            last: None,
        })
    }

    /// Adds `entry`, which must sort after the one before.
    ///
    /// # Errors
    /// I/O errors writing a full buffer of blocks.
    pub fn push(&mut self, entry: &Entry) -> Result<(), Error> {
        assert!(self.last.is_none_or(|last| last.order() < entry.order()), "table entries are added in order");
        if self.last.is_none_or(|last| last.name != entry.name) {
            self.filter.insert(&entry.name);
        }
        if self.in_block == 0 {
            self.fences.push(entry.order());
        }
        let at = self.in_block * ENTRY_BYTES;
        if let Some(slot) = self.block.get_mut(at..at + ENTRY_BYTES) {
            slot.copy_from_slice(&entry.encode());
        }
        self.in_block += 1;
        self.entries += 1;
        self.last = Some(*entry);
        if self.in_block == BLOCK_ENTRIES {
            self.seal_block()?;
        }
        Ok(())
    }

    fn seal_block(&mut self) -> Result<(), Error> {
        let count = u32::try_from(self.in_block).unwrap_or(0);
        if let Some(tail) = self.block.get_mut(BLOCK_BYTES - 8..BLOCK_BYTES - 4) {
            tail.copy_from_slice(&count.to_le_bytes());
        }
        let crc = crc32c::crc32c(self.block.get(..BLOCK_BYTES - 4).unwrap_or_default());
        if let Some(tail) = self.block.get_mut(BLOCK_BYTES - 4..) {
            tail.copy_from_slice(&crc.to_le_bytes());
        }
        self.pending.extend_from_slice(&self.block);
        self.block.fill(0);
        self.in_block = 0;
        self.blocks += 1;
        if self.pending.len() >= WRITE_BLOCKS * BLOCK_BYTES {
            self.write_pending()?;
        }
        Ok(())
    }

    fn write_pending(&mut self) -> Result<(), Error> {
        let offset = (HEADER_BYTES + self.blocks * BLOCK_BYTES - self.pending.len()) as u64;
        self.file
            .write_all_at(&self.pending, offset)
            .map_err(Error::io(format!("writing index table {}", self.path.display())))?;
        self.pending.clear();
        Ok(())
    }

    /// Writes the rest, the fences, the filter and the header, syncs the
    /// file, and opens it as a table of `level` covering `coverage`.
    ///
    /// # Errors
    /// I/O errors.
    pub fn finish(mut self, level: u32, coverage: Coverage) -> Result<Table, Error> {
        if self.in_block > 0 {
            self.seal_block()?;
        }
        self.write_pending()?;
        let fences: Vec<u8> = self.fences.iter().flat_map(|f| encode_order(*f)).collect();
        let filter = self.filter.encode();
        let fences_offset = (HEADER_BYTES + self.blocks * BLOCK_BYTES) as u64;
        let filter_offset = fences_offset + fences.len() as u64;
        let context = || format!("writing index table {}", self.path.display());
        self.file.write_all_at(&fences, fences_offset).map_err(Error::io(context()))?;
        self.file.write_all_at(&filter, filter_offset).map_err(Error::io(context()))?;
        let mut header = [0u8; HEADER_BYTES];
        let fields: [(usize, &[u8]); 12] = [
            (0, MAGIC),
            (8, &TABLE_FORMAT_VERSION.to_le_bytes()),
            (12, &level.to_le_bytes()),
            (16, &self.entries.to_le_bytes()),
            (24, &u32::try_from(self.blocks).unwrap_or(u32::MAX).to_le_bytes()),
            (28, &coverage.first_position.0.to_le_bytes()),
            (36, &coverage.checkpoint.encode()),
            (64, &fences_offset.to_le_bytes()),
            (72, &filter_offset.to_le_bytes()),
            (80, &(filter.len() as u64).to_le_bytes()),
            (88, &crc32c::crc32c(&fences).to_le_bytes()),
            (92, &crc32c::crc32c(&filter).to_le_bytes()),
        ];
        for (at, bytes) in fields {
            if let Some(slot) = header.get_mut(at..at + bytes.len()) {
                slot.copy_from_slice(bytes);
            }
        }
        let crc = crc32c::crc32c(header.get(..124).unwrap_or_default());
        if let Some(slot) = header.get_mut(124..) {
            slot.copy_from_slice(&crc.to_le_bytes());
        }
        self.file.write_all_at(&header, 0).map_err(Error::io(context()))?;
        self.file.sync_all().map_err(Error::io(context()))?;
        Table::open(&self.path)
    }
}

fn encode_order((key, check, seq): Order) -> [u8; 24] {
    let mut bytes = [0u8; 24];
    bytes[..8].copy_from_slice(&key.to_le_bytes());
    bytes[8..16].copy_from_slice(&check.to_le_bytes());
    bytes[16..].copy_from_slice(&seq.to_le_bytes());
    bytes
}

fn decode_order(bytes: &[u8]) -> Order {
    let u64_at =
        |at: usize| u64::from_le_bytes(bytes.get(at..at + 8).and_then(|b| b.try_into().ok()).unwrap_or([0; 8]));
    (u64_at(0), u64_at(8), u64_at(16))
}

/// The entries of a block; `None` when it fails its checksum.
fn decode_block(bytes: &[u8]) -> Option<Vec<Entry>> {
    let crc = u32::from_le_bytes(bytes.get(BLOCK_BYTES - 4..)?.try_into().ok()?);
    if crc32c::crc32c(bytes.get(..BLOCK_BYTES - 4)?) != crc {
        return None;
    }
    let count = u32::from_le_bytes(bytes.get(BLOCK_BYTES - 8..BLOCK_BYTES - 4)?.try_into().ok()?) as usize;
    if count == 0 || count > BLOCK_ENTRIES {
        return None;
    }
    bytes.chunks_exact(ENTRY_BYTES).take(count).map(Entry::decode).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::index::entry::Space;

    fn entry(name: &str, seq: u64) -> Entry {
        Entry {
            name: Fingerprint::of(Space::Stream, name.as_bytes()),
            seq,
            value: seq * 10,
            segment: 1,
            generation: 0,
            index: 0,
            offset: 32 + seq,
            count: 1,
        }
    }

    /// A table of 200 streams with 0..n entries each (n = stream % 7),
    /// and the same entries in a sorted Vec as the model.
    fn table(dir: &Path) -> (Table, Vec<Entry>) {
        let mut all: Vec<Entry> =
            (0..200).flat_map(|s| (0..(s % 7)).map(move |seq| entry(&format!("s-{s}"), seq * 3))).collect();
        all.sort_unstable_by_key(Entry::order);
        let mut writer = TableWriter::create(&dir.join("t"), 200).unwrap();
        for e in &all {
            writer.push(e).unwrap();
        }
        let checkpoint = Checkpoint { segment: 1, offset: 99, next_position: Position(700), last_recorded_at_us: 5 };
        let table = writer.finish(2, Coverage { first_position: Position(3), checkpoint }).unwrap();
        (table, all)
    }

    #[test]
    fn lookups_agree_with_a_sorted_model_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let (table, all) = table(dir.path());
        assert_eq!((table.level(), table.entries()), (2, all.len() as u64));
        assert_eq!(table.coverage().first_position, Position(3));
        for s in 0..200 {
            let name = Fingerprint::of(Space::Stream, format!("s-{s}").as_bytes());
            let model: Vec<Entry> = all.iter().filter(|e| e.name == name).copied().collect();
            for from in [0, 1, 3, 4, 17, u64::MAX] {
                let mut got = Vec::new();
                table.entries_of(&name, from, Direction::Forwards, 100, &mut got).unwrap();
                let floor = model.iter().rposition(|e| e.seq <= from).unwrap_or(0);
                assert_eq!(got, model[floor.min(model.len())..], "forwards from {from} of s-{s}");
                let mut got = Vec::new();
                table.entries_of(&name, from, Direction::Backwards, 2, &mut got).unwrap();
                let want: Vec<Entry> = model.iter().rev().filter(|e| e.seq <= from).take(2).copied().collect();
                assert_eq!(got, want, "backwards from {from} of s-{s}");
            }
        }
        let mut scanned = Vec::new();
        let mut scan = table.scan();
        while let Some(e) = scan.next_entry().unwrap() {
            scanned.push(e);
        }
        assert_eq!(scanned, all);
    }

    #[test]
    fn a_flipped_bit_in_a_block_is_reported_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let (table, all) = table(dir.path());
        let path = table.path().to_owned();
        drop(table);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[HEADER_BYTES + 100] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let table = Table::open(&path).unwrap();
        let name = all[0].name;
        let error = table.entries_of(&name, 0, Direction::Forwards, 10, &mut Vec::new()).unwrap_err();
        assert!(error.to_string().contains("checksum"), "{error}");
    }
}
