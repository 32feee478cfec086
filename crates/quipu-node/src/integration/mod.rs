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
use std::sync::{Arc, RwLock};

use quipu_core::{Direction, EventType, Position, RecordedEvent, Store};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::record_log::RecordLog;
use crate::{ApiError, ErrorCode};

/// The system stream holding the marked set.
pub const INTEGRATION_TYPES_STREAM: &str = "$integration-types";

/// Records of `$integration-types`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Record {
    TypesMarked { types: Vec<String> },
    TypesUnmarked { types: Vec<String> },
}

impl crate::record_log::Record for Record {
    fn event_type(&self) -> &'static str {
        match self {
            Record::TypesMarked { .. } => "TypesMarked",
            Record::TypesUnmarked { .. } => "TypesUnmarked",
        }
    }
}

/// The event types marked as integration events.
pub struct IntegrationTypes {
    log: Mutex<RecordLog<Record>>,
    marked: RwLock<Arc<BTreeSet<EventType>>>,
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
        let (log, records) = RecordLog::<Record>::open(store, INTEGRATION_TYPES_STREAM)?;
        let mut marked = BTreeSet::new();
        for record in records {
            match record {
                Record::TypesMarked { types } => marked.extend(parse(&types)?),
                Record::TypesUnmarked { types } => {
                    for event_type in parse(&types)? {
                        marked.remove(&event_type);
                    }
                }
            }
        }
        Ok(IntegrationTypes { log: Mutex::new(log), marked: RwLock::new(Arc::new(marked)) })
    }

    /// The marked types now.
    #[must_use]
    pub fn snapshot(&self) -> Arc<BTreeSet<EventType>> {
        Arc::clone(&self.marked.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Marks `types` (those marked already stay); returns the marked set.
    ///
    /// # Errors
    /// 400 naming an invalid type (nothing is marked then), store errors.
    pub async fn mark(&self, types: &[String]) -> Result<Arc<BTreeSet<EventType>>, ApiError> {
        let types = parse(types)?;
        let mut log = self.log.lock().await;
        let current = self.snapshot();
        let new: Vec<String> = types.iter().filter(|t| !current.contains(*t)).map(ToString::to_string).collect();
        if new.is_empty() {
            return Ok(current);
        }
        log.append(&Record::TypesMarked { types: new }).await?;
        let mut marked = (*current).clone();
        marked.extend(types);
        Ok(self.replace(marked))
    }

    /// Unmarks `types`; returns the marked set.
    ///
    /// # Errors
    /// 400 naming an invalid type, 404 `type_not_marked` naming one that
    /// is not marked (nothing is unmarked then), store errors.
    pub async fn unmark(&self, types: &[String]) -> Result<Arc<BTreeSet<EventType>>, ApiError> {
        let types = parse(types)?;
        let mut log = self.log.lock().await;
        let current = self.snapshot();
        if let Some(missing) = types.iter().find(|t| !current.contains(*t)) {
            return Err(ApiError::new(
                ErrorCode::TypeNotMarked,
                format!("event type {:?} is not marked as an integration event", missing.as_str()),
            ));
        }
        log.append(&Record::TypesUnmarked { types: types.iter().map(ToString::to_string).collect() }).await?;
        let mut marked = (*current).clone();
        for event_type in &types {
            marked.remove(event_type);
        }
        Ok(self.replace(marked))
    }

    fn replace(&self, marked: BTreeSet<EventType>) -> Arc<BTreeSet<EventType>> {
        let marked = Arc::new(marked);
        *self.marked.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::clone(&marked);
        marked
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
