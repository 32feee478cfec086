//! [`RecordLog`]: a system stream of JSON records that one of the
//! server's registries (groups, projections, integration types, schemas,
//! ...) folds when it opens, appends to as it changes, and reads on from
//! when other writers (the other nodes of a cluster) may have appended.
//!
//! What it promises: records come back in the order they were written,
//! each once (open, then [`RecordLog::read_new`], go on from the last
//! revision seen), and each append expects the revision the log last
//! saw, so two writers on one stream cannot interleave unseen; the loser
//! gets a 409 saying the stream changed. A record that does not decode is
//! reported, never skipped or guessed at: the read that meets it returns
//! nothing and the log stays where it was.

use std::marker::PhantomData;
use std::sync::Arc;

use quipu_core::{
    AppendOutcome, AppendRequest, Direction, EventType, ExpectedRevision, ProposedEvent, RecordedEvent, Revision,
    Store, StreamName,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

use crate::{ApiError, ErrorCode};

/// A record kept in a [`RecordLog`].
pub trait Record: Serialize + DeserializeOwned {
    /// The event type the record is stored under.
    fn event_type(&self) -> &'static str;
}

/// Records read pages of this many events.
const PAGE: usize = 1000;

/// A system stream of records of type `R`.
pub struct RecordLog<R> {
    store: Arc<Store>,
    stream: StreamName,
    /// Last revision seen (read or written).
    revision: Option<Revision>,
    records: PhantomData<fn() -> R>,
}

impl<R: Record> RecordLog<R> {
    /// Opens the system stream `stream` (which starts with `$`) of
    /// `store`, returning it with every record written so far, oldest
    /// first.
    ///
    /// # Panics
    /// When `stream` is not a system stream name (a programming error).
    ///
    /// # Errors
    /// Read errors of the store; a 500 naming the record that does not
    /// decode.
    pub fn open(store: Arc<Store>, stream: &str) -> Result<(RecordLog<R>, Vec<R>), ApiError> {
        let stream = StreamName::system(stream).expect("record logs are system streams");
        let mut log = RecordLog { store, stream, revision: None, records: PhantomData };
        let records = log.read_new()?;
        Ok((log, records))
    }

    /// The records written after the last revision this log saw, oldest
    /// first (none when nobody wrote since); the log then stands at the
    /// last of them, so the next append expects it.
    ///
    /// # Errors
    /// Read errors of the store; a 500 `corrupt_record` naming the record
    /// that does not decode. Either way nothing is returned and the log
    /// stays where it was, so the next read meets the same records.
    pub fn read_new(&mut self) -> Result<Vec<R>, ApiError> {
        let mut records = Vec::new();
        let mut revision = self.revision;
        let mut next = Revision(self.next_revision());
        loop {
            let page = match self.store.read_stream(&self.stream, Some(next), Direction::Forwards, PAGE) {
                Err(quipu_core::Error::StreamNotFound { .. }) => Vec::new(),
                page => page?,
            };
            let Some(last) = page.last() else { break };
            next = last.revision.next();
            for event in &page {
                revision = Some(event.revision);
                records.push(self.decode(event)?);
            }
        }
        self.revision = revision;
        Ok(records)
    }

    fn decode(&self, event: &RecordedEvent) -> Result<R, ApiError> {
        serde_json::from_slice(&event.data).map_err(|error| {
            ApiError::new(
                ErrorCode::CorruptRecord,
                format!("record {} of {} does not decode: {error}", event.revision.0, self.stream),
            )
        })
    }

    /// The revision the next record will get.
    #[must_use]
    pub fn next_revision(&self) -> u64 {
        self.revision.map_or(0, |r| r.0 + 1)
    }

    /// Appends `record` durably at the revision this log last saw.
    ///
    /// # Errors
    /// 409 `registry_changed` when another writer appended first; store
    /// errors.
    pub async fn append(&mut self, record: &R) -> Result<(), ApiError> {
        let expected = self.revision.map_or(ExpectedRevision::NoStream, ExpectedRevision::Exact);
        let data = serde_json::to_vec(record).expect("records serialize");
        let event_type = EventType::new(record.event_type()).expect("record types are valid event types");
        let request =
            AppendRequest::to_stream(self.stream.clone(), expected, vec![ProposedEvent::new(event_type, data)]);
        let (reply, outcome) = oneshot::channel();
        self.store.submit(request, move |result| {
            let _ = reply.send(result);
        });
        match outcome.await.map_err(|_| ApiError::from(quipu_core::Error::Closed))?? {
            AppendOutcome::Written(result) | AppendOutcome::AlreadyWritten(result) => {
                self.revision = result.streams.first().map(|s| s.last_revision);
                Ok(())
            }
            AppendOutcome::Conflict(_) => Err(ApiError::new(
                ErrorCode::RegistryChanged,
                format!("{} was changed by another writer; try again", self.stream),
            )),
        }
    }
}

/// Appends `data` to the system stream `stream` as one event, bypassing
/// any registry: how a test writes a record no registry would.
#[cfg(test)]
pub(crate) fn append_raw(store: &Store, stream: &str, data: &[u8]) {
    let event = ProposedEvent::new(EventType::new("Raw").expect("valid"), data.to_vec());
    let stream = StreamName::system(stream).expect("a system stream");
    store.append(AppendRequest::to_stream(stream, ExpectedRevision::Any, vec![event])).expect("append");
}

/// A store in a fresh directory (which lives as long as the `TempDir`),
/// with `open` run twice over it: two registries standing for two nodes
/// of a cluster, whose stores hold the same records.
#[cfg(test)]
pub(crate) fn two_over_one_store<T, E: std::fmt::Debug>(
    open: impl Fn(Arc<Store>) -> Result<T, E>,
) -> (tempfile::TempDir, Arc<Store>, T, T) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(dir.path(), quipu_core::Options::default()).expect("open the store"));
    let one = open(Arc::clone(&store)).expect("open one");
    let two = open(Arc::clone(&store)).expect("open two");
    (dir, store, one, two)
}

