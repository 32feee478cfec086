//! Segment files: the log is a sequence of files `0000000000.qlog`,
//! `0000000001.qlog`, ..., each a header followed by framed records (see
//! [`super::record`]). Only the last segment is ever written to, and only
//! at its end; a batch of records is one write followed by one fdatasync.
//!
//! A scavenge rewrites a closed segment into a new *generation* of it,
//! `0000000005.g00001.qlog`, then removes the old file: the segment keeps
//! its number and positions, its records move to new offsets. The index
//! names the generation each entry points into (see `crate::scavenge`).
//!
//! Header (32 bytes): `b"QUIPUSEG"`, `u32` format version, `u32` segment
//! number, `u64` torn-tail window (the largest single write this segment
//! may receive, see `super::recovery`), `u32` CRC32C of the preceding 24
//! bytes, 4 zero bytes. Little-endian.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

use memmap2::{Mmap, MmapOptions};

use crate::error::Error;
use crate::event::RecordedEvent;
use crate::fault::FaultPlan;
use crate::log::record::{Commit, FRAME_HEADER_BYTES, Frame, decode_event_at, event_alone, events_alone, parse_frame};
use crate::options::{BATCH_BYTES_CEILING, SyncMode};
use crate::position::Position;

/// Version of the segment file format written by this build.
pub const SEGMENT_FORMAT_VERSION: u32 = 1;
const MAGIC: &[u8; 8] = b"QUIPUSEG";
/// Bytes before the first record of a segment.
pub const SEGMENT_HEADER_BYTES: u64 = 32;
/// Largest payload a frame may claim; anything larger is garbage.
pub const PAYLOAD_BYTES_MAX: usize = BATCH_BYTES_CEILING;
/// Open read handles kept; beyond this, handles are dropped and reopened.
const OPEN_READERS_MAX: usize = 256;

/// Path of generation 0 of segment `number` in `dir` (what appends write).
#[must_use]
pub fn segment_path(dir: &Path, number: u32) -> PathBuf {
    segment_file_path(dir, number, 0)
}

/// Path of generation `generation` of segment `number` in `dir`.
#[must_use]
pub fn segment_file_path(dir: &Path, number: u32, generation: u16) -> PathBuf {
    if generation == 0 {
        return dir.join(format!("{number:010}.qlog"));
    }
    dir.join(format!("{number:010}.g{generation:05}.qlog"))
}

/// Suffix of a segment file being written by a scavenge: such a file is
/// incomplete until renamed, and removed on open.
pub const TEMP_SUFFIX: &str = ".tmp";

/// The segment number and generation a file name stands for.
fn parse_segment_name(name: &str) -> Option<(u32, u16)> {
    let stem = name.strip_suffix(".qlog")?;
    let (number, generation) = match stem.split_once(".g") {
        Some((number, generation)) if generation.len() == 5 && generation.bytes().all(|b| b.is_ascii_digit()) => {
            (number, generation.parse::<u16>().ok().filter(|&g| g > 0)?)
        }
        Some(_) => return None,
        None => (stem, 0),
    };
    if number.len() != 10 || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((number.parse().ok()?, generation))
}

