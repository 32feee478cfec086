//! The durable mark: where the acknowledged records of the log end, kept
//! in `log/durable.mark` so that recovery can tell a torn write from damage
//! to a record that was acknowledged.
//!
//! A crash in the middle of a group's write leaves a torn tail, which
//! recovery cuts: nobody was told that group was written. A record that
//! was written, fsynced and acknowledged, then damaged on disk (a flipped
//! bit, a lost block), looks the same to a scan when it is the last one.
//! The mark settles it: a bad record, or an end of records, before the
//! mark is damage, and the store refuses to open naming file and offset;
//! only what lies after the mark can be a torn write.
//!
//! The mark trails the log: a background thread ([`Marker`]) writes it at
//! most every [`MARK_INTERVAL`] when the log has moved, and once more when
//! the store closes, so it costs the append path nothing. What it names is
//! always durable in the log (it is taken after a group's fdatasync), so
//! it is never ahead of the log unless the log lost data. Records written
//! since the last mark (the last tenth of a second of a busy store) fall
//! back to the torn-window rule of [`crate::log::recovery`].
//!
//! The file holds two slots in separate 4 KiB blocks, written in turn,
//! each with a sequence number and a CRC32C: a torn write of one leaves
//! the other, and the valid slot with the higher sequence wins.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::Error;

/// Name of the mark's file in the log directory.
pub const MARK_FILE: &str = "durable.mark";
/// How often, at most, the marker writes the mark.
pub const MARK_INTERVAL: Duration = Duration::from_millis(100);

const MAGIC: &[u8; 8] = b"QUIPUEND";
/// Bytes between the two slots: each sits in a block of its own.
const SLOT_STRIDE: u64 = 4096;
/// magic 8 | sequence u64 | segment u32 | reserved u32 | offset u64 | crc u32
const SLOT_BYTES: usize = 36;

/// Where the acknowledged records end: every record of the log before
/// `offset` in segment `segment` (and in every segment before it) was
/// durable when the mark was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mark {
    /// The segment the log was being written in.
    pub segment: u32,
    /// End of its acknowledged records, bytes from the file's start.
    pub offset: u64,
}

/// The durable end of the log, as the sequencer last published it; what
/// the marker writes.
#[derive(Debug, Default)]
pub struct DurableEnd(Mutex<Option<Mark>>);

impl DurableEnd {
    /// Records that the log is durable up to `mark`.
    pub fn set(&self, mark: Mark) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(mark);
    }

    /// The last mark set, if any.
    #[must_use]
    pub fn get(&self) -> Option<Mark> {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Reads the newest valid mark in `log_dir`; `None` when there is no mark
/// file (a store of an earlier version, or one that never fsynced) or
/// neither slot is valid (then recovery falls back to the torn-window
/// rule, and says so).
///
/// # Errors
/// I/O errors reading the file.
pub fn read(log_dir: &Path) -> Result<Option<Mark>, Error> {
    Ok(newest_slot(log_dir)?.map(|(_, mark)| mark))
}

/// The valid slot with the highest sequence, as (sequence, mark).
fn newest_slot(log_dir: &Path) -> Result<Option<(u64, Mark)>, Error> {
    let path = log_dir.join(MARK_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(Error::io(format!("reading {}", path.display()))(error)),
    };
    let slots = [0, SLOT_STRIDE as usize].map(|at| bytes.get(at..at + SLOT_BYTES).and_then(decode_slot));
    let newest = slots.into_iter().flatten().max_by_key(|(sequence, _)| *sequence);
    if newest.is_none() && bytes.iter().any(|&b| b != 0) {
        tracing::warn!(file = %path.display(), "the durable mark is unreadable; recovery cannot tell a damaged last record from a torn write");
    }
    Ok(newest)
}

fn decode_slot(slot: &[u8]) -> Option<(u64, Mark)> {
    let (body, crc) = slot.split_at_checked(SLOT_BYTES - 4)?;
    if crc32c::crc32c(body).to_le_bytes() != crc || body.get(..8)? != MAGIC {
        return None;
    }
    let u64_at = |at: usize| body.get(at..at + 8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
    let segment = body.get(16..20).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes)?;
    Some((u64_at(8)?, Mark { segment, offset: u64_at(24)? }))
}

fn encode_slot(sequence: u64, mark: Mark) -> [u8; SLOT_BYTES] {
    let mut slot = [0u8; SLOT_BYTES];
    let mut body = Vec::with_capacity(SLOT_BYTES);
    body.extend_from_slice(MAGIC);
    body.extend_from_slice(&sequence.to_le_bytes());
    body.extend_from_slice(&mark.segment.to_le_bytes());
    body.extend_from_slice(&0u32.to_le_bytes());
    body.extend_from_slice(&mark.offset.to_le_bytes());
    body.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    slot.copy_from_slice(&body);
    slot
}

/// Writes marks to the mark file, alternating slots.
#[derive(Debug)]
pub struct MarkWriter {
    path: PathBuf,
    file: File,
    sequence: u64,
    written: Option<Mark>,
}

impl MarkWriter {
    /// Opens (creating, durably, if needed) the mark file in `log_dir`.
    ///
    /// # Errors
    /// I/O errors.
    pub fn open(log_dir: &Path) -> Result<MarkWriter, Error> {
        let path = log_dir.join(MARK_FILE);
        let existed = path.exists();
        let newest = newest_slot(log_dir)?;
        let context = || format!("opening {}", path.display());
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path);
        let file = file.map_err(Error::io(context()))?;
        if !existed {
            // Written, not sparse: a later mark never needs a new block,
            // so it can be written on a full disk.
            file.write_all_at(&[0u8; 2 * SLOT_STRIDE as usize], 0).map_err(Error::io(context()))?;
            file.sync_all().map_err(Error::io(context()))?;
            crate::log::segment::sync_dir(log_dir)?;
        }
        let (sequence, written) = newest.map_or((0, None), |(sequence, mark)| (sequence, Some(mark)));
        Ok(MarkWriter { path, file, sequence, written })
    }

    /// Makes `mark` the durable mark (one write and one fdatasync), unless
    /// it is the one already written.
    ///
    /// # Errors
    /// I/O errors: the file then still holds the mark before.
    pub fn write(&mut self, mark: Mark) -> Result<(), Error> {
        if self.written == Some(mark) {
            return Ok(());
        }
        self.sequence += 1;
        let at = (self.sequence % 2) * SLOT_STRIDE;
        let context = || format!("writing the durable mark to {}", self.path.display());
        self.file.write_all_at(&encode_slot(self.sequence, mark), at).map_err(Error::io(context()))?;
        self.file.sync_data().map_err(Error::io(context()))?;
        self.written = Some(mark);
        Ok(())
    }
}

