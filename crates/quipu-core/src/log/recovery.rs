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
    let context = || format!("reading {}", path.display());
    let file = File::open(path).map_err(Error::io(context()))?;
    let file_len = file.metadata().map_err(Error::io(context()))?.len();
    let mut buffer: Vec<u8> = Vec::new();
    let mut buffer_offset = start_offset;
    let mut consumed = 0usize;
    loop {
        let offset = buffer_offset + consumed as u64;
        let frame = parse_frame(buffer.get(consumed..).unwrap_or_default(), PAYLOAD_BYTES_MAX);
        match frame {
            Frame::Valid { payload, len } => {
                let commit = match Commit::decode(payload) {
                    Ok(commit) => commit,
                    Err(reason) => return Ok(ScanEnd::Bad { offset, reason }),
                };
                consumed += len;
                visit(offset, len, commit)?;
            }
            Frame::Invalid(reason) => return Ok(ScanEnd::Bad { offset, reason }),
            Frame::Truncated => {
                let buffered_end = buffer_offset + buffer.len() as u64;
                if buffered_end >= file_len {
                    if offset == file_len {
                        return Ok(ScanEnd::Clean { end_offset: file_len });
                    }
                    return Ok(ScanEnd::Bad { offset, reason: "record is cut off by the end of the file".into() });
                }
                buffer.drain(..consumed);
                buffer_offset = offset;
                consumed = 0;
                let wanted = (file_len - buffered_end).min(SCAN_CHUNK_BYTES.max(buffer.len()) as u64) as usize;
                let old_len = buffer.len();
                buffer.resize(old_len + wanted, 0);
                let target = buffer.get_mut(old_len..).unwrap_or_default();
                file.read_exact_at(target, buffered_end).map_err(Error::io(context()))?;
            }
        }
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
