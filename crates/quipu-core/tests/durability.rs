//! The log is the truth: acknowledged appends survive reopen, the index is
//! derived and rebuilds to identical reads, segments roll, a torn tail is
//! cut, corruption is reported with file and offset and never served, a
//! failed write or fdatasync stops appends while reads go on (the append
//! it hit cut off and told "not written"), and a segment that cannot be
//! made fails only its appends.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "a test: a panic is a failed test, with its message")]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{all_events, event, log_files, segment_paths, small_segments, stream, write};
use quipu_core::{
    AppendOutcome, AppendRequest, Direction, Error, EventType, ExpectedRevision, FaultPlan, Options, Position,
    RecordedEvent, Revision, STORE_FORMAT_VERSION, Store, StreamWrite, Tag,
};

/// Every read the store offers, for comparing two stores.
#[derive(Debug, PartialEq)]
struct Reads {
    all_forwards: Vec<RecordedEvent>,
    all_backwards: Vec<RecordedEvent>,
    streams: Vec<(Option<Revision>, Vec<RecordedEvent>)>,
    labels: Vec<Vec<RecordedEvent>>,
    by_id: Vec<Option<RecordedEvent>>,
    last_position: Option<Position>,
}

fn reads(store: &Store) -> Reads {
    let all_forwards = all_events(store);
    let all_backwards = store.read_all(None, Direction::Backwards, 10_000).unwrap();
    let names = ["order-1", "order-2", "order-3", "user-1", "user-2"];
    let streams = names
        .iter()
        .map(|name| {
            let name = stream(name);
            let info = store.stream_info(&name).unwrap();
            let events = if info.exists() {
                store.read_stream(&name, None, Direction::Backwards, 1000).unwrap()
            } else {
                vec![]
            };
            (info.last_revision, events)
        })
        .collect();
    let labels = vec![
        store.read_category("order", None, Direction::Forwards, 1000).unwrap(),
        store.read_category("user", Some(Position(3)), Direction::Backwards, 1000).unwrap(),
        store.read_event_type(&EventType::new("Changed").unwrap(), None, Direction::Forwards, 1000).unwrap(),
        store.read_tag(&Tag::new("even").unwrap(), None, Direction::Forwards, 1000).unwrap(),
    ];
    let by_id = all_forwards.iter().map(|e| store.read_event(&e.id).unwrap()).collect();
    Reads { all_forwards, all_backwards, streams, labels, by_id, last_position: store.last_position() }
}

/// Appends `count` commits spread over five streams of two categories.
fn fill(store: &Store, count: usize) {
    for i in 0..count {
        let name = ["order-1", "order-2", "order-3", "user-1", "user-2"][i % 5];
        let tag = if i % 2 == 0 { "even" } else { "odd" };
        let events = (0..1 + i % 3).map(|j| event("Changed", &format!("{{\"i\":{i},\"j\":{j}}}"), &[tag])).collect();
        write(store, name, ExpectedRevision::Any, events);
    }
}

/// A closed store of `commits` commits in small segments, with its reads.
/// Nothing is written ahead of the log's end, so the last segment ends
/// with its last record.
fn filled_and_closed(commits: usize) -> (tempfile::TempDir, Options, Reads) {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { preallocate_bytes: 0, ..small_segments() };
    let store = open(dir.path(), &options);
    fill(&store, commits);
    let before = reads(&store);
    store.close().unwrap();
    (dir, options, before)
}

fn open(dir: &Path, options: &Options) -> Store {
    Store::open(dir, options.clone()).unwrap()
}

#[test]
fn acknowledged_appends_survive_close_and_reopen_and_appends_continue() {
    let (dir, options, before) = filled_and_closed(60);

    let store = open(dir.path(), &options);
    assert_eq!(reads(&store), before);
    let next = write(&store, "order-1", ExpectedRevision::Any, vec![event("Changed", "{}", &[])]);
    assert_eq!(Some(next.first_position), before.last_position.map(Position::next), "positions continue");
    drop(store); // dropping closes as well
    let store = open(dir.path(), &options);
    assert_eq!(all_events(&store).len(), before.all_forwards.len() + 1);
}