/// The background thread that keeps the mark file up to the log's durable
/// end.
#[derive(Debug)]
pub struct Marker {
    stop: Sender<()>,
    thread: Option<std::thread::JoinHandle<MarkWriter>>,
    durable: Arc<DurableEnd>,
}

impl Marker {
    /// Starts writing what `durable` says every [`MARK_INTERVAL`].
    ///
    /// # Errors
    /// The thread cannot be started.
    pub fn start(writer: MarkWriter, durable: Arc<DurableEnd>) -> Result<Marker, Error> {
        let (stop, stopped) = std::sync::mpsc::channel();
        let shared = Arc::clone(&durable);
        let thread = std::thread::Builder::new()
            .name("quipu-marker".into())
            .spawn(move || run(writer, &shared, &stopped))
            .map_err(Error::io("starting the durable mark's thread"))?;
        Ok(Marker { stop, thread: Some(thread), durable })
    }

    /// Stops the thread and writes the last durable end (call once the
    /// sequencer has stopped).
    ///
    /// # Errors
    /// I/O errors of that last write.
    pub fn finish(&mut self) -> Result<(), Error> {
        let _ = self.stop.send(());
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        let mut writer =
            thread.join().map_err(|_| Error::io("the durable mark's thread")(std::io::Error::other("it panicked")))?;
        match self.durable.get() {
            Some(mark) => writer.write(mark),
            None => Ok(()),
        }
    }
}

fn run(mut writer: MarkWriter, durable: &DurableEnd, stopped: &Receiver<()>) -> MarkWriter {
    let mut failing = false;
    loop {
        match stopped.recv_timeout(MARK_INTERVAL) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return writer,
        }
        let Some(mark) = durable.get() else { continue };
        match writer.write(mark) {
            Ok(()) => failing = false,
            Err(error) if !failing => {
                tracing::warn!(%error, "cannot write the durable mark; recovery will treat the newest records as a possible torn write");
                failing = true;
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_valid_slot_is_the_mark() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert_eq!(read(dir.path()).expect("read"), None, "no file, no mark");
        let mut writer = MarkWriter::open(dir.path()).expect("open");
        assert_eq!(read(dir.path()).expect("read"), None, "an empty file holds no mark");
        writer.write(Mark { segment: 0, offset: 100 }).expect("write");
        writer.write(Mark { segment: 0, offset: 200 }).expect("write");
        assert_eq!(read(dir.path()).expect("read"), Some(Mark { segment: 0, offset: 200 }));
        let mut reopened = MarkWriter::open(dir.path()).expect("reopen");
        assert_eq!(reopened.written, Some(Mark { segment: 0, offset: 200 }));
        reopened.write(Mark { segment: 1, offset: 50 }).expect("write");
        assert_eq!(read(dir.path()).expect("read"), Some(Mark { segment: 1, offset: 50 }), "sequences go on");
    }

    #[test]
    fn a_torn_slot_leaves_the_mark_before_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut writer = MarkWriter::open(dir.path()).expect("open");
        writer.write(Mark { segment: 1, offset: 100 }).expect("write");
        writer.write(Mark { segment: 1, offset: 300 }).expect("write");
        let path = dir.path().join(MARK_FILE);
        let mut bytes = std::fs::read(&path).expect("read");
        // The second write went to slot 0 (sequence 2).
        bytes[30] ^= 0x01;
        std::fs::write(&path, &bytes).expect("write");
        assert_eq!(read(dir.path()).expect("read"), Some(Mark { segment: 1, offset: 100 }));
    }
}
