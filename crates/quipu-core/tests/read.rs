//! Reads as a user sees them: streams and `$all` both ways with limits,
//! category, type and tag reads, one event by id, stream info, and waiting
//! for new positions.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "a test: a panic is a failed test, with its message")]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{all_events, event, stream, temp_store, write};
use quipu_core::{Direction, Error, EventId, EventType, ExpectedRevision, Options, Position, Revision, Store, Tag};

/// Writes a small shop: two orders and a customer, interleaved.
fn shop(store: &Store) {
    write(store, "order-1", ExpectedRevision::NoStream, vec![event("Placed", "1", &["customer:7"])]);
    write(store, "customer-7", ExpectedRevision::NoStream, vec![event("Registered", "2", &["customer:7"])]);
    write(store, "order-2", ExpectedRevision::NoStream, vec![event("Placed", "3", &["customer:8"])]);
    write(
        store,
        "order-1",
        ExpectedRevision::Exact(Revision(0)),
        vec![event("Paid", "4", &["customer:7"]), event("Shipped", "5", &[])],
    );
    write(store, "order-2", ExpectedRevision::Exact(Revision(0)), vec![event("Cancelled", "6", &["customer:8"])]);
}

fn data(events: &[quipu_core::RecordedEvent]) -> Vec<String> {
    events.iter().map(|e| String::from_utf8_lossy(&e.data).into_owned()).collect()
}

#[test]
fn a_stream_reads_forwards_and_backwards_from_a_revision_with_a_limit() {
    let (_dir, store) = temp_store(Options::default());
    shop(&store);
    let order = stream("order-1");
    assert_eq!(data(&store.read_stream(&order, None, Direction::Forwards, 10).unwrap()), ["1", "4", "5"]);
    assert_eq!(data(&store.read_stream(&order, Some(Revision(1)), Direction::Forwards, 10).unwrap()), ["4", "5"]);
    assert_eq!(data(&store.read_stream(&order, Some(Revision(0)), Direction::Forwards, 2).unwrap()), ["1", "4"]);
    assert_eq!(data(&store.read_stream(&order, None, Direction::Backwards, 2).unwrap()), ["5", "4"]);
    assert_eq!(data(&store.read_stream(&order, Some(Revision(1)), Direction::Backwards, 10).unwrap()), ["4", "1"]);
    assert!(store.read_stream(&order, Some(Revision(3)), Direction::Forwards, 10).unwrap().is_empty());
    assert_eq!(data(&store.read_stream(&order, Some(Revision(99)), Direction::Backwards, 1).unwrap()), ["5"]);

    let events = store.read_stream(&order, None, Direction::Forwards, 10).unwrap();
    let revisions: Vec<_> = events.iter().map(|e| (e.revision.0, e.position.0, e.event_type.as_str())).collect();
    assert_eq!(revisions, [(0, 0, "Placed"), (1, 3, "Paid"), (2, 4, "Shipped")]);
    assert!(events.windows(2).all(|w| w[0].recorded_at_us <= w[1].recorded_at_us));
    assert_eq!(events[1].tags, [Tag::new("customer:7").unwrap()]);

    match store.read_stream(&stream("order-3"), None, Direction::Forwards, 10) {
        Err(Error::StreamNotFound { stream: name }) => assert_eq!(name.as_str(), "order-3"),
        other => panic!("expected StreamNotFound, got {other:?}"),
    }
    let limit = Options::default().read_events_max + 1;
    assert!(matches!(
        store.read_stream(&order, None, Direction::Forwards, limit),
        Err(Error::ReadLimitTooLarge { .. })
    ));
}

#[test]
fn all_reads_forwards_and_backwards_from_a_position() {
    let (_dir, store) = temp_store(Options::default());
    shop(&store);
    assert_eq!(data(&store.read_all(None, Direction::Forwards, 100).unwrap()), ["1", "2", "3", "4", "5", "6"]);
    assert_eq!(data(&store.read_all(Some(Position(2)), Direction::Forwards, 3).unwrap()), ["3", "4", "5"]);
    assert_eq!(data(&store.read_all(None, Direction::Backwards, 2).unwrap()), ["6", "5"]);
    assert_eq!(data(&store.read_all(Some(Position(2)), Direction::Backwards, 100).unwrap()), ["3", "2", "1"]);
    assert!(store.read_all(Some(Position(6)), Direction::Forwards, 10).unwrap().is_empty());
    assert_eq!(store.last_position(), Some(Position(5)));
    let positions: Vec<u64> = all_events(&store).iter().map(|e| e.position.0).collect();
    assert_eq!(positions, (0..6).collect::<Vec<_>>());
}