#[test]
fn segments_roll_at_the_configured_size_and_reads_cross_them() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_segments();
    let store = open(dir.path(), &options);
    fill(&store, 200);
    let segments = segment_paths(dir.path());
    assert!(segments.len() >= 5, "only {} segments for ~400 events in 4 KiB segments", segments.len());
    for path in &segments[..segments.len() - 1] {
        let len = std::fs::metadata(path).unwrap().len();
        assert!(len >= options.segment_size_bytes, "{} rolled early at {len} bytes", path.display());
        assert!(len < options.segment_size_bytes + options.batch_bytes_max as u64, "{} overran: {len}", path.display());
    }
    let events = all_events(&store);
    assert!(events.iter().enumerate().all(|(i, e)| e.position.0 == i as u64));
}

#[test]
fn deleting_the_index_gives_identical_reads_after_reopen() {
    let (dir, options, before) = filled_and_closed(150);

    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    let store = open(dir.path(), &options);
    assert_eq!(reads(&store), before, "a rebuilt index reads like the original");
    // Decisions after a rebuild see the same stream state.
    let stale = store
        .append(AppendRequest::to_stream(stream("order-1"), ExpectedRevision::NoStream, vec![event("X", "", &[])]))
        .unwrap();
    assert!(matches!(stale, AppendOutcome::Conflict(_)));
    let retry = before.all_forwards[0].clone();
    let mut replayed = event(retry.event_type.as_str(), "", &[]);
    replayed.id = retry.id;
    assert!(
        matches!(
            store.append(AppendRequest::to_stream(stream("order-9"), ExpectedRevision::Any, vec![replayed])),
            Err(Error::EventIdReused { .. })
        ),
        "ids written before the rebuild are still known"
    );
}

#[test]
fn an_index_that_lags_the_log_catches_up_on_open() {
    let (dir, options, _) = filled_and_closed(40);
    let old_index = tempfile::tempdir().unwrap();
    copy_dir(&dir.path().join("index"), old_index.path());

    let store = open(dir.path(), &options);
    fill(&store, 80);
    let after = reads(&store);
    store.close().unwrap();
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    copy_dir(old_index.path(), &dir.path().join("index"));
    let store = open(dir.path(), &options);
    assert_eq!(reads(&store), after, "the stale index replayed the rest of the log");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn a_torn_tail_is_cut_and_appends_continue() {
    let (dir, options, before) = filled_and_closed(30);

    // A batch that was being written when the power went: half a frame.
    let last = segment_paths(dir.path()).pop().unwrap();
    let clean_len = std::fs::metadata(&last).unwrap().len();
    let mut bytes = std::fs::read(&last).unwrap();
    bytes.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7]);
    std::fs::write(&last, &bytes).unwrap();

    let store = open(dir.path(), &options);
    assert_eq!(reads(&store), before);
    assert_eq!(std::fs::metadata(&last).unwrap().len(), clean_len, "the torn bytes were cut");
    write(&store, "order-1", ExpectedRevision::Any, vec![event("Changed", "{}", &[])]);
    store.close().unwrap();
    assert_eq!(all_events(&open(dir.path(), &options)).len(), before.all_forwards.len() + 1);
}

/// Where the records of the segment at `path` end: frames are walked from
/// the header (32 bytes) until one claims no payload.
fn records_end(path: &Path) -> u64 {
    let bytes = std::fs::read(path).unwrap();
    let mut at = 32usize;
    while let Some(len) = bytes.get(at..at + 4) {
        let len = u32::from_le_bytes(len.try_into().unwrap()) as usize;
        if len == 0 {
            break;
        }
        at += 8 + len;
    }
    at as u64
}

