//! [`RecordLog`]: a system stream of JSON records that one of the
//! server's registries (groups, projections, integration types) folds when
//! it opens and appends to as it changes.
//!
//! What it promises: records come back in the order they were written,
//! and each append expects the revision the log last saw, so two writers
//! on one stream cannot interleave unseen; the loser gets a 409 saying the
//! stream changed. A record that does not decode is reported, never
//! skipped or guessed at.

use std::marker::PhantomData;
use std::sync::Arc;

use quipu_core::{
    AppendOutcome, AppendRequest, Direction, EventType, ExpectedRevision, ProposedEvent, Revision, Store, StreamName,
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
        let mut records = Vec::new();
        let mut revision = None;
        let mut next = Revision(0);
        loop {
            let page = match store.read_stream(&stream, Some(next), Direction::Forwards, PAGE) {
                Err(quipu_core::Error::StreamNotFound { .. }) => Vec::new(),
                page => page?,
            };
            let Some(last) = page.last() else { break };
            next = last.revision.next();
            for event in &page {
                revision = Some(event.revision);
                records.push(serde_json::from_slice(&event.data).map_err(|error| {
                    ApiError::new(
                        ErrorCode::CorruptRecord,
                        format!("record {} of {stream} does not decode: {error}", event.revision.0),
                    )
                })?);
            }
        }
        Ok((RecordLog { store, stream, revision, records: PhantomData }, records))
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
