//! Append semantics as a user sees them: expected revisions, multi-event
//! and multi-stream atomicity, DCB conditions, idempotent retries, and
//! validation that refuses bad input without writing anything.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "a test: a panic is a failed test, with its message")]

mod common;

use common::{all_events, append, event, stream, temp_store, write};
use quipu_core::{
    AppendOutcome, AppendRequest, Condition, Decision, Error, EventId, EventType, ExpectedRevision, Options, Position,
    Query, QueryItem, Revision, StreamWrite, Tag,
};

fn conflict(outcome: AppendOutcome) -> quipu_core::Conflict {
    match outcome {
        AppendOutcome::Conflict(conflict) => conflict,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

#[test]
fn every_expected_revision_kind_is_checked_and_a_conflict_reports_the_actual_revision() {
    let (_dir, store) = temp_store(Options::default());
    let e = || event("Opened", "{}", &[]);

    let c = conflict(append(&store, "acct-1", ExpectedRevision::Exists, vec![e()]));
    assert_eq!((c.streams.len(), c.streams[0].actual), (1, None), "exists on a missing stream");
    let c = conflict(append(&store, "acct-1", ExpectedRevision::Exact(Revision(0)), vec![e()]));
    assert_eq!(c.streams[0].actual, None, "exact 0 on a missing stream");

    let first = write(&store, "acct-1", ExpectedRevision::NoStream, vec![e(), e()]);
    assert_eq!(first.streams[0].first_revision, Revision(0));
    assert_eq!(first.streams[0].last_revision, Revision(1));
    assert_eq!((first.first_position, first.last_position), (Position(0), Position(1)));

    let c = conflict(append(&store, "acct-1", ExpectedRevision::NoStream, vec![e()]));
    assert_eq!(c.streams[0].stream, stream("acct-1"));
    assert_eq!(c.streams[0].expected, ExpectedRevision::NoStream);
    assert_eq!(c.streams[0].actual, Some(Revision(1)));
    let c = conflict(append(&store, "acct-1", ExpectedRevision::Exact(Revision(0)), vec![e()]));
    assert_eq!((c.streams[0].expected, c.streams[0].actual), (ExpectedRevision::Exact(Revision(0)), Some(Revision(1))));

    write(&store, "acct-1", ExpectedRevision::Exact(Revision(1)), vec![e()]);
    write(&store, "acct-1", ExpectedRevision::Exists, vec![e()]);
    let any = write(&store, "acct-1", ExpectedRevision::Any, vec![e()]);
    assert_eq!(any.streams[0].last_revision, Revision(4));
    write(&store, "acct-2", ExpectedRevision::Any, vec![e()]);
    assert_eq!(all_events(&store).len(), 6, "conflicts wrote nothing");
}

#[test]
fn a_multi_stream_append_writes_everything_or_nothing() {
    let (_dir, store) = temp_store(Options::default());
    write(&store, "order-1", ExpectedRevision::NoStream, vec![event("Placed", "{}", &[])]);
    let request = |order_expected| AppendRequest {
        writes: vec![
            StreamWrite { stream: stream("order-1"), expected: order_expected, events: vec![event("Paid", "{}", &[])] },
            StreamWrite {
                stream: stream("payment-9"),
                expected: ExpectedRevision::NoStream,
                events: vec![event("Captured", "{}", &[]), event("Settled", "{}", &[])],
            },
            StreamWrite {
                stream: stream("ledger-1"),
                expected: ExpectedRevision::Exists,
                events: vec![event("Posted", "{}", &[])],
            },
        ],
        condition: None,
    };

    let c = conflict(store.append(request(ExpectedRevision::Exact(Revision(5)))).unwrap());
    let failed: Vec<_> = c.streams.iter().map(|s| (s.stream.as_str(), s.actual)).collect();
    assert_eq!(failed, vec![("order-1", Some(Revision(0))), ("ledger-1", None)], "every failed stream is named");
    assert_eq!(all_events(&store).len(), 1, "nothing of the refused append was written");
    assert!(!store.stream_info(&stream("payment-9")).unwrap().exists());

    write(&store, "ledger-1", ExpectedRevision::NoStream, vec![event("Opened", "{}", &[])]);
    let AppendOutcome::Written(result) = store.append(request(ExpectedRevision::Exact(Revision(0)))).unwrap() else {
        panic!("all conditions hold now");
    };
    let per_stream: Vec<_> =
        result.streams.iter().map(|s| (s.stream.as_str(), s.first_revision.0, s.last_revision.0)).collect();
    assert_eq!(per_stream, vec![("order-1", 1, 1), ("payment-9", 0, 1), ("ledger-1", 1, 1)]);
    let positions: Vec<_> = all_events(&store).iter().map(|e| (e.stream.to_string(), e.position.0)).collect();
    assert_eq!(
        positions[2..],
        [
            ("order-1".to_string(), 2),
            ("payment-9".to_string(), 3),
            ("payment-9".to_string(), 4),
            ("ledger-1".to_string(), 5)
        ]
    );
}

#[test]
fn a_retry_with_the_same_event_ids_returns_the_first_result_and_writes_nothing() {
    let (_dir, store) = temp_store(Options::default());
    write(&store, "cart-1", ExpectedRevision::NoStream, vec![event("Created", "{}", &[])]);
    let request = AppendRequest::to_stream(
        stream("cart-1"),
        ExpectedRevision::Exact(Revision(0)),
        vec![event("ItemAdded", r#"{"sku":"a"}"#, &[]), event("ItemAdded", r#"{"sku":"b"}"#, &[])],
    );
    let AppendOutcome::Written(first) = store.append(request.clone()).unwrap() else { panic!("first append") };
    write(&store, "cart-1", ExpectedRevision::Exact(Revision(2)), vec![event("CheckedOut", "{}", &[])]);

    // The expected revision is stale now, but a retry is recognised by its ids.
    assert_eq!(store.append(request.clone()).unwrap(), AppendOutcome::AlreadyWritten(first.clone()));
    assert_eq!(all_events(&store).len(), 4);

    // Reusing one id in a different append is an error, not a silent no-op.
    let mut reused = request.clone();
    reused.writes[0].events.truncate(1);
    match store.append(reused) {
        Err(Error::EventIdReused { event_id, position }) => {
            assert_eq!(event_id, request.writes[0].events[0].id);
            assert_eq!(position, first.first_position);
        }
        other => panic!("expected EventIdReused, got {other:?}"),
    }
    let mut mixed = request.clone();
    mixed.writes[0].events.push(event("ItemAdded", "{}", &[]));
    assert!(matches!(store.append(mixed), Err(Error::EventIdReused { .. })));
    assert_eq!(all_events(&store).len(), 4, "refused retries wrote nothing");
}

#[test]
fn a_dcb_condition_fails_when_a_matching_event_exists_after_its_position() {
    let (_dir, store) = temp_store(Options::default());
    write(&store, "course-1", ExpectedRevision::Any, vec![event("CourseDefined", "{}", &["course:1"])]);
    write(&store, "student-7", ExpectedRevision::Any, vec![event("StudentRegistered", "{}", &["student:7"])]);
    let seen = store.last_position();
    let query = Query {
        items: vec![QueryItem {
            types: vec![EventType::new("StudentSubscribed").unwrap()],
            tags: vec![Tag::new("course:1").unwrap()],
        }],
    };
    let subscribe = |student: &str| {
        AppendRequest::to_stream(
            stream(&format!("subscription-{student}")),
            ExpectedRevision::Any,
            vec![event("StudentSubscribed", "{}", &["course:1", &format!("student:{student}")])],
        )
        .with_condition(Condition { query: query.clone(), after: seen })
    };
    let written = store.append(subscribe("7")).unwrap();
    let first = written.result().expect("nothing matched after the seen position").first_position;

    let c = conflict(store.append(subscribe("8")).unwrap());
    assert_eq!(c.condition_position, Some(first), "the conflicting position is reported");
    assert!(c.streams.is_empty());

    // Same type but another tag does not match; an event of another type
    // with the tag does not match either: items are type AND tags.
    write(&store, "x-1", ExpectedRevision::Any, vec![event("StudentSubscribed", "{}", &["course:2"])]);
    write(&store, "x-2", ExpectedRevision::Any, vec![event("CourseRenamed", "{}", &["course:1"])]);
    let after_first = Condition { query: query.clone(), after: Some(first) };
    let ok = store.append(subscribe("9").with_condition(after_first)).unwrap();
    assert!(matches!(ok, AppendOutcome::Written(_)), "{ok:?}");

    // With no position, any matching event in the whole log conflicts.
    let from_start = Condition { query: query.clone(), after: None };
    let c = conflict(store.append(subscribe("10").with_condition(from_start)).unwrap());
    assert_eq!(c.condition_position, Some(first));
}

#[test]
fn a_dcb_condition_and_stream_conditions_are_checked_together() {
    let (_dir, store) = temp_store(Options::default());
    write(&store, "a-1", ExpectedRevision::Any, vec![event("T", "{}", &["k"])]);
    let condition = Condition {
        query: Query { items: vec![QueryItem { types: vec![], tags: vec![Tag::new("k").unwrap()] }] },
        after: None,
    };
    let request = AppendRequest::to_stream(stream("a-1"), ExpectedRevision::NoStream, vec![event("T", "{}", &[])])
        .with_condition(condition);
    let c = conflict(store.append(request).unwrap());
    assert_eq!(c.streams.len(), 1);
    assert_eq!(c.condition_position, Some(Position(0)));
}

/// A request the store must refuse, and how to recognise the error.
type RefusalCase = (&'static str, AppendRequest, fn(&Error) -> bool);

/// Every refusal below must leave the store exactly as it was.
#[test]
fn bad_input_gets_a_typed_error_and_changes_nothing() {
    let options = Options {
        event_bytes_max: 1000,
        append_bytes_max: 3000,
        append_events_max: 5,
        append_streams_max: 2,
        ..Options::default()
    };
    let (_dir, store) = temp_store(options);
    write(&store, "s-1", ExpectedRevision::Any, vec![event("T", "{}", &[])]);
    let before = all_events(&store);
    let big = |n| event("T", &"x".repeat(n), &[]);
    let one = |events| AppendRequest::to_stream(stream("s-2"), ExpectedRevision::Any, events);
    let dup = event("T", "{}", &[]);
    let write_to = |name: &str| StreamWrite {
        stream: stream(name),
        expected: ExpectedRevision::Any,
        events: vec![event("T", "{}", &[])],
    };

    let cases: Vec<RefusalCase> = vec![
        ("oversized event", one(vec![big(2000)]), |e| matches!(e, Error::EventTooLarge { limit_bytes: 1000, .. })),
        ("oversized append", one(vec![big(900), big(900), big(900), big(900)]), |e| {
            matches!(e, Error::AppendTooLarge { .. })
        }),
        ("too many events", one((0..6).map(|_| event("T", "", &[])).collect()), |e| {
            matches!(e, Error::TooManyEvents { count: 6, limit: 5 })
        }),
        (
            "too many streams",
            AppendRequest { writes: vec![write_to("a-1"), write_to("b-1"), write_to("c-1")], condition: None },
            |e| matches!(e, Error::TooManyStreams { count: 3, .. }),
        ),
        ("no events", one(vec![]), |e| matches!(e, Error::EmptyAppend)),
        ("no writes", AppendRequest::default(), |e| matches!(e, Error::EmptyAppend)),
        ("same stream twice", AppendRequest { writes: vec![write_to("a-1"), write_to("a-1")], condition: None }, |e| {
            matches!(e, Error::DuplicateStream { .. })
        }),
        ("same id twice", one(vec![dup.clone(), dup]), |e| matches!(e, Error::DuplicateEventId { .. })),
        (
            "empty query",
            one(vec![event("T", "", &[])]).with_condition(Condition { query: Query { items: vec![] }, after: None }),
            |e| matches!(e, Error::EmptyQuery),
        ),
        ("same tag twice", one(vec![event("T", "", &["k", "k"])]), |e| matches!(e, Error::InvalidTags { .. })),
    ];
    for (what, request, expected) in cases {
        match store.append(request) {
            Err(error) => {
                assert!(expected(&error), "{what}: unexpected error {error:?}");
                assert!(!error.to_string().is_empty());
            }
            Ok(outcome) => panic!("{what}: accepted as {outcome:?}"),
        }
    }
    assert_eq!(all_events(&store), before, "no refused append changed the store");
    write(&store, "s-1", ExpectedRevision::Exact(Revision(0)), vec![event("T", "{}", &[])]);
}

#[test]
fn names_and_ids_are_validated_with_a_reason() {
    for bad in ["", " order-1", "order-1 ", "$all", "a\nb", &"s".repeat(257)] {
        match quipu_core::StreamName::new(bad).map_err(Error::from) {
            Err(Error::InvalidName { reason, .. }) => assert!(!reason.is_empty(), "{bad:?}"),
            other => panic!("stream name {bad:?} was accepted: {other:?}"),
        }
    }
    assert!(EventType::new("").is_err());
    assert!(EventType::new("T".repeat(129)).is_err());
    assert!(Tag::new("").is_err());
    assert!(matches!(EventId::parse("not-a-uuid").map_err(Error::from), Err(Error::InvalidEventId { .. })));
    let id = EventId::random();
    assert_eq!(EventId::parse(&id.to_string()).unwrap(), id);
    assert_eq!(stream("order-1-line-2").category(), "order");
    assert_eq!(stream("inventory").category(), "inventory");
}

/// Many writers race on the same streams with exact expected revisions:
/// every written append must land right after the revision it expected,
/// whichever group or pipeline stage decided it.
#[test]
fn racing_writers_never_both_pass_the_same_expected_revision() {
    let (_dir, store) = temp_store(Options::default());
    let store = std::sync::Arc::new(store);
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let store = std::sync::Arc::clone(&store);
            std::thread::spawn(move || {
                let mut known: [Option<u64>; 2] = [None, None];
                let mut written = 0u64;
                for attempt in 0..150usize {
                    let slot = (attempt + w) % 2;
                    let name = stream(&format!("counter-{slot}"));
                    let expected =
                        known[slot].map_or(ExpectedRevision::NoStream, |r| ExpectedRevision::Exact(Revision(r)));
                    let request = AppendRequest::to_stream(name, expected, vec![event("Incremented", "{}", &[])]);
                    match store.append(request).unwrap() {
                        AppendOutcome::Written(result) => {
                            let want = known[slot].map_or(0, |r| r + 1);
                            assert_eq!(result.streams[0].first_revision, Revision(want), "expected {expected}");
                            known[slot] = Some(want);
                            written += 1;
                        }
                        AppendOutcome::Conflict(c) => known[slot] = c.streams[0].actual.map(|r| r.0),
                        AppendOutcome::AlreadyWritten(r) => panic!("fresh ids reported as a retry: {r:?}"),
                    }
                }
                written
            })
        })
        .collect();
    let written: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    let last: u64 = (0..2)
        .map(|slot| {
            store.stream_info(&stream(&format!("counter-{slot}"))).unwrap().last_revision.map_or(0, |r| r.0 + 1)
        })
        .sum();
    assert_eq!(written, last, "every written append and only those are in the streams");
    assert_eq!(all_events(&store).len() as u64, written);
}

/// The sequencer's head cache holds two streams here; twelve streams
/// written round after round evict each other again and again, and the
/// store is reopened (an empty cache) halfway: every exact expected
/// revision must still pass and every stale one still conflict with the
/// true head.
#[test]
fn stream_heads_stay_exact_when_the_head_cache_evicts_them_and_after_a_reopen() {
    let options = Options { head_cache_streams: 2, ..Options::default() };
    let dir = tempfile::tempdir().unwrap();
    let streams: Vec<String> = (0..12).map(|n| format!("acct-{n}")).collect();
    let e = || event("Deposited", "{}", &[]);
    let mut store = quipu_core::Store::open(dir.path(), options.clone()).unwrap();
    for round in 0..6u64 {
        // Reopen (a cold cache) every other round; keep it warm otherwise.
        if round % 2 == 0 {
            drop(store);
            store = quipu_core::Store::open(dir.path(), options.clone()).unwrap();
        }
        for name in &streams {
            let expected =
                round.checked_sub(1).map_or(ExpectedRevision::NoStream, |r| ExpectedRevision::Exact(Revision(r)));
            if let Some(stale) = round.checked_sub(2) {
                let c = conflict(append(&store, name, ExpectedRevision::Exact(Revision(stale)), vec![e()]));
                assert_eq!(c.streams[0].actual, Some(Revision(round - 1)), "{name} in round {round}");
            }
            write(&store, name, expected, vec![e()]);
        }
    }
}

#[test]
fn appends_queued_past_a_group_s_size_keep_their_decisions_in_the_next_group() {
    let (_dir, store) = temp_store(common::small_segments());
    let appends = 60u64;
    let (sender, receiver) = std::sync::mpsc::channel();
    // Queued at once, each expecting the one before it: the sequencer
    // decides many in one turn and cuts groups at 4 KiB, so some are
    // decided on top of a group that is written before they are.
    for n in 0..appends {
        let expected = n.checked_sub(1).map_or(ExpectedRevision::NoStream, |r| ExpectedRevision::Exact(Revision(r)));
        let data = format!("{{\"n\":{n},\"pad\":\"{}\"}}", "x".repeat(400));
        let request = AppendRequest::to_stream(stream("ledger-1"), expected, vec![event("Posted", &data, &[])]);
        let sender = sender.clone();
        store.submit(request, move |outcome| sender.send((n, outcome)).unwrap());
    }
    let mut outcomes: Vec<_> = (0..appends).map(|_| receiver.recv().unwrap()).collect();
    outcomes.sort_by_key(|(n, _)| *n);
    for (n, outcome) in outcomes {
        match outcome {
            Ok(AppendOutcome::Written(result)) => assert_eq!(result.streams[0].first_revision, Revision(n)),
            other => panic!("append {n}: {other:?}"),
        }
    }
    let events = all_events(&store);
    assert_eq!(events.len() as u64, appends);
    for (n, e) in events.iter().enumerate() {
        assert_eq!((e.position, e.revision), (Position(n as u64), Revision(n as u64)));
        assert!(String::from_utf8_lossy(&e.data).starts_with(&format!("{{\"n\":{n},")), "event {n} holds its data");
    }
}

#[test]
fn a_check_decides_as_an_append_would_and_writes_nothing() {
    let (_dir, store) = temp_store(Options::default());
    let opened =
        AppendRequest::to_stream(stream("acct-1"), ExpectedRevision::NoStream, vec![event("Opened", "{}", &[])]);
    assert!(matches!(store.check(&opened).unwrap(), Decision::Accept(_)), "a new stream");
    assert!(all_events(&store).is_empty(), "a check writes nothing");

    let AppendOutcome::Written(first) = store.append(opened.clone()).unwrap() else { panic!("first append") };
    assert_eq!(store.check(&opened).unwrap(), Decision::Duplicate(first), "the same ids again: a retry");
    let again =
        AppendRequest::to_stream(stream("acct-1"), ExpectedRevision::NoStream, vec![event("Opened", "{}", &[])]);
    match store.check(&again).unwrap() {
        Decision::Reject(conflict) => assert_eq!(conflict.streams[0].actual, Some(Revision(0))),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let next = AppendRequest::to_stream(
        stream("acct-1"),
        ExpectedRevision::Exact(Revision(0)),
        vec![event("Paid", "{}", &[])],
    );
    match store.check(&next).unwrap() {
        Decision::Accept(commit) => assert_eq!(commit.first_position, Position(1), "the next position"),
        other => panic!("expected an accept, got {other:?}"),
    }
    let mut reused =
        AppendRequest::to_stream(stream("acct-2"), ExpectedRevision::Any, vec![event("Opened", "{}", &[])]);
    reused.writes[0].events[0].id = opened.writes[0].events[0].id;
    assert!(matches!(store.check(&reused), Err(Error::EventIdReused { .. })));
    let bad = AppendRequest::to_stream(stream("acct-1"), ExpectedRevision::Any, vec![]);
    assert!(store.check(&bad).is_err(), "validation as for an append");
    assert_eq!(all_events(&store).len(), 1, "checks wrote nothing");
}
