//! Decisions are a pure function of the log order: two stores fed the same
//! appends decide alike, read alike and write byte-identical logs; a store
//! rebuilt from another's log agrees with it on every later decision. This
//! is what cluster mode will stand on.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "a test: a panic is a failed test, with its message")]

mod common;

use common::{all_events, event, log_files, small_segments, stream};
use quipu_core::{
    AppendOutcome, AppendRequest, Applied, Clock, Condition, Direction, Error, EventType, ExpectedRevision, Options,
    Position, Query, QueryItem, Revision, Source, Store, StreamWrite, Tag,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const CLOCK_START_US: u64 = 1_790_000_000_000_000;

fn deterministic_options() -> Options {
    Options { clock: Clock::stepping(CLOCK_START_US, 7), ..small_segments() }
}

/// A mixed workload: every expected-revision kind, multi-stream appends,
/// DCB conditions, retries of earlier appends, and conflicts.
fn requests(seed: u64, count: usize) -> Vec<AppendRequest> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut sent: Vec<AppendRequest> = Vec::new();
    for _ in 0..count {
        let request = if !sent.is_empty() && rng.random_ratio(1, 8) {
            sent[rng.random_range(0..sent.len())].clone()
        } else {
            random_request(&mut rng)
        };
        sent.push(request);
    }
    sent
}

fn random_request(rng: &mut StdRng) -> AppendRequest {
    let streams = rng.random_range(1..=3);
    let mut names: Vec<String> = (0..streams).map(|_| format!("acct-{}", rng.random_range(0..6))).collect();
    names.sort();
    names.dedup();
    let writes = names
        .into_iter()
        .map(|name| {
            let expected = match rng.random_range(0..5) {
                0 => ExpectedRevision::Any,
                1 => ExpectedRevision::NoStream,
                2 => ExpectedRevision::Exists,
                _ => ExpectedRevision::Exact(Revision(rng.random_range(0..6))),
            };
            let events = (0..rng.random_range(1..4))
                .map(|i| {
                    let tag = format!("k{}", rng.random_range(0..3));
                    event(["Deposited", "Withdrawn"][i % 2], &format!("{{\"n\":{}}}", rng.random::<u16>()), &[&tag])
                })
                .collect();
            StreamWrite { stream: stream(&name), expected, events }
        })
        .collect();
    let condition = rng.random_ratio(1, 4).then(|| Condition {
        query: Query {
            items: vec![QueryItem {
                types: vec![EventType::new("Withdrawn").unwrap()],
                tags: vec![Tag::new("k1").unwrap()],
            }],
        },
        after: rng.random_ratio(3, 4).then(|| Position(rng.random_range(0..40))),
    });
    AppendRequest { writes, condition }
}

/// What a store answered: the outcome, or the error's text.
fn answers(store: &Store, requests: &[AppendRequest]) -> Vec<Result<AppendOutcome, String>> {
    requests.iter().map(|r| store.append(r.clone()).map_err(|e: Error| e.to_string())).collect()
}

fn stream_reads(store: &Store) -> Vec<Vec<quipu_core::RecordedEvent>> {
    (0..6)
        .map(|i| {
            store.read_stream(&stream(&format!("acct-{i}")), None, Direction::Forwards, 10_000).unwrap_or_default()
        })
        .collect()
}

#[test]
fn two_stores_fed_the_same_appends_decide_read_and_write_alike() {
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Store::open(a_dir.path(), deterministic_options()).unwrap();
    let b = Store::open(b_dir.path(), deterministic_options()).unwrap();
    let workload = requests(7, 400);

    let a_answers = answers(&a, &workload);
    let b_answers = answers(&b, &workload);
    assert_eq!(a_answers, b_answers);
    let kinds = |want: fn(&Result<AppendOutcome, String>) -> bool| a_answers.iter().filter(|a| want(a)).count();
    assert!(kinds(|a| matches!(a, Ok(AppendOutcome::Written(_)))) > 50, "the workload writes");
    assert!(kinds(|a| matches!(a, Ok(AppendOutcome::Conflict(_)))) > 50, "the workload conflicts");
    assert!(kinds(|a| matches!(a, Ok(AppendOutcome::AlreadyWritten(_)))) > 5, "the workload retries");

    assert_eq!(all_events(&a), all_events(&b));
    assert_eq!(stream_reads(&a), stream_reads(&b));
    a.close().unwrap();
    b.close().unwrap();
    let a_log = log_files(a_dir.path());
    assert!(a_log.len() > 1, "the workload spans segments");
    assert!(a_log == log_files(b_dir.path()), "the logs are byte-identical");
}

