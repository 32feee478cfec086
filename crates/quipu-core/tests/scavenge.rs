//! Scavenge against a model: after removing the events a predicate dooms,
//! every read (stream, `$all` both ways, category, type, tag, id) equals
//! the model without them, stream heads and positions are unchanged, the
//! log is smaller, and all of it holds after a reopen and after an index
//! rebuild. Also: appends racing a scavenge, and a second scavenge over a
//! rewritten segment.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{all_events, event, small_segments, stream, temp_store, write};
use proptest::prelude::*;
use quipu_core::{
    AppendRequest, Direction, EventType, ExpectedRevision, Options, RecordedEvent, Revision, Store, StreamName,
    StreamWrite, Tag,
};

/// First revision each stream keeps; streams not named keep everything.
type Cutoffs = BTreeMap<String, u64>;

fn doomed_by(cutoffs: &Cutoffs) -> impl Fn(&StreamName, Revision, u64) -> bool + '_ {
    |stream, revision, _| cutoffs.get(stream.as_str()).is_some_and(|&keep_from| revision.0 < keep_from)
}

/// Pages through `$all` backwards, 7 at a time.
fn all_backwards(store: &Store) -> Vec<RecordedEvent> {
    let mut events = Vec::new();
    let mut from = None;
    loop {
        let page = store.read_all(from, Direction::Backwards, 7).expect("read $all backwards");
        let Some(last) = page.last() else { return events };
        let done = last.position.0 == 0;
        from = last.position.0.checked_sub(1).map(quipu_core::Position);
        events.extend(page);
        if done {
            return events;
        }
    }
}

/// Checks every kind of read against `expected` (the live events, in
/// log order) and the stream heads against `heads`.
fn check_reads(store: &Store, expected: &[RecordedEvent], heads: &HashMap<StreamName, Revision>) {
    assert_eq!(all_events(store), expected, "$all forwards");
    let mut backwards = all_backwards(store);
    backwards.reverse();
    assert_eq!(backwards, expected, "$all backwards");
    for (name, head) in heads {
        let info = store.stream_info(name).expect("stream info");
        assert_eq!(info.last_revision, Some(*head), "head of {name} moved");
        let want: Vec<_> = expected.iter().filter(|e| &e.stream == name).cloned().collect();
        let got = store.read_stream(name, None, Direction::Forwards, 10_000).expect("read stream");
        assert_eq!(got, want, "stream {name}");
        let mut back = store.read_stream(name, None, Direction::Backwards, 10_000).expect("read stream back");
        back.reverse();
        assert_eq!(back, want, "stream {name} backwards");
    }
    for category in ["acct", "cart"] {
        let want: Vec<_> = expected.iter().filter(|e| e.stream.category() == category).cloned().collect();
        assert_eq!(store.read_category(category, None, Direction::Forwards, 10_000).expect("category"), want);
        // Paged, so each page starts at a position the index must find.
        let mut paged = Vec::new();
        let mut from = None;
        loop {
            let page = store.read_category(category, from, Direction::Forwards, 3).expect("category page");
            let Some(last) = page.last() else { break };
            from = Some(last.position.next());
            paged.extend(page);
        }
        assert_eq!(paged, want, "category {category} read 3 at a time");
    }
    for event_type in ["Opened", "Moved"] {
        let want: Vec<_> = expected.iter().filter(|e| e.event_type.as_str() == event_type).cloned().collect();
        let event_type = EventType::new(event_type).expect("valid");
        assert_eq!(store.read_event_type(&event_type, None, Direction::Forwards, 10_000).expect("type"), want);
    }
    let tag = Tag::new("vip").expect("valid");
    let want: Vec<_> = expected.iter().filter(|e| e.tags.contains(&tag)).cloned().collect();
    assert_eq!(store.read_tag(&tag, None, Direction::Forwards, 10_000).expect("tag"), want);
}

fn check_ids(store: &Store, model: &[RecordedEvent], expected: &[RecordedEvent]) {
    let live: std::collections::HashSet<_> = expected.iter().map(|e| e.id).collect();
    for event in model {
        let found = store.read_event(&event.id).expect("read by id");
        if live.contains(&event.id) {
            assert_eq!(found.as_ref(), Some(event), "live event by id");
        } else {
            assert_eq!(found, None, "scavenged event {} still readable by id", event.id);
        }
    }
}

/// One append of the generated history: events per stream, written as
/// one multi-stream append.
type Append = Vec<(usize, usize)>;

const STREAMS: [&str; 4] = ["acct-1", "acct-2", "cart-1", "cart-2"];

fn fill(store: &Store, appends: &[Append]) {
    for (n, append) in appends.iter().enumerate() {
        let writes = append
            .iter()
            .map(|&(stream_index, count)| {
                let events = (0..count)
                    .map(|i| {
                        let event_type = if i % 2 == 0 { "Opened" } else { "Moved" };
                        let tags: &[&str] = if (n + i) % 3 == 0 { &["vip"] } else { &[] };
                        event(event_type, &format!("{{\"append\":{n},\"i\":{i},\"pad\":\"{}\"}}", "x".repeat(40)), tags)
                    })
                    .collect();
                StreamWrite { stream: stream(STREAMS[stream_index]), expected: ExpectedRevision::Any, events }
            })
            .collect();
        store.append(AppendRequest { writes, condition: None }).expect("append");
    }
}