/// Every segment file in `dir`: number to its generations, ascending.
/// More than one generation of a number exists only while a scavenge
/// swaps them (or after a crash in the middle of one).
///
/// # Errors
/// I/O errors listing the directory.
pub fn segment_files(dir: &Path) -> Result<BTreeMap<u32, Vec<u16>>, Error> {
    let mut files: BTreeMap<u32, Vec<u16>> = BTreeMap::new();
    let entries = std::fs::read_dir(dir).map_err(Error::io(format!("listing {}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(Error::io(format!("listing {}", dir.display())))?;
        if let Some((number, generation)) = entry.file_name().to_str().and_then(parse_segment_name) {
            files.entry(number).or_default().push(generation);
        }
    }
    for generations in files.values_mut() {
        generations.sort_unstable();
    }
    Ok(files)
}

/// Removes the files a scavenge left half-written (`*.qlog.tmp`).
///
/// # Errors
/// I/O errors.
pub fn remove_temp_files(dir: &Path) -> Result<(), Error> {
    let entries = std::fs::read_dir(dir).map_err(Error::io(format!("listing {}", dir.display())))?;
    let mut removed = false;
    for entry in entries {
        let entry = entry.map_err(Error::io(format!("listing {}", dir.display())))?;
        if entry.file_name().to_str().is_some_and(|n| n.ends_with(&format!(".qlog{TEMP_SUFFIX}"))) {
            let path = entry.path();
            tracing::warn!(file = %path.display(), "removing a segment a scavenge left half-written");
            std::fs::remove_file(&path).map_err(Error::io(format!("removing {}", path.display())))?;
            removed = true;
        }
    }
    if removed {
        sync_dir(dir)?;
    }
    Ok(())
}

/// fsyncs a directory so that file creations and renames in it are durable.
///
/// # Errors
/// I/O errors opening or syncing it.
pub fn sync_dir(dir: &Path) -> Result<(), Error> {
    let context = || format!("fsync of directory {}", dir.display());
    File::open(dir).and_then(|d| d.sync_all()).map_err(Error::io(context()))
}

/// The parsed header of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Segment number, equal to the one in the file name.
    pub number: u32,
    /// Largest single write the segment received; bounds the torn tail.
    pub torn_window_bytes: u64,
}

impl SegmentHeader {
    fn encode(&self) -> [u8; SEGMENT_HEADER_BYTES as usize] {
        let mut bytes = [0; SEGMENT_HEADER_BYTES as usize];
        bytes[..8].copy_from_slice(MAGIC);
        bytes[8..12].copy_from_slice(&SEGMENT_FORMAT_VERSION.to_le_bytes());
        bytes[12..16].copy_from_slice(&self.number.to_le_bytes());
        bytes[16..24].copy_from_slice(&self.torn_window_bytes.to_le_bytes());
        let crc = crc32c::crc32c(&bytes[..24]);
        bytes[24..28].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    /// Reads and checks the header of the segment at `path`.
    ///
    /// # Errors
    /// [`Error::Corrupt`] for a bad header, [`Error::UnsupportedFormat`]
    /// for an unknown version, I/O errors reading it.
    pub fn read(path: &Path, expected_number: u32) -> Result<SegmentHeader, Error> {
        let file = File::open(path).map_err(Error::io(format!("opening {}", path.display())))?;
        let mut bytes = [0u8; SEGMENT_HEADER_BYTES as usize];
        let corrupt = |reason: &str| Error::Corrupt { segment: path.to_owned(), offset: 0, reason: reason.into() };
        if file.read_exact_at(&mut bytes, 0).is_err() {
            return Err(corrupt("segment header is incomplete"));
        }
        let field = |range: std::ops::Range<usize>| bytes.get(range).unwrap_or_default();
        let u32_at = |at: usize| u32::from_le_bytes(field(at..at + 4).try_into().unwrap_or([0; 4]));
        if field(0..8) != MAGIC || crc32c::crc32c(field(0..24)) != u32_at(24) {
            return Err(corrupt("segment header has a bad magic number or checksum"));
        }
        let version = u32_at(8);
        if version != SEGMENT_FORMAT_VERSION {
            return Err(Error::UnsupportedFormat {
                path: path.to_owned(),
                found: version,
                supported: SEGMENT_FORMAT_VERSION,
            });
        }
        let number = u32_at(12);
        if number != expected_number {
            return Err(corrupt(&format!("header names segment {number}, the file name {expected_number}")));
        }
        let torn_window_bytes = u64::from_le_bytes(field(16..24).try_into().unwrap_or([0; 8]));
        Ok(SegmentHeader { number, torn_window_bytes })
    }
}

/// Bytes of zeros written per call while extending a segment ahead of its
/// end (see [`SegmentWriter::extend_zeroed`]).
const ZERO_CHUNK_BYTES: usize = 256 * 1024;

/// The one writer of the active (last) segment.
///
/// The file may be longer than the records in it: when the store is idle,
/// the sequencer writes zeros ahead of the end ([`SegmentWriter::extend_zeroed`])
/// so that the next appends overwrite allocated blocks, and their
/// fdatasync need not also commit a new file size (PostgreSQL writes its
/// WAL segments full of zeros for the same reason). Recovery tells such a
/// zeroed tail from a torn write (see `super::recovery`), and a segment is
/// cut back to its records before the next one starts.
#[derive(Debug)]
pub struct SegmentWriter {
    path: PathBuf,
    header: SegmentHeader,
    file: File,
    /// End of the records: where the next batch goes.
    len_bytes: u64,
    /// Length of the file: records plus zeros written ahead.
    allocated_bytes: u64,
    sync: SyncMode,
    fault_plan: Option<Arc<FaultPlan>>,
}

impl SegmentWriter {
    /// Creates segment `number` in `dir`, writes and syncs its header, and
    /// syncs the directory so the new file survives a crash.
    ///
    /// # Errors
    /// I/O errors; a file of that name must not exist.
    pub fn create(
        dir: &Path,
        number: u32,
        torn_window_bytes: u64,
        sync: SyncMode,
        fault_plan: Option<Arc<FaultPlan>>,
    ) -> Result<SegmentWriter, Error> {
        let path = segment_path(dir, number);
        if let Some(plan) = &fault_plan {
            plan.on_create().map_err(Error::io(format!("creating {}", path.display())))?;
        }
        let writer = SegmentWriter::create_at(&path, number, torn_window_bytes, sync, fault_plan)?;
        sync_dir(dir)?;
        Ok(writer)
    }

    /// Creates a segment file at `path` holding segment `number` and
    /// writes and syncs its header (the caller syncs the directory).
    ///
    /// # Errors
    /// I/O errors; a file of that name must not exist.
    pub fn create_at(
        path: &Path,
        number: u32,
        torn_window_bytes: u64,
        sync: SyncMode,
        fault_plan: Option<Arc<FaultPlan>>,
    ) -> Result<SegmentWriter, Error> {
        let context = format!("creating {}", path.display());
        let file =
            OpenOptions::new().read(true).write(true).create_new(true).open(path).map_err(Error::io(&context))?;
        let header = SegmentHeader { number, torn_window_bytes };
        file.write_all_at(&header.encode(), 0).map_err(Error::io(&context))?;
        file.sync_all().map_err(Error::io(&context))?;
        Ok(SegmentWriter {
            path: path.to_owned(),
            header,
            file,
            len_bytes: SEGMENT_HEADER_BYTES,
            allocated_bytes: SEGMENT_HEADER_BYTES,
            sync,
            fault_plan,
        })
    }

    /// Reopens an existing segment for appending at `len_bytes` (the end of
    /// its last valid record, found by recovery); what follows in the file
    /// is zeros written ahead.
    ///
    /// # Errors
    /// I/O errors opening it.
    pub fn reopen(
        path: &Path,
        header: SegmentHeader,
        len_bytes: u64,
        sync: SyncMode,
        fault_plan: Option<Arc<FaultPlan>>,
    ) -> Result<SegmentWriter, Error> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(Error::io(format!("opening {}", path.display())))?;
        let file_len = file.metadata().map_err(Error::io(format!("opening {}", path.display())))?.len();
        let allocated_bytes = file_len.max(len_bytes);
        Ok(SegmentWriter { path: path.to_owned(), header, file, len_bytes, allocated_bytes, sync, fault_plan })
    }

    /// Segment number.
    #[must_use]
    pub fn number(&self) -> u32 {
        self.header.number
    }

    /// Bytes in the segment, header included.
    #[must_use]
    pub fn len_bytes(&self) -> u64 {
        self.len_bytes
    }

    /// Largest write this segment may receive.
    #[must_use]
    pub fn torn_window_bytes(&self) -> u64 {
        self.header.torn_window_bytes
    }

    /// Writes `bytes` at the end of the segment without syncing (a
    /// scavenge fills a new generation this way, then calls
    /// [`SegmentWriter::sync_all`] once); returns the offset they start at.
    ///
    /// # Errors
    /// I/O errors of the write.
    pub fn write_unsynced(&mut self, bytes: &[u8]) -> Result<u64, Error> {
        let offset = self.len_bytes;
        self.file
            .write_all_at(bytes, offset)
            .map_err(Error::io(format!("writing {} at offset {offset}", self.path.display())))?;
        self.len_bytes += bytes.len() as u64;
        self.allocated_bytes = self.allocated_bytes.max(self.len_bytes);
        Ok(offset)
    }

    /// Writes `batch` at the end of the segment in one write, then
    /// fdatasyncs (unless the sync mode is unsafe). Returns the offset the
    /// batch starts at. On error, nothing about the batch's durability is
    /// known and the caller must stop writing (fail-stop).
    ///
    /// # Errors
    /// I/O errors of the write or the fdatasync.
    pub fn append(&mut self, batch: &[u8]) -> Result<u64, Error> {
        assert!(batch.len() as u64 <= self.header.torn_window_bytes, "batch larger than the segment's torn window");
        let offset = self.len_bytes;
        let context = || format!("writing {} at offset {offset}", self.path.display());
        if let Some(plan) = &self.fault_plan {
            plan.on_write().map_err(Error::io(context()))?;
        }
        self.file.write_all_at(batch, offset).map_err(Error::io(context()))?;
        if self.sync == SyncMode::Fsync {
            if let Some(plan) = &self.fault_plan {
                plan.on_sync().map_err(Error::io(context()))?;
            }
            self.file.sync_data().map_err(Error::io(context()))?;
        }
        self.len_bytes += batch.len() as u64;
        self.allocated_bytes = self.allocated_bytes.max(self.len_bytes);
        Ok(offset)
    }

    /// Cuts the file back to `len_bytes` (the end of the records before a
    /// batch whose write or fdatasync failed) and syncs it, so that nothing
    /// of that batch is in the file, now or after a restart. Zeros written
    /// ahead go too.
    ///
    /// # Errors
    /// I/O errors of the cut or its sync: the batch may then be in the
    /// file.
    pub fn cut_back(&mut self, len_bytes: u64) -> Result<(), Error> {
        assert!(len_bytes >= SEGMENT_HEADER_BYTES, "a cut keeps the segment's header");
        let context = || format!("cutting {} back to {len_bytes} bytes after a failed write", self.path.display());
        self.file.set_len(len_bytes).map_err(Error::io(context()))?;
        self.file.sync_all().map_err(Error::io(context()))?;
        self.len_bytes = len_bytes;
        self.allocated_bytes = len_bytes;
        Ok(())
    }

    /// Zeros written ahead of the records, bytes.
    #[must_use]
    pub fn headroom_bytes(&self) -> u64 {
        self.allocated_bytes - self.len_bytes
    }

    /// Writes zeros after the end of the file until it is `to` bytes long,
    /// then fdatasyncs them, so later batches overwrite allocated, zeroed
    /// blocks. Goes through the fault plan like any log write.
    ///
    /// # Errors
    /// I/O errors of the writes or the fdatasync: the caller must stop
    /// writing (fail-stop), as for a batch.
    pub fn extend_zeroed(&mut self, to: u64) -> Result<(), Error> {
        static ZEROS: [u8; ZERO_CHUNK_BYTES] = [0; ZERO_CHUNK_BYTES];
        let context = |offset: u64| format!("writing zeros to {} at offset {offset}", self.path.display());
        while self.allocated_bytes < to {
            let offset = self.allocated_bytes;
            let count = (to - offset).min(ZERO_CHUNK_BYTES as u64) as usize;
            if let Some(plan) = &self.fault_plan {
                plan.on_write().map_err(Error::io(context(offset)))?;
            }
            let zeros = ZEROS.get(..count).unwrap_or_default();
            self.file.write_all_at(zeros, offset).map_err(Error::io(context(offset)))?;
            self.allocated_bytes += count as u64;
        }
        if let Some(plan) = &self.fault_plan {
            plan.on_sync().map_err(Error::io(context(to)))?;
        }
        self.file.sync_data().map_err(Error::io(format!("fdatasync of {}", self.path.display())))
    }

    /// Cuts the file back to its records (dropping zeros written ahead)
    /// and syncs it: done before the next segment starts, so that only the
    /// last segment can end in zeros.
    ///
    /// # Errors
    /// I/O errors.
    pub fn trim(&mut self) -> Result<(), Error> {
        if self.allocated_bytes == self.len_bytes {
            return Ok(());
        }
        let context = || format!("cutting {} to {} bytes", self.path.display(), self.len_bytes);
        self.file.set_len(self.len_bytes).map_err(Error::io(context()))?;
        self.file.sync_all().map_err(Error::io(context()))?;
        self.allocated_bytes = self.len_bytes;
        Ok(())
    }

    /// Makes everything written durable (used before closing in the
    /// unsafe sync mode).
    ///
    /// # Errors
    /// I/O errors of the fsync.
    pub fn sync_all(&self) -> Result<(), Error> {
        self.file.sync_all().map_err(Error::io(format!("fsync of {}", self.path.display())))
    }
}

/// Where a record is: segment number, generation of its file, and the
/// offset of its frame in that file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordAddress {
    /// Segment number.
    pub segment: u32,
    /// Generation of the segment's file.
    pub generation: u16,
    /// Offset of the record's frame.
    pub offset: u64,
}

