//! This crate's error type. Every variant names the case and carries what
//! a user needs to act on it. A concurrency conflict is not an error: it is
//! the [`crate::AppendOutcome::Conflict`] outcome.

use std::path::PathBuf;

use crate::event::{EventId, EventIdError, NameError, NameKind, StreamName};
use crate::position::{Position, Revision};

/// Everything that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A stream name, event type or tag breaks a naming rule.
    #[error("invalid {kind} {name:?}: {reason}")]
    InvalidName {
        /// Which kind of name.
        kind: NameKind,
        /// The name (first 64 characters).
        name: String,
        /// The rule it breaks.
        reason: String,
    },
    /// Text that should be a UUID is not one.
    #[error("invalid event id {text:?}: {reason}")]
    InvalidEventId {
        /// The text (first 64 characters).
        text: String,
        /// What the parser said.
        reason: String,
    },
    /// One event is larger than the configured limit.
    #[error("event {event_id} is {size_bytes} bytes, larger than the limit of {limit_bytes} bytes")]
    EventTooLarge {
        /// The event.
        event_id: EventId,
        /// Its size (data, metadata, type, tags, id).
        size_bytes: usize,
        /// The limit (`Options::event_bytes_max`).
        limit_bytes: usize,
    },
    /// The whole append is larger than the configured limit.
    #[error("append is {size_bytes} bytes, larger than the limit of {limit_bytes} bytes")]
    AppendTooLarge {
        /// Sum of its events' sizes.
        size_bytes: usize,
        /// The limit (`Options::append_bytes_max`).
        limit_bytes: usize,
    },
    /// The append has more events than allowed.
    #[error("append has {count} events, more than the limit of {limit}")]
    TooManyEvents {
        /// Events in the append.
        count: usize,
        /// The limit (`Options::append_events_max`).
        limit: usize,
    },
    /// The append writes to more streams than allowed.
    #[error("append writes to {count} streams, more than the limit of {limit}")]
    TooManyStreams {
        /// Streams in the append.
        count: usize,
        /// The limit (`Options::append_streams_max`).
        limit: usize,
    },
    /// An event has too many tags, or the same tag twice.
    #[error("event {event_id} has invalid tags: {reason}")]
    InvalidTags {
        /// The event.
        event_id: EventId,
        /// What is wrong.
        reason: String,
    },
    /// The append holds no events at all.
    #[error("append holds no events; at least one event is required")]
    EmptyAppend,
    /// A DCB condition has no query items.
    #[error("the append's condition has an empty query; give at least one item")]
    EmptyQuery,
    /// The same stream appears in two writes of one append.
    #[error("stream {stream} appears more than once in one append; put its events in one write")]
    DuplicateStream {
        /// The stream.
        stream: StreamName,
    },
    /// The same event id appears twice in one append.
    #[error("event id {event_id} appears more than once in one append")]
    DuplicateEventId {
        /// The id.
        event_id: EventId,
    },
    /// Some of the append's event ids were already written, but not by an
    /// identical append, so it is neither new nor a retry.
    #[error(
        "event id {event_id} was already written at position {position} by a different append; \
         a retry must resend exactly the same events"
    )]
    EventIdReused {
        /// The reused id.
        event_id: EventId,
        /// Where it was written.
        position: Position,
    },
    /// A snapshot names a revision its stream does not have.
    #[error(
        "a snapshot of {stream} at revision {} is beyond the stream (last revision {}); write it after the events it folds",
        revision.0,
        last.map_or_else(|| "none: no events".to_string(), |r| r.0.to_string())
    )]
    SnapshotBeyondStream {
        /// The stream.
        stream: StreamName,
        /// The snapshot's revision.
        revision: Revision,
        /// The stream's last revision.
        last: Option<Revision>,
    },
    /// A snapshot is larger than an append may be.
    #[error("snapshot of {bytes} bytes is larger than the maximum of {max}")]
    SnapshotTooLarge {
        /// Its size.
        bytes: usize,
        /// The limit (`Options::append_bytes_max`).
        max: usize,
    },
    /// A read asked for a stream that has no events.
    #[error("stream {stream} not found")]
    StreamNotFound {
        /// The stream.
        stream: StreamName,
    },
    /// A read asked for more events than one read may return.
    #[error("read limit {limit} is larger than the maximum of {limit_max}")]
    ReadLimitTooLarge {
        /// Requested.
        limit: usize,
        /// Allowed (`Options::read_events_max`).
        limit_max: usize,
    },
    /// A record in a segment file failed its checksum or could not be
    /// decoded, and it is not a torn tail. The data is not served.
    #[error("corrupt log: segment {} at offset {offset}: {reason}", segment.display())]
    Corrupt {
        /// The segment file.
        segment: PathBuf,
        /// Byte offset of the bad record in that file.
        offset: u64,
        /// What failed.
        reason: String,
    },
    /// The index claims more of the log than the log holds: the log lost
    /// data that had been written. Delete the index directory to rebuild it
    /// from what the log holds, knowing that data is gone.
    #[error(
        "the index covers the log up to segment {index_segment} offset {index_offset}, \
         but the log ends at segment {log_segment} offset {log_offset}: log data is missing"
    )]
    IndexAheadOfLog {
        /// Segment the index checkpoint names.
        index_segment: u32,
        /// Offset the index checkpoint names.
        index_offset: u64,
        /// Last segment found.
        log_segment: u32,
        /// End of that segment.
        log_offset: u64,
    },
    /// A write or fsync failed, so the store stopped accepting appends
    /// (fail-stop); reads still work. Restart to recover. Nothing of the
    /// append that gets it is written (see `docs/storage.md`).
    #[error("the store stopped accepting appends after a failed write ({reason}); this append was not written")]
    StoreFailed {
        /// The first failure.
        reason: String,
    },
    /// The store could not write the append now and wrote nothing of it
    /// (a new log segment could not be made: too many open files, a full
    /// disk). The store goes on; sending the append again is safe.
    #[error("the store could not write the append now: {reason}; nothing was written, send it again")]
    NotWritten {
        /// What failed.
        reason: String,
    },
    /// This store is a cluster's replica and the cluster could not take
    /// the append (the shared log cannot be reached, or this node stopped
    /// applying it); nothing was written.
    #[error("the cluster could not take the append: {reason}; nothing was written")]
    ClusterUnavailable {
        /// Why.
        reason: String,
    },
    /// Whether the append was written is not known: a cluster's replica
    /// could not learn whether the shared log took it before its deadline,
    /// or a store's log write failed and could not be cut back.
    #[error(
        "the append's outcome is unknown ({reason}): send it again with the same event ids; \
         a copy already written is answered as a retry"
    )]
    OutcomeUnknown {
        /// Why.
        reason: String,
    },
    /// This store is a cluster's replica and the append writes streams
    /// that the cluster keeps in different partitions of its log.
    #[error("{reason}")]
    CrossPartition {
        /// Which streams, which partitions, and what to do.
        reason: String,
    },
    /// The store is closed or closing.
    #[error("the store is closed")]
    Closed,
    /// A scavenge is already running on this store; one runs at a time.
    #[error("a scavenge is already running")]
    ScavengeRunning,
    /// Another process (or store in this process) has the data directory.
    #[error("data directory {} is in use by another store", path.display())]
    Locked {
        /// The directory.
        path: PathBuf,
    },
    /// The data directory was written by an unknown format version.
    #[error("{} has format version {found}; this build reads versions 1 to {supported}", path.display())]
    UnsupportedFormat {
        /// The file holding the version.
        path: PathBuf,
        /// Version found.
        found: u32,
        /// Newest version this build understands (it reads all from 1).
        supported: u32,
    },
    /// Options that cannot work together.
    #[error("invalid options: {reason}")]
    InvalidOptions {
        /// What is wrong.
        reason: String,
    },
    /// An operating-system I/O error.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The index's small metadata store (fjall: snapshots, generation
    /// markers) failed.
    #[error("the index's metadata store failed: {}", fjall_reason(.0))]
    Index(#[from] fjall::Error),
}