/// Waits (up to a minute) until the sequencer has written zeros after the
/// records of the last segment.
fn wait_for_zeros_ahead(dir: &Path) -> PathBuf {
    for _ in 0..6000 {
        let last = segment_paths(dir).pop().unwrap();
        if std::fs::metadata(&last).unwrap().len() > records_end(&last) {
            return last;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("no zeros were written ahead of the log's end");
}

#[test]
fn zeros_written_ahead_of_the_log_end_it_cleanly_and_are_overwritten_by_appends() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { segment_size_bytes: 1 << 20, preallocate_bytes: 64 * 1024, ..Options::default() };
    let store = open(dir.path(), &options);
    fill(&store, 10);
    let last = wait_for_zeros_ahead(dir.path());
    let before = reads(&store);
    store.close().unwrap();
    let (file_len, end) = (std::fs::metadata(&last).unwrap().len(), records_end(&last));
    assert!(file_len >= end + 32 * 1024, "at least half the headroom is zeros: {file_len} bytes, records end at {end}");

    let store = open(dir.path(), &options);
    assert_eq!(reads(&store), before, "the zeros are not read as records");
    write(&store, "order-1", ExpectedRevision::Any, vec![event("Changed", "{}", &[])]);
    assert!(records_end(&last) > end, "the append went where the zeros were");
    assert_eq!(std::fs::metadata(&last).unwrap().len(), file_len, "into the space written ahead");
    store.close().unwrap();
    assert_eq!(all_events(&open(dir.path(), &options)).len(), before.all_forwards.len() + 1);
}

#[test]
fn a_torn_write_into_the_zeros_ahead_is_cut_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { preallocate_bytes: 2048, ..small_segments() };
    let store = open(dir.path(), &options);
    fill(&store, 3);
    let last = wait_for_zeros_ahead(dir.path());
    let before = reads(&store);
    store.close().unwrap();
    let end = records_end(&last);
    let file = std::fs::OpenOptions::new().write(true).open(&last).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, &[200, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7], end).unwrap();
    drop(file);

    let store = open(dir.path(), &options);
    assert_eq!(reads(&store), before);
    assert_eq!(std::fs::metadata(&last).unwrap().len(), end, "the torn bytes and the zeros after them were cut");
    write(&store, "order-1", ExpectedRevision::Any, vec![event("Changed", "{}", &[])]);
    store.close().unwrap();
    assert_eq!(all_events(&open(dir.path(), &options)).len(), before.all_forwards.len() + 1);
}

#[test]
fn a_half_written_last_record_is_dropped_when_the_index_never_saw_it() {
    let (dir, options, before) = filled_and_closed(30);
    let before = before.all_forwards;
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();

    let last = segment_paths(dir.path()).pop().unwrap();
    let len = std::fs::metadata(&last).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&last).unwrap();
    file.set_len(len - 5).unwrap();
    drop(file);

    // The durable mark says the last record was acknowledged: this is
    // damage, not a torn write.
    match Store::open(dir.path(), options.clone()) {
        Err(Error::Corrupt { segment, reason, .. }) => {
            assert_eq!(segment, last);
            assert!(reason.contains("not a torn write"), "{reason}");
        }
        other => panic!("expected Corrupt, got {:?}", other.map(|_| ())),
    }
    assert_eq!(std::fs::metadata(&last).unwrap().len(), len - 5, "nothing is cut");
    // A crash before the mark covered the record (it trails the log by up
    // to 100 ms) leaves the same bytes and an older mark: a torn write.
    std::fs::remove_file(dir.path().join("log").join("durable.mark")).unwrap();
    let store = open(dir.path(), &options);
    let after = all_events(&store);
    let last_commit = before.last().unwrap().position;
    let first_of_last_commit = before.iter().position(|e| e.position == last_commit).unwrap();
    assert!(after.len() < before.len(), "the cut record is gone");
    assert_eq!(after[..], before[..after.len()], "everything before it is intact");
    assert!(after.len() <= first_of_last_commit, "no part of the cut commit is served");
}

#[test]
fn a_flipped_bit_before_the_tail_stops_the_open_with_file_and_offset() {
    let (dir, options, _) = filled_and_closed(100);
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();

    let second = segment_paths(dir.path())[1].clone();
    let offset = flip_bit_in_first_record(&second);
    let log_before = log_files(dir.path());
    match Store::open(dir.path(), options.clone()) {
        Err(Error::Corrupt { segment, offset: reported, reason }) => {
            assert_eq!(segment, second);
            assert_eq!(reported, 32, "the first record starts after the segment header");
            assert!(offset >= reported, "{offset} {reported}");
            assert!(!reason.is_empty());
        }
        other => panic!("expected Corrupt, got {:?}", other.map(|_| ())),
    }
    assert_eq!(log_files(dir.path()), log_before, "corruption is never truncated away");
}

