//! Helpers shared by the integration tests: stores in temporary
//! directories, event builders, and whole-store snapshots for comparison.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use quipu_core::{
    AppendOutcome, AppendRequest, AppendResult, Direction, EventType, ExpectedRevision, Options, ProposedEvent,
    RecordedEvent, Store, StreamName, Tag,
};

/// A store in a fresh temporary directory; the directory lives as long as
/// the returned guard.
pub fn temp_store(options: Options) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path(), options).expect("open store");
    (dir, store)
}

/// Options with small segments, a small index memtable and a small head
/// cache, so tests cross segment boundaries, reads cross index tables of
/// every level (memtables written out at their entry count or, for
/// groups of many names, at their memory budget), and decisions both hit
/// and miss the cache.
pub fn small_segments() -> Options {
    Options {
        segment_size_bytes: 4096,
        batch_bytes_max: 4096,
        index_memtable_entries: 40,
        index_memtable_bytes: 6 * 1024,
        head_cache_streams: 4,
        ..Options::default()
    }
    .with_small_records()
}

/// Extension for options used by tests.
pub trait TestOptions {
    /// Caps records so they fit the small batches of test options.
    fn with_small_records(self) -> Options;
}

impl TestOptions for Options {
    fn with_small_records(self) -> Options {
        Options { event_bytes_max: 512, append_bytes_max: 1024, append_events_max: 16, append_streams_max: 4, ..self }
    }
}

/// A stream name that is valid by construction.
pub fn stream(name: &str) -> StreamName {
    StreamName::new(name).expect("valid stream name")
}

/// An event of `event_type` with `data` and tags.
pub fn event(event_type: &str, data: &str, tags: &[&str]) -> ProposedEvent {
    let mut event = ProposedEvent::new(EventType::new(event_type).expect("valid type"), data.as_bytes().to_vec());
    event.tags = tags.iter().map(|t| Tag::new(*t).expect("valid tag")).collect();
    event
}

/// Appends `events` to `name` expecting `expected`; returns the outcome.
pub fn append(store: &Store, name: &str, expected: ExpectedRevision, events: Vec<ProposedEvent>) -> AppendOutcome {
    store.append(AppendRequest::to_stream(stream(name), expected, events)).expect("append decided")
}

/// Appends and insists it was written.
pub fn write(store: &Store, name: &str, expected: ExpectedRevision, events: Vec<ProposedEvent>) -> AppendResult {
    match append(store, name, expected, events) {
        AppendOutcome::Written(result) => result,
        other => panic!("expected the append to {name} to be written, got {other:?}"),
    }
}

/// Every event in `$all`, forwards.
pub fn all_events(store: &Store) -> Vec<RecordedEvent> {
    let mut events = Vec::new();
    let mut from = None;
    loop {
        let page = store.read_all(from, Direction::Forwards, 1000).expect("read $all");
        let Some(last) = page.last() else { return events };
        from = Some(last.position.next());
        events.extend(page);
    }
}

/// Every segment file's bytes, in order, with its file name.
pub fn log_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    segment_paths(dir)
        .into_iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).expect("read segment"))
        })
        .collect()
}

/// Paths of the segment files, in order.
pub fn segment_paths(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("log"))
        .expect("log dir")
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "qlog"))
        .collect();
    files.sort();
    files
}
