//! Model-based property test: random sequences of appends (every
//! expected-revision kind, multi-stream, DCB conditions, exact and altered
//! retries), reads of every kind, and close/reopen (sometimes deleting the
//! index) run against the store and against a plain in-memory model; every
//! answer must agree. `PROPTEST_CASES` raises the number of sequences.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "a test: a panic is a failed test, with its message")]

mod common;

use std::collections::HashMap;

use common::{event, small_segments, stream};
use proptest::prelude::*;
use quipu_core::{
    AppendOutcome, AppendRequest, AppendResult, Clock, Condition, Conflict, Direction, Error, EventId, EventType,
    ExpectedRevision, Options, Position, ProposedEvent, Query, QueryItem, RecordedEvent, Revision, Store,
    StreamConflict, StreamName, StreamResult, StreamWrite, Tag,
};

const STREAMS: [&str; 5] = ["acct-0", "acct-1", "acct-2", "user-0", "user-1"];
const TYPES: [&str; 3] = ["Opened", "Deposited", "Closed"];
const TAGS: [&str; 3] = ["red", "green", "blue"];

// ---- the model -------------------------------------------------------------

/// One committed append, as the model remembers it.
#[derive(Debug, Clone)]
struct ModelCommit {
    result: AppendResult,
    /// Non-empty writes: stream and event ids, in request order.
    writes: Vec<(StreamName, Vec<EventId>)>,
}

/// Everything the store should hold: events in position order.
#[derive(Debug, Default)]
struct Model {
    events: Vec<RecordedEvent>,
    commits: Vec<ModelCommit>,
    /// Event id -> (commit index, position).
    ids: HashMap<EventId, (usize, Position)>,
}

/// What the model says an append must answer; timestamps of new commits
/// are the store's to choose, so `Written` is checked apart.
#[derive(Debug, PartialEq)]
enum Expected {
    Written,
    Outcome(AppendOutcome),
    Reused { event_id: EventId, position: Position },
    EmptyAppend,
}

impl Model {
    fn last_revision(&self, name: &StreamName) -> Option<Revision> {
        self.events.iter().rev().find(|e| &e.stream == name).map(|e| e.revision)
    }

    fn decide(&self, request: &AppendRequest) -> Expected {
        if request.event_count() == 0 {
            return Expected::EmptyAppend;
        }
        if let Some(answer) = self.idempotency(request) {
            return answer;
        }
        let streams: Vec<StreamConflict> = request
            .writes
            .iter()
            .filter_map(|w| {
                let actual = self.last_revision(&w.stream);
                (!w.expected.is_met_by(actual)).then(|| StreamConflict {
                    stream: w.stream.clone(),
                    expected: w.expected,
                    actual,
                })
            })
            .collect();
        let condition_position = request.condition.as_ref().and_then(|c| {
            let from = c.after.map_or(0, |p| p.0 + 1);
            self.events
                .iter()
                .find(|e| e.position.0 >= from && c.query.matches(&e.event_type, &e.tags))
                .map(|e| e.position)
        });
        if !streams.is_empty() || condition_position.is_some() {
            return Expected::Outcome(AppendOutcome::Conflict(Conflict { streams, condition_position }));
        }
        Expected::Written
    }

    /// An append is known by its first event id: a retry when the commit
    /// that first wrote that id holds exactly its events, an error when
    /// another one does; other ids are not looked at.
    fn idempotency(&self, request: &AppendRequest) -> Option<Expected> {
        let first_id = request.event_ids().next()?;
        let &(commit, position) = self.ids.get(&first_id)?;
        let reused = Expected::Reused { event_id: first_id, position };
        let requested: Vec<(StreamName, Vec<EventId>)> = request
            .writes
            .iter()
            .filter(|w| !w.events.is_empty())
            .map(|w| (w.stream.clone(), w.events.iter().map(|e| e.id).collect()))
            .collect();
        let original = &self.commits[commit];
        if requested == original.writes {
            return Some(Expected::Outcome(AppendOutcome::AlreadyWritten(original.result.clone())));
        }
        Some(reused)
    }