#[test]
fn a_flipped_bit_behind_the_index_checkpoint_is_reported_on_read_and_never_served() {
    let (dir, options, before) = filled_and_closed(100);
    let before = before.all_forwards;

    let second = segment_paths(dir.path())[1].clone();
    let damaged_at = flip_bit_in_second_record(&second);
    let store = open(dir.path(), &options);
    match store.read_all(None, Direction::Forwards, 10_000) {
        Err(Error::Corrupt { segment, offset, .. }) => assert_eq!((segment, offset), (second.clone(), damaged_at)),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    let first_segment_events = store.read_all(None, Direction::Forwards, 3).unwrap();
    assert_eq!(first_segment_events[..], before[..3], "records before the damage still read");
    let damaged = before.iter().find(|e| store.read_event(&e.id).is_err());
    assert!(damaged.is_some(), "some event maps to the damaged record and reads as an error");
}

/// The segment being written is read through a map that grows with it:
/// every append reads back at once, with zeros written ahead of it,
/// across rolls to new segments and across reopens.
#[test]
fn each_append_reads_back_at_once_from_the_segment_being_written() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_segments();
    let mut store = open(dir.path(), &options);
    let mut written = Vec::new();
    for n in 0..300u32 {
        let name = format!("order-{}", n % 7);
        let result =
            write(&store, &name, ExpectedRevision::Any, vec![event("Changed", &format!("{{\"n\":{n}}}"), &[])]);
        let last = store.read_all(None, Direction::Backwards, 1).unwrap();
        assert_eq!(last.first().map(|e| e.position), Some(result.first_position), "append {n} reads back");
        written.push(last[0].clone());
        let stream_events = store.read_stream(&stream(&name), None, Direction::Forwards, 1000).unwrap();
        assert_eq!(stream_events.last(), written.last(), "in its stream too");
        if n % 100 == 99 {
            store.close().unwrap();
            store = open(dir.path(), &options);
        }
    }
    assert!(segment_paths(dir.path()).len() > 3, "the appends rolled over several segments");
    assert_eq!(all_events(&store), written, "every event, in order");
    for event in &written {
        assert_eq!(store.read_event(&event.id).unwrap().as_ref(), Some(event));
    }
}

/// Sealed segments are read through a memory map: a bit flipped under a
/// running store is still caught by the record's checksum on the next
/// read, with its file and offset, and the other records still read.
#[test]
fn a_bit_flipped_in_a_sealed_segment_while_the_store_runs_is_reported_on_read() {
    let (dir, options, before) = filled_and_closed(100);
    let store = open(dir.path(), &options);
    let segments = segment_paths(dir.path());
    assert!(segments.len() >= 3, "sealed segments and the open one: {segments:?}");
    let first = &before.all_forwards[0];
    assert_eq!(store.read_event(&first.id).unwrap().as_ref(), Some(first), "read (and mapped) while sound");

    let offset = 32 + 8 + 5;
    let file = std::fs::OpenOptions::new().read(true).write(true).open(&segments[0]).unwrap();
    let mut byte = [0u8];
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut byte, offset).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, &[byte[0] ^ 0b0001_0000], offset).unwrap();
    match store.read_event(&first.id) {
        Err(Error::Corrupt { segment, offset, .. }) => assert_eq!((segment, offset), (segments[0].clone(), 32)),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    let last = before.all_forwards.last().unwrap();
    assert_eq!(store.read_event(&last.id).unwrap().as_ref(), Some(last), "other records still read");
}

/// A read of one event checks that event's own checksum: a bit flipped in
/// one event's data fails every read that would return it (its stream,
/// `$all`, by id), with the record's file and offset, while a stream read
/// of another event of the same record is still served, unchanged.
#[test]
fn a_bit_flipped_in_one_event_fails_its_reads_and_spares_its_neighbours() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &Options::default());
    let writes = ["sound-1", "damaged-1"].map(|name| StreamWrite {
        stream: stream(name),
        expected: ExpectedRevision::NoStream,
        events: vec![event("Noted", &format!("{{\"note\":\"{name}-marker\"}}"), &[])],
    });
    let request = AppendRequest { writes: writes.to_vec(), condition: None };
    assert!(matches!(store.append(request).unwrap(), AppendOutcome::Written(_)));
    write(&store, "later-1", ExpectedRevision::NoStream, vec![event("Noted", "{}", &[])]);
    let before = all_events(&store);

    let segment = segment_paths(dir.path()).pop().unwrap();
    let bytes = std::fs::read(&segment).unwrap();
    let marker = b"damaged-1-marker";
    let at = bytes.windows(marker.len()).position(|w| w == marker).expect("the event's data is in the log");
    let file = std::fs::OpenOptions::new().write(true).open(&segment).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, &[bytes[at] ^ 0b0000_0100], at as u64).unwrap();

    let sound = store.read_stream(&stream("sound-1"), None, Direction::Forwards, 10).unwrap();
    assert_eq!(sound[..], before[..1], "the other event of the record is served as written");
    let corrupt_at_the_record = |result: Result<Vec<RecordedEvent>, Error>, read: &str| match result {
        Err(Error::Corrupt { segment: found, offset, .. }) => {
            assert_eq!((found, offset), (segment.clone(), 32), "{read}")
        }
        other => panic!("{read}: expected Corrupt, got {other:?}"),
    };
    corrupt_at_the_record(store.read_stream(&stream("damaged-1"), None, Direction::Forwards, 10), "its stream");
    corrupt_at_the_record(store.read_all(None, Direction::Forwards, 10), "$all");
    corrupt_at_the_record(store.read_event(&before[1].id).map(|e| e.into_iter().collect()), "by id");
    let later = store.read_stream(&stream("later-1"), None, Direction::Forwards, 10).unwrap();
    assert_eq!(later[..], before[2..], "later records still read");
}

