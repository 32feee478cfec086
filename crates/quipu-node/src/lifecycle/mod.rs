//! Stream lifecycle: per-stream metadata (max count, max age, truncate
//! before, custom JSON), soft delete and tombstone, applied to reads of
//! the stream.
//!
//! What it promises:
//! - Metadata is kept in the system stream `$stream-metadata` (one record
//!   per change, the whole metadata each time), so it outlives restarts.
//! - A read of a stream (and a load) returns only its visible events:
//!   revisions from `truncate_before`, the last `max_count`, those
//!   committed within `max_age_s`. A stream with none visible reads as
//!   not found.
//! - A soft delete sets `truncate_before` past the last event: the stream
//!   reads as not found until new events are appended (revisions go on
//!   from where they were; append with `any` or the exact last revision).
//! - A tombstone is for good: reads are 410 `stream_deleted`, appends are
//!   refused, and no event of the stream lands after the tombstone's
//!   record in the log. Appends are admitted under a shared gate up to
//!   their hand-over to the sequencer; a tombstone takes the gate
//!   exclusively to close the stream, so every append admitted before it
//!   is queued ahead of its record, and every later one is refused. (The
//!   gate orders this node's appends; a tombstone another node of a
//!   cluster wrote closes the stream here when [`Lifecycle::refresh`]
//!   takes it in.)
//! - One-stream subscriptions start at the first visible event (and are
//!   refused for a tombstoned stream); snapshot loads of a tombstoned or
//!   wholly hidden stream are refused too.
//! - `$all`, category, type and tag reads still hold the hidden events, as
//!   the log does until a scavenge ([`scavenger`]) removes them.

pub mod scavenger;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, PoisonError, RwLock};

use quipu_core::{AppendRequest, AsOf, Direction, RecordedEvent, Revision, Store, StreamName};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::clock::now_us;
use crate::folded_log::{Fold, FoldedLog, Writer};
use crate::{ApiError, ErrorCode};

/// The system stream holding every stream's metadata.
pub const METADATA_STREAM: &str = "$stream-metadata";

/// A stream's metadata.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// Only the last this many events are visible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_count: Option<u64>,
    /// Only events committed within this many seconds are visible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_s: Option<u64>,
    /// Events before this revision are not visible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncate_before: Option<u64>,
    /// Anything the application keeps with the stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<Value>,
    /// Deleted for good.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tombstoned: bool,
}

/// Records of `$stream-metadata`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Record {
    MetadataSet { stream: String, metadata: Metadata },
}

impl crate::record_log::Record for Record {
    fn event_type(&self) -> &'static str {
        "StreamMetadataSet"
    }
}

/// What `$stream-metadata` says, folded.
#[derive(Default)]
struct State {
    metadata: BTreeMap<String, Metadata>,
    /// How many times each stream's metadata was written.
    writes: BTreeMap<String, u64>,
}

impl State {
    /// A stream's metadata (the default when none was set).
    fn metadata_of(&self, stream: &str) -> Metadata {
        self.metadata.get(stream).cloned().unwrap_or_default()
    }

    /// The revision of a stream's metadata (see
    /// [`Lifecycle::metadata_revision`]).
    fn revision(&self, stream: &str) -> Option<u64> {
        self.writes.get(stream).and_then(|n| n.checked_sub(1))
    }
}

impl Fold<Record> for State {
    fn fold(&mut self, Record::MetadataSet { stream, metadata }: Record) {
        *self.writes.entry(stream.clone()).or_default() += 1;
        self.metadata.insert(stream, metadata);
    }
}

/// Every stream's metadata.
pub struct Lifecycle {
    store: Arc<Store>,
    folded: FoldedLog<Record, State>,
    /// Streams whose tombstone this node is writing: closed to appends
    /// from before the record is queued until it is folded (or failed).
    closing: RwLock<BTreeSet<String>>,
    /// Held shared by each append from its admission to its hand-over to
    /// the sequencer, and exclusively by a tombstone closing its stream.
    gate: RwLock<()>,
}

impl Lifecycle {
    /// Loads the metadata from `$stream-metadata`.
    ///
    /// # Errors
    /// Read errors; a record that does not decode.
    pub fn open(store: Arc<Store>) -> Result<Lifecycle, ApiError> {
        let folded = FoldedLog::open(Arc::clone(&store), METADATA_STREAM)?;
        Ok(Lifecycle { store, folded, closing: RwLock::default(), gate: RwLock::new(()) })
    }