    /// Records a written append, checking the store's result against the
    /// positions and revisions the model assigns.
    fn apply(&mut self, request: &AppendRequest, result: &AppendResult) {
        let first_position = Position(self.events.len() as u64);
        let mut position = first_position;
        let mut streams = Vec::new();
        let mut writes = Vec::new();
        let commit = self.commits.len();
        for write in request.writes.iter().filter(|w| !w.events.is_empty()) {
            let first_revision = self.last_revision(&write.stream).map_or(Revision(0), Revision::next);
            let mut revision = first_revision;
            for e in &write.events {
                // Reads by id find the first event written with it.
                self.ids.entry(e.id).or_insert((commit, position));
                self.events.push(recorded(&write.stream, e, revision, position, result.recorded_at_us));
                revision = revision.next();
                position = position.next();
            }
            streams.push(StreamResult {
                stream: write.stream.clone(),
                first_revision,
                last_revision: Revision(revision.0 - 1),
            });
            writes.push((write.stream.clone(), write.events.iter().map(|e| e.id).collect()));
        }
        let expected = AppendResult {
            first_position,
            last_position: Position(position.0 - 1),
            streams,
            recorded_at_us: result.recorded_at_us,
        };
        assert_eq!(result, &expected, "the store placed the append where the model did");
        if let Some(previous) = self.commits.last() {
            assert!(result.recorded_at_us >= previous.result.recorded_at_us, "timestamps never go back");
        }
        self.commits.push(ModelCommit { result: expected, writes });
    }

    fn read(&self, read: &Read) -> Result<Vec<RecordedEvent>, String> {
        let (direction, limit) = (read.direction(), read.limit);
        let matching: Vec<&RecordedEvent> = match &read.target {
            Target::Stream(i) => {
                let name = stream(STREAMS[*i]);
                let events: Vec<_> = self.events.iter().filter(|e| e.stream == name).collect();
                if events.is_empty() {
                    return Err(format!("stream {name} not found"));
                }
                return Ok(window(events, read.from.map(|r| r as u64), direction, limit, |e| e.revision.0));
            }
            Target::All => self.events.iter().collect(),
            Target::Category(c) => self.events.iter().filter(|e| e.stream.category() == *c).collect(),
            Target::Type(t) => self.events.iter().filter(|e| e.event_type.as_str() == TYPES[*t]).collect(),
            Target::Tag(t) => self.events.iter().filter(|e| e.tags.iter().any(|g| g.as_str() == TAGS[*t])).collect(),
        };
        Ok(window(matching, read.from.map(|p| p as u64), direction, limit, |e| e.position.0))
    }
}

fn recorded(stream: &StreamName, e: &ProposedEvent, revision: Revision, position: Position, at: u64) -> RecordedEvent {
    RecordedEvent {
        id: e.id,
        stream: stream.clone(),
        revision,
        position,
        event_type: e.event_type.clone(),
        data: e.data.clone(),
        metadata: e.metadata.clone(),
        tags: e.tags.clone(),
        recorded_at_us: at,
    }
}

/// Up to `limit` of `events` (ascending by `key`) from `from` inclusive.
fn window(
    events: Vec<&RecordedEvent>,
    from: Option<u64>,
    direction: Direction,
    limit: usize,
    key: fn(&RecordedEvent) -> u64,
) -> Vec<RecordedEvent> {
    let picked: Vec<&RecordedEvent> = match direction {
        Direction::Forwards => events.into_iter().filter(|e| from.is_none_or(|f| key(e) >= f)).take(limit).collect(),
        Direction::Backwards => {
            events.into_iter().rev().filter(|e| from.is_none_or(|f| key(e) <= f)).take(limit).collect()
        }
    };
    picked.into_iter().cloned().collect()
}

// ---- operations --------------------------------------------------------------