impl From<NameError> for Error {
    fn from(NameError { kind, name, reason }: NameError) -> Error {
        Error::InvalidName { kind, name, reason }
    }
}

impl From<EventIdError> for Error {
    fn from(EventIdError { text, reason }: EventIdError) -> Error {
        Error::InvalidEventId { text, reason }
    }
}

impl Error {
    /// Wraps an I/O error with what was being done.
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}

/// What an error of fjall says to an operator: the I/O error behind it
/// when there is one, else a sentence for the kinds that need one, never
/// its Debug text alone.
fn fjall_reason(error: &fjall::Error) -> String {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(inner) = cause {
        if let Some(io) = inner.downcast_ref::<std::io::Error>() {
            return io.to_string();
        }
        cause = inner.source();
    }
    match error {
        fjall::Error::Poisoned => {
            "an earlier write of it failed, so it takes no more until the store is opened again".into()
        }
        fjall::Error::Locked => "another process holds it".into(),
        fjall::Error::Unrecoverable => {
            "it cannot be recovered; delete the index directory to rebuild the index (client snapshots are lost)".into()
        }
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod fjall_reason_tests {
    use super::*;

    #[test]
    fn an_io_error_behind_the_index_is_told_as_the_io_error() {
        let error = Error::Index(fjall::Error::Io(std::io::Error::from_raw_os_error(28)));
        let text = error.to_string();
        assert!(text.contains("No space left on device"), "{text}");
        assert!(!text.contains("FjallError") && !text.contains("Os {"), "{text}");
        assert!(!Error::Index(fjall::Error::Poisoned).to_string().contains("Poisoned"));
    }
}
