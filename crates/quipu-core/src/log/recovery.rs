//! Recovery of the log on open: scan records sequentially from where the
//! index left off, and decide what a bad record means.
//!
//! A record that fails its frame or checksum is a *torn tail* only when it
//! lies in the last segment within the segment's torn window (the largest
//! single write it received) of the file's end: that is where a batch that
//! was being written when the process died can be. Then the tail is cut
//! and the cut is fsynced. Anywhere else it is corruption: the store
//! refuses to open and names the file and offset. Data is never served
//! from or silently dropped past a bad checksum.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::Error;
use crate::log::record::{Commit, Frame, parse_frame};
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

/// Whether a bad record at `offset` can be a torn tail: in the last
/// segment, within `torn_window_bytes` of the end of the file.
#[must_use]
pub fn is_torn_tail(is_last_segment: bool, file_len: u64, offset: u64, torn_window_bytes: u64) -> bool {
    is_last_segment && file_len.saturating_sub(offset) <= torn_window_bytes
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
mod tests {
    use super::*;

    #[test]
    fn torn_window_applies_to_last_segment_tail_only() {
        assert!(is_torn_tail(true, 1000, 900, 100));
        assert!(!is_torn_tail(true, 1000, 899, 100));
        assert!(!is_torn_tail(false, 1000, 990, 100));
    }
}