#[derive(Debug, Clone)]
enum Target {
    Stream(usize),
    All,
    Category(&'static str),
    Type(usize),
    Tag(usize),
}

#[derive(Debug, Clone)]
struct Read {
    target: Target,
    from: Option<usize>,
    backwards: bool,
    limit: usize,
}

impl Read {
    fn direction(&self) -> Direction {
        if self.backwards { Direction::Backwards } else { Direction::Forwards }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Append(AppendRequest),
    /// Resend an earlier request exactly (a client retry).
    Retry(usize),
    /// Resend an earlier request without its last event.
    AlteredRetry(usize),
    /// A new request that also carries, last, the id of an earlier event
    /// (an id reused in another place than first).
    Borrow(usize, AppendRequest),
    Read(Read),
    ReadById(usize),
    Reopen {
        delete_index: bool,
    },
}

fn expected_strategy() -> impl Strategy<Value = ExpectedRevision> {
    prop_oneof![
        Just(ExpectedRevision::Any),
        Just(ExpectedRevision::NoStream),
        Just(ExpectedRevision::Exists),
        (0u64..5).prop_map(|r| ExpectedRevision::Exact(Revision(r))),
    ]
}

fn event_strategy() -> impl Strategy<Value = ProposedEvent> {
    (0..TYPES.len(), proptest::sample::subsequence(TAGS.to_vec(), 0..=2), any::<u8>())
        .prop_map(|(t, tags, n)| event(TYPES[t], &format!("{{\"n\":{n}}}"), &tags))
}

fn write_strategy() -> impl Strategy<Value = StreamWrite> {
    (0..STREAMS.len(), expected_strategy(), proptest::collection::vec(event_strategy(), 0..4))
        .prop_map(|(s, expected, events)| StreamWrite { stream: stream(STREAMS[s]), expected, events })
}

fn condition_strategy() -> impl Strategy<Value = Option<Condition>> {
    let item =
        (proptest::sample::subsequence(TYPES.to_vec(), 0..=1), proptest::sample::subsequence(TAGS.to_vec(), 0..=2))
            .prop_map(|(types, tags)| QueryItem {
                types: types.into_iter().map(|t| EventType::new(t).unwrap()).collect(),
                tags: tags.into_iter().map(|t| Tag::new(t).unwrap()).collect(),
            });
    let condition = (proptest::collection::vec(item, 1..3), proptest::option::of(0u64..30))
        .prop_map(|(items, after)| Condition { query: Query { items }, after: after.map(Position) });
    proptest::option::weighted(0.25, condition)
}

fn request_strategy() -> impl Strategy<Value = AppendRequest> {
    (proptest::collection::vec(write_strategy(), 1..4), condition_strategy()).prop_map(|(mut writes, condition)| {
        let mut seen = Vec::new();
        writes.retain(|w| {
            let fresh = !seen.contains(&w.stream);
            seen.push(w.stream.clone());
            fresh
        });
        AppendRequest { writes, condition }
    })
}

fn read_strategy() -> impl Strategy<Value = Read> {
    let target = prop_oneof![
        (0..STREAMS.len()).prop_map(Target::Stream),
        Just(Target::All),
        prop_oneof![Just("acct"), Just("user")].prop_map(Target::Category),
        (0..TYPES.len()).prop_map(Target::Type),
        (0..TAGS.len()).prop_map(Target::Tag),
    ];
    (target, proptest::option::of(0usize..40), any::<bool>(), 1usize..12)
        .prop_map(|(target, from, backwards, limit)| Read { target, from, backwards, limit })
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => request_strategy().prop_map(Op::Append),
        2 => any::<usize>().prop_map(Op::Retry),
        1 => any::<usize>().prop_map(Op::AlteredRetry),
        1 => (any::<usize>(), request_strategy()).prop_map(|(i, request)| Op::Borrow(i, request)),
        4 => read_strategy().prop_map(Op::Read),
        1 => any::<usize>().prop_map(Op::ReadById),
        1 => any::<bool>().prop_map(|delete_index| Op::Reopen { delete_index }),
    ]
}

// ---- running -----------------------------------------------------------------

struct Run {
    dir: tempfile::TempDir,
    store: Option<Store>,
    model: Model,
    sent: Vec<AppendRequest>,
}

impl Run {
    fn options() -> Options {
        Options { clock: Clock::stepping(1_790_000_000_000_000, 3), ..small_segments() }
    }

    fn store(&self) -> &Store {
        self.store.as_ref().expect("open between steps")
    }

    fn append(&mut self, request: AppendRequest) -> Result<(), TestCaseError> {
        let expected = self.model.decide(&request);
        let answer = self.store().append(request.clone());
        match (expected, answer) {
            (Expected::Written, Ok(AppendOutcome::Written(result))) => self.model.apply(&request, &result),
            (Expected::Outcome(want), Ok(got)) => prop_assert_eq!(got, want),
            (Expected::Reused { event_id, position }, Err(Error::EventIdReused { event_id: id, position: at })) => {
                prop_assert_eq!((id, at), (event_id, position));
            }
            (Expected::EmptyAppend, Err(Error::EmptyAppend)) => {}
            (want, got) => prop_assert!(false, "model expected {want:?}, store answered {got:?}"),
        }
        self.sent.push(request);
        Ok(())
    }