#[test]
fn category_type_and_tag_reads_return_matching_events_by_position() {
    let (_dir, store) = temp_store(Options::default());
    shop(&store);
    assert_eq!(data(&store.read_category("order", None, Direction::Forwards, 100).unwrap()), ["1", "3", "4", "5", "6"]);
    assert_eq!(data(&store.read_category("order", Some(Position(3)), Direction::Backwards, 2).unwrap()), ["4", "3"]);
    assert_eq!(data(&store.read_category("customer", None, Direction::Forwards, 100).unwrap()), ["2"]);
    assert!(store.read_category("invoice", None, Direction::Forwards, 100).unwrap().is_empty());
    assert!(store.read_category("bad\ncategory", None, Direction::Forwards, 1).is_err());

    let placed = EventType::new("Placed").unwrap();
    assert_eq!(data(&store.read_event_type(&placed, None, Direction::Forwards, 100).unwrap()), ["1", "3"]);
    assert_eq!(data(&store.read_event_type(&placed, Some(Position(1)), Direction::Forwards, 100).unwrap()), ["3"]);

    let customer = Tag::new("customer:7").unwrap();
    assert_eq!(data(&store.read_tag(&customer, None, Direction::Forwards, 100).unwrap()), ["1", "2", "4"]);
    assert_eq!(data(&store.read_tag(&customer, None, Direction::Backwards, 1).unwrap()), ["4"]);
    // A category is the name before the first dash, not a prefix.
    write(&store, "orders-1", ExpectedRevision::Any, vec![event("Placed", "7", &[])]);
    assert_eq!(store.read_category("order", None, Direction::Forwards, 100).unwrap().len(), 5);
}

#[test]
fn one_event_reads_by_id_and_stream_info_reports_the_last_revision() {
    let (_dir, store) = temp_store(Options::default());
    shop(&store);
    let all = all_events(&store);
    for expected in &all {
        assert_eq!(store.read_event(&expected.id).unwrap().as_ref(), Some(expected));
    }
    assert_eq!(store.read_event(&EventId::random()).unwrap(), None);

    let info = store.stream_info(&stream("order-1")).unwrap();
    assert!(info.exists());
    assert_eq!(info.last_revision, Some(Revision(2)));
    let missing = store.stream_info(&stream("order-9")).unwrap();
    assert!(!missing.exists());
    assert_eq!(missing.last_revision, None);
}

#[test]
fn wait_beyond_returns_when_a_later_position_is_readable() {
    let (_dir, store) = temp_store(Options::default());
    let store = Arc::new(store);
    assert_eq!(store.wait_beyond(None, Duration::ZERO), None, "an empty store has nothing to wait for");
    let seen = Arc::new(AtomicU64::new(u64::MAX));
    let listener_seen = Arc::clone(&seen);
    store.on_advance(Arc::new(move |position: Position| listener_seen.store(position.0, Ordering::SeqCst)));

    let writer = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || {
            write(&store, "tick-1", ExpectedRevision::Any, vec![event("Tick", "", &[]), event("Tick", "", &[])]);
        })
    };
    let last = store.wait_beyond(None, Duration::from_secs(60));
    writer.join().unwrap();
    assert_eq!(last, Some(Position(1)), "the waiter sees the whole commit");
    assert_eq!(seen.load(Ordering::SeqCst), 1, "the listener heard the advance");
    assert_eq!(store.read_all(None, Direction::Forwards, 10).unwrap().len(), 2, "what the head shows is readable");
    assert_eq!(store.wait_beyond(Some(Position(1)), Duration::from_millis(1)), Some(Position(1)));
    assert_eq!(store.wait_beyond(Some(Position(0)), Duration::ZERO), Some(Position(1)));
}

#[test]
fn a_data_directory_has_one_store_at_a_time() {
    let (dir, store) = temp_store(Options::default());
    match Store::open(dir.path(), Options::default()) {
        Err(Error::Locked { path }) => assert_eq!(path, dir.path()),
        other => panic!("expected Locked, got {:?}", other.map(|_| ())),
    }
    store.close().unwrap();
    let reopened = Store::open(dir.path(), Options::default()).unwrap();
    reopened.close().unwrap();
}

/// Appends one `Created` event to each of `count` new streams named
/// `{prefix}-{n}`, 50 streams per append.
fn create_streams(store: &Store, prefix: &str, count: u64) {
    for first in (0..count).step_by(50) {
        let writes = (first..(first + 50).min(count))
            .map(|n| quipu_core::StreamWrite {
                stream: stream(&format!("{prefix}-{n}")),
                expected: ExpectedRevision::NoStream,
                events: vec![event("Created", &n.to_string(), &[])],
            })
            .collect();
        let outcome = store.append(quipu_core::AppendRequest { writes, condition: None }).unwrap();
        assert!(matches!(outcome, quipu_core::AppendOutcome::Written(_)), "{outcome:?}");
    }
}

fn table_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("index").join("tables"))
        .unwrap()
        .filter(|file| file.as_ref().unwrap().file_name().to_string_lossy().ends_with(".qidx"))
        .count()
}

#[test]
fn the_index_writes_its_memtable_out_at_its_memory_budget_and_reads_stay_whole() {
    // The entry count alone would keep everything in one memtable.
    let options = Options { index_memtable_entries: 10_000_000, index_memtable_bytes: 64 * 1024, ..Options::default() };
    let (dir, store) = temp_store(options.clone());
    create_streams(&store, "budget", 3_000);
    assert!(table_files(dir.path()) >= 2, "the budget, not the entry count, wrote tables out");
    let check = |store: &Store| {
        for n in (0..3_000).step_by(7) {
            let events = store.read_stream(&stream(&format!("budget-{n}")), None, Direction::Forwards, 10).unwrap();
            assert_eq!(data(&events), [n.to_string()], "stream budget-{n}");
            let by_id = store.read_event(&events[0].id).unwrap().expect("found by id");
            assert_eq!(by_id.position, events[0].position);
        }
        assert_eq!(all_events(store).len(), 3_000);
    };
    check(&store);
    store.close().unwrap();
    let store = Store::open(dir.path(), options).unwrap();
    check(&store);
}
