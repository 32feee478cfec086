//! Integration events: the event types marked as the ones other systems
//! may see (through a publisher such as the Kafka one), as opposed to a
//! service's internal domain events.
//!
//! What it promises:
//! - The marked set is kept in the system stream `$integration-types`
//!   (records `TypesMarked` and `TypesUnmarked`), so it outlives restarts.
//! - A read or subscription with the integration filter yields exactly the
//!   events whose type is marked when the read runs, in log order; marking
//!   a type later also selects its earlier events in later reads.
//! - Reads go through the event-type index: the first `limit` events of
//!   the union are among the first `limit` of each marked type, so a page
//!   costs one index read per marked type, never a scan of `$all`.
//!
//! The HTTP door serves it at `/v1/integration-types` and
//! `/v1/integration`.

use std::collections::BTreeSet;
use std::sync::Arc;

use quipu_core::{Direction, EventType, Position, RecordedEvent, Store};
use serde::{Deserialize, Serialize};

use crate::folded_log::{Fold, FoldedLog};
use crate::{ApiError, ErrorCode};

/// The system stream holding the marked set.
pub const INTEGRATION_TYPES_STREAM: &str = "$integration-types";

/// Records of `$integration-types`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Record {
    TypesMarked { types: Vec<TypeName> },
    TypesUnmarked { types: Vec<TypeName> },
}

impl crate::record_log::Record for Record {
    fn event_type(&self) -> &'static str {
        match self {
            Record::TypesMarked { .. } => "TypesMarked",
            Record::TypesUnmarked { .. } => "TypesUnmarked",
        }
    }
}

/// An event type as a record holds it: a JSON string, checked as the
/// record decodes (a record naming an invalid type does not decode).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
struct TypeName(EventType);

impl TryFrom<String> for TypeName {
    type Error = String;

    fn try_from(name: String) -> Result<TypeName, String> {
        EventType::new(name.clone()).map(TypeName).map_err(|e| format!("event type {name:?}: {e}"))
    }
}

impl From<TypeName> for String {
    fn from(name: TypeName) -> String {
        name.0.into_string()
    }
}

/// The marked set, shared with readers as it stood when they took it.
#[derive(Default)]
struct Marked(Arc<BTreeSet<EventType>>);

impl Fold<Record> for Marked {
    fn fold(&mut self, record: Record) {
        let marked = Arc::make_mut(&mut self.0);
        match record {
            Record::TypesMarked { types } => marked.extend(types.into_iter().map(|t| t.0)),
            Record::TypesUnmarked { types } => {
                for event_type in types {
                    marked.remove(&event_type.0);
                }
            }
        }
    }
}

/// The event types marked as integration events.
pub struct IntegrationTypes {
    folded: FoldedLog<Record, Marked>,
}

impl std::fmt::Debug for IntegrationTypes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntegrationTypes").field("marked", &self.snapshot()).finish()
    }
}

impl IntegrationTypes {
    /// Loads the marked set from `$integration-types`.
    ///
    /// # Errors
    /// Read errors; a record that does not decode or names an invalid
    /// type.
    pub fn open(store: Arc<Store>) -> Result<IntegrationTypes, ApiError> {
        Ok(IntegrationTypes { folded: FoldedLog::open(store, INTEGRATION_TYPES_STREAM)? })
    }

    /// Takes in the marks and unmarks other writers recorded since.
    ///
    /// # Errors
    /// As [`IntegrationTypes::open`]; the marked set is then unchanged.
    pub async fn refresh(&self) -> Result<(), ApiError> {
        self.folded.refresh().await
    }

    /// The marked types now.
    #[must_use]
    pub fn snapshot(&self) -> Arc<BTreeSet<EventType>> {
        Arc::clone(&self.folded.state().0)
    }

    /// Marks `types` (those marked already stay); returns the marked set.
    ///
    /// # Errors
    /// 400 naming an invalid type (nothing is marked then), store errors.
    pub async fn mark(&self, types: &[String]) -> Result<Arc<BTreeSet<EventType>>, ApiError> {
        let types = parse(types)?;
        let mut writer = self.folded.writer().await?;
        let new: Vec<TypeName> = {
            let marked = &writer.state().0;
            types.into_iter().filter(|t| !marked.contains(t)).map(TypeName).collect()
        };
        if !new.is_empty() {
            writer.append(Record::TypesMarked { types: new }).await?;
        }
        Ok(Arc::clone(&writer.state().0))
    }

    /// Unmarks `types`; returns the marked set.
    ///
    /// # Errors
    /// 400 naming an invalid type, 404 `type_not_marked` naming one that
    /// is not marked (nothing is unmarked then), store errors.
    pub async fn unmark(&self, types: &[String]) -> Result<Arc<BTreeSet<EventType>>, ApiError> {
        let types = parse(types)?;
        let mut writer = self.folded.writer().await?;
        if let Some(missing) = types.iter().find(|t| !writer.state().0.contains(*t)) {
            return Err(ApiError::new(
                ErrorCode::TypeNotMarked,
                format!("event type {:?} is not marked as an integration event", missing.as_str()),
            ));
        }
        writer.append(Record::TypesUnmarked { types: types.into_iter().map(TypeName).collect() }).await?;
        Ok(Arc::clone(&writer.state().0))
    }