    fn read(&self, read: &Read) -> Result<(), TestCaseError> {
        let store = self.store();
        let (from_pos, from_rev) = (read.from.map(|p| Position(p as u64)), read.from.map(|r| Revision(r as u64)));
        let (direction, limit) = (read.direction(), read.limit);
        let got = match &read.target {
            Target::Stream(i) => store.read_stream(&stream(STREAMS[*i]), from_rev, direction, limit),
            Target::All => store.read_all(from_pos, direction, limit),
            Target::Category(c) => store.read_category(c, from_pos, direction, limit),
            Target::Type(t) => store.read_event_type(&EventType::new(TYPES[*t]).unwrap(), from_pos, direction, limit),
            Target::Tag(t) => store.read_tag(&Tag::new(TAGS[*t]).unwrap(), from_pos, direction, limit),
        };
        match (self.model.read(read), got) {
            (Ok(want), Ok(got)) => prop_assert_eq!(got, want, "read {:?}", read),
            (Err(_), Err(Error::StreamNotFound { .. })) => {}
            (want, got) => prop_assert!(false, "read {read:?}: model {want:?}, store {got:?}"),
        }
        if let Target::Stream(i) = read.target {
            let name = stream(STREAMS[i]);
            prop_assert_eq!(store.stream_info(&name).unwrap().last_revision, self.model.last_revision(&name));
        }
        Ok(())
    }

    fn reopen(&mut self, delete_index: bool) {
        self.store.take().expect("open").close().expect("close");
        if delete_index {
            std::fs::remove_dir_all(self.dir.path().join("index")).expect("delete index");
        }
        self.store = Some(Store::open(self.dir.path(), Self::options()).expect("reopen"));
    }

    fn step(&mut self, op: Op) -> Result<(), TestCaseError> {
        match op {
            Op::Append(request) => self.append(request)?,
            Op::Retry(i) if !self.sent.is_empty() => self.append(self.sent[i % self.sent.len()].clone())?,
            Op::AlteredRetry(i) if !self.sent.is_empty() => {
                let mut request = self.sent[i % self.sent.len()].clone();
                if let Some(write) = request.writes.iter_mut().rev().find(|w| !w.events.is_empty()) {
                    write.events.pop();
                }
                self.append(request)?;
            }
            Op::Borrow(i, mut request) if !self.model.events.is_empty() => {
                let borrowed = self.model.events[i % self.model.events.len()].id;
                if let Some(write) = request.writes.iter_mut().rev().find(|w| !w.events.is_empty()) {
                    let mut event = event("Opened", "{}", &[]);
                    event.id = borrowed;
                    write.events.push(event);
                }
                self.append(request)?;
            }
            Op::Read(read) => self.read(&read)?,
            Op::ReadById(i) if !self.model.events.is_empty() => {
                let id = self.model.events[i % self.model.events.len()].id;
                let want = self.model.events.iter().find(|e| e.id == id);
                let got = self.store().read_event(&id).unwrap();
                prop_assert_eq!(got.as_ref(), want);
            }
            Op::Reopen { delete_index } => self.reopen(delete_index),
            _ => {}
        }
        Ok(())
    }

    /// Every event, by `$all` and by stream, equals the model.
    fn check_everything(&self) -> Result<(), TestCaseError> {
        let store = self.store();
        let all = store.read_all(None, Direction::Forwards, 10_000).unwrap();
        prop_assert_eq!(&all, &self.model.events);
        prop_assert_eq!(store.last_position(), self.model.events.last().map(|e| e.position));
        for name in STREAMS {
            let read = Read {
                target: Target::Stream(STREAMS.iter().position(|s| *s == name).unwrap()),
                from: None,
                backwards: false,
                limit: 10_000,
            };
            self.read(&read)?;
        }
        Ok(())
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(64)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn the_store_agrees_with_a_simple_model(ops in proptest::collection::vec(op_strategy(), 1..80)) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Run::options()).unwrap();
        let mut run = Run { dir, store: Some(store), model: Model::default(), sent: Vec::new() };
        for op in ops {
            run.step(op)?;
        }
        run.check_everything()?;
        run.reopen(true);
        run.check_everything()?;
    }
}
