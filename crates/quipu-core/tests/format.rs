//! The on-disk format carries a version, and stores written by earlier
//! versions stay readable. `fixtures/format-vN` is a store written by
//! format version N (log and `quipu.meta` only; the index is derived):
//! version 1 has records without a directory, version 2 with one. If a
//! change to the encoder breaks `the_encoder_still_writes_the_current_format`,
//! bump the format version and keep the older fixtures: new builds must
//! still open them.
//!
//! To create a fixture for a new version: `QUIPU_WRITE_FIXTURES=1 cargo
//! test -p quipu-core --test format`, then add a test like the ones below.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "a test: a panic is a failed test, with its message")]

mod common;

use std::path::{Path, PathBuf};

use common::{all_events, event, log_files, stream};
use quipu_core::{
    AppendRequest, Clock, Condition, Direction, EventId, EventType, ExpectedRevision, Options, Query, QueryItem,
    Revision, STORE_FORMAT_VERSION, Store, StreamWrite, Tag,
};

fn fixture_dir(version: u32) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/format-v{version}"))
}

/// No zeros written ahead: when the idle sequencer writes them is a matter
/// of timing, and the fixture's bytes must not depend on it (records are
/// the format; zeros after the last one are read as the log's end).
fn fixture_options() -> Options {
    Options {
        segment_size_bytes: 4096,
        preallocate_bytes: 0,
        clock: Clock::stepping(1_790_000_000_000_000, 1_000),
        ..Options::default()
    }
}

/// The appends the v1 fixture holds: fixed ids, every feature of a record.
fn fixture_appends() -> Vec<AppendRequest> {
    let id = |n: u32| EventId::parse(&format!("00000000-0000-4000-8000-{n:012}")).unwrap();
    let with_id = |n, mut e: quipu_core::ProposedEvent| {
        e.id = id(n);
        e
    };
    let mut requests = Vec::new();
    for i in 0..40u32 {
        let mut placed =
            with_id(i * 10, event("OrderPlaced", &format!("{{\"order\":{i}}}"), &["customer:1", "region:eu"]));
        placed.metadata = br#"{"correlation":"c-1"}"#.to_vec();
        let paid = with_id(i * 10 + 1, event("OrderPaid", "{}", &[]));
        let ledger = with_id(i * 10 + 2, event("Posted", &"x".repeat(usize::try_from(i).unwrap() * 7), &[]));
        let revision =
            if i == 0 { ExpectedRevision::NoStream } else { ExpectedRevision::Exact(Revision(u64::from(i) - 1)) };
        requests.push(AppendRequest {
            writes: vec![
                StreamWrite {
                    stream: stream(&format!("order-{i}")),
                    expected: ExpectedRevision::NoStream,
                    events: vec![placed, paid],
                },
                StreamWrite { stream: stream("ledger-1"), expected: revision, events: vec![ledger] },
            ],
            condition: Some(Condition {
                query: Query {
                    items: vec![QueryItem { types: vec![EventType::new("Frozen").unwrap()], tags: vec![] }],
                },
                after: None,
            }),
        });
    }
    requests
}

fn write_fixture(dir: &Path) {
    let store = Store::open(dir, fixture_options()).unwrap();
    for request in fixture_appends() {
        assert!(matches!(store.append(request).unwrap(), quipu_core::AppendOutcome::Written(_)));
    }
    store.close().unwrap();
}

/// A copy of the fixture in a temporary directory (opening writes to it).
fn open_copy(version: u32) -> (tempfile::TempDir, Store) {
    let copy = tempfile::tempdir().unwrap();
    let source = fixture_dir(version);
    std::fs::copy(source.join("quipu.meta"), copy.path().join("quipu.meta")).unwrap();
    std::fs::create_dir_all(copy.path().join("log")).unwrap();
    for (name, bytes) in log_files(&source) {
        std::fs::write(copy.path().join("log").join(name), bytes).unwrap();
    }
    let store = Store::open(copy.path(), Options::default()).unwrap();
    (copy, store)
}