    /// Up to `limit` integration events from `from` (inclusive; absent:
    /// the start forwards, the end backwards), in log order, as the log
    /// stood at one moment: each type is read on its own while others may
    /// write, so every read is held to the head taken first (a later event
    /// of one type must not come before an earlier one of another, which a
    /// reader paging on would then skip).
    ///
    /// # Errors
    /// Read errors of the store.
    pub fn read(
        &self,
        store: &Store,
        from: Option<Position>,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, quipu_core::Error> {
        let Some(head) = store.last_position() else { return Ok(Vec::new()) };
        let from = match direction {
            Direction::Forwards => from,
            Direction::Backwards => Some(from.map_or(head, |from| from.min(head))),
        };
        let mut events = Vec::new();
        for event_type in self.snapshot().iter() {
            let read = store.read_event_type(event_type, from, direction, limit)?;
            events.extend(read.into_iter().filter(|e| e.position <= head));
        }
        match direction {
            Direction::Forwards => events.sort_unstable_by_key(|e| e.position),
            Direction::Backwards => events.sort_unstable_by_key(|e| std::cmp::Reverse(e.position)),
        }
        events.truncate(limit);
        Ok(events)
    }
}

/// Parses type names; a bad one is a 400 naming it.
fn parse(types: &[String]) -> Result<Vec<EventType>, ApiError> {
    if types.is_empty() {
        return Err(ApiError::new(ErrorCode::InvalidTypes, "name at least one event type"));
    }
    types
        .iter()
        .map(|t| {
            EventType::new(t.clone())
                .map_err(|e| ApiError::new(ErrorCode::InvalidTypes, format!("event type {t:?}: {e}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use quipu_core::{AppendRequest, ExpectedRevision, Options, ProposedEvent, StreamName};

    use super::*;

    const TYPES: [&str; 4] = ["Placed", "Shipped", "Invoiced", "Noted"];

    /// A store with 300 events of mixed types over a few streams (a fixed
    /// pseudo-random order).
    fn store(dir: &std::path::Path) -> Arc<Store> {
        let store = Arc::new(Store::open(dir, Options::default()).expect("open"));
        let mut seed = 7u64;
        for n in 0..300u64 {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let event_type = TYPES.get(usize::try_from(seed >> 62).expect("two bits")).expect("four types");
            let event = ProposedEvent::new(EventType::new(*event_type).expect("valid"), n.to_le_bytes().to_vec());
            let stream = StreamName::new(format!("order-{}", n % 5)).expect("valid");
            store.append(AppendRequest::to_stream(stream, ExpectedRevision::Any, vec![event])).expect("append");
        }
        store
    }

    #[tokio::test]
    async fn reads_equal_the_log_filtered_by_the_marked_types() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(dir.path());
        let types = IntegrationTypes::open(Arc::clone(&store)).expect("open");
        types.mark(&["Shipped".into(), "Invoiced".into()]).await.expect("mark");
        let all = store.read_all(None, Direction::Forwards, 1000).expect("read $all");
        let marked = |e: &&RecordedEvent| matches!(e.event_type.as_str(), "Shipped" | "Invoiced");
        let expected: Vec<u64> = all.iter().filter(marked).map(|e| e.position.0).collect();
        for from in [None, Some(0), Some(1), Some(57), Some(150), Some(299), Some(400)] {
            for limit in [1, 3, 10, 100, 1000] {
                let forwards = types.read(&store, from.map(Position), Direction::Forwards, limit).expect("read");
                let want: Vec<u64> =
                    expected.iter().copied().filter(|p| from.is_none_or(|f| *p >= f)).take(limit).collect();
                assert_eq!(forwards.iter().map(|e| e.position.0).collect::<Vec<_>>(), want, "from {from:?} x{limit}");
                let backwards = types.read(&store, from.map(Position), Direction::Backwards, limit).expect("read");
                let want: Vec<u64> =
                    expected.iter().rev().copied().filter(|p| from.is_none_or(|f| *p <= f)).take(limit).collect();
                assert_eq!(backwards.iter().map(|e| e.position.0).collect::<Vec<_>>(), want, "back {from:?} x{limit}");
            }
        }
    }

    #[tokio::test]
    async fn pages_read_while_others_write_skip_no_event() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(dir.path(), Options::default()).expect("open"));
        let types = IntegrationTypes::open(Arc::clone(&store)).expect("open");
        types.mark(&["Shipped".into(), "Invoiced".into()]).await.expect("mark");
        let writer = {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for n in 0..3_000u64 {
                    let event_type = EventType::new(if n % 2 == 0 { "Shipped" } else { "Invoiced" }).expect("valid");
                    let event = ProposedEvent::new(event_type, n.to_le_bytes().to_vec());
                    let stream = StreamName::new(format!("order-{}", n % 7)).expect("valid");
                    store.append(AppendRequest::to_stream(stream, ExpectedRevision::Any, vec![event])).expect("append");
                }
            })
        };
        // A follower pages forwards from where its last page ended, as a
        // subscription does, while the writer appends both types.
        let mut seen = Vec::new();
        let mut next = Position(0);
        loop {
            let done = writer.is_finished();
            let page = types.read(&store, Some(next), Direction::Forwards, 16).expect("read");
            if let Some(last) = page.last() {
                next = Position(last.position.0 + 1);
            }
            seen.extend(page.iter().map(|e| e.position.0));
            if done && page.is_empty() {
                break;
            }
        }
        writer.join().expect("the writer");
        let all = store.read_all(None, Direction::Forwards, 10_000).expect("read $all");
        let marked = |e: &&RecordedEvent| matches!(e.event_type.as_str(), "Shipped" | "Invoiced");
        let expected: Vec<u64> = all.iter().filter(marked).map(|e| e.position.0).collect();
        assert_eq!(expected.len(), 3_000);
        assert_eq!(seen, expected, "every event once, in order");
    }

    fn names(types: &IntegrationTypes) -> Vec<String> {
        types.snapshot().iter().map(ToString::to_string).collect()
    }

    /// Two registries over one store (two nodes of a cluster): each takes
    /// in what the other marked on refresh, and a change through either
    /// refreshes first, so it is checked against the other's marks and
    /// appended after them.
    #[tokio::test]
    async fn marks_another_writer_records_are_taken_in_on_refresh_and_changes_follow_them() {
        let (_dir, store, one, two) = crate::record_log::two_over_one_store(IntegrationTypes::open);
        one.mark(&["Shipped".into()]).await.expect("mark");
        assert!(names(&two).is_empty(), "not before a refresh");
        two.refresh().await.expect("refresh");
        assert_eq!(names(&two), ["Shipped"]);
        one.mark(&["Placed".into()]).await.expect("mark");
        let unmarked = two.unmark(&["Placed".into()]).await.expect("Placed is marked, by one, and two writes after it");
        assert_eq!(unmarked.iter().map(ToString::to_string).collect::<Vec<_>>(), ["Shipped"]);
        assert_eq!(names(&one), ["Placed", "Shipped"], "not before a refresh");
        one.refresh().await.expect("refresh");
        assert_eq!(names(&one), ["Shipped"]);
        one.mark(&["Noted".into()]).await.expect("one writes after two's unmark");
        assert_eq!(names(&IntegrationTypes::open(store).expect("reopen")), ["Noted", "Shipped"]);
    }

    /// A record naming an invalid type does not decode: a refresh fails as
    /// an open does, and the marked set stays as it was.
    #[tokio::test]
    async fn a_record_naming_an_invalid_type_fails_refresh_as_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(dir.path(), Options::default()).expect("open"));
        let types = IntegrationTypes::open(Arc::clone(&store)).expect("open");
        types.mark(&["Shipped".into()]).await.expect("mark");
        crate::record_log::append_raw(
            &store,
            INTEGRATION_TYPES_STREAM,
            br#"{"kind": "types_marked", "types": [" bad"]}"#,
        );
        let refused = types.refresh().await.expect_err("the record does not decode");
        assert_eq!(refused.code, ErrorCode::CorruptRecord);
        assert!(refused.message.contains("\" bad\""), "names the type: {}", refused.message);
        assert_eq!(names(&types), ["Shipped"]);
        let opened = IntegrationTypes::open(store).expect_err("open refuses it too");
        assert_eq!(opened.code, refused.code);
    }

    #[tokio::test]
    async fn the_marked_set_is_kept_in_its_stream_and_bad_changes_change_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(dir.path());
        let types = IntegrationTypes::open(Arc::clone(&store)).expect("open");
        types.mark(&["Shipped".into(), "Noted".into()]).await.expect("mark");
        types.mark(&["Shipped".into()]).await.expect("marking again changes nothing");
        types.unmark(&["Noted".into()]).await.expect("unmark");
        assert_eq!(
            types.unmark(&["Placed".into(), "Shipped".into()]).await.expect_err("not marked").code,
            ErrorCode::TypeNotMarked
        );
        assert_eq!(types.mark(&["ok".into(), " bad".into()]).await.expect_err("invalid").code, ErrorCode::InvalidTypes);
        assert_eq!(types.mark(&[]).await.expect_err("empty").code, ErrorCode::InvalidTypes);
        let reopened = IntegrationTypes::open(Arc::clone(&store)).expect("reopen");
        let names: Vec<String> = reopened.snapshot().iter().map(ToString::to_string).collect();
        assert_eq!(names, ["Shipped"]);
        let records = store
            .read_stream(&StreamName::system(INTEGRATION_TYPES_STREAM).expect("valid"), None, Direction::Forwards, 10)
            .expect("read the records");
        assert_eq!(records.len(), 2, "one mark and one unmark were recorded; the no-ops and refusals were not");
    }
}