fn heads_of(store: &Store) -> HashMap<StreamName, Revision> {
    STREAMS
        .iter()
        .filter_map(|s| store.stream_info(&stream(s)).expect("info").last_revision.map(|r| (stream(s), r)))
        .collect()
}

fn history() -> impl Strategy<Value = Vec<Append>> {
    let write = (0..STREAMS.len(), 1..4usize);
    let append = proptest::collection::btree_map(write.0, write.1, 1..3)
        .prop_map(|writes| writes.into_iter().collect::<Vec<_>>());
    proptest::collection::vec(append, 20..80)
}

fn cutoffs() -> impl Strategy<Value = Cutoffs> {
    proptest::collection::btree_map(proptest::sample::select(STREAMS.to_vec()).prop_map(str::to_owned), 0..60u64, 0..4)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn scavenged_reads_equal_the_model_without_the_doomed_events(
        appends in history(),
        first in cutoffs(),
        second in cutoffs(),
    ) {
        // Nothing written ahead of the log's end: the bytes of the log are
        // compared before and after.
        let (dir, store) = temp_store(Options { preallocate_bytes: 0, ..small_segments() });
        fill(&store, &appends);
        let model = all_events(&store);
        let heads = heads_of(&store);
        let (log_before, _) = store.disk_bytes().expect("disk");

        let progress = store.scavenge(&doomed_by(&first), &mut |_| {}, &|| false).expect("scavenge");
        // Only closed segments are rewritten: events of the last one stay.
        let last_segment_events = survivors_in_open_segment(&store, &model);
        let expected: Vec<_> = model
            .iter()
            .filter(|e| !doomed_by(&first)(&e.stream, e.revision, 0) || last_segment_events.contains(&e.id))
            .cloned()
            .collect();
        check_reads(&store, &expected, &heads);
        check_ids(&store, &model, &expected);
        prop_assert_eq!(progress.events_removed as usize, model.len() - expected.len());
        let (log_after, _) = store.disk_bytes().expect("disk");
        prop_assert_eq!(log_after, log_before - progress.bytes_reclaimed);
        if progress.events_removed > 0 {
            prop_assert!(log_after < log_before, "removing {} events freed nothing", progress.events_removed);
        }

        // A second scavenge over rewritten segments, with other cutoffs.
        let mut both = first.clone();
        for (stream, keep_from) in &second {
            let entry = both.entry(stream.clone()).or_insert(0);
            *entry = (*entry).max(*keep_from);
        }
        store.scavenge(&doomed_by(&both), &mut |_| {}, &|| false).expect("second scavenge");
        let expected: Vec<_> = model
            .iter()
            .filter(|e| !doomed_by(&both)(&e.stream, e.revision, 0) || last_segment_events.contains(&e.id))
            .cloned()
            .collect();
        check_reads(&store, &expected, &heads);

        // Appends go on at the old heads.
        let next = heads.get(&stream("acct-1")).map_or(ExpectedRevision::NoStream, |r| ExpectedRevision::Exact(*r));
        write(&store, "acct-1", next, vec![event("Opened", "{}", &[])]);
        let mut expected = expected;
        expected.extend(store.read_stream(&stream("acct-1"), None, Direction::Backwards, 1).expect("read"));
        let heads = heads_of(&store);
        drop(store);

        let store = Store::open(dir.path(), small_segments()).expect("reopen");
        check_reads(&store, &expected, &heads);
        let found = store.verify(&mut |_| {}).expect("verify");
        prop_assert!(found.problems.is_empty(), "{:?}", found.problems);
        prop_assert_eq!(found.events as usize, expected.len(), "verify reads every event kept");
        drop(store);
        std::fs::remove_dir_all(dir.path().join("index")).expect("delete index");
        let store = Store::open(dir.path(), small_segments()).expect("rebuild");
        check_reads(&store, &expected, &heads);
        check_ids(&store, &model, &expected[..expected.len() - 1]);
        let found = store.verify(&mut |_| {}).expect("verify");
        prop_assert!(found.problems.is_empty(), "{:?}", found.problems);
    }
}

/// Ids of the model's events in the segment appends still write (which a
/// scavenge leaves alone).
fn survivors_in_open_segment(store: &Store, model: &[RecordedEvent]) -> std::collections::HashSet<quipu_core::EventId> {
    let open = open_segment_first_position(store);
    model.iter().filter(|e| e.position.0 >= open).map(|e| e.id).collect()
}

/// First position of the segment the last record is in (the one the
/// index checkpoint names, which a scavenge leaves alone): the first
/// record of the newest segment file that holds one.
fn open_segment_first_position(store: &Store) -> u64 {
    // Header (32 bytes), frame header (8), version, kind, then the first
    // position (u64 LE).
    let first_position = |bytes: &[u8]| bytes.get(42..50).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
    common::segment_paths(store.dir())
        .iter()
        .rev()
        .find_map(|path| first_position(&std::fs::read(path).expect("read segment")))
        .unwrap_or(u64::MAX)
}