    /// Takes in the metadata other writers recorded since (sets, deletes,
    /// tombstones): reads, admissions and revisions follow it from then.
    ///
    /// # Errors
    /// As [`Lifecycle::open`]; the metadata is then unchanged.
    pub async fn refresh(&self) -> Result<(), ApiError> {
        self.folded.refresh().await
    }

    /// A stream's metadata (the default when none was set).
    #[must_use]
    pub fn metadata(&self, stream: &str) -> Metadata {
        self.folded.state().metadata_of(stream)
    }

    /// The revision of a stream's metadata: 0 for its first write, one
    /// more for each later one (sets, deletes, a tombstone); `None` when
    /// it was never written.
    #[must_use]
    pub fn metadata_revision(&self, stream: &str) -> Option<u64> {
        self.folded.state().revision(stream)
    }

    /// Replaces a stream's metadata when its revision (see
    /// [`Lifecycle::metadata_revision`]) meets `expected`, checked and
    /// written under one lock. Answers the new revision, or the actual
    /// one when `expected` was not met (nothing is written then).
    ///
    /// # Errors
    /// As [`Lifecycle::set`].
    pub async fn set_expecting(
        &self,
        stream: &str,
        metadata: Metadata,
        expected: quipu_core::ExpectedRevision,
    ) -> Result<Result<u64, Option<u64>>, ApiError> {
        check_settable(stream, &metadata)?;
        let mut writer = self.folded.writer().await?;
        let actual = writer.state().revision(stream);
        if !expected.is_met_by(actual.map(quipu_core::Revision)) {
            return Ok(Err(actual));
        }
        write_locked(&mut writer, stream, |_| Ok(metadata)).await?;
        Ok(Ok(writer.state().revision(stream).unwrap_or_default()))
    }

    /// Replaces a stream's metadata (a tombstone stays).
    ///
    /// # Errors
    /// 400 for a bad stream or `max_count` 0, 410 for a tombstoned
    /// stream, store errors.
    pub async fn set(&self, stream: &str, metadata: Metadata) -> Result<Metadata, ApiError> {
        check_settable(stream, &metadata)?;
        self.write(stream, |_| Ok(metadata.clone())).await
    }

    /// Soft-deletes a stream: it reads as not found until new events come.
    ///
    /// # Errors
    /// 404 for a stream without events, 410 for a tombstoned one.
    pub async fn delete(&self, stream: &str) -> Result<Metadata, ApiError> {
        let name = StreamName::new(stream)?;
        let last = self.store.stream_info(&name)?.last_revision;
        let Some(last) = last else { return Err(quipu_core::Error::StreamNotFound { stream: name }.into()) };
        self.delete_through(stream, last).await
    }

    /// Soft-deletes a stream's events up to `last` (inclusive), a revision
    /// the caller read and checked: events appended after that check stay
    /// visible, as if they came after the delete.
    ///
    /// # Errors
    /// 400 for a bad stream, 410 for a tombstoned one, store errors.
    pub async fn delete_through(&self, stream: &str, last: quipu_core::Revision) -> Result<Metadata, ApiError> {
        StreamName::new(stream)?;
        self.write(stream, |mut metadata| {
            // A truncation set further already stays where it is.
            metadata.truncate_before = Some(metadata.truncate_before.map_or(last.0 + 1, |t| t.max(last.0 + 1)));
            Ok(metadata)
        })
        .await
    }

    /// Tombstones a stream: deleted for good, never written again. The
    /// stream is closed before its record is written, under the gate, so
    /// appends admitted before are queued ahead of the record and later
    /// ones are refused.
    ///
    /// # Errors
    /// 410 when it is already, store errors (the stream is then open
    /// again).
    pub async fn tombstone(&self, stream: &str) -> Result<Metadata, ApiError> {
        StreamName::new(stream)?;
        let mut writer = self.folded.writer().await?;
        let current = writer.state().metadata_of(stream);
        if current.tombstoned {
            return Err(deleted(stream));
        }
        let metadata = Metadata { tombstoned: true, ..current };
        {
            let _closing = self.gate.write().unwrap_or_else(PoisonError::into_inner);
            self.closing.write().unwrap_or_else(PoisonError::into_inner).insert(stream.to_string());
        }
        let written = writer.append(Record::MetadataSet { stream: stream.to_string(), metadata }).await;
        // Folded or failed: either way the stream is no longer closing.
        self.closing.write().unwrap_or_else(PoisonError::into_inner).remove(stream);
        written?;
        Ok(writer.state().metadata_of(stream))
    }