/// Reads every fixture is checked by: each kind of read, one append in
/// the current format after the fixture's records.
fn check_fixture(store: &Store) {
    let events = all_events(store);
    assert_eq!(events.len(), 120);
    let ledger = store.read_stream(&stream("ledger-1"), None, Direction::Forwards, 100).unwrap();
    assert_eq!(ledger.len(), 40);
    assert_eq!(ledger[39].data, "x".repeat(39 * 7).into_bytes());
    let order = store.read_stream(&stream("order-7"), None, Direction::Forwards, 100).unwrap();
    assert_eq!(order, events[21..23], "a stream read agrees with $all");
    let placed = store.read_tag(&Tag::new("region:eu").unwrap(), None, Direction::Forwards, 100).unwrap();
    assert_eq!(placed.len(), 40);
    assert_eq!(placed[3].metadata, br#"{"correlation":"c-1"}"#);
    assert_eq!(placed[3].stream, stream("order-3"));
    assert_eq!(placed[3].recorded_at_us, 1_790_000_000_000_000 + 3 * 1_000);
    let paid = store.read_event(&EventId::parse("00000000-0000-4000-8000-000000000051").unwrap()).unwrap().unwrap();
    assert_eq!((paid.stream.as_str(), paid.revision, paid.event_type.as_str()), ("order-5", Revision(1), "OrderPaid"));
    let next = AppendRequest::to_stream(
        stream("ledger-1"),
        ExpectedRevision::Exact(Revision(39)),
        vec![event("Posted", "{}", &[])],
    );
    assert!(matches!(store.append(next).unwrap(), quipu_core::AppendOutcome::Written(_)));
    let last = store.read_stream(&stream("ledger-1"), Some(Revision(40)), Direction::Forwards, 1).unwrap();
    assert_eq!(last[..], all_events(store)[120..], "the new record reads back after the old ones");
}

/// Writes the fixture of the current format when `QUIPU_WRITE_FIXTURES`
/// is set.
fn write_fixture_if_asked() {
    if std::env::var_os("QUIPU_WRITE_FIXTURES").is_some() {
        let dir = fixture_dir(STORE_FORMAT_VERSION);
        let _ = std::fs::remove_dir_all(&dir);
        write_fixture(&dir);
        std::fs::remove_dir_all(dir.join("index")).unwrap();
        std::fs::remove_file(dir.join("LOCK")).unwrap();
    }
}

fn meta_text(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("quipu.meta")).unwrap()
}

/// Format 1: records without a directory. It opens, reads, is marked as
/// the current format before anything is written, and reads the same
/// after a reopen with records of both formats in one segment.
#[test]
fn a_format_v1_store_opens_reads_and_is_marked_current() {
    assert_eq!(meta_text(&fixture_dir(1)), "quipu-store-format 1\n");
    let (copy, store) = open_copy(1);
    assert_eq!(meta_text(copy.path()), format!("quipu-store-format {STORE_FORMAT_VERSION}\n"));
    check_fixture(&store);
    let before = all_events(&store);
    store.close().unwrap();
    let store = Store::open(copy.path(), Options::default()).unwrap();
    assert_eq!(all_events(&store), before);
    let ledger = store.read_stream(&stream("ledger-1"), None, Direction::Forwards, 100).unwrap();
    assert_eq!(ledger.len(), 41);
}

#[test]
fn a_format_v2_store_opens_and_reads() {
    write_fixture_if_asked();
    let (_copy, store) = open_copy(2);
    check_fixture(&store);
}

#[test]
fn the_encoder_still_writes_the_current_format() {
    let dir = tempfile::tempdir().unwrap();
    write_fixture(dir.path());
    let current = fixture_dir(STORE_FORMAT_VERSION);
    assert!(
        log_files(dir.path()) == log_files(&current),
        "the log bytes differ from format v{STORE_FORMAT_VERSION}: bump STORE_FORMAT_VERSION and keep the \
         older fixtures readable"
    );
    assert_eq!(meta_text(dir.path()), meta_text(&current));
}