#[cfg(test)]
mod tests {
    use quipu_core::Options;
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Note {
        n: u64,
    }

    impl Record for Note {
        fn event_type(&self) -> &'static str {
            "Noted"
        }
    }

    const STREAM: &str = "$notes";

    /// Two logs over one stream (two writers): each reads what the other
    /// wrote, once, and appends after it without a conflict.
    #[tokio::test]
    async fn read_new_returns_each_record_written_since_once_and_moves_the_expected_revision() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(dir.path(), Options::default()).expect("open"));
        let (mut one, records) = RecordLog::<Note>::open(Arc::clone(&store), STREAM).expect("open");
        assert!(records.is_empty());
        let (mut two, _) = RecordLog::<Note>::open(Arc::clone(&store), STREAM).expect("open");
        one.append(&Note { n: 1 }).await.expect("append");
        one.append(&Note { n: 2 }).await.expect("append");
        let stale = two.append(&Note { n: 0 }).await.expect_err("two has not read them");
        assert_eq!(stale.code, ErrorCode::RegistryChanged);
        assert_eq!(two.read_new().expect("read"), [Note { n: 1 }, Note { n: 2 }]);
        assert_eq!(two.read_new().expect("read"), [], "nothing new");
        assert_eq!(two.next_revision(), 2);
        two.append(&Note { n: 3 }).await.expect("two appends after what it read");
        assert_eq!(one.read_new().expect("read"), [Note { n: 3 }], "not its own records again");
        assert_eq!(one.next_revision(), 3);
    }

    /// Records past a page come back too, in order.
    #[tokio::test]
    async fn read_new_reads_every_page() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(dir.path(), Options::default()).expect("open"));
        let (mut reader, _) = RecordLog::<Note>::open(Arc::clone(&store), STREAM).expect("open");
        let written = u64::try_from(PAGE).expect("small") * 2 + 7;
        for n in 0..written {
            append_raw(&store, STREAM, &serde_json::to_vec(&Note { n }).expect("encode"));
        }
        let read: Vec<u64> = reader.read_new().expect("read").into_iter().map(|note| note.n).collect();
        assert_eq!(read, (0..written).collect::<Vec<_>>());
        assert_eq!(reader.next_revision(), written);
    }

    /// A record that does not decode fails a read as it fails an open,
    /// and the log stays before it: nothing is skipped.
    #[tokio::test]
    async fn a_record_that_does_not_decode_fails_read_new_as_open_and_moves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(dir.path(), Options::default()).expect("open"));
        let (mut reader, _) = RecordLog::<Note>::open(Arc::clone(&store), STREAM).expect("open");
        append_raw(&store, STREAM, &serde_json::to_vec(&Note { n: 1 }).expect("encode"));
        append_raw(&store, STREAM, b"not a note");
        let refused = reader.read_new().expect_err("record 1 does not decode");
        assert_eq!(refused.code, ErrorCode::CorruptRecord);
        assert!(refused.message.contains("record 1 of $notes"), "{}", refused.message);
        assert_eq!(reader.next_revision(), 0, "not even the good record before it was taken");
        assert_eq!(reader.read_new().expect_err("again").code, ErrorCode::CorruptRecord);
        let opened = RecordLog::<Note>::open(Arc::clone(&store), STREAM).map(|_| ()).expect_err("open refuses it");
        assert_eq!(opened.code, refused.code);
    }
}