    /// Holds the gate shared: appends take it from admission to hand-over.
    pub fn admitting(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.gate.read().unwrap_or_else(PoisonError::into_inner)
    }

    async fn write(
        &self,
        stream: &str,
        change: impl FnOnce(Metadata) -> Result<Metadata, ApiError>,
    ) -> Result<Metadata, ApiError> {
        let mut writer = self.folded.writer().await?;
        write_locked(&mut writer, stream, change).await
    }

    /// Refuses appends to tombstoned streams.
    ///
    /// # Errors
    /// 410 `stream_deleted` naming the first one written.
    pub fn check(&self, request: &AppendRequest) -> Result<(), ApiError> {
        let state = self.folded.state();
        let closing = self.closing.read().unwrap_or_else(PoisonError::into_inner);
        if state.metadata.is_empty() && closing.is_empty() {
            return Ok(());
        }
        let closed =
            |stream: &str| closing.contains(stream) || state.metadata.get(stream).is_some_and(|m| m.tombstoned);
        match request.writes.iter().find(|w| closed(w.stream.as_str())) {
            Some(write) => Err(deleted(write.stream.as_str())),
            None => Ok(()),
        }
    }

    /// Whether `stream` may be read, and from which revision on its events
    /// are visible (`None`: all of them).
    ///
    /// # Errors
    /// 410 for a tombstoned stream, read errors.
    pub fn visible_from(&self, stream: &StreamName) -> Result<Option<u64>, ApiError> {
        let metadata = self.metadata(stream.as_str());
        if metadata.tombstoned {
            return Err(deleted(stream.as_str()));
        }
        self.first_visible(stream, &metadata)
    }

    /// A subscription start for `stream` that skips its hidden events.
    ///
    /// # Errors
    /// 410 for a tombstoned stream, read errors.
    pub fn subscription_start(
        &self,
        stream: &StreamName,
        start: crate::feed::Start,
    ) -> Result<crate::feed::Start, ApiError> {
        use crate::feed::Start;
        Ok(match (self.visible_from(stream)?, start) {
            (Some(first), Start::Revision(revision)) if revision.0 < first => Start::Revision(Revision(first)),
            (_, start) => start,
        })
    }

    /// Reads `stream` as [`crate::feed::Source::read_as_of`] does, but
    /// only its visible events.
    ///
    /// # Errors
    /// 410 for a tombstoned stream, 404 when nothing is visible, read
    /// errors.
    pub fn read(
        &self,
        stream: &StreamName,
        from: Option<u64>,
        direction: Direction,
        limit: usize,
        as_of: Option<AsOf>,
    ) -> Result<Vec<RecordedEvent>, ApiError> {
        let metadata = self.metadata(stream.as_str());
        if metadata.tombstoned {
            return Err(deleted(stream.as_str()));
        }
        let source = crate::feed::Source::Stream(stream.clone());
        let Some(first) = self.first_visible(stream, &metadata)? else {
            return Ok(source.read_as_of(&self.store, from, direction, limit, as_of)?);
        };
        let not_found = || ApiError::from(quipu_core::Error::StreamNotFound { stream: stream.clone() });
        let mut events = match direction {
            Direction::Forwards => {
                let from = Some(from.map_or(first, |f| f.max(first)));
                match source.read_as_of(&self.store, from, direction, limit, as_of) {
                    Err(quipu_core::Error::StreamNotFound { .. }) => return Err(not_found()),
                    events => events?,
                }
            }
            Direction::Backwards => source.read_as_of(&self.store, from, direction, limit, as_of)?,
        };
        events.retain(|e| e.revision.0 >= first);
        let last = self.store.stream_info(stream)?.last_revision.map_or(0, |r| r.0);
        if events.is_empty() && first > last {
            return Err(not_found());
        }
        Ok(events)
    }

