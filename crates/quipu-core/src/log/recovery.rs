//! Recovery of the log on open: scan records sequentially from where the
//! index left off, and decide what a bad record means.
//!
//! A record that fails its frame or checksum at offset `o` ends the scan,
//! and what lies after it says what it is ([`Tail`]). Only the last
//! segment can end in anything but a whole record:
//! - nothing but zeros from `o` to the end of the file: the zeros the
//!   sequencer writes ahead of the log (see
//!   [`super::segment::SegmentWriter::extend_zeroed`]); the log ends at `o`;
//! - bytes other than zeros only within the segment's torn window (the
//!   largest single write it received) after `o`, and zeros beyond: a
//!   *torn tail*, the batch that was being written when the process died.
//!   The tail is cut and the cut is fsynced;
//! - anything else is corruption: the store refuses to open and names the
//!   file and offset. Data is never served from or silently dropped past a
//!   bad checksum.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::Error;
use crate::log::record::{Commit, FRAME_HEADER_BYTES, Frame, parse_frame};
use crate::log::segment::PAYLOAD_BYTES_MAX;

/// Bytes read from a segment at a time while scanning.
const SCAN_CHUNK_BYTES: usize = 4 * 1024 * 1024;

/// How a scan of one segment ended.
#[derive(Debug, PartialEq, Eq)]
pub enum ScanEnd {
    /// Every record up to the end of the file was valid.
    Clean {
        /// End of the last record (the file's length).
        end_offset: u64,
    },
    /// A record at `offset` is incomplete, fails its checksum or does not
    /// decode; records before it were valid.
    Bad {
        /// Offset of the bad record.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
}

/// Reads the records of the segment at `path` from `start_offset`, calling
/// `visit(offset, frame_len, commit)` for each valid one in order.
///
/// # Errors
/// I/O errors, and any error `visit` returns (which stops the scan).
pub fn scan_segment(
    path: &Path,
    start_offset: u64,
    visit: &mut dyn FnMut(u64, usize, Commit) -> Result<(), Error>,
) -> Result<ScanEnd, Error> {
    let mut scan = RecordScan::open(path, start_offset)?;
    while let Some((offset, len, commit)) = scan.next_record()? {
        visit(offset, len, commit)?;
    }
    Ok(scan.end())
}

/// A sequential read of a segment's records, one at a time, through a
/// buffer of a few MiB.
#[derive(Debug)]
pub struct RecordScan {
    path: std::path::PathBuf,
    file: File,
    file_len: u64,
    buffer: Vec<u8>,
    /// Offset in the file of `buffer[0]`.
    buffer_offset: u64,
    /// Bytes of `buffer` already returned as records.
    consumed: usize,
    end: Option<ScanEnd>,
}

impl RecordScan {
    /// Starts reading the segment at `path` at `start_offset`.
    ///
    /// # Errors
    /// I/O errors opening it.
    pub fn open(path: &Path, start_offset: u64) -> Result<RecordScan, Error> {
        let file = File::open(path).map_err(Error::io(format!("reading {}", path.display())))?;
        let file_len = file.metadata().map_err(Error::io(format!("reading {}", path.display())))?.len();
        Ok(RecordScan {
            path: path.to_owned(),
            file,
            file_len,
            buffer: Vec::new(),
            buffer_offset: start_offset,
            consumed: 0,
            end: None,
        })
    }

    /// The next valid record as (offset, frame length, commit); `None`
    /// once the scan has ended (see [`RecordScan::end`]).
    ///
    /// # Errors
    /// I/O errors reading the file.
    pub fn next_record(&mut self) -> Result<Option<(u64, usize, Commit)>, Error> {
        loop {
            if self.end.is_some() {
                return Ok(None);
            }
            let offset = self.buffer_offset + self.consumed as u64;
            match parse_frame(self.buffer.get(self.consumed..).unwrap_or_default(), PAYLOAD_BYTES_MAX) {
                Frame::Valid { payload, len } => match Commit::decode(payload) {
                    Ok(commit) => {
                        self.consumed += len;
                        return Ok(Some((offset, len, commit)));
                    }
                    Err(reason) => self.end = Some(ScanEnd::Bad { offset, reason }),
                },
                Frame::Invalid(reason) => self.end = Some(ScanEnd::Bad { offset, reason }),
                Frame::Truncated => self.refill(offset)?,
            }
        }
    }

