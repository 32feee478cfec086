//! Segment files: the log is a sequence of files `0000000000.qlog`,
//! `0000000001.qlog`, ..., each a header followed by framed records (see
//! [`super::record`]). Only the last segment is ever written to, and only
//! at its end; a batch of records is one write followed by one fdatasync.
//!
//! Header (32 bytes): `b"QUIPUSEG"`, `u32` format version, `u32` segment
//! number, `u64` torn-tail window (the largest single write this segment
//! may receive, see `super::recovery`), `u32` CRC32C of the preceding 24
//! bytes, 4 zero bytes. Little-endian.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::error::Error;
use crate::event::RecordedEvent;
use crate::fault::FaultPlan;
use crate::log::record::{Commit, FRAME_HEADER_BYTES, Frame, decode_event_at, parse_frame};
use crate::options::{BATCH_BYTES_CEILING, SyncMode};

/// Version of the segment file format written by this build.
pub const SEGMENT_FORMAT_VERSION: u32 = 1;
const MAGIC: &[u8; 8] = b"QUIPUSEG";
/// Bytes before the first record of a segment.
pub const SEGMENT_HEADER_BYTES: u64 = 32;
/// Largest payload a frame may claim; anything larger is garbage.
pub const PAYLOAD_BYTES_MAX: usize = BATCH_BYTES_CEILING;
/// Open read handles kept; beyond this, handles are dropped and reopened.
const OPEN_READERS_MAX: usize = 256;

/// Path of segment `number` in `dir`.
#[must_use]
pub fn segment_path(dir: &Path, number: u32) -> PathBuf {
    dir.join(format!("{number:010}.qlog"))
}

/// Segment numbers present in `dir`, ascending.
///
/// # Errors
/// I/O errors listing the directory.
pub fn list_segments(dir: &Path) -> Result<Vec<u32>, Error> {
    let mut numbers = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(Error::io(format!("listing {}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(Error::io(format!("listing {}", dir.display())))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".qlog")) else {
            continue;
        };
        if stem.len() == 10
            && stem.bytes().all(|b| b.is_ascii_digit())
            && let Ok(number) = stem.parse::<u32>()
        {
            numbers.push(number);
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
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

/// The one writer of the active (last) segment.
#[derive(Debug)]
pub struct SegmentWriter {
    path: PathBuf,
    header: SegmentHeader,
    file: File,
    len_bytes: u64,
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
        let context = format!("creating {}", path.display());
        let file =
            OpenOptions::new().read(true).write(true).create_new(true).open(&path).map_err(Error::io(&context))?;
        let header = SegmentHeader { number, torn_window_bytes };
        file.write_all_at(&header.encode(), 0).map_err(Error::io(&context))?;
        file.sync_all().map_err(Error::io(&context))?;
        sync_dir(dir)?;
        Ok(SegmentWriter { path, header, file, len_bytes: SEGMENT_HEADER_BYTES, sync, fault_plan })
    }

    /// Reopens an existing segment for appending at `len_bytes` (the end of
    /// its last valid record, found by recovery).
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
        Ok(SegmentWriter { path: path.to_owned(), header, file, len_bytes, sync, fault_plan })
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
        Ok(offset)
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

/// Random-access reads of records by (segment, offset), shared by all
/// readers; keeps a bounded set of open file handles.
#[derive(Debug)]
pub struct SegmentReader {
    dir: PathBuf,
    open: RwLock<HashMap<u32, Arc<File>>>,
}

impl SegmentReader {
    /// A reader of the segments in `dir`.
    #[must_use]
    pub fn new(dir: &Path) -> SegmentReader {
        SegmentReader { dir: dir.to_owned(), open: RwLock::new(HashMap::new()) }
    }

    fn file(&self, number: u32) -> Result<Arc<File>, Error> {
        if let Some(file) = self.open.read().unwrap_or_else(|p| p.into_inner()).get(&number) {
            return Ok(Arc::clone(file));
        }
        let path = segment_path(&self.dir, number);
        let file = Arc::new(File::open(&path).map_err(Error::io(format!("opening {}", path.display())))?);
        let mut open = self.open.write().unwrap_or_else(|p| p.into_inner());
        if open.len() >= OPEN_READERS_MAX {
            open.clear();
        }
        open.insert(number, Arc::clone(&file));
        Ok(file)
    }

    /// Reads, checks and decodes the record at `offset` of segment
    /// `number`. `buffer` is reused between calls to avoid allocation.
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming the file and offset when the record fails
    /// its checksum or cannot be decoded; I/O errors.
    pub fn read_commit(&self, number: u32, offset: u64, buffer: &mut Vec<u8>) -> Result<Commit, Error> {
        let payload = self.read_payload(number, offset, buffer)?;
        Commit::decode(payload).map_err(|reason| self.corrupt(number, offset, reason))
    }

    /// Reads the record at `offset` of segment `number`, checks its CRC,
    /// and decodes only its `index`th event.
    ///
    /// # Errors
    /// As [`SegmentReader::read_commit`]; an index beyond the record is
    /// [`Error::Corrupt`] too (the index pointed at something the log lacks).
    pub fn read_event(
        &self,
        number: u32,
        offset: u64,
        index: u32,
        buffer: &mut Vec<u8>,
    ) -> Result<RecordedEvent, Error> {
        let payload = self.read_payload(number, offset, buffer)?;
        decode_event_at(payload, index).map_err(|reason| self.corrupt(number, offset, reason))
    }

    fn corrupt(&self, number: u32, offset: u64, reason: String) -> Error {
        Error::Corrupt { segment: segment_path(&self.dir, number), offset, reason }
    }

    /// Reads the frame at `offset` into `buffer` and returns its payload
    /// once the checksum holds.
    fn read_payload<'b>(&self, number: u32, offset: u64, buffer: &'b mut Vec<u8>) -> Result<&'b [u8], Error> {
        let file = self.file(number)?;
        let corrupt = |reason: String| self.corrupt(number, offset, reason);
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