/// Flips one bit in the payload of the first record of `path`; returns
/// the byte offset flipped.
/// Flips a bit in the second record of the segment at `path`; answers
/// where that record starts.
fn flip_bit_in_second_record(path: &Path) -> u64 {
    let mut bytes = std::fs::read(path).unwrap();
    let first_len = u32::from_le_bytes(bytes[32..36].try_into().unwrap()) as usize;
    let second = 32 + 8 + first_len;
    bytes[second + 8 + 5] ^= 0b0001_0000;
    std::fs::write(path, &bytes).unwrap();
    second as u64
}

#[test]
fn a_segment_whose_creation_a_crash_cut_short_is_removed_and_the_rest_opens() {
    let (dir, options, before) = filled_and_closed(100);
    let paths = segment_paths(dir.path());
    assert!(paths.len() > 2, "several segments");
    // The next segment's file, created and cut before its header was whole.
    let next = paths.len();
    let unborn = dir.path().join("log").join(format!("{next:010}.qlog"));
    std::fs::write(&unborn, b"QUIPU").unwrap();
    let store = open(dir.path(), &options);
    assert_eq!(reads(&store), before);
    assert!(!unborn.exists() || std::fs::metadata(&unborn).unwrap().len() >= 32, "the unborn segment was removed");
}

#[test]
fn a_damaged_end_of_a_closed_segment_stops_the_open_while_the_index_covers_it() {
    // The first record of the next segment, or the last of the segment,
    // damaged or cut: both are read on open.
    for damage in ["flip the next segment's first record", "cut the segment"] {
        let (dir, options, _) = filled_and_closed(100);
        let [first, second, ..] = &segment_paths(dir.path())[..] else { panic!("several segments") };
        let damaged = if damage.starts_with("flip") {
            flip_bit_in_first_record(second);
            second.clone()
        } else {
            let len = std::fs::metadata(first).unwrap().len();
            std::fs::OpenOptions::new().write(true).open(first).unwrap().set_len(len - 3).unwrap();
            first.clone()
        };
        match Store::open(dir.path(), options.clone()) {
            Err(Error::Corrupt { segment, .. }) => assert_eq!(segment, damaged, "{damage}"),
            other => panic!("{damage}: expected Corrupt, got {:?}", other.map(|_| ())),
        }
    }
}

fn flip_bit_in_first_record(path: &Path) -> u64 {
    let mut bytes = std::fs::read(path).unwrap();
    let offset = 32 + 8 + 5;
    bytes[offset] ^= 0b0001_0000;
    std::fs::write(path, &bytes).unwrap();
    offset as u64
}

#[test]
fn a_failed_fdatasync_stops_appends_but_reads_go_on() {
    for plan in [FaultPlan::fail_sync(2), FaultPlan::fail_write(2)] {
        let dir = tempfile::tempdir().unwrap();
        // No zeros written ahead: the failure hits the second append.
        let options = Options { fault_plan: Some(Arc::new(plan)), preallocate_bytes: 0, ..Options::default() };
        let store = open(dir.path(), &options);
        let first = write(&store, "order-1", ExpectedRevision::NoStream, vec![event("Placed", "{}", &[])]);
        let failed = store.append(AppendRequest::to_stream(
            stream("order-1"),
            ExpectedRevision::Any,
            vec![event("Paid", "{}", &[])],
        ));
        let Err(error @ Error::StoreFailed { .. }) = failed else { panic!("expected StoreFailed, got {failed:?}") };
        let message = error.to_string();
        assert!(message.contains("injected failure"), "the error says why: {message}");
        assert!(message.contains("this append was not written"), "and what became of the append: {message}");
        let again = store.append(AppendRequest::to_stream(
            stream("order-2"),
            ExpectedRevision::Any,
            vec![event("Placed", "{}", &[])],
        ));
        assert!(matches!(again, Err(Error::StoreFailed { .. })), "fail-stop: {again:?}");

        let events = all_events(&store);
        assert_eq!(events.len(), 1, "the failed append is not served");
        assert_eq!(events[0].position, first.first_position);
        store.close().unwrap();

        let store = Store::open(dir.path(), Options::default()).unwrap();
        let events = all_events(&store);
        assert_eq!(events[0].stream, stream("order-1"), "the acknowledged append survived");
        assert_eq!(events.len(), 1, "an append answered \"not written\" stays unwritten after a restart");
        write(&store, "order-3", ExpectedRevision::NoStream, vec![event("Placed", "{}", &[])]);
    }
}