    /// Reads more of the file after the buffered bytes, or ends the scan
    /// at the end of the file.
    fn refill(&mut self, offset: u64) -> Result<(), Error> {
        let buffered_end = self.buffer_offset + self.buffer.len() as u64;
        if buffered_end >= self.file_len {
            self.end = Some(if offset == self.file_len {
                ScanEnd::Clean { end_offset: self.file_len }
            } else {
                ScanEnd::Bad { offset, reason: "record is cut off by the end of the file".into() }
            });
            return Ok(());
        }
        self.buffer.drain(..self.consumed);
        self.buffer_offset = offset;
        self.consumed = 0;
        let wanted = (self.file_len - buffered_end).min(SCAN_CHUNK_BYTES.max(self.buffer.len()) as u64) as usize;
        let old_len = self.buffer.len();
        self.buffer.resize(old_len + wanted, 0);
        let target = self.buffer.get_mut(old_len..).unwrap_or_default();
        self.file.read_exact_at(target, buffered_end).map_err(Error::io(format!("reading {}", self.path.display())))
    }

    /// How the scan ended; call once [`RecordScan::next_record`] gave `None`.
    #[must_use]
    pub fn end(self) -> ScanEnd {
        self.end.unwrap_or(ScanEnd::Bad { offset: self.buffer_offset, reason: "scan not finished".into() })
    }
}

/// What follows the last whole record of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    /// Only zeros written ahead: the log ends cleanly there.
    Zeros,
    /// A write cut short by a crash: cut it off.
    Torn,
    /// Data beyond where a torn write can reach: the record is corrupt.
    Corrupt,
}

/// Bytes read at a time while looking at a segment's tail.
const TAIL_CHUNK_BYTES: u64 = 1024 * 1024;

/// What the bytes of the segment at `path` from `offset` (where a record
/// fails) to the end of the file (`file_len`) are: see [`Tail`]. Reads the
/// tail backwards, so only the zeros after the last other byte are read.
///
/// # Errors
/// I/O errors reading the file.
pub fn classify_tail(
    path: &Path,
    is_last_segment: bool,
    file_len: u64,
    offset: u64,
    torn_window_bytes: u64,
) -> Result<Tail, Error> {
    if !is_last_segment {
        return Ok(Tail::Corrupt);
    }
    let Some(last_data) = last_nonzero_byte(path, offset, file_len)? else {
        return Ok(Tail::Zeros);
    };
    if last_data - offset < torn_window_bytes {
        return Ok(Tail::Torn);
    }
    Ok(Tail::Corrupt)
}

/// Offset of the last byte other than zero in `from..to` of the file.
fn last_nonzero_byte(path: &Path, from: u64, to: u64) -> Result<Option<u64>, Error> {
    let file = File::open(path).map_err(Error::io(format!("reading {}", path.display())))?;
    let mut end = to;
    let mut chunk = Vec::new();
    while end > from {
        let start = end.saturating_sub(TAIL_CHUNK_BYTES).max(from);
        chunk.resize((end - start) as usize, 0);
        file.read_exact_at(&mut chunk, start).map_err(Error::io(format!("reading {}", path.display())))?;
        if let Some(at) = chunk.iter().rposition(|&b| b != 0) {
            return Ok(Some(start + at as u64));
        }
        end = start;
    }
    Ok(None)
}