#[test]
fn a_store_rebuilt_from_another_stores_log_agrees_on_later_decisions() {
    let (a_dir, c_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Store::open(a_dir.path(), deterministic_options()).unwrap();
    let workload = requests(11, 300);
    answers(&a, &workload[..200]);
    a.close().unwrap();

    // Ship only the log: the second engine derives everything else.
    std::fs::create_dir_all(c_dir.path().join("log")).unwrap();
    for (name, bytes) in log_files(a_dir.path()) {
        std::fs::write(c_dir.path().join("log").join(name), bytes).unwrap();
    }
    let a = Store::open(a_dir.path(), deterministic_options()).unwrap();
    let c = Store::open(c_dir.path(), deterministic_options()).unwrap();
    assert_eq!(all_events(&a), all_events(&c));
    assert_eq!(stream_reads(&a), stream_reads(&c));
    assert_eq!(answers(&a, &workload[200..]), answers(&c, &workload[200..]));
    assert_eq!(all_events(&a), all_events(&c));
    a.close().unwrap();
    c.close().unwrap();
    assert!(log_files(a_dir.path()) == log_files(c_dir.path()), "the logs are byte-identical");
}

/// Applies `requests` as a cluster node would (in order, each with its
/// shared log's timestamp and source) and gives the answers in order.
/// Timestamps step back now and then, as clocks of different producers
/// do; offsets leave gaps, as transaction markers and ticks do.
fn apply(store: &Store, requests: &[AppendRequest], first: usize) -> Vec<Result<AppendOutcome, String>> {
    let (sender, receiver) = std::sync::mpsc::channel();
    for (n, request) in requests.iter().enumerate() {
        let n = first + n;
        let step_back = if n % 5 == 4 { 3_000 } else { 0 };
        let applied = Applied {
            recorded_at_us: CLOCK_START_US + n as u64 * 1_000 - step_back,
            source: Source { epoch: n as u64 / 10, partition: (n % 3) as u32, offset: 2 * n as i64 },
        };
        let sender = sender.clone();
        store.submit_applied(request.clone(), applied, move |outcome| {
            sender.send((n, outcome.map_err(|e| e.to_string()))).unwrap();
        });
    }
    let mut answers: Vec<_> = receiver.iter().take(requests.len()).collect();
    answers.sort_by_key(|(n, _)| *n);
    answers.into_iter().map(|(_, answer)| answer).collect()
}

#[test]
fn requests_applied_from_a_shared_log_record_its_time_and_source_and_decide_alike() {
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Different clocks: what is recorded must come from the shared log.
    let a = Store::open(a_dir.path(), deterministic_options()).unwrap();
    let b = Store::open(b_dir.path(), Options { clock: Clock::stepping(5, 1), ..small_segments() }).unwrap();
    assert_eq!(a.last_source().unwrap(), None);
    let workload = requests(13, 300);
    let a_answers = apply(&a, &workload, 0);
    assert_eq!(a_answers, apply(&b, &workload, 0));
    assert!(a_answers.iter().any(|a| matches!(a, Ok(AppendOutcome::Conflict(_)))), "the workload conflicts");

    let events = all_events(&a);
    assert_eq!(events, all_events(&b));
    let times: Vec<u64> = events.iter().map(|e| e.recorded_at_us).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "timestamps never go back");
    let written: Vec<usize> =
        (0..workload.len()).filter(|&n| matches!(a_answers[n], Ok(AppendOutcome::Written(_)))).collect();
    let first = &a_answers[written[0]];
    let Ok(AppendOutcome::Written(result)) = first else { unreachable!() };
    assert_eq!(
        result.recorded_at_us,
        CLOCK_START_US + written[0] as u64 * 1_000 - if written[0] % 5 == 4 { 3_000 } else { 0 }
    );
    let last = *written.last().unwrap();
    let last_source = Source { epoch: last as u64 / 10, partition: (last % 3) as u32, offset: 2 * last as i64 };
    assert_eq!(a.last_source().unwrap(), Some(last_source), "the last written request's source");

    // Requests that write nothing (a conflict, a retry) leave the last
    // source where it was; a restart finds it in the log.
    let conflict =
        AppendRequest::to_stream(stream("acct-0"), ExpectedRevision::NoStream, vec![event("Deposited", "{}", &[])]);
    assert!(matches!(apply(&a, &[conflict], workload.len())[0], Ok(AppendOutcome::Conflict(_))));
    assert_eq!(a.last_source().unwrap(), Some(last_source));
    assert_eq!(b.last_source().unwrap(), Some(last_source));
    // Groups (and so where segments roll) form as requests arrive, so the
    // two logs hold the same records in different files: the events, their
    // places and times above are what must agree.
    a.close().unwrap();
    b.close().unwrap();
    let a = Store::open(a_dir.path(), deterministic_options()).unwrap();
    assert_eq!(a.last_source().unwrap(), Some(last_source));
    assert_eq!(all_events(&a), events);
    a.close().unwrap();
}