    /// The first visible revision; `None` when every event is.
    fn first_visible(&self, stream: &StreamName, metadata: &Metadata) -> Result<Option<u64>, ApiError> {
        let mut first = metadata.truncate_before;
        if let Some(max_count) = metadata.max_count
            && let Some(last) = self.store.stream_info(stream)?.last_revision
        {
            first = first.max(Some((last.0 + 1).saturating_sub(max_count)));
        }
        if let Some(max_age_s) = metadata.max_age_s {
            let since = now_us().saturating_sub(max_age_s.saturating_mul(1_000_000));
            // The last event committed before `since`, plus one.
            let before = since.checked_sub(1).map(AsOf::Time);
            let old = match before {
                Some(before) => self.store.revision_as_of(stream, before)?,
                None => None,
            };
            first = first.max(Some(old.map_or(0, |r: Revision| r.0 + 1)));
        }
        Ok(first.filter(|f| *f > 0))
    }
}

/// Writes `change` of a stream's metadata through `writer`, unless the
/// stream is tombstoned; answers the metadata written.
async fn write_locked(
    writer: &mut Writer<'_, Record, State>,
    stream: &str,
    change: impl FnOnce(Metadata) -> Result<Metadata, ApiError>,
) -> Result<Metadata, ApiError> {
    let current = writer.state().metadata_of(stream);
    if current.tombstoned {
        return Err(deleted(stream));
    }
    let metadata = change(current)?;
    writer.append(Record::MetadataSet { stream: stream.to_string(), metadata }).await?;
    Ok(writer.state().metadata_of(stream))
}

/// Refuses metadata no one may set: a bad stream name, `max_count` 0, a
/// tombstone (that takes a delete).
fn check_settable(stream: &str, metadata: &Metadata) -> Result<(), ApiError> {
    StreamName::new(stream)?;
    if metadata.max_count == Some(0) {
        return Err(ApiError::new(ErrorCode::InvalidMetadata, "max_count must be at least 1"));
    }
    if metadata.tombstoned {
        return Err(ApiError::new(ErrorCode::InvalidMetadata, "tombstone a stream with a delete, not its metadata"));
    }
    Ok(())
}

fn deleted(stream: &str) -> ApiError {
    ApiError::new(ErrorCode::StreamDeleted, format!("stream {stream} was deleted for good (tombstoned)"))
}

#[cfg(test)]
mod tests {
    use quipu_core::{EventType, ExpectedRevision, Options, ProposedEvent};

    use super::*;

    fn append(stream: &str) -> AppendRequest {
        let event = ProposedEvent::new(EventType::new("Noted").expect("valid"), b"{}".to_vec());
        AppendRequest::to_stream(StreamName::new(stream).expect("valid"), ExpectedRevision::Any, vec![event])
    }