#[test]
fn a_segment_that_cannot_be_made_fails_only_its_appends_and_the_store_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    // The first creation is the store's first segment; the second, the
    // first roll (as EMFILE or ENOSPC would fail it).
    let options = Options { fault_plan: Some(Arc::new(FaultPlan::fail_create(2))), ..common::small_segments() };
    let store = open(dir.path(), &options);
    let mut written = Vec::new();
    let mut refused = None;
    for n in 0..200 {
        let name = format!("order-{n}");
        let request =
            AppendRequest::to_stream(stream(&name), ExpectedRevision::NoStream, vec![event("Placed", "{}", &[])]);
        match store.append(request) {
            Ok(AppendOutcome::Written(_)) => written.push(name),
            Err(Error::NotWritten { reason }) => {
                assert!(reason.contains("injected failure of segment creation"), "{reason}");
                assert!(refused.replace(name).is_none(), "one roll failed, one append refused");
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    let refused = refused.expect("a roll failed");
    assert!(segment_paths(dir.path()).len() > 2, "later rolls worked");
    let again =
        AppendRequest::to_stream(stream(&refused), ExpectedRevision::NoStream, vec![event("Placed", "{}", &[])]);
    assert!(matches!(store.append(again), Ok(AppendOutcome::Written(_))), "the refused append can be sent again");
    written.push(refused);
    let served = |store: &Store| all_events(store).iter().map(|e| e.stream.as_str().to_owned()).collect::<Vec<_>>();
    let mut expected = written.clone();
    expected.sort();
    let mut before = served(&store);
    before.sort();
    assert_eq!(before, expected, "every acknowledged append, once");
    store.close().unwrap();
    let store = Store::open(dir.path(), common::small_segments()).unwrap();
    let mut after = served(&store);
    after.sort();
    assert_eq!(after, expected, "and so after a restart");
}

#[test]
fn a_store_of_an_unknown_format_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    open(dir.path(), &Options::default()).close().unwrap();
    let meta = dir.path().join("quipu.meta");
    let text = std::fs::read_to_string(&meta).unwrap();
    assert_eq!(text, format!("quipu-store-format {STORE_FORMAT_VERSION}\n"));
    std::fs::write(&meta, "quipu-store-format 99\n").unwrap();
    match Store::open(dir.path(), Options::default()) {
        Err(Error::UnsupportedFormat { found: 99, supported: STORE_FORMAT_VERSION, .. }) => {}
        other => panic!("expected UnsupportedFormat, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn a_replica_that_cannot_make_a_segment_stops_rather_than_apply_past_a_record() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { fault_plan: Some(Arc::new(FaultPlan::fail_create(2))), ..common::small_segments() };
    let store = open(dir.path(), &options);
    let mut answers = Vec::new();
    for n in 0..200u32 {
        let request = AppendRequest::to_stream(
            stream(&format!("order-{n}")),
            ExpectedRevision::NoStream,
            vec![event("Placed", "{}", &[])],
        );
        let source = quipu_core::Source { epoch: 0, partition: 0, offset: i64::from(n) };
        let applied = quipu_core::Applied { recorded_at_us: 1_000_000, source };
        let (sender, answer) = std::sync::mpsc::channel();
        store.submit_applied(request, applied, move |outcome| sender.send(outcome).unwrap());
        answers.push(answer.recv().unwrap());
    }
    let first_failure = answers.iter().position(Result::is_err).expect("a roll failed");
    for answer in &answers[first_failure..] {
        assert!(matches!(answer, Err(Error::StoreFailed { .. })), "fail-stop from the first failure: {answer:?}");
    }
    assert_eq!(all_events(&store).len(), first_failure, "nothing applied past the record it could not write");
}