/// The record at `offset` of the segment at `path`, checked, with the
/// offset where it ends; `None` when the file ends at `offset`. Reads just
/// that record, with two `pread`s.
///
/// # Errors
/// [`Error::Corrupt`] when the bytes there are not a whole valid record;
/// I/O errors.
pub fn record_at(path: &Path, offset: u64) -> Result<Option<(Commit, u64)>, Error> {
    let context = || format!("reading {} at offset {offset}", path.display());
    let file = File::open(path).map_err(Error::io(context()))?;
    let len = file.metadata().map_err(Error::io(context()))?.len();
    if len <= offset {
        return Ok(None);
    }
    let corrupt = |reason: String| Error::Corrupt { segment: path.to_owned(), offset, reason };
    let mut head = [0u8; FRAME_HEADER_BYTES];
    if len - offset < FRAME_HEADER_BYTES as u64 {
        return Err(corrupt("record is cut off by the end of the file".into()));
    }
    file.read_exact_at(&mut head, offset).map_err(Error::io(context()))?;
    let payload_len = u64::from(u32::from_le_bytes([head[0], head[1], head[2], head[3]]));
    let frame_len = (FRAME_HEADER_BYTES as u64).saturating_add(payload_len);
    if payload_len > PAYLOAD_BYTES_MAX as u64 || len - offset < frame_len {
        return Err(corrupt(format!("a record of {payload_len} bytes does not fit in the file")));
    }
    let mut frame = vec![0u8; usize::try_from(frame_len).map_err(|_| corrupt("record too large".into()))?];
    file.read_exact_at(&mut frame, offset).map_err(Error::io(context()))?;
    match parse_frame(&frame, PAYLOAD_BYTES_MAX) {
        Frame::Valid { payload, .. } => Commit::decode(payload).map(|c| Some((c, offset + frame_len))).map_err(corrupt),
        Frame::Invalid(reason) => Err(corrupt(reason)),
        Frame::Truncated => Err(corrupt("record is cut off by the end of the file".into())),
    }
}

/// Cuts the segment at `path` to `len` bytes and makes the cut durable.
///
/// # Errors
/// I/O errors.
pub fn truncate_segment(path: &Path, len: u64) -> Result<(), Error> {
    let context = || format!("truncating {} to {len} bytes", path.display());
    let file = OpenOptions::new().write(true).open(path).map_err(Error::io(context()))?;
    file.set_len(len).map_err(Error::io(context()))?;
    file.sync_all().map_err(Error::io(context()))
}

/// Length of the file at `path`.
///
/// # Errors
/// I/O errors.
pub fn file_len(path: &Path) -> Result<u64, Error> {
    std::fs::metadata(path).map(|m| m.len()).map_err(Error::io(format!("reading metadata of {}", path.display())))
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn file_of(bytes: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("segment");
        std::fs::write(&path, bytes).expect("write");
        (dir, path)
    }

    #[test]
    fn zeros_after_the_last_record_end_the_log_cleanly() {
        let mut bytes = vec![7u8; 100];
        bytes.extend(vec![0u8; 5000]);
        let (_dir, path) = file_of(&bytes);
        assert_eq!(classify_tail(&path, true, 5100, 100, 64).expect("read"), Tail::Zeros);
    }

    #[test]
    fn garbage_within_the_torn_window_is_a_torn_tail_wherever_the_zeros_start() {
        let mut bytes = vec![7u8; 100];
        bytes.extend(vec![9u8; 63]);
        bytes.extend(vec![0u8; 3000]);
        let (_dir, path) = file_of(&bytes);
        let len = bytes.len() as u64;
        assert_eq!(classify_tail(&path, true, len, 100, 64).expect("read"), Tail::Torn);
        assert_eq!(classify_tail(&path, false, len, 100, 64).expect("read"), Tail::Corrupt, "only the last segment");
        assert_eq!(classify_tail(&path, true, len, 100, 62).expect("read"), Tail::Corrupt, "beyond the window");
    }

    #[test]
    fn data_far_beyond_a_bad_record_is_corruption() {
        let mut bytes = vec![0u8; 3 * TAIL_CHUNK_BYTES as usize];
        bytes[10] = 1;
        bytes[2 * TAIL_CHUNK_BYTES as usize] = 1;
        let (_dir, path) = file_of(&bytes);
        let len = bytes.len() as u64;
        assert_eq!(classify_tail(&path, true, len, 0, 4096).expect("read"), Tail::Corrupt);
        assert_eq!(classify_tail(&path, true, len, 0, 3 * TAIL_CHUNK_BYTES).expect("read"), Tail::Torn);
    }
}