#[test]
fn appends_and_reads_go_on_while_a_scavenge_runs() {
    let options = Options { segment_size_bytes: 64 * 1024, ..Options::default() };
    let (_dir, store) = temp_store(options);
    let store = Arc::new(store);
    for round in 0..40 {
        for name in ["acct-1", "acct-2", "cart-1"] {
            let events = (0..50).map(|i| event("Opened", &format!("{{\"r\":{round},\"i\":{i}}}"), &[])).collect();
            write(&store, name, ExpectedRevision::Any, events);
        }
    }
    let cutoffs: Cutoffs = [("acct-1".to_owned(), 1500), ("cart-1".to_owned(), 1000)].into_iter().collect();
    let before = all_events(&store);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut written = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) || n < 20 {
                let result = write(&store, "acct-2", ExpectedRevision::Any, vec![event("Moved", &format!("{n}"), &[])]);
                written.push(result.first_position);
                let page = store.read_stream(&stream("acct-1"), None, Direction::Backwards, 10).expect("read");
                assert_eq!(page.len(), 10, "the live tail of acct-1 stays readable");
                n += 1;
            }
            written
        })
    };
    let mut reports = Vec::new();
    let progress = store.scavenge(&doomed_by(&cutoffs), &mut |p| reports.push(*p), &|| false).expect("scavenge");
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().expect("writer");
    assert!(progress.segments_rewritten > 0 && progress.events_removed > 0, "{progress:?}");
    assert!(reports.windows(2).all(|w| w[0].bytes_scanned <= w[1].bytes_scanned), "progress never goes back");
    assert_eq!(reports.last(), Some(&progress));
    let after = all_events(&store);
    let open = open_segment_first_position(&store);
    let doomed = doomed_by(&cutoffs);
    let expected: Vec<_> =
        before.iter().filter(|e| !doomed(&e.stream, e.revision, 0) || e.position.0 >= open).cloned().collect();
    assert_eq!(after[..expected.len()], expected[..]);
    let appended: Vec<_> = after[expected.len()..].iter().map(|e| e.position).collect();
    assert_eq!(appended, written, "every append made during the scavenge is there, in order");
}

#[test]
fn one_scavenge_at_a_time() {
    let (_dir, store) = temp_store(small_segments());
    fill(&store, &vec![vec![(0, 2)]; 40]);
    let mut nested = None;
    store
        .scavenge(
            &|_, _, _| false,
            &mut |_| {
                if nested.is_none() {
                    nested = Some(store.scavenge(&|_, _, _| false, &mut |_| {}, &|| false));
                }
            },
            &|| false,
        )
        .expect("scavenge");
    assert!(matches!(nested, Some(Err(quipu_core::Error::ScavengeRunning))), "{nested:?}");
}

#[test]
fn label_runs_do_not_bridge_the_gap_dropped_events_leave() {
    let (_dir, store) = temp_store(small_segments());
    // One record: acct-1 (2 events) then acct-2 (3 events), all "Opened".
    let writes = [("acct-1", 2), ("acct-2", 3)]
        .iter()
        .map(|&(name, count)| StreamWrite {
            stream: stream(name),
            expected: ExpectedRevision::Any,
            events: (0..count).map(|i| event("Opened", &format!("{i}"), &["vip"])).collect(),
        })
        .collect();
    store.append(AppendRequest { writes, condition: None }).expect("append");
    fill(&store, &vec![vec![(3, 3)]; 60]);
    let cutoffs: Cutoffs = [("acct-2".to_owned(), 2)].into_iter().collect();
    let progress = store.scavenge(&doomed_by(&cutoffs), &mut |_| {}, &|| false).expect("scavenge");
    assert_eq!(progress.events_removed, 2);
    // Positions 0, 1 (acct-1) and 4 (acct-2 revision 2) are left.
    let event_type = EventType::new("Opened").expect("valid");
    let tag = Tag::new("vip").expect("valid");
    // The record's positions (0 to 4); later records hold other types.
    let first_record =
        |events: Vec<RecordedEvent>| -> Vec<u64> { events.iter().map(|e| e.position.0).filter(|&p| p < 5).collect() };
    for from in 0..6 {
        let want: Vec<u64> = [0, 1, 4].into_iter().filter(|&p| p >= from).collect();
        let from = Some(quipu_core::Position(from));
        let category = store.read_category("acct", from, Direction::Forwards, 10).expect("category");
        assert_eq!(first_record(category), want, "category from {from:?}");
        let by_type = store.read_event_type(&event_type, from, Direction::Forwards, 10).expect("type");
        assert_eq!(first_record(by_type), want, "type from {from:?}");
        let by_tag = store.read_tag(&tag, from, Direction::Forwards, 10).expect("tag");
        assert_eq!(first_record(by_tag), want, "tag from {from:?}");
    }
}