    /// An append holding the gate (admitted, not yet queued) keeps a
    /// tombstone of its stream from closing it; once it lets go, the
    /// tombstone closes the stream before its record is written, and later
    /// appends are refused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[allow(clippy::await_holding_lock, reason = "the test holds the gate on purpose while the tombstone waits")]
    async fn a_tombstone_waits_for_admitted_appends_and_closes_before_its_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(dir.path(), Options::default()).expect("open"));
        let lifecycle = Arc::new(Lifecycle::open(Arc::clone(&store)).expect("open"));
        let admitted = lifecycle.admitting();
        assert!(lifecycle.check(&append("race-1")).is_ok());
        let tombstoning = {
            let lifecycle = Arc::clone(&lifecycle);
            tokio::spawn(async move { lifecycle.tombstone("race-1").await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(!tombstoning.is_finished(), "the tombstone went past an admitted append");
        assert!(lifecycle.metadata("race-1") == Metadata::default(), "the stream is not closed yet");
        drop(admitted);
        let metadata = tombstoning.await.expect("task").expect("tombstone");
        assert!(metadata.tombstoned);
        assert_eq!(lifecycle.check(&append("race-1")).expect_err("closed").code, ErrorCode::StreamDeleted);
        assert!(lifecycle.check(&append("race-2")).is_ok(), "other streams stay open");
    }

    /// Metadata revisions count every write, outlive a restart, and a
    /// write expecting a replaced revision changes nothing.
    #[tokio::test]
    async fn metadata_revisions_count_writes_and_guard_replacements() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(dir.path(), Options::default()).expect("open"));
        let lifecycle = Lifecycle::open(Arc::clone(&store)).expect("open");
        assert_eq!(lifecycle.metadata_revision("order-1"), None);
        let three = Metadata { max_count: Some(3), ..Metadata::default() };
        let first = lifecycle.set_expecting("order-1", three.clone(), ExpectedRevision::NoStream).await;
        assert_eq!(first.expect("written"), Ok(0));
        let two = Metadata { max_count: Some(2), ..Metadata::default() };
        let stale = lifecycle.set_expecting("order-1", two.clone(), ExpectedRevision::NoStream).await;
        assert_eq!(stale.expect("answered"), Err(Some(0)), "refused with the actual revision");
        assert_eq!(lifecycle.metadata("order-1"), three, "nothing changed");
        let next = lifecycle.set_expecting("order-1", two.clone(), ExpectedRevision::Exact(quipu_core::Revision(0)));
        assert_eq!(next.await.expect("written"), Ok(1));
        lifecycle.set("order-1", three).await.expect("set");
        assert_eq!(lifecycle.metadata_revision("order-1"), Some(2));
        let zero = Metadata { max_count: Some(0), ..Metadata::default() };
        assert!(lifecycle.set_expecting("order-1", zero, ExpectedRevision::Any).await.is_err());
        drop(lifecycle);
        let reopened = Lifecycle::open(store).expect("open");
        assert_eq!(reopened.metadata_revision("order-1"), Some(2));
    }

    /// Two registries over one store (two nodes of a cluster): each takes
    /// in the other's metadata, deletes and tombstones on refresh, with
    /// their revisions, and a change through either refreshes first.
    #[tokio::test]
    async fn metadata_another_writer_records_is_taken_in_on_refresh_and_changes_follow_it() {
        let (_dir, _store, one, two) = crate::record_log::two_over_one_store(Lifecycle::open);
        let three = Metadata { max_count: Some(3), ..Metadata::default() };
        one.set("order-1", three.clone()).await.expect("set");
        assert_eq!((two.metadata("order-1"), two.metadata_revision("order-1")), (Metadata::default(), None));
        two.refresh().await.expect("refresh");
        assert_eq!((two.metadata("order-1"), two.metadata_revision("order-1")), (three.clone(), Some(0)));

        one.tombstone("order-2").await.expect("tombstone");
        assert!(two.check(&append("order-2")).is_ok(), "not before a refresh");
        let two_events = Metadata { max_count: Some(2), ..Metadata::default() };
        let set = two.set_expecting("order-1", two_events.clone(), ExpectedRevision::Exact(Revision(0))).await;
        assert_eq!(set.expect("two writes after one's tombstone"), Ok(1));
        assert_eq!(two.check(&append("order-2")).expect_err("closed").code, ErrorCode::StreamDeleted);
        let refused = two.set("order-2", three.clone()).await.expect_err("tombstoned by one");
        assert_eq!(refused.code, ErrorCode::StreamDeleted);

        assert_eq!(one.metadata("order-1"), three, "not before a refresh");
        one.refresh().await.expect("refresh");
        assert_eq!((one.metadata("order-1"), one.metadata_revision("order-1")), (two_events, Some(1)));
        assert_eq!(one.metadata_revision("order-2"), Some(0));
    }

    /// A delete covers the revisions it was given, never less than a
    /// truncation already set.
    #[tokio::test]
    async fn a_delete_through_a_revision_hides_up_to_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(dir.path(), Options::default()).expect("open"));
        let lifecycle = Lifecycle::open(Arc::clone(&store)).expect("open");
        let deleted = lifecycle.delete_through("order-1", quipu_core::Revision(4)).await.expect("delete");
        assert_eq!(deleted.truncate_before, Some(5));
        let further = Metadata { truncate_before: Some(9), ..Metadata::default() };
        lifecycle.set("order-2", further).await.expect("set");
        let kept = lifecycle.delete_through("order-2", quipu_core::Revision(4)).await.expect("delete");
        assert_eq!(kept.truncate_before, Some(9), "a delete never brings events back");
    }
}