/// Random-access reads of records by (segment, generation, offset),
/// shared by all readers; keeps a bounded set of open file handles.
///
/// A read first [pins](SegmentReader::pin) the files, then looks up the
/// index and reads what it points at; a scavenge retires an old
/// generation only when no pin is held, so an address taken from the
/// index stays readable for as long as the read that took it.
///
/// Records are read through memory maps: a record is checked and decoded
/// where it lies in the page cache, without a system call or a copy.
/// A sealed segment (below the one appends go to) is complete and never
/// written or truncated again (a scavenge writes a new generation and
/// removes the old file whole), so its map is the file. The active
/// segment's map reserves its largest size, and a read may use only the
/// bytes below the end of the records written so far (see
/// [`SegmentReader::activate`]); the file is never shorter than that.
/// Until the first [`SegmentReader::activate`], and when a file cannot be
/// mapped, records are read with `pread`.
#[derive(Debug)]
pub struct SegmentReader {
    dir: PathBuf,
    open: RwLock<HashMap<(u32, u16), Arc<File>>>,
    maps: RwLock<HashMap<(u32, u16), Arc<Mapped>>>,
    active: Mutex<Option<Active>>,
    active_map_bytes: usize,
    retirement: RwLock<()>,
}

/// The segment appends go to, and the end of the records written to it.
#[derive(Debug, Clone, Copy)]
struct Active {
    segment: u32,
    end: u64,
}

/// A segment file's map; `sealed_len` is the file's length when it was
/// mapped sealed, `None` for the map of the active segment.
#[derive(Debug)]
struct Mapped {
    map: Mmap,
    sealed_len: Option<usize>,
}

impl SegmentReader {
    /// A reader of the segments in `dir`, where a segment holds at most
    /// `segment_bytes_max` bytes (its roll size plus one batch).
    #[must_use]
    pub fn new(dir: &Path, segment_bytes_max: u64) -> SegmentReader {
        SegmentReader {
            dir: dir.to_owned(),
            open: RwLock::new(HashMap::new()),
            maps: RwLock::new(HashMap::new()),
            active: Mutex::new(None),
            active_map_bytes: usize::try_from(segment_bytes_max).unwrap_or(usize::MAX),
            retirement: RwLock::new(()),
        }
    }

    /// Appends now go to segment `segment`, whose records end at `end`;
    /// every segment below it is sealed. Called once recovery is done and
    /// whenever the log rolls to a new segment.
    pub fn activate(&self, segment: u32, end: u64) {
        *self.active.lock().unwrap_or_else(|p| p.into_inner()) = Some(Active { segment, end });
    }

    /// The active segment's records now end at `end`: call it after they
    /// are written and before the index points at them.
    pub fn extend_active(&self, end: u64) {
        if let Some(active) = self.active.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            debug_assert!(end >= active.end, "the active segment only grows");
            active.end = end;
        }
    }

    /// Keeps every file the index may point at in place until the guard
    /// drops. Take it before the index lookup; never take two at once on
    /// one thread (a waiting retirement would deadlock them).
    pub fn pin(&self) -> RwLockReadGuard<'_, ()> {
        self.retirement.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Removes generation `generation` of segment `number` once no read
    /// holds a pin, so none can still be about to open it; syncs the
    /// directory.
    ///
    /// # Errors
    /// I/O errors.
    pub fn retire(&self, number: u32, generation: u16) -> Result<(), Error> {
        let path = segment_file_path(&self.dir, number, generation);
        {
            let _no_readers = self.retirement.write().unwrap_or_else(|p| p.into_inner());
            self.open.write().unwrap_or_else(|p| p.into_inner()).remove(&(number, generation));
            self.maps.write().unwrap_or_else(|p| p.into_inner()).remove(&(number, generation));
            std::fs::remove_file(&path).map_err(Error::io(format!("removing {}", path.display())))?;
        }
        sync_dir(&self.dir)
    }

    fn file(&self, number: u32, generation: u16) -> Result<Arc<File>, Error> {
        if let Some(file) = self.open.read().unwrap_or_else(|p| p.into_inner()).get(&(number, generation)) {
            return Ok(Arc::clone(file));
        }
        let path = segment_file_path(&self.dir, number, generation);
        let file = Arc::new(File::open(&path).map_err(Error::io(format!("opening {}", path.display())))?);
        let mut open = self.open.write().unwrap_or_else(|p| p.into_inner());
        if open.len() >= OPEN_READERS_MAX {
            open.clear();
        }
        open.insert((number, generation), Arc::clone(&file));
        Ok(file)
    }

    /// Reads, checks and decodes the record at `at`. `buffer` is reused
    /// between calls to avoid allocation.
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming the file and offset when the record fails
    /// its checksum or cannot be decoded; I/O errors.
    pub fn read_commit(&self, at: RecordAddress, buffer: &mut Vec<u8>) -> Result<Commit, Error> {
        self.with_payload(at, buffer, Commit::decode)
    }

    /// Reads only the `index`th (kept) event of the record at `at`: from
    /// the page cache, checked by its own checksum, when the record is
    /// mapped and has one; else the whole record is checked and only that
    /// event decoded.
    ///
    /// # Errors
    /// As [`SegmentReader::read_commit`]; an index beyond the record is
    /// [`Error::Corrupt`] too (the index pointed at something the log lacks).
    pub fn read_event(&self, at: RecordAddress, index: u32, buffer: &mut Vec<u8>) -> Result<RecordedEvent, Error> {
        if let Some(event) = self.with_mapped(at, |bytes| event_alone(bytes, index, PAYLOAD_BYTES_MAX)).flatten() {
            return Ok(event);
        }
        self.with_payload(at, buffer, |payload| decode_event_at(payload, index))
    }

    /// Appends to `out` up to `max` events of the record at `at` (whose
    /// first position is `first_position`) from position `from` on, in
    /// log order: each checked alone from the page cache when the record
    /// is mapped and has a directory, so a page that ends inside a large
    /// record builds only what it takes; else the whole record is checked
    /// and decoded.
    ///
    /// # Errors
    /// As [`SegmentReader::read_commit`].
    pub fn read_events(
        &self,
        at: RecordAddress,
        first_position: Position,
        from: Position,
        max: usize,
        buffer: &mut Vec<u8>,
        out: &mut Vec<RecordedEvent>,
    ) -> Result<(), Error> {
        // Only a record no scavenge rewrote is read alone, and its events
        // sit at consecutive positions.
        let first = u32::try_from(from.0.saturating_sub(first_position.0)).unwrap_or(u32::MAX);
        let alone = self.with_mapped(at, |bytes| events_alone(bytes, first, max, PAYLOAD_BYTES_MAX, out)).flatten();
        if alone.is_none() {
            let commit = self.read_commit(at, buffer)?;
            out.extend(commit.into_recorded_events().filter(|e| e.position >= from).take(max));
        }
        Ok(())
    }

    /// The error for a bad record at `at`, naming its file.
    #[must_use]
    pub fn corrupt(&self, at: RecordAddress, reason: String) -> Error {
        Error::Corrupt { segment: segment_file_path(&self.dir, at.segment, at.generation), offset: at.offset, reason }
    }

    /// Decodes the payload of the record at `at` with `decode` once its
    /// checksum holds: in place in a sealed segment's map, else read into
    /// `buffer`.
    fn with_payload<T>(
        &self,
        at: RecordAddress,
        buffer: &mut Vec<u8>,
        decode: impl Fn(&[u8]) -> Result<T, String>,
    ) -> Result<T, Error> {
        // A record not wholly in the readable bytes is read with `pread`,
        // which tells a short file from a bad record.
        let mapped = self.with_mapped(at, |bytes| match parse_frame(bytes, PAYLOAD_BYTES_MAX) {
            Frame::Valid { payload, .. } => Some(decode(payload)),
            Frame::Invalid(reason) => Some(Err(reason)),
            Frame::Truncated => None,
        });
        match mapped.flatten() {
            Some(decoded) => decoded.map_err(|reason| self.corrupt(at, reason)),
            None => decode(self.read_payload(at, buffer)?).map_err(|reason| self.corrupt(at, reason)),
        }
    }

    /// Calls `read` with the mapped bytes from `at` to the end of what a
    /// read may use; `None` when the segment is not mapped.
    fn with_mapped<T>(&self, at: RecordAddress, read: impl FnOnce(&[u8]) -> T) -> Option<T> {
        let (mapped, readable) = self.map(at.segment, at.generation)?;
        let from = usize::try_from(at.offset).unwrap_or(usize::MAX);
        Some(read(mapped.map.get(..readable).and_then(|bytes| bytes.get(from..)).unwrap_or_default()))
    }

    /// The map of a segment's file and how many of its bytes a read may
    /// use; `None` before the first activation, or when the file cannot be
    /// mapped (it is then read with `pread`, which reports what is wrong).
    fn map(&self, number: u32, generation: u16) -> Option<(Arc<Mapped>, usize)> {
        let active = (*self.active.lock().unwrap_or_else(|p| p.into_inner()))?;
        let sealed = number < active.segment;
        if !sealed && (number > active.segment || generation != 0) {
            return None;
        }
        let readable = |mapped: &Mapped| match mapped.sealed_len {
            Some(len) => len,
            None => usize::try_from(active.end).unwrap_or(usize::MAX).min(mapped.map.len()),
        };
        let cached = self.maps.read().unwrap_or_else(|p| p.into_inner()).get(&(number, generation)).cloned();
        // A map taken while the segment was active is retaken once it is
        // sealed, at the file's final length.
        if let Some(mapped) = cached.filter(|mapped| mapped.sealed_len.is_some() == sealed) {
            let readable = readable(&mapped);
            return Some((mapped, readable));
        }
        let file = self.file(number, generation).ok()?;
        let mapped = match map_file(&file, (!sealed).then_some(self.active_map_bytes)) {
            Ok(mapped) => Arc::new(mapped),
            Err(error) => {
                tracing::debug!(%error, number, generation, "segment not mapped; reading it with pread");
                return None;
            }
        };
        let mut maps = self.maps.write().unwrap_or_else(|p| p.into_inner());
        if maps.len() >= OPEN_READERS_MAX {
            maps.clear();
        }
        maps.insert((number, generation), Arc::clone(&mapped));
        let readable = readable(&mapped);
        Some((mapped, readable))
    }

    /// Reads the frame at `at` into `buffer` and returns its payload once
    /// the checksum holds.
    fn read_payload<'b>(&self, at: RecordAddress, buffer: &'b mut Vec<u8>) -> Result<&'b [u8], Error> {
        let file = self.file(at.segment, at.generation)?;
        let offset = at.offset;
        let corrupt = |reason: String| self.corrupt(at, reason);
        let mut header = [0u8; FRAME_HEADER_BYTES];
        file.read_exact_at(&mut header, offset).map_err(|e| corrupt(format!("record header unreadable: {e}")))?;
        let payload_len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        if payload_len == 0 || payload_len > PAYLOAD_BYTES_MAX {
            return Err(corrupt(format!("implausible record length {payload_len}")));
        }
        buffer.clear();
        buffer.extend_from_slice(&header);
        buffer.resize(FRAME_HEADER_BYTES + payload_len, 0);
        let payload_buffer = buffer.get_mut(FRAME_HEADER_BYTES..).unwrap_or_default();
        file.read_exact_at(payload_buffer, offset + FRAME_HEADER_BYTES as u64)
            .map_err(|e| corrupt(format!("record unreadable: {e}")))?;
        match parse_frame(buffer, PAYLOAD_BYTES_MAX) {
            Frame::Valid { payload, .. } => Ok(payload),
            Frame::Truncated => Err(corrupt("record is truncated".into())),
            Frame::Invalid(reason) => Err(corrupt(reason)),
        }
    }
}

/// Maps `file` read-only: `reserve` bytes (the active segment, which
/// grows into them), else the file as it is (a sealed one).
fn map_file(file: &File, reserve: Option<usize>) -> std::io::Result<Mapped> {
    let mut options = MmapOptions::new();
    if let Some(bytes) = reserve {
        options.len(bytes);
    }
    // SAFETY: the store never truncates a sealed file, and never
    // truncates the active one below the end of its records, the only
    // bytes a read of this map uses; it removes a file only once no read
    // holds a pin (the map outlives the name). What a map cannot guard
    // against is another process truncating files in the data directory
    // while the store runs, which the store does not support (see
    // docs/storage.md).
    #[expect(unsafe_code, reason = "a mapped segment is what makes reads zero-copy; see SAFETY")]
    let map = unsafe { options.map(file) }?;
    let sealed_len = reserve.is_none().then_some(map.len());
    Ok(Mapped { map, sealed_len })
}
